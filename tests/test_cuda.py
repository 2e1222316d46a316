"""The CUDA paths against the CPU: each test computes the same thing on the CPU and on the device and compares.

Selected with ``-m cuda`` (``benchmarks/gpu_check.sh`` runs them on a GPU machine). Without a CUDA device they skip.
``MEMSIM_TEST_DEVICE=cpu`` runs them with the CPU as the "device" (the comparisons then check the test logic and the
determinism of each path, not the GPU): ``MEMSIM_TEST_DEVICE=cpu python -m pytest -q -m cuda tests/test_cuda.py``.

The reference of every test is the CPU computation (itself checked against closed forms, scipy and ngspice by the
rest of the suite); where a test can, it also checks an independent reference on the device's result (the sparse
nodal solve for the operator, the standard normal's moments for read noise). Tolerances are stated per test:
float64 where the code supports it, so that a disagreement beyond rounding is a real one.
"""
from __future__ import annotations

import os
import copy
import math

import pytest
import torch

from memsim.crossbar import CrossbarArray, TileCircuit, Wires, fused, load_preset, solve_linear
from memsim.crossbar.operator import tile_operator
from memsim.deploy import Chip, evaluate_on_chips
from memsim.devices.array import DeviceArray
from memsim.devices.cards import load_card
from memsim.nn import CrossbarLinear
from memsim.training.config import parse_config
from memsim.training.data import ImageDataset
from memsim.training.loop import load_datasets, train
from memsim.training.trained import load_trained
from memsim.training.twin import MIFDynamics

F64 = torch.float64
_ENV = os.environ.get("MEMSIM_TEST_DEVICE", "").strip()
#: the device compared with the CPU: CUDA, or what MEMSIM_TEST_DEVICE names (``cpu``: a dry run of the test logic)
DEV = torch.device(_ENV or "cuda")
RUN = bool(_ENV) or torch.cuda.is_available()

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not RUN, reason="no CUDA device (MEMSIM_TEST_DEVICE=cpu runs these CPU against CPU)")]

HFOX = load_preset("hfox_1t1r_64").replace(rows=32, cols=32)


