"""Synapse pulse responses: the conductance change of one programming pulse as a function of the present state.

==================  ======================================================================================
:mod:`.families`    behavioural families (NeuroSim exponential saturation, aihwkit linear/soft-bounds/power
                    step), written once over the math namespace, with the shared noise parameters
:mod:`.cards`       pulse-response cards (TOML in ``devices/``, told apart by their ``family``)
:mod:`.response`    :class:`PulseResponse`: the batched torch update (polarity, pulse count, cycle-to-cycle
                    noise from a generator, device-to-device spread drawn once), a behavioural card's response
:mod:`.simulate`    one programming pulse through a device card's state equation (torch, batched) and a
                    pulse train in ngspice
:mod:`.derived`     a device card's response tabulated on a state grid, its interpolation error measured
==================  ======================================================================================

Fitting a behavioural family to measured LTP/LTD data is ``memsim device fit`` (:mod:`memsim.fitting.behavioural`).
"""
from __future__ import annotations

from ..devices.cards import card_path
from ..schema import read_toml
from .cards import PulseCard, is_pulse_card, list_pulse_cards, load_pulse_card, parse_pulse_card
from .derived import TableResponse, derive_response
from .families import NOISE_NAMES, PULSE_FAMILIES, PulseFamily, get_pulse_family
from .response import BehaviouralResponse, DeviceSpread, PulseResponse


def load_response(name, **options) -> PulseResponse:
    """The pulse response named by a card (name or path): a pulse card's behavioural model (``options``: noise
    overrides), or a device card's derived table (``options``: see :func:`derive_response`)."""
    path = card_path(name)
    data = read_toml(path, what="card")
    if is_pulse_card(data):
        return BehaviouralResponse(parse_pulse_card(data, source=path.stem, path=path), **options)
    return derive_response(str(path), **options)


__all__ = ["BehaviouralResponse", "DeviceSpread", "NOISE_NAMES", "PULSE_FAMILIES", "PulseCard", "PulseFamily",
           "PulseResponse", "TableResponse", "derive_response", "get_pulse_family", "list_pulse_cards",
           "load_pulse_card", "load_response"]
