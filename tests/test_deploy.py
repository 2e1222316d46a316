"""Deployment (memsim.deploy): the Chip's checks, the network-kind registry, evaluate_on_chips against the code it
replaced and against the protocol built by hand, no string dispatch on the kind outside the kinds, and a sweep point
that patches nothing."""
import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import memsim
from memsim.crossbar import CrossbarArray
from memsim.crossbar.presets import load_preset
from memsim.deploy import IDEAL, Chip, NetworkKind, evaluate_on_chips, kind_names, network_kind
from memsim.deploy.kinds import BUILTIN
from memsim.errors import CardError, ParameterError
from memsim.training.data import ImageDataset
from memsim.training.loop import load_datasets
from memsim.training.trained import load_trained

from sweep_helpers import tiny_ann_checkpoint, tiny_checkpoint

HFOX = load_preset("hfox_1t1r_64")
#: the converter settings of the code before calibration existed: a fixed ADC range, the DAC range the largest input
#: of the calibration batch, and one weight scale per layer (before per-output scaling)
LEGACY = HFOX.replace(adc=dataclasses.replace(HFOX.adc, calibration="fixed"),
                      dac=dataclasses.replace(HFOX.dac, calibration="max"), weight_scale="layer")
NO_READ_NOISE = LEGACY.replace(noise={"read": 0.0})


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Tiny digits networks (about a second each to train): one- and two-layer MSNNs and ANNs."""
    tmp = tmp_path_factory.mktemp("deploy")
    return {"msnn1": tiny_checkpoint(tmp / "m1", (64, 10)), "msnn2": tiny_checkpoint(tmp / "m2"),
            "ann1": tiny_ann_checkpoint(tmp / "a1", (64, 10)), "ann2": tiny_ann_checkpoint(tmp / "a2")}


def _evaluate(ckpt, chip: Chip, n=2, limit=120):
    network = load_trained(ckpt)
    train_set, test_set = load_datasets(network.config)
    data = ImageDataset(test_set.images[:limit], test_set.labels[:limit], test_set.info, test_set.split)
    return evaluate_on_chips(network, chip.series(n), data, calibration=train_set)


# -- the Chip: every bad field is an error naming it, before any work ----------------------------------------

@pytest.mark.parametrize("fields, field, text", [
    ({"preset": "hfox_1t1r_64"}, "chip.preset", "Chip.load"),
    ({"mode": "approximate"}, "chip.mode", "one of ['ideal', 'noisy', 'irdrop', 'nonlinear']"),
    ({"mode": "approx"}, "chip.mode", "use 'irdrop'"),
    ({"mode": ["noisy"]}, "chip.mode", "one of"),
    ({"mapping": "spares"}, "chip.mapping", "one of ['dense', 'sparse']"),
    ({"mapping": {"net.0": "spares"}}, "chip.mapping['net.0']", "one of ['dense', 'sparse']"),
    ({"mapping": {}}, "chip.mapping", "non-empty"),
    ({"mapping": 3}, "chip.mapping", "layer name"),
    ({"prune": 1.0}, "chip.prune", "a fraction in [0, 1)"),
    ({"prune": True}, "chip.prune", "a fraction in [0, 1)"),
    ({"block": (8, 0)}, "chip.block", "a pair of integers >= 1"),
    ({"seed": -1}, "chip.seed", "an integer >= 0"),
    ({"seed": 1.0}, "chip.seed", "an integer >= 0"),
    ({"calibration_samples": 0}, "chip.calibration_samples", "an integer >= 1"),
])
def test_chip_field_errors(fields, field, text):
    kw = {"preset": HFOX, **fields}
    with pytest.raises(ParameterError, match="Fix: ") as e:
        Chip(**kw)
    assert e.value.field == field and text in str(e.value)


def test_chip_errors_of_the_ideal_chip_and_of_irdrop():
    with pytest.raises(ParameterError, match="'ideal' for the ideal chip") as e:
        Chip(None)                                      # the default mode simulates arrays the ideal chip lacks
    assert e.value.field == "chip.mode" and "Chip.ideal()" in str(e.value)
    with pytest.raises(ParameterError, match="'dense' for the ideal chip"):
        Chip.ideal(mapping="sparse")
    flat = HFOX.replace(circuit=dataclasses.replace(HFOX.circuit, wires=dataclasses.replace(
        HFOX.circuit.wires, r_wordline=0.0, r_bitline=0.0, r_source=0.0)))
    with pytest.raises(ParameterError, match="ideal wires.*use mode 'noisy'") as e:
        Chip(flat, mode="irdrop")
    assert e.value.field == "chip.mode"
    with pytest.raises(CardError, match="did you mean 'hfox_1t1r_64'"):
        Chip.load("hfox_1t1r_6")


def test_chip_values():
    chip = Chip.load("hfox_1t1r_64", mapping={"b": "sparse", "a": "dense"}, seed=3)
    assert chip.preset == HFOX and chip.mode == "noisy" and chip.layer_mapping == {"a": "dense", "b": "sparse"}
    assert chip == Chip(HFOX, mapping={"a": "dense", "b": "sparse"}, seed=3)
    assert [c.seed for c in chip.series(3)] == [3, 4, 5]
    assert Chip.load("ideal") == IDEAL == Chip.ideal() and IDEAL.series(5) == [IDEAL]
    with pytest.raises(dataclasses.FrozenInstanceError):
        chip.seed = 1
    with pytest.raises(ParameterError, match="chips"):
        chip.series(0)


def test_evaluation_errors_before_any_work(nets):
    network = load_trained(nets["ann1"])
    train_set, test_set = load_datasets(network.config)
    with pytest.raises(ParameterError, match=rf"at most {len(train_set)} .* calibrate on at most ") as e:
        evaluate_on_chips(network, Chip(HFOX, calibration_samples=len(train_set) + 1), test_set,
                          calibration=train_set)
    assert e.value.field == "chip.calibration_samples"
    with pytest.raises(ParameterError, match="calibration=train_set"):
        evaluate_on_chips(network, Chip(HFOX), test_set)
    with pytest.raises(ParameterError, match="at least one memsim.deploy.Chip"):
        evaluate_on_chips(network, [], test_set, calibration=train_set)
    with pytest.raises(ParameterError, match=r"chips\[0\]"):
        evaluate_on_chips(network, ["hfox_1t1r_64"], test_set, calibration=train_set)
    assert evaluate_on_chips(network, IDEAL, test_set).results[0].calibration is None   # nothing to calibrate


# -- the registry ----------------------------------------------------------------------------------------------

def test_registry_knows_the_kinds_and_names_the_closest():
    assert set(kind_names()) >= {"msnn", "ann"}
    for name in ("msnn", "ann"):
        kind = network_kind(name)
        assert isinstance(kind, NetworkKind) and kind.name == name
    with pytest.raises(ParameterError, match="did you mean 'ann'") as e:
        network_kind("anm", "network.kind of x.pt")
    assert e.value.field == "network.kind of x.pt"


# -- evaluate_on_chips gives the numbers of the code it replaced -------------------------------------------------

#: per-chip accuracies (chips 0 and 1, the first 120 test images) of the replaced code on the same checkpoints:
#: MSNNs from memsim.training.evaluate_checkpoint (every non-ideality), ANNs and sparse mappings from
#: memsim.ann.deploy.evaluate_deployed (read noise off: that code read one probe batch before evaluating, so with
#: read noise its chips drew other read-noise values)
BEFORE = {
    ("msnn1", "noisy", "dense", "all noise"): [0.6583333333333333, 0.6],
    ("msnn1", "irdrop", "dense", "all noise"): [0.6833333333333333, 0.6],
    ("msnn1", "noisy", "sparse", "no read noise"): [0.6083333333333333, 0.5916666666666667],
    ("ann1", "noisy", "dense", "no read noise"): [0.35, 0.35833333333333334],
    ("ann1", "irdrop", "dense", "no read noise"): [0.36666666666666664, 0.35833333333333334],
    ("ann1", "noisy", "sparse", "no read noise"): [0.475, 0.44166666666666665],
}
#: the same for two-layer networks: their second layer's DAC range is measured on the first layer's outputs
BEFORE_TWO_LAYERS = {
    ("msnn2", "noisy", "dense", "all noise"): [0.43333333333333335, 0.4666666666666667],
    ("msnn2", "irdrop", "dense", "all noise"): [0.43333333333333335, 0.4583333333333333],
    ("ann2", "noisy", "dense", "no read noise"): [0.36666666666666664, 0.35833333333333334],
    ("ann2", "noisy", "sparse", "no read noise"): [0.31666666666666665, 0.39166666666666666],
}


PRESETS = {"all noise": LEGACY, "no read noise": NO_READ_NOISE}


@pytest.mark.parametrize("net, mode, mapping, preset", list(BEFORE))
def test_same_chips_as_the_replaced_code(nets, net, mode, mapping, preset):
    prune = 0.5 if mapping == "sparse" else 0.0
    ev = _evaluate(nets[net], Chip(PRESETS[preset], mode=mode, mapping=mapping, prune=prune))
    assert ev.per_chip == BEFORE[net, mode, mapping, preset]


def test_same_chips_as_the_replaced_code_two_layers(nets):
    now = {}
    for (net, mode, mapping, preset), before in BEFORE_TWO_LAYERS.items():
        prune = 0.5 if mapping == "sparse" else 0.0
        now[net, mode, mapping, preset] = _evaluate(nets[net], Chip(PRESETS[preset], mode=mode, mapping=mapping,
                                                                   prune=prune)).per_chip
    assert now == BEFORE_TWO_LAYERS


def test_same_chips_as_the_protocol_by_hand(nets):
    """Two-layer networks on the bundled preset (calibrated ranges, every non-ideality): program chip s with layer k
    at noise seed s + k, calibrate it on 256 training images, evaluate; evaluate_on_chips gives the same chips."""
    from memsim.ann.train import evaluate_ann, load_ann
    from memsim.nn.calibration import calibrate, crossbar_layers
    from memsim.training.loop import build_encoder, evaluate, load_network

    model, cfg = load_ann(nets["ann2"])
    train_set, test_set = load_datasets(cfg)
    data = ImageDataset(test_set.images[:120], test_set.labels[:120], test_set.info, test_set.split)
    by_hand = []
    for s in (0, 1):
        net = memsim.convert(model, HFOX, mode="noisy").eval()
        for k, (_, layer) in enumerate(crossbar_layers(net)):
            layer.array.reseed(s + k)
        calibrate(net, lambda: net(train_set.images[:256]))
        torch.manual_seed(s)
        by_hand.append(evaluate_ann(net, data)["accuracy"])
    assert _evaluate(nets["ann2"], Chip(HFOX)).per_chip == by_hand

    by_hand = []
    for s in (0, 1):
        net, cfg = load_network(nets["msnn2"], crossbar=HFOX, mode="irdrop", noise_seed=s)
        calibrate(net, lambda: net(build_encoder(cfg)(train_set.images[:256])))
        torch.manual_seed(s)
        gen = torch.Generator().manual_seed(cfg.training.seed + 1 + s)
        by_hand.append(evaluate(net, build_encoder(cfg), data, generator=gen)["accuracy"])
    ev = _evaluate(nets["msnn2"], Chip(HFOX, mode="irdrop"))
    assert ev.per_chip == by_hand
    r = ev.results[0]
    assert list(r.output_error) == ["synapses.0.xbar", "synapses.1.xbar"] and 0 < r.mean_output_error < 1
    assert set(r.calibration.as_dict()) == set(r.output_error) and r.calibration_time_s < r.time_s
    assert [a.reads for a in r.activity] == [1.0, 6.0]   # direct input: read once; the hidden layer every step
    assert all(a.v2g > 0 for a in r.activity)
    d = ev.as_dict()
    assert d["per_seed"] == by_hand and d["chip_seeds"] == [0, 1] and d["kind"] == "msnn" and d["mode"] == "irdrop"


# -- no string dispatch on the kind outside memsim.deploy and the kind modules ---------------------------------------

ROOT = Path(memsim.__file__).resolve().parent
KIND_MODULES = {"deploy", *(m.removeprefix("memsim.").replace(".", "/") + ".py" for m in BUILTIN.values())}
#: comparisons with a kind name that remain in modules of other owners, to move into their kinds (the config's
#: per-kind field checks -> NetworkKind.check_config; load_ann's own kind check): the count may only go down
KNOWN = {"training/config.py": 2, "ann/train.py": 1}


def _kind_compares(tree: ast.AST) -> list[int]:
    names = set(BUILTIN)

    def is_kind(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(is_kind(e) for e in node.elts)
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Compare)
            and any(is_kind(x) for x in (n.left, *n.comparators))]


def test_no_kind_dispatch_outside_the_kinds():
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in KIND_MODULES or rel in KIND_MODULES:
            continue
        lines = _kind_compares(ast.parse(path.read_text()))
        if lines:
            found[rel] = lines
    extra = {f: ls for f, ls in found.items() if len(ls) > KNOWN.get(f, 0)}
    assert not extra, (f"a network kind compared by name outside memsim/deploy and the kind modules {extra}: ask "
                       f"memsim.deploy.network_kind(name) and add what the kind must answer to NetworkKind")


# -- a sweep point reads the chip through the declared interface: nothing is patched -------------------------------

def test_sweep_point_patches_nothing(nets, monkeypatch):
    from memsim.sweep import worker
    from memsim.sweep.spec import parse_spec

    before = dict(vars(CrossbarArray))
    seen = []

    def watched(*a, **k):
        seen.append(vars(CrossbarArray) == before)
        return evaluate_on_chips(*a, **k)
    monkeypatch.setattr(worker, "evaluate_on_chips", watched)
    spec = parse_spec({"base": {"checkpoint": str(nets["ann2"]), "preset": "hfox_1t1r_64", "mode": "noisy",
                                "chips": 1, "limit": 40}, "axes": {"tile.size": [32]}})
    rec = worker.evaluate_point(spec.resolve(spec.points()[0]))
    assert rec["status"] == "ok", rec.get("traceback")
    assert seen == [True] and vars(CrossbarArray) == before
    assert CrossbarArray.__init__ is before["__init__"] and CrossbarArray.forward is before["forward"]
    m = rec["metrics"]
    assert m["energy_array"] > 0 and m["adc_conversions"] == 48 and m["tiles"] == 3
