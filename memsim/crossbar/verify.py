"""The crossbar tile solver against ngspice ``.op``: the checks behind ``memsim verify crossbar`` and the tests.

For a preset, one small tile (``VERIFY_SIZE`` cells square, the preset's wires and access device)
is solved by memsim and by ngspice on the netlist written by :mod:`memsim.crossbar.netlist`:

* linear cells (conductances drawn in the preset's window): column currents within
  :data:`LINEAR_TOLERANCE` relative;
* the card's own nonlinear I-V at random states (Newton), for nonlinear cards: within
  :data:`NONLINEAR_TOLERANCE` relative.

The error is ``max_j |I_j - I_j^spice| / max_j |I_j^spice|`` over the column currents.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from .. import checks
from .netlist import run_tile
from .presets import Preset, list_presets, load_preset
from .solver import relative_error, solve_linear, solve_nonlinear

LINEAR_TOLERANCE = 1e-9
NONLINEAR_TOLERANCE = 1e-6
VERIFY_SIZE = 8
METRIC = "max|I - I_spice| / max|I_spice| (column currents, .op)"


def random_tile(preset: Preset, size: int, seed: int = 0, v_scale: float = 1.0):
    """Conductances [size, size] (S) in the card window, states in [0, 1], inputs [size] (V), seeded."""
    gen = torch.Generator().manual_seed(seed)
    g = preset.g_min + (preset.g_max - preset.g_min) * torch.rand(size, size, generator=gen, dtype=torch.float64)
    x = torch.rand(size, size, generator=gen, dtype=torch.float64)
    v = v_scale * preset.v_max * (2 * torch.rand(size, generator=gen, dtype=torch.float64) - 1)
    return g, x, v


def compare_tile(preset: Preset, size: int, cells: str, seed: int = 0, v_scale: float = 1.0) -> dict:
    """Solve one ``size`` x ``size`` tile of ``preset`` with memsim and ngspice; returns errors and currents."""
    g, x, v = random_tile(preset, size, seed, v_scale)
    circuit = preset.circuit
    if cells == "linear":
        mine = solve_linear(g, v[None], circuit)[0].numpy()
        ref = run_tile(v.numpy(), circuit, g=g.numpy())
        tol = LINEAR_TOLERANCE
    elif cells == "nonlinear":
        mine = solve_nonlinear(preset.card, x, v[None], circuit)[0].numpy()
        ref = run_tile(v.numpy(), circuit, card=preset.card, x=x.numpy())
        tol = NONLINEAR_TOLERANCE
    else:
        raise ValueError(cells)
    return {"error": relative_error(mine, ref), "tolerance": tol, "memsim": mine, "spice": ref,
            "peak": float(np.max(np.abs(ref)))}


def crossbar_checks(names: list[str] | None = None) -> Iterable[checks.Check]:
    known = list_presets()
    # names may mix device cards and presets (memsim verify --model ...): take the presets
    for name in (known if names is None else [n for n in names if n in known]):
        preset = load_preset(name)
        size = min(VERIFY_SIZE, preset.rows, preset.cols)
        kinds = ["linear"] + (["nonlinear"] if preset.nonlinear else [])
        for cells in kinds:
            label = f"{size}x{size} {preset.circuit.access} {cells}"

            def run(preset=preset, size=size, cells=cells, label=label) -> checks.CheckResult:
                r = compare_tile(preset, size, cells)
                return checks.CheckResult("crossbar", preset.name, label, METRIC, r["error"], r["tolerance"],
                                          f"peak={r['peak']:.3g}A wires={preset.circuit.wires.r_wordline}Ohm")

            yield checks.Check("crossbar", preset.name, label, run)


checks.register("crossbar", crossbar_checks)
