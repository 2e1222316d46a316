"""Memristive neurons (MIF, volatile LIF): cards, torch layers vs scipy and ngspice, gradients, robustness.

References: ngspice transients of the real circuits (device subcircuits + capacitor + sources,
tolerances REFERENCE_OPTIONS, max step dt/10), scipy's LSODA on an independent numpy transcription of
the circuit equations, central finite differences for gradients.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from memsim.errors import CardError, NonFiniteError, ParameterError, StimulusError
from memsim.neurons import list_neuron_cards, load_neuron_card
from memsim.neurons.netlist import neuron_subcircuit
from memsim.neurons.simulate import (SPIKE_TIME_TOLERANCE, WAVEFORM_TOLERANCE, compare, standard_stimuli,
                                     torch_trace)
from memsim.nn import MIFNeuron, VLIFNeuron

ROOT = Path(__file__).resolve().parent.parent
CARDS = ["mif_neuron", "vlif_neuron"]


def spice_ok():
    from memsim import spice
    return spice.available()


# --------------------------------------------------------------------------- cards and SI derivation
def test_cards_listed_as_neurons_not_devices():
    from memsim.devices.cards import list_cards
    assert set(CARDS) <= set(list_neuron_cards())
    assert not set(CARDS) & set(list_cards())


def test_mif_si_derivation_keeps_step_based_ratios():
    """The public code: tau = 100 steps, R_on C_code = 0.1 step, R_off C_code = 10 steps (C_code = 100e-6)."""
    card = load_neuron_card("mif_neuron")
    p, (m1, m2) = card.namespaces()
    step = m1.tau / 100.0
    assert card.dt == pytest.approx(step)
    assert m1.R_on * p.C == pytest.approx(1000 * 100e-6 * step)
    assert m1.R_off * p.C == pytest.approx(100000 * 100e-6 * step)
    assert p.tau_s == pytest.approx(4 * step)
    assert (m1.v_on, m1.v_off, m1.k, m1.x0) == pytest.approx((0.110, 0.005, 0.015, 0.0238))
    assert (p.E1, p.E2) == (0.0, 0.05)


@pytest.mark.parametrize("name", CARDS)
def test_generated_lib_is_up_to_date(name):
    card = load_neuron_card(name)
    assert card.lib_path().read_text() == neuron_subcircuit(card), \
        f"regenerate with 'memsim neuron {name} --export'"


# --------------------------------------------------------------------------- bad input
def test_e1_not_below_e2_is_rejected():
    card = load_neuron_card("mif_neuron")
    with pytest.raises(ParameterError, match=r"E1.*E1 < E2.*swap"):
        card.with_parameters(E1=0.05, E2=0.05)
    with pytest.raises(ParameterError, match="E1"):
        MIFNeuron(E1=0.1, E2=0.0)


@pytest.mark.parametrize("override, field", [({"C": 0.0}, "C"), ({"C": -1e-9}, "C"),
                                             ({"M1_tau": 0.0}, "tau"), ({"M1_tau": -1e-3}, "tau"),
                                             ({"tau_s": 0.0}, "tau_s")])
def test_nonpositive_capacitance_or_tau_is_rejected(override, field):
    with pytest.raises(ParameterError, match=rf"\.{field} = .*allowed \(0, inf\)"):
        MIFNeuron(**override)


def test_coarse_time_step_is_rejected_before_running():
    with pytest.raises(ParameterError, match=r"dt = 0.0002 is invalid.*\(0, 4e-05\].*memristor tau"):
        MIFNeuron(dt=2e-4)
    with pytest.raises(ParameterError, match=r"dt"):
        VLIFNeuron(dt=1e-4)


def test_wrong_input_shape_dtype_device_rejected():
    layer = MIFNeuron()
    with pytest.raises(StimulusError, match=r"shape \(5, 3\).*\[T, B, N\]"):
        layer(torch.zeros(5, 3))
    with pytest.raises(StimulusError, match=r"dtype torch.float64.*float32"):
        layer(torch.zeros(5, 1, 3, dtype=torch.float64))
    with pytest.raises(StimulusError, match=r"is on meta.*layer is on cpu"):
        layer(torch.zeros(5, 1, 3, device="meta"))
    with pytest.raises(StimulusError, match=r"NaN"):
        layer(torch.full((5, 1, 3), float("nan")))
    with pytest.raises(StimulusError, match=r"\[B, N\]"):
        layer.step(torch.zeros(1, 2, 3))
    with pytest.raises(StimulusError, match=r"state must be"):
        layer(torch.zeros(5, 1, 3), state=torch.zeros(1, 3, 2))


def test_bad_card_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ntype = "mif"\n[memristors]\nM1 = "mss_mif"\n')
    with pytest.raises(CardError, match="2 memristor"):
        load_neuron_card(bad)
    bad.write_text('name = "bad"\ntype = "lif"\n[memristors]\nM1 = "mss_mif"\n')
    with pytest.raises(ParameterError, match="type.*mif.*vlif"):
        load_neuron_card(bad)
    text = (ROOT / "devices" / "mif_neuron.toml").read_text().replace("E2 = 0.05", "E2 = -0.05")
    bad.write_text(text)
    with pytest.raises(ParameterError, match="E1"):
        load_neuron_card(bad)
    with pytest.raises(CardError, match="device card"):
        load_neuron_card("mss_mif")
    with pytest.raises(CardError, match="unknown neuron card 'mif_neurn'; did you mean 'mif_neuron'"):
        load_neuron_card("mif_neurn")


# --------------------------------------------------------------------------- torch vs scipy (no ngspice)
def _scipy_reference(card, current, dt):
    """Independent numpy transcription of the circuit equations, LSODA, held input."""
    p, devs = card.namespaces()
    sig = lambda a: 0.5 * (1 + np.tanh(0.5 * a))
    G = lambda d, x: x / d.R_on + (1 - x) / d.R_off
    mss = lambda d, v, x: ((1 - x) * sig((v - d.v_on) / d.k) - x * sig((d.v_off - v) / d.k)) / d.tau

    def f(t, y, u):
        if card.type == "mif":
            V, x1, x2 = y
            d1, d2 = devs
            return [(u - G(d1, x1) * (V - p.E1) - G(d2, x2) * (V - p.E2)) / p.C,
                    mss(d1, V - p.E1, x1), mss(d2, V - p.E2, x2)]
        V, x = y
        (d,) = devs
        vm = V / (1 + G(d, x) * p.R_L)
        return [(u - G(d, x) * vm) / p.C, mss(d, vm, x)]
    y = list(card.circuit.initial_state(p, devs))
    out = [y]
    for u in current:
        y = solve_ivp(f, (0, dt), y, args=(u,), method="LSODA", rtol=1e-10, atol=1e-13).y[:, -1]
        out.append(y)
    return np.array(out)


@pytest.mark.parametrize("name", CARDS)
def test_torch_matches_scipy_on_a_current_step(name):
    card = load_neuron_card(name)
    n = 150
    current = np.zeros(n)
    current[10:] = card.verify.step_current * 2
    ref = _scipy_reference(card, current, card.dt)
    tr = torch_trace(card, type("S", (), {"current": current, "synapse": False})())
    amplitude = ref[:, 0].max() - ref[:, 0].min()
    assert np.max(np.abs(tr.v - ref[:, 0])) / amplitude < 2e-3
    assert np.max(np.abs(tr.states[:, 1:] - ref[:, 1:])) < 2e-3


# --------------------------------------------------------------------------- torch vs ngspice
@pytest.mark.spice
@pytest.mark.parametrize("name", CARDS)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_torch_matches_ngspice(name, which):
    """Step, ramp, irregular spike train: every spike within one step, waveform within 1 % of amplitude;
    the torch layer and the scalar path (memsim.scalar, the same equations rendered to a Python loop)."""
    if not spice_ok():
        pytest.skip("ngspice not available")
    from memsim.neurons.simulate import spice_trace
    from memsim.scalar import neuron_trace
    card = load_neuron_card(name)
    stim = standard_stimuli(card)[which]
    ref = spice_trace(card, stim)
    for model in (torch_trace(card, stim), neuron_trace(card, stim.current, synapse=stim.synapse)):
        c = compare(card, model, ref, card.dt)
        assert c["spikes_spice"] >= 1, "the stimulus must make the neuron spike"
        assert c["spikes_torch"] == c["spikes_spice"], model.source
        assert c["spike_shift_steps"] <= SPIKE_TIME_TOLERANCE, model.source
        assert c["waveform_error"] <= WAVEFORM_TOLERANCE, model.source


@pytest.mark.spice
def test_verify_registry_lists_and_runs_neuron_checks():
    if not spice_ok():
        pytest.skip("ngspice not available")
    from memsim.verify import collect
    checks = collect(kinds=["neuron"], names=["vlif_neuron"])
    assert [c.stimulus for c in checks][0].startswith("step")
    assert len(checks) == 3
    result = checks[0].run()
    assert result.passed and result.kind == "neuron"


def test_mif_spike_depolarises_hyperpolarises_repolarises():
    """One synaptic input pulse against a control neuron without it (same batch): the membrane passes
    E1 + v_on (M1 switches ON), is then pulled below the control (hyperpolarisation) and recovers as M1
    relaxes OFF (repolarisation) - from the device dynamics, with no threshold or reset anywhere."""
    layer = MIFNeuron(synapse=True)
    x = torch.zeros(1000, 1, 2)
    x[100, 0, 0] = 3e-4
    with torch.no_grad():
        out = layer(x)
    d = (out.v[:, 0, 0] - out.v[:, 0, 1]).double()
    p, (m1, _) = layer.card.namespaces()
    peak = int(d.argmax())
    assert out.v[peak, 0, 0] > p.E1 + m1.v_on and out.spikes[:, 0, 0].sum() == 1 and out.spikes[:, 0, 1].sum() == 0
    low = peak + int(d[peak:].argmin())
    assert d[low] < -3e-3                        # hyperpolarised by more than 3 mV
    assert abs(d[-1]) < 0.5 * abs(d[low])        # and recovering towards the control


# --------------------------------------------------------------------------- layer semantics
@pytest.mark.parametrize("cls", [MIFNeuron, VLIFNeuron])
def test_step_mode_equals_sequence_mode(cls):
    layer = cls(dtype=torch.float64, synapse=True)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 2, 3, generator=g, dtype=torch.float64) * layer.card.verify.train_amplitude
    full = layer(x)
    state, vs, spikes = None, [], []
    for n in range(6):
        v, s, state = layer.step(x[n], state)
        vs.append(v)
        spikes.append(s)
    rest = layer(x[6:], state)
    torch.testing.assert_close(torch.cat([torch.stack(vs), rest.v]), full.v, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([torch.stack(spikes), rest.spikes]), full.spikes)


def test_float32_tracks_float64():
    x = torch.full((200, 1, 2), 2e-5, dtype=torch.float64)
    v64 = MIFNeuron(dtype=torch.float64)(x).v
    v32 = MIFNeuron(dtype=torch.float32)(x.float()).v
    assert (v32.double() - v64).abs().max() / (v64.max() - v64.min()) < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cls", [MIFNeuron, VLIFNeuron])
def test_cuda_matches_cpu(cls):
    x = torch.full((100, 2, 3), cls().card.verify.step_current, dtype=torch.float64)
    cpu = cls(dtype=torch.float64)(x).v
    gpu = cls(dtype=torch.float64, device="cuda")(x.cuda()).v
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("cls", [MIFNeuron, VLIFNeuron])
@pytest.mark.parametrize("synapse", [False, True])
def test_gradcheck_float64(cls, synapse):
    layer = cls(dtype=torch.float64, synapse=synapse)
    scale = layer.card.verify.train_amplitude if synapse else layer.card.verify.step_current * 4
    g = torch.Generator().manual_seed(1)
    z = torch.rand(4, 1, 2, generator=g, dtype=torch.float64).requires_grad_()
    # inputs in units of `scale` amperes, outputs in volts
    assert torch.autograd.gradcheck(lambda z: layer(z * scale).v, (z,), eps=1e-6, atol=1e-7, rtol=1e-4)


def test_weight_gradient_matches_finite_differences():
    """Loss on the membrane voltage of MIF neurons driven by W @ (input spikes) through the synapse."""
    layer = MIFNeuron(dtype=torch.float64, synapse=True)
    g = torch.Generator().manual_seed(2)
    T, B, K, N = 40, 2, 3, 2
    spikes = (torch.rand(T, B, K, generator=g) < 0.2).double()
    W = (torch.rand(K, N, generator=g, dtype=torch.float64) * 3e-4).requires_grad_()
    target = torch.full((T, B, N), 0.05, dtype=torch.float64)

    def loss_of(w):
        return ((layer(spikes @ w).v - target) ** 2).mean()
    loss_of(W).backward()
    h = 1e-9
    fd = torch.zeros_like(W)
    with torch.no_grad():
        for i in range(K):
            for j in range(N):
                e = torch.zeros_like(W)
                e[i, j] = h
                fd[i, j] = (loss_of(W + e) - loss_of(W - e)) / (2 * h)
    assert W.grad.abs().max() > 0
    torch.testing.assert_close(W.grad, fd, rtol=1e-5, atol=1e-9 * fd.abs().max().item())


@pytest.mark.parametrize("steps", [pytest.param(1000, marks=pytest.mark.slow), 250])
def test_gradients_finite_over_long_sequences(steps):
    layer = MIFNeuron(synapse=True)  # float32, the training dtype
    g = torch.Generator().manual_seed(3)
    spikes = (torch.rand(steps, 1, 4, generator=g) < 0.05).float()
    w = torch.full((4,), 3e-4, requires_grad=True)
    out = layer(spikes * w)
    assert out.spikes.sum() > steps // 100  # it really spikes along the way
    out.v.pow(2).sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().max() > 0


# --------------------------------------------------------------------------- numerical robustness
@pytest.mark.parametrize("cls", [MIFNeuron, VLIFNeuron])
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=pytest.mark.slow)])
def test_input_range_sweep_stays_finite_and_accurate(cls, dtype):
    """The documented input range incl. its extremes (0 and the maximum) and a log sweep between, batched.

    Reference: the same layer in float64 with 8x the sub-steps. Tolerance: half the 1 % SPICE criterion.
    At the top of the vLIF range the membrane moves ~1 V per step through the switch's 10 mV-wide
    sigmoid, which the default sub-steps resolve to ~0.25 % of the amplitude (measured), not better.
    """
    lo, hi = cls().card.input_range
    amps = torch.cat([torch.tensor([lo, hi]), torch.logspace(-8, math.log10(hi), 10)]).to(torch.float64)
    x = amps.view(1, 1, -1).expand(120, 1, -1).clone()
    x[:10] = 0.0
    out = cls(dtype=dtype)(x.to(dtype))
    ref_layer = cls(dtype=torch.float64)
    ref = cls(dtype=torch.float64, substeps=8 * ref_layer.substeps)(x).v
    assert torch.isfinite(out.v).all()
    err = (out.v.double() - ref).abs().max(0).values / (ref.max(0).values - ref.min(0).values + 1e-3)
    assert err.max() < WAVEFORM_TOLERANCE / 2


def test_published_explicit_update_would_diverge_ours_does_not():
    """One explicit step per dt on the MIF (R_on C = dt/10) diverges; the automatically sub-stepped RK4 does not.

    Reference for "does not": scipy LSODA on the same 200-step top-of-range input (waveform within 1 %).
    """
    from memsim.integrate import step as integrate_step
    layer = MIFNeuron(dtype=torch.float64)
    hi = layer.card.input_range[1]
    x = torch.full((200, 1, 1), hi, dtype=torch.float64)
    v = layer(x).v[:, 0, 0].numpy()
    ref = _scipy_reference(layer.card, np.full(200, hi), layer.dt)[1:, 0]
    assert np.max(np.abs(v - ref)) / (ref.max() - ref.min()) < WAVEFORM_TOLERANCE
    # forward Euler at dt (the explicit update) with the same equations: grows without bound
    f, y = layer._field(x[0]), layer.initial_state(1, 1)
    for _ in range(200):
        y = integrate_step(f, 0.0, y, layer.dt, "euler")
    assert not torch.isfinite(y).all() or y[..., 0].abs().max() > 1e6
    # RK4 without sub-steps overflows and the layer says where
    with pytest.raises(NonFiniteError, match=r"mif_neuron.*step 1\d\d .*input current 0.001 A"):
        MIFNeuron(dtype=torch.float64, substeps=1)(x)


def test_non_finite_state_names_neuron_step_and_input():
    layer = VLIFNeuron(dtype=torch.float32)
    x = torch.zeros(5, 1, 3)
    x[2:, 0, 1] = 3e38  # finite float32 input whose charge overflows the membrane
    with pytest.raises(NonFiniteError, match=r"vlif_neuron.*batch 0, neuron 1.*step 2.*3e\+38 A"):
        layer(x)
    state = None
    with pytest.raises(NonFiniteError, match=r"vlif_neuron.*batch 0, neuron 1.*step 2 .*3e\+38 A"):
        for n in range(5):
            _, _, state = layer.step(x[n], state, index=n)


# --------------------------------------------------------------------------- CLI and notebook
def test_cli_plot_without_spice(tmp_path):
    out = tmp_path / "vlif.png"
    from memsim.cli import main
    assert main(["neuron", "vlif_neuron", "--plot", str(out), "--no-spice"]) == 0
    assert out.stat().st_size > 10_000


def test_cli_export_stdout(capsys):
    from memsim.cli import main
    assert main(["neuron", "mif_neuron", "--export", "-o", "-"]) == 0
    text = capsys.readouterr().out
    assert ".subckt MIF_NEURON mem x1 x2" in text and "X_M2 mem e2 x2 MSS_MIF" in text


@pytest.mark.spice
@pytest.mark.slow  # ~30 s; the same SPICE comparisons run in test_torch_matches_ngspice and the notebook
def test_cli_plot_with_spice(tmp_path):
    if not spice_ok():
        pytest.skip("ngspice not available")
    out = tmp_path / "mif.png"
    r = subprocess.run([sys.executable, "-m", "memsim.cli", "neuron", "mif_neuron", "--plot", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "spike shift" in r.stdout and out.stat().st_size > 10_000
