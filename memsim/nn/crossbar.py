"""Crossbar layers: ``CrossbarLinear`` (a drop-in for ``nn.Linear``) and ``CrossbarConv2d``.

The weights stay ordinary ``nn.Parameter``s in weight units; every forward pass maps
them onto the preset's tiles (:class:`memsim.crossbar.CrossbarArray`) and computes
the product the way the array does, so gradients flow through the mapping, the
quantisers (straight-through), the noise and - in ``irdrop`` mode - the exact nodal
solve with wire resistance (adjoint backward). That is hardware-aware training.

Modes: ``ideal`` (exact product through the mapping), ``noisy`` (quantised levels,
DAC/ADC, the preset's noise, ideal wires), ``irdrop`` (``noisy`` + exact IR drop through
each tile's cached linear operator: a matmul per read), ``nonlinear`` (exact IR drop with the
card's own I-V; slow).

Converter ranges (buffers, saved with the network): ``input_scale`` :math:`s_x`, the DAC input range, and
``adc_full_scale`` :math:`I_{fs}` (A; one per layer, or one per tile with ``[adc] granularity = "tile"``). In
training they follow the batch: :math:`s_x` as a running maximum of :math:`|x|`, the ADC from the batch's own
statistic of its column outputs (also tracked as a running value). In eval mode they are the chip's
calibration, set by :func:`memsim.nn.calibration.calibrate` on a calibration batch; a layer whose preset asks
for a measured range (``"percentile"``, ``"max"``) that was never set raises
:class:`memsim.errors.CalibrationError` before reading. ``"fixed"`` keeps the old rules: the running maximum
(else the batch's maximum) for the DAC, ``adc.range * rows * v_max * dG`` for the ADC. The ``calibrating`` flag
(set True, run a batch, set False) is the older spelling of one calibration.

In eval mode the programmed conductances are drawn once and kept until the weights change (a programmed chip),
so inference is repeatable; in training they are re-drawn every step. Reseeding the chip, new defects or new
non-idealities (``layer.array.reseed(...)``, ``layer.array.noise = ...``) reprogram it at the next call; its
calibration stays until the next :func:`memsim.nn.calibration.calibrate`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.array import DEFAULT_MODE, CrossbarArray, check_mode
from ..crossbar.nonideal import NonIdealities
from ..crossbar.presets import Preset, load_preset
from ..errors import ParameterError
from .calibration import ConverterRanges


class _CrossbarCore(ConverterRanges):
    def _init_core(self, preset, out_features, in_features, mode, noise, scale_momentum):
        self.preset = load_preset(preset)
        self.array = CrossbarArray(self.preset, out_features, in_features, mode=check_mode(mode), noise=noise)
        self.scale_momentum = scale_momentum
        self._init_ranges()
        self._programmed = None

    @property
    def mode(self) -> str:
        return self.array.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.array.mode = check_mode(value)
        self._programmed = None
        with torch.no_grad():  # the column outputs of another read model: the ADC is calibrated anew
            self.adc_full_scale.zero_()

    # -- reads ----------------------------------------------------------------------------
    def _program(self, weight2: torch.Tensor):
        """The chip programmed with ``weight2`` (drawn once per weight version, mode and chip state)."""
        key = (weight2.data_ptr(), weight2._version, self.array.mode, self.array.version)
        if self._programmed is None or self._programmed[0] != key:
            with torch.no_grad():
                g, ws = self.array.conductances(weight2)
            self._programmed = (key, g, ws)
        return self._programmed[1], self._programmed[2]

    def _matmul(self, x2: torch.Tensor, weight2: torch.Tensor) -> torch.Tensor:
        if self._record is not None:
            return self._recording_read(x2, weight2)
        if self.array.mode == "ideal":  # the exact product: nothing to program (see CrossbarArray)
            if self.training:
                self._track_dac(x2)
            return F.linear(x2, weight2)
        if self.training:
            return self.array(weight2, x2, self._track_dac(x2), adc_scale=self._track_adc)
        scale, adc = self._eval_ranges(x2)
        g, ws = self._program(weight2)
        return self.array(weight2, x2, scale, g=g, w_scale=ws, adc_scale=adc)

    def tile_report(self) -> str:
        return self.array.grid.report()


def _copy_parameters(layer: nn.Module, new: nn.Module) -> nn.Module:
    """Give the crossbar layer ``new`` the trained weight and bias of the digital ``layer`` it replaces (and, from
    another crossbar layer, its measured DAC input range, and its ADC full scale when it reads the same tiles:
    same preset, mode and layout)."""
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
        if isinstance(layer, _CrossbarCore):
            new.input_scale.copy_(layer.input_scale)
            same = (layer.preset == new.preset and layer.mode == new.mode
                    and layer.array.grid == new.array.grid)
            if same and layer.adc_full_scale.shape == new.adc_full_scale.shape:
                new.adc_full_scale.copy_(layer.adc_full_scale)
    return new


class CrossbarLinear(_CrossbarCore):
    r"""``y = x W^T + b`` computed on crossbar tiles; same parameters and init as ``nn.Linear``.

    Each forward maps :math:`W` (weight units) to conductances (differential pairs
    :math:`G^\pm_{ji} = g_{min} + \Delta g\,\max(\pm W_{ji}/m_j, 0)` or an offset column, with
    :math:`m_j = \max_i |W_{ji}|` per output for the preset's ``mapping.weight_scale = "column"``, or the layer's
    :math:`\max |W|` for ``"layer"``), programs them onto the
    preset's tiles (levels, programming noise, defects, drift), drives the word lines with
    :math:`V = v_{max}\,\mathrm{DAC}(x / s_x)` and reads every tile column

    .. math::  I_{t,j} = \sum_i V_{t,i} A_{t,ij},\qquad A = G \ (\texttt{noisy}),\quad
               A = A(G, \mathrm{wires})\ (\texttt{irdrop}, \text{exact nodal operator}),

    adds read noise, subtracts the pair columns, digitises with the ADC, sums the tiles' partial outputs and scales
    back: :math:`y_j = \frac{s_x m_j}{g\,v_{max}} \sum_t \mathrm{ADC}(I^+_{t,j} - I^-_{t,j}) + b_j`.

    Args:
        in_features, out_features: sizes of the weight matrix ``[out_features, in_features]``.
        bias: add a learnable bias (weight units).
        preset: crossbar preset name, path or :class:`memsim.crossbar.Preset` (tile size, wires, device card,
            converters, noise).
        mode: ``"ideal"`` (exact product), ``"noisy"`` (levels, converters, noise; ideal wires), ``"irdrop"``
            (``noisy`` + exact IR drop through each tile's cached operator) or ``"nonlinear"`` (the card's own I-V,
            Newton per input vector; slow).
        noise: :class:`memsim.crossbar.NonIdealities` overriding the preset's (``None``: the preset's).
        scale_momentum: momentum of the running input scale :math:`s_x` (the DAC range), updated in training.
        device, dtype: as for ``nn.Linear``.

    Shapes: input ``[..., in_features]`` (any units; scaled to the DAC range), output ``[..., out_features]`` in the
    units of ``x W^T``. Conductances in S, voltages in V, currents in A inside.

    Example:
        >>> import torch
        >>> from memsim.nn import CrossbarLinear
        >>> _ = torch.manual_seed(0)
        >>> layer = CrossbarLinear(100, 24, preset="hfox_1t1r_64", mode="ideal")
        >>> x = torch.rand(8, 100)
        >>> bool(torch.allclose(layer(x), x @ layer.weight.T + layer.bias, atol=1e-5))
        True
        >>> layer.mode = "irdrop"   # exact IR drop of the 64x64 1T1R tiles with 1 Ohm wires
        >>> from memsim.nn.calibration import calibrate
        >>> report = calibrate(layer.eval(), lambda: layer(x))   # the chip's DAC and ADC ranges, once
        >>> y = layer(x)
        >>> tuple(y.shape), layer.array.grid.n_tiles, report["CrossbarLinear"]["adc_method"]
        ((8, 24), 2, 'percentile')
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 preset: Preset | str = "hfox_1t1r_64", mode: str = DEFAULT_MODE, noise: NonIdealities | None = None,
                 scale_momentum: float = 0.9, device=None, dtype=None):
        super().__init__()
        self._init_linear(in_features, out_features, bias, preset, mode, noise, scale_momentum, device, dtype)

    def _init_linear(self, in_features, out_features, bias, preset, mode, noise, scale_momentum, device, dtype):
        """The array and ``nn.Linear``'s parameters and initialisation (shared with the mapped variant)."""
        self.in_features, self.out_features = in_features, out_features
        self._init_core(preset, out_features, in_features, mode, noise, scale_momentum)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        CrossbarLinear.reset_parameters(self)

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, layer: nn.Linear, **kw) -> "CrossbarLinear":
        new = cls(layer.in_features, layer.out_features, layer.bias is not None,
                  device=layer.weight.device, dtype=layer.weight.dtype, **kw)
        return _copy_parameters(layer, new)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ParameterError("input.shape", tuple(x.shape), f"[..., {self.in_features}]",
                                 "the last dimension must equal in_features")
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(-1, self.in_features), self.weight).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"preset={self.preset.name}, mode={self.mode}, tiles={self.array.grid.n_tiles}")


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(k, int) for k in v):
        return tuple(v)
    raise ParameterError(name, v, "an int or a pair of ints", f"give {name} like nn.Conv2d")


