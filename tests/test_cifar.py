"""CIFAR-10 loader (memsim.training.cifar) on synthetic batches in the release's format: pickled dicts with bytes keys,
b"data" uint8 [N, 3072] (R, G, B planes of 32x32, row-major) and b"labels"."""
import os
import pickle

import numpy as np
import pytest

from memsim.training.config import parse_config
from memsim.training.data import DataError, load_dataset

TRAIN = [f"data_batch_{k}" for k in range(1, 6)]


def _write(folder, n=3, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for k, name in enumerate(TRAIN + ["test_batch"]):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, fh, protocol=2)
        batches[name] = (data, labels)
    return batches


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MEMSIM_DATA_DIR", raising=False)
    return tmp_path


def test_cifar_layout_and_scaling(isolated):
    batches = _write(isolated / "cifar-10-batches-py")
    train = load_dataset("cifar10", "train", data_dir=isolated)  # the parent of cifar-10-batches-py/
    test = load_dataset("cifar10", "test", data_dir=isolated / "cifar-10-batches-py")
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # image 4 = second batch, row 1; channel c, pixel (y, x) is data[row, 1024 c + 32 y + x] / 255
    for c, y, x in ((0, 0, 0), (1, 5, 7), (2, 31, 31)):
        assert float(train.images[4, c, y, x]) == pytest.approx(data[1, 1024 * c + 32 * y + x] / 255.0)
    assert int(train.labels[4]) == labels[1]
    flat = load_dataset("cifar10", "test", data_dir=isolated, flatten=True)
    assert flat.images.shape == (3, 3072) and flat.info.classes[0] == "airplane"


def test_cifar_search_order_env(isolated, monkeypatch):
    _write(isolated / "env" / "cifar10", seed=1)
    monkeypatch.setenv("MEMSIM_DATA_DIR", str(isolated / "env"))
    assert len(load_dataset("cifar10", "test")) == 3


def test_cifar_missing_file_lists_expected(isolated):
    folder = isolated / "cifar-10-batches-py"
    _write(folder)
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", "train", data_dir=isolated)
    msg = str(e.value)
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5" in msg
    assert f"{folder} lacks data_batch_3" in msg and "cifar-10-python.tar.gz" in msg
    # the test split is complete and still loads
    assert len(load_dataset("cifar10", "test", data_dir=isolated)) == 3


def test_cifar_rejects_foreign_pickle_and_bad_shape(isolated):
    folder = isolated / "c"
    _write(folder)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", "test", data_dir=folder)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"expected uint8 \[N, 3072\]"):
        load_dataset("cifar10", "test", data_dir=folder)


def test_cifar_config_defaults():
    cfg = parse_config({"data": {"dataset": "cifar10"}})
    assert cfg.network.layers == (3072, 128, 10)
    cfg = parse_config({"data": {"dataset": "cifar10"}, "network": {"kind": "ann", "arch": "vgg_dw",
                                                                   "layers": [3072, 10], "channels": [32, 64, 128]}})
    assert cfg.network.channels == (32, 64, 128)
