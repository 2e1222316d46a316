"""The fused noisy-cell kernel (memsim.crossbar.fused) and the tile-major product (memsim.crossbar.pairs).

References: the unfused path of the same layer (mapping, programming, transistor and product as separate kernels,
each tested against autograd in test_crossbar_kernels.py), the pair product it replaces, and the closed-form
moments of the programmed cells (a clipped Gaussian at g_min)."""
import dataclasses
import math
import warnings

import pytest
import torch

from memsim.crossbar import CrossbarArray, NonIdealities, fused, load_preset
from memsim.crossbar.pairs import pair_product, tile_major_product
from memsim.errors import ParameterError
from memsim.nn import CrossbarLinear


@pytest.fixture
def eager_fusion(monkeypatch):
    """Fusion on for any layer size, the kernel run eagerly (no compilation in the quick tests)."""
    monkeypatch.setattr(fused, "ENABLED", True)
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", False)


def _steps(layer, x, n=2):
    out = []
    for _ in range(n):
        y = layer(x)
        (y * torch.linspace(-1, 1, y.shape[-1])).square().sum().backward()
        out.append((y.detach().clone(), layer.weight.grad.clone()))
        layer.weight.grad = None
    return out


def _pair_of_layers(preset, noise, shape=(40, 70)):
    layers = []
    for _ in range(2):
        torch.manual_seed(3)
        layers.append(CrossbarLinear(shape[1], shape[0], preset=preset, mode="noisy", noise=noise))
    return layers


