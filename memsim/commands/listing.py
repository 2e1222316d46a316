"""Listing a library (device cards, neuron cards, crossbar presets) when one of its files is broken.

The search paths mix bundled files with a user's folders (``$MEMSIM_DEVICE_PATH``, ``$MEMSIM_CROSSBAR_PATH``),
so one bad TOML there must not take the whole library down: the good entries are listed on stdout and each
broken one is named on stderr with its error. Loading the broken one by name is still an error.
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator

from ..errors import MemsimError


def load_listed(names: Iterable[str], load: Callable[[str], object],
                unreadable: Iterable[tuple[str, str]] = ()) -> Iterator[tuple[str, object]]:
    """``(name, loaded)`` for every name that loads; each failure (and each of ``unreadable``: files the
    search could not even parse, as ``(name, message)``) is reported on stderr as ``memsim: skipped NAME: ...``."""
    for name, message in unreadable:
        _skipped(name, message)
    for name in names:
        try:
            loaded = load(name)
        except MemsimError as exc:
            _skipped(name, str(exc))
            continue
        yield name, loaded


def _skipped(name: str, message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "unreadable"
    print(f"memsim: skipped {name}: {first}", file=sys.stderr)
