"""Memristive neurons: circuit equations (built on the device families), neuron cards, SPICE netlists.

The torch integration of a card is :mod:`memsim.neurons.dynamics` (the layers of :mod:`memsim.nn.neurons`
wrap it); the SPICE comparison is in :mod:`memsim.neurons.simulate` and, as ``memsim verify`` checks,
:mod:`memsim.neurons.verify`.
"""
from .cards import NeuronCard, list_neuron_cards, load_neuron_card
from .circuits import MIF, VLIF, NeuronCircuit, synapse_derivative

__all__ = ["NeuronCard", "load_neuron_card", "list_neuron_cards", "NeuronCircuit", "MIF", "VLIF",
           "synapse_derivative"]
