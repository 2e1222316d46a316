"""argparse types that check command-line numbers and paths before any work starts.

A bad value stops argparse with ``memsim COMMAND: error: argument --x: ...`` (exit 2), naming the allowed
range, instead of a traceback later or a wrong result with exit 0.
"""
from __future__ import annotations

import argparse


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (allowed: an integer >= {minimum})") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: an integer >= {minimum})")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: seeds, samples, sub-steps, processes, epochs)."""
    return _integer(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (indices, optional counts where 0 means none)."""
    return _integer(text, 0)


def plot_file(text: str) -> str:
    """A figure path whose suffix matplotlib can write (.png, .svg, .pdf, ...), checked before simulating."""
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(text).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise argparse.ArgumentTypeError(f"{text!r} is not a figure file: allowed suffixes "
                                         f"{', '.join('.' + f for f in sorted(formats))} (e.g. iv.png)")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name such as {text.rstrip('/')}/iv.png")
    return text
