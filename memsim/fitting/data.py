"""Measured device data for fitting: I-V sweeps and pulse conductance curves, checked before any fitting.

Three layouts, told apart by their columns (header names are case-insensitive; a unit may follow the name as
``current_mA``, ``current (mA)`` or ``current [mA]``, and SI-prefixed units are converted to SI):

* **I-V sweeps**: ``time`` (s), ``voltage`` (V across the device), ``current`` (A through it).
* **Pulse trains**: ``amplitude`` (V), ``width`` (s, the flat top), ``conductance`` (S, read after the pulse).
  A row with amplitude 0 is a read without a pulse (e.g. the state before the first pulse).
* **Pulse curves by polarity** (LTP/LTD): ``polarity`` (+1 potentiation, -1 depression, 0 a read without a
  pulse; also ``+``/``-``, ``ltp``/``ltd``, ``set``/``reset``) and ``conductance`` (S), one row per pulse in order.
  Optional: ``pulse``, the pulse number within the group (a row k pulses after the previous one stands for k pulses
  of its polarity, read once; 0 = the read before the first pulse).

Both pulse layouts may have a ``read_voltage`` column (V; one value for the whole file).

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
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..schema import closest

IV_COLUMNS = ("time", "voltage", "current")
PULSE_COLUMNS = ("amplitude", "width", "conductance")
POLARITY_COLUMNS = ("polarity", "conductance")
#: fewer pulses than this in a group is not a pulse curve
MIN_PULSES = 5
#: spellings of a polarity cell besides the numbers +1, -1 and 0
POLARITY_WORDS = {"+": 1, "-": -1, "ltp": 1, "ltd": -1, "set": 1, "reset": -1, "potentiation": 1, "depression": -1}
GROUP_COLUMNS = ("device", "cycle")
#: accepted spellings of each canonical column (besides the canonical name itself)
ALIASES = {"t": "time", "v": "voltage", "i": "current", "g": "conductance", "amp": "amplitude",
           "pulse_amplitude": "amplitude", "pulse_width": "width", "g_read": "conductance", "pol": "polarity",
           "v_read": "read_voltage", "vread": "read_voltage", "pulse_number": "pulse"}
_BASE_UNIT = {"time": "s", "voltage": "V", "current": "A", "amplitude": "V", "width": "s", "conductance": "S",
              "read_voltage": "V", "polarity": "", "pulse": ""}
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}


class UnitsWarning(UserWarning):
    """Values that look like a different unit than the column's SI unit."""


@dataclass
class Group:
    """One experiment (a cycle or a device): its rows in file order."""

    label: str
    rows: np.ndarray                 # each row's number as the user sees it (Measurement.row_name says which)
    columns: dict[str, np.ndarray]   # canonical column -> SI values


@dataclass
class Measurement:
    kind: str                        # "iv", "pulse" (amplitude, width) or "polarity"
    path: Path | None
    sha256: str
    groups: list[Group]
    group_columns: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    #: what the numbers in ``Group.rows`` count: "line" (of a CSV), "sheet row" (of an .xlsx) or "data row"
    row_name: str = "data row"
    #: pulse layouts: the voltage of the file's read_voltage column (V), None without one
    read_voltage: float | None = None

    @property
    def n_points(self) -> int:
        return sum(len(g.rows) for g in self.groups)

    @property
    def target(self) -> str:
        return "current" if self.kind == "iv" else "conductance"

    def values(self, name: str) -> np.ndarray:
        return np.concatenate([g.columns[name] for g in self.groups])

    def voltage_range(self) -> tuple[float, float]:
        if self.kind == "polarity":
            raise DataError("pulse data given by polarity have no pulse voltages; replay them on a card's pulses "
                            "(memsim.fitting.pulses.with_amplitudes)")
        v = self.values("voltage" if self.kind == "iv" else "amplitude")
        return float(v.min()), float(v.max())

    def describe(self) -> str:
        what = {"iv": "I-V sweep", "pulse": "pulse train", "polarity": "pulse curve (polarity)"}[self.kind]
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
    if base and base.lower() in (*IV_COLUMNS, *PULSE_COLUMNS, "read_voltage") and re.fullmatch(r"[kmuµnp]?[AVSs]|ohm", suffix):
        return base.lower(), suffix
    return low, ""


