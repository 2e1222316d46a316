"""Networks from the rest of the SNN ecosystem: NIR graphs as memsim networks, on ideal or memristive hardware.

    from memsim.interop.nir import import_nir
    net = import_nir("model.nir", dt=1e-4)                     # ideal: the graph's own arithmetic
    chip_net = import_nir("model.nir", dt=1e-4, preset="hfox_1t1r_64", mode="noisy")  # synapses on crossbars
    calibrate(chip_net, lambda: chip_net(x_train))             # a programmed chip: set its converter ranges once
    out = net(x)                                               # x: [T, B, *input shape] -> [T, B, *output shape]

``Affine``/``Linear`` and ``Conv2d`` nodes become ``nn.Linear`` / ``nn.Conv2d`` (ideal) or, with a preset,
memsim's crossbar layers (:func:`memsim.nn.convert`: the weights are mapped to conductances, programmed with
the preset's noise and read through its converters and wires). ``LIF``, ``CubaLIF``, ``IF``, ``LI`` and ``I``
become digital neurons integrated at the graph's time step (:mod:`memsim.interop.nir_neurons`); ``Flatten``,
``SumPool2d``, ``AvgPool2d``, ``Scale`` and ``Threshold`` their torch equivalents. Several edges into one node
are summed. The whole graph is checked before anything is built (:func:`memsim.interop.nir_graph.check_graph`).

Stateless nodes process all time steps at once (one crossbar read per layer and step, batched over time), and
the neurons step through time: the graph is a DAG, so each node's whole input sequence is known when it runs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.array import DEFAULT_MODE
from ..errors import ParameterError
from ..nn.convert import convert
from .nir_graph import GraphPlan, NIRError, check_graph, read_graph, require_nir
from .nir_fit import MIFFit, fit_mif, warn_if_inexact
from .nir_memristive import MemristiveLIF
from .nir_neurons import IF, LI, LIF, CubaLIF, Integrator

__all__ = ["import_nir", "export_nir", "NIRNetwork", "NIRError"]

_NEURONS = {"LIF": LIF, "CubaLIF": CubaLIF, "IF": IF, "LI": LI, "I": Integrator}
#: how ``import_nir`` builds LIF nodes: NIR's equations (digital) or fitted vLIF circuits (memristive)
NEURON_MAPPINGS = ("digital", "memristive")
#: how ``export_nir`` writes memsim's MIF neurons (approximations, their errors in the metadata): a fitted LIF
#: (spikes), or the membrane as a leaky integrator (``LI``, the analog voltage the next layer of an MSNN reads)
EXPORT_NEURONS = ("lif_approximation", "li_approximation")
DEFAULT_VLIF_CARD = "vlif_neuron"


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def _pair(value) -> tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))


class _Pointwise(nn.Module):
    """``Scale`` (``s * x``), ``Threshold`` (``H(x - theta)``) and ``Flatten`` (a reshape)."""

    def __init__(self, kind: str, node, out_shape: tuple[int, ...]):
        super().__init__()
        self.kind, self.out_shape = kind, tuple(out_shape)
        if kind == "Scale":
            self.register_buffer("value", _tensor(node.scale))
        elif kind == "Threshold":
            self.register_buffer("value", _tensor(node.threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "Scale":
            return x * self.value.to(x)
        if self.kind == "Threshold":
            return (x > self.value.to(x)).to(x.dtype)
        return x.reshape(x.shape[0], *self.out_shape)


class _SumPool(nn.Module):
    def __init__(self, node):
        super().__init__()
        self.k, self.s, self.p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)

    def forward(self, x):
        return F.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True) * (self.k[0] * self.k[1])


def _linear(node) -> nn.Linear:
    w = np.asarray(node.weight, dtype=np.float32)
    bias = getattr(node, "bias", None)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        if bias is not None:
            layer.bias.copy_(_tensor(bias).reshape(-1))
    return layer


def _conv(node) -> nn.Conv2d:
    w = np.asarray(node.weight, dtype=np.float32)
    pad = node.padding if isinstance(node.padding, str) else _pair(node.padding)
    layer = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=_pair(node.stride),
                      padding=pad, dilation=_pair(node.dilation), groups=int(node.groups),
                      bias=getattr(node, "bias", None) is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        if layer.bias is not None:
            layer.bias.copy_(_tensor(node.bias).reshape(-1))
    return layer


def _module(name: str, node, plan: GraphPlan, dt: float, card=None) -> nn.Module | None:
    kind = type(node).__name__
    if kind == "LIF" and card is not None:
        return MemristiveLIF(name, node, dt, card)
    if kind in ("Input", "Output"):
        return None
    if kind in ("Affine", "Linear"):
        return _linear(node)
    if kind == "Conv2d":
        return _conv(node)
    if kind == "AvgPool2d":
        return nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
    if kind == "SumPool2d":
        return _SumPool(node)
    if kind in _NEURONS:
        return _NEURONS[kind](node, dt)
    return _Pointwise(kind, node, plan.shapes[name])


class NIRNetwork(nn.Module):
    """A checked NIR graph as a module: ``forward(x [T, B, *input shape]) -> [T, B, *output shape]``.

    ``layers`` holds one module per computing node (by node name, ``.`` replaced by ``_``); ``plan`` the order,
    edges and shapes; ``dt`` the time step the neurons integrate at; ``card`` the vLIF card LIF nodes are mapped
    onto (``None``: digital neurons), their fits' measured errors in :attr:`fit_reports`."""

    def __init__(self, graph, plan: GraphPlan, dt: float, card=None):
        super().__init__()
        self.plan, self.dt, self.card = plan, float(dt), card
        self.names = {n: n.replace(".", "_") for n in plan.order}
        self.layers = nn.ModuleDict()
        for name in plan.order:
            module = _module(name, graph.nodes[name], plan, dt, card)
            if module is not None:
                self.layers[self.names[name]] = module
        self.input_name = plan.order[0]
        self.output_name = next(n for n in plan.order if type(graph.nodes[n]).__name__ == "Output")

    @property
    def fit_reports(self) -> dict:
        """Node name -> :class:`memsim.interop.nir_fit.FitReport` of each LIF node mapped onto a circuit."""
        return {name: self.layers[key].fit.report for name, key in self.names.items()
                if key in self.layers and isinstance(self.layers[key], MemristiveLIF)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.plan.shapes[self.input_name]
        if x.dim() != 2 + len(expected) or tuple(x.shape[2:]) != expected:
            raise ParameterError("input.shape", tuple(x.shape), f"[T, B, {', '.join(map(str, expected))}]",
                                 "give time-major input: steps first, then the batch")
        T, B = x.shape[:2]
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for name in self.plan.order[1:]:
            sources = self.plan.inputs[name]
            v = values[sources[0]]
            for s in sources[1:]:
                v = v + values[s]
            module = self.layers[self.names[name]] if self.names[name] in self.layers else None
            if module is None:  # Output
                values[name] = v
            elif getattr(module, "spiking", None) is not None:  # a neuron: steps through time
                values[name] = module(v)
            else:  # stateless: every step at once
                y = module(v.reshape(T * B, *v.shape[2:]))
                values[name] = y.reshape(T, B, *y.shape[1:])
        return values[self.output_name]


def _check_dt(dt, graph) -> float:
    if dt is None:
        dt = (getattr(graph, "metadata", None) or {}).get("dt")
    if dt is None:
        raise NIRError("the graph does not state its time step. Fix: pass dt=... (import_nir) or --dt (the CLI); "
                       "snnTorch's NIR export uses dt = 1e-4")
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)) or not math.isfinite(dt) or dt <= 0:
        raise ParameterError("dt", dt, "a positive time step in the graph's time unit (s)",
                             "give the step the graph was exported with (snnTorch: 1e-4)")
    return float(dt)


