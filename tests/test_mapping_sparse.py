"""Dense vs sparse mapping (memsim.crossbar.sparse, memsim.nn.grouped, memsim.convert(mapping=, prune=)).

References: F.conv2d / F.linear (closed form) for the ideal-mode products; tile and cell counts counted by
hand for 64x64 differential tiles (64 rows, 32 outputs per tile)."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import memsim
from memsim.crossbar.array import CrossbarArray
from memsim.crossbar.presets import load_preset
from memsim.crossbar.sparse import Block, SparseGrid, detect_blocks
from memsim.crossbar.tiling import TileGrid
from memsim.errors import ParameterError
from memsim.nn.grouped import GroupedCrossbarConv2d, MappedCrossbarLinear, mapping_stats, prune_by_magnitude

PRESET = "hfox_1t1r_64"


def _model(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),           # depthwise
        nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False),  # grouped
        nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).to(dtype)


@pytest.mark.parametrize("mapping", ["dense", "sparse"])
def test_ideal_mapping_equals_conv_and_linear(mapping):
    model = _model()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    xb = memsim.convert(model, PRESET, mode="ideal", mapping=mapping).eval()
    assert isinstance(xb[2], GroupedCrossbarConv2d) and xb[2].mapping == mapping
    ref = model(x)
    assert torch.allclose(xb(x), ref, rtol=1e-9, atol=1e-10)
    # layer by layer against the closed form
    h = torch.relu(F.conv2d(x, model[0].weight, model[0].bias, padding=1))
    y = F.conv2d(h, model[2].weight, model[2].bias, padding=1, groups=16)
    assert torch.allclose(xb[2](h), y, rtol=1e-9, atol=1e-10)
    assert torch.allclose(xb[3](y), F.conv2d(y, model[3].weight, None, padding=1, groups=4), rtol=1e-9, atol=1e-10)


def test_sparse_equals_dense_ideal_with_pruning():
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    dense = memsim.convert(model, PRESET, mode="ideal", mapping="dense", prune=0.6).eval()
    sparse = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=0.6).eval()
    assert torch.allclose(dense(x), sparse(x), rtol=1e-9, atol=1e-10)
    # and both equal the float model with the same weights zeroed
    pruned = _model()
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(prune_by_magnitude(m.weight, 0.6))
    assert torch.allclose(sparse(x), pruned(x), rtol=1e-9, atol=1e-10)


def test_depthwise_tile_counts_by_hand():
    # depthwise 3x3 over 64 channels: unrolled [64, 576], 64 blocks of 1 output x 9 inputs.
    conv = nn.Conv2d(64, 64, 3, groups=64, bias=False)
    dense = GroupedCrossbarConv2d.from_conv(conv, preset=PRESET, mapping="dense")
    sparse = GroupedCrossbarConv2d.from_conv(conv, preset=PRESET, mapping="sparse")
    d, s = mapping_stats(dense), mapping_stats(sparse)
    assert (d["out"], d["in"]) == (s["out"], s["in"]) == (64, 576)
    # dense: ceil(576 / 64) = 9 row tiles x ceil(64 / 32) = 2 column tiles
    assert d["tiles"] == 18 and (d["n_row_tiles"], d["n_col_tiles"]) == (9, 2)
    assert d["used_cells"] == 64 * 576 * 2 and d["utilisation"] == 1.0
    assert d["nonzero_cells"] == 64 * 9 * 2 and d["zero_cells"] == 64 * 576 * 2 - 64 * 9 * 2
    # sparse: floor(64 / 9) = 7 blocks per tile by rows -> ceil(64 / 7) = 10 tiles, no zero cell
    assert s["tiles"] == 10 and s["zero_cells"] == 0
    assert s["used_cells"] == s["nonzero_cells"] == 64 * 9 * 2
    assert s["utilisation"] == pytest.approx(1152 / (10 * 4096))


def test_grouped_and_block_pruned_counts_by_hand():
    # 4 groups of [4 outputs x 36 inputs]: whole groups need 72 rows per pair -> 4 tiles; cut at tile
    # boundaries along a band of 16 outputs they take ceil(144 / 64) = 3 tiles, as dense tiling does.
    w = torch.block_diag(*torch.randn(4, 4, 36))
    blocks = [Block(4 * g, 4 * g + 4, 36 * g, 36 * g + 36) for g in range(4)]
    sg = SparseGrid(16, 144, 64, 64, mask=w, blocks=blocks)
    assert sg.n_tiles == 3 and TileGrid(16, 144, 64, 64).n_tiles == 3
    assert sg.zero_cells == 0 and sg.nonzero_cells == 4 * 4 * 36 * 2
    # a block-pruned [64, 128] matrix with three non-zero 8x8 blocks: dense 2 x 2 = 4 tiles, sparse 1 tile
    m = torch.zeros(64, 128)
    for o, i in ((0, 0), (8, 64), (40, 120)):
        m[o:o + 8, i:i + 8] = torch.randn(8, 8)
    assert detect_blocks(m, (8, 8)) == [Block(0, 8, 0, 8), Block(8, 16, 64, 72), Block(40, 48, 120, 128)]
    sg = SparseGrid(64, 128, 64, 64, mask=m, block=(8, 8))
    assert sg.n_tiles == 1 and TileGrid(64, 128, 64, 64).n_tiles == 4
    assert sg.utilisation() == pytest.approx(3 * 64 * 2 / 4096)


def test_offset_scheme_sparse_layout_is_exact():
    # offset scheme: cells of a used row and a used output outside any placed block hold g_ref (weight 0)
    torch.manual_seed(1)
    w = torch.zeros(12, 40, dtype=torch.float64)
    w[0:4, 0:10] = torch.randn(4, 10, dtype=torch.float64)
    w[4:12, 10:40] = torch.randn(8, 30, dtype=torch.float64)
    g_min, g_max = 1e-5, 1e-4
    delta, g_ref = g_max - g_min, 0.5 * (g_min + g_max)
    sg = SparseGrid(12, 40, 64, 16, "offset", mask=w, block=(4, 10))
    assert sg.n_tiles == 1
    wn = w / w.abs().max()
    g = sg.pack([g_min + delta * 0.5 * (wn + 1)], g_min, g_ref)
    x = torch.randn(5, 40, dtype=torch.float64)
    i = torch.einsum("bri,rcij->brcj", sg.pack_inputs(x), g)
    y = sg.combine(sg.column_signal(i))
    assert torch.allclose(y, 0.5 * delta * x @ wn.T, rtol=1e-9, atol=1e-16)
    # every cell of the 40 used rows x 12 used outputs is programmed; the non-zero weights are 4*10 + 8*30
    assert sg.zero_cells == 40 * 12 - (4 * 10 + 8 * 30)


def test_prune_fraction_exact_and_zero_blocks_not_placed():
    model = _model(torch.float32)
    for frac in (0.25, 0.5, 0.9):
        xb = memsim.convert(model, PRESET, mode="ideal", mapping="sparse", prune=frac)
        for name, m in xb.named_modules():
            if hasattr(m, "weight_mask"):
                n = m.weight.numel()
                assert int((m.weight == 0).sum()) == round(frac * n), name
    # a depthwise conv with 10 of its 16 channels zeroed: sparse places only the 6 live 1x9 blocks
    conv = nn.Conv2d(16, 16, 3, groups=16, bias=False)
    with torch.no_grad():
        conv.weight[:10] = 0
    s = mapping_stats(GroupedCrossbarConv2d.from_conv(conv, preset=PRESET, mapping="sparse"))
    assert s["tiles"] == 1 and s["nonzero_cells"] == 6 * 9 * 2 and s["zero_cells"] == 0


def test_sparse_grid_in_noisy_and_irdrop_modes():
    # the sparse layout runs through every CrossbarArray mode; noise-free irdrop with zero wire resistance
    # is the ideal product up to the drop on the 10 Ohm DAC source resistance and the access transistor
    torch.manual_seed(2)
    w = torch.block_diag(*torch.randn(8, 2, 9)).double()
    preset = load_preset(PRESET)
    grid = SparseGrid(16, 72, preset.rows, preset.cols, preset.scheme, mask=w, block=(2, 9))
    x = torch.rand(4, 72, dtype=torch.float64)
    quiet = preset.noise.__class__()  # no noise
    p0 = preset.replace(r_wire=0.0, dac=None, adc=None, levels=0)
    arr = CrossbarArray(p0, 16, 72, mode="irdrop", noise=quiet, grid=grid)
    ref = x @ w.T
    y = arr(w, x)
    assert float((y - ref).norm() / ref.norm()) < 5e-3
    noisy = CrossbarArray(preset, 16, 72, mode="noisy", grid=grid)
    err = (noisy(w, x) - ref).norm() / ref.norm()
    assert 0 < float(err) < 0.5


def test_mapping_errors_name_the_layer():
    model = _model(torch.float32)
    with pytest.raises(ParameterError, match=r"does not apply to layer '1'.*ReLU"):
        memsim.convert(model, PRESET, mapping={"1": "sparse"})
    with pytest.raises(ParameterError, match=r"layer 'fc9'.*no layer of that name"):
        memsim.convert(model, PRESET, mapping={"fc9": "sparse"})
    with pytest.raises(ParameterError, match=r"mapping\['2'\]"):
        memsim.convert(model, PRESET, mapping={"2": "diagonal"})
    with pytest.raises(ParameterError, match="prune"):
        memsim.convert(model, PRESET, prune=1.0)
    # per-layer schemes: only the depthwise layer sparse
    xb = memsim.convert(model, PRESET, mode="ideal", mapping={"2": "sparse"})
    assert xb[2].mapping == "sparse" and type(xb[0]).__name__ == "CrossbarConv2d"


def test_masked_linear_keeps_pruned_weights_zero_in_training():
    lin = nn.Linear(20, 6)
    xb = MappedCrossbarLinear.from_linear(lin, preset=PRESET, mode="ideal", mapping="sparse")
    xb.prune_(0.5)
    xb.train()
    loss = xb(torch.randn(8, 20)).pow(2).sum()
    loss.backward()
    with torch.no_grad():  # a plain gradient step: the masked product gives pruned weights zero gradient
        xb.weight -= 0.1 * xb.weight.grad
    assert int((xb.weight.grad * (1 - xb.weight_mask)).count_nonzero()) == 0
    eff = (xb.weight * xb.weight_mask)
    assert int((eff == 0).sum()) == 60
    assert math.isclose(float(xb.weight_mask.mean()), 0.5)


def test_random_block_sparse_never_more_tiles_and_exact():
    gen = torch.Generator().manual_seed(3)
    for trial in range(6):
        out, inp = (int(v) for v in torch.randint(20, 150, (2,), generator=gen))
        keep = torch.rand(math.ceil(out / 8), math.ceil(inp / 8), generator=gen) < 0.3
        mask = keep.repeat_interleave(8, 0).repeat_interleave(8, 1)[:out, :inp]
        w = torch.randn(out, inp, generator=gen, dtype=torch.float64) * mask
        for rows, cols in ((16, 16), (64, 64), (32, 64)):
            sg, tg = SparseGrid(out, inp, rows, cols, mask=w), TileGrid(out, inp, rows, cols)
            assert sg.n_tiles <= tg.n_tiles
            assert sg.nonzero_cells == 2 * int((w != 0).sum())
            x = torch.randn(3, inp, dtype=torch.float64)
            gs = [1 + w.clamp_min(0), 1 + (-w).clamp_min(0)]
            i = torch.einsum("bri,rcij->brcj", sg.pack_inputs(x), sg.pack(gs, 1.0, 1.5))
            assert torch.allclose(sg.combine(sg.column_signal(i)), x @ w.T, rtol=1e-9, atol=1e-9)
