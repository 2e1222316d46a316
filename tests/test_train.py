"""`memsim train` / `evaluate` / `export-spice`: runs, exact resume, hardware-aware training, bad input."""
import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from memsim.training.checkpoint import CheckpointError, read_checkpoint
from memsim.cli import main
from memsim.training.config import load_config
from memsim.errors import NonFiniteError
from memsim.training import MemristiveSNN
from memsim.training.loop import clip_weights, evaluate_checkpoint, learning_rate, train

SMALL = ["--set", "network.layers=[64,16,10]", "--set", "network.time_steps=10", "--set", "training.batch_size=128",
         "--no-progress"]


def _rows(run):
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch run of the small digits network (shared by several tests)."""
    run = tmp_path_factory.mktemp("runs") / "full"
    assert main(["train", *SMALL, "--epochs", "3", "-o", str(run)]) == 0
    return run


def test_train_writes_metrics_checkpoints_and_plot(trained):
    rows = _rows(trained)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time_s"} <= set(rows[0])
    assert float(rows[-1]["test_accuracy"]) > 0.5            # 10 classes: chance is 0.1
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    ckpts = sorted((trained / "checkpoints").glob("epoch_*.pt"))
    assert [p.name for p in ckpts] == ["epoch_0002.pt", "epoch_0003.pt"]   # keep_checkpoints = 2
    assert read_checkpoint(ckpts[-1]).epoch == 3
    assert (trained / "learning_curves.png").stat().st_size > 5000
    assert (trained / "config.toml").is_file()


def test_resume_continues_exactly(trained, tmp_path, capsys):
    run = tmp_path / "resumed"
    assert main(["train", *SMALL, "--epochs", "2", "-o", str(run)]) == 0
    # "killed" after epoch 2; continue to 3 epochs
    code, out, err = _cli(["train", *SMALL, "--epochs", "3", "-o", str(run), "--resume"], capsys)
    assert code == 0, err
    assert "resumed" in out
    a, b = _rows(trained), _rows(run)
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert ra[key] == rb[key], (key, ra, rb)
    wa = read_checkpoint(trained / "checkpoints" / "epoch_0003.pt").model_state
    wb = read_checkpoint(run / "checkpoints" / "epoch_0003.pt").model_state
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_existing_run_without_resume_is_refused(trained, capsys):
    code, _, err = _cli(["train", *SMALL, "--epochs", "3", "-o", str(trained)], capsys)
    assert code == 2 and "--resume" in err


def test_evaluate_ideal_matches_training_metric(trained, capsys):
    code, out, err = _cli(["evaluate", str(trained / "checkpoints" / "epoch_0003.pt"), "--preset", "ideal"], capsys)
    assert code == 0, err
    acc = float(_rows(trained)[-1]["test_accuracy"])
    assert f"{100 * acc:.2f} %" in out


def test_evaluate_on_preset_averages_seeds(trained):
    r = evaluate_checkpoint(trained / "checkpoints" / "epoch_0003.pt", preset="hfox_1t1r_64", seeds=2,
                            mode="noisy", limit=100)
    assert r["seeds"] == 2 and len(r["per_seed"]) == 2 and 0.0 <= r["accuracy"] <= 1.0
    assert r["accuracy"] > 0.3


def test_hardware_aware_training_through_the_preset(tmp_path):
    cfg = load_config(None, ["network.layers=[64,16,10]", "network.time_steps=8", "network.crossbar=hfox_1t1r_64",
                             "hardware.aware=true", "hardware.mode=noisy", "training.epochs=1",
                             "training.batch_size=64", f"output.dir={tmp_path / 'hw'}", "output.plot=false"])
    result = train(cfg, progress=False, log=lambda s: None, max_batches=4)
    net = result.network
    assert net.synapses[0].crossbar_layer.mode == "noisy"
    assert float(net.synapses[0].crossbar_layer.input_scale) > 0       # the DAC range was calibrated while training
    assert len(result.history) == 1


def test_hardware_aware_training_with_weight_clip_redraws_chips(tmp_path):
    cfg = load_config(None, ["network.layers=[64,16,10]", "network.time_steps=6", "network.crossbar=hfox_1t1r_64",
                             "hardware.aware=true", "training.epochs=1", "training.batch_size=64",
                             "training.weight_clip=1.0", f"output.dir={tmp_path / 'hw'}", "output.plot=false"])
    result = train(cfg, progress=False, log=lambda s: None, max_batches=3)
    for syn in result.network.synapses:
        # a 1-sigma clip of (about uniform) weights puts ~40 % of them on the bound after the last step
        w = syn.weight.detach().abs()
        assert float((w >= w.max() * (1 - 1e-6)).double().mean()) > 0.2
    # the last batch trained on its own chip (not the preset's seed-0 chip), reproducibly from (seed, step)
    seeds = [syn.crossbar_array._defect_seed for syn in result.network.synapses]
    assert seeds[0] is not None and seeds[0] != seeds[1]
    again = train(dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir=str(tmp_path / "hw2"))),
                  progress=False, log=lambda s: None, max_batches=3)
    assert [syn.crossbar_array._defect_seed for syn in again.network.synapses] == seeds
    for a, b in zip(result.network.parameters(), again.network.parameters()):
        assert torch.equal(a, b)


def test_clip_weights_closed_form():
    net = MemristiveSNN([6, 4, 3], dt=4e-5)
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    w[0, 0] = 10.0                                        # an outlier that would set the crossbar's scale
    with torch.no_grad():
        net.synapses[0].weight.copy_(w)
    bound = 2.5 * float(w.std())
    clip_weights(net, 2.5)
    assert torch.equal(net.synapses[0].weight.detach(), w.clamp(-bound, bound))


def test_cosine_schedule_closed_form_and_applied(tmp_path):
    cfg = load_config(None, ["training.lr_schedule=cosine", "training.learning_rate=0.01", "training.epochs=2",
                             "network.layers=[64,8,10]", "network.time_steps=4", f"output.dir={tmp_path / 'c'}",
                             "output.plot=false"])
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.01)
    assert learning_rate(cfg, 50, 100) == pytest.approx(0.005)
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(cfg, 25, 100) == pytest.approx(0.005 * (1 + math.cos(math.pi / 4)))
    flat = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, lr_schedule="constant"))
    assert learning_rate(flat, 77, 100) == 0.01
    # the optimizer of the last batch ran at the schedule's rate: 2 epochs x 3 batches, last step 5 of 6
    train(cfg, progress=False, log=lambda s: None, max_batches=3)
    ckpt = read_checkpoint(tmp_path / "c" / "checkpoints" / "epoch_0002.pt")
    assert ckpt.payload["optimizer"]["param_groups"][0]["lr"] == pytest.approx(learning_rate(cfg, 5, 6))


def test_non_finite_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(None, ["network.layers=[64,16,10]", "network.time_steps=6", "training.epochs=3",
                             "training.batch_size=256", f"output.dir={tmp_path / 'nan'}", "output.plot=false"])
    import memsim.training.synapses as synapses
    calls = {"n": 0}
    original = synapses.IdealSynapse.forward

    def exploding(self, v):
        calls["n"] += 1
        out = original(self, v)
        if calls["n"] > 16 and self.out_features == 10:  # during epoch 2 (6 train batches + 2 eval per epoch)
            out = out * float("inf")
        return out
    monkeypatch.setattr(synapses.IdealSynapse, "forward", exploding)
    with pytest.raises(NonFiniteError) as info:
        train(cfg, progress=False, log=lambda s: None)
    msg = str(info.value)
    assert "layer 1" in msg and "time step" in msg and "epoch 2" in msg and "epoch_0001.pt is kept" in msg
    run = tmp_path / "nan"
    assert [p.name for p in (run / "checkpoints").glob("*.pt")] == ["epoch_0001.pt"]
    assert read_checkpoint(run / "checkpoints" / "epoch_0001.pt").epoch == 1
    assert len(_rows(run)) == 1


@pytest.mark.parametrize("args, expect", [
    (["--set", "network.layers=[784,16,10]"], "does not match the data"),
    (["--set", "network.layers=[64,16,7]"], "has 10 classes"),
    (["--set", "network.time_steps=0"], "network.time_steps = 0"),
    (["--set", "encoding.name=poisson"], "Did you mean 'rate'"),
    (["--set", "network.readout=membrane"], "Did you mean 'voltage'"),
    (["--set", "training.epoch=3"], "training.epochs"),
    (["--set", "network.neuron=mif_nueron"], "mif_neuron"),
    (["--set", "network.crossbar=hfox_1t1r_46"], "hfox_1t1r_64"),
    (["--set", "network.dt=1e-3"], "dt"),
    (["--set", "hardware.aware=true"], "needs a crossbar preset"),
])
def test_bad_input_is_refused_before_training(args, expect, tmp_path, capsys):
    code, out, err = _cli(["train", *args, "-o", str(tmp_path / "bad"), "--no-progress"], capsys)
    assert code == 2
    assert expect in err
    assert not (tmp_path / "bad").exists()        # nothing written: refused before any work


def test_misspelt_key_in_config_file(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nlearning_rat = 0.01\n")
    code, _, err = _cli(["train", str(path), "-o", str(tmp_path / "r")], capsys)
    assert code == 2 and "Did you mean 'training.learning_rate'" in err


def test_checkpoint_from_another_architecture(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "epoch_0003.pt"
    code, _, err = _cli(["train", *SMALL, "--set", "network.layers=[64,32,10]", "--epochs", "1", "-o",
                         str(tmp_path / "other"), "--init", str(ckpt)], capsys)
    assert code == 2
    assert "different architecture" in err and "synapses.0.weight" in err and "[16, 64]" in err
    # resuming a run with changed layer sizes is refused too
    code, _, err = _cli(["train", *SMALL, "--set", "network.layers=[64,32,10]", "--epochs", "4", "-o", str(trained),
                         "--resume"], capsys)
    assert code == 2 and "network.layers" in err


def test_checkpoint_error_type(trained, tmp_path):
    cfg = load_config(None, ["network.layers=[64,8,10]", f"output.dir={tmp_path / 'x'}"])
    with pytest.raises(CheckpointError, match="synapses.0.weight"):
        train(cfg, init=trained / "checkpoints" / "epoch_0003.pt", progress=False, log=lambda s: None)


def test_reproducible_from_config_and_seed(trained, tmp_path):
    run = tmp_path / "again"
    assert main(["train", *SMALL, "--epochs", "1", "-o", str(run)]) == 0
    assert _rows(run)[0]["test_accuracy"] == _rows(trained)[0]["test_accuracy"]
    assert _rows(run)[0]["train_loss"] == _rows(trained)[0]["train_loss"]


@pytest.mark.spice
def test_export_spice_round_trip(trained, tmp_path, capsys):
    """The trained digits network as one ngspice netlist, checked through the CLI (``--check 3``): the output
    membrane voltages of ngspice match the torch circuit reference within the neuron tolerance (1 % of the swing),
    the fast twin's figure is reported, and ngspice predicts the reference's classes (exit code 0)."""
    import re

    ckpt = trained / "checkpoints" / "epoch_0003.pt"
    code, out, err = _cli(["export-spice", str(ckpt), "-o", str(tmp_path / "net.cir"), "--check", "3"], capsys)
    assert code == 0, out + err
    text = (tmp_path / "net.cir").read_text()
    assert ".subckt MIF_NEURON" in text and "X_1_9 mem_1_9" in text and ".tran" in text
    ref = re.search(r"ngspice vs torch reference .*max \|dV\| ([0-9.e+-]+) V = ([0-9.e+-]+) % of the ([0-9.]+) V", out)
    assert ref, out
    assert float(ref.group(2)) < 1.0 and float(ref.group(1)) < 0.01 * float(ref.group(3))
    twin = re.search(r"ngspice vs fast twin .*max \|dV\| ([0-9.e+-]+) % of the swing", out)
    assert twin and float(twin.group(1)) > 0, out
    assert re.search(r"on these 3 samples: accuracy ngspice \d/3", out), out


def test_evaluate_with_stuck_compensation(trained, tmp_path, capsys):
    """--stuck-compensation partner changes the programmed chips (same chips otherwise: the first batch's product
    error moves); on an offset-scheme preset it is refused before any data is loaded, naming the flag."""
    ckpt = str(trained / "checkpoints" / "epoch_0003.pt")
    base = ["evaluate", ckpt, "--preset", "hfox_1t1r_64", "--seeds", "1", "--limit", "64", "--json"]
    errors = {}
    for comp in ("none", "partner"):
        code, out, err = _cli([*base, "--stuck-compensation", comp], capsys)
        assert code == 0, err
        errors[comp] = json.loads(out)["output_error"]
    assert errors["partner"] != errors["none"]
    offset = tmp_path / "offset.toml"
    text = (Path(__file__).resolve().parent.parent / "crossbar" / "hfox_1t1r_64.toml").read_text()
    offset.write_text(text.replace('scheme = "differential"', 'scheme = "offset"'))
    code, out, err = _cli(["evaluate", ckpt, "--preset", str(offset), "--stuck-compensation", "partner"], capsys)
    assert code == 2 and "--stuck-compensation" in err and "differential" in err


def test_max_batches_caps_every_epoch_and_is_kept_in_the_run(tmp_path):
    """training.max_batches = 3: each epoch takes 3 optimizer steps (Adam's step count after 2 epochs: 6, where
    the digits' 1 437 training images make 12 batches of 128), and the run's config.toml keeps the cap."""
    run = tmp_path / "capped"
    assert main(["train", *SMALL, "--epochs", "2", "-o", str(run), "--set", "training.max_batches=3",
                 "--no-progress"]) == 0
    state = read_checkpoint(run / "checkpoints" / "epoch_0002.pt").payload["optimizer"]["state"]
    assert {int(v["step"]) for v in state.values()} == {6}
    assert load_config(run / "config.toml").training.max_batches == 3
