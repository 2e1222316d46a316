"""Figures written to files (PNG/SVG). matplotlib runs headless (Agg).

matplotlib takes about half a second to import, so it is imported when the first figure is drawn
(:func:`pyplot`), not with this module: the modules that compute and also draw (the training loop, IR-drop maps,
neuron characterisation, sweep plots) import this one at their top, and a run that draws nothing (``memsim
--help``, a sweep worker, training with ``output.plot = false``) never loads matplotlib.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


@functools.cache
def pyplot():
    """``matplotlib.pyplot``, its backend set to the headless Agg on the first call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str | Path) -> Path:
    """Write atomically-enough for figures: render to a sibling temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    pyplot().close(fig)
    tmp.replace(path)
    return path


def hysteresis_figure(card_name: str, traces: list[tuple[str, object, object | None]]):
    """I-V loops and time traces. ``traces``: (label, torch Trace, spice Trace or None) per stimulus."""
    n = len(traces)
    fig, axes = pyplot().subplots(2, n, figsize=(4.6 * n, 7.2), squeeze=False)
    for k, (label, model, ref) in enumerate(traces):
        ax = axes[0, k]
        scale, unit = _current_scale(np.max(np.abs(model.i)))
        if ref is not None:
            ax.plot(ref.v, ref.i * scale, color="0.6", lw=3.5, label="ngspice")
        ax.plot(model.v, model.i * scale, color="C0", lw=1.2, label="torch RK4")
        ax.set(title=f"{card_name}\n{label}", xlabel="voltage (V)", ylabel=f"current ({unit})")
        ax.axhline(0, color="k", lw=0.4)
        ax.axvline(0, color="k", lw=0.4)
        ax.legend(loc="best", fontsize=8)
        ax2 = axes[1, k]
        tscale, tunit = _time_scale(model.t[-1])
        if ref is not None:
            ax2.plot(ref.t * tscale, ref.x, color="0.6", lw=3.5, label="state, ngspice")
        ax2.plot(model.t * tscale, model.x, color="C1", lw=1.2, label="state, torch")
        ax2.set(xlabel=f"time ({tunit})", ylabel="normalised state x", ylim=(-0.03, 1.03))
        twin = ax2.twinx()
        twin.plot(model.t * tscale, model.v, color="C2", lw=0.8, alpha=0.7, label="voltage (right axis)")
        twin.set_ylabel("voltage (V)", color="C2")
        handles = ax2.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax2.legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _current_scale(peak: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "A"), (1e3, "mA"), (1e6, "µA"), (1e9, "nA")):
        if peak * scale >= 1:
            return scale, unit
    return 1e12, "pA"


def _time_scale(span: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
        if span * scale >= 1:
            return scale, unit
    return 1e12, "ps"
