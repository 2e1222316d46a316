"""The checks every TOML schema shares: cards, neuron cards, crossbar presets, configs, sweep specs, cost models.

One place for what each reader needs, so that every file gets the same kind of message, naming the field, the
value, what is allowed and the fix:

* :func:`closest` / :func:`suggest` - the nearest valid name to a misspelt one ("did you mean ...?");
* :func:`check_keys` - no unknown key in a table;
* :func:`is_finite_number` / :func:`check_number` - a real, finite number (not a bool, NaN or inf), optionally
  positive or non-negative;
* :func:`read_toml` - a TOML file as a dict; a missing file or a syntax error names the file, the line and column;
  a string holding a control character or line break names its field (:mod:`memsim.safetext`);
* :class:`KeySpec` - one key of a schema (type, unit, allowed range or values, default, meaning), declared once
  beside the loader that checks it: the loader takes its allowed keys, required keys, defaults and type checks
  from it, and the documentation's reference tables are generated from the same objects, so the two cannot
  drift. :func:`spec_field` declares a dataclass field and its spec in one line; :func:`dataclass_keys` reads
  them back (with the field's default); :func:`read_table` checks a table against its specs (unknown, missing
  and out-of-range keys) and fills in the defaults; :func:`check_required` names a missing required key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import CardError, ConfigError, MemsimError, ParameterError
from .safetext import check_strings


def closest(name, options: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The option most similar to ``name`` (difflib ratio >= ``cutoff``), or ``None``."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=cutoff)
    return close[0] if close else None


def suggest(name, options: Iterable[str], otherwise: str | None = None, *, cutoff: float = 0.6) -> str:
    """``"did you mean 'x'?"`` for the option nearest to ``name``; else ``otherwise`` (default: "use one of
    [the options]")."""
    options = list(options)
    near = closest(name, options, cutoff=cutoff)
    if near is not None:
        return f"did you mean '{near}'?"
    return otherwise if otherwise is not None else f"use one of {options}"


def lookup(table: Mapping, name, field: str, what: str):
    """``table[name]``, or :class:`ParameterError` naming ``field``, the known names and the closest one (the model
    registries: device families, pulse-response families, network kinds)."""
    if isinstance(name, str) and name in table:
        return table[name]
    names = sorted(table)
    raise ParameterError(field, name, f"one of {names}", suggest(str(name), names, f"use one of the listed {what}"))


def _error(error_cls: type[MemsimError], message: str, field: str | None = None, value=None,
           allowed: str | None = None) -> MemsimError:
    """``error_cls`` is any MemsimError taking a message (CardError, ConfigError with its key, SweepError, ...)."""
    if issubclass(error_cls, ConfigError):
        return error_cls(message, key=field, value=value, allowed=allowed)
    return error_cls(message)


def check_keys(table: Mapping, allowed: Iterable[str], where: str, error_cls: type[MemsimError] = CardError, *,
               cutoff: float = 0.6) -> None:
    """Raise ``error_cls`` on the first key of ``table`` not in ``allowed``, naming the nearest allowed key
    (else all of them). ``where`` names the table in the message (``"mif_neuron.toml.verify"``)."""
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            hint = suggest(key, sorted(allowed), f"allowed keys: {sorted(allowed)}.", cutoff=cutoff)
            raise _error(error_cls, f"{where}: unknown key '{key}'; {hint} Fix: rename or remove it.",
                         field=f"{where}.{key}", value=table[key], allowed=", ".join(sorted(allowed)))


def is_finite_number(value) -> bool:
    """A real number (int or float, not a bool) that is neither NaN nor infinite."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_number(value, field: str, *, positive: bool = False, nonnegative: bool = False,
                 fix: str | None = None, unit: str = "") -> float:
    """``value`` as a float, or :class:`ParameterError` naming ``field``, the value and the allowed range.

    ``positive``: > 0; ``nonnegative``: >= 0; ``unit`` (``"s"``, ``"A"``) is named in the allowed range."""
    ok = is_finite_number(value) and (not positive or value > 0) and (not nonnegative or value >= 0)
    if not ok:
        kind = "a positive finite number" if positive else "a finite number >= 0" if nonnegative \
            else "a finite number"
        raise ParameterError(field, value, kind + (f" in {unit}" if unit else ""),
                             fix or f"give {field.rsplit('.', 1)[-1]} as {kind}")
    return float(value)


def read_toml(path: str | os.PathLike, error_cls: type[MemsimError] = CardError, *, what: str = "file") -> dict:
    """A TOML file as a dict. A missing, unreadable, empty or non-UTF-8 file, or a TOML syntax error, raises
    ``error_cls`` naming the file and, for a syntax error, tomllib's line and column (``what`` names the kind of
    file: ``"config"``, ``"card"``)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise _error(error_cls, f"{what} {path} does not exist", field=what, value=str(path)) from None
    except IsADirectoryError:
        raise _error(error_cls, f"{what} {path} is a directory; give a .toml file", field=what,
                     value=str(path)) from None
    except OSError as exc:
        raise _error(error_cls, f"{what} {path} cannot be read: {exc.strerror or exc}", field=what,
                     value=str(path)) from None
    return _parse_toml(raw, path, error_cls, what)


