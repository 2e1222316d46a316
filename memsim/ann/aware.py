"""Hardware-aware training of an ANN: its crossbar twin, through which every training step runs.

:func:`crossbar_twin` converts a float ANN with :func:`memsim.nn.convert.convert` (its ``nn.Linear`` /
``nn.Conv2d`` layers become crossbar layers in ``noisy`` or ``irdrop`` mode, on the preset's tiles) and ties the
twin to the float model: each crossbar layer's weight and bias *are* the float layer's parameters, and every
other module (batch norm, ReLU, pooling) is the float model's own. So the loss and the gradients of a step come
from the crossbar product (levels, converters, programming and read noise, defects, IR drop), the optimiser steps
the float model, batch-norm statistics follow the crossbar's activations, and the checkpoints are the float ANN:
deployment (:mod:`memsim.ann.deploy`), ``memsim evaluate`` and sweeps read them as before.

In training mode a crossbar layer programs its chip afresh every forward pass (a new programming-noise draw from
the array's stream); :func:`memsim.training.loop.redraw_chips` gives every batch a new chip's fixed defects too,
as in the MSNN's hardware-aware training. The twin's converter ranges follow each training batch (the ADC's by
:mod:`memsim.nn.calibration`'s rule, the DAC's with scale momentum 0), so a step depends on no running state
outside the float model and the arrays' noise streams (which the checkpoints hold): a resumed run continues
exactly. Evaluating the twin (the per-epoch test) calibrates its chip first, as a deployed chip is
(:func:`calibrate_twin`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..crossbar.array import CrossbarArray
from ..crossbar.presets import Preset
from ..errors import ParameterError
from ..nn.calibration import calibrate, crossbar_layers
from ..nn.convert import convert
from ..nn.crossbar import _CrossbarCore

__all__ = ["crossbar_twin", "twin_arrays", "calibrate_twin"]


def twin_arrays(twin: nn.Module) -> list[tuple[int, CrossbarArray]]:
    """``(layer index, CrossbarArray)`` of the twin's crossbar layers: what the training runner redraws and
    checkpoints (:func:`memsim.training.loop.redraw_chips`, :func:`memsim.training.loop.chip_streams`)."""
    return [(k, layer.array) for k, (_, layer) in enumerate(crossbar_layers(twin))]


def _share(twin: nn.Module, model: nn.Module) -> None:
    """Make ``twin``'s modules the ones of ``model``: crossbar layers take its parameters, subtrees without a
    crossbar layer are its own modules (batch norm keeps one set of statistics)."""
    for name, child in list(twin.named_children()):
        own = getattr(model, name)
        if isinstance(child, _CrossbarCore):
            child.weight = own.weight
            child.bias = own.bias
        elif crossbar_layers(child):
            _share(child, own)
        else:
            setattr(twin, name, own)


def crossbar_twin(model: nn.Module, preset: Preset, mode: str) -> nn.Module:
    """The crossbar twin of the float ANN ``model`` on ``preset`` in ``mode`` (see the module doc).

    Layer ``k``'s array starts from noise seed ``preset.noise.seed + k`` (independent layers, as the MSNN's
    :func:`memsim.training.loop.build_network`); the twin starts in the float model's train / eval mode."""
    twin = convert(model, preset, mode=mode, scale_momentum=0.0)
    _share(twin, model)
    # a parameter left outside the tie (a container's own) would train in one model and not the other
    if {id(p) for p in twin.parameters()} != {id(p) for p in model.parameters()}:
        raise ParameterError("model", type(model).__name__, "an ANN whose parameters all sit in its layers",
                             "hardware-aware training ties the crossbar layers to the float layers; keep "
                             "parameters out of container modules")
    for k, array in twin_arrays(twin):
        array.reseed(preset.noise.seed + k)
    return twin.train(model.training)


def calibrate_twin(twin: nn.Module, images: torch.Tensor) -> None:
    """Put the twin in eval mode and calibrate its chip's converters on ``images`` (a training batch), reading the
    chip as programmed, as a deployed chip is calibrated: training left them at its last batch's ranges."""
    twin.eval()
    calibrate(twin, lambda: twin(images))
