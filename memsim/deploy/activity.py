"""What a deployed chip does per inference: the declared interface between a deployed network and the cost model.

Two pieces:

* :class:`ArrayActivity` - an opt-in record on one :class:`memsim.crossbar.CrossbarArray` (its ``activity``
  attribute, ``None`` = off, the default). While set, every read of the array adds the input vectors it applied and
  ``sum_cells V_i^2 G_ij`` of their word-line voltages over the programmed cells (access device included). The deploy
  code switches it on for a chip's evaluation and off after; nothing is patched.
* :class:`LayerActivity` - one crossbar layer's figures per inference, as the cost model
  (:mod:`memsim.sweep.cost`) reads them: tiles and their geometry, utilisation, reads, converter counts and the
  array's ``sum V^2 G``. :func:`layer_activity` makes it from a deployed layer and its record.

:func:`adc_conversions_per_read` is the one count of ADC conversions: of the per-layer figures of an evaluation, of
a sweep's total and of the ADC energy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ArrayActivity", "LayerActivity", "layer_activity", "adc_conversions_per_read", "input_slices",
           "weight_slices", "columns_per_adc"]


def adc_conversions_per_read(tiles: int, outputs_per_tile: int, input_slices: int = 1, weight_slices: int = 1) -> int:
    """ADC conversions when a layer's ``tiles`` read one input vector.

    Every output of every placed tile is converted, ``outputs_per_tile`` per tile, once per input slice (a
    bit-serial DAC applies a vector as ``input_slices`` cycles, each digitised and shifted-and-added) and per weight
    slice (a weight spread over ``weight_slices`` cells of fewer levels, each slice's column read by the ADC and
    recombined). The two columns of a differential pair, or an output column and its tile's reference column
    (offset scheme), are subtracted in analog and give one conversion; the reference column and a differential
    tile's odd leftover column are never converted on their own. A tile's unused (padding) outputs are converted
    too: they are not power-gated, as the simulated ADC and the latency (each ADC converts all of its columns in
    turn) assume. Unused tiles of a sparse layout are not placed at all.
    """
    return tiles * outputs_per_tile * input_slices * weight_slices


def input_slices(preset) -> int:
    """Read cycles per input vector of the preset's design: ``dac.bits / dac.slice_bits`` with a bit-serial DAC,
    else 1."""
    return preset.dac.input_slices if preset.dac is not None else 1


def weight_slices(preset) -> int:
    """Cells per weight (and sign) of the preset's design: ``weight_bits / cell_bits`` with bit-sliced weights, else
    1. Each slice has its own tiles (the layer's tile grid repeated once per slice), read in parallel."""
    return preset.mapping().slices


def columns_per_adc(preset) -> int:
    """Tile outputs one ADC converts in turn (``[adc] columns_per_adc``, a column multiplexer); 1 without an ADC."""
    return preset.adc.columns_per_adc if preset.adc is not None else 1


_CHUNK = 4096  # cycles per partial sum of ArrayActivity.record


class ArrayActivity:
    """The reads of one array while it is switched on (``array.activity = ArrayActivity()``).

    ``vectors``: input vectors applied; ``v2g``: ``sum_cycles sum_cells V_i^2 G_ij`` (W) with the word-line
    voltages of every cycle (after the DAC; one per vector unless the DAC is bit-serial) and the programmed cell
    conductances as the word lines see them (access device included, every weight slice's tiles)."""

    def __init__(self):
        self.vectors = 0
        self.v2g = 0.0
        self._cells: torch.Tensor | None = None
        self._row_sums: torch.Tensor | None = None

    def record(self, vt: torch.Tensor, cells: torch.Tensor, vectors: int) -> None:
        """Add one read of ``vectors`` input vectors: word-line voltages ``vt`` [cycles, n_row_tiles, rows] (V; a
        bit-serial read applies each vector in several cycles) on the cells [nr, nc, rows, cols] (S; every weight
        slice's tiles)."""
        if cells is not self._cells:  # per programmed state: each row's summed conductance over its tile's columns
            self._cells = cells
            self._row_sums = cells.detach().double().sum(-1)                  # [nr, nc, rows]
        self.vectors += int(vectors)
        # float32 squares summed per chunk, the chunks added in float64: within ~1e-8 of a float64 sum, without a
        # float64 copy of every read (a spiking CNN's conv read holds 10^8 voltages: 2.6 s -> 0.03 s)
        v2 = torch.zeros(vt.shape[1:], dtype=torch.float64, device=vt.device)  # [nr, rows]
        for chunk in vt.detach().split(_CHUNK):
            v2 += chunk.square().sum(0)
        self.v2g += float(torch.einsum("ri,rci->", v2, self._row_sums))

    def __repr__(self) -> str:
        return f"ArrayActivity(vectors={self.vectors}, v2g={self.v2g:.4g} W)"


@dataclass(frozen=True)
class LayerActivity:
    """What one crossbar layer does per inference.

    ``tiles``: placed tiles of one weight slice (``rows`` x ``cols`` cells, ``outputs_per_tile`` converted outputs
    each; a bit-sliced layer has ``weight_slices`` times as many, :attr:`physical_tiles`); ``used_rows`` and
    ``used_outputs``: summed over one slice's tiles (rows driven and outputs holding weights per read); ``reads``:
    input vectors per inference, each read by every tile of the layer; ``v2g``: ``sum_cycles sum_cells V^2 G`` per
    inference (W; every cycle of a bit-serial read, every weight slice's cells); ``input_slices``: read cycles per
    input vector (bit-serial DAC); ``weight_slices``: cells per weight (bit-sliced weights), each slice on its own
    tiles and converted by their ADCs; ``columns_per_adc``: tile outputs one ADC converts in turn (a column
    multiplexer); ``used_cells``: cells of one slice's tiles holding a mapped weight."""

    tiles: int
    rows: int
    cols: int
    outputs_per_tile: int
    used_rows: int
    used_outputs: int
    reads: float
    v2g: float
    input_slices: int = 1
    weight_slices: int = 1
    columns_per_adc: int = 1
    used_cells: int = 0
    name: str = ""

    @property
    def physical_tiles(self) -> int:
        """Tiles on the chip: one set per weight slice."""
        return self.tiles * self.weight_slices

    @property
    def adc_conversions(self) -> float:
        """ADC conversions per inference (:func:`adc_conversions_per_read` per input vector)."""
        return self.reads * adc_conversions_per_read(self.tiles, self.outputs_per_tile, self.input_slices,
                                                     self.weight_slices)

    @property
    def dac_conversions(self) -> float:
        """DAC conversions per inference: every driven row of every weight slice's tiles, once per cycle of every
        input vector."""
        return self.reads * self.input_slices * self.used_rows * self.weight_slices

    @property
    def read_cycles(self) -> float:
        """Array read cycles per inference of each tile: an input vector takes ``input_slices`` cycles."""
        return self.reads * self.input_slices

    @property
    def v2g_per_read(self) -> float:
        """``sum_cells V^2 G`` of one input vector, over its cycles (W)."""
        return self.v2g / self.reads if self.reads else 0.0

    @property
    def adcs_per_tile(self) -> int:
        """ADCs per tile: its outputs shared ``columns_per_adc`` to a converter."""
        return math.ceil(self.outputs_per_tile / self.columns_per_adc)

    @property
    def conversions_per_adc(self) -> int:
        """Conversions one ADC makes in turn per read cycle."""
        return math.ceil(self.outputs_per_tile / self.adcs_per_tile)

    @property
    def utilisation(self) -> float:
        """Share of the cells holding a mapped weight."""
        cells = self.tiles * self.rows * self.cols
        return self.used_cells / cells if cells else 0.0


def layer_activity(array, record: ArrayActivity | None, samples: int, *, reads: float | None = None,
                   name: str = "") -> LayerActivity:
    """The :class:`LayerActivity` of a deployed :class:`memsim.crossbar.CrossbarArray` (a crossbar layer's
    ``array``) from its ``record`` over ``samples`` inferences; ``reads``: input vectors per inference when counted
    elsewhere (default: the record's)."""
    grid, preset = array.grid, array.preset
    tiles = grid.tiles()
    samples = max(int(samples), 1)
    vectors = record.vectors / samples if record is not None else 0.0
    return LayerActivity(tiles=len(tiles), rows=grid.rows, cols=grid.cols, outputs_per_tile=grid.outputs_per_tile,
                         used_rows=sum(t.used_rows for t in tiles), used_outputs=sum(t.used_outputs for t in tiles),
                         reads=vectors if reads is None else float(reads),
                         v2g=record.v2g / samples if record is not None else 0.0,
                         input_slices=input_slices(preset), weight_slices=weight_slices(preset),
                         columns_per_adc=columns_per_adc(preset), used_cells=sum(t.used_cells for t in tiles),
                         name=name)
