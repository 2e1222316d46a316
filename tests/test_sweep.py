"""Sweeps: spec validation (bad input stops before any work, naming the fix), designs, the runner (resume, errors
recorded, local pool and Ray give identical results), results table and plots."""
import json
import time

import pandas as pd
import pytest

from memsim.sweep import SweepError, load_spec
from memsim.sweep.runner import ResultsDir, check_ray_address, run_sweep
from memsim.sweep.spec import parse_spec

from sweep_helpers import tiny_ann_checkpoint, tiny_checkpoint, write_spec


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("sweep_ckpt"))


# -- bad input: a clear error before any work ------------------------------------------------------------------

def test_unknown_axis_names_closest(tmp_path, ckpt):
    with pytest.raises(SweepError, match=r"unknown key 'noise.programm'.*did you mean 'noise.program'"):
        load_spec(write_spec(tmp_path, ckpt, '"noise.programm" = [0.0, 0.1]'))
    with pytest.raises(SweepError, match=r"unknown key 'chipz'.*did you mean 'chips'"):
        load_spec(write_spec(tmp_path, ckpt, '"adc.bits" = [4]', base_extra="chipz = 3"))


def test_wrong_type_and_bad_value(tmp_path, ckpt):
    with pytest.raises(SweepError, match=r"axes.adc.bits\[1\] = '6' has the wrong type: allowed an integer"):
        load_spec(write_spec(tmp_path, ckpt, '"adc.bits" = [4, "6"]'))
    with pytest.raises(SweepError, match=r"invalid crossbar preset.*adc.bits = 0 is invalid: allowed an integer "
                                         r"in \[1, 32\]"):
        load_spec(write_spec(tmp_path, ckpt, '"adc.bits" = [4, 0]'))


