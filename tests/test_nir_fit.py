"""LIF <-> memristive neuron fits of the NIR interop, checked against closed forms and memsim's digital LIF.

* LIF -> vLIF circuit (``import_nir(..., neurons="memristive")``): the fitted circuit's membrane follows the exact
  (zero-order-hold) solution of the LIF, ``v_n = r I (1 - beta^n)`` with ``beta = 1 - dt/tau``, within 0.5 % of its
  asymptote; isolated input pulses give the digital LIF's spikes at the same steps; a sustained input does not
  (the circuit has no limit cycle), and the import says so with the measured count error.
* MIF circuit -> LIF (``export_nir(msnn, neurons="lif_approximation")``): the LIF's tau, r and v_leak are the
  closed form of the MIF's RC membrane at its initial memristor states, and with the memristors frozen the Euler LIF
  reproduces the circuit's subthreshold response to 1e-6 V; the round trip through a file keeps the weights exactly.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from memsim.errors import ParameterError  # noqa: E402
from memsim.interop import NIRError, export_nir, import_nir  # noqa: E402
from memsim.interop.kind import NIRSetup  # noqa: E402
from memsim.interop.nir_fit import NIRFitWarning, euler_lif, fit_mif, run_circuit  # noqa: E402
from memsim.neurons import load_neuron_card  # noqa: E402
from memsim.neurons.dynamics import NeuronDynamics  # noqa: E402

DT = 1e-4
TAU, R = 1e-3, 10.0  # snnTorch's beta = 0.9 at dt = 1e-4


def _lif_graph(n=1, tau=TAU, v_reset=0.0, **over):
    lif = dict(tau=np.full(n, tau), r=np.full(n, R), v_leak=np.zeros(n), v_threshold=np.ones(n),
               v_reset=np.full(n, v_reset))
    lif.update(over)
    return nir.NIRGraph(nodes={"in": nir.Input(np.array([n])), "lif": nir.LIF(**lif), "out": nir.Output(np.array([n]))},
                        edges=[("in", "lif"), ("lif", "out")])


def _memristive(graph):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRFitWarning)
        return import_nir(graph, dt=DT, neurons="memristive")


def test_vlif_fit_reproduces_the_lif_time_constant_against_the_closed_form():
    fit = _memristive(_lif_graph()).layers["lif"].fit
    tau_c = -DT / math.log(1 - DT / TAU)  # the continuous LIF whose exact held-input step is Euler's
    p, (m,) = fit.card.parameters, fit.card.memristors
    assert (m.parameters["R_off"] + p["R_L"]) * p["C"] == pytest.approx(tau_c, rel=1e-12)
    # the LIF's input through the fit's gain, the membrane back through its scale: the exact ZOH solution
    i_lif = 0.1 * m.parameters["v_on"] / (fit.scale * R)  # settles at v_on / 10 on the membrane (linear range)
    steps = 40
    dyn = NeuronDynamics(fit.card, dt=fit.circuit_dt)
    with torch.no_grad():
        v, z = run_circuit(dyn, fit.per_step, torch.full((steps, 1, 1), i_lif * fit.gain, dtype=torch.float64),
                           fit.scale, 0.0)
    beta = 1 - DT / TAU
    closed = R * i_lif * (1 - beta ** np.arange(1, steps + 1))
    assert float(z.sum()) == 0
    assert np.max(np.abs(v[:, 0, 0].numpy() - closed)) < 5e-3 * R * i_lif  # stated: 0.5 % of the asymptote
    assert fit.report.tau_error < 5e-3
    assert fit.report.target_tau == pytest.approx(tau_c)


def test_vlif_fires_on_pulses_like_the_lif_but_not_repeatedly_under_a_sustained_input():
    net, digital = _memristive(_lif_graph()), import_nir(_lif_graph(), dt=DT)
    one = TAU / (DT * R)  # the input that charges the LIF to threshold in one step
    amplitudes = [0.3, 0.6, 1.5, 3.0]
    x = torch.zeros(30, len(amplitudes), 1)
    for b, a in enumerate(amplitudes):
        x[[5, 15], b, 0] = a * one
    with torch.no_grad():
        assert torch.equal(net(x), digital(x))  # 0.3, 0.6: silent; 1.5, 3: a spike at both pulses
        assert float(digital(x).sum()) == 4
        dc = torch.full((60, 1, 1), 3.0 / R)  # 3 x rheobase, held
        assert float(digital(dc).sum()) >= 10 and float(net(dc).sum()) <= 1
    report = net.fit_reports["lif"]
    assert report.counts["DC 3x rheobase"][1] <= 1 < report.counts["DC 3x rheobase"][0]
    with pytest.warns(NIRFitWarning, match="no limit cycle"):
        import_nir(_lif_graph(), dt=DT, neurons="memristive")


@pytest.mark.parametrize("graph, kw, error, message", [
    (_lif_graph(), {"neurons": "analog"}, ParameterError, "neurons = 'analog'"),
    (_lif_graph(), {"card": "vlif_neuron"}, ParameterError, "only with neurons='memristive'"),
    (_lif_graph(), {"neurons": "memristive", "card": "mif_neuron"}, ParameterError, "type 'vlif'"),
    (_lif_graph(tau=5e-5), {"neurons": "memristive"}, ParameterError, "tau > dt"),
    (_lif_graph(v_reset=-0.5), {"neurons": "memristive"}, ParameterError, "v_reset = v_leak"),
    (_lif_graph(v_threshold=np.full(1, -1.0)), {"neurons": "memristive"}, ParameterError, "above v_leak"),
    (_lif_graph(n=2, tau=np.array([1e-3, 2e-3])), {"neurons": "memristive"}, NIRError, "differs between neurons"),
])
def test_bad_mappings_are_clear_errors(graph, kw, error, message):
    with pytest.raises(error, match=message):
        import_nir(graph, dt=DT, **kw)


def test_nir_setup_checks_the_neuron_mapping():
    with pytest.raises(ParameterError, match="neurons"):
        NIRSetup(dataset="digits", neurons="vlif")
    with pytest.raises(ParameterError, match="card"):
        NIRSetup(dataset="digits", card="vlif_neuron")


def _conductance(m):
    return m.parameters["x0"] / m.parameters["R_on"] + (1 - m.parameters["x0"]) / m.parameters["R_off"]


def test_mif_lif_is_the_circuits_rc_closed_form():
    dt = 4e-5
    fit = fit_mif("mif_neuron", dt)
    card = load_neuron_card("mif_neuron")
    (m1, m2), p = card.memristors, card.parameters
    g1, g2 = _conductance(m1), _conductance(m2)
    tau_c = p["C"] / (g1 + g2)
    assert fit.lif.tau == pytest.approx(dt / (1 - math.exp(-dt / tau_c)), rel=1e-12)
    assert fit.lif.r == pytest.approx(1 / (g1 + g2), rel=1e-12)
    assert fit.lif.v_leak == pytest.approx((g1 * p["E1"] + g2 * p["E2"]) / (g1 + g2), rel=1e-12)
    assert fit.report.tau_error < 0.05  # measured on the circuit: its memristors drift during the step
    # memristors frozen: the circuit's membrane is the RC, and the Euler LIF at dt is its exact held-input solution
    frozen = card.with_parameters(M1_tau=1e7, M2_tau=1e7)
    current = np.full((30, 1), 0.5 * (fit.lif.v_threshold - fit.lif.v_leak) / fit.lif.r)
    with torch.no_grad():
        v = NeuronDynamics(frozen, dt=dt).run(torch.as_tensor(current).view(30, 1, 1), spikes=False).v[:, 0, 0]
    v_lif, _ = euler_lif(fit.lif, current, dt)
    assert np.max(np.abs(v.numpy() - v_lif[:, 0])) < 1e-6  # V
    with pytest.raises(ParameterError, match="type 'mif'"):
        fit_mif("vlif_neuron")


def test_msnn_exports_as_fitted_lifs_and_round_trips_the_weights_exactly(tmp_path):
    from memsim.training.network import MemristiveSNN
    torch.manual_seed(0)
    net = MemristiveSNN([8, 6, 3], time_steps=5)
    with pytest.raises(NIRError, match="lif_approximation"):
        export_nir(net)
    with pytest.raises(ParameterError, match="neurons = 'lif'"):
        export_nir(net, neurons="lif", input_scale=0.2)
    with pytest.raises(ParameterError, match="input_scale"):
        export_nir(net, neurons="lif_approximation")
    with pytest.warns(NIRFitWarning, match="MIF"):
        graph = export_nir(net, neurons="lif_approximation", input_scale=0.2)
    path = tmp_path / "msnn.nir"
    nir.write(path, graph)
    back = import_nir(path)
    assert back.dt == net.dt
    for k, syn in enumerate(net.synapses):
        assert torch.equal(back.layers[f"fc{k}"].weight, syn.weight.detach())
    again = export_nir(back)
    for k, syn in enumerate(net.synapses):
        assert np.array_equal(np.asarray(again.nodes[f"fc{k}"].weight, np.float32), syn.weight.detach().numpy())
    meta = nir.read(path).metadata  # the fit and its measured error travel with the graph
    assert float(meta["fit_count_error"]) > 0.1 and "MIF vs LIF" in str(meta["fit_summary"])
    assert np.allclose(graph.nodes["mif0"].v_threshold, float(meta["fit_v_threshold_V"]))
    assert type(graph.nodes["mif0"]).__name__ == "LIF" and type(graph.nodes["mif1"]).__name__ == "LI"  # voltage readout
    # units: r turns W x (input intensity | spike) into the MIF's volts: g_unit x (input_scale | amplitude) x R
    card = net.neurons[0].card
    g = sum(_conductance(m) for m in card.memristors)
    assert np.allclose(graph.nodes["mif0"].r, net.g_unit * 0.2 / g, rtol=1e-9)
    assert np.allclose(graph.nodes["mif1"].r, net.g_unit * float(meta["fit_amplitude_V"]) / g, rtol=1e-9)
    x = torch.rand(5, 2, 8)
    with torch.no_grad():
        assert back(x).shape == (5, 2, 3)
    # the membrane as a leaky integrator: LI hidden layers read by the next Affine in volts, no bias
    li = export_nir(net, neurons="li_approximation", input_scale=0.2)
    assert [type(li.nodes[n]).__name__ for n in ("mif0", "mif1")] == ["LI", "LI"]
    assert np.allclose(li.nodes["mif1"].r, net.g_unit / g, rtol=1e-9) and not np.any(li.nodes["fc1"].bias)
    assert float(li.metadata["fit_li_error"]) > 0


def test_cli_evaluates_a_nir_file_on_memristive_neurons(tmp_path, capsys):
    import json
    from memsim.cli import main
    from memsim.training.data import load_dataset
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(np.array([64])),
        "fc": nir.Affine(weight=rng.standard_normal((10, 64)).astype(np.float32), bias=np.zeros(10, np.float32)),
        "lif": nir.LIF(tau=np.full(10, TAU), r=np.full(10, R), v_leak=np.zeros(10), v_threshold=np.ones(10),
                       v_reset=np.zeros(10)),
        "out": nir.Output(np.array([10]))}, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    path = tmp_path / "digits.nir"
    nir.write(path, graph)
    test = load_dataset("digits", "test", flatten=True)
    images, labels = test.images[:30], test.labels[:30]
    with torch.no_grad():  # the library's import, direct encoding, most spikes (an independent route to the score)
        counts = _memristive(graph)(images.unsqueeze(0).expand(8, *images.shape)).sum(0)
    reference = float((counts.argmax(-1) == labels).float().mean())
    assert counts.sum() > 30 and len(set(counts.argmax(-1).tolist())) > 2  # the circuits fire, differently per image
    args = ["evaluate", str(path), "--data", "digits", "--steps", "8", "--limit", "30", "--dt", str(DT)]
    assert main(args + ["--neurons", "memristive", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["accuracy"] == pytest.approx(reference, abs=1e-6) and "tau" in r["fits"]["lif"]
    assert main(args + ["--neuron-card", "vlif_neuron"]) == 2
    assert "only with neurons = 'memristive'" in capsys.readouterr().err
    assert main(args + ["--neurons", "memristive", "--neuron-card", "mif_neuron"]) == 2
    assert "type 'vlif'" in capsys.readouterr().err
