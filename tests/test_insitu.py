"""In-situ (pulsed) training, memsim.insitu: the device pairs, analog SGD and Tiki-Taka against closed forms and hand
computations, the window, the pulse budget, and the config's checks.

References: float SGD on a linear regression has the closed-form trajectory w_t = w* + (I - lr A)^t (w_0 - w*);
pulsed SGD on an ideal linear device rounds each update stochastically to whole steps, so its mean over many
independent replicas follows that trajectory (the dynamics are linear and the rounding unbiased) within the
replicas' standard error. Pulse counts, clipping, refresh and Tiki-Taka's transfer are computed by hand.
"""
import math

import pytest
import torch

from memsim.errors import ConfigError, ParameterError
from memsim.insitu import InSituSettings, PairArray, PulsedOptimizer, TikiTaka, nominal_step
from memsim.pulse import load_response
from memsim.training.config import insitu_settings, parse_config

IDEAL = "pulse_ideal_linear"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small index kernels: one thread (as training.threads = 1) avoids thread contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pairs(resp, w, *, w_max=1.0, drive=1, max_pulses=100, seed=0):
    gen = torch.Generator().manual_seed(seed)
    step, _ = nominal_step(resp, drive)
    return PairArray(w, resp, w_max=w_max, drive=drive, step=step, max_pulses=max_pulses, generator=gen)


def test_nominal_step_of_the_ideal_device_is_its_constant_step():
    resp = load_response(IDEAL)
    for drive in (1, -1):
        step, pulses = nominal_step(resp, drive)
        assert step == pytest.approx(1.8e-8, rel=1e-9)  # the card's dg_ltp = dg_ltd
        assert pulses in (500, 501)                      # half of the 1000 steps of the window


def test_pulsed_sgd_on_an_ideal_device_follows_float_sgd_in_the_mean():
    torch.manual_seed(0)
    x = torch.randn(32, 3, dtype=torch.float64)
    y = x @ torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64) + 0.01 * torch.randn(32, dtype=torch.float64)
    a, b = x.T @ x / 32, x.T @ y / 32
    w_star = torch.linalg.solve(a, b)
    lr, steps, replicas = 0.05, 30, 3000
    w0 = torch.tensor([0.05, 0.05, -0.05], dtype=torch.float64)
    resp = load_response(IDEAL)
    w = torch.nn.Parameter(w0.repeat(replicas, 1))
    settings = InSituSettings(resp, max_pulses=1000, weight_range=8.0, refresh=True, seed=1)
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=lr), [w], settings)
    dw = settings.step * 8.0 * 0.05 / (resp.g_max - resp.g_min)   # one pulse in weight units: w_max / 1000
    assert dw == pytest.approx(4e-4, rel=1e-9)
    m = torch.eye(3, dtype=torch.float64) - lr * a
    for t in range(1, steps + 1):
        w.grad = w.detach() @ a - b            # the full-batch gradient of 0.5 mean (x w - y)^2, per replica
        opt.step()
        ref = w_star + torch.linalg.matrix_power(m, t) @ (w0 - w_star)   # float SGD, closed form
        mean, sem = w.detach().mean(0), w.detach().std(0) / math.sqrt(replicas)
        assert bool(((mean - ref).abs() <= 5 * sem + 1e-12).all()), (t, mean, ref, sem)
    # each replica stays within a few pulses of float SGD (the rounding noise), and every update was whole steps
    assert float((w.detach() - ref).abs().max()) < 12 * dw
    k = (w.detach() - w0) / dw
    assert float((k - k.round()).abs().max()) < 1e-6
    m = opt.metrics()
    assert m["pulses"] > 0 and m["pulses_clipped"] == 0 and m["refreshes"] == 0


def test_an_update_of_whole_steps_is_applied_exactly():
    resp = load_response(IDEAL)
    w = torch.nn.Parameter(torch.tensor([0.1, -0.2, 0.0, 0.3], dtype=torch.float64))
    settings = InSituSettings(resp, max_pulses=50, weight_range=2.0)
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=1.0), [w], settings)
    dw = 2.0 * 0.3 / 1000 * settings.step / 1.8e-8
    w.grad = -torch.tensor([3.0, -5.0, 0.0, 12.0], dtype=torch.float64) * dw
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.1 + 3 * dw, -0.2 - 5 * dw, 0.0, 0.3 + 12 * dw],
                                                   dtype=torch.float64), rtol=0, atol=1e-12)
    assert opt.metrics()["pulses"] == 3 + 5 + 12


