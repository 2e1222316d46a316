"""A weight matrix on crossbar tiles: mapping, programming, DAC, tile solve, ADC, partial sums.

:class:`CrossbarArray` computes ``y = x @ W.T`` the way a tiled analog array does:

1. normalise ``W`` by its largest magnitude and map it to conductances (differential
   pairs or an offset/reference column) inside the card's window, quantised to the
   preset's levels (straight-through gradient);
2. pack the conductances onto ``(rows, cols)`` tiles and program them (programming
   noise, device-to-device variation, drift, stuck-at faults; all seeded);
3. convert the inputs to word-line voltages with the DAC;
4. solve every tile in the chosen mode:

   * ``ideal``   - ``V @ G``, no quantisation, noise, converters or wires (equals ``F.linear``);
   * ``noisy``   - quantised and noisy, with DAC/ADC, ideal wires;
   * ``irdrop``  - as ``noisy`` plus the exact nodal solve with wire resistance
     (linear cells at the read-voltage chord conductance; sparse LU, adjoint backward);
   * ``approx``  - as ``irdrop`` but with the fast fixed-point IR-drop estimate (pure torch);
   * ``nonlinear`` - as ``irdrop`` with the card's own I-V (Newton per input vector; slow, exact);

5. add read noise, subtract the pair/reference columns, digitise each tile column with
   the ADC, and add the partial sums of the tiles that share outputs;
6. scale the currents back to the weight units.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import ParameterError
from .mapping import state_for_conductance
from .nonideal import FixedDefects, NonIdealities, generator, noise_std, program
from .presets import Preset, load_preset
from .solver import (effective_conductance, factor_tile, memristor_for_cell, solve_approx, solve_linear,
                     solve_nonlinear)
from .tiling import TileGrid

MODES = ("ideal", "noisy", "irdrop", "approx", "nonlinear")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ParameterError("mode", mode, f"one of {list(MODES)}", "choose how the array is simulated")
    return mode


class CrossbarArray:
    """An ``(out_features, in_features)`` weight matrix on the tiles of ``preset``."""

    def __init__(self, preset: Preset | str, out_features: int, in_features: int, *, mode: str = "noisy",
                 noise: NonIdealities | None = None, approx_iterations: int = 3, grid=None):
        self.preset = load_preset(preset)
        self.mode = check_mode(mode)
        self.noise = self.preset.noise if noise is None else noise
        if not isinstance(self.noise, NonIdealities):
            raise ParameterError("noise", self.noise, "a memsim.crossbar.NonIdealities", "build one or pass None")
        # The layout of the weights on tiles: dense tiling by default. Any object with TileGrid's interface
        # (pack, pack_inputs, column_signal, combine, tiles, utilisation) can place them otherwise.
        self.grid = grid if grid is not None else TileGrid(out_features, in_features, self.preset.rows,
                                                           self.preset.cols, self.preset.scheme)
        self.mapping = self.preset.mapping()
        self.approx_iterations = approx_iterations
        self.reset_noise()
        self._defects: FixedDefects | None = None
        self._defect_seed: int | None = None  # None: the chip of noise.seed
        self._factors: tuple | None = None  # (programmed g, its version, {(r, c): LU factors}) for irdrop reads

    def reset_noise(self) -> None:
        """Restart the per-programming and per-read noise streams from the seed."""
        self._gen_program = generator(self.noise.seed, "program")
        self._gen_read = generator(self.noise.seed, "read")

    def reseed(self, seed: int) -> None:
        """Become the chip of ``seed``: its fixed defects and its programming and read noise streams."""
        self.noise = replace(self.noise, seed=int(seed))
        self.reset_noise()
        self._defects, self._defect_seed = None, None

    def redraw_defects(self, seed: int) -> None:
        """Draw another chip's fixed defects (d2d factors, stuck cells) from ``seed`` at the next programming.

        Hardware-aware training calls this every batch, so the weights learn to tolerate defects in general
        rather than the one chip of ``noise.seed`` (which evaluation then draws afresh per seed)."""
        self._defect_seed = int(seed)
        self._defects = None

    @property
    def quantised(self) -> bool:
        return self.mode != "ideal"

    # -- programming ------------------------------------------------------------
    def conductances(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Programmed tile conductances [n_row_tiles, n_col_tiles, rows, cols] (S) and the weight scale."""
        if weight.shape != (self.grid.out_features, self.grid.in_features):
            raise ParameterError("weight.shape", tuple(weight.shape),
                                 f"({self.grid.out_features}, {self.grid.in_features})", "pass the layer's (out, in) matrix")
        if not torch.isfinite(weight).all():
            raise ParameterError("weight", "NaN/inf entries", "finite weights", "check the training for divergence")
        w_scale = weight.detach().abs().max().clamp_min(torch.finfo(weight.dtype).tiny)
        mp = self.mapping
        if self.quantised:
            gs = mp.to_conductance(weight / w_scale)
        else:
            wn = weight / w_scale
            gs = [mp.g_min + mp.delta * torch.relu(wn), mp.g_min + mp.delta * torch.relu(-wn)] \
                if mp.scheme == "differential" else [mp.g_min + mp.delta * 0.5 * (wn + 1.0)]
        g = self.grid.pack(gs, mp.g_min, mp.g_ref)
        if self.quantised and self.preset.circuit.access == "1T1R":  # memristor conductance behind the transistor
            g = memristor_for_cell(g, self.preset.circuit)
        if self.quantised and self.noise.any:
            if self._defects is None or self._defects.shape != tuple(g.shape):
                chip = self.noise if self._defect_seed is None else replace(self.noise, seed=self._defect_seed)
                self._defects = FixedDefects(g.shape, chip, g)
            g = program(g, self.noise, self.preset.g_min, self.preset.g_max, self._defects, self._gen_program)
        return g, w_scale

    # -- the product --------------------------------------------------------------
    def forward(self, weight: torch.Tensor, x: torch.Tensor, x_scale=None, g: torch.Tensor | None = None,
                w_scale=None) -> torch.Tensor:
        """``x @ weight.T`` through the array; ``x`` is [B, in_features]. ``g``/``w_scale``: pre-programmed tiles."""
        if x.dim() != 2 or x.shape[1] != self.grid.in_features:
            raise ParameterError("input.shape", tuple(x.shape), f"[batch, {self.grid.in_features}]",
                                 "the last dimension must equal in_features")
        if not torch.isfinite(x).all():
            raise ParameterError("input", "NaN/inf entries", "finite inputs", "check the previous layer")
        if g is None:
            g, w_scale = self.conductances(weight)
        p, mp, grid = self.preset, self.mapping, self.grid
        if x_scale is None:
            x_scale = x.detach().abs().max()
        x_scale = torch.as_tensor(x_scale, dtype=x.dtype, device=x.device).clamp_min(torch.finfo(x.dtype).tiny)
        v_max = p.v_max
        if self.quantised and p.dac is not None:
            v = p.dac(x, x_scale)
        else:
            v = x / x_scale * v_max
        vt = grid.pack_inputs(v)  # [B, nr, rows]
        i = self._tiles(g, vt)   # [B, nr, nc, cols]
        if self.quantised and self.noise.read:
            gc = effective_conductance(g, p.circuit)  # the cell current's conductance (1T1R: with g_T in series)
            std = noise_std(torch.einsum("bri,rcij->brcj", vt * vt, gc * gc))
            noise = torch.randn(i.shape, generator=self._gen_read, dtype=torch.float64).to(i)
            i = i + self.noise.read * std * noise
        y = grid.column_signal(i)  # [B, nr, nc, opt]
        if self.quantised and p.adc is not None:
            y = p.adc(y, p.adc.full_scale(p.rows, v_max, mp.delta))
        y = grid.combine(y)
        return y * (x_scale * w_scale / (mp.gain * v_max))

    __call__ = forward

    def _tiles(self, g: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
        mode, circuit = self.mode, self.preset.circuit
        if mode in ("ideal", "noisy"):
            if circuit.access == "1T1R" and mode == "noisy":
                g = effective_conductance(g, circuit)
            return torch.einsum("bri,rcij->brcj", vt, g)
        nr, nc = g.shape[:2]
        factors = None
        if mode == "irdrop" and not g.requires_grad:  # a programmed chip read many times: factor each tile once
            if self._factors is None or self._factors[0] is not g or self._factors[1] != g._version:
                self._factors = (g, g._version, {})
            factors = self._factors[2]
        out = []
        for r in range(nr):
            row = []
            for c in range(nc):
                if mode == "irdrop":
                    f = None
                    if factors is not None:
                        f = factors.get((r, c))
                        if f is None:
                            f = factors[(r, c)] = factor_tile(g[r, c], circuit)
                    row.append(solve_linear(g[r, c], vt[:, r], circuit, factors=f))
                elif mode == "approx":
                    row.append(solve_approx(g[r, c], vt[:, r], circuit, self.approx_iterations))
                else:
                    x = state_for_conductance(self.preset.card, g[r, c].clamp(self.preset.g_min, self.preset.g_max),
                                              self.preset.v_read)
                    row.append(solve_nonlinear(self.preset.card, x, vt[:, r].double(), circuit).to(vt.dtype))
            out.append(torch.stack(row, 1))
        return torch.stack(out, 1)
