"""First-order cost model of crossbar inference: energy, latency and area per inference.

The constants live in a data file with provenance (``crossbar/cost/default.toml``; a path or a name searched in
``$MEMSIM_COST_PATH`` then ``crossbar/cost/``); the design - tiles, converters, bit-serial inputs, bit-sliced
weights, ADC sharing - comes from the preset of the deployed chip, and what each layer does from its
:class:`memsim.deploy.LayerActivity` (recorded while the chip was evaluated). Per crossbar layer ``l``, with ``R_l``
input vectors per inference (1 for a dense layer, the output positions for a convolution, the time steps for a
hidden MSNN layer), ``S_in = dac.bits / dac.slice_bits`` read cycles per vector (bit-serial DAC; 1 otherwise),
``S_w = weight_bits / cell_bits`` weight slices (each on its own copy of the layer's ``T_l`` tiles; 1 otherwise),
``O`` outputs per tile and ``c = adc.columns_per_adc`` outputs per ADC:

* array read energy   ``E_array = t_read * sum_cycles sum_cells V_i^2 G_ij``  (the word-line voltages of every cycle
  of the evaluated inputs, the programmed cell conductances of every slice, access device included);
* DAC energy          ``E_dac = R_l * S_in * S_w * rows_used * fom_dac * 2^(dac.bits / S_in)``  (every driven row of
  every slice's tiles, once per cycle, at the cycle's resolution);
* ADC energy          ``E_adc = R_l * S_in * S_w * T_l * O * fom_adc * 2^adc_bits``: every output of every placed tile
  is converted in every cycle, the unused (padding) outputs included (not power-gated); a differential pair, or an
  output and its tile's reference column, is subtracted in analog and converted once, as the simulated ADC does
  (:func:`memsim.deploy.adc_conversions_per_read`, the one count of the per-layer figures, the total and this energy);
* latency             ``sum_l R_l * S_in * (t_dac + t_read + c * adc_bits * t_bit)``: each cycle drives the rows, reads,
  and each SAR ADC converts its ``c`` outputs in turn; the tiles of a layer (all weight slices included) run in
  parallel, the layers in sequence;
* area                ``sum_tiles rows*cols*a_cell*F^2 + cols*a_col + rows*a_row + (O / c) * 2^adc_bits * a_level``
  over the ``S_w * T_l`` tiles: ``O / c`` ADCs per tile.

Left out (README, "Design-space sweeps"): digital partial-sum adders and the shift-and-add of slices, buffers and
on-chip interconnect, leakage, neuron/activation circuits, control, programming (write) energy, wire (IR) losses in
the energy term, the column multiplexers' own cost and converter energy that depends on the signal. A preset without
a DAC or ADC (ideal converters) has no converter cost.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..deploy.activity import LayerActivity
from ..deploy.chip import Chip
from ..errors import CardError
from ..resources import data_dir
from ..schema import check_keys, check_number, read_toml, suggest

COST_DIR = data_dir("crossbar") / "cost"  # a wheel must carry crossbar/cost/*.toml (setup.py DATA)
#: what :func:`layer_cost` and :func:`network_cost` return: J, s, m^2
COST_KEYS = ("energy_array", "energy_dac", "energy_adc", "energy", "latency", "area_cells", "area_periphery",
             "area")

_SCHEMA = {
    "technology": {"feature_size"},
    "cell": {"area_0T1R", "area_1T1R"},
    "read": {"t_read"},
    "adc": {"fom", "t_bit", "area_per_level"},
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
        if sec == "adc" and "outputs_per_adc" in t:  # the design, not a constant: it moved to the preset
            raise CardError(f"cost model {src}.adc: 'outputs_per_adc' is no longer a cost-model constant: ADC sharing "
                            f"is part of the design. Fix: remove it here and set [adc] columns_per_adc in the crossbar "
                            f"preset (or sweep the axis adc.columns_per_adc)")
        check_keys(t, keys, f"cost model {src}.{sec}")
        for k in keys:
            if k not in t:
                raise CardError(f"cost model {src}.{sec}: missing key '{k}'")
        vals[sec] = t
    return CostModel(name=str(data.get("name", src)), provenance=data["provenance"],
                     feature_size=vals["technology"]["feature_size"], area_0T1R=vals["cell"]["area_0T1R"],
                     area_1T1R=vals["cell"]["area_1T1R"], t_read=vals["read"]["t_read"],
                     adc_fom=vals["adc"]["fom"], adc_t_bit=vals["adc"]["t_bit"],
                     adc_area_per_level=vals["adc"]["area_per_level"],
                     dac_fom=vals["dac"]["fom"], dac_t_conv=vals["dac"]["t_conv"],
                     dac_area_per_row=vals["dac"]["area_per_row"],
                     area_per_column=vals["periphery"]["area_per_column"])


def layer_cost(cm: CostModel, act: LayerActivity, *, access: str, dac_bits: int | None,
               adc_bits: int | None) -> dict[str, float]:
    """Energy (J), latency (s) and area (m^2) of one layer per inference (see the module doc); ``dac_bits`` and
    ``adc_bits``: the converters' resolution (None: ideal, no cost); a bit-serial DAC converts ``dac_bits /
    act.input_slices`` bits per cycle."""
    cycle_bits = None if dac_bits is None else dac_bits // act.input_slices
    e_array = cm.t_read * act.v2g
    e_dac = act.dac_conversions * cm.dac_energy(cycle_bits)
    e_adc = act.adc_conversions * cm.adc_energy(adc_bits)
    t_cycle = (cm.dac_t_conv if dac_bits is not None else 0.0) + cm.t_read \
        + act.conversions_per_adc * cm.adc_time(adc_bits)
    n_adc = act.adcs_per_tile if adc_bits is not None else 0
    a_cells = act.physical_tiles * act.rows * act.cols * cm.cell_area(access)
    a_periph = act.physical_tiles * (act.cols * cm.area_per_column + act.rows * cm.dac_area_per_row
                                     + n_adc * cm.adc_area(adc_bits))
    return {"energy_array": e_array, "energy_dac": e_dac, "energy_adc": e_adc,
            "energy": e_array + e_dac + e_adc, "latency": act.read_cycles * t_cycle,
            "area_cells": a_cells, "area_periphery": a_periph, "area": a_cells + a_periph}


def network_cost(cm: CostModel, layers: list[LayerActivity], chip: Chip) -> dict[str, float]:
    """Sum of :func:`layer_cost` over the layers (run one after the other) of ``chip`` (its preset's access device
    and converter resolutions); the ideal chip has no crossbar layers and costs nothing."""
    total = {k: 0.0 for k in COST_KEYS}
    if chip.is_ideal:
        return total
    p = chip.preset
    kw = dict(access=p.circuit.access, dac_bits=p.dac.bits if p.dac is not None else None,
              adc_bits=p.adc.bits if p.adc is not None else None)
    for act in layers:
        for k, v in layer_cost(cm, act, **kw).items():
            total[k] += v
    return total
