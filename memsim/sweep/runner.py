"""Run a sweep: a local process pool (default) or a Ray cluster, one atomic JSON record per point.

The results folder holds ``sweep.json`` (the spec and its fingerprint), ``points/<key>.json`` (one per finished
point, written atomically; ``key`` is the hash of the point's resolved config) and, after a run,
``results.csv`` / ``results.parquet``. A rerun skips the points already on disk, so a killed sweep loses no
finished point; a folder written by another spec is refused. A killed sweep leaves nothing running: pool workers
exit with their parent, a Ray instance memsim started is shut down on SIGTERM, SIGHUP and Ctrl-C. A pool worker
that dies (out of memory) fails only the point it was running: that point is found by running the suspects alone
and recorded as failed, and the sweep goes on in a new pool.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..progress import progress_bar
from .results import ResultsDir, write_tables
from .spec import SweepError, SweepSpec, check_limit, point_key
from ..allocator import tune_malloc
from .worker import evaluate_point

BACKENDS = ("local", "ray")


def _pool_init(parent_pid: int | None = None):
    """A worker's set-up: one torch thread (the workers are the parallelism) and, in a local pool worker, exit
    when the sweep process ``parent_pid`` dies."""
    import torch
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tune_malloc()
    if parent_pid is not None:
        _exit_with_parent(parent_pid)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(parent_pid: int) -> None:
    """Make this pool worker exit when the sweep process dies, however it dies (``kill -9`` included): a worker
    of a dead pool would otherwise hold its ~400 MB, blocked on the task pipe, until killed by hand. Linux: the
    kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG); elsewhere a thread polls the parent pid."""
    if not _set_pdeathsig(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="memsim-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed: nobody will send it
        os._exit(1)


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel for ``sig`` when the parent dies; False where prctl is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0),
                          ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """The fallback of :func:`_set_pdeathsig`: an orphan is re-parented, so its parent pid changes."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def _stop_pool(ex: ProcessPoolExecutor) -> None:
    """Cancel the queued points and end the busy workers now. Leaving the ``with`` block after an exception
    (Ctrl-C) would otherwise wait for every queued point to be computed, with no result kept."""
    if hasattr(ex, "terminate_workers"):  # Python >= 3.14
        ex.terminate_workers()
        return
    procs = list((getattr(ex, "_processes", None) or {}).values())  # before shutdown(), which drops the list
    ex.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(OSError, ValueError):  # already gone
            proc.terminate()


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A local pool of ``workers`` processes as :func:`run_sweep` starts one (spawned, one torch thread each, exiting
    with this process), for a caller that runs several sweeps on it (a study): its workers load the dataset once
    and keep it for the next sweep. Use it as a context manager; :func:`run_sweep` ``pool=`` takes it."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init, initargs=(os.getpid(),))


def check_ray_address(address: str | None, timeout: float = 5.0) -> str | None:
    """The address to connect to, checked before any work: a ``HOST:PORT`` that does not answer, or ``auto``
    with no cluster to find, is an error at once (Ray's own connect retries for minutes, after memsim has made
    the results folder). ``None`` (or ``local``): memsim starts a local Ray instance."""
    if address in (None, "", "local"):
        return None
    where = address
    if address == "auto":
        address = _find_ray_cluster()
        if address is None:  # a Ray without the look-up memsim knows: ray.init resolves 'auto' itself
            return "auto"
        where = f"{address} (found by --address auto)"
    a = address.split("://", 1)[-1]
    host, _, port = a.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address!r} is invalid: allowed HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or "
                         f"nothing for a local Ray instance")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(f"the Ray cluster at {where} does not answer ({exc}). Fix: start it (ray start --head) "
                         f"or give the right HOST:PORT; omit --address for a local Ray instance") from None
    return address


