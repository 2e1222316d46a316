"""benchmarks/sweeps/report.py, which writes the tables and figures of benchmarks/sweeps.md from a study folder: on a
small synthetic study whose every number is known, each table cell is checked against the arithmetic done here
(mean over chips +- their spread, SNN - ANN with the spreads in quadrature, the noise loss, the fine-tuning gain)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweeps" / "report.py"


def _report_module():
    spec = importlib.util.spec_from_file_location("sweeps_report", REPORT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(sweep, network, acc, std, **kw):
    """One finished point as `memsim sweep study` records it (only the columns report.py reads)."""
    base = {"sweep": sweep, "network": network, "status": "ok", "accuracy": acc, "accuracy_std": std, "chips": 3,
            "samples": 10000, "prune": 0.0, "mapping": "dense", "adc.bits": 8, "tile.size": 64, "noise.program": 0.0,
            "tiles": 4, "utilisation": 0.5, "energy": 1e-8, "latency": 1e-6, "area": 1e-6, "output_error": 0.1}
    base.update(kw)
    return base


def _tile_acc(network: str, tile: int, noise: float) -> float:
    """A distinct, known accuracy per tile_noise point."""
    return {"msnn": 0.85, "mlp": 0.87}[network] - noise - tile / 10000


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    study = tmp_path_factory.mktemp("study")
    rows = []
    for n in ("msnn", "mlp"):
        for t in (32, 64):
            for z in (0.0, 0.05):
                rows.append(_row("tile_noise", n, _tile_acc(n, t, z), 0.01 if n == "msnn" else 0.02, **{
                    "tile.size": t, "noise.program": z, "tiles": 256 // t, "energy": (3e-8 if n == "msnn" else 1e-8)
                    * t / 32, "latency": (2e-6 if n == "msnn" else 1e-6)}))
    for m, acc in (("dense", (0.80, 0.70)), ("sparse", (0.81, 0.76))):
        for z, a in zip((0.0, 0.1), acc):
            rows.append(_row("mapping_unpruned", "mlp", a, 0.01, mapping=m, **{"noise.program": z, "tile.size": 32}))
            rows.append(_row("stuck_compensation", "mlp", a + 0.02, 0.005, mapping=m,
                             **{"noise.program": z, "tile.size": 32}))
    rows.append(_row("mapping_pruned", "mlp", 0.60, 0.03, mapping="dense", prune=0.5,
                     **{"pruning.method": "block", "noise.program": 0.0, "tile.size": 32, "tiles": 2}))
    rows.append(_row("mapping_pruned", "mlp", 0.50, 0.03, mapping="dense", prune=0.5,
                     **{"pruning.method": "block", "noise.program": 0.1, "tile.size": 32, "tiles": 2}))
    for b in (4, 8):
        for cal in ("percentile", "fixed"):
            rows.append(_row("adc", "mlp", 0.5 + b / 20 + (0.05 if cal == "percentile" else 0), 0.01,
                             **{"adc.bits": b, "adc.calibration": cal, "noise.program": 0.025}))
    for r in (0.1, 2.5):
        rows.append(_row("wires", "mlp", 0.86 - r / 100, 0.01, output_error=0.05 * r,
                         **{"wires.r": r, "noise.program": 0.025}))
    rows.append(_row("finetune_mlp", "mlp", 0.845, 0.004, **{"tile.size": 64, "noise.program": 0.05}))
    pd.DataFrame(rows).to_csv(study / "results.csv", index=False)
    (study / "study.json").write_text(json.dumps({
        "name": "t", "scale": "full", "networks": {"msnn": {"config": "fashion_ideal"},
                                                   "mlp": {"config": "fashion_ann_mlp"}}}))
    (study / "networks" / "mlp").mkdir(parents=True)
    (study / "networks" / "mlp" / "metrics.csv").write_text("epoch,test_accuracy\n1,0.8\n2,0.8781\n")
    tables, figs = study / "tables.md", study / "figures"
    assert _report_module().main(["--study", str(study), "--out", str(figs), "--tables", str(tables)]) == 0
    return tables.read_text(), figs


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first markdown table after the line holding ``heading``."""
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if heading in ln)
    while not lines[i].startswith("|"):
        i += 1
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        if not lines[i].startswith("|---"):
            rows.append([c.strip() for c in lines[i].strip("|").split("|")])
        i += 1
    return rows


def test_networks_table_reads_the_last_test_accuracy(report):
    rows = _table(report[0], "### Networks")
    assert rows[1][:3] == ["MSNN", "fashion_ideal", "-"]  # no metrics.csv: no ideal accuracy
    assert rows[2][:3] == ["MLP", "fashion_ann_mlp", "87.81"]


