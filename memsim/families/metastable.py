"""Metastable-switch (MSS) memristor: a population of two-state switches.

Molter & Nugent, "The generalized metastable switch memristor model", CNNA 2016,
doi:10.1109/CNNA.2016.7559624 (Schottky term omitted); the form below is the one
used for the memristors of memristive integrate-and-fire neurons (SPICEprop /
MEMprop). ``x`` is the fraction of switches in the ON state:

    G     = x/R_on + (1 - x)/R_off,   i = G v
    dx/dt = (1/tau) [ (1 - x) sigma((v - v_on)/k) - x sigma((v_off - v)/k) ]

sigma is the logistic function. Both terms vanish at their bound, so x stays in
[0, 1] without a window. With v_off > 0 the device relaxes to OFF at zero bias
(volatile); with v_off well below zero it retains its state (non-volatile).
"""
from __future__ import annotations

from .base import DeviceFamily, Param, positive, require_less


class MetastableSwitch(DeviceFamily):
    name = "metastable_switch"
    title = "Metastable-switch memristor (logistic switching probabilities)"
    reference = "Molter & Nugent 2016, doi:10.1109/CNNA.2016.7559624"
    params = (
        positive("R_on", "Ohm", "resistance with all switches ON"),
        positive("R_off", "Ohm", "resistance with all switches OFF"),
        Param("v_on", "V", "ON switching voltage"),
        Param("v_off", "V", "OFF switching voltage"),
        positive("k", "V", "thermal width of the switching probability"),
        positive("tau", "s", "switching time constant"),
    )

    def conductance(self, m, p, x):
        return x / p.R_on + (1.0 - x) / p.R_off

    def current(self, m, p, v, x):
        return self.conductance(m, p, x) * v

    def dxdt(self, m, p, v, x):
        return ((1.0 - x) * m.sigmoid((v - p.v_on) / p.k) - x * m.sigmoid((p.v_off - v) / p.k)) / p.tau

    def check_relations(self, values, where):
        require_less(values, "R_on", "R_off", where)
