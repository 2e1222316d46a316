"""Training-run configuration: a TOML file, validated on load, with command-line overrides.

A config has the sections below; every key has a type, a default and an allowed range, so an empty file
is a valid config (the digits quickstart). Example::

    [data]
    dataset = "fashion_mnist"       # digits | mnist | fashion_mnist
    data_dir = ""                   # '' = search the known locations (see memsim.training.data)

    [network]
    layers = [784, 256, 10]         # first = inputs of the dataset, last = its classes
                                    # (default: [inputs, 128, classes] of the dataset)
    neuron = "mif_neuron"           # neuron card in devices/
    crossbar = "ideal"              # crossbar preset in crossbar/
    readout = "voltage"             # voltage | spike_count
    time_steps = 25
    dt = 4e-5                       # s
    g_unit = 2e-4                   # S per unit weight

    [encoding]
    name = "direct"                 # direct | rate | latency
    scale = 0.2                     # V on the first crossbar's rows

    [training]
    epochs = 20
    batch_size = 128
    learning_rate = 1e-2
    optimizer = "adam"              # adam | adamw | sgd
    seed = 0
    grad_clip = 1.0                 # max global gradient norm; 0 = off
    lr_schedule = "cosine"          # constant | cosine
    compile = true                  # torch.compile each neuron time step (faster after a one-off compilation)
    weight_clip = 3.0               # clip weights to +-3 std after every step (0 = off)

    [hardware]
    aware = false                   # inject the preset's non-idealities while training

    [output]
    dir = "runs/fashion"

Validation raises :class:`memsim.errors.ConfigError` naming the dotted key, the value, the allowed values
and, for a misspelt key or section, the closest valid one. Overrides such as ``training.epochs=3`` (from
``--set`` flags) are merged before validation (:func:`apply_overrides`). ``[network] layers`` is checked
against the dataset (64 inputs / 10 classes for digits, 784 / 10 for MNIST and Fashion-MNIST).

To add a key: add a field with ``metadata=_spec(...)`` to its section dataclass; loading, validation,
overrides, :meth:`Config.to_toml` and the error messages follow from the schema.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .data import CUSTOM_IDX, DATASETS, ENCODINGS, LATENCY_METHODS, dataset_info
from .network import DEFAULTS, READOUTS, conv_stages
from ..crossbar.mapping import STUCK_COMPENSATION
from ..crossbar.presets import Preset, load_preset
from ..devices.cards import search_path
from ..errors import CardError, ConfigError, ParameterError
from ..insitu import ALGORITHMS, POLARITIES, TRANSFERS, InSituSettings, load_pulse_response
from ..resources import data_dir, env_dirs, resolve_config
from ..schema import closest, is_finite_number, read_toml
from ..safetext import check_strings

__all__ = ["ConfigError", "Config", "DataConfig", "NetworkConfig", "EncodingConfig", "TrainingConfig", "HardwareConfig",
           "OutputConfig", "SECTIONS", "READOUTS", "OPTIMIZERS", "DEVICES", "load_config", "parse_config",
           "default_config", "apply_overrides", "parse_override", "override_origins", "check_references",
           "hardware_preset", "with_compensation", "insitu_settings", "keys"]

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")
NETWORK_KINDS = ("msnn", "ann")
ANN_ARCHS = ("mlp", "vgg", "vgg_dw")
UPDATES = ("float", "pulsed")
PULSE_ALGORITHMS = ALGORITHMS
PULSE_POLARITIES = tuple(POLARITIES)


@dataclass(frozen=True)
class _Spec:
    kind: str                      # "int" | "float" | "bool" | "str" | "choice" | "int_list" | "int_or_list"
    doc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    min_len: int = 0
    unit: str = ""                 # SI unit of a number ('' for counts, fractions, strings)

    def allowed(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a string"
        if self.kind == "int_list":
            return f"a list of at least {self.min_len} integers >= {int(self.lo or 1)}"
        if self.kind == "int_or_list":
            return f"an integer >= {int(self.lo or 0)} or a non-empty list of integers >= 1"
        noun = "an integer" if self.kind == "int" else "a finite number"
        if self.lo is not None and self.hi is not None:
            return (f"{noun} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                    f"{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{noun} {'>' if self.lo_open else '>='} {self.lo:g}"
        return noun


def _spec(kind: str, doc: str, **kw) -> dict:
    return {"spec": _Spec(kind, doc, **kw)}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(default="digits", metadata=_spec("choice", "dataset name", choices=DATASETS))
    data_dir: str = field(default="", metadata=_spec("str", "directory holding the IDX files ('' = search the "
                                                             "known locations, then download)"))
    test_fraction: float = field(default=0.2, metadata=_spec("float", "digits only: fraction held out for test",
                                                             lo=0.0, hi=1.0, lo_open=True, hi_open=True))
    download: bool = field(default=True, metadata=_spec("bool", "download missing MNIST/Fashion-MNIST files "
                                                                "when online"))
    verify: bool = field(default=True, metadata=_spec("bool", "check MNIST/Fashion-MNIST files against the "
                                                              "official release's SHA-256 (false: your own files "
                                                              "in that format, e.g. a subset)"))
    num_classes: int = field(default=0, metadata=_spec("int", "custom_idx only: number of classes (labels "
                                                              "0..num_classes-1; 0 for the other datasets)", lo=0))


@dataclass(frozen=True)
class NetworkConfig:
    # every default that MemristiveSNN has too comes from memsim.training.network.DEFAULTS (one source)
    layers: tuple[int, ...] = field(default=(64, 128, 10),
                                    metadata=_spec("int_list", "layer sizes, inputs first, classes last",
                                                   lo=1, min_len=2))
    neuron: str = field(default=DEFAULTS["neuron"], metadata=_spec("str", "neuron card name (devices/)"))
    crossbar: str = field(default=DEFAULTS["crossbar"], metadata=_spec("str", "crossbar preset name (crossbar/)"))
    readout: str = field(default=DEFAULTS["readout"], metadata=_spec("choice", "output readout", choices=READOUTS))
    time_steps: int = field(default=DEFAULTS["time_steps"],
                            metadata=_spec("int", "simulation time steps per sample", lo=1))
    dt: float = field(default=DEFAULTS["dt"], metadata=_spec("float", "time step in s", lo=0.0, lo_open=True, unit="s"))
    g_unit: float = field(default=DEFAULTS["g_unit"],
                          metadata=_spec("float", "conductance in S of a synaptic weight of 1 (signed: a differential "
                                                  "pair)", lo=0.0, lo_open=True, unit="S"))
    readout_gain: float = field(default=DEFAULTS["readout_gain"],
                                metadata=_spec("float", "logits per volt of output membrane voltage (loss only; "
                                                        "predictions do not depend on it)", lo=0.0, lo_open=True, unit="1/V"))
    substeps: int = field(default=DEFAULTS["substeps"],
                          metadata=_spec("int", "neuron integration sub-steps per time step", lo=1))
    conv_channels: int | tuple[int, ...] = field(
        default=0, metadata=_spec("int_or_list", "convolutional variant, kernels per conv crossbar stage (each "
                                                 "feeding a layer of MIF neurons) before the dense layers: a list "
                                                 "[16, 32, 64] = VGG-style stages (conv_kernel x conv_kernel convs "
                                                 "padded to keep the size, stride 1, each stage's column currents "
                                                 "averaged over 2x2 positions into one neuron: the image halves "
                                                 "per stage); an integer = one unpadded stage of conv_stride "
                                                 "without pooling (the older variant); 0 = off", lo=0))
    conv_kernel: int = field(default=3, metadata=_spec("int", "convolutional variant: kernel size (odd for a list "
                                                              "of stages)", lo=1))
    conv_stride: int = field(default=1, metadata=_spec("int", "convolutional variant: stride (1 for a list of "
                                                              "stages: they downsample by pooling)", lo=1))
    kind: str = field(default="msnn", metadata=_spec("choice", "network family: msnn (fully memristive SNN) or "
                                                               "ann (conventional ReLU network trained in float or "
                                                               "hardware-aware, deployed with memsim.convert; "
                                                               "memsim.ann)",
                                                     choices=NETWORK_KINDS))
    arch: str = field(default="mlp", metadata=_spec("choice", "ann only: mlp (the layers), vgg (3x3 conv stages of "
                                                              "network.channels, then the dense layers[1:-1]), "
                                                              "vgg_dw (vgg with depthwise-separable convs)",
                                                    choices=ANN_ARCHS))
    channels: tuple[int, ...] = field(default=(16, 32), metadata=_spec("int_list", "ann vgg/vgg_dw only: output "
                                                                                   "channels of each conv stage "
                                                                                   "(convs + 2x2 max-pool)",
                                                                       lo=1, min_len=1))
    convs_per_stage: int = field(default=1, metadata=_spec("int", "ann vgg/vgg_dw only: 3x3 convs per stage",
                                                           lo=1))
    batch_norm: bool = field(default=True, metadata=_spec("bool", "ann vgg/vgg_dw only: (digital) batch norm "
                                                                  "after every conv"))


@dataclass(frozen=True)
class EncodingConfig:
    name: str = field(default="direct", metadata=_spec("choice", "input encoding", choices=ENCODINGS))
    scale: float = field(default=DEFAULTS["input_scale"],
                         metadata=_spec("float", "input amplitude at intensity 1: volts on the first crossbar's rows "
                                                 "(DAC)", lo=0.0, lo_open=True, unit="V"))
    gain: float = field(default=1.0, metadata=_spec("float", "rate: spike probability per step at intensity 1",
                                                    lo=0.0, hi=1.0, lo_open=True))
    method: str = field(default="linear", metadata=_spec("choice", "latency: spike-time law",
                                                         choices=LATENCY_METHODS))
    threshold: float = field(default=0.0, metadata=_spec("float", "latency: inputs <= threshold do not fire",
                                                         lo=0.0, hi=1.0, hi_open=True))


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = field(default=10, metadata=_spec("int", "training epochs", lo=1))
    batch_size: int = field(default=64, metadata=_spec("int", "samples per batch", lo=1))
    learning_rate: float = field(default=1e-2, metadata=_spec("float", "optimizer learning rate",
                                                              lo=0.0, lo_open=True))
    optimizer: str = field(default="adam", metadata=_spec("choice", "optimizer", choices=OPTIMIZERS))
    weight_decay: float = field(default=0.0, metadata=_spec("float", "L2 weight decay", lo=0.0))
    momentum: float = field(default=0.9, metadata=_spec("float", "sgd momentum", lo=0.0, hi=1.0, hi_open=True))
    seed: int = field(default=0, metadata=_spec("int", "seed of every random generator of the run", lo=0))
    grad_clip: float = field(default=1.0, metadata=_spec("float", "max global gradient norm (0 = off)", lo=0.0))
    device: str = field(default="auto", metadata=_spec("choice", "torch device", choices=DEVICES))
    threads: int = field(default=1, metadata=_spec("int", "torch CPU threads (0 = torch's default); 1 is fastest "
                                                          "for these small per-step kernels on a shared machine", lo=0))
    weight_clip: float = field(default=0.0, metadata=_spec("float", "after every step clip each layer's weights to "
                                                                    "+-weight_clip standard deviations (0 = off): "
                                                                    "the crossbar maps the largest |weight| to "
                                                                    "g_max, so outliers waste the conductance range "
                                                                    "and magnify programming noise; 2.5-4 is typical "
                                                                    "for hardware-aware training", lo=0.0))
    lr_schedule: str = field(default="constant", metadata=_spec("choice", "learning rate over the run: constant, or "
                                                                        "cosine (decays per batch from learning_rate "
                                                                        "to 0 at the last epoch)",
                                                                choices=LR_SCHEDULES))
    compile: bool = field(default=False, metadata=_spec("bool", "fuse each neuron time step with torch.compile: "
                                                                "several times faster per batch after a one-off "
                                                                "compilation (~30 s per layer and batch shape)"))
    max_batches: int = field(default=0, metadata=_spec("int", "batches per epoch at most (0 = the whole training set); "
                                                            "a capped epoch still draws the whole shuffle, and the "
                                                            "cosine schedule runs over the capped epochs", lo=0))
    irdrop_reuse: int = field(default=1, metadata=_spec("int", "hardware.mode = 'irdrop': training steps per exact "
                                                               "computation of the IR-drop operators (1 = every "
                                                               "step); k > 1 computes them every k steps and reads "
                                                               "the chips in between through a first-order update "
                                                               "around the last exact chip's operators (~0.8 % "
                                                               "product error on hfox_1t1r_64, several times "
                                                               "cheaper; benchmarks/crossbar.md). Evaluation is "
                                                               "always exact", lo=1))
    voltage_penalty: float = field(default=DEFAULTS["penalty"],
                                   metadata=_spec("float", "weight of the penalty that keeps membrane voltages in the "
                                                           "memristors' valid range", lo=0.0))
    # in-situ training (memsim.insitu): the weight updates as programming pulses
    update: str = field(default="float", metadata=_spec("choice", "float: the optimiser steps float weights; pulsed: "
                                                                  "each crossbar weight is a differential device "
                                                                  "pair and its update becomes programming pulses "
                                                                  "through training.pulse_response (in-situ "
                                                                  "training, memsim.insitu)", choices=UPDATES))
    pulse_response: str = field(default="pulse_ideal_linear",
                                metadata=_spec("str", "pulsed: the synapse's pulse response: a pulse card "
                                                      "(pulse_exp_saturation, ...) or a device card whose response is "
                                                      "derived from its state equation (stanford_pku_hfox_10k, ...)"))
    pulse_algorithm: str = field(default="sgd", metadata=_spec("choice", "pulsed: sgd (analog SGD on one array) or "
                                                                         "tiki_taka (a fast array A transferred to "
                                                                         "the slow array C)",
                                                               choices=PULSE_ALGORITHMS))
    pulse_polarity: str = field(default="set", metadata=_spec("choice", "pulsed: set (both devices of a pair "
                                                                        "advance from G_min by potentiation) or "
                                                                        "reset (from G_max by depression)",
                                                              choices=PULSE_POLARITIES))
    pulse_max: int = field(default=10, metadata=_spec("int", "pulsed: pulses per device per step at most (the cut "
                                                             "pulses are counted in the metrics)", lo=1))
    pulse_weight_range: float = field(default=4.0, metadata=_spec("float", "pulsed: weight of a full conductance "
                                                                           "window, in units of the layer's largest "
                                                                           "absolute weight at the start", lo=0.0,
                                                                  lo_open=True))
    pulse_refresh: bool = field(default=True, metadata=_spec("bool", "pulsed: refresh a pair whose devices both "
                                                                     "saturated (read, reset both, reprogram)"))
    pulse_refresh_threshold: float = field(default=0.8, metadata=_spec("float", "pulsed: refresh once both devices "
                                                                                "advanced beyond this fraction of "
                                                                                "the window", lo=0.0, hi=1.0,
                                                                       lo_open=True))
    pulse_set_voltage: float = field(default=0.0, metadata=_spec("float", "pulsed, device card: set pulse "
                                                                          "amplitude in V (0 = the card's "
                                                                          "[verify.pulse])", unit="V"))
    pulse_reset_voltage: float = field(default=0.0, metadata=_spec("float", "pulsed, device card: reset pulse "
                                                                            "amplitude in V (0 = the card's)", unit="V"))
    pulse_width: float = field(default=0.0, metadata=_spec("float", "pulsed, device card: pulse width in s (0 = the "
                                                                    "card's)", lo=0.0, unit="s"))
    tiki_taka_gamma: float = field(default=1.0, metadata=_spec("float", "tiki_taka: weight = C + gamma A", lo=0.0))
    tiki_taka_every: int = field(default=16, metadata=_spec("int", "tiki_taka: steps between transfers of A to C",
                                                           lo=1))
    tiki_taka_lr: float = field(default=1.0, metadata=_spec("float", "tiki_taka: C += tiki_taka_lr x A at a "
                                                                     "transfer", lo=0.0, lo_open=True))
    tiki_taka_fast_range: float = field(default=0.25, metadata=_spec("float", "tiki_taka: window of the fast array A "
                                                                             "in units of C's (< 1: finer steps "
                                                                             "on A)", lo=0.0, hi=1.0, lo_open=True))
    tiki_taka_transfer: str = field(default="residual", metadata=_spec("choice", "tiki_taka: after a transfer A is "
                                                                         "reset, or keeps the residual (what the "
                                                                         "transfer's pulses did not carry)",
                                                                     choices=TRANSFERS))


@dataclass(frozen=True)
class HardwareConfig:
    aware: bool = field(default=False, metadata=_spec("bool", "inject the preset's non-idealities in training"))
    eval_preset: str = field(default="", metadata=_spec("str", "preset for post-deployment evaluation "
                                                               "('' = network.crossbar)"))
    resample_defects: bool = field(default=True, metadata=_spec("bool", "hardware-aware training draws a new chip's "
                                                                        "fixed defects (d2d variation, stuck cells) "
                                                                        "every batch; false: train on the one chip "
                                                                        "of the preset's noise seed"))
    eval_seeds: int = field(default=5, metadata=_spec("int", "non-ideality seeds averaged in evaluation", lo=1))
    stuck_compensation: str = field(default="preset", metadata=_spec(
        "choice", "what programming does about cells stuck at g_max, in training and evaluation: as the preset's "
                  "mapping.stuck_compensation says, none, or partner (the pair's other cell is retargeted so that "
                  "the pair keeps its difference)", choices=("preset", *STUCK_COMPENSATION)))
    mode: str = field(default="noisy", metadata=_spec("choice", "crossbar simulation with a preset: noisy (ideal "
                                                                "wires), irdrop (exact IR drop through each tile's "
                                                                "operator: ~1.1x noisy in evaluation, ~6x in "
                                                                "hardware-aware training)",
                                                       choices=("noisy", "irdrop")))


@dataclass(frozen=True)
class OutputConfig:
    dir: str = field(default="runs/msnn", metadata=_spec("str", "run directory (CSV, checkpoints, plots)"))
    keep_checkpoints: int = field(default=2, metadata=_spec("int", "epoch checkpoints kept", lo=1))
    plot: bool = field(default=True, metadata=_spec("bool", "plot learning curves at the end"))


SECTIONS: dict[str, type] = {"data": DataConfig, "network": NetworkConfig, "encoding": EncodingConfig,
                             "training": TrainingConfig, "hardware": HardwareConfig, "output": OutputConfig}


def keys() -> dict[str, _Spec]:
    """Every valid dotted key and its spec (type, range, doc)."""
    return {f"{s}.{f.name}": f.metadata["spec"] for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = field(default="config", compare=False)
    #: ``(dotted key, origin)`` of the keys set by overrides, not by ``source`` (errors name the override)
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def origin(self, key: str) -> str:
        """Where ``key``'s value comes from: its override, else ``source``."""
        return dict(self.origins).get(key, self.source)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for s in SECTIONS:
            sec = getattr(self, s)
            out[s] = {f.name: (list(v) if isinstance(v := getattr(sec, f.name), tuple) else v)
                      for f in dataclasses.fields(sec)}
        return out

    def to_toml(self) -> str:
        """The full config (every key, defaults included) as TOML; ``parse_config`` reads it back equal."""
        lines = []
        for s, table in self.to_dict().items():
            lines.append(f"[{s}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
            lines.append("")
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical config (sections and values, not the source name)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def diff(self, other: "Config") -> list[str]:
        """``key: self_value -> other_value`` for every key that differs."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{s}.{k}: {a[s][k]!r} -> {b[s][k]!r}" for s in a for k in a[s] if a[s][k] != b[s][k]]

    def with_overrides(self, overrides: Iterable[str] | Mapping[str, Any]) -> "Config":
        return parse_config(apply_overrides(self.to_dict(), overrides, source=self.source), source=self.source,
                            origins={**dict(self.origins), **override_origins(overrides, self.source)})


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else "nan" if v != v else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


# ------------------------------------------------------------------------------------------------------------
# validation

#: common other names of allowed values, used only to suggest the right one in errors
_ALIASES = {"poisson": "rate", "bernoulli": "rate", "current": "direct", "ttfs": "latency",
            "time_to_first_spike": "latency", "membrane": "voltage", "count": "spike_count", "spikes": "spike_count",
            "fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
            "gpu": "cuda"}


def _bad(key: str, value, spec: _Spec, source: str, extra: str = "") -> ConfigError:
    msg = f"{source}: {key} = {value!r} is invalid: allowed {spec.allowed()} ({spec.doc})."
    if spec.kind == "choice" and isinstance(value, str):
        near = _ALIASES.get(value.lower()) if _ALIASES.get(value.lower()) in spec.choices else None
        near = near or closest(value, spec.choices, cutoff=0.5)
        if near:
            msg += f" Did you mean '{near}'?"
    if extra:
        msg += " " + extra
    return ConfigError(msg, key=key, value=value, allowed=spec.allowed())


def _in_range(x: float, spec: _Spec) -> bool:
    if spec.lo is not None and (x <= spec.lo if spec.lo_open else x < spec.lo):
        return False
    if spec.hi is not None and (x >= spec.hi if spec.hi_open else x > spec.hi):
        return False
    return True


def _check_value(key: str, value, spec: _Spec, source: str):
    k = spec.kind
    if k == "bool":
        if not isinstance(value, bool):
            raise _bad(key, value, spec, source)
        return value
    if k in ("str", "choice"):
        if not isinstance(value, str) or (k == "choice" and value not in spec.choices):
            raise _bad(key, value, spec, source)
        return value
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, spec):
            raise _bad(key, value, spec, source)
        return value
    if k == "float":
        if not is_finite_number(value) or not _in_range(value, spec):
            raise _bad(key, value, spec, source)
        return float(value)
    if k == "int_or_list":
        if isinstance(value, int) and not isinstance(value, bool):
            if not _in_range(value, spec):
                raise _bad(key, value, spec, source)
            return value
        if not isinstance(value, (list, tuple)) or not value or any(
                isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in value):
            raise _bad(key, value, spec, source)
        return tuple(value)
    if k == "int_list":
        if not isinstance(value, (list, tuple)) or len(value) < spec.min_len or any(
                isinstance(x, bool) or not isinstance(x, int) or not _in_range(x, spec) for x in value):
            raise _bad(key, value, spec, source)
        return tuple(value)
    raise AssertionError(k)  # pragma: no cover


def _unknown(source: str, key: str, options: Iterable[str], what: str, elsewhere: str | None = None) -> ConfigError:
    near = closest(key.split(".")[-1], [o.split(".")[-1] for o in options], cutoff=0.5)
    msg = f"{source}: unknown {what} '{key}'."
    if elsewhere:
        msg += f" '{key.split('.')[-1]}' belongs in [{elsewhere}]."
    elif near:
        full = next(o for o in options if o.split(".")[-1] == near)
        msg += f" Did you mean '{full}'?"
    msg += f" Valid {what}s: {sorted(options)}."
    return ConfigError(msg, key=key, allowed=", ".join(sorted(options)))


def parse_config(data: Mapping[str, Any], source: str = "config", origins: Mapping[str, str] | None = None) -> Config:
    """Validate a config mapping (e.g. parsed TOML) into a :class:`Config`; raise :class:`ConfigError`.

    ``origins``: ``{dotted key: where its value came from}`` for keys set elsewhere than ``source`` (command-line
    overrides, :func:`override_origins`): an error in such a key names that origin instead of ``source``."""
    # a checkpoint's stored config and --set overrides bypass read_toml's check: the same rule for them
    check_strings(data, source, ConfigError)
    try:
        cfg = _parse_config(data, source)
    except ConfigError as exc:
        origin = (origins or {}).get(exc.key)
        if origin is None or not str(exc).startswith(f"{source}: "):
            raise
        raise ConfigError(origin + str(exc)[len(source):], key=exc.key, value=exc.value,
                          allowed=exc.allowed) from None
    return dataclasses.replace(cfg, origins=tuple(sorted((origins or {}).items())))


def _parse_config(data: Mapping[str, Any], source: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a config is a table of sections, got {type(data).__name__}")
    sections = {}
    for s, table in data.items():
        if s not in SECTIONS:
            owner = [sec for sec, cls in SECTIONS.items() if s in {f.name for f in dataclasses.fields(cls)}]
            if owner:
                raise ConfigError(f"{source}: '{s}' is not a section; it belongs in [{owner[0]}] "
                                  f"(write it as {owner[0]}.{s} or under [{owner[0]}]).", key=s,
                                  allowed=", ".join(SECTIONS))
            raise _unknown(source, s, list(SECTIONS), "section")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [{s}] must be a table of keys, got {table!r}", key=s, value=table)
    for s, cls in SECTIONS.items():
        table = data.get(s, {})
        if s == "network" and "layers" not in table:
            # default layers follow the dataset: [inputs, 128, classes]
            name = data.get("data", {}).get("dataset", DataConfig.dataset)
            if name == CUSTOM_IDX:
                raise ConfigError(f"{source}: dataset 'custom_idx' needs network.layers = [pixels, hidden..., "
                                  f"num_classes] (its image size is in the files), e.g. [784, 128, 26]",
                                  key="network.layers")
            if name in DATASETS:
                info = dataset_info(name)
                table = {**table, "layers": [info.num_inputs, 128, info.num_classes]}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                owner = next((o for o, c in SECTIONS.items() if o != s
                              and key in {f.name for f in dataclasses.fields(c)}), None)
                raise _unknown(source, f"{s}.{key}", [f"{s}.{n}" for n in fields], "key", elsewhere=owner)
            values[key] = _check_value(f"{s}.{key}", value, fields[key].metadata["spec"], source)
        sections[s] = cls(**values)
    cfg = Config(**sections, source=source)
    _cross_check(cfg, source)
    return cfg


def _check_kind(cfg: Config, source: str) -> None:
    net = cfg.network
    if net.kind == "msnn" and net.arch != "mlp":
        raise ConfigError(f"{source}: network.arch = {net.arch!r} applies to network.kind = 'ann' only (an MSNN "
                          f"is set by layers / conv_channels). Fix: set network.kind = 'ann' or remove network.arch",
                          key="network.arch", value=net.arch, allowed="'mlp' (the default) for kind 'msnn'")
    if net.kind == "ann" and net.conv_channels:
        raise ConfigError(f"{source}: network.conv_channels = {net.conv_channels} is the MSNN's conv stage; an ANN "
                          f"sets its convs with network.arch = 'vgg' | 'vgg_dw' and network.channels. Fix: remove "
                          f"network.conv_channels", key="network.conv_channels", value=net.conv_channels,
                          allowed="0 for kind 'ann'")


def _check_conv(cfg: Config, info, source: str) -> None:
    """The MSNN's conv stages against the dataset's images (square, single-channel, large enough); another kind
    with conv stages was refused by :func:`_check_kind`."""
    net = cfg.network
    if not net.conv_channels:
        return
    shape = tuple(info.image_shape)
    value = list(net.conv_channels) if isinstance(net.conv_channels, tuple) else net.conv_channels
    if shape[0] != 1 or shape[1] != shape[2]:
        raise ConfigError(f"{source}: network.conv_channels = {value} needs square single-channel images, but "
                          f"dataset '{info.name}' has {'x'.join(map(str, shape))} (channels x height x width). "
                          f"Fix: remove network.conv_channels (dense MSNN), or train an ANN (network.kind = 'ann', "
                          f"arch = 'vgg')", key="network.conv_channels", value=value,
                          allowed="0 for non-square or multi-channel images")
    try:
        conv_stages(info.num_inputs, net.conv_channels, net.conv_kernel, net.conv_stride)
    except ParameterError as exc:
        raise ConfigError(f"{source}: {exc.field} = {exc.value!r} is invalid for dataset '{info.name}' "
                          f"({shape[1]}x{shape[2]} images) with network.conv_channels = {value}: allowed "
                          f"{exc.allowed}. Fix: {exc.fix or 'see memsim.training.network.conv_stages'}",
                          key=exc.field, value=exc.value, allowed=exc.allowed) from None


def _check_update(cfg: Config, source: str) -> None:
    t = cfg.training
    if t.update != "pulsed":
        return
    if cfg.hardware.aware:
        raise ConfigError(f"{source}: training.update = 'pulsed' with hardware.aware = true: in-situ training holds "
                          f"the weights as the pulse card's conductances, and a preset's forward would map them "
                          f"again. Fix: set hardware.aware = false (evaluate on chips afterwards with memsim "
                          f"evaluate), or training.update = 'float'", key="training.update", value="pulsed",
                          allowed="'float' with hardware.aware = true")
    if t.weight_clip > 0:
        raise ConfigError(f"{source}: training.weight_clip = {t.weight_clip:g} with training.update = 'pulsed': the "
                          f"pulsed weights are bounded by the device window (training.pulse_weight_range), not "
                          f"clipped. Fix: set training.weight_clip = 0", key="training.weight_clip",
                          value=t.weight_clip, allowed="0 with training.update = 'pulsed'")


def _check_irdrop_reuse(cfg: Config, source: str) -> None:
    k = cfg.training.irdrop_reuse
    if k > 1 and not (cfg.hardware.aware and cfg.hardware.mode == "irdrop"):
        raise ConfigError(f"{source}: training.irdrop_reuse = {k} but training does not compute IR drop "
                          f"(hardware.aware = {str(cfg.hardware.aware).lower()}, hardware.mode = "
                          f"'{cfg.hardware.mode}'), so the setting would do nothing. Fix: set hardware.aware = true "
                          f"and hardware.mode = 'irdrop', or training.irdrop_reuse = 1", key="training.irdrop_reuse",
                          value=k, allowed="1 unless hardware.aware = true and hardware.mode = 'irdrop'")


def _cross_check(cfg: Config, source: str) -> None:
    _check_kind(cfg, source)
    _check_update(cfg, source)
    _check_irdrop_reuse(cfg, source)
    layers = cfg.network.layers
    if cfg.data.dataset == CUSTOM_IDX:  # the input size is checked against the files when they are loaded
        n = cfg.data.num_classes
        if n < 2:
            raise ConfigError(f"{source}: data.num_classes = {n} is invalid for dataset 'custom_idx': allowed an "
                              f"integer >= 2. Fix: set data.num_classes to the number of classes of your files",
                              key="data.num_classes", value=n, allowed=">= 2")
        if not cfg.data.data_dir:
            raise ConfigError(f"{source}: dataset 'custom_idx' needs data.data_dir (or --data-dir): the folder of "
                              f"its IDX files", key="data.data_dir", value="")
        if layers[-1] != n:
            raise ConfigError(f"{source}: network.layers = {list(layers)} ends with {layers[-1]} but "
                              f"data.num_classes = {n}. Fix: end layers with {n}", key="network.layers",
                              value=list(layers), allowed=f"last size {n}")
        return
    info = dataset_info(cfg.data.dataset)
    if cfg.data.num_classes not in (0, info.num_classes):
        raise ConfigError(f"{source}: data.num_classes = {cfg.data.num_classes} but dataset '{info.name}' has "
                          f"{info.num_classes} classes (data.num_classes is for dataset 'custom_idx'). Fix: remove "
                          f"data.num_classes, or use dataset = 'custom_idx' for your own subset of the files",
                          key="data.num_classes", value=cfg.data.num_classes, allowed=f"0 or {info.num_classes}")
    if layers[0] != info.num_inputs:
        raise ConfigError(f"{source}: network.layers = {list(layers)} does not match the data: dataset "
                          f"'{info.name}' has {info.num_inputs} inputs ({'x'.join(map(str, info.image_shape[1:]))} "
                          f"pixels) but the first layer has {layers[0]}. Fix: start layers with {info.num_inputs}, "
                          f"e.g. {[info.num_inputs, *layers[1:]]}.",
                          key="network.layers", value=list(layers), allowed=f"first size {info.num_inputs}")
    if layers[-1] != info.num_classes:
        raise ConfigError(f"{source}: network.layers = {list(layers)} does not match the data: dataset "
                          f"'{info.name}' has {info.num_classes} classes but the last layer has {layers[-1]}. "
                          f"Fix: end layers with {info.num_classes}, e.g. {[*layers[:-1], info.num_classes]}.",
                          key="network.layers", value=list(layers), allowed=f"last size {info.num_classes}")
    _check_conv(cfg, info, source)
    enc = cfg.encoding
    if enc.name == "latency" and enc.method == "log" and enc.threshold <= 0.0:
        raise ConfigError(f"{source}: encoding.threshold = {enc.threshold!r} is invalid for method 'log': "
                          f"allowed a number in (0, 1) (the RC membrane must have a threshold to reach).",
                          key="encoding.threshold", value=enc.threshold, allowed="(0, 1)")


def load_config(path: str | os.PathLike | None = None,
                overrides: Iterable[str] | Mapping[str, Any] = ()) -> Config:
    """Load and validate a TOML config (``None``: all defaults), after merging ``overrides``. ``path`` may
    also name a bundled config (``digits_quickstart``; see :func:`memsim.resources.resolve_config`)."""
    if path is not None:
        path = resolve_config(path)
    data = {} if path is None else read_toml(path, ConfigError, what="config")
    source = "config" if path is None else str(path)
    return parse_config(apply_overrides(data, overrides, source=source), source=source,
                        origins=override_origins(overrides, source))


def default_config() -> Config:
    return Config()


# ------------------------------------------------------------------------------------------------------------
# overrides

def parse_override(text: str) -> tuple[str, Any]:
    """``"section.key=value"`` -> ``("section.key", value)``; the value is read as TOML (``3``, ``1e-3``,
    ``true``, ``[784, 256, 10]``, ``"x"``); string keys also take a bare word (``data.dataset=mnist``)."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. training.epochs=3)",
                          key="override", value=text, allowed="section.key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    spec = keys().get(key)
    if spec is not None and spec.kind in ("str", "choice") and not raw.startswith(('"', "'")):
        return key, raw
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


def _override_items(overrides: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """``(key, value, origin)`` of each override; ``origin`` names it as the user gave it (``--set k=v`` for a
    string, ``override k = v`` for a mapping entry), so that an error blames the override, not the file."""
    if isinstance(overrides, Mapping):
        return [(k, v, f"override {k} = {v!r}") for k, v in overrides.items() if v is not None]
    return [(*parse_override(o), f"--set {o.strip()}") for o in overrides]


def _from_override(origin: str, source: str) -> str:
    """Where an error in an overridden key comes from: the override, applied on top of the file (or defaults)."""
    base = "the built-in defaults" if source == "config" else source
    return f"{origin} (an override of {base})"


def override_origins(overrides: Iterable[str] | Mapping[str, Any], source: str = "config") -> dict[str, str]:
    """``{dotted key: where its value comes from}`` for the keys ``overrides`` set (the last one wins), for
    :func:`parse_config`'s ``origins``."""
    return {k: _from_override(origin, source) for k, _, origin in _override_items(overrides)}


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str] | Mapping[str, Any],
                    source: str = "config") -> dict[str, dict[str, Any]]:
    """A copy of ``data`` with ``overrides`` merged in: strings ``"section.key=value"`` (``--set`` flags) or a
    mapping ``{"section.key": value}`` (argparse values; ``None`` values are skipped so unset flags keep the
    file's value). Unknown keys raise :class:`ConfigError` naming the override (not ``source``, which does not
    hold it) and the closest valid key."""
    merged: dict[str, dict[str, Any]] = {s: dict(t) if isinstance(t, Mapping) else t for s, t in data.items()}
    valid = keys()
    for key, value, origin in _override_items(overrides):
        if key not in valid:
            where = _from_override(origin, source)
            section, _, name = key.rpartition(".")
            owner = next((k for k in valid if k.split(".")[-1] == name), None) if name else None
            if owner and section != owner.split(".")[0]:
                raise ConfigError(f"{where}: unknown key '{key}'. Did you mean '{owner}'?", key=key, value=value,
                                  allowed=", ".join(sorted(valid)))
            raise _unknown(where, key, valid, "key")
        section, name = key.split(".", 1)
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table of keys, got {table!r}", key=section)
        table[name] = value
    return merged


