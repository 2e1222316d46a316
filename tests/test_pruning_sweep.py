"""The pruning axes of a sweep spec (pruning.method, pruning.block, pruning.m): validated before any work, resolved
into the point's chip, and block pruning placing fewer tiles in sparse mapping through the sweep worker (counted
by hand for 16 x 16 differential tiles: 16 rows, 8 outputs each)."""
import pandas as pd
import pytest
import torch

from memsim.crossbar.presets import load_preset
from memsim.deploy.chip import Chip
from memsim.deploy.usage import tile_usage
from memsim.nn.pruning import Pruning, block_mask, weight_mask
from memsim.sweep import SweepError
from memsim.sweep.runner import run_sweep
from memsim.sweep.spec import parse_spec, point_key
from memsim.sweep.worker import point_chip
from memsim.training.checkpoint import read_checkpoint
from memsim.training.config import apply_overrides, parse_config
from memsim.training.trained import load_trained

from sweep_helpers import tiny_ann_checkpoint, tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_ann_checkpoint(tmp_path_factory.mktemp("pruning_ckpt"))  # an MLP [64, 16, 10]


@pytest.fixture(scope="module")
def msnn(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("pruning_msnn"))  # an MSNN [64, 12, 10]


def _spec(ckpt, axes, **base):
    return parse_spec({"base": {"checkpoint": str(ckpt), "mode": "noisy", "chips": 1, "limit": 60, **base},
                       "axes": axes})


def test_pruning_axes_resolve_into_the_chip(ckpt):
    spec = _spec(ckpt, {"prune": [0.5], "pruning.method": ["unstructured", "block", "nm"], "pruning.m": [4, 8]})
    chips = {}
    for p in spec.points():
        r = spec.resolve(p)
        chips.setdefault(p["pruning.method"], set()).add((point_key(r), point_chip(r).prune))
    # unstructured points resolve as before (no pruning keys: their results keys do not change), m is read by nm only
    old = _spec(ckpt, {"prune": [0.5]})
    assert {k for k, _ in chips["unstructured"]} == {point_key(old.resolve(p)) for p in old.points()}
    assert {c for _, c in chips["unstructured"]} == {Pruning("unstructured", 0.5)}
    assert {c for _, c in chips["block"]} == {Pruning("block", 0.5)} and len(chips["block"]) == 1
    assert {c for _, c in chips["nm"]} == {Pruning("nm", n=2, m=4), Pruning("nm", n=4, m=8)}
    base = _spec(ckpt, {"prune": [0.75]}, **{"pruning.method": "block", "pruning.block": 8})
    assert point_chip(base.resolve(base.points()[0])).prune == Pruning("block", 0.75, block=8)
    both = _spec(ckpt, {"prune": [0.5]}, **{"pruning.method": "nm_tile", "pruning.block": 8, "pruning.m": 8})
    assert point_chip(both.resolve(both.points()[0])).prune == Pruning("nm_tile", n=4, m=8, block=8)


@pytest.mark.parametrize("axes, text", [
    ({"pruning.method": ["blocks"]}, "pruning.method = 'blocks' is invalid: allowed one of"),
    ({"pruning.m": [1]}, "pruning.m = 1 is invalid: allowed an integer >= 2"),
    ({"pruning.method": ["block"], "pruning.block": [0]}, "pruning.block = 0 is invalid"),
    ({"prune": [0.5], "pruning.method": ["block"], "pruning.block": [24]}, "dividing the tile's (32 outputs, 64 rows)"),
    ({"prune": [0.3], "pruning.method": ["nm"]}, "a multiple of 1 / m = 1/4"),
    ({"pruning.method": [3]}, "has the wrong type"),
])
def test_bad_pruning_axes_stop_before_any_work(ckpt, axes, text):
    with pytest.raises(SweepError, match="Fix: |allowed") as e:
        _spec(ckpt, axes)
    assert text in str(e.value)


