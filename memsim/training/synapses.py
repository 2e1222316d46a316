"""Synapse stages of the memristive SNN: row voltages (V) in, column currents (A) out.

A trainable weight ``W`` (dimensionless) is the signed conductance ``G = W * g_unit`` (siemens; a
differential pair ``G+ - G-`` on a chip). ``ideal``: the exact product; a crossbar preset: the product of
:class:`memsim.nn.CrossbarLinear` / :class:`memsim.nn.CrossbarConv2d` (quantised levels, DAC/ADC, noise,
faults, IR drop) rescaled to the same units.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.array import DEFAULT_MODE
from ..errors import ParameterError
from ..nn.crossbar import CrossbarConv2d, CrossbarLinear

if TYPE_CHECKING:
    from ..crossbar.array import CrossbarArray

__all__ = ["Synapse", "IdealSynapse", "PresetSynapse", "ConvSynapse", "IdealConvSynapse", "PresetConvSynapse",
           "build_synapse", "build_conv_synapse", "is_ideal"]


def is_ideal(preset) -> bool:
    return isinstance(preset, str) and preset == "ideal"


class Synapse(nn.Module):
    """One synapse stage: row voltages ``[*, in_features]`` (V) -> column currents ``[*, out_features]`` (A).

    Every kind answers the same questions, so the network and the training loop never ask which kind it is:

    * ``weight``: the trainable weight ``W`` (dimensionless; ``G = W * g_unit`` siemens);
    * :attr:`crossbar_layer`: the crossbar layer computing the product (``None`` for the exact product);
    * :attr:`crossbar_array`: that layer's :class:`memsim.crossbar.array.CrossbarArray` (``None`` when ideal);
    * :attr:`needs_calibration`: its DAC input range is not set yet (a batch in training mode sets it).
    """

    in_features: int
    out_features: int
    g_unit: float

    @property
    def crossbar_layer(self) -> nn.Module | None:
        return None

    @property
    def crossbar_array(self) -> CrossbarArray | None:
        layer = self.crossbar_layer
        return None if layer is None else layer.array

    @property
    def needs_calibration(self) -> bool:
        layer = self.crossbar_layer
        return layer is not None and float(layer.input_scale) == 0.0


class _OnCrossbar:
    """The preset kinds: the product of a crossbar layer held as ``xbar``, whose weight is the synapse's."""

    xbar: nn.Module

    @property
    def weight(self) -> nn.Parameter:
        return self.xbar.weight

    @property
    def crossbar_layer(self) -> nn.Module:
        return self.xbar

    def set_crossbar_layer(self, layer: nn.Module) -> None:
        """Compute the product with ``layer`` from now on (e.g. the same weights re-mapped or pruned)."""
        self.xbar = layer


class IdealSynapse(Synapse):
    r"""The exact crossbar product: column currents :math:`I_j = g_{unit} \sum_i W_{ji} V_i` (Kirchhoff's law).

    Args:
        in_features: rows (inputs, word lines).
        out_features: columns (outputs, bit lines).
        g_unit: siemens per unit weight: the signed conductance is :math:`G = W g_{unit}` (a differential pair
            :math:`G^+ - G^-` on a chip). ``W`` starts as ``nn.Linear``'s weight.

    Shapes: ``v`` ``[*, in_features]`` in V -> ``[*, out_features]`` in A.

    Example:
        >>> import torch
        >>> from memsim.training.synapses import IdealSynapse
        >>> syn = IdealSynapse(3, 2, g_unit=1e-4)
        >>> with torch.no_grad():
        ...     _ = syn.weight.copy_(torch.tensor([[1.0, -0.5, 0.0], [0.2, 0.2, 0.2]]))
        >>> syn(torch.tensor([0.2, 0.1, -0.1])).detach()   # 1e-4 * [0.2 - 0.05, 0.04]  (A)
        tensor([1.5000e-05, 4.0000e-06])
    """

    def __init__(self, in_features: int, out_features: int, g_unit: float):
        super().__init__()
        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight) * self.g_unit

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, ideal, g_unit={self.g_unit:g} S"


