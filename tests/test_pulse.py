"""Synapse pulse responses (memsim.pulse): each behavioural family's pulse train against its published closed form;
the batched update's noise, spread, counts and window; a device card's derived table against ngspice and against
exact integration at points it was not built on; the fit of an LTP/LTD curve with hidden parameters and 1 % noise
(the issue's target: NRMSE <= 3 %, identified parameters within 5 %) through `memsim device fit`, the card written
and loaded back; and every bad input stopped before any work with the field, the value and the fix. The accuracy
benchmark over every family and seeds is benchmarks/bench_pulse_fit.py."""
from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
import torch

from memsim.cli import main
from memsim.errors import CardError, ParameterError
from memsim.fitting.data import DataError, measurement_from_table
from memsim.fitting.synthetic import polarity_curve, write_csv
from memsim.pulse import (PULSE_FAMILIES, BehaviouralResponse, derive_response, list_pulse_cards, load_pulse_card,
                          load_response)
from memsim.pulse.cards import parse_pulse_card

NO_NOISE = {"c2c_rel": 0.0, "c2c_abs": 0.0, "d2d_step": 0.0, "d2d_bounds": 0.0}


def quiet(name: str, **params):
    """A library pulse card without noise, some parameters replaced."""
    return load_pulse_card(name).with_parameters(**NO_NOISE, **params)


# ---------------------------------------------------------------- each family against its closed form

def test_exp_saturation_follows_the_neurosim_curves():
    """G_LTP(P) = B (1 - exp(-P/A_ltp)) + G_min and G_LTD(P) = -B (1 - exp((P - P_ltd)/A_ltd)) + G_max, B =
    (G_max - G_min)/(1 - exp(-P_max/A)): P_ltp pulses take G_min to exactly G_max, further pulses stay there."""
    card = quiet("pulse_exp_saturation", P_ltp=40.0, P_ltd=50.0, A_ltp=12.0, A_ltd=20.0)
    p = card.parameters
    g_min, g_max = p["G_min"], p["G_max"]
    up = BehaviouralResponse(card).curve([1] * 45, g0=g_min).numpy()
    b = (g_max - g_min) / (1 - math.exp(-40 / 12))
    ltp = [b * (1 - math.exp(-n / 12)) + g_min for n in range(1, 41)] + [g_max] * 5
    np.testing.assert_allclose(up, ltp, rtol=1e-12)
    down = BehaviouralResponse(card).curve([-1] * 55, g0=g_max).numpy()
    b = (g_max - g_min) / (1 - math.exp(-50 / 20))
    ltd = [-b * (1 - math.exp((50 - n - 50) / 20)) + g_max for n in range(1, 51)] + [g_min] * 5
    np.testing.assert_allclose(down, ltd, rtol=1e-12)


def test_soft_bounds_approach_the_bounds_geometrically():
    card = quiet("pulse_soft_bounds")
    p = card.parameters
    w, g0 = p["G_max"] - p["G_min"], p["G_min"] + 0.2 * (p["G_max"] - p["G_min"])
    r = BehaviouralResponse(card)
    n = np.arange(1, 61)
    np.testing.assert_allclose(r.curve([1] * 60, g0=g0).numpy(),
                               p["G_max"] - (p["G_max"] - g0) * (1 - p["dg_ltp"] / w) ** n, rtol=1e-12)
    np.testing.assert_allclose(r.curve([-1] * 60, g0=g0).numpy(),
                               p["G_min"] + (g0 - p["G_min"]) * (1 - p["dg_ltd"] / w) ** n, rtol=1e-12)


