"""Calibrated against fixed converter ranges: the design answer a sweep gets about the ADC, measured in one run.

The Fashion-MNIST MLP [784, 256, 10] (``configs/fashion_ann_mlp.toml``, trained in float here, or reused from
``OUT/float`` on a rerun) is deployed as trained on ``hfox_1t1r_64`` with 256 x 256 tiles and 5 % programming noise
(the preset's other non-idealities as they are), ``noisy`` mode, on ``--chips`` chips whose seeds training never
used, over the full test set, for each ADC resolution of ``--bits`` and these ways of setting the ADC's full scale
and mapping the weights:

* ``default``: the preset as bundled: I_fs = P_99(|I_col|) of the layer's column outputs over 256 calibration
  images, each output's weights scaled to the full conductance window (``mapping.weight_scale = "column"``);
* ``p99.99``: the same with the 99.99th percentile (the default before 2026-12-04);
* ``mse``: the clip among the percentiles 90 ... 99.99 and the maximum of those outputs that minimises the ADC's own
  quantisation error at its bits (what a designer tuning a coarse converter picks);
* ``fixed``: I_fs = adc.range x rows x v_max x dG with the preset's ``range`` 0.125 (how memsim set it before
  converters were calibrated, and what the first case study used);
* ``layer scale``: the default ADC with one weight scale per layer (``mapping.weight_scale = "layer"``, memsim's
  mapping before 2026-12-04): outputs with small weights use a small part of the window, so programming noise (a
  fraction of the window) weighs more on them.

Every deployment goes through :func:`memsim.deploy.evaluate_on_chips` (program, calibrate, evaluate: what
``memsim evaluate`` and the sweeps run). Prints each accuracy beside the ideal one, and the calibration's time as
a fraction of the evaluation's, and the same chips with a 16-bit calibrated ADC (what the devices alone cost).

    python benchmarks/bench_calibration.py OUT [--bits 4 6 8] [--chips 3] [--limit N]

Writes only under OUT (the float run and OUT/results.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim.crossbar.presets import load_preset  # noqa: E402
from memsim.deploy import Chip, evaluate_on_chips  # noqa: E402
from memsim.io import atomic_write_text  # noqa: E402
from memsim.training import train  # noqa: E402
from memsim.training.config import load_config  # noqa: E402
from memsim.training.data import ImageDataset, load_dataset  # noqa: E402
from memsim.training.trained import load_trained  # noqa: E402


#: label -> (ADC fields, preset fields) changed from the bundled preset
METHODS = {"default": ({}, {}), "p99.99": ({"percentile": 99.99}, {}), "mse": ({"calibration": "mse"}, {}),
           "fixed": ({"calibration": "fixed"}, {}), "layer scale": ({}, {"weight_scale": "layer"})}


def trained_mlp(out: Path, threads: int):
    run = out / "float"
    cfg = load_config("fashion_ann_mlp", {"output.dir": str(run), "output.plot": False,
                                          "training.threads": threads, "data.download": False})
    if not (run / "checkpoints").is_dir():
        train(cfg, progress=False, log=lambda s: print(s, file=sys.stderr, flush=True))
    return load_trained(run)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the float run and results.json")
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--program-noise", type=float, default=0.05)
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--first-chip", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None, help="first N test images only (a quick check)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                    help="the columns to measure (default: all)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)

    network = trained_mlp(args.out, args.threads)
    train_set = load_dataset("fashion_mnist", "train", flatten=True)
    test_set = load_dataset("fashion_mnist", "test", flatten=True)
    if args.limit:
        test_set = ImageDataset(test_set.images[:args.limit], test_set.labels[:args.limit], test_set.info, "test")
    ideal = evaluate_on_chips(network, Chip.ideal(), test_set, calibration=train_set).accuracy
    base = load_preset("hfox_1t1r_64")
    rows = []
    for bits in [16] + list(args.bits):
        for method in args.methods:
            adc, fields = METHODS[method]
            preset = base.replace(rows=args.tile, cols=args.tile, noise={"program": args.program_noise},
                                  adc=dataclasses.replace(base.adc, bits=bits, **adc), **fields)
            chips = Chip(preset, mode="noisy", seed=args.first_chip).series(args.chips)
            t0 = time.perf_counter()
            ev = evaluate_on_chips(network, chips, test_set, calibration=train_set)
            total = time.perf_counter() - t0
            cal = sum(r.calibration_time_s for r in ev.results)
            rows.append({"bits": bits, "calibration": method, "accuracy": ev.accuracy, "std": ev.std,
                         "per_chip": ev.per_chip, "drop_points": 100 * (ideal - ev.accuracy),
                         "calibration_time_s": cal, "total_time_s": total, "calibration_share": cal / total})
            print(f"  {bits}-bit ADC, {method:11s}: {100 * ev.accuracy:6.2f} % +- {100 * ev.std:.2f} "
                  f"({100 * (ideal - ev.accuracy):+.2f} points below ideal); calibration {cal:.2f} s of "
                  f"{total:.1f} s", file=sys.stderr, flush=True)
    result = {"network": "Fashion-MNIST MLP [784, 256, 10]", "preset": base.name, "tile": args.tile,
              "program_noise": args.program_noise, "mode": "noisy", "chips": args.chips,
              "chip_seeds": list(range(args.first_chip, args.first_chip + args.chips)), "samples": len(test_set),
              "ideal": ideal, "rows": rows}
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=2) + "\n")
    print(f"Fashion-MNIST MLP [784, 256, 10] deployed as trained on {base.name}, {args.tile}x{args.tile} tiles, "
          f"{100 * args.program_noise:g} % programming noise, {args.chips} chips, {len(test_set)} test images; "
          f"ideal {100 * ideal:.2f} %")
    titles = {"default": "default (percentile 99, column scale)", "p99.99": "percentile 99.99", "mse": "mse",
              "fixed": "fixed range (adc.range 0.125)", "layer scale": "layer scale"}
    print("| ADC bits | " + " | ".join(titles[m] for m in args.methods) + " | calibration time / evaluation |")
    print("|---|" + "---|" * (len(args.methods) + 1))
    for bits in [16] + list(args.bits):
        cells = []
        for m in args.methods:
            r = next(r for r in rows if r["bits"] == bits and r["calibration"] == m)
            cells.append(f"{100 * r['accuracy']:.2f} ± {100 * r['std']:.2f} % ({-r['drop_points']:+.2f})")
        share = next((r["calibration_share"] for r in rows if r["bits"] == bits and r["calibration"] == "default"),
                     float("nan"))
        print(f"| {bits} | {' | '.join(cells)} | {100 * share:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
