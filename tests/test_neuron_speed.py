"""The fast paths of the MIF training twin against the generic ones: the held (direct-input) current, the
membrane step's Jacobian probe in both forms, the compiled range penalty and the non-finite check's fast path.
Correctness only; the speed is measured by benchmarks/bench_train.py."""
import math

import pytest
import torch
from torch.nn import functional as F

from memsim.errors import NonFiniteError, ParameterError
from memsim.training import MemristiveSNN, MIFDynamics
from memsim.training.network import SNNOutput

DT = 4e-5


def test_held_current_equals_the_expanded_sequence_values_and_gradients():
    # run(current [B, N], steps=T) is the same current at every step: values and input gradient equal those of
    # the materialised [T, B, N] sequence (float64; the gradient is the sum of the per-step gradients)
    torch.manual_seed(0)
    twin = MIFDynamics(dt=DT)
    base = torch.rand(3, 5, dtype=torch.float64) * 4e-5
    weights = torch.rand(12, 3, 5, dtype=torch.float64)
    held = base.clone().requires_grad_()
    v_held = twin.run(held, steps=12)
    (v_held * weights).sum().backward()
    seq = base.clone().requires_grad_()
    v_seq = twin.run(seq.unsqueeze(0).repeat(12, 1, 1))
    (v_seq * weights).sum().backward()
    assert torch.equal(v_held, v_seq)
    assert torch.allclose(held.grad, seq.grad, rtol=1e-12, atol=0)


def test_network_direct_input_uses_the_held_current_and_matches_a_sequence_input():
    # a constant (stride-0) input runs the first stage on the held current; a non-constant tensor with the same
    # values takes the general path: same voltages and weight gradients
    torch.manual_seed(1)
    net = MemristiveSNN([6, 4, 3], dt=DT, time_steps=8).double()
    img = torch.rand(2, 6, dtype=torch.float64) * 0.2
    labels = torch.tensor([0, 2])
    results = []
    for x in (img.unsqueeze(0).expand(8, 2, 6), img.unsqueeze(0).repeat(8, 1, 1)):
        net.zero_grad()
        out = net(x)
        net.loss(out, labels).backward()
        results.append(([v.detach() for v in out.voltages], [p.grad.clone() for p in net.parameters()]))
    (v_a, g_a), (v_b, g_b) = results
    for a, b in zip(v_a, v_b):
        assert torch.allclose(a, b, rtol=1e-13, atol=0)
    for a, b in zip(g_a, g_b):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14 * float(a.abs().max()))


def test_held_current_needs_a_step_count_and_a_matrix():
    twin = MIFDynamics(dt=DT)
    with pytest.raises(ParameterError, match="steps"):
        twin.run(torch.zeros(2, 3), steps=0)
    with pytest.raises(ParameterError, match="steps"):
        twin.run(torch.zeros(4, 2, 3), steps=4)
    with pytest.raises(ParameterError, match=r"current.shape.*\[T, B, N\]"):
        twin.run(torch.zeros(2, 3))


@pytest.mark.parametrize("split", [False, True])
def test_membrane_step_is_the_rc_closed_form(monkeypatch, split):
    # both forms of the Jacobian probe (eager: one call on a stacked pair; compiled: two calls, here forced eagerly)
    # give the membrane's exact solution for frozen memristors, V_inf + (V - V_inf) exp(-G h / C), with
    # G = G(x1) + G(x2) and V_inf = (G1 E1 + G2 E2 + I) / G written out from the card's parameters
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: split)
    torch.manual_seed(2)
    twin = MIFDynamics(dt=DT)
    p, (m1, m2) = twin.p, twin.devices
    V = torch.rand(4, 6, dtype=torch.float64) * 0.3 - 0.05
    x1, x2 = torch.rand(2, 4, 6, dtype=torch.float64)
    current = torch.rand(4, 6, dtype=torch.float64) * 5e-5
    h = twin.dt
    got = twin._exp_v(V, (x1, x2), current, h)
    g1 = x1 / float(m1.R_on) + (1 - x1) / float(m1.R_off)
    g2 = x2 / float(m2.R_on) + (1 - x2) / float(m2.R_off)
    g = g1 + g2
    v_inf = (g1 * float(p.E1) + g2 * float(p.E2) + current) / g
    expect = v_inf + (V - v_inf) * torch.exp(-g * h / float(p.C))
    assert torch.allclose(got, expect, rtol=1e-9, atol=1e-12)


