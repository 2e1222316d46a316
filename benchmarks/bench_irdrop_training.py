"""Fashion MSNN hardware-aware fine-tuning with exact IR drop: the train-only time of epoch 2 (each epoch capped at N
batches, so epoch 1 pays the compilation) of configs/fashion_hardware_aware.toml in mode irdrop with
training.irdrop_reuse = 10 and 1, against mode noisy, one process, one thread (issue 21's target: <= 2x noisy).

    python benchmarks/bench_irdrop_training.py [N] [OUT]   # runs under OUT/hw_*; figures: benchmarks/crossbar.md
"""
import csv
import sys

import torch

from memsim.training import train
from memsim.training.config import load_config
torch.set_num_threads(1)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 15
OUT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/memsim_bench_irdrop_training"
for name, sets in (("noisy", {}), ("irdrop k=10", {"hardware.mode": "irdrop", "training.irdrop_reuse": 10}),
                   ("irdrop k=1", {"hardware.mode": "irdrop", "training.irdrop_reuse": 1})):
    run = f"{OUT}/hw_{name.replace(' ', '_').replace('=', '')}"
    cfg = load_config("fashion_hardware_aware", {"output.dir": run, "output.plot": False, "training.epochs": 2,
                                                 "hardware.eval_seeds": 1, **sets})
    train(cfg, progress=False, log=lambda s: None, max_batches=N)
    rows = list(csv.DictReader(open(f"{run}/metrics.csv")))
    print(f"{name}: epoch 2 train {float(rows[1]['epoch_time_s']):.2f} s for {N} batches "
          f"({float(rows[1]['epoch_time_s']) / N:.3f} s/batch); epoch 1 {float(rows[0]['epoch_time_s']):.1f} s; "
          f"test acc {rows[1]['test_accuracy']}", flush=True)
