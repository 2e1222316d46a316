"""Atomic checkpoints, per-epoch metrics and exact resume for training runs.

A checkpoint (``torch.save`` format, loaded with ``weights_only=True``) holds the model's ``state_dict``,
the optimizer's (and an optional LR scheduler's) state, the epoch, every RNG state (torch CPU and CUDA,
numpy's global, Python's ``random``, plus named ``torch.Generator`` objects such as the DataLoader's
shuffling generator), the run's config, the metric history and an *architecture fingerprint* (SHA-256 of
the ``state_dict`` names and shapes). It is written to a temporary file, fsync'ed and moved into place with
``os.replace`` (:mod:`memsim.io`), so a crash leaves either the old or the new file, never half of one.

:func:`load_checkpoint` refuses a checkpoint whose architecture differs from the model's and names the
first mismatching parameter and both shapes. Restoring every RNG state makes a resumed run bit-identical
to an uninterrupted one, provided the training loop draws all its randomness from the saved generators
and the global RNGs (as a DataLoader with ``generator=`` and ``num_workers=0`` does).

:class:`RunDirectory` lays out a run::

    RUN/config.toml                 the validated config (memsim.training.config.Config.to_toml)
    RUN/metrics.csv                 one row per finished epoch, rewritten atomically
    RUN/checkpoints/epoch_0003.pt   one checkpoint per epoch, the newest ``keep`` kept

and finds the latest checkpoint that loads (skipping truncated or corrupt files) to resume from.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import pickle
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import MemsimError
from ..io import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "Checkpoint", "RunDirectory", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "architecture", "architecture_fingerprint", "check_architecture", "rng_state",
           "set_rng_state", "FORMAT", "VERSION"]

FORMAT = "memsim-checkpoint"
VERSION = 1


class CheckpointError(MemsimError):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the model or the run."""


# ----------------------------------------------------------------------------------------------------------
# architecture

def architecture(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every entry of the model's ``state_dict`` (parameters and buffers), in order."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    return [(name, tuple(int(s) for s in t.shape)) for name, t in state.items() if isinstance(t, torch.Tensor)]


def architecture_fingerprint(model_or_state) -> str:
    """SHA-256 over the ``state_dict`` names and shapes (independent of values, dtype and device)."""
    text = ";".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in architecture(model_or_state))
    return hashlib.sha256(text.encode()).hexdigest()


def check_architecture(saved: Sequence[tuple[str, Sequence[int]]], model: torch.nn.Module, source: str) -> None:
    """Raise :class:`CheckpointError` naming the first parameter whose name or shape differs."""
    current = architecture(model)
    saved = [(n, tuple(s)) for n, s in saved]
    saved_map, current_map = dict(saved), dict(current)
    for name, shape in current:
        if name not in saved_map:
            raise CheckpointError(
                f"{source} was saved from a different architecture: the model's parameter '{name}' "
                f"{list(shape)} is not in the checkpoint (checkpoint has {len(saved)} entries, model "
                f"{len(current)}). Fix: build the model from the checkpoint's config, or start a new run.")
        if saved_map[name] != shape:
            raise CheckpointError(
                f"{source} was saved from a different architecture: parameter '{name}' has shape "
                f"{list(saved_map[name])} in the checkpoint but {list(shape)} in the model. Fix: build the "
                f"model from the checkpoint's config (same layer sizes), or start a new run.")
    for name, shape in saved:
        if name not in current_map:
            raise CheckpointError(
                f"{source} was saved from a different architecture: the checkpoint's parameter '{name}' "
                f"{list(shape)} does not exist in the model. Fix: build the model from the checkpoint's config, "
                f"or start a new run.")


# ----------------------------------------------------------------------------------------------------------
# RNG state (stored as tensors, lists and numbers only, so that weights_only=True loading works)

