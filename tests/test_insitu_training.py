"""In-situ training through the training runner (training.update = "pulsed"): the ANN and MSNN trainers hold their
crossbar weights as device pairs, report the pulse counts per epoch, checkpoint the devices and resume exactly.

References: the network's weights after training equal what its device pairs hold (read back independently from
the optimiser's conductances); a run killed after epoch 1 and resumed ends bit-identical to an uninterrupted one
(the conductances, the device spread and the pulse generator are in the checkpoint); float training is unchanged.
"""
import pytest
import torch
from torch import nn

from memsim.errors import ConfigError
from memsim.pulse import load_response
from memsim.training import train
from memsim.training.config import parse_config
from memsim.training.network import MemristiveSNN


def _ann(tmp_path, name, epochs=1, **training):
    return parse_config({"network": {"kind": "ann", "layers": [64, 24, 10]},
                         "training": {"epochs": epochs, "batch_size": 32, "optimizer": "sgd", "momentum": 0.0,
                                      "learning_rate": 0.1, "update": "pulsed", "device": "cpu", **training},
                         "output": {"dir": str(tmp_path / name), "plot": False}})


def _quiet(*_):
    pass


def test_ann_pulsed_run_reports_pulses_and_holds_the_pairs_weights(tmp_path):
    cfg = _ann(tmp_path, "sgd", pulse_response="pulse_exp_saturation", pulse_max=3)
    res = train(cfg, progress=False, log=_quiet, max_batches=6)
    row = res.final
    assert row["pulses"] > 0 and row["pulses_clipped"] >= 0 and row["transfers"] == 0
    assert {"pulses", "pulses_clipped", "pulses_clipped_fraction", "refreshes"} <= set(res.history[0])
    pairs = torch.load(res.checkpoint, weights_only=True)["optimizer"]["insitu"]["algorithms"]
    linears = [m for m in res.network.modules() if isinstance(m, nn.Linear)]
    assert len(pairs) == len(linears) == 2
    resp = load_response("pulse_exp_saturation")
    for m, s in zip(linears, pairs):
        gp, gm = s["array"]["g"]
        lo = [sp["g_min"] for sp in s["array"]["spread"]]
        w = ((gp - lo[0]) - (gm - lo[1])) * s["array"]["w_max"] / (resp.g_max - resp.g_min)
        assert torch.allclose(m.weight.detach(), w, rtol=1e-5, atol=1e-7)
        for g, spread in zip((gp, gm), s["array"]["spread"]):   # inside each device's own window
            assert bool((g >= spread["g_min"]).all()) and bool((g <= spread["g_max"]).all())


def test_a_resumed_pulsed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    kw = dict(pulse_response="pulse_linear_step", pulse_algorithm="tiki_taka", tiki_taka_every=2)
    full = train(_ann(tmp_path, "full", epochs=2, **kw), progress=False, log=_quiet, max_batches=4)
    train(_ann(tmp_path, "part", epochs=1, **kw), progress=False, log=_quiet, max_batches=4)
    resumed = train(_ann(tmp_path, "part", epochs=2, **kw), resume=True, progress=False, log=_quiet, max_batches=4)
    for a, b in zip(full.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)
    assert [r["pulses"] for r in full.history] == [r["pulses"] for r in resumed.history]
    assert full.history[-1]["transfers"] == 2 * 2   # 4 steps / every 2, for each of the two weight tensors


