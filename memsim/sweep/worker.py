"""One sweep point, evaluated in a worker process (local pool or Ray): deploy (or fine-tune, then deploy) the
point's network on its crossbar preset over its chips, and add the cost model. Never raises: an error is part of
the point's record, so the sweep goes on."""
from __future__ import annotations

import contextlib
import math
import tempfile
import time
import traceback
from pathlib import Path

from .cost import ActivityRecorder, LayerActivity, load_cost_model, network_cost
from .spec import build_preset, preset_data, preset_toml


@contextlib.contextmanager
def record_activity():
    """Every :class:`CrossbarArray` built inside the block gets an :class:`ActivityRecorder` on its tile layout;
    yields the list of ``(array, recorder)`` in construction order."""
    from ..crossbar import array as array_mod

    cls = array_mod.CrossbarArray
    original = cls.__init__
    made: list = []

    def init(self, *a, **k):
        original(self, *a, **k)
        rec = ActivityRecorder(self.grid)
        self.grid = rec
        made.append((self, rec))

    cls.__init__ = init
    try:
        yield made
    finally:
        cls.__init__ = original


def _activities(made, layers: list[dict] | None, n_layers: int, samples: int) -> list[LayerActivity]:
    """Per-layer activity of the first chip: the recorders of its ``n_layers`` non-ideal arrays, in construction
    (= layer) order. Reads per inference come from the evaluation's own count when it reports one (its reference
    passes for the output error are not inferences); the energy per read is the recorded mean."""
    recs = [rec for arr, rec in made if arr.mode != "ideal" and rec.rows_read > 0][:n_layers]
    out = []
    for k, rec in enumerate(recs):
        act = rec.activity(samples)
        if layers and k < len(layers) and "vectors_per_inference" in layers[k]:
            act.reads = float(layers[k]["vectors_per_inference"])
        act.v2g = rec.v2g / max(rec.rows_read, 1) * act.reads
        out.append(act)
    return out


def _layer_rows(layers: list[dict], acts: list[LayerActivity]) -> list[dict]:
    """The per-layer figures of a record (scalars only), each layer's ADC conversions per inference the cost
    model's count (:attr:`LayerActivity.adc_conversions`), so that they sum to the record's total and its energy."""
    rows = [{k: v for k, v in l.items() if isinstance(v, (int, float, str, type(None)))} for l in layers]
    for row, act in zip(rows, acts):
        row["adc_conversions_per_inference"] = act.adc_conversions
    return rows


def _set_threads():
    import torch
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _deploy(resolved: dict, checkpoint: str, preset):
    """accuracy etc. and the recorded activity of one deployed checkpoint."""
    mapping = resolved["mapping"]
    if "=" in mapping:  # per layer; a layer it does not apply to fails this point only
        mapping = {k.strip(): v.strip() for k, v in (part.partition("=")[::2] for part in mapping.split(","))}
    kw = dict(mapping=mapping, prune=resolved["prune"], mode=resolved["mode"], seeds=resolved["chips"],
              first_seed=resolved.get("chip_seed", 0),
              limit=resolved["limit"] or None, batch_size=resolved["batch_size"], split=resolved["split"])
    with record_activity() as made:
        try:
            from ..ann.deploy import evaluate_deployed
        except ImportError:
            evaluate_deployed = None
        if evaluate_deployed is not None:
            r = evaluate_deployed(checkpoint, preset, progress=False, **kw)
        else:
            r = evaluate_msnn(checkpoint, preset, **kw)
    return r, _activities(made, r.get("layers"), len(r.get("layers") or []), max(int(r.get("samples", 1)), 1))