def test_pulses_beyond_the_per_step_maximum_are_cut_and_counted_exactly():
    resp = load_response(IDEAL)
    pairs = _pairs(resp, torch.zeros(5, dtype=torch.float64), max_pulses=4)
    dw = 1.0 / 1000 * (pairs.step / 1.8e-8)
    counts = pairs.update(torch.tensor([7.0, -2.0, 4.0, -9.0, 0.0], dtype=torch.float64) * dw)
    assert (counts.applied, counts.clipped, counts.devices) == (4 + 2 + 4 + 4, 3 + 5, 4)
    step = 1.8e-8
    assert torch.allclose(pairs.g[0] - resp.g_min, torch.tensor([4, 0, 4, 0, 0], dtype=torch.float64) * step,
                          rtol=0, atol=1e-15)
    assert torch.allclose(pairs.g[1] - resp.g_min, torch.tensor([0, 2, 0, 4, 0], dtype=torch.float64) * step,
                          rtol=0, atol=1e-15)
    # through the optimiser: the epoch metrics report them
    w = torch.nn.Parameter(torch.full((5,), 0.5, dtype=torch.float64))
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=1.0), [w], InSituSettings(resp, max_pulses=4, weight_range=2.0))
    dw = 2 * 0.5 / 1000 * opt.settings.step / 1.8e-8
    w.grad = -torch.tensor([7.0, -2.0, 4.0, -9.0, 0.0], dtype=torch.float64) * dw
    opt.step()
    m = opt.metrics()
    assert (m["pulses"], m["pulses_clipped"]) == (14, 8) and m["pulses_clipped_fraction"] == pytest.approx(8 / 22)
    assert opt.metrics()["pulses"] == 0  # reset after reading


@pytest.mark.parametrize("card,drive", [("pulse_linear_step", 1), ("pulse_exp_saturation", 1),
                                        ("pulse_exp_saturation", -1), ("pulse_power_step", 1)])
def test_noisy_spread_devices_stay_in_their_windows(card, drive):
    resp = load_response(card)
    assert resp.noise["d2d_bounds"] > 0   # each device has its own window
    gen = torch.Generator().manual_seed(3)
    w0 = 0.3 * torch.randn(64, 32, generator=gen)
    pairs = _pairs(resp, w0, drive=drive, max_pulses=20, seed=4)
    for k in range(30):
        pairs.update(2.0 * torch.randn(64, 32, generator=gen))    # huge updates: many devices hit their bounds
        for g, spread in zip(pairs.g, pairs.spread):
            lo, hi = spread.g_min, spread.g_max
            assert bool((g >= lo).all()) and bool((g <= hi).all())
            resp.check_conductance(g, spread)   # the response's own check agrees
        if k % 5 == 4:
            pairs.refresh(0.5)
    w = pairs.weight()
    assert bool((w.abs() <= 1.0 * (1 + 5 * resp.noise["d2d_bounds"])).all())


def test_refresh_reads_resets_and_reprograms_a_saturated_pair():
    resp = load_response(IDEAL)
    window = resp.g_max - resp.g_min
    pairs = _pairs(resp, torch.zeros(3, dtype=torch.float64), w_max=2.0)
    pairs.g = [resp.g_min + window * torch.tensor([0.9, 0.85, 0.2], dtype=torch.float64),
               resp.g_min + window * torch.tensor([0.85, 0.95, 0.9], dtype=torch.float64)]
    before = pairs.weight()
    assert torch.allclose(before, torch.tensor([0.1, -0.2, -1.4], dtype=torch.float64), atol=1e-12)
    assert pairs.refresh(0.8) == 2           # the third pair has one device far from its bound
    assert torch.allclose(pairs.weight(), before, atol=1e-12)
    assert torch.allclose((pairs.g[0] - resp.g_min) / window, torch.tensor([0.05, 0.0, 0.2], dtype=torch.float64),
                          atol=1e-12)
    assert torch.allclose((pairs.g[1] - resp.g_min) / window, torch.tensor([0.0, 0.1, 0.9], dtype=torch.float64),
                          atol=1e-12)


