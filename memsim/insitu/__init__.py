"""In-situ training: the weight updates as programming pulses through the synapse devices' pulse response.

==================  ======================================================================================
:mod:`.pairs`       a tensor of weights as differential device pairs in conductance state: pulse counts from
                    updates (stochastic rounding, per-step maximum, the cut pulses counted), the pulses through
                    :class:`memsim.pulse.PulseResponse` (noise, spread, window), refresh of saturated pairs
:mod:`.tiki_taka`   Tiki-Taka: a fast array accumulating the updates, transferred to the slow array
:mod:`.settings`    :class:`InSituSettings` (algorithm, response, pulse budget), checked on construction
:mod:`.optimizer`   :class:`PulsedOptimizer`: a torch optimiser whose device weights' updates are pulsed
:mod:`.stdp`        pair-based STDP (threshold-crossing spike events, exponential traces) and supervised STDP of a
                    one-stage MSNN whose weight changes are pulsed onto its device pairs
==================  ======================================================================================

A training config turns it on with ``training.update = "pulsed"`` (:mod:`memsim.training.config`); the MSNN
and ANN trainers wrap their optimiser (docs/guide/insitu.md).
"""
from __future__ import annotations

from .optimizer import AnalogSGD, PulsedOptimizer
from .pairs import POLARITIES, PairArray, PulseCounts, nominal_step
from .settings import ALGORITHMS, TRANSFERS, InSituSettings, load_pulse_response
from .stdp import STDP_MODES, STDPMetrics, STDPRule, SupervisedSTDP, spike_events
from .tiki_taka import TikiTaka

__all__ = ["ALGORITHMS", "AnalogSGD", "InSituSettings", "POLARITIES", "PairArray", "PulseCounts", "PulsedOptimizer",
           "STDPMetrics", "STDPRule", "STDP_MODES", "SupervisedSTDP", "TRANSFERS", "TikiTaka", "load_pulse_response",
           "nominal_step", "spike_events"]
