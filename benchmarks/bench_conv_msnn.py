"""Cost of a training step of the spiking CNN (configs/fashion_msnn_vgg.toml) against the MSNN MLP
(configs/fashion_ideal.toml), measured in one process, interleaved (every round runs each contender once, in turn)
so that the load on a shared machine affects all alike; the median of the rounds is reported, with the ratios to
the MLP and the estimated time per Fashion-MNIST epoch (60,000 images, train steps only).

Contenders: the MLP as configured (T = 25, batch 256); the spiking CNN at T = 10 and T = 25 (batch 128), ideal; the
spiking CNN at T = 10 through the hfox_1t1r_64 preset in mode noisy (its hardware-aware fine-tuning config). Random
images of the right size stand in for the data (the cost does not depend on the pixel values).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_conv_msnn.py --rounds 3 [--compile]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim.training.config import load_config  # noqa: E402
from memsim.training.loop import build_network  # noqa: E402

CONTENDERS = {  # name: (config, overrides)
    "mlp [784,256,10] T=25 B=256": ("configs/fashion_ideal.toml", []),
    "cnn ideal T=10 B=128": ("configs/fashion_msnn_vgg.toml", []),
    "cnn ideal T=25 B=128": ("configs/fashion_msnn_vgg.toml", ["network.time_steps=25"]),
    "cnn hfox noisy T=10 B=128": ("configs/fashion_msnn_vgg_hardware_aware.toml", []),
}


class Job:
    def __init__(self, config: str, overrides: list[str], compile: bool):
        self.cfg = load_config(ROOT / config, [*overrides, f"training.compile={str(compile).lower()}"])
        self.net = build_network(self.cfg).train()
        self.opt = torch.optim.Adam(self.net.parameters(), 1e-4)
        n, T, B = self.cfg.network.layers[0], self.cfg.network.time_steps, self.cfg.training.batch_size
        gen = torch.Generator().manual_seed(0)
        self.x = (torch.rand(B, n, generator=gen) * self.cfg.encoding.scale).unsqueeze(0).expand(T, B, n)
        self.y = torch.randint(0, 10, (B,), generator=gen)

    def step(self) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.net(self.x)
        loss = self.net.loss(out, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed training steps per contender and round")
    ap.add_argument("--compile", action="store_true", help="torch.compile the neuron steps (as the configs do)")
    ap.add_argument("--malloc", choices=["tuned", "system"], default="tuned",
                    help="glibc's thresholds raised as memsim's command line does (memsim.allocator), or left as they are")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.malloc == "tuned":
        from memsim.allocator import tune_malloc
        print(f"allocator: {tune_malloc()}")
    jobs = {name: Job(cfg, ov, args.compile) for name, (cfg, ov) in CONTENDERS.items()}
    for job in jobs.values():  # warm-up: compilation, first-call allocations
        job.step()
    wall = {name: [] for name in jobs}
    cpu = {name: [] for name in jobs}
    for r in range(args.rounds):
        for name, job in jobs.items():
            times = [job.step() for _ in range(args.steps)]
            wall[name].append(statistics.median(t[0] for t in times))
            cpu[name].append(statistics.median(t[1] for t in times))
        print(f"round {r + 1}: " + ", ".join(f"{n}: {wall[n][-1]:.2f} s" for n in jobs), flush=True)
    base = "mlp [784,256,10] T=25 B=256"
    print(f"\nmedian of {args.rounds} rounds, compile={args.compile}, malloc={args.malloc}, one thread")
    # wall clock includes the time waiting for a core on a loaded machine; CPU time (the process's) leaves it out
    print(f"{'contender':28s} {'s/batch':>8s} {'CPU s/batch':>12s} {'per image vs MLP (wall, CPU)':>29s} "
          f"{'min/epoch (wall, CPU)':>22s}")
    b0 = jobs[base].cfg.training.batch_size
    for name, job in jobs.items():
        B = job.cfg.training.batch_size
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rw = (w / B) / (statistics.median(wall[base]) / b0)
        rc = (c / B) / (statistics.median(cpu[base]) / b0)
        print(f"{name:28s} {w:8.3f} {c:12.3f} {rw:16.1f}x, {rc:5.1f}x {w * 60000 / B / 60:14.1f}, "
              f"{c * 60000 / B / 60:5.1f}")


if __name__ == "__main__":
    main()
