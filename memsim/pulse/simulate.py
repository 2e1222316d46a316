"""One programming pulse through a device card's state equation, in torch (batched over states and amplitudes)
and as a pulse train in ngspice (the reference).

A pulse of one polarity is a trapezoid - edges of ``rise``, a flat ``width`` at the amplitude - followed by
``gap`` at 0 V, after which the conductance is read as the chord conductance ``i(v_read, x) / v_read`` (a read
that does not disturb the state, as in :mod:`memsim.fitting.protocol`). The defaults are the card's own
verification pulse (``[verify.pulse]``: SET/RESET voltages, width, rise, gap, RK4 steps per width); a pulse of
another width keeps the card's rise/width and gap/width ratios.

The torch path integrates the family's ``dx/dt`` with :func:`memsim.integrate.step` (RK4, the state held in
[0, 1]) for a whole batch at once, each element with its own start state and amplitude. The ngspice path runs the
card's generated subcircuit under the same waveform (:func:`memsim.devices.simulate.spice_trace`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..devices.array import DeviceArray
from ..devices.cards import Card, with_parameters
from ..devices.simulate import SPICE_STEP_FRACTION, spice_trace
from ..errors import ParameterError
from ..integrate import step
from ..schema import is_finite_number
from ..stimuli import PWL

#: the gap at 0 V is integrated with the flat top's step, but with at most this many steps: a non-volatile state
#: does not move there, and a volatile one relaxes on its own time scale, which the card's step already resolves
MAX_GAP_STEPS_PER_WIDTH = 4


@dataclass(frozen=True)
class ProgrammingPulse:
    """The pulse of each polarity (V, s); ``set_voltage`` raises the conductance (potentiation)."""

    set_voltage: float
    reset_voltage: float
    width: float
    rise: float
    gap: float
    steps_per_width: int

    def amplitude(self, up: bool) -> float:
        return self.set_voltage if up else self.reset_voltage

    @property
    def steps(self) -> tuple[int, int, int]:
        """RK4 steps of (each edge, the flat top, the gap)."""
        n = self.steps_per_width
        edge = max(4, math.ceil(n * self.rise / self.width))
        gap = 0 if self.gap == 0 else max(4, min(math.ceil(n * self.gap / self.width), MAX_GAP_STEPS_PER_WIDTH * n))
        return edge, n, gap

    def segments(self) -> list[tuple[float, float, float, int]]:
        """(duration, start level, end level, steps) of the waveform; levels are fractions of the amplitude."""
        edge, flat, gap = self.steps
        out = [(self.rise, 0.0, 1.0, edge), (self.width, 1.0, 1.0, flat), (self.rise, 1.0, 0.0, edge)]
        return out + ([(self.gap, 0.0, 0.0, gap)] if gap else [])

    def describe(self) -> str:
        return (f"{self.set_voltage:+g} V / {self.reset_voltage:+g} V, {self.width:g} s flat, {self.rise:g} s edges, "
                f"{self.gap:g} s at 0 V before the read")


def programming_pulse(card: Card, *, set_voltage: float | None = None, reset_voltage: float | None = None,
                      width: float | None = None, rise: float | None = None, gap: float | None = None,
                      steps_per_width: int | None = None) -> ProgrammingPulse:
    """The programming pulse, defaults from the card's ``[verify.pulse]``; checked against the card's valid range."""
    spec = card.verify.pulse
    w = spec.width if width is None else width
    if not is_finite_number(w) or w <= 0:
        raise ParameterError("width", w, "a pulse width > 0 in s", f"e.g. the card's {spec.width:g} s")
    values = {"set_voltage": spec.set_voltage if set_voltage is None else set_voltage,
              "reset_voltage": spec.reset_voltage if reset_voltage is None else reset_voltage,
              "rise": spec.rise * w / spec.width if rise is None else rise,
              "gap": spec.gap * w / spec.width if gap is None else gap}
    lo, hi = card.voltage_range
    for key in ("set_voltage", "reset_voltage"):
        v = values[key]
        if not is_finite_number(v) or v == 0 or not lo <= v <= hi:
            raise ParameterError(key, v, f"a non-zero amplitude inside {card.name}'s valid range [{lo:g}, {hi:g}] V",
                                 "choose a programming amplitude the card's parameters are valid for")
    if np.sign(values["set_voltage"]) == np.sign(values["reset_voltage"]):
        raise ParameterError("reset_voltage", values["reset_voltage"],
                             f"the polarity opposite to set_voltage = {values['set_voltage']:g} V",
                             "a bipolar device is reset by a pulse of the other sign")
    for key, positive in (("rise", True), ("gap", False)):
        v = values[key]
        if not is_finite_number(v) or v < 0 or (positive and v == 0):
            raise ParameterError(key, v, "a duration " + ("> 0" if positive else ">= 0") + " in s",
                                 f"give {key} in seconds")
    n = spec.steps_per_width if steps_per_width is None else steps_per_width
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise ParameterError("steps_per_width", n, "an integer >= 10", "the card's verification uses "
                             f"{spec.steps_per_width}")
    return ProgrammingPulse(float(values["set_voltage"]), float(values["reset_voltage"]), float(w),
                            float(values["rise"]), float(values["gap"]), n)


def pulse_states(card: Card, x0: torch.Tensor, amplitude: torch.Tensor, pulse: ProgrammingPulse,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The state after one pulse (and its gap) from each start state ``x0`` [B] with its own ``amplitude`` [B] (V)."""
    x = torch.as_tensor(x0, dtype=dtype).clone()
    a = torch.as_tensor(amplitude, dtype=dtype).expand_as(x)
    dev = DeviceArray.from_card(card, tuple(x.shape), dtype=dtype)
    t0 = 0.0
    for duration, s0, s1, n in pulse.segments():
        if s0 == s1 == 0.0 and not bool(dev.dxdt(torch.zeros_like(x), x).any()):
            break  # every state is an equilibrium at 0 V (a non-volatile device): the gap cannot move it
        slope = (s1 - s0) / duration
        f = lambda t, y, t0=t0, s0=s0, slope=slope: dev.dxdt(a * (s0 + slope * (t - t0)), y)
        h = duration / n
        for k in range(n):
            x = step(f, t0 + k * h, x, h, "rk4").clamp(0.0, 1.0)
        t0 += duration
    return x


