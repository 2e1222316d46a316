"""ANN architectures: MLP, VGG-style CNN and its depthwise-separable (sparse-connectivity) variant.

All take flat inputs ``[B, C*H*W]`` (as :func:`memsim.training.load_datasets` gives them) or images
``[B, C, H, W]`` and return logits ``[B, classes]``.

* ``mlp`` - ``layers = [inputs, hidden..., classes]``: Linear + ReLU, last layer linear.
* ``vgg`` - per entry of ``channels`` a stage of ``convs_per_stage`` 3x3 convolutions (padding 1, each
  followed by batch norm and ReLU) and a 2x2 max-pool; then the dense head ``layers[1:-1]`` (Linear +
  ReLU) and a Linear to ``layers[-1]`` classes.
* ``vgg_dw`` - as ``vgg``, but every 3x3 convolution after the first is depthwise-separable (MobileNet
  style): a depthwise 3x3 (``groups`` = channels) + BN + ReLU, then a pointwise 1x1 + BN + ReLU. The first
  stays a full 3x3 convolution (a depthwise one over 1-3 input channels would see no colour mixing).

Batch norm (``batch_norm = true``) is digital periphery: :func:`memsim.convert` maps only the Linear and
Conv2d layers onto crossbars. Convolutions that precede batch norm have no bias (BN's shift replaces it).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ParameterError
from ..training.data import dataset_info

__all__ = ["ARCHS", "MLP", "VGGNet", "build_ann"]

ARCHS = ("mlp", "vgg", "vgg_dw")


class MLP(nn.Module):
    def __init__(self, layers: Sequence[int]):
        super().__init__()
        if len(layers) < 2:
            raise ParameterError("network.layers", list(layers), "at least [inputs, classes]", "add the sizes")
        self.layers = list(layers)
        mods: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            mods.append(nn.Linear(a, b))
            if k < len(layers) - 2:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


def _conv_block(c_in: int, c_out: int, bn: bool, **kw) -> list[nn.Module]:
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, bias=not bn, **kw)]
    if bn:
        mods.append(nn.BatchNorm2d(c_out))
    mods.append(nn.ReLU())
    return mods


class VGGNet(nn.Module):
    """VGG-style CNN (see the module doc); ``depthwise=True`` is the depthwise-separable variant."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], layers: Sequence[int], *,
                 convs_per_stage: int = 1, depthwise: bool = False, batch_norm: bool = True):
        super().__init__()
        c, h, w = image_shape
        if h >> len(channels) < 1 or w >> len(channels) < 1:
            raise ParameterError("network.channels", list(channels),
                                 f"at most {min(h, w).bit_length() - 1} stages for {h}x{w} images "
                                 f"(each stage halves the image)", "use fewer stages")
        self.image_shape = tuple(image_shape)
        mods: list[nn.Module] = []
        first = True
        for ch in channels:
            for _ in range(convs_per_stage):
                if depthwise and not first:
                    mods += _conv_block(c, c, batch_norm, kernel_size=3, padding=1, groups=c)
                    mods += _conv_block(c, ch, batch_norm, kernel_size=1)
                else:
                    mods += _conv_block(c, ch, batch_norm, kernel_size=3, padding=1)
                c, first = ch, False
            mods.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*mods)
        head: list[nn.Module] = [nn.Flatten()]
        sizes = [c * h * w, *layers[1:]]
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            head.append(nn.Linear(a, b))
            if k < len(sizes) - 2:
                head.append(nn.ReLU())
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(x.shape[0], *self.image_shape)
        return self.classifier(self.features(x))


def build_ann(cfg, image_shape: Sequence[int] | None = None) -> nn.Module:
    """The ANN of a config (``network.arch``, ``layers``, ``channels``, ``convs_per_stage``, ``batch_norm``)."""
    net = cfg.network
    if net.arch == "mlp":
        return MLP(net.layers)
    if image_shape is None:
        image_shape = dataset_info(cfg.data.dataset).image_shape
    return VGGNet(image_shape, net.channels, net.layers, convs_per_stage=net.convs_per_stage,
                  depthwise=net.arch == "vgg_dw", batch_norm=net.batch_norm)
