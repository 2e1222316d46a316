"""The fast MIF twin: a card's MIF neurons stepped once per ``dt``, for training.

The neuron card's circuit (:mod:`memsim.neurons.circuits`, equations written once) is integrated by
:class:`MIFDynamics`, a stiff-stable exponential (Rosenbrock-type) Euler scheme: the membrane equation is
affine in V for frozen memristor states, so its exact local solution ``V + h phi(J h) f_V``
(``phi(z) = (e^z - 1)/z``, ``J = df_V/dV`` measured by probing the circuit's own derivative) stays stable
for any input, while the slow memristor states (``tau`` = 1 ms) take explicit Euler sub-steps. The
reference RK4 layer :class:`memsim.nn.MIFNeuron` and ngspice check it (tests, export-spice).

Speed (``benchmarks/training.md``): a sequence is stepped from ``current.unbind(0)`` (indexing ``current[t]``
would build a zero ``[T, B, N]`` gradient per step in the backward pass), a direct input is one held ``[B, N]``
current (``run(..., steps=T)``), the non-finite check is one sum unless it finds something, and with
``compile=True`` each time step is one fused kernel forward and one backward (:data:`COMPILE_OPTIONS`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NonFiniteError, ParameterError
from ..mathns import TORCH
from ..neurons.cards import NeuronCard, load_neuron_card
from ..neurons.dynamics import NeuronDynamics

__all__ = ["MIFDynamics", "COMPILE_OPTIONS"]

#: inductor options of the compiled step (CPU code): let the C++ compiler multiply by reciprocals of the constant
#: divisors and contract to FMAs. The step's values move by float32 rounding (1e-7 to 4e-7 V against eager, as
#: compiling itself does) and its kernels run ~15 % faster; NaN and inf still propagate (no finite-math flag).
COMPILE_OPTIONS = {"cpp.enable_unsafe_math_opt_flag": True, "cpp.enable_floating_point_contract_flag": "fast"}
#: compiled steps kept per network: every MIF layer (one instance each) and batch shape of a network shares the
#: step's code, whose cache torch limits to 8 by default; a spiking CNN (4 layers x training, last and test batch
#: shapes) exceeded it and fell back to eager with a warning. Raised only while a layer runs its steps.
RECOMPILE_LIMIT = 64


class MIFDynamics(nn.Module):
    r"""MIF neurons of a card, stepped with exponential Euler on V and explicit Euler on the memristors.

    The circuit is that of :class:`memsim.nn.MIFNeuron`,
    :math:`C \dot V = f_V = I - G(x_1)(V - E_1) - G(x_2)(V - E_2)`, :math:`\dot x_j = F(V - E_j, x_j)`.
    For frozen memristor states :math:`f_V` is affine in :math:`V` with slope
    :math:`J = \partial f_V / \partial V = -(G(x_1) + G(x_2))/C`, so one sub-step of :math:`h = dt / substeps`
    is the exact local solution, used as predictor and corrector:

    .. math::  \mathcal{E}(V, x) = V + h\,\varphi(J h)\,f_V(V, x),\quad \varphi(z) = \frac{e^z - 1}{z};\qquad
               V^* = \mathcal{E}(V_n, x_n),\quad x_{n+1} = x_n + h\,F(V^* - E, x_n),\quad
               V_{n+1} = \mathcal{E}(V_n, x_{n+1})

    stable for any input (no RK4 sub-stepping of the stiff :math:`R_{on} C` mode); its error against the RK4
    reference is first order in :math:`h`.

    Args:
        card: a ``"mif"`` neuron card or its name (default ``"mif_neuron"``).
        dt: time step in s (default: the card's); ``dt / substeps`` must be <= 0.1 of the memristor tau.
        substeps: sub-steps per ``dt`` (1 for training, more for checks).
        name: names the layer in a non-finite error.
        compile: ``torch.compile`` the step (same Python code; one fused kernel forward and one backward per
            time step, inductor options :data:`COMPILE_OPTIONS`).

    Shapes and units: :meth:`run` takes input currents ``[T, B, N]`` in A (or ``[B, N]`` held over ``steps=T``
    steps) and returns membrane voltages ``[T, B, N]`` in V (with ``return_states=True`` also ``[T, B, N, 3]``
    states ``V, x1, x2``); :meth:`step` advances a tuple of state components, each ``[B, N]``, under currents
    ``[B, N]``.

    Example: with the memristors slowed to :math:`\tau` = 1 s the step is the membrane's exact RC solution;
    with the card's memristors the error against RK4 (:class:`memsim.nn.MIFNeuron`, float64) over a 20 uA
    step that fires one spike shrinks with the sub-step.

        >>> import torch
        >>> from memsim.neurons import load_neuron_card
        >>> from memsim.nn import MIFNeuron
        >>> from memsim.training.twin import MIFDynamics
        >>> twin = MIFDynamics(load_neuron_card("mif_neuron").with_parameters(M1_tau=1.0, M2_tau=1.0))
        >>> I = 2e-6                                                    # A
        >>> v = twin.run(torch.full((5, 1, 1), I, dtype=torch.float64))[:, 0, 0]
        >>> p, (m1, m2) = twin.p, twin.devices
        >>> g1, g2 = (m.x0 / m.R_on + (1 - m.x0) / m.R_off for m in (m1, m2))
        >>> v_inf = (g1 * p.E1 + g2 * p.E2 + I) / (g1 + g2)
        >>> t = torch.arange(1, 6, dtype=torch.float64) * twin.dt
        >>> bool(torch.allclose(v, v_inf + (p.V0 - v_inf) * torch.exp(-(g1 + g2) * t / p.C), rtol=1e-5))
        True
        >>> x = torch.full((50, 1, 1), 2e-5, dtype=torch.float64)
        >>> v_rk4 = MIFNeuron(dtype=torch.float64)(x).v
        >>> err = [float((MIFDynamics(substeps=s).run(x) - v_rk4).abs().max()) for s in (1, 4)]   # V
        >>> fine = MIFDynamics(substeps=4)
        >>> err[1] < err[0] / 3, int(fine.hard_spikes(fine.run(x)).sum())
        (True, 1)
    """

    def __init__(self, card="mif_neuron", dt: float | None = None, substeps: int = 1, *, name: str = "neurons",
                 compile: bool = False):
        super().__init__()
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
        # torch.compile fuses the ~150 elementwise kernels of a time step into one forward and one backward kernel;
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
        # probe: f_V is affine in V (memristor currents G v), so J = f_V(V + 1) - f_V(V) (per volt). Eager, one
        # call on the stacked pair (half the kernel launches); compiled, two calls, which fuse into one loop
        # (a stacked pair splits the fused forward and backward kernels in two passes over [2, B, N])
        if torch.compiler.is_compiling():
            fV = self.circuit.derivative(TORCH, self.p, self.devices, (V, *xs), current)[0]
            fV1 = self.circuit.derivative(TORCH, self.p, self.devices, (V + 1.0, *xs), current)[0]
        else:
            fV, fV1 = self.circuit.derivative(TORCH, self.p, self.devices, (torch.stack((V, V + 1.0)), *xs),
                                              current)[0].unbind(0)
        z = (fV1 - fV) * h                                   # J h, J = df_V/dV = -(total conductance) / C
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
            self._compiled_step = torch.compile(self.step, options=COMPILE_OPTIONS)
        return self._compiled_step

    def __getstate__(self):  # a compiled function does not pickle or deep-copy; it is rebuilt on first use
        state = dict(super().__getstate__())
        state["_compiled_step"] = None
        return state

    def run(self, current: torch.Tensor, *, check_finite: bool = True, return_states: bool = False,
            layer_index: int = 0, steps: int | None = None):
        """Integrate a whole sequence ``current`` ``[T, B, N]`` -> voltages ``[T, B, N]`` (and states).

        ``steps``: ``current`` is ``[B, N]``, the same current at each of ``steps`` steps (a direct input: its
        gradient is accumulated in place instead of through a ``[T, B, N]`` copy).
        ``check_finite``: check the states once after the run (checking every step would cost a device sync
        per step). A non-finite value propagates through V, so the first non-finite V step is where it started;
        the memristor states of the last step are checked too. The error names the layer, neuron and step."""
        if steps is None:
            if current.dim() != 3:
                raise ParameterError("current.shape", tuple(current.shape), "[T, B, N] (A)",
                                     "pass a time-major sequence, or a [B, N] current with steps=T")
            T, B, N = current.shape
            # unbind, not current[t]: the backward of indexing builds a zero [T, B, N] gradient per step (O(T^2)
            # memory traffic); unbind's backward stacks the T step gradients once
            currents = current.unbind(0)
        else:
            if current.dim() != 2 or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ParameterError("steps", steps, "an integer >= 1 with a [B, N] current",
                                     f"got a current of shape {tuple(current.shape)}")
            T, (B, N) = steps, current.shape
            currents = (current,) * T
        comps = tuple(torch.full((B, N), x, dtype=current.dtype, device=current.device) for x in self.x0)
        step = self._stepper()
        vs, states = [], []
        with torch._dynamo.config.patch(recompile_limit=max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)):
            for cur in currents:
                comps = step(comps, cur)
                vs.append(comps[0])
                if return_states:
                    states.append(torch.stack(comps, -1))
        v = torch.stack(vs)
        if check_finite:
            self._check_finite(v, comps, current, layer_index)
        return (v, torch.stack(states)) if return_states else v

    def _check_finite(self, v, last, current, layer_index):
        with torch.no_grad():
            # fast path: a NaN or inf anywhere makes the sum non-finite (a finite sum that overflows only sends
            # the check on to the exact search below, which then finds nothing)
            if bool(torch.isfinite(sum((c.sum() for c in last[1:]), v.sum()))):
                return
            bad = ~torch.isfinite(v)
            for c in last[1:]:
                bad[-1] |= ~torch.isfinite(c)
            if not bool(bad.any()):
                return
            t, b, n = (int(i) for i in bad.nonzero()[0])
        i = float((current[t, b, n] if current.dim() == 3 else current[b, n]).detach())
        raise NonFiniteError(
            f"layer {layer_index} ({self.name}): the state of neuron {n} (batch item {b}) became "
            f"non-finite at time step {t} (t = {(t + 1) * self.dt:g} s) with input current "
            f"{i:g} A (documented range {list(self.card.input_range)} A). "
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
