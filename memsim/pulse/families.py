"""Behavioural pulse-response families: the mean conductance change of one programming pulse as a function of the
present conductance, written once over the math namespace (:mod:`memsim.mathns`).

A family states two equations of the conductance ``g`` (S, inside [G_min, G_max]) and its parameters ``p``:

* ``ltp(m, p, g)`` - the increase of one potentiation pulse (S, >= 0);
* ``ltd(m, p, g)`` - the decrease of one depression pulse (S, >= 0).

The framework (:meth:`PulseFamily.step`, :meth:`PulseFamily.after`) evaluates them at the conductance clipped to
the window and keeps the result inside it (the hard bounds of NeuroSim and aihwkit). No circuit is rendered: these
are measured-curve models, not compact models, so they are cards without a ``.lib``; the torch form serves the fits
(:mod:`memsim.fitting.behavioural`) and the weight updates (:mod:`memsim.pulse.response`), the plain-number form
(the same functions over floats) the closed-form checks.

Forms (W = G_max - G_min, u = (g - G_min) / W):

* ``exp_saturation`` (NeuroSim; Chen, Peng, Yu, IEEE TCAD 37(12):3067, 2018): the published curves
  G_LTP(P) = B (1 - exp(-P/A_ltp)) + G_min and the mirror G_LTD(P) = -B (1 - exp((P - P_ltd)/A_ltd)) + G_max,
  B = W / (1 - exp(-P_max/A)), so P_max pulses take the device across the whole window. Per pulse (NeuroSim's
  "inverse curve, one pulse further") this is exactly ``dG+ = (G_min + B_ltp - g)(1 - exp(-1/A_ltp))`` and
  ``dG- = (g - G_max + B_ltd)(1 - exp(-1/A_ltd))``. A is in pulses (NeuroSim's ``paramA``; its NL label maps to A
  through a lookup table, and its LTD curve uses a negative A on the same branch, which is this mirror with |A|).
* ``linear_step`` (aihwkit LinearStepDevice): ``dG+ = dg_ltp (1 - gamma_ltp (2u - 1))``,
  ``dG- = dg_ltd (1 + gamma_ltd (2u - 1))``: dg is the step at mid-window (aihwkit's w = 0) and the step shrinks by
  the fraction gamma at the bound it moves towards (aihwkit's dw (gamma w + 1) with gamma = -|gamma|/b).
  Per pulse both NeuroSim's curves are affine in g, so this family is ``linear_step`` in other parameters:
  gamma = tanh(P/(2A)), dg = W (1 - exp(-1/A)) / (2 gamma) for each polarity (gamma < 1: a saturation level
  beyond the bound it is clipped at). Fitted to the same data the two reach the same NRMSE.
* ``soft_bounds`` (aihwkit SoftBoundsDevice; Gokmen & Haensch 2020): ``dG+ = dg_ltp (G_max - g)/W``,
  ``dG- = dg_ltd (g - G_min)/W``: dg is the step at the far bound (twice aihwkit's dw_min, its step at mid-window).
* ``power_step`` (aihwkit PowStepDevice after Fusi & Abbott 2007): ``dG+ = dg_ltp ((G_max - g)/W)^gamma_ltp``,
  ``dG- = dg_ltd ((g - G_min)/W)^gamma_ltd``, separate exponents per polarity; gamma = 1 is soft_bounds.

Cycle-to-cycle noise and device-to-device spread are the same four parameters for every family (:data:`NOISE`);
they act on the steps and the bounds in :class:`memsim.pulse.response.PulseResponse`, not in these equations.
"""
from __future__ import annotations

from typing import ClassVar, Mapping

from ..errors import ParameterError
from ..families.base import Param, ParameterSet, nonnegative, positive, require_less
from ..schema import lookup, suggest

_WINDOW = (
    nonnegative("G_min", "S", "lower bound of the conductance window (read conductance)"),
    positive("G_max", "S", "upper bound of the conductance window (read conductance)"),
)

#: cycle-to-cycle noise and device-to-device spread, shared by every family (card table [noise])
NOISE = (
    nonnegative("c2c_rel", "", "cycle-to-cycle std of each step, relative to the mean step (aihwkit dw_min_std)"),
    nonnegative("c2c_abs", "S", "cycle-to-cycle std added to each pulse's step (NeuroSim sigmaCtoC x window)"),
    Param("d2d_step", "", "device-to-device relative std of the step sizes, drawn once per device and polarity "
          "(aihwkit dw_min_dtod)", lo=0.0, hi=1.0),
    Param("d2d_bounds", "", "device-to-device relative std of G_min and G_max, drawn once per device "
          "(aihwkit w_min_dtod, w_max_dtod)", lo=0.0, hi=1.0),
)
NOISE_NAMES = tuple(q.name for q in NOISE)


