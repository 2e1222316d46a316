"""The exact IR-drop operator: against the per-vector sparse solve, ngspice, closed forms and finite differences;
its cache; the wire layouts; and bad input."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from memsim.crossbar import CrossbarArray, TileCircuit, Transistor, Wires, load_preset, solve_linear
from memsim.crossbar.netlist import run_tile
from memsim.crossbar.operator import check_memory, sparse_operator, tile_operator
from memsim.crossbar.solver import relative_error, solve_ideal
from memsim.errors import ParameterError
from memsim.nn import CrossbarLinear
from memsim.nn.calibration import calibrate

HFOX_1T1R = "hfox_1t1r_64"


def _g(*shape, seed=0, lo=1e-6, hi=1e-4):
    gen = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)


LAYOUTS = [dict(zip(("driver_segment", "sense_segment", "sense_end", "drive"), combo))
           for combo in itertools.product((True, False), (True, False), ("bottom", "top"), ("left", "both"))]


@pytest.mark.parametrize("access", ["0T1R", "1T1R"])
def test_operator_equals_the_per_vector_solve_for_every_layout(access):
    """V @ A equals the sparse nodal solve of each input vector to 1e-9 (here ~1e-14), rows != cols,
    for every wire layout and for ideal (zero-resistance) word lines, bit lines and drivers."""
    g = _g(2, 7, 5, lo=1e-5, hi=1e-3)  # strong cells: IR drop of several per cent
    v = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    worst = 0.0
    resistances = ((2.0, 3.0, 5.0), (0.0, 3.0, 5.0), (2.0, 0.0, 0.0), (2.0, 3.0, 0.0))
    for k, layout in enumerate(LAYOUTS):
        for r_wl, r_bl, r_s in resistances[:4 if k % 5 == 0 else 2]:
            c = TileCircuit(Wires(r_wl, r_bl, r_s, **layout), access)
            a = tile_operator(g, c)
            for t in range(g.shape[0]):
                err = relative_error((v @ a[t]).numpy(), solve_linear(g[t], v, c).numpy())
                assert err < 1e-9, (layout, r_wl, r_bl, r_s, err)
                worst = max(worst, err)
    assert worst < 1e-12


def test_ideal_wires_reduce_exactly_to_the_ideal_product():
    g = _g(2, 6, 4)
    v = torch.rand(3, 6, dtype=torch.float64)
    c = TileCircuit(Wires(0.0, 0.0, 0.0))
    assert torch.equal(tile_operator(g, c), g)
    assert relative_error(solve_linear(g[0], v, c).numpy(), (v @ g[0]).numpy()) < 1e-15  # no singular matrix
    t = TileCircuit(Wires(0.0, 0.0, 0.0), "1T1R", Transistor())
    assert torch.allclose(tile_operator(g, t), solve_ideal(g, torch.eye(6, dtype=torch.float64), t), rtol=1e-15)


def test_closed_forms_of_single_lines():
    """One row of cells on an ideal bit line: a resistive ladder; one column on an ideal word line."""
    gs, gw = 0.1, 0.5
    c = TileCircuit(Wires(r_wordline=1 / gw, r_bitline=0.0, r_source=1 / gs - 1 / gw))  # driver: 1/gs in all
    g = torch.tensor([[0.2, 0.3]], dtype=torch.float64)
    # two cells to ground: node voltages by hand (ladder) for a 1 V input
    # node 1: gs(1 - u1) = 0.2 u1 + gw(u1 - u2);  node 2: gw(u1 - u2) = 0.3 u2
    m = np.array([[gs + 0.2 + gw, -gw], [-gw, gw + 0.3]])
    u = np.linalg.solve(m, [gs, 0.0])
    assert np.allclose(tile_operator(g, c)[0].numpy(), [0.2 * u[0], 0.3 * u[1]], rtol=1e-14, atol=0)
    # a single column on an ideal word line (every cell sees its input): bit line of two nodes into the amplifier
    gb = 2.0
    c2 = TileCircuit(Wires(r_wordline=0.0, r_bitline=1 / gb, r_source=0.0))
    g2 = torch.tensor([[0.2], [0.3]], dtype=torch.float64)
    # b0: 0.2(V0 - b0) = gb(b0 - b1); b1: 0.3(V1 - b1) + gb(b0 - b1) = gb b1; I = gb b1
    mb = np.array([[0.2 + gb, -gb], [-gb, 0.3 + 2 * gb]])
    a_ref = np.stack([gb * np.linalg.solve(mb, rhs)[1] for rhs in ([0.2, 0], [0, 0.3])])
    assert np.allclose(tile_operator(g2, c2)[:, 0].numpy(), a_ref, rtol=1e-14, atol=0)


def test_all_off_rows_and_columns_are_exact():
    g = _g(1, 8, 6)
    g[0, 3] = 0.0      # a row whose cells are all at zero conductance
    g[0, :, 2] = 0.0   # a column likewise
    c = TileCircuit(Wires(1.0, 1.0, 10.0))
    a = tile_operator(g, c)
    assert torch.isfinite(a).all() and a[0, 3].abs().max() == 0 and a[0, :, 2].abs().max() == 0
    assert relative_error(a.numpy(), sparse_operator(g, c).numpy()) < 1e-12


@pytest.mark.spice
def test_operator_agrees_with_ngspice_on_layouts():
    """The netlist memsim writes for a layout, solved by ngspice .op, against V @ A (linear cells, tol 1e-9)."""
    g = _g(12, 9, seed=3, lo=1e-5, hi=1e-3)
    v = 0.2 * (2 * torch.rand(12, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) - 1)
    for layout, access in ((LAYOUTS[0], "0T1R"), (LAYOUTS[-1], "1T1R"), (LAYOUTS[5], "0T1R")):
        c = TileCircuit(Wires(1.5, 2.0, 8.0, **layout), access)
        ref = run_tile(v.numpy(), c, g=g.numpy())
        assert relative_error((v @ tile_operator(g, c)).numpy(), ref) < 1e-9, layout


HAND_NETLIST = """* a hand-written 16x16 tile: cells connect straight to the driver resistor and to the sense amplifier
{sources}
{wires}
{cells}
.op
.end
"""


@pytest.mark.spice
def test_hand_written_netlist_without_end_segments_matches_through_the_layout():
    """A user's netlist whose first cell sits on the driver resistor and whose last cell sits on the amplifier:
    the default layout misses it by ~1e-3, the layout option matches it to 1e-9."""
    from memsim import spice
    n, r_drv, r_w = 16, 25.0, 2.0
    g = _g(n, n, seed=7, lo=2e-5, hi=2e-4)
    v = 0.2 * torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    src = [f"V{i} in{i} 0 {float(v[i])!r}\nRd{i} in{i} w{i}_0 {r_drv!r}" for i in range(n)]
    src += [f"Vsa{j} b{n - 1}_{j} 0 0" for j in range(n)]
    wires = [f"Rw{i}_{j} w{i}_{j} w{i}_{j + 1} {r_w!r}" for i in range(n) for j in range(n - 1)]
    wires += [f"Rb{i}_{j} b{i}_{j} b{i + 1}_{j} {r_w!r}" for i in range(n - 1) for j in range(n)]
    cells = [f"Rc{i}_{j} w{i}_{j} b{i}_{j} {1 / float(g[i, j])!r}" for i in range(n) for j in range(n)]
    res = spice.run(HAND_NETLIST.format(sources="\n".join(src), wires="\n".join(wires), cells="\n".join(cells)))
    ref = np.array([float(res[f"vsa{j}#branch"][0]) for j in range(n)])
    default = TileCircuit(Wires(r_w, r_w, r_drv))
    assert relative_error((v @ tile_operator(g, default)).numpy(), ref) > 1e-4
    matched = TileCircuit(Wires(r_w, r_w, r_drv, driver_segment=False, sense_segment=False))
    assert relative_error((v @ tile_operator(g, matched)).numpy(), ref) < 1e-9


def test_operator_gradient_against_finite_differences_and_the_per_vector_adjoint():
    c = TileCircuit(Wires(3.0, 2.0, 5.0), "1T1R")
    g = _g(5, 4, seed=2, lo=1e-4, hi=1e-3).requires_grad_()
    v = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    w = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    loss = lambda x: ((v @ tile_operator(x, c)) * w).sum()  # noqa: E731
    (grad_op,) = torch.autograd.grad(loss(g), g)
    for seed in range(3):  # central differences along random directions
        d = torch.randn(g.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + seed))
        h = 1e-8
        fd = (loss(g.detach() + h * d) - loss(g.detach() - h * d)) / (2 * h)
        assert abs(float((grad_op * d).sum()) - float(fd)) < 1e-7 * abs(float(fd)), seed
    (grad_pv,) = torch.autograd.grad((solve_linear(g, v, c) * w).sum(), g)
    assert relative_error(grad_op.numpy(), grad_pv.numpy()) < 1e-10


def test_layer_gradient_through_the_operator_equals_per_tile_solves():
    """Hardware-aware training in irdrop mode: the weight gradient through the batched operator equals the one
    through a per-tile, per-vector sparse solve of the same programmed tiles (no quantisation or noise)."""
    p = load_preset(HFOX_1T1R).replace(rows=16, cols=16, levels=0, dac=None, adc=None,
                                       noise=load_preset(HFOX_1T1R).noise.off())
    arr = CrossbarArray(p, 10, 40, mode="irdrop")
    torch.manual_seed(0)
    w = torch.randn(10, 40, dtype=torch.float64, requires_grad=True)
    x = torch.rand(6, 40, dtype=torch.float64)
    y = arr(w, x, 1.0)
    (gw_op,) = torch.autograd.grad((y * y).sum(), w)

    g, ws = arr.conductances(w)
    vt = arr.grid.pack_inputs(x * p.v_max)
    i = torch.stack([torch.stack([solve_linear(g[r, cc], vt[:, r], p.circuit) for cc in range(g.shape[1])], 1)
                     for r in range(g.shape[0])], 1)
    y_ref = arr.grid.combine(arr.grid.column_signal(i)) * (ws.reshape(-1) / (arr.mapping.gain * p.v_max))
    assert relative_error(y.detach().numpy(), y_ref.detach().numpy()) < 1e-10
    (gw_ref,) = torch.autograd.grad((y_ref * y_ref).sum(), w)
    assert relative_error(gw_op.numpy(), gw_ref.numpy()) < 1e-9


def test_ideal_mode_is_the_tiled_product():
    p = load_preset(HFOX_1T1R)
    arr = CrossbarArray(p, 70, 150, mode="ideal")
    torch.manual_seed(1)
    w, x = torch.randn(70, 150, dtype=torch.float64), torch.rand(5, 150, dtype=torch.float64)
    g, ws = arr.conductances(w)
    tiled = arr(w, x, g=g, w_scale=ws)
    assert relative_error(arr(w, x).numpy(), tiled.numpy()) < 1e-12
    assert relative_error(arr(w, x).numpy(), (x @ w.T).numpy()) < 1e-12


def test_operator_cache_follows_every_change_of_the_programmed_state(monkeypatch):
    """In eval mode the operator is computed once per programmed state and recomputed after reprogramming,
    a new drift time, a reseed, redrawn defects and an in-place edit of the conductances; reprogramming the very
    same state (same weights, noise streams restarted) reuses it."""
    import memsim.crossbar.array as array_mod
    calls = []
    real = array_mod.tile_operator
    monkeypatch.setattr(array_mod, "tile_operator", lambda g, c: calls.append(1) or real(g, c))
    p = load_preset(HFOX_1T1R).replace(rows=16, cols=16)
    torch.manual_seed(0)
    layer = CrossbarLinear(40, 12, preset=p, mode="irdrop").eval()
    x = torch.rand(4, 40)
    calibrate(layer, lambda: layer(x))  # reads the programmed chip: its operator, computed once
    layer.array.reset_noise()  # the read-noise stream restarts after calibration, as on a deployed chip

    def fresh():  # the same chip built from scratch
        new = CrossbarLinear(40, 12, preset=p, mode="irdrop", noise=layer.array.noise).eval()
        new.load_state_dict(layer.state_dict())
        if layer.array._defect_seed is not None:
            new.array.redraw_defects(layer.array._defect_seed)
        new.array.reset_noise()
        return new

    with torch.no_grad():
        y0 = layer(x)
        layer(x)
        assert len(calls) == 1  # a programmed chip: one operator, many reads
        layer.array.reset_noise()  # the chip is programmed again, into the identical state
        torch.testing.assert_close(layer(x), y0, rtol=0, atol=0)
        assert len(calls) == 1
        steps = [("reprogram", lambda: layer.weight.mul_(torch.linspace(0.5, 1.5, 40))),
                 ("drift time", lambda: setattr(layer.array, "noise",
                                                dataclasses.replace(layer.array.noise, drift_t=1e6))),
                 ("reseed", lambda: layer.array.reseed(3)),
                 ("redrawn defects", lambda: layer.array.redraw_defects(11))]
        last = y0
        for what, change in steps:
            change()
            layer.array.reset_noise()
            n = len(calls)
            y = layer(x)
            assert len(calls) == n + 1, what
            assert not torch.allclose(y, last), what
            ref = fresh()(x)
            assert torch.allclose(y, ref, rtol=1e-5, atol=1e-7), what
            last = y
        # an in-place edit of the programmed conductances
        _, g, ws = layer._programmed
        arr = layer.array
        before = arr(layer.weight, x, None, g=g, w_scale=ws)
        n = len(calls)
        g.mul_(0.9)
        after = arr(layer.weight, x, None, g=g, w_scale=ws)
        assert len(calls) == n + 1 and not torch.allclose(before, after)


def test_memory_estimate_refuses_before_allocating(monkeypatch):
    import memsim.crossbar.operator as op
    monkeypatch.setattr(op, "_available_bytes", lambda: 50 * 2**20)
    with pytest.raises(ParameterError, match="GiB") as exc:
        tile_operator(torch.full((4, 512, 512), 1e-5, dtype=torch.float64), TileCircuit(Wires()))
    assert "512x512" in str(exc.value)
    assert check_memory(1, 8, 8) < 50 * 2**20  # a small tile passes


def test_bad_operator_input():
    c = TileCircuit(Wires())
    with pytest.raises(ParameterError, match="conductance"):
        tile_operator(torch.tensor([[1e-5, float("nan")]], dtype=torch.float64), c)
    with pytest.raises(ParameterError, match="conductance"):
        tile_operator(torch.tensor([[1e-5, -1e-6]], dtype=torch.float64), c)


def test_linearised_operator_needs_a_read_voltage_and_is_exact_for_linear_cards():
    from memsim.crossbar.operator import linearised_operator
    from memsim.devices.cards import load_card
    c = TileCircuit(Wires(1.0, 1.0, 10.0))
    x = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pku = load_card("stanford_pku_hfox_10k")
    for bad in (None, 0.0, float("nan")):
        with pytest.raises(ParameterError, match="v_read"):
            linearised_operator(pku, x, c, bad)
    # a linear (ion-drift) card: the chord conductance is the conductance, so the operator is exact
    hp = load_card("hp_tio2_joglekar")
    from memsim.devices.array import DeviceArray
    v = 0.1 * torch.rand(3, 6, dtype=torch.float64)
    g = DeviceArray.from_card(hp, shape=(6, 5), dtype=torch.float64).conductance(x, 0.1)
    assert relative_error((v @ linearised_operator(hp, x, c, 0.1)).numpy(), solve_linear(g, v, c).numpy()) < 1e-12


def test_preset_schema_carries_the_layout(tmp_path):
    text = (CROSSBAR_TOML := """name = "t"
