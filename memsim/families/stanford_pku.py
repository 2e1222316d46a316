"""Stanford-PKU RRAM model: a conductive filament whose tip-to-electrode gap g moves.

Guan, Yu, Wong, IEEE TED 59(4):1172, 2012, doi:10.1109/TED.2012.2184545, and
Jiang et al., SISPAD 2014 / IEEE TED 63(5):1884, 2016, doi:10.1109/TED.2016.2545412.

    i     = I0 exp(-g/g0) sinh(v/V0)
    gamma = gamma0 - beta (g/g1)^alpha
    dg/dt = -Vel0 exp(-Ea/(kB T)) sinh(gamma a0 v / (tox kB T / q))

The gap is normalised to ``x = (g - g_min)/(g_max - g_min)``. This is the
isothermal core of the published model: the temperature T is a parameter (no
self-heating state) and the stochastic gap variation is left out; both are noted
in the card's provenance. There is no window, so the state is held at its bounds
by gating (``gate_at_bounds``). Ea is given in eV, the unit the papers use.
"""
from __future__ import annotations

from .base import DeviceFamily, Param, positive, require_less

K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K (CODATA 2018)


class StanfordPKU(DeviceFamily):
    name = "stanford_pku"
    title = "Stanford-PKU RRAM (filament gap), isothermal"
    reference = "Guan et al. 2012, doi:10.1109/TED.2012.2184545; Jiang et al. 2016, doi:10.1109/TED.2016.2545412"
    gate_at_bounds = True
    params = (
        positive("I0", "A", "current scale"),
        positive("g0", "m", "gap decay length of the current"),
        positive("V0", "V", "sinh voltage scale of the current"),
        positive("Vel0", "m/s", "gap velocity prefactor"),
        positive("Ea", "eV", "activation energy"),
        positive("a0", "m", "atomic hopping distance"),
        positive("tox", "m", "oxide thickness"),
        positive("gamma0", "", "local field enhancement"),
        Param("beta", "", "field enhancement reduction with gap", lo=0.0),
        positive("alpha", "", "exponent of the gap in gamma"),
        positive("g1", "m", "gap scale in gamma"),
        positive("g_min", "m", "smallest gap"),
        positive("g_max", "m", "largest gap"),
        positive("T", "K", "device temperature"),
    )

    def gap(self, m, p, x):
        return p.g_min + x * (p.g_max - p.g_min)

    def current(self, m, p, v, x):
        return p.I0 * m.exp(-self.gap(m, p, x) / p.g0) * m.sinh(v / p.V0)

    def dxdt(self, m, p, v, x):
        g = self.gap(m, p, x)
        gamma = p.gamma0 - p.beta * m.pow(g / p.g1, p.alpha)
        thermal_voltage = K_B_EV * p.T  # kB T / q in V
        dgdt = -p.Vel0 * m.exp(-p.Ea / thermal_voltage) * m.sinh(gamma * p.a0 * v / (p.tox * thermal_voltage))
        return dgdt / (p.g_max - p.g_min)

    def check_relations(self, values, where):
        require_less(values, "g_min", "g_max", where)