def evaluate_msnn(checkpoint, preset, *, mapping="dense", prune=0.0, mode="noisy", seeds=1, limit=None,
                  batch_size=256, split="test", first_seed=0):
    """MSNN checkpoints on a preset object (dense mapping, no pruning): the same protocol as ``memsim evaluate``
    (chip s: noise seed s + layer; calibrated input range; fixed test subset)."""
    import torch
    import torch.nn.functional as F
    from ..errors import ParameterError
    from ..training.loop import build_encoder, evaluate_chip, network_from_checkpoint, read_trained

    if mapping != "dense" or prune:
        raise ParameterError("mapping/prune", (mapping, prune), "dense and 0 without memsim.ann.deploy",
                             "install the ANN/mapping module (memsim.ann) for sparse mapping and pruning")
    ckpt, cfg = read_trained(checkpoint)
    train_set, test_set = _data(cfg)
    data = test_set if split == "test" else train_set
    encoder = build_encoder(cfg)
    accs, errs = [], []
    for s in range(first_seed, first_seed + seeds):
        net = network_from_checkpoint(ckpt, cfg, f"checkpoint {checkpoint}", crossbar=preset, mode=mode,
                                      noise_seed=s)
        r = evaluate_chip(net, encoder, train_set, data, seed=s, base_seed=cfg.training.seed, batch_size=batch_size,
                          limit=limit)
        accs.append(r["accuracy"])
        x = encoder(data.images[:min(batch_size, len(data))])[0]
        with torch.no_grad():  # first layer's product against the exact one
            syn = net.synapses[0]
            y_hw = syn.crossbar_layer(x)
            y_id = F.linear(x, syn.weight)
            errs.append(float((y_hw - y_id).norm() / y_id.norm().clamp_min(1e-30)))
    grids = [arr.grid for _, arr in net.crossbar_arrays()]
    T = cfg.network.time_steps
    first = 1 if encoder(data.images[:2]).stride(0) == 0 else T  # a constant (direct) input is read once
    layers = [{"vectors_per_inference": first if k == 0 else T} for k in range(len(grids))]
    tiles = sum(g.n_tiles for g in grids)
    cells = sum(t.cells for g in grids for t in g.tiles())
    used = sum(t.used_cells for g in grids for t in g.tiles())
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
    return {"checkpoint": str(checkpoint), "kind": "msnn", "arch": "msnn", "accuracy": mean, "std": std,
            "per_seed": accs, "output_error": sum(errs) / len(errs), "tiles": tiles, "cells": cells,
            "used_cells": used, "utilisation": used / cells, "samples": r["samples"], "layers": layers}


_DATA: dict = {}


def _data(cfg):
    from ..training.loop import load_datasets
    key = (cfg.data.dataset, cfg.data.data_dir, cfg.data.test_fraction)
    if key not in _DATA:
        _DATA[key] = load_datasets(cfg)
    return _DATA[key]


def _finetune(resolved: dict, workdir: Path) -> str:
    """Hardware-aware fine-tuning of the base config on the point's preset: the checkpoint it ends with."""
    from ..training.config import load_config
    from ..training.loop import train
    ppath = workdir / "preset.toml"
    ppath.write_text(preset_toml(preset_data(resolved)))
    cfg = load_config(resolved["config"], {"network.crossbar": str(ppath),
                                           "training.epochs": resolved["finetune_epochs"],
                                           "hardware.aware": True, "hardware.mode": resolved["mode"],
                                           "output.dir": str(workdir / "run"), "output.plot": False})
    res = train(cfg, init=resolved["checkpoint"], progress=False, log=lambda *_: None)
    return str(res.checkpoint)


def evaluate_point(resolved: dict) -> dict:
    """The record of one point: its config, status ('ok' | 'error'), metrics or the error, and the time it took."""
    t0 = time.perf_counter()
    rec = {"config": resolved}
    try:
        _set_threads()
        preset = build_preset(resolved)
        with tempfile.TemporaryDirectory(prefix="memsim-sweep-") as tmp:
            ckpt = resolved["checkpoint"]
            if resolved.get("config"):
                ckpt = _finetune(resolved, Path(tmp))
            r, acts = _deploy(resolved, ckpt, preset)
        cost = network_cost(load_cost_model(resolved["cost_model"]), acts, preset)
        layers = r.get("layers") or []
        rec["metrics"] = {
            "accuracy": r["accuracy"], "accuracy_std": r["std"], "accuracy_per_chip": list(r["per_seed"]),
            "output_error": r.get("output_error", math.nan), "tiles": r.get("tiles"),
            "utilisation": r.get("utilisation"), "nonzero_utilisation": r.get("nonzero_utilisation"),
            "samples": r.get("samples"), "arch": r.get("arch"), "kind": r.get("kind"),
            "energy": cost.get("energy", 0.0), "energy_array": cost.get("energy_array", 0.0),
            "energy_dac": cost.get("energy_dac", 0.0), "energy_adc": cost.get("energy_adc", 0.0),
            "latency": cost.get("latency", 0.0), "area": cost.get("area", 0.0),
            "area_cells": cost.get("area_cells", 0.0), "area_periphery": cost.get("area_periphery", 0.0),
            "tile_reads": sum(a.reads * a.tiles for a in acts),
            "adc_conversions": sum(a.adc_conversions for a in acts),
            "layers": _layer_rows(layers, acts),
        }
        rec["status"] = "ok"
    except Exception as exc:  # recorded with the point; the sweep goes on
        rec["status"] = "error"
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=8)
    rec["elapsed_s"] = time.perf_counter() - t0
    return rec
