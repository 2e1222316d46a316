"""IR drop with reused operators in training (CrossbarArray.irdrop_reuse, training.irdrop_reuse): exact operators
every k reads, a first-order update around them in between.

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


def _jacobian_diagonal(g: torch.Tensor, circuit) -> torch.Tensor:
    """``d A_ij / d g_ij`` of every tile's exact operator (float64 autograd, one backward per cell position)."""
    g = g.detach().double().requires_grad_()
    out = torch.zeros_like(g)
    for i in range(g.shape[-2]):
        for j in range(g.shape[-1]):
            grad, = torch.autograd.grad(tile_operator(g, circuit)[..., i, j].sum(), g)
            out[..., i, j] = grad[..., i, j]
    return out


def test_reused_operators_are_exact_every_k_reads_and_first_order_in_between():
    torch.manual_seed(0)
    weight = torch.randn(40, 50, requires_grad=True)
    arr = CrossbarArray(PRESET, 40, 50, mode="irdrop")
    arr.irdrop_reuse = 3
    twin = CrossbarArray(PRESET, 40, 50, mode="irdrop")  # the same seed: the same chips
    chips = _chips(twin, weight.detach(), 4)
    circuit = PRESET.circuit
    exact = [tile_operator(g.double(), circuit) for g in chips]
    cells = [effective_conductance(g.double(), circuit) for g in chips]
    reads = []
    for k, g in enumerate(_chips(arr, weight, 4)):
        a = arr.operator(g)
        assert a.requires_grad
        reads.append(a.detach().double())
        if k % 3 == 0:  # reads 0 and 3 compute the chip's exact operators
            torch.testing.assert_close(reads[k], exact[k], rtol=2e-5, atol=1e-5 * float(exact[k].abs().max()))
    # reads 1 and 2: linear in their own cells, around chip 0 (one slope per cell), and nearer the exact operators
    # of their chips than chip 0's operators are
    moved = (cells[2] - cells[1]).abs() > 1e-3 * float(cells[0].max())  # (stuck cells stay put)
    assert moved.double().mean() > 0.5
    slope = (reads[2] - reads[1])[moved] / (cells[2] - cells[1])[moved]
    torch.testing.assert_close(reads[1][moved], exact[0][moved] + slope * (cells[1] - cells[0])[moved],
                               rtol=1e-3, atol=1e-4 * float(exact[0].abs().max()))
    for k in (1, 2):
        assert (reads[k] - exact[k]).norm() < 0.5 * (exact[0] - exact[k]).norm()


def test_the_reused_slope_is_the_diagonal_of_the_operators_jacobian():
    """The gradient of a reused read is the operator's exact Jacobian diagonal d A_ij / d g_ij (float64 autograd
    through the exact operator of the chip of the last exact read), to the random-sign estimate's accuracy."""
    p8 = PRESET.replace(rows=8, cols=8)
    torch.manual_seed(0)
    weight = torch.randn(16, 20)
    arr = CrossbarArray(p8, 16, 20, mode="irdrop")
    arr.irdrop_reuse = 2
    g0, g1 = (g.detach().clone().requires_grad_() for g in _chips(arr, weight, 2))
    arr.operator(g0)  # the exact read: the slope comes from this chip
    r = torch.randn(g1.shape)
    grad, = torch.autograd.grad((arr.operator(g1) * r).sum(), g1)
    # the slope in the cells gc times d gc / d g, at g1 (the reused read's own cells)
    gg = g1.detach().double().requires_grad_()
    dgc, = torch.autograd.grad(effective_conductance(gg, p8.circuit).sum(), gg)
    g0d = g0.detach().double().requires_grad_()
    dgc0, = torch.autograd.grad(effective_conductance(g0d, p8.circuit).sum(), g0d)
    want = _jacobian_diagonal(g0, p8.circuit) / dgc0 * dgc * r.double()
    torch.testing.assert_close(grad.double(), want, rtol=0, atol=0.02 * float(want.abs().max()))


def test_the_product_error_is_small_against_the_exact_operator_of_the_same_chip():
    """64x64 1T1R tiles, 1 Ohm wires: a new chip (programming noise) per read; the signed tile outputs of the reused
    reads stay within 0.7 % of the exact ones (0.5 % here; benchmarks/crossbar.md: 0.8 % at full size with dense
    inputs), a small fraction of what ignoring the IR drop costs."""
    p = load_preset("hfox_1t1r_64")
    torch.manual_seed(1)
    weight = torch.randn(64, 64) * 0.05
    arr = CrossbarArray(p, 64, 64, mode="irdrop")  # two tiles
    arr.irdrop_reuse = 3
    twin = CrossbarArray(p, 64, 64, mode="irdrop")  # the same chips
    chips = [g.double() for g in _chips(twin, weight, 3)]
    v = p.v_max * torch.rand(32, 64, dtype=torch.float64)
    vt = arr.grid.pack_inputs(v)

    def out(a):
        return torch.einsum("bri,rcij->brcj", vt, arr.grid.column_signal(a))

    w = weight.clone().requires_grad_()
    for k, g in enumerate(_chips(arr, w, 3)):
        reused = arr.operator(g).detach().double()
        if k == 0:
            continue  # the exact read
        exact = out(tile_operator(chips[k], p.circuit))
        err = float((out(reused) - exact).norm() / exact.norm())
        ideal_wires = float((out(effective_conductance(chips[k], p.circuit)) - exact).norm() / exact.norm())
        assert err < 0.007 and err < 0.1 * ideal_wires, (err, ideal_wires)  # (A / gc reused: 0.85 %, 0.115x)


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
