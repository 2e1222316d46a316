"""Every reader of a user file turns bad content into a one-line MemsimError naming the file, never a traceback
(issue 17): random bytes (fixed seeds, several sizes), a truncated copy of a valid file and an empty file, for
each loader; then the messages that used to leak numpy reprs, name every column or advise unsafe loading, and
``memsim device fit`` on a binary .csv and an empty .xlsx as a user runs it."""
from __future__ import annotations

import os
import pickle
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from memsim.cli import main
from memsim.crossbar.presets import load_preset, preset_path
from memsim.devices.cards import card_path, load_card
from memsim.errors import MemsimError
from memsim.fitting.data import DataError, read_measurement
from memsim.fitting.synthetic import write_csv
from memsim.interop.nir_graph import read_graph
from memsim.neurons.cards import load_neuron_card
from memsim.pulse.cards import load_pulse_card
from memsim.sweep.cost import cost_model_path, load_cost_model
from memsim.sweep.spec import load_spec
from memsim.sweep.study import find_study, load_study
from memsim.training.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from memsim.training.cifar import read_cifar_batch
from memsim.training.config import default_config, load_config
from memsim.training.data import read_idx, write_idx


def _iv_columns(n=40):
    t = np.linspace(0.0, 2e-5, n)
    v = np.sin(2 * np.pi * t / t[-1])
    return {"time": t, "voltage": v, "current": v / 1e4}


def _write_xlsx(path: Path, columns: dict) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(columns))
    for row in zip(*columns.values()):
        sheet.append([float(x) for x in row])
    book.save(path)
    return path


def _write_cifar(path: Path) -> Path:
    """A batch in the release's format: a protocol-2 pickle of a dict with bytes keys."""
    data = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"x", b"labels": [0, 1, 2, 3], b"data": data}, fh, protocol=2)
    return path


def _write_spec(path: Path, checkpoint: Path) -> Path:
    path.write_text(f'name = "fuzz"\n[base]\ncheckpoint = "{checkpoint}"\npreset = "hfox_1t1r_64"\nmode = "noisy"\n'
                    f'chips = 2\nlimit = 10\n[axes]\n"tile.size" = [32, 64]\n')
    return path


def _write_nir(path: Path) -> Path:
    nir = pytest.importorskip("nir")
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)))
    nir.write(str(path), graph)
    return path


