"""IR-drop maps of one tile: how far each cell's voltage falls below its input, and the output error.

Used by ``memsim crossbar irdrop`` and the crossbar notebook. Two weight patterns per preset:

* ``random`` - cell conductances uniform in the cell window (seeded);
* ``all-on`` - every cell at the top of the window (the worst case for IR drop).

Every word line is driven at the full input voltage ``v_max``. The drop of cell (i, j) is
``v_in[i] - (v_wordline[i, j] - v_bitline[i, j])`` (V); the output error of column j is
``(I_j - I_j^ideal) / max_k |I_k^ideal|`` with ``I^ideal = v @ G`` (no wires).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError
from ..plots import pyplot
from ..progress import progress_bar
from .mapping import state_for_conductance
from .operator import check_memory, tile_operator
from .presets import Preset, load_preset
from .solver import memristor_for_cell, solve_ideal, solve_linear_nodes, solve_nonlinear

PATTERNS = ("random", "all-on")


@dataclass
class IRDropMap:
    pattern: str
    drop: np.ndarray        # [rows, cols] V
    i_out: np.ndarray       # [cols] A
    i_ideal: np.ndarray     # [cols] A
    v_in: float

    @property
    def col_error(self) -> np.ndarray:
        return (self.i_out - self.i_ideal) / np.max(np.abs(self.i_ideal))

    @property
    def max_error(self) -> float:
        return float(np.max(np.abs(self.col_error)))

    @property
    def max_drop(self) -> float:
        return float(np.max(self.drop))


def pattern_conductance(preset: Preset, pattern: str, seed: int = 0) -> torch.Tensor:
    """Cell (memristor) conductances [rows, cols] in S of a named pattern, inside the card window."""
    lo, hi = preset.cell_window()
    if pattern == "random":
        gen = torch.Generator().manual_seed(seed)
        gc = lo + (hi - lo) * torch.rand(preset.rows, preset.cols, generator=gen, dtype=torch.float64)
    elif pattern == "all-on":
        gc = torch.full((preset.rows, preset.cols), hi, dtype=torch.float64)
    else:
        raise ParameterError("pattern", pattern, f"one of {list(PATTERNS)}", "choose a weight pattern")
    g = memristor_for_cell(gc, preset.circuit)  # the memristor behind the access transistor (1T1R)
    return g.clamp(preset.g_min, preset.g_max)  # removes float rounding only


def irdrop_map(preset: Preset | str, pattern: str, seed: int = 0, cells: str = "linear") -> IRDropMap:
    """Node solution of one full tile of ``preset`` with all inputs at ``v_max``."""
    preset = load_preset(preset)
    g = pattern_conductance(preset, pattern, seed)
    v = torch.full((1, preset.rows), preset.v_max, dtype=torch.float64)
    if cells == "linear":
        sol = solve_linear_nodes(g, v, preset.circuit)
    else:
        x = state_for_conductance(preset.card, g, preset.v_read).detach()
        sol = solve_nonlinear(preset.card, x, v, preset.circuit, return_nodes=True)
    drop = preset.v_max - (sol.v_wordline[0] - sol.v_bitline[0])
    ideal = solve_ideal(g, v, preset.circuit)[0].numpy()
    return IRDropMap(pattern, drop, np.asarray(sol.i_out[0]), ideal, preset.v_max)


def irdrop_figure(preset: Preset, maps: list[IRDropMap]):
    fig, axes = pyplot().subplots(len(maps), 2, figsize=(11, 4.2 * len(maps)), squeeze=False)
    for row, m in zip(axes, maps):
        im = row[0].imshow(m.drop * 1e3, cmap="magma", aspect="auto", origin="upper")
        row[0].set(title=f"{m.pattern}: cell voltage drop (max {m.max_drop * 1e3:.2f} mV of {m.v_in * 1e3:.0f} mV)",
                   xlabel="column j (bit line; sense amp at bottom)", ylabel="row i (word line; driver at left)")
        fig.colorbar(im, ax=row[0], label="v_in - v_cell (mV)")
        row[1].bar(np.arange(len(m.col_error)), m.col_error * 100, color="tab:red")
        row[1].set(title=f"{m.pattern}: column current error vs ideal V.G (max {m.max_error:.2%})",
                   xlabel="column j", ylabel="(I - I_ideal) / max|I_ideal| (%)")
        row[1].axhline(0, color="k", lw=0.5)
    w = preset.circuit.wires
    fig.suptitle(f"{preset.name}: {preset.rows}x{preset.cols} {preset.circuit.access}, wires "
                 f"{w.r_wordline:g}/{w.r_bitline:g} Ohm per segment, driver {w.r_source:g} Ohm")
    fig.tight_layout()
    return fig


@dataclass
class SizeSweep:
    """Column-current error against the ideal product per tile size and wire resistance, with precompute times."""

    preset: str
    sizes: list[int]
    wires: list[float]
    error: np.ndarray        # [len(wires), len(sizes)]: max_j |I_j - I_ideal_j| / max|I_ideal|
    seconds: np.ndarray      # [len(wires), len(sizes)]: the operator's precompute time (s)
    cache_mb: list[float]    # per size: one tile's operator in float64 (MB)

    def table(self) -> str:
        head = f"{'tile':>9} | " + " | ".join(f"error @ {r:g} Ohm" for r in self.wires) + \
               " | precompute (s) | operator (MB)"
        lines = [head, "-" * len(head)]
        for k, n in enumerate(self.sizes):
            errs = " | ".join(f"{self.error[a, k]:>13.3%}" for a in range(len(self.wires)))
            lines.append(f"{n:>4}x{n:<4} | {errs} | {self.seconds[:, k].mean():>14.3f} | {self.cache_mb[k]:>13.2f}")
        return "\n".join(lines)


def size_sweep(preset: Preset | str, sizes, wires=(0.1, 1.0, 2.5), pattern: str = "random", seed: int = 0,
               progress: bool = False) -> SizeSweep:
    """IR-drop error of one ``pattern`` tile of each size (all inputs at ``v_max``) through the exact operator."""
    preset = load_preset(preset)
    sizes, wires = [int(n) for n in sizes], [float(r) for r in wires]
    for n in sizes:
        check_memory(1, n, n)  # before any work: a clear error for a tile that will not fit
    err = np.zeros((len(wires), len(sizes)))
    sec = np.zeros_like(err)
    tile_operator(pattern_conductance(preset.replace(rows=2, cols=2), pattern, seed), preset.circuit)  # warm-up
    jobs = [(a, k) for a in range(len(wires)) for k in range(len(sizes))]
    for a, k in progress_bar(jobs, desc="IR drop per tile size", disable=not progress):
        p = preset.replace(rows=sizes[k], cols=sizes[k], r_wire=wires[a])
        g = pattern_conductance(p, pattern, seed)
        v = torch.full((1, p.rows), p.v_max, dtype=torch.float64)
        t0 = time.perf_counter()
        op = tile_operator(g, p.circuit)
        sec[a, k] = time.perf_counter() - t0
        err[a, k] = float(((v @ op - solve_ideal(g, v, p.circuit)).abs().max() /
                           solve_ideal(g, v, p.circuit).abs().max()))
    return SizeSweep(preset.name, sizes, wires, err, sec, [n * n * 8 / 2**20 for n in sizes])


def size_sweep_figure(s: SizeSweep):
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for a, r in enumerate(s.wires):
        ax.plot(s.sizes, 100 * s.error[a], "o-", label=f"{r:g} Ohm per segment")
    ax.set(xscale="log", yscale="log", xlabel="tile size N (N x N)", ylabel="max |I - I_ideal| / max |I_ideal| (%)",
           title=f"{s.preset}: column-current error from IR drop")
    ax.legend()
    bx.plot(s.sizes, s.seconds.mean(0), "s-", color="k", label="exact operator (banded sweep)")
    bx.set(xscale="log", yscale="log", xlabel="tile size N (N x N)", ylabel="precompute per tile (s)",
           title="operator precompute time per tile")
    bx.legend()
    for a_ in (ax, bx):  # after the log scale, which would reset them
        a_.set_xticks(s.sizes, [str(n) for n in s.sizes])
        a_.xaxis.set_minor_locator(plt.NullLocator())
    fig.tight_layout()
    return fig
