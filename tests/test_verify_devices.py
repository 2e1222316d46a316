"""Every device card against ngspice under the standard stimuli.

Stimuli (from each card's [verify] table): a sine I-V sweep at two frequencies and a SET/RESET pulse train.
Tolerance: max |i - i_spice| <= 1e-3 x max |i_spice| with RK4 at the card's documented step; ngspice runs
with reltol 1e-9 and a maximum step of 1/10 of that step.

Both renderings of the equations are checked against the same ngspice traces: the scalar path
(memsim.scalar, one Python loop per card) under every stimulus, the torch twin under each card's first
sine in the default suite and under the other stimuli with ``-m slow`` (a single-device torch trace costs
seconds; the two paths agree to 1e-11, tests/test_scalar.py).
"""
import functools

import pytest

from memsim.devices.cards import load_card
from memsim.scalar import device_trace
from memsim.devices.simulate import SPICE_STEP_FRACTION, compare, spice_trace, standard_stimuli, torch_trace
from memsim.devices.verify import DEVICE_TOLERANCE, device_checks

pytestmark = pytest.mark.spice

CHECKS = list(device_checks())
FIRST = {c.model: c.stimulus for c in reversed(CHECKS)}  # each card's first stimulus (its first sine)


def _ids(checks):
    return [f"{c.model}-{c.stimulus}" for c in checks]


@functools.lru_cache(maxsize=None)
def _case(model: str, stimulus: str):
    card = load_card(model)
    std = next(s for s in standard_stimuli(card) if s.label == stimulus)
    return card, std, spice_trace(card, std.stimulus, std.dt * SPICE_STEP_FRACTION)


@pytest.mark.parametrize("check", CHECKS, ids=_ids(CHECKS))
def test_scalar_path_matches_ngspice(check):
    card, std, ref = _case(check.model, check.stimulus)
    err = compare(device_trace(card, std.stimulus, std.dt), ref)["current_error"]
    assert DEVICE_TOLERANCE == 1e-3
    assert err <= DEVICE_TOLERANCE, f"scalar {check.model} {check.stimulus}: {err:.3g}"


TORCH = [pytest.param(c, marks=() if FIRST[c.model] == c.stimulus else pytest.mark.slow) for c in CHECKS]


@pytest.mark.parametrize("check", TORCH, ids=_ids(CHECKS))
def test_torch_rk4_matches_ngspice(check):
    card, std, ref = _case(check.model, check.stimulus)
    err = compare(torch_trace(card, std.stimulus, std.dt, method="rk4"), ref)["current_error"]
    assert err <= DEVICE_TOLERANCE, f"torch {check.model} {check.stimulus}: {err:.3g}"


def test_every_card_is_covered_with_three_stimuli():
    from memsim.devices.cards import list_cards
    per_card = {}
    for c in CHECKS:
        per_card[c.model] = per_card.get(c.model, 0) + 1
    assert set(per_card) == set(list_cards()) and set(per_card.values()) == {3}
    assert all(FIRST[m].startswith("sine") for m in per_card)
