"""A chip: the hardware a trained network is deployed on, as one frozen, validated value.

:class:`Chip` holds what decides a deployed network's answers besides its weights: the crossbar preset (an object:
tiles, wires, device card, converters and their calibration, noise), how the arrays are simulated (``mode``), how
the weights are pruned and placed on tiles (``prune``: a :class:`memsim.nn.pruning.Pruning`; ``mapping``,
``block``), which chip of the preset it is (``seed``: its
programming noise, defects and read noise; layer ``k`` uses noise seed ``seed + k``) and how many training images
calibrate its converters (``calibration_samples``). :data:`IDEAL` is the exact product (no preset, no tiles).

Every field is checked when the chip is made, so a bad value stops before any network is loaded or data read; the
error names the field (``chip.<field>``), the value, what is allowed and the fix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..crossbar.array import DEFAULT_MODE, check_mode
from ..crossbar.presets import Preset, load_preset
from ..crossbar.sparse import DEFAULT_BLOCK
from ..errors import ParameterError
from ..nn.grouped import MAPPINGS, check_mapping
from ..nn.pruning import Pruning, check_tile, tile_block

__all__ = ["Chip", "IDEAL", "DEFAULT_CALIBRATION_SAMPLES"]

#: training images that calibrate a chip's converter ranges unless the chip says otherwise
DEFAULT_CALIBRATION_SAMPLES = 256


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, repr=False)
class Chip:
    """One simulated chip of a crossbar preset (see the module doc).

    Args:
        preset: a :class:`memsim.crossbar.Preset` (:meth:`load` takes a name or ``.toml`` path), or ``None`` for the
            ideal chip (:data:`IDEAL`: the exact product of the trained weights).
        mode: how the arrays are simulated, one of :data:`memsim.crossbar.array.MODES` (default
            :data:`memsim.crossbar.array.DEFAULT_MODE`); ``"ideal"`` on a preset is the exact product through its
            mapping and tiles (tiles counted, no converters or noise).
        mapping: ``"dense"`` | ``"sparse"`` for every crossbar layer, or ``{layer name: scheme}`` (layers not named
            are dense); kept as a sorted tuple of ``(name, scheme)`` pairs, immutable as the chip.
        prune: how each crossbar layer is pruned before mapping: a :class:`memsim.nn.pruning.Pruning` (method
            ``"unstructured" | "block" | "nm" | "nm_tile" | "filter"``, fraction, block, n, m), its fields as a
            dict, or a bare fraction in [0, 1) (the old form: unstructured magnitude pruning); kept as a
            :class:`Pruning`. Block and nm_tile pruning's blocks must divide the preset's tile (default: one tile);
            the ideal chip needs them given.
        block: ``(outputs, inputs)`` block size of sparse mapping's non-zero blocks (None: the groups of a
            grouped convolution, else 8 x 8).
        seed: the chip's noise seed (programming noise, device-to-device variation, stuck cells, read noise);
            layer ``k`` uses ``seed + k``.
        calibration_samples: training images (the first ones of the training split) that calibrate the converter
            ranges of the programmed chip; more than the split holds is an error when the chip is evaluated.
    """

    preset: Preset | None
    mode: str = DEFAULT_MODE
    mapping: str | tuple[tuple[str, str], ...] = "dense"
    prune: Pruning | float = 0.0
    block: tuple[int, int] | None = None
    seed: int = 0
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES

    def __post_init__(self):
        if self.preset is not None and not isinstance(self.preset, Preset):
            raise ParameterError("chip.preset", self.preset, "a memsim.crossbar.Preset object, or None for the "
                                 "ideal chip", "pass load_preset(name), or use Chip.load(name_or_path, ...)")
        try:
            check_mode(self.mode)
        except ParameterError as exc:
            raise ParameterError("chip.mode", exc.value, exc.allowed, exc.fix) from None
        if self.preset is None and self.mode != "ideal":
            raise ParameterError("chip.mode", self.mode, "'ideal' for the ideal chip (preset None: the exact "
                                 "product, no arrays to simulate)", "give a crossbar preset, or use Chip.ideal()")
        if self.preset is not None and self.mode == "irdrop" and self.preset.circuit.wires.ideal:
            w = self.preset.circuit.wires
            raise ParameterError("chip.mode", self.mode, "'noisy' for a preset with ideal wires (nothing for irdrop "
                                 "to solve)", f"the preset '{self.preset.name}' has ideal wires (r_wordline = "
                                 f"{w.r_wordline:g}, r_bitline = {w.r_bitline:g}, r_source = {w.r_source:g} Ohm): "
                                 f"use mode 'noisy', or a preset with wire resistance (memsim crossbar list)")
        object.__setattr__(self, "mapping", _check_chip_mapping(self.mapping))
        if self.preset is None and self.mapping != "dense":
            raise ParameterError("chip.mapping", self.layer_mapping, "'dense' for the ideal chip (it has no tiles)",
                                 "give a crossbar preset to compare mapping schemes")
        object.__setattr__(self, "prune", Pruning.parse(self.prune, "chip.prune"))
        check_tile(self.prune, None if self.preset is None else tile_block(self.preset))
        if self.block is not None:
            b = self.block
            if not isinstance(b, (tuple, list)) or len(b) != 2 or not all(_is_int(v) and v >= 1 for v in b):
                raise ParameterError("chip.block", b, "None or a pair of integers >= 1 (outputs, inputs)",
                                     f"give the block size of sparse mapping, e.g. {DEFAULT_BLOCK}")
            object.__setattr__(self, "block", (int(b[0]), int(b[1])))
        if not _is_int(self.seed) or self.seed < 0:
            raise ParameterError("chip.seed", self.seed, "an integer >= 0 (the chip's noise seed)",
                                 "chips are numbered by their noise seed: 0, 1, ...")
        if not _is_int(self.calibration_samples) or self.calibration_samples < 1:
            raise ParameterError("chip.calibration_samples", self.calibration_samples,
                                 "an integer >= 1 (training images that calibrate the converter ranges)",
                                 f"e.g. {DEFAULT_CALIBRATION_SAMPLES}")

    @classmethod
    def load(cls, preset: str | Path | Preset, **fields: Any) -> "Chip":
        """A chip of a preset given by name (``hfox_1t1r_64``), ``.toml`` path or object; ``"ideal"`` is
        :meth:`ideal` (then ``mode`` may only be ``"ideal"``). ``fields``: the other fields of :class:`Chip`."""
        if isinstance(preset, str) and preset == "ideal":
            return cls(None, **{"mode": "ideal", **fields})
        return cls(load_preset(preset), **fields)

    @classmethod
    def ideal(cls, **fields: Any) -> "Chip":
        """The exact product of the trained weights (``prune`` still applies)."""
        return cls(None, **{"mode": "ideal", **fields})

    @property
    def is_ideal(self) -> bool:
        """True for the ideal chip (no preset): nothing to program, calibrate or cost."""
        return self.preset is None

    @property
    def name(self) -> str:
        return "ideal" if self.preset is None else self.preset.name

    @property
    def layer_mapping(self) -> str | dict[str, str]:
        """``mapping`` as :func:`memsim.convert` takes it: a scheme, or ``{layer name: scheme}``."""
        return self.mapping if isinstance(self.mapping, str) else dict(self.mapping)

    def replace(self, **changes: Any) -> "Chip":
        """A copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def series(self, n: int) -> list["Chip"]:
        """``n`` chips of this design: the noise seeds ``seed .. seed + n - 1``."""
        if not _is_int(n) or n < 1:
            raise ParameterError("chips", n, "an integer >= 1", "give the number of chips to evaluate")
        if self.is_ideal:  # every ideal chip is the same exact product
            return [self]
        return [self.replace(seed=self.seed + k) for k in range(n)]

    def __repr__(self) -> str:
        p = self.preset
        tiles = "" if p is None else f" {p.rows}x{p.cols}"
        return (f"Chip({self.name!r}{tiles}, mode={self.mode!r}, mapping={self.layer_mapping!r}, prune={self.prune}, "
                f"block={self.block}, seed={self.seed}, calibration_samples={self.calibration_samples})")

    def describe(self) -> dict[str, Any]:
        """The chip as JSON-able values (records, ``memsim evaluate --json``)."""
        p = self.preset
        return {"preset": self.name, "rows": None if p is None else p.rows, "cols": None if p is None else p.cols,
                "mode": self.mode, "mapping": self.layer_mapping, "prune": self.prune.fraction,
                "pruning": self.prune.describe(),
                "block": None if self.block is None else list(self.block), "seed": self.seed,
                "calibration_samples": self.calibration_samples}


def _check_chip_mapping(mapping) -> str | tuple[tuple[str, str], ...]:
    if isinstance(mapping, str):
        return check_mapping(mapping, "chip.mapping")
    if isinstance(mapping, Mapping):
        pairs = mapping.items()
    elif isinstance(mapping, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in mapping):
        pairs = mapping
    else:
        raise ParameterError("chip.mapping", mapping, f"one of {list(MAPPINGS)} or a {{layer name: scheme}} dict",
                             "choose how the weights are placed on tiles")
    out = []
    for name, scheme in pairs:
        if not isinstance(name, str) or not name:
            raise ParameterError("chip.mapping", dict(pairs), "layer names (strings) as keys",
                                 "name each crossbar layer as model.named_modules() does, e.g. 'features.3'")
        out.append((name, check_mapping(scheme, f"chip.mapping[{name!r}]")))
    if not out:
        raise ParameterError("chip.mapping", {}, f"one of {list(MAPPINGS)} or a non-empty {{layer: scheme}} dict",
                             "give 'dense' for every layer")
    return tuple(sorted(out))


#: the ideal chip: the exact product of the trained weights (the float network), nothing to program or calibrate
IDEAL = Chip(None, mode="ideal")