# ------------------------------------------------------------------------------------------------------------
# names that refer to other libraries

def check_references(cfg: Config) -> None:
    """Check that the neuron card and the crossbar preset(s) named by ``cfg`` exist (closest name if not).

    Neuron cards are looked up on memsim's card search path (``$MEMSIM_DEVICE_PATH``, then the bundled
    ``devices/``); crossbar presets as ``<name>.toml`` in ``$MEMSIM_CROSSBAR_PATH`` and the bundled
    ``crossbar/`` (:mod:`memsim.resources`), or as a path to a ``.toml`` file.
    """
    def stems(dirs):
        return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})

    def check(key: str, name: str, dirs: list[Path], what: str):
        if name.endswith(".toml") and Path(name).is_file():
            return
        known = stems(dirs)
        if name not in known:
            near = closest(name, known, cutoff=0.5)
            hint = f"Did you mean '{near}'?" if near else f"Available: {known}."
            raise ConfigError(f"{cfg.origin(key)}: {key} = {name!r}: no such {what} (searched "
                              f"{[str(d) for d in dirs]}). {hint}", key=key, value=name, allowed=", ".join(known))

    check("network.neuron", cfg.network.neuron, search_path(), "neuron card")
    xdirs = env_dirs("MEMSIM_CROSSBAR_PATH") + [data_dir("crossbar")]
    if cfg.network.crossbar != "ideal":  # "ideal": exact weights-as-conductances, no preset file
        check("network.crossbar", cfg.network.crossbar, xdirs, "crossbar preset")
    if cfg.hardware.eval_preset and cfg.hardware.eval_preset != "ideal":
        check("hardware.eval_preset", cfg.hardware.eval_preset, xdirs, "crossbar preset")


