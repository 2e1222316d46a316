"""The stimulus of a measurement, replayed in torch (a batch of candidate parameter sets at once) and in ngspice.

A :class:`Protocol` is a piecewise-linear voltage through breakpoints, with the number of RK4 steps per
interval and the breakpoints where an observation is taken:

* I-V sweep: the breakpoints are the measured samples (time shifted to start at 0); the observation at each
  is the device current ``i(v_k, x_k)``.
* Pulse train: per row a trapezoid (edge ``rise``, flat ``width`` at ``amplitude``), then ``gap`` at 0 V (a row
  standing for k pulses: k of them); the observation at the end of the last gap is the chord conductance
  ``i(v_read, x) / v_read`` (a read that does not disturb the state).

The torch path integrates with :func:`memsim.integrate.step` (RK4, the state held in [0, 1]) and evaluates the
family's own equations through :class:`memsim.devices.DeviceArray`; the ngspice path runs the card's generated
subcircuit (:func:`memsim.devices.netlist.device_testbench`) under the same PWL source.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from .. import spice  # loads ngspice on first use: importing this module needs no ngspice
from ..devices.array import DeviceArray
from ..devices.cards import Card
from ..devices.netlist import device_testbench
from ..integrate import step
from ..stimuli import PWL
from .data import Group, Measurement


@dataclass
class Protocol:
    kind: str                 # "iv" | "pulse"
    times: np.ndarray         # breakpoints (s), from 0
    volts: np.ndarray         # V at the breakpoints
    steps: np.ndarray         # RK4 steps per interval (len(times) - 1)
    observe: np.ndarray       # breakpoint index of each observation
    v_read: float = 0.0       # pulse trains: read voltage (V)

    def key(self) -> tuple:
        return (self.kind, self.times.tobytes(), self.volts.tobytes(), self.steps.tobytes(), self.v_read)

    def stimulus(self) -> PWL:
        return PWL(self.times.tolist(), self.volts.tolist(), label=f"measured {self.kind} stimulus")

    @property
    def n_steps(self) -> int:
        return int(self.steps.sum())


@dataclass(frozen=True)
class PulseTiming:
    """How a pulse row becomes a waveform: edges of ``rise_fraction`` x width, ``gap`` (s; None: = width) at
    0 V before the read at ``v_read`` (V). ``flat_steps``/``edge_steps``/``gap_steps``: RK4 steps per segment."""

    v_read: float = 0.1
    rise_fraction: float = 0.1
    gap: float | None = None
    flat_steps: int = 20
    edge_steps: int = 4
    gap_steps: int = 8


def iv_protocol(group: Group, substeps: int = 1) -> Protocol:
    t = group.columns["time"]
    times = t - t[0]
    return Protocol("iv", times, group.columns["voltage"].copy(), np.full(len(t) - 1, substeps, dtype=np.int64),
                    np.arange(len(t)))


def pulse_protocol(group: Group, timing: PulseTiming) -> Protocol:
    times, volts, steps, observe = [0.0], [0.0], [], []
    t = 0.0
    # pulses before each read: one per pulse row, or a pulse-numbered row's count (memsim.fitting.pulses)
    counts = group.columns.get("count", np.ones(len(group.columns["amplitude"]), dtype=np.int64))
    for a, w, count in zip(group.columns["amplitude"], group.columns["width"], counts):
        gap = timing.gap if timing.gap is not None else (w if w > 0 else float(np.max(group.columns["width"])))
        for k in range(max(int(count), 1)):
            if a != 0 and w > 0:
                rise = timing.rise_fraction * w
                for dt, v, n in ((rise, a, timing.edge_steps), (w, a, timing.flat_steps),
                                 (rise, 0.0, timing.edge_steps)):
                    t += dt
                    times.append(t), volts.append(v), steps.append(n)
            t += gap
            times.append(t), volts.append(0.0), steps.append(timing.gap_steps)
        observe.append(len(times) - 1)
    return Protocol("pulse", np.asarray(times), np.asarray(volts), np.asarray(steps, dtype=np.int64),
                    np.asarray(observe), v_read=timing.v_read)


def protocols(meas: Measurement, *, substeps: int = 1, timing: PulseTiming | None = None) -> list[Protocol]:
    if meas.kind == "iv":
        return [iv_protocol(g, substeps) for g in meas.groups]
    return [pulse_protocol(g, timing or PulseTiming()) for g in meas.groups]


def device_batch(card: Card, params: dict, batch: int, dtype=torch.float64) -> DeviceArray:
    """A DeviceArray of ``batch`` candidates. ``params``: floats (shared) or [batch] tensors.

    The array is built from the card's validated values and then given the candidates: a search may step
    across a relation such as R_on < R_off on its way, and the equations are well defined there; the final
    parameters are validated when the fitted card is made.
    """
    dev = DeviceArray.from_card(card, (batch,), dtype=dtype)
    merged = {k: float(v) for k, v in card.parameters.items()}
    merged.update(params)
    dev.p = SimpleNamespace(**merged)
    return dev


def simulate(card: Card, params: dict, proto: Protocol, batch: int, dtype=torch.float64) -> torch.Tensor:
    """Observations ``[n_obs, batch]`` (A for I-V, S for pulses) of ``batch`` candidate parameter sets."""
    dev = device_batch(card, params, batch, dtype)
    x = dev.initial_state()
    times, volts = proto.times.tolist(), proto.volts.tolist()
    states = [x]
    for k, n in enumerate(proto.steps.tolist()):
        t0, t1, v0, v1 = times[k], times[k + 1], volts[k], volts[k + 1]
        slope = (v1 - v0) / (t1 - t0)
        f = lambda t, y, t0=t0, v0=v0, slope=slope: dev.dxdt(v0 + slope * (t - t0), y)
        h = (t1 - t0) / n
        for s in range(n):
            x = step(f, t0 + s * h, x, h, "rk4").clamp(0.0, 1.0)
        states.append(x)
    xs = torch.stack([states[k] for k in proto.observe.tolist()])
    if proto.kind == "iv":
        v = torch.as_tensor(proto.volts[proto.observe], dtype=dtype).unsqueeze(1).expand_as(xs)
        return dev.current(v, xs)
    return dev.conductance(xs, proto.v_read)


def spice_observe(card: Card, proto: Protocol, max_step_fraction: float = 0.1) -> np.ndarray:
    """The same observations from ngspice running the card's subcircuit (needs ngspice)."""
    stim = proto.stimulus()
    max_step = float(np.min(np.diff(proto.times) / proto.steps)) * max_step_fraction
    result = spice.run(device_testbench(card, stim, max_step))
    t = result["time"]
    at = proto.times[proto.observe]
    if proto.kind == "iv":
        return np.interp(at, t, -result["vsrc#branch"])
    x = np.interp(at, t, result["v(xs)"])
    dev = DeviceArray.from_card(card, (len(x),), dtype=torch.float64)
    return dev.conductance(torch.as_tensor(x, dtype=torch.float64), proto.v_read).numpy()
