r"""Weights held as differential device pairs in conductance state, updated by programming pulses.

A weight is :math:`w = (a^+ - a^-)/s`, with :math:`a^\pm = d\,(G^\pm - G_{home})` each device's advance from its home
bound (:math:`d = +1`, ``polarity = "set"``: potentiation pulses, home :math:`G_{min}`; :math:`d = -1`,
``"reset"``: depression pulses, home :math:`G_{max}`) and :math:`s = (G_{max} - G_{min})/w_{max}` the pair's scale
(S per unit weight; :math:`w_{max}` the weight of one full window). Each device only moves away from its home
during training (the one-sided scheme of aihwkit's ``OneSidedUnitCell`` and of RRAM pairs whose other polarity is
abrupt): a positive update pulses :math:`G^+`, a negative one :math:`G^-`, with :math:`n` pulses of the card's
response each (its state-dependent step, cycle-to-cycle noise and device-to-device spread,
:meth:`memsim.pulse.PulseResponse.update`); the device window bounds every conductance.

An update :math:`\Delta w` becomes :math:`|n| = \lfloor |\Delta w|\,s/\Delta G_{nom} + u\rfloor`, :math:`u \sim
U[0, 1)` (stochastic rounding, unbiased), with :math:`\Delta G_{nom}` the response's nominal step
(:func:`nominal_step`); counts above ``max_pulses`` are cut to it and the pulses cut are counted.

When both devices of a pair have advanced beyond ``threshold`` of the window, the pair can no longer move its
weight in one direction: :meth:`PairArray.refresh` reads the weight, resets both devices to their home bound and
programs the weight back onto one device (write-verify, modelled as exact within the device window).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ParameterError
from ..pulse import DeviceSpread, PulseResponse

__all__ = ["PairArray", "PulseCounts", "nominal_step", "POLARITIES", "MAX_NOMINAL_PULSES"]

#: update polarity name -> pulse polarity
POLARITIES = {"set": 1, "reset": -1}
#: a response whose pulses do not cross half the window in this many pulses is refused (nominal_step)
MAX_NOMINAL_PULSES = 10000


def nominal_step(response: PulseResponse, drive: int) -> tuple[float, int]:
    """The nominal conductance step (S) of one ``drive`` pulse and the pulses it was measured over.

    The mean step from the home bound to the middle of the window, noise-free (half the window over the pulses
    that cross it, the last one counted as its fraction): for a linear device its constant step, for a saturating
    or abrupt one the step that, on average, moves a device from home to mid-window. Raises
    :class:`ParameterError` when the pulses do not reach the middle within :data:`MAX_NOMINAL_PULSES`."""
    window = response.g_max - response.g_min
    home = response.g_min if drive > 0 else response.g_max
    half = 0.5 * window
    g, done, chunk = home, 0, 64
    while done < MAX_NOMINAL_PULSES:
        curve = response.curve([drive] * chunk, g0=g)
        adv = (curve - home).abs() if drive > 0 else (home - curve).abs()
        hit = torch.nonzero(adv >= half)
        if hit.numel():
            k = int(hit[0])
            before = float(adv[k - 1]) if k > 0 else abs(g - home)
            frac = (half - before) / max(float(adv[k]) - before, 1e-300)
            return half / (done + k + frac), done + k + 1
        if float(curve[-1]) == g:
            break  # stuck: no pulse moves it
        g, done = float(curve[-1]), done + chunk
        chunk = min(2 * chunk, 4096, MAX_NOMINAL_PULSES - done)
    reached = abs(g - home) / window
    raise ParameterError("training.pulse_response", response.name,
                         f"a response whose {'set' if drive > 0 else 'reset'} pulses move a device from "
                         f"{'G_min' if drive > 0 else 'G_max'} to mid-window within {MAX_NOMINAL_PULSES} pulses "
                         f"(these reach {reached:.3g} of the window after {done} pulses)",
                         f"use stronger or longer pulses (training.pulse_{'set' if drive > 0 else 'reset'}_voltage, "
                         "training.pulse_width), or the other training.pulse_polarity")


@dataclass
class PulseCounts:
    """Pulses of one update: applied, cut by the per-step maximum (both summed over devices), devices pulsed."""

    applied: int = 0
    clipped: int = 0
    devices: int = 0

    def add(self, other: "PulseCounts") -> None:
        self.applied += other.applied
        self.clipped += other.clipped
        self.devices += other.devices


def _take(x, idx: torch.Tensor):
    return x.reshape(-1).index_select(0, idx) if isinstance(x, torch.Tensor) else x


def _pick(cond: torch.Tensor, a, b, like: torch.Tensor):
    """``a`` where ``cond`` else ``b`` (floats or tensors); two equal floats stay a float."""
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b:
        return a
    return torch.where(cond, _t(a, like), _t(b, like))


class PairArray:
    """A tensor of weights held as differential device pairs (see the module docstring).

    Args:
        weights: the initial weights (any shape); programmed exactly (write-verify) within the device windows.
        response: the devices' pulse response (a pulse card's, or a device card's derived one).
        w_max: the weight of one full window (> 0).
        drive: +1 (set pulses, home G_min) or -1 (reset pulses, home G_max).
        step: the nominal step (S) that one pulse count stands for (:func:`nominal_step`).
        max_pulses: pulses per device per update at most (>= 1).
        generator: draws the device-to-device spread here, then stochastic rounding and cycle-to-cycle noise.
    """

    def __init__(self, weights: torch.Tensor, response: PulseResponse, *, w_max: float, drive: int, step: float,
                 max_pulses: int, generator: torch.Generator):
        if not (w_max > 0) or drive not in (1, -1) or not (step > 0) or int(max_pulses) < 1:
            raise ParameterError("PairArray", (w_max, drive, step, max_pulses),
                                 "w_max > 0, drive +1 or -1, step > 0, max_pulses >= 1")
        self.response, self.w_max, self.drive, self.step = response, float(w_max), int(drive), float(step)
        self.max_pulses, self.generator = int(max_pulses), generator
        self.scale = (response.g_max - response.g_min) / self.w_max
        w = weights.detach()
        self.shape, dtype, device = w.shape, w.dtype, w.device
        self.spread = [response.draw_devices(self.shape, generator=generator, device=device, dtype=dtype)
                       for _ in range(2)]
        self.g = [torch.empty_like(w), torch.empty_like(w)]
        self.program(w)

    # -- conductances <-> weights -------------------------------------------------------------------------
    def _home(self, k: int):
        s = self.spread[k]
        return s.g_min if self.drive > 0 else s.g_max

    def advance(self, k: int) -> torch.Tensor:
        """Device ``k``'s (0: G+, 1: G-) conductance distance from its home bound (S, >= 0)."""
        return (self.g[k] - self._home(k)) * self.drive

    def weight(self) -> torch.Tensor:
        """The weights the pairs hold: ``(a+ - a-) / scale`` (an exact read)."""
        return (self.advance(0) - self.advance(1)) / self.scale

    def program(self, w: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Reset both devices (where ``mask``) to home and write ``w`` onto the device of its sign, exactly within
        its window (write-verify)."""
        for k, part in ((0, w.clamp_min(0)), (1, (-w).clamp_min(0))):
            s = self.spread[k]
            target = self._home(k) + self.drive * part * self.scale
            target = torch.minimum(torch.maximum(target, _t(s.g_min, target)), _t(s.g_max, target))
            self.g[k] = target if mask is None else torch.where(mask, target, self.g[k])

    # -- pulses -------------------------------------------------------------------------------------------
    @property
    def pulse_weight(self) -> float:
        """The weight one nominal pulse stands for (``step / scale``)."""
        return self.step / self.scale

    def counts(self, delta_w: torch.Tensor, *, stochastic: bool = True) -> tuple[torch.Tensor, int]:
        """Signed pulse counts of an update cut to ``max_pulses``, and the pulses cut. Rounded stochastically
        (unbiased; draws from the generator), or to the nearest count (``stochastic=False``: for a caller that
        keeps the remainder, e.g. Tiki-Taka's residual transfer)."""
        x = delta_w.detach() * (self.scale / self.step)
        if stochastic:
            u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        else:
            u = torch.full_like(x, 0.5)
        n = torch.floor(x.abs() + u)
        clipped = int((n - self.max_pulses).clamp_min(0).to(torch.int64).sum())  # an exact integer sum
        return torch.sign(x) * n.clamp(max=self.max_pulses), clipped

    def pulse(self, n: torch.Tensor) -> PulseCounts:
        """Apply signed pulse counts ``n`` (a positive count pulses G+, a negative one G-), at most
        ``max_pulses`` each (the caller cut them: :meth:`counts`)."""
        flat = n.reshape(-1)
        idx = torch.nonzero(flat).reshape(-1)
        if idx.numel() == 0:
            return PulseCounts()
        signed = flat.index_select(0, idx)
        cnt, plus = signed.abs().long(), signed > 0
        gp, gm = self.g[0].reshape(-1), self.g[1].reshape(-1)
        sel = torch.where(plus, gp.index_select(0, idx), gm.index_select(0, idx))
        sp, sm = self.spread
        devs = DeviceSpread(*(_pick(plus, _take(a, idx), _take(b, idx), sel) for a, b in
                              ((sp.step_up, sm.step_up), (sp.step_down, sm.step_down), (sp.g_min, sm.g_min),
                               (sp.g_max, sm.g_max))))
        new = self._train(sel, cnt.clamp(max=self.max_pulses), devs)
        gp = gp.index_copy(0, idx, torch.where(plus, new, gp.index_select(0, idx)))
        gm = gm.index_copy(0, idx, torch.where(plus, gm.index_select(0, idx), new))
        self.g = [gp.reshape(self.shape), gm.reshape(self.shape)]
        return PulseCounts(applied=int(cnt.sum()), devices=int(idx.numel()))

    def _train(self, g: torch.Tensor, cnt: torch.Tensor, devs: DeviceSpread) -> torch.Tensor:
        """``cnt`` (>= 1) pulses on each device of ``g``, in rounds: each round gives every device still pulsing
        the smallest count left among them, then drops the devices done, so no work goes to finished devices."""
        out = g.clone()
        pos = torch.arange(g.numel(), device=g.device)
        while True:
            k = int(cnt.min())
            g = self.response.update(g, self.drive, k, devices=devs, generator=self.generator, max_count=k,
                                     check=False)
            out.index_copy_(0, pos, g)
            cnt = cnt - k
            keep = torch.nonzero(cnt).reshape(-1)
            if keep.numel() == 0:
                return out
            pos, g, cnt = pos.index_select(0, keep), g.index_select(0, keep), cnt.index_select(0, keep)
            devs = DeviceSpread(*(_take(x, keep) for x in (devs.step_up, devs.step_down, devs.g_min, devs.g_max)))

    def update(self, delta_w: torch.Tensor) -> PulseCounts:
        """Pulse the update ``delta_w`` (weight units) onto the pairs: :meth:`counts`, then :meth:`pulse`."""
        n, clipped = self.counts(delta_w)
        out = self.pulse(n)
        out.clipped = clipped
        return out

    def saturated(self, threshold: float) -> torch.Tensor:
        """Pairs whose two devices have both advanced beyond ``threshold`` of the nominal window."""
        limit = threshold * (self.response.g_max - self.response.g_min)
        return torch.minimum(self.advance(0), self.advance(1)) > limit

    def refresh(self, threshold: float) -> int:
        """Refresh the saturated pairs (read, reset both, reprogram the weight); the number refreshed."""
        mask = self.saturated(threshold)
        n = int(mask.sum())
        if n:
            self.program(self.weight(), mask)
        return n

    def reset(self) -> None:
        """Every device back to its home bound (weight 0), e.g. a Tiki-Taka fast array after its transfer."""
        self.g = [torch.zeros_like(self.g[0]) + self._home(0), torch.zeros_like(self.g[1]) + self._home(1)]

    # -- checkpoints --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"w_max": self.w_max, "g": [g.clone() for g in self.g],
                "spread": [{k: getattr(s, k) for k in ("step_up", "step_down", "g_min", "g_max")} for s in self.spread]}

    def load_state_dict(self, state: dict) -> None:
        g = state["g"]
        if len(g) != 2 or any(tuple(x.shape) != tuple(self.shape) for x in g):
            raise ValueError(f"device-pair state of shape {[tuple(x.shape) for x in g]} does not fit "
                             f"{tuple(self.shape)}")
        dev = self.g[0].device
        self.w_max = float(state["w_max"])
        self.scale = (self.response.g_max - self.response.g_min) / self.w_max
        self.g = [x.to(dev) for x in g]
        self.spread = [DeviceSpread(**{k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in s.items()})
                       for s in state["spread"]]


def _t(x, like: torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.full_like(like, float(x))
