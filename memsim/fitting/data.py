"""Measured device data for fitting: I-V sweeps and pulse conductance curves, checked before any fitting.

Two layouts, told apart by their columns (header names are case-insensitive; a unit may follow the name as
``current_mA``, ``current (mA)`` or ``current [mA]``, and SI-prefixed units are converted to SI):

* **I-V sweeps**: ``time`` (s), ``voltage`` (V across the device), ``current`` (A through it).
* **Pulse trains**: ``amplitude`` (V), ``width`` (s, the flat top), ``conductance`` (S, read after the pulse).
  A row with amplitude 0 is a read without a pulse (e.g. the state before the first pulse).

Several cycles or devices in one file are told apart by a ``cycle`` and/or ``device`` column (or any column
named with ``group=``); each group is one experiment that starts from the card's initial state.

Every check runs on load, before fitting, and names the rows it objects to: missing or misnamed columns (with
the closest name), non-numeric or NaN cells, non-monotonic time within a group, too few points, and a sign or
shape no memsim family can produce (a loop that is not pinched at V = 0, a current against the voltage). Values
that look like the wrong unit (mA stored as A, mV as V) raise a :class:`UnitsWarning` with the evidence.
"""
from __future__ import annotations

import csv
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MemsimError
from ..schema import closest

IV_COLUMNS = ("time", "voltage", "current")
PULSE_COLUMNS = ("amplitude", "width", "conductance")
GROUP_COLUMNS = ("device", "cycle")
#: accepted spellings of each canonical column (besides the canonical name itself)
ALIASES = {"t": "time", "v": "voltage", "i": "current", "g": "conductance", "amp": "amplitude",
           "pulse_amplitude": "amplitude", "pulse_width": "width", "g_read": "conductance"}
_BASE_UNIT = {"time": "s", "voltage": "V", "current": "A", "amplitude": "V", "width": "s", "conductance": "S"}
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}


class DataError(MemsimError, ValueError):
    """A measurement file is unusable for fitting (what, where, and how to fix it)."""


class UnitsWarning(UserWarning):
    """Values that look like a different unit than the column's SI unit."""


@dataclass
class Group:
    """One experiment (a cycle or a device): its rows in file order."""

    label: str
    rows: np.ndarray                 # 1-based data-row numbers in the file
    columns: dict[str, np.ndarray]   # canonical column -> SI values


@dataclass
class Measurement:
    kind: str                        # "iv" or "pulse"
    path: Path | None
    sha256: str
    groups: list[Group]
    group_columns: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def n_points(self) -> int:
        return sum(len(g.rows) for g in self.groups)

    @property
    def target(self) -> str:
        return "current" if self.kind == "iv" else "conductance"

    def values(self, name: str) -> np.ndarray:
        return np.concatenate([g.columns[name] for g in self.groups])

    def voltage_range(self) -> tuple[float, float]:
        v = self.values("voltage" if self.kind == "iv" else "amplitude")
        return float(v.min()), float(v.max())

    def describe(self) -> str:
        what = "I-V sweep" if self.kind == "iv" else "pulse train"
        by = f" by {'/'.join(self.group_columns)}" if self.group_columns else ""
        return f"{what}: {self.n_points} points in {len(self.groups)} group(s){by}"


def _split_header(name: str) -> tuple[str, str]:
    """'Current (mA)' -> ('current', 'mA'); 'time_s' -> ('time', 's'); 'voltage' -> ('voltage', '')."""
    text = name.strip()
    m = re.fullmatch(r"(.+?)\s*[\(\[]\s*([^\)\]]*)\s*[\)\]]", text)
    if m:
        return m.group(1).strip().lower().replace(" ", "_"), m.group(2).strip()
    low = text.lower().replace(" ", "_")
    base, _, suffix = text.rpartition("_")
    if base and base.lower() in (*IV_COLUMNS, *PULSE_COLUMNS) and re.fullmatch(r"[kmuµnp]?[AVSs]|ohm", suffix):
        return base.lower(), suffix
    return low, ""


def _unit_factor(column: str, unit: str, header: str) -> float:
    if not unit:
        return 1.0
    base = _BASE_UNIT[column]
    for prefix, factor in _PREFIX.items():
        if unit == prefix + base:
            return factor
    raise DataError(f"column '{header}': unit '{unit}' is not a unit of {column}; allowed: {base} with an SI "
                    f"prefix (k, m, u, n, p), e.g. '{column}_m{base}'. Fix: rename the column or convert the values")


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DataError(f"measurement file {str(path)!r} does not exist")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl
        except ImportError:
            raise DataError(f"{path}: reading .xlsx needs openpyxl; install it with 'pip install memsim[xlsx]' "
                            "or save the sheet as CSV") from None
        sheet = openpyxl.load_workbook(path, read_only=True, data_only=True).worksheets[0]
        table = [["" if c is None else str(c) for c in row] for row in sheet.iter_rows(values_only=True)]
    else:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            table = [row for row in csv.reader(fh, dialect)]
    table = [row for row in table if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not table:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)")
    return [h.strip() for h in table[0]], table[1:]


