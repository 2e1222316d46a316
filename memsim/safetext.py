"""Text from files, made safe: the one place where a string from a card, preset or config is checked
before it can reach anything that interprets text.

Cards, presets, configs and sweep specs are files that researchers share and download; opening one must be
as safe as opening a checkpoint. Two rules hold everywhere:

* **On load**, no string of a TOML file may hold a control character (line breaks, carriage returns, tabs,
  NUL, escape sequences), a Unicode line or paragraph separator, or a bidirectional-override character
  (which makes text display differently from what it is). :func:`check_strings` walks a whole parsed file
  and names the first offending field. Every TOML reader goes through :func:`memsim.schema.read_toml`,
  which calls it.
* **On render**, what memsim writes into a SPICE netlist comes from validated values only: element and
  subcircuit names through :func:`spice_name` (``[A-Za-z_][A-Za-z0-9_]*``), numbers through
  :func:`spice_number` (``repr`` of a finite float), and every piece of free text (provenance, titles,
  descriptions, labels) through :func:`spice_comment` or :func:`spice_title`, which turn any text into a
  single line that can only be a comment or the title. ngspice runs a ``.control`` block's ``shell``
  commands, so a line break that survived into a netlist would be a way to run commands; here none can.

The rendered Python of :mod:`memsim.scalar` takes no text at all: its parameters are folded in as
``repr(float)`` constants by :class:`memsim.mathns.PyMath`, and their names come from the family's code.

    >>> spice_comment("Strukov et al.\\n.control\\nshell touch /tmp/x\\n.endc")
    '* Strukov et al. .control shell touch /tmp/x .endc'
    >>> spice_name("hp_tio2_joglekar", "card.name")
    'hp_tio2_joglekar'
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Mapping

from .errors import CardError, MemsimError, ParameterError

__all__ = ["forbidden_character", "check_text", "check_strings", "spice_name", "spice_number", "spice_comment",
           "spice_title", "one_line", "IDENTIFIER_PATTERN"]

#: What a name that becomes a SPICE identifier may look like (ASCII: ngspice folds case and knows no Unicode).
IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN + r"\Z")

#: Unicode's bidirectional embedding, override and isolate controls ("Trojan Source", CVE-2021-42574).
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")

def forbidden_character(text: str) -> tuple[int, str] | None:
    """``(index, character)`` of the first character a file's string may not hold, or ``None``.

    Forbidden: control characters (Unicode category Cc: line feed, carriage return, tab, NUL, escape, NEL...),
    line and paragraph separators (Zl, Zp) and the bidirectional-override characters."""
    for k, ch in enumerate(text):
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return k, ch
    return None


_CONTROL_NAMES = {"\n": "line feed", "\r": "carriage return", "\t": "tab", "\x00": "NUL", "\x1b": "escape",
                  "\x0b": "vertical tab", "\x0c": "form feed", "\x85": "next line"}


def _describe(ch: str) -> str:
    name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "control character")
    return f"U+{ord(ch):04X} ({name.lower()})"


def check_text(value: str, field: str, error_cls: type[MemsimError] = CardError) -> str:
    """``value`` unchanged, or ``error_cls`` naming ``field``, the character and where it is."""
    bad = forbidden_character(value)
    if bad is not None:
        k, ch = bad
        raise error_cls(f"{field}: the text holds {_describe(ch)} at character {k + 1}; a card, preset or config "
                        f"may not contain control characters, line breaks or direction overrides in any string. "
                        f"Fix: write it on one line without them (for a long text, use several keys)")
    return value


def check_strings(data: Any, where: str, error_cls: type[MemsimError] = CardError) -> None:
    """Check every string of a parsed file (keys and values, at any depth) with :func:`check_text`.

    ``where`` names the file; a field is named by its dotted path (``mycard.provenance.source``), list items
    by their index (``sweep.axes[2]``)."""
    if isinstance(data, str):
        check_text(data, where, error_cls)
    elif isinstance(data, Mapping):
        for key, value in data.items():
            field = f"{where}.{key}"
            if isinstance(key, str):
                check_text(key, f"{where} (a key)", error_cls)
            check_strings(value, field, error_cls)
    elif isinstance(data, (list, tuple)):
        for k, item in enumerate(data):
            check_strings(item, f"{where}[{k}]", error_cls)


def is_spice_name(value: object) -> bool:
    """True for a string that :func:`spice_name` accepts."""
    return isinstance(value, str) and _IDENTIFIER.match(value) is not None


def spice_name(value: object, field: str) -> str:
    """``value`` when it is a safe SPICE identifier (ASCII letter or ``_``, then letters, digits, ``_``;
    at most 64 characters), else :class:`ParameterError` naming ``field``."""
    if not is_spice_name(value):
        raise ParameterError(field, value, "ASCII letters, digits and underscores, starting with a letter or "
                                           "underscore, at most 64 characters",
                             f"rename it (e.g. '{_suggest_name(value)}')")
    return value


def _suggest_name(value: object) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+", "_", str(value)).strip("_")[:64] or "device"
    return text if not text[0].isdigit() else f"d_{text}"[:64]


def spice_number(value: object, field: str) -> str:
    """A finite real number as exact SPICE text (``repr`` of the float), else :class:`ParameterError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(field, value, "a finite number", "give a real number (not text, NaN or inf)")
    return repr(float(value))


def one_line(text: object) -> str:
    """Any text as one printable line: every control, separator or format character becomes a space and
    runs of spaces collapse (nothing is cut: a card's provenance stays whole in its ``.lib``)."""
    chars = [" " if (ch in _BIDI or unicodedata.category(ch)[0] in "CZ") else ch for ch in str(text)]
    return " ".join("".join(chars).split())


def spice_comment(text: object) -> str:
    """``text`` as a single SPICE comment line (``* ...``): whatever it holds, ngspice reads one comment.

    A line that starts with ``*`` is a comment to the end of the line, and no line break can survive
    :func:`one_line`, so nothing in ``text`` can start a directive (``.control``), an element or a
    continuation (``+``)."""
    line = one_line(text)
    return f"* {line}" if line else "*"


def spice_title(text: object) -> str:
    """``text`` as the netlist's ``.title`` line (one line; ngspice takes the rest of it as the title)."""
    return f".title {one_line(text) or 'memsim'}"
