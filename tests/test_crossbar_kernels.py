"""The hand-written forward/backward kernels of the crossbar layers against plain autograd formulas.

Each fused kernel (differential-pair product with read noise, pair cells, programming, converters, the
transistor in series) must give the values and gradients of the straightforward composition of torch ops
it replaces, in float64, to rounding.
"""
from __future__ import annotations

import pytest
import torch

from memsim.crossbar import NonIdealities, load_preset
from memsim.crossbar.mapping import Mapping, quantise
from memsim.crossbar.nonideal import FixedDefects, generator, program
from memsim.crossbar.pairs import pair_product
from memsim.crossbar.periphery import ADC, DAC
from memsim.crossbar.solver import effective_conductance, memristor_for_cell
from memsim.crossbar.tiling import TileGrid

F64 = torch.float64


def _grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    out = fn(*xs)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    (out * w).sum().backward()
    return out.detach(), [x.grad for x in xs]


def _reference_pairs(vt, m, gc, noise, sigma, pairs):
    sig = m[..., 0:2 * pairs:2] - m[..., 1:2 * pairs:2]
    y = torch.einsum("bri,rcij->brcj", vt, sig)
    if gc is None:
        return y
    q = gc[..., 0:2 * pairs:2] ** 2 + gc[..., 1:2 * pairs:2] ** 2
    var = torch.einsum("bri,rcij->brcj", vt * vt, q)
    std = torch.where(var > 0, torch.sqrt(torch.where(var > 0, var, torch.ones_like(var))), torch.zeros_like(var))
    return y + sigma * std * noise


@pytest.mark.parametrize("cols", [8, 9])  # an odd last column is left out of the pairs
def test_pair_product_values_and_gradients_match_autograd(cols):
    gen = torch.Generator().manual_seed(0)
    nr, nc, rows, b = 2, 3, 5, 4
    pairs = cols // 2
    vt = torch.rand(b, nr, rows, generator=gen, dtype=F64) - 0.5
    vt[1, 0] = 0.0  # a read with no current in row-tile 0: zero variance, zero noise gradient there
    m = 1e-5 + 1e-4 * torch.rand(nr, nc, rows, cols, generator=gen, dtype=F64)
    gc = 1e-5 + 1e-4 * torch.rand(nr, nc, rows, cols, generator=gen, dtype=F64)
    noise = torch.randn(b, nr, nc, pairs, generator=gen, dtype=F64)
    # separate product matrix and noise conductances (irdrop: the operator and the cells)
    got, g_got = _grads(lambda v, a, c: pair_product(v, a, pairs, c, noise, 0.05), vt, m, gc)
    ref, g_ref = _grads(lambda v, a, c: _reference_pairs(v, a, c, noise, 0.05, pairs), vt, m, gc)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    for a, r in zip(g_got, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-30)
    # one tensor for both (noisy mode), and no read noise
    got, g_got = _grads(lambda v, a: pair_product(v, a, pairs, a, noise, 0.05), vt, m)
    ref, g_ref = _grads(lambda v, a: _reference_pairs(v, a, a, noise, 0.05, pairs), vt, m)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    for a, r in zip(g_got, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-30)
    got, g_got = _grads(lambda v, a: pair_product(v, a, pairs), vt, m)
    ref, g_ref = _grads(lambda v, a: _reference_pairs(v, a, None, None, 0.0, pairs), vt, m)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    for a, r in zip(g_got, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-30)


def test_pair_cells_equal_the_mapping_then_packing():
    gen = torch.Generator().manual_seed(1)
    grid = TileGrid(10, 7, 4, 9)  # padding in both directions and an odd last column
    for levels in (0, 5):
        mp = Mapping("differential", 1e-6, 1e-4, levels)
        w = 2 * torch.rand(10, 7, generator=gen, dtype=F64) - 1
        w[0, 0] = 0.0
        got, (g_got,) = _grads(lambda x: mp.pair_cells(grid.pack_outputs(x), grid.cols), w)
        ref, (g_ref,) = _grads(lambda x: grid.pack(mp.to_conductance(x), mp.g_min, mp.g_ref), w)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-18)
        torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-18)


