r"""The neurons of NIR as digital torch modules, integrated at the graph's time step ``dt``.

Each module takes a time-major input ``[T, B, *shape]`` and returns ``[T, B, *shape]``. The equations are
NIR's (shapes of the parameters broadcast over ``shape``); the integration is forward Euler at ``dt``, the
discretisation NIR's exporters use (snnTorch's ``Leaky``/``Synaptic`` export ``tau = dt / (1 - beta)`` and
``r = tau / dt``, so one Euler step is exactly ``v <- beta v + I``):

.. math::
    \text{LIF:}\quad \tau \dot v = (v_{leak} - v) + R I,\qquad
    v_{t} = v_{t-1} + \tfrac{dt}{\tau}\,(v_{leak} - v_{t-1} + R I_t)

    \text{CubaLIF:}\quad \tau_{syn} \dot i = -i + w_{in} I,\quad \tau_{mem} \dot v = (v_{leak} - v) + R i
    \quad(\text{the membrane step uses the synaptic current of the same step})

    \text{IF:}\ \dot v = R I,\qquad \text{LI:}\ \tau \dot v = (v_{leak} - v) + R I,\qquad \text{I:}\ \dot v = R I

A spiking neuron emits :math:`z_t = H(v_t - v_{th})` (strictly above threshold) and is reset to
:math:`v_{reset}` (default 0) in the same step. LI and I output their state :math:`v_t`. States start at 0.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["NIRNeuron", "LIF", "CubaLIF", "IF", "LI", "Integrator"]


def _buffer(value, default: float = 0.0) -> torch.Tensor:
    return torch.as_tensor(np.asarray(default if value is None else value, dtype=np.float64))


class NIRNeuron(nn.Module):
    """A neuron population stepped over the leading (time) dimension; ``dt`` in the graph's time unit."""

    spiking = True

    def __init__(self, dt: float, **params):
        super().__init__()
        self.dt = float(dt)
        for name, value in params.items():
            self.register_buffer(name, _buffer(value))

    def step(self, state: dict, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state: dict = {}
        out = [self.step(state, x[t]) for t in range(x.shape[0])]
        return torch.stack(out)

    def _fire(self, state: dict, v: torch.Tensor) -> torch.Tensor:
        z = (v > self.v_threshold.to(v)).to(v.dtype)
        state["v"] = torch.where(z > 0, self.v_reset.to(v).expand_as(v), v)
        return z


class LIF(NIRNeuron):
    """NIR ``LIF``: leaky integrate-and-fire."""

    def __init__(self, node, dt: float):
        super().__init__(dt, tau=node.tau, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                         v_reset=node.v_reset)

    def step(self, state, x):
        v = state.get("v", torch.zeros_like(x))
        v = v + self.dt / self.tau.to(x) * (self.v_leak.to(x) - v + self.r.to(x) * x)
        return self._fire(state, v)


class CubaLIF(NIRNeuron):
    """NIR ``CubaLIF``: current-based LIF (a synaptic current filters the input)."""

    def __init__(self, node, dt: float):
        super().__init__(dt, tau_syn=node.tau_syn, tau_mem=node.tau_mem, r=node.r, v_leak=node.v_leak,
                         v_threshold=node.v_threshold, v_reset=node.v_reset, w_in=node.w_in)

    def step(self, state, x):
        i = state.get("i", torch.zeros_like(x))
        v = state.get("v", torch.zeros_like(x))
        i = i + self.dt / self.tau_syn.to(x) * (self.w_in.to(x) * x - i)
        state["i"] = i
        v = v + self.dt / self.tau_mem.to(x) * (self.v_leak.to(x) - v + self.r.to(x) * i)
        return self._fire(state, v)


class IF(NIRNeuron):
    """NIR ``IF``: integrate-and-fire without leak."""

    def __init__(self, node, dt: float):
        super().__init__(dt, r=node.r, v_threshold=node.v_threshold, v_reset=node.v_reset)

    def step(self, state, x):
        v = state.get("v", torch.zeros_like(x)) + self.dt * self.r.to(x) * x
        return self._fire(state, v)


class LI(NIRNeuron):
    """NIR ``LI``: leaky integrator (no spikes); outputs its membrane potential."""

    spiking = False

    def __init__(self, node, dt: float):
        super().__init__(dt, tau=node.tau, r=node.r, v_leak=node.v_leak)

    def step(self, state, x):
        v = state.get("v", torch.zeros_like(x))
        v = v + self.dt / self.tau.to(x) * (self.v_leak.to(x) - v + self.r.to(x) * x)
        state["v"] = v
        return v


class Integrator(NIRNeuron):
    """NIR ``I``: integrator; outputs its state."""

    spiking = False

    def __init__(self, node, dt: float):
        super().__init__(dt, r=node.r)

    def step(self, state, x):
        v = state.get("v", torch.zeros_like(x)) + self.dt * self.r.to(x) * x
        state["v"] = v
        return v