def _on(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(DEV)


def _quiet(*_, **__):
    return None


# --------------------------------------------------------------------------- the exact IR-drop operator
@pytest.mark.parametrize("circuit", [TileCircuit(Wires(r_wordline=1.0, r_bitline=1.0, r_source=10.0)),
                                     HFOX.circuit], ids=["0T1R wires", "hfox 1T1R"])
def test_operator_and_gradient_match_cpu(circuit):
    """tile_operator on the device against the CPU, float64: values rtol 1e-10, gradient w.r.t. the conductances
    rtol 1e-8; the device's operator also reproduces the sparse nodal solve (scipy LU, on the CPU) to 1e-9; the
    float32 precompute (what training uses) is within 1e-4 of float64."""
    gen = torch.Generator().manual_seed(0)
    g = 1e-6 + 1e-4 * torch.rand(3, 32, 24, generator=gen, dtype=F64)
    probe = torch.randn(3, 32, 24, generator=gen, dtype=F64)  # a fixed cotangent
    v = 0.2 * torch.rand(5, 32, generator=gen, dtype=F64)

    def op_and_grad(gg):
        gg = gg.clone().requires_grad_()
        a = tile_operator(gg, circuit)
        (a * probe.to(gg.device)).sum().backward()
        return a.detach().cpu(), gg.grad.cpu()

    a_cpu, grad_cpu = op_and_grad(g)
    a_dev, grad_dev = op_and_grad(_on(g))
    torch.testing.assert_close(a_dev, a_cpu, rtol=1e-10, atol=0)
    torch.testing.assert_close(grad_dev, grad_cpu, rtol=1e-8, atol=1e-12 * float(grad_cpu.abs().max()))
    ref = solve_linear(g[1], v, circuit)  # the sparse nodal solve, an independent reference
    assert float((v @ a_dev[1] - ref).abs().max() / ref.abs().max()) < 1e-9
    a32 = tile_operator(_on(g).float(), circuit, dtype=torch.float32).cpu().double()
    assert float((a32 - a_cpu).abs().max() / a_cpu.abs().max()) < 1e-4


# --------------------------------------------------------------------------- the noisy layer's kernels
@pytest.mark.parametrize("path", ["unfused", "fused eager", "fused compiled"])
def test_noisy_layer_forward_backward_match_cpu(path, monkeypatch):
    """A ``noisy`` CrossbarLinear (1T1R, programming noise, d2d, stuck cells, drift; no read noise, whose device
    stream differs) on the device against the same layer on the CPU, float64, two training steps (a new chip each):
    the programming draws come from the chip's CPU stream on both, so outputs agree to rtol 1e-9 and the weight
    gradients to rtol 1e-7. Paths: the unfused kernels, the fused cell chain eagerly and ``torch.compile``-d."""
    monkeypatch.setattr(fused, "ENABLED", path != "unfused")
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", path == "fused compiled")
    noise = HFOX.noise.only("program", "d2d", "stuck_on", "stuck_off", "drift")
    torch.manual_seed(3)
    cpu = CrossbarLinear(70, 40, preset=HFOX, mode="noisy", noise=noise, dtype=F64)
    dev = CrossbarLinear(70, 40, preset=HFOX, mode="noisy", noise=noise, dtype=F64)
    dev.load_state_dict(cpu.state_dict())
    dev.to(DEV)
    assert cpu.array._fusable(cpu.weight) == (path != "unfused")
    x = torch.rand(16, 70, generator=torch.Generator().manual_seed(1), dtype=F64)
    ramp = torch.linspace(-1, 1, 40, dtype=F64)
    outs = []
    for layer in (cpu, dev):
        steps = []
        for _ in range(2):
            y = layer(x.to(layer.weight.device))
            (y * ramp.to(y.device)).square().sum().backward()
            steps.append((y.detach().cpu(), layer.weight.grad.cpu()))
            layer.weight.grad = None
        outs.append(steps)
    for (y1, g1), (y2, g2) in zip(*outs):
        torch.testing.assert_close(y2, y1, rtol=1e-9, atol=1e-12 * float(y1.abs().max()))
        torch.testing.assert_close(g2, g1, rtol=1e-7, atol=1e-10 * float(g1.abs().max()))
    assert not torch.equal(outs[0][0][0], outs[0][1][0])  # a new chip each step
    assert not fused._failed  # a failed compilation would have fallen back to the unfused path with a warning


# --------------------------------------------------------------------------- read noise drawn on the device
def test_read_noise_on_the_device_has_the_cpu_distribution():
    """Read noise is drawn on the device from a generator seeded like the CPU stream, so the two devices draw
    *different* numbers (a CUDA and a CPU Philox/MT stream are not the same sequence); what must agree is the
    distribution. Checked: the device's draws are standard normal (mean within 5 standard errors of 0, variance
    within 2 % of 1, kurtosis within 0.1 of 3), reproducible from the seed, and a read-noise-only layer's output
    mean and spread over 200 reads match the CPU's (means within 6 standard errors per output, mean spread within
    8 %)."""
    arr = CrossbarArray(HFOX, 40, 70, mode="noisy", noise=HFOX.noise.only("read"))
    like = torch.zeros((), device=DEV, dtype=F64)
    z = arr._read_noise((400_000,), like)
    assert z.device.type == DEV.type and z.dtype == F64
    z = z.cpu()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 0.02
    assert abs(float((z ** 4).mean() / z.var() ** 2) - 3.0) < 0.1
    arr.reset_noise()
    torch.testing.assert_close(arr._read_noise((400_000,), like).cpu(), z, rtol=0, atol=0)

    torch.manual_seed(5)
    cpu = CrossbarLinear(70, 40, preset=HFOX, mode="noisy", noise=HFOX.noise.only("read"), dtype=F64)
    dev = copy.deepcopy(cpu).to(DEV)
    x = torch.rand(4, 70, generator=torch.Generator().manual_seed(2), dtype=F64)
    reads = []
    with torch.no_grad():
        for layer in (cpu, dev):  # training mode: each read takes its converter ranges from its own signal
            reads.append(torch.stack([layer(x.to(layer.weight.device)).cpu() for _ in range(200)]))
    (rc, rd), m = reads, 200
    se = torch.sqrt(rc.var(0) / m + rd.var(0) / m).clamp_min(1e-12 * float(rc.abs().max()))
    assert float(((rd.mean(0) - rc.mean(0)).abs() / se).max()) < 6
    assert float(rc.std(0).mean()) > 0
    assert abs(float(rd.std(0).mean() / rc.std(0).mean()) - 1.0) < 0.08


# --------------------------------------------------------------------------- the MIF neuron twin
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_mif_twin_matches_cpu(compiled):
    """MIFDynamics.run on the device (eager and torch.compile-d) against the CPU eager run, float64, 60 steps of a
    ramped input that fires spikes: voltages within 1e-9 V (eager) or 1e-7 V (compiled: the compilers reassociate),
    the gradient w.r.t. the input current within rtol 1e-6; and float32 compiled within 1e-4 of the span."""
    cur = torch.linspace(0.0, 4e-5, 6, dtype=F64).expand(60, 2, 6).contiguous()
    probe = torch.linspace(-1, 1, 6, dtype=F64)

    def run(c, twin):
        c = c.clone().requires_grad_()
        v = twin.run(c)
        (v * probe.to(v.device)).sum().backward()
        return v.detach().cpu(), c.grad.cpu()

    v_cpu, g_cpu = run(cur, MIFDynamics())
    twin = MIFDynamics(compile=compiled)
    v_dev, g_dev = run(_on(cur), twin)
    assert int(MIFDynamics().hard_spikes(v_cpu).sum()) > 0  # the stimulus makes spikes
    atol = 1e-7 if compiled else 1e-9
    torch.testing.assert_close(v_dev, v_cpu, rtol=0, atol=atol)
    torch.testing.assert_close(g_dev, g_cpu, rtol=1e-6, atol=1e-6 * float(g_cpu.abs().max()))
    if compiled:
        v32 = twin.run(_on(cur).float()).detach().cpu().double()
        assert float((v32 - v_cpu).abs().max() / (v_cpu.max() - v_cpu.min())) < 1e-4


# --------------------------------------------------------------------------- a training step
@pytest.mark.parametrize("kind", ["msnn", "ann"])
def test_training_steps_match_cpu(kind, tmp_path):
    """Two optimiser steps of a tiny digits network through ``train`` with ``training.device`` the device against
    ``training.device = "cpu"``, same config and seed (float32, as training runs): the final weights within rtol
    1e-4 (abs 1e-5 of their largest magnitude) and the first batch's loss within rtol 1e-4."""
    net = {"layers": [64, 16, 10], "time_steps": 6} if kind == "msnn" else {"kind": "ann", "layers": [64, 16, 10]}
    results = {}
    for name, device in (("ref", "cpu"), ("dev", DEV.type)):
        cfg = parse_config({"network": net, "training": {"epochs": 1, "batch_size": 32, "learning_rate": 2e-2,
                                                         "device": device},
                            "output": {"dir": str(tmp_path / name), "plot": False}}, source="test")
        results[name] = train(cfg, progress=False, log=_quiet, max_batches=2)
    a, b = results["ref"].network.state_dict(), results["dev"].network.state_dict()
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        if a[k].is_floating_point():
            assert b[k].device.type == DEV.type, k
            torch.testing.assert_close(b[k].cpu(), a[k], rtol=1e-4, atol=1e-5 * float(a[k].abs().max()))
            moved += 1
    assert moved >= 2
    la, lb = results["ref"].history[0]["train_loss"], results["dev"].history[0]["train_loss"]
    assert lb == pytest.approx(la, rel=1e-4)


# --------------------------------------------------------------------------- a sweep point's evaluation
def test_sweep_point_evaluation_matches_cpu(tmp_path):
    """A sweep point deploys a checkpoint on its chips with :func:`memsim.deploy.evaluate_on_chips`. The sweep
    worker (memsim/sweep/worker.py) always evaluates on the CPU (``device="cpu"``; only a point's fine-tuning follows
    ``training.device``), so this tests the call it makes, with ``device`` the device: a tiny digits MSNN on two
    ``noisy`` hfox_1t1r_64 chips without read noise (whose device stream differs), 120 test images. Accuracy within
    one image per chip (float32: a value on an ADC level boundary may round the other way), tile counts equal."""
    cfg = parse_config({"network": {"layers": [64, 12, 10], "time_steps": 6},
                        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 2e-2, "device": "cpu"},
                        "output": {"dir": str(tmp_path / "run"), "plot": False}}, source="tiny")
    ckpt = train(cfg, progress=False, log=_quiet, max_batches=6).checkpoint
    preset = load_preset("hfox_1t1r_64")
    preset = preset.replace(noise=preset.noise.only("program", "d2d", "stuck_on", "stuck_off"))
    train_set, test_set = load_datasets(cfg)
    test_set = ImageDataset(test_set.images[:120], test_set.labels[:120], test_set.info, test_set.split)

    def moved(d):
        return ImageDataset(d.images.to(DEV), d.labels.to(DEV), d.info, d.split)

    chips = Chip(preset, mode="noisy", seed=0).series(2)
    ev_cpu = evaluate_on_chips(load_trained(ckpt), chips, test_set, calibration=train_set, device="cpu").as_dict()
    ev_dev = evaluate_on_chips(load_trained(ckpt), chips, moved(test_set), calibration=moved(train_set),
                               device=DEV).as_dict()
    assert ev_dev["tiles"] == ev_cpu["tiles"]
    for a, b in zip(ev_cpu["per_seed"], ev_dev["per_seed"]):
        assert abs(a - b) <= 1 / 120 + 1e-12
    assert 0.2 < ev_cpu["accuracy"]  # a trained network, not chance (10 classes)


