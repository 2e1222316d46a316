"""Neuron circuits: their equations, written once over the math namespace ``m``.

A neuron circuit is a membrane capacitor plus memristors (device families from
:mod:`memsim.families`, reused, not retyped) plus passive elements. Its state is
a vector; :meth:`NeuronCircuit.derivative` returns d(state)/dt component by
component, so the same function drives the torch integrators (``m = TORCH``)
and renders to ngspice B-source text (``m = SpiceMath()``) where needed.

Circuits
--------
``mif``   memristive integrate-and-fire (Kang et al., IEEE TCAS-I 2021; the
          neuron of SPICEprop / MEMprop)::

              C dV/dt = I_in - i_1 - i_2,   i_k = G_k(x_k) (V - E_k)
              dx_k/dt = MSS dx/dt at v_k = V - E_k

          Each memristor's top electrode is the membrane, its bottom electrode
          its reversal-potential source (E1 < E2). State (V, x1, x2).

``vlif``  volatile-memristor leaky integrate-and-fire: a threshold-switching
          (volatile) memristor from the membrane to a load resistor R_L, a
          membrane capacitor. The memristor's OFF leakage is the leak, its
          switching ON discharges the membrane (the spike, as a current pulse
          through R_L), and its spontaneous relaxation OFF ends the reset::

              v_m = V / (1 + G(x) R_L)        (memristor and R_L in series)
              C dV/dt = I_in - G(x) v_m,      dx/dt = MSS dx/dt at v_m

          State (V, x).

Optional alpha-kernel synapse (two first-order states, unit DC gain) in front
of either circuit: ``tau_s da/dt = u - a``, ``tau_s ds/dt = a - s``, ``I_in = s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

from ..errors import ParameterError
from ..families.base import Param, positive
from ..families.metastable import MetastableSwitch


def synapse_derivative(m, tau_s, u, a, s):
    """Alpha-kernel synapse: input current ``u`` (A) -> states ``a``, ``s`` (A); ``s`` drives the membrane."""
    return (u - a) / tau_s, (a - s) / tau_s


@dataclass(frozen=True)
class SpikeRule:
    """A spike is an upward crossing of state component ``component`` through ``level``."""

    component: int
    level: float
    doc: str


class NeuronCircuit:
    """Base class of a neuron circuit (equations only)."""

    type: ClassVar[str]
    title: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    #: names of the circuit's own state components (synapse states come after)
    state_names: ClassVar[tuple[str, ...]]
    #: how many memristors the circuit has
    n_memristors: ClassVar[int]

    def derivative(self, m, p, devices, y, i_in):  # pragma: no cover - abstract
        """d(state)/dt as a tuple, for circuit parameters ``p``, memristor parameter
        namespaces ``devices``, state components ``y`` and input current ``i_in`` (A)."""
        raise NotImplementedError

    def spike_rule(self, p, devices) -> SpikeRule:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_relations(self, values: Mapping[str, float], where: str) -> None:
        """Cross-parameter constraints; raise ParameterError."""

    def initial_state(self, p, devices) -> tuple[float, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def max_rate(self, p, devices) -> float:
        """An upper bound of the state Jacobian's spectral radius (1/s), for sub-stepping."""
        raise NotImplementedError  # pragma: no cover

    def validate(self, values: Mapping[str, object], where: str = "") -> dict[str, float]:
        names = [q.name for q in self.params]
        prefix = f"{where}." if where else ""
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing:
            raise ParameterError(f"{prefix}{missing[0]}", None, f"all of {names} for a '{self.type}' neuron",
                                 f"add the missing parameter(s) {missing}")
        if extra:
            raise ParameterError(f"{prefix}{extra[0]}", values[extra[0]], f"only {names} for a '{self.type}' neuron",
                                 f"remove or rename {extra}")
        out = {q.name: q.check(values[q.name], where) for q in self.params}
        self.check_relations(out, where)
        return out


def _g_max(dev) -> float:
    return 1.0 / float(dev.R_on)