def insitu_settings(cfg: Config) -> InSituSettings | None:
    """The in-situ training settings of ``cfg`` (``training.update = "pulsed"``), its pulse response loaded and
    checked before any work (a card that does not exist, a pulse below the device's switching threshold, a
    behavioural card given a pulse, a response that never reaches mid-window: a :class:`ConfigError` naming the
    key); ``None`` for float training."""
    t = cfg.training
    if t.update != "pulsed":
        return None
    key = "training.pulse_response"
    try:
        response = load_pulse_response(t.pulse_response, t.pulse_set_voltage, t.pulse_reset_voltage, t.pulse_width)
        settings = InSituSettings(response, algorithm=t.pulse_algorithm, polarity=t.pulse_polarity,
                                  max_pulses=t.pulse_max, weight_range=t.pulse_weight_range,
                                  refresh=t.pulse_refresh, refresh_threshold=t.pulse_refresh_threshold,
                                  gamma=t.tiki_taka_gamma, transfer_every=t.tiki_taka_every,
                                  transfer_lr=t.tiki_taka_lr, fast_range=t.tiki_taka_fast_range,
                                  transfer=t.tiki_taka_transfer, seed=t.seed)
        settings.step  # the nominal step: the pulses must reach mid-window
    except ParameterError as exc:
        # the derivation names the pulse fields without their section
        name = exc.field if exc.field.startswith("training.") else {
            "set_voltage": "training.pulse_set_voltage", "reset_voltage": "training.pulse_reset_voltage",
            "width": "training.pulse_width"}.get(exc.field, key)
        raise ConfigError(f"{cfg.origin(name)}: {name}: {exc} (pulse response {t.pulse_response!r})", key=name,
                          value=exc.value, allowed=exc.allowed) from None
    except CardError as exc:
        raise ConfigError(f"{cfg.origin(key)}: {key} = {t.pulse_response!r}: {exc}", key=key,
                          value=t.pulse_response) from None
    return settings


