"""In-situ training's optimiser: a torch optimiser whose weight updates become programming pulses.

:class:`PulsedOptimizer` wraps any torch optimiser (``sgd`` with ``momentum = 0`` is plain analog SGD; momentum or
Adam compute their update in the digital periphery, and that update is what gets pulsed). On :meth:`step` the
wrapped optimiser steps every parameter; for each *device weight* (the crossbar weights: a network's trainer says
which) the change it made, :math:`\\Delta w`, is taken back and applied as pulses to the weight's device pairs
(:class:`memsim.insitu.pairs.PairArray`; :class:`AnalogSGD` or :class:`memsim.insitu.tiki_taka.TikiTaka`), and the
weight becomes what the pairs hold. Other parameters (biases, batch norm) stay digital and float.

After each step, with refresh on, saturated pairs are refreshed (:meth:`memsim.insitu.pairs.PairArray.refresh`).
:meth:`metrics` returns the pulse counts since the last call (applied, cut by the per-step maximum, refreshed
pairs, transfers): the training runner writes them into every epoch's metrics row. The state (conductances,
device spread, the generator of rounding and noise, counters) is part of :meth:`state_dict`, so a checkpoint
resumes the devices exactly.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ParameterError
from .pairs import PairArray, PulseCounts
from .settings import InSituSettings
from .tiki_taka import TikiTaka

__all__ = ["PulsedOptimizer", "AnalogSGD"]


class AnalogSGD:
    """Plain analog SGD: every update pulsed onto the one array of pairs."""

    def __init__(self, array: PairArray):
        self.array = array
        self.transfers = 0

    @property
    def arrays(self) -> tuple[PairArray]:
        return (self.array,)

    def weight(self) -> torch.Tensor:
        return self.array.weight()

    def update(self, delta_w: torch.Tensor) -> PulseCounts:
        return self.array.update(delta_w)

    def state_dict(self) -> dict:
        return {"array": self.array.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.array.load_state_dict(state["array"])


class PulsedOptimizer:
    """``optimizer`` with the updates of ``weights`` pulsed onto device pairs (see the module docstring).

    Args:
        optimizer: a torch optimiser over all the model's parameters (``weights`` among them).
        weights: the device weights (parameters), each programmed onto its pairs now: a window of
            ``settings.weight_range`` times its largest absolute value.
        settings: the in-situ settings (response, algorithm, pulse budget...).
        names: a name per weight, for messages.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weights: Sequence[torch.nn.Parameter],
                 settings: InSituSettings, names: Sequence[str] | None = None):
        self.optimizer, self.settings = optimizer, settings
        self.weights = list(weights)
        names = list(names) if names is not None else [f"weight {k}" for k in range(len(self.weights))]
        if not self.weights:
            raise ParameterError("weights", "[]", "at least one device weight", "pass the crossbar weights")
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        device = self.weights[0].device
        self.generator = torch.Generator(device=device).manual_seed(settings.seed)
        self.algorithms = []
        for p, name in zip(self.weights, names):
            if id(p) not in owned:
                raise ParameterError(name, tuple(p.shape), "a parameter the wrapped optimiser steps",
                                     "build the optimiser over the model's parameters")
            top = float(p.detach().abs().max())
            if not top > 0:
                raise ParameterError(name, top, "a weight tensor with a non-zero entry (its largest |w| sets the "
                                     "window)", "initialise the weights before in-situ training")
            self.algorithms.append(self._algorithm(p, settings.weight_range * top))
        self.counts = PulseCounts()
        self.refreshes = 0
        self._transfers0 = 0  # transfers counted before the last metrics() reset
        self._sync()

    def _algorithm(self, p: torch.nn.Parameter, w_max: float):
        s = self.settings
        make = lambda w, top: PairArray(w, s.response, w_max=top, drive=s.drive, step=s.step,  # noqa: E731
                                        max_pulses=s.max_pulses, generator=self.generator)
        if s.algorithm == "tiki_taka":
            return TikiTaka(make(p.detach(), w_max), make(torch.zeros_like(p.detach()), s.fast_range * w_max),
                            gamma=s.gamma, transfer_every=s.transfer_every, transfer_lr=s.transfer_lr,
                            transfer=s.transfer)
        return AnalogSGD(make(p.detach(), w_max))

    @torch.no_grad()
    def _sync(self) -> None:
        for p, algo in zip(self.weights, self.algorithms):
            p.copy_(algo.weight())

    # -- the torch optimiser's face: fit() sets param_groups' lr, optimizer_step() zero_grad / step ---------
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        before = [p.detach().clone() for p in self.weights]
        self.optimizer.step()
        for p, b, algo in zip(self.weights, before, self.algorithms):
            self.counts.add(algo.update(p - b))
            if self.settings.refresh:
                for array in algo.arrays:
                    self.refreshes += array.refresh(self.settings.refresh_threshold)
        self._sync()

    def metrics(self, reset: bool = True) -> dict[str, float]:
        """Pulse counts since the last reset: ``pulses`` applied, ``pulses_clipped`` (cut by the per-step
        maximum), their fraction of the pulses asked for, ``refreshes`` (pairs), ``transfers`` (Tiki-Taka)."""
        asked = self.counts.applied + self.counts.clipped
        out = {"pulses": self.counts.applied, "pulses_clipped": self.counts.clipped,
               "pulses_clipped_fraction": self.counts.clipped / asked if asked else 0.0,
               "refreshes": self.refreshes,
               "transfers": sum(a.transfers for a in self.algorithms) - self._transfers0}
        if reset:
            self.counts, self.refreshes = PulseCounts(), 0
            self._transfers0 = sum(a.transfers for a in self.algorithms)
        return out

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "insitu": {"algorithms": [a.state_dict() for a in self.algorithms],
                           "generator": self.generator.get_state(),
                           "counts": [self.counts.applied, self.counts.clipped, self.counts.devices, self.refreshes,
                                      self._transfers0]}}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "insitu" not in state:
            raise ValueError("the checkpoint's optimiser state holds no device pairs (not an in-situ run)")
        ins = state["insitu"]
        if len(ins["algorithms"]) != len(self.algorithms):
            raise ValueError(f"{len(ins['algorithms'])} device-weight states for {len(self.algorithms)} weights")
        self.optimizer.load_state_dict(state["optimizer"])
        for algo, s in zip(self.algorithms, ins["algorithms"]):
            algo.load_state_dict(s)
        self.generator.set_state(ins["generator"])
        applied, clipped, devices, self.refreshes, self._transfers0 = (int(x) for x in ins["counts"])
        self.counts = PulseCounts(applied, clipped, devices)
        self._sync()