def test_tile_table_cells_are_mean_and_chip_spread(report):
    rows = _table(report[0], "**MLP**")
    assert rows[0] == ["noise.program", "tile.size 32", "tile.size 64"]
    for r in rows[1:]:
        z = float(r[0])
        for t, c in zip((32, 64), r[1:]):
            assert c == f"{100 * _tile_acc('mlp', t, z):.1f} ± 2.0"


def test_snn_minus_ann_with_spreads_in_quadrature(report):
    rows = _table(report[0], "**MSNN - MLP**")
    spread = 100 * math.hypot(0.01, 0.02)
    for r in rows[1:]:
        z = float(r[0])
        for t, c in zip((32, 64), r[1:]):
            diff = 100 * (_tile_acc("msnn", t, z) - _tile_acc("mlp", t, z))
            assert c == f"{diff:+.1f} ± {spread:.1f}"
    ratios = _table(report[0], "Cost ratios SNN / ANN")
    assert [r[1:] for r in ratios[1:]] == [["3", "2"], ["3", "2"]]  # energy and latency SNN / ANN per tile


def test_mapping_table_and_noise_loss(report):
    text = report[0]
    rows = {r[0]: r[1:] for r in _table(text, "### 3. Dense vs sparse")[1:]}
    assert rows["unpruned, dense"] == ["80.0 ± 1.0", "70.0 ± 1.0"]
    assert rows["unpruned, sparse"] == ["81.0 ± 1.0", "76.0 ± 1.0"]
    assert rows["block (one tile), 50 %, dense"] == ["60.0 ± 3.0", "50.0 ± 3.0"]
    loss = {(r[0], r[1]): float(r[-1]) for r in _table(text, "Tiles, utilisation, energy and noise sensitivity")[1:]}
    assert loss[("unpruned", "dense")] == pytest.approx(10.0)
    assert loss[("unpruned", "sparse")] == pytest.approx(5.0)
    assert loss[("block (one tile), 50 %", "dense")] == pytest.approx(10.0)
    comp = {r[0]: r[1:] for r in _table(text, "### 3b.")[1:]}
    assert comp["dense, none"] == ["80.0 ± 1.0", "70.0 ± 1.0"]
    assert comp["dense, partner"] == ["82.0 ± 0.5", "72.0 ± 0.5"]


def test_adc_wires_and_finetune_tables(report):
    text = report[0]
    adc = {r[0]: r[1] for r in _table(text, "### 4. ADC")[1:]}
    assert adc == {"4 bit, calibrated": "75.0 ± 1.0", "4 bit, fixed": "70.0 ± 1.0",
                   "8 bit, calibrated": "95.0 ± 1.0", "8 bit, fixed": "90.0 ± 1.0"}
    wires = _table(text, "### 5. Wire resistance")
    assert [r[1] for r in wires[1:]] == ["85.9 ± 1.0", "83.5 ± 1.0"]
    err = _table(text, "Output error (relative RMS")
    assert [float(r[1]) for r in err[1:]] == pytest.approx([0.005, 0.125])
    ft = _table(text, "### 6. Deployed as trained vs fine-tuned")
    trained = _tile_acc("mlp", 64, 0.05)
    assert ft[1][:5] == ["MLP", "64", "5", f"{100 * trained:.1f} ± 2.0", "84.5 ± 0.4"]
    assert float(ft[1][5]) == pytest.approx(round(100 * (0.845 - trained), 1))


def test_pareto_front_holds_no_dominated_point(report):
    front = _table(report[0], "### Pareto front")
    head = front[0]
    acc, energy = head.index("accuracy (%)"), head.index("energy (nJ)")
    pts = [(float(r[energy]), float(r[acc])) for r in front[1:]]
    assert pts == sorted(pts)  # cheaper first, and each more accurate than every cheaper one
    assert all(b[1] > a[1] for a, b in zip(pts, pts[1:]))


def test_figures_are_written(report):
    _, figs = report
    for f in ("accuracy_vs_tile", "cost_vs_tile", "mapping_dense_sparse", "adc_calibrated_fixed", "wires_irdrop",
              "finetune", "pareto_energy"):
        data = (figs / f"{f}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_folder_that_is_not_a_study(tmp_path):
    with pytest.raises(SystemExit, match="not a finished study folder"):
        _report_module().main(["--study", str(tmp_path), "--out", str(tmp_path / "f")])