def test_linear_step_is_the_aihwkit_affine_recurrence():
    """dG+ = dg (1 - gamma (2u - 1)): u_n = u* + (u_0 - u*) (1 - 2 gamma dg/W)^n with u* = (1 + gamma)/(2 gamma),
    until the hard bound; the step at mid-window is dg."""
    card = quiet("pulse_linear_step", dg_ltp=8e-7, gamma_ltp=0.4)
    p = card.parameters
    w = p["G_max"] - p["G_min"]
    a, gamma = p["dg_ltp"] / w, 0.4
    r = BehaviouralResponse(card)
    u_star = (1 + gamma) / (2 * gamma)
    n = np.arange(1, 41)
    u = u_star + (0.0 - u_star) * (1 - 2 * gamma * a) ** n
    g = r.curve([1] * 40, g0=p["G_min"]).numpy()
    inside = u < 1
    assert inside.sum() > 20 and not inside.all()  # the curve reaches the bound and stays there
    np.testing.assert_allclose(g[inside], p["G_min"] + w * u[inside], rtol=1e-12)
    np.testing.assert_allclose(g[~inside], p["G_max"], rtol=1e-15)
    mid = torch.tensor([p["G_min"] + 0.5 * w], dtype=torch.float64)
    assert float(r.mean_step(mid, 1)) == pytest.approx(p["dg_ltp"], rel=1e-12)


def test_neurosim_curves_are_a_linear_step_in_other_parameters():
    """Per pulse, NeuroSim's exponential saturation is affine in G, as aihwkit's linear step: the same curves with
    gamma = tanh(P/(2A)) and dg = W (1 - exp(-1/A)) / (2 gamma), for each polarity (two implementations of two
    published forms checked against each other)."""
    exp = quiet("pulse_exp_saturation", P_ltp=40.0, P_ltd=50.0, A_ltp=12.0, A_ltd=20.0)
    p = exp.parameters
    w = p["G_max"] - p["G_min"]
    mapped = {}
    for d in ("ltp", "ltd"):
        gamma = math.tanh(p[f"P_{d}"] / (2 * p[f"A_{d}"]))
        mapped |= {f"gamma_{d}": gamma, f"dg_{d}": w * (1 - math.exp(-1 / p[f"A_{d}"])) / (2 * gamma)}
    lin = quiet("pulse_linear_step", **mapped)
    pols = [1] * 45 + [-1] * 55 + [1] * 20
    np.testing.assert_allclose(BehaviouralResponse(lin).curve(pols, g0=p["G_min"]).numpy(),
                               BehaviouralResponse(exp).curve(pols, g0=p["G_min"]).numpy(), rtol=1e-12)


def test_power_step_follows_its_published_update():
    """aihwkit PowStepDevice: dG+ = dg_ltp ((G_max - G)/W)^gamma_ltp, dG- = dg_ltd ((G - G_min)/W)^gamma_ltd,
    iterated in plain Python floats (an independent evaluation of the formula)."""
    card = quiet("pulse_power_step")
    p = card.parameters
    w = p["G_max"] - p["G_min"]
    pols = [1] * 30 + [-1] * 30
    g, ref = p["G_min"], []
    for s in pols:
        if s > 0:
            g = min(g + p["dg_ltp"] * ((p["G_max"] - g) / w) ** p["gamma_ltp"], p["G_max"])
        else:
            g = max(g - p["dg_ltd"] * ((g - p["G_min"]) / w) ** p["gamma_ltd"], p["G_min"])
        ref.append(g)
    np.testing.assert_allclose(BehaviouralResponse(card).curve(pols, g0=p["G_min"]).numpy(), ref, rtol=1e-12)


# ---------------------------------------------------------------- the batched update a training loop calls

def test_cycle_to_cycle_noise_has_the_cards_std_and_is_reproducible():
    card = load_pulse_card("pulse_soft_bounds").with_parameters(c2c_rel=0.2, c2c_abs=0.0, d2d_step=0.0,
                                                               d2d_bounds=0.0)
    r = BehaviouralResponse(card)
    g = torch.full((20000,), 0.5 * (r.g_min + r.g_max), dtype=torch.float64)
    mean = r.mean_step(g[:1], 1)
    steps = r.update(g, 1, 1, generator=torch.Generator().manual_seed(3)) - g
    assert float(steps.mean() / mean) == pytest.approx(1.0, abs=0.01)
    assert float(steps.std() / mean) == pytest.approx(0.2, rel=0.03)
    again = r.update(g, 1, 1, generator=torch.Generator().manual_seed(3)) - g
    assert torch.equal(steps, again)
    r_abs = BehaviouralResponse(card, c2c_rel=0.0, c2c_abs=1e-8)
    steps = r_abs.update(g, -1, 1, generator=torch.Generator().manual_seed(4)) - g
    assert float(steps.std()) == pytest.approx(1e-8, rel=0.03)