def _unit_factor(column: str, unit: str, header: str) -> float:
    if not unit:
        return 1.0
    base = _BASE_UNIT[column]
    if not base:
        raise DataError(f"column '{header}': {column} is a number without a unit; Fix: name the column '{column}'")
    for prefix, factor in _PREFIX.items():
        if unit == prefix + base:
            return factor
    raise DataError(f"column '{header}': unit '{unit}' is not a unit of {column}; allowed: {base} with an SI "
                    f"prefix (k, m, u, n, p), e.g. '{column}_m{base}'. Fix: rename the column or convert the values")


#: what a measurement file must hold, for messages about a file that holds something else
_EXPECTED = ("expected a header row (time, voltage, current; amplitude, width, conductance; or polarity, "
             "conductance) and rows of numbers. "
             "Fix: export the measurement as CSV (UTF-8) or .xlsx")


def _read_table(path: Path, raw: bytes) -> tuple[list[str], list[list[str]], list[int], str]:
    """Header, data rows, each data row's number as the user sees it, and what that number counts.

    ``raw`` is the file's content. Blank rows and rows whose first cell starts with ``#`` are skipped, but the
    numbers stay those of the file (its line in a CSV, its row in the sheet), so a message points at the right
    place in an editor or in Excel."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        numbered, row_name = _read_xlsx(path, raw), "sheet row"
    else:
        numbered, row_name = _read_csv(path, raw), "line"
    numbered = [(n, row) for n, row in numbered
                if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not numbered:
        raise DataError(f"{path}: the file is empty; {_EXPECTED}")
    header = [h.strip() for h in numbered[0][1]]
    return header, [row for _, row in numbered[1:]], [n for n, _ in numbered[1:]], row_name


def _read_csv(path: Path, raw: bytes) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of every row of a CSV (delimiter sniffed among , ; and tab)."""
    body = raw.removeprefix(b"\xef\xbb\xbf")  # the byte-order mark Excel writes before "CSV UTF-8"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:  # a binary file or another encoding: never a bare decode error
        line = body[:exc.start].count(b"\n") + 1
        what = " (it is a zip archive: an .xlsx workbook under another name?)" if raw[:4] == b"PK\x03\x04" else ""
        raise DataError(f"{path}: not a UTF-8 text CSV{what} (byte 0x{body[exc.start]:02x} on line {line}); "
                        f"{_EXPECTED}") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    numbered, line = [], 0
    try:
        for row in reader:
            numbered.append((line + 1, row))  # the line the row starts on (a quoted cell may span lines)
            line = reader.line_num
    except csv.Error as exc:  # a NUL byte, an over-long field: binary content that happens to be valid UTF-8
        raise DataError(f"{path}: not a CSV file (line {reader.line_num}: {exc}); {_EXPECTED}") from None
    return numbered


