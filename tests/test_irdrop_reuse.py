"""IR drop with reused operators in training (CrossbarArray.irdrop_reuse, training.irdrop_reuse).

References: the exact operators of the same programmed chips (memsim.crossbar.operator.tile_operator, itself checked
against the nodal solve and ngspice in test_crossbar_operator.py), computed here independently."""
import pytest
import torch

from memsim.crossbar import CrossbarArray, fused, load_preset
from memsim.crossbar.operator import tile_operator
from memsim.crossbar.solver import effective_conductance
from memsim.errors import ConfigError, ParameterError
from memsim.nn import CrossbarLinear
from memsim.training.config import default_config, parse_config
from memsim.training.loop import build_network

PRESET = load_preset("hfox_1t1r_64").replace(rows=32, cols=32)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3", None])
def test_bad_reuse_counts_are_refused(bad):
    arr = CrossbarArray(PRESET, 8, 8, mode="irdrop")
    with pytest.raises(ParameterError, match="irdrop_reuse"):
        arr.irdrop_reuse = bad


def _chips(arr, weight, n):
    """The conductances of the next ``n`` programmed chips of ``arr`` (differentiable in ``weight``)."""
    return [arr.conductances(weight)[0] for _ in range(n)]


def test_reused_operators_are_the_attenuation_of_the_last_exact_chip():
    torch.manual_seed(0)
    weight = torch.randn(40, 50, requires_grad=True)
    arr = CrossbarArray(PRESET, 40, 50, mode="irdrop")
    arr.irdrop_reuse = 3
    twin = CrossbarArray(PRESET, 40, 50, mode="irdrop")  # the same seed: the same chips
    chips = _chips(twin, weight.detach(), 4)
    circuit = PRESET.circuit
    exact = [tile_operator(g.double(), circuit) for g in chips]
    cells = [effective_conductance(g.double(), circuit) for g in chips]
    atten = exact[0] / cells[0]
    for k, g in enumerate(_chips(arr, weight, 4)):
        a = arr.operator(g)
        assert a.requires_grad
        if k % 3 == 0:  # reads 0 and 3 compute the chip's exact operators
            want = exact[k]
        else:           # reads 1 and 2: their own cells through the attenuation of chip 0
            want = cells[k] * atten
        torch.testing.assert_close(a.double(), want, rtol=2e-5, atol=1e-5 * float(want.abs().max()))
    # the gradient is the attenuation's: d A / d g = F * d gc / d g (the diagonal of the operator's Jacobian)
    g = chips[1].detach().clone().requires_grad_()
    arr.irdrop_reuse = 2
    arr.operator(chips[0].detach().clone().requires_grad_())  # computes F from chip 0
    r = torch.randn(g.shape)
    grad, = torch.autograd.grad((arr.operator(g) * r).sum(), g)
    gg = g.detach().double().requires_grad_()
    want, = torch.autograd.grad((effective_conductance(gg, circuit) * atten * r.double()).sum(), gg)
    torch.testing.assert_close(grad.double(), want, rtol=2e-5, atol=1e-6 * float(want.abs().max()))


def test_the_product_error_is_small_against_the_exact_operator_of_the_same_chip():
    """64x64 1T1R tiles, 1 Ohm wires: a new chip (programming noise) per read; the signed tile outputs through the
    reused attenuation stay within 2 % of the exact ones (benchmarks/crossbar.md: ~0.7-0.9 % at full size), a
    fraction of what ignoring the IR drop costs."""
    p = load_preset("hfox_1t1r_64")
    torch.manual_seed(1)
    weight = torch.randn(64, 64) * 0.05
    arr = CrossbarArray(p, 64, 64, mode="irdrop")  # two tiles
    chips = [g.double() for g in _chips(arr, weight, 3)]
    v = p.v_max * torch.rand(32, 64, dtype=torch.float64)
    vt = arr.grid.pack_inputs(v)

    def out(a):
        return torch.einsum("bri,rcij->brcj", vt, arr.grid.column_signal(a))

    f = tile_operator(chips[0], p.circuit) / effective_conductance(chips[0], p.circuit)
    for g in chips[1:]:
        exact = out(tile_operator(g, p.circuit))
        cells = effective_conductance(g, p.circuit)
        err = float((out(cells * f) - exact).norm() / exact.norm())
        ideal_wires = float((out(cells) - exact).norm() / exact.norm())
        assert err < 0.02 and err < 0.3 * ideal_wires, (err, ideal_wires)


def test_eval_reads_stay_exact_and_training_reads_take_the_fused_path(monkeypatch):
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", False)
    torch.manual_seed(0)
    x = torch.rand(8, 50)
    layers = [CrossbarLinear(50, 40, preset=PRESET, mode="irdrop") for _ in range(2)]
    layers[1].load_state_dict(layers[0].state_dict())
    layers[0].array.irdrop_reuse = 4
    for layer in layers:  # a training read each (the same chip: the first read is exact in both)
        layer(x)
    assert layers[0].array._fusable(layers[0].weight)  # the next reads reuse the attenuation, fused
    assert not layers[1].array._fusable(layers[1].weight)
    ys = []
    for layer in layers:
        layer.eval()
        with torch.no_grad():
            layer.input_scale.fill_(1.0)
            layer.adc_full_scale.fill_(layer.array.fixed_full_scale())
            ys.append(layer(x))
    torch.testing.assert_close(ys[0], ys[1], rtol=0, atol=0)  # eval: the exact operators of the programmed chip


def test_fused_and_unfused_reuse_give_the_same_reads(monkeypatch):
    monkeypatch.setattr(fused, "MIN_CELLS", 0)
    monkeypatch.setattr(fused, "COMPILE", False)
    x = torch.rand(8, 50)
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        torch.manual_seed(0)
        layer = CrossbarLinear(50, 40, preset=PRESET, mode="irdrop")
        layer.array.irdrop_reuse = 3
        steps = []
        for _ in range(4):
            y = layer(x)
            y.square().sum().backward()
            steps.append((y.detach(), layer.weight.grad.clone()))
            layer.weight.grad = None
        results.append(steps)
    for (y1, g1), (y2, g2) in zip(*results):
        torch.testing.assert_close(y1, y2, rtol=1e-6, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6 * float(g2.abs().max()))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_the_config_key_is_validated(bad):
    with pytest.raises(ConfigError, match="training.irdrop_reuse"):
        parse_config({"hardware": {"aware": True, "mode": "irdrop"}, "training": {"irdrop_reuse": bad}})


def test_the_config_key_needs_irdrop_training():
    cfg = parse_config({"hardware": {"aware": True, "mode": "irdrop"}, "training": {"irdrop_reuse": 8}})
    assert cfg.training.irdrop_reuse == 8
    assert default_config().training.irdrop_reuse == 1
    for hardware in ({"aware": True, "mode": "noisy"}, {"aware": False}):
        with pytest.raises(ConfigError, match="training.irdrop_reuse = 8 .*would do nothing"):
            parse_config({"hardware": hardware, "training": {"irdrop_reuse": 8}})


def test_training_networks_take_the_key():
    cfg = parse_config({"hardware": {"aware": True, "mode": "irdrop"}, "training": {"irdrop_reuse": 6},
                        "network": {"crossbar": "hfox_1t1r_64", "layers": [64, 8, 10]}})
    arrays = build_network(cfg).crossbar_arrays()
    assert arrays and all(arr.irdrop_reuse == 6 and arr.mode == "irdrop" for _, arr in arrays)
