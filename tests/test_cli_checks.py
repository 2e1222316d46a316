"""Every command-line number and path is checked before work starts; runs resume however their path is
spelled; bundled data and configs are found from any folder; a user's own IDX files train from the CLI."""
import argparse
import csv
import re
import shutil
import warnings

import numpy as np
import pytest
import torch

from memsim import DeviceArray, Sine, load_card
from memsim.training.checkpoint import read_checkpoint
from memsim.cli import build_parser, main
from memsim.training.config import load_config
from memsim.training.data import DataError, IDX_FILES, write_idx
from memsim.devices.array import VoltageRangeWarning
from memsim.errors import ParameterError, StimulusError
from memsim.resources import bundled_configs, data_dir, resolve_config
from memsim.training.loop import load_datasets

SMALL = ["--set", "network.layers=[64,16,10]", "--set", "network.time_steps=5", "--set", "training.batch_size=256",
         "--set", "output.plot=false", "--no-progress"]


def _exit(argv, capsys):
    """argparse's exit code and stderr (a bad option value stops argparse with 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


# -- numbers and paths on the command line ------------------------------------------------------------------

@pytest.mark.parametrize("argv, allowed", [
    (["evaluate", "ck.pt", "--substeps", "0"], "integer >= 1"),
    (["evaluate", "ck.pt", "--substeps", "-2"], "integer >= 1"),
    (["evaluate", "ck.pt", "--limit", "-5"], "integer >= 1"),
    (["evaluate", "ck.pt", "--seeds", "0"], "integer >= 1"),
    (["evaluate", "ck.pt", "--limit", "ten"], "not an integer"),
    (["export-spice", "ck.pt", "--check", "-1"], "integer >= 0"),
    (["export-spice", "ck.pt", "--processes", "0"], "integer >= 1"),
    (["export-spice", "ck.pt", "--sample", "-3"], "integer >= 0"),
    (["train", "--epochs", "0"], "integer >= 1"),
    (["verify", "--kind", "typo"], "invalid choice: 'typo'"),
    (["device", "iv", "hp_tio2_joglekar", "--plot", "x.txt"], "not a figure file"),
    (["neuron", "mif_neuron", "--plot", "wave.dat"], "not a figure file"),
])
def test_bad_numbers_and_paths_stop_argparse_naming_the_range(argv, allowed, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _exit(argv, capsys)
    assert code == 2 and allowed in err, err
    assert not list(tmp_path.iterdir())  # nothing simulated, nothing written


def test_verify_with_no_matching_model_is_an_error(capsys):
    assert main(["verify", "--kind", "neuron", "--model", "hp_tio2_joglekar", "--quiet"]) == 2
    assert "no checks match" in capsys.readouterr().err


def test_a_directory_given_as_checkpoint_is_named_as_such(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch_0004.pt").write_bytes(b"")
    for given in (run, run / "checkpoints"):
        assert main(["evaluate", str(given)]) == 2
        err = capsys.readouterr().err
        assert "is a directory" in err and "epoch_0004.pt" in err and "does not exist" not in err


CHECKED_COMMANDS = ("verify", "device", "neuron", "train", "evaluate", "export-spice", "configs")


def test_every_argument_has_help_text():
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name in CHECKED_COMMANDS:
                    walk(sub, ["memsim", name])
    assert not missing, missing


def test_version(capsys):
    import memsim
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"memsim {memsim.__version__}"


# -- Python-level checks ---------------------------------------------------------------------------------------

def test_mif_neuron_int64_input_does_not_suggest_an_int64_layer():
    from memsim.nn import MIFNeuron
    with pytest.raises(StimulusError) as info:
        MIFNeuron("mif_neuron")(torch.ones(3, 2, 4, dtype=torch.int64))
    msg = str(info.value)
    assert "x.to(torch.float32)" in msg and "dtype=torch.int64" not in msg


def test_device_array_checks_dt_relations_and_voltage_range():
    card = load_card("hp_tio2_joglekar")
    devices = DeviceArray.from_card(card, (3,), dtype=torch.float64)
    for dt in (0.0, -1e-3, float("nan")):
        with pytest.raises(ParameterError, match="dt"):
            devices.simulate(Sine(1.0, 1.0, cycles=1), dt=dt, n_steps=10)
    r_off = card.parameters["R_off"]
    with pytest.raises(ParameterError, match=r"R_on\[1\] = 20000.0 .*R_on < R_off"):
        DeviceArray.from_card(card, (3,), R_on=torch.tensor([100.0, 2e4, 100.0]))
    assert r_off == 16000.0
    lo, hi = card.voltage_range
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        devices.simulate(Sine(amplitude=1.0, frequency=1.0, cycles=1), dt=1e-3, n_steps=300)   # inside: quiet
        assert not [w for w in seen if issubclass(w.category, VoltageRangeWarning)]
        for _ in range(2):
            devices.simulate(Sine(amplitude=1.5 * hi, frequency=1.0, cycles=1), dt=1e-3, n_steps=300)
    ranged = [w for w in seen if issubclass(w.category, VoltageRangeWarning)]
    assert len(ranged) == 1 and f"[{lo:g}, {hi:g}] V" in str(ranged[0].message)


# -- the bundled library and configs ------------------------------------------------------------------------------

def test_empty_library_is_an_error(tmp_path, monkeypatch, capsys):
    import memsim.devices.cards as library
    monkeypatch.setattr(library, "DEVICES_DIR", tmp_path / "empty")
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(tmp_path / "nothing"))
    assert main(["device", "list"]) == 2
    err = capsys.readouterr().err
    assert "no device or neuron cards found" in err and "MEMSIM_DEVICE_PATH" in err


def test_user_device_folder_is_searched_first(tmp_path, monkeypatch, capsys):
    text = (data_dir("devices") / "hp_tio2_joglekar.toml").read_text().replace("p = 2.0", "p = 3.0")
    (tmp_path / "hp_tio2_joglekar.toml").write_text(text)
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(tmp_path))
    assert load_card("hp_tio2_joglekar").parameters["p"] == 3.0
    assert load_card("vteam_default").path.parent == data_dir("devices")


def test_bundled_configs_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    configs = bundled_configs()
    assert {"digits_quickstart", "fashion_ideal", "fashion_hardware_aware"} <= set(configs)
    for spelling in ("digits_quickstart", "digits_quickstart.toml", "configs/digits_quickstart.toml"):
        assert resolve_config(spelling) == configs["digits_quickstart"]
    assert load_config("digits_quickstart").network.layers == (64, 128, 10)
    assert main(["configs"]) == 0 and "fashion_ideal" in capsys.readouterr().out
    assert main(["train", "digits_quickstrat", "--print-config"]) == 2
    assert "Did you mean 'digits_quickstart'?" in capsys.readouterr().err


# -- errors name the flag the user typed, not a file that does not hold the mistake ---------------------------------

def test_misspelt_set_key_names_the_override_not_the_bundled_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "digits_quickstart", "--set", "training.epoch=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memsim: error: --set training.epoch=1 (an override of ") and "digits_quickstart" in err
    assert "unknown key 'training.epoch'. Did you mean 'training.epochs'?" in err
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained digits MSNN checkpoint: these checks stop before any network or data is loaded."""
    from memsim.training.checkpoint import save_checkpoint
    from memsim.training.loop import build_network
    cfg = load_config(None, ["network.layers=[64, 8, 10]", "network.time_steps=2"])
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "epoch_0000.pt", model=build_network(cfg), epoch=0,
                           config=cfg)