def test_counts_polarities_and_device_spread():
    """count k applies k pulses (as k single updates), polarity 0 none; the spread is drawn once per device and
    every conductance stays inside its own device's window."""
    r = BehaviouralResponse(quiet("pulse_exp_saturation").with_parameters(d2d_step=0.2, d2d_bounds=0.1))
    devs = r.draw_devices((4, 500), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(devs.step_up.std()) == pytest.approx(0.2, rel=0.1)
    assert float((devs.g_max / r.g_max).std()) == pytest.approx(0.1, rel=0.1)
    g = devs.g_min + 0.3 * (devs.g_max - devs.g_min)
    pol = torch.tensor([1, -1, 0, 1]).view(4, 1)
    count = torch.tensor([3, 2, 5, 0]).view(4, 1)
    many = r.update(g, pol, count, devices=devs)
    one = g
    for k in range(3):
        one = r.update(one, pol, (count > k).long(), devices=devs)
    torch.testing.assert_close(many, one, rtol=0, atol=0)
    assert torch.equal(many[2], g[2]) and torch.equal(many[3], g[3])
    assert bool((many[0] > g[0]).all()) and bool((many[1] < g[1]).all())
    top = r.update(g, 1, 500, devices=devs)
    torch.testing.assert_close(top, devs.g_max, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- derived from a device card

@pytest.fixture(scope="module")
def vteam_table():
    # a gradual potentiation (just above VTEAM's -0.2 V ON threshold) and a slow depression, 100 ns pulses
    return derive_response("vteam_default", set_voltage=-0.22, reset_voltage=0.1)


def test_derived_table_states_its_error_and_meets_it_off_grid(vteam_table):
    """The table's tolerance holds at states it was not built on (exact RK4 integration of the same pulse)."""
    from memsim.pulse.simulate import conductance, pulse_states
    r = vteam_table
    e = r.error
    assert e.points >= 33 and e.of_step <= e.rtol + e.atol and "interpolation error" in e.describe()
    x = torch.rand(24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    card, pulse = r.card, r.pulse
    g = conductance(card, x, r.read_voltage)
    for up in (True, False):
        exact = conductance(card, pulse_states(card, x, torch.full_like(x, pulse.amplitude(up)), pulse),
                            r.read_voltage) - g
        table = r.mean_step(g, 1 if up else -1)
        largest = float(torch.as_tensor(r.dg_up if up else r.dg_down).abs().max())
        assert bool(((table - exact).abs() <= 2 * (e.rtol * exact.abs() + e.atol * largest)).all())


@pytest.mark.spice
def test_derived_table_matches_an_ngspice_pulse_train(vteam_table):
    """8 SET then 8 RESET pulses on vteam_default from its high-resistance state: the table, iterated, against
    ngspice running the card's subcircuit under the same trapezoids. Tolerance: 1 % of the train's conductance
    span at every read (measured: ~0.14 %)."""
    from memsim.pulse.simulate import spice_train
    r = vteam_table
    pols = [1] * 8 + [-1] * 8
    spice = spice_train(r.card, r.pulse, pols, x0=1.0, v_read=r.read_voltage)
    table = r.curve(pols, g0=r.g_min).numpy()
    assert spice[7] > 10 * spice[0] and spice[-1] < 0.3 * spice[7]  # a real LTP/LTD excursion
    assert np.max(np.abs(table - spice)) / np.ptp(spice) < 0.01


def test_pulse_below_the_switching_threshold_names_it():
    with pytest.raises(ParameterError) as info:
        derive_response("vteam_default", set_voltage=-0.15)
    msg = str(info.value)
    assert info.value.field == "set_voltage" and "-0.15" in msg
    assert "switching threshold" in msg and "zero everywhere" in msg and "Fix: use set_voltage = -0.2" in msg


def test_a_device_with_a_wider_window_steps_in_proportion(vteam_table):
    """Device-to-device spread of the bounds on a derived table: the card's device on a stretched conductance axis."""
    from memsim.pulse import DeviceSpread
    r = vteam_table
    w = r.g_max - r.g_min
    devs = DeviceSpread(1.0, 1.0, torch.tensor([r.g_min, 2 * r.g_min], dtype=torch.float64),
                        torch.tensor([r.g_max, 2 * r.g_min + 2 * w], dtype=torch.float64))
    g = devs.g_min + 0.4 * (devs.g_max - devs.g_min)
    for pol in (1, -1):
        step = r.mean_step(g, pol, devs)
        assert float(step[1] / step[0]) == pytest.approx(2.0, rel=1e-9)


def test_load_response_takes_either_kind_of_card(vteam_table):
    assert isinstance(load_response("pulse_ideal_linear"), BehaviouralResponse)
    assert load_response("vteam_default", set_voltage=-0.22, reset_voltage=0.1).g_max == vteam_table.g_max


# ---------------------------------------------------------------- the fit (target) and the card it writes

def test_fit_recovers_hidden_parameters_and_writes_a_card_that_loads(tmp_path, capsys, monkeypatch):
    """The issue's target: an LTP/LTD curve (NeuroSim exponential saturation, hidden parameters, two cycles of
    60 potentiation + 70 depression pulses) with 1 % Gaussian read noise; `memsim device fit` reaches NRMSE <= 3 %,
    every parameter it reports identified is within 5 % of the hidden value, and the card it writes loads back
    with the cycle-to-cycle noise estimated from the residuals."""
    hidden = {"G_min": 2e-6, "G_max": 2e-5, "P_ltp": 50.0, "P_ltd": 60.0, "A_ltp": 15.0, "A_ltd": 25.0}
    card = quiet("pulse_exp_saturation", **hidden)
    data = polarity_curve(card, ([1] * 60 + [-1] * 70) * 2, noise=0.01, seed=7)
    csv = write_csv(tmp_path / "ltp_ltd.csv", {**data, "read_voltage": np.full(len(data["polarity"]), 0.2)})
    out = tmp_path / "cards" / "my_synapse.toml"
    rc = main(["device", "fit", str(csv), "--family", "exp_saturation", "-o", str(out), "--starts", "4",
               "--max-iter", "15", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = tomllib.loads(out.read_text())
    assert float(doc["provenance"]["nrmse_torch"]) <= 0.03
    identified = [name for name in hidden if name not in doc["provenance"]["not_identified"]]
    assert {"G_min", "G_max", "A_ltp", "A_ltd"} <= set(identified)
    for name in identified:
        assert doc["parameters"][name] == pytest.approx(hidden[name], rel=0.05), name
    assert doc["read_voltage"] == 0.2 and doc["noise"]["c2c_abs"] > 0
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(out.parent))
    fitted = load_pulse_card("my_synapse")
    assert fitted.parameters == doc["parameters"] and "my_synapse" in list_pulse_cards()
    assert (out.parent / "my_synapse_fit.png").stat().st_size > 10_000
    assert main(["device", "list"]) == 0 and "my_synapse" in capsys.readouterr().out


def test_auto_ranks_the_family_that_made_the_curve_first():
    """Four behavioural families on a power-step curve (exponents 1.5 / 3: no other form has that shape)."""
    from memsim.fitting.select import rank
    card = quiet("pulse_power_step")
    data = polarity_curve(card, [1] * 40 + [-1] * 40, noise=0.005, seed=2)
    m = measurement_from_table(["polarity", "conductance"], list(zip(data["polarity"], data["conductance"])))
    ranked = rank(m, list(PULSE_FAMILIES), starts=4, max_iter=12)
    assert ranked[0][0] == "power_step" and ranked[0][1].nrmse < 0.01
    assert ranked[1][1].aic - ranked[0][1].aic > 10  # decisive


@pytest.mark.slow
def test_auto_ranks_behavioural_with_device_families(tmp_path, capsys):
    """`--family auto` on polarity data fits every device family (replayed on its card's pulses) and every
    behavioural one. A NeuroSim curve that reaches its bounds (P_max 25 < 30 pulses per branch) is best described by
    exp_saturation, or equally by linear_step (the same curves in other parameters), before every device family."""
    card = quiet("pulse_exp_saturation", P_ltp=25.0, P_ltd=25.0)
    csv = write_csv(tmp_path / "c.csv", polarity_curve(card, [1] * 30 + [-1] * 30, seed=1))
    rc = main(["device", "fit", str(csv), "--family", "auto", "-o", str(tmp_path / "best.toml"), "--starts", "4",
               "--max-iter", "8", "--no-spice", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = {line.split()[1]: (int(line.split()[0]), line.split()[2]) for line in text.splitlines()
            if line[:4].strip().isdigit()}
    assert {rows["exp_saturation"][0], rows["linear_step"][0]} == {1, 2}, text
    nrmse = {f: float(rows[f][1].rstrip("%")) for f in ("exp_saturation", "linear_step")}
    assert abs(nrmse["exp_saturation"] - nrmse["linear_step"]) < 0.01  # the same NRMSE (in %), up to the optimiser
    assert {"vteam", "stanford_pku", "soft_bounds", "linear_drift_biolek"} <= set(rows)
    assert tomllib.loads((tmp_path / "best.toml").read_text())["family"] in ("exp_saturation", "linear_step")


# ---------------------------------------------------------------- bad input, each before any work

def _table(rows, header=("polarity", "conductance")):
    return measurement_from_table(list(header), [list(r) for r in rows])


def _curve(n_up=10, n_down=10):
    g = [1e-6 * (1 + k) for k in range(n_up)] + [1e-6 * (n_up - k) for k in range(n_down)]
    return [(1, x) for x in g[:n_up]] + [(-1, x) for x in g[n_up:]]


def test_one_polarity_only_is_refused_before_fitting(tmp_path, capsys):
    csv = write_csv(tmp_path / "up.csv", {"polarity": np.ones(20), "conductance": np.linspace(1e-6, 9e-6, 20)})
    assert main(["device", "fit", str(csv), "--family", "soft_bounds", "-o", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert "20 potentiation pulse(s) and no depression pulse" in err and "Fix: add the depression branch" in err
    assert main(["device", "fit", str(csv), "--family", "vteam", "-o", str(tmp_path / "c.toml")]) == 2
    assert "no depression pulse" in capsys.readouterr().err
    assert not (tmp_path / "c.toml").exists()


def test_conductances_outside_a_fixed_window_are_refused(tmp_path, capsys):
    g = np.concatenate([np.linspace(2e-6, 3e-5, 10), np.linspace(3e-5, 2e-6, 10)])  # 30 uS > G_max 20 uS
    pol = np.array([1] * 10 + [-1] * 10)
    csv = write_csv(tmp_path / "wide.csv", {"polarity": pol, "conductance": g})
    rc = main(["device", "fit", str(csv), "--family", "exp_saturation", "--init", "pulse_exp_saturation",
               "--free", "A_ltp,A_ltd", "-o", str(tmp_path / "c.toml")])
    err = capsys.readouterr().err
    assert rc == 2 and "outside the card's window [2e-06, 2e-05] S" in err and "at line" in err
    assert "Fix: free G_min and G_max (--free)" in err
    r = load_response("pulse_ideal_linear")
    with pytest.raises(ParameterError, match=r"g\[1\] = 3e-05 .*inside the window \[2e-06, 2e-05\] S.*Fix: map"):
        r.update(torch.tensor([1e-5, 3e-5], dtype=torch.float64), 1, 1)


def test_non_numeric_rows_are_named():
    rows = _curve()
    rows[3] = (1, "n/a")
    rows[6] = ("up", 4e-6)
    with pytest.raises(DataError, match=r"column 'polarity' holds no polarity at data row 7: 'up'; allowed: \+1"):
        _table(rows)
    rows[6] = (1, 4e-6)
    with pytest.raises(DataError, match=r"non-numeric or NaN values in data row\(s\) 4 .*'n/a'"):
        _table(rows)


def test_fewer_than_five_pulses_is_refused():
    with pytest.raises(DataError, match=r"4 pulse\(s\); a pulse curve needs at least 5"):
        _table([(0, 1e-6), (1, 2e-6), (1, 3e-6), (-1, 2e-6), (-1, 1e-6)])
    with pytest.raises(DataError, match=r"\(cycle b\): 2 pulse\(s\)"):
        _table([("a", p, g) for p, g in _curve()] + [("b", 1, 2e-6), ("b", -1, 1e-6)],
               header=("cycle", "polarity", "conductance"))


def test_pulse_numbers_and_read_voltage_are_checked():
    rows = [(k, p, g) for k, (p, g) in enumerate(_curve(), start=1)]
    m = _table(rows, header=("pulse", "polarity", "conductance"))
    assert m.groups[0].columns["count"].tolist() == [1] * 20
    rows[5] = (9, 1, rows[5][2])  # 4 pulses between two reads: allowed, counted
    rows = rows[:6] + [(9 + k, p, g) for k, (_, p, g) in enumerate(rows[7:], start=1)]
    assert _table(rows, header=("pulse", "polarity", "conductance")).groups[0].columns["count"][5] == 4
    rows[8] = (rows[8][0] - 5, *rows[8][1:])
    with pytest.raises(DataError, match="pulse number decreases at data row"):
        _table(rows, header=("pulse", "polarity", "conductance"))
    volts = [(p, g, 0.2 if k < 10 else 0.1) for k, (p, g) in enumerate(_curve())]
    with pytest.raises(DataError, match=r"read_voltage changes from 0.2 V \(data row 1\) to 0.1 V \(data row 11\)"):
        _table(volts, header=("polarity", "conductance", "read_voltage"))


def test_bad_pulse_cards_are_refused_naming_the_field(tmp_path):
    data = tomllib.loads((load_pulse_card("pulse_soft_bounds").path).read_text())
    bad = dict(data, parameters={**data["parameters"], "G_min": 3e-5})
    with pytest.raises(ParameterError, match=r"x\.parameters\.G_min = 3e-05 .*G_min < G_max"):
        parse_pulse_card(bad, "x")
    with pytest.raises(ParameterError, match=r"x\.noise\.c2c_rell .*did you mean 'c2c_rel'"):
        parse_pulse_card(dict(data, noise={"c2c_rell": 0.1}), "x")
    with pytest.raises(ParameterError, match=r"x\.family.*exp_saturation"):
        parse_pulse_card(dict(data, family="soft_bound"), "x")
    (tmp_path / "evil.toml").write_text((load_pulse_card("pulse_soft_bounds").path).read_text()
                                        .replace('name = "pulse_soft_bounds"', 'name = "evil"\ndescription = "a\\u0007b"'
                                                 ).replace('description = "aihwkit', 'x = "aihwkit', 1))
    with pytest.raises(CardError, match="evil"):
        load_pulse_card(tmp_path / "evil.toml")


def test_pulse_cards_stay_out_of_device_neuron_and_verify_lists(capsys):
    from memsim.devices.cards import list_cards
    from memsim.neurons import list_neuron_cards
    names = set(list_pulse_cards())
    assert {"pulse_exp_saturation", "pulse_ideal_linear"} <= names
    assert not names & set(list_cards()) and not names & set(list_neuron_cards())
    assert main(["device", "info", "pulse_power_step"]) == 0
    assert "gamma_ltd" in capsys.readouterr().out
    assert main(["device", "export", "pulse_power_step", "-o", "-"]) == 2
    assert "pulse-response card" in capsys.readouterr().err
    assert main(["verify", "--model", "pulse_power_step", "--quiet"]) == 2
    assert "no circuit to compare with ngspice" in capsys.readouterr().err