def test_reset_polarity_advances_down_from_g_max():
    resp = load_response(IDEAL)
    pairs = _pairs(resp, torch.tensor([0.5, -0.25], dtype=torch.float64), drive=-1)
    window = resp.g_max - resp.g_min
    assert torch.allclose(pairs.g[0], torch.tensor([resp.g_max - 0.5 * window, resp.g_max], dtype=torch.float64))
    assert torch.allclose(pairs.g[1], torch.tensor([resp.g_max, resp.g_max - 0.25 * window], dtype=torch.float64))
    pairs.update(torch.tensor([3.0, 3.0], dtype=torch.float64) * pairs.step / pairs.scale)
    assert torch.allclose(pairs.weight(), torch.tensor([0.503, -0.247], dtype=torch.float64), atol=1e-9)


def test_tiki_taka_transfer_against_a_hand_computation():
    resp = load_response(IDEAL)
    slow = _pairs(resp, torch.tensor([0.2, -0.1], dtype=torch.float64), seed=1)
    fast = _pairs(resp, torch.zeros(2, dtype=torch.float64), seed=2)
    dw = slow.step / slow.scale                      # one pulse: 1e-3 (w_max = 1)
    assert dw == pytest.approx(1e-3, rel=1e-9)
    tt = TikiTaka(slow, fast, gamma=0.5, transfer_every=2, transfer_lr=0.5, transfer="reset")
    c = tt.update(torch.tensor([4.0, -6.0], dtype=torch.float64) * dw)   # A = [4, -6] pulses, no transfer yet
    assert c.applied == 10 and tt.transfers == 0
    assert torch.allclose(tt.weight(), torch.tensor([0.2 + 0.5 * 4e-3, -0.1 - 0.5 * 6e-3], dtype=torch.float64),
                          atol=1e-12)
    c = tt.update(torch.tensor([-2.0, 2.0], dtype=torch.float64) * dw)   # A = [2, -4]; transfer C += 0.5 A
    assert tt.transfers == 1 and c.applied == 2 + 2 + 1 + 2
    assert torch.allclose(slow.weight(), torch.tensor([0.2 + 1e-3, -0.1 - 2e-3], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(fast.g[0], torch.full((2,), resp.g_min, dtype=torch.float64))   # A reset to home
    assert torch.allclose(fast.g[1], torch.full((2,), resp.g_min, dtype=torch.float64))
    assert torch.allclose(tt.weight(), slow.weight())


def test_tiki_taka_optimiser_carries_every_update_with_gamma_one():
    resp = load_response(IDEAL)
    w = torch.nn.Parameter(torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64))
    settings = InSituSettings(resp, algorithm="tiki_taka", weight_range=5.0, gamma=1.0, transfer_every=3,
                              transfer_lr=1.0, fast_range=0.5, transfer="reset")
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=1.0), [w], settings)
    slow, fast = opt.algorithms[0].arrays
    assert (slow.w_max, fast.w_max) == pytest.approx((1.0, 0.5))   # A's window: half of C's, its pulses finer
    dw = 1.0 / 1000 * settings.step / 1.8e-8
    total = torch.zeros(3, dtype=torch.float64)
    for k in range(6):
        step = torch.tensor([k - 2.0, 3.0, -1.0], dtype=torch.float64) * dw
        w.grad = -step
        total += step
        opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64) + total, atol=1e-12)
    m = opt.metrics()
    assert m["transfers"] == 2 * 1   # two transfers of the one weight tensor
    # pulses: A takes 2 per unit step (finer), C the net of each 3 steps at 1 per unit step
    unit = torch.tensor([[k - 2.0, 3.0, -1.0] for k in range(6)])
    assert m["pulses"] == 2 * int(unit.abs().sum()) + int(unit[:3].sum(0).abs().sum() + unit[3:].sum(0).abs().sum())


def test_nearest_counts_round_half_up_draw_nothing_and_are_cut_and_counted():
    resp = load_response(IDEAL)
    pairs = _pairs(resp, torch.zeros(5, dtype=torch.float64), max_pulses=3)
    dw = pairs.pulse_weight
    assert dw == pytest.approx(1e-3, rel=1e-9)       # w_max 1 over the card's 1000 steps
    state = pairs.generator.get_state()
    n, cut = pairs.counts(torch.tensor([0.49, 0.5, -1.51, 2.2, -7.6], dtype=torch.float64) * dw, stochastic=False)
    assert n.tolist() == [0.0, 1.0, -2.0, 2.0, -3.0] and cut == 8 - 3
    assert torch.equal(pairs.generator.get_state(), state)


