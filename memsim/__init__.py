"""memsim: memristive analog circuits at SPICE level, with differentiable PyTorch twins.

``import memsim`` does not need ngspice; the SPICE bridge (:mod:`memsim.spice`)
loads it on first use.
"""
from .errors import (CardError, MemsimError, NonFiniteError, ParameterError, SpiceError,
                     SpiceUnavailableError, StimulusError)
from .families import FAMILIES, get_family
from .devices.cards import Card, list_cards, load_card
from .devices.array import DeviceArray
from .stimuli import PWL, Sine, pulse_train

__version__ = "0.1.0"

__all__ = ["MemsimError", "ParameterError", "CardError", "StimulusError", "NonFiniteError", "SpiceError",
           "SpiceUnavailableError", "FAMILIES", "get_family", "Card", "list_cards", "load_card", "DeviceArray",
           "Sine", "PWL", "pulse_train", "convert", "__version__"]
from .nn.convert import convert  # noqa: E402  (crossbar layers; imported after the core they build on)
