"""Studies (memsim sweep study): the bundled digits study end to end at its --quick scale (networks trained as
`memsim train` trains them, the sweeps' rows, accuracies above chance, a rerun and a moved folder resume with nothing
to do, no absolute path in what the study writes), and each bad input stopped before any work."""
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from memsim.cli import main
from memsim.deploy.kinds import network_kind
from memsim.sweep.study import StudyError, load_study, parse_study, plan_study, run_study
from memsim.training.checkpoint import read_checkpoint, save_checkpoint
from memsim.training.config import load_config


def _tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` and its modification time (ns): what a run wrote or rewrote."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the bundled digits study, --quick, end to end --------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "digits_quick"
    study = load_study("digits_dse")
    plan = plan_study(study, out, quick=True)
    first = run_study(plan, workers=1, progress=False, log=lambda *_: None)
    return study, plan, first, out


def test_quick_study_trains_the_networks_as_memsim_train_does(digits, tmp_path):
    study, plan, first, out = digits
    assert sorted(first["trained"]) == ["ann", "msnn"]
    q = study.quick
    for p in plan.networks.values():
        assert p.config.training.epochs == q["epochs"]  # the quick scale caps the epochs
        assert read_checkpoint(out / p.checkpoint).epoch == q["epochs"]
    # the reference: the ANN's config trained by the training API in another folder gives the same weights (the
    # MSNN's retraining would double the test's time; both kinds train through the same registry call)
    p = plan.networks["ann"]
    cfg = load_config(p.network.config_file, {**p.network.overrides, **p.network.quick,
                                              "training.epochs": q["epochs"], "output.dir": str(tmp_path / "ann")})
    ref = network_kind(cfg.network.kind).train(cfg, progress=False, log=lambda *_: None,
                                               max_batches=q["train_batches"] or None)
    ref_state = read_checkpoint(ref.checkpoint).model_state
    got = read_checkpoint(out / p.checkpoint).model_state
    assert ref_state.keys() == got.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], got[k]), k


def test_quick_study_tables_have_the_expected_rows(digits):
    study, plan, first, out = digits
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all()
    q = study.quick
    # the quick grids: each axis cut to its first and last values (the model axis kept whole)
    tn = df[df["sweep"] == "tile_noise"]
    assert set(zip(tn["network"], tn["tile.size"], tn["noise.program"])) == {
        (m, t, n) for m in ("ann", "msnn") for t in (16, 64) for n in (0.0, 0.1)}
    mp = df[df["sweep"] == "mapping_prune"]
    assert set(zip(mp["mapping"], mp["prune"], mp["tile.size"])) == {
        (m, p, t) for m in ("dense", "sparse") for p in (0.0, 0.75) for t in (16, 32)}
    assert set(mp["network"]) == {"ann"}
    w = df[df["sweep"] == "wires"]
    assert set(zip(w["wires.r"], w["tile.size"])) == {(r, t) for r in (0.1, 2.5) for t in (16, 64)}
    assert len(df) == 8 + 8 + 4
    assert (df["samples"] == q["limit"]).all() and (df["chips"] == q["chips"]).all()
    # each sweep's own table holds the same rows
    for s in ("tile_noise", "mapping_prune", "wires"):
        own = pd.read_csv(out / "sweeps" / s / "results.csv")
        assert sorted(own["key"]) == sorted(df[df["sweep"] == s]["key"])
        assert (out / "sweeps" / s / "accuracy_vs_tile.png").is_file()
    # the accuracy of a point is the mean of its chips' accuracies
    for _, r in df.iterrows():
        assert r["accuracy"] == pytest.approx(sum(json.loads(r["accuracy_per_chip"])) / q["chips"])


def test_quick_study_accuracies_are_real(digits):
    study, plan, first, out = digits
    df = pd.read_csv(out / "results.csv")
    unpruned = df[df["prune"] == 0.0]
    assert unpruned["accuracy"].min() > 0.5  # ten classes: chance is 0.1
    # no point beats the network's own ideal accuracy by more than the test subset's sampling noise
    ideal = {n: pd.read_csv(out / "networks" / n / "metrics.csv")["test_accuracy"].iloc[-1] for n in ("ann", "msnn")}
    assert all(ideal[n] > 0.8 for n in ideal)
    for n, d in unpruned.groupby("network"):
        assert d["accuracy"].max() < ideal[n] + 0.08
    # pruning three quarters of the weights without retraining costs accuracy, at every mapping and tile size
    mp = df[df["sweep"] == "mapping_prune"].set_index(["mapping", "tile.size", "prune"])["accuracy"]
    for m in ("dense", "sparse"):
        for t in (16, 32):
            assert mp[(m, t, 0.75)] < mp[(m, t, 0.0)] - 0.1
    summary = (out / "summary.md").read_text()
    for n in ("ann", "msnn"):
        assert f"| {n} | digits_quickstart | {study.quick['epochs']} | {100 * ideal[n]:.4g} |" in summary


def test_quick_study_writes_no_absolute_path_and_resumes_after_a_move(digits, tmp_path):
    study, plan, first, out = digits
    for rec_file in (out / "sweeps").glob("*/points/*.json"):
        rec = json.loads(rec_file.read_text())
        ck = rec["config"]["checkpoint"]
        assert not os.path.isabs(ck) and (out / ck).is_file()
    for f in [out / "study.json", out / "results.csv", *(out / "sweeps").rglob("*.json"),
              *(out / "sweeps").rglob("*.csv")]:
        assert str(out) not in f.read_text(), f
    # a rerun trains nothing, runs no point and rewrites no record
    before = _tree(out / "sweeps")
    again = run_study(plan_study(study, out, quick=True), workers=1, progress=False, log=lambda *_: None)
    assert again["trained"] == [] and set(again["networks"].values()) == {"done"}
    assert all(s["ran"] == 0 and s["skipped"] == s["points"] for s in again["sweeps"].values())
    after = _tree(out / "sweeps")
    assert {k: v for k, v in after.items() if "/points/" in k} == {k: v for k, v in before.items() if "/points/" in k}
    # the folder moved elsewhere still resumes with nothing to do: its paths are relative
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    r = run_study(plan_study(study, moved, quick=True), workers=1, progress=False, log=lambda *_: None)
    assert r["trained"] == [] and sum(s["ran"] for s in r["sweeps"].values()) == 0


def test_cli_dry_run_and_quick_refuses_a_full_folder(digits, capsys):
    study, plan, first, out = digits
    assert main(["sweep", "study", "digits_dse", "--quick", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "network ann: done" in text and "sweep tile_noise: 8 points (8 done)" in text
    # the full study on the quick folder: refused, nothing written
    before = _tree(out)
    with pytest.raises(StudyError, match="quick results .* never mixed"):
        plan_study(study, out, quick=False)
    assert _tree(out) == before


# -- bad input: a clear error before any work -------------------------------------------------------------------

TINY = """
name = "tiny"
[networks.ann]
config = "digits_quickstart"
overrides = { "network.kind" = "ann", "network.layers" = [64, 8, 10], "training.epochs" = 1, "output.plot" = false }
[[sweep]]
name = "one"
network = "ann"
base = { mode = "noisy", chips = 1, limit = 40 }
axes = { "tile.size" = [32] }
"""


def _study(text: str, folder: Path):
    import tomllib
    return parse_study(tomllib.loads(text), source="tiny.toml", root=folder)


def test_unknown_config_or_network(tmp_path):
    with pytest.raises(StudyError, match=r"networks\.ann\.config = 'digits_quickstrat'.*digits_quickstart"):
        _study(TINY.replace('"digits_quickstart"', '"digits_quickstrat"'), tmp_path)
    with pytest.raises(StudyError, match=r"sweep\[0\]: network 'ann2' is not defined.*did you mean 'ann'"):
        _study(TINY.replace('network = "ann"', 'network = "ann2"'), tmp_path)
    with pytest.raises(StudyError, match=r"networks\.ann .*network\.layerz"):
        plan_study(_study(TINY.replace('"network.layers"', '"network.layerz"'), tmp_path), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_two_sweeps_writing_one_folder(tmp_path):
    (tmp_path / "s.toml").write_text('name = "grid"\n[base]\nmode = "noisy"\nchips = 1\n[axes]\n"tile.size" = [32]\n')
    text = TINY + '[[sweep]]\nspec = "s.toml"\nnetwork = "ann"\n[[sweep]]\nspec = "s.toml"\nnetwork = "ann"\n'
    with pytest.raises(StudyError, match=r"sweep\[1\] \(s\.toml\) and .*sweep\[2\] \(s\.toml\) would both write "
                                         r"sweeps/grid"):
        plan_study(_study(text, tmp_path), tmp_path / "o")
    plan_study(_study(text.replace('spec = "s.toml"\nnetwork = "ann"\n', 'spec = "s.toml"\nnetwork = "ann"\n'
                                   'name = "grid2"\n', 1), tmp_path), tmp_path / "o")  # named apart: accepted
    assert not (tmp_path / "o").exists()


def test_a_bad_sweep_stops_before_any_training(tmp_path):
    bad = _study(TINY.replace('"tile.size" = [32]', '"tile.sise" = [32]'), tmp_path)
    with pytest.raises(StudyError, match=r"unknown key 'tile\.sise'.*tile\.size"):
        plan_study(bad, tmp_path / "o")
    with pytest.raises(StudyError, match=r"checkpoint.*a study's sweep takes its networks from the study"):
        _study(TINY.replace('base = { mode', 'base = { checkpoint = "/abs/x.pt", mode'), tmp_path)
    assert not (tmp_path / "o").exists()


@pytest.fixture
def tiny_full(tmp_path):
    study = _study(TINY, tmp_path)
    out = tmp_path / "full"
    run_study(plan_study(study, out), workers=1, progress=False, log=lambda *_: None)
    return study, out


def test_checkpoint_that_does_not_match_its_config(tiny_full, tmp_path):
    study, out = tiny_full
    before = _tree(out)
    changed = _study(TINY.replace("[64, 8, 10]", "[64, 16, 10]"), tmp_path)
    with pytest.raises(StudyError, match=r"networks\.ann: checkpoint .*epoch_0001\.pt does not match .*"
                                         r"network\.layers: checkpoint \[64, 8, 10\], config \[64, 16, 10\]"):
        plan_study(changed, out)
    lr = _study(TINY.replace('"training.epochs" = 1', '"training.epochs" = 1, "training.learning_rate" = 0.5'),
                tmp_path)
    with pytest.raises(StudyError, match=r"training\.learning_rate: checkpoint 0\.01, config 0\.5"):
        plan_study(lr, out)
    # a checkpoint written by hand, not from the config: its stored config is what is compared
    ck = out / "networks" / "ann" / "checkpoints" / "epoch_0001.pt"
    cfg = load_config("digits_quickstart", {"network.kind": "ann", "network.layers": [64, 8, 10],
                                            "training.epochs": 1, "data.dataset": "digits",
                                            "training.seed": 7})
    save_checkpoint(ck, model=torch.nn.Linear(1, 1), epoch=1, config=cfg)
    before = _tree(out)
    with pytest.raises(StudyError, match=r"training\.seed: checkpoint 7, config 0"):
        plan_study(study, out)
    assert _tree(out) == before


def test_quick_on_a_full_folder(tiny_full):
    study, out = tiny_full
    before = _tree(out)
    with pytest.raises(StudyError, match=r"holds the full results of study 'tiny'; this run is --quick.*never mixed"):
        plan_study(study, out, quick=True)
    assert _tree(out) == before
    # the full study itself resumes there with nothing to do
    r = run_study(plan_study(study, out), workers=1, progress=False, log=lambda *_: None)
    assert r["trained"] == [] and r["sweeps"]["one"]["ran"] == 0


def test_folder_of_something_else(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("x")
    with pytest.raises(StudyError, match="not empty and holds no study.json"):
        plan_study(_study(TINY, tmp_path), tmp_path / "o")


# -- another dataset: each network's variant ([networks.NAME.datasets.DATASET]) ---------------------------------

FASHION = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "study.toml"


def test_fashion_study_on_cifar10_uses_each_networks_variant(tmp_path):
    study = load_study(FASHION)
    plan = plan_study(study, tmp_path / "c", quick=True, dataset="cifar10")
    cfgs = {n: p.config for n, p in plan.networks.items()}
    assert {c.data.dataset for c in cfgs.values()} == {"cifar10"}
    assert cfgs["msnn"].network.layers[0] == cfgs["mlp"].network.layers[0] == 3 * 32 * 32
    assert plan.networks["vgg"].config_name == "cifar10_dse_vgg"
    assert list(cfgs["vgg"].network.channels) == list(load_config("cifar10_dse_vgg").network.channels)
    assert cfgs["msnn"].training.epochs == study.quick["epochs"]
    # the fine-tuning sweeps fine-tune through Fashion-MNIST configs, the conv MSNN needs single-channel images: their
    # datasets key leaves them out on CIFAR-10, and the conv MSNN, which only a left-out sweep uses, is not trained
    left = {e.name for e in plan.left_out}
    assert left == {"finetune_mlp", "finetune_msnn", "tile_noise_conv_msnn"}
    assert not left & {e.name for e, _ in plan.sweeps}
    assert plan.networks_left_out == ["msnn_vgg"] and "msnn_vgg" not in plan.networks
    # its own dataset: the Fashion-MNIST configs as written
    own = plan_study(study, tmp_path / "f", quick=False)
    assert {p.config.data.dataset for p in own.networks.values()} == {"fashion_mnist"}
    assert own.left_out == [] and len(own.sweeps) == len(study.sweeps)
    assert sum(len(own.sweep_spec(e).points()) for e, _ in own.sweeps) == 312  # the design of benchmarks/sweeps.md
    assert own.networks_left_out == [] and own.networks["msnn_vgg"].config.training.epochs == 20
    assert own.networks["msnn"].config.training.epochs == 5
    assert not (tmp_path / "c").exists() and not (tmp_path / "f").exists()


def test_dataset_without_a_variant_and_mixed_datasets(tiny_full, tmp_path):
    study, out = tiny_full
    with pytest.raises(StudyError, match=r"networks\.ann: no variant for --dataset cifar10 \(its config trains on "
                                         r"digits.*\[networks\.ann\.datasets\.cifar10\]"):
        plan_study(study, tmp_path / "o", dataset="cifar10")
    two = _study(TINY.replace("[[sweep]]", '[networks.ann.datasets.mnist]\noverrides = { "network.layers" = '
                                           '[784, 8, 10] }\n[[sweep]]', 1), tmp_path)
    before = _tree(out)
    with pytest.raises(StudyError, match=r"on its networks' own datasets; this run asks for --dataset mnist"):
        plan_study(two, out, dataset="mnist")
    assert _tree(out) == before


@pytest.mark.slow
def test_fashion_study_quick_on_synthetic_cifar10(tmp_path, monkeypatch):
    """The whole Fashion-MNIST study, --quick --dataset cifar10, on synthetic batches in the release's format."""
    import pickle

    import numpy as np
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MEMSIM_DATA_DIR", raising=False)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, 64)],
                         b"data": rng.integers(0, 256, (64, 3072), dtype=np.uint8), b"filenames": [b"x"] * 64},
                        fh, protocol=2)  # 320 training images: more than a chip calibrates on (256)
    study = load_study(FASHION)
    study.quick.update(points=2, chips=1, limit=32)  # smaller still: exact IR drop on 3072-input layers is minutes
    out = tmp_path / "study"
    r = run_study(plan_study(study, out, quick=True, dataset="cifar10", data_dir=str(tmp_path / "data")),
                  workers=1, progress=False, log=lambda *_: None)
    assert sorted(r["trained"]) == sorted(study.networks)
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all(), df[df["status"] != "ok"]["error"].tolist()
    assert set(df["sweep"]) == {e.name for e in study.sweeps if e.datasets is None or "cifar10" in e.datasets}
    assert (df["samples"] == 32).all() and (df["chips"] == 1).all()
    assert json.loads((out / "study.json").read_text())["dataset"] == "cifar10"


def test_a_sweep_of_several_networks_deploys_each(tmp_path):
    text = TINY.replace("[[sweep]]", '[networks.ann2]\nconfig = "digits_quickstart"\noverrides = { "network.kind" = '
                                     '"ann", "network.layers" = [64, 4, 10], "training.epochs" = 1 }\n[[sweep]]', 1)
    text = text.replace('network = "ann"', 'networks = ["ann", "ann2"]')
    plan = plan_study(_study(text, tmp_path), tmp_path / "o")
    spec = plan.sweep_spec(plan.study.sweeps[0])
    points = [spec.resolve(p) for p in spec.points()]
    assert sorted((r["model"], r["checkpoint"]) for r in points) == [
        ("ann", "networks/ann/checkpoints/epoch_0001.pt"), ("ann2", "networks/ann2/checkpoints/epoch_0001.pt")]


def test_a_sweeps_datasets_key_is_checked(tmp_path):
    with pytest.raises(StudyError, match=r"sweep\[0\]\.datasets = 'digits': allowed a non-empty list of dataset names"):
        _study(TINY.replace('network = "ann"', 'network = "ann"\ndatasets = "digits"'), tmp_path)
    # on its own dataset (no --dataset) a sweep with a datasets key runs like any other
    plan = plan_study(_study(TINY.replace('network = "ann"', 'network = "ann"\ndatasets = ["cifar10"]'), tmp_path),
                      tmp_path / "o")
    assert [e.name for e, _ in plan.sweeps] == ["one"] and plan.left_out == []