def test_block_pruning_places_fewer_tiles_in_a_sweep(ckpt, tmp_path):
    """[16, 64] + [10, 16] on 16 x 16 tiles: dense 4 x 2 + 1 x 2 = 10 tiles, one per (8, 16) block; block pruning at
    50 % zeroes 4 of 8 and 1 of 2 blocks: sparse mapping places 5. Unstructured pruning empties no 8 x 8 block: 10."""
    spec = _spec(ckpt, {"tile.size": [16], "prune": [0.5], "pruning.method": ["unstructured", "block"],
                        "mapping": ["dense", "sparse"]})
    out = run_sweep(spec, tmp_path / "res", workers=1, progress=False)
    assert out["failed"] == 0
    df = pd.read_csv(tmp_path / "res" / "results.csv")
    df["pruning.method"] = df["pruning.method"].fillna("unstructured")
    tiles = {(m, s): t for m, s, t in zip(df["pruning.method"], df["mapping"], df["tiles"])}
    assert tiles == {("unstructured", "dense"): 10, ("unstructured", "sparse"): 10, ("block", "dense"): 10,
                     ("block", "sparse"): 5}


def _held(before, after, mask):
    """Pruned weights exactly zero after fine-tuning, and the kept ones moved."""
    return bool((after[mask == 0] == 0).all()) and bool((after[mask == 1] != before[mask == 1]).any())


def test_finetuning_after_pruning_holds_the_mask(ckpt, msnn, tmp_path):
    """The trainers' ``prune=``: the ANN MLP and the MSNN, fine-tuned from their checkpoints with N:M and block
    pruning; the pruned weights (the numpy-checked masks of the initial weights) are exactly zero at the end."""
    for source, pruning in ((ckpt, Pruning("nm", 0.5)), (msnn, Pruning("block", 0.5, block=(4, 16)))):
        network = load_trained(source)
        before = read_checkpoint(source).model_state
        cfg = parse_config(apply_overrides(network.config.to_dict(), {
            "output.dir": str(tmp_path / f"ft_{network.kind.name}"), "output.plot": False}))
        result = network.kind.train(cfg, init=source, prune=pruning, progress=False, log=lambda *_: None,
                                    max_batches=4)
        after = read_checkpoint(result.checkpoint).model_state
        weights = [k for k, v in before.items() if k.endswith("weight") and v.dim() == 2]
        assert len(weights) == 2
        for k in weights:
            assert _held(before[k], after[k], weight_mask(before[k], pruning)), k


def test_sweep_finetunes_after_pruning(ckpt, tmp_path, monkeypatch):
    """base.config + finetune_epochs with block pruning: the point's fine-tuning gets the chip's pruning (held by the
    trainer, as tested above), then the point is deployed; sparse mapping places the closed-form 5 tiles."""
    kind = type(load_trained(ckpt).kind)
    seen, train = [], kind.train

    def recording(self, cfg, **kw):
        seen.append(kw.get("prune"))
        return train(self, cfg, **kw)
    monkeypatch.setattr(kind, "train", recording)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[network]\nkind = "ann"\nlayers = [64, 16, 10]\n[training]\nbatch_size = 64\n')
    spec = parse_spec({"base": {"config": str(cfg), "checkpoint": str(ckpt), "finetune_epochs": 1, "mode": "noisy",
                                "chips": 1, "limit": 60, "pruning.method": "block"},
                       "axes": {"tile.size": [16], "prune": [0.5], "mapping": ["sparse"]}})
    out = run_sweep(spec, tmp_path / "res", workers=1, progress=False)
    assert out["failed"] == 0 and seen == [Pruning("block", 0.5)]
    assert pd.read_csv(tmp_path / "res" / "results.csv")["tiles"].tolist() == [5]


def test_msnn_block_pruning_tiles(msnn):
    """The MSNN [64, 12, 10] on 16 x 16 tiles: dense 2 x 4 + 2 x 1 = 10 tiles, one per (8, 16) block; block pruning at
    50 % leaves 4 + 1 blocks: 5 tiles sparse-mapped, and the deployed synapses hold the numpy-checked mask."""
    network = load_trained(msnn)
    preset = load_preset("hfox_1t1r_64").replace(rows=16, cols=16)
    p = Pruning("block", 0.5)
    tiles = {m: tile_usage(network, Chip(preset, mode="ideal", mapping=m, prune=p))["tiles"]
             for m in ("dense", "sparse")}
    assert tiles == {"dense": 10, "sparse": 5}
    net = network.kind.deploy(network, Chip(preset, mode="ideal", mapping="sparse", prune=p))
    state = read_checkpoint(msnn).model_state
    trained = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    for syn, w in zip(net.synapses, trained):
        assert torch.equal(syn.weight.detach(), w * block_mask(w, 0.5, (8, 16)))
