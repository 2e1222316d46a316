"""The memristive SNN: fast twin vs the verified neuron layer, the circuit reference, gradients, bad input,
and the SPICE round trip of a trained network."""
import math

import pytest
import torch

from memsim.errors import NonFiniteError, ParameterError
from memsim.nn.neurons import MIFNeuron
from memsim.training import MemristiveSNN, MIFDynamics

DT = 4e-5


def _identity_net(n: int, **kw) -> MemristiveSNN:
    net = MemristiveSNN([n, n], dt=DT, **kw).double()
    with torch.no_grad():
        net.synapses[0].weight.copy_(torch.eye(n, dtype=torch.float64))
    return net


def test_reference_equals_the_verified_neuron_layer():
    # one layer with identity weights: the column currents are g_unit * V_in; the network's circuit
    # reference must reproduce the RK4 neuron layer memsim.nn.MIFNeuron (itself checked against ngspice) on them
    torch.manual_seed(0)
    T, n = 20, 4
    x = torch.rand(T, 2, n, dtype=torch.float64) * 0.3
    net = _identity_net(n)
    ref = net.reference(x).voltages[0]
    layer = MIFNeuron(dt=DT, dtype=torch.float64, spikes=False)
    expect = layer(x * net.g_unit).v
    assert torch.allclose(ref, expect, atol=1e-9, rtol=0)


def test_fast_twin_converges_to_the_circuit():
    # the training twin is a first-order scheme of the same ODE: its error shrinks with sub-steps
    torch.manual_seed(1)
    T, n = 30, 6
    x = torch.rand(T, 3, n, dtype=torch.float64) * 0.3
    net = _identity_net(n)
    ref = net.reference(x).voltages[0]
    swing = float(ref.max() - ref.min())
    errors = []
    for s in (1, 4, 16):
        net.set_substeps(s)
        with torch.no_grad():
            errors.append(float((net(x).voltages[0] - ref).abs().max()) / swing)
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05, errors
    assert errors[0] < 0.3, errors


def test_twin_neuron_matches_reference_after_the_onset():
    # away from the very first step (a spike from rest inside one step), one step per dt stays close
    torch.manual_seed(2)
    cur = torch.rand(60, 1, 8, dtype=torch.float64) * 4e-5
    ref = MIFNeuron(dt=DT, dtype=torch.float64, spikes=False)(cur).v
    twin = MIFDynamics(dt=DT, substeps=2).run(cur)
    amp = float(ref.max() - ref.min())
    assert float((twin - ref)[5:].abs().max()) / amp < 0.05


def test_gradients_flow_through_the_circuit_and_match_finite_differences():
    torch.manual_seed(3)
    net = MemristiveSNN([3, 2, 2], dt=DT, time_steps=4).double()
    x = (torch.rand(4, 2, 3, dtype=torch.float64) * 0.2)
    y = torch.tensor([0, 1])
    w = net.synapses[0].weight

    def loss_of(weight):
        with torch.no_grad():
            w.copy_(weight)
        return net.loss(net(x), y)

    w0 = w.detach().clone()
    loss = loss_of(w0)
    loss.backward()
    grad = w.grad.clone()
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    eps = 1e-6
    for idx in [(0, 0), (1, 2)]:
        wp, wm = w0.clone(), w0.clone()
        wp[idx] += eps
        wm[idx] -= eps
        with torch.no_grad():
            fd = (loss_of(wp) - loss_of(wm)) / (2 * eps)
        assert math.isclose(float(fd), float(grad[idx]), rel_tol=1e-4, abs_tol=1e-9)