def _import_ray():
    """Ray, or the error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError("--backend ray needs Ray: python3 -m pip install 'memsim[sweep]'") from None
    return ray


def _find_ray_cluster() -> str | None:
    """``--address auto`` as Ray resolves it ($RAY_ADDRESS, the last ``ray start``, a raylet on this machine):
    ``HOST:PORT``, or None where this Ray does not offer the look-up."""
    _import_ray()
    try:
        from ray._private.services import canonicalize_bootstrap_address  # private: guarded
    except ImportError:
        return None
    try:
        found = canonicalize_bootstrap_address("auto")
    except (OSError, ValueError):  # ConnectionError: none found
        found = None
    if not found:
        raise SweepError("--address auto: no running Ray cluster was found on this machine. Fix: start one "
                         "(ray start --head), or drop --address to let memsim start a local Ray instance")
    return found


def _ray_init(address: str | None, workers: int):
    """Start a local Ray instance (``address`` None) or connect to the cluster at ``address`` (as returned by
    :func:`check_ray_address`)."""
    ray = _import_ray()
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:  # "local", not None: ray.init(None) would join the cluster named by $RAY_ADDRESS
        ray.init(address="local", num_cpus=workers, **kw)
    else:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError) as exc:
            raise SweepError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return ray


def _ray_init_held(stop: _StopSignals, address: str | None, workers: int) -> None:
    """``ray.init`` with a stop signal held until it returns: a Ray instance stopped half-way through its start
    cannot be shut down (its raylet's agents were seen left running), a started one can."""
    utils = getattr(getattr(_import_ray(), "_private", None), "utils", None)
    own_handler = getattr(utils, "set_sigterm_handler", None)
    stop.shield()
    if own_handler is not None:  # ray.init would replace our SIGTERM handler with one that exits at once
        utils.set_sigterm_handler = lambda handler: None
    try:
        _ray_init(address, workers)
    except SystemExit as exc:  # a Ray that set its handler all the same exits with the bare signal number
        raise (_signal_exit(signal.SIGTERM) if exc.code == signal.SIGTERM else exc) from None
    finally:
        if own_handler is not None:
            utils.set_sigterm_handler = own_handler
    stop.install()
    stop.release()


def _run_on_ray(todo: list, finish, address: str | None, workers: int, evaluate=None) -> None:
    """Evaluate ``todo`` as Ray tasks. A Ray instance memsim started (or a connection it opened) is shut down
    however the sweep ends: normally, on an error, on Ctrl-C, SIGTERM or SIGHUP (exit code 128 + signal)."""
    ray = _import_ray()
    owned = not ray.is_initialized()  # a caller's own ray.init (notebook) is left to the caller
    with _StopSignals() as stop:
        try:
            if owned:
                _ray_init_held(stop, address, workers)
            remote = ray.remote(num_cpus=1)(_ray_point)
            refs = {remote.remote(r, evaluate): (k, p) for k, p, r in todo}
            pending = list(refs)
            while pending:  # a timeout, so that a signal's handler runs within a second
                fin, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for f in fin:
                    k, p = refs[f]
                    finish(k, p, ray.get(f))
        finally:
            if owned:
                stop.shield()
                ray.shutdown()


def _signal_exit(signum: int) -> BaseException:
    """The exception a stop signal becomes: SIGINT the usual KeyboardInterrupt (the CLI exits 130), others
    SystemExit with the shell's code 128 + signal number."""
    return KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)


class _StopSignals:
    """Inside ``with``: SIGTERM, SIGHUP and SIGINT raise (:func:`_signal_exit`) in the main thread, so the
    ``finally`` that shuts a Ray cluster down runs; the default SIGTERM would end the process and leave the
    cluster running. Once the first signal is raised, or while :meth:`shield` is on (Ray starting or shutting
    down), a signal is held (until :meth:`release` or the end of the ``with``) so it cannot cut that short; a
    second one forces the stop. A signal the process ignores (nohup, a background job) stays ignored."""

    NAMES = ("SIGTERM", "SIGHUP", "SIGINT")

    def __init__(self):
        self.previous: dict = {}
        self.held: int | None = None
        self.shielded = False

    def __enter__(self):
        self.install()
        return self

    def install(self) -> None:
        """Install the handlers; the ones found first are put back at the end. Again after ``ray.init``: its core
        worker puts a C-level SIGTERM handler (that aborts) over ours, unseen by ``signal.getsignal``."""
        if threading.current_thread() is not threading.main_thread():  # Python sets handlers there only
            return
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            current = signal.getsignal(sig)
            if sig not in self.previous:
                if current in (signal.SIG_IGN, None):  # ignored by whoever started us (nohup): stays ignored
                    continue
                self.previous[sig] = current
            signal.signal(sig, self._handle)

    def shield(self) -> None:
        self.shielded = True

    def release(self) -> None:
        """End a :meth:`shield`; a signal held meanwhile is raised now."""
        self.shielded = False
        if self.held is not None:
            signum, self.held = self.held, None
            self._handle(signum, None)

    def _handle(self, signum, frame):
        if self.shielded and self.held is None:  # a second signal is not held: it forces the stop
            self.held = signum
            print(f"memsim: {signal.Signals(signum).name}: stopping once Ray is started or shut down (send it "
                  f"again to force)", file=sys.stderr)
            return
        self.shielded = True
        if signum != signal.SIGINT:  # KeyboardInterrupt prints its own line in the CLI
            print(f"memsim: {signal.Signals(signum).name}: shutting the Ray instance down", file=sys.stderr)
        raise _signal_exit(signum)

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.held is not None and exc_type is None:
            raise _signal_exit(self.held)
        return False


