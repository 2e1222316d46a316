"""The batched torch twin: per-device parameters, dtypes, autograd through device dynamics."""
import math

import pytest
import torch

from memsim import DeviceArray, Sine, load_card
from memsim.devices.simulate import torch_trace

F64 = torch.float64


def test_batch_with_per_device_parameters_equals_separate_runs():
    card = load_card("hp_tio2_joglekar")
    stim = Sine(1.0, 1.0)
    r_on = torch.tensor([80.0, 100.0, 150.0], dtype=F64)
    batch = DeviceArray.from_card(card, (3,), dtype=F64, R_on=r_on)
    _, _, i_batch, x_batch = batch.simulate(stim, 1e-3, 1000)
    for k in range(3):
        single = DeviceArray.from_card(card, (1,), dtype=F64, R_on=float(r_on[k]))
        _, _, i_one, x_one = single.simulate(stim, 1e-3, 1000)
        torch.testing.assert_close(i_batch[:, k], i_one[:, 0], rtol=1e-12, atol=0)
    # drift speed mu_v R_on / D^2 grows with R_on: the state moves further by the voltage peak
    assert x_batch[250, 2] > x_batch[250, 1] > x_batch[250, 0] > card.parameters["x0"]


def test_float32_agrees_with_float64():
    card = load_card("yakopcic_oblea")
    stim = Sine(0.45, 100.0)
    a = torch_trace(card, stim, 1e-5, dtype=torch.float32)
    b = torch_trace(card, stim, 1e-5, dtype=F64)
    assert abs(a.i - b.i).max() / abs(b.i).max() < 1e-4


def test_gradient_wrt_device_parameter_matches_finite_difference():
    card = load_card("hp_tio2_joglekar")
    stim = Sine(1.0, 1.0)

    def charge(mu):  # integral of current over one period, a smooth function of mu_v
        dev = DeviceArray.from_card(card, (1,), dtype=F64, mu_v=mu)
        t, v, i, x = dev.simulate(stim, 2e-3, 250)  # half a period: current flows one way
        return i.sum() * 2e-3

    mu = torch.tensor([1e-14], dtype=F64, requires_grad=True)
    charge(mu).backward()
    h = 1e-18
    fd = (charge(torch.tensor([1e-14 + h], dtype=F64)) - charge(torch.tensor([1e-14 - h], dtype=F64))) / (2 * h)
    assert mu.grad.item() == pytest.approx(fd.item(), rel=1e-5)
    assert mu.grad.item() > 0  # faster drift -> lower resistance sooner -> more charge


def test_gradient_wrt_drive_voltage_is_finite_over_long_sequences():
    card = load_card("stanford_pku_hfox")
    dev = DeviceArray.from_card(card, (4,), dtype=F64)
    amp = torch.tensor([1.0, 1.2, 1.4, 1.5], dtype=F64, requires_grad=True)
    t, v, i, x = dev.simulate(lambda t: amp * torch.sin(2 * math.pi * 1e5 * t), 5e-9, 2000)
    i.abs().sum().backward()
    assert torch.isfinite(amp.grad).all() and (amp.grad > 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    card = load_card("vteam_default")
    stim = Sine(0.25, 1e6)
    a = torch_trace(card, stim, 5e-10, dtype=F64, device="cpu")
    b = torch_trace(card, stim, 5e-10, dtype=F64, device="cuda")
    assert abs(a.i - b.i).max() / abs(a.i).max() < 1e-10


def test_compiled_simulation_matches_eager_and_records_a_subset():
    # torch.compile fuses each RK4 step; it must give the same trace (up to reassociation) as the eager path
    card = load_card("hp_tio2_joglekar")
    dev = DeviceArray.from_card(card, (64,), dtype=torch.float64, D=torch.linspace(8e-9, 12e-9, 64, dtype=torch.float64))
    stim = Sine(1.0, 1.0, cycles=1)
    eager = dev.simulate(stim, 1e-3, 300)
    _, v, i, x = dev.simulate(stim, 1e-3, 300, record=slice(0, 4), compile=True)
    assert i.shape == (301, 4)
    torch.testing.assert_close(i, eager[2][:, :4], rtol=1e-10, atol=1e-18)
    torch.testing.assert_close(x, eager[3][:, :4], rtol=1e-10, atol=1e-15)
