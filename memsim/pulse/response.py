r"""Pulse responses as torch functions: new conductances from present ones, a polarity and a pulse count.

This is the API an in-situ training loop calls, batched over any number of weights (CPU or CUDA)::

    resp = memsim.pulse.load_response("synapse_exp_saturation")   # a pulse card, or a device card (derived)
    devs = resp.draw_devices((2, 784, 256), generator=gen, device="cuda")   # device-to-device spread, once
    g = devs.g_min + 0.5 * (devs.g_max - devs.g_min)                # conductances (S) inside each window
    g = resp.update(g, polarity, count, devices=devs, generator=gen)  # polarity +1/-1, count >= 0 (ints)

Per pulse, for every device whose ``count`` is not yet used up:

.. math::  g \leftarrow \mathrm{clip}\big(g + f_\pm\,\overline{\Delta G}_\pm(g)\,(1 + \sigma_{rel}\,\xi_1)
           + \sigma_{abs}\,\xi_2,\; g_{min,d},\; g_{max,d}\big)

with :math:`\overline{\Delta G}_\pm` the mean step of the response (a behavioural family's equation, or the table
derived from a device card), :math:`\xi` standard normal draws from ``generator`` (cycle-to-cycle noise,
``c2c_rel``/``c2c_abs``), and per device a step factor :math:`f_\pm = \max(0, 1 + \sigma_{step}\,\xi)` per
polarity and bounds :math:`g_{min,d} = G_{min}(1 + \sigma_{b}\,\xi)`, :math:`g_{max,d} = G_{max}(1 + \sigma_b\,\xi)`
drawn once (:meth:`PulseResponse.draw_devices`; ``d2d_step``/``d2d_bounds``). The clip is the device's hard
window (NeuroSim, aihwkit), not a correction of the input: a conductance given outside its window is an error.
A drawn step factor below 0 would move a device the wrong way; it is held at 0 (a stuck device), as aihwkit's
``enforce_consistency`` keeps each step's sign.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ParameterError
from ..mathns import TorchMath
from .cards import PulseCard
from .families import NOISE_NAMES, check_noise

#: relative tolerance (of the window) of the conductance check: float32 rounding of a mapped conductance
WINDOW_TOLERANCE = 1e-5


@dataclass
class DeviceSpread:
    """Device-to-device spread, drawn once per device (:meth:`PulseResponse.draw_devices`).

    Each field is a float (no spread) or a tensor of the devices' shape: the step factors per polarity and the
    window bounds in S. Keep it with the devices (e.g. in a training state) and pass it to every update."""

    step_up: torch.Tensor | float
    step_down: torch.Tensor | float
    g_min: torch.Tensor | float
    g_max: torch.Tensor | float


class PulseResponse:
    """Conductance change per programming pulse as a function of the present conductance (abstract).

    Subclasses give ``name``, ``read_voltage`` (V), the window ``g_min``/``g_max`` (S), ``noise`` (the four
    :data:`memsim.pulse.families.NOISE_NAMES` values) and :meth:`_mean_step`.
    """

    name: str
    read_voltage: float
    g_min: float
    g_max: float
    noise: dict[str, float]

    # -- the model --------------------------------------------------------------------------------------------
    def _mean_step(self, g: torch.Tensor, up, lo, hi) -> torch.Tensor:  # pragma: no cover - abstract
        """Mean signed step (S) of one pulse at ``g`` for devices with window [lo, hi] (floats or tensors)."""
        raise NotImplementedError

    def mean_step(self, g: torch.Tensor, polarity, devices: DeviceSpread | None = None) -> torch.Tensor:
        """Mean signed change of one pulse (S), no noise: + for ``polarity`` > 0, - for < 0, 0 for 0."""
        g = torch.as_tensor(g)
        pol = torch.as_tensor(polarity, device=g.device)
        lo, hi, f_up, f_down = self._spread(devices)
        up = pol > 0
        step = self._mean_step(g, up, lo, hi) * _where(up, f_up, f_down)
        return torch.where(pol != 0, step, torch.zeros_like(step))

    # -- device-to-device spread ------------------------------------------------------------------------------
    def draw_devices(self, shape, *, generator: torch.Generator | None = None, device="cpu",
                     dtype: torch.dtype = torch.float32) -> DeviceSpread:
        """Per-device step factors and windows for ``shape`` devices (floats when the card has no spread)."""
        shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (int(shape),)
        s_step, s_bound = self.noise["d2d_step"], self.noise["d2d_bounds"]
        draw = lambda: torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if s_step > 0:
            step_up, step_down = (1.0 + s_step * draw()).clamp_min(0.0), (1.0 + s_step * draw()).clamp_min(0.0)
        else:
            step_up = step_down = 1.0
        if s_bound > 0:
            lo = (self.g_min * (1.0 + s_bound * draw())).clamp_min(0.0)
            # a window must stay a window: its top at least 1 % of the nominal width above its bottom
            hi = torch.maximum(self.g_max * (1.0 + s_bound * draw()), lo + 0.01 * (self.g_max - self.g_min))
        else:
            lo, hi = self.g_min, self.g_max
        return DeviceSpread(step_up, step_down, lo, hi)

    def _spread(self, devices: DeviceSpread | None):
        if devices is None:
            return self.g_min, self.g_max, 1.0, 1.0
        return devices.g_min, devices.g_max, devices.step_up, devices.step_down

    # -- the update a training loop calls ---------------------------------------------------------------------
    def check_conductance(self, g: torch.Tensor, devices: DeviceSpread | None = None, what: str = "g") -> None:
        """:class:`ParameterError` when a conductance lies outside its device's window (one device synchronisation)."""
        lo, hi, _, _ = self._spread(devices)
        tol = WINDOW_TOLERANCE * (self.g_max - self.g_min)
        bad = (g < lo - tol) | (g > hi + tol) | ~torch.isfinite(g)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            val = float(g[idx])
            low = float(torch.as_tensor(lo, dtype=g.dtype).expand_as(g)[idx]) if isinstance(lo, torch.Tensor) else lo
            high = float(torch.as_tensor(hi, dtype=g.dtype).expand_as(g)[idx]) if isinstance(hi, torch.Tensor) else hi
            raise ParameterError(f"{what}[{', '.join(map(str, idx))}]", val,
                                 f"inside the window [{low:.6g}, {high:.6g}] S of {self.name} (read at "
                                 f"{self.read_voltage:g} V)",
                                 "map the weights into the card's conductance window before pulsing")

    def update(self, g: torch.Tensor, polarity, count=1, *, devices: DeviceSpread | None = None,
               generator: torch.Generator | None = None, max_count: int | None = None,
               check: bool = True) -> torch.Tensor:
        """New conductances (S) after ``count`` pulses of ``polarity`` on each device.

        Args:
            g: present conductances (S), any shape, inside each device's window.
            polarity: +1 potentiation, -1 depression, 0 no pulse; a number or a tensor broadcastable to ``g``.
            count: pulses per device (int >= 0), a number or a tensor broadcastable to ``g``.
            devices: the spread drawn by :meth:`draw_devices` (None: every device nominal).
            generator: source of the cycle-to-cycle noise (on ``g``'s device); None uses torch's global one.
            max_count: an upper bound of ``count`` known to the caller (saves one device synchronisation);
                pulses beyond it are not applied.
            check: refuse conductances outside their window (one synchronisation; a loop that keeps the
                conductances this function returns may pass False after the first step).
        Returns a new tensor (the input is not modified); no autograd history is needed or kept.
        """
        g = torch.as_tensor(g)
        if check:
            self.check_conductance(g, devices)
        pol = torch.as_tensor(polarity, device=g.device)
        cnt = torch.as_tensor(count, device=g.device)
        if cnt.is_floating_point():
            raise ParameterError("count", str(cnt.dtype), "an integer tensor of pulses per device (>= 0)",
                                 "round the pulse counts and convert them with .long()")
        if check and bool((cnt < 0).any()):
            raise ParameterError("count", int(cnt.min()), "integers >= 0 (the sign of an update goes in polarity)",
                                 "pass polarity = sign(n) and count = |n|")
        n = int(cnt.max()) if max_count is None else int(max_count)
        return self._pulses(g, pol, cnt, n, devices, generator, noisy=True)

    def _pulses(self, g, pol, cnt, n, devices, generator, noisy: bool) -> torch.Tensor:
        lo, hi, f_up, f_down = self._spread(devices)
        c_rel, c_abs = (self.noise["c2c_rel"], self.noise["c2c_abs"]) if noisy else (0.0, 0.0)
        up = pol > 0
        factor = _where(up, f_up, f_down)
        moving = pol != 0
        out = g.detach().clone()
        for k in range(n):
            step = self._mean_step(out, up, lo, hi) * factor
            if c_rel > 0:
                step = step * (1.0 + c_rel * torch.randn(out.shape, generator=generator, device=out.device,
                                                        dtype=out.dtype))
            if c_abs > 0:
                step = step + c_abs * torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
            new = torch.minimum(torch.maximum(out + step, _t(lo, out)), _t(hi, out))
            out = torch.where(moving & (cnt > k), new, out)
        return out

    def curve(self, polarities, g0: float | None = None, *, dtype=torch.float64) -> torch.Tensor:
        """Mean conductances (S) after each pulse of a train, no noise: ``[len(polarities)]`` from ``g0``
        (default: G_min when the train starts with potentiation, else G_max). For plots and checks."""
        pol = [int(p) for p in torch.as_tensor(polarities).tolist()]
        g = torch.tensor([float(g0) if g0 is not None else self.g_min if pol[0] > 0 else self.g_max], dtype=dtype)
        one = torch.ones(1, dtype=torch.long)
        out = []
        for p in pol:
            g = self._pulses(g, torch.tensor([p]), one, 1, None, None, noisy=False)
            out.append(g)
        return torch.cat(out)

    def describe(self) -> str:
        noise = ", ".join(f"{k} {self.noise[k]:g}" for k in NOISE_NAMES)
        return (f"{self.name}: window [{self.g_min:.4g}, {self.g_max:.4g}] S read at {self.read_voltage:g} V; "
                f"noise {noise}")


