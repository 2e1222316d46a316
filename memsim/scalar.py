"""One device or one neuron, fast: the family's equations rendered to Python source over floats.

Interactive work (a single I-V trace, one neuron's waveform) runs one element for many steps, where a
tensor library spends its time in per-operation overhead. Here the same equations (the family's
``current`` / ``state_derivative``, the neuron circuit's ``derivative``, written once over the math
namespace) are rendered by :class:`memsim.mathns.PyMath` into one straight-line Python function holding
the whole RK4 loop, compiled once per card and parameter set and cached. Parameters are constants of
the generated code. The scheme is the torch path's exactly: classic RK4, the device state projected
onto [0, 1] after every step, the neuron's input held over each step (zero-order hold) with the same
sub-steps as :class:`memsim.nn.MemristiveNeuron`; the tests compare it with ngspice and with the torch
path, and ``benchmarks/bench_devices.py`` / ``bench_neurons.py`` time it against ngspice.

    from memsim.scalar import device_trace, neuron_trace
    tr = device_trace(load_card("hp_tio2_joglekar"), Sine(1.0, 1.0, cycles=2), dt=1e-4)   # 20,000 steps
    nt = neuron_trace(load_neuron_card("mif_neuron"), current, dt=1e-6)                     # [T] A -> trace
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .errors import NonFiniteError, StimulusError
from .devices.cards import Card
from .mathns import PY_FUNCTIONS, PyMath
from .devices.simulate import Trace
from .neurons.cards import check_dt, load_neuron_card
from .neurons.circuits import default_substeps, synapse_derivative
from .neurons.simulate import NeuronTrace

__all__ = ["device_trace", "neuron_trace", "device_source", "neuron_source"]

_SIGNATURE = ", ".join(f"{k}={k}" for k in PY_FUNCTIONS)


@functools.lru_cache(maxsize=64)
def _compile(source: str, name: str):
    """The ``run`` function of rendered ``source`` (cached by its text: parameters are part of it)."""
    namespace = dict(PY_FUNCTIONS)
    exec(compile(source, f"<memsim.scalar {name}>", "exec"), namespace)  # noqa: S102 (our own rendering)
    return namespace["run"]


def _indent(lines, depth):
    return [" " * (4 * depth) + ln for ln in lines]


# ----------------------------------------------------------------------------------------------------------
# devices

def _device_call(family, p, kind: str, prefix: str, v: str, x: str) -> tuple[list[str], str]:
    m = PyMath(prefix)
    if kind == "dxdt":
        out = family.state_derivative(m, p, m.symbol(v), m.symbol(x))
    else:
        out = family.bounded_current(m, p, m.symbol(v), m.symbol(x))
    return m.lines, (out.text if hasattr(out, "text") else repr(float(out)))


def device_source(family, params: dict[str, float]) -> str:
    """The Python source of the whole-trace RK4 loop for one parameter set (for inspection and tests).

    This source is compiled and run, so nothing in it comes from a file as text: the parameter set is
    validated here (names from the family's code, values finite floats) and each value is folded in as
    ``repr(float)`` by :class:`memsim.mathns.PyMath`."""
    p = family.namespace(family.validate(params, where=f"{family.name}.parameters"))
    body = []
    stages = (("k1", "va", "x"), ("k2", "vb", "xb"), ("k3", "vb", "xc"), ("k4", "vc", "xd"))
    nxt = {"k1": "xb = x + hh * k1", "k2": "xc = x + hh * k2", "k3": "xd = x + h * k3", "k4": None}
    for k, v, x in stages:
        lines, expr = _device_call(family, p, "dxdt", k, v, x)
        body += lines + [f"{k} = {expr}"]
        if nxt[k]:
            body.append(nxt[k])
    body += ["x = x + h6 * (k1 + 2.0 * (k2 + k3) + k4)",
             "x = 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)"]
    lines, expr = _device_call(family, p, "current", "io", "vc", "x")
    body += lines + [f"cur[n + 1] = {expr}", "xs[n + 1] = x"]
    lines0, expr0 = _device_call(family, p, "current", "i0", "va", "x")
    src = [f"def run(v0, vh, v1, x, h, {_SIGNATURE}):",
           "    n_steps = len(v0)",
           "    xs = [x] * (n_steps + 1)",
           "    cur = [0.0] * (n_steps + 1)",
           "    hh = 0.5 * h",
           "    h6 = h / 6.0",
           "    va = v0[0] if n_steps else 0.0"] + _indent(lines0, 1) + [
           f"    cur[0] = {expr0}",
           "    for n in range(n_steps):",
           "        va = v0[n]",
           "        vb = vh[n]",
           "        vc = v1[n]"] + _indent(body, 2) + ["    return xs, cur"]
    return "\n".join(src) + "\n"


def _voltages(stimulus, times: np.ndarray) -> list[float]:
    with torch.no_grad():
        v = stimulus(torch.as_tensor(times, dtype=torch.float64))
    return torch.broadcast_to(v, (len(times),)).double().tolist()


def device_trace(card: Card, stimulus, dt: float, n_steps: int | None = None, *, x0: float | None = None,
                 substeps: int = 1) -> Trace:
    """One device of ``card`` driven by ``stimulus`` (V), RK4 with step ``dt`` (s) over ``n_steps`` steps
    (default: the stimulus's duration), as a :class:`memsim.devices.simulate.Trace` (float64 NumPy arrays).

    The same numbers as ``memsim.devices.simulate.torch_trace`` (float64) to rounding, at a small fraction of its
    cost for a single device."""
    grid = stimulus.grid(dt)  # validates dt against the stimulus
    n = len(grid) - 1 if n_steps is None else n_steps
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise StimulusError(f"n_steps = {n!r} is invalid: allowed an integer >= 0")
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise StimulusError(f"substeps = {substeps!r} is invalid: allowed an integer >= 1")
    params = dict(card.parameters)
    if x0 is not None:
        params = dict(card.family.validate({**params, "x0": x0}, where=card.name))
    run = _compile(device_source(card.family, params), card.name)
    h = dt / substeps
    # the step times exactly as the torch integrator forms them: t_n = n dt, then t_n + s h (+ h/2, + h)
    t_out = np.arange(n + 1) * dt
    starts = (t_out[:-1, None] + np.arange(substeps)[None, :] * h).ravel()
    try:
        xs, cur = run(_voltages(stimulus, starts), _voltages(stimulus, starts + 0.5 * h),
                      _voltages(stimulus, starts + h), float(params["x0"]), h)
    except (OverflowError, ZeroDivisionError) as exc:
        raise NonFiniteError(f"{card.name}: the state or current overflowed ({exc}); reduce dt") from None
    x = np.asarray(xs)[::substeps]
    i = np.asarray(cur)[::substeps]
    v = np.asarray(_voltages(stimulus, t_out))
    if not (np.isfinite(x).all() and np.isfinite(i).all()):
        bad = int(np.argmin(np.isfinite(x) & np.isfinite(i)))
        raise NonFiniteError(f"{card.name} state became non-finite at step {bad} (t = {t_out[bad]:g} s); "
                             f"reduce dt or add substeps")
    return Trace("scalar", t_out, v, i, x)


# ----------------------------------------------------------------------------------------------------------
# neurons

def neuron_source(card, synapse: bool) -> str:
    """The Python source of one neuron's whole-trace loop (RK4 sub-steps, input held per step).

    As for :func:`device_source`, the card's values enter only as validated floats: the circuit's and each
    memristor's parameters are validated again here, whoever built the card."""
    card.circuit.validate(card.parameters, card.name)
    for mem in card.memristors:
        mem.family.validate(mem.parameters, where=f"{card.name}.{mem.name}")
    p, devices = card.namespaces()
    circuit = card.circuit
    names = list(circuit.state_names) + (["a", "s"] if synapse else [])
    ns = len(names)
    y = [f"y{j}" for j in range(ns)]

    def field(prefix, state):
        m = PyMath(prefix)
        comps = [m.symbol(s) for s in state]
        nc = len(circuit.state_names)
        if synapse:
            da, ds = _synapse(m, p.tau_s, m.symbol("u"), comps[nc], comps[nc + 1])
            d = list(circuit.derivative(m, p, devices, comps[:nc], comps[nc + 1])) + [da, ds]
        else:
            d = list(circuit.derivative(m, p, devices, comps, m.symbol("u")))
        exprs = [e.text if hasattr(e, "text") else repr(float(e)) for e in d]
        return m.lines + [f"{prefix}_{j} = {e}" for j, e in enumerate(exprs)]

    body = []
    stage_states = {"k1": y, "k2": [f"yb{j}" for j in range(ns)], "k3": [f"yc{j}" for j in range(ns)],
                    "k4": [f"yd{j}" for j in range(ns)]}
    advance = {"k1": ("yb", "hh"), "k2": ("yc", "hh"), "k3": ("yd", "h")}
    for k in ("k1", "k2", "k3", "k4"):
        body += field(k, stage_states[k])
        if k in advance:
            target, step = advance[k]
            body += [f"{target}{j} = y{j} + {step} * {k}_{j}" for j in range(ns)]
    body += [f"y{j} = y{j} + h6 * (k1_{j} + 2.0 * (k2_{j} + k3_{j}) + k4_{j})" for j in range(ns)]
    src = [f"def run(currents, y0, h, substeps, {_SIGNATURE}):",
           f"    {', '.join(y)}{',' if ns == 1 else ''} = y0",
           "    hh = 0.5 * h",
           "    h6 = h / 6.0",
           "    out = [None] * len(currents)",
           "    for n in range(len(currents)):",
           "        u = currents[n]",
           "        for _ in range(substeps):"] + _indent(body, 3) + [
           f"        out[n] = ({', '.join(y)}{',' if ns == 1 else ''})",
           "    return out"]
    return "\n".join(src) + "\n"


def _synapse(m, tau_s, u, a, s):
    return synapse_derivative(m, tau_s, u, a, s)


def neuron_trace(card, current, dt: float | None = None, *, synapse: bool = False, substeps: int | None = None):
    """One neuron of ``card`` driven by ``current`` (A, one held sample per step of ``dt``; default the
    card's), as a :class:`memsim.neurons.simulate.NeuronTrace`. Sub-steps default to the torch layer's
    choice (:class:`memsim.nn.MemristiveNeuron`), so both paths integrate the same scheme."""
    if isinstance(card, str):
        card = load_neuron_card(card)
    dt = check_dt(card.dt if dt is None else dt, card.memristors, card.parameters, card.name)
    u = np.asarray(current, dtype=np.float64).reshape(-1)
    if not np.isfinite(u).all():
        raise StimulusError("current contains NaN or infinite values; give finite currents in A")
    if substeps is None:
        p, devices = card.namespaces()
        substeps = default_substeps(card.circuit, p, devices, dt, synapse)
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise StimulusError(f"substeps = {substeps!r} is invalid: allowed an integer >= 1")
    p, devices = card.namespaces()
    y0 = tuple(float(v) for v in card.circuit.initial_state(p, devices)) + ((0.0, 0.0) if synapse else ())
    run = _compile(neuron_source(card, bool(synapse)), card.name)
    try:
        states = run(u.tolist(), y0, dt / substeps, substeps)
    except (OverflowError, ZeroDivisionError) as exc:
        raise NonFiniteError(f"neuron '{card.name}' overflowed ({exc}); keep the input in "
                             f"{list(card.input_range)} A") from None
    st = np.asarray([y0] + states, dtype=np.float64)
    if not np.isfinite(st).all():
        raise NonFiniteError(f"neuron '{card.name}' became non-finite; keep the input in "
                             f"{list(card.input_range)} A")
    nc = len(card.circuit.state_names)
    return NeuronTrace("scalar", np.arange(len(st)) * dt, st[:, 0], st[:, :nc])

