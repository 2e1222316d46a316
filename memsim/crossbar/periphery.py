r"""Periphery: the input DAC and the per-column ADC (straight-through gradients), and how their ranges are set.

* :class:`DAC` maps inputs ``x`` (scaled by ``x_scale`` to [-1, 1]) to word-line voltages in [-v_max, v_max]
  on ``2**bits - 1`` symmetric levels: the code :math:`q = \mathrm{round}(\mathrm{clip}(x / s_x, -1, 1)\,h)`,
  :math:`h = 2^{b-1} - 1`. Inputs beyond the range saturate (that is the converter's behaviour); the gradient
  is zero there. **Bit-serial inputs** (``slice_bits`` = k < bits, as NeuroSim and CrossSim model them): the
  b-bit code, read as a two's-complement word, is applied in :math:`n = b / k` cycles of k bits,
  :math:`q = \sum_{s<n} 2^{ks} u_s` with :math:`u_s \in [0, 2^k - 1]` and the top (sign) slice
  :math:`u_{n-1} \in [-2^{k-1}, 2^{k-1} - 1]`; cycle s drives :math:`V_s = v_{max} u_s / (2^k - 1)`, each
  cycle's column outputs are digitised and shifted and added digitally with the weights
  :meth:`DAC.slice_weights` (:math:`2^{ks} (2^k - 1) / h`, relative to a one-shot read).
* :class:`ADC` digitises a tile column's output on ``2**bits - 1`` symmetric levels over
  [-I_fs, I_fs] and clips beyond. Partial sums of tiles that share outputs, and of input and weight slices,
  are added after the ADC (digitally). ``columns_per_adc`` outputs share one converter through a column
  multiplexer: it changes the conversion schedule (latency, energy, area in the cost model), not the values.
* The ranges. ``calibration = "percentile" | "max" | "mse" | "fixed"`` per converter: a percentile or the maximum
  of the magnitudes the converter sees on a calibration batch (:func:`magnitude_range`, :class:`SignalRecord`;
  the layers and :mod:`memsim.nn.calibration` record them), the clip that minimises the converter's own
  quantisation error on them at its bits (:func:`mse_range`: what a designer tuning the range for a coarse
  converter picks, since a high percentile wastes most of a 4-bit converter's levels), or the fixed rule (ADC:
  :math:`I_{fs} = \mathrm{range} \cdot rows \cdot v_{max} \cdot (g_{max} - g_{min})`; DAC: the running maximum of
  ``|x|``). The ADC's ``granularity`` is one full scale per ``"layer"`` or per ``"tile"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ParameterError
from ..schema import is_finite_number, spec_field
from . import fused
from .mapping import bit_slices, round_ste

CALIBRATIONS = ("percentile", "max", "mse", "fixed")
#: candidate clips of "mse", as percentiles of the recorded magnitudes (the maximum is a candidate too)
MSE_CANDIDATES = (90.0, 95.0, 97.0, 98.0, 99.0, 99.3, 99.5, 99.7, 99.8, 99.9, 99.95, 99.99)
GRANULARITIES = ("layer", "tile")
#: the ADC's default clip: the 99th percentile of the column outputs' magnitudes. Measured on Fashion-MNIST MLPs and
#: MSNNs (benchmarks/calibration.md), clipping the top 1 % costs nothing at 6 to 16 bits, while a 4-bit converter
#: at the 99.99th percentile spends most of its 15 levels on that rare tail and loses 8 to 12 points more.
ADC_PERCENTILE = 99.0
#: values kept per read and group for a percentile (a fixed-seed random subset beyond): the estimate of a
#: 99.99th percentile then rests on ~26 values above it, and a read costs one gather
SAMPLES_PER_READ = 2 ** 18


def _check_bits(field: str, bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1 or bits > 32:
        raise ParameterError(field, bits, "an integer in [1, 32]", "give the converter resolution in bits (>= 1)")
    return bits


def _check_calibration(field: str, method, percentile) -> None:
    if method not in CALIBRATIONS:
        raise ParameterError(f"{field}.calibration", method, f"one of {list(CALIBRATIONS)}",
                             "'percentile' clips at a percentile of the calibration batch's magnitudes, 'max' at "
                             "their maximum, 'mse' where the converter's quantisation error on them is least, "
                             "'fixed' keeps the preset's rule")
    if not (is_finite_number(percentile) and 0 < percentile <= 100):
        raise ParameterError(f"{field}.percentile", percentile, "a number in (0, 100]",
                             "give the percentile of the magnitudes that sets the range, e.g. 99.99")


def _convert(x, inv, half, k, slope_factor, want_slope: bool):
    """The converter's element-wise chain: ``round(clamp(x * inv, -1, 1) * half) * k`` and, when ``want_slope``,
    its straight-through derivative ``slope_factor`` inside the range (0 where it saturates). The operations and
    their order are those of the eager converter, so a compiled run gives the same values."""
    u = x * inv
    out = u.clamp(-1.0, 1.0).mul_(half).round_().mul_(k)
    if not want_slope:
        return out, None
    return out, (u.abs() <= 1).to(u.dtype).mul(slope_factor)


class _Converter(torch.autograd.Function):
    """``round(clamp(x / scale, -1, 1) * half) / half * out_scale`` with a straight-through round.

    The gradient is ``out_scale / scale`` inside the range and 0 where the converter saturates: one mask
    multiply backward, instead of autograd's graph of five element-wise steps (the ADC sees every tile output
    of every read). ``scale`` and ``out_scale`` may be tensors broadcasting against ``x`` (one ADC range per
    tile). A large read (:func:`memsim.crossbar.fused.available`) with a tensor ``scale`` runs the chain as one
    ``torch.compile``-d pass (:func:`_convert`: output and slope written together, instead of nine passes and a
    copy); the scalars ``1 / scale``, ``out_scale / half`` and ``out_scale / scale`` are formed eagerly either
    way, so both routes perform the same floating-point operations per element."""

    @staticmethod
    def forward(ctx, x, scale, half, out_scale):
        want = ctx.needs_input_grad[0]  # d out / d x: out_scale / scale inside the range, 0 where it saturates
        args = (x, 1.0 / scale, half, out_scale / half, out_scale / scale if want else None, want)
        if isinstance(scale, torch.Tensor) and fused.available(x.numel()):
            # the scalars as 0-d tensors of x's dtype (the values the eager route's Python floats take in the
            # element-wise ops): compiled code is specialised on a Python float's value, and every layer's own
            # half / out_scale would otherwise be one more compilation, up to torch's recompile limit
            scalars = [torch.as_tensor(a, dtype=x.dtype, device=x.device) if isinstance(a, float) else a
                       for a in args[1:5]]
            out, slope = fused.compiled_call("converter", _convert, x, *scalars, want, dynamic=None,
                                             many_variants=True)
        else:
            out, slope = _convert(*args)
        if want:
            ctx.save_for_backward(slope)
        return out

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None, None


def _quantise_symmetric(x: torch.Tensor, scale, bits: int, out_scale) -> torch.Tensor:
    """Clip ``x / scale`` to [-1, 1], round it to 2**bits - 1 symmetric levels (sign-magnitude, zero exact) and
    multiply by ``out_scale``; straight-through gradient.

    1 bit is the exception: a sign-magnitude converter needs zero, so it gets {-1, 0, +1}.
    """
    half = _half(bits)
    if isinstance(scale, torch.Tensor) and scale.requires_grad and torch.is_grad_enabled():
        return round_ste(torch.clamp(x / scale, -1.0, 1.0) * half) / half * out_scale
    return _Converter.apply(x, scale, half, out_scale)


def _half(bits: int) -> int:
    """Largest code magnitude of a sign-magnitude converter of ``bits`` bits."""
    return max(2 ** (bits - 1) - 1, 1)


@dataclass(frozen=True)
class DAC:
    """The word-line driver: ``bits`` of resolution, full scale ``v_max`` (V); its input range set by
    ``calibration`` / ``percentile`` (see the module doc); ``slice_bits`` (None = ``bits``): bits applied per
    cycle of a bit-serial read; must divide ``bits``."""

    bits: int = spec_field(8, "int", "resolution of the input code (sign included)", lo=1, hi=32)
    v_max: float = spec_field(0.2, "float", "full-scale word-line voltage", unit="V", lo=0.0, lo_open=True)
    calibration: str = spec_field("percentile", "choice", "how the input range is set: a percentile, the maximum, "
                                                          "the least-MSE clip of the calibration batch, or fixed",
                                  choices=CALIBRATIONS)
    percentile: float = spec_field(99.99, "float", "percentile of the input magnitudes that maps to v_max "
                                                   "(calibration = percentile)", lo=0.0, hi=100.0, lo_open=True)
    slice_bits: int | None = spec_field(None, "int", "bits applied per cycle of a bit-serial read", lo=1,
                                        rule="a divisor of bits", absent="bits (one-shot, not bit-serial)")

    def __post_init__(self):
        _check_bits("dac.bits", self.bits)
        if not (is_finite_number(self.v_max) and self.v_max > 0):
            raise ParameterError("dac.v_max", self.v_max, "a voltage > 0 V", "give the DAC's full-scale voltage")
        _check_calibration("dac", self.calibration, self.percentile)
        k = self.slice_bits
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or self.bits % k):
            divisors = [d for d in range(1, self.bits + 1) if self.bits % d == 0]
            raise ParameterError("dac.slice_bits", k, f"a divisor of dac.bits = {self.bits}: one of {divisors}",
                                 "the DAC drives the input code in equal slices of slice_bits bits; leave it out "
                                 "for a one-shot (not bit-serial) read")

    @property
    def input_slices(self) -> int:
        """Cycles of a bit-serial read (1: the whole code at once)."""
        return self.bits // (self.slice_bits or self.bits)

    def __call__(self, x: torch.Tensor, x_scale, quantise: bool = True) -> torch.Tensor:
        if quantise:
            return _quantise_symmetric(x, x_scale, self.bits, self.v_max)
        return x / x_scale * self.v_max

    def drive(self, x: torch.Tensor, x_scale, quantise: bool = True) -> torch.Tensor:
        """Word-line voltages ``[input_slices, *x.shape]``: the one-shot voltages, or one slice per cycle.

        The slices are exact (their shift-add is the one-shot code); the straight-through gradient of the code
        is shared equally among the cycles (``d u_s / d q = 2^{-ks} / n``), so the recombined gradient equals the
        one-shot DAC's."""
        n = self.input_slices
        if n == 1 or not quantise:
            return self(x, x_scale, quantise).unsqueeze(0)
        half, k = _half(self.bits), self.bits // n
        z = torch.clamp(x / x_scale, -1.0, 1.0) * half
        code = torch.remainder(z.detach().round().to(torch.int64), 2 ** self.bits)  # two's complement word
        u = bit_slices(code, n, k)
        top = u[-1]
        u[-1] = torch.where(top >= 2 ** (k - 1), top - 2 ** k, top)  # the sign cycle
        share = torch.tensor([2.0 ** (-k * s) / n for s in range(n)], dtype=z.dtype, device=z.device)
        u = u.to(z.dtype) + (z - z.detach()).unsqueeze(0) * share.view(-1, *([1] * z.dim()))
        return u * (self.v_max / (2 ** k - 1))

    def slice_weights(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """Digital weight of each cycle's outputs ``[input_slices]`` relative to a one-shot read:
        ``2^{ks} (2^k - 1) / h`` (all ones when not bit-serial)."""
        n = self.input_slices
        if n == 1:
            return torch.ones(1, dtype=dtype, device=device)
        k = self.bits // n
        return torch.tensor([2.0 ** (k * s) * (2 ** k - 1) / _half(self.bits) for s in range(n)], dtype=dtype,
                            device=device)


@dataclass(frozen=True)
class ADC:
    """The column converter: ``bits`` of resolution over [-I_fs, I_fs]. ``range``: the fixed rule's full scale as
    a fraction of ``rows * v_max * (g_max - g_min)`` (used by ``calibration = "fixed"``); ``calibration``,
    ``percentile``, ``granularity`` ("layer" | "tile"): how a calibration sets I_fs (module doc);
    ``columns_per_adc``: outputs sharing one converter (must divide the tile's outputs; checked by the preset)."""

    bits: int = spec_field(8, "int", "resolution over [-I_fs, I_fs]", lo=1, hi=32)
    range: float = spec_field(0.25, "float", "the fixed rule's full scale, as a fraction of rows * v_max * (g_max "
                                             "- g_min) (calibration = fixed)", lo=0.0, hi=1.0, lo_open=True)
    calibration: str = spec_field("percentile", "choice", "how the full scale I_fs is set: a percentile, the "
                                                          "maximum, the least-MSE clip of the calibration batch's "
                                                          "column outputs, or the fixed rule", choices=CALIBRATIONS)
    percentile: float = spec_field(ADC_PERCENTILE, "float", "percentile of the column outputs' magnitudes that "
                                                            "maps to I_fs (calibration = percentile)",
                                   lo=0.0, hi=100.0, lo_open=True)
    granularity: str = spec_field("layer", "choice", "one calibrated full scale per layer, or per tile",
                                  choices=GRANULARITIES)
    columns_per_adc: int = spec_field(1, "int", "column outputs sharing one converter", lo=1,
                                      rule="a divisor of the tile's outputs")

    def __post_init__(self):
        _check_bits("adc.bits", self.bits)
        if not (is_finite_number(self.range) and 0 < self.range <= 1):
            raise ParameterError("adc.range", self.range, "a fraction in (0, 1]",
                                 "give the ADC full scale as a fraction of rows * v_max * (g_max - g_min)")
        _check_calibration("adc", self.calibration, self.percentile)
        if self.granularity not in GRANULARITIES:
            raise ParameterError("adc.granularity", self.granularity, f"one of {list(GRANULARITIES)}",
                                 "'layer': one full scale per layer, 'tile': one per tile")
        c = self.columns_per_adc
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ParameterError("adc.columns_per_adc", c, "an integer >= 1 dividing the tile's outputs",
                                 "give how many column outputs share one ADC (1: one ADC per output)")

    def full_scale(self, rows: int, v_max: float, delta_g: float) -> float:
        """The fixed rule's full-scale current in A."""
        return self.range * rows * v_max * delta_g

    def __call__(self, i: torch.Tensor, i_range) -> torch.Tensor:
        return _quantise_symmetric(i, i_range, self.bits, i_range)


# -- ranges from signals -----------------------------------------------------------------------------------
def subsample(a: torch.Tensor, cap: int, seed: int = 0, dim: int = 1) -> torch.Tensor:
    """At most ``cap`` entries of ``a`` along ``dim``: all of them, or fixed-seed random ones (the same for every
    row; drawn from a private generator, so the global random streams are left alone)."""
    n = a.shape[dim]
    if n <= cap:
        return a
    gen = torch.Generator(device=a.device).manual_seed(seed)
    return a.index_select(dim, torch.randint(n, (cap,), generator=gen, device=a.device))


def magnitude_range(a: torch.Tensor, method: str, percentile: float) -> torch.Tensor:
    """The range ``[G]`` of non-negative magnitudes ``a`` [G, n]: their maximum (``"max"``, or percentile 100),
    else their nearest-rank ``percentile``: the value of rank ``ceil(p / 100 * n)`` in increasing order."""
    if a.shape[1] == 0:
        return torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    if method == "max" or percentile >= 100:
        return a.amax(1)
    n = a.shape[1]
    k = min(max(math.ceil(percentile / 100 * n), 1), n)
    if n - k < 1024:  # a high percentile: the (n - k + 1)-th largest, found by a short top-k (no selection sort)
        return a.topk(n - k + 1, 1).values[:, -1]
    return a.kthvalue(k, 1).values


def quantisation_mse(a: torch.Tensor, full_scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Mean squared error ``[G, C]`` of a symmetric ``bits``-bit converter (the levels of
    :func:`_quantise_symmetric`) with each of the full scales ``[G, C]`` on the magnitudes ``a`` [G, n]."""
    half = max(2 ** (bits - 1) - 1, 1)
    fs = full_scale.clamp_min(torch.finfo(a.dtype).tiny).unsqueeze(-1)        # [G, C, 1]
    q = (a.unsqueeze(1) / fs).clamp(max=1.0).mul(half).round().div(half) * fs  # [G, C, n]
    return (q - a.unsqueeze(1)).pow(2).mean(-1)


def mse_range(a: torch.Tensor, bits: int, peak: torch.Tensor) -> torch.Tensor:
    """The full scale ``[G]`` among the percentiles :data:`MSE_CANDIDATES` of ``a`` [G, n] and the maximum ``peak``
    [G] that minimises :func:`quantisation_mse` at ``bits``: the trade between clipping the rare large values and
    resolving the common small ones, decided by the signal and the converter's resolution."""
    if a.shape[1] == 0:
        return peak
    cands = [magnitude_range(a, "percentile", p) for p in MSE_CANDIDATES] + [peak]
    full = torch.stack(cands, 1)                                                    # [G, C]
    sub = subsample(a, 1 << 14, seed=0)                                            # error estimate on a bounded set
    best = quantisation_mse(sub, full, bits).argmin(1, keepdim=True)
    return full.gather(1, best).squeeze(1)


class SignalRecord:
    """Magnitudes a converter sees over the reads of a calibration pass, per group (one group per layer, or
    one per tile): the exact maximum of every read and a bounded random subset for percentiles.

    Each read keeps at most ``max(SAMPLES_PER_READ // groups, 4096)`` values per group; past ``limit`` values per
    group the record is thinned by half, and later reads with it, so every read keeps an equal weight."""

    def __init__(self, limit: int = 2 ** 21):
        self.limit = limit
        self.read_maxima: list[torch.Tensor] = []
        self._samples: list[torch.Tensor] = []
        self._keep = 1.0
        self._stored = 0

    @property
    def reads(self) -> int:
        return len(self.read_maxima)

    def add(self, a: torch.Tensor) -> None:
        """Record one read's magnitudes ``a`` [G, n] (detached, >= 0)."""
        self.read_maxima.append(a.amax(1) if a.shape[1] else torch.zeros(a.shape[0], dtype=a.dtype,
                                                                          device=a.device))
        cap = max(int(max(SAMPLES_PER_READ // max(a.shape[0], 1), 4096) * self._keep), 1)
        s = subsample(a, cap, seed=self.reads).clone()
        self._samples.append(s)
        self._stored += s.shape[1]
        if self._stored > self.limit:  # thin what is kept, and what comes, by half
            self._samples = [subsample(t, max(t.shape[1] // 2, 1), seed=k) for k, t in enumerate(self._samples)]
            self._stored = sum(t.shape[1] for t in self._samples)
            self._keep /= 2

    def samples(self) -> torch.Tensor:
        return torch.cat(self._samples, 1)

    def maximum(self) -> torch.Tensor:
        return torch.stack(self.read_maxima).amax(0)

    def statistic(self, method: str, percentile: float, bits: int | None = None) -> torch.Tensor:
        """The range ``[G]``: the exact maximum for ``"max"``, the least-error clip at ``bits`` for ``"mse"``, else
        the percentile of the kept values; a range of 0 (a signal that is almost always zero, e.g. rare spikes)
        gives the maximum instead, which leaves a range."""
        peak = self.maximum()
        if method == "mse":
            r = mse_range(self.samples(), bits, peak)
            return torch.where(r > 0, r, peak)
        if method == "max" or percentile >= 100:
            return peak
        r = magnitude_range(self.samples(), method, percentile)
        return torch.where(r > 0, r, peak)

    def clipped_fraction(self, full_scale: torch.Tensor) -> float:
        """Share of the kept values beyond ``full_scale`` [G] (or a scalar)."""
        s = self.samples()
        if s.numel() == 0:
            return 0.0
        fs = full_scale.reshape(-1, 1) if full_scale.dim() else full_scale
        return float((s > fs).to(torch.float64).mean())
