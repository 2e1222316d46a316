"""Datasets and spike/current input encodings for training memristive SNNs.

Datasets
--------
``load_dataset(name, split)`` returns an :class:`ImageDataset` (a
``torch.utils.data.Dataset`` holding float32 images in [0, 1] and int64 labels):

* ``"digits"`` -- scikit-learn's 8x8 handwritten digits (1797 images, shipped
  inside scikit-learn, nothing to download). Pixels are integers 0..16 and are
  scaled by 1/16 to [0, 1]. The train/test split is stratified per class and
  deterministic: class ``c``'s indices are permuted with a ``torch.Generator``
  seeded with ``seed`` and the first ``round(n_c * test_fraction)`` go to the
  test set (default 0.2: 1438 train / 359 test).
* ``"mnist"``, ``"fashion_mnist"`` -- the standard IDX files
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``, gzipped or
  raw). Pixels (uint8) are scaled by 1/255. Files are looked for, in order, in
  ``data_dir`` (the argument or ``--data-dir``), ``$MEMSIM_DATA_DIR/<name>``,
  the known system locations (``/usr/share/datasets/fashion-mnist`` is where
  Debian's ``dataset-fashion-mnist`` package puts Fashion-MNIST), the download
  cache ``~/.cache/memsim/datasets/<name>``; then they are downloaded (when
  online, short timeout) and checked against the published checksums; then a
  :class:`DataError` says exactly which files to put where.
* ``"cifar10"`` -- the standard Python batches (``cifar-10-batches-py/``, read by
  :mod:`memsim.training.cifar`), looked for in the same places (:func:`find_cifar10`);
  there is no download. Pixels (uint8) are scaled by 1/255.

The content of every IDX file is checked against the SHA-256 of the official
release (of the *uncompressed* bytes, so re-gzipped copies such as Debian's
pass), and its structure (magic number, dimensions, length) is validated: a
corrupt, truncated or foreign file gets a :class:`DataError` naming the file
and the problem.

Encodings
---------
``encode(name, x, num_steps, ...)`` (or :func:`make_encoder` to validate once and
reuse) turns intensities ``x`` in [0, 1] of shape ``[B, ...]`` into a time-major
tensor ``[T, B, ...]``:

* ``"direct"``  -- a constant level ``scale * x`` (V) at every step;
* ``"rate"``    -- Bernoulli spikes, ``P(spike at step t) = gain * x``
  independently per step (the discrete-time Poisson process of rate
  ``gain * x / dt``), amplitude ``scale`` (V); needs an explicit ``seed`` or
  ``torch.Generator``;
* ``"latency"`` -- at most one spike per input, brighter inputs earlier:
  ``method="linear"``: step ``round((1 - x) * (T - 1))``;
  ``method="log"`` (RC charging to ``threshold``): step
  ``round(tau * ln(x / (x - threshold)))``; inputs ``x <= threshold`` (and log
  times ``>= T``) do not fire.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError, ParameterError
from ..io import atomic_write_bytes
from ..schema import is_finite_number, suggest
from .cifar import CIFAR_FILES, CIFAR_FOLDER, CIFAR_KNOWN_LOCATIONS, read_cifar_batch

__all__ = ["DataError", "DatasetInfo", "ImageDataset", "DATASETS", "ENCODINGS", "dataset_info", "load_dataset",
           "load_custom_idx", "CUSTOM_IDX", "load_digits", "load_mnist", "load_fashion_mnist", "find_idx_files",
           "load_cifar10", "find_cifar10", "read_idx", "write_idx",
           "encode", "make_encoder", "Encoder", "latency_steps", "KNOWN_LOCATIONS", "IDX_FILES", "CHECKSUMS",
           "MIRRORS", "cache_dir"]


# ----------------------------------------------------------------------------------------------------------
# dataset metadata

@dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple[int, int, int]   # (channels, height, width)
    num_classes: int
    classes: tuple[str, ...]
    train_size: int
    test_size: int

    @property
    def num_inputs(self) -> int:
        return int(np.prod(self.image_shape))


_DIGIT_NAMES = tuple(str(k) for k in range(10))
_INFO = {
    "digits": DatasetInfo("digits", (1, 8, 8), 10, _DIGIT_NAMES, 1438, 359),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, _DIGIT_NAMES, 60000, 10000),
    "fashion_mnist": DatasetInfo("fashion_mnist", (1, 28, 28), 10,
                                 ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot"), 60000, 10000),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10,  # the standard Python batches: load_cifar10
                           ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"), 50000, 10000),
}
#: a user's own IDX files (MNIST's format: any image size, ``num_classes`` classes) in ``data_dir``
CUSTOM_IDX = "custom_idx"
#: dataset names accepted by :func:`load_dataset` and the config's ``data.dataset``
DATASETS = tuple(_INFO) + (CUSTOM_IDX,)
SPLITS = ("train", "test")

#: the four IDX files of a release, by (split, part)
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: SHA-256 of the *uncompressed* official IDX files (independent of gzip re-compression)
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

#: download mirrors (``<mirror><file>.gz``), tried in order
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}

#: system-wide locations searched after ``data_dir`` and ``$MEMSIM_DATA_DIR``
KNOWN_LOCATIONS: dict[str, tuple[str, ...]] = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}

DOWNLOAD_TIMEOUT_S = 5.0


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and split sizes of a dataset (no file access; not for ``custom_idx``, whose shape
    is in its files)."""
    if name == CUSTOM_IDX:
        raise ParameterError("dataset", name, "a dataset of known shape", "read a custom_idx dataset with "
                             "load_dataset(..., num_classes=N) and take its info")
    if name not in _INFO:
        raise ParameterError("dataset", name, f"one of {list(DATASETS)}", suggest(name, DATASETS, cutoff=0.4))
    return _INFO[name]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ParameterError("split", split, f"one of {list(SPLITS)}", suggest(split, SPLITS, cutoff=0.4))


