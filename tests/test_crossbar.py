"""Crossbar arrays: the tile solver against ngspice .op, gradients against finite differences,
mapping / noise / periphery / tiling against closed forms, layers that train, and bad input.

Reference and tolerance per test:
* column currents vs ngspice .op: linear cells 1e-9 relative, the card's sinh I-V 1e-6 relative
  (max |I - I_spice| / max |I_spice|), 0T1R and 1T1R, 8x8 and 32x32 and 64x64 (about 3 s each in ngspice);
* gradients: torch.autograd.gradcheck (central finite differences, float64);
* mapping, noise, converters, tiling: closed-form values.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import memsim
from memsim.crossbar import (ADC, DAC, CrossbarArray, Mapping, NonIdealities, TileCircuit, TileGrid, Transistor,
                             Wires, check_window, load_preset, quantise, solve_approx, solve_ideal, solve_linear,
                             solve_nonlinear, state_for_conductance)
from memsim.crossbar.nonideal import FixedDefects, generator, program
from memsim.crossbar.solver import relative_error
from memsim.crossbar.verify import LINEAR_TOLERANCE, NONLINEAR_TOLERANCE, compare_tile
from memsim.errors import ConvergenceError, CardError, MemsimError, ParameterError
from memsim.devices.cards import load_card
from memsim.nn import CrossbarConv2d, CrossbarLinear
from memsim.nn.calibration import calibrate

HFOX_0T1R = "hfox_0t1r_32"
HFOX_1T1R = "hfox_1t1r_64"


def tile_preset(access: str, size: int):
    """The HfOx preset of the access kind, resized to a size x size tile."""
    p = load_preset(HFOX_1T1R if access == "1T1R" else HFOX_0T1R)
    return p.replace(rows=size, cols=size)


# ---------------------------------------------------------------------------------------------
# ngspice .op
# ---------------------------------------------------------------------------------------------

@pytest.mark.spice
@pytest.mark.parametrize("access", ["0T1R", "1T1R"])
@pytest.mark.parametrize("size", [8, 32])
def test_linear_tile_matches_ngspice(access, size):
    r = compare_tile(tile_preset(access, size), size, "linear", seed=size)
    assert r["error"] < LINEAR_TOLERANCE, r["error"]
    assert r["peak"] > 0


@pytest.mark.spice
@pytest.mark.parametrize("access", ["0T1R", "1T1R"])
@pytest.mark.parametrize("size", [8, 32])
def test_nonlinear_tile_matches_ngspice(access, size):
    # inputs up to 1 V (5 x v_max), well into the sinh region of the card (V0 = 0.25 V)
    r = compare_tile(tile_preset(access, size), size, "nonlinear", seed=size, v_scale=5.0)
    assert r["error"] < NONLINEAR_TOLERANCE, r["error"]


@pytest.mark.spice
@pytest.mark.parametrize("access,cells", [
    ("1T1R", "linear"),  # the realistic preset's tile; 32x32 covers every other combination by default
    pytest.param("0T1R", "linear", marks=pytest.mark.slow),
    pytest.param("0T1R", "nonlinear", marks=pytest.mark.slow),
    pytest.param("1T1R", "nonlinear", marks=pytest.mark.slow)])
def test_64_tile_matches_ngspice(access, cells):
    r = compare_tile(tile_preset(access, 64), 64, cells, seed=64)
    assert r["error"] < (LINEAR_TOLERANCE if cells == "linear" else NONLINEAR_TOLERANCE), r["error"]


@pytest.mark.spice
def test_linear_card_preset_matches_ngspice():
    r = compare_tile(load_preset("tio2_0t1r_16"), 16, "linear")
    assert r["error"] < LINEAR_TOLERANCE


@pytest.mark.spice
def test_cli_export_netlist_runs_in_ngspice(tmp_path):
    from memsim import spice
    from memsim.cli import main
    from memsim.crossbar.netlist import column_currents
    from memsim.crossbar.verify import random_tile
    out = tmp_path / "tile.cir"
    assert main(["crossbar", "export", HFOX_1T1R, "--size", "8", "--cells", "nonlinear", "-o", str(out)]) == 0
    p = load_preset(HFOX_1T1R)
    _, x, v = random_tile(p, 8, 0)
    ref = column_currents(spice.run(out.read_text()), 8)
    mine = solve_nonlinear(p.card, x, v[None], p.circuit)[0].numpy()
    assert relative_error(mine, ref) < NONLINEAR_TOLERANCE


def test_reference_netlists_are_up_to_date():
    """crossbar/<preset>.cir is what `memsim crossbar export --all` writes now (fails when the writer changed)."""
    from memsim.commands.crossbar import reference_netlist
    from memsim.crossbar import list_presets
    from memsim.crossbar.presets import CROSSBAR_DIR
    for name in list_presets():
        path = CROSSBAR_DIR / f"{name}.cir"
        assert path.is_file(), f"missing {path}: run memsim crossbar export --all"
        assert path.read_text() == reference_netlist(load_preset(name)), f"{path} is stale: memsim crossbar export --all"


@pytest.mark.spice
def test_verify_provider_registers_crossbar_checks():
    from memsim.verify import collect
    checks = collect(["crossbar"], [HFOX_0T1R, "no_such_thing"])
    assert {c.stimulus for c in checks} == {"8x8 0T1R linear", "8x8 0T1R nonlinear"}
    res = [c.run() for c in checks]
    assert all(r.passed for r in res), [(r.stimulus, r.error) for r in res]


# ---------------------------------------------------------------------------------------------
# solver: closed forms, gradients, the approximation
# ---------------------------------------------------------------------------------------------

def test_single_cell_closed_form():
    # 1x1 0T1R: V -> r_source + r_w -> G -> r_b -> virtual ground: I = V / (r_s + r_w + 1/G + r_b)
    c = TileCircuit(Wires(2.0, 3.0, 5.0), "0T1R")
    g = torch.tensor([[1e-3]], dtype=torch.float64)
    i = solve_linear(g, torch.tensor([[0.5]], dtype=torch.float64), c)
    assert float(i) == pytest.approx(0.5 / (5 + 2 + 1000 + 3), rel=1e-12)
    # 1T1R adds the transistor's 1 / g_T in series
    t = Transistor(k=1e-3, v_th=0.5, g_off=0.0, v_gate=1.5)  # g_T = 1 mS
    i = solve_linear(g, torch.tensor([[0.5]], dtype=torch.float64), TileCircuit(Wires(2.0, 3.0, 5.0), "1T1R", t))
    assert float(i) == pytest.approx(0.5 / (5 + 2 + 1000 + 1000 + 3), rel=1e-12)


def test_tiny_wires_approach_ideal_product():
    torch.manual_seed(1)
    g = torch.rand(16, 12, dtype=torch.float64) * 1e-4
    v = torch.rand(5, 16, dtype=torch.float64) * 0.2
    c = TileCircuit(Wires(1e-9, 1e-9, 0.0))
    assert relative_error(solve_linear(g, v, c).numpy(), (v @ g).numpy()) < 1e-10


def test_linear_solve_gradcheck():
    torch.manual_seed(0)
    for access in ("0T1R", "1T1R"):
        c = TileCircuit(Wires(50.0, 80.0, 20.0), access)
        g = (torch.rand(3, 4, dtype=torch.float64) * 1e-3 + 1e-4).requires_grad_()
        v = torch.randn(2, 3, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda g, v: solve_linear(g, v, c), (g, v), eps=1e-7, atol=1e-9, rtol=1e-5)


def test_nonlinear_solve_gradcheck():
    torch.manual_seed(0)
    card = load_card("stanford_pku_hfox_10k")
    for access in ("0T1R", "1T1R"):
        c = TileCircuit(Wires(200.0, 300.0, 100.0), access)
        x = (0.2 + 0.6 * torch.rand(3, 3, dtype=torch.float64)).requires_grad_()
        v = (0.8 * torch.rand(2, 3, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, v: solve_nonlinear(card, x, v, c), (x, v), eps=1e-6,
                                        atol=1e-10, rtol=1e-4)


def test_nonlinear_matches_linear_for_linear_family():
    # a linear-drift card: the Newton solve must agree with the linear sparse solve at the chord conductance
    card = load_card("hp_tio2_joglekar")
    p = load_preset("tio2_0t1r_16")
    x = torch.rand(6, 5, dtype=torch.float64)
    v = torch.rand(3, 6, dtype=torch.float64) * 0.1
    from memsim.devices.array import DeviceArray
    g = DeviceArray.from_card(card, shape=(6, 5), dtype=torch.float64).conductance(x, 0.1)
    assert relative_error(solve_nonlinear(card, x, v, p.circuit).numpy(),
                          solve_linear(g, v, p.circuit).numpy()) < 1e-11


def test_approx_stops_on_its_tolerance_and_raises_when_it_cannot():
    """The fixed-point solve reaches its tolerance against the exact solve, reports its residual, and raises
    (never returns a wrong answer) where it runs out of iterations or diverges."""
    torch.manual_seed(0)
    p = load_preset(HFOX_1T1R)
    g = p.g_min + (p.g_max - p.g_min) * torch.rand(64, 64, dtype=torch.float64)
    v = p.v_max * torch.rand(8, 64, dtype=torch.float64)
    exact = solve_linear(g, v, p.circuit).numpy()
    assert relative_error(solve_ideal(g, v, p.circuit).numpy(), exact) > 0.05  # IR drop matters here
    for tol in (1e-4, 1e-9):
        out, info = solve_approx(g, v, p.circuit, tol=tol, return_info=True)
        assert info["residual"] <= tol
        assert relative_error(out.numpy(), exact) < 100 * tol
    with pytest.raises(ConvergenceError, match="did not reach") as exc:
        solve_approx(g, v, p.circuit, tol=1e-12, max_iter=3)
    assert exc.value.residual > 1e-12 and exc.value.iterations == 3
    gg = g.clone().requires_grad_()
    solve_approx(gg, v, p.circuit).sum().backward()
    assert torch.isfinite(gg.grad).all() and gg.grad.abs().sum() > 0
    # where the fixed point diverges (5 Ohm segments, 128x128 all-ON) it says so instead of returning garbage
    big = p.replace(rows=128, cols=128, r_wire=5.0)
    with pytest.raises(ConvergenceError, match="irdrop"):
        solve_approx(torch.full((128, 128), p.g_max, dtype=torch.float64), torch.full((1, 128), 0.2,
                     dtype=torch.float64), big.circuit)


# ---------------------------------------------------------------------------------------------
# mapping, quantisation, noise, periphery, tiling
# ---------------------------------------------------------------------------------------------

def test_window_from_card_and_mapping_schemes():
    p = load_preset(HFOX_0T1R)
    card = load_card("stanford_pku_hfox_10k")
    from memsim.devices.array import DeviceArray
    dev = DeviceArray.from_card(card, shape=(2,), dtype=torch.float64)
    i = dev.current(torch.full((2,), 0.2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert sorted([p.g_min, p.g_max]) == pytest.approx(sorted((i / 0.2).tolist()), rel=1e-12)
    w = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    for scheme in ("differential", "offset"):
        m = Mapping(scheme, p.g_min, p.g_max)
        gs = m.to_conductance(w)
        signal = gs[0] - gs[1] if scheme == "differential" else gs[0] - m.g_ref
        assert torch.allclose(signal / m.gain, w, atol=1e-12)
        for g in gs:
            check_window(g, p.g_min, p.g_max)


def test_quantise_levels_and_straight_through_gradient():
    g = torch.linspace(1e-6, 1e-4, 101, dtype=torch.float64, requires_grad=True)
    q = quantise(g, 1e-6, 1e-4, 5)
    levels = 1e-6 + torch.arange(5, dtype=torch.float64) * (1e-4 - 1e-6) / 4
    assert torch.unique(q.detach()).numel() == 5
    assert torch.allclose(torch.unique(q.detach()), levels)
    q.sum().backward()
    assert torch.all(g.grad == 1)


def test_each_noise_source_alone_is_seeded_and_independent():
    gmin, gmax = 1e-6, 1e-4
    g = torch.full((100, 100), 5e-5, dtype=torch.float64)
    full = NonIdealities(program=0.05, d2d=0.1, stuck_on=0.01, stuck_off=0.02, drift_nu=0.05, drift_t=100.0, seed=3)
    outs = {}
    for src in ("program", "d2d", "stuck_on", "stuck_off", "drift"):
        cfg = full.only(src)
        draws = [program(g, cfg, gmin, gmax, FixedDefects(g.shape, cfg, g), generator(cfg.seed, "program"))
                 for _ in range(2)]
        assert torch.equal(draws[0], draws[1])  # reproducible from the seed
        assert not torch.equal(draws[0], g)  # this source alone changes the array
        outs[src] = draws[0]
    # closed forms of each source alone
    assert float((outs["program"] - g).std() / (gmax - gmin)) == pytest.approx(0.05, rel=0.05)
    assert float(torch.log(outs["d2d"] / g).std()) == pytest.approx(0.1, rel=0.05)
    assert float((outs["stuck_on"] == gmax).double().mean()) == pytest.approx(0.01, rel=0.2)
    assert float((outs["stuck_off"] == gmin).double().mean()) == pytest.approx(0.02, rel=0.2)
    assert torch.allclose(outs["drift"], g * 100.0 ** -0.05)
    # switching d2d on does not change which cells are stuck (own seeded streams)
    a = FixedDefects(g.shape, full.only("stuck_on"), g)
    b = FixedDefects(g.shape, full.only("stuck_on", "d2d"), g)
    assert torch.equal(a.stuck_on, b.stuck_on)
    # another seed, other draws
    other = program(g, dataclasses.replace(full.only("program"), seed=4), gmin, gmax, None, generator(4, "program"))
    assert not torch.equal(other, outs["program"])


def test_redraw_defects_gives_another_chip_reproducibly():
    # hardware-aware training draws a new chip's fixed defects per batch; each draw is reproducible from its
    # seed, and without a redraw the array is the chip of noise.seed
    p = load_preset(HFOX_0T1R).replace(noise=NonIdealities(stuck_on=0.05, stuck_off=0.05, d2d=0.1, seed=2))
    w = torch.randn(16, 40, dtype=torch.float64)
    base = CrossbarArray(p, 16, 40, mode="noisy")
    g_chip2 = base.conductances(w)[0]
    other = CrossbarArray(p, 16, 40, mode="noisy")
    other.redraw_defects(2)
    assert torch.equal(other.conductances(w)[0], g_chip2)      # seed 2 = the preset's own chip
    other.redraw_defects(7)
    g7 = other.conductances(w)[0]
    assert not torch.equal(g7, g_chip2)
    again = CrossbarArray(p, 16, 40, mode="noisy")
    again.redraw_defects(7)
    assert torch.equal(again.conductances(w)[0], g7)
    # the stuck fractions keep the preset's rates on every chip
    stuck_on = (g7 == p.g_max).double().mean()
    assert float(stuck_on) == pytest.approx(0.05, abs=0.02)


def test_read_noise_statistics_in_array():
    p = load_preset(HFOX_0T1R).replace(noise=NonIdealities(read=0.02, seed=1), levels=0, dac=None, adc=None)
    arr = CrossbarArray(p, 8, 31, mode="noisy")
    w = torch.randn(8, 31, dtype=torch.float64)
    x = torch.rand(1, 31, dtype=torch.float64).expand(4000, 31)
    y = arr(w, x)
    clean = CrossbarArray(p.replace(noise=NonIdealities()), 8, 31, mode="noisy")(w, x)
    assert torch.allclose(y.mean(0), clean[0], rtol=0, atol=5 * float(y.std(0).max()) / math.sqrt(4000))
    assert float(y.std(0).min()) > 0
    # reproducible: the same seed gives the same noise
    arr2 = CrossbarArray(p, 8, 31, mode="noisy")
    assert torch.equal(arr2(w, x[:3]), CrossbarArray(p, 8, 31, mode="noisy")(w, x[:3]))


def test_read_noise_gradient_is_finite_where_a_tile_has_only_zero_inputs():
    # a tile whose inputs are all 0 V (blank image border) has no read noise and must not give NaN gradients
    p = load_preset(HFOX_0T1R).replace(noise=NonIdealities(read=0.02, seed=1), levels=0, dac=None, adc=None)
    arr = CrossbarArray(p, 8, 70, mode="noisy")  # 70 inputs on 32-row tiles: three row blocks
    w = torch.randn(8, 70, dtype=torch.float64, requires_grad=True)
    x = torch.rand(5, 70, dtype=torch.float64)
    x[:, :40] = 0.0  # the first row block (and part of the second) sees only 0 V
    arr(w, x).sum().backward()
    assert torch.isfinite(w.grad).all() and float(w.grad[:, 40:].abs().sum()) > 0
    assert float(w.grad[:, :32].abs().max()) == 0.0  # zero inputs: no current, no gradient


def test_dac_adc_levels_and_clipping():
    dac = DAC(bits=3, v_max=0.2)
    x = torch.linspace(-2, 2, 1001)
    v = dac(x, 1.0)
    assert torch.unique(v).numel() == 2 ** 3 - 1
    assert float(v.max()) == pytest.approx(0.2) and float(v.min()) == pytest.approx(-0.2)
    adc = ADC(bits=4, range=0.5)
    i = torch.linspace(-3e-3, 3e-3, 1001)
    q = adc(i, 1e-3)
    assert torch.unique(q).numel() == 2 ** 4 - 1 and float(q.abs().max()) == pytest.approx(1e-3)
    assert adc.full_scale(64, 0.2, 1e-4) == pytest.approx(0.5 * 64 * 0.2 * 1e-4)


def test_partial_sums_added_after_the_adc():
    p = load_preset(HFOX_0T1R).replace(rows=8, cols=8, noise=NonIdealities(), levels=0, dac=None,
                                       adc=ADC(bits=3, range=0.2, calibration="fixed"))
    arr = CrossbarArray(p, 5, 20, mode="noisy")  # 3 row tiles share the outputs
    torch.manual_seed(0)
    w, x = torch.randn(5, 20, dtype=torch.float64), torch.rand(4, 20, dtype=torch.float64)
    y = arr(w, x)
    g, ws = arr.conductances(w)
    xs = x.abs().max()
    vt = arr.grid.pack_inputs(x / xs * p.v_max)
    i = torch.einsum("bri,rcij->brcj", vt, g)
    sig = arr.grid.column_signal(i)
    fs = p.adc.full_scale(p.rows, p.v_max, arr.mapping.delta)
    per_tile = p.adc(sig, fs)  # each tile digitised, then summed
    expect = arr.grid.unpack_outputs(per_tile.sum(1)) * xs * ws.reshape(-1) / (arr.mapping.gain * p.v_max)
    assert torch.allclose(y, expect)
    assert not torch.allclose(y, arr.grid.unpack_outputs(p.adc(sig.sum(1), fs)) * xs * ws.reshape(-1) /
                              (arr.mapping.gain * p.v_max))


@pytest.mark.parametrize("scheme,shape,util", [("differential", (10, 100), 1000 * 2 / (2 * 64 * 64)),
                                                ("offset", (70, 64), 70 * 64 / (2 * 64 * 64))])
def test_tiling_utilisation(scheme, shape, util):
    grid = TileGrid(shape[0], shape[1], 64, 64, scheme)
    assert grid.utilisation() == pytest.approx(util)
    tiles = grid.tiles()
    assert sum(t.used_cells for t in tiles) == shape[0] * shape[1] * (2 if scheme == "differential" else 1)
    assert all(0 < t.utilisation <= 1 for t in tiles)


@pytest.mark.parametrize("preset", [HFOX_0T1R, HFOX_1T1R, "tio2_0t1r_16"])
def test_ideal_mode_equals_linear_for_any_shape(preset):
    torch.manual_seed(0)
    lin = nn.Linear(77, 45).double()
    layer = CrossbarLinear.from_linear(lin, preset=preset, mode="ideal")
    x = torch.randn(6, 77, dtype=torch.float64)
    assert torch.allclose(layer(x), lin(x), atol=1e-12)
    assert layer.array.grid.n_tiles > 1


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------

def test_loss_falls_through_crossbar_linear_in_irdrop_mode():
    torch.manual_seed(0)
    preset = load_preset(HFOX_0T1R).replace(rows=16, cols=16, r_wire=5.0)
    layer = CrossbarLinear(12, 6, preset=preset, mode="irdrop")
    target = torch.randn(6, 12) * 0.5
    x = torch.rand(64, 12)
    y_true = x @ target.T
    opt = torch.optim.Adam(layer.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(layer(x), y_true)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::8]
    # the IR drop is in the loop: the same weights through the ideal product differ
    with torch.no_grad():
        y_ir = layer(x)
        layer.mode = "ideal"
        assert (layer(x) - y_ir).abs().max() > 1e-4


def test_modes_differ_and_noisy_eval_is_repeatable():
    torch.manual_seed(0)
    lin = nn.Linear(40, 10)
    x = torch.rand(8, 40)
    outs = {}
    no_read = dataclasses.replace(load_preset(HFOX_1T1R).noise, read=0.0)
    for mode in ("ideal", "noisy", "irdrop"):
        layer = CrossbarLinear.from_linear(lin, preset=HFOX_1T1R, mode=mode, noise=no_read).eval()
        calibrate(layer, lambda: layer(x))  # the programmed chip's converter ranges
        outs[mode] = layer(x)
        if mode != "ideal":
            assert torch.equal(layer(x), outs[mode])  # a programmed chip: the same read twice (no read noise)
    assert not torch.allclose(outs["noisy"], outs["ideal"])
    assert not torch.allclose(outs["irdrop"], outs["noisy"])  # the wires matter on 64x64 1T1R tiles
    with pytest.raises(ParameterError, match="irdrop"):  # the removed fixed-point mode points to its replacement
        CrossbarLinear.from_linear(lin, preset=HFOX_1T1R, mode="approx")


def test_conv_and_convert_keep_the_function_and_train():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(5, 2, 6, 6)
    conv = memsim.convert(model, HFOX_0T1R, mode="ideal")
    assert isinstance(conv[0], CrossbarConv2d) and isinstance(conv[3], CrossbarLinear)
    assert isinstance(model[0], nn.Conv2d)  # the original is untouched (deep copy)
    assert torch.allclose(conv(x), model(x), atol=1e-5)
    noisy = memsim.convert(model, HFOX_0T1R, mode="noisy", skip=("3",))
    assert isinstance(noisy[3], nn.Linear) and isinstance(noisy[0], CrossbarConv2d)
    opt = torch.optim.SGD(conv.parameters(), lr=0.05)
    for m in conv.modules():
        if isinstance(m, (CrossbarConv2d, CrossbarLinear)):
            m.mode = "noisy"
    before = [p.detach().clone() for p in conv.parameters()]
    loss = conv(x).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in conv.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, conv.parameters()))


# ---------------------------------------------------------------------------------------------
# presets and bad input
# ---------------------------------------------------------------------------------------------

def test_presets_validate_and_issue5_preset_exists():
    from memsim.crossbar import list_presets
    names = list_presets()
    assert {HFOX_0T1R, HFOX_1T1R, "tio2_0t1r_16"} <= set(names)
    for n in names:
        p = load_preset(n)
        assert p.provenance and p.card is not None and p.rows >= 1
    p = load_preset(HFOX_1T1R)
    assert (p.rows, p.cols, p.adc.bits, p.noise.program) == (64, 64, 6, 0.05)
    assert p.circuit.wires.r_wordline > 0


def _write_preset(tmp_path, text):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    return f


GOOD = """name = "t"
provenance = "test"
[tile]
rows = {rows}
cols = 8
access = "0T1R"
[wires]
r_wordline = 1.0
r_bitline = 1.0
[device]
card = "{card}"
v_read = 0.2
[mapping]
scheme = "differential"
levels = 0
[adc]
bits = {bits}
range = 0.5
[noise]
stuck_on = {stuck}
"""


def test_bad_presets(tmp_path):
    ok = dict(rows=8, card="stanford_pku_hfox_10k", bits=6, stuck=0.0)
    assert load_preset(_write_preset(tmp_path, GOOD.format(**ok))).rows == 8
    with pytest.raises(CardError, match="device.card.*no_such_card"):
        load_preset(_write_preset(tmp_path, GOOD.format(**{**ok, "card": "no_such_card"})))
    with pytest.raises(ParameterError, match="tile.rows"):
        load_preset(_write_preset(tmp_path, GOOD.format(**{**ok, "rows": 0})))
    with pytest.raises(ParameterError, match="adc.bits"):
        load_preset(_write_preset(tmp_path, GOOD.format(**{**ok, "bits": 0})))
    with pytest.raises(ParameterError, match="stuck_on"):
        load_preset(_write_preset(tmp_path, GOOD.format(**{**ok, "stuck": 1.5})))
    with pytest.raises(CardError, match="unknown key 'rowz'"):
        load_preset(_write_preset(tmp_path, GOOD.format(**ok).replace("rows =", "rowz =")))
    with pytest.raises(CardError, match="provenance"):
        load_preset(_write_preset(tmp_path, GOOD.format(**ok).replace('provenance = "test"', "")))
    with pytest.raises(CardError, match="unknown crossbar preset"):
        load_preset("hfox_1t1r_6")


def test_bad_input_errors_before_any_solve():
    p = load_preset(HFOX_0T1R)
    c = p.circuit
    g = torch.full((4, 4), 1e-5)
    with pytest.raises(ParameterError, match="weight"):
        CrossbarArray(p, 3, 4).conductances(torch.tensor([[float("nan")] * 4] * 3))
    layer = CrossbarLinear(4, 3, preset=p, mode="irdrop")
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ParameterError, match="weight"):
        layer(torch.ones(2, 4))
    with pytest.raises(ParameterError, match="input.shape"):
        CrossbarLinear(4, 3, preset=p)(torch.ones(2, 5))
    with pytest.raises(ParameterError, match="weight.shape"):
        CrossbarArray(p, 3, 4).conductances(torch.ones(4, 3))
    with pytest.raises(ParameterError, match="voltages.shape"):
        solve_linear(g, torch.ones(2, 5), c)
    with pytest.raises(ParameterError, match="conductance"):
        solve_linear(g.clone().fill_(float("nan")), torch.ones(2, 4), c)
    with pytest.raises(ParameterError, match="conductance"):
        solve_linear(-g, torch.ones(2, 4), c)
    with pytest.raises(ParameterError, match="tile.rows"):
        p.replace(rows=0)
    with pytest.raises(ParameterError, match="tile.cols"):
        TileGrid(3, 4, 8, 0)
    with pytest.raises(ParameterError, match="adc.bits"):
        ADC(bits=0)
    with pytest.raises(ParameterError, match="dac.bits"):
        DAC(bits=0)
    for rate in (-0.1, 1.5, float("nan")):
        with pytest.raises(ParameterError, match="noise.stuck_off"):
            NonIdealities(stuck_off=rate)
    for r in (-1.0, float("nan")):  # 0 is an ideal wire (exact); negative or NaN resistance is an error
        with pytest.raises(ParameterError, match="wires.r_wordline"):
            Wires(r_wordline=r)
        with pytest.raises(ParameterError, match="wires.r_bitline"):
            Wires(r_bitline=r)
    with pytest.raises(ParameterError, match="wires.sense_end"):
        Wires(sense_end="left")
    with pytest.raises(ParameterError, match="mode"):
        CrossbarLinear(4, 3, preset=p, mode="magic")
    # conductances outside the card window
    with pytest.raises(ParameterError, match=r"\[S\]|window") as exc:
        state_for_conductance(p.card, torch.tensor([[p.g_max * 1.5]], dtype=torch.float64), p.v_read)
    assert exc.value.value == pytest.approx(p.g_max * 1.5)
    with pytest.raises(ParameterError, match="window"):
        check_window(torch.tensor([p.g_min * 0.5]), p.g_min, p.g_max)
    with pytest.raises(ParameterError, match="state"):
        solve_nonlinear(p.card, torch.full((2, 2), 1.5, dtype=torch.float64), torch.ones(1, 2), c)
    assert issubclass(ParameterError, MemsimError)


def test_cli_irdrop_writes_plot(tmp_path, capsys):
    from memsim.cli import main
    out = tmp_path / "ir.png"
    assert main(["crossbar", "irdrop", "tio2_0t1r_16", "--plot", str(out)]) == 0
    assert out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "all-on" in text and "random" in text
    assert main(["crossbar", "irdrop", "no_such_preset"]) == 2


def test_nonlinear_layer_mode_matches_chord_model_at_the_read_voltage():
    """Cells driven exactly at v_read carry g_chord * v_read: the card's sinh I-V (Newton) then equals the
    linear model at the chord conductance (irdrop mode), up to the (tiny) wire drops; gradients flow."""
    p = load_preset(HFOX_0T1R).replace(rows=8, cols=8, r_wire=1e-6, noise=NonIdealities(), levels=0, dac=None,
                                       adc=None)
    torch.manual_seed(0)
    w = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    x = torch.ones(2, 8, dtype=torch.float64)  # every word line at +v_max = v_read
    y_nl = CrossbarArray(p, 3, 8, mode="nonlinear")(w, x)
    y_lin = CrossbarArray(p, 3, 8, mode="irdrop")(w, x)
    assert torch.allclose(y_nl, y_lin, rtol=1e-4, atol=1e-6 * float(y_lin.detach().abs().max()))
    assert torch.allclose(y_lin, x @ w.detach().T, rtol=1e-3)
    y_nl.sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    # rows at half the read voltage: the sinh cells conduct less than the chord model says
    xh = torch.ones(1, 8, dtype=torch.float64)
    xh[0, :4] = 0.5
    y_nl = CrossbarArray(p, 3, 8, mode="nonlinear")(w.detach(), xh)
    y_lin = CrossbarArray(p, 3, 8, mode="irdrop")(w.detach(), xh)
    assert (y_nl - y_lin).abs().max() > 1e-3 * y_lin.abs().max()
