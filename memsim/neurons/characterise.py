"""Characterisation of a neuron card: waveform (SPICE vs torch), f-I curve, phase portrait.

Both neurons are *phasic*: under a constant current they fire once at the onset
and settle (the vLIF's two-state vector field has negative divergence
everywhere, so by Bendixson-Dulac it has no limit cycle; the MIF settles at a
fixed point with M1 partly ON). The f-I curve is therefore measured with a
seeded Poisson input pulse train through the alpha synapse, the drive these
neurons see in a network: output rate against the mean input current, with the
pulse amplitude swept (one batched torch run).
"""
from __future__ import annotations

import numpy as np
import torch

from ..plots import pyplot
from .cards import NeuronCard
from .dynamics import NeuronDynamics
from .simulate import spike_times


def fi_curve(card: NeuronCard, amplitudes, *, input_rate: float = 3000.0, duration: float = 10e-3,
             seed: int = 0, dtype=torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """(mean input current in A, output rate in Hz) for one seeded Poisson pulse train of ``input_rate`` (Hz)
    through the alpha synapse, scaled to each of the given pulse amplitudes (A); one batched torch run."""
    amplitudes = np.asarray(amplitudes, dtype=float)
    dyn = NeuronDynamics(card, synapse=True)
    n = int(round(duration / dyn.dt))
    g = torch.Generator().manual_seed(seed)
    pulses = (torch.rand(n, generator=g, dtype=torch.float64) < input_rate * dyn.dt).to(dtype)
    x = pulses.view(n, 1, 1) * torch.as_tensor(amplitudes, dtype=dtype).view(1, 1, -1)
    with torch.no_grad():
        out = dyn.run(x)
    rate = out.spikes.sum(0)[0].double().cpu().numpy() / (n * dyn.dt)
    mean_current = amplitudes * float(pulses.double().mean())
    return mean_current, rate


def figure(card: NeuronCard, traces, fi, *, title: str | None = None):
    """``traces``: list of (label, torch NeuronTrace, spice NeuronTrace or None); ``fi``: (current, rate)."""
    p, devs = card.namespaces()
    rule = card.circuit.spike_rule(p, devs)
    n = len(traces)
    fig = pyplot().figure(figsize=(4.8 * max(n, 3), 8.0))
    grid = fig.add_gridspec(2, max(n, 3))
    for k, (label, model, ref) in enumerate(traces):
        ax = fig.add_subplot(grid[0, k])
        if ref is not None:
            ax.plot(ref.t * 1e3, ref.v * 1e3, color="0.6", lw=3.5, label="ngspice")
        ax.plot(model.t * 1e3, model.v * 1e3, color="C0", lw=1.1, label="torch (RK4, sub-stepped)")
        for n_spike, ts in enumerate(spike_times(model.t, model.states[:, rule.component], rule.level)):
            ax.axvline(ts * 1e3, color="C3", lw=0.6, alpha=0.5, label=None if n_spike else "spike (torch)")
        ax.set(title=f"{card.name}: {label}", xlabel="time (ms)", ylabel="membrane V (mV)")
        ax.legend(loc="best", fontsize=8)
    ax = fig.add_subplot(grid[1, 0])
    current, rate = fi
    ax.plot(np.asarray(current) * 1e6, rate, "o-", color="C2", label="torch")
    ax.set(title="f-I curve (Poisson pulse-train drive, 3 kHz)", xlabel="mean input current (µA)",
           ylabel="output rate (Hz)")
    ax.legend(loc="best", fontsize=8)
    ax = fig.add_subplot(grid[1, 1])
    label, model, ref = traces[-1]
    names = card.circuit.state_names
    # the dense ngspice trace resolves the one-step upstroke; the torch trace is sampled at dt
    src = ref if ref is not None else model
    for j in range(1, len(names)):
        ax.plot(src.v * 1e3, src.states[:, j], lw=1.0, label=names[j])
    ax.set(title=f"phase portrait ({label}, {'ngspice' if ref is not None else 'torch'})",
           xlabel="membrane V (mV)", ylabel="memristor state")
    ax.legend(loc="best", fontsize=8)
    ax = fig.add_subplot(grid[1, 2])
    for j in range(1, len(names)):
        ax.plot(model.t * 1e3, model.states[:, j], lw=1.0, label=names[j])
    if rule.component:
        ax.axhline(rule.level, color="C3", lw=0.6, ls="--", label=f"spike level {rule.level:g}")
    ax.set(title="memristor states", xlabel="time (ms)", ylabel="normalised state")
    ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
