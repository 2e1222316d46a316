r"""Deploy a trained network on chips and measure it: the one "program, calibrate, evaluate" of memsim.

:func:`evaluate_on_chips` is what ``memsim evaluate``, training's :func:`memsim.training.evaluate_checkpoint` and
every sweep point run. For each :class:`~memsim.deploy.chip.Chip`:

1. **deploy**: the network's kind builds the network as the chip runs it (crossbar layers on the chip's preset, in
   its mode, mapped and pruned as it says); layer ``k`` becomes noise seed ``chip.seed + k``;
2. **program and calibrate**: one pass of the chip's calibration batch (the first ``chip.calibration_samples``
   training images) programs the chip (programming noise, defects, drift: drawn once, kept for the whole
   evaluation, as on a chip) and sets its converter ranges as its preset says
   (:func:`memsim.nn.calibration.calibrate`; e.g. the ADC full scale :math:`I_{fs} = P_{99}(|I_{t,j}|)` of the
   layer's column outputs);
3. **evaluate**: the data in order, batch by batch; the read noise stream continues from the calibration reads.
   Hooks measure each crossbar layer's output error against the exact product of its weights on the first batch,
   count its input vectors, and an :class:`~memsim.deploy.activity.ArrayActivity` on each array records what the
   cost model needs.

The result (:class:`ChipsEvaluation`) holds per chip the accuracy, the output errors, the calibration report and
the layers' :class:`~memsim.deploy.activity.LayerActivity`; over the chips the mean and spread; and the tile usage.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ParameterError
from ..nn.calibration import CalibrationReport, calibrate, crossbar_layers, require_calibrated
from ..progress import progress_bar
from .activity import ArrayActivity, LayerActivity, layer_activity
from .chip import Chip
from .kinds import TrainedNetwork
from .probe import LayerProbe
from .usage import usage

__all__ = ["evaluate_on_chips", "ChipResult", "ChipsEvaluation", "seed_chip"]


@dataclass
class ChipResult:
    """One chip's evaluation: accuracy and mean loss over ``samples``, the relative RMS output error of each
    crossbar layer (first batch), its calibration report (None for the ideal chip), the layers' activity per
    inference, and the seconds spent calibrating and in total."""

    chip: Chip
    accuracy: float
    loss: float
    samples: int
    output_error: dict[str, float]
    calibration: CalibrationReport | None
    activity: list[LayerActivity]
    calibration_time_s: float
    time_s: float

    @property
    def mean_output_error(self) -> float:
        errs = list(self.output_error.values())
        return sum(errs) / len(errs) if errs else 0.0


@dataclass
class ChipsEvaluation:
    """Every chip's :class:`ChipResult` and the tile usage of the deployed network (its layers' mapping figures,
    input vectors, tile reads and ADC conversions per inference; the first chip's, the layout is every chip's)."""

    network: TrainedNetwork
    results: list[ChipResult]
    usage: dict[str, Any] = field(repr=False)

    @property
    def per_chip(self) -> list[float]:
        return [r.accuracy for r in self.results]

    @property
    def accuracy(self) -> float:
        return sum(self.per_chip) / len(self.per_chip)

    @property
    def std(self) -> float:
        """Sample standard deviation over the chips (0 for one chip)."""
        acc, mean = self.per_chip, self.accuracy
        return math.sqrt(sum((a - mean) ** 2 for a in acc) / max(len(acc) - 1, 1))

    @property
    def output_error(self) -> float:
        """The layers' mean output error, averaged over the chips."""
        return sum(r.mean_output_error for r in self.results) / len(self.results)

    @property
    def activity(self) -> list[LayerActivity]:
        """The first chip's per-layer activity (the cost model's input)."""
        return self.results[0].activity

    def as_dict(self) -> dict[str, Any]:
        """The evaluation as JSON-able values: the chip design, accuracy (mean, std, per chip), output error, tile
        usage (totals and ``layers``), calibration per chip, samples and times."""
        first = self.results[0].chip
        layers = []
        for row in self.usage["layers"]:
            errs = [r.output_error.get(row["name"], 0.0) for r in self.results]
            layers.append({**row, "output_error": sum(errs) / len(errs)})
        design = first.describe()
        return {"checkpoint": str(self.network.source), "kind": self.network.kind.name, "arch": self.network.arch,
                "dataset": self.network.dataset, **{k: design[k] for k in ("preset", "rows", "cols", "mode",
                                                                          "mapping", "prune")},
                "seeds": len(self.results), "chip_seeds": [r.chip.seed for r in self.results],
                "samples": self.results[0].samples, "accuracy": self.accuracy, "std": self.std,
                "per_seed": self.per_chip, "output_error": self.output_error,
                **{k: v for k, v in self.usage.items() if k != "layers"}, "layers": layers,
                "calibration": [None if r.calibration is None else r.calibration.as_dict() for r in self.results],
                "calibration_samples": first.calibration_samples,
                "calibration_time_s": sum(r.calibration_time_s for r in self.results),
                "eval_time_s": sum(r.time_s for r in self.results)}