# ----------------------------------------------------------------------------------------------------------
# the dataset object

class ImageDataset(torch.utils.data.Dataset):
    """Images (float32 in [0, 1]) and labels (int64), indexable and DataLoader-friendly.

    ``images`` is ``[N, 1, H, W]``, or ``[N, H*W]`` when loaded with ``flatten=True``.
    Iterating a ``DataLoader`` over it yields ``(images [B, ...], labels [B])``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, split: str):
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{info.name} {split}: {images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels, self.info, self.split = images, labels, info, split

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def num_inputs(self) -> int:
        return self.info.num_inputs

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels

    def __repr__(self) -> str:
        return (f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
                f"images={tuple(self.images.shape)})")


def _finish(images: np.ndarray, labels: np.ndarray, scale: float, info: DatasetInfo, split: str,
            flatten: bool) -> ImageDataset:
    x = torch.from_numpy(images.astype(np.float32)).div_(scale)  # astype copies: tensors own their memory
    x = x.reshape(x.shape[0], -1) if flatten else x.reshape(x.shape[0], *info.image_shape)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(x, y, info, split)


# ----------------------------------------------------------------------------------------------------------
# digits (embedded)

def load_digits(split: str = "train", *, test_fraction: float = 0.2, seed: int = 0,
                flatten: bool = False) -> ImageDataset:
    """scikit-learn's 8x8 digits, scaled by 1/16 to [0, 1], with a stratified seeded split."""
    _check_split(split)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < test_fraction < 1.0:
        raise ParameterError("test_fraction", test_fraction, "a number in (0, 1)", "e.g. 0.2")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError("seed", seed, "an integer >= 0", "e.g. seed=0")
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    raw = _sk_digits()
    images, labels = raw.images, raw.target
    gen = torch.Generator().manual_seed(seed)
    test_idx, train_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        perm = idx[torch.randperm(len(idx), generator=gen).numpy()]
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(perm[:n_test])
        train_idx.append(perm[n_test:])
    chosen = np.sort(np.concatenate(train_idx if split == "train" else test_idx))
    info = _INFO["digits"]
    if test_fraction != 0.2:
        n_test = sum(len(t) for t in test_idx)
        info = DatasetInfo(info.name, info.image_shape, info.num_classes, info.classes, len(labels) - n_test, n_test)
    return _finish(images[chosen], labels[chosen], 16.0, info, split, flatten)


