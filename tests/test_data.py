"""Datasets (digits, IDX files, lookup, download, corruption) and input encodings (memsim.training.data)."""
from __future__ import annotations

import gzip
import hashlib
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from memsim.training import data as D
from memsim.errors import MemsimError, ParameterError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path, monkeypatch):
    """No test sees the user's cache, $MEMSIM_DATA_DIR or the system locations unless it asks to."""
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MEMSIM_DATA_DIR", raising=False)
    monkeypatch.delenv("MEMSIM_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(D, "KNOWN_LOCATIONS", {"mnist": (str(tmp_path / "nowhere"),),
                                               "fashion_mnist": (str(tmp_path / "nowhere"),)})


# ---------------------------------------------------------------------------------------------- digits

def test_digits_split_is_stratified_deterministic_and_scaled_from_sklearn():
    from sklearn.datasets import load_digits as sk

    raw = sk()
    train, test = D.load_digits("train"), D.load_digits("test")
    assert train.images.shape == (1438, 1, 8, 8) and test.images.shape == (359, 1, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    # per-class test counts are round(n_c * 0.2) of sklearn's class counts
    counts = np.bincount(raw.target, minlength=10)
    assert test.labels.bincount(minlength=10).tolist() == [int(round(c * 0.2)) for c in counts]
    assert (train.labels.bincount(minlength=10) + test.labels.bincount(minlength=10)).tolist() == counts.tolist()
    # the union of both splits is exactly sklearn's data / 16 (as a multiset of (image, label) rows)
    ours = np.concatenate([np.c_[train.images.reshape(-1, 64).numpy() * 16, train.labels.numpy()],
                           np.c_[test.images.reshape(-1, 64).numpy() * 16, test.labels.numpy()]])
    ref = np.c_[raw.data, raw.target]
    assert np.array_equal(np.unique(ours, axis=0, return_counts=True)[1].sum(), len(ref))
    assert np.array_equal(ours[np.lexsort(ours.T[::-1])], ref[np.lexsort(ref.T[::-1])])
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    # deterministic for a seed, different for another
    again = D.load_digits("test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    other = D.load_digits("test", seed=1)
    assert not torch.equal(other.images, test.images)
    flat = D.load_digits("test", flatten=True)
    assert flat.images.shape == (359, 64) and torch.equal(flat.images, test.images.reshape(359, 64))


def test_dataset_works_with_dataloader():
    ds = D.load_dataset("digits", "train", flatten=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=100, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    xb, yb = next(iter(loader))
    assert xb.shape == (100, 64) and yb.shape == (100,) and yb.dtype == torch.int64
    assert sum(len(y) for _, y in loader) == len(ds) == 1438


def test_bad_dataset_and_split_names():
    with pytest.raises(ParameterError, match="fashion_mnist"):
        D.load_dataset("fashion-mnist")
    with pytest.raises(ParameterError, match="did you mean 'test'"):
        D.load_digits("tset")
    with pytest.raises(ParameterError, match="test_fraction"):
        D.load_digits(test_fraction=1.0)


# ---------------------------------------------------------------------------------------------- IDX files

def _handmade_idx(array: np.ndarray) -> bytes:
    """IDX bytes written by hand from the format spec (independent of memsim.training.data.write_idx)."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def test_read_idx_matches_the_format_spec_gz_and_raw(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    (tmp_path / "a-idx3-ubyte").write_bytes(_handmade_idx(images))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_handmade_idx(images)))
    assert np.array_equal(D.read_idx(tmp_path / "a-idx3-ubyte"), images)
    assert np.array_equal(D.read_idx(tmp_path / "a-idx3-ubyte.gz", ndim=3), images)
    # write_idx produces the same bytes as the hand-made file, and round-trips other dtypes
    D.write_idx(tmp_path / "b-idx3-ubyte", images)
    assert (tmp_path / "b-idx3-ubyte").read_bytes() == _handmade_idx(images)
    f = rng.standard_normal((4, 2)).astype(np.float32)
    D.write_idx(tmp_path / "f.gz", f)
    assert np.array_equal(D.read_idx(tmp_path / "f.gz"), f)


@pytest.mark.parametrize("case, pattern", [
    ("bad_magic", "bad IDX magic number"),
    ("wrong_dims", "has 3 dimensions, expected 1"),
    ("short_data", "truncated IDX data"),
    ("short_header", "truncated IDX header"),
    ("trailing", "trailing bytes"),
    ("bad_gzip", "corrupt or truncated gzip"),
    ("not_gzip", "not gzip data"),
    ("tiny", "too short"),
])
def test_corrupt_idx_files_get_a_clear_error_naming_the_file(tmp_path, case, pattern):
    good = _handmade_idx(np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    name, payload, ndim = "x-idx3-ubyte", good, 3
    if case == "bad_magic":
        payload = b"\x12\x34" + good[2:]
    elif case == "wrong_dims":
        name, ndim = "y-idx1-ubyte", 1
    elif case == "short_data":
        payload = good[:-3]
    elif case == "short_header":
        payload = good[:10]
    elif case == "trailing":
        payload = good + b"\x00\x00"
    elif case == "bad_gzip":
        name, payload = "x-idx3-ubyte.gz", gzip.compress(good)[:-12]
    elif case == "not_gzip":
        name = "x-idx3-ubyte.gz"
    elif case == "tiny":
        payload = b"\x00\x00"
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(D.DataError, match=pattern) as info:
        D.read_idx(path, ndim=ndim)
    assert str(path) in str(info.value)
    assert isinstance(info.value, MemsimError)


def _fake_release(directory: Path, n_train=20, n_test=10, gz=True, size=28, seed=0) -> dict[str, bytes]:
    """A tiny MNIST-like release (wrong content for the checksums, right structure)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    contents = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labs = (np.arange(n) % 10).astype(np.uint8)
        for part, arr in (("images", imgs), ("labels", labs)):
            stem = D.IDX_FILES[(split, part)]
            raw = _handmade_idx(arr)
            contents[stem] = raw
            (directory / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return contents


def test_data_dir_is_searched_first_and_content_is_scaled(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "env"
    c1 = _fake_release(first, seed=1)
    _fake_release(second / "mnist", seed=2, gz=False)
    monkeypatch.setenv("MEMSIM_DATA_DIR", str(second))
    ds = D.load_mnist("train", data_dir=first, verify=False, download=False)
    ref = np.frombuffer(c1["train-images-idx3-ubyte"], np.uint8, offset=16).reshape(20, 1, 28, 28)
    assert ds.images.shape == (20, 1, 28, 28) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images, torch.from_numpy(ref.astype(np.float32)) / 255.0)
    assert ds.labels.tolist() == [k % 10 for k in range(20)]
    # without data_dir, $MEMSIM_DATA_DIR/<name> (raw, not gzipped) is used
    ds2 = D.load_mnist("test", verify=False, download=False, flatten=True)
    assert ds2.images.shape == (10, 784)
    # the real checksums reject the fake content, naming the file
    with pytest.raises(D.DataError, match="differs from the official mnist release"):
        D.load_mnist("train", data_dir=first, download=False)


def test_images_and_labels_that_do_not_belong_together(tmp_path):
    _fake_release(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_handmade_idx(np.zeros(7, np.uint8))))
    with pytest.raises(D.DataError, match="20 images but .* 7 labels"):
        D.load_mnist("train", data_dir=tmp_path, verify=False, download=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_handmade_idx(np.full(20, 12, np.uint8))))
    with pytest.raises(D.DataError, match="label 12 out of range"):
        D.load_mnist("train", data_dir=tmp_path, verify=False, download=False)
    _fake_release(tmp_path / "small", size=8)
    with pytest.raises(D.DataError, match="8x8, expected 28x28"):
        D.load_mnist("train", data_dir=tmp_path / "small", verify=False, download=False)


def test_missing_files_error_says_which_files_go_where(tmp_path):
    with pytest.raises(D.DataError) as info:
        D.load_fashion_mnist("train", data_dir=tmp_path / "mine", download=False)
    msg = str(info.value)
    for needle in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", str(tmp_path / "mine"),
                   "does not exist", "--data-dir", "dataset-fashion-mnist", "downloads disabled"):
        assert needle in msg, needle


def test_offline_download_fails_fast_into_the_final_error(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(D.DataError) as info:
        D.find_idx_files("mnist", tmp_path, mirrors=["http://127.0.0.1:9/"], timeout=2.0)
    assert time.perf_counter() - t0 < 5.0
    msg = str(info.value)
    assert "Download failed" in msg and "127.0.0.1:9/train-images-idx3-ubyte.gz" in msg
    assert "missing IDX file(s)" in msg


def test_download_verifies_checksum_and_caches(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    contents = _fake_release(mirror)
    good = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in contents.items()}
    monkeypatch.setitem(D.CHECKSUMS, "mnist", good)
    files = D.find_idx_files("mnist", tmp_path / "empty", mirrors=[mirror.as_uri() + "/"])
    cache = D.cache_dir("mnist")
    assert all(p.parent == cache for p in files.values()) and len(files) == 4
    for (split, part), p in files.items():
        assert hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() == good[D.IDX_FILES[(split, part)]]
    # the cache is found on the next call without a download (mirror gone)
    assert D.find_idx_files("mnist", download=False) == files
    # a download whose content does not match the checksum is rejected and not stored
    bad = dict(good, **{"t10k-images-idx3-ubyte": "0" * 64})
    monkeypatch.setitem(D.CHECKSUMS, "mnist", bad)
    files[("test", "images")].unlink()
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.find_idx_files("mnist", mirrors=[mirror.as_uri() + "/"])
    assert not files[("test", "images")].exists()


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist "
                    "(Debian package dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_location(monkeypatch):
    monkeypatch.setattr(D, "KNOWN_LOCATIONS", {"fashion_mnist": (str(FASHION_DIR),), "mnist": ()})
    train = D.load_fashion_mnist("train", download=False)  # verify=True: official SHA-256 of the content
    test = D.load_dataset("fashion_mnist", "test", flatten=True, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 784)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    assert int(train.labels.min()) == 0 and int(train.labels.max()) == 9
    assert train.labels.bincount().tolist() == [6000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------------- encodings

def test_direct_encoding_is_constant_current_proportional_to_intensity():
    x = torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.75, 0.1]], dtype=torch.float64, requires_grad=True)
    out = D.encode("direct", x, 7, scale=2e-6)
    assert out.shape == (7, 2, 3) and out.dtype == torch.float64
    for t in range(7):
        assert torch.equal(out[t], x.detach() * 2e-6)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 7 * 2e-6))


