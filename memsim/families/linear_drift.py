"""Linear ion-drift memristor (Strukov et al., Nature 453, 80, 2008) with three windows.

State ``x = w/D`` is the doped-region fraction. With ``R(x) = R_on x + R_off (1 - x)``

    i     = v / R(x)
    dx/dt = mu_v R_on / D^2 * i * f(x, i)

The windows follow the papers exactly (some public implementations misplace the
parentheses; tests check each against closed-form values):

* Joglekar & Wolf, Eur. J. Phys. 30, 661 (2009):   f = 1 - (2x - 1)^(2p)
* Biolek et al., Radioengineering 18, 210 (2009):  f = 1 - (x - stp(-i))^(2p),
  stp(z) = 1 for z >= 0 else 0
* Prodromakis et al., IEEE TED 58, 3099 (2011):    f = j (1 - ((x - 0.5)^2 + 0.75)^p)

Even powers are written as ``pow(|u|, 2p)``, which is the same number and keeps the
base positive in both torch and ngspice.
"""
from __future__ import annotations

from .base import DeviceFamily, Param, positive, require_less

_COMMON = (
    positive("R_on", "Ohm", "resistance of the fully doped device (x = 1)"),
    positive("R_off", "Ohm", "resistance of the undoped device (x = 0)"),
    positive("D", "m", "film thickness"),
    positive("mu_v", "m^2/(V s)", "dopant mobility"),
    Param("p", "", "window exponent (positive integer in the papers)", lo=1.0),
)


class _LinearDrift(DeviceFamily):
    params = _COMMON

    def window(self, m, p, v, x, i):  # pragma: no cover - abstract
        raise NotImplementedError

    def current(self, m, p, v, x):
        return v / (p.R_on * x + p.R_off * (1.0 - x))

    def dxdt(self, m, p, v, x):
        i = self.current(m, p, v, x)
        return p.mu_v * p.R_on / (p.D * p.D) * i * self.window(m, p, v, x, i)

    def check_relations(self, values, where):
        require_less(values, "R_on", "R_off", where)


class Joglekar(_LinearDrift):
    name = "linear_drift_joglekar"
    title = "Linear ion drift, Joglekar window"
    reference = "Strukov et al. 2008, doi:10.1038/nature06932; Joglekar & Wolf 2009, doi:10.1088/0143-0807/30/4/001"

    def window(self, m, p, v, x, i):
        return 1.0 - m.pow(m.abs(2.0 * x - 1.0), 2.0 * p.p)


class Biolek(_LinearDrift):
    name = "linear_drift_biolek"
    title = "Linear ion drift, Biolek window"
    reference = "Strukov et al. 2008, doi:10.1038/nature06932; Biolek et al., Radioengineering 18(2):210, 2009"

    def window(self, m, p, v, x, i):
        stp_minus_i = m.where(i <= 0.0, 1.0, 0.0)
        return 1.0 - m.pow(m.abs(x - stp_minus_i), 2.0 * p.p)


class Prodromakis(_LinearDrift):
    name = "linear_drift_prodromakis"
    title = "Linear ion drift, Prodromakis window"
    reference = "Strukov et al. 2008, doi:10.1038/nature06932; Prodromakis et al. 2011, doi:10.1109/TED.2011.2158004"
    params = _COMMON + (positive("j", "", "window scale factor"),)

    def window(self, m, p, v, x, i):
        return p.j * (1.0 - m.pow((x - 0.5) * (x - 0.5) + 0.75, p.p))
