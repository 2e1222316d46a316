"""Atomic checkpoints, run directories and exact resume (memsim.training.checkpoint)."""
from __future__ import annotations

import csv
import importlib.util
import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import memsim.io
from memsim.training.checkpoint import (CheckpointError, RunDirectory, architecture_fingerprint, load_checkpoint,
                               read_checkpoint, save_checkpoint)
from memsim.training.config import load_config

# A tiny but complete training loop, as the trainer will run it: shuffled DataLoader with its own generator,
# rate-coded inputs from the encoder's generator, dropout (global torch RNG), numpy and Python RNG noise,
# Adam, gradient clipping, one checkpoint per epoch. ``kill_at=(epoch, batch)`` dies in the middle of an epoch.
TRAIN_SCRIPT = '''
import os, random, signal, sys
import numpy as np
import torch
from memsim.training.checkpoint import RunDirectory
from memsim.training.data import load_digits, make_encoder


class Interrupted(Exception):
    pass


def train(run_dir, epochs, kill_at=None, hard_kill=False):
    torch.set_num_threads(1)
    torch.manual_seed(0); np.random.seed(0); random.seed(0)
    ds = load_digits("train", flatten=True)
    ds = torch.utils.data.Subset(ds, range(320))
    loader_gen = torch.Generator().manual_seed(1)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, generator=loader_gen)
    enc = make_encoder("rate", 4, seed=2)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    run = RunDirectory(run_dir, keep=2)
    gens = {"loader": loader_gen, "encoder": enc.generator}
    ckpt = run.resume(model=model, optimizer=opt, scheduler=sched, generators=gens)
    start = 0 if ckpt is None else ckpt.epoch
    for epoch in range(start, epochs):
        total, correct, n = 0.0, 0, 0
        for b, (x, y) in enumerate(loader):
            if kill_at == (epoch, b):
                if hard_kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise Interrupted()
            s = enc(x)                                   # [T, B, 64]
            out = model(s).mean(0)
            noise = float(np.random.normal()) * 1e-3 + random.random() * 1e-3
            loss = torch.nn.functional.cross_entropy(out, y) + noise * out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(y); correct += int((out.argmax(1) == y).sum()); n += len(y)
        sched.step()
        run.save(epoch + 1, model=model, optimizer=opt, scheduler=sched, generators=gens,
                 metrics={"loss": total / n, "accuracy": correct / n}, config={"training": {"epochs": epochs}})
    return model


if __name__ == "__main__":
    kill = tuple(int(v) for v in sys.argv[3].split(",")) if len(sys.argv) > 3 else None
    train(sys.argv[1], int(sys.argv[2]), kill_at=kill, hard_kill=True)
'''


@pytest.fixture(scope="module")
def train_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "tiny_train.py"
    path.write_text(textwrap.dedent(TRAIN_SCRIPT))
    spec = importlib.util.spec_from_file_location("tiny_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.path = path
    return module


def _net(hidden=5):
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))


def _stepped(model):
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    return opt


# ---------------------------------------------------------------------------------------------- save / load

def test_round_trip_restores_weights_optimizer_config_and_every_rng(tmp_path):
    torch.manual_seed(0)
    model = _net()
    opt = _stepped(model)
    gen = torch.Generator().manual_seed(11)
    gen.manual_seed(11), torch.rand(3, generator=gen)
    cfg = load_config(overrides=["training.epochs=4"])
    path = save_checkpoint(tmp_path / "c.pt", model=model, epoch=3, optimizer=opt, config=cfg,
                           generators={"loader": gen}, history=[{"epoch": 1, "loss": 0.5}], extra={"best": 0.9})
    expected = (torch.rand(4), np.random.rand(3), random.random(), torch.rand(2, generator=gen))

    torch.manual_seed(123), np.random.seed(5), random.seed(7)      # disturb everything
    other = _net()
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    gen2 = torch.Generator().manual_seed(999)
    ckpt = load_checkpoint(path, other, optimizer=other_opt, generators={"loader": gen2})
    got = (torch.rand(4), np.random.rand(3), random.random(), torch.rand(2, generator=gen2))

    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), other_opt.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    assert ckpt.epoch == 3 and ckpt.config == cfg.to_dict() and ckpt.extra == {"best": 0.9}
    assert ckpt.history == [{"epoch": 1, "loss": 0.5}]
    assert ckpt.fingerprint == architecture_fingerprint(model) == architecture_fingerprint(other)


