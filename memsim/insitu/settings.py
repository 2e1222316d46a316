"""The settings of in-situ (pulsed) training, checked before any work: algorithm, response, pulse budget, ranges.

:class:`InSituSettings` is what :class:`memsim.insitu.PulsedOptimizer` runs with; a training config's
``training.update = "pulsed"`` keys become one (:func:`memsim.training.config.insitu_settings`), and
:func:`load_pulse_response` loads the response a ``training.pulse_response`` names (a pulse card's behavioural
model, or a device card's derived table under the given pulse), turning a pulse that cannot switch the device into
an error that names its switching threshold.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..errors import ParameterError
from ..pulse import PulseResponse, load_pulse_card, load_response
from ..pulse.cards import is_pulse_card
from ..devices.cards import card_path
from ..schema import read_toml
from .pairs import POLARITIES, nominal_step
from .tiki_taka import TRANSFERS

__all__ = ["InSituSettings", "ALGORITHMS", "POLARITIES", "TRANSFERS", "load_pulse_response"]

#: the update algorithms: plain analog SGD on one array, Tiki-Taka with a fast and a slow array
ALGORITHMS = ("sgd", "tiki_taka")


@functools.lru_cache(maxsize=16)
def load_pulse_response(name: str, set_voltage: float = 0.0, reset_voltage: float = 0.0,
                        width: float = 0.0) -> PulseResponse:
    """The pulse response named ``name``: a pulse card, or a device card's response derived under the pulse
    (``set_voltage``/``reset_voltage`` in V, ``width`` in s; 0 = the card's ``[verify.pulse]``). A pulse card
    takes no pulse (its curve was measured with one): giving one is an error. Cached (responses are not
    modified by training)."""
    path = card_path(name)
    pulse = {k: v for k, v in (("set_voltage", set_voltage), ("reset_voltage", reset_voltage), ("width", width))
             if v}
    if is_pulse_card(read_toml(path, what="card")):
        if pulse:
            key = next(iter(pulse))
            raise ParameterError(f"training.pulse_{key}", pulse[key],
                                 f"0 for the pulse card {load_pulse_card(path).name}: a behavioural card's steps "
                                 "were measured with its own pulse",
                                 "remove the pulse keys, or name a device card (e.g. stanford_pku_hfox_10k) to "
                                 "derive its response under this pulse")
        return load_response(name)
    return load_response(name, **pulse)


@dataclass(frozen=True)
class InSituSettings:
    """In-situ training settings (see :mod:`memsim.insitu`).

    Attributes:
        response: the synapse devices' pulse response.
        algorithm: ``"sgd"`` (the update pulsed onto the weights' pairs) or ``"tiki_taka"`` (onto a fast array
            A, transferred every ``transfer_every`` steps to the slow array C; weight = C + gamma A).
        polarity: ``"set"`` (devices advance by potentiation from G_min) or ``"reset"`` (by depression from
            G_max).
        max_pulses: pulses per device per step at most; the pulses cut are counted.
        weight_range: the weight of a full window, in units of the layer's largest absolute weight at the start.
        refresh, refresh_threshold: refresh a pair once both devices advanced beyond this fraction of the window.
        gamma, transfer_every, transfer_lr: Tiki-Taka's weight of A, transfer period (steps) and rate.
        fast_range: Tiki-Taka: A's window in units of C's (< 1: A's pulses are finer steps of the weight).
        transfer: Tiki-Taka: after a transfer A is ``"reset"`` to home, or holds the ``"residual"`` (the part of
            its read the transfer's pulses did not carry; the transfer then rounds to the nearest pulse count).
        seed: seed of the spread, rounding and noise generator.
    """

    response: PulseResponse
    algorithm: str = "sgd"
    polarity: str = "set"
    max_pulses: int = 10
    weight_range: float = 4.0
    refresh: bool = True
    refresh_threshold: float = 0.8
    gamma: float = 1.0
    transfer_every: int = 16
    transfer_lr: float = 1.0
    fast_range: float = 0.25
    transfer: str = "residual"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.response, PulseResponse):
            raise ParameterError("training.pulse_response", self.response, "a memsim.pulse.PulseResponse",
                                 "load one with memsim.pulse.load_response(name)")
        checks = (("training.pulse_algorithm", self.algorithm, self.algorithm in ALGORITHMS, f"one of {ALGORITHMS}"),
                  ("training.pulse_polarity", self.polarity, self.polarity in POLARITIES,
                   f"one of {tuple(POLARITIES)}"),
                  ("training.pulse_max", self.max_pulses, isinstance(self.max_pulses, int) and self.max_pulses >= 1,
                   "an integer >= 1"),
                  ("training.pulse_weight_range", self.weight_range, self.weight_range > 0, "a number > 0"),
                  ("training.pulse_refresh_threshold", self.refresh_threshold, 0 < self.refresh_threshold <= 1,
                   "a number in (0, 1]"),
                  ("training.tiki_taka_gamma", self.gamma, self.gamma >= 0, "a number >= 0"),
                  ("training.tiki_taka_every", self.transfer_every,
                   isinstance(self.transfer_every, int) and self.transfer_every >= 1, "an integer >= 1"),
                  ("training.tiki_taka_lr", self.transfer_lr, self.transfer_lr > 0, "a number > 0"),
                  ("training.tiki_taka_fast_range", self.fast_range, 0 < self.fast_range <= 1, "a number in (0, 1]"),
                  ("training.tiki_taka_transfer", self.transfer, self.transfer in TRANSFERS, f"one of {TRANSFERS}"))
        for key, value, ok, allowed in checks:
            if not ok:
                raise ParameterError(key, value, allowed)

    @property
    def drive(self) -> int:
        return POLARITIES[self.polarity]

    @functools.cached_property
    def step(self) -> float:
        """The nominal step (S) one pulse count stands for (:func:`memsim.insitu.pairs.nominal_step`)."""
        return nominal_step(self.response, self.drive)[0]

    def describe(self) -> str:
        algo = ("analog SGD" if self.algorithm == "sgd" else
                f"Tiki-Taka (gamma {self.gamma:g}, transfer every {self.transfer_every} steps at rate "
                f"{self.transfer_lr:g}, fast window {self.fast_range:g} x the slow one, {self.transfer} after a "
                f"transfer)")
        return (f"pulsed {algo} on {self.response.name} ({self.polarity} pulses, nominal step "
                f"{self.step:.4g} S = {self.step / (self.response.g_max - self.response.g_min):.3g} of the window, "
                f"at most {self.max_pulses} per step; window = {self.weight_range:g} x the largest initial |w|; "
                f"refresh {'at ' + format(self.refresh_threshold, 'g') if self.refresh else 'off'})")