def _parse_toml(raw: bytes, path, error_cls: type[MemsimError], what: str) -> dict:
    """``raw`` (the bytes of ``path``) as TOML; every way it can fail is one ``error_cls`` line naming the file."""
    expected = f"expected a TOML {what} (UTF-8 text, 'key = value' lines)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # binary data or another encoding: tomllib would raise a bare UnicodeDecodeError
        line = raw[:exc.start].count(b"\n") + 1
        raise _error(error_cls, f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); {expected}. "
                                f"Fix: give the right file, or save it as UTF-8", field=what, value=str(path)) from None
    if not text.strip():  # an empty file is a failed write or the wrong file, never a deliberate set of defaults
        raise _error(error_cls, f"{path}: the file is empty; {expected}", field=what, value=str(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(error_cls, f"{path}: not valid TOML: {exc}. Fix: correct the syntax there (strings in quotes, "
                                f"one 'key = value' per line, [table] headers)", field=what, value=str(path)) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise _error(error_cls, f"{path}: arrays or inline tables nested too deeply; {expected}", field=what,
                     value=str(path)) from None
    check_strings(data, Path(path).stem, error_cls)  # no line break or control character in any string
    return data


# ---------------------------------------------------------------------------------------------------------------
# key specs: what a key is, declared once for the loader and the reference


class _Required:
    """The default of a key that must be given (:data:`REQUIRED`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):  # a pickled spec (Sphinx's environment) keeps the one instance
        return "REQUIRED"


#: the default of a key that must be given
REQUIRED = _Required()

#: the kinds of value a key may hold; ``range`` is ``[low, high]`` (two numbers, low < high)
KEY_KINDS = ("int", "float", "bool", "str", "choice", "table", "range", "float_list", "int_list", "table_list",
             "str_list")


def toml_literal(value) -> str:
    """``value`` as it is written in a TOML file (``true``, ``"x"``, ``1e-05``, ``[1, 2]``, ``{}``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        text = f"{value:g}"
        return text if any(c in text for c in ".ein") else text + ".0"  # a float stays a float: 99.0, not 99
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class KeySpec:
    """One key of a TOML schema (card, preset, sweep spec): what it holds and what it means.

    ``kind``: one of :data:`KEY_KINDS`; ``doc``: one line, its meaning; ``default``: the value used when the key is
    left out, :data:`REQUIRED` when it must be given, or ``None`` for an optional key whose absence means what
    ``absent`` says ("ideal DAC", "not bit-sliced"); ``unit``: the SI unit of a number ('' for a count, a fraction
    or a string); ``lo`` / ``hi`` (open with ``lo_open`` / ``hi_open``): the range of a number, or of each entry
    of a list; ``choices``: the values of a ``choice``; ``min_len``: the fewest entries of a list; ``rule``: a
    constraint the range cannot state, checked where it applies (``"a divisor of bits"``), shown in
    :meth:`allowed`.

    The field names and :meth:`allowed` follow the training config's key specs
    (:mod:`memsim.training.config`), so one reference table renders both."""

    kind: str
    doc: str
    default: Any = REQUIRED
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    min_len: int = 0
    rule: str = ""
    absent: str = ""

    def __post_init__(self):
        if self.kind not in KEY_KINDS:
            raise ValueError(f"KeySpec.kind = {self.kind!r}: allowed one of {list(KEY_KINDS)}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"KeySpec({self.doc!r}): a choice needs its choices")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def _bounds(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        if self.lo is not None and self.hi is not None:
            return (f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
                    f"{u}")
        if self.lo is not None:
            return f" {'>' if self.lo_open else '>='} {self.lo:g}{u}"
        if self.hi is not None:
            return f" {'<' if self.hi_open else '<='} {self.hi:g}{u}"
        return f" in {self.unit}" if self.unit else ""

    def allowed(self) -> str:
        """What the key accepts, in words: ``an integer in [1, 32]``, ``a finite number >= 0 Ohm``."""
        k = self.kind
        if k == "choice":
            text = f"one of {list(self.choices)}"
        elif k == "bool":
            text = "true or false"
        elif k == "str":
            text = "a string"
        elif k == "table":
            text = "a table"
        elif k == "table_list":
            text = f"a list of {f'at least {self.min_len} ' if self.min_len else ''}tables"
        elif k == "str_list":
            text = f"a list of {f'at least {self.min_len} ' if self.min_len else ''}strings"
        elif k == "range":
            text = "[low, high] with low < high" + (f", in {self.unit}" if self.unit else "")
        elif k in ("float_list", "int_list"):
            noun = "integers" if k == "int_list" else "finite numbers"
            text = f"a list of {f'at least {self.min_len} ' if self.min_len else ''}{noun}{self._bounds()}"
        else:
            text = ("an integer" if k == "int" else "a finite number") + self._bounds()
        return f"{text}; {self.rule}" if self.rule else text

    def default_text(self) -> str:
        """The default as written in a file, ``required``, or ``absent: <what that means>``."""
        if self.default is REQUIRED:
            return "required"
        if self.default is None:
            return f"absent: {self.absent}" if self.absent else "absent"
        return toml_literal(self.default)

    def _number_ok(self, x, integer: bool) -> bool:
        if integer and (isinstance(x, bool) or not isinstance(x, int)):
            return False
        if not is_finite_number(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)

    def accepts(self, value) -> bool:
        """True when ``value`` has the key's kind and lies in its range (``rule`` is checked elsewhere)."""
        k = self.kind
        if k in ("int", "float"):
            return self._number_ok(value, k == "int")
        if k == "bool":
            return isinstance(value, bool)
        if k == "str":
            return isinstance(value, str)
        if k == "choice":
            return isinstance(value, str) and value in self.choices
        if k == "table":
            return isinstance(value, dict)
        if k == "table_list":
            return isinstance(value, list) and len(value) >= self.min_len and all(isinstance(v, dict) for v in value)
        if k == "str_list":
            return isinstance(value, list) and len(value) >= self.min_len and all(isinstance(v, str) for v in value)
        if k == "range":
            return (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_finite_number(v) for v in value)
                    and value[0] < value[1])
        return (isinstance(value, (list, tuple)) and len(value) >= self.min_len
                and all(self._number_ok(v, k == "int_list") for v in value))

    def check(self, value, field: str, fix: str | None = None):
        """``value`` (a number as a float, a range or list as a tuple), or :class:`ParameterError` naming ``field``,
        the value, :meth:`allowed` and the fix (default: the key's meaning)."""
        if not self.accepts(value):
            name = field.rsplit(".", 1)[-1]
            raise ParameterError(field, value, self.allowed(), fix or f"give {name} ({self.doc}) as {self.allowed()}")
        if self.kind == "float":
            return float(value)
        if self.kind in ("range", "float_list"):
            return tuple(float(v) for v in value)
        if self.kind == "int_list":
            return tuple(value)
        return value


def spec_field(default, kind: str, doc: str, **kw):
    """A dataclass field whose default and :class:`KeySpec` are declared together (``default`` is both)."""
    return dataclasses.field(default=default, metadata={"spec": KeySpec(kind, doc, default=default, **kw)})


def dataclass_keys(cls, specs: Mapping[str, KeySpec] | None = None, required: Iterable[str] = ()) -> dict[str, KeySpec]:
    """The keys of a dataclass's TOML table: each field's :class:`KeySpec` (from :func:`spec_field`, or from
    ``specs`` for a class declared elsewhere), with the field's default (:data:`REQUIRED` for the ``required``
    names and for fields without a default). A field without a spec is not a key."""
    required, specs, out = set(required), dict(specs or {}), {}
    for f in dataclasses.fields(cls):
        spec = specs.get(f.name) or f.metadata.get("spec")
        if spec is None or not f.init:
            continue
        if f.name in required:
            default = REQUIRED
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = REQUIRED
        out[f.name] = dataclasses.replace(spec, default=default)
    return out


def check_required(table: Mapping, specs: Mapping[str, KeySpec], where: str,
                   error_cls: type[MemsimError] = CardError) -> None:
    """Raise ``error_cls`` naming the first key of ``specs`` that is :data:`REQUIRED` but not in ``table``."""
    for key, spec in specs.items():
        if spec.required and key not in table:
            raise _error(error_cls, f"{where}: missing required key '{key}' ({spec.doc}). Fix: add {key} = "
                                    f"<{spec.allowed()}>", field=f"{where}.{key}", allowed=spec.allowed())


def read_table(table, specs: Mapping[str, KeySpec], where: str, error_cls: type[MemsimError] = CardError) -> dict:
    """A table's keys checked against their specs: no unknown key, every required one given (else ``error_cls``),
    each value of its kind and range (:meth:`KeySpec.check`: numbers as floats, lists as tuples, else
    :class:`ParameterError`); a key left out takes its spec's default. Returns every key of ``specs``."""
    if table is None:
        raise _error(error_cls, f"{where}: missing table (keys {list(specs)})", field=where)
    if not isinstance(table, Mapping):
        raise _error(error_cls, f"{where}: must be a table of keys ({list(specs)}), got {table!r}", field=where,
                     value=table)
    check_keys(table, specs, where, error_cls)
    check_required(table, specs, where, error_cls)
    return {key: spec.check(table[key], f"{where}.{key}") if key in table else spec.default
            for key, spec in specs.items()}
