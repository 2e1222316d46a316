"""TorchMath's fast paths give the same numbers and gradients as the plain torch functions."""
import math

import pytest
import torch

from memsim import DeviceArray, load_card
from memsim.mathns import TORCH


@pytest.mark.parametrize("exponent", [1, 2, 3, 4, 7, 14, 2.0, 64.0])
def test_integer_pow_by_squaring_matches_torch_pow(exponent):
    base = torch.linspace(0.0, 1.3, 101, dtype=torch.float64, requires_grad=True)
    ours = TORCH.pow(base, exponent)
    (g_ours,) = torch.autograd.grad(ours.sum(), base)
    ref = torch.pow(base, float(exponent))
    (g_ref,) = torch.autograd.grad(ref.sum(), base)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-13, atol=0)  # including d/dx at x = 0


def test_non_integer_and_tensor_exponents_use_torch_pow():
    base = torch.tensor([0.25, 0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(TORCH.pow(base, 2.5), base ** 2.5)
    exponent = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    out = TORCH.pow(base, exponent)
    (g,) = torch.autograd.grad(out.sum(), exponent)
    torch.testing.assert_close(g, (base ** 3 * torch.log(base)).sum())  # the exponent keeps its gradient


def test_numbers_are_evaluated_in_double_precision():
    # a coefficient made of shared parameters must not be rounded to float32 (torch's default dtype)
    assert TORCH.exp(1e-3) == math.exp(1e-3) and isinstance(TORCH.exp(1e-3), float)
    assert TORCH.sigmoid(0.3) == pytest.approx(1 / (1 + math.exp(-0.3)), rel=1e-15)
    assert TORCH.pow(1.1, 3) == pytest.approx(1.331, rel=1e-15)
    assert TORCH.clip(1.5, 0.0, 1.0) == 1.0 and TORCH.maximum(2.0, 3.0) == 3.0


@pytest.mark.parametrize("card", ["stanford_pku_hfox", "yakopcic_oblea", "hp_tio2_prodromakis"])
def test_shared_float_and_per_device_tensor_parameters_agree(card):
    c = load_card(card)
    v = torch.linspace(-0.8, 0.8, 9, dtype=torch.float64) * c.voltage_range[1]
    x = torch.linspace(0.05, 0.95, 9, dtype=torch.float64)
    shared = DeviceArray.from_card(c, (9,), dtype=torch.float64)
    tensors = {k: torch.full((9,), val, dtype=torch.float64) for k, val in c.parameters.items()}
    per_device = DeviceArray(c.family, tensors, (9,), dtype=torch.float64)
    torch.testing.assert_close(shared.current(v, x), per_device.current(v, x), rtol=1e-12, atol=0)
    # Yakopcic's rate exp(v) - exp(Vp) cancels near threshold: 1 ulp of exp becomes ~1e-8 relative
    torch.testing.assert_close(shared.dxdt(v, x), per_device.dxdt(v, x), rtol=1e-7, atol=0)
