"""Verification as a feature: every model against ngspice, as a table of errors.

``memsim verify`` and the tests run the same checks: the device, neuron and crossbar stacks each register
theirs (their ``verify`` modules, built on :mod:`memsim.checks`); this module imports the three and collects.
"""
from __future__ import annotations

from .checks import Check, CheckResult, collect_registered, format_table, register, run_checks
from .crossbar import verify as _crossbar_checks  # noqa: F401  (importing registers the kind)
from .devices import verify as _device_checks  # noqa: F401
from .neurons import verify as _neuron_checks  # noqa: F401

__all__ = ["Check", "CheckResult", "collect", "format_table", "register", "run_checks"]


def collect(kinds: list[str] | None = None, names: list[str] | None = None) -> list[Check]:
    """The checks of ``kinds`` (``device``, ``neuron``, ``crossbar``; all if None) for the models ``names``."""
    return collect_registered(kinds, names)