def test_rate_encoding_matches_bernoulli_statistics_and_is_seeded():
    T, B = 200, 50
    probs = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    x = probs.expand(B, -1).contiguous()
    spikes = D.encode("rate", x, T, seed=123, scale=1.0)
    assert spikes.shape == (T, B, 6)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    n = T * B
    for j, p in enumerate(probs.tolist()):
        k = int(spikes[:, :, j].sum())
        if p in (0.0, 1.0):
            assert k == round(p * n)
        else:
            assert stats.binomtest(k, n, p).pvalue > 1e-3, (p, k / n)
            # per time step as well: each step's count across the batch is Binomial(B, p)
            per_step = spikes[:, :, j].sum(1)
            assert abs(float(per_step.mean()) - B * p) < 4 * math.sqrt(B * p * (1 - p) / T)
    # gain scales the probability; amplitude scale sets the spike current
    half = D.encode("rate", torch.full((B, 1), 0.8), T, seed=5, gain=0.5, scale=3e-6)
    assert set(half.unique().tolist()) <= {0.0, float(np.float32(3e-6))}
    k = int((half > 0).sum())
    assert stats.binomtest(k, n, 0.4).pvalue > 1e-3
    # reproducible: same seed, same spikes; explicit generator equivalent to the seed
    assert torch.equal(D.encode("rate", x, T, seed=123), spikes)
    assert torch.equal(D.encode("rate", x, T, generator=torch.Generator().manual_seed(123)), spikes)
    assert not torch.equal(D.encode("rate", x, T, seed=124), spikes)
    with pytest.raises(ParameterError, match="seed"):
        D.encode("rate", x, T)


