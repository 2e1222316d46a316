"""Exact IR drop in evaluation and training of the Fashion-MNIST MSNN, against the ideal-wire ``noisy`` mode, same run.

* **Evaluation**: a trained ``[784, 256, 10]`` MSNN (T = 25) deployed on ``hfox_1t1r_64`` and evaluated on the test
  set per chip seed in ``noisy`` mode (ideal wires) and in ``irdrop`` mode (exact IR drop through each tile's cached
  operator, the per-chip precompute included in the time).
* **Training**: the time of one hardware-aware training step (batch 128 and 256, the fine-tuning config's: forward
  over T = 25 steps, backward, the optimiser step; fresh programming noise and defects each step) in both modes,
  and the extrapolated epoch.

    python benchmarks/bench_irdrop.py CHECKPOINT [--seeds 2] [--limit 10000] [--steps 5] [--batch 128 --batch 256]

CHECKPOINT: a Fashion-MNIST MSNN checkpoint (e.g. ``memsim train fashion_ideal`` then
``runs/fashion/checkpoints/epoch_0020.pt``).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from memsim.training.checkpoint import read_checkpoint
from memsim.training.config import parse_config
from memsim.training.loop import build_encoder, evaluate_checkpoint, load_datasets, load_network, set_threads


def eval_time(ckpt: str, mode: str, seeds: int, limit: int | None) -> dict:
    t0 = time.perf_counter()
    r = evaluate_checkpoint(ckpt, preset="hfox_1t1r_64", mode=mode, seeds=seeds, limit=limit)
    r["seconds"] = time.perf_counter() - t0
    return r


def train_step_time(ckpt: str, mode: str, steps: int, batch: int = 128) -> dict:
    cfg = parse_config(read_checkpoint(ckpt).config)
    train_set, _ = load_datasets(cfg)
    encoder = build_encoder(cfg)
    net, _ = load_network(ckpt, crossbar="hfox_1t1r_64", mode=mode, noise_seed=0)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    images, labels = train_set.tensors()
    gen = torch.Generator().manual_seed(0)
    times = []
    for k in range(steps + 1):
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        t0 = time.perf_counter()
        opt.zero_grad()
        out = net(encoder(images[idx]))
        loss = net.loss(out, labels[idx])
        loss.backward()
        opt.step()
        if k:  # the first step pays one-off set-up
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    batches = (len(labels) + batch - 1) // batch
    return {"mode": mode, "batch": batch, "seconds_per_step": per_step, "epoch_estimate_s": per_step * batches,
            "steps": steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a Fashion-MNIST [784, 256, 10] MSNN checkpoint")
    ap.add_argument("--seeds", type=int, default=2, help="chips per evaluation mode")
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per mode")
    ap.add_argument("--batch", type=int, action="append", help="training batch size (repeatable; default 128 and "
                    "256, the batch of configs/fashion_hardware_aware.toml)")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)
    set_threads(1)
    if not args.skip_eval:
        # noisy, irdrop, noisy: the first run also pays data loading and warm-up; noisy keeps its faster run
        first = eval_time(args.checkpoint, "noisy", args.seeds, args.limit)
        ev = {"irdrop": eval_time(args.checkpoint, "irdrop", args.seeds, args.limit)}
        second = eval_time(args.checkpoint, "noisy", args.seeds, args.limit)
        ev["noisy"] = min(first, second, key=lambda r: r["seconds"])
        for m, r in ev.items():
            print(json.dumps({"eval": m, **{k: r[k] for k in ("accuracy", "std", "per_seed", "samples", "seconds")}}))
        print(f"evaluation, {args.seeds} chip(s) x {ev['noisy']['samples']} images: noisy {ev['noisy']['seconds']:.1f} s, "
              f"irdrop {ev['irdrop']['seconds']:.1f} s = {ev['irdrop']['seconds'] / ev['noisy']['seconds']:.2f}x; "
              f"accuracy noisy {100 * ev['noisy']['accuracy']:.2f} %, irdrop {100 * ev['irdrop']['accuracy']:.2f} %")
    if not args.skip_train:
        for batch in args.batch or (128, 256):
            tr = {m: train_step_time(args.checkpoint, m, args.steps, batch) for m in ("noisy", "irdrop")}
            for r in tr.values():
                print(json.dumps(r))
            print(f"training step, batch {batch}: noisy {tr['noisy']['seconds_per_step']:.2f} s, irdrop "
                  f"{tr['irdrop']['seconds_per_step']:.2f} s = "
                  f"{tr['irdrop']['seconds_per_step'] / tr['noisy']['seconds_per_step']:.1f}x (epoch ~"
                  f"{tr['noisy']['epoch_estimate_s']:.0f} s vs ~{tr['irdrop']['epoch_estimate_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
