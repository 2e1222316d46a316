"""Device equations against closed-form values from the papers, and the math namespace's two renderings."""
import math
from types import SimpleNamespace

import pytest
import torch

from memsim.families import FAMILIES, get_family
from memsim.families.linear_drift import Biolek, Joglekar, Prodromakis
from memsim.mathns import TORCH, Expr, SpiceMath
from memsim.errors import ParameterError

X = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)


def window(fam, x, i=1.0, p=1.0, j=1.0):
    params = SimpleNamespace(p=torch.tensor(p, dtype=torch.float64), j=torch.tensor(j, dtype=torch.float64))
    cur = torch.full_like(x, i)
    return fam.window(TORCH, params, cur, x, cur)


@pytest.mark.parametrize("p", [1.0, 2.0, 5.0])
def test_joglekar_window_closed_form(p):
    # Joglekar & Wolf 2009: f(x) = 1 - (2x - 1)^(2p)
    f = window(Joglekar(), X, p=p)
    expected = torch.tensor([0.0, 1 - 0.5 ** (2 * p), 1.0, 1 - 0.5 ** (2 * p), 0.0], dtype=torch.float64)
    torch.testing.assert_close(f, expected, rtol=0, atol=1e-15)
    # the common misparenthesisation 1 - 2x - 1^(2p) would give f(0.5) = -1
    assert f[2] == 1.0


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_biolek_window_depends_on_current_direction(p):
    # Biolek 2009: f = 1 - (x - stp(-i))^(2p): i > 0 -> 1 - x^(2p); i < 0 -> 1 - (x - 1)^(2p)
    pos = window(Biolek(), X, i=+1e-3, p=p)
    neg = window(Biolek(), X, i=-1e-3, p=p)
    torch.testing.assert_close(pos, 1 - X ** (2 * p), rtol=0, atol=1e-15)
    torch.testing.assert_close(neg, 1 - (X - 1) ** (2 * p), rtol=0, atol=1e-15)
    assert pos[-1] == 0 and neg[0] == 0 and pos[0] == 1 and neg[-1] == 1


@pytest.mark.parametrize("p,j", [(1.0, 1.0), (7.0, 1.0), (2.0, 0.5)])
def test_prodromakis_window_closed_form(p, j):
    # Prodromakis 2011: f = j (1 - ((x - 0.5)^2 + 0.75)^p); f(0) = f(1) = 0, f(0.5) = j (1 - 0.75^p)
    f = window(Prodromakis(), X, p=p, j=j)
    assert f[0].item() == pytest.approx(0.0, abs=1e-15) and f[-1].item() == pytest.approx(0.0, abs=1e-15)
    assert f[2].item() == pytest.approx(j * (1 - 0.75 ** p), rel=1e-14)
    # misparenthesised j(1 - (x-0.5)^2 + 0.75)^p is 1.75^p j at x = 0.5, not j(1 - 0.75^p)
    assert f[2].item() < j


def test_linear_drift_dxdt_matches_hp_closed_form():
    # dw/dt = mu_v R_on / D * i(t) f(x)  =>  dx/dt = mu_v R_on / D^2 * v / R(x) * f(x)
    fam = get_family("linear_drift_joglekar")
    p = SimpleNamespace(R_on=100.0, R_off=16e3, D=10e-9, mu_v=1e-14, p=torch.tensor(1.0, dtype=torch.float64))
    x, v = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    r = 100.0 * 0.3 + 16e3 * 0.7
    expected = 1e-14 * 100.0 / (10e-9) ** 2 * (0.8 / r) * (1 - (2 * 0.3 - 1) ** 2)
    assert fam.dxdt(TORCH, p, v, x).item() == pytest.approx(expected, rel=1e-13)
    assert fam.current(TORCH, p, v, x).item() == pytest.approx(0.8 / r, rel=1e-14)


