"""Training conventional networks (``network.kind = "ann"``) with cross-entropy, in float or hardware-aware.

:func:`train_ann` is what :func:`memsim.training.train` runs for an ANN config. It shares the MSNN trainer's
pieces (:mod:`memsim.training`: data loading, optimizer, learning-rate schedule, batch order, device
choice, run directory, the epoch loop :func:`memsim.training.loop.fit`, learning-curve plot) and its behaviour:
checks before long work, a tqdm bar, one atomic checkpoint per epoch
(:class:`memsim.training.checkpoint.RunDirectory`) holding model, optimizer and every generator, so
``resume=True`` continues a killed run exactly, and a :class:`memsim.errors.NonFiniteError` (the last good
checkpoint kept) if the loss or a gradient diverges.

Hardware-aware training (``hardware.aware = true``, ``hardware.mode = "noisy" | "irdrop"``), as the MSNN's: every
step runs forward and backward through the crossbar twin of the network on the preset (``network.crossbar``, or a
:class:`memsim.crossbar.Preset` passed as ``preset=``; :mod:`memsim.ann.aware`), programmed afresh each step (a new
programming-noise draw, and with ``hardware.resample_defects`` a new chip's defects). The float weights are the
parameters and the checkpoints stay the float ANN. The test accuracy logged per epoch is then the twin's, on the
chip of the last step, its converter ranges calibrated on the first training images as a deployed chip's are
(:func:`memsim.nn.calibration.calibrate`). ``init=`` starts from a checkpoint's weights (fine-tuning a float run
on a chip).

In-situ training (``training.update = "pulsed"``, :mod:`memsim.insitu`): every ``nn.Linear`` / ``nn.Conv2d``
weight is held as differential device pairs and its optimiser update becomes programming pulses through the
``training.pulse_response``; biases and batch norm stay float (digital periphery). The epoch metrics gain the pulse
counts (``pulses``, ``pulses_clipped``, ``refreshes``, ``transfers``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.presets import Preset
from ..deploy.chip import DEFAULT_CALIBRATION_SAMPLES
from ..nn.pruning import Pruning, prune_and_hold_, tile_block
from ..training.checkpoint import CheckpointError, check_architecture, read_checkpoint
from ..training.config import Config, hardware_preset, insitu_settings
from ..training.data import ImageDataset
from ..training.loop import (build_optimizer, chip_streams, finish_run, fit, optimizer_step, pulsed_optimizer,
                             read_trained, redraw_chips, resume_run, start_run)
from .aware import calibrate_twin, crossbar_twin, twin_arrays
from .models import build_ann

__all__ = ["train_ann", "evaluate_ann", "load_ann", "check_ann_config", "device_weights"]


def check_ann_config(cfg: Config, preset: Preset | None = None) -> Preset | None:
    """ANN-specific checks of a config, before any data is loaded; the preset that hardware-aware training runs
    on (``preset``, else ``network.crossbar``), or ``None`` for float training."""
    build_ann(cfg)  # stage count against the image size
    insitu_settings(cfg)  # in-situ training: the pulse response and its pulse
    return hardware_preset(cfg, preset)


def evaluate_ann(model: nn.Module, data: ImageDataset, batch_size: int = 256, *,
                 limit: int | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (in its current mode) on ``data`` (no gradients)."""
    images, labels = data.tensors()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            x, y = images[i:i + batch_size], labels[i:i + batch_size]
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    n = max(len(labels), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n, "samples": len(labels)}


def device_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, weight)`` of the layers a chip computes on crossbars (every ``nn.Linear`` / ``nn.Conv2d``, as
    :func:`memsim.nn.convert.convert` maps them): the device weights of in-situ training; biases and batch norm
    stay in the digital periphery."""
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _clip(model: nn.Module, sigmas: float) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = float(m.weight.std()) * sigmas
                m.weight.clamp_(-bound, bound)


def load_ann(path: str | Path) -> tuple[nn.Module, Config]:
    """The trained ANN of a checkpoint (eval mode) and its config."""
    ckpt, cfg = read_trained(path)
    if cfg.network.kind != "ann":
        raise CheckpointError(f"checkpoint {path} holds a network.kind = '{cfg.network.kind}' network, not an ANN")
    model = build_ann(cfg)
    check_architecture(ckpt.architecture, model, f"checkpoint {path}")
    model.load_state_dict(ckpt.model_state)
    model.eval()
    return model, cfg


def _ann_step(net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              optimizer: torch.optim.Optimizer, *, grad_clip: float = 0.0,
              weight_clip: float = 0.0) -> tuple[float, int]:
    """One optimiser step of the float ``model`` on cross-entropy through ``net`` (``model`` itself, or its
    crossbar twin): the batch's mean loss and number of correct predictions."""
    net.train()  # fit switches the float model; a twin's crossbar layers are modules of the twin only
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    optimizer_step(model, loss, optimizer, grad_clip=grad_clip)
    if weight_clip > 0:
        _clip(model, weight_clip)
    return loss.item(), int((logits.argmax(1) == y).sum())


