"""In-situ (pulsed) training of the Fashion-MNIST MLP [784, 256, 10]: accuracy and cost against float SGD.

In one process, through the training runner (:func:`memsim.training.train`, ``training.update = "pulsed"``), the
same network, initialisation, batch order and recipe (SGD, momentum 0, ``--lr``, batch ``--batch``) trained

* in float (the reference);
* with pulsed analog SGD on ``pulse_ideal_linear`` (an ideal symmetric linear device, 1000 steps per window):
  target within 2 points of float;
* with pulsed analog SGD and with Tiki-Taka on ``stanford_pku_hfox_10k``'s response derived from its state
  equation (depression pulses -0.8 V, 100 ns: the gradual branch of a filamentary RRAM; its set branch is abrupt)
  and on ``pulse_exp_saturation`` (NeuroSim-style asymmetric LTP/LTD nonlinearity with cycle-to-cycle noise and
  device-to-device spread): the drop from float, and the fraction of it Tiki-Taka recovers (target >= 1/2);

for ``--epochs`` epochs of ``--batches`` batches each (a different random subset of the 60 000 training images
every epoch; the full 10 000-image test set after each). Then the cost: a training epoch of each pulsed contender
against a ``noisy`` hardware-aware epoch of the same network on ``hfox_1t1r_64`` (target <= 3x), timed over
``--timing-batches`` batches, the contenders alternated in ``--rounds`` rounds (median), so that the load of a
shared machine affects them alike.

Settings are chosen with ``--validation``: training on the first 50 000 training images and evaluating on the last
10 000 (held out, never trained on; written once under OUT as ``custom_idx`` files), the test set untouched; the
chosen settings are then run once without it, on the full test set.

    python benchmarks/bench_insitu.py OUT [--epochs 3] [--batches 300] [--validation] [--out-md benchmarks/insitu.md]

Writes under OUT (runs, results.json) and the table to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim.io import atomic_write_text  # noqa: E402
from memsim.training import train  # noqa: E402
from memsim.training.config import parse_config  # noqa: E402
from memsim.training.data import IDX_FILES, find_idx_files, read_idx, write_idx  # noqa: E402

#: --validation: the last HELD_OUT training images are held out (never trained on) and evaluated instead of the test set
HELD_OUT = 10000

STANFORD = {"pulse_response": "stanford_pku_hfox_10k", "pulse_polarity": "reset", "pulse_set_voltage": 1.1,
            "pulse_reset_voltage": -0.8, "pulse_width": 1e-7}
EXPSAT = {"pulse_response": "pulse_exp_saturation"}
PULSED = {"update": "pulsed"}
TT = {"pulse_algorithm": "tiki_taka"}  # its settings: the --tt-* options

CONTENDERS = {
    "float SGD": {},
    "pulsed SGD, ideal linear": {**PULSED, "pulse_response": "pulse_ideal_linear"},
    "pulsed SGD, stanford_pku_hfox_10k (derived)": {**PULSED, **STANFORD},
    "Tiki-Taka, stanford_pku_hfox_10k (derived)": {**PULSED, **STANFORD, **TT},
    "pulsed SGD, pulse_exp_saturation": {**PULSED, **EXPSAT},
    "Tiki-Taka, pulse_exp_saturation": {**PULSED, **EXPSAT, **TT},
}
AWARE = "noisy hardware-aware (hfox_1t1r_64)"


def validation_split(args, out: Path) -> Path:
    """A folder of IDX files (``custom_idx``) whose training split is the first 50 000 Fashion-MNIST training
    images and whose 'test' split is the last :data:`HELD_OUT` training images: the validation set on which
    settings are chosen, the test set left untouched. Written once (atomically), then reused."""
    folder = out / "validation_split"
    if all((folder / IDX_FILES[key]).exists() for key in IDX_FILES):
        return folder
    paths = find_idx_files("fashion_mnist", args.data_dir or None, download=False, split="train")
    images, labels = read_idx(paths[("train", "images")], 3), read_idx(paths[("train", "labels")], 1)
    keep = len(labels) - HELD_OUT
    for split, sl in (("train", slice(0, keep)), ("test", slice(keep, None))):
        write_idx(folder / IDX_FILES[(split, "images")], images[sl])
        write_idx(folder / IDX_FILES[(split, "labels")], labels[sl])
    return folder


def config(args, out: Path, name: str, training: dict, *, aware: bool = False, epochs: int | None = None):
    if args.validation:
        source = {"dataset": "custom_idx", "num_classes": 10, "data_dir": str(validation_split(args, args.out))}
    else:
        source = {"dataset": "fashion_mnist", "download": False, **({"data_dir": args.data_dir} if args.data_dir
                                                                    else {})}
    data = {"data": source,
            "network": {"kind": args.kind, "layers": [784, 256, 10],
                        **({"crossbar": "hfox_1t1r_64"} if aware else {})},
            "training": {"epochs": epochs or args.epochs, "batch_size": args.batch, "optimizer": "sgd",
                         "momentum": 0.0, "learning_rate": args.lr, "lr_schedule": args.lr_schedule,
                         "grad_clip": args.grad_clip, "seed": args.seed,
                         "device": "cpu", "threads": args.threads, "pulse_weight_range": args.weight_range,
                         "pulse_max": args.max_pulses, "tiki_taka_every": args.tt_every,
                         "tiki_taka_fast_range": args.tt_fast_range, "tiki_taka_lr": args.tt_lr,
                         "tiki_taka_gamma": args.tt_gamma, "tiki_taka_transfer": args.tt_transfer, **training},
            "hardware": {"aware": aware, "mode": "noisy"},
            "output": {"dir": str(out / name), "plot": False}}
    return parse_config(data, source=f"bench_insitu:{name}")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=300, help="batches per epoch (a random subset each epoch)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kind", choices=("ann", "msnn"), default="ann", help="the network: the MLP, or the MSNN "
                                                                        "(MIF neurons, T = 25, ideal crossbar)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                    help="the learning rate over the run, the same for every contender")
    ap.add_argument("--grad-clip", type=float, default=0.0)
    ap.add_argument("--weight-range", type=float, default=4.0)
    ap.add_argument("--max-pulses", type=int, default=10)
    ap.add_argument("--tt-every", type=int, default=16, help="Tiki-Taka: steps between transfers")
    ap.add_argument("--tt-fast-range", type=float, default=0.25, help="Tiki-Taka: A's window in units of C's")
    ap.add_argument("--tt-lr", type=float, default=1.0, help="Tiki-Taka: transfer rate (C += rate x A)")
    ap.add_argument("--tt-gamma", type=float, default=1.0, help="Tiki-Taka: weight = C + gamma A")
    ap.add_argument("--tt-transfer", choices=("reset", "residual"), default="residual",
                    help="Tiki-Taka: after a transfer A is reset, or keeps what was not transferred")
    ap.add_argument("--validation", action="store_true",
                    help=f"train on the first 50 000 training images and evaluate on the last {HELD_OUT} (held "
                         "out, never trained on) instead of the test set: for choosing settings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timing-batches", type=int, default=60)
    ap.add_argument("--only", default="", help="comma-separated contender numbers (1-based) to train; '' = all")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--out-md", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--render", action="store_true", help="only rewrite the table from OUT/results.json (the "
                                                           "run's own options must be given again)")
    args = ap.parse_args(argv)
    if args.render:
        saved = json.loads((args.out / "results.json").read_text())
        text = markdown(args, saved["results"], saved["timing_s_per_step"],
                        summarise(saved["results"], saved["timing_s_per_step"]))
        print(text)
        if args.out_md:
            atomic_write_text(args.out_md, text)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    quiet = lambda *_: None  # noqa: E731

    names = list(CONTENDERS)
    chosen = [names[int(i) - 1] for i in args.only.split(",")] if args.only else names
    results: dict[str, dict] = {}
    for name in chosen:
        cfg = config(args, args.out / "runs", slug(name), CONTENDERS[name])
        t0 = time.perf_counter()
        res = train(cfg, progress=False, log=quiet, max_batches=args.batches)
        hist = res.history
        results[name] = {"test_accuracy": [r["test_accuracy"] for r in hist],
                         "epoch_time_s": [r["epoch_time_s"] for r in hist],
                         "pulses": [r.get("pulses") for r in hist], "pulses_clipped": [r.get("pulses_clipped")
                                                                                        for r in hist],
                         "refreshes": [r.get("refreshes") for r in hist], "transfers": [r.get("transfers")
                                                                                       for r in hist],
                         "wall_s": time.perf_counter() - t0}
        accuracy = [round(100 * a, 2) for a in results[name]["test_accuracy"]]
        print(f"{name}: {evaluated(args)} accuracy per epoch {accuracy} %, "
              f"clipped {results[name]['pulses_clipped']}, refreshes {results[name]['refreshes']}", flush=True)

    timing: dict[str, list[float]] = {}
    if not args.skip_timing:
        timed = {"float SGD": ({}, False), **{n: (CONTENDERS[n], False) for n in names[1:4]}, AWARE: ({}, True)}
        for r in range(args.rounds):
            for name, (training, aware) in timed.items():
                cfg = config(args, args.out / "timing" / f"round{r}", slug(name), training, aware=aware, epochs=1)
                res = train(cfg, progress=False, log=quiet, max_batches=args.timing_batches)
                timing.setdefault(name, []).append(res.final["epoch_time_s"] / args.timing_batches)
            print(f"timing round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {1e3 * v[-1]:.2f} ms/step"
                                                                       for n, v in timing.items()), flush=True)

    summary = summarise(results, timing)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
               "timing_s_per_step": timing, "summary": summary,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"}
    atomic_write_text(args.out / "results.json", json.dumps(payload, indent=1))
    text = markdown(args, results, timing, summary)
    print(text)
    if args.out_md:
        atomic_write_text(args.out_md, text)
    return 0


def summarise(results: dict, timing: dict) -> dict:
    out: dict = {}
    final = {n: r["test_accuracy"][-1] for n, r in results.items()}
    ref = final.get("float SGD")
    if ref is not None:
        out["drop_points"] = {n: 100 * (ref - a) for n, a in final.items()}
        for device in ("stanford_pku_hfox_10k (derived)", "pulse_exp_saturation"):
            sgd, tt = final.get(f"pulsed SGD, {device}"), final.get(f"Tiki-Taka, {device}")
            if sgd is not None and tt is not None and ref > sgd:
                out.setdefault("recovered", {})[device] = (tt - sgd) / (ref - sgd)
            elif sgd is not None and tt is not None:
                out.setdefault("no_drop", []).append(device)
    if AWARE in timing:  # the ratio within each round (the same load for both), then the median over rounds
        out["cost_vs_aware"] = {n: statistics.median(a / b for a, b in zip(v, timing[AWARE]))
                                for n, v in timing.items()}
    return out


def evaluated(args) -> str:
    """What the accuracy columns were measured on."""
    return "validation" if args.validation else "test"


def markdown(args, results, timing, summary) -> str:
    split = evaluated(args)
    net = "MLP" if args.kind == "ann" else "MSNN (MIF neurons, 25 time steps)"
    lines = [f"# In-situ (pulsed) training: Fashion-MNIST {net} [784, 256, 10]", "",
             f"`python benchmarks/bench_insitu.py OUT --kind {args.kind} --epochs {args.epochs} --batches "
             f"{args.batches} --lr {args.lr:g} --lr-schedule {args.lr_schedule} --grad-clip {args.grad_clip:g} "
             f"--tt-every {args.tt_every} --tt-fast-range {args.tt_fast_range:g} --tt-lr {args.tt_lr:g} --tt-gamma "
             f"{args.tt_gamma:g} --tt-transfer {args.tt_transfer} --seed {args.seed}"
             f"{' --validation' if args.validation else ''} --rounds {args.rounds} --timing-batches "
             f"{args.timing_batches}` "
             f"(SGD, momentum 0, learning rate {args.lr:g} ({args.lr_schedule}), gradient-norm clip "
             f"{args.grad_clip:g} (0 = off), batch "
             f"{args.batch}, seed {args.seed}; pulsed: window = "
             f"{args.weight_range:g} x the layer's largest initial |w|, at most {args.max_pulses} pulses per device "
             f"per step, refresh at 0.8 of the window; Tiki-Taka: gamma {args.tt_gamma:g}, transfer every "
             f"{args.tt_every} steps at rate {args.tt_lr:g}, fast window {args.tt_fast_range:g} x the slow one, "
             f"{args.tt_transfer} after a transfer). Each epoch is {args.batches} batches "
             f"({args.batches * args.batch} images, a different random subset of the "
             + (f"first 50 000 training images each epoch); validation accuracy on the last {HELD_OUT} training "
                f"images (held out, never trained on; the test set is not used). Measured on a "
                if args.validation else
                "60 000 training images each epoch); test accuracy on the full 10 000-image test set. Measured on a ")
             + f"shared, loaded 2-core machine ({args.threads} torch thread).", "",
             "Devices: `pulse_ideal_linear` (1000 equal steps per window, no noise); `stanford_pku_hfox_10k`'s "
             "response derived from its state equation under -0.8 V / 100 ns depression pulses (pairs advance from "
             "G_max, 148 pulses to mid-window, steps shrinking with the conductance; its 1.1 V set branch is abrupt "
             "and unused), no noise; `pulse_exp_saturation` (NeuroSim-style LTP/LTD saturation, 14 set pulses to "
             "mid-window, cycle-to-cycle noise 0.5 % of the window per pulse, 10 % step and 5 % bound spread "
             "between devices). The pulses columns are totals over all devices in the last epoch; clipped = cut by "
             "the per-step maximum.", "",
             f"| contender | {split} accuracy per epoch (%) | drop vs float (points) | pulses (last epoch) | "
             "clipped | refreshes |", "|---|---|---|---|---|---|"]
    drops = summary.get("drop_points", {})
    for name, r in results.items():
        acc = ", ".join(f"{100 * a:.2f}" for a in r["test_accuracy"])
        lines.append(f"| {name} | {acc} | {drops.get(name, float('nan')):+.2f} | {r['pulses'][-1] or '-'} | "
                     f"{r['pulses_clipped'][-1] if r['pulses_clipped'][-1] is not None else '-'} | "
                     f"{r['refreshes'][-1] if r['refreshes'][-1] is not None else '-'} |")
    for device, frac in summary.get("recovered", {}).items():
        lines.append(f"\nTiki-Taka recovers {100 * frac:.0f} % of pulsed SGD's drop on {device} (target >= 50 %).")
    for device in summary.get("no_drop", []):
        lines.append(f"\nPulsed SGD on {device} is not below float SGD: no drop for Tiki-Taka to recover.")
    if timing:
        lines += ["", f"Cost per training step ({args.rounds} interleaved rounds of {args.timing_batches} batches "
                      f"each: the median time, and the median over rounds of the ratio to the hardware-aware step "
                      f"of the same round; an epoch is the same number of steps for all):", "",
                  "| contender | ms per step | vs noisy hardware-aware |", "|---|---|---|"]
        for name, v in timing.items():
            lines.append(f"| {name} | {1e3 * statistics.median(v):.2f} | "
                         f"{summary['cost_vs_aware'][name]:.2f}x |")
    lines += ["", "Not searched: the learning rate, weight range or pulse budget per device (one recipe for all; "
                  "the schedule and Tiki-Taka's transfer were chosen on the validation split, benchmarks/insitu.md)."]
    lines[0] += f" ({split} split)" if args.validation else ""
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