def test_yakopcic_threshold_and_motion_closed_form():
    fam = get_family("yakopcic")
    p = SimpleNamespace(a1=0.17, a2=0.17, b=0.05, Vp=0.16, Vn=0.15, Ap=4000.0, An=4000.0, xp=0.3, xn=0.5,
                        alpha_p=1.0, alpha_n=5.0)
    t = lambda a: torch.tensor(a, dtype=torch.float64)
    # below threshold no motion
    assert fam.dxdt(TORCH, p, t(0.1), t(0.5)).item() == 0.0
    # v = 0.45 > Vp, x = 0.2 < xp: f = 1, g = Ap (e^v - e^Vp)
    assert fam.dxdt(TORCH, p, t(0.45), t(0.2)).item() == pytest.approx(4000 * (math.exp(0.45) - math.exp(0.16)))
    # v = 0.45, x = 0.6 >= xp: f = e^{-alpha_p (x - xp)} ((xp - x)/(1 - xp) + 1)
    f = math.exp(-(0.6 - 0.3)) * ((0.3 - 0.6) / 0.7 + 1)
    assert fam.dxdt(TORCH, p, t(0.45), t(0.6)).item() == pytest.approx(4000 * (math.exp(0.45) - math.exp(0.16)) * f)
    # v = -0.45, x = 0.2 <= 1 - xn: g = -An (e^{-v} - e^{Vn}), f = e^{alpha_n (x + xn - 1)} x / (1 - xn)
    g = -4000 * (math.exp(0.45) - math.exp(0.15))
    f = math.exp(5 * (0.2 + 0.5 - 1)) * 0.2 / 0.5
    assert fam.dxdt(TORCH, p, t(-0.45), t(0.2)).item() == pytest.approx(g * f)
    assert fam.current(TORCH, p, t(0.3), t(0.5)).item() == pytest.approx(0.17 * 0.5 * math.sinh(0.05 * 0.3))


def test_metastable_switch_closed_form():
    fam = get_family("metastable_switch")
    p = SimpleNamespace(R_on=1e3, R_off=1e5, v_on=0.11, v_off=0.005, k=0.015, tau=1e-3)
    v, x = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    s = lambda z: 1 / (1 + math.exp(-z))
    expected = ((1 - 0.4) * s((0.2 - 0.11) / 0.015) - 0.4 * s((0.005 - 0.2) / 0.015)) / 1e-3
    assert fam.dxdt(TORCH, p, v, x).item() == pytest.approx(expected, rel=1e-12)
    assert fam.current(TORCH, p, v, x).item() == pytest.approx((0.4 / 1e3 + 0.6 / 1e5) * 0.2, rel=1e-14)


def test_state_is_held_at_bounds():
    # a windowless family (Stanford-PKU) must not push x beyond [0, 1]
    from memsim import DeviceArray, load_card
    dev = DeviceArray.from_card(load_card("stanford_pku_hfox"), (2,), dtype=torch.float64)
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    d_set = dev.dxdt(torch.full((2,), 1.5, dtype=torch.float64), x)   # SET closes the gap: dx/dt < 0
    d_reset = dev.dxdt(torch.full((2,), -1.5, dtype=torch.float64), x)
    assert d_set[0] == 0 and d_set[1] < 0
    assert d_reset[1] == 0 and d_reset[0] > 0


def test_spice_rendering_is_the_same_expression():
    # SpiceMath renders the same equation tree; evaluate the rendered text with Python's math on numbers
    fam = get_family("linear_drift_joglekar")
    m = SpiceMath()
    p = fam.namespace({k: m.symbol(k) for k in fam.param_names()})
    text = fam.dxdt(m, p, m.symbol("v"), m.symbol("x")).text
    env = dict(R_on=100.0, R_off=16e3, D=10e-9, mu_v=1e-14, p=2.0, v=0.7, x=0.35,
               pow=math.pow, abs=abs)
    value = eval(text, {"__builtins__": {}}, env)
    tp = SimpleNamespace(**{k: torch.tensor(vv, dtype=torch.float64) for k, vv in env.items() if k not in ("pow", "abs", "v", "x")})
    expected = fam.dxdt(TORCH, tp, torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64))
    assert value == pytest.approx(expected.item(), rel=1e-14)


def test_python_if_in_equation_is_refused_when_rendering():
    with pytest.raises(TypeError, match="m.where"):
        bool(Expr("V(a)") > 0)


def test_every_family_documents_units_and_ranges():
    for fam in FAMILIES.values():
        assert fam.reference and fam.title
        for q in fam.all_params():
            assert q.doc, (fam.name, q.name)
        names = [q.name.lower() for q in fam.all_params()]
        assert len(names) == len(set(names)), "ngspice parameter names are case-insensitive"


def test_unknown_family_names_closest():
    with pytest.raises(ParameterError, match="vteam"):
        get_family("vtaem")