class MIF(NeuronCircuit):
    type = "mif"
    title = "Memristive integrate-and-fire neuron (two metastable-switch memristors with reversal potentials)"
    params = (
        positive("C", "F", "membrane capacitance"),
        Param("E1", "V", "reversal potential in series with memristor M1 (the lower one)"),
        Param("E2", "V", "reversal potential in series with memristor M2 (the higher one)"),
        Param("V0", "V", "initial membrane voltage"),
        positive("tau_s", "s", "time constant of the optional alpha-kernel input synapse"),
    )
    state_names = ("V", "x1", "x2")
    n_memristors = 2

    def __init__(self, family):
        self.family = family

    def derivative(self, m, p, devices, y, i_in):
        V, x1, x2 = y
        d1, d2 = devices
        v1, v2 = V - p.E1, V - p.E2
        i1 = self.family.bounded_current(m, d1, v1, x1)
        i2 = self.family.bounded_current(m, d2, v2, x2)
        return ((i_in - i1 - i2) / p.C,
                self.family.state_derivative(m, d1, v1, x1),
                self.family.state_derivative(m, d2, v2, x2))

    def spike_rule(self, p, devices):
        return SpikeRule(0, float(p.E1) + float(devices[0].v_on),
                         "membrane voltage V crosses E1 + v_on(M1) upwards (M1 starts switching ON)")

    def check_relations(self, values, where):
        if not values["E1"] < values["E2"]:
            prefix = f"{where}." if where else ""
            raise ParameterError(f"{prefix}E1", values["E1"], f"E1 < E2 = {values['E2']!r} V",
                                 "M1 (lower turn-on level E1 + v_on) must sit on the lower reversal potential; "
                                 "swap E1 and E2")

    def initial_state(self, p, devices):
        return (float(p.V0), float(devices[0].x0), float(devices[1].x0))

    def max_rate(self, p, devices):
        return (_g_max(devices[0]) + _g_max(devices[1])) / float(p.C) + \
            sum(2.0 / float(d.tau) for d in devices)


class VLIF(NeuronCircuit):
    type = "vlif"
    title = "Volatile-memristor leaky integrate-and-fire neuron (threshold switch + load resistor + capacitor)"
    params = (
        positive("C", "F", "membrane capacitance"),
        positive("R_L", "Ohm", "load resistor in series with the threshold switch"),
        Param("V0", "V", "initial membrane voltage"),
        positive("tau_s", "s", "time constant of the optional alpha-kernel input synapse"),
    )
    state_names = ("V", "x")
    n_memristors = 1

    def __init__(self, family):
        self.family = family

    def memristor_voltage(self, m, p, dev, V, x):
        # the family's current is G(x) v (linear in v), so the series divider is explicit
        g = self.family.bounded_current(m, dev, 1.0, x)
        return V / (1.0 + g * p.R_L)

    def derivative(self, m, p, devices, y, i_in):
        V, x = y
        (dev,) = devices
        vm = self.memristor_voltage(m, p, dev, V, x)
        i = self.family.bounded_current(m, dev, vm, x)
        return ((i_in - i) / p.C, self.family.state_derivative(m, dev, vm, x))

    def spike_rule(self, p, devices):
        return SpikeRule(1, 0.1, "threshold-switch state x crosses 0.1 upwards (the switch conducts ~R_off/(10 R_on) times its OFF leak: it fires)")

    def initial_state(self, p, devices):
        return (float(p.V0), float(devices[0].x0))

    def max_rate(self, p, devices):
        (dev,) = devices
        return 1.0 / ((float(dev.R_on) + float(p.R_L)) * float(p.C)) + 2.0 / float(dev.tau)


def circuit_for(type_: str, family, where: str = "type") -> NeuronCircuit:
    types = {"mif": MIF, "vlif": VLIF}
    if type_ not in types:
        raise ParameterError(where, type_, f"one of {sorted(types)}", "use 'mif' or 'vlif'")
    if not isinstance(family, MetastableSwitch):
        raise ParameterError(f"{where}.memristor.family", family.name, "metastable_switch",
                             "the neuron circuits are built from metastable-switch memristors "
                             "(their current is linear in voltage, G(x) v)")
    return types[type_](family)


def default_substeps(circuit: NeuronCircuit, p, devices, dt: float, synapse: bool) -> int:
    """RK4 sub-steps per ``dt``: stability of the stiffest mode, and accuracy (h <= tau / 20 for the
    switching and the synapse)."""
    rate = circuit.max_rate(p, devices) + (2.0 / p.tau_s if synapse else 0.0)
    fastest = min([float(d.tau) for d in devices] + ([p.tau_s] if synapse else []))
    return max(substeps_for(dt, rate), math.ceil(dt * 20.0 / fastest - 1e-9))


def substeps_for(dt: float, rate: float, limit: float = 2.0) -> int:
    """Sub-steps per ``dt`` so that RK4 stays inside its stability region (|lambda h| <= limit)."""
    return max(1, math.ceil(dt * rate / limit - 1e-12))
