"""Training benchmark: memsim's fully memristive SNN against an snnTorch surrogate-gradient LIF baseline.

Both networks have the same layer sizes, time steps, input (direct: the image held over all steps), loss
(cross-entropy on the output membrane potential at every step), optimizer, batch size, epochs, gradient
clipping, seed and thread count, and are measured in the same run on the same machine. Each job runs in its
own process so that its peak memory (resident set; CUDA: max allocated) is its own.

    python benchmarks/bench_train.py digits                       # quickstart + baseline (~2-3 min)
    python benchmarks/bench_train.py fashion                      # Fashion-MNIST ideal + baseline, 20 epochs
    python benchmarks/bench_train.py fashion-hw --init CKPT       # hardware-aware fine-tuning + evaluation
    options: --device cpu|cuda, --threads N, --out results.json

A short speed comparison on a shared machine: cap each epoch at N training batches, run the pair R times
alternately (memsim, snnTorch, memsim, ...) and take the median of the per-round ratios, so that load on the
machine affects both alike; ``--tree DIR`` adds a memsim job from another source tree in every round (e.g.
``git archive COMMIT memsim | tar -x -C DIR``: before/after a change, in the same run). Besides the wall-clock
time per epoch, each job reports the process CPU time of its training steps (``epoch_cpu_s``), which leaves out
the time the process waited for a core:

    python benchmarks/bench_train.py fashion --epochs 3 --max-batches 50 --rounds 3 --no-eval [--tree DIR]

Prints one JSON line per job and a summary with the memsim / snnTorch time-per-epoch ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
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
    if args.tree:  # memsim from another source tree (an A/B comparison in the same run)
        sys.path.insert(0, str(Path(args.tree).resolve()))
    import memsim
    from memsim.training import loop
    from memsim.training.config import load_config
    from memsim.training.loop import train

    # the process CPU time of the training steps, per epoch: on a shared machine it leaves out the time this
    # process waited for a core, which the wall-clock epoch time includes
    cpu = [0.0]
    inner_step = loop.train_step

    def timed_step(*a, **k):
        c0 = time.process_time()
        try:
            return inner_step(*a, **k)
        finally:
            cpu[-1] += time.process_time() - c0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if line.startswith("epoch "):      # fit logs one line per finished epoch
            cpu.append(0.0)

    loop.train_step = timed_step
    overrides = [f"training.epochs={args.epochs}", f"training.threads={args.threads}",
                 f"training.device={args.device}", f"output.dir={args.run_dir}", *args.set]
    cfg = load_config(ROOT / args.config, overrides)
    t0 = time.perf_counter()
    result = train(cfg, progress=False, log=log, init=args.init or None, max_batches=args.max_batches or None)
    wall = time.perf_counter() - t0
    h = result.history
    out = {"job": args.job, "framework": "memsim", "config": args.config, "layers": list(cfg.network.layers),
           "time_steps": cfg.network.time_steps, "epochs": len(h), "wall_s": wall,
           "epoch_time_s": _steady([r["epoch_time_s"] for r in h]), "first_epoch_time_s": h[0]["epoch_time_s"],
           "epoch_cpu_s": _steady(cpu[:len(h)]), "compile": cfg.training.compile,
           "test_accuracy": h[-1]["test_accuracy"], "best_test_accuracy": max(r["test_accuracy"] for r in h),
           "curve": [round(r["test_accuracy"], 4) for r in h], "checkpoint": str(result.checkpoint),
           "threads": args.threads, "device": args.device, "crossbar": cfg.network.crossbar,
           "hardware_aware": cfg.hardware.aware, "max_batches": args.max_batches, "round": args.round,
           "tree": str(Path(memsim.__file__).resolve().parents[1])}
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
    curve, times, cpu = [], [], []
    n_batches = -(-len(ys) // bs)
    if args.max_batches:
        n_batches = min(n_batches, args.max_batches)
    t_all = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        t0, c0 = time.perf_counter(), time.process_time()
        for b, idx in enumerate(torch.randperm(len(ys), generator=gen).split(bs)):
            if args.max_batches and b >= args.max_batches:
                break
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
        cpu.append(time.process_time() - c0)
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xt[i:i + 512]).mean(0).argmax(1) == yt[i:i + 512]).sum())
                          for i in range(0, len(yt), 512))
        curve.append(round(correct / len(yt), 4))
        print(f"snntorch epoch {epoch + 1}: test {curve[-1]:.4f} ({times[-1]:.1f} s)", file=sys.stderr, flush=True)
    out = {"job": args.job, "framework": "snntorch", "config": args.config, "layers": layers, "time_steps": T,
           "epochs": args.epochs, "wall_s": time.perf_counter() - t_all, "epoch_time_s": _steady(times),
           "epoch_cpu_s": _steady(cpu),
           "first_epoch_time_s": times[0],
           "test_accuracy": curve[-1], "best_test_accuracy": max(curve), "curve": curve, "beta": args.beta,
           "threads": args.threads, "device": args.device, "max_batches": args.max_batches, "round": args.round}
    out.update(_peak_memory_mb(args.device))
    return out


# ----------------------------------------------------------------------------------------------------------
# driver

def _run_job(job: str, kind: str, config: str, epochs: int, ns, extra: list[str] | None = None, *,
             round_: int = 1, tree: str = "") -> dict:
    run_dir = Path(ns.runs) / job
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run (no resume) every time
    cmd = [sys.executable, __file__, "worker", kind, "--job", job, "--config", config, "--epochs", str(epochs),
           "--threads", str(ns.threads), "--device", ns.device, "--run-dir", str(run_dir),
           "--max-batches", str(ns.max_batches), "--round", str(round_), *(["--tree", tree] if tree else []),
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
          "CPU time per epoch (s), steady | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in by.values():
        cpu = f"{r['epoch_cpu_s']:.2f}" if "epoch_cpu_s" in r else "-"
        print(f"| {r['job']} | {r['framework']}{' (compiled)' if r.get('compile') else ''} | {r['epochs']} | "
              f"{100 * r['test_accuracy']:.2f} % / {100 * r['best_test_accuracy']:.2f} % | "
              f"{r['epoch_time_s']:.2f} / {r['first_epoch_time_s']:.2f} | {cpu} | {r['peak_rss_mb']:.0f}"
              + (f" (CUDA {r['peak_cuda_mb']:.0f})" if "peak_cuda_mb" in r else "") + " |")
    # memsim / snnTorch per (config, memsim source tree): one ratio per round, then their median
    ratios: dict[tuple, list] = {}
    for a in by.values():
        for b in by.values():
            if a["framework"] == "memsim" and b["framework"] == "snntorch" and a["config"] == b["config"] \
                    and a.get("round", 1) == b.get("round", 1):
                ratios.setdefault((a["config"], a.get("tree", ""), a.get("compile")), []).append((a, b))
    for (config, tree, compiled), pairs in ratios.items():
        steady = [a["epoch_time_s"] / b["epoch_time_s"] for a, b in pairs]
        cpu = [a["epoch_cpu_s"] / b["epoch_cpu_s"] for a, b in pairs if "epoch_cpu_s" in a and "epoch_cpu_s" in b]
        first = [a["first_epoch_time_s"] / b["first_epoch_time_s"] for a, b in pairs]
        a, b = pairs[-1]
        cap = f", {a['max_batches']} batches per epoch" if a.get("max_batches") else ""
        print(f"\ntime per epoch, memsim{' (compiled)' if compiled else ''} [{tree}] / snnTorch, {config}{cap}: "
              f"{statistics.median(steady):.2f}x steady (median of {len(steady)} round(s): "
              f"{', '.join(f'{r:.2f}' for r in steady)}), {statistics.median(first):.2f}x first epoch "
              f"(goal: within 1.5x); accuracy {100 * a['test_accuracy']:.2f} % vs {100 * b['test_accuracy']:.2f} %")
        if cpu:
            print(f"  the same in process CPU time of the training steps: {statistics.median(cpu):.2f}x steady "
                  f"({', '.join(f'{r:.2f}' for r in cpu)})")


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
        p.add_argument("--max-batches", type=int, default=0)
        p.add_argument("--round", type=int, default=1)
        p.add_argument("--tree", default="")
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
    p.add_argument("--no-eval", action="store_true", help="skip the deployment evaluations (speed runs)")
    p.add_argument("--max-batches", type=int, default=0,
                   help="train at most N batches per epoch (every job; 0: the whole training set)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the jobs R times, alternating, and report the median of the per-round ratios")
    p.add_argument("--tree", default="", help="also run memsim from this source tree in every round (A/B)")
    p.add_argument("--out", help="also write the results as JSON here")
    ns = p.parse_args(argv)
    for name, value in (("--max-batches", ns.max_batches), ("--rounds", ns.rounds - 1)):
        if value < 0:
            p.error(f"{name} must be >= {0 if name == '--max-batches' else 1}")
    if ns.tree and not (Path(ns.tree) / "memsim" / "__init__.py").is_file():
        p.error(f"--tree {ns.tree}: no memsim package there (expected {Path(ns.tree) / 'memsim' / '__init__.py'})")
    results = []
    preset = "hfox_1t1r_64"
    evaluate = [] if ns.no_eval else ["--evaluate", preset, "--eval-seeds", str(ns.eval_seeds)]
    if ns.suite == "digits":
        epochs, config = ns.epochs or 8, "configs/digits_quickstart.toml"
        jobs = [("digits_memsim", "memsim", (["--evaluate", "ideal"] + evaluate) if evaluate else [], ""),
                ("digits_memsim_compiled", "memsim", ["--set", "training.compile=true"], "")]
        if ns.tree:
            jobs.append(("digits_memsim_compiled_tree", "memsim", ["--set", "training.compile=true"], ns.tree))
        if not ns.no_baseline:
            jobs.append(("digits_snntorch", "snntorch", [], ""))
    elif ns.suite == "fashion":
        epochs, config = ns.epochs or 20, "configs/fashion_ideal.toml"
        jobs = [("fashion_memsim", "memsim", evaluate, "")]
        if ns.tree:
            jobs.append(("fashion_memsim_tree", "memsim", [], ns.tree))
        if not ns.no_baseline:
            jobs.append(("fashion_snntorch", "snntorch", [], ""))
    else:
        epochs, config = ns.epochs or 3, "configs/fashion_hardware_aware.toml"
        jobs = [("fashion_hw_memsim", "memsim", evaluate + (["--init", ns.init] if ns.init else []), "")]
    for r in range(1, ns.rounds + 1):
        for job, kind, extra, tree in jobs:
            name = f"{job}#{r}" if ns.rounds > 1 else job
            results.append(_run_job(name, kind, config, epochs, ns, extra, round_=r, tree=tree))
    _summary(results)
    if ns.out:
        Path(ns.out).write_text(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
