"""Neuron checks for ``memsim verify``: each neuron card x (step, ramp, spike train), torch RK4 vs ngspice.

Importing this module registers the kind "neuron" with :mod:`memsim.checks`.
A check passes when the waveform is within 1 % of the spike amplitude *and*
every spike time is within one time step (spike counts must agree). The reported
error is the waveform error as a fraction of the spike amplitude (tolerance 1e-2,
like the device rows' fractions); the spike-time criterion is in the detail column.
"""
from __future__ import annotations

from typing import Iterable

from ..checks import Check, CheckResult, register
from .cards import list_neuron_cards, load_neuron_card
from .simulate import (SPIKE_TIME_TOLERANCE, WAVEFORM_TOLERANCE, compare, spice_trace, standard_stimuli,
                       torch_trace)


def run_check(card, stim) -> CheckResult:
    model = torch_trace(card, stim)
    ref = spice_trace(card, stim)
    c = compare(card, model, ref, card.dt)
    shift_ok = c["spike_shift_steps"] <= SPIKE_TIME_TOLERANCE
    return CheckResult("neuron", card.name, stim.label,
                       "max|v - v_spice| / spike amplitude (membrane voltage), and every spike within "
                       f"{SPIKE_TIME_TOLERANCE:g} time step", c["waveform_error"], WAVEFORM_TOLERANCE,
                       f"spike shift={c['spike_shift_steps']:.3f} dt (tol {SPIKE_TIME_TOLERANCE:g}) "
                       f"spikes={c['spikes_torch']}/{c['spikes_spice']} amp={c['amplitude']:.3g}V dt={card.dt:g}s",
                       also_ok=bool(shift_ok))


def neuron_checks(names: list[str] | None = None) -> Iterable[Check]:
    known = list_neuron_cards()
    for name in (names or known):
        if name not in known:
            continue  # a device or crossbar name given to `memsim verify --model`
        card = load_neuron_card(name)
        for stim in standard_stimuli(card):
            yield Check("neuron", card.name, stim.label, lambda card=card, stim=stim: run_check(card, stim))


register("neuron", neuron_checks)
