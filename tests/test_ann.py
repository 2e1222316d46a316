"""Conventional networks (network.kind = "ann"): config validation, float training on digits, resume, and
deployment (memsim.ann.deploy) against the float model (closed form: the ideal crossbar is the exact product)."""
import pytest
import torch

from memsim.ann.deploy import evaluate_deployed, mapping_report
from memsim.ann.train import evaluate_ann, load_ann
from memsim.training.checkpoint import read_checkpoint
from memsim.training.config import ConfigError, default_config, load_config, parse_config
from memsim.training.loop import evaluate_checkpoint, load_datasets, train


def _cfg(tmp_path, arch="mlp", name="run", **net):
    net = {"kind": "ann", "arch": arch, "layers": [64, 32, 10] if arch == "mlp" else [64, 10], **net}
    if arch != "mlp":
        net.setdefault("channels", [8, 16])
    return parse_config({"network": net, "training": {"epochs": 3, "batch_size": 64, "learning_rate": 1e-2},
                         "output": {"dir": str(tmp_path / name), "plot": False}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP and a depthwise-separable CNN, 3 epochs each (about a second apiece)."""
    tmp = tmp_path_factory.mktemp("ann")
    out = {}
    for arch in ("mlp", "vgg_dw"):
        cfg = _cfg(tmp, arch, arch)
        out[arch] = (cfg, train(cfg, progress=False, log=lambda s: None))
    return out


def test_default_config_is_msnn_and_configs_unchanged():
    assert default_config().network.kind == "msnn"
    cfg = load_config("configs/fashion_ideal.toml")
    assert cfg.network.kind == "msnn" and cfg.network.arch == "mlp"


def test_config_validation_errors(tmp_path):
    with pytest.raises(ConfigError, match="network.arch.*applies to network.kind = 'ann' only") as e:
        parse_config({"network": {"arch": "vgg"}})
    assert e.value.key == "network.arch"
    with pytest.raises(ConfigError, match="Did you mean 'vgg_dw'"):
        parse_config({"network": {"kind": "ann", "arch": "vgg-dw"}})
    with pytest.raises(ConfigError, match="network.kind.*'msnn', 'ann'"):
        parse_config({"network": {"kind": "cnn"}})
    with pytest.raises(ConfigError, match="conv_channels"):
        parse_config({"network": {"kind": "ann", "conv_channels": 4}})
    with pytest.raises(ConfigError, match="network.channels"):
        parse_config({"network": {"kind": "ann", "arch": "vgg", "channels": []}})
    with pytest.raises(ConfigError, match="hardware.aware = true needs a crossbar preset"):
        train(parse_config({"network": {"kind": "ann"}, "hardware": {"aware": True},
                            "output": {"dir": str(tmp_path / "x")}}), progress=False)
    # 8x8 digits allow at most 3 halving stages
    with pytest.raises(Exception, match="at most 3 stages"):
        train(_cfg(tmp_path, "vgg", channels=[4, 4, 4, 4]), progress=False)


def test_ann_trains_on_digits(trained):
    for arch, floor in (("mlp", 0.85), ("vgg_dw", 0.70)):
        cfg, result = trained[arch]
        assert len(result.history) == 3
        assert result.final["test_accuracy"] > floor, arch
        ckpt = read_checkpoint(result.checkpoint)
        assert ckpt.epoch == 3 and ckpt.config["network"]["kind"] == "ann"


def test_ann_resume_is_exact(tmp_path):
    full = train(_cfg(tmp_path, name="full").with_overrides(["training.epochs=2"]), progress=False, log=lambda s: None,
                 max_batches=4)
    part_cfg = _cfg(tmp_path, name="part").with_overrides(["training.epochs=1"])
    train(part_cfg, progress=False, log=lambda s: None, max_batches=4)
    resumed = train(part_cfg.with_overrides(["training.epochs=2"]), resume=True, progress=False, log=lambda s: None,
                    max_batches=4)
    a, b = read_checkpoint(full.checkpoint).model_state, read_checkpoint(resumed.checkpoint).model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_deploy_ideal_equals_float_model(trained):
    cfg, result = trained["vgg_dw"]
    model, _ = load_ann(result.checkpoint)
    _, test = load_datasets(cfg)
    float_acc = evaluate_ann(model, test)["accuracy"]
    for mapping in ("dense", "sparse"):
        r = evaluate_deployed(result.checkpoint, "hfox_1t1r_64", mode="ideal", mapping=mapping)
        assert r["accuracy"] == pytest.approx(float_acc, abs=1 / len(test))
        assert r["output_error"] < 1e-5
        assert r["kind"] == "ann" and r["arch"] == "vgg_dw"
    assert evaluate_deployed(result.checkpoint, "ideal")["accuracy"] == float_acc
    # memsim evaluate's entry point dispatches ANN checkpoints here
    assert evaluate_checkpoint(result.checkpoint, preset="ideal")["accuracy"] == float_acc


def test_deploy_reports_tiles_reads_and_noise(trained):
    _, result = trained["vgg_dw"]
    rep = mapping_report(result.checkpoint, "hfox_1t1r_64", mapping="sparse")
    names = [row["name"] for row in rep["layers"]]
    # vgg_dw [8, 16] on 8x8 digits: conv3x3 (1->8) | pool | dw3x3 (8) + pw1x1 (8->16) | pool | linear
    assert names == ["features.0", "features.4", "features.7", "classifier.1"]
    vec = {row["name"]: row["vectors_per_inference"] for row in rep["layers"]}
    assert vec == {"features.0": 64, "features.4": 16, "features.7": 16, "classifier.1": 1}
    dw = rep["layers"][1]
    assert (dw["type"], dw["groups"], dw["out"], dw["in"]) == ("grouped_conv", 8, 8, 72)
    assert rep["tiles"] == sum(row["tiles"] for row in rep["layers"])
    assert rep["tile_reads_per_inference"] == sum(row["tiles"] * vec[row["name"]] for row in rep["layers"])
    r = evaluate_deployed(result.checkpoint, "hfox_1t1r_64", mode="noisy", mapping="sparse", seeds=2, limit=100)
    assert len(r["per_seed"]) == 2 and r["samples"] == 100
    assert 0.0 < r["output_error"] < 1.0
    assert r["tiles"] == rep["tiles"] and r["zero_cells"] == 0


def test_cli_evaluate_with_mapping(trained, capsys):
    from memsim.cli import main
    _, result = trained["vgg_dw"]
    assert main(["evaluate", str(result.checkpoint), "--preset", "hfox_1t1r_64", "--mode", "noisy",
                 "--mapping", "sparse", "--prune", "0.5", "--seeds", "1", "--limit", "40"]) == 0
    out = capsys.readouterr().out
    rep = mapping_report(result.checkpoint, "hfox_1t1r_64", mapping="sparse", prune=0.5)
    assert f"sparse mapping, prune 0.5: {rep['tiles']} tiles" in out and "40 test samples" in out
    assert f"{rep['zero_cells']} zero cells programmed" in out