def test_gradcheck_small_network():
    torch.manual_seed(4)
    net = MemristiveSNN([3, 2], dt=DT, time_steps=3).double()
    x = torch.rand(3, 1, 3, dtype=torch.float64, requires_grad=True) * 0.2

    def f(inp):
        return net(inp).voltages[-1]
    assert torch.autograd.gradcheck(f, (x.detach().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_spike_count_readout_and_hard_spikes():
    torch.manual_seed(5)
    net = MemristiveSNN([4, 3], dt=DT, readout="spike_count", time_steps=10)
    out = net(torch.full((10, 2, 4), 0.2))
    assert out.logits.shape == (1, 2, 3) and out.scores.shape == (2, 3)
    counts = net.hard_spike_counts(out)[0]
    assert counts.shape == (2, 3) and (counts >= 0).all()
    loss = net.loss(out, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(net.synapses[0].weight.grad).all()


def test_compiled_step_matches_eager_forward_and_gradients():
    # training.compile fuses the same step code with torch.compile; values and gradients must not change
    torch.manual_seed(0)
    x = torch.rand(12, 5, 20) * 0.2
    labels = torch.randint(0, 4, (5,))
    nets = [MemristiveSNN([20, 8, 4], dt=DT, compile=c) for c in (False, True)]
    nets[1].load_state_dict(nets[0].state_dict())
    outs, grads = [], []
    for net in nets:
        out = net(x)
        net.loss(out, labels).backward()
        outs.append(out.voltages[-1].detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert torch.allclose(outs[0], outs[1], atol=1e-6, rtol=0)
    for ge, gc in zip(*grads):
        assert torch.allclose(ge, gc, atol=1e-5 * float(ge.abs().max()), rtol=1e-4)
    # a non-finite state is still caught and located when compiled
    with torch.no_grad():
        nets[1].synapses[1].weight[1, 2] = float("inf")
    with pytest.raises(NonFiniteError, match=r"layer 1 .*time step 0"):
        nets[1](x)


def test_non_finite_state_names_layer_and_step():
    net = MemristiveSNN([4, 3, 2], dt=DT)
    with torch.no_grad():
        net.synapses[1].weight[1, 2] = float("inf")
    with pytest.raises(NonFiniteError, match=r"layer 1 .*time step 0"):
        net(torch.full((5, 2, 4), 0.1))


@pytest.mark.parametrize("kwargs, match", [
    ({"readout": "membrane"}, "network.readout"),
    ({"time_steps": 0}, "network.time_steps"),
    ({"g_unit": -1.0}, "network.g_unit"),
])
def test_bad_network_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        MemristiveSNN([4, 3], **kwargs)


def test_bad_input_shape_and_coarse_dt():
    net = MemristiveSNN([4, 3])
    with pytest.raises(ParameterError, match=r"inputs.shape.*\[T, B, 4\]"):
        net(torch.zeros(5, 2, 5))
    with pytest.raises(ParameterError, match="dt"):
        MemristiveSNN([4, 3], dt=1e-3)


def test_convolutional_variant_trains_on_digits(tmp_path):
    from memsim.training.config import load_config
    from memsim.training.loop import train

    cfg = load_config(None, ["network.layers=[64,16,10]", "network.time_steps=8", "network.conv_channels=4",
                             "network.conv_kernel=3", "network.conv_stride=2", "training.epochs=2",
                             "training.batch_size=64", f"output.dir={tmp_path / 'conv'}", "output.plot=false"])
    result = train(cfg, progress=False, log=lambda s: None)
    net = result.network
    assert net.layers == [64, 4 * 3 * 3, 16, 10]        # 8x8 image, 3x3 kernels, stride 2 -> 4 x 3 x 3
    assert tuple(net.synapses[0].weight.shape) == (4, 1, 3, 3)
    assert result.final["test_accuracy"] > 0.5


def test_conv_stage_is_the_crossbar_convolution():
    from torch.nn import functional as F
    torch.manual_seed(6)
    net = MemristiveSNN([64, 10], conv=(3, 3, 1), time_steps=2)
    x = torch.rand(2, 5, 64) * 0.2
    current = net.synapses[0](x)
    expect = F.conv2d(x.reshape(-1, 1, 8, 8), net.synapses[0].weight).reshape(2, 5, -1) * net.g_unit
    assert torch.allclose(current, expect)
    with pytest.raises(ParameterError, match="conv_kernel"):
        MemristiveSNN([64, 10], conv=(3, 9, 1))
