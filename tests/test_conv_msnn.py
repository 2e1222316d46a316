"""The VGG-shaped convolutional MSNN (network.conv_channels = [c1, c2, ...]): conv crossbar stages padded to keep
the size, 2x2 current pooling into each stage's MIF neurons, dense layers after. Checked against plain torch
(F.conv2d + F.avg_pool2d on the same weights), on a preset chip, through checkpoints, and by training on digits."""
import pytest
import torch
from torch.nn import functional as F

from memsim.crossbar.presets import load_preset
from memsim.deploy.chip import Chip
from memsim.deploy.kinds import network_kind
from memsim.errors import ConfigError, ParameterError
from memsim.training import MemristiveSNN
from memsim.training.checkpoint import read_checkpoint
from memsim.training.config import load_config, parse_config
from memsim.training.loop import build_encoder, evaluate_checkpoint, load_datasets, train
from memsim.training.network import conv_stages
from memsim.training.synapses import IdealConvSynapse, PresetConvSynapse
from memsim.training.trained import load_trained

SMALL = ["network.layers=[64,10]", "network.conv_channels=[4,8]", "network.time_steps=6", "training.batch_size=64",
         "training.learning_rate=2e-2", "output.plot=false"]


def _plain_currents(v, weights, g_unit):
    """Plain torch: each stage a padded conv2d of the image, its outputs averaged over 2x2 blocks (A)."""
    return F.avg_pool2d(F.conv2d(v, weights, padding=weights.shape[-1] // 2), 2) * g_unit


def test_stage_shapes_follow_the_vgg():
    stages = conv_stages(784, [16, 32, 64], 3, 1)
    assert [s[0] for s in stages] == [(1, 28, 28), (16, 14, 14), (32, 7, 7)]
    assert [s[4:] for s in stages] == [(1, 2)] * 3                   # padding 1 (size kept), 2x2 pooling
    net = MemristiveSNN([784, 10], conv=([16, 32, 64], 3, 1), time_steps=2)
    assert net.layers == [784, 16 * 14 * 14, 32 * 7 * 7, 64 * 3 * 3, 10]   # 28 -> 14 -> 7 -> 3, as the ANN VGG
    assert [tuple(s.weight.shape) for s in net.synapses] == [(16, 1, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3),
                                                             (10, 576)]
    assert conv_stages(784, 8, 3, 2) == [((1, 28, 28), 8, 3, 2, 0, 1)]   # the integer form: the old single stage


def test_network_matches_plain_torch_conv_and_pooling():
    """Every stage's currents are F.conv2d + F.avg_pool2d of the previous stage's membrane voltages (float64); the
    neurons are then driven by exactly those currents (the same MIF twin run on the plain-torch currents)."""
    torch.manual_seed(3)
    net = MemristiveSNN([64, 10], conv=([4, 8], 3, 1), time_steps=5).double()
    T, B = 5, 3
    x = torch.rand(T, B, 64, dtype=torch.float64) * 0.2
    with torch.no_grad():
        out = net(x)
        v = x
        for k, (syn, neu) in enumerate(zip(net.synapses, net.neurons)):
            if k < 2:
                c, h = syn.image_shape[0], syn.image_shape[1]
                img = v.reshape(T * B, c, h, h)
                cur = _plain_currents(img, syn.weight, net.g_unit).reshape(T, B, -1)
            else:
                cur = (v @ syn.weight.T) * net.g_unit
            torch.testing.assert_close(syn(v), cur, rtol=1e-12, atol=1e-18)
            v = neu.run(cur)
            torch.testing.assert_close(out.voltages[k], v, rtol=1e-12, atol=1e-12)
    assert [tuple(v.shape) for v in out.voltages] == [(T, B, 64), (T, B, 32), (T, B, 10)]


def test_preset_stage_in_ideal_mode_is_the_plain_convolution():
    torch.manual_seed(1)
    ideal = IdealConvSynapse((4, 6, 6), 5, 3, 1, 1e-4, padding=1, pool=2)
    chip = PresetConvSynapse((4, 6, 6), 5, 3, 1, 1e-4, preset="hfox_1t1r_64", mode="ideal", padding=1, pool=2)
    with torch.no_grad():
        chip.weight.copy_(ideal.weight)
    v = torch.rand(7, 4 * 36) * 0.2
    expect = _plain_currents(v.reshape(7, 4, 6, 6), ideal.weight, 1e-4).reshape(7, -1)
    torch.testing.assert_close(ideal(v), expect)
    torch.testing.assert_close(chip(v), expect, rtol=1e-4, atol=1e-10)
    assert chip.out_shape == (5, 3, 3) and chip.crossbar_layer.padding == (1, 1)


@pytest.mark.parametrize("overrides, key", [
    (["network.conv_channels=[4,8,16,32]"], "network.conv_channels"),   # 8 -> 4 -> 2 -> 1 -> nothing
    (["network.conv_channels=[4,8]", "network.conv_kernel=2"], "network.conv_kernel"),
    (["network.conv_channels=[4,8]", "network.conv_stride=2"], "network.conv_stride"),
    (["network.conv_channels=[]"], "network.conv_channels"),
    (["network.conv_channels=[4,0]"], "network.conv_channels"),
    (["network.conv_channels=-1"], "network.conv_channels"),
    (["data.dataset=cifar10", "network.layers=[3072,10]", "network.conv_channels=[4]"], "network.conv_channels"),
])
def test_bad_conv_configs_are_refused(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.key == key and key in str(info.value) and info.value.allowed   # names the key and the fix


def test_bad_stages_refused_by_the_network_itself():
    with pytest.raises(ParameterError, match="square"):
        MemristiveSNN([60, 10], conv=([4], 3, 1))
    with pytest.raises(ParameterError, match="at most 2 stages"):
        MemristiveSNN([16, 10], conv=([4, 4, 4], 3, 1))


def test_config_keeps_both_forms_through_toml():
    cfg = load_config(None, ["network.conv_channels=[4,8]"])
    assert cfg.network.conv_channels == (4, 8)
    assert parse_config(cfg.to_dict()).network.conv_channels == (4, 8)
    assert "conv_channels = [4, 8]" in cfg.to_toml()
    old = load_config(None, ["network.conv_channels=4"])          # the integer form of older configs/checkpoints
    assert old.network.conv_channels == 4 and "conv_channels = 4\n" in old.to_toml()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three epochs of the small conv MSNN on digits (eager, ~5 s on one core)."""
    out = tmp_path_factory.mktemp("conv") / "run"
    cfg = load_config(None, [*SMALL, "training.epochs=3", f"output.dir={out}"])
    result = train(cfg, progress=False, log=lambda s: None)
    return out, result


def test_learns_the_digits(run):
    _, result = run
    assert result.network.layers == [64, 4 * 4 * 4, 8 * 2 * 2, 10]
    accs = [h["test_accuracy"] for h in result.history]
    assert accs[-1] > 0.85, accs                    # 10 classes: chance is 0.1 (measured 92.5 %)


def test_checkpoint_records_the_architecture_and_deploys(run):
    out, result = run
    path = sorted((out / "checkpoints").glob("epoch_*.pt"))[-1]
    ckpt = read_checkpoint(path)
    assert ckpt.config["network"]["conv_channels"] == [4, 8]
    assert ("synapses.1.weight", (8, 4, 3, 3)) in ckpt.architecture
    trained = load_trained(path)
    kind = network_kind("msnn")
    images, labels = load_datasets(trained.config)[1].tensors()
    x = build_encoder(trained.config)(images[:50])
    with torch.no_grad():
        ref = result.network.eval()(x).scores
        ideal = kind.deploy(trained, Chip.ideal())(x).scores
        chip = Chip(load_preset("hfox_1t1r_64"), mode="ideal")      # mapped on tiles, no converters or noise
        on_tiles = kind.deploy(trained, chip)
        sparse = kind.deploy(trained, Chip(load_preset("hfox_1t1r_64"), mode="ideal", mapping="sparse"))
        assert isinstance(on_tiles.synapses[1], PresetConvSynapse)
        torch.testing.assert_close(ideal, ref)
        torch.testing.assert_close(on_tiles(x).scores, ref, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(sparse(x).scores, ref, rtol=1e-3, atol=1e-5)


def test_evaluate_on_the_ideal_chip_and_with_exact_ir_drop(run):
    """The ideal chip reproduces the training metric; real chips (exact IR drop) are evaluated through the path of
    `memsim evaluate CKPT --preset hfox_1t1r_64 --seeds 2 --mode irdrop`."""
    out, result = run
    path = sorted((out / "checkpoints").glob("epoch_*.pt"))[-1]
    r = evaluate_checkpoint(path, preset="ideal")
    assert r["accuracy"] == pytest.approx(result.history[-1]["test_accuracy"], abs=1e-9)
    irdrop = Chip(load_preset("hfox_1t1r_64"), mode="irdrop", calibration_samples=64)
    r = evaluate_checkpoint(path, irdrop, seeds=2, limit=100)
    assert r["seeds"] == 2 and r["mode"] == "irdrop" and r["accuracy"] > 0.5, r["per_seed"]


def test_resume_continues_the_conv_run(run, tmp_path):
    _, result = run
    out = tmp_path / "resumed"
    train(load_config(None, [*SMALL, "training.epochs=2", f"output.dir={out}"]), progress=False, log=lambda s: None)
    resumed = train(load_config(None, [*SMALL, "training.epochs=3", f"output.dir={out}"]), resume=True,
                    progress=False, log=lambda s: None)
    assert [h["test_accuracy"] for h in resumed.history] == [h["test_accuracy"] for h in result.history]


def test_old_integer_form_checkpoint_still_loads(tmp_path):
    out = tmp_path / "old"
    cfg = load_config(None, ["network.layers=[64,16,10]", "network.time_steps=4", "network.conv_channels=4",
                             "network.conv_stride=2", "training.epochs=1", f"output.dir={out}", "output.plot=false"])
    train(cfg, progress=False, log=lambda s: None, max_batches=2)
    trained = load_trained(out)
    assert trained.config.network.conv_channels == 4
    net = network_kind("msnn").deploy(trained, Chip.ideal())
    assert net.layers == [64, 4 * 3 * 3, 16, 10] and net.synapses[0].pool == 1 and net.synapses[0].padding == 0
