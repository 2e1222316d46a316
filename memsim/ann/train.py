"""Training conventional networks (``network.kind = "ann"``) in float with cross-entropy.

:func:`train_ann` is what :func:`memsim.training.train` runs for an ANN config. It shares the MSNN trainer's
pieces (:mod:`memsim.training`: data loading, optimizer, learning-rate schedule, batch order, device
choice, run directory, learning-curve plot) and its behaviour: checks before long work, a tqdm bar, one
atomic checkpoint per epoch (:class:`memsim.training.checkpoint.RunDirectory`) holding model, optimizer and the
data-order generator, so ``resume=True`` continues a killed run exactly, and a
:class:`memsim.errors.NonFiniteError` (the last good checkpoint kept) if the loss or a gradient diverges.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..training.checkpoint import CheckpointError, RunDirectory, check_architecture, read_checkpoint
from ..training.config import Config, ConfigError, parse_config
from ..training.data import ImageDataset
from ..errors import NonFiniteError
from .models import build_ann

__all__ = ["train_ann", "evaluate_ann", "load_ann", "check_ann_config"]


def check_ann_config(cfg: Config) -> None:
    """ANN-specific checks of a config, before any data is loaded."""
    if cfg.hardware.aware:
        raise ConfigError(f"{cfg.source}: hardware.aware = true is not supported for network.kind = 'ann' (ANNs "
                          f"train in float; deploy them with memsim evaluate / memsim.ann.deploy). Fix: set "
                          f"hardware.aware = false", key="hardware.aware", value=True)
    build_ann(cfg)  # stage count against the image size


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


def _clip(model: nn.Module, sigmas: float) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = float(m.weight.std()) * sigmas
                m.weight.clamp_(-bound, bound)


def load_ann(path: str | Path) -> tuple[nn.Module, Config]:
    """The trained ANN of a checkpoint (eval mode) and its config."""
    ckpt = read_checkpoint(path)
    if ckpt.config is None:
        raise CheckpointError(f"checkpoint {path} holds no config; it was not written by memsim train")
    cfg = parse_config(ckpt.config, source=f"config of {path}")
    if cfg.network.kind != "ann":
        raise CheckpointError(f"checkpoint {path} holds a network.kind = '{cfg.network.kind}' network, not an ANN")
    model = build_ann(cfg)
    check_architecture(ckpt.architecture, model, f"checkpoint {path}")
    model.load_state_dict(ckpt.model_state)
    model.eval()
    return model, cfg


def train_ann(cfg: Config, *, resume: bool = False, init: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = print, max_batches: int | None = None):
    """Train the ANN of ``cfg`` (see the module doc); returns a :class:`memsim.training.TrainResult`."""
    from ..training.loop import (TrainResult, _batches, _device, _optimizer, learning_rate, load_datasets, plot_history,
                            set_threads)
    check_ann_config(cfg)
    t = cfg.training
    set_threads(t.threads)
    device = _device(t.device)
    run = RunDirectory(cfg.output.dir, keep=cfg.output.keep_checkpoints)
    if not resume and run.checkpoints():
        raise CheckpointError(f"run directory {run.path} already holds checkpoints "
                              f"({run.checkpoints()[-1][1].name}). Fix: pass --resume to continue it, or choose "
                              f"another output.dir.")
    train_set, test_set = load_datasets(cfg)
    torch.manual_seed(t.seed)
    model = build_ann(cfg, train_set.info.image_shape)
    if init is not None:
        ckpt = read_checkpoint(init)
        check_architecture(ckpt.architecture, model, f"checkpoint {init}")
        model.load_state_dict(ckpt.model_state)
        log(f"initialised weights from {init} (epoch {ckpt.epoch})")
    model.to(device)
    opt = _optimizer(cfg, model.parameters())
    loader_gen = torch.Generator().manual_seed(t.seed)
    gens = {"loader": loader_gen}
    start_epoch = 0
    if resume:
        ckpt = run.resume(model=model, optimizer=opt, generators=gens, config=cfg,
                          allow_changes=("training.epochs", "output.dir"))
        for path, why in run.skipped:
            log(f"skipped unreadable checkpoint {path.name}: {why.splitlines()[0]}")
        if ckpt is None:
            log(f"no checkpoint in {run.path}: starting from epoch 0")
        else:
            start_epoch = ckpt.epoch
            log(f"resumed {run.path} after epoch {start_epoch}")
    run.write_config(cfg)
    last_good = run.checkpoint_path(start_epoch) if start_epoch else None
    n_batches = math.ceil(len(train_set) / t.batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    from tqdm.auto import tqdm

    images, labels = (v.to(device) for v in train_set.tensors())
    test_set = ImageDataset(*(v.to(device) for v in test_set.tensors()), test_set.info, test_set.split)
    ckpt_path = last_good
    for epoch in range(start_epoch, t.epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not progress, leave=False)
        for b, idx in enumerate(_batches(len(labels), t.batch_size, loader_gen)):
            if b >= n_batches:
                continue  # keep drawing the full permutation: the generator state matches a full epoch
            idx = idx.to(device)
            x, y = images[idx], labels[idx]
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, epoch * n_batches + b, t.epochs * n_batches)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            bad = None if torch.isfinite(loss) else f"the loss became non-finite ({float(loss)})"
            if bad is None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                bad = next((f"the gradient of {n} became non-finite" for n, p in model.named_parameters()
                            if p.grad is not None and not bool(torch.isfinite(p.grad).all())), None)
            if bad:
                bar.close()
                keep = f"the last good checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
                raise NonFiniteError(f"training stopped in epoch {epoch + 1}, batch {b + 1}: {bad}; {keep}. Fix: "
                                     f"lower training.learning_rate or set training.grad_clip (e.g. 1.0)")
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            if t.weight_clip > 0:
                _clip(model, t.weight_clip)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        train_time = time.perf_counter() - t0
        model.eval()
        test = evaluate_ann(model, test_set)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
               "test_loss": test["loss"], "test_accuracy": test["accuracy"], "epoch_time_s": train_time,
               "eval_time_s": time.perf_counter() - t0 - train_time}
        ckpt_path = run.save(epoch + 1, model=model, optimizer=opt, config=cfg, generators=gens, metrics=row,
                             extra={"run_dir": str(run.path.resolve())})
        last_good = ckpt_path
        log(f"epoch {epoch + 1}/{t.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
            f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f} | {train_time:.1f} s")
    history = run.read_metrics()
    plot = None
    if cfg.output.plot and history:
        arch = cfg.network.arch + (f" {list(cfg.network.channels)}" if cfg.network.arch != "mlp" else "")
        plot = plot_history(history, run.path / "learning_curves.png",
                            title=f"{cfg.data.dataset}: ANN {arch} {list(cfg.network.layers)}")
    return TrainResult(run.path, history, ckpt_path, model, plot)