def import_nir(source, *, dt: float | None = None, preset=None, mode: str = DEFAULT_MODE, mapping: str = "dense",
               chip=None, neurons: str = "digital", card=None) -> NIRNetwork:
    """A NIR graph (object or ``.nir`` file) as a :class:`NIRNetwork` in eval mode.

    ``dt``: the time step the neurons integrate at (default: the graph's ``metadata['dt']``). ``preset``
    (name, path or :class:`memsim.crossbar.Preset`) puts every ``Affine``/``Linear``/``Conv2d`` on crossbar
    tiles simulated in ``mode`` with ``mapping``; without it the network is ideal. ``chip``: a
    :class:`memsim.deploy.Chip` (or any object with ``preset``, ``mode`` and ``mapping``) instead of those three.
    ``neurons="memristive"`` maps every ``LIF`` node onto circuits of the vLIF ``card`` (default ``vlif_neuron``)
    fitted to its parameters (:func:`memsim.interop.nir_fit.fit_vlif`; the measured errors in
    ``net.fit_reports``, a :class:`memsim.interop.nir_fit.NIRFitWarning` when spike counts differ by more than
    10 %); other neuron types stay digital. Every problem of the graph is an error before anything is built."""
    if neurons not in NEURON_MAPPINGS:
        raise ParameterError("neurons", neurons, f"one of {list(NEURON_MAPPINGS)}",
                             "'digital' integrates NIR's equations, 'memristive' fits vLIF circuits to LIF nodes")
    if card is not None and neurons != "memristive":
        raise ParameterError("card", card, "only with neurons='memristive'", "drop card, or map onto circuits")
    graph = read_graph(source)
    plan = check_graph(graph)
    card = (card or DEFAULT_VLIF_CARD) if neurons == "memristive" else None
    net = NIRNetwork(graph, plan, _check_dt(dt, graph), card)
    if chip is not None:
        preset, mode, mapping = chip.preset, chip.mode, getattr(chip, "mapping", "dense")
    if preset is not None and not (isinstance(preset, str) and preset == "ideal"):
        net.layers = convert(net.layers, preset, mode=mode, mapping=mapping, inplace=True)
    return net.eval()


