"""The electrical description of one crossbar tile: wires, access device, topology.

Topology (the same in the nodal solver and in the SPICE netlist):

* ``rows`` word lines (inputs) run horizontally. Row ``i`` is driven at its left
  end by a DAC voltage source ``V_i`` through the driver resistance ``r_source``
  and then one word-line segment ``r_wordline`` per cell: source -> cell (i, 0)
  -> cell (i, 1) -> ... -> cell (i, cols-1).
* ``cols`` bit lines (outputs) run vertically, one segment ``r_bitline`` per cell,
  from cell (0, j) down to cell (rows-1, j) and one more segment into the sense
  amplifier, which holds the bit line's end at virtual ground (0 V) and reads the
  column current.
* A cell connects word-line node (i, j) to bit-line node (i, j): a memristor
  (0T1R, passive), or a memristor in series with an access transistor (1T1R).
  The transistor is a gate-controlled series conductance (triode region, small
  drain-source voltage): ``g_T = g_off + k * max(V_gate - V_th, 0)``. Row ``i``'s
  gate line is held at ``v_gate[i]`` (all rows selected by default).

The cell farthest from both the driver and the sense amplifier is (0, cols-1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

from ..errors import ParameterError

ACCESS_KINDS = ("0T1R", "1T1R")


def _positive(field: str, value, fix: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ParameterError(field, value, allowed, fix)
    return float(value)


@dataclass(frozen=True)
class Wires:
    """Interconnect resistances in Ohm: per word-line and bit-line segment, and the driver's source resistance."""

    r_wordline: float = 1.0
    r_bitline: float = 1.0
    r_source: float = 0.0

    def __post_init__(self):
        _positive("wires.r_wordline", self.r_wordline,
                  "give the word-line resistance per cell segment in Ohm (> 0; use the ideal mode for no wires)")
        _positive("wires.r_bitline", self.r_bitline,
                  "give the bit-line resistance per cell segment in Ohm (> 0; use the ideal mode for no wires)")
        _positive("wires.r_source", self.r_source, "give the DAC driver's output resistance in Ohm (>= 0)",
                  allow_zero=True)


@dataclass(frozen=True)
class Transistor:
    """1T1R access transistor as a gate-controlled series conductance (triode region).

    ``g_T = g_off + k * max(V_gate - v_th, 0)`` in S; ``k`` in S/V (mu Cox W/L), ``v_th`` in V,
    ``g_off`` the off-state leakage conductance in S, ``v_gate`` the selected gate voltage in V.
    """

    k: float = 2e-3
    v_th: float = 0.4
    g_off: float = 1e-9
    v_gate: float = 1.2

    def __post_init__(self):
        _positive("transistor.k", self.k, "give the transconductance factor mu*Cox*W/L in S/V (> 0)")
        if not (isinstance(self.v_th, (int, float)) and math.isfinite(self.v_th)):
            raise ParameterError("transistor.v_th", self.v_th, "a finite voltage in V", "give the threshold voltage")
        _positive("transistor.g_off", self.g_off, "give the off-state leakage conductance in S (>= 0)",
                  allow_zero=True)
        if not (isinstance(self.v_gate, (int, float)) and math.isfinite(self.v_gate)):
            raise ParameterError("transistor.v_gate", self.v_gate, "a finite voltage in V",
                                 "give the gate voltage of a selected row")

    def namespace(self, m=None) -> SimpleNamespace:
        return SimpleNamespace(k=self.k, v_th=self.v_th, g_off=self.g_off)

    def conductance_on(self) -> float:
        """g_T of a selected row (gate at ``v_gate``), in S."""
        return self.g_off + self.k * max(self.v_gate - self.v_th, 0.0)


def transistor_conductance(m, p, v_gate):
    """Channel conductance in S of the access transistor; written once over the math namespace."""
    return p.g_off + p.k * m.maximum(v_gate - p.v_th, 0.0)


def transistor_current(m, p, v_ds, v_gate):
    """Drain-to-source current in A (triode, linear in ``v_ds``)."""
    return transistor_conductance(m, p, v_gate) * v_ds


@dataclass(frozen=True)
class TileCircuit:
    """Electrical parameters shared by the nodal solver and the netlist writer."""

    wires: Wires = Wires()
    access: str = "0T1R"
    transistor: Transistor | None = None

    def __post_init__(self):
        if self.access not in ACCESS_KINDS:
            raise ParameterError("tile.access", self.access, f"one of {list(ACCESS_KINDS)}",
                                 "choose '0T1R' (passive) or '1T1R' (access transistor)")
        if self.access == "1T1R" and self.transistor is None:
            object.__setattr__(self, "transistor", Transistor())
