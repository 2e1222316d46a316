r"""Pair-based STDP on the synapse devices: spike events, the exponential-trace rule, and supervised STDP training
of a one-stage memristive SNN whose weight changes are programming pulses through the devices' pulse response.

**Spike events.** MSNN spikes are analog voltage excursions, so an event is an *upward threshold crossing*
(:func:`spike_events`): step :math:`t` is an event of a signal :math:`v` when :math:`v_{t-1} < \theta \le v_t`
(with :math:`v_{-1}` below the level). Post-synaptic events are the output neurons' membrane voltages crossing the
card's spike level (:attr:`memsim.training.twin.MIFDynamics.spike_level`, M1 starting to switch ON); pre-synaptic
events are the input rows' voltages crossing half the input pulse height (a rate-coded input is a train of
one-step pulses, each pulse one event). At the network's time step (40 us) the membrane relaxes within a step, so
each input pulse strong enough gives its own crossing.

**The rule** (:class:`STDPRule`), over pairs of a pre event at :math:`t_{pre}` and a post event at
:math:`t_{post}`, :math:`\Delta t = t_{post} - t_{pre}`:

.. math::  \Delta w = +A_+\, e^{-\Delta t/\tau_+}\ (\Delta t \ge 0),\qquad
           \Delta w = -A_-\, e^{\Delta t/\tau_-}\ (\Delta t < 0)

(a pre event in the same step as the post event counts as causal: the membrane answers its input within the step).
``mode="all"`` sums every pair (all-to-all; traces :math:`x \leftarrow x\,e^{-dt/\tau} + s`); ``mode="nearest"``
pairs each post event with the nearest pre event at or before it and each pre event with the nearest post event
strictly before it (symmetric nearest-neighbour, Morrison et al. 2008; traces reset to 1 at an event,
:math:`x \leftarrow \max(x\,e^{-dt/\tau}, s)`). :meth:`STDPRule.delta` computes it with the traces, batched.

**Supervised STDP** (:class:`SupervisedSTDP`): per batch the network runs twice on the same input pulses: *taught*,
with a teacher current pulse every ``teacher_every`` steps into the label's output neuron and an inhibiting current
into the others, and *free*, on its own input. The update is the STDP of the taught run minus ``remote`` times the
STDP of the free run (``remote = 0``: plain teacher-driven STDP; ``remote = 1``: the remote-supervision form of
ReSuMe, Ponulak & Kasinski 2010: no change once the free output fires as taught). The weight change
``lr * dw / batch`` goes through the stage's device pairs (:class:`memsim.insitu.pairs.PairArray`: sign,
stochastic rounding, ``max_pulses`` per device and step, the pulse response's state dependence, noise, spread and
window, refresh of saturated pairs); the network's weights are then read back from the pairs. No float add.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import ParameterError
from .pairs import PairArray, PulseCounts
from .settings import InSituSettings

__all__ = ["STDPRule", "SupervisedSTDP", "STDPMetrics", "spike_events", "STDP_MODES"]

#: pairing schemes of :class:`STDPRule`
STDP_MODES = ("all", "nearest")


def spike_events(v: torch.Tensor, level: float) -> torch.Tensor:
    """Upward crossings of ``level`` along the time axis (dim 0) of ``v`` ``[T, ...]``: 1.0 at step ``t`` where
    ``v[t-1] < level <= v[t]`` (before step 0 the signal is taken below the level), else 0.0."""
    above = v >= level
    prev = torch.cat((torch.zeros_like(above[:1]), above[:-1]))
    return (above & ~prev).to(v.dtype)


@dataclass(frozen=True)
class STDPRule:
    """Pair-based exponential STDP (see the module docstring): amplitudes ``a_plus``/``a_minus`` (weight units per
    pair, >= 0), time constants ``tau_plus``/``tau_minus`` (s, > 0), ``mode`` ``"all"`` or ``"nearest"``."""

    a_plus: float = 1.0
    a_minus: float = 1.0
    tau_plus: float = 8e-5
    tau_minus: float = 8e-5
    mode: str = "all"

    def __post_init__(self):
        for name in ("a_plus", "a_minus"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ParameterError(f"stdp.{name}", value, "a finite number >= 0", "e.g. 1.0")
        for name in ("tau_plus", "tau_minus"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(f"stdp.{name}", value, "a time constant in s > 0", "e.g. 8e-5 (two 40 us steps)")
        if self.mode not in STDP_MODES:
            raise ParameterError("stdp.mode", self.mode, f"one of {list(STDP_MODES)}",
                                 "'all' sums every pair, 'nearest' pairs nearest neighbours")

    def delta(self, pre: torch.Tensor, post: torch.Tensor, dt: float) -> torch.Tensor:
        """The summed weight change ``[N_post, N_pre]`` of pre events ``[T, B, N_pre]`` and post events
        ``[T, B, N_post]`` (0/1) at time step ``dt`` (s), over all batch items and pairs."""
        if pre.dim() != 3 or post.dim() != 3 or pre.shape[:2] != post.shape[:2]:
            raise ParameterError("stdp events", (tuple(pre.shape), tuple(post.shape)),
                                 "pre [T, B, N_pre] and post [T, B, N_post] events over the same T and B")
        if not (dt > 0):
            raise ParameterError("dt", dt, "a time step in s > 0")
        d_plus, d_minus = math.exp(-dt / self.tau_plus), math.exp(-dt / self.tau_minus)
        nearest = self.mode == "nearest"
        x = torch.zeros_like(pre[0])       # pre trace, [B, N_pre]
        y = torch.zeros_like(post[0])      # post trace, [B, N_post]
        dw = pre.new_zeros(post.shape[2], pre.shape[2])
        for s_pre, s_post in zip(pre.unbind(0), post.unbind(0)):
            x = torch.maximum(x * d_plus, s_pre) if nearest else x * d_plus + s_pre
            y = y * d_minus                # post events strictly before this step
            if self.a_plus:
                dw += self.a_plus * (s_post.T @ x)
            if self.a_minus:
                dw -= self.a_minus * (y.T @ s_pre)
            y = torch.maximum(y, s_post) if nearest else y + s_post
        return dw


@dataclass
class STDPMetrics:
    """What the updates of a run did: pulses applied and cut (summed over devices), pairs refreshed, steps."""

    pulses: PulseCounts = field(default_factory=PulseCounts)
    refreshed: int = 0
    steps: int = 0


class SupervisedSTDP:
    """Supervised STDP of a one-stage memristive SNN (``[inputs, classes]``, ideal synapses) on its device pairs.

    Args:
        net: a :class:`memsim.training.network.MemristiveSNN` with one stage (its ``synapses[0].weight``
            ``[classes, inputs]`` is read and overwritten from the pairs; its ``neurons[0]`` integrate).
        rule: the :class:`STDPRule`.
        settings: the devices (:class:`memsim.insitu.InSituSettings`: response, polarity, ``max_pulses``,
            refresh, seed; its ``algorithm`` must be ``"sgd"``: one array).
        w_max: the weight of one full device window (> 0); weights live in ``[-w_max, w_max]``.
        lr: weight units per unit of :meth:`STDPRule.delta`, per batch item.
        teacher_current: A of each teacher pulse into the label's neuron (>= 0).
        teacher_every: a teacher pulse every this many steps (>= 1), from step 0.
        inhibit_current: A drawn from the other output neurons at every step of the taught run (>= 0).
        remote: weight of the free run's STDP subtracted (>= 0; see the module docstring).
        input_level: V, the pre events' crossing level (half the input pulse height).
        post_level: V, the post events' crossing level (None: the neuron card's spike level).
        init: the initial weights (None: zeros, every device at its home bound).
    """

    def __init__(self, net, rule: STDPRule, settings: InSituSettings, *, w_max: float, lr: float,
                 teacher_current: float = 5e-5, teacher_every: int = 1, inhibit_current: float = 5e-5,
                 remote: float = 1.0, input_level: float = 0.1, post_level: float | None = None,
                 init: torch.Tensor | None = None):
        if len(net.synapses) != 1 or not isinstance(getattr(net.synapses[0], "weight", None), torch.Tensor) \
                or net.synapses[0].weight.dim() != 2 or getattr(net, "conv", None):
            raise ParameterError("network.layers", list(net.layers), "one fully connected stage [inputs, classes]",
                                 "supervised STDP trains a single crossbar stage, e.g. layers = [64, 10]")
        if settings.algorithm != "sgd":
            raise ParameterError("training.pulse_algorithm", settings.algorithm, "'sgd' for STDP (one array)")
        checks = (("stdp.w_max", w_max, w_max > 0, "a number > 0"), ("stdp.lr", lr, lr > 0, "a number > 0"),
                  ("stdp.teacher_current", teacher_current, teacher_current >= 0, "a current in A >= 0"),
                  ("stdp.teacher_every", teacher_every, isinstance(teacher_every, int) and teacher_every >= 1,
                   "an integer >= 1"),
                  ("stdp.inhibit_current", inhibit_current, inhibit_current >= 0, "a current in A >= 0"),
                  ("stdp.remote", remote, remote >= 0, "a number >= 0"),
                  ("stdp.input_level", input_level, input_level > 0, "a voltage > 0"))
        for key, value, ok, allowed in checks:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise ParameterError(key, value, allowed)
        self.net, self.rule, self.settings = net, rule, settings
        self.synapse, self.neurons = net.synapses[0], net.neurons[0]
        self.lr, self.w_max = float(lr), float(w_max)
        self.teacher_current, self.teacher_every = float(teacher_current), int(teacher_every)
        self.inhibit_current, self.remote = float(inhibit_current), float(remote)
        self.input_level = float(input_level)
        self.post_level = float(self.neurons.spike_level if post_level is None else post_level)
        weight = self.synapse.weight
        self.generator = torch.Generator(device=weight.device).manual_seed(settings.seed)
        w0 = torch.zeros_like(weight.detach()) if init is None else init.detach().to(weight)
        self.pairs = PairArray(w0, settings.response, w_max=self.w_max, drive=settings.drive, step=settings.step,
                               max_pulses=settings.max_pulses, generator=self.generator)
        self.metrics = STDPMetrics()
        self._sync()

    def _sync(self) -> None:
        with torch.no_grad():
            self.synapse.weight.copy_(self.pairs.weight())

    def teacher(self, labels: torch.Tensor, steps: int, like: torch.Tensor) -> torch.Tensor:
        """The taught run's extra current ``[T, B, classes]`` (A): pulses into the label's neuron, inhibition of
        the others."""
        B, C = labels.shape[0], self.synapse.weight.shape[0]
        onehot = torch.nn.functional.one_hot(labels, C).to(like.dtype)
        pulse = torch.zeros(steps, 1, 1, dtype=like.dtype, device=like.device)
        pulse[::self.teacher_every] = self.teacher_current
        return pulse * onehot - self.inhibit_current * (1.0 - onehot)

    def events(self, inputs: torch.Tensor, labels: torch.Tensor | None = None):
        """Pre events ``[T, B, N_in]`` and post events ``[T, B, C]`` of the free run (``labels`` None) or of the
        taught run."""
        T, B = inputs.shape[:2]
        with torch.no_grad():
            current = self.synapse(inputs.reshape(T * B, -1)).reshape(T, B, -1)
            if labels is not None:
                current = current + self.teacher(labels, T, current)
            v = self.neurons.run(current)
        return spike_events(inputs, self.input_level), spike_events(v, self.post_level)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> PulseCounts:
        """One update from a batch: input voltages ``[T, B, inputs]`` (V, e.g. rate-coded pulses) and labels
        ``[B]``; returns the pulses of this step (also added to :attr:`metrics`)."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.synapse.weight.shape[1] or labels.shape != inputs.shape[1:2]:
            raise ParameterError("inputs.shape", (tuple(inputs.shape), tuple(labels.shape)),
                                 f"[T, B, {self.synapse.weight.shape[1]}] input voltages and [B] labels")
        pre, post_taught = self.events(inputs, labels)
        dw = self.rule.delta(pre, post_taught, self.net.dt)
        if self.remote:
            _, post_free = self.events(inputs)
            dw = dw - self.remote * self.rule.delta(pre, post_free, self.net.dt)
        return self.apply(dw * (self.lr / inputs.shape[1]))

    def apply(self, delta_w: torch.Tensor) -> PulseCounts:
        """Pulse a weight change ``[classes, inputs]`` onto the pairs (counts, clipping, the response), refresh
        saturated pairs, count, and copy the pairs' weights into the network."""
        counts = self.pairs.update(delta_w)
        if self.settings.refresh:
            self.metrics.refreshed += self.pairs.refresh(self.settings.refresh_threshold)
        self.metrics.pulses.add(counts)
        self.metrics.steps += 1
        self._sync()
        return counts
