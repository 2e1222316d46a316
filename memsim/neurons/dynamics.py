"""A neuron card's circuit integrated in torch: set-up, RK4 stepping, spike read-out.

This is the torch twin of a neuron card, at the level of :mod:`memsim.integrate` (no ``torch.nn``):
:class:`memsim.nn.MemristiveNeuron` wraps it as a layer, and the SPICE comparison
(:mod:`memsim.neurons.simulate`) and the f-I curve (:mod:`memsim.neurons.characterise`) run it directly.

The equations are the card's circuit (:mod:`memsim.neurons.circuits`, built on the device families),
integrated with :func:`memsim.integrate.step` (RK4) and enough sub-steps per ``dt`` to keep the stiff
membrane mode (R_on C) inside RK4's stability region for *any* input, so the state cannot overflow from the
integrator; a non-finite state still raises :class:`NonFiniteError` naming the neuron, step and input.
Input currents are held over each step (zero-order hold); the outputs at index n are taken at (n+1) dt.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import NonFiniteError, ParameterError
from ..integrate import step as integrate_step
from ..mathns import TORCH
from .cards import NeuronCard, check_dt, load_neuron_card
from .circuits import default_substeps, synapse_derivative


class NeuronOutput(NamedTuple):
    v: torch.Tensor                 # [T, B, N] membrane voltage (V)
    spikes: torch.Tensor | None     # [T, B, N] spike indicators (0/1), or None
    state: torch.Tensor             # [B, N, S] final state, to carry into the next call
    states: torch.Tensor | None     # [T, B, N, S] every state (return_states=True), else None


class NeuronDynamics:
    """One neuron card's circuit, optionally behind the alpha synapse, stepped with sub-stepped RK4.

    ``card``: a :class:`NeuronCard` or a card name; ``dt`` (s, default the card's), ``synapse``,
    ``substeps`` (default: the fewest that keep the stiffest mode stable) and circuit or memristor
    ``overrides`` as for :class:`memsim.nn.MemristiveNeuron`. State tensors are ``[B, N, S]`` with the
    components ``state_names`` (the circuit's, then ``a, s`` for the synapse).
    """

    def __init__(self, card: NeuronCard | str, *, dt: float | None = None, synapse: bool = False,
                 substeps: int | None = None, **overrides):
        if not isinstance(card, NeuronCard):
            card = load_neuron_card(card)
        if overrides:
            card = card.with_parameters(**overrides)
        self.card, self.circuit = card, card.circuit
        self.dt = check_dt(card.dt if dt is None else dt, card.memristors, card.parameters, card.name)
        self.p, self.devices = card.namespaces()
        self.synapse = bool(synapse)
        if substeps is None:
            substeps = default_substeps(self.circuit, self.p, self.devices, self.dt, self.synapse)
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ParameterError("substeps", substeps, "an integer >= 1", "leave it unset for the automatic choice")
        self.substeps = substeps
        self.rule = self.circuit.spike_rule(self.p, self.devices)
        self.x0 = tuple(float(v) for v in self.circuit.initial_state(self.p, self.devices)) \
            + ((0.0, 0.0) if synapse else ())
        self.state_names = tuple(self.circuit.state_names) + (("a", "s") if synapse else ())
        self.state_dim = len(self.x0)

    def initial_state(self, batch: int, n: int, dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> torch.Tensor:
        """The card's initial state, ``[batch, n, S]``."""
        return torch.tensor(self.x0, dtype=dtype, device=device).expand(batch, n, self.state_dim).clone()

    def field(self, u: torch.Tensor):
        """The vector field ``f(t, y)`` of the state ``y`` ``[B, N, S]`` under the held input current ``u`` (A)."""
        nc = len(self.circuit.state_names)

        def f(t, y):
            comps = y.unbind(-1)
            if self.synapse:
                da, ds = synapse_derivative(TORCH, self.p.tau_s, u, comps[nc], comps[nc + 1])
                d = self.circuit.derivative(TORCH, self.p, self.devices, comps[:nc], comps[nc + 1])
                return torch.stack((*d, da, ds), dim=-1)
            return torch.stack(self.circuit.derivative(TORCH, self.p, self.devices, comps, u), dim=-1)
        return f

    def advance(self, u: torch.Tensor, y: torch.Tensor, index: int = -1) -> torch.Tensor:
        """The state one ``dt`` later (``substeps`` RK4 steps); ``index`` names the step in a non-finite error."""
        f = self.field(u)
        h = self.dt / self.substeps
        for _ in range(self.substeps):
            y = integrate_step(f, 0.0, y, h, "rk4")
        if not torch.isfinite(y).all():
            bad = (~torch.isfinite(y)).nonzero()[0].tolist()
            b, n = bad[0], bad[1]
            when = (f"at step {index} (t = {(index + 1) * self.dt:g} s)" if index >= 0
                    else "in a step() call (pass step(..., index=n) to have the step named)")
            raise NonFiniteError(
                f"neuron '{self.card.name}' [batch {b}, neuron {n}] became non-finite {when} "
                f"with input current {float(u[b, n]):g} A "
                f"(state {self.state_names[bad[2]]}); the documented input range is "
                f"{list(self.card.input_range)} A. Fix: keep the input in range or use dtype=torch.float64")
        return y

    def spike(self, y_old: torch.Tensor, y_new: torch.Tensor) -> torch.Tensor:
        """1.0 where the card's spike rule fired between two states (an upward crossing of its level)."""
        c, level = self.rule.component, self.rule.level
        return ((y_old[..., c] < level) & (y_new[..., c] >= level)).to(y_new.dtype)

    def run(self, current: torch.Tensor, y: torch.Tensor | None = None, *, spikes: bool = True,
            return_states: bool = False) -> NeuronOutput:
        """A whole sequence: ``current`` ``[T, B, N]`` (A) from state ``y`` (default: the initial state)."""
        T, B, N = current.shape
        if y is None:
            y = self.initial_state(B, N, current.dtype, current.device)
        vs, spk, states = [], [], []
        for n, u in enumerate(current.unbind(0)):   # unbind: one gradient stack, not a [T, B, N] zero per step
            y_new = self.advance(u, y, n)
            if spikes:
                spk.append(self.spike(y.detach(), y_new.detach()))
            vs.append(y_new[..., 0])
            if return_states:
                states.append(y_new)
            y = y_new
        empty = current.new_zeros((0, B, N))
        v = torch.stack(vs) if vs else empty
        s = (torch.stack(spk) if spk else empty) if spikes else None
        st = (torch.stack(states) if states else current.new_zeros((0, B, N, self.state_dim))) \
            if return_states else None
        return NeuronOutput(v, s, y, st)
