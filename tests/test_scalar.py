"""The scalar path (memsim.scalar): the family equations rendered to Python source over floats.

Its accuracy against ngspice is tested beside the torch path's, on the same ngspice traces
(tests/test_verify_devices.py for every device card and stimulus, tests/test_neurons.py for the neurons).
Here: the renderer's vocabulary and semantics, and agreement with the torch path's arithmetic.
"""
import math

import numpy as np
import pytest
import torch

from memsim import load_card
from memsim.mathns import PY_FUNCTIONS, PyMath, SpiceMath, TorchMath
from memsim.scalar import device_source, device_trace, neuron_trace
from memsim.devices.simulate import standard_stimuli


def _vocabulary(cls):
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))} - {"node", "branch"}


def test_every_namespace_speaks_the_same_vocabulary():
    torch_words = _vocabulary(TorchMath)
    assert torch_words - {"symbol"} <= _vocabulary(PyMath)
    assert _vocabulary(PyMath) - {"symbol"} <= _vocabulary(SpiceMath) | {"let"}


def _evaluate(expr, **values):
    namespace = dict(PY_FUNCTIONS, **values)
    return eval(expr.text if hasattr(expr, "text") else repr(expr), namespace)  # noqa: S307 (our rendering)


@pytest.mark.parametrize("v, x", [(-1.3, 0.2), (0.0, 0.5), (0.7, 0.95), (2.0, 1.2), (-0.4, -0.1)])
def test_rendered_functions_equal_torch_float64(v, x):
    m, t = PyMath("q"), TorchMath(torch.float64)
    for fn in (lambda n, a, b: n.where(a > 0.0, n.exp(a) * b, n.sinh(b - a)),
               lambda n, a, b: n.clip(a * b, -0.5, 0.25) + n.pow(n.abs(a), 2.0) + n.pow(n.abs(b), 3.0),
               lambda n, a, b: n.sigmoid(a / 0.015) - n.maximum(a, b) * n.minimum(a, 0.1)):
        rendered = fn(m, m.symbol("a"), m.symbol("b"))
        scope = {"a": v, "b": x}
        for line in m.lines:
            name, _, rhs = line.partition(" = ")
            scope[name] = _evaluate(type("E", (), {"text": rhs})(), **scope)
        expected = fn(t, torch.tensor(v, dtype=torch.float64), torch.tensor(x, dtype=torch.float64))
        assert _evaluate(rendered, **scope) == pytest.approx(float(expected), rel=1e-14, abs=1e-300)


def test_where_evaluates_only_the_chosen_branch():
    m = PyMath("w")
    expr = m.where(m.symbol("a") > 800.0, m.exp(m.symbol("a")), 0.0)   # exp(1000) overflows a float
    assert _evaluate(expr, a=1.0) == 0.0
    with pytest.raises(OverflowError):
        _evaluate(expr, a=1000.0)


def test_parameters_are_folded_into_constants():
    card = load_card("hp_tio2_joglekar")
    src = device_source(card.family, card.parameters)
    p = card.parameters
    assert repr(p["mu_v"] * p["R_on"] / (p["D"] * p["D"])) in src   # one coefficient, computed once
    assert "R_on" not in src and "mu_v" not in src


@pytest.mark.parametrize("name", ["hp_tio2_biolek", "vteam_default", "stanford_pku_hfox", "yakopcic_oblea"])
def test_scalar_trace_equals_torch_float64_trace(name):
    from memsim import DeviceArray
    card = load_card(name)
    std = standard_stimuli(card)[0]
    n = 400  # the first fifth of a period: enough to switch, cheap in torch
    _, _, i, x = DeviceArray.from_card(card, (1,), dtype=torch.float64).simulate(std.stimulus, std.dt, n)
    b = device_trace(card, std.stimulus, std.dt, n)
    i, x = i[:, 0].numpy(), x[:, 0].numpy()
    assert np.max(np.abs(i - b.i)) <= 1e-11 * np.max(np.abs(i)) and np.max(np.abs(x - b.x)) <= 1e-11


def test_neuron_trace_checks_its_input():
    from memsim.errors import StimulusError
    with pytest.raises(StimulusError, match="NaN"):
        neuron_trace("mif_neuron", [0.0, math.nan])