# ----------------------------------------------------------------------------------------------------------
# IDX files

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(v).newbyteorder("=") if v.byteorder != "|" else v: k for k, v in _IDX_DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc}); delete the file and "
                            f"download it again") from None
    if path.suffix == ".gz":
        raise DataError(f"{path}: named .gz but is not gzip data (first bytes {raw[:4].hex()}); "
                        f"delete the file and download it again")
    return raw


def _parse_idx(data: bytes, source: str, ndim: int | None = None) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX file ({len(data)} bytes; the header alone is 4+ bytes)")
    zero1, zero2, code, nd = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or code not in _IDX_DTYPES or nd == 0:
        raise DataError(f"{source}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN with type TT in "
                        f"{[hex(c) for c in _IDX_DTYPES]} and NN >= 1 dimensions); this is not an IDX file")
    if ndim is not None and nd != ndim:
        raise DataError(f"{source}: IDX file has {nd} dimensions, expected {ndim} "
                        f"({'images: N x rows x cols' if ndim == 3 else 'labels: N'})")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes, need {header} for {nd} dimensions)")
    dims = struct.unpack(f">{nd}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)  # Python ints: a corrupt header's huge dimensions must not wrap around in int64
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{source}: truncated IDX data: header says {list(dims)} ({expected} bytes) "
                        f"but the file holds {len(data)} bytes; delete it and download it again")
    if len(data) > expected:
        raise DataError(f"{source}: {len(data) - expected} unexpected trailing bytes after the "
                        f"{list(dims)} array; the file is corrupt")
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=count)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw), validating magic number, dimensions and length."""
    path = Path(path)
    return _parse_idx(_read_bytes(path), str(path), ndim)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=") if arr.dtype.byteorder not in "|=" else arr.dtype
    code = _IDX_CODES.get(key)
    if code is None or arr.ndim == 0 or arr.ndim > 255:
        raise ParameterError("array", f"dtype {arr.dtype}, ndim {arr.ndim}",
                             "uint8/int8/int16/int32/float32/float64 with 1..255 dimensions")
    data = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.astype(_IDX_DTYPES[code], copy=False).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)


def cache_dir(name: str) -> Path:
    """Where downloads of ``name`` go: ``$MEMSIM_CACHE_DIR`` or ``~/.cache/memsim``, then ``datasets/<name>``."""
    base = os.environ.get("MEMSIM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "memsim")
    return Path(base) / "datasets" / name


def _search_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir))
    env = os.environ.get("MEMSIM_DATA_DIR")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs += [Path(p) for p in KNOWN_LOCATIONS.get(name, ())]
    dirs.append(cache_dir(name))
    return dirs


def _find_in(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem, directory / stem.replace("-idx", ".idx"),
                      directory / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(name: str, stem: str, target_dir: Path, mirrors: Sequence[str], checksums: dict[str, str] | None,
              timeout: float) -> tuple[Path | None, list[str]]:
    """Try each mirror; return the verified file or None and the reasons of the failures."""
    problems = []
    for mirror in mirrors:
        url = f"{mirror}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https mirrors)
                payload = resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        try:
            content = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
        except (OSError, EOFError, zlib.error) as exc:
            problems.append(f"{url}: corrupt gzip download ({exc})")
            continue
        digest = hashlib.sha256(content).hexdigest()
        expected = (checksums or {}).get(stem)
        if expected and digest != expected:
            problems.append(f"{url}: checksum mismatch (SHA-256 {digest}, expected {expected}); download rejected")
            continue
        path = atomic_write_bytes(target_dir / f"{stem}.gz", payload if payload[:2] == b"\x1f\x8b"
                                  else gzip.compress(content, mtime=0))
        return path, problems
    return None, problems


def find_idx_files(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
                   split: str | None = None, mirrors: Sequence[str] | None = None,
                   timeout: float = DOWNLOAD_TIMEOUT_S) -> dict[tuple[str, str], Path]:
    """Locate (or download) the IDX files of ``name``; keys are ``(split, "images"|"labels")``.

    Search order: ``data_dir``, ``$MEMSIM_DATA_DIR[/name]``, :data:`KNOWN_LOCATIONS`, :func:`cache_dir`;
    then a download from :data:`MIRRORS` into the cache (checked against :data:`CHECKSUMS`); then a
    :class:`DataError` listing the missing files and where to put them. ``MEMSIM_NO_DOWNLOAD=1`` disables
    downloads.
    """
    if name not in CHECKSUMS:
        choices = list(CHECKSUMS)
        raise ParameterError("dataset", name, f"one of {choices} (IDX datasets)", suggest(name, choices, cutoff=0.4))
    splits = SPLITS if split is None else (split,)
    for s in splits:
        _check_split(s)
    wanted = [(s, part) for s in splits for part in ("images", "labels")]
    dirs = _search_dirs(name, data_dir)
    found: dict[tuple[str, str], Path] = {}
    for key in wanted:
        for directory in dirs:
            hit = _find_in(directory, IDX_FILES[key])
            if hit is not None:
                found[key] = hit
                break
    missing = [k for k in wanted if k not in found]
    problems: list[str] = []
    if missing and download and os.environ.get("MEMSIM_NO_DOWNLOAD", "") in ("", "0"):
        mirrors = MIRRORS[name] if mirrors is None else tuple(mirrors)
        for key in list(missing):
            path, why = _download(name, IDX_FILES[key], cache_dir(name), mirrors, CHECKSUMS.get(name), timeout)
            problems += why
            if path is None:
                break  # offline: do not wait for every file's timeout
            found[key] = path
            missing.remove(key)
    if missing:
        files = ", ".join(f"{IDX_FILES[k]}.gz" for k in missing)
        where = "\n".join(f"  - {d}{'' if d.is_dir() else ' (does not exist)'}" for d in dirs)
        msg = (f"{name}: missing IDX file(s) {files}. Searched:\n{where}\n"
               f"Fix: put the four files {', '.join(f'{v}.gz' for v in IDX_FILES.values())} (gzipped or not) "
               f"into one directory and pass it as data_dir / --data-dir (or [data] data_dir), or into "
               f"{cache_dir(name)}.")
        if name == "fashion_mnist":
            msg += " On Debian: apt install dataset-fashion-mnist."
        if problems:
            msg += "\nDownload failed:\n" + "\n".join(f"  - {p}" for p in problems)
        elif not download or os.environ.get("MEMSIM_NO_DOWNLOAD", "") not in ("", "0"):
            msg += "\n(downloads disabled)"
        raise DataError(msg)
    return found


def _load_idx_dataset(name: str, split: str, data_dir, flatten: bool, download: bool, verify: bool,
                      mirrors: Sequence[str] | None = None) -> ImageDataset:
    _check_split(split)
    paths = find_idx_files(name, data_dir, download=download, split=split, mirrors=mirrors)
    info = _INFO[name]
    arrays = {}
    for part, ndim in (("images", 3), ("labels", 1)):
        path = paths[(split, part)]
        data = _read_bytes(path)
        if verify:
            stem = IDX_FILES[(split, part)]
            digest = hashlib.sha256(data).hexdigest()
            if digest != CHECKSUMS[name][stem]:
                raise DataError(f"{path}: content differs from the official {name} release (SHA-256 of the "
                                f"uncompressed file is {digest}, expected {CHECKSUMS[name][stem]}); the file is "
                                f"corrupt or from another dataset. Fix: replace it, or pass verify=False to use it "
                                f"anyway")
        arr = _parse_idx(data, str(path), ndim)
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: IDX element type is {arr.dtype}, expected uint8")
        arrays[part] = (arr, path)
    (images, ipath), (labels, lpath) = arrays["images"], arrays["labels"]
    _, h, w = info.image_shape
    if images.shape[1:] != (h, w):
        raise DataError(f"{ipath}: images are {images.shape[1]}x{images.shape[2]}, expected {h}x{w} for {name}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{ipath} holds {images.shape[0]} images but {lpath} holds {labels.shape[0]} labels; "
                        f"the files do not belong together")
    if labels.size and int(labels.max()) >= info.num_classes:
        raise DataError(f"{lpath}: label {int(labels.max())} out of range 0..{info.num_classes - 1}")
    return _finish(images, labels, 255.0, info, split, flatten)


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None, *, flatten: bool = False,
               download: bool = True, verify: bool = True) -> ImageDataset:
    """MNIST from IDX files (see :func:`find_idx_files`), pixels scaled by 1/255."""
    return _load_idx_dataset("mnist", split, data_dir, flatten, download, verify)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None, *, flatten: bool = False,
                       download: bool = True, verify: bool = True) -> ImageDataset:
    """Fashion-MNIST from IDX files (see :func:`find_idx_files`), pixels scaled by 1/255."""
    return _load_idx_dataset("fashion_mnist", split, data_dir, flatten, download, verify)


def load_custom_idx(split: str, data_dir: str | os.PathLike | None, *, num_classes: int,
                    flatten: bool = False) -> ImageDataset:
    """A user's own dataset in MNIST's IDX format (a subset, EMNIST, ...): the four files named as MNIST's
    (:data:`IDX_FILES`, gzipped or not) in ``data_dir``; uint8 images of any size, labels ``0..num_classes-1``;
    pixels scaled by 1/255. No checksum (the content is the user's)."""
    _check_split(split)
    if not data_dir:
        raise ParameterError("data.data_dir", data_dir, "the folder holding the custom IDX files",
                             "set data.data_dir (or --data-dir) for dataset 'custom_idx'")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ParameterError("data.num_classes", num_classes, "an integer >= 2",
                             "set data.num_classes to the number of classes of the custom dataset")
    arrays = {}
    for part, ndim in (("images", 3), ("labels", 1)):
        path = _find_in(Path(data_dir), IDX_FILES[(split, part)])
        if path is None:
            raise DataError(f"custom_idx: no {IDX_FILES[(split, part)]}[.gz] in {data_dir}. Fix: name the files as "
                            f"MNIST's: {', '.join(IDX_FILES.values())} (gzipped or not)")
        arr = _parse_idx(_read_bytes(path), str(path), ndim)
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: IDX element type is {arr.dtype}, expected uint8")
        arrays[part] = (arr, path)
    (images, ipath), (labels, lpath) = arrays["images"], arrays["labels"]
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{ipath} holds {images.shape[0]} images but {lpath} holds {labels.shape[0]} labels; "
                        f"the files do not belong together")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"{lpath}: label {int(labels.max())} out of range 0..{num_classes - 1}. Fix: set "
                        f"data.num_classes to at least {int(labels.max()) + 1}")
    n = int(images.shape[0])
    info = DatasetInfo(CUSTOM_IDX, (1, int(images.shape[1]), int(images.shape[2])), num_classes,
                       tuple(str(k) for k in range(num_classes)), n if split == "train" else 0,
                       n if split == "test" else 0)
    return _finish(images, labels, 255.0, info, split, flatten)


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10 (the standard Python batches; one batch file is read by memsim.training.cifar)