class PresetSynapse(_OnCrossbar, Synapse):
    r"""A crossbar preset's product in the units of :class:`IdealSynapse`: :math:`I = g_{unit}\,
    \mathrm{xbar}(V)`, where ``xbar`` is a :class:`memsim.nn.CrossbarLinear` (no bias) holding ``W``: quantised
    levels, DAC/ADC, programming and read noise, faults, drift and (mode ``irdrop``) exact IR drop.

    Args:
        in_features, out_features, g_unit: as for :class:`IdealSynapse`.
        preset: a crossbar preset name, path or :class:`memsim.crossbar.Preset`.
        mode: the crossbar layer's mode (``ideal``, ``noisy``, ``irdrop``, ``nonlinear``).

    Shapes: ``v`` ``[*, in_features]`` in V -> ``[*, out_features]`` in A.

    Example:
        >>> import torch
        >>> from memsim.training.synapses import PresetSynapse
        >>> _ = torch.manual_seed(0)
        >>> syn = PresetSynapse(20, 4, 1e-4, preset="hfox_1t1r_64", mode="ideal")
        >>> syn.crossbar_array.grid.n_tiles, syn.needs_calibration   # one 64x64 tile; no DAC range measured yet
        (1, True)
        >>> v = 0.2 * torch.rand(5, 20)
        >>> bool(torch.allclose(syn(v), 1e-4 * v @ syn.weight.T, rtol=1e-5, atol=1e-12))  # the ideal mapping is exact
        True
        >>> syn.needs_calibration   # a batch in training mode measured the DAC range
        False
    """

    def __init__(self, in_features: int, out_features: int, g_unit: float, preset, mode: str):
        super().__init__()
        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.xbar = CrossbarLinear(in_features, out_features, bias=False, preset=preset, mode=mode)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.xbar(v) * self.g_unit

    def extra_repr(self) -> str:
        return f"g_unit={self.g_unit:g} S"


