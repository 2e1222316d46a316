"""CIFAR-10's standard Python batches (``cifar-10-batches-py/``): the release's files and a reader of one batch.

The release (https://www.cs.toronto.edu/~kriz/cifar.html, ``cifar-10-python.tar.gz``, extracted) holds
``data_batch_1`` ... ``data_batch_5`` (training, 10000 images each) and ``test_batch``: pickled dicts with
``b"data"`` (uint8 ``[N, 3072]``: the 1024 red, then green, then blue pixels of a 32x32 image, row-major)
and ``b"labels"`` (N integers 0..9). The pickles are read with an unpickler that only builds dicts, lists, bytes
and numpy arrays, so a foreign pickle cannot run code.

Finding the folder and loading a split is :func:`memsim.training.data.load_cifar10`, beside the other datasets.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["CIFAR_FILES", "CIFAR_FOLDER", "CIFAR_KNOWN_LOCATIONS", "read_cifar_batch"]

#: the batch files of each split
CIFAR_FILES = {"train": tuple(f"data_batch_{k}" for k in range(1, 6)), "test": ("test_batch",)}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_KNOWN_LOCATIONS = ("/usr/share/datasets/cifar10", "/usr/share/datasets/cifar-10")

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol-2 pickles of bytes


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds only arrays, "
                                         f"lists and bytes)")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1) if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _why(exc: Exception) -> str:
    """An exception as a short printable line: its text may quote bytes of the file (control characters)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text[:150]}" if text else type(exc).__name__


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 [N, 3072], labels int64 [N])`` of one batch file, validated."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:  # from memory: a length field of a damaged pickle cannot make a read larger than the file
        d = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a damaged pickle fails in many ways (EOF, overflow, bad opcode...): all "unusable"
        raise DataError(f"{path}: not a readable CIFAR-10 Python batch ({_why(exc)}); the file is corrupt, "
                        f"truncated or not a CIFAR-10 batch. Fix: extract cifar-10-python.tar.gz again") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a pickled dict, got {type(d).__name__}")
    d = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path}: CIFAR-10 batch without 'data'/'labels' (keys {sorted(str(k) for k in d)[:10]})")
    try:
        data = np.asarray(d["data"])
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, text labels
        raise DataError(f"{path}: 'data'/'labels' are not arrays of numbers ({_why(exc)}); expected uint8 "
                        f"[N, 3072] images and N labels 0..9") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072] "
                        f"(32x32 RGB images)")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels out of range 0..9 (min {labels.min()}, max {labels.max()})")
    return data, labels