def _t(x, like: torch.Tensor):
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)


def _where(cond: torch.Tensor, a, b):
    """``a`` where ``cond`` else ``b``; two equal floats stay a float (no per-device tensor without spread)."""
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b:
        return a
    like = a if isinstance(a, torch.Tensor) else b if isinstance(b, torch.Tensor) else torch.zeros((), device=cond.device)
    return torch.where(cond, _t(a, like), _t(b, like))


class BehaviouralResponse(PulseResponse):
    """The response of a pulse card: its family's equations evaluated in torch (:class:`memsim.mathns.TorchMath`)."""

    def __init__(self, card: PulseCard, **noise: float):
        self.card, self.family, self.name = card, card.family, card.name
        self.read_voltage = card.read_voltage
        self.g_min, self.g_max = card.window
        self.noise = check_noise({**card.noise, **noise}, f"{card.name}.noise")
        self.params = dict(card.parameters)
        self._math: dict[torch.dtype, TorchMath] = {}

    def _mean_step(self, g, up, lo, hi):
        m = self._math.setdefault(g.dtype, TorchMath(g.dtype))
        p = self.family.namespace({**self.params, "G_min": lo, "G_max": hi})
        return torch.broadcast_to(self.family.step(m, p, g, up), torch.broadcast_shapes(g.shape, up.shape))
