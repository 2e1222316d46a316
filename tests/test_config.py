"""Training-run TOML configuration: schema, validation errors, overrides (memsim.training.config)."""
from __future__ import annotations

import argparse
import tomllib

import pytest

from memsim.training import config as C
from memsim.errors import ConfigError, MemsimError

EXAMPLE = """
[data]
dataset = "fashion_mnist"
data_dir = "/data/fmnist"

[network]
layers = [784, 256, 10]
neuron = "mif_neuron"
crossbar = "realistic_64"
readout = "spike_count"
time_steps = 30
dt = 5e-5

[encoding]
name = "rate"
scale = 1e-6
gain = 0.5

[training]
epochs = 20
batch_size = 128
learning_rate = 2e-3
optimizer = "adamw"
seed = 42
grad_clip = 0.5

[hardware]
aware = true
eval_seeds = 3

[output]
dir = "runs/fashion"
"""


def _write(tmp_path, text: str):
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_defaults_are_the_digits_quickstart_and_round_trip_through_toml():
    cfg = C.load_config()
    assert cfg == C.default_config()
    assert cfg.data.dataset == "digits" and cfg.network.layers == (64, 128, 10)
    text = cfg.to_toml()
    assert C.parse_config(tomllib.loads(text)) == cfg
    # every schema key appears in the written file
    written = tomllib.loads(text)
    assert {f"{s}.{k}" for s, t in written.items() for k in t} == set(C.keys())


def test_example_file_values_types_and_fingerprint(tmp_path):
    cfg = C.load_config(_write(tmp_path, EXAMPLE))
    assert cfg.network.layers == (784, 256, 10) and cfg.network.dt == 5e-5
    assert cfg.encoding.name == "rate" and cfg.encoding.gain == 0.5
    assert cfg.training.optimizer == "adamw" and cfg.training.seed == 42 and cfg.hardware.aware is True
    assert isinstance(cfg.training.learning_rate, float) and isinstance(cfg.training.epochs, int)
    assert cfg.training.weight_decay == 0.0 and cfg.output.keep_checkpoints == 2  # defaults fill the rest
    again = C.load_config(_write(tmp_path, EXAMPLE))
    assert again.fingerprint() == cfg.fingerprint()
    changed = cfg.with_overrides(["training.seed=43"])
    assert changed.fingerprint() != cfg.fingerprint()
    assert cfg.diff(changed) == ["training.seed: 42 -> 43"]


def test_default_layers_follow_the_dataset():
    assert C.load_config(overrides=["data.dataset=mnist"]).network.layers == (784, 128, 10)
    assert C.parse_config({"data": {"dataset": "fashion_mnist"}}).network.layers == (784, 128, 10)


@pytest.mark.parametrize("data, key, needle", [
    ({"training": {"epoch": 3}}, "training.epoch", "Did you mean 'training.epochs'?"),
    ({"training": {"learning_rte": 0.1}}, "training.learning_rte", "Did you mean 'training.learning_rate'?"),
    ({"network": {"time_step": 3}}, "network.time_step", "Did you mean 'network.time_steps'?"),
    ({"trainig": {"epochs": 3}}, "trainig", "Did you mean 'training'?"),
    ({"network": {"epochs": 3}}, "network.epochs", "'epochs' belongs in [training]"),
    ({"epochs": 3}, "epochs", "it belongs in [training]"),
])
def test_misspelt_or_misplaced_keys_name_the_closest_valid_key(data, key, needle):
    with pytest.raises(ConfigError) as info:
        C.parse_config(data, source="run.toml")
    assert info.value.key == key
    assert needle in str(info.value) and "run.toml" in str(info.value)
    assert isinstance(info.value, MemsimError)