HFOX = load_preset("hfox_1t1r_64").replace(rows=32, cols=32)
NOISE = HFOX.noise
CASES = {
    "all sources (1T1R)": (HFOX, NOISE),
    "programming only": (HFOX, NOISE.only("program")),
    "defects and drift, no programming noise": (HFOX, NOISE.only("d2d", "stuck_on", "stuck_off", "drift")),
    "no noise": (HFOX, NOISE.off()),
    "0T1R, analog levels, all sources": (HFOX.replace(access="0T1R", levels=0), NOISE),
    "odd columns": (HFOX.replace(cols=31), NOISE),
    "a weight scale per output": (HFOX.replace(weight_scale="column"), NOISE),
    "stuck cells' partners retargeted (1T1R, 5 % stuck each way)":
        (HFOX.replace(stuck_compensation="partner"), dataclasses.replace(NOISE, stuck_on=0.05, stuck_off=0.05)),
    "stuck cells' partners retargeted (0T1R, analog, odd columns, no programming noise)":
        (HFOX.replace(stuck_compensation="partner", access="0T1R", levels=0, cols=31),
         dataclasses.replace(NOISE.only("stuck_on", "stuck_off", "d2d"), stuck_on=0.1, stuck_off=0.05)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_layer_equals_the_unfused_path(case, eager_fusion, monkeypatch):
    preset, noise = CASES[case]
    fused_layer, plain_layer = _pair_of_layers(preset, noise)
    x = torch.rand(16, 70)
    assert fused_layer.array._fusable(fused_layer.weight)
    got = _steps(fused_layer, x)
    monkeypatch.setattr(fused, "ENABLED", False)
    assert not plain_layer.array._fusable(plain_layer.weight)
    want = _steps(plain_layer, x)
    for (y1, g1), (y2, g2) in zip(got, want):  # same streams, same chips: the same outputs, step after step
        torch.testing.assert_close(y1, y2, rtol=1e-6, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6 * float(g2.abs().max()))
    assert not torch.equal(got[0][0], got[1][0]) or not noise.program  # a new chip each step


def test_programmed_pair_moments_match_the_clipped_gaussian(eager_fusion):
    """Each cell of a pair is programmed with its own draw: the + cell (target inside the window) is Gaussian, the
    - cell (target g_min) a Gaussian clipped at g_min, and the two are uncorrelated."""
    g_min, g_max, rel = 1e-6, 1e-4, 0.05
    delta, sigma = g_max - g_min, rel * (g_max - g_min)
    n = 200_000
    w = torch.full((1, n, 1, 1), 0.5, dtype=torch.float64)  # [nr, rows, nc, pairs]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, n, 2, generator=gen, dtype=torch.float64)  # the cells: [nr, nc, rows, cols]
    signal, q = fused.programmed_pairs(w, levels=0, g_min=g_min, delta=delta, noise=noise, sigma=sigma, lo=g_min,
                                       hi=g_max, gain=1.0, offset=0.0, gt=None, want_q=True, compiled=False)
    s, q = signal.reshape(-1), q.reshape(-1)
    plus = 0.5 * (s + torch.sqrt(2 * q - s * s))  # the cells back from s = G+ - G-, q = G+^2 + G-^2
    minus = plus - s
    # closed forms: G+ ~ N(g_min + delta / 2, sigma^2) (the window is 10 sigma away); G- = g_min + sigma max(N, 0)
    m_plus, v_plus = g_min + 0.5 * delta, sigma ** 2
    m_minus, v_minus = g_min + sigma / math.sqrt(2 * math.pi), sigma ** 2 * (0.5 - 1 / (2 * math.pi))
    se = sigma / math.sqrt(n)
    assert abs(float(plus.mean()) - m_plus) < 5 * se
    assert abs(float(minus.mean()) - m_minus) < 5 * se
    assert float(plus.var()) == pytest.approx(v_plus, rel=0.02)
    assert float(minus.var()) == pytest.approx(v_minus, rel=0.02)
    corr = torch.corrcoef(torch.stack([plus, minus]))[0, 1]
    assert abs(float(corr)) < 5 / math.sqrt(n)
    assert float(minus.min()) >= g_min * (1 - 1e-9)  # held inside the window (up to the rounding of the inversion)


def test_tile_major_product_matches_the_pair_product():
    torch.manual_seed(0)
    nr, nc, rows, pairs, b = 3, 2, 8, 4, 5
    cells = (torch.rand(nr, nc, rows, 2 * pairs, dtype=torch.float64) + 0.1).requires_grad_()
    vt = torch.randn(b, nr, rows, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(b, nr, nc, pairs, dtype=torch.float64)
    want = pair_product(vt, cells, pairs, cells, noise, 0.05)
    gy = torch.randn_like(want)
    gv_want, gc_want = torch.autograd.grad(want, (vt, cells), gy)

    mp = cells.unflatten(-1, (pairs, 2))
    signal = (mp[..., 0] - mp[..., 1]).transpose(1, 2).flatten(2)          # [nr, rows, nc * pairs]
    q = (mp[..., 0] ** 2 + mp[..., 1] ** 2).transpose(1, 2).flatten(2)
    got = tile_major_product(vt.transpose(0, 1), signal, q, noise.transpose(0, 1).flatten(2), 0.05)
    got = got.unflatten(2, (nc, pairs)).transpose(0, 1)
    torch.testing.assert_close(got, want)
    gv, gc = torch.autograd.grad(got, (vt, cells), gy)
    torch.testing.assert_close(gv, gv_want)
    torch.testing.assert_close(gc, gc_want)


def test_a_failing_compiler_falls_back_to_the_same_values(monkeypatch):
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", True)
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(fused, "_failed", False)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    layer, plain = _pair_of_layers(HFOX, NOISE)
    x = torch.rand(4, 70)
    with pytest.warns(RuntimeWarning, match="unfused path"):
        y = layer(x)
    assert fused._failed and not fused.available(10 ** 9)  # off for the process: no retry per step
    monkeypatch.setattr(fused, "ENABLED", False)
    torch.testing.assert_close(y, plain(x), rtol=1e-6, atol=0)


def test_fused_reads_leave_the_unfused_paths_alone(eager_fusion):
    """Eval reads (a programmed chip), bit-sliced weights and the offset scheme keep their own paths."""
    layer = CrossbarLinear(70, 40, preset=HFOX, mode="noisy")
    assert layer.array._fusable(layer.weight)
    assert not CrossbarArray(HFOX.replace(scheme="offset"), 40, 70)._fusable(layer.weight)
    arr = CrossbarArray(HFOX, 40, 70)
    arr.activity = object()  # a cost record needs the full cells
    assert not arr._fusable(layer.weight)


@pytest.mark.slow
def test_compiled_kernel_equals_the_eager_kernel(monkeypatch):
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", True)
    a, b = _pair_of_layers(HFOX, NOISE)
    x = torch.rand(16, 70)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the compiler must work here
        got = _steps(a, x)
    monkeypatch.setattr(fused, "COMPILE", False)
    want = _steps(b, x)
    for (y1, g1), (y2, g2) in zip(got, want):
        torch.testing.assert_close(y1, y2, rtol=1e-6, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6 * float(g2.abs().max()))


# -- read_noise_grad = False: the read noise as a constant of the backward pass ------------------------------------
def _noise_as_constant(vt, cells, noise, sigma, pairs):
    """Plain-torch reference: the pair product plus read noise whose amplitude is detached (``[B, nr, nc, pairs]``)."""
    mp = cells.unflatten(-1, (pairs, 2))
    y = torch.einsum("bri,rcij->brcj", vt, mp[..., 0] - mp[..., 1])
    var = torch.einsum("bri,rcij->brcj", vt * vt, mp[..., 0] ** 2 + mp[..., 1] ** 2)
    return y + sigma * var.detach().sqrt() * noise


def test_products_without_the_amplitude_gradient_match_plain_torch_with_a_detached_amplitude():
    torch.manual_seed(0)
    nr, nc, rows, pairs, b, sigma = 3, 2, 8, 4, 5, 0.05
    cells = (torch.rand(nr, nc, rows, 2 * pairs, dtype=torch.float64) + 0.1).requires_grad_()
    vt = torch.randn(b, nr, rows, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(b, nr, nc, pairs, dtype=torch.float64)
    want = _noise_as_constant(vt, cells, noise, sigma, pairs)
    gy = torch.randn_like(want)
    gv_want, gc_want = torch.autograd.grad(want, (vt, cells), gy)
    exact = pair_product(vt, cells, pairs, cells, noise, sigma)
    gv_exact, gc_exact = torch.autograd.grad(exact, (vt, cells), gy)

    got = pair_product(vt, cells, pairs, cells, noise, sigma, amplitude_grad=False)
    assert torch.equal(got, exact)  # the same forward values: the noise is drawn and added as before
    torch.testing.assert_close(got, want)
    gv, gc = torch.autograd.grad(got, (vt, cells), gy)
    torch.testing.assert_close(gv, gv_want)
    torch.testing.assert_close(gc, gc_want)
    assert not torch.allclose(gc, gc_exact, rtol=1e-6, atol=0)  # the amplitude term is really gone

    mp = cells.unflatten(-1, (pairs, 2))  # the tile-major product, from the half-width matrices
    signal = (mp[..., 0] - mp[..., 1]).transpose(1, 2).flatten(2)
    q = (mp[..., 0] ** 2 + mp[..., 1] ** 2).transpose(1, 2).flatten(2)
    tm = tile_major_product(vt.transpose(0, 1), signal, q, noise.transpose(0, 1).flatten(2), sigma,
                            amplitude_grad=False)
    tm = tm.unflatten(2, (nc, pairs)).transpose(0, 1)
    torch.testing.assert_close(tm, want)
    gv, gc = torch.autograd.grad(tm, (vt, cells), gy)
    torch.testing.assert_close(gv, gv_want)
    torch.testing.assert_close(gc, gc_want)


def test_read_noise_grad_off_keeps_the_outputs_and_the_fused_path_still_equals_the_unfused(eager_fusion,
                                                                                        monkeypatch):
    x = torch.rand(16, 70)
    runs = {}
    for name, fuse, exact in (("fused", True, False), ("unfused", False, False), ("exact", True, True)):
        monkeypatch.setattr(fused, "ENABLED", fuse)
        torch.manual_seed(3)
        layer = CrossbarLinear(70, 40, preset=HFOX, mode="noisy", noise=NOISE)
        layer.array.read_noise_grad = exact
        runs[name] = _steps(layer, x)
    for (y1, g1), (y2, g2), (y3, g3) in zip(runs["fused"], runs["unfused"], runs["exact"]):
        torch.testing.assert_close(y1, y2, rtol=1e-6, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6 * float(g2.abs().max()))
        assert torch.equal(y1, y3)  # the option changes the backward pass only
        rel = float((g1 - g3).norm() / g3.norm())
        assert 0 < rel < 0.01  # the dropped term: small (read = 0.5 %; measured 0.04 % here), not nothing


def test_read_noise_grad_takes_a_bool():
    arr = CrossbarArray(HFOX, 4, 5)
    assert arr.read_noise_grad is True
    with pytest.raises(ParameterError, match="read_noise_grad"):
        arr.read_noise_grad = 0


def test_adc_range_of_a_strided_read_equals_that_of_its_copy():
    """The fused read's ADC inputs are a transposed view of one block of memory: its range is read without a copy
    and must be the range of the same values laid out contiguously."""
    arr = CrossbarArray(load_preset("hfox_1t1r_64"), 256, 784)
    torch.manual_seed(0)
    tile_major = torch.randn(13, 128, 8, 32) * 1e-5
    y = tile_major.transpose(0, 1).unsqueeze(0)            # [1, B, nr, nc, opt], strided
    assert not y.is_contiguous()
    assert torch.equal(arr.adc_range(y), arr.adc_range(y.contiguous()))
    lo, hi = float(y.min()), float(y.max())
    assert float(arr.adc_range(y)) <= max(-lo, hi)          # a percentile of the magnitudes, within the maximum


@pytest.mark.parametrize("granularity", ["layer", "tile"])
def test_adc_range_is_the_nearest_rank_percentile_else_the_maximum_else_the_fixed_rule(granularity):
    """Reference: numpy's nearest-rank percentile of |y| (a read of at most 2**16 values is taken whole); a signal
    whose percentile is 0 (almost always zero) gets its maximum, and one that is all zero the fixed rule."""
    import numpy as np
    preset = HFOX.replace(adc=HFOX.adc.__class__(bits=6, percentile=99.0, granularity=granularity))
    arr = CrossbarArray(preset, 40, 70)                       # 3 x 2 tiles of 32 x 32 (16 outputs each)
    nr, nc, opt = arr.grid.n_row_tiles, arr.grid.n_col_tiles, arr.grid.outputs_per_tile
    torch.manual_seed(1)
    y = torch.randn(1, 50, nr, nc, opt, dtype=torch.float64) * 1e-5
    y[:, :, 0, 1] = 0.0                                       # one tile sees no signal at all ...
    y[:, :, 1, 0] = 0.0
    y[0, 3, 1, 0, 5] = 2e-5                                   # ... and one almost none
    got = arr.adc_range(y)

    def nearest_rank(a):
        a = np.sort(np.abs(a.numpy().ravel()))
        return a[math.ceil(0.99 * a.size) - 1]

    fixed = arr.fixed_full_scale()
    if granularity == "layer":
        assert float(got) == nearest_rank(y)
        return
    for r in range(nr):
        for c in range(nc):
            tile = y[:, :, r, c]
            want = nearest_rank(tile) or float(tile.abs().max()) or fixed
            assert float(got[r, c]) == pytest.approx(want, rel=1e-12), (r, c)
    assert float(got[1, 0]) == 2e-5 and float(got[0, 1]) == fixed
