"""Memristive neuron layers: the neuron cards' circuits as batched, differentiable torch modules.

Input: input currents in A, time-major ``[T, B, N]`` (T steps of ``dt``, batch B,
N neurons). Each sample is held over its step (zero-order hold: ``current[n]``
drives the interval (n dt, (n+1) dt]); the outputs at index n are taken at
(n+1) dt. Output: membrane voltages in V ``[T, B, N]`` and, optionally, spike
indicators (1.0 where the circuit's spike rule fired during that step; a
read-out, not differentiable and not fed back - the circuit has no threshold
or reset). Either a whole sequence at once (``forward``) or one step at a
time with the state carried (``step``).

The equations are the card's circuit (:mod:`memsim.neurons.circuits`, built on
the device families), integrated with :func:`memsim.integrate.step` (RK4) and
enough sub-steps per ``dt`` to keep the stiff membrane mode (R_on C) inside
RK4's stability region for *any* input, so the state cannot overflow from the
integrator; a non-finite state still raises :class:`NonFiniteError` naming the
neuron, step and input.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import NonFiniteError, ParameterError, StimulusError
from ..integrate import step as integrate_step
from ..mathns import TORCH
from ..neurons.cards import NeuronCard, check_dt, load_neuron_card
from ..neurons.circuits import default_substeps, synapse_derivative


class NeuronOutput(NamedTuple):
    v: torch.Tensor                 # [T, B, N] membrane voltage (V)
    spikes: torch.Tensor | None     # [T, B, N] spike indicators (0/1), or None
    state: torch.Tensor             # [B, N, S] final state, to carry into the next call
    states: torch.Tensor | None     # [T, B, N, S] every state (return_states=True), else None


class MemristiveNeuron(nn.Module):
    """A layer of N neurons of one neuron card.

    Parameters
    ----------
    card:      a :class:`NeuronCard` or a card name (``"mif_neuron"``, ``"vlif_neuron"``)
    dt:        time step in s (default: the card's); must resolve the memristor tau (card check)
    synapse:   put the alpha-kernel synapse (time constant ``tau_s``) in front of the membrane
    substeps:  RK4 sub-steps per dt (default: the fewest that keep the stiffest mode stable)
    spikes:    also return spike indicators
    overrides: circuit parameters (``C=...``, ``E1=...``) or memristor ones (``M1_tau=...``)
    """

    def __init__(self, card: NeuronCard | str, *, dt: float | None = None, synapse: bool = False,
                 substeps: int | None = None, spikes: bool = True, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", **overrides):
        super().__init__()
        if not isinstance(card, NeuronCard):
            card = load_neuron_card(card)
        if overrides:
            card = card.with_parameters(**overrides)
        if dtype not in (torch.float32, torch.float64):
            raise ParameterError("dtype", dtype, "torch.float32 or torch.float64", "pick one of them")
        self.card, self.circuit = card, card.circuit
        self.dt = check_dt(card.dt if dt is None else dt, card.memristors, card.parameters, card.name)
        self.p, self.devices = card.namespaces()
        self.synapse, self.return_spikes = bool(synapse), bool(spikes)
        if substeps is None:
            substeps = default_substeps(self.circuit, self.p, self.devices, self.dt, self.synapse)
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ParameterError("substeps", substeps, "an integer >= 1", "leave it unset for the automatic choice")
        self.substeps = substeps
        self.rule = self.circuit.spike_rule(self.p, self.devices)
        x0 = list(self.circuit.initial_state(self.p, self.devices)) + ([0.0, 0.0] if synapse else [])
        self.state_names = tuple(self.circuit.state_names) + (("a", "s") if synapse else ())
        self.state_dim = len(x0)
        self.register_buffer("x0", torch.tensor(x0, dtype=dtype, device=device))

    # -- state -----------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.x0.dtype

    @property
    def device(self) -> torch.device:
        return self.x0.device

    def initial_state(self, batch: int, n: int) -> torch.Tensor:
        """The card's initial state, ``[batch, n, S]``."""
        return self.x0.expand(batch, n, self.state_dim).clone()

    def extra_repr(self) -> str:
        return (f"card={self.card.name}, type={self.card.type}, dt={self.dt:g}, substeps={self.substeps}, "
                f"synapse={self.synapse}")

    # -- equations --------------------------------------------------------------------------------------
    def _field(self, u: torch.Tensor):
        nc = len(self.circuit.state_names)

        def f(t, y):
            comps = y.unbind(-1)
            if self.synapse:
                da, ds = synapse_derivative(TORCH, self.p.tau_s, u, comps[nc], comps[nc + 1])
                d = self.circuit.derivative(TORCH, self.p, self.devices, comps[:nc], comps[nc + 1])
                return torch.stack((*d, da, ds), dim=-1)
            return torch.stack(self.circuit.derivative(TORCH, self.p, self.devices, comps, u), dim=-1)
        return f

    # -- input checks -----------------------------------------------------------------------------------
    def _check(self, x, name: str, dims: int, shape_doc: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise StimulusError(f"{name} must be a torch.Tensor of input currents in A with shape {shape_doc}, "
                                f"got {type(x).__name__}")
        if x.dim() != dims:
            raise StimulusError(f"{name} has shape {tuple(x.shape)}; expected {dims} dimensions {shape_doc} "
                                f"(time-major). Fix: reshape, e.g. x.view(T, B, N)")
        if x.dtype != self.dtype:
            other = (f" or build the layer with dtype={x.dtype}" if x.dtype in (torch.float32, torch.float64)
                     else " (layers run in torch.float32 or torch.float64 only)")
            raise StimulusError(f"{name} has dtype {x.dtype}; this layer runs in {self.dtype}. "
                                f"Fix: x.to({self.dtype}){other}")
        if x.device != self.device:
            raise StimulusError(f"{name} is on {x.device}; this layer is on {self.device}. "
                                f"Fix: x.to('{self.device}') or layer.to('{x.device}')")
        if not torch.isfinite(x).all():
            raise StimulusError(f"{name} contains NaN or infinite currents; give finite currents in A")

    def _check_state(self, state, batch: int, n: int) -> torch.Tensor:
        if state is None:
            return self.initial_state(batch, n)
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != (batch, n, self.state_dim) \
                or state.dtype != self.dtype or state.device != self.device:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise StimulusError(f"state must be a {self.dtype} tensor on {self.device} of shape "
                                f"{(batch, n, self.state_dim)} (B, N, {self.state_names}); got {got}. "
                                "Fix: pass the state returned by the previous call, or None")
        return state

    # -- stepping ---------------------------------------------------------------------------------------
    def _advance(self, u: torch.Tensor, y: torch.Tensor, index: int) -> torch.Tensor:
        f = self._field(u)
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

    def _spike(self, y_old: torch.Tensor, y_new: torch.Tensor) -> torch.Tensor:
        c, level = self.rule.component, self.rule.level
        return ((y_old[..., c] < level) & (y_new[..., c] >= level)).to(y_new.dtype)

    def step(self, current: torch.Tensor, state: torch.Tensor | None = None, *, index: int | None = None):
        """One step: ``current`` ``[B, N]`` (A) -> (v ``[B, N]``, spike ``[B, N]`` or None, new state).

        ``index`` (optional) is the caller's step number, used only in the error message of a non-finite state.
        """
        self._check(current, "current", 2, "[B, N]")
        y = self._check_state(state, *current.shape)
        y_new = self._advance(current, y, -1 if index is None else int(index))
        spk = self._spike(y.detach(), y_new.detach()) if self.return_spikes else None
        return y_new[..., 0], spk, y_new

    def forward(self, current: torch.Tensor, state: torch.Tensor | None = None, *,
                return_states: bool = False) -> NeuronOutput:
        """A whole sequence: ``current`` ``[T, B, N]`` (A) -> :class:`NeuronOutput`."""
        self._check(current, "current", 3, "[T, B, N]")
        T, B, N = current.shape
        y = self._check_state(state, B, N)
        vs, spikes, states = [], [], []
        for n in range(T):
            y_new = self._advance(current[n], y, n)
            if self.return_spikes:
                spikes.append(self._spike(y.detach(), y_new.detach()))
            vs.append(y_new[..., 0])
            if return_states:
                states.append(y_new)
            y = y_new
        empty = current.new_zeros((0, B, N))
        v = torch.stack(vs) if vs else empty
        spk = (torch.stack(spikes) if spikes else empty) if self.return_spikes else None
        st = (torch.stack(states) if states else current.new_zeros((0, B, N, self.state_dim))) \
            if return_states else None
        return NeuronOutput(v, spk, y, st)


class MIFNeuron(MemristiveNeuron):
    """Memristive integrate-and-fire neuron layer (default card ``mif_neuron``)."""

    def __init__(self, card: NeuronCard | str = "mif_neuron", **kwargs):
        super().__init__(card, **kwargs)
        if self.card.type != "mif":
            raise ParameterError("card", self.card.name, "a card of type 'mif'", "use VLIFNeuron for 'vlif' cards")


class VLIFNeuron(MemristiveNeuron):
    """Volatile-memristor leaky integrate-and-fire neuron layer (default card ``vlif_neuron``)."""

    def __init__(self, card: NeuronCard | str = "vlif_neuron", **kwargs):
        super().__init__(card, **kwargs)
        if self.card.type != "vlif":
            raise ParameterError("card", self.card.name, "a card of type 'vlif'", "use MIFNeuron for 'mif' cards")