def rng_state() -> dict[str, Any]:
    """The global RNG states: torch CPU (and every CUDA device), numpy, Python ``random``."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------
# save / load

@dataclass
class Checkpoint:
    """A loaded checkpoint: what :func:`save_checkpoint` stored (state dicts in ``payload``)."""

    path: Path
    epoch: int
    config: dict | None
    fingerprint: str
    architecture: list[tuple[str, tuple[int, ...]]]
    history: list[dict]
    extra: dict
    payload: dict = field(repr=False)

    @property
    def model_state(self) -> dict:
        return self.payload["model"]


def _config_dict(config) -> dict | None:
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if isinstance(config, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    raise CheckpointError(f"config must be a memsim.training.config.Config or a dict, got {type(config).__name__}")


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, epoch: int,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None,
                    config: Any = None, generators: Mapping[str, torch.Generator] | None = None,
                    history: Sequence[Mapping[str, Any]] = (), extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + fsync + ``os.replace``) and return its path.

    ``epoch`` is the number of *finished* epochs. ``generators`` are named ``torch.Generator`` objects whose
    state is restored on load (e.g. ``{"loader": g}``); ``history`` the metric rows so far; ``extra`` any
    small tensors/lists/numbers the trainer needs.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"epoch = {epoch!r} is invalid: allowed an integer >= 0 (finished epochs)")
    state = model.state_dict()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "model": state,
        "model_class": type(model).__qualname__,
        "architecture": [[n, list(s)] for n, s in architecture(state)],
        "fingerprint": architecture_fingerprint(state),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
        "config": _config_dict(config),
        "history": [dict(row) for row in history],
        "extra": dict(extra or {}),
        "torch_version": str(torch.__version__),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a checkpoint file without touching any model (safe ``weights_only`` unpickling)."""
    path = Path(path)
    if path.is_dir():
        files = RunDirectory(path.parent if path.name == "checkpoints" else path).checkpoints()
        hint = f"e.g. the newest, {files[-1][1]}" if files else "it holds no epoch_NNNN.pt checkpoint"
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file. Fix: give one checkpoint "
                              f"file ({hint})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle's protocol before refusing it
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, foreign format: all mean "unusable file"
        # torch's own text advises loading the file unsafely; never pass that on: say why in memsim's words
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or not a memsim checkpoint, and is refused: "
                              f"{_unreadable_reason(path, exc)}. Fix: use an earlier checkpoint of the run "
                              f"(RUN/checkpoints/epoch_NNNN.pt), or continue the run with 'memsim train "
                              f"RUN/config.toml --resume' (it resumes from the newest checkpoint that loads), or "
                              f"start a new run.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a memsim checkpoint (no '{FORMAT}' marker); it was not written "
                              f"by memsim.training.checkpoint.save_checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')!r} is not supported "
                              f"(this memsim reads version {VERSION})")
    try:
        arch = [(str(n), tuple(int(k) for k in s)) for n, s in payload["architecture"]]
        return Checkpoint(path=path, epoch=int(payload["epoch"]), config=payload.get("config"),
                          fingerprint=payload["fingerprint"], architecture=arch, history=list(payload["history"]),
                          extra=dict(payload.get("extra") or {}), payload=payload)
    except (KeyError, TypeError, ValueError) as exc:  # the marker is there but the content is not memsim's
        raise CheckpointError(f"checkpoint {path} has the memsim marker but malformed content ({type(exc).__name__}: "
                              f"{exc}); it is corrupt or was not written by memsim, and is refused") from None


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why torch could not read ``path``, from the file's first bytes and the kind of failure (not torch's text)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if not head:
        return "the file is empty (0 bytes)"
    if head != b"PK\x03\x04":  # every checkpoint memsim writes is a torch zip archive
        return "it is not a torch zip archive (a foreign or legacy pickle, or another kind of file)"
    if isinstance(exc, pickle.UnpicklingError):
        return ("it holds Python objects other than tensors and plain data, which a memsim checkpoint never does "
                "(a foreign or tampered file; loading it could run code)")
    return "the zip archive is truncated or damaged"


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None, *,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None,
                    generators: Mapping[str, torch.Generator] | None = None, restore_rng: bool = True,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint into ``model`` / ``optimizer`` / ``scheduler`` / ``generators`` and restore the RNGs.

    The architecture is checked first: a checkpoint from another architecture raises
    :class:`CheckpointError` naming the first mismatching parameter and both shapes, before anything is
    modified.
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    payload = ckpt.payload
    if model is not None:
        check_architecture(ckpt.architecture, model, f"checkpoint {ckpt.path}")
    if optimizer is not None and payload["optimizer"] is None:
        raise CheckpointError(f"checkpoint {ckpt.path} holds no optimizer state; load it without optimizer= "
                              f"or save one with save_checkpoint(..., optimizer=...)")
    if scheduler is not None and payload["scheduler"] is None:
        raise CheckpointError(f"checkpoint {ckpt.path} holds no scheduler state")
    missing = sorted(set(generators or {}) - set(payload["generators"]))
    if missing:
        raise CheckpointError(f"checkpoint {ckpt.path} holds no state for generator(s) {missing} "
                              f"(it has {sorted(payload['generators'])})")
    if model is not None:
        model.load_state_dict(payload["model"])
    if optimizer is not None:
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {ckpt.path}: optimizer state does not fit the optimizer: {exc}. "
                                  f"Fix: use the same optimizer type and parameter groups as the saved run") from None
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    for name, g in (generators or {}).items():
        g.set_state(payload["generators"][name])
    if restore_rng:
        set_rng_state(payload["rng"])
    return ckpt


# ----------------------------------------------------------------------------------------------------------
# run directory

_CKPT_RE = re.compile(r"^epoch_(\d+)\.pt$")


