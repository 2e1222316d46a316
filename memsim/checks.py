"""The vocabulary of verification: a check, its result, the registry of model kinds, the table.

A *check* is one (model, stimulus) comparison that returns a :class:`CheckResult`. Model kinds register a
function that lists their checks (``register``): devices, neurons and crossbars in their own ``verify``
modules, which sit above this one; :mod:`memsim.verify` imports them all and collects their checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .progress import progress_bar


@dataclass
class CheckResult:
    kind: str            # "device", "neuron", "crossbar", ...
    model: str           # card or preset name
    stimulus: str
    metric: str          # what "error" measures
    error: float
    tolerance: float
    detail: str = ""
    #: a second criterion that must hold too (neurons: every spike within one time step)
    also_ok: bool = True

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance and self.also_ok


@dataclass
class Check:
    kind: str
    model: str
    stimulus: str
    run: Callable[[], CheckResult]


_PROVIDERS: dict[str, Callable[[list[str] | None], Iterable[Check]]] = {}


def register(kind: str, provider: Callable[[list[str] | None], Iterable[Check]]) -> None:
    """``provider(names)`` yields the checks of ``kind`` (all models when ``names`` is None)."""
    _PROVIDERS[kind] = provider


def collect_registered(kinds: list[str] | None = None, names: list[str] | None = None) -> list[Check]:
    """The checks of the registered kinds (all when ``kinds`` is None), for the models ``names`` (all if None)."""
    checks: list[Check] = []
    for kind, provider in _PROVIDERS.items():
        if kinds is None or kind in kinds:
            checks.extend(provider(names))
    return checks


def run_checks(checks: list[Check], progress: bool = True) -> list[CheckResult]:

    results = []
    for check in progress_bar(checks, desc="verify", unit="check", disable=not progress):
        results.append(check.run())
    return results


def format_table(results: list[CheckResult]) -> str:
    """The results as a table; every error and tolerance is a relative error (a fraction, not per cent),
    and the lines under the table say what each kind's error measures."""
    header = f"{'kind':8s} {'model':22s} {'stimulus':20s} {'error':>10s} {'tol':>8s}  ok    detail"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.kind:8s} {r.model:22s} {r.stimulus:20s} {r.error:10.2e} {r.tolerance:8.0e}  "
                     f"{'PASS' if r.passed else 'FAIL'}  {r.detail}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    metrics = {}
    for r in results:
        metrics.setdefault(r.kind, r.metric)
    if metrics:
        lines.append("error and tol are fractions (1e-3 = 0.1 %):")
        lines += [f"  {kind:8s} error = {metric}" for kind, metric in metrics.items()]
    return "\n".join(lines)