def with_compensation(cfg: Config, preset: Preset) -> Preset:
    """``preset`` with the run's ``hardware.stuck_compensation`` (unchanged for ``"preset"``), or an error naming
    the key (e.g. partner compensation on an offset-scheme preset)."""
    comp = cfg.hardware.stuck_compensation
    if comp == "preset" or comp == preset.stuck_compensation:
        return preset
    try:
        return preset.replace(stuck_compensation=comp)
    except ParameterError as exc:
        key = "hardware.stuck_compensation"
        raise ConfigError(f"{cfg.origin(key)}: {key} = {comp!r} cannot apply to the preset '{preset.name}': "
                          f"{exc.fix}", key=key, value=comp) from None


def hardware_preset(cfg: Config, preset: Preset | None = None) -> Preset | None:
    """The crossbar preset that hardware-aware training of ``cfg`` runs on, checked before any work: ``preset`` (a
    :class:`memsim.crossbar.Preset` object, e.g. a sweep point's modified preset) else ``network.crossbar``;
    ``None`` when ``hardware.aware`` is false (float / ideal training)."""
    aware = cfg.hardware.aware
    if preset is not None and not isinstance(preset, Preset):
        raise ConfigError(f"preset = {preset!r} is invalid: allowed a memsim.crossbar.Preset object or None (then "
                          f"network.crossbar names it). Fix: pass load_preset(...) or set network.crossbar",
                          key="preset", value=preset, allowed="a Preset or None")
    if not aware:
        if preset is not None:  # a preset that nothing would use is a mistake, not a default
            raise ConfigError(f"{cfg.origin('hardware.aware')}: a crossbar preset ({preset.name}) was given but "
                              f"hardware.aware = false, so training would not use it. Fix: set hardware.aware = true "
                              f"to train through it, or pass no preset", key="hardware.aware", value=False)
        return None
    if preset is None:
        if cfg.network.crossbar == "ideal":
            raise ConfigError(f"{cfg.origin('hardware.aware')}: hardware.aware = true needs a crossbar preset, but "
                              f"network.crossbar is 'ideal' (nothing to inject). Fix: set network.crossbar to a preset "
                              f"(e.g. hfox_1t1r_64) or hardware.aware = false.", key="hardware.aware", value=True)
        check_references(cfg)
        preset = load_preset(cfg.network.crossbar)
    wires = preset.circuit.wires
    if cfg.hardware.mode == "irdrop" and wires.ideal:  # would silently train on the noisy product
        raise ConfigError(f"{cfg.origin('hardware.mode')}: hardware.mode = 'irdrop' but the preset '{preset.name}' "
                          f"has ideal wires (r_wordline = {wires.r_wordline:g}, r_bitline = {wires.r_bitline:g}, "
                          f"r_source = {wires.r_source:g} Ohm): there is no IR drop to train through. Fix: set "
                          f"hardware.mode = 'noisy', or use a preset with wire resistance (memsim crossbar list)",
                          key="hardware.mode", value="irdrop", allowed="'noisy' for a preset with ideal wires")
    return with_compensation(cfg, preset)
