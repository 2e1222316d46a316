"""Reads of layers that do not fill their tiles (memsim.crossbar.array: CrossbarArray._active, _padded_outputs).

With ideal wires a word line driven at 0 V carries no current and an unused bit line is not read, so ``noisy``
reads compute the occupied rows and outputs of the tiles only. References: the same array computing over its full
padded tiles (``trim_padding = False``: the same seeds, the same random streams, the padded product written out),
and a numpy nearest-rank percentile of the ADC inputs that hold weights (the padded outputs of a partly filled
last column tile are no converter's signal)."""
import math

import numpy as np
import pytest
import torch

from memsim.crossbar import CrossbarArray, NonIdealities, fused, load_preset
from memsim.crossbar.periphery import DAC
from memsim.nn import CrossbarConv2d

HFOX = load_preset("hfox_1t1r_64")
BIG = HFOX.replace(rows=256, cols=256)
CASES = {  # preset, out_features, in_features
    "a small layer on a big tile (the VGG's first conv)": (BIG, 16, 9),
    "a partial last row tile": (HFOX, 20, 70),
    "partial last row and column tiles": (HFOX, 70, 140),
    "a few padded rows (not split)": (HFOX, 20, 250),
    "a partial last column tile": (HFOX, 70, 40),
    "offset scheme": (HFOX.replace(scheme="offset"), 20, 30),
    "bit-sliced weights, bit-serial inputs": (HFOX.replace(weight_bits=4, cell_bits=2,
                                                           dac=DAC(bits=8, slice_bits=4)), 20, 30),
    "an ADC range per tile": (HFOX.replace(adc=HFOX.adc.__class__(bits=6, granularity="tile")), 20, 30),
}


@pytest.fixture(params=[False, True], ids=["unfused", "fused"])
def fusion(request, monkeypatch):
    """The unfused path, or the fused noisy kernel for any layer size (run eagerly: no compilation here)."""
    monkeypatch.setattr(fused, "ENABLED", request.param)
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", False)
    return request.param


def _reads(preset, out, inp, trim, n=2):
    torch.manual_seed(1)
    w = torch.randn(out, inp, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, inp, dtype=torch.float64, requires_grad=True)
    array = CrossbarArray(preset, out, inp, mode="noisy")
    array.trim_padding = trim
    res = []
    for _ in range(n):  # two reads: the second one's draws follow the first's in the streams
        y = array(w, x)
        (y * torch.linspace(-1, 1, out, dtype=y.dtype)).square().sum().backward()
        res.append((y.detach().clone(), w.grad.clone(), x.grad.clone()))
        w.grad = x.grad = None
    return res, array


@pytest.mark.parametrize("case", list(CASES))
def test_trimmed_reads_equal_the_padded_tiles(case, fusion):
    preset, out, inp = CASES[case]
    trimmed, a = _reads(preset, out, inp, trim=True)
    padded, b = _reads(preset, out, inp, trim=False)
    for (y, gw, gx), (y0, gw0, gx0) in zip(trimmed, padded):
        assert y.abs().max() > 0 and gw.abs().max() > 0
        for t, t0 in ((y, y0), (gw, gw0), (gx, gx0)):  # float64: the same operations up to summation order
            torch.testing.assert_close(t, t0, rtol=1e-10, atol=1e-10 * float(t0.abs().max()))
    for name in ("program", "read"):  # the streams advanced alike: the padded draws are still taken
        assert torch.equal(a.noise_streams[name].get_state(), b.noise_streams[name].get_state())


def test_small_layers_compute_only_their_occupied_cells():
    a = CrossbarArray(BIG, 16, 9, mode="noisy")
    assert a._active() == (9, 16, 9)
    assert CrossbarArray(HFOX, 70, 40, mode="noisy")._active() == (40, 32, 40)   # three column tiles: all outputs
    assert CrossbarArray(HFOX, 20, 70, mode="noisy")._active() == (64, 20, 6)  # two row tiles: 64 + 6 rows
    assert CrossbarArray(HFOX, 20, 250, mode="noisy")._active() == (64, 20, 64)  # 6 padded rows of 256: kept
    assert CrossbarArray(HFOX.replace(scheme="offset"), 20, 70, mode="noisy")._active() == (64, 63, 64)
    assert CrossbarArray(BIG, 16, 9, mode="irdrop")._active() == (256, 128, 256)  # unused cells load the wires


def test_a_conv_layer_on_a_big_tile_equals_its_padded_reads(fusion):
    res = []
    for trim in (True, False):
        torch.manual_seed(2)
        conv = CrossbarConv2d(1, 16, 3, padding=1, preset=BIG, mode="noisy").double()
        conv.array.trim_padding = trim
        x = torch.randn(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
        y = conv(x)
        y.square().sum().backward()
        res.append((y.detach(), conv.weight.grad, x.grad))
    for t, t0 in zip(*res):
        torch.testing.assert_close(t, t0, rtol=1e-10, atol=1e-10 * float(t0.abs().max()))


def _nearest_rank(values: np.ndarray, p: float) -> float:
    v = np.sort(values)
    return float(v[min(max(math.ceil(p / 100 * v.size), 1), v.size) - 1])


def test_the_adc_range_leaves_out_the_padded_outputs():
    a = CrossbarArray(HFOX, 70, 40, mode="noisy")  # 32 outputs per tile: 32 + 32 + 6
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(1, 50, 1, 3, 32, generator=gen, dtype=torch.float64) * 1e-6
    y[..., 2, 6:] = 1.0  # what the padded bit lines would read: far above every real output
    valid = np.concatenate([y[..., :2, :].abs().numpy().ravel(), y[..., 2, :6].abs().numpy().ravel()])
    assert float(a.adc_range(y)) == _nearest_rank(valid, HFOX.adc.percentile)
    np.testing.assert_array_equal(np.sort(a.adc_groups(y.abs()).numpy().ravel()), np.sort(valid))


def test_the_adc_range_of_a_small_layer_does_not_depend_on_the_tile_size():
    quiet = NonIdealities()  # no noise: the same cells and inputs on every tile size
    torch.manual_seed(0)
    w, x = torch.randn(16, 9, dtype=torch.float64), torch.randn(40, 9, dtype=torch.float64)
    outs = []
    for preset in (HFOX.replace(access="0T1R"), BIG.replace(access="0T1R")):
        for trim in (True, False):
            a = CrossbarArray(preset, 16, 9, mode="noisy", noise=quiet)
            a.trim_padding = trim
            captured = []
            y = a(w, x, adc_scale=lambda v: captured.append(a.adc_range(v)) or captured[-1])
            outs.append((y, captured[0]))
    for y, fs in outs[1:]:
        assert float(fs) == pytest.approx(float(outs[0][1]), rel=1e-12)  # (summation order)
        torch.testing.assert_close(y, outs[0][0], rtol=1e-12, atol=1e-12)