class CrossbarConv2d(_CrossbarCore):
    r"""2-D convolution (groups = 1) as im2col + crossbar product; parameters and init as ``nn.Conv2d``.

    The kernel is unrolled to a ``[out_channels, in_channels * kh * kw]`` matrix on the preset's tiles and every
    image patch is one read: :math:`y_{n,o,p} = \sum_k W_{o,k}\, \mathrm{patch}_{n,p,k} + b_o`, computed as in
    :class:`CrossbarLinear` (same modes, non-idealities and units). Grouped and depthwise convolutions use
    :class:`memsim.nn.grouped.GroupedCrossbarConv2d` (dense or sparse mapping).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias: as for ``nn.Conv2d``.
        preset, mode, noise, scale_momentum, device, dtype: as for :class:`CrossbarLinear`.

    Shapes: input ``[N, in_channels, H, W]``, output ``[N, out_channels, H_out, W_out]``.

    Example:
        >>> import torch
        >>> from memsim.nn import CrossbarConv2d
        >>> _ = torch.manual_seed(0)
        >>> conv = CrossbarConv2d(3, 8, 3, padding=1, preset="hfox_1t1r_64", mode="ideal")
        >>> x = torch.rand(2, 3, 10, 10)
        >>> ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        >>> bool(torch.allclose(conv(x), ref, atol=1e-5))
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, *, preset: Preset | str = "hfox_1t1r_64", mode: str = DEFAULT_MODE,
                 noise: NonIdealities | None = None, scale_momentum: float = 0.9,
                 device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), \
            _pair(dilation, "dilation")
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._init_core(preset, out_channels, fan_in, mode, noise, scale_momentum)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, **kw) -> "CrossbarConv2d":
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ParameterError("conv", f"groups={layer.groups}, padding={layer.padding!r}, "
                                 f"padding_mode={layer.padding_mode!r}",
                                 "groups=1, integer padding, padding_mode='zeros'", "keep this layer digital")
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype, **kw)
        return _copy_parameters(layer, new)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ParameterError("input.shape", tuple(x.shape), f"[N, {self.in_channels}, H, W]",
                                 "pass a 4-D batch with in_channels channels")
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        flat = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        y = self._matmul(flat, self.weight.reshape(self.out_channels, -1))
        y = y.reshape(n, ho * wo, self.out_channels).transpose(1, 2).reshape(n, self.out_channels, ho, wo)
        return y if self.bias is None else y + self.bias[None, :, None, None]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, preset={self.preset.name}, mode={self.mode}, tiles={self.array.grid.n_tiles}")
