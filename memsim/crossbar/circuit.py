"""The electrical description of one crossbar tile: wires, their layout, access device, topology.

Topology (the same in the nodal solver, the linear operator and the SPICE netlist)::

            driver                                                  (drive = "both": a second driver
    V_i --[r_source]--[r_wl]--o----[r_wl]----o---- ... ----o         at the right end, same V_i)
                              |              |             |
                            cell(i,0)     cell(i,1)    cell(i,cols-1)       word line i (row, input)
                              |              |             |
             bit line j:   o (i, j) -[r_bl]- o (i+1, j) - ... - o (rows-1, j) -[r_bl]- sense amp j (0 V)
                                                                 (sense_end = "bottom", the default)

* ``rows`` word lines (inputs) run horizontally. Row ``i`` is driven at its left
  end by a DAC voltage source ``V_i`` through the driver resistance ``r_source``
  and then, with ``driver_segment`` (default), one word-line segment ``r_wordline``
  before the first cell; one more segment joins each pair of neighbouring cells.
  ``drive = "both"`` drives the right end too, through the same resistances.
* ``cols`` bit lines (outputs) run vertically, one segment ``r_bitline`` between
  neighbouring cells and, with ``sense_segment`` (default), one more segment into the
  sense amplifier, which holds the bit line's end at virtual ground (0 V) and reads the
  column current. ``sense_end`` says which end: ``"bottom"`` (after row ``rows-1``,
  the default) or ``"top"`` (before row 0).
* A cell connects word-line node (i, j) to bit-line node (i, j): a memristor
  (0T1R, passive), or a memristor in series with an access transistor (1T1R).
  The transistor is a gate-controlled series conductance (triode region, small
  drain-source voltage): ``g_T = g_off + k * max(V_gate - V_th, 0)``. Row ``i``'s
  gate line is held at ``v_gate[i]`` (all rows selected by default).
* Zero resistances are exact: ``r_wordline = 0`` makes a word line one node, ``r_bitline = 0``
  holds every bit-line node at the sense amplifier's 0 V, and ``r_source = 0`` without a
  driver segment holds the first cell's word-line node at ``V_i``. With all three at 0 the
  tile is the ideal product ``V @ G``.

With the defaults the cell farthest from both the driver and the sense amplifier is (0, cols-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from ..errors import ParameterError
from ..schema import is_finite_number, spec_field

ACCESS_KINDS = ("0T1R", "1T1R")


def _positive(field: str, value, fix: str, allow_zero: bool = False) -> float:
    ok = is_finite_number(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ParameterError(field, value, allowed, fix)
    return float(value)


SENSE_ENDS = ("bottom", "top")
DRIVES = ("left", "both")


@dataclass(frozen=True)
class Wires:
    """Interconnect resistances in Ohm and where the wires end (see the module's diagram).

    ``r_wordline`` / ``r_bitline``: per cell segment; ``r_source``: the DAC driver's output resistance.
    ``driver_segment``: a word-line segment between the driver and the first cell.
    ``sense_segment``: a bit-line segment between the last cell and the sense amplifier.
    ``sense_end``: ``"bottom"`` (after the last row) or ``"top"`` (before row 0).
    ``drive``: ``"left"`` (one driver per word line) or ``"both"`` (both ends driven at the same voltage).
    """

    r_wordline: float = spec_field(1.0, "float", "word-line resistance per cell segment (0 = an ideal word line)",
                                   unit="Ohm", lo=0.0)
    r_bitline: float = spec_field(1.0, "float", "bit-line resistance per cell segment (0 = an ideal bit line)",
                                  unit="Ohm", lo=0.0)
    r_source: float = spec_field(0.0, "float", "output resistance of each word line's DAC driver", unit="Ohm",
                                 lo=0.0)
    driver_segment: bool = spec_field(True, "bool", "a word-line segment between the driver and the first cell")
    sense_segment: bool = spec_field(True, "bool", "a bit-line segment between the last cell and the sense "
                                                   "amplifier")
    sense_end: str = spec_field("bottom", "choice", "the end of the bit lines where the sense amplifiers sit "
                                                    "(bottom: after the last row)", choices=SENSE_ENDS)
    drive: str = spec_field("left", "choice", "word lines driven from the left end, or from both ends at the same "
                                              "voltage", choices=DRIVES)

    def __post_init__(self):
        _positive("wires.r_wordline", self.r_wordline,
                  "give the word-line resistance per cell segment in Ohm (>= 0; 0 = an ideal word line)",
                  allow_zero=True)
        _positive("wires.r_bitline", self.r_bitline,
                  "give the bit-line resistance per cell segment in Ohm (>= 0; 0 = an ideal bit line)",
                  allow_zero=True)
        _positive("wires.r_source", self.r_source, "give the DAC driver's output resistance in Ohm (>= 0)",
                  allow_zero=True)
        for name in ("driver_segment", "sense_segment"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"wires.{name}", getattr(self, name), "true or false",
                                     "say whether that wire segment exists")
        if self.sense_end not in SENSE_ENDS:
            raise ParameterError("wires.sense_end", self.sense_end, f"one of {list(SENSE_ENDS)}",
                                 "say at which end of the bit lines the sense amplifiers sit")
        if self.drive not in DRIVES:
            raise ParameterError("wires.drive", self.drive, f"one of {list(DRIVES)}",
                                 "drive the word lines from the left end or from both ends")

    @property
    def ideal(self) -> bool:
        """True when the wires add nothing: the tile is the ideal product."""
        return self.r_wordline == 0 and self.r_bitline == 0 and self.r_source == 0

    def driver_resistance(self) -> float:
        """Resistance from a driver's source to the first (or last) cell's word-line node, in Ohm."""
        return self.r_source + (self.r_wordline if self.driver_segment else 0.0)

    def describe(self) -> str:
        return (f"word line {self.r_wordline:g} Ohm/segment, bit line {self.r_bitline:g} Ohm/segment, driver "
                f"{self.r_source:g} Ohm{' + 1 segment' if self.driver_segment else ''} "
                f"({'both ends' if self.drive == 'both' else 'left end'}), sense amplifier at the "
                f"{self.sense_end}{' after 1 segment' if self.sense_segment else ' (no segment)'}")


@dataclass(frozen=True)
class Transistor:
    """1T1R access transistor as a gate-controlled series conductance (triode region).

    ``g_T = g_off + k * max(V_gate - v_th, 0)`` in S; ``k`` in S/V (mu Cox W/L), ``v_th`` in V,
    ``g_off`` the off-state leakage conductance in S, ``v_gate`` the selected gate voltage in V.
    """

    k: float = spec_field(2e-3, "float", "transconductance factor mu Cox W/L (triode: g_T = g_off + k (v_gate - "
                                         "v_th))", unit="S/V", lo=0.0, lo_open=True)
    v_th: float = spec_field(0.4, "float", "threshold voltage", unit="V")
    g_off: float = spec_field(1e-9, "float", "off-state leakage conductance", unit="S", lo=0.0)
    v_gate: float = spec_field(1.2, "float", "gate voltage of a selected row", unit="V")

    def __post_init__(self):
        _positive("transistor.k", self.k, "give the transconductance factor mu*Cox*W/L in S/V (> 0)")
        if not is_finite_number(self.v_th):
            raise ParameterError("transistor.v_th", self.v_th, "a finite voltage in V", "give the threshold voltage")
        _positive("transistor.g_off", self.g_off, "give the off-state leakage conductance in S (>= 0)",
                  allow_zero=True)
        if not is_finite_number(self.v_gate):
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
