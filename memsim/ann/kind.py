"""The ``ann`` network kind: conventional networks (:mod:`memsim.ann`) as :mod:`memsim.deploy` sees them.

Trained by :func:`memsim.ann.train.train_ann` (in float, or hardware-aware through a preset), loaded as the float
model, deployed with :func:`memsim.convert` (every ``nn.Linear`` / ``nn.Conv2d`` a crossbar layer on the chip's
preset, mapped and pruned as the chip says; batch norm, pooling and activations stay digital), read out on the
images themselves.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..deploy.chip import Chip
from ..deploy.kinds import NetworkKind, TrainedNetwork, register_kind
from ..nn.convert import convert
from ..nn.pruning import prune_model_
from ..training.data import CUSTOM_IDX, dataset_info
from .train import check_ann_config, evaluate_ann, load_ann, train_ann

__all__ = ["ANN"]


class ANN(NetworkKind):
    name = "ann"
    title = "conventional ReLU network (MLP, VGG-style CNN, depthwise-separable CNN)"

    def check_config(self, cfg, preset=None) -> None:
        check_ann_config(cfg, preset)

    def train(self, cfg, *, resume=False, init=None, progress=True, log=print, max_batches=None, preset=None,
              prune=None):
        return train_ann(cfg, resume=resume, init=init, progress=progress, log=log, max_batches=max_batches,
                         preset=preset, prune=prune)

    def load(self, path: Path, checkpoint, cfg) -> TrainedNetwork:
        model, _ = load_ann(path)
        return TrainedNetwork(self, cfg, Path(path), model)

    def arch(self, cfg) -> str:
        return cfg.network.arch

    def deploy(self, network: TrainedNetwork, chip: Chip) -> nn.Module:
        if not chip.is_ideal:
            return convert(network.state, chip.preset, mode=chip.mode, mapping=chip.layer_mapping, prune=chip.prune,
                           block=chip.block).eval()
        model = copy.deepcopy(network.state).eval()  # the float network, pruned as the chip says
        if chip.prune:
            prune_model_(model, chip.prune)
        return model

    def inputs(self, network: TrainedNetwork, images: torch.Tensor, chip: Chip) -> torch.Tensor:
        return images

    def evaluate(self, network: TrainedNetwork, model: nn.Module, data, *, chip: Chip,
                 batch_size: int = 256) -> dict[str, float]:
        return evaluate_ann(model, data, batch_size)

    def probe_images(self, network: TrainedNetwork) -> torch.Tensor:
        cfg = network.config
        n_in = cfg.network.layers[0] if cfg.data.dataset == CUSTOM_IDX else dataset_info(cfg.data.dataset).num_inputs
        return torch.zeros(1, n_in)


register_kind(ANN())
