"""Run one device card under one stimulus, in torch or in ngspice, and compare.

Both paths return a :class:`Trace` on their own time grid; :func:`compare`
interpolates the SPICE trace onto the torch grid and reports errors relative to
the SPICE trace's peak, the figure of merit of ``memsim verify``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import spice  # loads ngspice on first use: importing this module needs no ngspice
from .array import DeviceArray
from .cards import Card
from .netlist import device_testbench
from ..stimuli import Sine, Stimulus, pulse_train, si_format

#: ngspice's maximum step as a fraction of the torch step: fine enough that
#: ngspice (trapezoidal, reltol 1e-9) is the reference, not the error floor.
SPICE_STEP_FRACTION = 0.1


@dataclass
class Trace:
    source: str
    t: np.ndarray   # s
    v: np.ndarray   # V across the device
    i: np.ndarray   # A through the device
    x: np.ndarray   # normalised state


@dataclass
class StandardStimulus:
    label: str
    stimulus: Stimulus
    dt: float       # torch step documented for this stimulus (s)


def standard_stimuli(card: Card) -> list[StandardStimulus]:
    """The card's verification stimuli: a sine at each of its frequencies and a SET/RESET pulse train."""
    spec = card.verify
    out = []
    for f in spec.frequencies:
        sine = Sine(spec.amplitude, f, cycles=spec.cycles)
        out.append(StandardStimulus(f"sine {si_format(f, 'Hz')}", sine, 1.0 / (f * spec.steps_per_period)))
    pulse = spec.pulse
    train = pulse_train(pulse.set_voltage, pulse.reset_voltage, pulse.width, pulse.rise, pulse.gap, pulse.count)
    out.append(StandardStimulus("SET/RESET pulses", train, pulse.width / pulse.steps_per_width))
    return out


def torch_trace(card: Card, stimulus: Stimulus, dt: float, *, method: str = "rk4", substeps: int = 1,
                dtype: torch.dtype = torch.float64, device: str = "cpu") -> Trace:
    grid = stimulus.grid(dt)  # validates dt against the stimulus
    dev = DeviceArray.from_card(card, (1,), dtype=dtype, device=device)
    t, v, i, x = dev.simulate(stimulus, dt, len(grid) - 1, method=method, substeps=substeps)
    as_np = lambda a: a[:, 0].detach().cpu().double().numpy()
    return Trace("torch", t.detach().cpu().double().numpy(), as_np(v), as_np(i), as_np(x))


def spice_trace(card: Card, stimulus: Stimulus, max_step: float) -> Trace:
    result = spice.run(device_testbench(card, stimulus, max_step))
    t = result["time"]
    # ngspice reports the source's branch current flowing into its + node; the device current is its negative
    return Trace("spice", t, result["v(a)"], -result["vsrc#branch"], result["v(xs)"])


def compare(model: Trace, reference: Trace) -> dict[str, float]:
    """Max |model - reference| over the model grid, relative to the reference peak."""
    i_ref = np.interp(model.t, reference.t, reference.i)
    x_ref = np.interp(model.t, reference.t, reference.x)
    peak = float(np.max(np.abs(reference.i)))
    return {
        "current_error": float(np.max(np.abs(model.i - i_ref)) / peak),
        "state_error": float(np.max(np.abs(model.x - x_ref))),
        "peak_current": peak,
    }