@pytest.mark.parametrize("section, key, value, allowed", [
    ("network", "time_steps", 0, "an integer >= 1"),
    ("network", "time_steps", -5, "an integer >= 1"),
    ("network", "time_steps", 2.5, "an integer >= 1"),
    ("network", "dt", 0.0, "a finite number > 0"),
    ("network", "dt", float("nan"), "a finite number > 0"),
    ("network", "readout", "spikes", "one of ['voltage', 'spike_count']"),
    ("network", "layers", [64], "a list of at least 2 integers >= 1"),
    ("network", "layers", [64, 0, 10], "a list of at least 2 integers >= 1"),
    ("network", "neuron", 3, "a string"),
    ("encoding", "name", "poisson", "one of ['direct', 'rate', 'latency']"),
    ("encoding", "gain", 1.5, "a finite number in (0, 1]"),
    ("encoding", "scale", -1e-6, "a finite number > 0"),
    ("training", "epochs", "ten", "an integer >= 1"),
    ("training", "epochs", True, "an integer >= 1"),
    ("training", "learning_rate", 0, "a finite number > 0"),
    ("training", "grad_clip", -1.0, "a finite number >= 0"),
    ("training", "optimizer", "adma", "one of ['adam', 'adamw', 'sgd']"),
    ("training", "momentum", 1.0, "a finite number in [0, 1)"),
    ("data", "dataset", "imagenet", f"one of {list(C.DATASETS)}"),  # the names memsim.training.data can load
    ("data", "test_fraction", 1.0, "a finite number in (0, 1)"),
    ("hardware", "aware", "yes", "true or false"),
])
def test_bad_values_name_key_value_and_allowed_range(section, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        C.parse_config({section: {key: value}})
    err = info.value
    assert err.key == f"{section}.{key}" and err.allowed == allowed
    msg = str(err)
    assert f"{section}.{key} = {value!r}" in msg and allowed in msg


def test_choice_errors_suggest_the_intended_value():
    for data, hint in (({"encoding": {"name": "poisson"}}, "'rate'"), ({"network": {"readout": "spikes"}}, "'spike_count'"),
                       ({"training": {"optimizer": "adma"}}, "'adam'"), ({"data": {"dataset": "fashion-mnist"}},
                                                                          "'fashion_mnist'")):
        with pytest.raises(ConfigError, match=f"Did you mean {hint}"):
            C.parse_config(data)


@pytest.mark.parametrize("dataset, layers, needle", [
    ("digits", [784, 256, 10], "has 64 inputs (8x8 pixels) but the first layer has 784"),
    ("mnist", [64, 32, 10], "has 784 inputs (28x28 pixels) but the first layer has 64"),
    ("fashion_mnist", [784, 256, 9], "has 10 classes but the last layer has 9"),
])
def test_layer_sizes_must_match_the_data(dataset, layers, needle):
    with pytest.raises(ConfigError) as info:
        C.parse_config({"data": {"dataset": dataset}, "network": {"layers": layers}})
    assert needle in str(info.value) and info.value.key == "network.layers"
    assert "Fix:" in str(info.value)


def test_log_latency_needs_a_threshold():
    with pytest.raises(ConfigError, match="encoding.threshold"):
        C.parse_config({"encoding": {"name": "latency", "method": "log"}})
    cfg = C.parse_config({"encoding": {"name": "latency", "method": "log", "threshold": 0.2}})
    assert cfg.encoding.threshold == 0.2


def test_overrides_from_flags(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    cfg = C.load_config(path, ["training.epochs=3", "training.learning_rate=1e-4", "hardware.aware=false",
                               "network.layers=[784, 64, 10]", "data.data_dir=/tmp/x y", "output.dir='runs/a'",
                               "network.readout=voltage"])
    assert cfg.training.epochs == 3 and cfg.training.learning_rate == 1e-4 and cfg.hardware.aware is False
    assert cfg.network.layers == (784, 64, 10) and cfg.data.data_dir == "/tmp/x y" and cfg.output.dir == "runs/a"
    assert cfg.network.readout == "voltage" and cfg.training.seed == 42  # untouched keys keep the file's value
    # argparse-style mapping: None means "flag not given"
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", dest="training.epochs", type=int)
    parser.add_argument("--batch-size", dest="training.batch_size", type=int)
    ns = parser.parse_args(["--epochs", "7"])
    cfg2 = C.load_config(path, vars(ns))
    assert cfg2.training.epochs == 7 and cfg2.training.batch_size == 128
    # overridden values are validated like file values
    with pytest.raises(ConfigError, match="network.time_steps = 0"):
        C.load_config(path, ["network.time_steps=0"])
    with pytest.raises(ConfigError, match="Did you mean 'training.epochs'"):
        C.load_config(path, ["training.epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean 'training.batch_size'"):
        C.load_config(path, ["batch_size=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        C.load_config(path, ["training.epochs"])


def test_override_errors_name_the_override_not_the_file(tmp_path):
    """A mistake in a --set override is not in the config file: the error names the override text."""
    path = _write(tmp_path, EXAMPLE)
    with pytest.raises(ConfigError) as info:
        C.load_config(path, ["training.epoch=3"])
    assert str(info.value).startswith(f"--set training.epoch=3 (an override of {path}): unknown key")
    with pytest.raises(ConfigError) as info:
        C.load_config(None, ["network.time_steps=0"])
    assert str(info.value).startswith("--set network.time_steps=0 (an override of the built-in defaults): "
                                      "network.time_steps = 0 is invalid")
    with pytest.raises(ConfigError, match=r"^override training.epochs = 0 \(an override of"):
        C.load_config(path, {"training.epochs": 0})
    # a bad value the file holds still names the file; a later override of the same key is named when it is bad
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepochs = 0\n")
    with pytest.raises(ConfigError) as info:
        C.load_config(bad, ["training.seed=1"])
    assert str(info.value).startswith(f"{bad}: training.epochs = 0")
    cfg = C.load_config(path, ["network.crossbar=hfox_1t1r_6"])
    with pytest.raises(ConfigError, match=r"^--set network.crossbar=hfox_1t1r_6 .*Did you mean 'hfox_1t1r_64'"):
        C.check_references(cfg.with_overrides(["network.neuron=mif_neuron"]))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_config(tmp_path / "missing.toml")
    bad = _write(tmp_path, "[training]\nepochs = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        C.load_config(bad)
    assert str(bad) in str(info.value)


def test_check_references_finds_cards_and_presets(tmp_path, monkeypatch):
    cards, presets = tmp_path / "cards", tmp_path / "presets"
    cards.mkdir()
    presets.mkdir()
    (cards / "my_mif.toml").write_text('name = "my_mif"\n')
    (presets / "tile_64.toml").write_text('name = "tile_64"\n')
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(cards))
    monkeypatch.setenv("MEMSIM_CROSSBAR_PATH", str(presets))
    C.check_references(C.parse_config({"network": {"neuron": "my_mif", "crossbar": "tile_64"}}))
    with pytest.raises(ConfigError, match="Did you mean 'my_mif'") as info:
        C.check_references(C.parse_config({"network": {"neuron": "my_mfi", "crossbar": "tile_64"}}))
    assert info.value.key == "network.neuron"
    with pytest.raises(ConfigError, match="Did you mean 'tile_64'"):
        C.check_references(C.parse_config({"network": {"neuron": "my_mif", "crossbar": "tile64"}}))
    with pytest.raises(ConfigError, match="hardware.eval_preset"):
        C.check_references(C.parse_config({"network": {"neuron": "my_mif", "crossbar": "tile_64"},
                                           "hardware": {"eval_preset": "nonexistent_preset_xyz"}}))


def test_num_classes_of_a_built_in_dataset_is_not_silently_ignored():
    """data.num_classes belongs to custom_idx; on a built-in dataset it must agree with the data or be refused."""
    assert C.parse_config({"data": {"dataset": "fashion_mnist", "num_classes": 10},
                           "network": {"layers": [784, 64, 10]}}).data.num_classes == 10
    with pytest.raises(ConfigError) as info:
        C.parse_config({"data": {"dataset": "fashion_mnist", "num_classes": 5}, "network": {"layers": [784, 64, 10]}})
    assert info.value.key == "data.num_classes" and "custom_idx" in str(info.value) and "Fix:" in str(info.value)
