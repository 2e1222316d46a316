"""Periphery: the input DAC and the per-column ADC, both with straight-through gradients.

* :class:`DAC` maps inputs ``x`` (scaled by ``x_scale`` to [-1, 1]) to word-line
  voltages in [-v_max, v_max] on ``2**bits - 1`` symmetric levels. Inputs beyond
  the range saturate (that is the converter's behaviour); the gradient is zero there.
* :class:`ADC` digitises a tile column's current on ``2**bits - 1`` symmetric
  levels over [-i_range, i_range] and clips beyond. Partial sums of tiles that
  share outputs are added after the ADC (digitally).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ParameterError
from ..schema import is_finite_number
from .mapping import round_ste


def _check_bits(field: str, bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1 or bits > 32:
        raise ParameterError(field, bits, "an integer in [1, 32]", "give the converter resolution in bits (>= 1)")
    return bits


class _Converter(torch.autograd.Function):
    """``round(clamp(x / scale, -1, 1) * half) / half * out_scale`` with a straight-through round.

    The gradient is ``out_scale / scale`` inside the range and 0 where the converter saturates: one mask
    multiply backward, instead of autograd's graph of five element-wise steps (the ADC sees every tile output
    of every read)."""

    @staticmethod
    def forward(ctx, x, scale, half, out_scale):
        u = x * (1.0 / scale)
        if ctx.needs_input_grad[0]:  # d out / d x: out_scale / scale inside the range, 0 where it saturates
            ctx.save_for_backward((u.abs() <= 1).to(u.dtype).mul_(out_scale / scale))
        return u.clamp_(-1.0, 1.0).mul_(half).round_().mul_(out_scale / half)

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None, None


def _quantise_symmetric(x: torch.Tensor, scale, bits: int, out_scale) -> torch.Tensor:
    """Clip ``x / scale`` to [-1, 1], round it to 2**bits - 1 symmetric levels (sign-magnitude, zero exact) and
    multiply by ``out_scale``; straight-through gradient.

    1 bit is the exception: a sign-magnitude converter needs zero, so it gets {-1, 0, +1}.
    """
    half = max(2 ** (bits - 1) - 1, 1)
    if isinstance(scale, torch.Tensor) and scale.requires_grad and torch.is_grad_enabled():
        return round_ste(torch.clamp(x / scale, -1.0, 1.0) * half) / half * out_scale
    return _Converter.apply(x, scale, half, out_scale)


@dataclass(frozen=True)
class DAC:
    bits: int = 8
    v_max: float = 0.2

    def __post_init__(self):
        _check_bits("dac.bits", self.bits)
        if not (is_finite_number(self.v_max) and self.v_max > 0):
            raise ParameterError("dac.v_max", self.v_max, "a voltage > 0 V", "give the DAC's full-scale voltage")

    def __call__(self, x: torch.Tensor, x_scale, quantise: bool = True) -> torch.Tensor:
        if quantise:
            return _quantise_symmetric(x, x_scale, self.bits, self.v_max)
        return x / x_scale * self.v_max


@dataclass(frozen=True)
class ADC:
    bits: int = 8
    range: float = 0.25  # full scale as a fraction of rows * v_max * (g_max - g_min)

    def __post_init__(self):
        _check_bits("adc.bits", self.bits)
        if not (is_finite_number(self.range) and 0 < self.range <= 1):
            raise ParameterError("adc.range", self.range, "a fraction in (0, 1]",
                                 "give the ADC full scale as a fraction of rows * v_max * (g_max - g_min)")

    def full_scale(self, rows: int, v_max: float, delta_g: float) -> float:
        """The ADC's full-scale current in A."""
        return self.range * rows * v_max * delta_g

    def __call__(self, i: torch.Tensor, i_range: float) -> torch.Tensor:
        return _quantise_symmetric(i, i_range, self.bits, i_range)
