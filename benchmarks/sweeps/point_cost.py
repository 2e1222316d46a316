"""What one point of each kind of the Fashion-MNIST study costs, and the study's estimated wall time.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sweeps/point_cost.py --networks studies/fashion_dse_quick \
        [--study benchmarks/sweeps/study.toml] [--workers 2] [--speedup 1.84] [--json FILE]

Evaluates, one at a time in this process (one torch thread), the points listed in PROBES below: each exactly as the
full study resolves it (its sweep's base and axes: 3 chips, the full 10 000-image test set), with the networks of the
study folder --networks (a --quick run is enough: the cost of a point does not depend on how well its network was
trained). The dataset is loaded once before the first probe (a pool worker loads it once too), so each probe's time is
its own: deploying on the chips (programming, calibration), the evaluation, and for a fine-tuned point the
fine-tuning epoch. Each probe reports its wall time and its CPU time (this process's: on a machine shared with other
jobs the wall time grows with the load, the CPU time much less; the estimate uses the wall time).

The estimate: each (sweep, network) class's points x the mean time of its probes (the extremes of its grid: the
smallest and the largest tile, or its costliest setting), divided by --workers x (--speedup / 2) (the pool's measured
efficiency: 1.84x with 2 workers on exact-IR-drop MLP points, benchmarks/sweeps.md), plus the networks' training,
extrapolated from the --networks folder's first epoch (its batches per epoch, [quick] train_batches, scaled to a full
epoch of the full study's configs; that epoch includes one-off compilation, so it errs high).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from memsim.io import atomic_write_text  # noqa: E402
from memsim.sweep.study import load_study, plan_study  # noqa: E402
from memsim.sweep.worker import _datasets, evaluate_point  # noqa: E402
from memsim.training.checkpoint import RunDirectory  # noqa: E402
from memsim.training.config import load_config  # noqa: E402

HERE = Path(__file__).resolve().parent
#: (sweep, the point's axes): the points timed. Per class the extremes of its grid; the ADC sweep's points cost what
#: tile_noise's do at the same tile (the bits and the range change no work), mapping_unpruned's what
#: mapping_pruned's do.
PROBES = [
    ("tile_noise", {"model": "mlp", "tile.size": 32, "noise.program": 0.1}),
    ("tile_noise", {"model": "mlp", "tile.size": 256, "noise.program": 0.1}),
    ("tile_noise", {"model": "msnn", "tile.size": 32, "noise.program": 0.1}),
    ("tile_noise", {"model": "msnn", "tile.size": 256, "noise.program": 0.1}),
    ("tile_noise", {"model": "vgg", "tile.size": 32, "noise.program": 0.1}),
    ("tile_noise", {"model": "vgg", "tile.size": 256, "noise.program": 0.1}),
    ("tile_noise", {"model": "vgg_dw", "tile.size": 32, "noise.program": 0.1}),
    ("tile_noise", {"model": "vgg_dw", "tile.size": 256, "noise.program": 0.1}),
    ("tile_noise", {"model": "msnn_vgg", "tile.size": 32, "noise.program": 0.1}),   # when the study has it
    ("tile_noise", {"model": "msnn_vgg", "tile.size": 256, "noise.program": 0.1}),
    ("mapping_pruned", {"model": "mlp", "mapping": "dense", "pruning.method": "block", "prune": 0.5,
                        "noise.program": 0.1}),
    ("mapping_pruned", {"model": "mlp", "mapping": "sparse", "pruning.method": "nm_tile", "prune": 0.5,
                        "noise.program": 0.1}),
    ("mapping_pruned", {"model": "vgg_dw", "mapping": "dense", "pruning.method": "block", "prune": 0.5,
                        "noise.program": 0.1}),
    ("mapping_pruned", {"model": "vgg_dw", "mapping": "sparse", "pruning.method": "nm_tile", "prune": 0.5,
                        "noise.program": 0.1}),
    ("wires", {"model": "mlp", "tile.size": 32, "wires.r": 2.5}),
    ("wires", {"model": "mlp", "tile.size": 256, "wires.r": 2.5}),
    ("wires", {"model": "msnn", "tile.size": 32, "wires.r": 2.5}),
    ("wires", {"model": "msnn", "tile.size": 256, "wires.r": 2.5}),
    ("finetune_mlp", {"tile.size": 256, "noise.program": 0.1}),
    ("finetune_msnn", {"tile.size": 256, "noise.program": 0.1}),
]
#: a sweep whose points cost what another's do (no probe of its own)
SAME_AS = {"adc": "tile_noise", "adc_cnn": "tile_noise", "mapping_unpruned": "mapping_pruned"}


def _matches(point: dict, want: dict) -> bool:
    return all(k in point and (point[k] == v or (isinstance(v, float) and math.isclose(point[k], v)))
               for k, v in want.items())


def _at_tile(probes: list[dict], tile: int) -> float:
    """The wall time of a point on ``tile``-row tiles from its class's probes: the probe at that tile, else linear in
    log2(tile) between the nearest probed tiles below and above (the nearest one outside their range)."""
    by = {}
    for q in probes:
        by.setdefault(int(q["point"].get("tile.size", 64)), []).append(q["wall_s"])
    xs = sorted(by)
    ys = {x: sum(v) / len(v) for x, v in by.items()}
    if tile in ys:
        return ys[tile]
    lo = [x for x in xs if x < tile]
    hi = [x for x in xs if x > tile]
    if not lo or not hi:
        return ys[(lo or hi)[-1 if lo else 0]]
    a, b = lo[-1], hi[0]
    w = (math.log2(tile) - math.log2(a)) / (math.log2(b) - math.log2(a))
    return ys[a] + w * (ys[b] - ys[a])


def _network_of(entry, point) -> str:
    return point.get("model", entry.networks[0]) if len(entry.networks) > 1 else entry.networks[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", default=str(HERE / "study.toml"))
    ap.add_argument("--networks", required=True, help="a study folder of this study (e.g. its --quick run) whose "
                                                        "trained networks the probes deploy")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speedup", type=float, default=1.84, help="the pool's measured speed-up with 2 workers")
    ap.add_argument("--full-epoch", action="append", metavar="NAME",
                    help="network NAME's first epoch in --networks was a full one (not --quick's train_batches)")
    ap.add_argument("--only", help="probe only the sweeps named here (comma-separated)")
    ap.add_argument("--json", help="write the probes and the estimate here")
    ap.add_argument("--from-json", help="take the probes from this earlier --json instead of timing them again "
                                        "(with --only: all but those sweeps')")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    study = load_study(a.study)
    empty = Path(os.environ.get("TMPDIR", "/tmp")) / f"point_cost_{os.getpid()}"
    plan = plan_study(study, empty, yes=True)  # the full scale; checks only, writes nothing
    nets_dir = Path(a.networks)
    ckpt = {}
    for n in study.networks:
        latest = RunDirectory(nets_dir / "networks" / n).latest_checkpoint()
        if latest is None:
            raise SystemExit(f"point_cost.py: no checkpoint of network {n} under {nets_dir}/networks/{n}. Fix: run "
                             f"memsim sweep study {a.study} --quick --out {nets_dir} first")
        ckpt[n] = str(latest.path)
    entries = {e.name: e for e, _ in plan.sweeps}
    only = set(a.only.split(",")) if a.only else None

    t0 = time.perf_counter()
    cfg = load_config(plan.networks[next(iter(plan.networks))].network.config_file)
    _datasets(cfg)  # the dataset once, as a pool worker loads it once
    load_s = time.perf_counter() - t0
    print(f"dataset loaded in {load_s:.1f} s", flush=True)
    probes = json.loads(Path(a.from_json).read_text())["probes"] if a.from_json else []
    if a.from_json:  # --only: those sweeps timed again, the others' probes kept
        probes = [q for q in probes if only and q["sweep"] not in only]
    for sweep, want in (PROBES if only or not a.from_json else []):
        if only and sweep not in only:
            continue
        entry = entries[sweep]
        spec = plan.specs[sweep]
        pts = [p for p in spec.points() if _matches(p, want)]
        if not pts and want.get("model") not in study.networks:  # a network this study does not have
            continue
        if not pts:
            raise SystemExit(f"point_cost.py: no point of sweep {sweep} matches {want}")
        point = pts[0]
        r = spec.resolve(point)
        net = _network_of(entry, point)
        r["checkpoint"] = ckpt[net]
        t, c = time.perf_counter(), time.process_time()
        rec = evaluate_point(r)
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        m = rec.get("metrics", {})
        row = {"sweep": sweep, "network": net, "point": point, "status": rec["status"], "error": rec.get("error"),
               "wall_s": dt, "cpu_s": cpu, "eval_time_s": m.get("eval_time_s"),
               "calibration_time_s": m.get("calibration_time_s"),
               "samples": m.get("samples"), "chips": r["chips"], "mode": r["mode"], "tiles": m.get("tiles")}
        probes.append(row)
        print(json.dumps(row, default=str), flush=True)

    # the estimate: every point of the plan at the time of its class's probes (its own sweep's, else SAME_AS's) on the
    # same network, at its tile size (interpolated in log2(tile) between the probed tiles where it has no probe)
    ok = [q for q in probes if q["status"] == "ok"]
    rows = []
    for e, _ in plan.sweeps:
        spec = plan.specs[e.name]
        per_net: dict = {}
        for p in spec.points():
            n = _network_of(e, p)
            tile = spec.resolve(p)["preset"].get("tile.size", 64)
            cls = [q for q in ok if q["sweep"] == e.name and q["network"] == n] or \
                [q for q in ok if q["sweep"] == SAME_AS.get(e.name) and q["network"] == n]
            t = _at_tile(cls, tile) if cls else None
            k, tot = per_net.get(n, (0, 0.0))
            per_net[n] = (k + 1, None if t is None or tot is None else tot + t)
        for n, (k, tot) in per_net.items():
            rows.append({"sweep": e.name, "network": n, "points": k,
                         "s_per_point": None if tot is None else tot / k, "serial_s": tot})
    est = pd.DataFrame(rows)
    eff = a.speedup / 2
    train = {}
    for n, p in plan.networks.items():
        metrics = nets_dir / "networks" / n / "metrics.csv"
        q = pd.read_csv(metrics).iloc[0]
        n_train = len(_datasets(p.config)[0].labels)
        full_batches = math.ceil(n_train / p.config.training.batch_size)
        meta = nets_dir / "study.json"
        quick_run = meta.is_file() and json.loads(meta.read_text()).get("scale") == "quick"
        qb = study.quick["train_batches"] if quick_run and n not in (a.full_epoch or []) else 0
        per_epoch = q["epoch_time_s"] * (full_batches / min(qb, full_batches) if qb else 1) + q["eval_time_s"]
        train[n] = {"epochs": p.config.training.epochs, "s_per_epoch": per_epoch,
                    "s": per_epoch * p.config.training.epochs}
    serial = float(est["serial_s"].sum())
    missing = est[est["s_per_point"].isna()]
    sweeps_wall = serial / (a.workers * eff) if a.workers > 1 else serial
    train_s = sum(v["s"] for v in train.values())
    out = {"dataset_load_s": load_s, "probes": probes, "classes": rows, "training": train,
           "points": int(est["points"].sum()), "sweeps_serial_s": serial, "workers": a.workers,
           "speedup": a.speedup, "sweeps_wall_s": sweeps_wall, "training_s": train_s,
           "total_wall_s": sweeps_wall + train_s, "unmeasured_classes": missing[["sweep", "network"]].values.tolist()}
    print(est.to_string(index=False))
    print(json.dumps({k: v for k, v in out.items() if k not in ("probes", "classes")}, indent=1, default=str))
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
