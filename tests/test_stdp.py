"""Pair-based STDP through the synapse devices (memsim.insitu.stdp): the rule against explicit pair sums, the
pulse conversion and clipping against closed form on the ideal linear card, the device window, and learning on a
tiny separable problem."""
import math

import pytest
import torch

from memsim.errors import ParameterError
from memsim.insitu import InSituSettings, load_pulse_response
from memsim.insitu.stdp import STDPRule, SupervisedSTDP, spike_events
from memsim.training.network import MemristiveSNN

DT = 4e-5


def pair_sum(pre, post, rule, dt):
    """Reference: the rule summed over explicit spike-time pairs (all-to-all or nearest-neighbour)."""
    T, B, n_pre = pre.shape
    n_post = post.shape[2]
    dw = torch.zeros(n_post, n_pre, dtype=torch.float64)
    for b in range(B):
        for j in range(n_post):
            for i in range(n_pre):
                tp = [t for t in range(T) if pre[t, b, i]]
                tq = [t for t in range(T) if post[t, b, j]]
                if rule.mode == "all":
                    pairs = [(a, c) for a in tp for c in tq]
                else:   # each post with the nearest pre at or before it; each pre with the nearest post before it
                    pairs = [(max(a for a in tp if a <= c), c) for c in tq if any(a <= c for a in tp)]
                    pairs += [(a, max(c for c in tq if c < a)) for a in tp if any(c < a for c in tq)]
                for a, c in pairs:
                    d = (c - a) * dt
                    dw[j, i] += rule.a_plus * math.exp(-d / rule.tau_plus) if d >= 0 else \
                        -rule.a_minus * math.exp(d / rule.tau_minus)
    return dw


@pytest.mark.parametrize("mode", ["all", "nearest"])
def test_rule_equals_the_closed_form_pair_sum(mode):
    rule = STDPRule(a_plus=0.7, a_minus=0.4, tau_plus=1.3 * DT, tau_minus=2.1 * DT, mode=mode)
    g = torch.Generator().manual_seed(3)
    pre = (torch.rand(12, 2, 3, generator=g, dtype=torch.float64) < 0.35).double()
    post = (torch.rand(12, 2, 2, generator=g, dtype=torch.float64) < 0.3).double()
    assert pre.sum() > 4 and post.sum() > 3
    torch.testing.assert_close(rule.delta(pre, post, DT), pair_sum(pre, post, rule, DT), rtol=1e-12, atol=1e-12)


def test_a_single_pair_follows_exp_of_minus_dt_over_tau():
    rule = STDPRule(a_plus=0.5, a_minus=0.25, tau_plus=2 * DT, tau_minus=3 * DT)
    pre, post = torch.zeros(10, 1, 1, dtype=torch.float64), torch.zeros(10, 1, 1, dtype=torch.float64)
    pre[2], post[5] = 1, 1          # pre 3 steps before post: potentiation
    assert float(rule.delta(pre, post, DT)) == pytest.approx(0.5 * math.exp(-3 / 2), rel=1e-12)
    assert float(rule.delta(post, pre, DT)) == pytest.approx(-0.25 * math.exp(-3 / 3), rel=1e-12)  # post first
    assert float(rule.delta(pre, pre, DT)) == pytest.approx(0.5, rel=1e-12)   # same step: causal


def test_spike_events_are_upward_crossings():
    v = torch.tensor([0.0, 0.2, 0.3, 0.05, 0.2, 0.2, 0.0, 0.15]).reshape(-1, 1)
    assert spike_events(v, 0.1).flatten().tolist() == [0, 1, 0, 0, 1, 0, 0, 1]


def test_bad_rule_and_setup_are_refused():
    with pytest.raises(ParameterError, match="stdp.tau_plus"):
        STDPRule(tau_plus=0.0)
    with pytest.raises(ParameterError, match="stdp.mode"):
        STDPRule(mode="triplet")
    settings = InSituSettings(load_pulse_response("pulse_ideal_linear"))
    with pytest.raises(ParameterError, match="network.layers"):
        SupervisedSTDP(MemristiveSNN([4, 3, 2]), STDPRule(), settings, w_max=1.0, lr=1e-3)
    with pytest.raises(ParameterError, match="stdp.lr"):
        SupervisedSTDP(MemristiveSNN([4, 2]), STDPRule(), settings, w_max=1.0, lr=-1.0)


def test_pulse_counts_and_clipping_on_the_ideal_linear_card():
    # pulse_ideal_linear: 1000 equal steps over the window, no noise: with w_max = 1 one pulse is 0.001 of weight
    settings = InSituSettings(load_pulse_response("pulse_ideal_linear"), max_pulses=5, refresh=False)
    stdp = SupervisedSTDP(MemristiveSNN([3, 2]), STDPRule(), settings, w_max=1.0, lr=1e-3)
    pulses = torch.tensor([[2.0, -3.0, 0.0], [7.0, -9.0, 5.0]])          # integers: rounding is exact
    counts = stdp.apply(pulses * 1e-3)
    expected = pulses.clamp(-5, 5)
    torch.testing.assert_close(stdp.net.synapses[0].weight.detach(), expected * 1e-3, rtol=1e-4, atol=1e-7)
    assert counts.applied == int(expected.abs().sum()) == 20
    assert counts.clipped == 2 + 4
    assert counts.devices == 5
    assert stdp.metrics.pulses.clipped == 6


def test_conductances_stay_in_the_window_under_a_noisy_saturating_card():
    resp = load_pulse_response("pulse_exp_saturation")
    settings = InSituSettings(resp, max_pulses=20, seed=2)
    stdp = SupervisedSTDP(MemristiveSNN([6, 4]), STDPRule(), settings, w_max=0.5, lr=1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        stdp.apply(torch.randn(4, 6, generator=g) * 0.5)
    for k in range(2):
        s = stdp.pairs.spread[k]
        lo, hi = (torch.as_tensor(b) for b in (s.g_min, s.g_max))
        assert bool((stdp.pairs.g[k] >= lo - 1e-12).all() and (stdp.pairs.g[k] <= hi + 1e-12).all())
    assert stdp.metrics.pulses.clipped > 0    # updates of 0.5 weight need far more than 20 pulses


def test_supervised_stdp_learns_a_separable_problem():
    # two classes, each lighting its own half of 8 inputs (rate-coded pulses of 0.2 V): chance is 50 %
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    T, n = 20, 64
    labels = torch.randint(0, 2, (n,), generator=g)
    rates = torch.full((n, 8), 0.05)
    rates[labels == 0, :4] = 0.6
    rates[labels == 1, 4:] = 0.6
    inputs = (torch.rand(T, n, 8, generator=g) < rates).float() * 0.2
    net = MemristiveSNN([8, 2], time_steps=T)
    stdp = SupervisedSTDP(net, STDPRule(), InSituSettings(load_pulse_response("pulse_ideal_linear")),
                          w_max=0.5, lr=4e-3)

    def accuracy():
        with torch.no_grad():
            return float((net(inputs).scores.argmax(1) == labels).float().mean())

    before = accuracy()
    for k in range(0, n, 16):
        stdp.step(inputs[:, k:k + 16], labels[k:k + 16])
    w = net.synapses[0].weight.detach()
    assert before < 0.7
    assert accuracy() >= 0.95
    assert float(w[0, :4].mean()) > float(w[0, 4:].mean()) and float(w[1, 4:].mean()) > float(w[1, :4].mean())
    assert stdp.metrics.pulses.applied > 0