def run_sweep(spec: SweepSpec, out, *, backend: str = "local", workers: int = 2, address: str | None = None,
              yes: bool = False, progress: bool = True, max_points: int | None = None, evaluate=None,
              pool: ProcessPoolExecutor | None = None) -> dict:
    """Run every point of ``spec`` that ``out`` does not hold yet. Returns counts and the results table path.
    ``evaluate``: what computes a point's record from its resolved config (default
    :func:`memsim.sweep.worker.evaluate_point`; a picklable function, e.g. a study's, whose paths are relative).
    ``pool``: a running :func:`local_pool` to use (backend local, ``workers`` > 1) instead of starting one; it is
    left running for the caller's next sweep (stopped on an error or Ctrl-C, like the sweep's own)."""
    evaluate = evaluate_point if evaluate is None else evaluate
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend!r}: allowed one of {list(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers {workers!r}: allowed an integer >= 1")
    check_limit(spec, yes)
    if backend == "ray":
        address = check_ray_address(address)  # 'auto' resolved here, before the results folder exists
    rd = ResultsDir(out)
    rd.claim(spec)
    points = spec.points()
    keyed = [(point_key(spec.resolve(p)), p, spec.resolve(p)) for p in points]
    done = rd.done()
    todo = [(k, p, r) for k, p, r in keyed if k not in done]
    n_skipped = len(keyed) - len(todo)
    if max_points is not None:
        todo = todo[:max_points]
    bar = progress_bar(total=len(keyed), initial=n_skipped,
               desc=f"sweep {spec.name}", unit="pt", disable=not progress, dynamic_ncols=True)
    t0, n_new, n_err, pool_broke = time.perf_counter(), 0, 0, False

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
                finish(k, p, evaluate(r))
        elif backend == "local" and pool is not None:
            pool_broke = _run_on_pool(pool, todo, finish, evaluate, workers)
        elif backend == "local":
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                     initializer=_pool_init, initargs=(os.getpid(),)) as ex:
                pool_broke = _run_on_pool(ex, todo, finish, evaluate, min(workers, len(todo)))
        else:
            _run_on_ray(todo, finish, address, workers, evaluate)
    finally:
        bar.close()
    tables = write_tables(rd.path)
    return {"points": len(keyed), "ran": n_new, "failed": n_err, "skipped": n_skipped,
            "elapsed_s": time.perf_counter() - t0, "pool_broke": pool_broke, **tables}


def _run_on_pool(ex: ProcessPoolExecutor, todo: list, finish, evaluate, workers: int) -> bool:
    """Evaluate ``todo`` on the local pool ``ex`` of ``workers`` processes, at most ``workers`` points in flight (so
    that the points a dead worker may have been running are known). On any exception (Ctrl-C included) the pool is
    stopped at once.

    A worker that dies (killed by the operating system, most often for lack of memory, or a crash in native code)
    breaks the whole pool: the points then in flight are each evaluated again alone, in a pool of one, and the one
    whose worker dies alone is recorded as failed (a sweep is never stopped by one point); the rest of the sweep
    goes on in a new pool. Returns whether ``ex`` broke (it can then take no more work)."""
    queue, broke, current = list(todo), False, ex
    try:
        while queue:
            broke_now, suspects = _drain(current, queue, finish, evaluate, workers)
            if not broke_now:
                break
            broke = True
            if current is not ex:
                current.shutdown(wait=False, cancel_futures=True)
            if not suspects and queue:  # it broke with nothing in flight: the next point goes alone (progress)
                suspects = [queue.pop(0)]
            for item in suspects:
                _run_alone(item, finish, evaluate)
            current = local_pool(workers) if queue else ex
    except BaseException:
        _stop_pool(current)
        raise
    finally:
        if current is not ex:
            current.shutdown(wait=True)
    return broke


def _drain(ex: ProcessPoolExecutor, queue: list, finish, evaluate, workers: int) -> tuple[bool, list]:
    """Feed ``queue``'s points to ``ex``, ``workers`` at a time, until it is empty: ``(False, [])``; or until the
    pool breaks: ``(True, the points that were in flight and got no record)`` (the suspects). A point leaves
    ``queue`` only once the pool has taken it."""
    inflight: dict = {}
    broken = False
    while (queue and not broken) or inflight:
        while queue and not broken and len(inflight) < workers:
            try:
                f = ex.submit(evaluate, queue[0][2])
            except BrokenProcessPool:
                broken = True
                break
            inflight[f] = queue.pop(0)
        if not inflight:
            break
        fin, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for f in fin:
            k, p, r = inflight.pop(f)
            try:
                rec = f.result()
            except BrokenProcessPool:
                suspects = [(k, p, r)]
                # the other points in flight end at once (with a record or the same error); keep the records
                for g in list(inflight):
                    k2, p2, r2 = inflight.pop(g)
                    try:
                        finish(k2, p2, g.result())
                    except BrokenProcessPool:
                        suspects.append((k2, p2, r2))
                return True, suspects
            finish(k, p, rec)
    return broken, []


def _run_alone(item, finish, evaluate) -> None:
    """One point in a fresh pool of one worker: its record, or a failed record if its worker dies here too."""
    k, p, r = item
    t0 = time.perf_counter()
    with local_pool(1) as solo:
        try:
            rec = solo.submit(evaluate, r).result()
        except BrokenProcessPool:
            rec = {"config": r, "status": "error", "elapsed_s": time.perf_counter() - t0,
                   "error": "WorkerDied: the worker process evaluating this point alone died (killed by the "
                            "operating system, most often for lack of memory, or a crash in native code). Fix: "
                            "fewer workers (--workers 1), a smaller base.batch_size or tile, or more memory; the "
                            "rest of the sweep went on"}
    finish(k, p, rec)


def _ray_point(resolved: dict, evaluate=None) -> dict:
    _pool_init()
    return (evaluate_point if evaluate is None else evaluate)(resolved)


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