def _read_xlsx(path: Path, raw: bytes) -> list[tuple[int, list[str]]]:
    """``(sheet row number, cells as text)`` of every row of the workbook's first sheet."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(f"{path}: reading .xlsx needs openpyxl; install it with 'pip install memsim[xlsx]' "
                        "or save the sheet as CSV") from None
    if not raw:
        raise DataError(f"{path}: the file is empty (0 bytes), not an .xlsx workbook; {_EXPECTED}")
    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        try:
            rows = book.worksheets[0].iter_rows(values_only=True)  # read-only mode yields every row from 1
            return [(n, ["" if c is None else str(c) for c in row]) for n, row in enumerate(rows, start=1)]
        finally:
            book.close()
    except Exception as exc:  # zipfile, XML, KeyError, IndexError...: a damaged or foreign file, all "unusable"
        why = (str(exc).splitlines() or [""])[0][:120] or type(exc).__name__
        raise DataError(f"{path}: not a readable .xlsx workbook ({why}); the file is corrupt, truncated or not an "
                        f"Excel workbook; {_EXPECTED}") from None


def _rows_text(rows, name: str = "data row") -> str:
    """``"line(s) 3, 7"``: the rows as the user numbers them, the first ten of them."""
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:10])
    return f"{name}(s) " + shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def _cell_text(cell) -> str:
    """A bad cell for a message: "empty", or its text quoted (control characters escaped) and cut short."""
    text = str(cell).strip()
    return "empty" if not text else repr(text[:20] + ("..." if len(text) > 20 else ""))


def _header_text(header: list[str]) -> str:
    """The header for a message: whole when short, else its first columns (a foreign file can have thousands)."""
    text = repr(header)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(header)} columns)"


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
    if "polarity" in found and pulse_hits < len(PULSE_COLUMNS):
        kind, need = "polarity", POLARITY_COLUMNS
    missing = [c for c in need if c not in found]
    if missing:
        unused = {n: h for h, n in zip(header, names) if ALIASES.get(n, n) not in found}
        msgs = []
        for c in missing:
            near = closest(c, unused, cutoff=0.4)
            msgs.append(f"'{c}'" + (f" (closest column: '{unused[near]}')" if near else ""))
        layout = {"iv": "an I-V sweep: time (s), voltage (V), current (A)",
                  "pulse": "a pulse train: amplitude (V), width (s), conductance (S)",
                  "polarity": "a pulse curve: polarity (+1/-1/0), conductance (S)"}[kind]
        raise DataError(f"{source}: missing column(s) {', '.join(msgs)}; header is {_header_text(header)}. "
                        f"Expected {layout}, "
                        "optionally a 'cycle' and/or 'device' column. Fix: rename the column(s)")
    groups = [k for k, n in enumerate(names) if n in GROUP_COLUMNS]
    return kind, found, groups


def read_measurement(path, *, group: str | None = None) -> Measurement:
    """Read and check a CSV (or .xlsx) measurement; raise :class:`DataError` before any fitting."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"measurement file {str(path)!r} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    header, rows, lines, row_name = _read_table(path, raw)
    return measurement_from_table(header, rows, source=str(path), path=path, sha256=hashlib.sha256(raw).hexdigest(),
                                  group=group, lines=lines, row_name=row_name)


def measurement_from_table(header: list[str], rows: list[list], *, source: str = "data", path: Path | None = None,
                           sha256: str = "", group: str | None = None, lines: list[int] | None = None,
                           row_name: str = "line") -> Measurement:
    """Check a table and make a :class:`Measurement`. ``lines``: each row's number in the file as the user
    sees it (what it counts: ``row_name``); without it, messages count data rows (1 = the row under the header)."""
    if lines is None:
        lines, row_name = list(range(1, len(rows) + 1)), "data row"
    kind, found, group_idx = _resolve_columns(header, source)
    if group is not None:
        low = [h.lower() for h in header]
        if group.lower() not in low:
            near = closest(group.lower(), low)
            raise DataError(f"{source}: group column '{group}' not found" +
                            (f" (closest: '{header[low.index(near)]}')" if near else "") +
                            f"; header is {_header_text(header)}")
        group_idx = [low.index(group.lower())]
    if not rows:
        raise DataError(f"{source}: no data rows under the header")
    need = {"iv": IV_COLUMNS, "pulse": PULSE_COLUMNS, "polarity": POLARITY_COLUMNS}[kind]
    optional = () if kind == "iv" else ("read_voltage",) + (("pulse",) if kind == "polarity" else ())
    need = need + tuple(c for c in optional if c in found)
    values = {c: np.full(len(rows), np.nan) for c in need}
    bad: list[tuple[int, str, str]] = []  # (row number, column header, what the cell holds)
    for r, row in enumerate(rows):
        for c in need:
            k, factor = found[c]
            try:
                values[c][r] = _polarity(row[k]) if c == "polarity" else float(row[k]) * factor
            except IndexError:
                bad.append((lines[r], header[k], "missing"))
            except (ValueError, TypeError):
                bad.append((lines[r], header[k], _cell_text(row[k])))
            else:
                if not np.isfinite(values[c][r]):
                    bad.append((lines[r], header[k], _cell_text(row[k])))
    if bad and kind == "polarity" and any(col == header[found["polarity"][0]] for _, col, _ in bad):
        cells = "; ".join(f"{row_name} {n}: {what}" for n, col, what in bad if col == header[found["polarity"][0]])
        raise DataError(f"{source}: column '{header[found['polarity'][0]]}' holds no polarity at {cells[:300]}; "
                        "allowed: +1 (potentiation), -1 (depression), 0 (a read without a pulse), or the words "
                        f"{', '.join(POLARITY_WORDS)}. Fix: repair those rows")
    if bad:
        under = " (row 1 is the line under the header)" if row_name == "data row" else ""
        cells = "; ".join(f"{row_name} {n} column '{col}': {what}" for n, col, what in bad[:5])
        more = f"; and {len(bad) - 5} more cell(s)" if len(bad) > 5 else ""
        raise DataError(f"{source}: non-numeric or NaN values in {_rows_text(sorted({b[0] for b in bad}), row_name)}"
                        f"{under}: {cells}{more}. Fix: remove or repair those rows")
    labels = ["/".join(str(row[k]).strip() if k < len(row) else "" for k in group_idx) for row in rows] \
        if group_idx else [""] * len(rows)
    order: dict[str, list[int]] = {}
    for r, lab in enumerate(labels):
        order.setdefault(lab, []).append(r)
    numbers = np.asarray(lines)
    groups = [Group(lab or "all", numbers[ix], {c: values[c][ix] for c in need}) for lab, ix in order.items()]
    meas = Measurement(kind, path, sha256, groups, tuple(header[k].lower() for k in group_idx), row_name=row_name,
                       read_voltage=_read_voltage(values.get("read_voltage"), numbers, source, row_name))
    _check(meas, source)
    return meas


