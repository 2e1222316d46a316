"""Deploy a trained network (ANN or MSNN checkpoint) on a crossbar preset and measure it.

:func:`evaluate_deployed` is the one call a design-space sweep makes per point: it maps every crossbar
layer with the chosen scheme (``dense`` | ``sparse``) after optional magnitude pruning, programs one chip
per seed (layer ``k`` of chip ``s`` uses noise seed ``s + k``, as :func:`memsim.training.evaluate_checkpoint`),
calibrates the DAC input ranges on a training batch, and returns accuracy per chip, the error of each
layer's crossbar product against the exact product, and the tile usage the cost model needs.
:func:`mapping_report` gives the tile usage alone, without data.

Vectors per inference (input vectors a layer's tiles read per classified sample) are counted in a probe
forward pass: 1 for a dense layer of an ANN, ``Ho * Wo`` for a convolution, times the time steps of an
MSNN (whose synapses are read once per step).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..training.checkpoint import CheckpointError, RunDirectory, read_checkpoint
from ..training.config import Config, load_config, parse_config
from ..crossbar.presets import Preset, load_preset
from ..errors import ParameterError
from ..nn.convert import convert
from ..nn.crossbar import CrossbarConv2d, CrossbarLinear, _CrossbarCore
from ..nn.grouped import (GroupedCrossbarConv2d, MappedCrossbarLinear, _Mapped, check_mapping, check_prune,
                          mapping_stats, prune_by_magnitude)

__all__ = ["evaluate_deployed", "mapping_report", "resolve_checkpoint", "deploy_model", "adc_conversions_per_read"]

_MODES = ("ideal", "noisy", "irdrop")
_TOTALS = ("tiles", "cells", "used_cells", "nonzero_cells", "zero_cells", "tile_reads_per_inference",
           "adc_conversions_per_inference")


def adc_conversions_per_read(tiles: int, outputs_per_tile: int) -> int:
    """ADC conversions when a layer's ``tiles`` are read once: the one count of the per-layer figures here and of
    the sweep's total and ADC energy (:mod:`memsim.sweep.cost` reads it from here).

    Every output of every placed tile is converted, ``outputs_per_tile`` per tile, as the simulated periphery
    digitises them (:mod:`memsim.crossbar.array`): the two columns of a differential pair, or an output column and
    its tile's reference column (offset scheme), are subtracted in analog and give one conversion; the reference
    column and a differential tile's odd leftover column are never converted on their own. A tile's unused
    (padding) outputs are converted too: they are not power-gated, as the latency (each ADC converts all of its
    outputs in sequence) and the simulated ADC assume. Unused tiles of a sparse layout are not placed at all.
    """
    return tiles * outputs_per_tile


def resolve_checkpoint(source) -> Path:
    """A checkpoint file from a checkpoint path, a run directory, or a Config / TOML config (its output.dir)."""
    if isinstance(source, Config):
        run = RunDirectory(source.output.dir)
    else:
        p = Path(source)
        if p.is_file() and p.suffix == ".toml":
            run = RunDirectory(load_config(p).output.dir)
        elif p.is_dir():
            run = RunDirectory(p.parent if p.name == "checkpoints" else p)
        else:
            return p  # read_checkpoint names a missing file
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        raise CheckpointError(f"run directory {run.path} holds no readable checkpoint. Fix: train it first "
                              f"(memsim train) or pass a checkpoint file")
    return ckpt.path


def _preset(preset) -> Preset | str:
    if isinstance(preset, str) and preset == "ideal":
        return "ideal"
    return load_preset(preset)


def _layers(model: nn.Module) -> list[tuple[str, _CrossbarCore]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _CrossbarCore)]


def _exact(layer: _CrossbarCore, x: torch.Tensor) -> torch.Tensor:
    """The exact product of the layer's mapped (pruned) weights, without bias."""
    w = layer.weight * layer.weight_mask if isinstance(layer, _Mapped) else layer.weight
    if isinstance(layer, (CrossbarConv2d, GroupedCrossbarConv2d)):
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, getattr(layer, "groups", 1))
    return F.linear(x, w)