def test_msnn_pulsed_run(tmp_path):
    cfg = parse_config({"network": {"layers": [64, 16, 10], "time_steps": 4},
                        "training": {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "momentum": 0.0,
                                     "learning_rate": 0.1, "update": "pulsed", "device": "cpu"},
                        "output": {"dir": str(tmp_path / "msnn"), "plot": False}})
    torch.manual_seed(0)   # the trainer seeds with training.seed = 0 before building the network: the same init
    init = [s.weight.detach().clone() for s in MemristiveSNN([64, 16, 10], time_steps=4).synapses]
    res = train(cfg, progress=False, log=_quiet, max_batches=3)
    assert res.final["pulses"] > 0
    # the synapses' weights are what their pairs hold: (G+ - G-) / (window / w_max), w_max = 4 x the initial max
    algos = torch.load(res.checkpoint, weights_only=True)["optimizer"]["insitu"]["algorithms"]
    for syn, w0, a in zip(res.network.synapses, init, algos):
        gp, gm = a["array"]["g"]
        assert a["array"]["w_max"] == pytest.approx(4.0 * float(w0.abs().max()), rel=1e-6)
        w = (gp - gm) * a["array"]["w_max"] / 1.8e-5
        assert torch.allclose(syn.weight.detach(), w, rtol=1e-4, atol=1e-6)
        assert not torch.equal(syn.weight.detach(), w0)


def test_float_training_keeps_its_plain_optimiser(tmp_path):
    cfg = parse_config({"network": {"kind": "ann", "layers": [64, 24, 10]},
                        "training": {"epochs": 1, "device": "cpu"}, "output": {"dir": str(tmp_path / "f"),
                                                                                "plot": False}})
    res = train(cfg, progress=False, log=_quiet, max_batches=2)
    assert "pulses" not in res.final
    assert "insitu" not in torch.load(res.checkpoint, weights_only=True)["optimizer"]


def test_bad_pulse_settings_fail_before_the_run_starts(tmp_path):
    cfg = _ann(tmp_path, "bad", pulse_response="stanford_pku_hfox_10k", pulse_set_voltage=0.1,
               pulse_reset_voltage=-1.1, pulse_width=1e-7)
    with pytest.raises(ConfigError, match="switching threshold"):
        train(cfg, progress=False, log=_quiet, max_batches=1)
    assert not (tmp_path / "bad").exists()   # nothing written, no data loaded


def test_benchmark_validation_split_holds_out_the_last_training_images(tmp_path):
    """bench_insitu.py --validation: training on all but the last HELD_OUT training images, evaluated on those."""
    import runpy
    from argparse import Namespace
    from pathlib import Path

    import numpy as np

    from memsim.training.data import load_dataset, write_idx

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_insitu.py"))
    held = bench["HELD_OUT"]
    assert held == 10000
    src = tmp_path / "fashion"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(held + 12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=held + 12, dtype=np.uint8)
    write_idx(src / "train-images-idx3-ubyte", images)
    write_idx(src / "train-labels-idx1-ubyte", labels)
    args = Namespace(validation=True, data_dir=str(src), out=tmp_path / "out", kind="ann", epochs=1, batch=4,
                     lr=0.1, lr_schedule="cosine", grad_clip=0.0, seed=0, threads=1, weight_range=4.0, max_pulses=10,
                     tt_every=16, tt_fast_range=0.25, tt_lr=1.0, tt_gamma=1.0, tt_transfer="residual")
    cfg = bench["config"](args, tmp_path / "runs", "x", {})
    assert (cfg.data.dataset, cfg.data.num_classes, cfg.training.lr_schedule) == ("custom_idx", 10, "cosine")
    train_set = load_dataset("custom_idx", "train", data_dir=cfg.data.data_dir, num_classes=10)
    val_set = load_dataset("custom_idx", "test", data_dir=cfg.data.data_dir, num_classes=10)
    (xt, yt), (xv, yv) = train_set.tensors(), val_set.tensors()
    assert (len(yt), len(yv)) == (12, held)
    pixels = lambda x: np.rint(x.reshape(len(x), 28, 28).numpy() * 255).astype(np.uint8)  # noqa: E731
    assert np.array_equal(pixels(xt), images[:12]) and np.array_equal(pixels(xv), images[12:])
    assert np.array_equal(yt.numpy(), labels[:12]) and np.array_equal(yv.numpy(), labels[12:])
