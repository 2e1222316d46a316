"""Fully memristive spiking networks: crossbar synapses + MIF neurons, trained by BPTT on the circuit.

Network
-------
Every layer is a crossbar (synapses) feeding a layer of memristive integrate-and-fire (MIF)
neurons. The crossbar rows are driven by *voltages*: the input encoder's output for the first
layer (a DAC: intensity 1 -> ``input_scale`` volts), the previous layer's membrane voltages
after that. Each crossbar column sums the currents ``I_j = sum_i G_ij V_i`` (Kirchhoff) and
injects them into its neuron's membrane. The neurons' analog membrane voltage is what the next
crossbar sees: the spike is the voltage excursion produced by the two memristors; there is no
comparator, no reset and hence no surrogate gradient - backpropagation through time runs
through the circuit equations themselves (as SPICEprop / MEMprop).

Synapses (:mod:`memsim.training.synapses`): a trainable weight ``W`` (dimensionless) is the signed
conductance ``G = W * g_unit`` (siemens). With ``crossbar="ideal"`` the product is exact; with a preset
(``crossbar/*.toml`` or a path to one) it is computed by :class:`memsim.nn.CrossbarLinear` and rescaled to
the same units, so a network trained ideal can be deployed on the preset and a hardware-aware network is
trained through those non-idealities.

Neurons: :class:`memsim.training.twin.MIFDynamics`, the fast twin of the card's circuit (one step per
``dt``); :meth:`MemristiveSNN.reference` is the same network integrated with RK4, as ngspice runs it.

Readouts (``[T, B, C]`` output membrane voltages ``V``):

* ``voltage``: logits ``(V_t - V_rest) * readout_gain`` at every step; the loss is the
  cross-entropy averaged over time steps (SPICEprop's membrane-voltage readout); the predicted
  class is the argmax of the time-averaged voltage.
* ``spike_count``: the (soft) number of spikes ``n = sum_t sigmoid((V_t - V_spike) / k)`` (logits
  ``n * readout_gain / T``) with
  ``V_spike = E1 + v_on`` (the card's spike level: memristor M1 starts switching ON) and ``k``
  M1's switching width - the probability-weighted time M1 is being driven ON, differentiable
  through the circuit; ``hard_spike_counts`` gives the integer upward crossings.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.array import DEFAULT_MODE
from ..errors import ParameterError
from ..integrate import step as integrate_step
from ..mathns import TORCH
from ..neurons.circuits import substeps_for
from ..schema import is_finite_number, suggest
from .synapses import Synapse, build_conv_synapse, build_synapse
from .twin import MIFDynamics

if TYPE_CHECKING:
    from ..crossbar.array import CrossbarArray

__all__ = ["MemristiveSNN", "SNNOutput", "READOUTS", "DEFAULTS", "readout_logits", "conv_stages"]

READOUTS = ("voltage", "spike_count")

#: the network's defaults, and the run config's (memsim.training.config takes them from here); the operating
#: point (dt, time steps, input scale, g_unit, readout gain) is chosen for few-step training (benchmarks/training.md)
DEFAULTS = {"neuron": "mif_neuron", "crossbar": "ideal", "readout": "voltage", "dt": 4e-5, "time_steps": 25,
            "input_scale": 0.2, "g_unit": 2e-4, "readout_gain": 50.0, "substeps": 1, "penalty": 1.0}


# ----------------------------------------------------------------------------------------------------------
# convolutional stages

def conv_stages(num_inputs: int, channels, kernel: int, stride: int) -> list[tuple]:
    """The conv crossbar stages of ``network.conv_channels`` on square single-channel images of ``num_inputs``
    pixels: ``(image_shape, channels, kernel, stride, padding, pool)`` per stage, checked (a
    :class:`ParameterError` naming the key) before anything is built.

    ``channels`` a list ``[c1, c2, ...]``: VGG-style stages, each a ``kernel x kernel`` conv (odd kernel, padding
    ``kernel // 2``: the size is kept; stride 1) whose column currents are pooled 2x2 into the stage's neurons, so
    the image side halves (rounded down) per stage. ``channels`` an integer: one unpadded stage of ``stride``
    without pooling (the original conv variant).

    Example: the Fashion-MNIST VGG shape: 28 -> 14 -> 7 -> 3.

        >>> [(s[0], s[1]) for s in conv_stages(784, [16, 32, 64], 3, 1)]
        [((1, 28, 28), 16), ((16, 14, 14), 32), ((32, 7, 7), 64)]
    """
    side = int(round(math.sqrt(num_inputs)))
    if side * side != num_inputs:
        raise ParameterError("network.layers[0]", num_inputs, "a square image size (64, 784, ...)",
                             "the convolutional variant needs square single-channel images")
    if isinstance(channels, (list, tuple)):
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ParameterError("network.conv_channels", list(channels), "a non-empty list of integers >= 1",
                                 "e.g. [16, 32, 64]")
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ParameterError("network.conv_kernel", kernel, "an odd integer >= 1 for a list of conv stages "
                                 "(padding kernel // 2 keeps the image size)", "e.g. 3")
        if stride != 1:
            raise ParameterError("network.conv_stride", stride, "1 for a list of conv stages",
                                 "the stages downsample by 2x2 current pooling; set network.conv_stride = 1")
        if side < 2 ** len(channels):
            raise ParameterError("network.conv_channels", list(channels), f"at most {int(math.log2(side))} "
                                 f"stages for {side}x{side} images (each halves the side)",
                                 "fewer stages, or a larger image")
        stages, c_in, s = [], 1, side
        for c in channels:
            stages.append(((c_in, s, s), int(c), kernel, 1, kernel // 2, 2))
            c_in, s = int(c), s // 2
        return stages
    return [((1, side, side), channels, kernel, stride, 0, 1)]


# ----------------------------------------------------------------------------------------------------------
# network

class SNNOutput(NamedTuple):
    logits: torch.Tensor            # [T, B, C] per-step logits (voltage) or [1, B, C] (spike_count)
    scores: torch.Tensor            # [B, C] what the prediction is the argmax of
    voltages: list                  # [T, B, N_l] membrane voltages of every layer


def _excursion(v: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Mean squared excursion of ``v`` outside ``[lo, hi]``, in units of 0.1 V."""
    return ((F.relu(v - hi) + F.relu(lo - v)) / 0.1).pow(2).mean()


@functools.lru_cache(maxsize=None)
def _compiled_excursion():
    # the same function, fused by torch.compile into one pass (forward) and one (backward) over [T, B, N]: eager
    # it is ~10 passes, about as long as the compiled neuron steps of a Fashion-MNIST batch
    return torch.compile(_excursion)


def readout_logits(readout: str, v_out: torch.Tensor, neurons: MIFDynamics, gain: float):
    if readout == "voltage":
        logits = (v_out - neurons.rest_voltage) * gain
        return logits, v_out.mean(0)
    counts = neurons.soft_spikes(v_out).sum(0)
    return (counts * gain / max(1, v_out.shape[0])).unsqueeze(0), counts   # default: 2 logits per spike at T=25


class MemristiveSNN(nn.Module):
    r"""A fully memristive SNN: ``layers = [inputs, hidden..., classes]``, one crossbar + MIF layer per stage.

    Stage :math:`l` drives its crossbar rows with the previous stage's voltages (the encoder's for
    :math:`l = 1`) and injects the column currents into its MIF neurons (:class:`MIFDynamics`):

    .. math::  I^{(l)}_t = g_{unit}\, W^{(l)} V^{(l-1)}_t \ \text{(ideal; a preset computes it on crossbar tiles)},
               \qquad C \dot V^{(l)} = I^{(l)} - \sum_{j=1}^{2} G(x^{(l)}_j)\,(V^{(l)} - E_j)

    with each stage's current held over the step (:math:`V^{(l-1)}_t` at the end of step :math:`t`). Readouts
    of the last stage's voltages :math:`V_t` (:math:`C` classes): ``"voltage"``, logits
    :math:`(V_t - V_{rest})\,\gamma` at every step, loss
    :math:`\frac{1}{T}\sum_t \mathrm{CE}(\text{logits}_t, y)`, prediction :math:`\arg\max_c \frac{1}{T}\sum_t V_{t,c}`;
    ``"spike_count"``, soft counts :math:`n = \sum_t \sigma((V_t - V_{spike})/k)`, logits :math:`n\gamma/T`.
    :meth:`loss` adds ``penalty`` times :meth:`range_penalty` (voltages outside the memristors' valid range).
    No threshold, reset or surrogate gradient: backpropagation runs through the circuit equations.

    Args:
        layers: sizes ``[inputs, hidden..., classes]`` (at least two).
        neuron: the MIF neuron card (name or :class:`memsim.neurons.NeuronCard`).
        crossbar: ``"ideal"`` (exact :math:`g_{unit} W`) or a crossbar preset name / path.
        readout: ``"voltage"`` or ``"spike_count"``.
        time_steps: :math:`T`, steps per sample (the encoder's sequence length).
        dt: time step in s.
        g_unit: conductance in S of a weight of 1 (:math:`G = W g_{unit}`, signed).
        readout_gain: :math:`\gamma`, logits per volt (voltage readout) or per spike (spike count).
        substeps: sub-steps of the neuron twin per ``dt``.
        mode: crossbar simulation mode of preset synapses (``"noisy"``, ``"irdrop"``, ...).
        penalty: weight of :meth:`range_penalty` in :meth:`loss`.
        conv: ``(channels, kernel, stride)``, convolutional crossbar stages in front (square single-channel
            images, flattened; :func:`conv_stages`): ``channels`` a list (``[16, 32, 64]``): VGG-style stages,
            ``kernel`` x ``kernel`` convs padded to keep the size, stride 1, each stage's currents pooled 2x2
            into its MIF neurons; an integer: one unpadded stage of ``stride``, no pooling.
        compile: ``torch.compile`` the neuron step and the range penalty.

    Shapes and units: ``forward(inputs)`` takes row voltages ``[T, B, layers[0]]`` in V (with ``conv``: the
    flattened image) and returns :class:`SNNOutput`: ``logits`` ``[T, B, C]`` (``[1, B, C]`` for spike counts),
    ``scores`` ``[B, C]``, ``voltages`` one ``[T, B, N_l]`` tensor in V per stage.
    :meth:`reference` integrates the same network as one continuous-time circuit with RK4 (what the exported
    ngspice netlist computes).

    Example: a one-stage network: the voltage readout's identity, and the fast twin converging to the RK4
    circuit as its sub-step shrinks.

        >>> import torch
        >>> from memsim.training.network import MemristiveSNN
        >>> _ = torch.manual_seed(0)
        >>> net = MemristiveSNN([4, 3], time_steps=10).double()
        >>> x = torch.rand(10, 2, 4, dtype=torch.float64) * 0.2           # V, [T, B, inputs]
        >>> with torch.no_grad():
        ...     out, ref = net(x), net.reference(x)
        ...     net.set_substeps(16)
        ...     fine = net(x)
        >>> v = out.voltages[-1]
        >>> bool(torch.allclose(out.logits, (v - net.neurons[-1].rest_voltage) * 50.0)), tuple(out.scores.shape)
        (True, (2, 3))
        >>> err = [float((o.voltages[-1] - ref.voltages[-1]).abs().max()) for o in (out, fine)]   # V
        >>> err[1] < err[0] / 4
        True
    """

    def __init__(self, layers: Sequence[int], *, neuron=DEFAULTS["neuron"], crossbar=DEFAULTS["crossbar"],
                 readout: str = DEFAULTS["readout"], time_steps: int = DEFAULTS["time_steps"],
                 dt: float = DEFAULTS["dt"], g_unit: float = DEFAULTS["g_unit"],
                 readout_gain: float = DEFAULTS["readout_gain"], substeps: int = DEFAULTS["substeps"],
                 mode: str = DEFAULT_MODE, penalty: float = DEFAULTS["penalty"],
                 conv: tuple[int, int, int] | None = None, compile: bool = False):
        super().__init__()
        layers = [int(n) for n in layers]
        if len(layers) < 2 or any(n < 1 for n in layers):
            raise ParameterError("network.layers", list(layers), "at least 2 sizes >= 1 (inputs ... classes)",
                                 "e.g. [64, 128, 10]")
        if readout not in READOUTS:
            raise ParameterError("network.readout", readout, f"one of {list(READOUTS)}",
                                 suggest(readout, READOUTS, cutoff=0.4))
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ParameterError("network.time_steps", time_steps, "an integer >= 1", "e.g. 25")
        for name, value in (("network.g_unit", g_unit), ("readout_gain", readout_gain)):
            if not (is_finite_number(value) and value > 0):  # a bool is not a gain
                raise ParameterError(name, value, "a finite number > 0")
        self.layers, self.readout, self.time_steps = layers, readout, time_steps
        self.crossbar = crossbar if isinstance(crossbar, str) else getattr(crossbar, "name", str(crossbar))
        self.g_unit, self.readout_gain = float(g_unit), float(readout_gain)
        synapses = []
        self.conv = (tuple(conv[0]) if isinstance(conv[0], (list, tuple)) else conv[0], *conv[1:]) if conv else None
        if self.conv:
            stages = conv_stages(layers[0], *self.conv)
            for image_shape, channels, kernel, stride, padding, pool in stages:
                synapses.append(build_conv_synapse(image_shape, channels, kernel, stride, g_unit, crossbar, mode,
                                                   padding, pool))
            layers = [layers[0], *(syn.out_features for syn in synapses), *layers[1:]]
        synapses += [build_synapse(a, b, g_unit, crossbar, mode)
                     for a, b in zip(layers[len(synapses):-1], layers[len(synapses) + 1:])]
        self.layers = layers
        self.synapses: Sequence[Synapse] = nn.ModuleList(synapses)
        self.neurons = nn.ModuleList(MIFDynamics(neuron, dt, substeps, name=f"layer {k} ({b} MIF neurons)",
                                                 compile=compile)
                                     for k, b in enumerate(layers[1:]))
        self.dt = self.neurons[0].dt
        self.penalty = float(penalty)
        self.compile = bool(compile)

    @property
    def num_inputs(self) -> int:
        return self.layers[0]

    def crossbar_arrays(self) -> list[tuple[int, CrossbarArray]]:
        """``(layer index, CrossbarArray)`` of every synapse stage that runs on a preset (none when ideal)."""
        return [(k, syn.crossbar_array) for k, syn in enumerate(self.synapses) if syn.crossbar_array is not None]

    def set_substeps(self, substeps: int) -> None:
        for n in self.neurons:
            n.substeps = substeps

    def forward(self, inputs: torch.Tensor, *, check_finite: bool = True) -> SNNOutput:
        if inputs.dim() < 3 or inputs.shape[-1] != self.layers[0]:
            raise ParameterError("inputs.shape", tuple(inputs.shape), f"[T, B, {self.layers[0]}] (V)",
                                 f"the network has {self.layers[0]} inputs; flatten images to {self.layers[0]} values")
        T, B = inputs.shape[:2]
        v = inputs
        voltages = []
        for k, (syn, neu) in enumerate(zip(self.synapses, self.neurons)):
            if k == 0 and inputs.stride(0) == 0:   # constant (direct) input: one product for every step
                v = neu.run(syn(v[0]), steps=T, check_finite=check_finite, layer_index=k)
            else:
                current = syn(v.reshape(T * B, -1)).reshape(T, B, -1)
                v = neu.run(current, check_finite=check_finite, layer_index=k)
            voltages.append(v)
        logits, scores = readout_logits(self.readout, v, self.neurons[-1], self.readout_gain)
        return SNNOutput(logits, scores, voltages)

    def voltage_range(self) -> tuple[float, float]:
        """Membrane voltages that keep both memristors inside their card's valid voltage range."""
        neu = self.neurons[0]
        lo, hi = neu.card.memristors[0].voltage_range
        E = (float(neu.p.E1), float(neu.p.E2))
        return max(E) + float(lo), min(E) + float(hi)

    def range_penalty(self, out: SNNOutput) -> torch.Tensor:
        """Mean squared excursion (in units of 0.1 V) of membrane voltages outside :meth:`voltage_range`."""
        lo, hi = self.voltage_range()
        excursion = _compiled_excursion() if self.compile else _excursion
        terms = [excursion(v, lo, hi) for v in out.voltages]
        return torch.stack(terms).sum()

    def loss(self, out: SNNOutput, labels: torch.Tensor) -> torch.Tensor:
        T, B, C = out.logits.shape
        ce = F.cross_entropy(out.logits.reshape(T * B, C), labels.repeat(T))
        return ce + self.penalty * self.range_penalty(out) if self.penalty > 0 else ce

    def reference(self, inputs: torch.Tensor, *, substeps: int | None = None) -> SNNOutput:
        """The network as one continuous-time circuit, integrated with RK4 (the verified method of
        :class:`memsim.nn.MIFNeuron`): every layer's column currents follow the previous layer's membrane
        voltages *within* a step (``I_l(t) = G_l V_{l-1}(t)``), the input is held over each step. This is
        what the exported ngspice netlist computes; :meth:`forward` is its one-step-per-``dt`` fast twin. The
        first stage converges to this as ``substeps`` grows; a deeper stage sees the previous stage's voltage
        held over each step, a difference of order ``dt`` that sub-steps do not remove (e.g. 50 mV in a
        [4, 6, 3] network at the default dt). Use float64 inputs for checks."""
        neu = self.neurons[0]
        T, B = inputs.shape[:2]
        sizes = self.layers[1:]
        if substeps is None:
            rate = neu.circuit.max_rate(neu.p, neu.devices)
            substeps = max(substeps_for(self.dt, rate), math.ceil(self.dt * 20.0 / min(float(d.tau) for d in
                                                                                          neu.devices)))
        h = self.dt / substeps
        y = torch.cat([torch.tensor(n.x0, dtype=inputs.dtype, device=inputs.device).expand(B, size, len(n.x0))
                       for n, size in zip(self.neurons, sizes)], dim=1).clone()
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)

        def field(u0):
            def f(t, Y):
                outs, v_prev = [], u0
                for k, (syn, n) in enumerate(zip(self.synapses, self.neurons)):
                    Yk = Y[:, bounds[k]:bounds[k + 1]]
                    comps = Yk.unbind(-1)
                    current = syn(v_prev)
                    outs.append(torch.stack(n.circuit.derivative(TORCH, n.p, n.devices, comps, current), -1))
                    v_prev = comps[0]
                return torch.cat(outs, dim=1)
            return f

        per_layer = [[] for _ in sizes]
        with torch.no_grad():
            for t in range(T):
                f = field(inputs[t])
                for _ in range(substeps):
                    y = integrate_step(f, 0.0, y, h, "rk4")
                for k in range(len(sizes)):
                    per_layer[k].append(y[:, bounds[k]:bounds[k + 1], 0])
        voltages = [torch.stack(v) for v in per_layer]
        logits, scores = readout_logits(self.readout, voltages[-1], self.neurons[-1], self.readout_gain)
        return SNNOutput(logits, scores, voltages)

    def hard_spike_counts(self, out: SNNOutput) -> list[torch.Tensor]:
        return [n.hard_spikes(v).sum(0) for n, v in zip(self.neurons, out.voltages)]
