"""The checks every TOML schema shares: cards, neuron cards, crossbar presets, configs, sweep specs, cost models.

One place for what each reader needs, so that every file gets the same kind of message, naming the field, the
value, what is allowed and the fix:

* :func:`closest` / :func:`suggest` - the nearest valid name to a misspelt one ("did you mean ...?");
* :func:`check_keys` - no unknown key in a table;
* :func:`is_finite_number` / :func:`check_number` - a real, finite number (not a bool, NaN or inf), optionally
  positive or non-negative;
* :func:`read_toml` - a TOML file as a dict; a missing file or a syntax error names the file, the line and column;
  a string holding a control character or line break names its field (:mod:`memsim.safetext`).
"""
from __future__ import annotations

import difflib
import math
import os
import tomllib
from pathlib import Path
from typing import Iterable, Mapping

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