# --------------------------------------------------------------------------- device fitting
def test_device_model_for_fitting_matches_cpu():
    """Device fitting (memsim/fitting) is CPU-only by design: its Problem simulates candidate parameter sets on the
    CPU in float64 (no device argument). What would run on a GPU is the torch device model it drives: a batch of
    devices with per-device parameters (one per fitting start), integrated with RK4 under a sine, with the
    gradient w.r.t. the parameters. Device against CPU, float64: currents within 1e-10 of their largest
    magnitude, parameter gradients within rtol 1e-7."""
    card = load_card("hp_tio2_joglekar")
    d0 = torch.linspace(8e-9, 12e-9, 8, dtype=F64)

    def run(device):
        d = d0.clone().to(device).requires_grad_()
        dev = DeviceArray.from_card(card, (8,), dtype=F64, device=device, D=d)
        t, v, i, x = dev.simulate(lambda t: 1.0 * torch.sin(2 * math.pi * t), 1e-3, 400)
        i.abs().sum().backward()
        return i.detach().cpu(), d.grad.cpu()

    i_cpu, g_cpu = run("cpu")
    i_dev, g_dev = run(DEV)
    assert float((i_dev - i_cpu).abs().max() / i_cpu.abs().max()) < 1e-10
    torch.testing.assert_close(g_dev, g_cpu, rtol=1e-7, atol=1e-9 * float(g_cpu.abs().max()))
    assert bool((g_cpu != 0).any())
