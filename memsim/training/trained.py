"""A trained network of any kind, from a checkpoint file, a run folder or a run's config.

The checkpoint's config names its kind (``network.kind``); the kind (:func:`memsim.deploy.network_kind`) loads it
as a :class:`memsim.deploy.TrainedNetwork`, ready for :func:`memsim.deploy.evaluate_on_chips`. This module reads
checkpoints for every kind and knows none of them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..deploy.kinds import TrainedNetwork, network_kind
from .checkpoint import Checkpoint, CheckpointError, RunDirectory, read_checkpoint
from .config import Config, load_config, parse_config

__all__ = ["read_trained", "resolve_checkpoint", "load_trained"]


def read_trained(path: str | Path) -> tuple[Checkpoint, Config]:
    """A checkpoint written by training, read and validated once, and its parsed config."""
    ckpt = read_checkpoint(path)
    if ckpt.config is None:
        raise CheckpointError(f"checkpoint {path} holds no config; it was not written by memsim train")
    return ckpt, parse_config(ckpt.config, source=f"config of {path}")


def resolve_checkpoint(source) -> Path:
    """A checkpoint file from a checkpoint path, a run directory (its newest readable checkpoint), or a
    :class:`Config` / TOML config (the run in its ``output.dir``)."""
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


def load_trained(source, *, data_dir: str | Path | None = None, substeps: int | None = None) -> TrainedNetwork:
    """The trained network of ``source`` (see :func:`resolve_checkpoint`), loaded by its kind. ``data_dir``
    replaces the run's ``data.data_dir`` (the data moved); ``substeps`` its neuron integration sub-steps (MSNN)."""
    path = resolve_checkpoint(source)
    ckpt, cfg = read_trained(path)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    if substeps is not None:
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, substeps=substeps))
    kind = network_kind(cfg.network.kind, f"network.kind of checkpoint {path}")
    return kind.load(path, ckpt, cfg)
