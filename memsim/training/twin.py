"""The fast MIF twin: a card's MIF neurons stepped once per ``dt``, for training.

The neuron card's circuit (:mod:`memsim.neurons.circuits`, equations written once) is integrated by
:class:`MIFDynamics`, a stiff-stable exponential (Rosenbrock-type) Euler scheme: the membrane equation is
affine in V for frozen memristor states, so its exact local solution ``V + h phi(J h) f_V``
(``phi(z) = (e^z - 1)/z``, ``J = df_V/dV`` measured by probing the circuit's own derivative) stays stable
for any input, while the slow memristor states (``tau`` = 1 ms) take explicit Euler sub-steps. The
reference RK4 layer :class:`memsim.nn.MIFNeuron` and ngspice check it (tests, export-spice).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NonFiniteError, ParameterError
from ..mathns import TORCH

__all__ = ["MIFDynamics"]


class MIFDynamics(nn.Module):
    """MIF neurons of a card, stepped with exponential Euler on V and explicit Euler on the memristors.

    State: ``[B, N, S]`` with components in the circuit's order (``V, x1, x2``). ``step(y, I)`` advances
    one ``dt`` (``substeps`` sub-steps of ``dt / substeps``) under input current ``I`` ``[B, N]`` (A).
    """

    def __init__(self, card="mif_neuron", dt: float | None = None, substeps: int = 1, *, name: str = "neurons",
                 compile: bool = False):
        super().__init__()
        from ..neurons.cards import NeuronCard, load_neuron_card
        from ..neurons.dynamics import NeuronDynamics

        if not isinstance(card, NeuronCard):
            card = load_neuron_card(card)
        if card.type != "mif":
            raise ParameterError("network.neuron", card.name, "a neuron card of type 'mif'",
                                 "the memristive SNN is built from MIF neurons (e.g. 'mif_neuron')")
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ParameterError("substeps", substeps, "an integer >= 1", "e.g. 1 for training, 4 for checks")
        # the card's set-up (time step against the card, parameter namespaces, spike rule, initial state) is
        # the reference layer's (memsim.nn.MemristiveNeuron), so the twin and the reference cannot drift apart
        setup = NeuronDynamics(card, dt=dt, substeps=substeps)
        self.card, self.circuit, self.dt, self.p, self.devices = (setup.card, setup.circuit, setup.dt, setup.p,
                                                                  setup.devices)
        self.substeps = substeps
        self.name = name
        # torch.compile fuses the ~150 elementwise kernels of a time step (forward and backward) into a few;
        # the step is the same Python code, so the equations are still written once.
        self.compile = bool(compile)
        self._compiled_step = None
        self.spike_component, self.spike_level = setup.rule.component, float(setup.rule.level)
        self.spike_width = float(self.devices[0].k)
        self.x0, self.state_names = setup.x0, setup.state_names
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