def test_evaluate_unknown_preset_names_the_flag(tiny_ckpt, capsys):
    assert main(["evaluate", str(tiny_ckpt), "--preset", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--preset = 'nosuch' is invalid" in err and "hardware.eval_preset" not in err
    assert "hfox_1t1r_64" in err and "memsim crossbar list" in err
    assert main(["evaluate", str(tiny_ckpt), "--preset", "hfox_1t1r_6"]) == 2
    assert "did you mean 'hfox_1t1r_64'?" in capsys.readouterr().err


def test_evaluate_irdrop_on_ideal_wires_is_refused(tiny_ckpt, tmp_path, capsys):
    """irdrop on a preset whose wires are ideal (all wire resistances 0, Wires.ideal) would silently be the noisy
    product: an error naming the preset, its wire resistance and the fix."""
    text = (data_dir("crossbar") / "hfox_1t1r_64.toml").read_text()
    for key in ("r_wordline", "r_bitline", "r_source"):
        text = re.sub(rf"{key} = [0-9.]+", f"{key} = 0.0", text)
    preset = tmp_path / "flat.toml"
    preset.write_text(text.replace('name = "hfox_1t1r_64"', 'name = "flat_wires"'))
    assert main(["evaluate", str(tiny_ckpt), "--preset", str(preset), "--mode", "irdrop"]) == 2
    err = capsys.readouterr().err
    assert "--mode = 'irdrop' is invalid" in err and "'flat_wires'" in err and "r_wordline = 0" in err
    assert "--mode noisy" in err and "memsim crossbar list" in err
    assert main(["evaluate", str(tiny_ckpt), "--preset", "ideal", "--mode", "irdrop"]) == 2
    assert "'ideal' preset" in capsys.readouterr().err


# -- resume, however the run's path is spelled ----------------------------------------------------------------------

def _epochs(run):
    with open(run / "metrics.csv") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def test_resume_by_any_spelling_and_after_a_move(tmp_path, monkeypatch, capsys):
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir(), other.mkdir()
    monkeypatch.chdir(home)
    assert main(["train", *SMALL, "--epochs", "1", "-o", "runs/r"]) == 0
    run = home / "runs" / "r"
    capsys.readouterr()
    # the run's own config, from another folder: that run continues, nothing is created here
    monkeypatch.chdir(other)
    assert main(["train", str(run / "config.toml"), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "resumed" in capsys.readouterr().out and _epochs(run) == [1, 2]
    assert not list(other.iterdir())
    # the same run spelled as an absolute --output, with the original relative config
    assert main(["train", *SMALL, "-o", str(run), "--resume", "--epochs", "3"]) == 0
    assert _epochs(run) == [1, 2, 3]
    # without --resume an existing run is refused, never overwritten
    assert main(["train", str(run / "config.toml"), "--epochs", "4", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # a copied run folder continues where it is, with a note
    moved = other / "moved"
    shutil.copytree(run, moved)
    capsys.readouterr()
    assert main(["train", "moved/config.toml", "--resume", "--epochs", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "moved or copied" in out and str(run.resolve()) in out
    assert _epochs(moved) == [1, 2, 3, 4] and _epochs(run) == [1, 2, 3]
    assert read_checkpoint(moved / "checkpoints" / "epoch_0004.pt").epoch == 4
    # --resume where there is no run: an error naming the folder, and no new folder
    assert main(["train", *SMALL, "-o", "runs/none", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and str(other) in err
    assert not (other / "runs").exists()


# -- a user's own IDX files -----------------------------------------------------------------------------------------

def _write_idx_set(folder, n_train, n_test, size, classes, seed=0):
    """Images whose bright band's position is the class (learnable), as uint8 IDX files."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
        band = size // classes
        for k, c in enumerate(labels):
            images[k, c * band:(c + 1) * band, :] = 230
        write_idx(folder / f"{IDX_FILES[(split, 'images')]}.gz", images)
        write_idx(folder / f"{IDX_FILES[(split, 'labels')]}", labels)
        out[split] = (images, labels)
    return out


def test_custom_idx_dataset_trains_from_the_cli(tmp_path, capsys):
    data = _write_idx_set(tmp_path, 300, 90, 9, 3)
    cfg = load_config(None, ["data.dataset=custom_idx", f"data.data_dir='{tmp_path}'", "data.num_classes=3",
                             "network.layers=[81, 12, 3]"])
    train_set, test_set = load_datasets(cfg)
    images, labels = data["test"]
    assert torch.equal(test_set.labels, torch.from_numpy(labels.astype(np.int64)))
    assert torch.allclose(test_set.images, torch.from_numpy(images.reshape(90, -1) / 255.0).float())
    assert main(["train", "--set", "data.dataset=custom_idx", "--data-dir", str(tmp_path), "--set",
                 "data.num_classes=3", "--set", "network.layers=[81,12,3]", "--set", "network.time_steps=5",
                 "--set", "training.batch_size=32", "--set", "output.plot=false", "--epochs", "2", "--no-progress",
                 "-o", str(tmp_path / "run")]) == 0
    with open(tmp_path / "run" / "metrics.csv") as fh:
        acc = float(list(csv.DictReader(fh))[-1]["test_accuracy"])
    assert acc > 0.6  # 3 classes: chance is 1/3
    with pytest.raises(DataError, match="label 2 out of range"):
        load_datasets(cfg.with_overrides(["data.num_classes=2", "network.layers=[81, 12, 2]"]))


def test_own_files_in_mnist_format_with_verify_false(tmp_path):
    data = _write_idx_set(tmp_path, 50, 20, 28, 10)
    cfg = load_config(None, ["data.dataset=mnist", f"data.data_dir='{tmp_path}'", "data.download=false"])
    with pytest.raises(DataError, match="differs from the official mnist release"):
        load_datasets(cfg)
    train_set, _ = load_datasets(cfg.with_overrides(["data.verify=false"]))
    assert torch.equal(train_set.labels, torch.from_numpy(data["train"][1].astype(np.int64)))


def test_verify_typo_names_the_closest_model(capsys):
    assert main(["verify", "--model", "hp_tio2_joglekr", "--quiet"]) == 2
    assert "did you mean ['hp_tio2_joglekar']" in capsys.readouterr().err


def test_verify_table_states_units_per_kind():
    from memsim.verify import CheckResult, format_table
    rows = [CheckResult("device", "a", "sine", "max|i - i_spice| / max|i_spice| (RK4)", 5e-6, 1e-3),
            CheckResult("neuron", "b", "step", "max|v - v_spice| / spike amplitude", 3e-5, 1e-2,
                        "spike shift=2.000 dt (tol 1)", also_ok=False)]
    text = format_table(rows)
    assert "5.00e-06" in text and "3.00e-05" in text            # both kinds as fractions, not per cent
    assert "1 passed, 1 failed" in text                          # the spike-time criterion fails the neuron row
    assert "error and tol are fractions" in text
    assert "device   error = max|i - i_spice| / max|i_spice|" in text and "neuron   error = max|v - v_spice|" in text


def test_output_into_a_closed_pipe_ends_quietly():
    """`memsim device list | head -1`: the reader leaves early; no BrokenPipeError traceback, exit 0 (the reader
    here closes the pipe before memsim writes, so every write meets a closed pipe)."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "memsim", "device", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err
