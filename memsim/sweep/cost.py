"""First-order cost model of crossbar inference: energy, latency and area per inference.

The constants live in a data file with provenance (``crossbar/cost/default.toml``; a path or a name searched in
``$MEMSIM_COST_PATH`` then ``crossbar/cost/``). The model, per crossbar layer ``l`` with ``R_l`` tile reads per
inference (1 for a dense layer, the output positions for a convolution, the time steps for a hidden MSNN layer):

* array read energy   ``E_array = t_read * sum_reads sum_cells V_i^2 G_ij``  (the measured word-line voltages of the
  evaluated inputs, the programmed nominal cell conductances, access device included);
* DAC energy          ``E_dac = R_l * rows_used * fom_dac * 2^dac_bits``   (one conversion per driven row per read);
* ADC energy          ``E_adc = R_l * tiles_l * outputs_per_tile * fom_adc * 2^adc_bits``: every output of every
  placed tile is converted on each read, the unused (padding) outputs included (not power-gated); a differential pair,
  or an output and its tile's reference column, is subtracted in analog and converted once, as the simulated ADC does
  (:func:`memsim.ann.deploy.adc_conversions_per_read`, the one count of the per-layer figures, the total and this
  energy);
* latency             ``sum_l R_l * (t_dac + t_read + m_l * adc_bits * t_bit)``, ``m_l = min(outputs_per_tile,
  outputs_per_adc)`` sequential SAR conversions per ADC; the tiles of a layer run in parallel, the layers in sequence;
* area                ``sum_tiles rows*cols*a_cell*F^2 + cols*a_col + rows*a_row + n_adc*2^adc_bits*a_level`` with
  ``n_adc = ceil(outputs_per_tile / outputs_per_adc)``.

Left out (README, "Design-space sweeps"): digital partial-sum adders and shift-add, buffers and on-chip interconnect,
leakage, neuron/activation circuits, control, programming (write) energy, wire (IR) losses in the energy term,
and converter energy that depends on the signal. A preset without a DAC or ADC (ideal converters) has no converter cost.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import CardError, ParameterError
from ..resources import data_dir
from ..schema import check_keys, check_number, read_toml, suggest

COST_DIR = data_dir("crossbar") / "cost"  # a wheel must carry crossbar/cost/*.toml (setup.py DATA)

_SCHEMA = {
    "technology": {"feature_size"},
    "cell": {"area_0T1R", "area_1T1R"},
    "read": {"t_read"},
    "adc": {"fom", "t_bit", "outputs_per_adc", "area_per_level"},
    "dac": {"fom", "t_conv", "area_per_row"},
    "periphery": {"area_per_column"},
}


@dataclass(frozen=True)
class CostModel:
    name: str
    provenance: str
    feature_size: float       # m
    area_0T1R: float          # F^2
    area_1T1R: float          # F^2
    t_read: float             # s
    adc_fom: float            # J per conversion-step
    adc_t_bit: float          # s
    outputs_per_adc: int
    adc_area_per_level: float  # m^2 per 2^bits
    dac_fom: float            # J per conversion-step
    dac_t_conv: float         # s
    dac_area_per_row: float   # m^2
    area_per_column: float    # m^2

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("name", "provenance"):
                continue
            if f.name == "outputs_per_adc":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ParameterError(f"cost.adc.outputs_per_adc", v, "an integer >= 1",
                                         "give how many tile outputs share one ADC")
                continue
            check_number(v, f"cost.{f.name}", nonnegative=True, unit="SI units", fix="fix the cost-model file")

    def cell_area(self, access: str) -> float:
        """Area of one cell in m^2."""
        f2 = self.area_1T1R if access == "1T1R" else self.area_0T1R
        return f2 * self.feature_size ** 2

    def adc_energy(self, bits: int | None) -> float:
        """J per conversion (Walden: FoM * 2^bits)."""
        return 0.0 if bits is None else self.adc_fom * 2.0 ** bits

    def dac_energy(self, bits: int | None) -> float:
        return 0.0 if bits is None else self.dac_fom * 2.0 ** bits

    def adc_area(self, bits: int | None) -> float:
        return 0.0 if bits is None else self.adc_area_per_level * 2.0 ** bits

    def adc_time(self, bits: int | None) -> float:
        return 0.0 if bits is None else bits * self.adc_t_bit


def cost_model_path(name_or_path="default") -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    dirs = [Path(d) for d in os.environ.get("MEMSIM_COST_PATH", "").split(os.pathsep) if d] + [COST_DIR]
    for d in dirs:
        f = d / f"{name_or_path}.toml"
        if f.is_file():
            return f
    names = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.toml")})
    raise CardError(f"unknown cost model '{name_or_path}' (searched {[str(d) for d in dirs]}); "
                    + suggest(name_or_path, names, f"known: {names}"))


def load_cost_model(name_or_path="default") -> CostModel:
    """Load and validate a cost-model file (TOML, SI units, with provenance)."""
    if isinstance(name_or_path, CostModel):
        return name_or_path
    path = cost_model_path(name_or_path)
    data = read_toml(path)
    src = path.stem
    check_keys(data, {"name", "description", "provenance", *_SCHEMA}, f"cost model {src}")
    if not isinstance(data.get("provenance"), str) or not data["provenance"].strip():
        raise CardError(f"cost model {src}: 'provenance' must say where the constants come from")
    vals = {}
    for sec, keys in _SCHEMA.items():
        t = data.get(sec)
        if not isinstance(t, dict):
            raise CardError(f"cost model {src}: missing [{sec}] table")
        check_keys(t, keys, f"cost model {src}.{sec}")
        for k in keys:
            if k not in t:
                raise CardError(f"cost model {src}.{sec}: missing key '{k}'")
        vals[sec] = t
    return CostModel(name=str(data.get("name", src)), provenance=data["provenance"],
                     feature_size=vals["technology"]["feature_size"], area_0T1R=vals["cell"]["area_0T1R"],
                     area_1T1R=vals["cell"]["area_1T1R"], t_read=vals["read"]["t_read"],
                     adc_fom=vals["adc"]["fom"], adc_t_bit=vals["adc"]["t_bit"],
                     outputs_per_adc=vals["adc"]["outputs_per_adc"], adc_area_per_level=vals["adc"]["area_per_level"],
                     dac_fom=vals["dac"]["fom"], dac_t_conv=vals["dac"]["t_conv"],
                     dac_area_per_row=vals["dac"]["area_per_row"],
                     area_per_column=vals["periphery"]["area_per_column"])


@dataclass
class LayerActivity:
    """What one crossbar layer does per inference (from :class:`ActivityRecorder`, or given by hand).

    ``tiles``: physical tiles; ``rows``/``cols``/``outputs_per_tile``: the tile geometry; ``used_rows`` and
    ``used_outputs``: summed over the tiles (rows driven and outputs holding weights per read; the ADC converts
    every output, see :attr:`adc_conversions`); ``reads``: tile reads per inference; ``v2g``:
    ``sum_reads sum_cells V^2 G`` per inference (W)."""
    tiles: int
    rows: int
    cols: int
    outputs_per_tile: int
    used_rows: int
    used_outputs: int
    reads: float
    v2g: float

    @property
    def adc_conversions(self) -> float:
        """ADC conversions per inference: ``reads`` times every output of every tile (the deploy code's count, so
        the per-layer figures, the sweep's total and the ADC energy are one number)."""
        from ..ann.deploy import adc_conversions_per_read  # torch and the network stack: only when a cost is asked
        return self.reads * adc_conversions_per_read(self.tiles, self.outputs_per_tile)


def layer_cost(cm: CostModel, act: LayerActivity, *, access: str, dac_bits: int | None,
               adc_bits: int | None) -> dict[str, float]:
    """Energy (J), latency (s) and area (m^2) of one layer per inference."""
    e_array = cm.t_read * act.v2g
    e_dac = act.reads * act.used_rows * cm.dac_energy(dac_bits)
    e_adc = act.adc_conversions * cm.adc_energy(adc_bits)
    m = min(act.outputs_per_tile, cm.outputs_per_adc)
    t_tile = (cm.dac_t_conv if dac_bits is not None else 0.0) + cm.t_read + m * cm.adc_time(adc_bits)
    n_adc = math.ceil(act.outputs_per_tile / cm.outputs_per_adc) if adc_bits is not None else 0
    a_cells = act.tiles * act.rows * act.cols * cm.cell_area(access)
    a_periph = act.tiles * (act.cols * cm.area_per_column + act.rows * cm.dac_area_per_row
                            + n_adc * cm.adc_area(adc_bits))
    return {"energy_array": e_array, "energy_dac": e_dac, "energy_adc": e_adc,
            "energy": e_array + e_dac + e_adc, "latency": act.reads * t_tile,
            "area_cells": a_cells, "area_periphery": a_periph, "area": a_cells + a_periph}


def network_cost(cm: CostModel, layers: list[LayerActivity], preset) -> dict[str, float]:
    """Sum of :func:`layer_cost` over the layers (run one after the other) for a crossbar preset."""
    kw = dict(access=preset.circuit.access, dac_bits=preset.dac.bits if preset.dac is not None else None,
              adc_bits=preset.adc.bits if preset.adc is not None else None)
    total: dict[str, float] = {}
    for act in layers:
        for k, v in layer_cost(cm, act, **kw).items():
            total[k] = total.get(k, 0.0) + v
    return total


class ActivityRecorder:
    """Wraps a :class:`memsim.crossbar.CrossbarArray`'s tile layout (``array.grid``) and records what the
    array does: the programmed nominal conductances (``pack``) and every word-line voltage vector
    (``pack_inputs``), so the cost follows the network's real inputs and its tile layout, dense or not."""

    def __init__(self, grid):
        self._grid = grid
        self.g = None
        self.rows_read = 0
        self.v2g = 0.0
        self.active = True

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def pack(self, *a, **k):
        g = self._grid.pack(*a, **k)
        self.g = g.detach()
        return g

    def pack_inputs(self, v):
        vt = self._grid.pack_inputs(v)
        if self.active and self.g is not None:
            self.rows_read += int(vt.shape[0])
            s = (vt.detach().double() ** 2).sum(0)                       # [nr, rows]
            gs = self.g.double().sum(-1)                                  # [nr, nc, rows]
            self.v2g += float(torch_einsum("ri,rci->", s, gs))
        return vt

    def reset(self) -> None:
        self.rows_read, self.v2g = 0, 0.0

    def activity(self, samples: int) -> LayerActivity:
        grid = self._grid
        tiles = grid.tiles()
        reads = self.rows_read / max(samples, 1)
        return LayerActivity(tiles=len(tiles), rows=grid.rows, cols=grid.cols,
                             outputs_per_tile=grid.outputs_per_tile,
                             used_rows=sum(t.used_rows for t in tiles), used_outputs=sum(t.used_outputs for t in tiles),
                             reads=reads, v2g=self.v2g / max(samples, 1))


def torch_einsum(eq, *ops):
    import torch
    return torch.einsum(eq, *ops)
