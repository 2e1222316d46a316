"""Synthetic measurements from ngspice: a card with hidden parameters, a stimulus, noise added; and LTP/LTD curves
of a behavioural pulse card with hidden parameters.

Used by the tests, the benchmark and the notebook to check that a fit recovers what it should. The reference is
ngspice running the card's generated subcircuit, never the torch twin that the fit uses. A behavioural curve has
no circuit: it is the published per-pulse formula (:mod:`memsim.pulse.families`), with the card's own
cycle-to-cycle noise drawn from a seeded generator, plus read noise.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write_text
from ..devices.cards import Card, with_parameters
from ..devices.simulate import spice_trace
from ..stimuli import Sine
from ..pulse.response import BehaviouralResponse
from .data import Group
from .protocol import PulseTiming, pulse_protocol, spice_observe

#: relative perturbations of the hidden parameters used by the benchmark and the tests (fixed, reproducible)
PERTURBATION = (1.25, 0.8, 1.15, 0.9, 1.3, 0.85, 1.1, 0.75)


def hidden_parameters(card: Card, free: list[str], factors=PERTURBATION) -> dict[str, float]:
    """``card``'s values with each free parameter scaled by the next factor (x0 moved by 0.05 towards 0.5)."""
    out = {}
    for name, f in zip(free, factors * (len(free) // len(factors) + 1)):
        v = card.parameters[name]
        out[name] = v + (0.05 if v < 0.5 else -0.05) if name == "x0" else v * f
    return out


def iv_sweep(card: Card, hidden: dict[str, float], *, amplitude: float | None = None, frequency: float | None = None,
             cycles: float = 2.0, points: int = 400, noise: float = 0.01, seed: int = 0) -> dict[str, np.ndarray]:
    """time, voltage, current of a sine sweep simulated in ngspice, current noise ``noise`` x peak |I| (Gaussian)."""
    truth = with_parameters(card, **hidden)
    amp = amplitude or card.verify.amplitude
    freq = frequency or card.verify.frequencies[0]
    stim = Sine(amp, freq, cycles=cycles)
    dt = stim.duration / (points - 1)
    ref = spice_trace(truth, stim, min(dt, stim.max_dt) / 20)
    t = np.linspace(0.0, stim.duration, points)
    i = np.interp(t, ref.t, ref.i)
    v = amp * np.sin(2 * np.pi * freq * t)
    rng = np.random.default_rng(seed)
    return {"time": t, "voltage": v, "current": i + noise * np.max(np.abs(i)) * rng.standard_normal(points)}


def pulse_curve(card: Card, hidden: dict[str, float], *, set_voltage: float, reset_voltage: float, width: float,
                count: int, timing: PulseTiming = PulseTiming(), noise: float = 0.01, seed: int = 0) -> dict:
    """A read, ``count`` SET pulses then ``count`` RESET pulses, conductance read after each (ngspice)."""
    truth = with_parameters(card, **hidden)
    amps = np.array([0.0] + [set_voltage] * count + [reset_voltage] * count)
    widths = np.array([width] * len(amps))
    group = Group("all", np.arange(1, len(amps) + 1), {"amplitude": amps, "width": widths,
                                                       "conductance": np.ones_like(amps)})
    g = spice_observe(truth, pulse_protocol(group, timing))
    rng = np.random.default_rng(seed)
    return {"amplitude": amps, "width": widths, "conductance": g * (1 + noise * rng.standard_normal(len(g)))}


def polarity_curve(card, polarities, *, g0: float | None = None, noise: float = 0.01, seed: int = 0) -> dict:
    """``polarity``, ``conductance`` of a pulse train through a pulse card (:class:`memsim.pulse.PulseCard`, its
    noise included), read with Gaussian noise of ``noise`` x G. The first row is a read before any pulse
    (polarity 0) at ``g0`` (default: G_min when the train starts with potentiation, else G_max)."""
    response = BehaviouralResponse(card)
    pol = [int(p) for p in polarities]
    start = g0 if g0 is not None else (response.g_min if pol[0] > 0 else response.g_max)
    gen = torch.Generator().manual_seed(seed)
    g = torch.tensor([float(start)], dtype=torch.float64)
    out = [g]
    for p in pol:
        g = response.update(g, p, 1, generator=gen, check=False)
        out.append(g)
    g = torch.cat(out).numpy()
    rng = np.random.default_rng(seed)
    return {"polarity": np.array([0] + pol), "conductance": g * (1 + noise * rng.standard_normal(len(g)))}


def write_csv(path, columns: dict[str, np.ndarray], group: dict[str, np.ndarray] | None = None) -> Path:
    """Write columns (and optional group labels) as CSV, full precision."""
    names = list(group or {}) + list(columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    n = len(next(iter(columns.values())))
    for k in range(n):
        w.writerow([group[c][k] for c in (group or {})] + [repr(float(columns[c][k])) for c in columns])
    return atomic_write_text(path, buf.getvalue())


def stack(parts: list[dict[str, np.ndarray]], labels: list[str], column: str) -> tuple[dict, dict]:
    """Concatenate several experiments into one table told apart by ``column``."""
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    lab = np.concatenate([[lab] * len(next(iter(p.values()))) for p, lab in zip(parts, labels)])
    return cols, {column: lab}