def _evaluator(net: nn.Module, model: nn.Module, calibration: torch.Tensor) -> Callable[[ImageDataset], dict]:
    """The per-epoch test of ``fit``: the float model, or the twin's chip calibrated on ``calibration``."""
    if net is model:
        return lambda data: evaluate_ann(model, data)

    def on_chip(data: ImageDataset) -> dict[str, float]:
        calibrate_twin(net, calibration)
        return evaluate_ann(net, data)
    return on_chip


def train_ann(cfg: Config, *, resume: bool = False, init: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = print, max_batches: int | None = None, preset: Preset | None = None,
              prune=None):
    """Train the ANN of ``cfg`` (see the module doc); returns a :class:`memsim.training.TrainResult`.

    ``preset``: hardware-aware training on this :class:`memsim.crossbar.Preset` object instead of the one
    ``network.crossbar`` names (e.g. a sweep point's modified preset). ``prune``: a
    :class:`memsim.nn.pruning.Pruning` (or a fraction) of the ``nn.Linear`` / ``nn.Conv2d`` weights once loaded,
    held in training (:func:`memsim.nn.pruning.prune_and_hold_`; block pruning aligns to ``preset``'s tile)."""
    preset = check_ann_config(cfg, preset)
    prune = None if prune is None else Pruning.parse(prune)
    insitu = insitu_settings(cfg)
    t = cfg.training
    device, run, train_set, test_set = start_run(cfg, resume)
    torch.manual_seed(t.seed)
    model = build_ann(cfg, train_set.info.image_shape)
    if init is not None:
        ckpt = read_checkpoint(init)
        check_architecture(ckpt.architecture, model, f"checkpoint {init}")
        model.load_state_dict(ckpt.model_state)
        log(f"initialised weights from {init} (epoch {ckpt.epoch})")
    model.to(device)
    if prune:
        prune_and_hold_([(m.weight, getattr(m, "groups", 1)) for m in model.modules()
                         if isinstance(m, (nn.Linear, nn.Conv2d))], prune,
                        None if preset is None else tile_block(preset))
    opt = pulsed_optimizer(build_optimizer(cfg, model.parameters()), insitu, device_weights(model))
    net = model if preset is None else crossbar_twin(model, preset, cfg.hardware.mode)
    arrays = twin_arrays(net)
    for _, arr in arrays:
        arr.irdrop_reuse = cfg.training.irdrop_reuse  # training reads only; evaluation stays exact
    gens = {"loader": torch.Generator().manual_seed(t.seed), **chip_streams(arrays)}
    start_epoch = resume_run(run, cfg, model=model, optimizer=opt, generators=gens, log=log) if resume else 0
    run.write_config(cfg)
    redraw = bool(arrays) and cfg.hardware.resample_defects
    calibration = train_set.images[:DEFAULT_CALIBRATION_SAMPLES].to(device)  # as evaluate_on_chips calibrates
    last = fit(cfg, run, model, opt, gens, train_set, test_set, start_epoch=start_epoch, device=device,
               step=lambda x, y: _ann_step(net, model, x, y, opt, grad_clip=t.grad_clip, weight_clip=t.weight_clip),
               evaluate=_evaluator(net, model, calibration),
               before_batch=(lambda index: redraw_chips(arrays, t.seed, index)) if redraw else None,
               fix="lower training.learning_rate or set training.grad_clip (e.g. 1.0)", progress=progress, log=log,
               max_batches=max_batches, epoch_metrics=opt.metrics if insitu is not None else None)
    arch = cfg.network.arch + (f" {list(cfg.network.channels)}" if cfg.network.arch != "mlp" else "")
    hardware = f", {preset.name} ({cfg.hardware.mode}, hardware-aware)" if preset is not None else ""
    hardware += f", in-situ {insitu.algorithm} on {insitu.response.name}" if insitu is not None else ""
    return finish_run(cfg, run, model, last,
                      title=f"{cfg.data.dataset}: ANN {arch} {list(cfg.network.layers)}{hardware}")
