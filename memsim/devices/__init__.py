"""The device stack: one memristive device family per card, as a torch twin and as SPICE.

==================  ======================================================================
:mod:`.cards`       device cards (TOML: family, SI parameters, provenance, valid ranges)
:mod:`.array`       :class:`DeviceArray`, a batch of devices of one card integrated in torch
:mod:`.netlist`     the card's ngspice subcircuit and test benches (text only)
:mod:`.simulate`    one stimulus through torch and through ngspice, and their comparison
:mod:`.verify`      the device checks of ``memsim verify``
==================  ======================================================================
"""
from .array import DeviceArray
from .cards import Card, list_cards, load_card

__all__ = ["Card", "DeviceArray", "list_cards", "load_card"]