def seed_chip(model: nn.Module, seed: int) -> None:
    """Make ``model``'s crossbar layers chip ``seed``: layer ``k`` (in module order) gets noise seed ``seed + k``
    (its defects and its programming and read noise streams)."""
    for k, (_, layer) in enumerate(crossbar_layers(model)):
        layer.array.reseed(seed + k)


def _chips(chips) -> list[Chip]:
    chips = [chips] if isinstance(chips, Chip) else list(chips)
    if not chips:
        raise ParameterError("chips", [], "at least one memsim.deploy.Chip", "give the chips to evaluate on")
    for k, c in enumerate(chips):
        if not isinstance(c, Chip):
            raise ParameterError(f"chips[{k}]", c, "a memsim.deploy.Chip", "make one with Chip.load(preset, ...)")
    return chips


def _check(chips: list[Chip], data, calibration, batch_size: int) -> None:
    """Every input check, before any chip is built."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", batch_size, "an integer >= 1", "e.g. 256")
    if len(data) == 0:
        raise ParameterError("data", "an empty dataset", "at least one sample", "check the split and --limit")
    needs = [c for c in chips if not c.is_ideal]
    if needs and calibration is None:
        raise ParameterError("calibration", None, "the training split (its first images calibrate each chip)",
                             "pass calibration=train_set")
    for c in needs:
        if c.calibration_samples > len(calibration):
            raise ParameterError("chip.calibration_samples", c.calibration_samples,
                                 f"at most {len(calibration)} (the images of the calibration split)",
                                 f"calibrate on at most {len(calibration)} images")


def _evaluate_chip(network: TrainedNetwork, chip: Chip, data, calibration, batch_size: int,
                   device: torch.device | str | None) -> tuple[ChipResult, dict[str, Any]]:
    t0 = time.perf_counter()
    kind = network.kind
    model = kind.deploy(network, chip)
    if device is not None:
        model.to(device)
    layers = crossbar_layers(model)
    seed_chip(model, chip.seed)
    report, t_cal = None, 0.0
    if layers:
        images = calibration.images[:chip.calibration_samples]
        stimulus = kind.inputs(network, images, chip)
        t_cal = time.perf_counter()
        report = calibrate(model, lambda: model(stimulus))
        t_cal = time.perf_counter() - t_cal
        require_calibrated(model)
    records = {name: ArrayActivity() for name, _ in layers}
    probe = LayerProbe(layers)
    for name, layer in layers:
        layer.array.activity = records[name]
    try:
        torch.manual_seed(chip.seed)  # anything drawing from the global stream draws chip s's numbers
        r = kind.evaluate(network, model, data, chip=chip, batch_size=batch_size)
    finally:
        probe.close()
        for _, layer in layers:
            layer.array.activity = None
    samples = max(int(r["samples"]), 1)
    vectors = {name: probe.vectors[name] / samples for name, _ in layers}
    activity = [layer_activity(layer.array, records[name], samples, reads=vectors[name], name=name)
                for name, layer in layers]
    result = ChipResult(chip=chip, accuracy=float(r["accuracy"]), loss=float(r["loss"]), samples=int(r["samples"]),
                        output_error={name: probe.output_error(name) for name, _ in layers}, calibration=report,
                        activity=activity, calibration_time_s=t_cal, time_s=time.perf_counter() - t0)
    return result, usage(layers, vectors)


def evaluate_on_chips(network: TrainedNetwork, chips: Chip | Sequence[Chip], data, *, calibration=None,
                      batch_size: int = 256, device: torch.device | str | None = None,
                      progress: bool = False) -> ChipsEvaluation:
    """Program, calibrate and evaluate ``network`` on each of ``chips`` (see the module doc).

    ``network``: a :class:`TrainedNetwork` (:func:`memsim.training.trained.load_trained` reads one from a
    checkpoint). ``chips``: a :class:`Chip` or a sequence of them (``Chip.series(n)`` gives ``n`` chips of one
    design). ``data``: the samples to evaluate (an :class:`memsim.training.data.ImageDataset`), read in order.
    ``calibration``: the training split, whose first ``chip.calibration_samples`` images calibrate each chip
    (needed unless every chip is ideal). ``device``: where the chips' networks run (``data`` and ``calibration``
    must already be there). Every argument is checked before the first chip is built."""
    chips = _chips(chips)
    _check(chips, data, calibration, batch_size)
    results, layout = [], None
    for chip in progress_bar(chips, desc="chips", unit="chip", disable=not progress):
        result, chip_usage = _evaluate_chip(network, chip, data, calibration, batch_size, device)
        results.append(result)
        layout = layout or chip_usage
    return ChipsEvaluation(network, results, layout)