def _polarity(cell) -> float:
    """+1, -1 or 0 from a number or a word (:data:`POLARITY_WORDS`); ValueError otherwise."""
    text = str(cell).strip().lower()
    if text in POLARITY_WORDS:
        return float(POLARITY_WORDS[text])
    value = float(text)
    if value not in (-1.0, 0.0, 1.0):
        raise ValueError(text)
    return value


def _read_voltage(v: np.ndarray | None, rows: np.ndarray, source: str, row_name: str) -> float | None:
    """The one read voltage of a file (V); a file read at several voltages is refused."""
    if v is None:
        return None
    if np.any(v == 0):
        raise DataError(f"{source}: read_voltage is 0 V at {_rows_text(rows[v == 0], row_name)}; a conductance is "
                        "read at a non-zero voltage. Fix: give the read voltage in V")
    if np.any(v != v[0]):
        k = int(np.flatnonzero(v != v[0])[0])
        raise DataError(f"{source}: read_voltage changes from {float(v[0])!r} V ({row_name} {rows[0]}) to "
                        f"{float(v[k])!r} V ({row_name} {rows[k]}); a pulse curve is read at one voltage (a device's "
                        "conductance depends on it). Fix: split the file by read voltage")
    return float(v[0])


def _pulse_counts(g: Group, where: str, name: str) -> None:
    """Polarity layout: ``count``, the pulses before each read, from the ``pulse`` column (or one per pulse row)."""
    pol = g.columns["polarity"]
    if "pulse" not in g.columns:
        g.columns["count"] = (pol != 0).astype(np.int64)
        return
    p = g.columns["pulse"]
    bad = np.flatnonzero((p < 0) | (p != np.round(p)))
    if bad.size:
        raise DataError(f"{where}: pulse numbers must be whole numbers >= 0; {float(p[bad[0]])!r} at "
                        f"{_rows_text(g.rows[bad], name)}. Fix: number the pulses 0 (first read), 1, 2, ...")
    count = np.diff(p, prepend=0.0).astype(np.int64)
    back = np.flatnonzero(count < 0)
    if back.size:
        raise DataError(f"{where}: the pulse number decreases at {_rows_text(g.rows[back], name)}; rows must be in "
                        "pulse order. Fix: sort by pulse, or tell cycles apart with a 'cycle' column")
    idle = np.flatnonzero((count > 0) & (pol == 0))
    if idle.size:
        raise DataError(f"{where}: {_rows_text(g.rows[idle], name)} advance the pulse number with polarity 0; a read "
                        "without a pulse keeps the number. Fix: give those rows their polarity (+1 or -1)")
    still = np.flatnonzero((count == 0) & (pol != 0))
    if still.size:
        raise DataError(f"{where}: {_rows_text(g.rows[still], name)} have a polarity but repeat the pulse number; "
                        "each pulse row advances it. Fix: number the pulses, or give repeated reads polarity 0")
    g.columns["count"] = count


