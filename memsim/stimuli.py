"""Voltage stimuli that both simulators understand.

A stimulus evaluates itself on torch time tensors (for the integrators, which
also need values between grid points) and renders itself as an ngspice
independent-source specification, so SPICE and torch see the same waveform.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import StimulusError


def si_format(value: float, unit: str) -> str:
    """1e6, 'Hz' -> '1 MHz' (engineering prefixes for labels)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"),
                          (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StimulusError(f"stimulus {name} = {value!r} is not a finite number; give a real value in SI units")
    return float(value)


class Stimulus:
    """Base class. Subclasses define ``__call__(t)``, ``spice()``, ``duration`` and ``max_dt``."""

    duration: float
    #: the largest time step that resolves this waveform (a few % of its fastest feature)
    max_dt: float
    label: str = "stimulus"

    def __call__(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def spice(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def breakpoints(self) -> list[float]:
        """Times where the waveform has corners; integrators land on them exactly."""
        return []

    def check_dt(self, dt: float) -> None:
        dt = _finite("dt", dt)
        if dt <= 0:
            raise StimulusError(f"time step dt = {dt!r} s must be positive")
        if dt > self.max_dt * (1 + 1e-9):
            raise StimulusError(
                f"time step dt = {dt:g} s is too coarse for {self.label}: at most {self.max_dt:g} s resolves it. "
                f"Fix: use dt <= {self.max_dt:g} s (e.g. more steps per period)")

    def grid(self, dt: float) -> np.ndarray:
        """Sample times 0, dt, ..., duration (duration rounded to a whole number of steps)."""
        self.check_dt(dt)
        n = int(round(self.duration / dt))
        return np.arange(n + 1) * dt


@dataclass
class Sine(Stimulus):
    """v(t) = amplitude * sin(2 pi frequency t) for ``cycles`` periods."""

    amplitude: float
    frequency: float
    cycles: float = 1.0
    points_per_period: int = 100  # the coarsest sampling accepted

    def __post_init__(self):
        self.amplitude = _finite("amplitude", self.amplitude)
        self.frequency = _finite("frequency", self.frequency)
        self.cycles = _finite("cycles", self.cycles)
        if self.frequency <= 0 or self.cycles <= 0:
            raise StimulusError(f"sine frequency ({self.frequency!r} Hz) and cycles ({self.cycles!r}) must be positive")
        self.duration = self.cycles / self.frequency
        self.max_dt = 1.0 / (self.frequency * self.points_per_period)
        self.label = f"sine {self.amplitude:g} V @ {si_format(self.frequency, 'Hz')}"

    def __call__(self, t):
        return self.amplitude * torch.sin(2 * math.pi * self.frequency * t)

    def spice(self) -> str:
        return f"SIN(0 {self.amplitude!r} {self.frequency!r})"


@dataclass
class PWL(Stimulus):
    """Piecewise-linear waveform through (times[k], values[k]); held after the last point."""

    times: list[float]
    values: list[float]
    label: str = "piecewise-linear stimulus"

    def __post_init__(self):
        t = np.asarray(self.times, dtype=np.float64)
        v = np.asarray(self.values, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape or t.size < 2:
            raise StimulusError(f"PWL needs equal-length 1-D times and values with >= 2 points; got {t.shape} and {v.shape}")
        if not np.all(np.isfinite(t)) or not np.all(np.isfinite(v)):
            bad = int(np.flatnonzero(~(np.isfinite(t) & np.isfinite(v)))[0])
            raise StimulusError(f"PWL point {bad} is not finite (t = {t[bad]!r}, v = {v[bad]!r}); "
                                "remove NaN/inf from the stimulus")
        if t[0] != 0 or np.any(np.diff(t) <= 0):
            raise StimulusError("PWL times must start at 0 and strictly increase")
        self._t, self._v = t, v
        self.duration = float(t[-1])
        self.max_dt = float(np.min(np.diff(t))) / 2.0

    def breakpoints(self) -> list[float]:
        return [float(x) for x in self._t]

    def __call__(self, t):
        tt = torch.as_tensor(self._t, dtype=t.dtype, device=t.device)
        vv = torch.as_tensor(self._v, dtype=t.dtype, device=t.device)
        shape = t.shape
        t = t.reshape(-1).clamp(0, self.duration)
        k = torch.clamp(torch.searchsorted(tt, t.contiguous(), right=True) - 1, 0, len(self._t) - 2)
        t0, t1, v0, v1 = tt[k], tt[k + 1], vv[k], vv[k + 1]
        return (v0 + (v1 - v0) * (t - t0) / (t1 - t0)).reshape(shape)

    def spice(self) -> str:
        pairs = " ".join(f"{a!r} {b!r}" for a, b in zip(self._t.tolist(), self._v.tolist()))
        return f"PWL({pairs})"


def pulse_train(set_voltage: float, reset_voltage: float, width: float, rise: float, gap: float,
                count: int) -> PWL:
    """``count`` SET pulses then ``count`` RESET pulses: trapezoids of flat ``width``, edges ``rise``, spaced ``gap``."""
    for name, value in (("width", width), ("rise", rise), ("gap", gap)):
        if _finite(name, value) <= 0:
            raise StimulusError(f"pulse {name} = {value!r} s must be positive")
    if not isinstance(count, int) or count < 1:
        raise StimulusError(f"pulse count = {count!r} must be a positive integer")
    times, values, t = [0.0], [0.0], 0.0
    for level in [_finite("set_voltage", set_voltage)] * count + [_finite("reset_voltage", reset_voltage)] * count:
        t += gap
        times += [t, t + rise, t + rise + width, t + 2 * rise + width]
        values += [0.0, level, level, 0.0]
        t += 2 * rise + width
    times.append(t + gap)
    values.append(0.0)
    stim = PWL(times, values, label=f"SET/RESET pulse train {set_voltage:g}/{reset_voltage:g} V")
    stim.max_dt = min(rise, width) / 2.0
    return stim
