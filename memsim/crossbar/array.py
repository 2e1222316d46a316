"""A weight matrix on crossbar tiles: mapping, programming, DAC, tile solve, ADC, partial sums.

:class:`CrossbarArray` computes ``y = x @ W.T`` the way a tiled analog array does:

1. normalise ``W`` by its largest magnitude and map it to conductances (differential
   pairs or an offset/reference column) inside the card's window, quantised to the
   preset's levels (straight-through gradient);
2. pack the conductances onto ``(rows, cols)`` tiles and program them (programming
   noise, device-to-device variation, drift, stuck-at faults; all seeded);
3. convert the inputs to word-line voltages with the DAC;
4. solve every tile in the chosen mode:

   * ``ideal``   - ``V @ G``, no quantisation, noise, converters or wires. Mapping and tiling are then
     exact identities (the pair columns cancel ``g_min``, partial sums add exactly), so it is computed
     untiled, as ``F.linear``; the tests check that against the tiled product;
   * ``noisy``   - quantised and noisy, with DAC/ADC, ideal wires (a read that programs the chip, i.e. a
     training step, runs mapping, programming and the transistor as one fused kernel,
     :mod:`memsim.crossbar.fused`, with the same draws and values);
   * ``irdrop``  - as ``noisy`` plus exact IR drop: every tile's linear operator ``A`` (cells at their
     read-voltage chord conductance, :func:`memsim.crossbar.operator.tile_operator`) is computed once per
     programmed state and cached, and each read is ``V @ A``. For a nonlinear card this is the
     linearised model (chord conductances at ``v_read``);
   * ``nonlinear`` - as ``irdrop`` with the card's own I-V (Newton per input vector; slow, exact);

5. add read noise, subtract the pair/reference columns, digitise each tile column with
   the ADC, and add the partial sums of the tiles that share outputs;
6. scale the currents back to the weight units.

Bit-serial inputs (``[dac] slice_bits``) read the tiles once per input slice (the slices ride along the batch
dimension); bit-sliced weights (``[mapping] weight_bits``, ``cell_bits``) repeat the tile grid once per weight
slice (``[n_row_tiles, slices * n_col_tiles, rows, cols]``, slice-major). Every read of every slice is digitised
by the ADC, then the slices are shifted and added digitally (:mod:`memsim.crossbar.periphery`,
:mod:`memsim.crossbar.mapping`). The ADC's full scale comes from the caller (a calibrated layer,
:mod:`memsim.nn.calibration`), else from this read's own signal per the preset's ``[adc] calibration``.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..errors import ParameterError
from .mapping import compensate_stuck, state_for_conductance
from .nonideal import FixedDefects, NonIdealities, normal_draws, generator, noise_std, program
from .periphery import magnitude_range, mse_range, subsample
from .presets import Preset, load_preset
from . import fused
from .operator import tile_operator
from .pairs import pair_product, pair_squares, tile_major_product
from .solver import effective_conductance, gate_conductance, memristor_for_cell, solve_nonlinear
from .tiling import TileGrid

MODES = ("ideal", "noisy", "irdrop", "nonlinear")
#: the one default simulation mode (arrays, layers, chips): quantised and noisy, ideal wires
DEFAULT_MODE = "noisy"
#: removed modes and what replaced them, so that an old script or config naming one is told what to use instead
#: ('approx', a fixed-point estimate per read, was slower than irdrop at equal error: benchmarks/crossbar.md)
#: relative size of the random-sign perturbation of every cell whose exact operators give the diagonal of the
#: operator's Jacobian for the reused IR-drop update (:attr:`CrossbarArray.irdrop_reuse`; 1e-3 to 3e-2 give the same
#: product error in float32)
JACOBIAN_STEP = 1e-2
#: the padded share of a layer's rows above which the partly filled last row tile is read apart, on its occupied rows
#: (its own product): below it, the second product and the joining of the outputs cost more than the padded rows
#: (the 784-input MLP on 64-row tiles, 6 % padding, was 5 % slower split; the VGG's 288- and 576-row layers on
#: 256-row tiles, 44 % and 25 %, gain; benchmarks/crossbar.md)
SPLIT_PADDING = 0.25
REMOVED_MODES = {"approx": "use 'irdrop': exact IR drop through each tile's cached operator, faster than the "
                           "fixed-point estimate that 'approx' was (memsim.crossbar.solve_approx remains for "
                           "one-off reads)"}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        fix = REMOVED_MODES.get(mode) if isinstance(mode, str) else None
        raise ParameterError("mode", mode, f"one of {list(MODES)}", fix or "choose how the array is simulated")
    return mode


def _finite_absmax(t: torch.Tensor) -> torch.Tensor | None:
    """``max |t|`` (detached), or None when ``t`` holds NaN or inf: one pass, where ``isfinite().all()`` takes four."""
    if t.numel() == 0:
        return torch.zeros((), dtype=t.dtype, device=t.device)
    lo, hi = torch.aminmax(t.detach())  # NaN propagates into both
    absmax = torch.maximum(-lo, hi)
    return absmax if bool(torch.isfinite(absmax)) else None


def _dense_block(t: torch.Tensor) -> bool:
    """Whether ``t`` is a permutation of a contiguous block of memory (each element once, no gaps)."""
    dims = sorted((d for d in range(t.dim()) if t.shape[d] > 1), key=lambda d: t.stride(d))
    expected = 1
    for d in dims:
        if t.stride(d) != expected:
            return False
        expected *= t.shape[d]
    return True


def _flat_block(t: torch.Tensor) -> torch.Tensor:
    """The memory of ``t``, a permutation of a contiguous block (:func:`_dense_block`), as one flat view."""
    return torch.as_strided(t, (t.numel(),), (1,), t.storage_offset())


class CrossbarArray:
    """An ``(out_features, in_features)`` weight matrix on the tiles of ``preset``."""

    def __init__(self, preset: Preset | str, out_features: int, in_features: int, *, mode: str = DEFAULT_MODE,
                 noise: NonIdealities | None = None, grid=None):
        self.preset = load_preset(preset)
        self.mode = check_mode(mode)
        #: bumped whenever the chip's conductances for the same weights change (reseed, new defects, new noise),
        #: so caches of programmed states (layers, operators) know to refresh
        self.version = 0
        self._defects: FixedDefects | None = None
        self._defect_seed: int | None = None  # None: the chip of noise.seed
        self.noise = self.preset.noise if noise is None else noise
        # The layout of the weights on tiles: dense tiling by default. Any object with TileGrid's interface
        # (pack, pack_inputs, column_signal, combine, tiles, utilisation) can place them otherwise.
        self.grid = grid if grid is not None else TileGrid(out_features, in_features, self.preset.rows,
                                                           self.preset.cols, self.preset.scheme)
        self.mapping = self.preset.mapping()
        #: the last programmed state read without gradient: a copy of its conductances and what was derived from
        #: them (the cells' conductances, the IR-drop operators)
        self._state: dict | None = None
        self._irdrop_reuse = 1
        self._read_noise_grad = True
        #: the reused first-order IR-drop update (irdrop_reuse > 1): ``[(D, A0 - D gc0), reads left]``, or None
        self._atten: list | None = None
        #: the flat positions ``subsample`` picks from a strided read's ADC inputs, by shape (see _sample)
        self._sample_index: tuple | None = None
        #: an opt-in record of the reads, ``record(vt, cells, vectors)`` per read (memsim.deploy.ArrayActivity, which
        #: the cost model reads); None: off
        self.activity = None
        #: compute the ideal-wire reads (``noisy``, and ``ideal`` with programmed tiles) on the occupied rows and
        #: outputs of the tiles only (:meth:`_active`); False: over the full padded tiles (the same values; a
        #: reference for the tests)
        self.trim_padding = True

    @property
    def noise(self) -> NonIdealities:
        return self._noise

    @noise.setter
    def noise(self, value: NonIdealities) -> None:
        """New non-idealities (e.g. another drift time) make a new chip state: streams restart, defects redraw."""
        if not isinstance(value, NonIdealities):
            raise ParameterError("noise", value, "a memsim.crossbar.NonIdealities", "build one or pass None")
        self._noise = value
        self._defects = None
        self.reset_noise()

    def reset_noise(self) -> None:
        """Restart the per-programming and per-read noise streams from the seed."""
        self._gen_program = generator(self.noise.seed, "program")
        self._gen_read = generator(self.noise.seed, "read")
        self._gen_read_device: dict = {}
        self.version += 1

    @property
    def noise_streams(self) -> dict[str, torch.Generator]:
        """The chip's random streams by name (``program``, ``read``).

        Their states belong in a checkpoint: restoring them makes a resumed run draw the same noise it would have
        drawn without the interruption."""
        return {"program": self._gen_program, "read": self._gen_read}

    def reseed(self, seed: int) -> None:
        """Become the chip of ``seed``: its fixed defects and its programming and read noise streams."""
        self._defect_seed = None
        self.noise = replace(self.noise, seed=int(seed))

    def redraw_defects(self, seed: int) -> None:
        """Draw another chip's fixed defects (d2d factors, stuck cells) from ``seed`` at the next programming.

        Hardware-aware training calls this every batch, so the weights learn to tolerate defects in general
        rather than the one chip of ``noise.seed`` (which evaluation then draws afresh per seed)."""
        self._defect_seed = int(seed)
        self._defects = None
        self.version += 1

    @property
    def irdrop_reuse(self) -> int:
        """Training reads (``irdrop`` mode, a chip programmed per read) per exact computation of the IR-drop operators.

        1 (default): every read that programs the chip computes its exact operators with their gradient. ``k > 1``:
        one read in ``k`` computes the exact operators ``A0`` of its chip (cells ``gc0``: the conductances with
        their transistor) and, from the exact operators of a second, perturbed state of the same chip (every cell
        ``g (1 +- JACOBIAN_STEP)`` with a fixed-seed random sign), the diagonal ``D`` of the operator's Jacobian,
        ``D = dA_ij / d gc_ij``; that read and the next ``k - 1`` reads, each of a newly programmed chip with cells
        ``gc``, use the first-order update ``A ~= A0 + D (gc - gc0)`` with the gradient ``D`` (forward only: no
        operator gradient). The random signs make the coupling to the other cells of the row and column average
        out of ``D``; a cell's own current then carries its first-order change. This matters most for the cells at
        ``g_min`` (the off cell of each pair), whose current is mostly not their own conductance's: reusing their
        attenuation ``A / gc`` instead left 2.2 % product error, the update 0.8 % (``benchmarks/crossbar.md``).
        Reads of a programmed chip (evaluation, a layer in eval mode) always use the exact operators."""
        return self._irdrop_reuse

    @irdrop_reuse.setter
    def irdrop_reuse(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ParameterError("irdrop_reuse", k, "an integer >= 1", "give the training reads per exact IR-drop "
                                                                        "operator (1 = exact at every read)")
        self._irdrop_reuse = k
        self._atten = None

    @property
    def read_noise_grad(self) -> bool:
        """Whether training reads differentiate the read noise's amplitude (default True: exact gradient).

        The read noise of an output is ``read * sqrt(V^2 @ (gc+^2 + gc-^2)) * n`` (``n`` ~ N(0, 1) per read); its
        amplitude depends on the inputs and the conductances, so the exact gradient has a term through it, which
        costs two of the six batched products of a ``noisy`` training read and the saved tensors for them. False:
        the noise is drawn and added exactly as before (the forward values are unchanged) but treated as a
        constant in the backward pass, as peer simulators treat it (aihwkit adds it in the forward pass only); the
        dropped term is of relative order ``read`` (0.5 % on ``hfox_1t1r_64``) against the signal's gradient.
        Set it per layer (``layer.array.read_noise_grad = False``); training configs do not expose it yet."""
        return self._read_noise_grad

    @read_noise_grad.setter
    def read_noise_grad(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ParameterError("read_noise_grad", on, "True or False", "True: the exact gradient through the read "
                                 "noise's amplitude; False: the noise is a constant in the backward pass")
        self._read_noise_grad = on

    def _reused_atten(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The reused first-order update ``(D, A0 - D gc0)`` for the next training read (counting it), or None when
        it must be computed."""
        a = self._atten
        if a is None or a[1] <= 0 or a[0][0].dtype != like.dtype or a[0][0].device != like.device:
            return None
        a[1] -= 1
        return a[0]

    def _linearisation(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D, A0 - D gc0)`` of programmed conductances ``g`` (detached): the exact operators ``A0``, and the
        diagonal ``D`` of their Jacobian in the cells ``gc`` from the exact operators of ``g (1 + JACOBIAN_STEP s)``
        (``s``: fixed-seed random signs, one per cell)."""
        circuit = self.preset.circuit
        dtype = torch.float64 if g.dtype == torch.float64 else torch.float32
        a0 = tile_operator(g, circuit, dtype=dtype).to(g.dtype)
        gc0 = effective_conductance(g, circuit)
        gen = torch.Generator(device=g.device).manual_seed(0)
        sign = torch.randint(0, 2, g.shape, generator=gen, device=g.device).to(g.dtype).mul_(2).sub_(1)
        gp = g * (1 + JACOBIAN_STEP * sign)
        dgc = effective_conductance(gp, circuit) - gc0
        d = (tile_operator(gp, circuit, dtype=dtype).to(g.dtype) - a0) / dgc
        d = torch.where(dgc != 0, d, a0 / gc0)  # (a cell too small to move in this precision: its attenuation)
        return d, a0 - d * gc0

    def _approx_operator(self, g: torch.Tensor) -> torch.Tensor:
        """``A0 + D (gc - gc0)`` for programmed conductances ``g`` (see :attr:`irdrop_reuse`), computing ``A0`` and
        ``D`` from this chip's exact operators when they are due."""
        gc = effective_conductance(g, self.preset.circuit)
        lin = self._reused_atten(g)
        if lin is None or lin[0].shape != g.shape:
            with torch.no_grad():
                lin = self._linearisation(g.detach())
            self._atten = [lin, self._irdrop_reuse - 1]
        return torch.addcmul(lin[1], gc, lin[0])

    def operator(self, g: torch.Tensor) -> torch.Tensor:
        """The exact IR-drop operators [n_row_tiles, n_col_tiles, rows, cols] of programmed conductances ``g``.

        A differentiable ``g`` (training) gets a fresh operator with its gradient, computed in float32 for a float32
        layer; otherwise (float64) the operator is cached with a copy of the conductances it was computed from and
        reused while ``g`` holds the same values: a reprogrammed chip, a new drift time, a reseed or an in-place
        edit that changes any conductance recomputes it; reprogramming the very same state does not."""
        if g.requires_grad and torch.is_grad_enabled() and self._irdrop_reuse > 1:
            return self._approx_operator(g)
        if g.requires_grad and torch.is_grad_enabled():
            # training draws a new chip state every step: the operator in float32 (about 1e-5 relative, far below
            # the converters' and the programming noise's resolution) at half the cost; float64 layers stay float64
            dtype = torch.float64 if g.dtype == torch.float64 else torch.float32
            return tile_operator(g, self.preset.circuit, dtype=dtype)
        return self._per_state(g, "operator", lambda: tile_operator(g, self.preset.circuit))

    def _cells(self, g: torch.Tensor) -> torch.Tensor:
        """The cell conductances the word lines see (1T1R: the transistor in series), cached like the operator."""
        if g.requires_grad and torch.is_grad_enabled():
            return effective_conductance(g, self.preset.circuit)
        return self._per_state(g, "cells", lambda: effective_conductance(g, self.preset.circuit))

    def _per_state(self, g: torch.Tensor, name: str, compute) -> torch.Tensor:
        """``compute()`` for the programmed conductances ``g``, cached with a copy of the values it was computed
        from: reused while ``g`` holds them (checked by identity and version first, then by value), dropped with
        every other quantity of the old state when they change."""
        state = self._state
        if state is None or not (state["ref"] is g and state["version"] == g._version):
            old = None if state is None else state["g"]
            if old is None or (old.shape, old.dtype, old.device) != (g.shape, g.dtype, g.device) \
                    or not torch.equal(old, g.detach()):
                state = {"g": g.detach().clone()}
            state.update(ref=g, version=g._version)
            self._state = state
        if name not in state:
            with torch.no_grad():
                state[name] = compute()
        return state[name]

    @property
    def quantised(self) -> bool:
        return self.mode != "ideal"

    # -- slices and converter ranges ------------------------------------------------
    @property
    def input_slices(self) -> int:
        """Cycles of a bit-serial read (1 unless ``[dac] slice_bits`` < bits, in the quantised modes)."""
        dac = self.preset.dac
        return dac.input_slices if self.quantised and dac is not None else 1

    @property
    def weight_slices(self) -> int:
        """Cells per weight and sign (tile grids programmed per weight): 1 unless the weights are bit-sliced."""
        return self.mapping.slices if self.quantised else 1

    @property
    def adc_shape(self) -> tuple[int, ...]:
        """Shape of the ADC full scale: ``()`` per layer, ``(n_row_tiles, slices * n_col_tiles)`` per tile."""
        adc = self.preset.adc
        if adc is None or adc.granularity == "layer":
            return ()
        return (self.grid.n_row_tiles, self.mapping.slices * self.grid.n_col_tiles)

    def periphery(self) -> dict[str, int]:
        """Converter counts of the programmed layer, for cost models: ``physical_tiles`` (the grid's tiles once per
        weight slice), ``input_slices`` (DAC cycles per input vector), ``weight_slices``, ``columns_per_adc``,
        ``adcs`` (converters on all tiles: outputs per tile / columns_per_adc each), ``conversions_per_vector``
        (every output of every tile, once per cycle) and ``adc_steps_per_vector`` (conversions one ADC makes in
        sequence per input vector: cycles x shared outputs; the tiles convert in parallel)."""
        adc = self.preset.adc
        share = adc.columns_per_adc if adc is not None else 1
        tiles = self.grid.n_tiles * self.weight_slices
        outputs = self.grid.outputs_per_tile
        return {"physical_tiles": tiles, "input_slices": self.input_slices, "weight_slices": self.weight_slices,
                "columns_per_adc": share, "adcs": tiles * (outputs // share),
                "conversions_per_vector": tiles * outputs * self.input_slices,
                "adc_steps_per_vector": self.input_slices * share}

    def fixed_full_scale(self) -> float:
        """The ADC full scale (A) of the fixed rule, ``adc.range * rows * v_max * (g_max - g_min)``."""
        p = self.preset
        return p.adc.full_scale(p.rows, p.v_max, self.mapping.delta)

    def adc_groups(self, a: torch.Tensor) -> torch.Tensor:
        """ADC inputs ``a`` [slices, B, n_row_tiles, n_tiles_per_row, outputs] as ``[groups, values]``: one group
        per layer or per tile (the preset's granularity)."""
        if not self.adc_shape:
            mask = self._padded_outputs(a)
            return a.reshape(1, -1) if mask is None else a[..., mask].reshape(1, -1)
        return a.movedim((2, 3), (0, 1)).reshape(a.shape[2] * a.shape[3], -1)

    def adc_range(self, y: torch.Tensor) -> torch.Tensor:
        """The ADC full scale (A, detached, shape :attr:`adc_shape`) that the preset's ``[adc] calibration`` sets
        from the ADC inputs ``y`` of one read (the batch's own statistic; "fixed": the fixed rule). A layer or
        tile that saw no signal gets the fixed rule's value (any range digitises zero exactly); a percentile of 0
        (outputs almost always zero) gives their maximum.

        Training reads this every step, so it stays cheap: a percentile is taken over a fixed-seed random subset of
        2**16 values (per layer), or of the batch rows (per tile), and the maximum (one or two reductions over
        ``y``) only where it is needed: for "max", "mse", or a percentile of 0."""
        adc, fixed = self.preset.adc, self.fixed_full_scale()
        if adc.calibration == "fixed":
            return torch.full(self.adc_shape, fixed, dtype=y.dtype, device=y.device)
        y = y.detach()
        if not self.adc_shape:  # one range for the layer: from the outputs that hold weights
            mask = self._padded_outputs(y)
            if mask is not None:
                y = y[..., mask]
        pct = None
        if adc.calibration == "percentile" and adc.percentile < 100:
            pct = magnitude_range(self._sample(y, 2 ** 16).abs(), "percentile", adc.percentile)
            if bool((pct > 0).all()):  # the usual case: the maximum (the fallback of a zero percentile) is not needed
                return pct.reshape(self.adc_shape)
        dims = (0, 1, 4) if self.adc_shape else tuple(range(y.dim()))
        if self.adc_shape:
            r = torch.maximum(y.amax(dims), y.amin(dims).neg()).reshape(-1)
        else:  # one pass for both ends (a strided read that fills a block of memory: read as one flat block, no copy)
            lo, hi = torch.aminmax(_flat_block(y) if not y.is_contiguous() and _dense_block(y) else y)
            r = torch.maximum(hi, lo.neg()).reshape(-1)
        if pct is not None:
            r = torch.where(pct > 0, pct, r)
        elif adc.calibration == "mse":
            m = mse_range(self._sample(y, 2 ** 16).abs(), adc.bits, r)
            r = torch.where(m > 0, m, r)
        return torch.where(r > 0, r, torch.full_like(r, fixed)).reshape(self.adc_shape)

    def _sample(self, y: torch.Tensor, cap: int) -> torch.Tensor:
        """ADC inputs as ``[groups, values]``, subsampled: ``cap`` values of the layer, or the outputs of
        ``cap / outputs`` batch rows in every tile."""
        if not self.adc_shape:
            if y.is_contiguous() or y.numel() <= cap:
                return subsample(y.reshape(1, -1), cap)
            # a strided read (the fused path's tile-major outputs): the same values, gathered from its memory
            # without a copy of y (the positions subsample picks, as offsets for y's strides, found once per layout)
            key = (y.shape, y.stride(), cap, y.device)
            if self._sample_index is None or self._sample_index[0] != key:
                flat = subsample(torch.arange(y.numel(), device=y.device).unsqueeze(0), cap)[0]
                offsets = sum(i * st for i, st in zip(torch.unravel_index(flat, y.shape), y.stride()))
                self._sample_index = (key, offsets)
            if _dense_block(y):  # a permutation of a contiguous block: read it as one flat tensor
                return _flat_block(y).index_select(0, self._sample_index[1]).unsqueeze(0)
            return subsample(y.reshape(1, -1), cap)
        rows = y.reshape(y.shape[0] * y.shape[1], -1, y.shape[4])  # [slices * B, tiles, outputs]
        rows = subsample(rows, max(cap // y.shape[4], 1), dim=0)
        return rows.transpose(0, 1).reshape(rows.shape[1], -1)

    # -- programming ------------------------------------------------------------
    def _check_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Check the weight's shape and values; returns its largest magnitude (detached): per output ``[out, 1]``
        for the preset's ``weight_scale = "column"``, else the layer's (a scalar)."""
        if weight.shape != (self.grid.out_features, self.grid.in_features):
            raise ParameterError("weight.shape", tuple(weight.shape),
                                 f"({self.grid.out_features}, {self.grid.in_features})", "pass the layer's (out, in) matrix")
        if self.preset.weight_scale == "column" and weight.numel():  # each output's scale, and the finiteness check
            w = weight.detach()  # (amax and amin: NaN propagates into both; ~4x faster than abs().amax or aminmax(dim))
            absmax = torch.maximum(w.amin(1, keepdim=True).neg_(), w.amax(1, keepdim=True))
            if not bool(torch.isfinite(absmax).all()):
                absmax = None
        else:
            absmax = _finite_absmax(weight)
        if absmax is None:
            raise ParameterError("weight", "NaN/inf entries", "finite weights", "check the training for divergence")
        return absmax

    def conductances(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Programmed tile conductances [n_row_tiles, n_col_tiles, rows, cols] (S) and the weight scale."""
        w_scale = self._check_weight(weight).clamp_min(torch.finfo(weight.dtype).tiny)
        mp = self.mapping
        if self.quantised and mp.slices > 1:
            g = self._sliced_cells(weight / w_scale)
        elif self.quantised and mp.scheme == "differential" and isinstance(self.grid, TileGrid):
            g = mp.pair_cells(self.grid.pack_outputs(weight / w_scale), self.grid.cols)
        elif self.quantised:
            g = self.grid.pack(mp.to_conductance(weight / w_scale), mp.g_min, mp.g_ref)
        else:
            wn = weight / w_scale
            gs = [mp.g_min + mp.delta * torch.relu(wn), mp.g_min + mp.delta * torch.relu(-wn)] \
                if mp.scheme == "differential" else [mp.g_min + mp.delta * 0.5 * (wn + 1.0)]
            g = self.grid.pack(gs, mp.g_min, mp.g_ref)
        retarget = self._retarget(g.shape, g)
        if retarget is not None:  # the partners of cells stuck at g_max, retargeted as the window's cells
            g = compensate_stuck(g, retarget, mp.g_min, mp.g_min + mp.delta)
        if self.quantised and self.preset.circuit.access == "1T1R":  # memristor conductance behind the transistor
            g = memristor_for_cell(g, self.preset.circuit)
        if self.quantised and self.noise.any:
            g = program(g, self.noise, self.preset.g_min, self.preset.g_max, self._chip_defects(g.shape, g),
                        self._gen_program)
        return g, w_scale

    def _retarget(self, shape, like: torch.Tensor) -> torch.Tensor | None:
        """The cells (of ``shape``) to retarget for ``mapping.stuck_compensation = "partner"``, typed like ``like``
        (None: no compensation here)."""
        if not (self.quantised and self.preset.stuck_compensation == "partner" and self.noise.stuck_on):
            return None
        return self._chip_defects(shape, like).partner_retarget(like)

    def _chip_defects(self, shape, like: torch.Tensor) -> FixedDefects:
        """The chip's fixed defects for cells of ``shape`` (drawn on first use, kept until the chip changes)."""
        if self._defects is None or self._defects.shape != tuple(shape):
            chip = self.noise if self._defect_seed is None else replace(self.noise, seed=self._defect_seed)
            self._defects = FixedDefects(shape, chip, like)
        return self._defects

    def _fusable(self, weight: torch.Tensor) -> bool:
        """Whether a read that programs the chip takes the fused kernel (:mod:`memsim.crossbar.fused`): a
        ``noisy`` layer of differential pairs on a dense grid, not bit-sliced, no activity record, large enough;
        or such an ``irdrop`` layer between two computations of its reused operators (:attr:`irdrop_reuse`)."""
        grid = self.grid
        if not (self.mapping.scheme == "differential" and isinstance(grid, TileGrid) and self.mapping.slices == 1
                and self.activity is None and fused.available(grid.n_tiles * grid.rows * grid.cols)):
            return False
        if self.mode == "noisy":
            return True
        a = self._atten
        return (self.mode == "irdrop" and self._irdrop_reuse > 1 and weight.requires_grad
                and torch.is_grad_enabled() and a is not None and a[1] > 0 and a[0][0].dtype == weight.dtype
                and a[0][0].device == weight.device)

    def fused_pairs(self, weight: torch.Tensor, want_q: bool, compiled: bool = True, atten=None):
        """``(signal, q, w_scale)``: the pair signal ``gc+ - gc-`` and read-noise weight ``gc+^2 + gc-^2``
        ``[nr, rows, nc * pairs]`` (tile-row-major, :func:`memsim.crossbar.fused.programmed_pairs`) of the chip
        programmed with ``weight`` now, and the weight scale: what :meth:`conductances` followed by the cells the
        word lines see gives, in one fused pass, drawing the same programming noise from the chip's stream.
        ``atten``: the reused first-order IR-drop update ``(D, A0 - D gc0)`` (:attr:`irdrop_reuse`): each cell's
        current ``D gc + (A0 - D gc0)`` in the signal; or None."""
        w_scale = self._check_weight(weight).clamp_min(torch.finfo(weight.dtype).tiny)
        mp, p, grid, cfg = self.mapping, self.preset, self.grid, self.noise
        wp = grid.pack_outputs(weight / w_scale).transpose(1, 2)  # [nr, rows, nc, pairs]: the packing's own layout
        shape = (grid.n_row_tiles, grid.n_col_tiles, grid.rows, grid.cols)
        noise, gain, offset, lo, hi, retarget = None, 1.0, 0.0, -math.inf, math.inf, None
        if cfg.any:
            noise = normal_draws(shape, self._gen_program, wp) if cfg.program else None
            gain, offset = self._chip_defects(shape, wp).affine(cfg, p.g_min, p.g_max, wp)
            if cfg.program:
                lo, hi = p.g_min, p.g_max
            retarget = self._retarget(shape, wp)
        gt = self._gate(wp)
        signal, q = fused.programmed_pairs(wp, levels=mp.levels, g_min=mp.g_min, delta=mp.delta, noise=noise,
                                           sigma=cfg.program * (p.g_max - p.g_min), lo=lo, hi=hi, gain=gain,
                                           offset=offset, gt=gt, want_q=want_q, compiled=compiled,
                                           retarget=retarget,
                                           atten=None if atten is None else atten[0],
                                           shift=None if atten is None else atten[1])
        return signal, q, w_scale

    def _gate(self, like: torch.Tensor) -> torch.Tensor | None:
        """The rows' access-transistor conductances ``[rows]`` (None: 0T1R), typed and placed like ``like``; kept
        (they depend on the preset only), since every training read needs them."""
        key = (like.dtype, like.device, self.preset.circuit, self.grid.rows)
        cached = self.__dict__.get("_gate_cache")
        if cached is None or cached[0] != key:
            cached = self._gate_cache = (key, gate_conductance(self.preset.circuit, self.grid.rows, dtype=like.dtype,
                                                               device=like.device))
        return cached[1]

    def _sliced_cells(self, wn: torch.Tensor) -> torch.Tensor:
        """Bit-sliced cells [n_row_tiles, slices * n_col_tiles, rows, cols] (slice-major) of normalised weights."""
        mp, grid = self.mapping, self.grid
        if mp.scheme == "differential" and isinstance(grid, TileGrid):
            cells = mp.sliced_pair_cells(grid.pack_outputs(wn), grid.cols)  # [slices, nr, nc, rows, cols]
        else:
            cells = torch.stack([grid.pack(gs, mp.g_min, mp.g_ref) for gs in mp.sliced_conductances(wn)])
        return cells.transpose(0, 1).flatten(1, 2)

    # -- the product --------------------------------------------------------------
    def forward(self, weight: torch.Tensor, x: torch.Tensor, x_scale=None, g: torch.Tensor | None = None,
                w_scale=None, adc_scale=None) -> torch.Tensor:
        """``x @ weight.T`` through the array; ``x`` is [B, in_features]. ``g``/``w_scale``: pre-programmed tiles.

        ``x_scale``: the DAC input range (None: this batch's largest ``|x|``). ``adc_scale``: the ADC full scale in
        A, a number or a tensor of :attr:`adc_shape`; None: from this read (:meth:`adc_range`); or a callable that
        gets the ADC inputs ``[input slices, B, n_row_tiles, tiles per row, outputs]`` (A) and returns the full
        scale, or None to pass them on unconverted (a calibration read)."""
        if x.dim() != 2 or x.shape[1] != self.grid.in_features:
            raise ParameterError("input.shape", tuple(x.shape), f"[batch, {self.grid.in_features}]",
                                 "the last dimension must equal in_features")
        if _finite_absmax(x) is None:
            raise ParameterError("input", "NaN/inf entries", "finite inputs", "check the previous layer")
        if self.mode == "ideal" and g is None:
            if weight.shape != (self.grid.out_features, self.grid.in_features):
                self._check_weight(weight)
            return torch.nn.functional.linear(x, weight)
        halves = None
        if g is None and self._fusable(weight):
            atten = self._reused_atten(weight) if self.mode == "irdrop" else None
            signal, q, w_scale = self.fused_pairs(weight, want_q=bool(self.noise.read), atten=atten)
            halves = (signal, q)
        elif g is None:
            g, w_scale = self.conductances(weight)
        p, mp, grid = self.preset, self.mapping, self.grid
        if x_scale is None:
            x_scale = x.detach().abs().max()
        x_scale = torch.as_tensor(x_scale, dtype=x.dtype, device=x.device).clamp_min(torch.finfo(x.dtype).tiny)
        v_max = p.v_max
        if self.quantised and p.dac is not None:
            v = p.dac.drive(x, x_scale)  # [input slices, B, in]
        else:
            v = (x / x_scale * v_max).unsqueeze(0)
        vt = grid.pack_inputs(v.flatten(0, 1))  # [slices * B, nr, rows]: the cycles of a bit-serial read
        if self.activity is not None:
            self.activity.record(vt, self._cells(g), x.shape[0])
        read_noise = self.quantised and self.noise.read
        rows, outs, last = self._active()
        sigma, amp = self.noise.read, self._read_noise_grad
        if halves is not None:  # tile-row-major throughout: [nr, B, nc * pairs], viewed as [B, nr, nc, pairs]
            nr, nc, opt = grid.n_row_tiles, grid.n_col_tiles, grid.outputs_per_tile
            # the draws in the stream's order and full shape, as the unfused path draws them; the unused outputs'
            # draws are dropped (so the stream does not depend on the trimming)
            noise = self._read_noise((vt.shape[0], nr, nc, opt), vt).transpose(0, 1)[..., :outs].flatten(2) \
                if read_noise else None
            signal, q = halves
            if (rows, outs) != (grid.rows, opt):  # only the occupied word lines and bit lines of the tiles
                signal = signal.unflatten(2, (nc, opt))[:, :rows, :, :outs].flatten(2)
                q = None if q is None else q.unflatten(2, (nc, opt))[:, :rows, :, :outs].flatten(2)
            vtm = vt[..., :rows].transpose(0, 1).contiguous()  # [nr, B, rows]

            def product(tiles: slice, r: int) -> torch.Tensor:  # the row tiles ``tiles`` on their first r rows
                return tile_major_product(vtm[tiles, :, :r].contiguous(), signal[tiles, :r],
                                          None if q is None else q[tiles, :r], None if noise is None else noise[tiles],
                                          sigma, amp)
            y = product(slice(None), rows) if last == rows else \
                torch.cat([product(slice(0, -1), rows), product(slice(-1, None), last)], 0)
            return self._read_out(y.unflatten(2, (nc, outs)).transpose(0, 1), v.shape[0], x, x_scale, w_scale,
                                  adc_scale)
        # the cells as the word lines see them (1T1R: with the transistor), for the noisy product and read noise
        gc = self._cells(g) if self.mode == "noisy" or read_noise else g
        if self.mode != "nonlinear" and grid.scheme == "differential":
            pairs = grid.outputs_per_tile
            noise = self._read_noise((vt.shape[0], *g.shape[:2], pairs), vt)[..., :outs] if read_noise else None
            if (rows, outs) != (grid.rows, pairs):  # only the occupied word lines and pair columns of the tiles
                g, gc, vt = g[..., :rows, :2 * outs], gc[..., :rows, :2 * outs], vt[..., :rows]
            m = self._matrix(g, gc, vt.dtype)

            def product(tiles: slice, r: int) -> torch.Tensor:  # the row tiles ``tiles`` on their first r rows
                mt = m[tiles, :, :r]
                cells = None if not read_noise else mt if gc is m else gc[tiles, :, :r]
                return pair_product(vt[:, tiles, :r], mt, outs, cells, None if noise is None else noise[:, tiles],
                                    sigma, amp)
            y = product(slice(None), rows) if last == rows else \
                torch.cat([product(slice(0, -1), rows), product(slice(-1, None), last)], 1)
        else:
            if rows != grid.rows:  # only the occupied word lines (every column: the reference is the last one)
                g, gc, vt = g[..., :rows, :], gc[..., :rows, :], vt[..., :rows]
            y = self._signal(g, gc, vt)  # [B, nr, nc, opt]: the reference columns already subtracted
            if read_noise:
                y = y + self._read_noise_term(gc, vt)
        return self._read_out(y, v.shape[0], x, x_scale, w_scale, adc_scale)

    def _active(self) -> tuple[int, int, int]:
        """``(rows, outputs, last rows)`` of each tile that this read computes (``last rows``: those of the last row
        tile). With ideal wires (``noisy``; ``ideal`` reading programmed tiles) a word line driven at 0 V carries no
        current and an unused bit line is not read, so a layer smaller than its tile is computed on its occupied
        rows and outputs only, and the partly filled last row tile of a larger one on its occupied rows (its own
        product, a differential grid; when the padding is at least :data:`SPLIT_PADDING` of the rows): the same
        values (the padded rows add exact zeros), without the products, read noise and conversions of the padding
        (:attr:`~memsim.crossbar.TileGrid.active_rows`, ``active_outputs``, ``last_rows``). The offset scheme
        keeps all columns (its reference is the last) and the full last row tile. With IR drop the unused cells
        load the wires: the full tiles. The padded outputs of a partly filled last column tile of a larger layer
        are computed, and left out of the ADC range (:meth:`_padded_outputs`) and of the layer's outputs."""
        grid = self.grid
        if not (self.trim_padding and self.mode in ("ideal", "noisy") and isinstance(grid, TileGrid)):
            return grid.rows, grid.outputs_per_tile, grid.rows
        if grid.scheme != "differential":
            return grid.active_rows, grid.outputs_per_tile, grid.active_rows
        last = grid.last_rows if grid.rows - grid.last_rows >= SPLIT_PADDING * grid.n_row_tiles * grid.rows \
            else grid.rows
        return grid.active_rows, grid.active_outputs, min(last, grid.active_rows)

    def _padded_outputs(self, y: torch.Tensor) -> torch.Tensor | None:
        """The mask ``[weight slices * n_col_tiles, outputs]`` of the ADC inputs ``y`` [..., weight slices * nc,
        outputs] that hold weights, or None when they all do. The padded outputs of a partly filled last column
        tile are no converter's signal: they stay out of the ADC range."""
        grid = self.grid
        if not isinstance(grid, TileGrid):
            return None
        nc, last, outs = grid.n_col_tiles, grid.last_outputs, y.shape[-1]
        if last >= outs:
            return None
        mask = torch.ones(y.shape[-2], outs, dtype=torch.bool, device=y.device)
        mask.view(-1, nc, outs)[:, nc - 1, last:] = False  # every weight slice's last column tile
        return mask

    def _read_out(self, y, slices: int, x, x_scale, w_scale, adc_scale) -> torch.Tensor:
        """Signed tile outputs [input slices * B, nr, weight slices * nc, opt] -> layer outputs [B, out]: the ADC,
        the slices' shift-add, the tiles' partial sums, the scale back to weight units."""
        y = y.unflatten(0, (slices, x.shape[0]))  # [input slices, B, nr, weight slices * nc, opt]
        if self.quantised and self.preset.adc is not None:
            y = self._digitise(y, adc_scale)
        y = self.grid.combine(self._shift_add(y))
        if torch.is_tensor(w_scale) and w_scale.dim() == 2:  # per output [out, 1]: one digital gain per output
            w_scale = w_scale.reshape(-1)
        return y * (x_scale * w_scale / (self.mapping.gain * self.preset.v_max))

    def _digitise(self, y: torch.Tensor, adc_scale) -> torch.Tensor:
        """The ADC over every tile output of every slice; a callable ``adc_scale`` returning None passes them on."""
        if callable(adc_scale):
            adc_scale = adc_scale(y)
            if adc_scale is None:
                return y
        elif adc_scale is None:
            adc_scale = self.adc_range(y)
        fs = torch.as_tensor(adc_scale, dtype=y.dtype, device=y.device)
        if fs.dim():
            fs = fs.unsqueeze(-1)  # [nr, weight slices * nc, 1] against [..., nr, weight slices * nc, opt]
        return self.preset.adc(y, fs)

    def _shift_add(self, y: torch.Tensor) -> torch.Tensor:
        """Digitised slices [input slices, B, nr, weight slices * nc, opt] -> [B, nr, nc, opt]: the slices' outputs
        shifted (weighted by their powers of two) and added, digitally."""
        n_in, n_w = y.shape[0], self.weight_slices
        if n_in == 1 and n_w == 1:
            return y.squeeze(0)  # a view both ways (y[0]'s backward would allocate and fill all of y)
        w_in = self.preset.dac.slice_weights(y.dtype, y.device) if n_in > 1 else y.new_ones(1)
        w_w = self.mapping.slice_weights(y.dtype, y.device) if n_w > 1 else y.new_ones(1)
        y = y.unflatten(3, (n_w, y.shape[3] // n_w))  # [input slices, B, nr, weight slices, nc, opt]
        return torch.einsum("sbrtco,s,t->brco", y, w_in, w_w)

    __call__ = forward

    def _read_noise(self, shape, like: torch.Tensor) -> torch.Tensor:
        """Standard normal draws of the read-noise stream, placed and typed like ``like``.

        On CUDA the draws come from a generator on the GPU (seeded like the CPU stream, so a run is reproducible
        on its device; CPU and GPU streams differ)."""
        if like.device.type == "cpu":
            return torch.randn(shape, generator=self._gen_read, dtype=like.dtype)
        gen = self._gen_read_device.get(like.device)
        if gen is None:
            gen = self._gen_read_device[like.device] = torch.Generator(like.device).manual_seed(
                self._gen_read.initial_seed())
        return torch.randn(shape, generator=gen, dtype=like.dtype, device=like.device)

    def _matrix(self, g: torch.Tensor, gc: torch.Tensor, dtype) -> torch.Tensor:
        """The tile matrix of a linear mode: ``V @ matrix`` gives the column currents."""
        if self.mode == "irdrop":
            return self.operator(g).to(dtype)
        return gc if self.mode == "noisy" else g

    def _signal(self, g: torch.Tensor, gc: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
        """Signed tile outputs [B, n_row_tiles, n_col_tiles, outputs_per_tile] for word-line voltages vt [B, nr, rows].

        The subtraction of the pair (or reference) columns is linear in the columns, so in the linear modes it is
        applied to the tile's matrix before the product: ``V @ (A_+ - A_-)`` halves the product of
        differential pairs. The nonlinear mode subtracts the solved column currents."""
        mode, circuit, grid = self.mode, self.preset.circuit, self.grid
        if mode != "nonlinear":
            return torch.einsum("bri,rcij->brcj", vt, grid.column_signal(self._matrix(g, gc, vt.dtype)))
        nr, nc = g.shape[:2]
        out = []
        for r in range(nr):
            row = []
            for c in range(nc):
                x = state_for_conductance(self.preset.card, g[r, c].clamp(self.preset.g_min, self.preset.g_max),
                                          self.preset.v_read)
                row.append(solve_nonlinear(self.preset.card, x, vt[:, r].double(), circuit).to(vt.dtype))
            out.append(torch.stack(row, 1))
        return grid.column_signal(torch.stack(out, 1))

    def _read_noise_term(self, gc: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
        """Read noise of the signed tile outputs, drawn per read (see :mod:`memsim.crossbar.nonideal`).

        Each cell's current fluctuates independently with relative std ``read``, so a column's noise has std
        ``read * sqrt(sum_i v_i^2 gc_ij^2)`` (``gc``: the cell conductance, 1T1R with its transistor). The two
        columns of a differential pair are independent: their difference gets one draw of the summed variance.
        A reference column's noise is common to all outputs of its tile, so the offset scheme draws per column
        and subtracts."""
        grid, sigma = self.grid, self.noise.read
        if not self._read_noise_grad:  # the noise as a constant of the backward pass (read_noise_grad)
            gc, vt = gc.detach(), vt.detach()
        v2 = vt * vt
        if grid.scheme == "differential":
            std = noise_std(torch.einsum("bri,rcij->brcj", v2, pair_squares(gc, grid.outputs_per_tile)))
            return sigma * std * self._read_noise(std.shape, std)
        std = noise_std(torch.einsum("bri,rcij->brcj", v2, gc * gc))
        return sigma * grid.column_signal(std * self._read_noise(std.shape, std))
