"""Run a sweep: a local process pool (default) or a Ray cluster, one atomic JSON record per point.

The results folder holds ``sweep.json`` (the spec and its fingerprint), ``points/<key>.json`` (one per finished
point, written atomically; ``key`` is the hash of the point's resolved config) and, after a run,
``results.csv`` / ``results.parquet``. A rerun skips the points already on disk, so a killed sweep loses no
finished point; a folder written by another spec is refused.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from ..io import atomic_write_text
from .spec import SweepError, SweepSpec, check_limit, point_key
from .worker import evaluate_point

BACKENDS = ("local", "ray")


class ResultsDir:
    def __init__(self, path):
        self.path = Path(path)
        self.points_dir = self.path / "points"

    @property
    def meta_path(self) -> Path:
        return self.path / "sweep.json"

    def meta(self) -> dict | None:
        if not self.meta_path.is_file():
            return None
        return json.loads(self.meta_path.read_text())

    def claim(self, spec: SweepSpec) -> None:
        """Bind the folder to ``spec``; refuse a folder that holds another spec's results."""
        fp = spec.fingerprint()
        meta = self.meta()
        if meta is not None and meta.get("fingerprint") != fp:
            raise SweepError(f"results folder {self.path} holds the results of another spec "
                             f"('{meta.get('name')}', fingerprint {meta.get('fingerprint')}; this spec: {fp}). "
                             f"Fix: give another --out folder (results of two specs are never mixed)")
        if meta is None and self.points_dir.is_dir() and any(self.points_dir.glob("*.json")):
            raise SweepError(f"results folder {self.path} holds point records but no sweep.json. Fix: give an "
                             f"empty or new --out folder")
        keys = [point_key(spec.resolve(p)) for p in spec.points()]
        atomic_write_text(self.meta_path, json.dumps({
            "name": spec.name, "fingerprint": fp, "source": spec.source, "spec": spec.to_dict(),
            "points": [{"key": k, "axes": p} for k, p in zip(keys, spec.points())]}, indent=1, default=str))

    def done(self) -> set[str]:
        if not self.points_dir.is_dir():
            return set()
        return {p.stem for p in self.points_dir.glob("*.json")}

    def write(self, key: str, record: dict) -> None:
        atomic_write_text(self.points_dir / f"{key}.json", json.dumps(record, indent=1, default=str))

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.points_dir.glob("*.json"))] \
            if self.points_dir.is_dir() else []


def _pool_init():
    import torch
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` that does not answer is an error at once (Ray's own connect retries for minutes)."""
    if address in (None, "", "auto", "local"):
        return
    a = address.split("://", 1)[-1]
    host, _, port = a.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address!r} is invalid: allowed HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or "
                         f"nothing for a local Ray instance")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(f"the Ray cluster at {address} does not answer ({exc}). Fix: start it (ray start --head) "
                         f"or give the right HOST:PORT; omit --address for a local Ray instance") from None


def _ray_init(address: str | None, workers: int):
    try:
        import ray
    except ImportError:
        raise SweepError("--backend ray needs Ray: python3 -m pip install 'memsim[sweep]'") from None
    check_ray_address(address)
    if ray.is_initialized():
        return ray, False
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address in (None, "", "local"):
        ray.init(num_cpus=workers, **kw)
    else:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError) as exc:
            raise SweepError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return ray, True


def run_sweep(spec: SweepSpec, out, *, backend: str = "local", workers: int = 2, address: str | None = None,
              yes: bool = False, progress: bool = True, max_points: int | None = None) -> dict:
    """Run every point of ``spec`` that ``out`` does not hold yet. Returns counts and the results table path."""
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend!r}: allowed one of {list(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers {workers!r}: allowed an integer >= 1")
    check_limit(spec, yes)
    if backend == "ray":
        check_ray_address(address)
    rd = ResultsDir(out)
    rd.claim(spec)
    points = spec.points()
    keyed = [(point_key(spec.resolve(p)), p, spec.resolve(p)) for p in points]
    done = rd.done()
    todo = [(k, p, r) for k, p, r in keyed if k not in done]
    n_skipped = len(keyed) - len(todo)
    if max_points is not None:
        todo = todo[:max_points]
    from tqdm.auto import tqdm
    bar = tqdm(total=len(keyed), initial=n_skipped,
               desc=f"sweep {spec.name}", unit="pt", disable=not progress, dynamic_ncols=True)
    t0, n_new, n_err = time.perf_counter(), 0, 0

    def finish(key, point, rec):
        nonlocal n_new, n_err
        rec = {"key": key, "axes": point, **rec, "finished_at": time.time()}
        rd.write(key, rec)
        n_new += 1
        n_err += rec["status"] != "ok"
        bar.update(1)
        rate = n_new / max(time.perf_counter() - t0, 1e-9) * 60
        bar.set_postfix_str(f"{rate:.2f} pt/min, {n_err} failed")

    try:
        if not todo:
            pass
        elif backend == "local" and workers == 1:
            _pool_init()
            for k, p, r in todo:
                finish(k, p, evaluate_point(r))
        elif backend == "local":
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                     initializer=_pool_init) as ex:
                futs = {ex.submit(evaluate_point, r): (k, p) for k, p, r in todo}
                pending = set(futs)
                while pending:
                    fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in fin:
                        k, p = futs[f]
                        finish(k, p, f.result())
        else:
            ray, started = _ray_init(address, workers)
            try:
                remote = ray.remote(num_cpus=1)(_ray_point)
                refs = {remote.remote(r): (k, p) for k, p, r in todo}
                pending = list(refs)
                while pending:
                    fin, pending = ray.wait(pending, num_returns=1)
                    for f in fin:
                        k, p = refs[f]
                        finish(k, p, ray.get(f))
            finally:
                if started:
                    ray.shutdown()
    finally:
        bar.close()
    from .results import write_tables
    tables = write_tables(rd.path)
    return {"points": len(keyed), "ran": n_new, "failed": n_err, "skipped": n_skipped,
            "elapsed_s": time.perf_counter() - t0, **tables}


def _ray_point(resolved: dict) -> dict:
    _pool_init()
    return evaluate_point(resolved)


def dry_run(spec: SweepSpec, *, workers: int = 2, probe: bool = True, yes: bool = True) -> dict:
    """Number of points and an estimated run time from one timed probe point (evaluated, not recorded)."""
    points = spec.points()
    out = {"points": len(points), "grid": spec.grid_size(), "design": spec.design.get("kind", "grid")}
    if probe and points:
        r = spec.resolve(points[0])
        _pool_init()
        t0 = time.perf_counter()  # includes the one-off data loading a worker pays once: a conservative estimate
        rec = evaluate_point(r)
        dt = time.perf_counter() - t0
        out.update(probe_s=dt, probe_status=rec["status"], probe_error=rec.get("error"),
                   estimate_s=dt * len(points) / max(workers, 1), workers=workers)
    return out