def test_empty_grid_and_limit(tmp_path, ckpt):
    with pytest.raises(SweepError, match="axes.tile.size is empty: the grid has no points"):
        load_spec(write_spec(tmp_path, ckpt, '"tile.size" = []'))
    spec = load_spec(write_spec(tmp_path, ckpt, '"tile.size" = [16, 32, 64]\n"adc.bits" = [4, 6]',
                                base_extra="max_points = 5"))
    with pytest.raises(SweepError, match="6 points is more than base.max_points = 5. Fix: pass --yes"):
        run_sweep(spec, tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_checkpoint_must_match_base_config(tmp_path, ckpt):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[network]\nlayers = [64, 32, 10]\n")
    spec = tmp_path / "ft.toml"
    spec.write_text(f'[base]\nconfig = "{cfg}"\ncheckpoint = "{ckpt}"\nfinetune_epochs = 1\n[axes]\n"adc.bits" = [4]\n')
    with pytest.raises(SweepError, match=r"does not match the base config \(network.layers: checkpoint \[64, 12, 10\], "
                                         r"config \[64, 32, 10\]\)"):
        load_spec(spec)


def test_ray_address_that_does_not_answer():
    t0 = time.perf_counter()
    with pytest.raises(SweepError, match="does not answer"):
        check_ray_address("127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(SweepError, match="allowed HOST:PORT"):
        check_ray_address("nohost")
    assert time.perf_counter() - t0 < 30


def test_designs_lhs_and_random(tmp_path, ckpt):
    axes = '"tile.size" = [16, 32, 64, 128]\n"noise.program" = [0.0, 0.025, 0.05, 0.1]\n"adc.bits" = [4, 6, 8]'
    base = {"checkpoint": str(ckpt), "mode": "noisy"}
    grid = {"tile.size": [16, 32, 64, 128], "noise.program": [0.0, 0.025, 0.05, 0.1], "adc.bits": [4, 6, 8]}
    lhs = parse_spec({"base": base, "axes": grid, "design": {"kind": "lhs", "n": 12, "seed": 1}}).points()
    assert len(lhs) == 12 and len({json.dumps(p, sort_keys=True) for p in lhs}) == 12
    for a, levels in grid.items():  # a Latin hypercube uses every level of every axis n/k times
        counts = pd.Series([p[a] for p in lhs]).value_counts()
        assert set(counts.index) == set(levels) and counts.max() - counts.min() <= 1
    rnd = parse_spec({"base": base, "axes": grid, "design": {"kind": "random", "n": 10, "seed": 3}}).points()
    assert len({json.dumps(p, sort_keys=True) for p in rnd}) == 10
    assert rnd == parse_spec({"base": base, "axes": grid, "design": {"kind": "random", "n": 10, "seed": 3}}).points()
    pts = parse_spec({"base": base, "design": {"kind": "points", "points": [{"tile.size": 32}, {"adc.bits": 4}]}})
    assert pts.points() == [{"tile.size": 32}, {"adc.bits": 4}]


# -- the runner -------------------------------------------------------------------------------------------------

def test_resume_errors_and_other_spec(tmp_path, ckpt):
    """A killed sweep loses nothing (rerun skips finished points), a raising point is recorded and the sweep goes
    on, and a results folder of another spec is refused."""
    import torch
    bad = tmp_path / "bad.pt"  # a checkpoint whose config passes the up-front read but cannot be rebuilt
    payload = torch.load(ckpt, weights_only=False)
    payload["config"]["network"]["layers"] = [64, 12, 3]
    torch.save(payload, bad)
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(f'name = "resume"\n[base]\nmodels = {{ good = "{ckpt}", bad = "{bad}" }}\nmode = "noisy"\n'
                         f'chips = 2\nlimit = 100\n[axes]\nmodel = ["good", "bad"]\n"tile.size" = [16, 32]\n')
    spec = load_spec(spec_path)
    out = tmp_path / "out"
    r1 = run_sweep(spec, out, workers=1, progress=False, max_points=3)  # "killed" after 3 points
    assert (r1["ran"], r1["skipped"]) == (3, 0)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    r2 = run_sweep(spec, out, workers=1, progress=False)
    assert (r2["ran"], r2["skipped"]) == (1, 3)
    assert all((out / "points" / n).stat().st_mtime_ns == t for n, t in first.items())  # not recomputed
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and set(df["status"]) == {"ok", "error"}
    errs = df[df["status"] == "error"]
    assert set(errs["model"]) == {"bad"} and errs["error"].str.contains("10 classes|does not match").all()
    ok = df[df["status"] == "ok"]
    assert (ok["accuracy"] > 0.3).all() and (ok["energy"] > 0).all() and (ok["tiles"] > 0).all()
    # 16x16 tiles need more tiles than 32x32 for the same network
    assert ok.set_index("tile.size")["tiles"][16] > ok.set_index("tile.size")["tiles"][32]
    other = load_spec(write_spec(tmp_path, ckpt, '"tile.size" = [16]', name="other"))
    with pytest.raises(SweepError, match="holds the results of another spec"):
        run_sweep(other, out, workers=1, progress=False)


def test_mapping_that_does_not_apply_fails_its_point_only(tmp_path):
    """A per-layer mapping naming a layer that is not a crossbar layer (the MLP's ReLU, net.1) is reported for that
    point; the valid per-layer mapping of the same sweep runs."""
    ann = tiny_ann_checkpoint(tmp_path)
    with pytest.raises(SweepError, match="mapping = 'net.0=spares' is invalid"):
        load_spec(write_spec(tmp_path, ann, 'mapping = ["net.0=spares"]'))
    spec = load_spec(write_spec(tmp_path, ann, 'mapping = ["net.0=sparse", "net.1=sparse"]'))
    r = run_sweep(spec, tmp_path / "out", workers=1, progress=False)
    assert (r["ran"], r["failed"]) == (2, 1)
    df = pd.read_csv(tmp_path / "out" / "results.csv").set_index("mapping")
    assert df.loc["net.0=sparse", "status"] == "ok" and df.loc["net.0=sparse", "accuracy"] > 0.3
    assert "does not apply to layer 'net.1'" in df.loc["net.1=sparse", "error"]


def test_finetune_per_point(tmp_path, ckpt):
    """base.config + finetune_epochs: each point trains hardware-aware on its own preset (from the checkpoint), then
    is evaluated; on a 20 %-noise preset that beats deploying the (briefly trained) checkpoint as it is."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[network]\nlayers = [64, 12, 10]\ntime_steps = 6\n[training]\nbatch_size = 64\n")
    common = {"mode": "noisy", "chips": 2, "limit": 120}
    axes = {"noise.program": [0.2]}
    ft = parse_spec({"base": {"config": str(cfg), "checkpoint": str(ckpt), "finetune_epochs": 1, **common},
                     "axes": axes})
    as_is = parse_spec({"base": {"checkpoint": str(ckpt), **common}, "axes": axes})
    a = run_sweep(ft, tmp_path / "ft", workers=1, progress=False)
    b = run_sweep(as_is, tmp_path / "as_is", workers=1, progress=False)
    assert a["failed"] == b["failed"] == 0
    acc_ft = pd.read_csv(tmp_path / "ft" / "results.csv")["accuracy"][0]
    acc_as_is = pd.read_csv(tmp_path / "as_is" / "results.csv")["accuracy"][0]
    assert acc_ft > acc_as_is + 0.03


def test_local_pool_and_ray_identical(tmp_path, ckpt):
    spec = load_spec(write_spec(tmp_path, ckpt, '"noise.program" = [0.0, 0.1]'))
    serial = run_sweep(spec, tmp_path / "serial", workers=1, progress=False)
    ray_r = run_sweep(spec, tmp_path / "ray", backend="ray", workers=1, progress=False)  # one Ray worker: short
    assert serial["failed"] == ray_r["failed"] == 0
    cols = ["key", "accuracy", "accuracy_per_chip", "output_error", "energy", "latency", "area", "tiles"]
    a = pd.read_csv(tmp_path / "serial" / "results.csv")[cols].sort_values("key").reset_index(drop=True)
    b = pd.read_csv(tmp_path / "ray" / "results.csv")[cols].sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # noise costs accuracy or output error: the 10 % programming-noise points have the larger product error
    d = pd.read_csv(tmp_path / "serial" / "results.csv")
    assert d[d["noise.program"] == 0.1]["output_error"].min() > d[d["noise.program"] == 0.0]["output_error"].max()


def test_chip_seed_axis_picks_other_chips(tmp_path, ckpt):
    """chip_seed is an axis: a point's chips are the noise seeds chip_seed .. chip_seed + chips - 1, so chip_seed = 1
    with one chip is exactly the second chip of chip_seed = 0 with two chips; negative seeds fail up front."""
    spec = load_spec(write_spec(tmp_path, ckpt, "chip_seed = [0, 1]", base_extra="", name="seeds"))
    out = tmp_path / "seeds"
    run_sweep(spec, out, workers=1, progress=False)
    df = pd.read_parquet(out / "results.parquet").set_index("chip_seed")
    assert set(df.index) == {0, 1}
    from memsim.ann.deploy import evaluate_deployed
    two = evaluate_deployed(ckpt, "hfox_1t1r_64", mode="noisy", seeds=2, limit=120)
    one = evaluate_deployed(ckpt, "hfox_1t1r_64", mode="noisy", seeds=1, limit=120, first_seed=1)
    assert one["per_seed"] == two["per_seed"][1:]
    with pytest.raises(SweepError, match="chip_seed"):
        load_spec(write_spec(tmp_path, ckpt, "chip_seed = [-1]", name="neg"))
