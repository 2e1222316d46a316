"""Every device card: torch RK4 (and the scalar path, memsim.scalar) against ngspice under the standard stimuli.

Stimuli (from each card's [verify] table): a sine I-V sweep at two frequencies
and a SET/RESET pulse train. Tolerance: max |i_torch - i_spice| <= 1e-3 x max |i_spice|
with torch RK4 at the card's documented step; ngspice runs with reltol 1e-9 and a
maximum step of 1/10 of that step.
"""
import pytest

from memsim.verify import DEVICE_TOLERANCE, device_checks

pytestmark = pytest.mark.spice

CHECKS = list(device_checks())


@pytest.mark.parametrize("check", CHECKS, ids=[f"{c.model}-{c.stimulus}" for c in CHECKS])
def test_torch_rk4_and_scalar_path_match_ngspice(check):
    """The torch twin and the scalar path (memsim.scalar: the same equations rendered to one Python loop)
    against the same ngspice trace, as ``memsim verify`` compares them."""
    from memsim.library import load_card
    from memsim.scalar import device_trace
    from memsim.simulate import SPICE_STEP_FRACTION, compare, spice_trace, standard_stimuli, torch_trace

    card = load_card(check.model)
    std = next(s for s in standard_stimuli(card) if s.label == check.stimulus)
    ref = spice_trace(card, std.stimulus, std.dt * SPICE_STEP_FRACTION)
    assert DEVICE_TOLERANCE == 1e-3
    for model in (torch_trace(card, std.stimulus, std.dt, method="rk4"), device_trace(card, std.stimulus, std.dt)):
        err = compare(model, ref)["current_error"]
        assert err <= DEVICE_TOLERANCE, f"{model.source} {check.model} {check.stimulus}: {err:.3g}"


def test_every_card_is_covered_with_three_stimuli():
    from memsim.library import list_cards
    per_card = {}
    for c in CHECKS:
        per_card[c.model] = per_card.get(c.model, 0) + 1
    assert set(per_card) == set(list_cards()) and set(per_card.values()) == {3}
