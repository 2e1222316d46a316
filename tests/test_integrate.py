"""Integrators against closed-form solutions: order of accuracy, stiffness, vector states, autograd, devices."""
import math

import pytest
import torch

from memsim.errors import MemsimError, NonFiniteError, ParameterError
from memsim.integrate import odeint, step

F64 = torch.float64


def decay_error(method, n, k=3.0, T=1.0):
    x0 = torch.tensor([1.0, 2.0], dtype=F64)
    traj = odeint(lambda t, x: -k * x, x0, T / n, n, method=method)
    return (traj[-1] - x0 * math.exp(-k * T)).abs().max().item()


@pytest.mark.parametrize("method,order", [("euler", 1), ("rk4", 4), ("backward_euler", 1), ("trapezoid", 2)])
def test_convergence_order_on_exponential_decay(method, order):
    # x' = -k x has x(T) = x0 e^{-kT}; halving dt must divide the error by ~2^order
    e1, e2 = decay_error(method, 40), decay_error(method, 80)
    assert math.log2(e1 / e2) == pytest.approx(order, abs=0.25)


def test_time_dependent_forcing_rk4():
    # x' = cos(t), x(0) = 0  ->  x = sin(t); RK4 must sample the forcing at the half steps
    traj = odeint(lambda t, x: torch.cos(t) * torch.ones_like(x), torch.zeros(1, dtype=F64), 0.01, 300, method="rk4")
    t = torch.arange(301, dtype=F64) * 0.01
    assert (traj[:, 0] - torch.sin(t)).abs().max().item() < 1e-10


def test_stiff_problem_needs_implicit_method():
    # x' = -k (x - cos t), k = 1e4: explicit RK4 at dt = 1e-2 is unstable, backward Euler is not.
    # exact: x = (k^2 cos t + k sin t)/(k^2 + 1) + e^{-kt}/(k^2 + 1)
    f = lambda t, x: -1e4 * (x - torch.cos(t))
    with pytest.raises(NonFiniteError, match="step"):
        odeint(f, torch.ones(1, dtype=F64), 1e-2, 300, method="rk4")
    traj = odeint(f, torch.ones(1, dtype=F64), 1e-2, 300, method="backward_euler")
    t = torch.arange(301, dtype=F64) * 1e-2
    k = 1e4
    exact = (k * k * torch.cos(t) + k * torch.sin(t) + torch.exp(-k * t)) / (k * k + 1)
    assert (traj[1:, 0] - exact[1:]).abs().max().item() < 2e-6


@pytest.mark.parametrize("method", ["rk4", "trapezoid", "backward_euler"])
def test_vector_state_harmonic_oscillator(method):
    # [q, p]' = [p, -w^2 q] with a per-batch frequency: q = cos(w t)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    f = lambda t, y: torch.stack([y[..., 1], -(w ** 2) * y[..., 0]], dim=-1)
    y0 = torch.stack([torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)], -1)
    n, dt = (1000 if method == "rk4" else 250), 1e-3   # the implicit steps' Newton solves cost more per step
    traj = odeint(f, y0, dt, n, method=method, state_dim=2)
    tol = {"rk4": 1e-11, "trapezoid": 1e-5, "backward_euler": 1e-2}[method]
    assert (traj[-1, :, 0] - torch.cos(w * n * dt)).abs().max().item() < tol


def test_gradient_through_trajectory_matches_closed_form():
    # x(T) = x0 e^{-kT}: d x(T) / dk = -T x0 e^{-kT}
    k = torch.tensor(2.0, dtype=F64, requires_grad=True)
    traj = odeint(lambda t, x: -k * x, torch.ones(1, dtype=F64), 0.01, 100, method="rk4")
    traj[-1].sum().backward()
    assert k.grad.item() == pytest.approx(-1.0 * math.exp(-2.0), rel=1e-8)


def test_gradient_through_implicit_steps():
    k = torch.tensor(2.0, dtype=F64, requires_grad=True)
    traj = odeint(lambda t, x: -k * x, torch.ones(1, dtype=F64), 0.001, 1000, method="trapezoid")
    traj[-1].sum().backward()
    assert k.grad.item() == pytest.approx(-1.0 * math.exp(-2.0), rel=1e-5)


def test_float32_runs_in_float32():
    traj = odeint(lambda t, x: -x, torch.ones(4), 0.1, 10, method="rk4")
    assert traj.dtype == torch.float32
    assert traj[-1, 0].item() == pytest.approx(math.exp(-1.0), rel=1e-6)


def test_bad_method_and_steps():
    with pytest.raises(ParameterError, match="method"):
        odeint(lambda t, x: x, torch.ones(1), 0.1, 3, method="rk45")
    with pytest.raises(ParameterError, match="substeps"):
        odeint(lambda t, x: x, torch.ones(1), 0.1, 3, substeps=0)


def test_substeps_improve_euler():
    coarse = decay_error("euler", 20)
    x0 = torch.tensor([1.0, 2.0], dtype=F64)
    fine = (odeint(lambda t, x: -3.0 * x, x0, 1 / 20, 20, method="euler", substeps=8)[-1]
            - x0 * math.exp(-3.0)).abs().max().item()
    assert fine < coarse / 6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    f = lambda t, x: -3.0 * x + torch.sin(t)
    cpu = odeint(f, torch.ones(8, dtype=F64), 0.01, 100)
    gpu = odeint(f, torch.ones(8, dtype=F64, device="cuda"), 0.01, 100)
    torch.testing.assert_close(gpu.cpu(), cpu)