def _reference_program(g, cfg, g_min, g_max, defects, noise):
    out = g + cfg.program * (g_max - g_min) * noise
    out = out + (out.clamp(g_min, g_max) - out).detach()  # straight-through clamp
    out = out * defects.d2d * (cfg.drift_t / cfg.drift_t0) ** (-cfg.drift_nu)
    out = torch.where(defects.stuck_on, torch.full_like(out, g_max), out)
    return torch.where(defects.stuck_off, torch.full_like(out, g_min), out)


def test_programming_matches_the_step_by_step_formula():
    cfg = NonIdealities(program=0.2, d2d=0.1, stuck_on=0.05, stuck_off=0.05, drift_nu=0.05, drift_t=100.0, seed=4)
    g_min, g_max = 1e-6, 1e-4
    g = g_min + (g_max - g_min) * torch.rand(3, 2, 6, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    defects = FixedDefects(g.shape, cfg, g)
    noise = torch.randn(g.shape, generator=generator(cfg.seed, "program"), dtype=F64)
    got, (g_got,) = _grads(lambda x: program(x, cfg, g_min, g_max, defects, generator(cfg.seed, "program")), g)
    ref, (g_ref,) = _grads(lambda x: _reference_program(x, cfg, g_min, g_max, defects, noise), g)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=0)
    assert bool((got[defects.stuck_on] == g_max).all()) and bool((g_got[defects.stuck_on] == 0).all())


def test_converters_quantise_and_pass_gradients_inside_their_range():
    x = torch.linspace(-1.5, 1.5, 301, dtype=F64)
    dac = DAC(bits=4, v_max=0.2)
    got, (g_got,) = _grads(lambda t: dac(t, torch.tensor(1.0, dtype=F64)), x)
    half = 7
    torch.testing.assert_close(got, torch.round(x.clamp(-1, 1) * half) / half * 0.2, rtol=0, atol=1e-15)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    torch.testing.assert_close(g_got, torch.where(x.abs() <= 1, 0.2 * w, 0.0), rtol=1e-12, atol=0)
    adc = ADC(bits=3, range=0.5)
    got, (g_got,) = _grads(lambda t: adc(t, 2.0), x)
    torch.testing.assert_close(got, torch.round((x / 2).clamp(-1, 1) * 3) / 3 * 2, rtol=0, atol=1e-15)
    torch.testing.assert_close(g_got, w, rtol=1e-12, atol=0)  # |x| <= 1.5 < the 2.0 full scale: all inside


def test_the_transistor_in_series_and_out_again():
    p = load_preset("hfox_1t1r_64")
    g = p.g_min + (p.g_max - p.g_min) * torch.rand(2, 64, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    gt = 2e-3 * (1.2 - 0.4) + 1e-9  # k (v_gate - v_th) + g_off of the preset's transistor
    got, (g_got,) = _grads(lambda x: effective_conductance(x, p.circuit), g)
    ref, (g_ref,) = _grads(lambda x: x * gt / (x + gt), g)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=0)
    back, (g_back,) = _grads(lambda x: memristor_for_cell(effective_conductance(x, p.circuit), p.circuit), g)
    torch.testing.assert_close(back, g, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_back, torch.randn(g.shape, generator=torch.Generator().manual_seed(5), dtype=F64),
                               rtol=1e-10, atol=0)


def test_quantise_reference_is_the_mapping_rule():
    # the pair cells round relu(w) * (levels - 1); the mapping rounds (G - g_min) / step: the same levels
    w = torch.linspace(-1, 1, 1001, dtype=F64)
    mp = Mapping("differential", 1e-6, 1e-4, 17)
    plus = quantise(mp.g_min + mp.delta * torch.relu(w), mp.g_min, mp.g_max, 17)
    cells = mp.pair_cells(w[None], 1002)[0]
    torch.testing.assert_close(cells[0::2], plus, rtol=1e-12, atol=0)
