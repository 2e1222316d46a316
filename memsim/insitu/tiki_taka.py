r"""Tiki-Taka (Gokmen & Haensch, Front. Neurosci. 14, 103 (2020)): a fast array accumulates the updates, a slow
array receives them periodically.

Each weight has two device-pair arrays (:class:`memsim.insitu.pairs.PairArray`, the same devices): the fast array
:math:`A` takes every pulsed update, and every ``transfer_every`` steps its value is read and pulsed onto the slow
array :math:`C`,

.. math::  C \leftarrow C + \eta\,A_{read}, \qquad A \leftarrow 0 \ \text{(both devices of each pair reset)},

the weight the network computes with being :math:`W = C + \gamma A`. With :math:`\gamma = \eta = 1` the weight
carries every update as float SGD would; the slow array gets the *net* update of ``transfer_every`` steps (one
pulse train instead of many of alternating sign), and the fast array, reset after each transfer, works near its
home bound where its steps are largest and most even. This is the transfer-and-reset variant (aihwkit's
``TransferCompound`` with a reset fast array and a whole-array transfer); the original transfers one column per
step through the array's periphery and lets :math:`A` relax to its symmetry point instead of resetting it.
The read of :math:`A` is exact (no read noise); the pulses onto :math:`C` are rounded stochastically, cut to the
per-step maximum (counted) and carry the devices' noise, as every update.

With ``transfer = "residual"`` the transfer sends :math:`n = \mathrm{round}(\eta A_{read} / \Delta C)` pulses
(:math:`\Delta C` the weight of one nominal pulse of C; rounded to the nearest count, cut to the per-step maximum)
and then programs A (write-verify, exact like a refresh) to what those pulses did not carry,

.. math::  A \leftarrow A_{read} - n\,\Delta C / \eta,

so that no update is lost to rounding or to the cut: a sum of updates smaller than one pulse of C stays in A (and
in the weight) until it makes a whole pulse, the error feedback of Tiki-Taka v2's digital accumulator (Gokmen,
Front. Artif. Intell. 4, 699148 (2021)) kept on the fast array itself. The residual is the default: on the Fashion MSNN with the
saturating card it recovered 95 % of pulsed SGD's drop on a validation split where the reset recovered 65 % (both
with a cosine schedule, benchmarks/insitu.md); the reset reproduces the figures taken before it.
"""
from __future__ import annotations

import torch

from ..errors import ParameterError
from .pairs import PairArray, PulseCounts

__all__ = ["TikiTaka", "TRANSFERS"]

#: what the fast array holds after a transfer: nothing (reset to home), or what the transfer did not carry
TRANSFERS = ("reset", "residual")


class TikiTaka:
    """Tiki-Taka on the slow array ``slow`` (C) and the fast array ``fast`` (A), see the module docstring;
    ``transfer``: what A holds after a transfer, one of :data:`TRANSFERS`."""

    def __init__(self, slow: PairArray, fast: PairArray, *, gamma: float, transfer_every: int, transfer_lr: float,
                 transfer: str = "residual"):
        if not (gamma >= 0) or int(transfer_every) < 1 or not (transfer_lr > 0) or transfer not in TRANSFERS:
            raise ParameterError("TikiTaka", (gamma, transfer_every, transfer_lr, transfer),
                                 f"gamma >= 0, transfer_every >= 1, transfer_lr > 0, transfer one of {TRANSFERS}")
        self.slow, self.fast = slow, fast
        self.gamma, self.transfer_every, self.transfer_lr = float(gamma), int(transfer_every), float(transfer_lr)
        self.mode = transfer
        self.steps = 0
        self.transfers = 0

    @property
    def arrays(self) -> tuple[PairArray, PairArray]:
        return self.slow, self.fast

    def weight(self) -> torch.Tensor:
        """:math:`W = C + \\gamma A`."""
        return self.slow.weight() + self.gamma * self.fast.weight()

    def update(self, delta_w: torch.Tensor) -> PulseCounts:
        """Pulse ``delta_w`` onto A; every ``transfer_every``-th call, transfer A to C."""
        counts = self.fast.update(delta_w)
        self.steps += 1
        if self.steps % self.transfer_every == 0:
            counts.add(self.transfer())
        return counts

    def transfer(self) -> PulseCounts:
        """Read A, pulse ``transfer_lr`` times it onto C; reset A, or (``"residual"``) program A to the part of
        its read that the pulses sent did not carry (their nominal weight: the periphery knows what it sent)."""
        a = self.fast.weight()
        if self.mode == "reset":
            counts = self.slow.update(self.transfer_lr * a)
            self.fast.reset()
        else:
            n, clipped = self.slow.counts(self.transfer_lr * a, stochastic=False)
            counts = self.slow.pulse(n)
            counts.clipped = clipped
            self.fast.program(a - n * (self.slow.pulse_weight / self.transfer_lr))
        self.transfers += 1
        return counts

    def state_dict(self) -> dict:
        return {"slow": self.slow.state_dict(), "fast": self.fast.state_dict(), "steps": self.steps,
                "transfers": self.transfers}

    def load_state_dict(self, state: dict) -> None:
        self.slow.load_state_dict(state["slow"])
        self.fast.load_state_dict(state["fast"])
        self.steps, self.transfers = int(state["steps"]), int(state["transfers"])
