"""VTEAM, the voltage threshold adaptive memristor model.

Kvatinsky, Ramadan, Friedman, Kolodny, "VTEAM: A General Model for
Voltage-Controlled Memristors", IEEE TCAS-II 62(8):786, 2015, doi:10.1109/TCSII.2015.2433536.

With w in [w_on, w_off] normalised to ``x = (w - w_on)/(w_off - w_on)`` and the
linear I-V variant ``R(x) = R_on + (R_off - R_on) x``:

    dw/dt = k_off (v/v_off - 1)^a_off f(x)   for 0 < v_off < v
          = 0                                for v_on <= v <= v_off
          = k_on  (v/v_on - 1)^a_on  f(x)    for v < v_on < 0

written branch-free as ``k_off max(v/v_off - 1, 0)^a_off + k_on max(v/v_on - 1, 0)^a_on``
(each base is zero outside its branch), with a Biolek-type window of exponent p,
``f = 1 - (x - stp(-dx))^(2p)``: it vanishes only at the bound the state is moving
towards, so a device driven to one bound can leave it again (a Joglekar window is
zero at both bounds for both directions and would leave the device stuck).
"""
from __future__ import annotations

from .base import DeviceFamily, Param, positive, require_less


class VTEAM(DeviceFamily):
    name = "vteam"
    title = "VTEAM (voltage threshold adaptive memristor), linear I-V, Biolek-type window"
    reference = "Kvatinsky et al. 2015, doi:10.1109/TCSII.2015.2433536"
    params = (
        positive("R_on", "Ohm", "low resistance, at w = w_on (x = 0)"),
        positive("R_off", "Ohm", "high resistance, at w = w_off (x = 1)"),
        positive("D", "m", "state range w_off - w_on"),
        positive("k_off", "m/s", "OFF switching rate (> 0)"),
        Param("k_on", "m/s", "ON switching rate (< 0)", hi=0.0, hi_open=True),
        Param("alpha_off", "", "OFF nonlinearity exponent", lo=1.0),
        Param("alpha_on", "", "ON nonlinearity exponent", lo=1.0),
        positive("v_off", "V", "OFF threshold voltage (> 0)"),
        Param("v_on", "V", "ON threshold voltage (< 0)", hi=0.0, hi_open=True),
        Param("p", "", "window exponent", lo=1.0),
    )

    def current(self, m, p, v, x):
        return v / (p.R_on + (p.R_off - p.R_on) * x)

    def dxdt(self, m, p, v, x):
        rate = (p.k_off * m.pow(m.maximum(v / p.v_off - 1.0, 0.0), p.alpha_off)
                + p.k_on * m.pow(m.maximum(v / p.v_on - 1.0, 0.0), p.alpha_on))
        moving_down = m.where(rate < 0.0, 1.0, 0.0)
        window = 1.0 - m.pow(m.abs(x - moving_down), 2.0 * p.p)
        return rate * window / p.D

    def check_relations(self, values, where):
        require_less(values, "R_on", "R_off", where)
