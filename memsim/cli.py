"""The ``memsim`` command. Each subcommand lives in :mod:`memsim.commands` and registers itself here."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .allocator import tune_malloc
from .errors import MemsimError

#: modules in memsim.commands, each with ``register(subparsers)``
COMMANDS = ("verify", "device", "neuron", "crossbar", "train", "evaluate", "export_spice", "configs", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsim", description="Memristive circuits: SPICE-verified models as torch layers.")
    parser.add_argument("--version", action="version", version=f"memsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"memsim.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_malloc()  # large tensor buffers stay in the heap between reads (memsim/allocator.py says why)
    try:
        return int(args.func(args) or 0)
    except MemsimError as exc:
        print(f"memsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`memsim device list | head`): stop quietly, as other command-line tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
