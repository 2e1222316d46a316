"""What a device family is: parameters with their allowed ranges, and two equations.

A family states, once, over the math namespace ``m`` (see :mod:`memsim.mathns`):

* ``current(m, p, v, x)``  — device current in A for terminal voltage ``v`` (V);
* ``dxdt(m, p, v, x)``     — derivative of the dimensionless state ``x`` in 1/s.

``p`` holds the parameters by name (floats/tensors in torch, symbols in SPICE).
Every family's state is normalised to ``x`` in [0, 1], so a SPICE capacitor
voltage of order one carries it and ngspice's absolute tolerances stay
meaningful (a filament gap of 1e-9 m as a node voltage would drown in vntol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar, Mapping

from ..errors import ParameterError


@dataclass(frozen=True)
class Param:
    """One model parameter: SI unit, meaning and the open/closed range it may take."""

    name: str
    unit: str
    doc: str
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def allowed(self) -> str:
        left = "(" if self.lo_open or self.lo == -math.inf else "["
        right = ")" if self.hi_open or self.hi == math.inf else "]"
        return f"{left}{self.lo:g}, {self.hi:g}{right} {self.unit}".rstrip()

    def check(self, value, where: str) -> float:
        field = f"{where}.{self.name}" if where else self.name
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(field, value, f"a finite number in {self.allowed()}",
                                 f"give {self.name} as a number in SI units ({self.unit or 'dimensionless'})")
        value = float(value)
        too_low = value <= self.lo if self.lo_open else value < self.lo
        too_high = value >= self.hi if self.hi_open else value > self.hi
        if not math.isfinite(value) or too_low or too_high:
            raise ParameterError(field, value, self.allowed(),
                                 f"set {self.name} ({self.doc}) inside that range")
        return value


def positive(name: str, unit: str, doc: str) -> Param:
    return Param(name, unit, doc, lo=0.0, lo_open=True)


def nonnegative(name: str, unit: str, doc: str) -> Param:
    return Param(name, unit, doc, lo=0.0)


def unit_interval(name: str, doc: str) -> Param:
    return Param(name, "", doc, lo=0.0, hi=1.0)


#: Every family also takes the initial state; it is a parameter of the SPICE subcircuit.
X0 = unit_interval("x0", "initial normalised state")


class ParameterSet:
    """What every model family with named, ranged parameters shares (device families here, pulse-response families
    in :mod:`memsim.pulse.families`): names, validation of a full set, a namespace for the equations, a description.

    Subclasses set ``name``, ``title``, ``reference`` and ``all_params()``, and may add ``check_relations``."""

    def all_params(self) -> tuple[Param, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_names(self) -> list[str]:
        return [q.name for q in self.all_params()]

    def check_relations(self, values: Mapping[str, float], where: str) -> None:
        """Constraints between parameters (e.g. ``R_on < R_off``); none by default."""

    def validate(self, values: Mapping[str, object], where: str = "") -> dict[str, float]:
        """Check names, types and ranges of a full parameter set; return floats."""
        names = self.param_names()
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        prefix = f"{where}." if where else ""
        if missing:
            raise ParameterError(f"{prefix}{missing[0]}", None, f"all of {names} for family '{self.name}'",
                                 f"add the missing parameter(s) {missing}")
        if extra:
            raise ParameterError(f"{prefix}{extra[0]}", values[extra[0]],
                                 f"only the parameters of family '{self.name}': {names}",
                                 f"remove or rename {extra}")
        out = {q.name: q.check(values[q.name], where) for q in self.all_params()}
        self.check_relations(out, where)
        return out

    @staticmethod
    def namespace(values: Mapping[str, object]) -> SimpleNamespace:
        return SimpleNamespace(**values)

    def describe(self) -> str:
        rows = "\n".join(f"  {q.name:10s} [{q.unit or '-'}] {q.doc}; allowed {q.allowed()}" for q in self.all_params())
        return f"{self.name}: {self.title}\n  ref: {self.reference}\n{rows}"


class DeviceFamily(ParameterSet):
    """Base class of a two-terminal memristive device model."""

    name: ClassVar[str]
    title: ClassVar[str]
    reference: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    #: True when dx/dt does not vanish at x = 0 / 1 by itself (no window), so the
    #: state must be held at its bound by gating the derivative.
    gate_at_bounds: ClassVar[bool] = False

    # -- the equations, written once -----------------------------------------
    def current(self, m, p, v, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def dxdt(self, m, p, v, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def check_relations(self, values: Mapping[str, float], where: str) -> None:
        """Cross-parameter constraints (e.g. R_on < R_off); raise ParameterError."""

    # -- framework ------------------------------------------------------------
    def all_params(self) -> tuple[Param, ...]:
        return self.params + (X0,)

    #: width of the ramp (in x) over which a gated derivative falls to zero at a bound
    BOUND_RAMP: ClassVar[float] = 1e-6

    def state_derivative(self, m, p, v, x):
        """dx/dt with the state bound to [0, 1].

        The equations are evaluated at the clipped state, so a numerical
        overshoot cannot turn a window negative and run away. Families without a
        window (``gate_at_bounds``) also have the derivative scaled to zero as the
        state enters the last ``BOUND_RAMP`` of its range in the direction it is
        moving. The ramp keeps dx/dt continuous in x (a hard on/off gate stalls
        ngspice with "timestep too small"), and at 1e-6 of the range it moves a
        state by less than the 1e-3 verification tolerance can see. The gate's
        own slope (``|dx/dt| / 1e-6``) is a constraint, not physics: gradients do not
        flow through it, otherwise backpropagation through a state resting on its
        bound multiplies by that huge slope at every step and overflows.
        """
        xc = m.let("xc", m.clip(x, 0.0, 1.0))
        d = self.dxdt(m, p, v, xc)
        if self.gate_at_bounds:
            d = m.let("dxraw", d)
            room = m.where(d > 0.0, 1.0 - xc, xc)
            d = d * m.stop_gradient(m.clip(room / self.BOUND_RAMP, 0.0, 1.0))
        return d

    def bounded_current(self, m, p, v, x):
        return self.current(m, p, v, m.let("xc", m.clip(x, 0.0, 1.0)))


def require_less(values: Mapping[str, float], small: str, large: str, where: str) -> None:
    """``values[small] < values[large]``, for numbers or per-device tensors (every device checked)."""
    prefix = f"{where}." if where else ""
    ok = values[small] < values[large]
    if hasattr(ok, "all"):  # tensors: name the first device that breaks the relation
        if bool(ok.all()):
            return
        import torch
        idx = tuple(int(i) for i in (~ok).nonzero()[0])
        a, b = (float(torch.broadcast_to(torch.as_tensor(values[k]), ok.shape)[idx]) for k in (small, large))
        raise ParameterError(f"{prefix}{small}[{', '.join(map(str, idx))}]", a, f"{small} < {large} = {b!r} "
                             f"for every device", f"swap or correct {small} and {large} of that device")
    if not ok:
        raise ParameterError(f"{prefix}{small}", values[small], f"{small} < {large} = {values[large]!r}",
                             f"swap or correct {small} and {large}")
