"""``memsim evaluate --prune F --prune-method M [--prune-block K|OUTxIN] [--prune-n N] [--prune-m M]``: the CLI
deploys the same structured pruning as the library (:class:`memsim.nn.pruning.Pruning` on a
:class:`memsim.deploy.Chip`, evaluated by :func:`memsim.deploy.evaluate_on_chips`), and refuses a bad combination
of flags naming the flag, before any data is loaded."""
from __future__ import annotations

import json

import pytest

from memsim.cli import main
from memsim.crossbar import load_preset
from memsim.deploy import Chip, evaluate_on_chips
from memsim.nn.pruning import Pruning
from memsim.training import loop
from memsim.training.config import parse_config
from memsim.training.data import ImageDataset
from memsim.training.trained import load_trained

PRESET, SEEDS, LIMIT = "hfox_1t1r_64", 2, 120


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A digits MLP 64-64-10, 3 epochs (about a second): its first layer takes two tiles of 32 outputs, the
    classifier one."""
    tmp = tmp_path_factory.mktemp("prune")
    cfg = parse_config({"network": {"kind": "ann", "arch": "mlp", "layers": [64, 64, 10]},
                        "training": {"epochs": 3, "batch_size": 64, "learning_rate": 1e-2},
                        "output": {"dir": str(tmp / "run"), "plot": False}})
    return loop.train(cfg, progress=False, log=lambda s: None).checkpoint


def _library(ckpt, pruning: Pruning) -> dict:
    """The library's evaluation of ``pruning`` on the CLI's chips and data, built by hand."""
    network = load_trained(ckpt)
    train, test = loop.load_datasets(network.config)
    data = ImageDataset(test.images[:LIMIT], test.labels[:LIMIT], test.info, test.split)
    chips = Chip(load_preset(PRESET), mode="noisy", prune=pruning).series(SEEDS)
    return evaluate_on_chips(network, chips, data, calibration=train).as_dict()


def _cli(ckpt, flags, capsys) -> dict:
    assert main(["evaluate", str(ckpt), "--preset", PRESET, "--mode", "noisy", "--seeds", str(SEEDS),
                 "--limit", str(LIMIT), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


CASES = [
    (["--prune", "0.5", "--prune-method", "block", "--prune-block", "16x32"], Pruning("block", 0.5, block=(16, 32))),
    (["--prune-method", "nm", "--prune-n", "1", "--prune-m", "4"], Pruning("nm", n=1, m=4)),
    (["--prune-method", "nm_tile", "--prune", "0.5", "--prune-block", "16"], Pruning("nm_tile", 0.5, block=16)),
    (["--prune", "0.3"], Pruning("unstructured", 0.3)),
]


@pytest.mark.parametrize("flags,pruning", CASES, ids=[str(p) for _, p in CASES])
def test_cli_pruning_equals_the_library(mlp, flags, pruning, capsys):
    cli = _cli(mlp, flags, capsys)
    lib = _library(mlp, pruning)
    assert cli["pruning"] == pruning.describe() and cli["prune"] == pruning.fraction
    assert cli["per_seed"] == lib["per_seed"] and cli["accuracy"] == lib["accuracy"]
    assert cli["output_error"] == pytest.approx(lib["output_error"], rel=1e-12, abs=0.0)
    assert cli["samples"] == lib["samples"] == LIMIT and cli["chip_seeds"] == lib["chip_seeds"] == [0, 1]
    assert [row["tiles"] for row in cli["layers"]] == [row["tiles"] for row in lib["layers"]]


def test_the_pruning_flags_change_what_is_deployed(mlp, capsys):
    """The equality above is not vacuous: the unpruned chips give another product error, and block pruning of
    whole tiles (32 outputs x 64 rows) zeroes one of the first layer's two tiles, which sparse mapping leaves out."""
    plain = _cli(mlp, [], capsys)
    nm = _cli(mlp, CASES[1][0], capsys)
    assert nm["output_error"] != plain["output_error"]
    dense = _cli(mlp, ["--prune", "0.5", "--prune-method", "block", "--prune-block", "32x64"], capsys)
    sparse = _cli(mlp, ["--prune", "0.5", "--prune-method", "block", "--prune-block", "32x64",
                        "--mapping", "sparse"], capsys)
    assert dense["tiles"] == plain["tiles"] == 3 and sparse["tiles"] == 2


@pytest.fixture()
def no_data(monkeypatch):
    """Loading any dataset fails the test: the flags must be refused before."""
    def refuse(*a, **k):
        raise AssertionError("data loaded before the flags were checked")
    monkeypatch.setattr(loop, "load_datasets", refuse)


BAD = [
    (["--prune-method", "block"], "--prune = 0.0 is invalid", "--prune-method alone prunes nothing"),
    (["--prune", "0.5", "--prune-block", "4"], "--prune-block = 4 is invalid", "drop it"),
    (["--prune-method", "block", "--prune", "0.5", "--prune-block", "3"], "--prune-block = (3, 3) is invalid",
     "dividing the tile's (32 outputs, 64 rows)"),
    (["--prune-method", "nm", "--prune", "0.3"], "--prune = 0.3 is invalid", "a multiple of 1 / m = 1/4"),
    (["--prune-method", "nm", "--prune-n", "4"], "--prune-n = 4 is invalid", "1 <= n < m = 4"),
    (["--prune-method", "nm", "--prune-n", "1", "--prune", "0.5"], "--prune = 0.5 is invalid", "1 - n / m = 0.75"),
    (["--prune", "0.5", "--prune-m", "8"], "--prune-m = 8 is invalid", "'nm' and 'nm_tile' only"),
    (["--prune-method", "filter", "--prune", "0.5"], "--prune-method = 'filter' is invalid", "without conv layers"),
]


@pytest.mark.parametrize("flags,message,detail", BAD, ids=[" ".join(f) for f, _, _ in BAD])
def test_bad_pruning_flags_are_refused_naming_the_flag(mlp, no_data, flags, message, detail, capsys):
    assert main(["evaluate", str(mlp), "--preset", PRESET, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and detail in err and "chip.prune" not in err


def test_a_malformed_block_stops_argparse(mlp, capsys):
    for text in ("3x", "0", "ax4", "2x3x4"):
        with pytest.raises(SystemExit) as info:
            main(["evaluate", str(mlp), "--prune-block", text])
        assert info.value.code == 2
        assert f"argument --prune-block: '{text}' is not a block size" in capsys.readouterr().err