#: name -> (file name a loader expects, how to make a valid one in a folder, the loader)
LOADERS = {
    "csv": ("m.csv", lambda d: write_csv(d / "m.csv", _iv_columns()), read_measurement),
    "xlsx": ("m.xlsx", lambda d: _write_xlsx(d / "m.xlsx", _iv_columns()), read_measurement),
    "idx": ("x-idx3-ubyte", lambda d: write_idx(d / "x-idx3-ubyte", np.zeros((3, 4, 4), np.uint8)), read_idx),
    "idx_gz": ("x-idx3-ubyte.gz", lambda d: write_idx(d / "x-idx3-ubyte.gz", np.ones((3, 4, 4), np.uint8)),
               read_idx),
    "cifar": ("data_batch_1", lambda d: _write_cifar(d / "data_batch_1"), read_cifar_batch),
    "card": ("c.toml", lambda d: shutil.copy(card_path("stanford_pku_hfox"), d / "c.toml"), load_card),
    "neuron_card": ("n.toml", lambda d: shutil.copy(card_path("mif_neuron"), d / "n.toml"), load_neuron_card),
    "preset": ("p.toml", lambda d: shutil.copy(preset_path("hfox_1t1r_64"), d / "p.toml"), load_preset),
    "config": ("cfg.toml", lambda d: (d / "cfg.toml").write_text(default_config().to_toml()), load_config),
    "sweep_spec": ("s.toml", lambda d: _write_spec(d / "s.toml", d / "model.pt"),
                   lambda p: load_spec(p, check_points=False)),
    "pulse_card": ("pc.toml", lambda d: shutil.copy(card_path("pulse_exp_saturation"), d / "pc.toml"),
                   load_pulse_card),
    "study": ("st.toml", lambda d: shutil.copy(find_study("digits_dse"), d / "st.toml"), load_study),
    "nir": ("g.nir", lambda d: _write_nir(d / "g.nir"), read_graph),
    "cost_model": ("cost.toml", lambda d: shutil.copy(cost_model_path("default"), d / "cost.toml"), load_cost_model),
    "checkpoint": ("e.pt", lambda d: save_checkpoint(d / "e.pt", model=torch.nn.Linear(3, 2), epoch=1,
                                                       config=default_config()), read_checkpoint),
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """One folder holding a valid file for every loader (and the checkpoint the sweep spec names)."""
    folder = tmp_path_factory.mktemp("valid")
    save_checkpoint(folder / "model.pt", model=torch.nn.Linear(3, 2), epoch=1, config=default_config())
    for name, (_, make, _) in LOADERS.items():
        if name not in ("xlsx", "nir"):  # need openpyxl / nir, made (or skipped) where they are used
            make(folder)
    return folder


def _valid_file(valid: Path, name: str) -> Path:
    filename, make, _ = LOADERS[name]
    if not (valid / filename).exists():
        make(valid)
    return valid / filename


def _truncated(data: bytes, name: str) -> bytes:
    """A copy cut short where no parser can mistake it for a complete file: text files inside a value (TOML just
    after a '=', CSV just after a ',' so the last row misses a cell), binary files at half their length."""
    cut = data[: len(data) // 2]
    if name.endswith(("card", "preset", "config", "spec", "model", "study")):
        return cut[: cut.rindex(b"=") + 1]
    if name == "csv":
        return cut[: cut.rindex(b",") + 1]
    return cut


CASES = ["random-0-16", "random-1-256", "random-2-4096", "truncated", "empty"]


def _random_bytes(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def _bad_content(case: str, valid: Path, name: str) -> bytes:
    if case == "empty":
        return b""
    if case == "truncated":
        return _truncated(_valid_file(valid, name).read_bytes(), name)
    _, seed, size = case.split("-")
    return _random_bytes(int(seed), int(size))


@pytest.mark.parametrize("name", LOADERS)
def test_the_valid_files_load(valid, name):
    """The files the bad ones are cut from are good: each case below fails because of what was done to it."""
    LOADERS[name][2](_valid_file(valid, name))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", LOADERS)
def test_bad_content_is_a_one_line_memsim_error_naming_the_file(valid, tmp_path, name, case):
    filename, _, load = LOADERS[name]
    path = tmp_path / filename
    path.write_bytes(_bad_content(case, valid, name))
    with pytest.raises(MemsimError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert path.stem in message, message


def test_idx_header_whose_size_wraps_around_int64(tmp_path):
    """65536**4 elements is 0 in int64: the header matched an empty payload and reshape raised a ValueError."""
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[65536] * 4))
    with pytest.raises(MemsimError, match="truncated IDX data"):  # memsim.training.data.DataError
        read_idx(path)


def test_cifar_batch_naming_a_callable_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(MemsimError, match="refusing to load"):
        read_cifar_batch(path)
    assert not marker.exists()


# ---------------------------------------------------------------- the messages of issue 17


def _csv_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_nan_and_text_cells_name_their_column_and_file_line(tmp_path):
    path = write_csv(tmp_path / "m.csv", _iv_columns())
    lines = _csv_lines(path)
    lines.insert(1, "# instrument: B1500")  # a comment and a blank line: file lines differ from data rows
    lines.insert(2, "")
    t, v, i = lines[6].split(",")
    lines[6] = f"{t},{v},nan"                # line 7 of the file
    t, v, i = lines[9].split(",")
    lines[9] = f"{t},0.3V,{i}"               # line 10
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_measurement(path)
    message = str(info.value)
    assert "line 7 column 'current': 'nan'" in message, message
    assert "line 10 column 'voltage': '0.3V'" in message, message
    assert "'time'" not in message and "\n" not in message, message


def test_bad_xlsx_cell_names_its_sheet_row_and_column(tmp_path):
    columns = _iv_columns()
    path = _write_xlsx(tmp_path / "m.xlsx", columns)
    import openpyxl
    book = openpyxl.load_workbook(path)
    book.active.cell(row=5, column=3, value="n/a")  # row 5 of the sheet as Excel shows it: the 4th data row
    book.save(path)
    with pytest.raises(DataError, match=r"sheet row 5 column 'current': 'n/a'"):
        read_measurement(path)


def test_time_going_backwards_prints_plain_numbers_and_the_line(tmp_path):
    columns = _iv_columns()
    columns["time"][[10, 11]] = columns["time"][[11, 10]]
    path = write_csv(tmp_path / "m.csv", columns)
    with pytest.raises(DataError) as info:
        read_measurement(path)
    message = str(info.value)
    assert "np.float64" not in message and "float64" not in message, message
    later, earlier = float(columns["time"][11]), float(columns["time"][10])  # data row 12 is line 13
    assert f"line(s) 13 (t = {later!r} s after {earlier!r} s)" in message, message


@pytest.mark.parametrize("kind", ["truncated", "unsafe", "empty"])
def test_unreadable_checkpoint_never_advises_unsafe_loading(tmp_path, kind):
    path = tmp_path / "epoch_0001.pt"
    if kind == "truncated":
        data = save_checkpoint(path, model=torch.nn.Linear(3, 2), epoch=1).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "unsafe":
        marker = tmp_path / "ran"

        class Evil:
            def __reduce__(self):
                return (os.makedirs, (str(marker),))

        torch.save({"format": "memsim-checkpoint", "x": Evil()}, path)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "weights_only" not in message and "add_safe_globals" not in message, message
    assert "RunDirectory" not in message and "memsim train RUN/config.toml --resume" in message, message
    assert "refused" in message and str(path) in message and "\n" not in message, message
    assert kind != "unsafe" or not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- the command line


BAD_DATA = {"binary.csv": _random_bytes(3, 2000), "empty.xlsx": b"",
            "text.xlsx": b"time,voltage,current\n"}


@pytest.mark.parametrize("name", BAD_DATA)
def test_device_fit_on_a_bad_file_is_one_line_and_exit_2(tmp_path, capsys, name):
    data = tmp_path / name
    data.write_bytes(BAD_DATA[name])
    out = tmp_path / "fitted.toml"
    assert main(["device", "fit", str(data), "--family", "vteam", "-o", str(out), "--no-spice", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memsim: error: ") and err.count("\n") == 1, err
    assert str(data) in err and "Traceback" not in err, err
    assert not out.exists()
