"""A pool worker that dies (the OS's out-of-memory killer, a crash in native code) fails its own point only: the
sweep records it, evaluates every other point, and a study's next sweep gets a working pool."""
import json

import pytest

from memsim.sweep import runner
from memsim.sweep.spec import parse_spec

import _dying_worker  # noqa: F401  (spawned workers import it by name: tests/ is on their sys.path)
from sweep_helpers import tiny_ann_checkpoint


@pytest.fixture
def spec(tmp_path):
    ckpt = tiny_ann_checkpoint(tmp_path / "net")  # the spec checks it; the stand-in evaluator does not read it
    return parse_spec({"base": {"checkpoint": str(ckpt), "preset": "hfox_1t1r_64", "mode": "noisy", "chips": 1},
                       "axes": {"tile.size": [16, 13, 32, 64]}}, root=tmp_path, check_points=False)


def _statuses(out):
    recs = [json.loads(p.read_text()) for p in (out / "points").glob("*.json")]
    return {r["config"]["preset"]["tile.size"]: (r["status"], r.get("error", "")) for r in recs}


def test_a_dead_worker_fails_its_point_only(spec, tmp_path):
    out = tmp_path / "sweep"
    with runner.local_pool(2) as pool:  # a study's shared pool
        r = runner.run_sweep(spec, out, workers=2, progress=False, evaluate=_dying_worker.evaluate, pool=pool)
        with pytest.raises(runner.BrokenProcessPool):  # the caller's pool is dead: hence the flag it gets
            pool.submit(_dying_worker.evaluate, {"preset": {"tile.size": 16}}).result()
    assert r["pool_broke"] and r["ran"] == 4 and r["failed"] == 1
    got = _statuses(out)
    assert {k: s for k, (s, _) in got.items()} == {16: "ok", 13: "error", 32: "ok", 64: "ok"}
    assert got[13][1].startswith("WorkerDied: ") and "--workers 1" in got[13][1]
    # a rerun finds every point recorded (the dead one too, as any failed point): nothing to do, no pool started
    again = runner.run_sweep(spec, out, workers=2, progress=False, evaluate=_dying_worker.evaluate)
    assert again["ran"] == 0 and not again["pool_broke"]


def test_a_pool_that_breaks_with_nothing_in_flight_loses_no_point(monkeypatch):
    """A point leaves the queue only once a pool has taken it: a pool that refuses every submission (broken before
    the sweep's first point) loses none; the next point runs alone, the rest in a new pool (thread pools here)."""
    from concurrent.futures import ThreadPoolExecutor

    class Broken:
        def submit(self, *a, **k):
            raise runner.BrokenProcessPool("a worker died before this sweep")

        def shutdown(self, *a, **k):
            pass

    monkeypatch.setattr(runner, "local_pool", lambda n: ThreadPoolExecutor(max_workers=n))
    done = []
    todo = [(f"k{i}", {"i": i}, {"i": i}) for i in range(5)]
    broke = runner._run_on_pool(Broken(), todo, lambda k, p, rec: done.append((k, rec["i"])),
                                lambda r: {"i": r["i"]}, 2)
    assert broke and sorted(done) == [(f"k{i}", i) for i in range(5)]
