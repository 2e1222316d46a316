"""A study runs all its sweeps on one local worker pool (its workers load the dataset once), with the same records as
a serial run; a rerun with nothing to do starts no pool. The fine-tuning of --quick is capped like the training."""
import json
import shutil
import tomllib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from memsim.sweep import runner
from memsim.sweep.study import parse_study, plan_study, quick_spec_data, run_study

TWO = """
name = "two"
[networks.ann]
config = "digits_quickstart"
overrides = { "network.kind" = "ann", "network.layers" = [64, 8, 10], "training.epochs" = 1, "output.plot" = false }
[[sweep]]
name = "tiles"
network = "ann"
base = { mode = "noisy", chips = 1, limit = 40 }
axes = { "tile.size" = [16, 32] }
[[sweep]]
name = "noise"
network = "ann"
base = { mode = "noisy", chips = 1, limit = 40 }
axes = { "noise.program" = [0.0, 0.1] }
"""


class CountingPool(ProcessPoolExecutor):
    made: list = []

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.submitted = 0
        CountingPool.made.append(self)

    def submit(self, *a, **kw):
        self.submitted += 1
        return super().submit(*a, **kw)


def _records(out):
    return {(p.parent.parent.name, p.stem): json.loads(p.read_text())["metrics"]["accuracy_per_chip"]
            for p in (out / "sweeps").glob("*/points/*.json")}


def test_a_study_hands_one_pool_to_all_its_sweeps(tmp_path, monkeypatch):
    """The plumbing, in this process: run_study makes one pool (here a thread pool standing in for the process pool)
    and both sweeps run on it; run_sweep starts no pool of its own; the records are those of a serial run."""
    from memsim.sweep import study as study_mod

    class Threads(ThreadPoolExecutor):
        made: list = []

        def __init__(self, workers):
            super().__init__(max_workers=1)
            self.submitted = 0
            Threads.made.append(self)

        def submit(self, *a, **kw):
            self.submitted += 1
            return super().submit(*a, **kw)

    def no_pool(*a, **kw):
        raise AssertionError("run_sweep started a pool of its own")

    study = parse_study(tomllib.loads(TWO), source="two.toml", root=tmp_path)
    serial = tmp_path / "serial"
    run_study(plan_study(study, serial), workers=1, progress=False, log=lambda *_: None)
    monkeypatch.setattr(study_mod, "local_pool", Threads)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", no_pool)
    shared = tmp_path / "shared"  # the trained network copied, its sweeps not: only the sweeps run again
    shutil.copytree(serial, shared, ignore=shutil.ignore_patterns("sweeps", "results.csv", "summary.md"))
    r = run_study(plan_study(study, shared), workers=2, progress=False, log=lambda *_: None)
    assert r["trained"] == [] and [s["ran"] for s in r["sweeps"].values()] == [2, 2]
    assert len(Threads.made) == 1 and Threads.made[0].submitted == 4
    assert _records(shared) == _records(serial) and len(_records(serial)) == 4
    Threads.made.clear()  # a rerun with every point done makes no pool
    run_study(plan_study(study, shared), workers=2, progress=False, log=lambda *_: None)
    assert Threads.made == []


@pytest.mark.slow
def test_sweeps_of_a_study_share_one_pool(tmp_path, monkeypatch):
    """The same with the real spawned process pool (~40 s on a loaded 2-core machine: the workers' start-up)."""
    study = parse_study(tomllib.loads(TWO), source="two.toml", root=tmp_path)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", CountingPool)
    CountingPool.made.clear()
    pooled = tmp_path / "pooled"
    r = run_study(plan_study(study, pooled), workers=2, progress=False, log=lambda *_: None)
    assert [s["ran"] for s in r["sweeps"].values()] == [2, 2]
    assert len(CountingPool.made) == 1 and CountingPool.made[0].submitted == 4  # both sweeps, one pool
    # the reference: the same study run serially, in this process, gives the same records (same keys, same chips)
    serial = tmp_path / "serial"
    run_study(plan_study(study, serial), workers=1, progress=False, log=lambda *_: None)
    got, ref = _records(pooled), _records(serial)
    assert len(ref) == 4 and got == ref
    # a rerun with every point done starts no pool
    CountingPool.made.clear()
    again = run_study(plan_study(study, pooled), workers=2, progress=False, log=lambda *_: None)
    assert all(s["ran"] == 0 for s in again["sweeps"].values()) and CountingPool.made == []


def test_quick_caps_the_points_fine_tuning_batches():
    data = {"base": {"config": "x", "finetune_epochs": 3, "limit": 0, "chips": 3}, "axes": {}}
    q = {"epochs": 1, "train_batches": 40, "limit": 300, "chips": 2, "axis_values": 2, "points": 4}
    b = quick_spec_data(data, q)["base"]
    assert (b["finetune_epochs"], b["finetune_batches"], b["limit"], b["chips"]) == (1, 40, 300, 2)
    data["base"]["finetune_batches"] = 10  # already fewer: kept
    assert quick_spec_data(data, q)["base"]["finetune_batches"] == 10
    assert quick_spec_data(data, {**q, "train_batches": 0})["base"]["finetune_batches"] == 10
    del data["base"]["finetune_batches"]  # train_batches = 0 (every batch): the fine-tuning is not capped either
    assert "finetune_batches" not in quick_spec_data(data, {**q, "train_batches": 0})["base"]
    # no fine-tuning: nothing added
    assert "finetune_batches" not in quick_spec_data({"base": {"limit": 0}}, q)["base"]


def test_fine_tuning_batches_reach_the_training_and_the_key(tmp_path, monkeypatch):
    from memsim.sweep import spec as sweep_spec
    from memsim.sweep import worker
    s = sweep_spec.SweepSpec(name="s", description="", base={"checkpoint": "m.pt", "config": "digits_quickstart",
                                                             "finetune_epochs": 1, "finetune_batches": 5},
                             axes={}, design={}, root=tmp_path)
    r = s.resolve({})
    assert r["finetune_batches"] == 5
    s0 = sweep_spec.SweepSpec(name="s", description="", base={"checkpoint": "m.pt", "config": "digits_quickstart",
                                                              "finetune_epochs": 1}, axes={}, design={}, root=tmp_path)
    assert "finetune_batches" not in s0.resolve({})  # 0 (all): the key of every point fine-tuned before is unchanged
    seen = {}

    class Kind:
        def train(self, cfg, **kw):
            seen.update(kw)
            raise RuntimeError("stop here")

    monkeypatch.setattr(worker, "network_kind", lambda *a, **k: Kind())
    with pytest.raises(RuntimeError, match="stop here"):
        worker._finetune(r, worker.point_chip(r), tmp_path)
    assert seen["max_batches"] == 5