class _Probe:
    """Forward hooks on the crossbar layers: input vectors read and the relative RMS error of the product."""

    def __init__(self, layers: list[tuple[str, _CrossbarCore]], error: bool):
        self.layers, self.error = layers, error
        self.vectors = {n: 0 for n, _ in layers}
        self.err_num = {n: 0.0 for n, _ in layers}
        self.err_den = {n: 0.0 for n, _ in layers}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in layers]

    def _hook(self, name):
        def hook(module, inputs, output):
            x = inputs[0]
            if isinstance(module, (CrossbarConv2d, GroupedCrossbarConv2d)):
                self.vectors[name] += output.shape[0] * output.shape[2] * output.shape[3]
            else:
                self.vectors[name] += x.numel() // x.shape[-1]
            if self.error:
                with torch.no_grad():
                    ref = _exact(module, x)
                    y = output if module.bias is None else output - (
                        module.bias[None, :, None, None] if output.dim() == 4 else module.bias)
                    self.err_num[name] += float(((y - ref) ** 2).sum())
                    self.err_den[name] += float((ref ** 2).sum())
        return hook

    def close(self):
        for h in self.handles:
            h.remove()

    def rel_error(self, name) -> float:
        return (self.err_num[name] / self.err_den[name]) ** 0.5 if self.err_den[name] > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------
# building the deployed network

def _reseed(model: nn.Module, seed: int) -> None:
    for k, (_, layer) in enumerate(_layers(model)):
        layer.array.reseed(seed + k)
        layer._programmed = None


def deploy_model(model: nn.Module, preset, *, mode: str = "noisy", mapping: str = "dense", prune: float = 0.0,
                 block=None) -> nn.Module:
    """``memsim.convert`` of an ANN with the mapping scheme and pruning (a copy; eval mode)."""
    return convert(model, preset, mode=mode, mapping=mapping, prune=prune, block=block).eval()


def _map_msnn(net: nn.Module, preset, mode: str, mapping: str, prune: float, block) -> None:
    """Re-map an MSNN's crossbar synapses (``syn.crossbar_layer``) with the scheme and pruning, in place."""
    if mapping == "dense" and prune == 0.0:
        return
    for k, syn in enumerate(net.synapses):
        xbar = syn.crossbar_layer
        if xbar is None:
            continue
        if isinstance(xbar, CrossbarLinear):
            new = MappedCrossbarLinear.from_linear(xbar, preset=preset, mode=mode, mapping=mapping, block=block)
        elif isinstance(xbar, CrossbarConv2d):
            new = GroupedCrossbarConv2d.from_conv(_as_conv(xbar), preset=preset, mode=mode, mapping=mapping,
                                                  block=block)
            new.input_scale.copy_(xbar.input_scale)
        else:  # pragma: no cover - MSNN synapses are CrossbarLinear / CrossbarConv2d
            raise ParameterError(f"synapses.{k}", type(xbar).__name__, "a crossbar layer", "")
        if prune:
            new.prune_(prune)
        syn.set_crossbar_layer(new)


