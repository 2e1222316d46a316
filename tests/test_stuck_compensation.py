"""``mapping.stuck_compensation = "partner"``: the programming controller retargets the differential partner of a cell
stuck at g_max, so that the pair keeps its difference wherever the window allows it.

Reference: the closed form per pair, in the cells' window [lo, top] as the word line sees them (the memristor behind
its access transistor): with the ``+`` cell stuck at g_max (the window's ``top``) and the ``-`` cell free, the pair
reads ``top - clip(top - d, lo, top)`` for its target difference ``d``; with the ``-`` cell stuck, ``clip(top + d,
lo, top) - top``; a pair without stuck cells reads ``d``; without compensation a ``+`` cell stuck at g_max reads
``top - t-``. The stuck cells themselves come from the chip's seed (:class:`memsim.crossbar.nonideal.FixedDefects`).
"""
import dataclasses

import numpy as np
import pytest
import torch

from memsim.crossbar import CrossbarArray, load_preset
from memsim.crossbar.solver import effective_conductance
from memsim.errors import ConfigError, ParameterError
from memsim.training.config import hardware_preset, load_config
from memsim.training.loop import _chips

BASE = load_preset("hfox_1t1r_64").replace(rows=32, cols=32)
STUCK = dataclasses.replace(BASE.noise.off(), stuck_on=0.08, stuck_off=0.04, seed=5)


def _read_pairs(preset, weight):
    """The pairs as read (window conductances ``[..., pairs, 2]``), the targets, the stuck masks and the window."""
    array = CrossbarArray(preset, weight.shape[0], weight.shape[1], mode="noisy", noise=STUCK)
    with torch.no_grad():
        g, _ = array.conductances(weight)
        cells = effective_conductance(g, preset.circuit)
        ideal = CrossbarArray(preset, weight.shape[0], weight.shape[1], mode="noisy", noise=STUCK.off())
        target = effective_conductance(ideal.conductances(weight)[0], preset.circuit)
    defects = array._chip_defects(g.shape, g)
    mp = array.mapping
    pairs = lambda t: t[..., :2 * (t.shape[-1] // 2)].unflatten(-1, (-1, 2)).numpy()
    return (pairs(cells.double()), pairs(target.double()), pairs(defects.stuck_on), pairs(defects.stuck_off),
            mp.g_min, mp.g_min + mp.delta)


@pytest.mark.parametrize("access", ["1T1R", "0T1R"])
def test_a_stuck_cells_partner_restores_the_pairs_difference(access):
    torch.manual_seed(0)
    weight = torch.randn(40, 70)
    preset = BASE.replace(access=access, stuck_compensation="partner")
    got, t, on, off, lo, top = _read_pairs(preset, weight)
    d = t[..., 0] - t[..., 1]
    diff = got[..., 0] - got[..., 1]
    free = ~(on | off)
    plus_on = on[..., 0] & free[..., 1]
    minus_on = on[..., 1] & free[..., 0]
    assert plus_on.sum() > 20 and minus_on.sum() > 20
    tol = 1e-5 * (top - lo)
    np.testing.assert_allclose(diff[plus_on], top - np.clip(top - d[plus_on], lo, top), rtol=0, atol=tol)
    np.testing.assert_allclose(diff[minus_on], np.clip(top + d[minus_on], lo, top) - top, rtol=0, atol=tol)
    both_free = free[..., 0] & free[..., 1]
    np.testing.assert_allclose(diff[both_free], d[both_free], rtol=0, atol=tol)
    # where the window allows it (the target's sign is the stuck cell's), the pair reads its target exactly
    reachable = (plus_on & (d >= 0)) | (minus_on & (d <= 0))
    np.testing.assert_allclose(diff[reachable], d[reachable], rtol=0, atol=tol)


def test_without_compensation_a_stuck_cell_reads_g_max_and_the_error_is_larger():
    torch.manual_seed(0)
    weight = torch.randn(40, 70)
    plain, t, on, off, lo, top = _read_pairs(BASE, weight)
    comp = _read_pairs(BASE.replace(stuck_compensation="partner"), weight)[0]
    d = t[..., 0] - t[..., 1]
    plus_on = on[..., 0] & ~(on | off)[..., 1]
    np.testing.assert_allclose((plain[..., 0] - plain[..., 1])[plus_on], top - t[..., 1][plus_on], rtol=0,
                               atol=1e-5 * (top - lo))
    err = lambda c: np.abs((c[..., 0] - c[..., 1]) - d).sum()
    assert err(comp) < 0.5 * err(plain)


def test_compensation_is_a_validated_mapping_key():
    with pytest.raises(ParameterError, match="stuck_compensation"):
        BASE.replace(stuck_compensation="spare rows")
    with pytest.raises(ParameterError, match="differential"):
        BASE.replace(stuck_compensation="partner", scheme="offset")
    assert "partner compensation" in BASE.replace(stuck_compensation="partner").summary()


def test_the_runs_key_reaches_training_and_evaluation_chips():
    aware = ["hardware.aware=true", "network.crossbar=hfox_1t1r_64"]
    cfg = load_config(overrides=[*aware, "hardware.stuck_compensation=partner"])
    assert hardware_preset(cfg).stuck_compensation == "partner"
    assert {c.preset.stuck_compensation for c in _chips(cfg, None, "hfox_1t1r_64", "noisy", 2)} == {"partner"}
    plain = load_config(overrides=aware)  # "preset": as the preset says
    assert hardware_preset(plain).stuck_compensation == "none"
    assert hardware_preset(plain, BASE.replace(stuck_compensation="partner")).stuck_compensation == "partner"
    with pytest.raises(ConfigError, match="hardware.stuck_compensation"):
        hardware_preset(cfg, BASE.replace(scheme="offset"))
