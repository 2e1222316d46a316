"""NIR import/export against snnTorch's own NIR export (the reference): same spikes on the same input.

snnTorch's ``Leaky`` with ``reset_mechanism="zero", reset_delay=False`` is exactly NIR's LIF under forward Euler at
the exported time step (snnTorch exports ``tau = dt / (1 - beta)``, ``r = tau / dt`` with ``dt = 1e-4``), so the
spikes must agree bit for bit in float32. (snnTorch's default subtractive reset has no NIR form: NIR resets to
``v_reset``; such a network is exported as if it reset to zero, and its spikes differ after the first reset.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")
pytest.importorskip("nirtorch")

import snntorch.utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402

from memsim.cli import main  # noqa: E402
from memsim.errors import MemsimError  # noqa: E402
from memsim.interop import NIRError, export_nir, import_nir  # noqa: E402
from memsim.nn.calibration import calibrate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")

DT = 1e-4  # snnTorch's export step
KW = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)


def _leaky(shape, beta=0.9, **kw):
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), **KW, **kw)


def _snntorch_conv_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), _leaky((4, 8, 8)), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 5), _leaky((5,), 0.8, output=True))
    return net, export_to_nir(net, torch.randn(1, 1, 8, 8), ignore_dims=[0])


def _run_snntorch(net, x):
    snntorch.utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x[t])[0] for t in range(x.shape[0])])


def _input(T=20, B=6, shape=(1, 8, 8), seed=1):
    return torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_snntorch_conv_lif_linear_gives_the_same_spikes():
    net, graph = _snntorch_conv_net()
    x = _input()
    ref = _run_snntorch(net, x)
    with torch.no_grad():
        out = import_nir(graph, dt=DT)(x)
    assert ref.sum() > 5  # the network spikes: the comparison is not of two silent outputs
    assert torch.equal(out, ref)


def test_snntorch_synaptic_is_cuba_lif():
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(12, 6), snn.Synaptic(alpha=torch.full((6,), 0.7),
                                                                     beta=torch.full((6,), 0.85),
                                                                     threshold=torch.ones(6), output=True, **KW))
    graph = export_to_nir(net, torch.randn(1, 12), ignore_dims=[0])
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"CubaLIF"}
    x = _input(T=30, B=5, shape=(12,))
    snntorch.utils.reset(net)
    with torch.no_grad():
        ref = torch.stack([net(x[t])[0] for t in range(30)])
        out = import_nir(graph, dt=DT)(x)
    assert ref.sum() > 5
    assert torch.allclose(out, ref)


def test_export_then_import_round_trip_through_a_file(tmp_path):
    _, graph = _snntorch_conv_net()
    net = import_nir(graph, dt=DT)
    path = tmp_path / "net.nir"
    nir.write(path, export_nir(net))
    again = import_nir(path)  # dt travels in the graph's metadata
    x = _input(seed=3)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    assert again.dt == DT


def test_on_a_preset_in_ideal_mode_the_spikes_are_unchanged_and_noise_changes_them():
    net, graph = _snntorch_conv_net()
    x = _input(seed=4)
    ref = _run_snntorch(net, x)
    chip = import_nir(graph, dt=DT, preset="hfox_1t1r_64", mode="noisy")
    calibrate(chip, lambda: chip(x))  # the programmed chip's converter ranges, before it is read
    with torch.no_grad():
        exact = import_nir(graph, dt=DT, preset="hfox_1t1r_64", mode="ideal")(x)
        noisy = chip(x)
    assert torch.equal(exact, ref)
    assert not torch.equal(noisy, ref)
    assert (noisy != ref).float().mean() < 0.2  # a programmed chip, not a different network


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _affine(n_in, n_out):
    return nir.Affine(weight=np.ones((n_out, n_in)), bias=np.zeros(n_out))


def _lif(n):
    return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))


@pytest.mark.parametrize("nodes, edges, message", [
    ({"in": nir.Input(np.array([4])), "a": _affine(4, 3), "l": _lif(3), "out": nir.Output(np.array([3]))},
     [("in", "a"), ("a", "l"), ("l", "a"), ("l", "out")], "cycle"),
    ({"in": nir.Input(np.array([4])), "a": _affine(4, 3), "x": _lif(3), "out": nir.Output(np.array([3]))},
     [("in", "a"), ("a", "out")], r"node 'x' \(LIF\) is unconnected"),
    ({"in": nir.Input(np.array([4])), "a": _affine(5, 3), "out": nir.Output(np.array([3]))},
     [("in", "a"), ("a", "out")], r"node 'a' \(Affine\) gets an input of shape \[4\]"),
    ({"in": nir.Input(np.array([4])), "d": nir.Delay(np.ones(4)), "out": nir.Output(np.array([4]))},
     [("in", "d"), ("d", "out")], "node 'd' has type Delay"),
    ({"in": nir.Input(np.array([4])), "a": _affine(4, 3), "out": nir.Output(np.array([3]))},
     [("in", "a"), ("a", "nowhere")], "names node 'nowhere'"),
])
def test_bad_graphs_are_one_line_errors_naming_the_node(nodes, edges, message):
    with pytest.raises(NIRError, match=message) as info:
        import_nir(_graph(nodes, edges), dt=DT)
    assert len(str(info.value).splitlines()) == 1


def test_missing_time_step_and_bad_files(tmp_path):
    _, graph = _snntorch_conv_net()
    with pytest.raises(NIRError, match="does not state its time step"):
        import_nir(graph)
    text = tmp_path / "model.nir"
    text.write_text("not a graph")
    with pytest.raises(NIRError, match="not a NIR graph"):
        import_nir(text, dt=DT)
    h5py = pytest.importorskip("h5py")
    foreign = tmp_path / "foreign.nir"
    with h5py.File(foreign, "w") as fh:
        fh["x"] = np.arange(3)
    with pytest.raises(NIRError, match="not a readable NIR graph"):
        import_nir(foreign, dt=DT)
    with pytest.raises(MemsimError):
        import_nir(tmp_path / "missing.nir", dt=DT)


def test_memristive_snn_has_no_nir_form():
    from memsim.training.network import MemristiveSNN
    with pytest.raises(NIRError, match="MIF neurons"):
        export_nir(MemristiveSNN([4, 3], dt=1e-5, time_steps=2))


def _digits_snntorch(tmp_path):
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), _leaky((32,)), torch.nn.Linear(32, 10),
                              _leaky((10,), 0.85, output=True))
    with torch.no_grad():  # enough drive that the untrained net spikes on the digits' intensities
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    path = tmp_path / "digits.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
    return net, path


def test_cli_evaluates_a_nir_file_as_snntorch_scores_it(tmp_path, capsys):
    import json
    from memsim.training.data import load_dataset
    net, path = _digits_snntorch(tmp_path)
    test = load_dataset("digits", "test", flatten=True)
    spikes = _run_snntorch(net, test.images.unsqueeze(0).expand(10, *test.images.shape))
    reference = float((spikes.sum(0).argmax(-1) == test.labels).float().mean())
    assert main(["evaluate", str(path), "--data", "digits", "--steps", "10", "--dt", "1e-4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["preset"] == "ideal" and r["accuracy"] == pytest.approx(reference, abs=1e-6)
    assert main(["evaluate", str(path), "--data", "digits", "--steps", "10", "--dt", "1e-4", "--preset",
                 "hfox_1t1r_64", "--seeds", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["per_seed"]) == 2 and 0.0 <= r["accuracy"] <= 1.0 and r["output_error"] > 0
    assert main(["evaluate", str(path), "--data", "fashion_mnist", "--dt", "1e-4"]) == 2
    assert "does not take fashion_mnist images (784 values)" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--steps", "10"]) == 2
    assert "--data" in capsys.readouterr().err


def test_a_nir_graph_is_a_sweeps_base_network(tmp_path):
    """The same numbers as memsim evaluate on the same chips; the spec says what the graph does not."""
    from memsim.deploy import Chip, evaluate_on_chips
    from memsim.interop.kind import NIRSetup, load_nir
    from memsim.sweep import parse_spec, run_sweep, table
    from memsim.sweep.spec import SweepError
    from memsim.sweep.worker import point_chip
    from memsim.training.data import ImageDataset, load_dataset

    _, path = _digits_snntorch(tmp_path)
    nir_setup = {"dataset": "digits", "steps": 10, "dt": 1e-4}
    spec = parse_spec({"name": "nir", "base": {"checkpoint": str(path), "nir": nir_setup, "preset": "hfox_1t1r_64",
                                               "mode": "noisy", "chips": 2, "limit": 60},
                       "axes": {"noise.program": [0.0, 0.1]}})
    out = run_sweep(spec, tmp_path / "sweep", workers=1, progress=False)
    assert out["failed"] == 0
    df = table(tmp_path / "sweep").sort_values("noise.program")
    assert (df["kind"] == "nir").all() and (df["energy"] > 0).all()
    network = load_nir(path, NIRSetup(**nir_setup))
    train, test = (load_dataset("digits", s, flatten=True) for s in ("train", "test"))
    test = ImageDataset(test.images[:60], test.labels[:60], test.info, "test")
    first = spec.resolve(spec.points()[0])
    assert first["preset"] == {"noise.program": 0.0}
    ev = evaluate_on_chips(network, point_chip(first).series(2), test, calibration=train)
    assert df["accuracy"].iloc[0] == pytest.approx(ev.accuracy)
    with pytest.raises(SweepError, match="base.nir"):
        parse_spec({"name": "x", "base": {"checkpoint": str(path)}})
    with pytest.raises(SweepError, match="does not take fashion_mnist"):
        parse_spec({"name": "x", "base": {"checkpoint": str(path), "nir": {**nir_setup, "dataset": "fashion_mnist"}}})
    # LIF nodes on fitted memristive circuits: the same NIRSetup keys as memsim evaluate's flags
    mem = parse_spec({"name": "x", "base": {"checkpoint": str(path), "nir": {**nir_setup, "neurons": "memristive"}}})
    assert mem.resolve(mem.points()[0])["nir"]["neurons"] == "memristive"
    with pytest.raises(SweepError, match="neurons"):
        parse_spec({"name": "x", "base": {"checkpoint": str(path), "nir": {**nir_setup, "neurons": "analog"}}})
    with pytest.raises(SweepError, match="did you mean 'neurons'"):
        parse_spec({"name": "x", "base": {"checkpoint": str(path), "nir": {**nir_setup, "neuron": "memristive"}}})