class PulseFamily(ParameterSet):
    """Base class of a behavioural pulse-response model (see the module docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]
    reference: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]

    # -- the equations, written once -----------------------------------------
    def ltp(self, m, p, g):  # pragma: no cover - abstract
        raise NotImplementedError

    def ltd(self, m, p, g):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- framework ------------------------------------------------------------
    @staticmethod
    def clip(m, g, lo, hi):
        return m.minimum(m.maximum(g, lo), hi)

    def step(self, m, p, g, up):
        """Mean signed change of one pulse (S): + for potentiation where ``up`` (bool or bool tensor), - else.

        The equations see the conductance clipped to the window, as a device state equation sees its clipped
        state (:meth:`memsim.families.DeviceFamily.state_derivative`), so a conductance a hair outside the window
        cannot raise a negative base to a power."""
        gc = self.clip(m, g, p.G_min, p.G_max)
        if isinstance(up, bool):  # a static choice, not a circuit quantity
            return self.ltp(m, p, gc) if up else -self.ltd(m, p, gc)
        return m.where(up, self.ltp(m, p, gc), -self.ltd(m, p, gc))

    def after(self, m, p, g, up):
        """The conductance after one pulse, inside the window (the hard bounds of NeuroSim and aihwkit)."""
        return self.clip(m, g + self.step(m, p, g, up), p.G_min, p.G_max)

    def all_params(self) -> tuple[Param, ...]:
        return self.params

    def direction(self, name: str) -> str | None:
        """``"ltp"``/``"ltd"`` for a parameter of one polarity only, ``None`` for one of both (the window)."""
        return "ltp" if name.endswith("_ltp") else "ltd" if name.endswith("_ltd") else None

    def check_relations(self, values: Mapping[str, float], where: str) -> None:
        require_less(values, "G_min", "G_max", where)

    def guess(self, lo: float, hi: float, n_up: float, n_down: float) -> dict[str, float]:
        """Starting values for a fit to a curve spanning [lo, hi] S with runs of about n_up / n_down pulses."""
        raise NotImplementedError  # pragma: no cover - abstract


class ExpSaturation(PulseFamily):
    name = "exp_saturation"
    title = "Exponential saturation LTP/LTD (NeuroSim), separate nonlinearity and pulse count per polarity"
    reference = ("Chen, Peng, Yu, 'NeuroSim: A Circuit-Level Macro Model for Benchmarking Neuro-Inspired "
                 "Architectures in Online Learning', IEEE TCAD 37(12):3067, 2018, doi:10.1109/TCAD.2018.2789723")
    params = _WINDOW + (
        Param("P_ltp", "", "potentiation pulses from G_min to G_max (NeuroSim maxNumLevelLTP)", lo=1.0),
        Param("P_ltd", "", "depression pulses from G_max to G_min (NeuroSim maxNumLevelLTD)", lo=1.0),
        positive("A_ltp", "", "potentiation nonlinearity in pulses (NeuroSim paramA; large = linear)"),
        positive("A_ltd", "", "depression nonlinearity in pulses (|NeuroSim paramA| of LTD; large = linear)"),
    )

    def ltp(self, m, p, g):
        b = (p.G_max - p.G_min) / (1.0 - m.exp(-p.P_ltp / p.A_ltp))
        return (p.G_min + b - g) * (1.0 - m.exp(-1.0 / p.A_ltp))

    def ltd(self, m, p, g):
        b = (p.G_max - p.G_min) / (1.0 - m.exp(-p.P_ltd / p.A_ltd))
        return (g - p.G_max + b) * (1.0 - m.exp(-1.0 / p.A_ltd))

    def guess(self, lo, hi, n_up, n_down):
        return {"G_min": lo, "G_max": hi, "P_ltp": max(n_up, 1.0), "P_ltd": max(n_down, 1.0),
                "A_ltp": max(n_up, 1.0) / 3, "A_ltd": max(n_down, 1.0) / 3}


class LinearStep(PulseFamily):
    name = "linear_step"
    title = "Linear step (aihwkit LinearStepDevice), hard bounds"
    reference = ("Rasch et al., 'A flexible and fast PyTorch toolkit for simulating training and inference on analog "
                 "crossbar arrays', IEEE AICAS 2021, doi:10.1109/AICAS51828.2021.9458494 (LinearStepDevice)")
    params = _WINDOW + (
        positive("dg_ltp", "S", "potentiation step at mid-window (aihwkit dw_min (1 + up_down))"),
        positive("dg_ltd", "S", "depression step at mid-window (aihwkit dw_min (1 - up_down))"),
        Param("gamma_ltp", "", "fraction by which the potentiation step shrinks at G_max (aihwkit gamma_up)",
              lo=0.0, hi=1.0),
        Param("gamma_ltd", "", "fraction by which the depression step shrinks at G_min (aihwkit gamma_down)",
              lo=0.0, hi=1.0),
    )

    def ltp(self, m, p, g):
        u = (g - p.G_min) / (p.G_max - p.G_min)
        return p.dg_ltp * (1.0 - p.gamma_ltp * (2.0 * u - 1.0))

    def ltd(self, m, p, g):
        u = (g - p.G_min) / (p.G_max - p.G_min)
        return p.dg_ltd * (1.0 + p.gamma_ltd * (2.0 * u - 1.0))

    def guess(self, lo, hi, n_up, n_down):
        w = hi - lo
        return {"G_min": lo, "G_max": hi, "dg_ltp": w / max(n_up, 1.0), "dg_ltd": w / max(n_down, 1.0),
                "gamma_ltp": 0.5, "gamma_ltd": 0.5}


class SoftBounds(PulseFamily):
    name = "soft_bounds"
    title = "Soft bounds (aihwkit SoftBoundsDevice): step proportional to the distance to the bound"
    reference = ("Gokmen & Haensch, 'Algorithm for training neural networks on resistive device arrays', Front. "
                 "Neurosci. 14:103, 2020, doi:10.3389/fnins.2020.00103; aihwkit SoftBoundsDevice (Rasch et al. 2021, "
                 "doi:10.1109/AICAS51828.2021.9458494)")
    params = _WINDOW + (
        positive("dg_ltp", "S", "potentiation step at G_min (twice aihwkit's dw_min, its step at mid-window)"),
        positive("dg_ltd", "S", "depression step at G_max (twice aihwkit's dw_min)"),
    )

    def ltp(self, m, p, g):
        return p.dg_ltp * (p.G_max - g) / (p.G_max - p.G_min)

    def ltd(self, m, p, g):
        return p.dg_ltd * (g - p.G_min) / (p.G_max - p.G_min)

    def guess(self, lo, hi, n_up, n_down):
        w = hi - lo  # (1 - dg/W)^n = e^-3 after a run of n pulses: a run that mostly saturates
        return {"G_min": lo, "G_max": hi, "dg_ltp": min(3 * w / max(n_up, 1.0), 0.9 * w),
                "dg_ltd": min(3 * w / max(n_down, 1.0), 0.9 * w)}


class PowerStep(PulseFamily):
    name = "power_step"
    title = "Power step (aihwkit PowStepDevice): step ~ (distance to the bound)^gamma, separate exponents"
    reference = ("Fusi & Abbott, Nat. Neurosci. 10:485, 2007, doi:10.1038/nn1859; Frascaroli et al., Sci. Rep. "
                 "8:7178, 2018, doi:10.1038/s41598-018-25376-x; aihwkit PowStepDevice (Rasch et al. 2021, "
                 "doi:10.1109/AICAS51828.2021.9458494)")
    params = _WINDOW + (
        positive("dg_ltp", "S", "potentiation step at G_min"),
        positive("dg_ltd", "S", "depression step at G_max"),
        Param("gamma_ltp", "", "exponent of the distance to G_max (aihwkit pow_gamma (1 + pow_up_down))",
              lo=0.0, hi=10.0, lo_open=True),
        Param("gamma_ltd", "", "exponent of the distance to G_min (aihwkit pow_gamma (1 - pow_up_down))",
              lo=0.0, hi=10.0, lo_open=True),
    )

    def ltp(self, m, p, g):
        return p.dg_ltp * m.pow(m.maximum((p.G_max - g) / (p.G_max - p.G_min), 0.0), p.gamma_ltp)

    def ltd(self, m, p, g):
        return p.dg_ltd * m.pow(m.maximum((g - p.G_min) / (p.G_max - p.G_min), 0.0), p.gamma_ltd)

    def guess(self, lo, hi, n_up, n_down):
        w = hi - lo
        return {"G_min": lo, "G_max": hi, "dg_ltp": min(3 * w / max(n_up, 1.0), 0.9 * w),
                "dg_ltd": min(3 * w / max(n_down, 1.0), 0.9 * w), "gamma_ltp": 1.0, "gamma_ltd": 1.0}


PULSE_FAMILIES: dict[str, PulseFamily] = {f.name: f for f in (ExpSaturation(), LinearStep(), SoftBounds(), PowerStep())}


def get_pulse_family(name: str, field: str = "family") -> PulseFamily:
    return lookup(PULSE_FAMILIES, name, field, "pulse-response families")


def check_noise(values: Mapping[str, object], where: str = "") -> dict[str, float]:
    """The [noise] table: any of :data:`NOISE_NAMES` (missing ones are 0), each checked against its range."""
    prefix = f"{where}." if where else ""
    extra = [k for k in values if k not in NOISE_NAMES]
    if extra:
        raise ParameterError(f"{prefix}{extra[0]}", values[extra[0]], f"one of {list(NOISE_NAMES)}",
                             suggest(extra[0], NOISE_NAMES, f"use {list(NOISE_NAMES)}"))
    return {q.name: q.check(values.get(q.name, 0.0), where) for q in NOISE}