def _check(meas: Measurement, source: str) -> None:
    for g in meas.groups:
        where = f"{source}" + (f" ({'/'.join(meas.group_columns)} {g.label})" if meas.group_columns else "")
        name = meas.row_name
        if meas.kind == "iv":
            t = g.columns["time"]
            back = np.flatnonzero(np.diff(t) <= 0)
            if back.size:  # float(): a plain number in the message, not numpy's repr
                raise DataError(f"{where}: time is not strictly increasing at {_rows_text(g.rows[back + 1], name)} "
                                f"(t = {float(t[back[0] + 1])!r} s after {float(t[back[0]])!r} s). Fix: sort by "
                                "time, remove duplicates, or tell cycles apart with a 'cycle' column")
            if len(t) < 3:
                raise DataError(f"{where}: {len(t)} point(s); an I-V sweep needs at least 3")
        else:
            gval = g.columns["conductance"]
            if meas.kind == "pulse":
                w = g.columns["width"]
                neg = np.flatnonzero(w < 0)
                if neg.size:
                    raise DataError(f"{where}: negative pulse width at {_rows_text(g.rows[neg], name)}; widths are "
                                    "durations in s")
                pulses = int(np.sum((g.columns["amplitude"] != 0) & (w > 0)))
            else:
                _pulse_counts(g, where, name)
                pulses = int(g.columns["count"].sum())
            if pulses < MIN_PULSES:
                raise DataError(f"{where}: {pulses} pulse(s); a pulse curve needs at least {MIN_PULSES} (the response "
                                "of a few pulses does not determine a model). Fix: measure a longer train, or merge "
                                "groups that are one experiment")
            nonpos = np.flatnonzero(gval <= 0)
            if nonpos.size:
                raise DataError(f"{where}: conductance <= 0 S at {_rows_text(g.rows[nonpos], name)}; a passive "
                                "device read at a non-zero voltage has a positive conductance. Fix: check the sign "
                                "convention of the read")
    _check_units(meas, source)
    if meas.kind == "iv":
        _check_shape(meas, source)


def _check_units(meas: Measurement, source: str) -> None:
    def warn(msg):
        warnings.warn(UnitsWarning(f"{source}: {msg}"), stacklevel=4)

    if meas.read_voltage is not None and abs(meas.read_voltage) > 20:
        warn(f"the read voltage is {meas.read_voltage:g} V; if it is in mV, name the column 'read_voltage_mV'")

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
    elif meas.kind == "polarity":
        g = meas.values("conductance")
        if g.max() > 1.0:
            warn(f"the largest conductance is {g.max():g} S (a {1 / g.max():.3g} Ohm device); if the column is in mS "
                 "or uS, name it 'conductance_mS' / 'conductance_uS'")
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
                            f"({_rows_text(rows[k], meas.row_name)}). Every memsim family has i(V = 0) = 0 (a "
                            "memristor); subtract the instrument's offset current or check that voltage and current "
                            "are aligned in time")
    strong = (np.abs(v) > 0.1 * vpk) & (np.abs(i) > PINCH_I * ipk)
    against = strong & (np.sign(i) != np.sign(v))
    if strong.sum() and against.sum() > 0.05 * strong.sum():
        raise DataError(f"{source}: the current flows against the voltage at {int(against.sum())} of "
                        f"{int(strong.sum())} points with significant bias "
                        f"({_rows_text(rows[against], meas.row_name)}). memsim's families are passive (i has the sign "
                        "of v). Fix: check the sign convention (current into the top electrode) or the probe order")
