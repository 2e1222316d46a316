"""Training fully memristive SNNs: build from a config, train with BPTT, checkpoint, resume, evaluate.

:func:`train` runs a :class:`memsim.training.config.Config` of any network kind (the kind's trainer, from
:mod:`memsim.deploy`'s registry); :func:`train_msnn`, the MSNN's:

* validates everything before long work starts (config schema, neuron card and time step, crossbar
  preset, encoding, layer sizes against the data, a resumable run directory);
* trains :class:`memsim.training.network.MemristiveSNN` with backpropagation through time on the circuit
  equations (no surrogate gradient), optional gradient clipping, a progress bar (whole lines, at most one per
  30 s, when the output is a log file);
* after every epoch appends a row to ``RUN/metrics.csv`` and writes an atomic checkpoint
  (:class:`memsim.training.checkpoint.RunDirectory`) holding model, optimizer and every RNG state (the data-order
  generator, the rate encoder's, the crossbar noise streams), so ``resume=True`` continues a killed run
  exactly;
* stops with :class:`memsim.errors.NonFiniteError` naming the layer and the time step if a state, the
  loss or a gradient becomes non-finite; the last good checkpoint is left untouched;
* plots the learning curves to ``RUN/learning_curves.png`` at the end.

The pieces, as in well-kept training loops: :func:`train_step` is one optimiser step on a batch,
:func:`evaluate` the accuracy and loss on a dataset, :func:`fit` the epoch loop (batch order, learning-rate
schedule, metrics, checkpoints, the non-finite stop) that :func:`train` and :mod:`memsim.ann.train` share,
with :func:`open_run` / :func:`resume_run` for the run folder.

Hardware-aware training (``hardware.aware = true``): the synapses are the crossbar preset's arrays in
``hardware.mode`` (quantised levels, DAC/ADC, programming/read noise, faults, IR drop), re-drawn every
batch, so the weights learn to tolerate them. :func:`evaluate_checkpoint` deploys a trained network of any kind
on chips (:func:`memsim.deploy.evaluate_on_chips`: each chip programmed once, calibrated, evaluated) and
averages the accuracy over them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from .checkpoint import Checkpoint, CheckpointError, RunDirectory, check_architecture, read_checkpoint
from .config import (Config, ConfigError, check_references, hardware_preset, insitu_settings, parse_config,
                     with_compensation)
from .data import ImageDataset, load_dataset, make_encoder
from ..crossbar.array import CrossbarArray
from ..crossbar.presets import Preset, load_preset
from ..deploy.chip import Chip
from ..deploy.evaluate import evaluate_on_chips
from ..deploy.kinds import network_kind
from ..errors import NonFiniteError, ParameterError
from ..nn.pruning import Pruning, prune_and_hold_, tile_block
from ..insitu import PulsedOptimizer
from ..plots import pyplot, save
from ..progress import progress_bar
from .network import MemristiveSNN
from .synapses import is_ideal
from .trained import load_trained, read_trained

__all__ = ["train", "train_step", "optimizer_step", "fit", "open_run", "start_run", "resume_run", "check_gradients",
           "learning_rate", "clip_weights", "TrainResult", "build_network", "build_encoder", "load_datasets",
           "evaluate", "evaluate_checkpoint", "load_network", "network_from_checkpoint", "read_trained",
           "plot_history", "prepare", "train_msnn", "set_threads", "select_device", "build_optimizer",
           "finish_run", "redraw_chips", "chip_streams", "pulsed_optimizer"]


def set_threads(n: int) -> None:
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _resolve_preset(name: str):
    """A preset name/path -> the name given to CrossbarLinear (``ideal`` stays a string)."""
    if is_ideal(name):
        return name
    return load_preset(name)


def build_network(cfg: Config, *, crossbar: str | None = None, mode: str | None = None,
                  noise_seed: int | None = None) -> MemristiveSNN:
    """The network a config describes. ``crossbar``/``mode`` override the preset and its simulation mode
    (default: the config's preset, in ``hardware.mode`` when ``hardware.aware`` else its ``ideal`` mode);
    ``noise_seed`` replaces the preset's noise seed (layer k uses ``noise_seed + k``). Hardware-aware
    training uses every non-ideality of the preset, read noise included."""
    net_cfg = cfg.network
    name = net_cfg.crossbar if crossbar is None else crossbar
    preset = _resolve_preset(name)
    if mode is None:
        mode = cfg.hardware.mode if cfg.hardware.aware else "ideal"
    net = MemristiveSNN(list(net_cfg.layers), neuron=net_cfg.neuron, crossbar=preset, readout=net_cfg.readout,
                        time_steps=net_cfg.time_steps, dt=net_cfg.dt, g_unit=net_cfg.g_unit,
                        readout_gain=net_cfg.readout_gain, substeps=net_cfg.substeps, mode=mode,
                        penalty=cfg.training.voltage_penalty,
                        conv=(net_cfg.conv_channels, net_cfg.conv_kernel, net_cfg.conv_stride)
                        if net_cfg.conv_channels else None, compile=cfg.training.compile)
    if not is_ideal(preset):
        base = preset.noise.seed if noise_seed is None else noise_seed
        for k, arr in net.crossbar_arrays():
            arr.reseed(base + k)
            arr.irdrop_reuse = cfg.training.irdrop_reuse  # training reads only; evaluation stays exact
    return net


def build_encoder(cfg: Config, seed: int | None = None):
    e = cfg.encoding
    params = {"scale": e.scale}
    if e.name == "rate":
        params.update(gain=e.gain, seed=cfg.training.seed if seed is None else seed)
    if e.name == "latency":
        params.update(method=e.method, threshold=e.threshold)
    return make_encoder(e.name, cfg.network.time_steps, **params)


def load_datasets(cfg: Config) -> tuple[ImageDataset, ImageDataset]:
    d = cfg.data
    kw = dict(data_dir=d.data_dir or None, flatten=True, seed=0, test_fraction=d.test_fraction, download=d.download,
              verify=d.verify, num_classes=d.num_classes)
    return load_dataset(d.dataset, "train", **kw), load_dataset(d.dataset, "test", **kw)


def prepare(cfg: Config, preset: Preset | None = None) -> Preset | None:
    """Every check of an MSNN config that can fail on bad input, before any data is loaded or any training runs;
    the preset hardware-aware training runs on (``preset``, else ``network.crossbar``; None when not aware)."""
    check_references(cfg)
    preset = hardware_preset(cfg, preset)  # a preset to train through, and wires for irdrop
    build_encoder(cfg)
    build_network(cfg, crossbar=preset)  # neuron card, dt against the card, preset loading
    insitu_settings(cfg)  # in-situ training: the pulse response and its pulse
    return preset


def _generators(net: MemristiveSNN, loader: torch.Generator, encoder) -> dict[str, torch.Generator]:
    gens = {"loader": loader}
    if encoder.generator is not None:
        gens["encoder"] = encoder.generator
    gens.update(chip_streams(net.crossbar_arrays()))
    return gens


def chip_streams(arrays: Iterable[tuple[int, CrossbarArray]]) -> dict[str, torch.Generator]:
    """The noise streams of ``(layer index, array)`` pairs by checkpoint name (``crossbar{k}.program`` ...): saved
    with every checkpoint, so a resumed hardware-aware run draws the noise it would have drawn."""
    return {f"crossbar{k}.{name}": gen for k, arr in arrays for name, gen in arr.noise_streams.items()}


def _nonfinite_where(net: MemristiveSNN, out) -> str:
    for k, v in enumerate(out.voltages):
        bad = ~torch.isfinite(v)
        if bool(bad.any()):
            t, b, n = (int(i) for i in bad.nonzero()[0])
            return f"layer {k} ({net.layers[k + 1]} MIF neurons), neuron {n}, time step {t}"
    return f"the {net.readout} readout (all membrane voltages are finite)"


def _batches(n: int, batch_size: int, gen: torch.Generator | None):
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def evaluate(net: MemristiveSNN, encoder, data: ImageDataset, batch_size: int = 256, *,
             limit: int | None = None, generator: torch.Generator | None = None) -> dict[str, float]:
    """Accuracy and mean loss of ``net`` (in its current train/eval mode) on ``data`` (no gradients)."""
    images, labels = data.tensors()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for idx in _batches(len(labels), batch_size, None):
            idx = idx.to(labels.device)
            x, y = images[idx], labels[idx]
            out = net(encoder(x, generator=generator) if generator is not None else encoder(x))
            loss_sum += float(net.loss(out, y)) * len(y)
            correct += int((out.scores.argmax(1) == y).sum())
            total += len(y)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "samples": total}


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    checkpoint: Path | None
    network: MemristiveSNN = field(repr=False)
    plot: Path | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device = 'cuda' but torch sees no CUDA device. Fix: set training.device = "
                          "'cpu' or 'auto'", key="training.device", value=name)
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def build_optimizer(cfg: Config, params):
    t = cfg.training
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.learning_rate, momentum=t.momentum, weight_decay=t.weight_decay)


def clip_weights(net: MemristiveSNN, sigmas: float) -> None:
    """Clip every synapse layer's weights to +-``sigmas`` of its standard deviation (in place)."""
    with torch.no_grad():
        for syn in net.synapses:
            w = syn.weight
            bound = float(w.std()) * sigmas
            w.clamp_(-bound, bound)


def redraw_chips(arrays: Iterable[tuple[int, CrossbarArray]], seed: int, step: int) -> None:
    """A new chip's fixed defects for every ``(layer index, array)``, from (seed, step): reproducible on resume,
    and far from the evaluation chips' seeds (0, 1, ...)."""
    for k, arr in arrays:
        arr.redraw_defects(1_000_003 * (seed + 1) + 7919 * step + k)


def learning_rate(cfg: Config, step: int, total: int) -> float:
    """The learning rate at batch ``step`` of ``total`` (a function of the step alone, so a resumed run
    continues the schedule exactly)."""
    t = cfg.training
    if t.lr_schedule == "cosine":
        return t.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    return t.learning_rate


def check_gradients(model: torch.nn.Module) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter (and synapse layer) whose gradient is not finite."""
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            layer = f" (layer {name.split('.')[1]})" if name.startswith("synapses.") else ""
            raise NonFiniteError(f"the gradient of {name} became non-finite{layer}")


def optimizer_step(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, *,
                   grad_clip: float = 0.0, where: Callable[[], str] | None = None) -> None:
    """Backpropagate ``loss`` and step ``optimizer``, clipping the gradient norm to ``grad_clip`` (> 0).

    Raises :class:`NonFiniteError` before the step if the loss (``where()`` says where it started) or a
    gradient is not finite, so the weights are never overwritten with NaN."""
    if not torch.isfinite(loss):
        raise NonFiniteError(f"the loss became non-finite ({float(loss)})" + (f" in {where()}" if where else ""))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    check_gradients(model)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def train_step(net: MemristiveSNN, encoder, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *,
               grad_clip: float = 0.0, weight_clip: float = 0.0) -> tuple[float, int]:
    """One optimiser step of backpropagation through time on the batch ``x`` (images), ``y`` (labels).

    Gradient-norm clipping (``grad_clip`` > 0) and weight clipping to +-``weight_clip`` standard deviations
    (> 0) as in the config. Returns the batch's mean loss and its number of correct predictions; raises
    :class:`NonFiniteError` naming where the loss or a gradient stopped being finite, before the step."""
    out = net(encoder(x))
    loss = net.loss(out, y)
    optimizer_step(net, loss, optimizer, grad_clip=grad_clip, where=lambda: _nonfinite_where(net, out))
    if weight_clip > 0:
        clip_weights(net, weight_clip)
    return loss.item(), int((out.scores.argmax(1) == y).sum())


# ----------------------------------------------------------------------------------------------------------
# the loop every kind of network shares (memsim.ann trains with it too)

def open_run(cfg: Config, resume: bool) -> RunDirectory:
    """The run folder of ``cfg``: never overwrites a run without ``resume``, never resumes where there is none."""
    run = RunDirectory(cfg.output.dir, keep=cfg.output.keep_checkpoints)
    if not resume and run.checkpoints():
        raise CheckpointError(f"run directory {run.path} already holds checkpoints "
                              f"({run.checkpoints()[-1][1].name}). Fix: pass --resume to continue it, or choose "
                              f"another output.dir.")
    if resume and not (run.checkpoints() or run.config_path.is_file() or run.metrics_path.is_file()):
        raise CheckpointError(f"nothing to resume: {run.path} (= {run.path.resolve()}) holds no run"
                              + (f"; output.dir '{run.path}' is relative to the current folder {Path.cwd()}"
                                 if not run.path.is_absolute() else "")
                              + ". Fix: give the run's own config (memsim train RUN/config.toml --resume), or "
                                "--output RUN, or drop --resume to start a new run.")
    return run


def start_run(cfg: Config, resume: bool) -> tuple[torch.device, RunDirectory, ImageDataset, ImageDataset]:
    """What every training run starts with, once its config is checked: the thread count, the device, the run
    folder (:func:`open_run`) and the train and test sets."""
    set_threads(cfg.training.threads)
    device = select_device(cfg.training.device)
    run = open_run(cfg, resume)
    return (device, run, *load_datasets(cfg))


def resume_run(run: RunDirectory, cfg: Config, *, model, optimizer, generators: dict[str, torch.Generator],
               log: Callable[[str], None] = print) -> int:
    """Restore model, optimizer and generators from the newest good checkpoint of ``run``; the epoch it ended
    (0 when there is none). The folder is the run's identity, however output.dir is spelled or wherever the
    folder moved."""
    ckpt = run.resume(model=model, optimizer=optimizer, generators=generators, config=cfg,
                      allow_changes=("training.epochs", "output.dir"))
    started_in = (ckpt.extra or {}).get("run_dir") if ckpt is not None else None
    if started_in and Path(started_in) != run.path.resolve():
        log(f"note: this run was started in {started_in}; it was moved or copied to {run.path.resolve()} "
            f"and continues here")
    for path, why in run.skipped:
        log(f"skipped unreadable checkpoint {path.name}: {why.splitlines()[0]}")
    if ckpt is None:
        log(f"no checkpoint in {run.path}: starting from epoch 0")
        return 0
    log(f"resumed {run.path} after epoch {ckpt.epoch}")
    return ckpt.epoch


def fit(cfg: Config, run: RunDirectory, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
        generators: dict[str, torch.Generator], train_set: ImageDataset, test_set: ImageDataset, *,
        step: Callable[[torch.Tensor, torch.Tensor], tuple[float, int]],
        evaluate: Callable[[ImageDataset], dict[str, float]], start_epoch: int = 0,
        before_batch: Callable[[int], None] | None = None, fix: str, device: torch.device,
        progress: bool = True, log: Callable[[str], None] = print, max_batches: int | None = None,
        epoch_metrics: Callable[[], dict[str, Any]] | None = None) -> Path | None:
    """Epochs ``start_epoch + 1 .. training.epochs`` of ``model``; the last checkpoint written.

    Batches come in the order of ``generators["loader"]`` (the whole permutation is drawn even when
    ``max_batches`` caps an epoch, so the generator state is a full epoch's), with the learning rate of
    :func:`learning_rate` for the global batch index; ``before_batch(index)`` runs first (e.g. a new chip),
    then ``step(x, y) -> (mean loss, correct)``. After every epoch ``evaluate(test_set)`` (in eval mode), a
    row in ``RUN/metrics.csv`` (with ``epoch_metrics()``'s columns, e.g. in-situ training's pulse counts) and an
    atomic checkpoint with every generator's state. A
    :class:`NonFiniteError` stops training naming the epoch and batch; the last good checkpoint is kept
    and ``fix`` is the advice given."""

    t = cfg.training
    last_good = run.checkpoint_path(start_epoch) if start_epoch else None
    n_batches = math.ceil(len(train_set) / t.batch_size)
    cap = max_batches if max_batches is not None else (t.max_batches or None)  # the caller's cap, else the config's
    if cap is not None:
        n_batches = min(n_batches, cap)
    images, labels = (v.to(device) for v in train_set.tensors())
    test_set = ImageDataset(*(v.to(device) for v in test_set.tensors()), test_set.info, test_set.split)
    loader = generators["loader"]
    for epoch in range(start_epoch, t.epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = progress_bar(total=n_batches, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not progress, leave=False)
        for b, idx in enumerate(_batches(len(labels), t.batch_size, loader)):
            if b >= n_batches:
                continue  # keep drawing the full permutation: the generator state matches a full epoch
            idx = idx.to(device)
            x, y = images[idx], labels[idx]
            index = epoch * n_batches + b
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, index, t.epochs * n_batches)
            if before_batch is not None:
                before_batch(index)
            try:
                loss, right = step(x, y)
            except NonFiniteError as exc:
                bar.close()
                keep = f"the last good checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
                raise NonFiniteError(f"training stopped in epoch {epoch + 1}, batch {b + 1}: {exc}; {keep}. "
                                     f"Fix: {fix}") from None
            loss_sum += loss * len(y)
            correct += right
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        train_time = time.perf_counter() - t0
        model.eval()
        test = evaluate(test_set)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
               "test_loss": test["loss"], "test_accuracy": test["accuracy"], "epoch_time_s": train_time,
               "eval_time_s": time.perf_counter() - t0 - train_time}
        if epoch_metrics is not None:
            row.update(epoch_metrics())
        last_good = run.save(epoch + 1, model=model, optimizer=optimizer, config=cfg, generators=generators,
                             metrics=row, extra={"run_dir": str(run.path.resolve())})
        log(f"epoch {epoch + 1}/{t.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
            f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f} | {train_time:.1f} s")
    return last_good


def train(cfg: Config, *, resume: bool = False, init: str | Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print, max_batches: int | None = None,
          preset: Preset | None = None) -> TrainResult:
    """Train the network of ``cfg``, of whichever kind its ``network.kind`` names: the kind's trainer
    (:func:`train_msnn` for an MSNN, :func:`memsim.ann.train.train_ann` for an ANN; :mod:`memsim.deploy`'s
    registry picks it). ``init``: start from a checkpoint's weights (e.g. hardware-aware fine-tuning of an ideal
    run); ``preset``: hardware-aware training through this :class:`memsim.crossbar.Preset` object instead of the
    one ``network.crossbar`` names (e.g. a sweep point's); ``max_batches`` caps the batches per epoch (default: the
    config's ``training.max_batches``)."""
    if not isinstance(cfg, Config):
        cfg = parse_config(cfg)
    return network_kind(cfg.network.kind).train(cfg, resume=resume, init=init, progress=progress, log=log,
                                                max_batches=max_batches, preset=preset)


def train_msnn(cfg: Config, *, resume: bool = False, init: str | Path | None = None, progress: bool = True,
               log: Callable[[str], None] = print, max_batches: int | None = None,
               preset: Preset | None = None, prune=None) -> TrainResult:
    """Train the MSNN of ``cfg`` (see the module docstring and :func:`train`); ``prune``: a
    :class:`memsim.nn.pruning.Pruning` (or a fraction) of the synapse weights once loaded, held in training."""
    preset = prepare(cfg, preset)
    prune = None if prune is None else Pruning.parse(prune)
    insitu = insitu_settings(cfg)
    t = cfg.training
    device, run, train_set, test_set = start_run(cfg, resume)
    n_in = train_set.num_inputs
    if cfg.network.layers[0] != n_in or cfg.network.layers[-1] != train_set.num_classes:
        raise ConfigError(f"{cfg.source}: network.layers = {list(cfg.network.layers)} does not match the data "
                          f"({n_in} inputs, {train_set.num_classes} classes)", key="network.layers")

    torch.manual_seed(t.seed)
    net = build_network(cfg, crossbar=preset)
    encoder = build_encoder(cfg)
    if init is not None:
        ckpt = read_checkpoint(init)
        _load_weights(net, ckpt, f"checkpoint {init}")
        log(f"initialised weights from {init} (epoch {ckpt.epoch})")
    net.to(device)
    if prune:
        prune_and_hold_([(s.weight, 1) for s in net.synapses], prune,
                        None if preset is None else tile_block(preset))
    opt = pulsed_optimizer(build_optimizer(cfg, net.parameters()), insitu,
                           [(f"synapses.{k}.weight", s.weight) for k, s in enumerate(net.synapses)])
    gens = _generators(net, torch.Generator().manual_seed(t.seed), encoder)
    start_epoch = resume_run(run, cfg, model=net, optimizer=opt, generators=gens, log=log) if resume else 0
    run.write_config(cfg)
    redraw = cfg.hardware.aware and cfg.hardware.resample_defects
    arrays = net.crossbar_arrays()
    last = fit(cfg, run, net, opt, gens, train_set, test_set, start_epoch=start_epoch, device=device,
               step=lambda x, y: train_step(net, encoder, x, y, opt, grad_clip=t.grad_clip, weight_clip=t.weight_clip),
               evaluate=lambda data: evaluate(net, encoder, data, generator=torch.Generator().manual_seed(t.seed + 1)),
               before_batch=(lambda index: redraw_chips(arrays, t.seed, index)) if redraw else None,
               fix="lower training.learning_rate, set training.grad_clip (e.g. 1.0) or reduce encoding.scale / "
                   "network.g_unit", progress=progress, log=log, max_batches=max_batches,
               epoch_metrics=opt.metrics if insitu is not None else None)
    hardware = f" ({cfg.hardware.mode}, hardware-aware)" if preset is not None else ""
    hardware += f", in-situ {insitu.algorithm} on {insitu.response.name}" if insitu is not None else ""
    crossbar = preset.name if preset is not None else cfg.network.crossbar
    conv = cfg.network.conv_channels
    shape = (f"conv {list(conv) if isinstance(conv, (list, tuple)) else conv} + " if conv else "") + \
        f"{list(cfg.network.layers)}"
    return finish_run(cfg, run, net, last, title=f"{cfg.data.dataset}: {shape}, {crossbar}{hardware}")


def pulsed_optimizer(optimizer, settings, weights: Sequence[tuple[str, torch.nn.Parameter]]):
    """``optimizer`` itself for float training (``settings`` None), else a :class:`memsim.insitu.PulsedOptimizer`
    whose ``weights`` (``(name, parameter)``: the crossbar weights) are device pairs (``training.update =
    "pulsed"``); programs them now."""
    if settings is None:
        return optimizer
    return PulsedOptimizer(optimizer, [p for _, p in weights], settings, names=[n for n, _ in weights])


def finish_run(cfg: Config, run: RunDirectory, model: torch.nn.Module, last: Path | None, title: str) -> TrainResult:
    """The run's result: its whole history (resumed epochs included) and, if asked, the learning curves."""
    history = run.read_metrics()
    plot = None
    if cfg.output.plot and history:
        plot = plot_history(history, run.path / "learning_curves.png", title=title)
    return TrainResult(run.path, history, last, model, plot)


# ----------------------------------------------------------------------------------------------------------
# checkpoints -> networks

def _layer_weights(state: dict) -> dict[int, torch.Tensor]:
    out = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "synapses" and parts[-1] == "weight":
            out[int(parts[1])] = value
    return out


def _load_weights(net: MemristiveSNN, ckpt, source: str) -> None:
    """Copy a checkpoint's synaptic weights into ``net`` (ideal <-> preset synapses), checking shapes."""
    weights = _layer_weights(ckpt.model_state)
    saved = [(f"synapses.{k}.weight", tuple(w.shape)) for k, w in sorted(weights.items())]
    current = [(f"synapses.{k}.weight", tuple(s.weight.shape)) for k, s in enumerate(net.synapses)]

    class _Shape(torch.nn.Module):  # check_architecture compares names and shapes of a state_dict
        def state_dict(self, *a, **k):
            return {n: torch.empty(s) for n, s in current}
    check_architecture(saved, _Shape(), source)
    with torch.no_grad():
        for k, syn in enumerate(net.synapses):
            syn.weight.copy_(weights[k])
    for k, syn in enumerate(net.synapses):  # running input scale of preset layers, when saved
        layer = syn.crossbar_layer
        if layer is None:
            continue
        prefix = next(name for name, m in net.named_modules() if m is layer)
        key = f"{prefix}.input_scale"
        if key in ckpt.model_state:
            layer.input_scale.copy_(ckpt.model_state[key])


def network_from_checkpoint(ckpt: Checkpoint, cfg: Config, source: str, *, crossbar: str | None = None,
                            mode: str | None = None, noise_seed: int | None = None) -> MemristiveSNN:
    """The trained network of a read checkpoint and its parsed config (eval mode), optionally re-targeted to
    another crossbar preset/mode (see :func:`build_network`); ``source`` names the checkpoint in errors."""
    net = build_network(cfg, crossbar=crossbar, mode=mode, noise_seed=noise_seed)
    _load_weights(net, ckpt, source)
    net.eval()
    return net


def load_network(path: str | Path, *, crossbar: str | None = None, mode: str | None = None,
                 noise_seed: int | None = None) -> tuple[MemristiveSNN, Config]:
    """The trained network of a checkpoint, optionally re-targeted to another crossbar preset/mode."""
    ckpt, cfg = read_trained(path)
    return network_from_checkpoint(ckpt, cfg, f"checkpoint {path}", crossbar=crossbar, mode=mode,
                                   noise_seed=noise_seed), cfg


def evaluate_checkpoint(source, chip: Chip | Sequence[Chip] | None = None, *, preset: str | Path | Preset | None = None,
                        seeds: int | None = None, mode: str | None = None, split: str = "test",
                        limit: int | None = None, batch_size: int = 256, progress: bool = False,
                        substeps: int | None = None, data_dir: str | Path | None = None,
                        device: str | torch.device | None = None) -> dict[str, Any]:
    """A trained network (any kind) deployed on chips: :func:`memsim.deploy.evaluate_on_chips` of the checkpoint,
    the run folder or the run config ``source``, on the run's own data.

    ``chip``: the chip design (a :class:`memsim.deploy.Chip`; with ``seeds``, the chips ``chip.seed .. chip.seed +
    seeds - 1``), or a list of chips. Without it, the run's chip: ``preset`` (a name, path or object; default the
    run's ``hardware.eval_preset``, else its ``network.crossbar``; ``"ideal"``: the exact product) in ``mode``
    (default ``hardware.mode``), ``seeds`` chips (default ``hardware.eval_seeds``; one for the ideal chip).
    ``split``: ``"test"`` | ``"train"``; ``limit``: its first N samples; ``substeps``: the MSNN neurons' integration
    sub-steps (default as trained); ``device``: default the run's ``training.device``. Every chip is programmed
    once and calibrated on the training split's first ``chip.calibration_samples`` images, as a chip is.

    Returns :meth:`memsim.deploy.ChipsEvaluation.as_dict`: accuracy (mean, ``std``, ``per_seed``), output error,
    tiles and utilisation, ``layers``, the calibration of every chip, ``samples``, ``mode``, ``preset``, ..."""
    network = load_trained(source, data_dir=data_dir, substeps=substeps)
    cfg = network.config
    chips = _chips(cfg, chip, preset, mode, seeds)
    if split not in ("test", "train"):
        raise ParameterError("split", split, "'test' or 'train'", "choose the data split to evaluate")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ParameterError("limit", limit, "an integer >= 1 or None", "evaluate on the first N samples")
    set_threads(cfg.training.threads)
    device = select_device(cfg.training.device) if device is None else torch.device(device)
    train_set, test_set = (ImageDataset(*(v.to(device) for v in d.tensors()), d.info, d.split)
                           for d in load_datasets(cfg))
    data = test_set if split == "test" else train_set
    if limit is not None:
        data = ImageDataset(data.images[:limit], data.labels[:limit], data.info, data.split)
    return evaluate_on_chips(network, chips, data, calibration=train_set, batch_size=batch_size, device=device,
                             progress=progress).as_dict()


def _chips(cfg: Config, chip, preset, mode, seeds) -> list[Chip]:
    """The chips :func:`evaluate_checkpoint` runs on: ``chip`` (a design or a list), else the run's."""
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ParameterError("seeds", seeds, "an integer >= 1", "give the number of chips to average")
    if chip is not None:
        if preset is not None or mode is not None:
            raise ParameterError("preset/mode", (preset, mode), "None when chip= is given (the chip holds both)",
                                 "give either chip=Chip.load(preset, mode=...) or preset=/mode=")
        if isinstance(chip, Chip):
            return chip.series(seeds or 1)
        if seeds is not None:
            raise ParameterError("seeds", seeds, "None with a list of chips", "list the chips, or give one chip design")
        return list(chip)
    preset = preset or cfg.hardware.eval_preset or cfg.network.crossbar
    if isinstance(preset, str) and preset == "ideal":
        return [Chip.ideal()]
    design = Chip(with_compensation(cfg, preset if isinstance(preset, Preset) else load_preset(preset)),
                  mode=mode or cfg.hardware.mode)
    return design.series(cfg.hardware.eval_seeds if seeds is None else seeds)


# ----------------------------------------------------------------------------------------------------------
# plots

def plot_history(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    ax2.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", label="test")
    ax2.set_xlabel("epoch"), ax2.set_ylabel("accuracy (%)"), ax2.legend(), ax2.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator
    for ax in (ax1, ax2):  # whole epochs only (a single epoch would otherwise get ticks at 0.95 .. 1.05)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        if len(epochs) <= 10:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
