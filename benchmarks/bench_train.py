"""Training benchmark: memsim's fully memristive SNN against an snnTorch surrogate-gradient LIF baseline.

Both networks have the same layer sizes, time steps, input (direct: the image held over all steps), loss
(cross-entropy on the output membrane potential at every step), optimizer, batch size, epochs, gradient
clipping, seed and thread count, and are measured in the same run on the same machine. Each job runs in its
own process so that its peak memory (resident set; CUDA: max allocated) is its own.

    python benchmarks/bench_train.py digits                       # quickstart + baseline (~2-3 min)
    python benchmarks/bench_train.py fashion                      # Fashion-MNIST ideal + baseline, 20 epochs
    python benchmarks/bench_train.py fashion-hw --init CKPT       # hardware-aware fine-tuning + evaluation
    options: --device cpu|cuda, --threads N, --out results.json

Prints one JSON line per job and a summary with the memsim / snnTorch time-per-epoch ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _steady(times: list[float]) -> float:
    """Mean time per epoch without the first epoch (which also pays torch.compile and warm-up), when there
    are at least two; the first epoch is reported separately."""
    rest = times[1:] or times
    return sum(rest) / len(rest)


def _peak_memory_mb(device: str) -> dict:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device == "cuda":
        import torch
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


# ----------------------------------------------------------------------------------------------------------
# workers (run in a subprocess)

def worker_memsim(args) -> dict:
    from memsim.training.config import load_config
    from memsim.training.loop import train

    overrides = [f"training.epochs={args.epochs}", f"training.threads={args.threads}",
                 f"training.device={args.device}", f"output.dir={args.run_dir}", *args.set]
    cfg = load_config(ROOT / args.config, overrides)
    t0 = time.perf_counter()
    result = train(cfg, progress=False, log=lambda s: print(s, file=sys.stderr, flush=True),
                   init=args.init or None)
    wall = time.perf_counter() - t0
    h = result.history
    out = {"job": args.job, "framework": "memsim", "config": args.config, "layers": list(cfg.network.layers),
           "time_steps": cfg.network.time_steps, "epochs": len(h), "wall_s": wall,
           "epoch_time_s": _steady([r["epoch_time_s"] for r in h]), "first_epoch_time_s": h[0]["epoch_time_s"],
           "compile": cfg.training.compile,
           "test_accuracy": h[-1]["test_accuracy"], "best_test_accuracy": max(r["test_accuracy"] for r in h),
           "curve": [round(r["test_accuracy"], 4) for r in h], "checkpoint": str(result.checkpoint),
           "threads": args.threads, "device": args.device, "crossbar": cfg.network.crossbar,
           "hardware_aware": cfg.hardware.aware}
    if args.evaluate:
        from memsim.training.loop import evaluate_checkpoint
        t1 = time.perf_counter()
        for preset in args.evaluate:
            r = evaluate_checkpoint(result.checkpoint, preset=preset, seeds=args.eval_seeds,
                                    limit=args.eval_limit or None)
            out[f"eval[{preset}]"] = {"accuracy": r["accuracy"], "std": r["std"], "seeds": r["seeds"],
                                      "mode": r["mode"], "samples": r["samples"], "per_seed": r["per_seed"]}
            print(f"eval {preset}: {out[f'eval[{preset}]']}", file=sys.stderr, flush=True)
        out["eval_time_s"] = time.perf_counter() - t1
    out.update(_peak_memory_mb(args.device))
    return out


def worker_snntorch(args) -> dict:
    import torch
    import snntorch as snn
    from snntorch import surrogate
    from torch import nn
    from torch.nn import functional as F

    from memsim.training.config import load_config
    from memsim.training.loop import learning_rate, load_datasets

    cfg = load_config(ROOT / args.config, [*args.set])
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(cfg.training.seed)
    layers = list(cfg.network.layers)
    T = cfg.network.time_steps
    train_set, test_set = load_datasets(cfg)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            grad = surrogate.fast_sigmoid(slope=25)
            self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
            self.lifs = nn.ModuleList(snn.Leaky(beta=args.beta, spike_grad=grad) for _ in layers[1:])

        def forward(self, x):
            mems = [lif.init_leaky() for lif in self.lifs]
            out = []
            for _ in range(T):
                h = x
                for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                    spk, mems[k] = lif(fc(h), mems[k])
                    h = spk
                out.append(mems[-1])
            return torch.stack(out)          # [T, B, C] output membrane potential

    net = Net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.training.learning_rate)
    gen = torch.Generator().manual_seed(cfg.training.seed)
    xs, ys = train_set.images.to(device), train_set.labels.to(device)
    xt, yt = test_set.images.to(device), test_set.labels.to(device)
    bs = cfg.training.batch_size
    curve, times = [], []
    n_batches = -(-len(ys) // bs)
    t_all = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        t0 = time.perf_counter()
        for b, idx in enumerate(torch.randperm(len(ys), generator=gen).split(bs)):
            for group in opt.param_groups:  # the same schedule as memsim's (training.lr_schedule)
                group["lr"] = learning_rate(cfg, epoch * n_batches + b, args.epochs * n_batches)
            idx = idx.to(device)
            mem = net(xs[idx])
            loss = F.cross_entropy(mem.reshape(-1, mem.shape[-1]), ys[idx].repeat(T))
            opt.zero_grad()
            loss.backward()
            if cfg.training.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.training.grad_clip)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xt[i:i + 512]).mean(0).argmax(1) == yt[i:i + 512]).sum())
                          for i in range(0, len(yt), 512))
        curve.append(round(correct / len(yt), 4))
        print(f"snntorch epoch {epoch + 1}: test {curve[-1]:.4f} ({times[-1]:.1f} s)", file=sys.stderr, flush=True)
    out = {"job": args.job, "framework": "snntorch", "config": args.config, "layers": layers, "time_steps": T,
           "epochs": args.epochs, "wall_s": time.perf_counter() - t_all, "epoch_time_s": _steady(times),
           "first_epoch_time_s": times[0],
           "test_accuracy": curve[-1], "best_test_accuracy": max(curve), "curve": curve, "beta": args.beta,
           "threads": args.threads, "device": args.device}
    out.update(_peak_memory_mb(args.device))
    return out


# ----------------------------------------------------------------------------------------------------------
# driver

def _run_job(job: str, kind: str, config: str, epochs: int, ns, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, __file__, "worker", kind, "--job", job, "--config", config, "--epochs", str(epochs),
           "--threads", str(ns.threads), "--device", ns.device, "--run-dir", str(Path(ns.runs) / job),
           *(extra or [])]
    for s in ns.set:
        cmd += ["--set", s]
    print(f"# {job}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"job": job, "error": f"exit code {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def _summary(results: list[dict]) -> None:
    by = {r["job"]: r for r in results if "error" not in r}
    print("\n| job | framework | epochs | test acc (final / best) | time per epoch (s), steady / first | "
          "peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in by.values():
        print(f"| {r['job']} | {r['framework']}{' (compiled)' if r.get('compile') else ''} | {r['epochs']} | "
              f"{100 * r['test_accuracy']:.2f} % / {100 * r['best_test_accuracy']:.2f} % | "
              f"{r['epoch_time_s']:.2f} / {r['first_epoch_time_s']:.2f} | {r['peak_rss_mb']:.0f}"
              + (f" (CUDA {r['peak_cuda_mb']:.0f})" if "peak_cuda_mb" in r else "") + " |")
    pairs = [(a, b) for a in by.values() for b in by.values()
             if a["framework"] == "memsim" and b["framework"] == "snntorch" and a["config"] == b["config"]]
    for a, b in pairs:
        print(f"\ntime per epoch, {a['job']} / {b['job']}: {a['epoch_time_s'] / b['epoch_time_s']:.2f}x steady, "
              f"{a['first_epoch_time_s'] / b['first_epoch_time_s']:.2f}x first epoch (goal: within 2x); accuracy "
              f"{100 * a['test_accuracy']:.2f} % vs {100 * b['test_accuracy']:.2f} %")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        p = argparse.ArgumentParser()
        p.add_argument("kind", choices=("memsim", "snntorch"))
        p.add_argument("--job", required=True)
        p.add_argument("--config", required=True)
        p.add_argument("--epochs", type=int, required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--device", default="cpu")
        p.add_argument("--run-dir", required=True)
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--init", default="")
        p.add_argument("--beta", type=float, default=0.9)
        p.add_argument("--evaluate", action="append", default=[])
        p.add_argument("--eval-seeds", type=int, default=5)
        p.add_argument("--eval-limit", type=int, default=0)
        a = p.parse_args(argv[1:])
        fn = worker_memsim if a.kind == "memsim" else worker_snntorch
        print(json.dumps(fn(a)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=("digits", "fashion", "fashion-hw"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench"))
    p.add_argument("--set", action="append", default=[], help="extra config override for every job")
    p.add_argument("--init", help="fashion-hw: start from this (ideal) checkpoint")
    p.add_argument("--eval-seeds", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--out", help="also write the results as JSON here")
    ns = p.parse_args(argv)
    results = []
    import shutil
    for job in ("digits_memsim", "digits_memsim_compiled", "fashion_memsim", "fashion_hw_memsim"):
        shutil.rmtree(Path(ns.runs) / job, ignore_errors=True)
    preset = "hfox_1t1r_64"
    if ns.suite == "digits":
        epochs = ns.epochs or 8
        results.append(_run_job("digits_memsim", "memsim", "configs/digits_quickstart.toml", epochs, ns,
                                ["--evaluate", "ideal", "--evaluate", preset, "--eval-seeds", str(ns.eval_seeds)]))
        results.append(_run_job("digits_memsim_compiled", "memsim", "configs/digits_quickstart.toml", epochs, ns,
                                ["--set", "training.compile=true"]))
        if not ns.no_baseline:
            results.append(_run_job("digits_snntorch", "snntorch", "configs/digits_quickstart.toml", epochs, ns))
    elif ns.suite == "fashion":
        epochs = ns.epochs or 20
        results.append(_run_job("fashion_memsim", "memsim", "configs/fashion_ideal.toml", epochs, ns,
                                ["--evaluate", preset, "--eval-seeds", str(ns.eval_seeds)]))
        if not ns.no_baseline:
            results.append(_run_job("fashion_snntorch", "snntorch", "configs/fashion_ideal.toml", epochs, ns))
    else:
        epochs = ns.epochs or 3
        extra = ["--evaluate", preset, "--eval-seeds", str(ns.eval_seeds)] + (["--init", ns.init] if ns.init else [])
        results.append(_run_job("fashion_hw_memsim", "memsim", "configs/fashion_hardware_aware.toml", epochs, ns,
                                extra))
    _summary(results)
    if ns.out:
        Path(ns.out).write_text(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