provenance = "test"
[tile]
rows = 8
cols = 8
[wires]
r_wordline = 1.0
r_bitline = 1.0
sense_segment = false
sense_end = "top"
drive = "both"
[device]
card = "hp_tio2_joglekar"
v_read = 0.1
[mapping]
scheme = "differential"
""")
    f = tmp_path / "t.toml"
    f.write_text(text)
    w = load_preset(f).circuit.wires
    assert (w.sense_segment, w.sense_end, w.drive, w.driver_segment) == (False, "top", "both", True)
    f.write_text(CROSSBAR_TOML.replace('"top"', '"side"'))
    with pytest.raises(ParameterError, match="t.wires.sense_end"):
        load_preset(f)
    f.write_text(CROSSBAR_TOML.replace("drive =", "drives ="))
    with pytest.raises(Exception, match="drive"):
        load_preset(f)


def test_hand_written_adjoint_equals_autograd_on_every_one_sided_layout():
    """The sweep's hand-written backward (word lines driven from the left) against autograd through the same
    elimination (the generic path, reached here through drive='both' with an infinitely weak right driver
    is not possible, so the reference is central differences along random directions)."""
    for k, layout in enumerate(l for l in LAYOUTS if l["drive"] == "left"):
        for r_bl, access in ((3.0, "0T1R"), (0.0, "1T1R")):
            c = TileCircuit(Wires(2.0, r_bl, 5.0 * (k % 2), **layout), access)
            g = _g(2, 5, 4, seed=k, lo=1e-4, hi=1e-3).requires_grad_()
            w = torch.randn(2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
            f = lambda x: (tile_operator(x, c) * w).sum()  # noqa: E731
            (grad,) = torch.autograd.grad(f(g), g)
            d = torch.randn(g.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + k))
            fd = (f(g.detach() + 1e-9 * d) - f(g.detach() - 1e-9 * d)) / 2e-9
            assert abs(float((grad * d).sum() - fd)) < 1e-6 * abs(float(fd)), (layout, r_bl, access)


def test_cli_irdrop_sizes_table_against_the_ideal_product(tmp_path, capsys):
    """`memsim crossbar irdrop PRESET --sizes`: one table row per size, errors growing with size and wire R,
    equal to an independent per-vector solve of the same tile; a plot file."""
    from memsim.cli import main
    from memsim.crossbar.irdrop import pattern_conductance
    out = tmp_path / "sizes.png"
    assert main(["crossbar", "irdrop", "hfox_0t1r_32", "--sizes", "8,16", "--wires", "0.5,2", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "memory:" in text and out.stat().st_size > 10_000
    rows = [line for line in text.splitlines() if line.strip().startswith(("8x8", "16x16"))]
    errs = [[float(x.strip().rstrip("%")) for x in r.split("|")[1:3]] for r in rows]
    assert errs[0][0] < errs[0][1] and errs[0][0] < errs[1][0]  # grows with wire R and with size
    p = load_preset("hfox_0t1r_32").replace(rows=16, cols=16, r_wire=2.0)
    g = pattern_conductance(p, "random", 0)
    v = torch.full((1, 16), p.v_max, dtype=torch.float64)
    ref = solve_linear(g, v, p.circuit)
    ideal = solve_ideal(g, v, p.circuit)
    assert abs(100 * float((ref - ideal).abs().max() / ideal.abs().max()) - errs[1][1]) < 1e-3
    with pytest.raises(SystemExit):  # a bad size list stops argparse before any work
        main(["crossbar", "irdrop", "hfox_0t1r_32", "--sizes", "8,x"])


def test_an_empty_preset_library_is_an_error(monkeypatch, tmp_path):
    import memsim.crossbar.presets as presets
    from memsim.errors import CardError
    monkeypatch.setattr(presets, "CROSSBAR_DIR", tmp_path / "none")
    monkeypatch.setenv("MEMSIM_CROSSBAR_PATH", str(tmp_path))
    with pytest.raises(CardError, match="no crossbar presets"):
        presets.list_presets()


@pytest.mark.parametrize("r_wire", [0.1, 2.5])
def test_float32_training_operator_stays_within_its_stated_error(r_wire):
    """Hardware-aware training computes float32 layers' operators in float32: against the float64 operator the
    error stays ~1e-6 (<= 2e-5 stated) on 64x64 and 96x80 tiles of the realistic presets, for strong (0.1 Ohm) to
    weak wires, and the layer trains through it (gradients within 1e-3 of float64's)."""
    for preset, shape in (("hfox_1t1r_64", (2, 64, 64)), ("hfox_0t1r_32", (1, 96, 80))):
        p = load_preset(preset)
        circuit = dataclasses.replace(p.circuit, wires=Wires(r_wire, r_wire, 10.0))
        g = _g(*shape, seed=3, lo=p.g_min, hi=p.g_max)
        a64 = tile_operator(g, circuit)
        a32 = tile_operator(g.float(), circuit, dtype=torch.float32)
        assert a32.dtype == torch.float32
        assert float((a32.double() - a64).abs().max() / a64.abs().max()) < 2e-5
    g = _g(1, 64, 64, seed=4, lo=p.g_min, hi=p.g_max)
    w = torch.randn(64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grads = []
    for dtype in (torch.float64, torch.float32):
        gg = g.detach().to(dtype).clone().requires_grad_(True)
        (tile_operator(gg, circuit, dtype=dtype)[0] * w.to(dtype)).sum().backward()
        grads.append(gg.grad.double())
    assert float((grads[1] - grads[0]).abs().max() / grads[0].abs().max()) < 1e-3


def test_float32_sweep_switches_from_the_neumann_series_to_cholesky_exactly(monkeypatch):
    """Strong cells behind weak wires make the word lines' Schur complement too large for the series: the float32
    sweep must then fall back to the Cholesky route, and both routes stay within the stated error of float64."""
    import memsim.crossbar.operator as op
    used = {"series": 0, "cholesky": 0}
    series = op._neumann

    def spy(s, gw):
        out = series(s, gw)
        used["cholesky" if out is None else "series"] += 1
        return out

    monkeypatch.setattr(op, "_neumann", spy)
    circuit = TileCircuit(Wires(2.5, 2.5, 10.0))
    g = _g(1, 48, 40, seed=6, lo=1e-4, hi=1e-2)  # up to 100 Ohm cells: ||S / gw|| grows past the series' limit
    a64 = tile_operator(g, circuit)
    a32 = tile_operator(g.float(), circuit, dtype=torch.float32)
    assert used["series"] > 0 and used["cholesky"] > 0
    assert float((a32.double() - a64).abs().max() / a64.abs().max()) < 2e-5