def test_rate_encoder_state_is_restorable():
    enc = D.make_encoder("rate", 10, seed=7)
    x = torch.full((4, 3), 0.5)
    enc(x)
    state = enc.state_dict()
    a = enc(x)
    enc.load_state_dict(state)
    assert torch.equal(enc(x), a)


def test_latency_linear_closed_form_and_monotone():
    T = 11
    x = torch.tensor([[1.0, 0.5, 0.9, 0.0, 0.3, 0.05]])
    out = D.encode("latency", x, T, scale=1.0)
    assert out.shape == (T, 1, 6)
    expected = {0: 0, 1: 5, 2: 1, 4: 7, 5: 10}  # round((1 - x) * (T - 1)); x = 0 never fires
    for j in range(6):
        times = torch.nonzero(out[:, 0, j]).flatten().tolist()
        assert times == ([expected[j]] if j in expected else [])
    # brighter inputs never fire later (monotone), each firing input exactly once
    xs = torch.rand(1, 500, generator=torch.Generator().manual_seed(0)) * 0.999 + 0.001
    steps = D.latency_steps(xs, 25)
    order = torch.argsort(xs[0])
    assert torch.all(torch.diff(steps[0, order]) <= 0)
    spikes = D.encode("latency", xs, 25)
    assert torch.equal(spikes.sum(0), torch.ones_like(xs))
    # threshold silences the dim inputs
    thr = D.encode("latency", x, T, threshold=0.4)
    assert thr[:, 0, [3, 4, 5]].sum() == 0 and thr[:, 0, [0, 1, 2]].sum() == 3


