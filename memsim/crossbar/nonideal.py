"""Device non-idealities of a programmed crossbar, each seeded and each switchable on its own.

Every source has its own seed (derived from ``seed`` and the source's name), so
switching one source on or off does not change the random draws of the others,
and a run is reproducible from its config.

* ``program``  - programming (write) noise: additive Gaussian, std = program * (g_max - g_min),
  drawn each time the array is programmed; the result is held inside the window
  (a device cannot be programmed outside its physical range).
* ``read``     - read noise on every matrix-vector product: each cell's current gets an
  independent relative Gaussian fluctuation of std ``read``; summed along a column this is
  an output noise of std ``read * sqrt(sum_i (v_i G_ij)^2)``, drawn per input vector.
* ``d2d``      - device-to-device variation: a fixed lognormal factor exp(d2d * N(0,1)) per cell.
* ``stuck_on`` / ``stuck_off`` - fractions of cells stuck at g_max / g_min (fixed per cell).
* ``drift_nu`` - conductance drift G(t) = G(t0) (t / t0)^(-nu) at ``drift_t`` seconds after
  programming (reference time ``drift_t0``).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields, replace

import torch

from ..errors import ParameterError
from ..schema import is_finite_number

SOURCES = ("program", "read", "d2d", "stuck_on", "stuck_off", "drift")


def _rate(field: str, value) -> float:
    if not is_finite_number(value) or not 0 <= value <= 1:
        raise ParameterError(field, value, "a fraction in [0, 1]", f"set {field.split('.')[-1]} between 0 and 1")
    return float(value)


def _nonneg(field: str, value) -> float:
    if not is_finite_number(value) or value < 0:
        raise ParameterError(field, value, "a finite number >= 0", f"set {field.split('.')[-1]} >= 0 (0 = off)")
    return float(value)


@dataclass(frozen=True)
class NonIdealities:
    program: float = 0.0
    read: float = 0.0
    d2d: float = 0.0
    stuck_on: float = 0.0
    stuck_off: float = 0.0
    drift_nu: float = 0.0
    drift_t: float = 1.0
    drift_t0: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("program", "read", "d2d", "drift_nu"):
            _nonneg(f"noise.{name}", getattr(self, name))
        _rate("noise.stuck_on", self.stuck_on)
        _rate("noise.stuck_off", self.stuck_off)
        if self.stuck_on + self.stuck_off > 1:
            raise ParameterError("noise.stuck_on + noise.stuck_off", self.stuck_on + self.stuck_off, "<= 1",
                                 "the two fault rates together cannot exceed 1")
        for name in ("drift_t", "drift_t0"):
            v = getattr(self, name)
            if not is_finite_number(v) or v <= 0:
                raise ParameterError(f"noise.{name}", v, "a time > 0 s", "give the time in seconds")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError("noise.seed", self.seed, "an integer >= 0", "give a seed")

    @property
    def drift_factor(self) -> float:
        """``G(t) / G(t0) = (t / t0)^-nu`` at ``drift_t`` (1 without drift)."""
        return (self.drift_t / self.drift_t0) ** (-self.drift_nu) if self.drift_nu else 1.0

    @property
    def any(self) -> bool:
        return bool(self.program or self.read or self.d2d or self.stuck_on or self.stuck_off or self.drift_nu)

    def only(self, *sources: str) -> "NonIdealities":
        """A copy with only the named sources switched on (others 0)."""
        for s in sources:
            if s not in SOURCES:
                raise ParameterError("source", s, f"one of {list(SOURCES)}", "name a non-ideality")
        off = {}
        if "program" not in sources: off["program"] = 0.0
        if "read" not in sources: off["read"] = 0.0
        if "d2d" not in sources: off["d2d"] = 0.0
        if "stuck_on" not in sources: off["stuck_on"] = 0.0
        if "stuck_off" not in sources: off["stuck_off"] = 0.0
        if "drift" not in sources: off["drift_nu"] = 0.0
        return replace(self, **off)

    def off(self) -> "NonIdealities":
        return self.only()

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def generator(seed: int, source: str) -> torch.Generator:
    """The generator of one noise source: seeded by (seed, source name), independent of the others."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(source.encode())) % (2 ** 63))


