"""The fused noisy-cell kernel (memsim.crossbar.fused) and the tile-major product (memsim.crossbar.pairs).

References: the unfused path of the same layer (mapping, programming, transistor and product as separate kernels,
each tested against autograd in test_crossbar_kernels.py), the pair product it replaces, and the closed-form
moments of the programmed cells (a clipped Gaussian at g_min)."""
import math
import warnings

import pytest
import torch

from memsim.crossbar import CrossbarArray, NonIdealities, fused, load_preset
from memsim.crossbar.pairs import pair_product, tile_major_product
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
