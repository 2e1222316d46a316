"""Deployment: trained networks on simulated chips, one layer between the torch layers and the commands.

=======================  ===================================================================================
:mod:`.chip`             :class:`Chip`: preset, mode, mapping, pruning, noise seed, calibration batch; :data:`IDEAL`
:mod:`.kinds`            the network-kind registry (``msnn``, ``ann``): :class:`NetworkKind`, :func:`network_kind`,
                         :class:`TrainedNetwork`
:mod:`.evaluate`         :func:`evaluate_on_chips`: program, calibrate and evaluate a network on chips
:mod:`.activity`         what a chip does per inference: :class:`ArrayActivity` (the opt-in record on an array),
                         :class:`LayerActivity` (the cost model's input), :func:`adc_conversions_per_read`
:mod:`.probe`            input vectors and output error of each crossbar layer during a forward pass
:mod:`.usage`            tile usage of a deployed network (per layer and totals), :func:`tile_usage` without data
=======================  ===================================================================================

A trained network comes from a checkpoint through :func:`memsim.training.trained.load_trained`, which asks the
registry for the checkpoint's kind.
"""
from .activity import ArrayActivity, LayerActivity, adc_conversions_per_read
from .chip import IDEAL, Chip
from .evaluate import ChipResult, ChipsEvaluation, evaluate_on_chips, seed_chip
from .kinds import NetworkKind, TrainedNetwork, kind_names, network_kind, register_kind
from .usage import tile_usage

__all__ = ["Chip", "IDEAL", "NetworkKind", "TrainedNetwork", "network_kind", "register_kind", "kind_names",
           "evaluate_on_chips", "ChipResult", "ChipsEvaluation", "seed_chip", "ArrayActivity", "LayerActivity",
           "adc_conversions_per_read", "tile_usage"]