class ConvSynapse(Synapse):
    """A convolutional crossbar stage: image rows ``[*, C*H*W]`` (V) -> column currents ``[*, K*Ho*Wo]`` (A).

    Each kernel is one crossbar column (im2col mapping: every image patch is one read of the tiles). The kinds:
    :class:`IdealConvSynapse` (exact ``conv2d`` with ``G = W * g_unit``) and :class:`PresetConvSynapse`
    (:class:`memsim.nn.CrossbarConv2d`, the same non-idealities as the dense layers); :func:`build_conv_synapse`
    picks one.

    ``padding`` zero-pads the image (rows driven at 0 V: a padded position's rows are simply not driven).
    ``pool = 2`` averages the column currents of each 2x2 block of output positions into one neuron (``Ho``,
    ``Wo`` halved, rounded down): the neuron's membrane capacitor integrates the four reads of its pooling window,
    each for a quarter of the step (charge averaging; the 1/4 is the quarter duty cycle). This is the downsampling
    of the VGG-shaped MSNN; what it leaves out: the read multiplexing's switching transients and the four-times
    read rate it needs (the cost model counts the reads)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                 padding: int = 0, pool: int = 1):
        super().__init__()
        c, h, w = image_shape
        for name, v in (("network.conv_channels", channels), ("network.conv_kernel", kernel),
                        ("network.conv_stride", stride), ("conv pool", pool)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1")
        if isinstance(padding, bool) or not isinstance(padding, int) or not 0 <= padding < kernel:
            raise ParameterError("conv padding", padding, f"an integer in [0, {kernel - 1}] (kernel {kernel})")
        if kernel > min(h, w) + 2 * padding:
            raise ParameterError("network.conv_kernel", kernel, f"<= {min(h, w) + 2 * padding} (the image is "
                                                                f"{h}x{w}, padding {padding})")
        ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
        if ho < pool or wo < pool:
            raise ParameterError("network.conv_channels", channels, f"a stage whose {ho}x{wo} outputs hold a "
                                 f"{pool}x{pool} pooling window", "fewer stages, or a larger image")
        self.image_shape, self.stride, self.g_unit = (c, h, w), stride, float(g_unit)
        self.padding, self.pool = padding, pool
        self.conv_shape = (channels, ho, wo)
        self.out_shape = (channels, ho // pool, wo // pool)
        self.in_features, self.out_features = c * h * w, channels * self.out_shape[1] * self.out_shape[2]

    def _product(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        lead = v.shape[:-1]
        y = self._product(v.reshape(-1, *self.image_shape))
        if self.pool > 1:
            y = F.avg_pool2d(y, self.pool)
        return (y * self.g_unit).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        pool = f", {self.pool}x{self.pool} current pooling" if self.pool > 1 else ""
        return (f"{self.image_shape} -> {self.out_shape}, stride {self.stride}, padding {self.padding}{pool}, "
                f"g_unit={self.g_unit:g} S")


class IdealConvSynapse(ConvSynapse):
    r""":class:`ConvSynapse` with the exact product :math:`I_{k,y,x} = g_{unit} \sum_{c,u,v} W_{k,c,u,v}\,
    V_{c,\,s y + u,\,s x + v}` (``conv2d`` of stride :math:`s` on the image
    zero-padded by ``padding``), then the optional current pooling of :class:`ConvSynapse`.

    Args:
        image_shape: ``(C, H, W)`` of the input image (row voltages in V).
        channels: output channels ``K`` (one crossbar column each).
        kernel: kernel size (square).
        stride: stride.
        g_unit: siemens per unit weight.
        padding: zero padding on every side (``kernel // 2`` keeps the size at stride 1).
        pool: average the currents of ``pool x pool`` output positions into one (1 = none).

    Shapes: ``v`` ``[*, C*H*W]`` in V -> ``[*, K*Ho*Wo]`` in A, ``Ho = ((H + 2 padding - kernel) // stride + 1)
    // pool``.

    Example:
        >>> import torch
        >>> from memsim.training.synapses import IdealConvSynapse
        >>> syn = IdealConvSynapse((1, 4, 4), channels=1, kernel=2, stride=2, g_unit=1e-4)
        >>> with torch.no_grad():
        ...     _ = syn.weight.fill_(1.0)                      # each output sums a 2x2 patch
        >>> syn(torch.arange(16.0) * 0.01).detach()            # patches sum to 0.10, 0.18, 0.42, 0.50 V
        tensor([1.0000e-05, 1.8000e-05, 4.2000e-05, 5.0000e-05])
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                 padding: int = 0, pool: int = 1):
        super().__init__(image_shape, channels, kernel, stride, g_unit, padding, pool)
        self.weight = nn.Parameter(torch.empty(channels, image_shape[0], kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _product(self, img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(img, self.weight, stride=self.stride, padding=self.padding)


class PresetConvSynapse(_OnCrossbar, ConvSynapse):
    r""":class:`ConvSynapse` on a crossbar preset: :math:`I = g_{unit}\,\mathrm{xbar}(V)` with ``xbar`` a
    :class:`memsim.nn.CrossbarConv2d` (no bias; im2col, each patch one read of the tiles), the non-idealities of
    :class:`PresetSynapse`.

    Args:
        image_shape, channels, kernel, stride, g_unit, padding, pool: as for :class:`IdealConvSynapse`.
        preset, mode: as for :class:`PresetSynapse`.

    Shapes: as for :class:`IdealConvSynapse`.

    Example:
        >>> import torch
        >>> from memsim.training.synapses import IdealConvSynapse, PresetConvSynapse
        >>> _ = torch.manual_seed(0)
        >>> ideal = IdealConvSynapse((2, 6, 6), 3, 3, 1, 1e-4)
        >>> chip = PresetConvSynapse((2, 6, 6), 3, 3, 1, 1e-4, preset="hfox_1t1r_64", mode="ideal")
        >>> with torch.no_grad():
        ...     _ = chip.weight.copy_(ideal.weight)
        >>> v = 0.2 * torch.rand(4, 72)
        >>> bool(torch.allclose(chip(v), ideal(v), rtol=1e-5, atol=1e-12))
        True
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                 preset, mode: str = "noisy", padding: int = 0, pool: int = 1):
        super().__init__(image_shape, channels, kernel, stride, g_unit, padding, pool)
        self.xbar = CrossbarConv2d(image_shape[0], channels, kernel, stride=stride, padding=padding, bias=False,
                                   preset=preset, mode=mode)

    def _product(self, img: torch.Tensor) -> torch.Tensor:
        return self.xbar(img)


def build_synapse(in_features: int, out_features: int, g_unit: float, preset="ideal",
                  mode: str = DEFAULT_MODE) -> Synapse:
    if is_ideal(preset):
        return IdealSynapse(in_features, out_features, g_unit)
    return PresetSynapse(in_features, out_features, g_unit, preset, mode)


def build_conv_synapse(image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                       preset="ideal", mode: str = "noisy", padding: int = 0, pool: int = 1) -> ConvSynapse:
    if is_ideal(preset):
        return IdealConvSynapse(image_shape, channels, kernel, stride, g_unit, padding, pool)
    return PresetConvSynapse(image_shape, channels, kernel, stride, g_unit, preset, mode, padding, pool)
