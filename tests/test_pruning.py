"""Structured pruning (memsim.nn.pruning): each method's mask against a numpy reference, tile counts of sparse
mapping against closed forms (64 x 64 differential tiles: 64 rows, 32 outputs each), masks held in fine-tuning,
the old float form, and bad input stopped with an error naming the field."""
import doctest
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import memsim
import memsim.nn.pruning
from memsim.crossbar.presets import load_preset
from memsim.crossbar.sparse import SparseGrid
from memsim.deploy.chip import Chip
from memsim.errors import ParameterError
from memsim.nn.grouped import GroupedCrossbarConv2d, MappedCrossbarLinear, mapping_stats, prune_by_magnitude
from memsim.nn.pruning import (Pruning, block_mask, filter_mask, hold_masks, nm_mask, prune_model_, tile_block,
                               weight_mask)

PRESET = "hfox_1t1r_64"


def _w(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# -- numpy references ------------------------------------------------------------------------------------------

def np_block_mask(w, fraction, bo, bi):
    out, inp = w.shape
    nbo, nbi = -(-out // bo), -(-inp // bi)
    norms = np.array([[np.linalg.norm(w[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi]) for c in range(nbi)]
                      for r in range(nbo)])
    k = int(round(fraction * nbo * nbi))
    mask = np.ones_like(w)
    for flat in np.argsort(norms.ravel(), kind="stable")[:k]:
        r, c = divmod(int(flat), nbi)
        mask[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi] = 0
    return mask


def np_nm_mask(w, n, m):
    mask = np.zeros_like(w)
    for o in range(w.shape[0]):
        for start in range(0, w.shape[1], m):
            run = np.abs(w[o, start:start + m])
            keep = np.argsort(-run, kind="stable")[:n]
            mask[o, start + keep] = 1
    return mask


def np_filter_mask(w, fraction):
    norms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(1))
    mask = np.ones_like(w)
    mask[np.argsort(norms, kind="stable")[:int(round(fraction * w.shape[0]))]] = 0
    return mask


# -- masks ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_block_mask_matches_numpy_and_is_aligned(fraction):
    w = _w(70, 150)  # ragged: 3 x 3 blocks of 32 x 64, the last row and column of blocks smaller
    mask = block_mask(w, fraction, (32, 64))
    ref = np_block_mask(w.numpy(), fraction, 32, 64)
    assert np.array_equal(mask.numpy(), ref)
    assert round((1 - ref).sum()) > 0 and int(round(fraction * 9)) == sum(
        ref[r * 32, c * 64] == 0 for r in range(3) for c in range(3))
    # every aligned block is all kept or all pruned
    for r in range(3):
        for c in range(3):
            blk = mask[r * 32:(r + 1) * 32, c * 64:(c + 1) * 64]
            assert blk.min() == blk.max()


def test_block_mask_exact_share_on_aligned_matrix():
    w = _w(128, 256)
    mask = block_mask(w, 0.75, (16, 16))
    assert int((mask == 0).sum()) == 0.75 * w.numel()
    # the pruned blocks are the ones of smallest norm: every kept block's norm >= every pruned block's
    norms = (w ** 2).reshape(8, 16, 16, 16).sum((1, 3)).sqrt()
    kept = mask.reshape(8, 16, 16, 16)[:, 0, :, 0].bool()
    assert norms[kept].min() >= norms[~kept].max()


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_nm_mask_matches_numpy_n_of_every_m(n, m):
    w = _w(20, 64)
    mask = nm_mask(w, n, m)
    assert np.array_equal(mask.numpy(), np_nm_mask(w.numpy(), n, m))
    per_run = mask.reshape(20, 64 // m, m).sum(-1)
    assert bool((per_run == n).all())
    assert int((mask == 0).sum()) == w.numel() * (m - n) // m


def test_nm_mask_ragged_last_run_and_pruning_value():
    w = _w(5, 9)  # a depthwise 3x3 filter's row: runs of 4, 4, 1
    mask = nm_mask(w, 2, 4)
    assert np.array_equal(mask.numpy(), np_nm_mask(w.numpy(), 2, 4))
    assert mask[:, 8].tolist() == [1.0] * 5   # the last run of one weight keeps min(2, 1) = 1
    p = Pruning("nm", 0.75)
    assert (p.n, p.m, p.fraction) == (1, 4, 0.75) and Pruning("nm", n=4, m=8).fraction == 0.5
    assert Pruning("nm", 0.5, m=8) == Pruning("nm", n=4, m=8)


def test_filter_mask_matches_numpy_and_zeroes_whole_filters():
    w = _w(24, 3, 3, 3)
    mask = filter_mask(w, 0.5)
    assert np.array_equal(mask.numpy(), np_filter_mask(w.numpy(), 0.5))
    per = mask.reshape(24, -1)
    assert bool(((per.sum(1) == 0) | (per.sum(1) == 27)).all()) and int((per.sum(1) == 0).sum()) == 12


def test_weight_mask_per_layer_kind():
    conv = _w(16, 8, 3, 3)
    p = Pruning("nm", 0.5)
    assert np.array_equal(weight_mask(conv, p).reshape(16, -1).numpy(), np_nm_mask(conv.reshape(16, -1).numpy(), 2, 4))
    assert weight_mask(_w(10, 20), Pruning("filter", 0.5)) is None   # linear layers are not filter-pruned
    # a grouped conv's blocks are its groups: 8 groups of 2 filters, 4 of smallest norm zeroed
    dw = _w(16, 1, 3, 3)
    mask = weight_mask(dw, Pruning("block", 0.5), groups=8)
    groups = dw.reshape(8, -1).pow(2).sum(1)
    pruned = mask.reshape(8, -1).sum(1) == 0
    assert int(pruned.sum()) == 4 and groups[~pruned].min() >= groups[pruned].max()
    # unstructured is magnitude pruning, as before
    assert torch.equal(weight_mask(conv, Pruning.parse(0.3)), prune_by_magnitude(conv, 0.3))


def np_nm_group_mask(w, n, m, group):
    mask = np.zeros_like(w)
    for g0 in range(0, w.shape[0], group):
        norms = np.sqrt((w[g0:g0 + group] ** 2).sum(0))
        for start in range(0, w.shape[1], m):
            keep = np.argsort(-norms[start:start + m], kind="stable")[:n]
            mask[g0:g0 + group, start + keep] = 1
    return mask


def test_nm_tile_mask_shares_the_pattern_of_a_tile():
    w = _w(70, 64)  # groups of 32 outputs: 32, 32 and a last 6
    mask = weight_mask(w, Pruning("nm_tile", 0.5), tile=(32, 64))
    assert np.array_equal(mask.numpy(), np_nm_group_mask(w.numpy(), 2, 4, 32))
    assert bool((mask.reshape(70, 16, 4).sum(-1) == 2).all())
    assert torch.equal(weight_mask(w, Pruning("nm_tile", 0.75, block=8)), torch.from_numpy(
        np_nm_group_mask(w.numpy(), 1, 4, 8)))


# -- tiles: sparse mapping leaves the pruned tiles out ------------------------------------------------------

def test_block_pruning_tile_count_closed_form():
    """[256, 768] on 64x64 differential tiles: 12 x 8 = 96 dense tiles, one per (32, 64) block; 50 % block
    pruning zeroes 48 blocks, so sparse mapping places 96 - 48 = 48 tiles and dense still 96."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(768, 256)).double()
    x = torch.rand(4, 768, dtype=torch.float64)
    p = Pruning("block", 0.5)
    dense = memsim.convert(model, PRESET, mode="ideal", mapping="dense", prune=p).eval()
    sparse = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=p).eval()
    n_dense, n_sparse = mapping_stats(dense[0])["tiles"], mapping_stats(sparse[0])["tiles"]
    assert (n_dense, n_sparse) == (math.ceil(768 / 64) * math.ceil(256 / 32), 96 - round(0.5 * 96)) == (96, 48)
    # the pruned weights are the numpy reference's blocks, and both products are the pruned matrix's
    mask = np_block_mask(model[0].weight.detach().numpy(), 0.5, 32, 64)
    assert np.array_equal(sparse[0].weight_mask.numpy(), mask)
    ref = F.linear(x, model[0].weight * torch.from_numpy(mask), model[0].bias)
    assert torch.allclose(sparse(x), ref, rtol=1e-9, atol=1e-10) and torch.allclose(dense(x), ref, rtol=1e-9,
                                                                                     atol=1e-10)
    # 75 %: a quarter of the blocks, a quarter of the tiles
    assert mapping_stats(memsim.convert(model, PRESET, mode="ideal", mapping="sparse",
                                        prune=Pruning("block", 0.75))[0])["tiles"] == 24


def test_filter_pruning_places_fewer_tiles_and_nm_does_not():
    """A 3x3 conv 64 -> 128: the [128, 576] matrix is 9 x 4 = 36 dense tiles; half its filters pruned leaves 64
    outputs, 9 x 2 = 18 tiles in sparse mapping. N:M keeps a different pattern per output: no tile is empty."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1)).double()
    x = torch.rand(2, 64, 5, 5, dtype=torch.float64)
    for method, sparse_tiles in (("filter", 18), ("nm", 36)):
        p = Pruning(method, 0.5)
        dense = memsim.convert(model, PRESET, mode="ideal", mapping="dense", prune=p).eval()
        sparse = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=p).eval()
        assert (mapping_stats(dense[0])["tiles"], mapping_stats(sparse[0])["tiles"]) == (36, sparse_tiles)
        mask = weight_mask(model[0].weight, p)
        ref = F.conv2d(x, model[0].weight * mask, model[0].bias, padding=1)
        assert torch.allclose(sparse(x), ref, rtol=1e-9, atol=1e-10)
        assert torch.allclose(dense(x), ref, rtol=1e-9, atol=1e-10)


def test_nm_tile_places_n_of_m_of_the_rows():
    """[256, 768] with 2:4 shared by each tile's 32 outputs: every band of 32 outputs reads 384 inputs, 6 tiles of 64
    rows, 8 bands: 48 tiles sparse-mapped (dense 96); the product is the pruned matrix's."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(768, 256)).double()
    p = Pruning("nm_tile", 0.5)
    sparse = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=p).eval()
    assert mapping_stats(sparse[0])["tiles"] == 8 * math.ceil(768 / 2 / 64) == 48
    mask = torch.from_numpy(np_nm_group_mask(model[0].weight.detach().numpy(), 2, 4, 32))
    x = torch.rand(3, 768, dtype=torch.float64)
    assert torch.allclose(sparse(x), F.linear(x, model[0].weight * mask, model[0].bias), rtol=1e-9, atol=1e-10)


def test_sparse_grid_compacts_zero_outputs_and_inputs():
    """Every other output and the last 100 inputs zero: 128 live outputs x 400 live inputs = 7 x 4 = 28 tiles instead of
    the 8 x 8 = 64 of the [256, 500] matrix; the layout places every non-zero weight once, at its own (out, in)."""
    w = _w(256, 500, seed=3)
    w[1::2] = 0
    w[:, 400:] = 0
    g = SparseGrid(256, 500, 64, 64, mask=w)
    assert g.n_tiles == math.ceil(400 / 64) * math.ceil(128 / 32) == 28
    rebuilt = torch.zeros_like(w)
    for t in range(g.n_tiles):
        r, c = g.placed[t].nonzero(as_tuple=True)
        rebuilt[g.out_idx[t, c], g.in_idx[t, r]] += w[g.out_idx[t, c], g.in_idx[t, r]]
    assert torch.equal(rebuilt, w) and g.nonzero_cells == 2 * int((w != 0).sum())


def test_depthwise_stays_block_diagonal_under_block_pruning():
    """A depthwise 3x3 conv of 64 channels: sparse mapping packs groups, 7 per 64-row tile (10 tiles); block pruning
    at 50 % zeroes 32 whole groups, which then pack onto ceil(32 / 7) = 5 tiles."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64)).double()
    sparse = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=Pruning("block", 0.5))
    layer = sparse[0]
    assert isinstance(layer, GroupedCrossbarConv2d) and mapping_stats(layer)["tiles"] == 5
    assert int((layer.weight_mask.reshape(64, -1).sum(1) == 0).sum()) == 32


