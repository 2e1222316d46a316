"""Pulse data as LTP/LTD curves: polarity, pulse count and read conductance per row, for the behavioural fits; and
polarity data replayed on a device card's own pulses, for the physical fits.

* :func:`pulse_curves` turns a measurement of either pulse layout into padded ``[rows, groups]`` arrays. For an
  ``amplitude,width,conductance`` file the polarity of a pulse is the sign of its amplitude, oriented by the data
  (the sign whose pulses raise the conductance on average is potentiation); a behavioural family describes one
  pulse shape per polarity, so such a file must hold one amplitude per sign and one width.
* :func:`with_amplitudes` gives a ``polarity,conductance`` file the amplitudes and width of a device card's SET and
  RESET verification pulses, so that every physical family can be fitted to it (``--family auto``).
* :func:`check_polarities` refuses data without a polarity the fit needs, before any fitting.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .data import DataError, Group, Measurement


@dataclass
class PulseCurves:
    """The rows of every group, padded to ``[T, G]``: polarity (+1/-1/0), pulses before the read, read conductance."""

    labels: list[str]
    polarity: np.ndarray      # int [T, G]
    count: np.ndarray         # int [T, G], 0 on padding
    target: np.ndarray        # S [T, G], NaN on padding
    mask: np.ndarray          # bool [T, G]: a measured row
    rows: np.ndarray          # int [T, G]: each row's number as the user sees it (``row_name``)
    row_name: str = "data row"
    pulse: dict | None = None  # amplitude data: {"set_voltage", "reset_voltage", "width"} of the pulses

    @property
    def n_points(self) -> int:
        return int(self.mask.sum())

    def range(self) -> tuple[float, float]:
        return float(np.nanmin(self.target)), float(np.nanmax(self.target))

    def pulses(self, sign: int) -> int:
        return int(self.count[self.polarity == sign].sum())

    def run_length(self, sign: int) -> float:
        """Median number of pulses in a run of one polarity (a potentiation or depression branch)."""
        runs = []
        for j in range(self.polarity.shape[1]):
            n = 0
            for p, c in zip(self.polarity[:, j], self.count[:, j]):
                if p == sign:
                    n += c
                elif p == -sign and n:
                    runs.append(n)
                    n = 0
            if n:
                runs.append(n)
        return float(np.median(runs)) if runs else 1.0


def _orientation(meas: Measurement) -> int:
    """+1 when positive amplitudes raise the conductance on average, -1 when negative ones do."""
    rise = {1: [], -1: []}
    for g in meas.groups:
        a, w, c = g.columns["amplitude"], g.columns["width"], g.columns["conductance"]
        d = np.diff(c, prepend=c[0])
        for s in (1, -1):
            rise[s].extend(d[(np.sign(a) == s) & (w > 0)])
    up = np.mean(rise[1]) if rise[1] else 0.0
    down = np.mean(rise[-1]) if rise[-1] else 0.0
    return 1 if up >= down else -1


def pulse_curves(meas: Measurement) -> PulseCurves:
    """The measurement as LTP/LTD curves (see the module docstring)."""
    if meas.kind == "iv":
        raise DataError("an I-V sweep is no pulse curve; behavioural families fit pulse data (polarity,conductance "
                        "or amplitude,width,conductance). Fix: fit a device family (--family) to the sweep")
    pulse = None
    if meas.kind == "pulse":
        amps, widths = meas.values("amplitude"), meas.values("width")
        moving = (amps != 0) & (widths > 0)
        levels = {s: np.unique(amps[moving & (np.sign(amps) == s)]) for s in (1, -1)}
        ws = np.unique(widths[moving])
        if any(len(v) > 1 for v in levels.values()) or len(ws) > 1:
            raise DataError(f"the pulses have amplitudes {sorted(set(amps[moving].tolist()))} V and widths "
                            f"{ws.tolist()} s; a behavioural family describes one pulse per polarity. Fix: fit a "
                            "device family, or split the file by pulse shape")
        s = _orientation(meas)
        pol = {1: levels[s][0] if len(levels[s]) else None, -1: levels[-s][0] if len(levels[-s]) else None}
        pulse = {k: float(v) for k, v in (("set_voltage", pol[1]), ("reset_voltage", pol[-1]),
                                          ("width", ws[0] if len(ws) else None)) if v is not None}
        cols = [(np.where((g.columns["amplitude"] != 0) & (g.columns["width"] > 0),
                          s * np.sign(g.columns["amplitude"]), 0).astype(np.int64),
                 ((g.columns["amplitude"] != 0) & (g.columns["width"] > 0)).astype(np.int64),
                 g.columns["conductance"]) for g in meas.groups]
    else:
        cols = [(g.columns["polarity"].astype(np.int64), g.columns["count"].astype(np.int64), g.columns["conductance"])
                for g in meas.groups]
    T, G = max(len(c[2]) for c in cols), len(cols)
    polarity, count, rows = np.zeros((T, G), np.int64), np.zeros((T, G), np.int64), np.zeros((T, G), np.int64)
    target, mask = np.full((T, G), np.nan), np.zeros((T, G), bool)
    for j, ((p, n, y), g) in enumerate(zip(cols, meas.groups)):
        polarity[:len(y), j], count[:len(y), j], target[:len(y), j], mask[:len(y), j] = p, n, y, True
        rows[:len(y), j] = g.rows
    return PulseCurves([g.label for g in meas.groups], polarity, count, target, mask, rows, meas.row_name, pulse)


def check_polarities(curves: PulseCurves, needed: set[str], what: str) -> None:
    """A :class:`DataError` when the data hold no pulse of a polarity that ``what`` needs (``"ltp"``/``"ltd"``)."""
    names = {"ltp": (1, "potentiation", "+1"), "ltd": (-1, "depression", "-1")}
    for d in sorted(needed):
        sign, word, code = names[d]
        if curves.pulses(sign) == 0:
            other = names["ltd" if d == "ltp" else "ltp"]
            raise DataError(f"the data hold {curves.pulses(other[0])} {other[1]} pulse(s) and no {word} pulse; "
                            f"{what} needs both polarities. Fix: add the {word} branch (rows with polarity {code}), or "
                            f"fit only the {other[1]} parameters (--free ..._{'ltd' if d == 'ltp' else 'ltp'} with "
                            "--init CARD)")


def with_amplitudes(meas: Measurement, card) -> Measurement:
    """A ``polarity,conductance`` measurement as ``amplitude,width,conductance`` rows on ``card``'s SET/RESET
    verification pulses (a row of k pulses becomes k trapezoids before its read)."""
    if meas.kind != "polarity":
        return meas
    p = card.verify.pulse
    groups = []
    for g in meas.groups:
        pol = g.columns["polarity"]
        amp = np.where(pol > 0, p.set_voltage, np.where(pol < 0, p.reset_voltage, 0.0))
        groups.append(Group(g.label, g.rows, {"amplitude": amp, "width": np.full(len(pol), p.width),
                                              "conductance": g.columns["conductance"], "count": g.columns["count"]}))
    note = (f"polarity data replayed on {card.name}'s verification pulses: +1 = {p.set_voltage:g} V, -1 = "
            f"{p.reset_voltage:g} V, {p.width:g} s")
    return replace(meas, kind="pulse", groups=groups, notes=list(meas.notes) + [note])


def outside_window(curves: PulseCurves, g_min: float, g_max: float, tolerance: float) -> str | None:
    """A description of the measured conductances outside [g_min, g_max] widened by ``tolerance`` x the window,
    or None when all lie inside."""
    slack = tolerance * (g_max - g_min)
    bad = curves.mask & ((curves.target < g_min - slack) | (curves.target > g_max + slack))
    if not bad.any():
        return None
    t, j = np.argwhere(bad)[0]
    group = f" (group {curves.labels[j]})" if len(curves.labels) > 1 else ""
    return (f"{int(bad.sum())} measured conductance(s) outside the card's window [{g_min:.6g}, {g_max:.6g}] S (+- "
            f"{tolerance:.0%} of it), e.g. {curves.target[t, j]:.6g} S at {curves.row_name} {curves.rows[t, j]}{group}")
