"""The training stack: fully memristive SNNs trained by BPTT through the circuit equations.

======================  =====================================================================
:mod:`.network`         :class:`MemristiveSNN` (synapse stages + MIF layers) and its readouts
:mod:`.twin`            :class:`MIFDynamics`, the fast MIF twin stepped once per ``dt``
:mod:`.synapses`        synapse stages: ideal product, crossbar preset, convolutional stage
:mod:`.loop`            build, train (resumable), evaluate, load checkpoints
:mod:`.config`          the TOML run config, validated on load
:mod:`.checkpoint`      run folders and checkpoints (atomic, resumable)
:mod:`.data`, `.cifar`  datasets (digits, MNIST, Fashion-MNIST, IDX, CIFAR-10) and input encoders
:mod:`.export_spice`    a trained network as one ngspice netlist, and the comparison with it
======================  =====================================================================
"""
from .config import Config, ConfigError, default_config, load_config, parse_config
from .loop import (TrainResult, build_encoder, build_network, evaluate, evaluate_checkpoint, load_datasets,
                   load_network, train)
from .network import DEFAULTS, READOUTS, MemristiveSNN, SNNOutput
from .synapses import (ConvSynapse, IdealConvSynapse, IdealSynapse, PresetConvSynapse, PresetSynapse, Synapse,
                       build_conv_synapse, build_synapse)
from .twin import MIFDynamics

__all__ = ["Config", "ConfigError", "default_config", "load_config", "parse_config", "TrainResult", "build_encoder",
           "build_network", "evaluate", "evaluate_checkpoint", "load_datasets", "load_network", "train", "DEFAULTS",
           "READOUTS", "MemristiveSNN", "SNNOutput", "Synapse", "IdealSynapse", "PresetSynapse", "ConvSynapse",
           "IdealConvSynapse", "PresetConvSynapse", "build_synapse", "build_conv_synapse", "MIFDynamics"]