def test_tiki_taka_residual_transfer_keeps_what_the_pulses_did_not_carry():
    resp = load_response(IDEAL)
    slow = _pairs(resp, torch.tensor([0.2, -0.1, 0.0, 0.05], dtype=torch.float64), seed=1, max_pulses=2)
    fast = _pairs(resp, torch.zeros(4, dtype=torch.float64), w_max=0.25, seed=2)
    c_pulse, a_pulse = slow.pulse_weight, fast.pulse_weight
    assert (c_pulse, a_pulse) == pytest.approx((1e-3, 2.5e-4), rel=1e-9)   # A's pulses: a quarter of C's
    tt = TikiTaka(slow, fast, gamma=1.0, transfer_every=1, transfer_lr=0.5, transfer="residual")
    start = tt.weight().clone()
    a_pulses = torch.tensor([7.0, -3.0, 1.0, 20.0], dtype=torch.float64)   # whole A pulses: no rounding
    c = tt.update(a_pulses * a_pulse)                                      # then the transfer
    a_read = a_pulses * a_pulse
    # C gets round(0.5 A / c_pulse) = round([0.875, -0.375, 0.125, 2.5]) = [1, 0, 0, 3] -> cut to 2 (1 cut)
    sent = torch.tensor([1.0, 0.0, 0.0, 2.0], dtype=torch.float64)
    assert tt.transfers == 1 and c.applied == int(a_pulses.abs().sum()) + 3 and c.clipped == 1
    assert torch.allclose(slow.weight(), start + sent * c_pulse, atol=1e-12)
    # A holds its read less what C received, divided by the transfer rate (write-verified: exact)
    assert torch.allclose(fast.weight(), a_read - sent * c_pulse / 0.5, atol=1e-12)
    # the reset variant loses the rest: A back to 0 whatever C received
    slow2 = _pairs(resp, torch.tensor([0.2, -0.1, 0.0, 0.05], dtype=torch.float64), seed=1, max_pulses=2)
    fast2 = _pairs(resp, torch.zeros(4, dtype=torch.float64), w_max=0.25, seed=2)
    tt2 = TikiTaka(slow2, fast2, gamma=1.0, transfer_every=1, transfer_lr=0.5, transfer="reset")
    tt2.update(a_pulses * a_pulse)
    assert torch.equal(fast2.weight(), torch.zeros(4, dtype=torch.float64))


def test_tiki_taka_residual_optimiser_leaves_whole_pulses_on_c_and_the_sum_on_the_weight():
    resp = load_response(IDEAL)
    w = torch.nn.Parameter(torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64))
    settings = InSituSettings(resp, algorithm="tiki_taka", weight_range=5.0, gamma=1.0, transfer_every=2,
                              transfer_lr=1.0, fast_range=0.25, transfer="residual", max_pulses=100)
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=1.0), [w], settings)
    slow, fast = opt.algorithms[0].arrays
    a_pulse, c_pulse = fast.pulse_weight, slow.pulse_weight
    assert c_pulse == pytest.approx(4 * a_pulse)
    c0 = slow.weight().clone()
    total = torch.zeros(3, dtype=torch.float64)
    for k in range(6):   # whole A pulses each step: A and W exact, C only ever gets whole C pulses
        step = torch.tensor([k - 2.0, 3.0, -1.0], dtype=torch.float64) * a_pulse
        w.grad = -step
        total += step
        opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64) + total, atol=1e-12)
    moved = (slow.weight() - c0) / c_pulse
    assert torch.allclose(moved, moved.round(), atol=1e-9)
    # after the last transfer the residual is within half a C pulse (round to nearest)
    assert float((fast.weight().abs()).max()) <= 0.5 * c_pulse + 1e-12
    # by hand: A per 2-step block [[-3, 6, -2], [1, 6, -2], [5, 6, -2]] A pulses = 1/4 C pulse each, carried
    carry, c_total = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for block in ([-3.0, 6.0, -2.0], [1.0, 6.0, -2.0], [5.0, 6.0, -2.0]):
        x = carry + torch.tensor(block, dtype=torch.float64) / 4
        n = torch.sign(x) * torch.floor(x.abs() + 0.5)
        c_total += n
        carry = x - n
    assert torch.allclose(moved, c_total, atol=1e-9)


