"""Tile usage of a deployed network: per crossbar layer its tiles, cells and utilisation
(:func:`memsim.nn.grouped.mapping_stats`; with bit-sliced weights, every slice's tiles), its input and weight
slices, the input vectors it reads per inference, its tile reads (every tile, every cycle) and ADC conversions per
inference, and the totals over the layers.

:func:`tile_usage` answers without data, from one forward pass of an all-zero input on the chip.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ParameterError
from ..nn.calibration import crossbar_layers
from ..nn.grouped import mapping_stats
from .activity import adc_conversions_per_read, input_slices, weight_slices
from .chip import Chip
from .kinds import TrainedNetwork
from .probe import LayerProbe

__all__ = ["usage", "tile_usage", "TOTALS"]

#: the per-layer figures that are summed into a network's totals
TOTALS = ("tiles", "cells", "used_cells", "nonzero_cells", "zero_cells", "tile_reads_per_inference",
          "adc_conversions_per_inference")
#: per-layer figures of one weight slice's layout that a bit-sliced layer has once per slice
_PER_SLICE = ("tiles", "cells", "used_cells", "nonzero_cells", "zero_cells")


def usage(layers: list[tuple[str, nn.Module]], vectors: dict[str, float] | None) -> dict[str, Any]:
    """Per-layer rows (``layers``: ``(name, crossbar layer)``) and totals; ``vectors``: input vectors per
    inference by layer name (``None``: unknown, no read counts)."""
    rows = []
    for name, layer in layers:
        row = {"name": name, **mapping_stats(layer)}
        preset = layer.array.preset
        n_in, n_w = input_slices(preset), weight_slices(preset)
        vec = None if vectors is None else vectors[name]
        row.update(input_slices=n_in, weight_slices=n_w, vectors_per_inference=vec)
        if vec is not None:
            row["tile_reads_per_inference"] = row["tiles"] * n_w * vec * n_in  # every tile, every cycle of a vector
            row["adc_conversions_per_inference"] = vec * adc_conversions_per_read(
                row["tiles"], row["outputs_per_tile"], n_in, n_w)
        for key in _PER_SLICE:  # every weight slice has its own copy of the layout's tiles
            row[key] *= n_w
        rows.append(row)
    out: dict[str, Any] = {k: sum(r.get(k) or 0 for r in rows) for k in TOTALS}
    out["utilisation"] = out["used_cells"] / out["cells"] if out["cells"] else 0.0
    out["nonzero_utilisation"] = out["nonzero_cells"] / out["cells"] if out["cells"] else 0.0
    out["layers"] = rows
    return out


def tile_usage(network: TrainedNetwork, chip: Chip) -> dict[str, Any]:
    """Tile usage of ``network`` deployed on ``chip`` (see :func:`usage`), from one forward pass of an all-zero
    input (nothing calibrated, no data read)."""
    if chip.is_ideal:
        raise ParameterError("chip", "ideal", "a chip with a crossbar preset", "the ideal chip has no tiles to count")
    model = network.kind.deploy(network, chip.replace(mode="ideal"))  # the layout only: nothing to program
    layers = crossbar_layers(model)
    with LayerProbe(layers, error=False) as probe, torch.no_grad():
        model(network.kind.inputs(network, network.kind.probe_images(network), chip))
    return usage(layers, {name: float(n) for name, n in probe.vectors.items()})
