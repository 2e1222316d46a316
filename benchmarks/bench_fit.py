"""Device fitting benchmark: parameter recovery from synthetic ngspice data, for every family.

For each family's library card: hide parameters (the card's free parameters scaled by fixed factors), simulate a
400-point sine sweep in ngspice, add Gaussian current noise of 1 % of the peak, fit with the defaults of
'memsim device fit' (16 starts, Levenberg-Marquardt, bounds one decade around the library card), re-run the fitted
card in ngspice. Prints, per family: NRMSE (torch, ngspice), fit time (wall and CPU), and for every free parameter the
hidden and recovered values, the relative standard error and whether the fit claims it identified. Targets: every
identified parameter within 5 % of the hidden value, I-V NRMSE <= 2 %, fit <= 60 s on one core. The last table
compares one batched simulation of 16 x (2P + 1) candidate sets with running them one at a time (the speed-up of
batching the multi-start and the Jacobian on the device axis).

    python3 benchmarks/bench_fit.py [--points 400] [--families vteam,yakopcic]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsim.fitting import DEFAULT_FREE, fit, read_measurement  # noqa: E402
from memsim.fitting.card import spice_check  # noqa: E402
from memsim.fitting.fit import Problem, coordinates  # noqa: E402
from memsim.fitting.select import default_card  # noqa: E402
from memsim.fitting.synthetic import hidden_parameters, iv_sweep, pulse_curve, write_csv  # noqa: E402
from memsim.fitting.protocol import PulseTiming  # noqa: E402

CARDS = ["hp_tio2_joglekar", "hp_tio2_biolek", "hp_tio2_prodromakis", "vteam_default", "yakopcic_oblea",
         "stanford_pku_hfox", "mss_mif"]


def run_family(name: str, points: int, tmp: Path) -> dict:
    from memsim import load_card
    card = load_card(name)
    free = list(DEFAULT_FREE[card.family.name])
    hidden = hidden_parameters(card, free)
    path = write_csv(tmp / f"{name}.csv", iv_sweep(card, hidden, points=points, noise=0.01, seed=1))
    meas = read_measurement(path)
    c0, w0 = time.process_time(), time.perf_counter()
    res = fit(meas, card, free)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    ns, _ = spice_check(res, meas)
    rows = []
    for r in res.report:
        err = res.params[r.name] / hidden[r.name] - 1
        rows.append((r.name, hidden[r.name], res.params[r.name], err, r.rse, r.identified))
    ok = all(abs(e) <= 0.05 for *_, e, _, ident in rows if ident)
    return dict(name=name, family=card.family.name, nrmse=res.nrmse, spice=ns, cpu=cpu, wall=wall, rows=rows,
                ok=ok, iters=res.iterations, P=len(free))


def run_pulses(name: str, tmp: Path) -> dict:
    from memsim import load_card
    card = load_card(name)
    free = ["R_on", "R_off", "mu_v"]
    hidden = hidden_parameters(card, free)
    timing = PulseTiming(v_read=0.1)
    pw = card.verify.pulse
    data = pulse_curve(card, hidden, set_voltage=pw.set_voltage, reset_voltage=pw.reset_voltage,
                       width=pw.width / 4, count=15, timing=timing, noise=0.01, seed=2)
    meas = read_measurement(write_csv(tmp / f"{name}_pulses.csv", data))
    c0, w0 = time.process_time(), time.perf_counter()
    res = fit(meas, card, free, timing=timing)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    ns, _ = spice_check(res, meas, timing=timing)
    rows = [(r.name, hidden[r.name], res.params[r.name], res.params[r.name] / hidden[r.name] - 1, r.rse, r.identified)
            for r in res.report]
    return dict(name=f"{name} (pulses)", family=card.family.name, nrmse=res.nrmse, spice=ns, cpu=cpu, wall=wall,
                rows=rows, ok=all(abs(e) <= 0.05 for *_, e, _, i in rows if i), iters=res.iterations, P=len(free))


def batching_ratio(tmp: Path) -> tuple[float, float, int]:
    """One simulation of B candidate sets batched vs B single-candidate simulations (same protocol)."""
    card = default_card("yakopcic")
    free = list(DEFAULT_FREE["yakopcic"])
    meas = read_measurement(tmp / "yakopcic_oblea.csv") if (tmp / "yakopcic_oblea.csv").exists() else None
    if meas is None:
        meas = read_measurement(write_csv(tmp / "y.csv", iv_sweep(card, hidden_parameters(card, free), points=400)))
    pr = Problem(meas, card, coordinates(card.family, card.parameters, free))
    B = 16 * (2 * len(free) + 1)
    z = torch.rand(B, len(free), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t0 = time.process_time()
    pr.residuals(z)
    batched = time.process_time() - t0
    t0 = time.process_time()
    for k in range(8):
        pr.residuals(z[k:k + 1])
    single = (time.process_time() - t0) / 8 * B
    return batched, single, B


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=400)
    ap.add_argument("--families", help="comma-separated card names (default: one card per family)")
    ap.add_argument("--no-pulses", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cards = args.families.split(",") if args.families else CARDS
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    results = [run_family(n, args.points, tmp) for n in cards]
    if not args.no_pulses:
        results.append(run_pulses("hp_tio2_biolek", tmp))
    print(f"\n## Recovery from synthetic ngspice data ({args.points} points, 1 % noise)\n")
    print("| card | free P | NRMSE torch | NRMSE ngspice | iterations | fit wall (s) | fit CPU (s) | identified within 5 % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['P']} | {r['nrmse']:.3%} | {r['spice']:.3%} | {r['iters']} | {r['wall']:.1f} | "
              f"{r['cpu']:.1f} | {'yes' if r['ok'] else 'NO'} |")
    print("\n## Parameters (hidden vs recovered)\n")
    print("| card | parameter | hidden | recovered | error | rel. std err | claimed |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for name, h, v, e, rse, ident in r["rows"]:
            rse_t = "inf" if not np.isfinite(rse) else f"{rse:.2%}"
            print(f"| {r['name']} | {name} | {h:.5g} | {v:.5g} | {e:+.2%} | {rse_t} | "
                  f"{'identified' if ident else 'not identified'} |")
    b, s, B = batching_ratio(tmp)
    print(f"\n## Batching\n\nOne residual evaluation of {B} candidate sets (Yakopcic, 400 points): batched {b:.2f} s CPU, "
          f"one at a time {s:.1f} s CPU (extrapolated from 8): {s / b:.0f}x.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