def export_nir(network, *, dt: float | None = None, neurons: str | None = None, input_scale: float | None = None):
    """A ``nir.NIRGraph`` of ``network``.

    A :class:`NIRNetwork` exports the graph it was built from, with its current weights (trained or fine-tuned;
    LIF nodes mapped onto circuits export as the LIF they were fitted to). memsim's memristive SNNs
    (:class:`memsim.training.network.MemristiveSNN`) have no exact NIR form: their MIF neurons are circuits of
    memristors without a NIR node, so exporting one is an error unless ``neurons="lif_approximation"`` asks for
    each MIF layer as a LIF fitted to the circuit (:func:`memsim.interop.nir_fit.fit_mif`): ``Affine`` nodes hold
    the trained weights ``W`` exactly, the LIF's ``r`` carries the units (``g_unit`` times the volts per unit input:
    ``input_scale``, the run's ``encoding.scale``, for the first layer, the fitted spike amplitude after that), and
    the fit's measured error is in the graph's metadata (``fit_*`` keys). A voltage readout's last layer becomes an
    ``LI`` node (its summed membrane is the readout), a spike-count readout's a LIF. ``neurons="li_approximation"``
    writes the hidden layers as ``LI`` nodes too: the MIF membrane without its memristors' switching, whose voltage
    the next layer reads as in the MSNN (``fit_li_error``: its relative error on the standard stimuli)."""
    nir = require_nir()
    if isinstance(network, NIRNetwork):
        if neurons is not None:
            raise ParameterError("neurons", neurons, "None for a network imported from NIR",
                                 "its neurons already have a NIR form")
        nodes = {}
        for name in network.plan.order:
            module = network.layers[network.names[name]] if network.names[name] in network.layers else None
            nodes[name] = _node(nir, name, module, network)
        edges = [(s, n) for n in network.plan.order for s in network.plan.inputs[n]]
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": network.dt if dt is None else float(dt)})
    if neurons is None:
        raise NIRError(f"{type(network).__name__} has no NIR form: memsim's memristive networks use MIF neurons "
                       f"(a capacitor and two memristors), which NIR has no node for. Fix: export a network "
                       f"imported from NIR, or pass neurons='lif_approximation' for each MIF neuron as a fitted LIF "
                       f"(an approximation; its error is stated in the graph's metadata)")
    if neurons not in EXPORT_NEURONS:
        raise ParameterError("neurons", neurons, f"None or one of {list(EXPORT_NEURONS)}",
                             "'lif_approximation' writes each MIF neuron as a LIF fitted to its circuit")
    return _export_msnn(nir, network, input_scale, dt, spiking=neurons == "lif_approximation")