def _cifar_candidates(data_dir) -> list[Path]:
    dirs = _search_dirs("cifar10", data_dir)
    cache = cache_dir("cifar10")
    dirs = [d for d in dirs if d != cache] + [Path(p) for p in CIFAR_KNOWN_LOCATIONS] + [cache]
    out = []
    for d in dirs:
        out += [d, d / CIFAR_FOLDER]
    return out


def find_cifar10(split: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The batch files of ``split``: the first searched folder holding all of them.

    The folder is looked for in the same order as the other datasets: ``data_dir``, ``$MEMSIM_DATA_DIR/cifar10``,
    ``$MEMSIM_DATA_DIR``, the known system locations, the cache ``~/.cache/memsim/datasets/cifar10``; in each, the
    batch files directly or in ``cifar-10-batches-py/``. There is no download (163 MB): a :class:`DataError` lists
    the expected files and where to put them."""
    _check_split(split)
    names = CIFAR_FILES[split]
    searched = _cifar_candidates(data_dir)
    for d in searched:
        if all((d / n).is_file() for n in names):
            return [d / n for n in names]
    partial = [(d, [n for n in names if not (d / n).is_file()]) for d in searched
               if any((d / n).is_file() for n in names)]
    where = "\n".join(f"  - {d}{'' if d.is_dir() else ' (does not exist)'}" for d in searched)
    msg = (f"cifar10: missing the {split} batch file(s) {', '.join(names)}. Searched:\n{where}\n")
    if partial:
        msg += "".join(f"{d} lacks {', '.join(m)}\n" for d, m in partial)
    msg += (f"Fix: download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
            f"(it makes {CIFAR_FOLDER}/ with data_batch_1 ... data_batch_5, test_batch and batches.meta) and pass "
            f"that folder or its parent as data_dir / --data-dir (or [data] data_dir), or put it in "
            f"{cache_dir('cifar10')}.")
    raise DataError(msg)


def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None, *, flatten: bool = False):
    """CIFAR-10 ``split`` as an :class:`ImageDataset` (pixels / 255, ``[N, 3, 32, 32]`` or flat)."""
    parts = [read_cifar_batch(p) for p in find_cifar10(split, data_dir)]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _finish(data, labels, 255.0, dataset_info("cifar10"), split, flatten)


def load_dataset(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None,
                 flatten: bool = False, seed: int = 0, test_fraction: float = 0.2, download: bool = True,
                 verify: bool = True, num_classes: int | None = None) -> ImageDataset:
    """Load ``name`` (one of :data:`DATASETS`); ``seed``/``test_fraction`` apply to the digits split only;
    ``verify=False`` accepts MNIST/Fashion-MNIST files that differ from the official release (a subset);
    ``num_classes`` is for ``custom_idx``."""
    if name == CUSTOM_IDX:
        return load_custom_idx(split, data_dir, num_classes=num_classes, flatten=flatten)
    dataset_info(name)
    if name == "digits":
        return load_digits(split, test_fraction=test_fraction, seed=seed, flatten=flatten)
    if name == "cifar10":
        return load_cifar10(split, data_dir, flatten=flatten)
    return _load_idx_dataset(name, split, data_dir, flatten, download, verify)


# ----------------------------------------------------------------------------------------------------------
# encodings

ENCODINGS = ("direct", "rate", "latency")
LATENCY_METHODS = ("linear", "log")


def _check_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ParameterError("time_steps", num_steps, "an integer >= 1", "use at least one time step, e.g. 25")
    return int(num_steps)


def _check_positive(field: str, value, upper: float | None = None, inclusive_upper: bool = True) -> float:
    ok = is_finite_number(value) and value > 0
    if ok and upper is not None:
        ok = value <= upper if inclusive_upper else value < upper
    if not ok:
        allowed = "a finite number > 0" if upper is None else f"a number in (0, {upper}{']' if inclusive_upper else ')'}"
        raise ParameterError(field, value, allowed)
    return float(value)


def _check_intensity(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ParameterError("x", type(x).__name__, "a floating-point torch.Tensor of intensities in [0, 1]")
    if x.dim() < 1:
        raise ParameterError("x.shape", tuple(x.shape), "[B, ...] with a batch dimension")
    if x.numel():
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ParameterError("x", f"values in [{lo:.4g}, {hi:.4g}]", "finite intensities in [0, 1]",
                                 "scale the images to [0, 1] (the loaders do)")


def latency_steps(x: torch.Tensor, num_steps: int, *, method: str = "linear", threshold: float = 0.0,
                  tau: float | None = None) -> torch.Tensor:
    """First-spike step of each input (float; ``inf`` where the input never fires in ``num_steps``).

    ``linear``: ``round((1 - x) * (T - 1))`` for ``x > threshold``.
    ``log``: ``round(tau * ln(x / (x - threshold)))`` for ``x > threshold`` (an RC membrane charged by ``x``
    reaching ``threshold``), ``tau`` in steps (default ``T - 1``); steps ``>= T`` do not fire.
    """
    T = _check_steps(num_steps)
    if method not in LATENCY_METHODS:
        raise ParameterError("latency method", method, f"one of {list(LATENCY_METHODS)}",
                             suggest(method, LATENCY_METHODS, cutoff=0.4))
    if method == "linear":
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ParameterError("threshold", threshold, "a number in [0, 1)")
        steps = torch.round((1.0 - x) * (T - 1))
    else:
        _check_positive("threshold", threshold, 1.0, inclusive_upper=False)
        tau = float(T - 1 if tau is None else _check_positive("tau", tau))
        safe = torch.where(x > threshold, x, torch.ones_like(x))
        steps = torch.round(tau * torch.log(safe / (safe - threshold)))
    fires = (x > threshold) & (steps < T)
    return torch.where(fires, steps, torch.full_like(steps, math.inf))


@dataclass(frozen=True)
class Encoder:
    """A validated encoding: call it with intensities ``[B, ...]`` in [0, 1] to get ``[T, B, ...]``.

    ``scale`` is the amplitude in volts at intensity 1: the encoder is the DAC driving the first crossbar's
    rows (the level for ``direct``, the spike height for ``rate``/``latency``). ``rate`` draws from
    ``generator`` (call argument), else from its own generator seeded with ``seed`` (re-seeded at
    construction only, so consecutive calls differ but a run is reproducible).
    """

    name: str
    num_steps: int
    scale: float = 1.0
    gain: float = 1.0
    method: str = "linear"
    threshold: float = 0.0
    tau: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.name not in ENCODINGS:
            raise ParameterError("encoding", self.name, f"one of {list(ENCODINGS)}",
                                 suggest(self.name, ENCODINGS, cutoff=0.4))
        _check_steps(self.num_steps)
        _check_positive("encoding.scale", self.scale)
        _check_positive("encoding.gain", self.gain, 1.0)
        if self.name == "latency":
            latency_steps(torch.zeros(1), self.num_steps, method=self.method, threshold=self.threshold, tau=self.tau)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ParameterError("encoding.seed", self.seed, "an integer >= 0 or None")
        gen = None
        if self.seed is not None:
            gen = torch.Generator().manual_seed(self.seed)
        object.__setattr__(self, "_generator", gen)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_intensity(x)
        T = self.num_steps
        if self.name == "direct":
            return (x * self.scale).unsqueeze(0).expand(T, *x.shape)
        if self.name == "rate":
            gen = generator if generator is not None else self._generator
            if gen is None:
                raise ParameterError("generator", None, "a torch.Generator or an integer seed",
                                     "rate coding is random: pass generator= or seed= so the run is reproducible")
            u = torch.rand((T, *x.shape), generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
            return (u < x.detach() * self.gain).to(x.dtype) * self.scale
        steps = latency_steps(x.detach(), T, method=self.method, threshold=self.threshold, tau=self.tau)
        t = torch.arange(T, device=x.device, dtype=x.dtype).reshape(T, *([1] * x.dim()))
        return (t == steps.unsqueeze(0)).to(x.dtype) * self.scale

    @property
    def generator(self) -> torch.Generator | None:
        """The encoder's own generator (seeded with ``seed``); save its state to resume a run exactly."""
        return self._generator

    def state_dict(self) -> dict:
        """RNG state of the internal generator (for exact resume), empty when there is none."""
        return {} if self._generator is None else {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if self._generator is not None and "generator" in state:
            self._generator.set_state(state["generator"])


def make_encoder(name: str, num_steps: int, **params) -> Encoder:
    """Validate an encoding once (before training starts) and return the reusable :class:`Encoder`."""
    allowed = {"scale", "gain", "method", "threshold", "tau", "seed"}
    for key in params:
        if key not in allowed:
            raise ParameterError(f"encoding parameter '{key}'", params[key], f"one of {sorted(allowed)}",
                                 suggest(key, sorted(allowed), cutoff=0.4))
    return Encoder(name, num_steps, **params)


def encode(name: str, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None,
           **params) -> torch.Tensor:
    """Encode intensities ``x`` ``[B, ...]`` in [0, 1] as ``[T, B, ...]`` (see the module docstring)."""
    return make_encoder(name, num_steps, **params)(x, generator=generator)