def test_both_probe_forms_give_the_same_steps_and_gradients(monkeypatch):
    torch.manual_seed(3)
    cur = torch.rand(10, 3, 4, dtype=torch.float64) * 4e-5
    runs = []
    for split in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: split)
        c = cur.clone().requires_grad_()
        v = MIFDynamics(dt=DT).run(c)
        (v * torch.linspace(0.5, 1.5, 4, dtype=torch.float64)).sum().backward()
        runs.append((v.detach(), c.grad))
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.allclose(runs[0][1], runs[1][1], rtol=1e-12, atol=0)


def test_range_penalty_closed_form():
    # the penalty's function (eager; compiled when the network is) against a plain loop over elements
    from memsim.training import network as network_module

    torch.manual_seed(4)
    net = MemristiveSNN([5, 3], dt=DT, time_steps=4)
    lo, hi = net.voltage_range()
    v = torch.tensor([lo - 0.3, lo - 0.01, lo, 0.0, hi, hi + 0.02, hi + 0.5], dtype=torch.float64)
    expect = sum(((max(0.0, float(a) - hi) + max(0.0, lo - float(a))) / 0.1) ** 2 for a in v) / len(v)
    assert math.isclose(float(network_module._excursion(v, lo, hi)), expect, rel_tol=1e-12)
    # the range penalty of an output: one term per stage, the mean over that stage's [T, B, N]
    volts = [torch.rand(4, 2, 3, dtype=torch.float64) * 1.4 - 0.7 for _ in range(2)]
    out = SNNOutput(None, None, volts)
    ref = sum((((F.relu(w - hi) + F.relu(lo - w)) / 0.1) ** 2).mean() for w in volts)
    assert torch.allclose(net.range_penalty(out), ref, rtol=1e-12, atol=0)


def test_non_finite_check_fast_path_and_search():
    twin = MIFDynamics(dt=DT)
    current = torch.full((6, 2, 3), 1e-5)
    finite = [torch.zeros(6, 2, 3), torch.zeros(2, 3), torch.zeros(2, 3)]
    # huge but finite voltages overflow the sum (the fast path's test) and must not raise
    big = torch.full((6, 2, 3), 3e38)
    twin._check_finite(big, (big[-1], big[-1], big[-1]), current, 0)
    twin._check_finite(finite[0], tuple(finite), current, 0)
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        v = torch.zeros(6, 2, 3)
        v[3, 1, 2] = bad_value
        v[4:, 1, 2] = bad_value
        with pytest.raises(NonFiniteError, match=r"layer 2 .*neuron 2 \(batch item 1\).*time step 3"):
            twin._check_finite(v, (v[-1], v[-1], v[-1]), current, 2)
    # a non-finite memristor state at the last step (V finite) is located at the last step
    x = torch.zeros(2, 3)
    x[0, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"neuron 1 \(batch item 0\).*time step 5"):
        twin._check_finite(finite[0], (finite[0][-1], x, finite[2]), current, 0)
    # a held [B, N] current is named in the message too
    with pytest.raises(NonFiniteError, match=r"input current 1e-05 A"):
        twin._check_finite(finite[0], (finite[0][-1], x, finite[2]), current[0], 0)


@pytest.mark.slow   # a torch.compile of its own (~10-30 s on a loaded 2-core machine)
def test_compiled_range_penalty_matches_eager_values_and_gradients():
    # training.compile also compiles the penalty: the same function, fused; values and gradients unchanged
    torch.manual_seed(5)
    net = MemristiveSNN([5, 3], dt=DT, time_steps=4, compile=True)
    lo, hi = net.voltage_range()
    volts = [(torch.rand(4, 2, 3) * 1.6 - 0.8).requires_grad_() for _ in range(2)]
    out = SNNOutput(None, None, volts)
    compiled = net.range_penalty(out)
    grads = torch.autograd.grad(compiled, volts)
    eager = sum((((F.relu(w - hi) + F.relu(lo - w)) / 0.1) ** 2).mean() for w in volts)
    expect = torch.autograd.grad(eager, volts)
    assert float(eager.detach()) > 1.0          # voltages well outside the range: the penalty is active
    assert torch.allclose(compiled, eager, rtol=1e-6, atol=0)
    for g, e in zip(grads, expect):
        assert torch.allclose(g, e, rtol=1e-6, atol=1e-7 * float(e.abs().max()))