def conductance(card: Card, x: torch.Tensor, v_read: float) -> torch.Tensor:
    """Chord conductance (S) of states ``x`` read at ``v_read`` (V)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return DeviceArray.from_card(card, tuple(x.shape), dtype=torch.float64).conductance(x, v_read)


def torch_train(card: Card, pulse: ProgrammingPulse, polarities, x0: float, v_read: float) -> np.ndarray:
    """Conductances (S) after each pulse of a train, integrated exactly (RK4) in torch from state ``x0``."""
    x = torch.tensor([float(x0)], dtype=torch.float64)
    out = []
    for p in polarities:
        x = pulse_states(card, x, torch.tensor([pulse.amplitude(p > 0)], dtype=torch.float64), pulse)
        out.append(float(conductance(card, x, v_read)[0]))
    return np.asarray(out)


def train_stimulus(pulse: ProgrammingPulse, polarities) -> tuple[PWL, np.ndarray, float]:
    """The pulse train as a piecewise-linear stimulus (one trapezoid and gap per polarity), the read times (the
    end of each gap, s) and the largest time step that resolves it (the torch step of each segment)."""
    times, volts, reads, t, finest = [0.0], [0.0], [], 0.0, math.inf
    for p in polarities:
        a = pulse.amplitude(p > 0)
        for duration, _, s1, n in pulse.segments():
            t += duration
            times.append(t), volts.append(a * s1)
            finest = min(finest, duration / n)
        reads.append(t)
    return PWL(times, volts, label=f"pulse train of {len(reads)} pulses"), np.asarray(reads), finest


def spice_train(card: Card, pulse: ProgrammingPulse, polarities, x0: float, v_read: float) -> np.ndarray:
    """Conductances (S) after each pulse of a train, from ngspice running the card's subcircuit (needs ngspice);
    ngspice's step is a tenth of the torch step, as in every device check (``SPICE_STEP_FRACTION``)."""
    stimulus, reads, finest = train_stimulus(pulse, polarities)
    trace = spice_trace(with_parameters(card, x0=float(x0)), stimulus, finest * SPICE_STEP_FRACTION)
    return conductance(card, torch.as_tensor(np.interp(reads, trace.t, trace.x)), v_read).numpy()
