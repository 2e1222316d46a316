"""A study's sweeps on one shared local pool against one pool per sweep (issue 19): the same tiny digits study, run
alternately both ways, fresh folders each round; the median wall time of each and their ratio, measured in one run.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sweeps/bench_study_pool.py [--rounds 3] [--workers 2]

The study: a [64, 16, 10] ANN trained once (copied into every round's folder, so only the sweeps run), three sweeps of
4 points each (digits, 2 chips, the whole 360-image test split). With points this short the workers' start-up (spawn,
imports, the dataset) dominates, which is what sharing the pool saves: 1 start instead of one per sweep.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from memsim.sweep.study import parse_study, plan_study, run_study  # noqa: E402

STUDY = """
name = "pool_bench"
[networks.ann]
config = "digits_quickstart"
overrides = { "network.kind" = "ann", "network.layers" = [64, 16, 10], "training.epochs" = 2, "output.plot" = false }
[[sweep]]
name = "tiles"
network = "ann"
base = { mode = "noisy", chips = 2, limit = 0 }
axes = { "tile.size" = [16, 32, 64, 128] }
[[sweep]]
name = "noise"
network = "ann"
base = { mode = "noisy", chips = 2, limit = 0 }
axes = { "noise.program" = [0.0, 0.025, 0.05, 0.1] }
[[sweep]]
name = "adc"
network = "ann"
base = { mode = "noisy", chips = 2, limit = 0 }
axes = { "adc.bits" = [4, 6, 8], "adc.calibration" = ["fixed"] }
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-study-pool-") as tmp:
        tmp = Path(tmp)
        study = parse_study(tomllib.loads(STUDY), source="pool_bench.toml", root=tmp)
        trained = tmp / "trained"
        run_study(plan_study(study, trained), workers=1, progress=False, log=lambda *_: None)  # the network, once
        times = {"shared": [], "per sweep": []}
        for r in range(a.rounds):
            for mode in ("shared", "per sweep") if r % 2 == 0 else ("per sweep", "shared"):
                out = tmp / f"{mode.replace(' ', '_')}_{r}"
                shutil.copytree(trained, out, ignore=shutil.ignore_patterns("sweeps", "results.csv", "summary.md"))
                t = time.perf_counter()
                res = run_study(plan_study(study, out), workers=a.workers, progress=False, log=lambda *_: None,
                                share_pool=mode == "shared")
                times[mode].append(time.perf_counter() - t)
                assert sum(s["ran"] for s in res["sweeps"].values()) == 11
                print(f"round {r + 1} {mode}: {times[mode][-1]:.1f} s", flush=True)
        med = {m: statistics.median(v) for m, v in times.items()}
        print(f"median wall time of the study's 3 sweeps (11 points), {a.workers} workers: shared pool "
              f"{med['shared']:.1f} s, a pool per sweep {med['per sweep']:.1f} s; per sweep / shared = "
              f"{med['per sweep'] / med['shared']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