def normal_draws(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from ``gen`` (a CPU stream), in ``like``'s floating dtype, placed like ``like``."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float64
    return torch.randn(shape, generator=gen, dtype=dtype).to(dtype=like.dtype, device=like.device)


def _rand(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float64).to(device=like.device)


class FixedDefects:
    """The per-cell properties that belong to a chip, not to a programming event: d2d factors and stuck cells."""

    def __init__(self, shape, cfg: NonIdealities, like: torch.Tensor):
        self.shape = tuple(shape)
        self.d2d = torch.exp(cfg.d2d * normal_draws(self.shape, generator(cfg.seed, "d2d"), like)) if cfg.d2d else None
        u = _rand(self.shape, generator(cfg.seed, "stuck"), like)
        self.stuck_on = (u < cfg.stuck_on) if cfg.stuck_on else None
        self.stuck_off = ((u >= cfg.stuck_on) & (u < cfg.stuck_on + cfg.stuck_off)) if cfg.stuck_off else None
        self._affine: tuple | None = None
        self._retarget: torch.Tensor | None = None

    def partner_retarget(self, like: torch.Tensor) -> torch.Tensor | None:
        """Cells ``[..., cols]`` to retarget for ``mapping.stuck_compensation = "partner"`` (1.0; else 0.0): free
        cells whose differential partner (columns ``2j``/``2j+1``) is stuck at g_max; None without stuck-on cells.
        Kept per chip, typed and placed like ``like``."""
        if self.stuck_on is None:
            return None
        if self._retarget is None or self._retarget.dtype != like.dtype or self._retarget.device != like.device:
            pairs = self.shape[-1] // 2
            on = self.stuck_on[..., :2 * pairs].unflatten(-1, (pairs, 2))
            stuck = on if self.stuck_off is None else on | self.stuck_off[..., :2 * pairs].unflatten(-1, (pairs, 2))
            r = torch.stack((on[..., 1] & ~stuck[..., 0], on[..., 0] & ~stuck[..., 1]), -1).flatten(-2)
            if self.shape[-1] > 2 * pairs:  # an odd last column has no partner
                r = torch.nn.functional.pad(r, (0, self.shape[-1] - 2 * pairs), value=False)
            self._retarget = r.to(dtype=like.dtype, device=like.device)
        return self._retarget

    def affine(self, cfg: NonIdealities, g_min: float, g_max: float, like: torch.Tensor):
        """``(gain, offset)`` with ``programmed = clamp(target + noise) * gain + offset`` for this chip.

        ``gain`` folds the d2d factor, the drift factor and the stuck mask (0 on stuck cells); ``offset`` holds
        the stuck cells' g_max / g_min. Either may be a Python float. Computed once per chip, since training
        programs the same chip every step."""
        key = (cfg.drift_nu, cfg.drift_t, cfg.drift_t0, g_min, g_max, like.dtype, like.device)
        if self._affine is None or self._affine[0] != key:
            gain = cfg.drift_factor
            if self.d2d is not None:
                gain = self.d2d.to(dtype=like.dtype, device=like.device) * gain
            offset = 0.0
            stuck = [(m, v) for m, v in ((self.stuck_on, g_max), (self.stuck_off, g_min)) if m is not None]
            if stuck:
                gain = torch.as_tensor(gain, dtype=like.dtype, device=like.device).expand(self.shape).clone()
                offset = torch.zeros(self.shape, dtype=like.dtype, device=like.device)
                for mask, value in stuck:
                    mask = mask.to(like.device)
                    gain[mask] = 0.0
                    offset[mask] = value
            self._affine = (key, gain, offset)
        return self._affine[1], self._affine[2]


class _Program(torch.autograd.Function):
    """``clamp(g + sigma * n, lo, hi) * gain + offset`` in place on the noise buffer; backward ``grad * gain``.

    The clamp is straight-through (a programming target outside the window still gets the gradient of the
    level it aimed at), so the gradient is the chip's fixed gain: one pass forward (a few in-place ops over one
    buffer) and one pass backward, instead of an autograd graph of six element-wise steps."""

    @staticmethod
    def forward(ctx, g, noise, sigma, lo, hi, gain, offset):
        out = noise.mul_(sigma).add_(g) if noise is not None else g.clone()
        out.clamp_(lo, hi)
        if not (isinstance(gain, float) and gain == 1.0):
            out.mul_(gain)
        if not (isinstance(offset, float) and offset == 0.0):
            out.add_(offset)
        ctx.gain = gain
        return out

    @staticmethod
    def backward(ctx, grad):
        gain = ctx.gain
        return (grad if isinstance(gain, float) and gain == 1.0 else grad * gain), None, None, None, None, None, None


def program(g: torch.Tensor, cfg: NonIdealities, g_min: float, g_max: float, defects: FixedDefects | None,
            gen: torch.Generator | None) -> torch.Tensor:
    """The conductances a chip holds after programming targets ``g`` (and after drift), differentiable (STE).

    Programming noise (held inside the window [g_min, g_max]), then the chip's d2d factors and drift, then
    its stuck cells."""
    noise = normal_draws(g.shape, gen, g) if cfg.program else None
    if defects is None:
        gain, offset = cfg.drift_factor, 0.0
    else:
        gain, offset = defects.affine(cfg, g_min, g_max, g)
    lo, hi = (g_min, g_max) if cfg.program else (-math.inf, math.inf)
    return _Program.apply(g, noise, cfg.program * (g_max - g_min), lo, hi, gain, offset)


class _NoiseStd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, variance):
        std = variance.clamp_min(0).sqrt_()
        ctx.save_for_backward(std)
        return std

    @staticmethod
    def backward(ctx, grad):
        (std,) = ctx.saved_tensors
        return torch.where(std > 0, grad / (2 * std), 0.0)


def noise_std(variance: torch.Tensor) -> torch.Tensor:
    """``sqrt(variance)`` with a zero gradient where the variance is exactly zero.

    A column whose inputs are all 0 V has no read noise; plain ``sqrt`` would give its conductances an
    infinite (NaN after the chain rule) gradient there, e.g. on the blank border pixels of an image.
    """
    return _NoiseStd.apply(variance)
