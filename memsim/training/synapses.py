"""Synapse stages of the memristive SNN: row voltages (V) in, column currents (A) out.

A trainable weight ``W`` (dimensionless) is the signed conductance ``G = W * g_unit`` (siemens; a
differential pair ``G+ - G-`` on a chip). ``ideal``: the exact product; a crossbar preset: the product of
:class:`memsim.nn.CrossbarLinear` / :class:`memsim.nn.CrossbarConv2d` (quantised levels, DAC/ADC, noise,
faults, IR drop) rescaled to the same units.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError

__all__ = ["IdealSynapse", "PresetSynapse", "ConvSynapse", "build_synapse", "synapse_weight", "is_ideal"]


def is_ideal(preset) -> bool:
    return isinstance(preset, str) and preset == "ideal"


class IdealSynapse(nn.Module):
    """Exact crossbar product: ``I = (V W^T) * g_unit`` (A) for row voltages ``V`` (V)."""

    def __init__(self, in_features: int, out_features: int, g_unit: float):
        super().__init__()
        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight) * self.g_unit

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, ideal, g_unit={self.g_unit:g} S"


class PresetSynapse(nn.Module):
    """A crossbar preset's product (:class:`memsim.nn.CrossbarLinear`) in the same units as :class:`IdealSynapse`."""

    def __init__(self, in_features: int, out_features: int, g_unit: float, preset, mode: str):
        super().__init__()
        from ..nn.crossbar import CrossbarLinear

        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.xbar = CrossbarLinear(in_features, out_features, bias=False, preset=preset, mode=mode)

    @property
    def weight(self) -> nn.Parameter:
        return self.xbar.weight

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.xbar(v) * self.g_unit

    def extra_repr(self) -> str:
        return f"g_unit={self.g_unit:g} S"


class ConvSynapse(nn.Module):
    """A convolutional crossbar stage: image rows ``[*, C*H*W]`` (V) -> column currents ``[*, K*Ho*Wo]`` (A).

    Each kernel is one crossbar column (im2col mapping); ``ideal``: exact ``conv2d`` with ``G = W * g_unit``,
    a preset: :class:`memsim.nn.CrossbarConv2d` (the same non-idealities as the dense layers)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                 preset="ideal", mode: str = "noisy"):
        super().__init__()
        c, h, w = image_shape
        for name, v in (("network.conv_channels", channels), ("network.conv_kernel", kernel),
                        ("network.conv_stride", stride)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1")
        if kernel > min(h, w):
            raise ParameterError("network.conv_kernel", kernel, f"<= {min(h, w)} (the image is {h}x{w})")
        self.image_shape, self.stride, self.g_unit = (c, h, w), stride, float(g_unit)
        self.out_shape = (channels, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
        self.in_features, self.out_features = c * h * w, channels * self.out_shape[1] * self.out_shape[2]
        if is_ideal(preset):
            self.weight = nn.Parameter(torch.empty(channels, c, kernel, kernel))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        else:
            from ..nn.crossbar import CrossbarConv2d
            self.xbar = CrossbarConv2d(c, channels, kernel, stride=stride, bias=False, preset=preset, mode=mode)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        lead = v.shape[:-1]
        img = v.reshape(-1, *self.image_shape)
        y = self.xbar(img) if hasattr(self, "xbar") else F.conv2d(img, self.weight, stride=self.stride)
        return (y * self.g_unit).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.image_shape} -> {self.out_shape}, stride {self.stride}, g_unit={self.g_unit:g} S"


def synapse_weight(syn: nn.Module) -> nn.Parameter:
    """The trainable weight of a synapse stage (ideal or on a preset's crossbar)."""
    return syn.xbar.weight if hasattr(syn, "xbar") else syn.weight


def build_synapse(in_features: int, out_features: int, g_unit: float, preset="ideal", mode: str = "noisy"):
    if is_ideal(preset):
        return IdealSynapse(in_features, out_features, g_unit)
    return PresetSynapse(in_features, out_features, g_unit, preset, mode)
