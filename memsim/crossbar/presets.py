"""The array library: TOML presets in ``crossbar/``, validated on load.

A preset gives the tile size, access device, wire resistance, DAC/ADC, mapping,
noise figures and the device card, plus a one-line provenance. Search path for a
preset given by name: ``$MEMSIM_CROSSBAR_PATH`` (``os.pathsep``-separated), then the
repository's ``crossbar/``; a name that is an existing ``.toml`` path is loaded directly.

Layout::

    name = "..."; description = "..."; provenance = "..."
    [tile]       rows, cols, access ("0T1R" | "1T1R")
    [wires]      r_wordline, r_bitline (Ohm per cell segment, >= 0), r_source (Ohm, >= 0), and the layout:
                 driver_segment, sense_segment (true/false), sense_end ("bottom" | "top"), drive ("left" | "both")
    [transistor] k (S/V), v_th (V), g_off (S), v_gate (V)          1T1R only, optional
    [device]     card (device card name), v_read (V)
    [mapping]    scheme ("differential" | "offset"), levels (0 = analog, or >= 2: the levels of one cell),
                 weight_bits (bits of a weight's code; optional: absent = not bit-sliced), cell_bits (bits per
                 cell, dividing weight_bits; default weight_bits; with weight_bits, levels = 2**cell_bits),
                 weight_scale ("column" | "layer": the largest |weight| of each output, or of the whole layer,
                 maps to the full conductance window; default "column"), stuck_compensation ("none" | "partner":
                 the controller retargets the partner of a cell stuck at g_max; default "none")
    [dac]        bits, v_max (V), calibration ("percentile" | "max" | "mse" | "fixed"), percentile (in (0, 100]),
                 slice_bits (bits per bit-serial cycle, dividing bits; default bits)   optional: absent = ideal DAC
    [adc]        bits, range (fraction of rows * v_max * dG, the "fixed" full scale), calibration, percentile,
                 granularity ("layer" | "tile"), columns_per_adc (outputs per ADC, dividing the tile's outputs)
                                                                  optional: absent = ideal ADC
    [noise]      program, read, d2d, stuck_on, stuck_off, drift_nu, drift_t, drift_t0, seed   optional
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CardError, ParameterError
from ..schema import REQUIRED, KeySpec, check_keys, check_required, dataclass_keys, read_toml, suggest
from ..devices.cards import Card, load_card
from ..resources import data_dir, env_dirs
from ..safetext import spice_name
from .circuit import ACCESS_KINDS, TileCircuit, Transistor, Wires
from .mapping import SCHEMES, STUCK_COMPENSATION, WEIGHT_SCALES, Mapping, conductance_window
from .nonideal import NonIdealities
from .periphery import ADC, DAC
from .tiling import check_tile_size

CROSSBAR_DIR = data_dir("crossbar")

#: the [noise] keys: NonIdealities' fields (their defaults come from it), with their meaning and ranges
_NOISE = {
    "program": KeySpec("float", "programming noise: Gaussian std as a fraction of the window g_max - g_min, drawn "
                                "each time the array is programmed", lo=0.0),
    "read": KeySpec("float", "read noise: relative Gaussian std of each cell's current, drawn per read", lo=0.0),
    "d2d": KeySpec("float", "device-to-device variation: sigma of a fixed lognormal factor exp(d2d N(0, 1)) per "
                            "cell", lo=0.0),
    "stuck_on": KeySpec("float", "fraction of cells stuck at g_max", lo=0.0, hi=1.0,
                        rule="stuck_on + stuck_off <= 1"),
    "stuck_off": KeySpec("float", "fraction of cells stuck at g_min", lo=0.0, hi=1.0,
                         rule="stuck_on + stuck_off <= 1"),
    "drift_nu": KeySpec("float", "conductance drift exponent: G(t) = G(t0) (t / t0)^-drift_nu (0 = no drift)",
                        lo=0.0),
    "drift_t": KeySpec("float", "time after programming at which the array is read", unit="s", lo=0.0,
                       lo_open=True),
    "drift_t0": KeySpec("float", "reference time t0 of the drift law", unit="s", lo=0.0, lo_open=True),
    "seed": KeySpec("int", "seed of the non-idealities (each source derives its own from it)", lo=0),
}

# The keys of a preset, section by section ("" = the top level): the loader checks against these specs (allowed
# and required keys, defaults; the values are checked by the classes they are loaded into) and the documentation's
# reference is generated from them. The sections loaded into a dataclass take its fields' specs and defaults.
_KEYS = {
    "": {
        "name": KeySpec("str", "the preset's name: an identifier (it names netlists and result folders)"),
        "description": KeySpec("str", "one line on the array", default=""),
        "provenance": KeySpec("str", "where the figures come from (paper, datasheet): a non-empty line"),
        "tile": KeySpec("table", "the tile's size and access device ([tile] keys)"),
        "wires": KeySpec("table", "the wire resistances and layout ([wires] keys)"),
        "transistor": KeySpec("table", "the 1T1R access transistor ([transistor] keys; tile.access = 1T1R only)",
                              default=None, absent="the default transistor (with 1T1R)"),
        "device": KeySpec("table", "the device card of every cell and its read voltage ([device] keys)"),
        "mapping": KeySpec("table", "how weights become conductances ([mapping] keys)"),
        "dac": KeySpec("table", "the word-line drivers ([dac] keys)", default=None,
                       absent="an ideal DAC (exact input voltages)"),
        "adc": KeySpec("table", "the column converters ([adc] keys)", default=None,
                       absent="an ideal ADC (exact column currents)"),
        "noise": KeySpec("table", "the device non-idealities ([noise] keys)", default=None,
                         absent="no non-idealities"),
    },
    "tile": {
        "rows": KeySpec("int", "word lines (inputs) per tile", lo=1),
        "cols": KeySpec("int", "bit lines (outputs) per tile: two per weight (differential) or one per weight and "
                               "a reference column (offset)", lo=2),
        "access": KeySpec("choice", "access device: 0T1R (passive) or 1T1R (a transistor in series with each "
                                    "memristor)", default="0T1R", choices=ACCESS_KINDS),
    },
    "wires": dataclass_keys(Wires, required=("r_wordline", "r_bitline")),
    "transistor": dataclass_keys(Transistor),
    "device": {
        "card": KeySpec("str", "the device card of every cell (memsim device list)"),
        "v_read": KeySpec("float", "read voltage: the conductance window g_min..g_max is the card's chord "
                                   "conductance i/v there", unit="V", rule="non-zero, inside the card's valid voltage"),
    },
    "mapping": {
        "scheme": KeySpec("choice", "weight to conductance: a differential pair per weight, or one cell per weight "
                                    "and a reference column (offset)", default="differential", choices=SCHEMES),
        "levels": KeySpec("int", "programmable conductance levels of a cell", default=None, lo=0,
                          rule="0 (analog) or >= 2; 2**cell_bits with weight_bits",
                          absent="2**cell_bits with weight_bits, else 0 (analog)"),
        "weight_bits": KeySpec("int", "bits of a weight's code, sliced over cells of cell_bits bits", default=None,
                               lo=1, hi=16, absent="not bit-sliced"),
        "cell_bits": KeySpec("int", "bits per cell of a bit-sliced weight", default=None, lo=1,
                             rule="a divisor of weight_bits; only with weight_bits", absent="weight_bits"),
        "weight_scale": KeySpec("choice", "the largest |weight| of each output (column) or of the whole layer maps "
                                          "to the full conductance window", default="column",
                                choices=WEIGHT_SCALES),
        "stuck_compensation": KeySpec("choice", "what programming does about a cell stuck at g_max: nothing, or "
                                                "retarget its differential partner so that the pair keeps its "
                                                "difference (a write-verify controller's fault compensation)",
                                      default="none", choices=STUCK_COMPENSATION),
    },
    "dac": dataclass_keys(DAC),
    "adc": dataclass_keys(ADC),
    "noise": dataclass_keys(NonIdealities, _NOISE),
}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    provenance: str
    rows: int
    cols: int
    circuit: TileCircuit
    card: Card
    v_read: float
    scheme: str
    levels: int
    dac: DAC | None
    adc: ADC | None
    noise: NonIdealities
    weight_bits: int | None = None  # bit-sliced weights: the code's bits (None: not sliced)
    cell_bits: int | None = None    # bits per cell (None: weight_bits)
    weight_scale: str = "column"    # WEIGHT_SCALES: which largest |weight| maps to the full window
    stuck_compensation: str = "none"  # STUCK_COMPENSATION: the partner of a cell stuck at g_max retargeted or not
    g_min: float = field(init=False)
    g_max: float = field(init=False)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        check_tile_size(self.rows, self.cols, self.scheme)
        if self.scheme not in SCHEMES:
            raise ParameterError("mapping.scheme", self.scheme, f"one of {list(SCHEMES)}", "choose a mapping scheme")
        if self.weight_scale not in WEIGHT_SCALES:
            raise ParameterError("mapping.weight_scale", self.weight_scale, f"one of {list(WEIGHT_SCALES)}",
                                 "'column' scales each output's weights to the full window (a per-output digital "
                                 "gain, as aihwkit's channel-wise remapping); 'layer' one scale for the layer")
        if self.stuck_compensation not in STUCK_COMPENSATION:
            raise ParameterError("mapping.stuck_compensation", self.stuck_compensation,
                                 f"one of {list(STUCK_COMPENSATION)}", "'partner' retargets the differential "
                                 "partner of a cell stuck at g_max; 'none' leaves the pair as programmed")
        if self.stuck_compensation != "none" and self.scheme != "differential":
            raise ParameterError("mapping.stuck_compensation", self.stuck_compensation,
                                 "'none' with mapping.scheme = 'offset'", "partner compensation needs differential "
                                 "pairs: set mapping.scheme = 'differential' or stuck_compensation = 'none'")
        g_min, g_max = conductance_window(self.card, self.v_read)
        object.__setattr__(self, "g_min", g_min)
        object.__setattr__(self, "g_max", g_max)
        Mapping(self.scheme, g_min, g_max, self.levels, self.weight_bits, self.cell_bits)  # validates levels, slices
        if self.adc is not None:
            self._check_adc_sharing()

    def _check_adc_sharing(self) -> None:
        outputs = self.cols // 2 if self.scheme == "differential" else self.cols - 1
        share = self.adc.columns_per_adc
        if outputs % share:
            divisors = [d for d in range(1, outputs + 1) if outputs % d == 0]
            per = "pair" if self.scheme == "differential" else "column, the last being the reference"
            raise ParameterError("adc.columns_per_adc", share,
                                 f"a divisor of the tile's {outputs} outputs (tile.cols = {self.cols}, one ADC input "
                                 f"per {per}): one of {divisors}",
                                 "share each ADC among a number of outputs that divides the tile's outputs")

    @property
    def v_max(self) -> float:
        """Largest input voltage (the DAC's full scale, else the read voltage)."""
        return self.dac.v_max if self.dac is not None else abs(self.v_read)

    @property
    def nonlinear(self) -> bool:
        """True when the card's current is not linear in voltage (linear ion-drift families are linear)."""
        return not self.card.family.name.startswith("linear_drift")

    def cell_window(self) -> tuple[float, float]:
        """Window of the whole cell's conductance (S): the card's window, in series with g_T for 1T1R.

        Write-verify programs the cell as read through its access transistor, so weights are
        mapped onto this window and the memristor is set to the conductance that yields it.
        """
        if self.circuit.access != "1T1R":
            return self.g_min, self.g_max
        gt = self.circuit.transistor.conductance_on()
        return self.g_min * gt / (self.g_min + gt), self.g_max * gt / (self.g_max + gt)

    def mapping(self) -> Mapping:
        lo, hi = self.cell_window()
        return Mapping(self.scheme, lo, hi, self.levels, self.weight_bits, self.cell_bits)

    def replace(self, **changes) -> "Preset":
        """A copy with fields replaced; ``r_wire`` sets both wire resistances, ``access`` the access device."""
        changes = dict(changes)
        if "r_wire" in changes:
            r = changes.pop("r_wire")
            changes["circuit"] = dataclasses.replace(changes.get("circuit", self.circuit),
                                                     wires=dataclasses.replace(self.circuit.wires, r_wordline=r,
                                                                               r_bitline=r))
        if "access" in changes:
            acc = changes.pop("access")
            changes["circuit"] = TileCircuit(changes.get("circuit", self.circuit).wires, acc,
                                             self.circuit.transistor if acc == "1T1R" else None)
        if ("weight_bits" in changes or "cell_bits" in changes) and "levels" not in changes:
            bits = changes.get("cell_bits", self.cell_bits)  # a cell's levels follow its bits
            bits = changes.get("weight_bits", self.weight_bits) if bits is None else bits
            if isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits <= 16:
                changes["levels"] = 2 ** bits
        if "noise" in changes and isinstance(changes["noise"], dict):
            changes["noise"] = dataclasses.replace(self.noise, **changes["noise"])
        kept = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        kept.update(changes)
        return Preset(**kept)

    def summary(self) -> str:
        w = self.circuit.wires
        sliced = f" ({self.weight_bits}-bit weights on {self.weight_bits // self.cell_bits} cells)" \
            if self.weight_bits is not None and self.cell_bits < self.weight_bits else ""
        return (f"{self.name}: {self.rows}x{self.cols} {self.circuit.access}, card {self.card.name} "
                f"(G {self.g_min:.3g}..{self.g_max:.3g} S at {self.v_read} V), wires {w.r_wordline}/{w.r_bitline} Ohm, "
                f"source {w.r_source} Ohm, {self.scheme} mapping ({self.weight_scale} scale{_describe_compensation(self)}), levels {self.levels or 'analog'}{sliced}, "
                f"DAC {_describe_dac(self.dac)}, ADC {_describe_adc(self.adc)}")


def _describe_compensation(p: "Preset") -> str:
    return "" if p.stuck_compensation == "none" else f", stuck cells: {p.stuck_compensation} compensation"


def _calibration(conv) -> str:
    return f"percentile {conv.percentile:g}" if conv.calibration == "percentile" else conv.calibration


def _describe_dac(dac: DAC | None) -> str:
    if dac is None:
        return "-"
    serial = f", {dac.slice_bits} b per cycle" if dac.input_slices > 1 else ""
    return f"{dac.bits} b ({_calibration(dac)}{serial})"


def _describe_adc(adc: ADC | None) -> str:
    if adc is None:
        return "-"
    if adc.calibration == "fixed":
        how = f"fixed {adc.range:g}"
    else:
        how = f"{_calibration(adc)} per {adc.granularity}"
    share = f", {adc.columns_per_adc} outputs per ADC" if adc.columns_per_adc > 1 else ""
    return f"{adc.bits} b ({how}{share})"


def search_path() -> list[Path]:
    return env_dirs("MEMSIM_CROSSBAR_PATH") + [CROSSBAR_DIR]


def list_presets() -> list[str]:
    """Names of the presets on the search path (user folders first). None at all is a broken install: an error."""
    names: dict[str, Path] = {}
    for d in search_path():
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                names.setdefault(f.stem, f)
    if not names:
        raise CardError(f"no crossbar presets found (searched {[str(d) for d in search_path()]}); reinstall memsim "
                        "or point $MEMSIM_CROSSBAR_PATH at a folder of preset .toml files")
    return list(names)


def preset_path(name_or_path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    for d in search_path():
        f = d / f"{name_or_path}.toml"
        if f.is_file():
            return f
    hint = suggest(name_or_path, list_presets(), "see the presets in crossbar/ (memsim crossbar list)")
    raise CardError(f"unknown crossbar preset '{name_or_path}' (searched {[str(d) for d in search_path()]}); {hint}")


def _table(data: dict, key: str, source: str) -> dict | None:
    """The [key] table, its keys checked (unknown and required ones); None for an optional table left out."""
    t = data.get(key)
    if t is None:
        if _KEYS[""][key].required:
            raise CardError(f"{source}: missing [{key}] table ({_KEYS[''][key].doc})")
        return None
    if not isinstance(t, dict):
        raise CardError(f"{source}: [{key}] must be a table")
    check_keys(t, _KEYS[key], f"{source}.{key}")
    check_required(t, _KEYS[key], f"{source}.{key}")
    return t


def _get(t: dict, section: str, key: str):
    """``t[key]``, else the key's default (a required key is checked by :func:`_table`)."""
    default = _KEYS[section][key].default
    return t[key] if key in t or default is REQUIRED else t.get(key, default)


def _construct(where: str, cls, kwargs):
    try:
        return cls(**kwargs)
    except ParameterError as exc:  # name the file in the field
        raise ParameterError(f"{where}.{exc.field}", exc.value, exc.allowed, exc.fix) from None


def parse_preset(data: dict, source: str, path: Path | None = None) -> Preset:
    check_keys(data, _KEYS[""], source)
    check_required(data, _KEYS[""], source)
    for k in ("name", "provenance"):
        if not isinstance(data.get(k), str) or not data[k].strip():
            raise CardError(f"{source}: '{k}' must be a non-empty string (a preset states where its figures come from)")
    spice_name(data["name"], f"{source}.name")  # names netlists, result folders and comments: an identifier only
    tile = _table(data, "tile", source)
    wires = _table(data, "wires", source)
    device = _table(data, "device", source)
    mapping = _table(data, "mapping", source)
    trans = _table(data, "transistor", source)
    dac = _table(data, "dac", source)
    adc = _table(data, "adc", source)
    noise = _table(data, "noise", source) or {}

    access = _get(tile, "tile", "access")
    w = _construct(source, Wires, wires)
    if trans is not None and access != "1T1R":
        raise CardError(f"{source}: [transistor] is only meaningful with tile.access = '1T1R' (got '{access}')")
    t = _construct(source, Transistor, trans) if trans is not None else None
    circuit = _construct(source, TileCircuit, {"wires": w, "access": access, "transistor": t})
    card_name = device["card"]
    try:
        card = load_card(card_name)
    except CardError as exc:
        raise CardError(f"{source}.device.card: {exc}. Fix: name a card in devices/ (memsim device list)") from None
    rows, cols = tile["rows"], tile["cols"]
    scheme = _get(mapping, "mapping", "scheme")
    try:
        check_tile_size(rows, cols, scheme)
    except ParameterError as exc:
        raise ParameterError(f"{source}.{exc.field}", exc.value, exc.allowed, exc.fix) from None
    try:
        return Preset(name=data["name"], description=str(data.get("description", "")), provenance=data["provenance"],
                      rows=rows, cols=cols, circuit=circuit, card=card,
                      v_read=device["v_read"], scheme=scheme,
                      levels=mapping.get("levels", _cell_levels(mapping)),
                      weight_bits=_get(mapping, "mapping", "weight_bits"),
                      cell_bits=_get(mapping, "mapping", "cell_bits"),
                      weight_scale=_get(mapping, "mapping", "weight_scale"),
                      stuck_compensation=_get(mapping, "mapping", "stuck_compensation"),
                      dac=_construct(source, DAC, dac) if dac is not None else None,
                      adc=_construct(source, ADC, adc) if adc is not None else None,
                      noise=_construct(source, NonIdealities, noise), path=path)
    except ParameterError as exc:
        if exc.field.startswith(source):
            raise
        raise ParameterError(f"{source}.{exc.field}", exc.value, exc.allowed, exc.fix) from None


def _cell_levels(mapping: dict):
    """A cell's levels when ``levels`` is left out: 2**cell_bits for bit-sliced weights, else analog (0)."""
    bits = mapping.get("cell_bits", mapping.get("weight_bits"))
    return 2 ** bits if isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits <= 16 else 0


def load_preset(name_or_path) -> Preset:
    """Load and validate a crossbar preset by name (``hfox_1t1r_64``) or path."""
    if isinstance(name_or_path, Preset):
        return name_or_path
    path = preset_path(name_or_path)
    return parse_preset(read_toml(path), source=path.stem, path=path)
