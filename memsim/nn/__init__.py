"""Differentiable torch layers built from memsim's models (neurons, crossbar synapses)."""
from .neurons import MemristiveNeuron, MIFNeuron, NeuronOutput, VLIFNeuron  # noqa: F401
from .crossbar import CrossbarConv2d, CrossbarLinear  # noqa: F401,E402