def _export_msnn(nir, net, input_scale, dt, spiking: bool):
    if not (hasattr(net, "synapses") and hasattr(net, "neurons") and hasattr(net, "g_unit")):
        raise NIRError(f"{type(net).__name__} is neither a NIRNetwork nor a memsim MemristiveSNN. Fix: export one "
                       f"of those")
    if dt is not None and float(dt) != float(net.dt):
        raise ParameterError("dt", dt, f"None or the network's own step {net.dt:g} s",
                             "the LIFs are fitted at the step the MSNN was trained with; leave dt unset")
    if getattr(net, "conv", None):
        raise NIRError("the LIF approximation exports fully connected MemristiveSNNs; this one has a "
                       "convolutional stage. Fix: export a network without network.conv")
    if isinstance(input_scale, bool) or not isinstance(input_scale, (int, float)) or not input_scale > 0:
        raise ParameterError("input_scale", input_scale, "a positive number of volts per unit input",
                             "give the run's encoding.scale (the input rows' voltage at intensity 1, e.g. 0.2)")
    fit: MIFFit = fit_mif(net.neurons[0].card, net.dt)
    if spiking:
        warn_if_inexact(fit.report, f"the MIF neurons of {type(net).__name__} as LIFs")
    lif, g_unit = fit.lif, float(net.g_unit)
    nodes = {"input": nir.Input(input_type=np.array([net.layers[0]]))}
    edges, prev = [], "input"
    last = len(net.synapses) - 1
    for k, syn in enumerate(net.synapses):
        w = _array(syn.weight)
        volts = float(input_scale) if k == 0 else (fit.amplitude if spiking else 1.0)
        # a spiking layer's membrane is v_rest + A z: its rest voltage is a constant drive, a bias in W's units
        bias = w.sum(1) * (fit.rest / fit.amplitude) if k > 0 and spiking else np.zeros(w.shape[0])
        n = w.shape[0]
        nodes[f"fc{k}"] = nir.Affine(weight=w, bias=bias)
        full = dict(tau=np.full(n, lif.tau), r=np.full(n, g_unit * volts * lif.r), v_leak=np.full(n, lif.v_leak))
        if (k == last and net.readout == "voltage") or (k < last and not spiking):
            nodes[f"mif{k}"] = nir.LI(**full)
        else:
            nodes[f"mif{k}"] = nir.LIF(**full, v_threshold=np.full(n, lif.v_threshold),
                                       v_reset=np.full(n, lif.v_reset))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"mif{k}")]
        prev = f"mif{k}"
    nodes["output"] = nir.Output(output_type=np.array([net.layers[-1]]))
    edges.append((prev, "output"))
    what = "fitted LIFs" if spiking else "leaky integrators (LI, the membrane voltage)"
    metadata = {"dt": float(net.dt), "source": f"memsim MemristiveSNN, MIF neurons as {what} (approximation)",
                "fit_card": str(net.neurons[0].card.name), "input_scale_V": float(input_scale),
                "g_unit_S": g_unit, **fit.report.as_metadata("fit_")}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _node(nir, name: str, module, network: NIRNetwork):
    shape = np.array(network.plan.shapes[name])
    if module is None:
        kind_in = name == network.input_name
        return nir.Input(input_type=shape) if kind_in else nir.Output(output_type=shape)
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear) or (weight is not None and weight.dim() == 2):
        if module.bias is None:
            return nir.Linear(weight=_array(module.weight))
        return nir.Affine(weight=_array(module.weight), bias=_array(module.bias))
    if weight is not None and weight.dim() == 4:
        return nir.Conv2d(input_shape=None, weight=_array(module.weight), stride=module.stride,
                          padding=module.padding, dilation=module.dilation, groups=getattr(module, "groups", 1),
                          bias=_array(module.bias) if module.bias is not None else np.zeros(module.weight.shape[0]))
    if isinstance(module, MemristiveLIF):  # the node it was fitted to
        module = module.digital
    if isinstance(module, LIF):
        return nir.LIF(tau=_array(module.tau), r=_array(module.r), v_leak=_array(module.v_leak),
                       v_threshold=_array(module.v_threshold), v_reset=_array(module.v_reset))
    if isinstance(module, CubaLIF):
        return nir.CubaLIF(tau_syn=_array(module.tau_syn), tau_mem=_array(module.tau_mem), r=_array(module.r),
                           v_leak=_array(module.v_leak), v_threshold=_array(module.v_threshold),
                           v_reset=_array(module.v_reset), w_in=_array(module.w_in))
    if isinstance(module, IF):
        return nir.IF(r=_array(module.r), v_threshold=_array(module.v_threshold), v_reset=_array(module.v_reset))
    if isinstance(module, LI):
        return nir.LI(tau=_array(module.tau), r=_array(module.r), v_leak=_array(module.v_leak))
    if isinstance(module, Integrator):
        return nir.I(r=_array(module.r))
    if isinstance(module, _SumPool):
        return nir.SumPool2d(kernel_size=np.array(module.k), stride=np.array(module.s), padding=np.array(module.p))
    if isinstance(module, nn.AvgPool2d):
        return nir.AvgPool2d(kernel_size=np.array(_pair(module.kernel_size)), stride=np.array(_pair(module.stride)),
                             padding=np.array(_pair(module.padding)))
    if isinstance(module, _Pointwise):
        if module.kind == "Scale":
            return nir.Scale(scale=_array(module.value))
        if module.kind == "Threshold":
            return nir.Threshold(threshold=_array(module.value))
        src = network.plan.inputs[name][0]
        in_shape = network.plan.shapes[src]
        # one flattened run: find where the output shape departs from the input shape
        start = next((k for k, (a, b) in enumerate(zip(in_shape, module.out_shape)) if a != b), 0)
        end = start + len(in_shape) - len(module.out_shape)
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)
    raise NIRError(f"node '{name}': {type(module).__name__} has no NIR form")  # pragma: no cover
