"""Device checks: every device card's torch RK4 trace against ngspice on the card's standard stimuli.

Importing this module registers the kind "device" with :mod:`memsim.checks`.
"""
from __future__ import annotations

from typing import Iterable

from ..checks import Check, CheckResult, register
from .cards import list_cards, load_card
from .simulate import SPICE_STEP_FRACTION, compare, spice_trace, standard_stimuli, torch_trace

#: torch RK4 must match the ngspice trace within this, relative to the trace's peak
DEVICE_TOLERANCE = 1e-3


def device_checks(names: list[str] | None = None) -> Iterable[Check]:
    known = list_cards()
    for name in names or known:
        if name not in known and not str(name).endswith(".toml"):
            continue  # a neuron or crossbar name given to `memsim verify --model`
        card = load_card(name)
        for std in standard_stimuli(card):
            def run(card=card, std=std) -> CheckResult:
                model = torch_trace(card, std.stimulus, std.dt, method="rk4")
                ref = spice_trace(card, std.stimulus, std.dt * SPICE_STEP_FRACTION)
                err = compare(model, ref)
                return CheckResult("device", card.name, std.label, "max|i - i_spice| / max|i_spice| (RK4)",
                                   err["current_error"], DEVICE_TOLERANCE,
                                   f"dt={std.dt:.3g}s state_err={err['state_error']:.2e} peak={err['peak_current']:.3g}A")
            yield Check("device", card.name, std.label, run)


register("device", device_checks)
