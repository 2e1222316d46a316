"""Sweep runner throughput, measured in one run on the same spec:

* a local process pool of 2 workers against serial (in-process) evaluation: points per minute, over the whole run
  (worker start-up included) and in steady state (from the first to the last finished point);
* Ray on a local instance (2 CPUs) against the local pool: the overhead per point, and Ray's start-up;
* with --fashion CHECKPOINT: the Fashion-MNIST MSNN with exact IR drop (mode irdrop), points per minute.

    python benchmarks/bench_sweep.py [--points 16] [--fashion /work/runs_shared/msnn_fashion_784_256_10/checkpoints/epoch_0005.pt]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsim.training.config import parse_config  # noqa: E402
from memsim.sweep import parse_spec  # noqa: E402
from memsim.sweep.runner import ResultsDir, run_sweep  # noqa: E402
from memsim.training.loop import train  # noqa: E402


def steady_rate(out: Path) -> float:
    """Points per minute between the first and the last finished point (worker start-up excluded)."""
    t = sorted(r["finished_at"] for r in ResultsDir(out).records())
    return (len(t) - 1) / (t[-1] - t[0]) * 60 if len(t) > 1 and t[-1] > t[0] else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=16, choices=(4, 8, 16, 32, 64))
    ap.add_argument("--checkpoint", help="deploy this checkpoint instead of a digits MSNN trained here (e.g. the "
                                         "Fashion-MNIST MLP: longer points, so worker start-up weighs less)")
    ap.add_argument("--limit", type=int, default=360, help="test images per chip (digits: 360 in all)")
    ap.add_argument("--fashion", help="Fashion-MNIST MSNN checkpoint for the exact-IR-drop throughput")
    ap.add_argument("--fashion-limit", type=int, default=250)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    cfg = parse_config({"network": {"layers": [64, 64, 10], "time_steps": 25},
                        "training": {"epochs": 2, "batch_size": 64},
                        "output": {"dir": str(work / "run"), "plot": False}})
    ckpt = args.checkpoint or train(cfg, progress=False, log=lambda *_: None).checkpoint
    axes = {"tile.size": [16, 32], "noise.program": [0.0, 0.05]}                      # 4 points
    if args.points >= 8:
        axes["adc.bits"] = [4, 8]
    if args.points >= 16:
        axes["tile.size"] = [8, 16, 32, 64]
    if args.points >= 32:
        axes["mapping"] = ["dense", "sparse"]
    if args.points >= 64:
        axes["prune"] = [0.0, 0.5]
    spec = parse_spec({"name": "bench", "base": {"checkpoint": str(ckpt), "mode": "noisy", "chips": 3,
                                                 "limit": args.limit}, "axes": axes})
    n = len(spec.points())
    res = {"points": n, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    runs = [("serial", dict(workers=1)), ("pool2", dict(workers=2))]
    if not args.skip_ray:
        runs.append(("ray2", dict(workers=2, backend="ray")))
    import resource

    def cpu_s():  # this process and its finished children (the pool's workers), user + system
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    for name, kw in runs:
        t0, c0 = time.perf_counter(), cpu_s()
        r = run_sweep(spec, work / name, progress=False, **kw)
        dt, dc = time.perf_counter() - t0, cpu_s() - c0
        assert r["failed"] == 0, r
        res[name] = {"s": dt, "pt_per_min": n / dt * 60, "steady_pt_per_min": steady_rate(work / name),
                     "cores_used": dc / dt}
        print(f"{name:7s} {n} points in {dt:6.1f} s: {n / dt * 60:6.1f} pt/min "
              f"(steady state {res[name]['steady_pt_per_min']:6.1f} pt/min); CPU time / wall time = "
              f"{dc / dt:.2f} cores" + (" (Ray workers are not children: not counted)" if name == "ray2" else ""),
              flush=True)
    s, p = res["serial"], res["pool2"]
    res["pool_vs_serial"] = p["pt_per_min"] / s["pt_per_min"]
    res["pool_vs_serial_steady"] = p["steady_pt_per_min"] / s["steady_pt_per_min"]
    print(f"pool of 2 vs serial: {res['pool_vs_serial']:.2f}x (steady state {res['pool_vs_serial_steady']:.2f}x); "
          f"target >= 1.7x")
    if "ray2" in res:
        ry = res["ray2"]
        res["ray_overhead_per_point_s"] = (ry["s"] - p["s"]) / n
        res["ray_steady_overhead_per_point_s"] = 60 / ry["steady_pt_per_min"] - 60 / p["steady_pt_per_min"]
        print(f"Ray (local, 2 CPUs) vs pool: {res['ray_overhead_per_point_s']:+.2f} s per point over the whole run "
              f"(start-up included), {res['ray_steady_overhead_per_point_s']:+.2f} s per point in steady state")
    if args.fashion:
        fspec = parse_spec({"name": "fashion_irdrop", "base": {"checkpoint": args.fashion, "mode": "irdrop",
                                                              "chips": 1, "limit": args.fashion_limit},
                            "axes": {"tile.size": [64, 128], "wires.r": [1.0]}})
        t0 = time.perf_counter()
        r = run_sweep(fspec, work / "fashion", workers=2, progress=False)
        dt = time.perf_counter() - t0
        recs = ResultsDir(work / "fashion").records()
        per = [x["elapsed_s"] for x in recs]
        res["fashion_irdrop"] = {"points": len(recs), "s": dt, "pt_per_min": len(recs) / dt * 60,
                                 "point_s": per, "limit": args.fashion_limit, "chips": 1,
                                 "accuracy": [x.get("metrics", {}).get("accuracy") for x in recs]}
        print(f"Fashion-MNIST MSNN, exact IR drop, {args.fashion_limit} images x 1 chip per point: "
              f"{len(recs) / dt * 60:.2f} pt/min over the run (2 workers; per point {', '.join(f'{x:.0f}' for x in per)} s)")
    res["load_after"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
