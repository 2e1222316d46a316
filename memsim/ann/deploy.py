"""Deploying a trained network (ANN or MSNN checkpoint) on a crossbar preset, in one call: kept for the scripts that
use these names; both are thin callers of :mod:`memsim.deploy`.

:func:`evaluate_deployed` is :func:`memsim.training.evaluate_checkpoint` on the chips of one design (a preset, a
mapping scheme, pruning); :func:`mapping_report` is :func:`memsim.deploy.tile_usage`, the tile usage without data.
New code: ``memsim.deploy.evaluate_on_chips(load_trained(source), Chip.load(preset, ...).series(n), data, ...)``.
"""
from __future__ import annotations

from typing import Any

from ..crossbar.array import DEFAULT_MODE
from ..deploy.chip import DEFAULT_CALIBRATION_SAMPLES, Chip
from ..deploy.usage import tile_usage
from ..training.loop import evaluate_checkpoint
from ..training.trained import load_trained

__all__ = ["evaluate_deployed", "mapping_report"]


def _chip(preset, mode, mapping, prune, block, seed=0, calibration=DEFAULT_CALIBRATION_SAMPLES) -> Chip:
    if isinstance(preset, str) and preset == "ideal":  # the exact product: one chip, whatever mode was asked
        return Chip.ideal(prune=prune, calibration_samples=calibration)
    return Chip.load(preset, mode=mode, mapping=mapping, prune=prune, block=block, seed=seed,
                     calibration_samples=calibration)


def evaluate_deployed(source, preset, *, mapping="dense", prune: float = 0.0, mode: str = DEFAULT_MODE, seeds: int = 1,
                      limit: int | None = None, batch_size: int = 256, split: str = "test", data_dir=None,
                      block=None, progress: bool = False, calibration: int = DEFAULT_CALIBRATION_SAMPLES,
                      first_seed: int = 0) -> dict[str, Any]:
    """Accuracy, product error and tile usage of a trained network deployed on ``preset``.

    ``source``: checkpoint file, run directory, or Config / TOML config (its output.dir). ``preset``: name,
    ``.toml`` path, :class:`memsim.crossbar.Preset`, or ``"ideal"`` (exact product; one chip). ``mapping``:
    ``"dense"`` | ``"sparse"`` or ``{layer_name: scheme}``; ``prune``: fraction of each crossbar layer's weights
    zeroed by magnitude; ``mode``: how the arrays are simulated; ``seeds``: chips averaged, the noise seeds
    ``first_seed .. first_seed + seeds - 1``; ``limit``: the first N samples; ``calibration``: training images
    that calibrate each chip. Returned keys: those of :meth:`memsim.deploy.ChipsEvaluation.as_dict` (accuracy,
    std, per_seed, output_error, tiles, cells, used/nonzero/zero cells, utilisation, nonzero_utilisation,
    tile_reads_per_inference, adc_conversions_per_inference, layers, calibration, ...)."""
    chip = _chip(preset, mode, mapping, prune, block, first_seed, calibration)
    return evaluate_checkpoint(source, chip, seeds=seeds, split=split, limit=limit, batch_size=batch_size,
                               progress=progress, data_dir=data_dir, device="cpu")


def mapping_report(source, preset, *, mapping="dense", prune: float = 0.0, block=None,
                   data_dir=None) -> dict[str, Any]:
    """Tile usage of a checkpoint's network on ``preset`` (the mapping keys of :func:`evaluate_deployed`), from one
    probe forward pass of an all-zero input; loads no data."""
    chip = _chip(preset, "ideal", mapping, prune, block)
    network = load_trained(source, data_dir=data_dir)
    d = chip.describe()
    return {"checkpoint": str(network.source), "kind": network.kind.name, "arch": network.arch,
            **{k: d[k] for k in ("preset", "rows", "cols", "mapping", "prune")}, **tile_usage(network, chip)}