def _as_conv(x: CrossbarConv2d) -> nn.Conv2d:
    conv = nn.Conv2d(x.in_channels, x.out_channels, x.kernel_size, x.stride, x.padding, x.dilation,
                     bias=x.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(x.weight)
        if x.bias is not None:
            conv.bias.copy_(x.bias)
    return conv


class _Target:
    """One checkpoint, ready to be deployed: kind, config, data and a per-chip network builder."""

    def __init__(self, source, data_dir=None):
        self.path = resolve_checkpoint(source)
        ckpt = read_checkpoint(self.path)
        if ckpt.config is None:
            raise CheckpointError(f"checkpoint {self.path} holds no config; it was not written by memsim train")
        cfg = parse_config(ckpt.config, source=f"config of {self.path}")
        if data_dir is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
        self.cfg = cfg
        self.kind = cfg.network.kind
        self.arch = cfg.network.arch if self.kind == "ann" else "msnn"
        if self.kind == "ann":
            from .train import load_ann
            self.model, _ = load_ann(self.path)

    def network(self, preset, mode, mapping, prune, block, seed: int) -> nn.Module:
        if self.kind == "ann" and isinstance(preset, str):  # "ideal": the float network (pruned)
            net = copy.deepcopy(self.model).eval()
            if prune:
                with torch.no_grad():
                    for m in net.modules():
                        if isinstance(m, (nn.Linear, nn.Conv2d)):
                            m.weight.mul_(prune_by_magnitude(m.weight, prune))
        elif self.kind == "ann":
            net = deploy_model(self.model, preset, mode=mode, mapping=mapping, prune=prune, block=block)
        else:
            from ..training.loop import load_network
            ideal = isinstance(preset, str) and preset == "ideal"
            net, _ = load_network(self.path, crossbar=preset, mode=None if ideal else mode, noise_seed=seed)
            if not ideal:
                _map_msnn(net, preset, mode, mapping, prune, block)
            net.eval()
        _reseed(net, seed)
        return net

    def probe_input(self, images: torch.Tensor):
        if self.kind == "ann":
            return images
        from ..training.loop import build_encoder
        return build_encoder(self.cfg)(images)


def _check(preset, mapping, prune, mode, seeds):
    if isinstance(mapping, str):
        check_mapping(mapping)
    prune = check_prune(prune)
    if mode not in _MODES:
        raise ParameterError("mode", mode, f"one of {list(_MODES)}", "choose how the arrays are simulated")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ParameterError("seeds", seeds, "an integer >= 1", "give the number of chips to average")
    return prune


def _stats(model: nn.Module, probe: _Probe | None, batch: int) -> dict[str, Any]:
    rows = []
    for name, layer in _layers(model):
        s = {"name": name, **mapping_stats(layer)}
        vec = probe.vectors[name] / batch if probe is not None else None
        s["vectors_per_inference"] = vec
        if vec is not None:
            s["tile_reads_per_inference"] = s["tiles"] * vec
            s["adc_conversions_per_inference"] = adc_conversions_per_read(s["tiles"], s["outputs_per_tile"]) * vec
        rows.append(s)
    out: dict[str, Any] = {k: sum(r.get(k) or 0 for r in rows) for k in _TOTALS}
    out["utilisation"] = out["used_cells"] / out["cells"] if out["cells"] else 0.0
    out["nonzero_utilisation"] = out["nonzero_cells"] / out["cells"] if out["cells"] else 0.0
    out["layers"] = rows
    return out


def _describe(preset) -> tuple[str, int | None, int | None]:
    if preset == "ideal":
        return "ideal", None, None
    return preset.name, preset.rows, preset.cols


def mapping_report(source, preset, *, mapping: str = "dense", prune: float = 0.0, block=None,
                   data_dir=None) -> dict[str, Any]:
    """Tile usage of a checkpoint's network on ``preset`` (see :func:`evaluate_deployed`'s mapping keys), from
    one probe forward pass of an all-zero input; loads no data."""
    prune = _check(preset, mapping, prune, "ideal", 1)
    preset = _preset(preset)
    if preset == "ideal":
        raise ParameterError("preset", "ideal", "a crossbar preset", "the ideal crossbar has no tiles to count")
    target = _Target(source, data_dir)
    net = target.network(preset, "ideal", mapping, prune, block, 0)
    from ..training.data import dataset_info
    n_in = target.cfg.network.layers[0] if target.cfg.data.dataset == "custom_idx" \
        else dataset_info(target.cfg.data.dataset).num_inputs
    probe = _Probe(_layers(net), error=False)
    with torch.no_grad():
        net(target.probe_input(torch.zeros(1, n_in)))
    probe.close()
    name, rows, cols = _describe(preset)
    return {"checkpoint": str(target.path), "kind": target.kind, "arch": target.arch, "preset": name, "rows": rows,
            "cols": cols, "mapping": mapping, "prune": prune, **_stats(net, probe, 1)}


def evaluate_deployed(source, preset, *, mapping: str = "dense", prune: float = 0.0, mode: str = "noisy",
                      seeds: int = 1, limit: int | None = None, batch_size: int = 256, split: str = "test",
                      data_dir=None, block=None, progress: bool = False, calibration: int = 256,
                      first_seed: int = 0) -> dict[str, Any]:
    """Accuracy, product error and tile usage of a trained network deployed on ``preset``.

    ``source``: checkpoint file, run directory, or Config / TOML config (its output.dir). ``preset``: name,
    ``.toml`` path, :class:`memsim.crossbar.Preset`, or ``"ideal"`` (exact product; one seed).
    ``mapping``: ``"dense"`` | ``"sparse"`` (or a ``{layer_name: scheme}`` dict for ANNs); ``prune``: fraction
    of each crossbar layer's weights zeroed by magnitude; ``mode``: ideal | noisy | irdrop;
    ``seeds``: chips averaged, the noise seeds ``first_seed .. first_seed + seeds - 1``; ``limit``: first N samples.
    Returned keys (README, "Conventional networks"): accuracy, std, per_seed, output_error, tiles, cells,
    used/nonzero/zero cells, utilisation, nonzero_utilisation, tile_reads_per_inference,
    adc_conversions_per_inference, layers, ...
    """
    t0 = time.perf_counter()
    prune = _check(preset, mapping, prune, mode, seeds)
    preset = _preset(preset)
    target = _Target(source, data_dir)
    cfg = target.cfg
    from ..training.data import ImageDataset
    from ..training.loop import calibrate, evaluate, load_datasets, set_threads
    set_threads(cfg.training.threads)
    train_set, test_set = _datasets(cfg, load_datasets)
    data = test_set if split == "test" else train_set
    if split not in ("test", "train"):
        raise ParameterError("split", split, "'test' or 'train'", "choose the data split")
    if limit is not None:
        data = ImageDataset(data.images[:limit], data.labels[:limit], data.info, data.split)
    ideal = preset == "ideal"
    if ideal:
        mode, seeds = "ideal", 1
    accs, errors, result_stats = [], [], None
    from tqdm.auto import tqdm
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise ParameterError("first_seed", first_seed, "an integer >= 0 (the first chip's noise seed)",
                             "chips are the noise seeds first_seed .. first_seed + seeds - 1")
    for s in tqdm(range(first_seed, first_seed + seeds), desc="chips", disable=not progress):
        net = target.network(preset, mode, mapping, prune, block, s)
        layers = _layers(net)
        if target.kind == "ann":
            _calibrate_ann(net, train_set.images[:calibration])
        else:
            from ..training.loop import build_encoder
            calibrate(net, build_encoder(cfg), train_set, calibration)
        _reseed(net, s)  # calibration drew programming/read noise: start the chip's streams afresh
        probe = _Probe(layers, error=True)
        x0 = data.images[:min(batch_size, len(data))]
        with torch.no_grad():
            net(target.probe_input(x0))
        probe.close()
        if result_stats is None:
            result_stats = _stats(net, probe, len(x0))
        errs = [probe.rel_error(n) for n, _ in layers]
        for row, e in zip(result_stats["layers"], errs):
            row.setdefault("_errors", []).append(e)
        errors.append(sum(errs) / len(errs) if errs else 0.0)
        torch.manual_seed(s)
        if target.kind == "ann":
            from .train import evaluate_ann
            r = evaluate_ann(net, data, batch_size)
        else:
            from ..training.loop import build_encoder
            r = evaluate(net, build_encoder(cfg), data, batch_size,
                         generator=torch.Generator().manual_seed(cfg.training.seed + 1 + s))
        accs.append(r["accuracy"])
    for row in result_stats["layers"]:
        e = row.pop("_errors")
        row["output_error"] = sum(e) / len(e)
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
    name, rows, cols = _describe(preset)
    return {"checkpoint": str(target.path), "kind": target.kind, "arch": target.arch, "dataset": cfg.data.dataset,
            "preset": name, "rows": rows, "cols": cols, "mode": mode, "mapping": mapping, "prune": prune,
            "seeds": seeds, "samples": len(data), "accuracy": mean, "std": std, "per_seed": accs,
            "output_error": sum(errors) / len(errors), **result_stats, "eval_time_s": time.perf_counter() - t0}


_DATA: dict = {}


def _datasets(cfg, load):
    """The config's datasets, kept for the next call (a sweep evaluates many points on the same data)."""
    d = cfg.data
    key = (d.dataset, d.data_dir, d.test_fraction, getattr(d, "num_classes", 0))
    if key not in _DATA:
        _DATA.clear()  # one dataset at a time: Fashion-MNIST is ~200 MB as float32
        _DATA[key] = load(cfg)
    return _DATA[key]


def _calibrate_ann(net: nn.Module, images: torch.Tensor) -> None:
    """Set the DAC input range of every crossbar layer from a training batch (only those layers in train
    mode, so batch-norm statistics stay as trained)."""
    layers = [m for _, m in _layers(net) if float(m.input_scale) == 0.0]
    if not layers:
        return
    for m in layers:
        m.train()
    with torch.no_grad():
        net(images)
    for m in layers:
        m.eval()
