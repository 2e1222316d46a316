"""One sweep point, evaluated in a worker process (local pool or Ray): deploy (or fine-tune, then deploy) the
point's network on its chips (:func:`memsim.deploy.evaluate_on_chips`) and add the cost model, which reads what the
first chip did (:class:`memsim.deploy.LayerActivity`). Never raises: an error is part of the point's record, so
the sweep goes on."""
from __future__ import annotations

import math
import tempfile
import time
import traceback
from pathlib import Path

import torch

from ..deploy.chip import Chip
from ..deploy.evaluate import ChipsEvaluation, evaluate_on_chips
from ..deploy.kinds import network_kind
from ..interop.kind import NIRSetup, load_nir
from ..training.config import load_config
from ..allocator import tune_malloc
from ..training.data import ImageDataset, load_dataset
from ..training.loop import load_datasets
from ..training.trained import load_trained
from .cost import load_cost_model, network_cost
from .spec import build_preset, point_pruning

__all__ = ["evaluate_point", "point_chip"]


def _set_threads():
    tune_malloc()  # a Ray worker starts here, not in the local pool's initialiser
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _mapping(text: str) -> str | dict[str, str]:
    """A point's mapping: a scheme, or ``"LAYER=scheme,LAYER2=scheme"`` per layer (a layer it does not apply to
    fails this point only)."""
    if "=" not in text:
        return text
    return {k.strip(): v.strip() for k, v in (part.partition("=")[::2] for part in text.split(","))}


def point_chip(resolved: dict) -> Chip:
    """The first chip of a point: its preset (the base preset with the point's keys), mode, mapping, pruning and
    first noise seed (the point's chips are the seeds ``chip_seed .. chip_seed + chips - 1``)."""
    return Chip(build_preset(resolved), mode=resolved["mode"], mapping=_mapping(resolved["mapping"]),
                prune=point_pruning(resolved, "chip.prune"), seed=resolved.get("chip_seed", 0))


_DATA: dict = {}


def _datasets(cfg) -> tuple[ImageDataset, ImageDataset]:
    """The run's datasets, kept for the next point (a sweep evaluates many points on the same data; one dataset at a
    time: Fashion-MNIST is ~200 MB as float32)."""
    d = cfg.data
    key = (d.dataset, d.data_dir, d.test_fraction, d.num_classes)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_datasets(cfg)
    return _DATA[key]


def _nir_datasets(setup: NIRSetup) -> tuple[ImageDataset, ImageDataset]:
    key = ("nir", setup.dataset, setup.data_dir)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = tuple(load_dataset(setup.dataset, split, data_dir=setup.data_dir, flatten=True)
                           for split in ("train", "test"))
    return _DATA[key]


def _evaluate(source, chip: Chip, resolved: dict) -> ChipsEvaluation:
    if resolved.get("nir"):  # a NIR graph: what it reads comes from the spec's base.nir
        setup = NIRSetup(**resolved["nir"])
        network = load_nir(source, setup)
        train_set, test_set = _nir_datasets(setup)
    else:
        network = load_trained(source)
        train_set, test_set = _datasets(network.config)
    data = test_set if resolved["split"] == "test" else train_set
    if resolved["limit"]:
        n = resolved["limit"]
        data = ImageDataset(data.images[:n], data.labels[:n], data.info, data.split)
    return evaluate_on_chips(network, chip.series(resolved["chips"]), data, calibration=train_set,
                             batch_size=resolved["batch_size"], device="cpu")


def _finetune(resolved: dict, chip: Chip, workdir: Path) -> Path:
    """Hardware-aware fine-tuning of the base config through the point's preset (the object itself), from the
    base checkpoint, pruned first as the chip prunes and the mask held (the pruned weights stay zero; deploying
    prunes the same weights again): the checkpoint it ends with."""
    cfg = load_config(resolved["config"], {"training.epochs": resolved["finetune_epochs"], "hardware.aware": True,
                                           "hardware.mode": resolved["mode"], "output.dir": str(workdir / "run"),
                                           "output.plot": False})
    result = network_kind(cfg.network.kind, f"network.kind of {resolved['config']}").train(
        cfg, init=resolved["checkpoint"], progress=False, log=lambda *_: None, preset=chip.preset,
        prune=chip.prune if chip.prune else None, max_batches=resolved.get("finetune_batches") or None)
    return Path(result.checkpoint)


def _scalars(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, type(None)))}


def evaluate_point(resolved: dict) -> dict:
    """The record of one point: its config, status ('ok' | 'error'), metrics or the error, and the time it took."""
    t0 = time.perf_counter()
    rec = {"config": resolved}
    try:
        _set_threads()
        chip = point_chip(resolved)
        with tempfile.TemporaryDirectory(prefix="memsim-sweep-") as tmp:
            source = resolved["checkpoint"]
            if resolved.get("config"):
                source = _finetune(resolved, chip, Path(tmp))
            ev = _evaluate(source, chip, resolved)
        acts = ev.activity
        cost = network_cost(load_cost_model(resolved["cost_model"]), acts, chip)
        r = ev.as_dict()
        rec["metrics"] = {
            "accuracy": r["accuracy"], "accuracy_std": r["std"], "accuracy_per_chip": list(r["per_seed"]),
            "output_error": r.get("output_error", math.nan), "tiles": r["tiles"], "utilisation": r["utilisation"],
            "nonzero_utilisation": r["nonzero_utilisation"], "samples": r["samples"], "arch": r["arch"],
            "kind": r["kind"], **cost,
            "tile_reads": r["tile_reads_per_inference"], "adc_conversions": sum(a.adc_conversions for a in acts),
            "calibration_time_s": r["calibration_time_s"], "eval_time_s": r["eval_time_s"],
            "layers": [_scalars(row) for row in r["layers"]],
        }
        rec["status"] = "ok"
    except Exception as exc:  # recorded with the point; the sweep goes on
        rec["status"] = "error"
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=8)
    rec["elapsed_s"] = time.perf_counter() - t0
    return rec