def test_latency_log_closed_form():
    T, tau, theta = 30, 10.0, 0.5
    x = torch.tensor([[1.0, 0.75, 0.55, 0.51, 0.4]], dtype=torch.float64)
    steps = D.latency_steps(x, T, method="log", threshold=theta, tau=tau)
    for j, xi in enumerate(x[0].tolist()):
        t = round(tau * math.log(xi / (xi - theta))) if xi > theta else math.inf
        expect = t if t < T else math.inf  # later than the window: no spike
        assert steps[0, j].item() == expect
    assert steps[0, 0].item() == 7 and math.isinf(steps[0, 3].item())  # 10 ln 2 = 6.93; 10 ln 51 = 39.3 > T
    with pytest.raises(ParameterError, match="threshold"):
        D.latency_steps(x, T, method="log", threshold=0.0)


def test_encoding_bad_input():
    x = torch.rand(2, 3)
    with pytest.raises(ParameterError, match="did you mean 'rate'"):
        D.encode("rates", x, 5, seed=0)
    with pytest.raises(ParameterError, match="encoding"):
        D.make_encoder("temporal", 5)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ParameterError, match="time_steps"):
            D.encode("direct", x, steps)
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        D.encode("direct", x * 2, 5)
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        D.encode("direct", torch.tensor([[float("nan")]]), 5)
    with pytest.raises(ParameterError, match="scale"):
        D.encode("direct", x, 5, scale=0.0)
    with pytest.raises(ParameterError, match="gain"):
        D.encode("rate", x, 5, seed=0, gain=1.5)
    with pytest.raises(ParameterError, match="did you mean 'linear'"):
        D.encode("latency", x, 5, method="linaer")
    with pytest.raises(ParameterError, match="did you mean 'scale'"):
        D.make_encoder("direct", 5, scal=1.0)
