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
the device families), integrated by :class:`memsim.neurons.dynamics.NeuronDynamics`
with :func:`memsim.integrate.step` (RK4) and enough sub-steps per ``dt`` to keep
the stiff membrane mode (R_on C) inside RK4's stability region for *any* input,
so the state cannot overflow from the integrator; a non-finite state still raises
:class:`NonFiniteError` naming the neuron, step and input.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError, StimulusError
from ..neurons.cards import NeuronCard
from ..neurons.dynamics import NeuronDynamics, NeuronOutput

__all__ = ["MemristiveNeuron", "MIFNeuron", "VLIFNeuron", "NeuronOutput"]


class MemristiveNeuron(nn.Module):
    r"""A layer of :math:`N` neurons of one neuron card: its circuit's ODE, integrated with sub-stepped RK4.

    The state of each neuron is the membrane voltage :math:`V` (V) and its memristors' ON fractions
    :math:`x_j \in [0, 1]`, metastable-switch devices with

    .. math::  G(x) = \frac{x}{R_{on}} + \frac{1 - x}{R_{off}},\qquad
               \tau \dot x = (1 - x)\,\sigma\!\Big(\frac{v - v_{on}}{k}\Big)
               - x\,\sigma\!\Big(\frac{v_{off} - v}{k}\Big)

    at their own voltage :math:`v`. A ``"mif"`` card (:class:`MIFNeuron`) has two, on reversal potentials
    :math:`E_1 < E_2`; a ``"vlif"`` card (:class:`VLIFNeuron`) one threshold switch in series with a load
    :math:`R_L`:

    .. math::  \text{mif:}\quad C \dot V = I_{in} - \sum_{j=1}^{2} G(x_j)(V - E_j),\quad v_j = V - E_j

    .. math::  \text{vlif:}\quad C \dot V = I_{in} - G(x)\,v_m,\quad v_m = \frac{V}{1 + G(x) R_L}

    With ``synapse=True`` the input current :math:`u` first passes an alpha kernel of unit DC gain,
    :math:`\tau_s \dot a = u - a,\ \tau_s \dot s = a - s,\ I_{in} = s`; otherwise :math:`I_{in} = u`.
    Each input sample is held over its step (zero-order hold); the outputs at index :math:`n` are taken at
    :math:`(n+1)\,\Delta t`. There is no threshold and no reset: a spike is the circuit's own excursion, read
    out as an upward crossing of the card's spike rule (mif: :math:`V` through :math:`E_1 + v_{on}(M_1)`;
    vlif: :math:`x` through 0.1), not differentiable and not fed back.

    Args:
        card: a :class:`memsim.neurons.NeuronCard` or a card name (``"mif_neuron"``, ``"vlif_neuron"``).
        dt: time step in s (default: the card's); it must resolve the memristors' :math:`\tau` and
            :math:`\tau_s` (checked against the card).
        synapse: put the alpha-kernel synapse (time constant ``tau_s`` of the card, s) in front of the membrane.
        substeps: RK4 sub-steps per ``dt`` (default: the fewest that keep the stiffest mode,
            :math:`(G_{max,1} + G_{max,2})/C`, inside RK4's stability region and resolve :math:`\tau/20`).
        spikes: also return spike indicators.
        dtype: ``torch.float32`` (training) or ``torch.float64`` (verification).
        device: torch device of the state and outputs.
        **overrides: circuit parameters in SI units (``C=1e-9``, ``E2=0.05``, ``R_L=1e3``) or memristor
            parameters as ``M<k>_<name>`` (``M1_tau=2e-3``); the card re-validates them.

    Shapes and units:
        input currents ``[T, B, N]`` in A (time-major: ``T`` steps of ``dt``, batch ``B``, ``N`` neurons) to
        :meth:`forward`, ``[B, N]`` to :meth:`step`. :class:`NeuronOutput`: ``v`` ``[T, B, N]`` membrane voltage
        in V, ``spikes`` ``[T, B, N]`` (0/1), ``state`` ``[B, N, S]`` (the components ``state_names``: ``V``
        in V, the memristor states, then ``a, s`` in A with the synapse) to carry into the next call, and
        ``states`` ``[T, B, N, S]`` with ``return_states=True``.

    Example: stepping with the state carried reproduces the whole-sequence call.

        >>> import torch
        >>> from memsim.nn import MemristiveNeuron
        >>> layer = MemristiveNeuron("mif_neuron", synapse=True, dtype=torch.float64)
        >>> layer.state_names
        ('V', 'x1', 'x2', 'a', 's')
        >>> x = torch.full((20, 2, 3), 3e-4, dtype=torch.float64)      # A, [T, B, N]
        >>> out = layer(x)
        >>> state = None
        >>> for n in range(20):
        ...     v, spike, state = layer.step(x[n], state)
        >>> bool(torch.equal(v, out.v[-1])), tuple(out.v.shape), tuple(out.state.shape)
        (True, (20, 2, 3), (2, 3, 5))
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
    r"""Memristive integrate-and-fire neuron layer (Kang et al., IEEE TCAS-I 2021; default card ``mif_neuron``).

    A membrane capacitor and two metastable-switch memristors in series with reversal potentials
    :math:`E_1 < E_2`; state :math:`(V, x_1, x_2)`:

    .. math::  C \dot V = I_{in} - G(x_1)(V - E_1) - G(x_2)(V - E_2),\qquad
               \tau \dot x_j = (1 - x_j)\,\sigma\!\Big(\frac{V - E_j - v_{on}}{k}\Big)
               - x_j\,\sigma\!\Big(\frac{v_{off} - V + E_j}{k}\Big)

    A spike is read out when :math:`V` crosses :math:`E_1 + v_{on}(M_1)` upwards (:math:`M_1` starts switching
    ON); the action potential itself comes from the memristors' dynamics, with no threshold or reset circuit.
    For frozen memristor states the membrane is a linear RC with
    :math:`V(t) = V_\infty + (V_0 - V_\infty)\,e^{-G t / C}`, :math:`G = G(x_1) + G(x_2)`,
    :math:`V_\infty = (G(x_1) E_1 + G(x_2) E_2 + I)/G`.

    Args:
        card: a ``"mif"`` neuron card or its name (default ``"mif_neuron"``: ``C`` = 1 nF, :math:`E_1` = 0 V,
            :math:`E_2` = 50 mV, memristors ``mss_mif`` with :math:`R_{on}` = 1 kOhm, :math:`R_{off}` =
            100 kOhm, :math:`\tau` = 1 ms; ``dt`` = 10 us).
        **kwargs: as for :class:`MemristiveNeuron` (``dt``, ``synapse``, ``substeps``, ``spikes``, ``dtype``,
            ``device`` and parameter overrides).

    Shapes and units: as for :class:`MemristiveNeuron` (currents ``[T, B, N]`` in A, voltages in V).

    Example: with the memristors slowed to :math:`\tau` = 1 s (frozen over 50 us) the membrane follows the
    RC closed form; with the card's memristors a 20 uA step fires once at its onset (the MIF neuron is phasic).

        >>> import torch
        >>> from memsim.nn import MIFNeuron
        >>> layer = MIFNeuron(dtype=torch.float64, M1_tau=1.0, M2_tau=1.0)
        >>> I = 2e-6                                                    # A
        >>> out = layer(torch.full((5, 1, 1), I, dtype=torch.float64))
        >>> p, (m1, m2) = layer.p, layer.devices
        >>> g1, g2 = (m.x0 / m.R_on + (1 - m.x0) / m.R_off for m in (m1, m2))
        >>> v_inf = (g1 * p.E1 + g2 * p.E2 + I) / (g1 + g2)
        >>> t = torch.arange(1, 6, dtype=torch.float64) * layer.dt
        >>> v_ref = v_inf + (p.V0 - v_inf) * torch.exp(-(g1 + g2) * t / p.C)
        >>> bool(torch.allclose(out.v[:, 0, 0], v_ref, rtol=1e-4))
        True
        >>> out = MIFNeuron()(torch.full((50, 1, 1), 2e-5))             # 0.5 ms, float32
        >>> int(out.spikes.sum()), float(out.v.max()) > p.E1 + m1.v_on
        (1, True)
    """

    def __init__(self, card: NeuronCard | str = "mif_neuron", **kwargs):
        super().__init__(card, **kwargs)
        if self.card.type != "mif":
            raise ParameterError("card", self.card.name, "a card of type 'mif'", "use VLIFNeuron for 'vlif' cards")


class VLIFNeuron(MemristiveNeuron):
    r"""Volatile-memristor leaky integrate-and-fire neuron layer (default card ``vlif_neuron``).

    A membrane capacitor discharged through a threshold-switching (volatile) memristor in series with a load
    resistor :math:`R_L`; state :math:`(V, x)`:

    .. math::  v_m = \frac{V}{1 + G(x) R_L},\qquad C \dot V = I_{in} - G(x)\,v_m,\qquad
               \tau \dot x = (1 - x)\,\sigma\!\Big(\frac{v_m - v_{on}}{k}\Big)
               - x\,\sigma\!\Big(\frac{v_{off} - v_m}{k}\Big)

    The switch's OFF leakage is the leak (time constant :math:`(R_{off} + R_L) C`), its switching ON the fire
    (read out when :math:`x` crosses 0.1 upwards) and its spontaneous relaxation OFF (:math:`v_{off} > 0`)
    the reset. Below :math:`v_{on}` the switch stays OFF and the membrane charges as an RC:
    :math:`V(t) = I (R_{off} + R_L)\,(1 - e^{-t / ((R_{off} + R_L) C)})`.

    Args:
        card: a ``"vlif"`` neuron card or its name (default ``"vlif_neuron"``: ``C`` = 10 nF,
            :math:`R_L` = 1 kOhm, a 10 kOhm / 1 MOhm switch with :math:`v_{on}` = 0.3 V, :math:`v_{off}` = 0.2 V,
            :math:`\tau` = 100 us; ``dt`` = 10 us).
        **kwargs: as for :class:`MemristiveNeuron` (``dt``, ``synapse``, ``substeps``, ``spikes``, ``dtype``,
            ``device`` and parameter overrides).

    Shapes and units: as for :class:`MemristiveNeuron` (currents ``[T, B, N]`` in A, voltages in V).

    Example: a 1 uA step charges the membrane as the RC closed form; a 150 uA step fires once.

        >>> import torch
        >>> from memsim.nn import VLIFNeuron
        >>> layer = VLIFNeuron(dtype=torch.float64)
        >>> out = layer(torch.full((10, 1, 1), 1e-6, dtype=torch.float64))
        >>> R = layer.devices[0].R_off + layer.p.R_L                    # Ohm
        >>> t = torch.arange(1, 11, dtype=torch.float64) * layer.dt
        >>> bool(torch.allclose(out.v[:, 0, 0], 1e-6 * R * (1 - torch.exp(-t / (R * layer.p.C))), rtol=1e-6))
        True
        >>> out = VLIFNeuron()(torch.full((100, 1, 1), 1.5e-4), return_states=True)
        >>> int(out.spikes.sum()), float(out.states[..., 1].max()) > 0.1  # fired: the switch turned ON
        (1, True)
    """

    def __init__(self, card: NeuronCard | str = "vlif_neuron", **kwargs):
        super().__init__(card, **kwargs)
        if self.card.type != "vlif":
            raise ParameterError("card", self.card.name, "a card of type 'vlif'", "use MIFNeuron for 'mif' cards")
