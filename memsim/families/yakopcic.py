"""Yakopcic generalised memristor model.

Yakopcic, Taha, Subramanyam, Pino, Rogers, "A Memristor Device Model",
IEEE Electron Device Letters 32(10):1436, 2011, doi:10.1109/LED.2011.2163292.

    i     = a1 x sinh(b v)                  (v >= 0);   a2 x sinh(b v)  (v < 0)
    g(v)  = Ap (e^v - e^Vp)                 (v > Vp)
          = -An (e^-v - e^Vn)               (v < -Vn);  0 otherwise
    f(x)  = e^(-alpha_p (x - xp)) wp(x)     (v > 0, x >= xp);  1 below xp
          = e^( alpha_n (x + xn - 1)) wn(x) (v <= 0, x <= 1 - xn); 1 above
    wp(x) = (xp - x)/(1 - xp) + 1,   wn(x) = x/(1 - xn)
    dx/dt = g(v) f(x)

Voltages enter the exponentials in volts, as in the paper (Ap, An carry 1/s).
"""
from __future__ import annotations

from .base import DeviceFamily, Param, nonnegative, positive


class Yakopcic(DeviceFamily):
    name = "yakopcic"
    title = "Yakopcic generalised memristor model"
    reference = "Yakopcic et al. 2011, doi:10.1109/LED.2011.2163292"
    params = (
        positive("a1", "A", "current scale for v >= 0"),
        positive("a2", "A", "current scale for v < 0"),
        positive("b", "1/V", "sinh nonlinearity"),
        nonnegative("Vp", "V", "positive switching threshold"),
        nonnegative("Vn", "V", "negative switching threshold (magnitude)"),
        positive("Ap", "1/s", "positive switching rate"),
        positive("An", "1/s", "negative switching rate"),
        Param("xp", "", "state above which positive motion decays", lo=0.0, hi=1.0, hi_open=True),
        Param("xn", "", "1 - state below which negative motion decays", lo=0.0, hi=1.0, hi_open=True),
        nonnegative("alpha_p", "", "positive-motion decay constant"),
        nonnegative("alpha_n", "", "negative-motion decay constant"),
    )

    def current(self, m, p, v, x):
        return m.where(v >= 0.0, p.a1, p.a2) * x * m.sinh(p.b * v)

    def dxdt(self, m, p, v, x):
        g = m.where(v > p.Vp, p.Ap * (m.exp(v) - m.exp(p.Vp)),
                    m.where(v < -p.Vn, -p.An * (m.exp(-v) - m.exp(p.Vn)), 0.0))
        wp = (p.xp - x) / (1.0 - p.xp) + 1.0
        wn = x / (1.0 - p.xn)
        f_pos = m.where(x >= p.xp, m.exp(-p.alpha_p * (x - p.xp)) * wp, 1.0)
        f_neg = m.where(x <= 1.0 - p.xn, m.exp(p.alpha_n * (x + p.xn - 1.0)) * wn, 1.0)
        return g * m.where(v > 0.0, f_pos, f_neg)
