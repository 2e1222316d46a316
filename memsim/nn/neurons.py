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

import torch
from torch import nn

from ..errors import ParameterError, StimulusError
from ..neurons.cards import NeuronCard
from ..neurons.dynamics import NeuronDynamics, NeuronOutput

__all__ = ["MemristiveNeuron", "MIFNeuron", "VLIFNeuron", "NeuronOutput"]


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
        if dtype not in (torch.float32, torch.float64):
            raise ParameterError("dtype", dtype, "torch.float32 or torch.float64", "pick one of them")
        self.dynamics = dyn = NeuronDynamics(card, dt=dt, synapse=synapse, substeps=substeps, **overrides)
        self.card, self.circuit, self.dt, self.p, self.devices = dyn.card, dyn.circuit, dyn.dt, dyn.p, dyn.devices
        self.synapse, self.substeps, self.rule = dyn.synapse, dyn.substeps, dyn.rule
        self.state_names, self.state_dim = dyn.state_names, dyn.state_dim
        self.return_spikes = bool(spikes)
        self.register_buffer("x0", torch.tensor(dyn.x0, dtype=dtype, device=device))

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

    def _field(self, u: torch.Tensor):
        return self.dynamics.field(u)

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
    def step(self, current: torch.Tensor, state: torch.Tensor | None = None, *, index: int | None = None):
        """One step: ``current`` ``[B, N]`` (A) -> (v ``[B, N]``, spike ``[B, N]`` or None, new state).

        ``index`` (optional) is the caller's step number, used only in the error message of a non-finite state.
        """
        self._check(current, "current", 2, "[B, N]")
        y = self._check_state(state, *current.shape)
        y_new = self.dynamics.advance(current, y, -1 if index is None else int(index))
        spk = self.dynamics.spike(y.detach(), y_new.detach()) if self.return_spikes else None
        return y_new[..., 0], spk, y_new

    def forward(self, current: torch.Tensor, state: torch.Tensor | None = None, *,
                return_states: bool = False) -> NeuronOutput:
        """A whole sequence: ``current`` ``[T, B, N]`` (A) -> :class:`NeuronOutput`."""
        self._check(current, "current", 3, "[T, B, N]")
        T, B, N = current.shape
        y = self._check_state(state, B, N)
        return self.dynamics.run(current, y, spikes=self.return_spikes, return_states=return_states)


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
