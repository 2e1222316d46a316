"""Hardware-aware ANN fine-tuning: how much of the accuracy lost on a noisy chip one epoch wins back.

In one run: the Fashion-MNIST MLP [784, 256, 10] trained in float as ``configs/fashion_ann_mlp.toml`` says, then

* ideal      - the float network (the exact product);
* as trained - deployed on ``hfox_1t1r_64`` with 10 % programming noise (the preset's other non-idealities as
  they are: 32 levels, 8-bit DAC, 6-bit ADC with the preset's calibration, read noise, d2d variation, stuck cells,
  drift), ``noisy`` mode;
* fine-tuned - after ``--finetune-epochs`` (1) of hardware-aware training on that preset
  (``configs/fashion_ann_mlp_hardware_aware.toml``, ``memsim.ann.train.train_ann(..., preset=...)``), deployed
  the same way;
* float-tuned - the control: the same epochs with the same recipe (learning rate, +-3 sigma weight clip) in float,
  ``hardware.aware = false``, deployed the same way: what the chip in the loop adds beyond the recipe;

every deployed network evaluated with :func:`memsim.ann.deploy.evaluate_deployed` (what ``memsim evaluate`` and
sweeps run: each chip programmed once, calibrated on 256 training images, evaluated) on the full test set over
``--chips`` chips whose noise seeds (``--first-chip`` ..) training never used (training draws programming noise
from seeds 0, 1 and defects from seeds above 10^6). Prints the accuracies with their spread over chips, the
fraction of the gap recovered, ``(fine-tuned - as trained) / (ideal - as trained)``, the control's, and the
fine-tuning epoch's time against a float epoch (both measured here; on a shared machine they vary with its load).

    python benchmarks/bench_ann_finetune.py OUT [--data-dir DIR] [--epochs N] [--threads N]

Writes only under OUT: the three runs (OUT/float, OUT/finetuned, OUT/float_tuned) and OUT/results.json (the data
is read from ``--data-dir`` or the known locations, never downloaded).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim.ann.deploy import evaluate_deployed  # noqa: E402
from memsim.ann.train import train_ann  # noqa: E402
from memsim.crossbar.presets import load_preset  # noqa: E402
from memsim.io import atomic_write_text  # noqa: E402
from memsim.training.config import load_config  # noqa: E402


def _overrides(args, run: Path, epochs: int | None) -> dict:
    out = {"output.dir": str(run), "output.plot": False, "training.threads": args.threads, "data.download": False}
    if epochs is not None:
        out["training.epochs"] = epochs
    if args.data_dir:
        out["data.data_dir"] = args.data_dir
    return out


def _train(cfg, log, **kw) -> tuple[Path, list[dict], float]:
    t0 = time.perf_counter()
    result = train_ann(cfg, progress=False, log=log, **kw)
    return result.checkpoint, result.history, time.perf_counter() - t0


def _on_chips(ckpt: Path, preset, args) -> dict:
    r = evaluate_deployed(ckpt, preset, mode="noisy", seeds=args.chips, first_seed=args.first_chip,
                          limit=args.limit)
    return {"accuracy": r["accuracy"], "std": r["std"], "per_chip": r["per_seed"], "samples": r["samples"],
            "output_error": r["output_error"], "eval_time_s": r["eval_time_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the runs and results.json (nothing is written elsewhere)")
    ap.add_argument("--data-dir", default="", help="Fashion-MNIST IDX folder ('' = the known locations)")
    ap.add_argument("--epochs", type=int, default=None, help="float training epochs (default: the config's, 8)")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--preset", default="hfox_1t1r_64")
    ap.add_argument("--program-noise", type=float, default=0.1, help="programming noise, fraction of g_max - g_min")
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--first-chip", type=int, default=100, help="first evaluation chip's noise seed")
    ap.add_argument("--limit", type=int, default=None, help="first N test images only (a quick check)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty: give a new folder")

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    preset = load_preset(args.preset).replace(noise={"program": args.program_noise})
    float_cfg = load_config("fashion_ann_mlp", _overrides(args, args.out / "float", args.epochs))
    ckpt, float_hist, float_s = _train(float_cfg, log)
    ideal = evaluate_deployed(ckpt, "ideal", limit=args.limit)["accuracy"]
    as_trained = _on_chips(ckpt, preset, args)
    log(f"ideal {ideal:.4f} | as trained on {preset.name} at {args.program_noise:g} programming noise: "
        f"{as_trained['accuracy']:.4f} +- {as_trained['std']:.4f}")

    hw_cfg = load_config("fashion_ann_mlp_hardware_aware",
                         _overrides(args, args.out / "finetuned", args.finetune_epochs))
    tuned_ckpt, tuned_hist, tuned_s = _train(hw_cfg, log, init=ckpt, preset=preset)
    tuned = _on_chips(tuned_ckpt, preset, args)
    control_cfg = hw_cfg.with_overrides({"hardware.aware": False, "output.dir": str(args.out / "float_tuned")})
    control = _on_chips(_train(control_cfg, log, init=ckpt)[0], preset, args)

    gap = ideal - as_trained["accuracy"]

    def recovered(r: dict) -> float:
        return (r["accuracy"] - as_trained["accuracy"]) / gap if gap > 0 else float("nan")
    float_epoch = statistics.mean(r["epoch_time_s"] for r in float_hist)
    tuned_epoch = statistics.mean(r["epoch_time_s"] for r in tuned_hist)
    results = {"preset": preset.name, "program_noise": args.program_noise, "mode": "noisy",
               "float_epochs": len(float_hist), "finetune_epochs": len(tuned_hist), "chips": args.chips,
               "chip_seeds": list(range(args.first_chip, args.first_chip + args.chips)),
               "samples": as_trained["samples"], "ideal": ideal, "as_trained": as_trained, "finetuned": tuned,
               "float_tuned": control, "gap_recovered": recovered(tuned),
               "float_tuned_gap_recovered": recovered(control), "float_epoch_s": float_epoch,
               "finetune_epoch_s": tuned_epoch,
               "finetune_vs_float_epoch": tuned_epoch / float_epoch, "float_train_s": float_s,
               "finetune_train_s": tuned_s, "threads": args.threads}
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")

    def pct(r):
        chips = ", ".join(f"{100 * a:.2f}" for a in r["per_chip"])
        return f"{100 * r['accuracy']:.2f} % +- {100 * r['std']:.2f} (chips: {chips})"
    print(f"Fashion-MNIST MLP [784, 256, 10], float epochs: {len(float_hist)}; {preset.name}, "
          f"{100 * args.program_noise:g} % programming noise, {args.chips} unseen chips, {results['samples']} "
          f"test images")
    rows = [("ideal (float)", f"{100 * ideal:.2f} %"), ("deployed as trained", pct(as_trained)),
            (f"after hardware-aware epochs: {len(tuned_hist)}", pct(tuned)),
            ("gap recovered", f"{100 * recovered(tuned):.1f} % of {100 * gap:.2f} points"),
            ("control: same recipe in float", pct(control)),
            ("control's gap recovered", f"{100 * recovered(control):.1f} %"),
            ("fine-tuning / float epoch", f"{tuned_epoch:.1f} s / {float_epoch:.1f} s = "
                                          f"{tuned_epoch / float_epoch:.1f}x")]
    for name, value in rows:
        print(f"  {name:<34} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
