"""NIR ``LIF`` nodes on memristive vLIF circuits: the layer that runs a :func:`memsim.interop.nir_fit.fit_vlif` fit.

``import_nir(graph, neurons="memristive", card="vlif_neuron")`` builds one :class:`MemristiveLIF` per LIF node (its
neurons share one circuit, so a node's LIF parameters must be uniform); the other neuron types stay digital. The
layer takes the LIF's input ``[T, B, *shape]`` held over each graph step, drives the fitted circuit (integrated with
sub-stepped RK4, :class:`memsim.neurons.dynamics.NeuronDynamics`, ``per_step`` circuit steps per graph step) and
outputs 1 where the switch fired during the step. It keeps the node's digital :class:`LIF` (``digital``) for export.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ..neurons.dynamics import NeuronDynamics
from .nir_fit import LIFParams, VLIFFit, fit_vlif, run_circuit, warn_if_inexact
from .nir_graph import NIRError
from .nir_neurons import LIF

__all__ = ["MemristiveLIF", "lif_params"]


def lif_params(name: str, node) -> LIFParams:
    """The node's LIF parameters as scalars, or an error when they differ between its neurons."""
    values = {}
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        raw = getattr(node, field, None)
        arr = np.asarray(0.0 if raw is None else raw, dtype=np.float64).reshape(-1)
        if arr.size == 0 or not np.all(arr == arr[0]):
            raise NIRError(f"node '{name}' (LIF): its {field} differs between neurons ({arr.min():g} .. "
                           f"{arr.max():g}); a memristive mapping fits one circuit per node. Fix: use "
                           f"neurons='digital' for this graph")
        values[field] = float(arr[0])
    return LIFParams(**values)


@functools.lru_cache(maxsize=64)
def _cached_fit(params: LIFParams, dt: float, card: str, where: str) -> VLIFFit:
    """A fit by card name is the same every time (deploying on several chips fits each LIF node once)."""
    return fit_vlif(params, dt, card, where=where)


class MemristiveLIF(nn.Module):
    """A NIR LIF node as fitted vLIF circuits; ``fit`` holds the card, the scales and the measured error."""

    spiking = True

    def __init__(self, name: str, node, dt: float, card):
        super().__init__()
        self.digital = LIF(node, dt)
        params, where = lif_params(name, node), f"node '{name}'"
        self.fit: VLIFFit = _cached_fit(params, dt, card, where) if isinstance(card, str) else \
            fit_vlif(params, dt, card, where=where)
        warn_if_inexact(self.fit.report, f"node '{name}' (LIF) on '{self.fit.card.name}' circuits")
        self.dynamics = NeuronDynamics(self.fit.card, dt=self.fit.circuit_dt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        current = x.reshape(T, B, -1).to(torch.float64) * self.fit.gain
        return run_circuit(self.dynamics, self.fit.per_step, current)[1].reshape(x.shape).to(x.dtype)