# -- the old form, the chip, fine-tuning -----------------------------------------------------------------------

def test_old_float_form_is_unstructured():
    preset = load_preset(PRESET)
    chip = Chip(preset, mode="ideal", prune=0.5)
    assert chip.prune == Pruning("unstructured", 0.5) and chip.describe()["prune"] == 0.5
    assert Chip(preset, prune={"method": "nm", "fraction": 0.5}).prune == Pruning("nm", n=2, m=4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 24))
    a = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=0.5)
    assert torch.equal(a[0].weight_mask, prune_by_magnitude(model[0].weight, 0.5))
    assert repr(chip).count("prune=0.5") == 1 and str(Pruning("block", 0.5)) == "block 0.5 (tile)"


def test_masks_hold_in_fine_tuning():
    """Pruned weights stay exactly zero through AdamW steps (weight decay, momentum) on a float model (hold_masks)
    and on a converted, pruned crossbar layer (its weight_mask); the kept weights do move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    masks = prune_model_(model, Pruning("nm", 0.5))
    assert set(masks) == {"0", "3"}
    before = [m.weight.detach().clone() for m in (model[0], model[3])]
    handles = hold_masks([(model[0].weight, masks["0"]), (model[3].weight, masks["3"])])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 10, (16,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for layer, mask, w0 in zip((model[0], model[3]), (masks["0"], masks["3"]), before):
        assert bool((layer.weight[mask == 0] == 0).all())
        assert bool((layer.weight[mask == 1] != w0[mask == 1]).all())
    for h in handles:
        h.remove()
    xb = memsim.convert(nn.Sequential(nn.Linear(128, 64)), PRESET, mode="ideal", prune=Pruning("block", 0.5))
    layer = xb[0]
    assert isinstance(layer, MappedCrossbarLinear)
    pruned = layer.weight_mask == 0
    opt = torch.optim.Adam(xb.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        xb.train()(torch.randn(8, 128)).pow(2).sum().backward()
        opt.step()
    assert int(pruned.sum()) == 128 * 64 // 2 and bool((layer.weight[pruned] == 0).all())


# -- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, field, text", [
    ({"fraction": 1.0}, "prune", "a fraction in [0, 1)"),
    ({"fraction": -0.1}, "prune", "a fraction in [0, 1)"),
    ({"method": "block", "fraction": True}, "prune.fraction", "a fraction in [0, 1)"),
    ({"method": "blocks", "fraction": 0.5}, "prune.method",
     "one of ['unstructured', 'block', 'nm', 'nm_tile', 'filter']"),
    ({"method": "nm_tile", "fraction": 0.5, "block": (8, 2)}, "prune.block", "the outputs sharing a pattern"),
    ({"method": "nm", "n": 4, "m": 4}, "prune.n", "1 <= n < m = 4"),
    ({"method": "nm", "n": 0, "m": 4}, "prune.n", "an integer >= 1"),
    ({"method": "nm", "n": 2, "m": -4}, "prune.m", "an integer >= 1"),
    ({"method": "nm", "fraction": 0.3}, "prune.fraction", "a multiple of 1 / m = 1/4"),
    ({"method": "nm", "fraction": 0.25, "n": 2, "m": 4}, "prune.fraction", "1 - n / m = 0.5"),
    ({"method": "nm", "fraction": 0.5, "block": 8}, "prune.block", "None for method 'nm'"),
    ({"method": "block", "fraction": 0.5, "n": 2}, "prune.n", "None for method 'block'"),
    ({"method": "block", "fraction": 0.5, "block": (8, 0)}, "prune.block", "an integer k >= 1"),
])
def test_bad_pruning_values(kw, field, text):
    with pytest.raises(ParameterError, match="Fix: ") as e:
        Pruning(**kw)
    assert e.value.field == field and text in str(e.value)


def test_bad_pruning_in_context():
    preset = load_preset(PRESET)
    with pytest.raises(ParameterError, match="dividing the tile's") as e:
        Chip(preset, prune=Pruning("block", 0.5, block=24))
    assert e.value.field == "chip.prune.block" and "(32 outputs, 64 rows)" in str(e.value)
    assert Chip(preset, prune=Pruning("block", 0.5, block=16)).prune.block == (16, 16)
    assert tile_block(preset) == (32, 64)
    with pytest.raises(ParameterError, match="ideal chip has no tiles") as e:
        Chip.ideal(prune=Pruning("block", 0.5))
    assert e.value.field == "chip.prune.block"
    with pytest.raises(ParameterError, match="this network has none") as e:  # filter pruning of an MLP
        memsim.convert(nn.Sequential(nn.Linear(8, 4)), PRESET, prune=Pruning("filter", 0.5))
    assert e.value.field == "prune.method"
    with pytest.raises(ParameterError, match="prune.nm") as e:
        Pruning.parse({"method": "nm", "fraction": 0.5, "nm": 2})
    with pytest.raises(ParameterError) as e:
        Chip(preset, prune="0.5")
    assert e.value.field == "chip.prune"


def test_docstring_examples_run():
    result = doctest.testmod(memsim.nn.pruning, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