def _rows_text(rows) -> str:
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def _resolve_columns(header: list[str], source: str) -> tuple[str, dict[str, tuple[int, float]], list[int]]:
    """Which layout the header has, each canonical column's (index, unit factor), and the group column indices."""
    found: dict[str, tuple[int, float]] = {}
    names = []
    for k, h in enumerate(header):
        base, unit = _split_header(h)
        canon = ALIASES.get(base, base)
        names.append(base)
        if canon in _BASE_UNIT and canon not in found:
            found[canon] = (k, _unit_factor(canon, unit, h))
    iv_hits = sum(c in found for c in IV_COLUMNS)
    pulse_hits = sum(c in found for c in PULSE_COLUMNS)
    kind, need = ("iv", IV_COLUMNS) if iv_hits >= pulse_hits else ("pulse", PULSE_COLUMNS)
    missing = [c for c in need if c not in found]
    if missing:
        unused = {n: h for h, n in zip(header, names) if ALIASES.get(n, n) not in found}
        msgs = []
        for c in missing:
            near = closest(c, unused, cutoff=0.4)
            msgs.append(f"'{c}'" + (f" (closest column: '{unused[near]}')" if near else ""))
        layout = ("I-V sweep: time (s), voltage (V), current (A)" if kind == "iv"
                  else "pulse train: amplitude (V), width (s), conductance (S)")
        raise DataError(f"{source}: missing column(s) {', '.join(msgs)}; header is {header}. Expected a {layout}, "
                        "optionally a 'cycle' and/or 'device' column. Fix: rename the column(s)")
    groups = [k for k, n in enumerate(names) if n in GROUP_COLUMNS]
    return kind, found, groups