@pytest.mark.parametrize("other, needle", [
    (lambda: _net(hidden=7), "parameter '0.weight' has shape [5, 4] in the checkpoint but [7, 4] in the model"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2),
                                 torch.nn.Linear(2, 2)), "the model's parameter '3.weight' [2, 2] is not in"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 5)), "the checkpoint's parameter '2.weight' [2, 5] does not exist"),
])
def test_checkpoint_from_another_architecture_is_refused_before_loading(tmp_path, other, needle):
    path = save_checkpoint(tmp_path / "c.pt", model=_net(), epoch=1)
    model = other()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="different architecture") as info:
        load_checkpoint(path, model)
    assert needle in str(info.value) and str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_write_is_atomic_with_fsync_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    model = _net()
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(memsim.io.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    save_checkpoint(path, model=model, epoch=1)
    assert synced, "checkpoint bytes must be fsync'ed before the rename"
    old_bytes = path.read_bytes()

    def crash(*_a, **_k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(memsim.io.os, "replace", crash)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, model=model, epoch=2)
    assert path.read_bytes() == old_bytes and read_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


def test_corrupt_truncated_foreign_and_unsafe_files(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=_net(), epoch=1)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated") as info:
        load_checkpoint(tmp_path / "trunc.pt", _net())
    assert "trunc.pt" in str(info.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a memsim checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    # a pickle that would run code is refused by the weights-only loader, and the code never runs
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": "memsim-checkpoint", "x": Evil()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_missing_optimizer_state_and_mismatched_optimizer(tmp_path):
    model = _net()
    path = save_checkpoint(tmp_path / "c.pt", model=model, epoch=1)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, _net(), optimizer=torch.optim.SGD(_net().parameters(), lr=0.1))
    opt = _stepped(model)
    path = save_checkpoint(tmp_path / "d.pt", model=model, epoch=1, optimizer=opt)
    fresh = _net()
    two_groups = torch.optim.Adam([{"params": fresh[0].parameters()}, {"params": fresh[2].parameters()}])
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        load_checkpoint(path, fresh, optimizer=two_groups)
    with pytest.raises(CheckpointError, match=r"generator\(s\) \['loader'\]"):
        load_checkpoint(path, _net(), generators={"loader": torch.Generator()})


# ---------------------------------------------------------------------------------------------- run directory

def test_metrics_csv_is_appended_atomically(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path / "run")
    run.append_metrics({"epoch": 1, "loss": 0.75, "accuracy": 0.5})
    run.append_metrics({"epoch": 2, "loss": 0.25, "accuracy": 0.875, "lr": 1e-3})
    with open(run.metrics_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{"epoch": "1", "loss": "0.75", "accuracy": "0.5", "lr": ""},
                    {"epoch": "2", "loss": "0.25", "accuracy": "0.875", "lr": "0.001"}]
    assert run.read_metrics()[1] == {"epoch": 2, "loss": 0.25, "accuracy": 0.875, "lr": 1e-3}
    before = run.metrics_path.read_bytes()
    monkeypatch.setattr(memsim.io.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        run.append_metrics({"epoch": 3, "loss": 0.1, "accuracy": 0.9})
    assert run.metrics_path.read_bytes() == before
    assert [p.name for p in run.path.iterdir()] == ["metrics.csv"]


def test_pruning_and_latest_good_checkpoint(tmp_path):
    run = RunDirectory(tmp_path, keep=2)
    model = _net()
    for epoch in range(1, 5):
        run.save(epoch, model=model, metrics={"loss": 1.0 / epoch})
    assert [e for e, _ in run.checkpoints()] == [3, 4]
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3, 4]
    # the newest file is truncated (e.g. a copy cut short): resume from the previous good one
    newest = run.checkpoint_path(4)
    newest.write_bytes(newest.read_bytes()[:100])
    latest = run.latest_checkpoint()
    assert latest.epoch == 3 and run.skipped[0][0] == newest
    # resuming rewrites the CSV to the checkpoint's history: epoch 4 will be redone
    ckpt = run.resume(model=_net())
    assert ckpt.epoch == 3 and [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    assert RunDirectory(tmp_path / "empty").resume(model=_net()) is None


def test_resume_refuses_a_changed_config_except_epochs(tmp_path):
    run = RunDirectory(tmp_path)
    cfg = load_config()
    run.write_config(cfg)
    run.save(1, model=_net(), config=cfg)
    assert load_config(run.config_path) == cfg
    longer = cfg.with_overrides(["training.epochs=50"])
    assert run.resume(model=_net(), config=longer).epoch == 1
    other = cfg.with_overrides(["training.learning_rate=0.5"])
    with pytest.raises(CheckpointError, match=rf"training.learning_rate: {cfg.training.learning_rate!r} -> 0.5"):
        run.resume(model=_net(), config=other)


# ---------------------------------------------------------------------------------------------- exact resume

def _final_state(run_dir: Path, epoch: int) -> dict:
    return read_checkpoint(Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt").model_state


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, train_module):
    full = train_module.train(tmp_path / "full", 4)
    with pytest.raises(train_module.Interrupted):
        train_module.train(tmp_path / "cut", 4, kill_at=(2, 3))   # dies in epoch 3, after 3 optimizer steps
    assert [e for e, _ in RunDirectory(tmp_path / "cut").checkpoints()] == [1, 2]
    torch.manual_seed(77), np.random.seed(77), random.seed(77)     # the new process starts elsewhere
    resumed = train_module.train(tmp_path / "cut", 4)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "cut" / "metrics.csv").read_text()
    # and resuming genuinely matters: a run restarted from scratch without the RNG state differs
    assert not torch.equal(_final_state(tmp_path / "full", 4)["0.weight"],
                           train_module.train(tmp_path / "other", 3).state_dict()["0.weight"])


def test_killed_process_resumes_bit_identical(tmp_path, train_module):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = str(train_module.path)

    def start(*args):
        return subprocess.Popen([sys.executable, script, *map(str, args)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def finish(proc):
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run(*args):
        return finish(start(*args))

    # the uninterrupted run and the killed one are independent processes: side by side
    full, cut = start(tmp_path / "full", 3), start(tmp_path / "cut", 3, "1,4")   # cut: SIGKILL in epoch 2, batch 5
    ok, killed = finish(full), finish(cut)
    assert ok.returncode == 0, ok.stderr
    assert killed.returncode == -9, killed.stderr
    assert [e for e, _ in RunDirectory(tmp_path / "cut").checkpoints()] == [1]
    resumed = run(tmp_path / "cut", 3)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _final_state(tmp_path / "full", 3), _final_state(tmp_path / "cut", 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "cut" / "metrics.csv").read_text()
