"""The pulse response of a device card, derived from its state equation and tabulated on a state grid.

From every state x_k of a grid in [0, 1] (uniform in the state, so a conductance that is exponential in the state,
as Stanford-PKU's, gets nodes spread evenly over its decades) one pulse of each polarity is integrated in torch,
batched over all states (:func:`memsim.pulse.simulate.pulse_states`); the table holds the read conductances
G_k = G(x_k) and the steps dG_k(+/-) = G(x_k after the pulse) - G_k. A conductance between two nodes gets the
linear interpolation of their steps.

**The table's error is measured, not assumed**: the same pulses are integrated from the mid-point state of every
interval, and the interpolated step there is compared with the exact one. The grid is refined (each interval
halved, reusing every integration) until, at every mid-point, ``|error| <= rtol |dG| + atol max|dG|``; the
error is stated in :attr:`TableResponse.error`. A grid that still misses at ``max_points`` raises
:class:`memsim.errors.ConvergenceError` with the residual: the table never returns a wrong answer silently.

Before any tabulation a probe of 17 states checks that each pulse moves the conductance at all (an amplitude below
the switching threshold is an error that names the threshold) and in its direction (``set_voltage`` must raise it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..devices.cards import Card, load_card
from ..errors import ConvergenceError, ParameterError
from ..schema import is_finite_number
from .families import check_noise
from .response import PulseResponse
from .simulate import ProgrammingPulse, conductance, programming_pulse, pulse_states

#: a pulse that moves no state's conductance by more than this fraction of the window does nothing
MIN_STEP = 1e-6
#: read voltage when none is given (V), if inside the card's valid range
DEFAULT_READ = 0.2


@dataclass(frozen=True)
class TableError:
    """The measured interpolation error of a table, at the mid-points of its intervals."""

    points: int            # nodes of the table
    max_error: float       # S, max |interpolated - exact step|
    of_step: float         # max_error / the largest one-pulse step
    of_window: float       # max_error / (G_max - G_min)
    max_relative: float    # max |error| / |exact step| where the step is >= atol x the largest
    rtol: float
    atol: float

    def describe(self) -> str:
        return (f"{self.points}-point table: max interpolation error {self.max_error:.3g} S at the mid-points = "
                f"{self.of_step:.2e} of the largest step, {self.of_window:.2e} of the window, "
                f"{self.max_relative:.2e} of the local step (tolerance rtol {self.rtol:g}, atol {self.atol:g})")


def read_voltage(card: Card, v_read: float | None) -> float:
    if v_read is None:
        lo, hi = card.voltage_range
        v_read = DEFAULT_READ if lo <= DEFAULT_READ <= hi else 0.5 * hi
    if not is_finite_number(v_read) or v_read == 0 or not card.voltage_range[0] <= v_read <= card.voltage_range[1]:
        raise ParameterError("v_read", v_read, f"a non-zero voltage inside {card.name}'s valid range "
                             f"{list(card.voltage_range)} V", "give the read voltage in V, e.g. 0.2")
    return float(v_read)


def _steps(card: Card, pulse: ProgrammingPulse, x: torch.Tensor, v_read: float) -> tuple[torch.Tensor, ...]:
    """(G(x), dG of the set pulse, dG of the reset pulse) from every state of ``x``, one batched integration."""
    n = x.numel()
    amps = torch.cat([torch.full((n,), pulse.set_voltage), torch.full((n,), pulse.reset_voltage)]).double()
    after = pulse_states(card, torch.cat([x, x]), amps, pulse)
    g = conductance(card, x, v_read)
    g_after = conductance(card, after, v_read)
    return g, g_after[:n] - g, g_after[n:] - g


def _threshold(card: Card, pulse: ProgrammingPulse, up: bool, v_read: float, window: float) -> float | None:
    """The smallest |amplitude| (with the pulse's sign) up to the card's limit whose pulse moves some state's
    conductance by MIN_STEP of the window; None if none does."""
    a0 = pulse.amplitude(up)
    limit = card.voltage_range[1] if a0 > 0 else card.voltage_range[0]
    amps = np.linspace(a0, limit, 41)[1:]
    x = torch.linspace(0, 1, 9, dtype=torch.float64)
    xs = x.repeat(len(amps))
    a = torch.as_tensor(np.repeat(amps, len(x)), dtype=torch.float64)
    dg = (conductance(card, pulse_states(card, xs, a, pulse), v_read) - conductance(card, xs, v_read)).abs()
    moved = (dg.reshape(len(amps), len(x)).amax(1) >= MIN_STEP * window).numpy()
    return float(amps[np.argmax(moved)]) if moved.any() else None


def check_switching(card: Card, pulse: ProgrammingPulse, v_read: float) -> None:
    """Each pulse moves the conductance, each in its direction: else a :class:`ParameterError` naming the field."""
    x = torch.linspace(0, 1, 17, dtype=torch.float64)
    g, d_set, d_reset = _steps(card, pulse, x, v_read)
    window = float(g.max() - g.min())
    for up, d, key in ((True, d_set, "set_voltage"), (False, d_reset, "reset_voltage")):
        a = pulse.amplitude(up)
        if float(d.abs().max()) < MIN_STEP * window:
            thr = _threshold(card, pulse, up, v_read, window)
            what = (f"|amplitude| >= {abs(thr):.4g} V: {card.name}'s switching threshold for {pulse.width:g} s pulses "
                    f"lies between {abs(a):g} and {abs(thr):.4g} V" if thr is not None else
                    f"an amplitude that switches {card.name}; none inside its valid range "
                    f"{list(card.voltage_range)} V does in {pulse.width:g} s")
            fix = (f"use {key} = {thr:.4g} V or more" if thr is not None else "use longer pulses (width)")
            raise ParameterError(key, a, what + f" (a {a:g} V pulse changes no state's conductance by "
                                 f"{MIN_STEP:g} of the window: the update would be zero everywhere)", fix)
    if float(d_set.sum()) <= 0 or float(d_reset.sum()) >= 0:
        key, a = ("set_voltage", pulse.set_voltage) if float(d_set.sum()) <= 0 else ("reset_voltage",
                                                                                      pulse.reset_voltage)
        raise ParameterError(key, a, f"a pulse that {'raises' if key == 'set_voltage' else 'lowers'} {card.name}'s "
                             f"conductance (read at {v_read:g} V) on average over its states",
                             "swap set_voltage and reset_voltage; for a volatile device shorten the gap before the "
                             "read, which lets the state relax")


def _interp_index(g: torch.Tensor, nodes: torch.Tensor):
    """Interval index and weight of each ``g`` in ascending ``nodes`` (held at the ends)."""
    idx = torch.searchsorted(nodes, g.contiguous(), right=True).clamp(1, nodes.numel() - 1)
    g0, g1 = nodes[idx - 1], nodes[idx]
    return idx, ((g - g0) / (g1 - g0)).clamp(0.0, 1.0)


def _interp(g, nodes, values):
    idx, w = _interp_index(g, nodes)
    return values[idx - 1] + w * (values[idx] - values[idx - 1])


class TableResponse(PulseResponse):
    """A device card's pulse response as a table of one-pulse steps against the read conductance.

    Built by :func:`derive_response`; ``nodes`` (S, ascending), ``dg_up``/``dg_down`` (S) are float64 numpy arrays,
    ``error`` the measured :class:`TableError`."""

    def __init__(self, card: Card, pulse: ProgrammingPulse, v_read: float, nodes, dg_up, dg_down,
                 error: TableError, noise: dict[str, float]):
        self.card, self.pulse, self.name = card, pulse, card.name
        self.read_voltage = v_read
        self.nodes, self.dg_up, self.dg_down, self.error = nodes, dg_up, dg_down, error
        self.g_min, self.g_max = float(nodes[0]), float(nodes[-1])
        self.noise = noise
        self._buffers: dict = {}

    def _tables(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        if key not in self._buffers:
            self._buffers[key] = tuple(torch.as_tensor(a, dtype=like.dtype, device=like.device)
                                       for a in (self.nodes, self.dg_up, self.dg_down))
        return self._buffers[key]

    def _mean_step(self, g, up, lo, hi):
        nodes, d_up, d_down = self._tables(g)
        scaled = isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor) or (lo, hi) != (self.g_min, self.g_max)
        # a device whose window is spread is the card's device on a stretched conductance axis
        scale = (self.g_max - self.g_min) / (hi - lo) if scaled else 1.0
        gn = self.g_min + (g - lo) * scale if scaled else g
        idx, w = _interp_index(gn, nodes)
        step_up = d_up[idx - 1] + w * (d_up[idx] - d_up[idx - 1])
        step_down = d_down[idx - 1] + w * (d_down[idx] - d_down[idx - 1])
        return torch.where(up, step_up, step_down) / scale

    def describe(self) -> str:
        return f"{super().describe()}\n  derived from {self.card.name} ({self.pulse.describe()}); {self.error.describe()}"


def derive_response(card: Card | str, *, set_voltage: float | None = None, reset_voltage: float | None = None,
                    width: float | None = None, rise: float | None = None, gap: float | None = None,
                    v_read: float | None = None, points: int = 33, rtol: float = 1e-2, atol: float = 1e-3,
                    max_points: int = 4097, **noise: float) -> TableResponse:
    """The pulse response of a device card (name or :class:`Card`) as a checked table.

    Pulse: the card's ``[verify.pulse]`` unless given (see :func:`memsim.pulse.simulate.programming_pulse`); read at
    ``v_read`` (default 0.2 V). The grid starts at ``points`` states and is refined until every mid-point error
    is within ``rtol`` of the exact step plus ``atol`` of the largest step. ``noise``: c2c_rel, c2c_abs,
    d2d_step, d2d_bounds (default 0: the card's equations are deterministic)."""
    card = load_card(card) if isinstance(card, str) else card
    pulse = programming_pulse(card, set_voltage=set_voltage, reset_voltage=reset_voltage, width=width, rise=rise,
                              gap=gap)
    v_read = read_voltage(card, v_read)
    noise = check_noise(noise, "noise")
    for key, v, ok in (("rtol", rtol, is_finite_number(rtol) and rtol > 0), ("atol", atol, is_finite_number(atol)
                       and atol > 0), ("points", points, isinstance(points, int) and 3 <= points <= max_points)):
        if not ok:
            raise ParameterError(key, v, "rtol, atol > 0; 3 <= points <= max_points", "e.g. the defaults")
    check_switching(card, pulse, v_read)  # before any tabulation: a useless pulse is an error, not a flat table
    x = torch.linspace(0, 1, points, dtype=torch.float64)
    g, d_up, d_down = _steps(card, pulse, x, v_read)
    while True:
        mids = 0.5 * (x[:-1] + x[1:])
        gm, dm_up, dm_down = _steps(card, pulse, mids, v_read)
        order = torch.argsort(g)
        nodes = g[order]
        if not bool((nodes[1:] > nodes[:-1]).all()):
            raise ParameterError(f"{card.name}.conductance", "not monotone in the state",
                                 f"a read conductance (at {v_read:g} V) that changes monotonically with the state",
                                 "read at another voltage; a non-monotone device has no conductance -> step map")
        t_up, t_down = _interp(gm, nodes, d_up[order]), _interp(gm, nodes, d_down[order])
        err = torch.cat([(t_up - dm_up).abs(), (t_down - dm_down).abs()])
        exact = torch.cat([dm_up, dm_down]).abs()
        largest = float(torch.cat([d_up.abs(), d_down.abs(), exact]).max())
        bound = rtol * exact + atol * largest
        big = exact >= atol * largest
        error = TableError(points=int(x.numel()), max_error=float(err.max()), of_step=float(err.max()) / largest,
                           of_window=float(err.max()) / float(nodes[-1] - nodes[0]),
                           max_relative=float((err[big] / exact[big]).max()) if bool(big.any()) else 0.0,
                           rtol=rtol, atol=atol)
        if bool((err <= bound).all()):
            return TableResponse(card, pulse, v_read, nodes.numpy(), d_up[order].numpy(), d_down[order].numpy(),
                                 error, noise)
        if 2 * x.numel() - 1 > max_points:
            worst = float((err / bound).max())
            raise ConvergenceError(f"the pulse-response table of {card.name} misses its tolerance at {x.numel()} "
                                   f"points (worst mid-point error {worst:.3g} x the allowed rtol {rtol:g} |dG| + atol "
                                   f"{atol:g} max|dG|; {error.describe()}). Fix: raise max_points, loosen rtol/atol, or "
                                   "use a smoother pulse", residual=worst, iterations=int(x.numel()))
        # halve every interval: the mid-points become nodes, their integrations reused
        x = torch.cat([torch.stack([x[:-1], mids], 1).reshape(-1), x[-1:]])
        g = torch.cat([torch.stack([g[:-1], gm], 1).reshape(-1), g[-1:]])
        d_up = torch.cat([torch.stack([d_up[:-1], dm_up], 1).reshape(-1), d_up[-1:]])
        d_down = torch.cat([torch.stack([d_down[:-1], dm_down], 1).reshape(-1), d_down[-1:]])