def read_measurement(path, *, group: str | None = None) -> Measurement:
    """Read and check a CSV (or .xlsx) measurement; raise :class:`DataError` before any fitting."""
    path = Path(path)
    header, rows = _read_table(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return measurement_from_table(header, rows, source=str(path), path=path, sha256=sha, group=group)


def measurement_from_table(header: list[str], rows: list[list], *, source: str = "data", path: Path | None = None,
                           sha256: str = "", group: str | None = None) -> Measurement:
    kind, found, group_idx = _resolve_columns(header, source)
    if group is not None:
        low = [h.lower() for h in header]
        if group.lower() not in low:
            near = closest(group.lower(), low)
            raise DataError(f"{source}: group column '{group}' not found" +
                            (f" (closest: '{header[low.index(near)]}')" if near else "") + f"; header is {header}")
        group_idx = [low.index(group.lower())]
    if not rows:
        raise DataError(f"{source}: no data rows under the header")
    need = IV_COLUMNS if kind == "iv" else PULSE_COLUMNS
    values = {c: np.full(len(rows), np.nan) for c in need}
    bad: list[int] = []
    for r, row in enumerate(rows):
        for c in need:
            k, factor = found[c]
            try:
                values[c][r] = float(row[k]) * factor
            except (ValueError, IndexError, TypeError):
                pass
        if not all(np.isfinite(values[c][r]) for c in need):
            bad.append(r + 1)
    if bad:
        raise DataError(f"{source}: non-numeric or NaN values in data row(s) {_rows_text(bad)} (row 1 is the line "
                        f"under the header) in columns {list(need)}. Fix: remove or repair those rows")
    labels = ["/".join(str(row[k]).strip() if k < len(row) else "" for k in group_idx) for row in rows] \
        if group_idx else [""] * len(rows)
    order: dict[str, list[int]] = {}
    for r, lab in enumerate(labels):
        order.setdefault(lab, []).append(r)
    groups = [Group(lab or "all", np.asarray(ix) + 1, {c: values[c][ix] for c in need}) for lab, ix in order.items()]
    meas = Measurement(kind, path, sha256, groups, tuple(header[k].lower() for k in group_idx))
    _check(meas, source)
    return meas


def _check(meas: Measurement, source: str) -> None:
    for g in meas.groups:
        where = f"{source}" + (f" ({'/'.join(meas.group_columns)} {g.label})" if meas.group_columns else "")
        if meas.kind == "iv":
            t = g.columns["time"]
            back = np.flatnonzero(np.diff(t) <= 0)
            if back.size:
                raise DataError(f"{where}: time is not strictly increasing at data row(s) {_rows_text(g.rows[back + 1])} "
                                f"(t = {t[back[0] + 1]!r} s after {t[back[0]]!r} s). Fix: sort by time, remove "
                                "duplicates, or tell cycles apart with a 'cycle' column")
            if len(t) < 3:
                raise DataError(f"{where}: {len(t)} point(s); an I-V sweep needs at least 3")
        else:
            w, gval = g.columns["width"], g.columns["conductance"]
            neg = np.flatnonzero(w < 0)
            if neg.size:
                raise DataError(f"{where}: negative pulse width at data row(s) {_rows_text(g.rows[neg])}; widths are "
                                "durations in s")
            nonpos = np.flatnonzero(gval <= 0)
            if nonpos.size:
                raise DataError(f"{where}: conductance <= 0 S at data row(s) {_rows_text(g.rows[nonpos])}; a passive "
                                "device read at a non-zero voltage has a positive conductance. Fix: check the sign "
                                "convention of the read")
    _check_units(meas, source)
    if meas.kind == "iv":
        _check_shape(meas, source)


def _check_units(meas: Measurement, source: str) -> None:
    def warn(msg):
        warnings.warn(UnitsWarning(f"{source}: {msg}"), stacklevel=4)

    if meas.kind == "iv":
        v, i = meas.values("voltage"), meas.values("current")
        k = int(np.argmax(np.abs(i)))
        if abs(i[k]) > 0.1:
            big = np.abs(v) > 0.1 * np.max(np.abs(v))
            r = np.median(np.abs(v[big] / np.where(i[big] == 0, np.nan, i[big])))
            warn(f"the largest |current| is {abs(i[k]):g} A (at V = {v[k]:g} V), and the median |V/I| over the sweep "
                 f"is {r:.3g} Ohm: more than RRAM cells carry. If the column is in mA, name it 'current_mA' or "
                 "divide by 1000")
        if np.max(np.abs(v)) > 20:
            warn(f"the largest |voltage| is {np.max(np.abs(v)):g} V; if the column is in mV, name it 'voltage_mV'")
        span = meas.groups[0].columns["time"]
        if span[-1] - span[0] > 1e4:
            warn(f"the first sweep lasts {span[-1] - span[0]:g} s; if time is in ms or us, add the unit to its name")
    else:
        g, a, w = meas.values("conductance"), meas.values("amplitude"), meas.values("width")
        if g.max() > 1.0:
            warn(f"the largest conductance is {g.max():g} S (a {1 / g.max():.3g} Ohm device); if the column is in mS "
                 "or uS, name it 'conductance_mS' / 'conductance_uS'")
        if np.max(np.abs(a)) > 20:
            warn(f"the largest |amplitude| is {np.max(np.abs(a)):g} V; if it is in mV, name it 'amplitude_mV'")
        if w.max() > 10:
            warn(f"the longest pulse is {w.max():g} s; if widths are in ms/us/ns, add the unit to the column name")


#: the pinch test: near V = 0 (|V| below this fraction of the peak) ...
PINCH_V = 0.02
#: ... the current must stay below this fraction of the peak |I|
PINCH_I = 0.05


def _check_shape(meas: Measurement, source: str) -> None:
    """Every memsim family is a passive, pinched memristor: i(v = 0) = 0 and i has the sign of v."""
    v, i = meas.values("voltage"), meas.values("current")
    rows = np.concatenate([g.rows for g in meas.groups])
    vpk, ipk = np.max(np.abs(v)), np.max(np.abs(i))
    if vpk == 0 or ipk == 0:
        raise DataError(f"{source}: the {'voltage' if vpk == 0 else 'current'} is zero everywhere; nothing to fit")
    near0 = np.abs(v) <= PINCH_V * vpk
    if near0.sum() >= 2:
        off = np.abs(i[near0]) > PINCH_I * ipk
        if off.mean() > 0.5:
            k = np.flatnonzero(near0)[off]
            raise DataError(f"{source}: the loop is not pinched: at |V| <= {PINCH_V * vpk:.3g} V the current is "
                            f"{np.median(np.abs(i[near0])):.3g} A, {np.median(np.abs(i[near0])) / ipk:.0%} of the peak "
                            f"(rows {_rows_text(rows[k])}). Every memsim family has i(V = 0) = 0 (a memristor); "
                            "subtract the instrument's offset current or check that voltage and current are aligned in time")
    strong = (np.abs(v) > 0.1 * vpk) & (np.abs(i) > PINCH_I * ipk)
    against = strong & (np.sign(i) != np.sign(v))
    if strong.sum() and against.sum() > 0.05 * strong.sum():
        raise DataError(f"{source}: the current flows against the voltage at {int(against.sum())} of {int(strong.sum())} "
                        f"points with significant bias (rows {_rows_text(rows[against])}). memsim's families are passive "
                        "(i has the sign of v). Fix: check the sign convention (current into the top electrode) or the "
                        "probe order")
