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

Synapses: a trainable weight ``W`` (dimensionless) is the signed conductance ``G = W * g_unit``
(siemens; a differential pair ``G+ - G-`` on a chip). With ``crossbar="ideal"`` the product is
exact; with a preset (``crossbar/*.toml`` or a path to one) the product is computed by
:class:`memsim.nn.CrossbarLinear` - quantised levels, DAC/ADC, programming/read noise, faults,
(approximate) IR drop - and rescaled to the same units, so a network trained ideal can be
deployed on the preset and a hardware-aware network is trained through those non-idealities.

Neurons: the neuron card's circuit (:mod:`memsim.neurons.circuits`, equations written once) is
integrated by :class:`MIFDynamics`, a stiff-stable exponential (Rosenbrock-type) Euler scheme:
the membrane equation is affine in V for frozen memristor states, so its exact local solution
``V + h phi(J h) f_V`` (``phi(z) = (e^z - 1)/z``, ``J = df_V/dV`` measured by probing the
circuit's own derivative) stays stable for any input, while the slow memristor states
(``tau`` = 1 ms) take explicit Euler sub-steps. It is the fast twin used for training; the
reference RK4 layer :class:`memsim.nn.MIFNeuron` and ngspice check it (tests, export-spice).

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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .errors import NonFiniteError, ParameterError
from .mathns import TORCH

if TYPE_CHECKING:
    from .crossbar.array import CrossbarArray

__all__ = ["MIFDynamics", "IdealSynapse", "ConvSynapse", "synapse_weight", "MemristiveSNN", "SNNOutput", "READOUTS", "DEFAULTS",
           "build_synapse", "is_ideal", "readout_logits"]

READOUTS = ("voltage", "spike_count")

#: operating point chosen for few-step training (see benchmarks/training.md)
DEFAULTS = {"dt": 4e-5, "time_steps": 25, "input_scale": 0.2, "g_unit": 2e-4, "readout_gain": 50.0}


def _closest(value, allowed):
    import difflib
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.4)
    return f"did you mean '{close[0]}'?" if close else f"use one of {list(allowed)}"


# ----------------------------------------------------------------------------------------------------------
# neuron dynamics (fast twin)

class MIFDynamics(nn.Module):
    """MIF neurons of a card, stepped with exponential Euler on V and explicit Euler on the memristors.

    State: ``[B, N, S]`` with components in the circuit's order (``V, x1, x2``). ``step(y, I)`` advances
    one ``dt`` (``substeps`` sub-steps of ``dt / substeps``) under input current ``I`` ``[B, N]`` (A).
    """

    def __init__(self, card="mif_neuron", dt: float | None = None, substeps: int = 1, *, name: str = "neurons",
                 compile: bool = False):
        super().__init__()
        from .neurons.cards import NeuronCard, check_dt, load_neuron_card

        if not isinstance(card, NeuronCard):
            card = load_neuron_card(card)
        if card.type != "mif":
            raise ParameterError("network.neuron", card.name, "a neuron card of type 'mif'",
                                 "the memristive SNN is built from MIF neurons (e.g. 'mif_neuron')")
        self.card, self.circuit = card, card.circuit
        self.dt = check_dt(card.dt if dt is None else dt, card.memristors, card.parameters, card.name)
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ParameterError("substeps", substeps, "an integer >= 1", "e.g. 1 for training, 4 for checks")
        self.substeps = substeps
        self.name = name
        # torch.compile fuses the ~150 elementwise kernels of a time step (forward and backward) into a few;
        # the step is the same Python code, so the equations are still written once.
        self.compile = bool(compile)
        self._compiled_step = None
        self.p, self.devices = card.namespaces()
        rule = self.circuit.spike_rule(self.p, self.devices)
        self.spike_component, self.spike_level = rule.component, float(rule.level)
        self.spike_width = float(self.devices[0].k)
        self.x0 = tuple(float(v) for v in self.circuit.initial_state(self.p, self.devices))
        self.state_names = tuple(self.circuit.state_names)
        # explicit Euler on the memristor states must resolve their time constant
        taus = min(float(d.tau) for d in self.devices)
        if self.dt / substeps > 0.1 * taus * (1 + 1e-9):
            raise ParameterError("dt", self.dt, f"<= {0.1 * taus * substeps:g} s with {substeps} sub-step(s)",
                                 "use a smaller dt or more substeps")

    @property
    def rest_voltage(self) -> float:
        """The membrane voltage at rest (zero input, initial memristor states)."""
        (E1, E2) = float(self.p.E1), float(self.p.E2)
        g = [float(self.circuit.family.conductance(TORCH, d, torch.tensor(x))) for d, x in
             zip(self.devices, self.x0[1:])]
        return (g[0] * E1 + g[1] * E2) / (g[0] + g[1])

    def initial_state(self, batch: int, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.x0, dtype=like.dtype, device=like.device).expand(batch, n, len(self.x0)).clone()

    def _exp_v(self, V, xs, current, h):
        """Exact membrane update for frozen memristor states: ``V + h phi(J h) f_V`` (f_V affine in V)."""
        Vp = torch.stack((V, V + 1.0))                      # probe: f_V is affine in V (memristor currents G v)
        fV_pair = self.circuit.derivative(TORCH, self.p, self.devices, (Vp, *xs), current)[0]
        fV = fV_pair[0]
        z = (fV_pair[1] - fV) * h                            # J h, J = df_V/dV = -(total conductance) / C
        small = z.abs() < 1e-4
        zs = torch.where(small, torch.full_like(z, -1.0), z)
        phi = torch.where(small, 1.0 + 0.5 * z, torch.expm1(zs) / zs)
        return V + h * phi * fV

    def _substep(self, comps: tuple[torch.Tensor, ...], current: torch.Tensor, h: float):
        V, xs = comps[0], comps[1:]
        # predictor: the membrane relaxes (R C <= 50 us) much faster than the memristors switch (tau 1 ms)
        V_pred = self._exp_v(V, xs, current, h)
        dx = self.circuit.derivative(TORCH, self.p, self.devices, (V_pred, *xs), current)[1:]
        xs_new = tuple(x + h * q for x, q in zip(xs, dx))
        # corrector: the membrane step with the memristor states at the end of the step
        return (self._exp_v(V, xs_new, current, h), *xs_new)

    def step(self, comps: tuple[torch.Tensor, ...], current: torch.Tensor):
        h = self.dt / self.substeps
        for _ in range(self.substeps):
            comps = self._substep(comps, current, h)
        return comps

    def _stepper(self):
        if not self.compile:
            return self.step
        if self._compiled_step is None:
            self._compiled_step = torch.compile(self.step)
        return self._compiled_step

    def __getstate__(self):  # a compiled function does not pickle or deep-copy; it is rebuilt on first use
        state = dict(super().__getstate__())
        state["_compiled_step"] = None
        return state

    def run(self, current: torch.Tensor, *, check_finite: bool = True, return_states: bool = False,
            layer_index: int = 0):
        """Integrate a whole sequence ``current`` ``[T, B, N]`` -> voltages ``[T, B, N]`` (and states).

        ``check_finite``: check the states once after the run (checking every step would cost a device sync
        per step). A non-finite value propagates through V, so the first non-finite V step is where it started;
        the memristor states of the last step are checked too. The error names the layer, neuron and step."""
        T, B, N = current.shape
        comps = tuple(torch.full((B, N), x, dtype=current.dtype, device=current.device) for x in self.x0)
        step = self._stepper()
        vs, states = [], []
        for t in range(T):
            comps = step(comps, current[t])
            vs.append(comps[0])
            if return_states:
                states.append(torch.stack(comps, -1))
        v = torch.stack(vs)
        if check_finite:
            self._check_finite(v, comps, current, layer_index)
        return (v, torch.stack(states)) if return_states else v

    def _check_finite(self, v, last, current, layer_index):
        with torch.no_grad():
            bad = ~torch.isfinite(v)
            for c in last[1:]:
                bad[-1] |= ~torch.isfinite(c)
            if not bool(bad.any()):
                return
            t, b, n = (int(i) for i in bad.nonzero()[0])
        raise NonFiniteError(
            f"layer {layer_index} ({self.name}): the state of neuron {n} (batch item {b}) became "
            f"non-finite at time step {t} (t = {(t + 1) * self.dt:g} s) with input current "
            f"{float(current[t, b, n].detach()):g} A (documented range {list(self.card.input_range)} A). "
            f"Fix: lower the learning rate, enable training.grad_clip, or reduce the input scale")

    def soft_spikes(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((v - self.spike_level) / self.spike_width)

    def hard_spikes(self, v: torch.Tensor) -> torch.Tensor:
        """Upward crossings of the spike level between consecutive steps (from rest before step 0)."""
        lvl = self.spike_level
        prev = torch.cat((torch.full_like(v[:1], self.rest_voltage), v[:-1]))
        return ((prev < lvl) & (v >= lvl)).to(v.dtype)

    def extra_repr(self) -> str:
        return f"card={self.card.name}, dt={self.dt:g}, substeps={self.substeps}"


# ----------------------------------------------------------------------------------------------------------
# synapses

def is_ideal(preset) -> bool:
    return isinstance(preset, str) and preset == "ideal"


class IdealSynapse(nn.Module):
    """Exact crossbar product: ``I = (V W^T) * g_unit`` (A) for row voltages ``V`` (V)."""

    def __init__(self, in_features: int, out_features: int, g_unit: float):
        super().__init__()
        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight) * self.g_unit

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, ideal, g_unit={self.g_unit:g} S"


class PresetSynapse(nn.Module):
    """A crossbar preset's product (:class:`memsim.nn.CrossbarLinear`) in the same units as :class:`IdealSynapse`."""

    def __init__(self, in_features: int, out_features: int, g_unit: float, preset, mode: str):
        super().__init__()
        from .nn.crossbar import CrossbarLinear

        self.in_features, self.out_features, self.g_unit = in_features, out_features, float(g_unit)
        self.xbar = CrossbarLinear(in_features, out_features, bias=False, preset=preset, mode=mode)

    @property
    def weight(self) -> nn.Parameter:
        return self.xbar.weight

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.xbar(v) * self.g_unit

    def extra_repr(self) -> str:
        return f"g_unit={self.g_unit:g} S"


class ConvSynapse(nn.Module):
    """A convolutional crossbar stage: image rows ``[*, C*H*W]`` (V) -> column currents ``[*, K*Ho*Wo]`` (A).

    Each kernel is one crossbar column (im2col mapping); ``ideal``: exact ``conv2d`` with ``G = W * g_unit``,
    a preset: :class:`memsim.nn.CrossbarConv2d` (the same non-idealities as the dense layers)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int, kernel: int, stride: int, g_unit: float,
                 preset="ideal", mode: str = "noisy"):
        super().__init__()
        c, h, w = image_shape
        for name, v in (("network.conv_channels", channels), ("network.conv_kernel", kernel),
                        ("network.conv_stride", stride)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1")
        if kernel > min(h, w):
            raise ParameterError("network.conv_kernel", kernel, f"<= {min(h, w)} (the image is {h}x{w})")
        self.image_shape, self.stride, self.g_unit = (c, h, w), stride, float(g_unit)
        self.out_shape = (channels, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
        self.in_features, self.out_features = c * h * w, channels * self.out_shape[1] * self.out_shape[2]
        if is_ideal(preset):
            self.weight = nn.Parameter(torch.empty(channels, c, kernel, kernel))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        else:
            from .nn.crossbar import CrossbarConv2d
            self.xbar = CrossbarConv2d(c, channels, kernel, stride=stride, bias=False, preset=preset, mode=mode)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        lead = v.shape[:-1]
        img = v.reshape(-1, *self.image_shape)
        y = self.xbar(img) if hasattr(self, "xbar") else F.conv2d(img, self.weight, stride=self.stride)
        return (y * self.g_unit).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.image_shape} -> {self.out_shape}, stride {self.stride}, g_unit={self.g_unit:g} S"


def synapse_weight(syn: nn.Module) -> nn.Parameter:
    """The trainable weight of a synapse stage (ideal or on a preset's crossbar)."""
    return syn.xbar.weight if hasattr(syn, "xbar") else syn.weight


def build_synapse(in_features: int, out_features: int, g_unit: float, preset="ideal", mode: str = "noisy"):
    if is_ideal(preset):
        return IdealSynapse(in_features, out_features, g_unit)
    return PresetSynapse(in_features, out_features, g_unit, preset, mode)


# ----------------------------------------------------------------------------------------------------------
# network

class SNNOutput(NamedTuple):
    logits: torch.Tensor            # [T, B, C] per-step logits (voltage) or [1, B, C] (spike_count)
    scores: torch.Tensor            # [B, C] what the prediction is the argmax of
    voltages: list                  # [T, B, N_l] membrane voltages of every layer


def readout_logits(readout: str, v_out: torch.Tensor, neurons: MIFDynamics, gain: float):
    if readout == "voltage":
        logits = (v_out - neurons.rest_voltage) * gain
        return logits, v_out.mean(0)
    counts = neurons.soft_spikes(v_out).sum(0)
    return (counts * gain / max(1, v_out.shape[0])).unsqueeze(0), counts   # default: 2 logits per spike at T=25


class MemristiveSNN(nn.Module):
    """A fully memristive SNN: ``layers = [inputs, hidden..., classes]``, one crossbar + MIF layer per step.

    ``forward(inputs [T, B, n_in] in V) -> SNNOutput``. ``conv`` (optional) puts a convolutional crossbar
    stage (``(channels, kernel, stride)``) in front, for image inputs ``[T, B, C, H, W]``.
    """

    def __init__(self, layers: Sequence[int], *, neuron="mif_neuron", crossbar="ideal", readout: str = "voltage",
                 time_steps: int = DEFAULTS["time_steps"], dt: float = DEFAULTS["dt"], g_unit: float = DEFAULTS["g_unit"],
                 readout_gain: float = DEFAULTS["readout_gain"], substeps: int = 1, mode: str = "noisy",
                 penalty: float = 1.0, conv: tuple[int, int, int] | None = None, compile: bool = False):
        super().__init__()
        layers = [int(n) for n in layers]
        if len(layers) < 2 or any(n < 1 for n in layers):
            raise ParameterError("network.layers", list(layers), "at least 2 sizes >= 1 (inputs ... classes)",
                                 "e.g. [64, 128, 10]")
        if readout not in READOUTS:
            raise ParameterError("network.readout", readout, f"one of {list(READOUTS)}", _closest(readout, READOUTS))
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ParameterError("network.time_steps", time_steps, "an integer >= 1", "e.g. 25")
        for name, value in (("network.g_unit", g_unit), ("readout_gain", readout_gain)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(name, value, "a finite number > 0")
        self.layers, self.readout, self.time_steps = layers, readout, time_steps
        self.crossbar = crossbar if isinstance(crossbar, str) else getattr(crossbar, "name", str(crossbar))
        self.g_unit, self.readout_gain = float(g_unit), float(readout_gain)
        synapses = []
        self.conv = tuple(conv) if conv else None
        if self.conv:
            side = int(round(math.sqrt(layers[0])))
            if side * side != layers[0]:
                raise ParameterError("network.layers[0]", layers[0], "a square image size (64, 784, ...)",
                                     "the convolutional variant needs square single-channel images")
            stage = ConvSynapse((1, side, side), *self.conv, g_unit, crossbar, mode)
            synapses.append(stage)
            layers = [layers[0], stage.out_features, *layers[1:]]
        synapses += [build_synapse(a, b, g_unit, crossbar, mode)
                     for a, b in zip(layers[len(synapses):-1], layers[len(synapses) + 1:])]
        self.layers = layers
        self.synapses = nn.ModuleList(synapses)
        self.neurons = nn.ModuleList(MIFDynamics(neuron, dt, substeps, name=f"layer {k} ({b} MIF neurons)",
                                                 compile=compile)
                                     for k, b in enumerate(layers[1:]))
        self.dt = self.neurons[0].dt
        self.penalty = float(penalty)

    @property
    def num_inputs(self) -> int:
        return self.layers[0]

    def crossbar_arrays(self) -> list[tuple[int, CrossbarArray]]:
        """``(layer index, CrossbarArray)`` of every synapse stage that runs on a preset (none when ideal)."""
        return [(k, syn.xbar.array) for k, syn in enumerate(self.synapses) if hasattr(syn, "xbar")]

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
                current = syn(v[0]).unsqueeze(0).expand(T, B, -1)
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
        terms = [((F.relu(v - hi) + F.relu(lo - v)) / 0.1).pow(2).mean() for v in out.voltages]
        return torch.stack(terms).sum()

    def loss(self, out: SNNOutput, labels: torch.Tensor) -> torch.Tensor:
        T, B, C = out.logits.shape
        ce = F.cross_entropy(out.logits.reshape(T * B, C), labels.repeat(T))
        return ce + self.penalty * self.range_penalty(out) if self.penalty > 0 else ce

    def reference(self, inputs: torch.Tensor, *, substeps: int | None = None) -> SNNOutput:
        """The network as one continuous-time circuit, integrated with RK4 (the verified method of
        :class:`memsim.nn.MIFNeuron`): every layer's column currents follow the previous layer's membrane
        voltages *within* a step (``I_l(t) = G_l V_{l-1}(t)``), the input is held over each step. This is
        what the exported ngspice netlist computes; :meth:`forward` is its one-step-per-``dt`` fast twin
        (it converges to this as ``substeps`` grows). Use float64 inputs for checks."""
        from .integrate import step as integrate_step
        from .neurons.circuits import substeps_for

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