def test_optimiser_state_round_trip_restores_devices_and_generator():
    resp = load_response("pulse_linear_step")
    torch.manual_seed(0)
    w = torch.nn.Parameter(0.1 * torch.randn(8, 4))
    opt = PulsedOptimizer(torch.optim.SGD([w], lr=0.5), [w], InSituSettings(resp, seed=5))
    w.grad = torch.randn(8, 4)
    opt.step()
    state = opt.state_dict()
    w.grad = torch.randn(8, 4)
    g_next = w.grad.clone()
    opt.step()
    after = w.detach().clone()
    w2 = torch.nn.Parameter(0.1 * torch.randn(8, 4))
    opt2 = PulsedOptimizer(torch.optim.SGD([w2], lr=0.5), [w2], InSituSettings(resp, seed=99))
    opt2.load_state_dict(state)
    w2.grad = g_next
    opt2.step()
    assert torch.equal(w2.detach(), after)


# -- the config's keys -------------------------------------------------------------------------------------------

def _cfg(**training):
    return parse_config({"network": {"kind": "ann", "layers": [64, 16, 10]},
                         "training": {"update": "pulsed", "optimizer": "sgd", **training}})


def test_config_builds_the_settings():
    s = insitu_settings(_cfg(pulse_response="pulse_exp_saturation", pulse_algorithm="tiki_taka", pulse_max=6,
                             tiki_taka_every=3, tiki_taka_transfer="residual"))
    assert (s.response.name, s.algorithm, s.max_pulses, s.transfer_every, s.transfer) == (
        "pulse_exp_saturation", "tiki_taka", 6, 3, "residual")
    assert insitu_settings(parse_config({})) is None


def test_bad_in_situ_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="tiki_taka") as e:
        _cfg(pulse_algorithm="tikitaka")
    assert e.value.key == "training.pulse_algorithm"
    with pytest.raises(ConfigError, match="residual") as e:
        _cfg(tiki_taka_transfer="residul")
    assert e.value.key == "training.tiki_taka_transfer"
    with pytest.raises(ConfigError) as e:
        parse_config({"training": {"update": "pulsd"}})
    assert e.value.key == "training.update" and "pulsed" in str(e.value)
    with pytest.raises(ConfigError, match="hardware.aware"):
        parse_config({"network": {"crossbar": "hfox_1t1r_64"}, "hardware": {"aware": True},
                      "training": {"update": "pulsed"}})
    with pytest.raises(ConfigError, match="weight_clip"):
        _cfg(weight_clip=3.0)
    with pytest.raises(ConfigError, match="pulse_exp_saturaton|no|unknown") as e:
        insitu_settings(_cfg(pulse_response="pulse_exp_saturaton"))
    assert e.value.key == "training.pulse_response" and "pulse_exp_saturation" in str(e.value)
    with pytest.raises(ConfigError, match="measured with its own pulse") as e:
        insitu_settings(_cfg(pulse_response="pulse_soft_bounds", pulse_set_voltage=1.0))
    assert e.value.key == "training.pulse_set_voltage"


def test_a_pulse_below_the_switching_threshold_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="switching threshold") as e:
        insitu_settings(_cfg(pulse_response="stanford_pku_hfox_10k", pulse_set_voltage=0.1, pulse_reset_voltage=-1.1,
                             pulse_width=1e-7))
    assert e.value.key == "training.pulse_set_voltage"
    assert "0.1 V" in str(e.value) and "V or more" in str(e.value) and "zero everywhere" in str(e.value)


def test_settings_refuse_bad_values():
    resp = load_response(IDEAL)
    for kw, key in (({"algorithm": "adam"}, "training.pulse_algorithm"), ({"max_pulses": 0}, "training.pulse_max"),
                    ({"weight_range": -1.0}, "training.pulse_weight_range"),
                    ({"polarity": "up"}, "training.pulse_polarity"),
                    ({"transfer_every": 0}, "training.tiki_taka_every"),
                    ({"fast_range": 1.5}, "training.tiki_taka_fast_range"),
                    ({"transfer": "keep"}, "training.tiki_taka_transfer"),
                    ({"refresh_threshold": 0.0}, "training.pulse_refresh_threshold")):
        with pytest.raises(ParameterError) as e:
            InSituSettings(resp, **kw)
        assert e.value.field == key
