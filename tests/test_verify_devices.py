"""Every device card: torch RK4 against ngspice under the standard stimuli.

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
def test_torch_rk4_matches_ngspice(check):
    result = check.run()
    assert DEVICE_TOLERANCE == 1e-3
    assert result.error <= DEVICE_TOLERANCE, f"{check.model} {check.stimulus}: {result.error:.3g} ({result.detail})"


def test_every_card_is_covered_with_three_stimuli():
    from memsim.library import list_cards
    per_card = {}
    for c in CHECKS:
        per_card[c.model] = per_card.get(c.model, 0) + 1
    assert set(per_card) == set(list_cards()) and set(per_card.values()) == {3}
