"""Conventional (non-spiking) networks trained in float and deployed on crossbar presets.

``network.kind = "ann"`` in a training config selects them (``memsim train``): an MLP, a small VGG-style
CNN, or its depthwise-separable variant (:mod:`memsim.ann.models`), trained with cross-entropy by
:func:`memsim.ann.train.train_ann` with the same runner, run directory, checkpoints and resume as the MSNN:
in float, or hardware-aware (``hardware.aware = true``) through its crossbar twin (:mod:`memsim.ann.aware`).
:func:`memsim.ann.deploy.evaluate_deployed` deploys an ANN or MSNN checkpoint on a preset with dense or
sparse mapping and optional pruning and reports accuracy, product error and tile usage.
"""
from .models import ARCHS, MLP, VGGNet, build_ann  # noqa: F401
