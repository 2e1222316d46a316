"""One neuron card under one input-current stimulus, in torch or in ngspice, and their comparison.

Stimuli are held current samples (one per time step, zero-order hold), so both
simulators see the identical waveform (ngspice gets a PWL source with the same
steps). :func:`compare` interpolates the ngspice trace onto the torch grid and
reports (a) the largest waveform difference relative to the spike amplitude and
(b) the largest spike-time difference in time steps, the two criteria of the
neuron checks of ``memsim verify``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import spice  # loads ngspice on first use: importing this module needs no ngspice
from .cards import NeuronCard
from .dynamics import NeuronDynamics
from .netlist import ports, testbench

#: waveform tolerance: max |V_torch - V_spice| / spike amplitude
WAVEFORM_TOLERANCE = 0.01
#: spike-time tolerance in time steps
SPIKE_TIME_TOLERANCE = 1.0


@dataclass
class NeuronStimulus:
    label: str
    current: np.ndarray     # A, one held sample per step
    synapse: bool           # route through the alpha synapse


@dataclass
class NeuronTrace:
    source: str
    t: np.ndarray           # s
    v: np.ndarray           # membrane voltage, V
    states: np.ndarray      # [len(t), S] the circuit's state components (V first)


def standard_stimuli(card: NeuronCard, dt: float | None = None) -> list[NeuronStimulus]:
    """Current step, current ramp, irregular (Poisson, seeded) spike train through the synapse."""
    spec, dt = card.verify, dt or card.dt
    n = int(round(spec.duration / dt))
    step = np.zeros(n)
    step[n // 10:] = spec.step_current
    ramp = np.linspace(0.0, spec.ramp_current, n)
    rng = np.random.default_rng(spec.seed)
    train = np.zeros(n)
    train[rng.random(n) < spec.train_rate * dt] = spec.train_amplitude
    return [NeuronStimulus(f"step {spec.step_current:.3g} A", step, False),
            NeuronStimulus(f"ramp to {spec.ramp_current:.3g} A", ramp, False),
            NeuronStimulus(f"spike train {spec.train_rate:g} Hz", train, True)]


def torch_trace(card: NeuronCard, stim: NeuronStimulus, dt: float | None = None, *, substeps: int | None = None,
                dtype: torch.dtype = torch.float64, device: str = "cpu") -> NeuronTrace:
    dyn = NeuronDynamics(card, dt=dt, synapse=stim.synapse, substeps=substeps)
    x = torch.as_tensor(stim.current, dtype=dtype, device=device).view(-1, 1, 1)
    y0 = dyn.initial_state(1, 1, dtype, device)
    with torch.no_grad():
        out = dyn.run(x, y0, spikes=False, return_states=True)
    st = torch.cat([y0[None], out.states])[:, 0, 0].cpu().double().numpy()
    t = np.arange(len(st)) * dyn.dt
    nc = len(card.circuit.state_names)
    return NeuronTrace("torch", t, st[:, 0], st[:, :nc])


def spice_trace(card: NeuronCard, stim: NeuronStimulus, dt: float | None = None,
                max_step: float | None = None) -> NeuronTrace:
    dt = dt or card.dt
    result = spice.run(testbench(card, stim.current, dt, synapse=stim.synapse, max_step=max_step or dt / 10))
    names = ["mem"] + ports(card)[1:] if card.type == "mif" else ["mem", "xs"]
    states = np.stack([result[f"v({n})"] for n in names], axis=1)
    return NeuronTrace("spice", result["time"], states[:, 0], states)


def spike_times(t: np.ndarray, signal: np.ndarray, level: float) -> np.ndarray:
    """Times of upward crossings of ``level`` (linear interpolation between samples)."""
    below = signal[:-1] < level
    above = signal[1:] >= level
    idx = np.nonzero(below & above)[0]
    frac = (level - signal[idx]) / (signal[idx + 1] - signal[idx])
    return t[idx] + frac * (t[idx + 1] - t[idx])


def compare(card: NeuronCard, model: NeuronTrace, ref: NeuronTrace, dt: float) -> dict:
    p, devs = card.namespaces()
    rule = card.circuit.spike_rule(p, devs)
    v_ref = np.interp(model.t, ref.t, ref.v)
    amplitude = float(ref.v.max() - ref.v.min())
    wave = float(np.max(np.abs(model.v - v_ref)) / amplitude) if amplitude > 0 else float("inf")
    ts_m = spike_times(model.t, model.states[:, rule.component], rule.level)
    # both on the torch grid: a spike is a crossing between two samples (sub-step wiggles of the
    # dense ngspice trace around the level are not separate spikes at this time resolution)
    ts_r = spike_times(model.t, np.interp(model.t, ref.t, ref.states[:, rule.component]), rule.level)
    if len(ts_m) == len(ts_r):
        shift = float(np.max(np.abs(ts_m - ts_r)) / dt) if len(ts_m) else 0.0
    else:
        shift = float("inf")
    return {"waveform_error": wave, "spike_shift_steps": shift, "amplitude": amplitude,
            "spikes_torch": len(ts_m), "spikes_spice": len(ts_r), "spike_times_torch": ts_m,
            "spike_times_spice": ts_r}