def _parse_cell(text: str):
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class RunDirectory:
    """A training run's directory: config, per-epoch metrics CSV and epoch checkpoints (see module doc)."""

    METRICS = "metrics.csv"
    CONFIG = "config.toml"

    def __init__(self, path: str | os.PathLike, *, keep: int = 2):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise CheckpointError(f"keep = {keep!r} is invalid: allowed an integer >= 1 (checkpoints kept)")
        self.path = Path(path)
        self.keep = keep
        self.skipped: list[tuple[Path, str]] = []  # unreadable checkpoints met by latest_checkpoint

    # -- layout
    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch_{epoch:04d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the checkpoint files present, oldest first (not checked for readability)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
        return sorted(found)

    # -- config
    def write_config(self, config) -> Path:
        text = config.to_toml() if hasattr(config, "to_toml") else str(config)
        return atomic_write_text(self.config_path, text)

    # -- metrics
    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.csv`` (numbers parsed back to int/float; empty cells ``None``)."""
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="") as fh:
            return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def write_metrics(self, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Replace ``metrics.csv`` with ``rows`` (columns: union of keys, first-seen order), atomically."""
        rows = [dict(r) for r in rows]
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_format_cell(r.get(c)) for c in columns])
        return atomic_write_text(self.metrics_path, buf.getvalue())

    def append_metrics(self, row: Mapping[str, Any]) -> Path:
        """Append one row by rewriting the whole file to a temp file and replacing it (never half a row)."""
        return self.write_metrics([*self.read_metrics(), dict(row)])

    # -- checkpoints
    def save(self, epoch: int, *, model: torch.nn.Module, optimizer=None, scheduler=None, config=None,
             generators: Mapping[str, torch.Generator] | None = None, metrics: Mapping[str, Any] | None = None,
             extra: Mapping[str, Any] | None = None) -> Path:
        """End of epoch ``epoch`` (finished epochs): record ``metrics``, write the checkpoint, prune old ones.

        The metrics row goes into the checkpoint's history as well, and the CSV is rewritten from it, so the
        CSV and the newest checkpoint always agree. Old checkpoints are removed only after the new one is
        safely on disk.
        """
        history = self.read_metrics()
        history = [r for r in history if not (isinstance(r.get("epoch"), int) and r["epoch"] >= epoch)]
        if metrics is not None:
            history.append({"epoch": epoch, **{k: v for k, v in metrics.items() if k != "epoch"}})
        history = [{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in r.items()} for r in history]
        path = save_checkpoint(self.checkpoint_path(epoch), model=model, epoch=epoch, optimizer=optimizer,
                               scheduler=scheduler, config=config, generators=generators, history=history,
                               extra=extra)
        self.write_metrics(history)
        self.prune(protect=path)
        return path

    def prune(self, protect: Path | None = None) -> list[Path]:
        """Delete all but the newest ``keep`` checkpoints (never ``protect``); return the deleted paths."""
        files = self.checkpoints()
        doomed = [p for _, p in files[:-self.keep] if p != protect]
        for p in doomed:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return doomed

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint that reads back correctly (corrupt/truncated ones are listed in ``skipped``)."""
        self.skipped = []
        for epoch, path in reversed(self.checkpoints()):
            try:
                return read_checkpoint(path)
            except CheckpointError as exc:
                self.skipped.append((path, str(exc)))
        return None

    def resume(self, *, model: torch.nn.Module, optimizer=None, scheduler=None,
               generators: Mapping[str, torch.Generator] | None = None, config=None,
               allow_changes: Iterable[str] = ("training.epochs",)) -> Checkpoint | None:
        """Restore the latest good checkpoint into the objects given; ``None`` when there is none.

        With ``config``, keys that differ from the checkpoint's config raise :class:`CheckpointError` unless
        listed in ``allow_changes`` (default: only ``training.epochs``, so a finished run can be extended).
        ``metrics.csv`` is rewritten to the checkpoint's history, dropping rows of epochs that will be redone.
        """
        latest = self.latest_checkpoint()
        if latest is None:
            return None
        if config is not None and latest.config is not None:
            now = _config_dict(config)
            allowed = set(allow_changes)
            changed = [f"{s}.{k}: {latest.config.get(s, {}).get(k)!r} -> {v!r}"
                       for s, table in now.items() for k, v in table.items()
                       if f"{s}.{k}" not in allowed and k in latest.config.get(s, {})  # keys added since: defaults
                       and _norm(latest.config[s][k]) != _norm(v)]
            if changed:
                raise CheckpointError(f"cannot resume {self.path}: the config differs from the one the run was "
                                      f"started with ({'; '.join(changed)}). Fix: resume with the saved "
                                      f"{self.config_path}, or start a new run in another directory.")
        ckpt = load_checkpoint(latest.path, model, optimizer=optimizer, scheduler=scheduler,
                               generators=generators)
        self.write_metrics(ckpt.history)
        return ckpt


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
