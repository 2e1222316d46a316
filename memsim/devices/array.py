"""The torch twin of a device card: a batch of devices, parameters per device.

The equations come from the family (written once over the math namespace) and
are evaluated here with :class:`memsim.mathns.TorchMath` (in the array's dtype); nothing is re-typed.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Callable, Mapping

import torch

from ..errors import ParameterError
from ..families import DeviceFamily
from ..integrate import odeint
from ..mathns import TorchMath
from .cards import Card


def _check_tensor_param(family: DeviceFamily, name: str, value: torch.Tensor, where: str) -> None:
    spec = next(q for q in family.all_params() if q.name == name)
    if not torch.isfinite(value).all():
        raise ParameterError(f"{where}.{name}", "non-finite entries", spec.allowed(), "remove NaN/inf")
    lo_bad = (value <= spec.lo) if spec.lo_open else (value < spec.lo)
    hi_bad = (value >= spec.hi) if spec.hi_open else (value > spec.hi)
    bad = lo_bad | hi_bad
    if bad.any():
        first = value[bad].flatten()[0].item()
        raise ParameterError(f"{where}.{name}", first, spec.allowed(), f"keep every device's {name} in range")


class VoltageRangeWarning(UserWarning):
    """A simulation drove a device outside the voltage range its card's parameters are valid for."""


class DeviceArray:
    r"""``shape`` devices of one family: the torch twin of a device card, batched, differentiable.

    Each device is a voltage-controlled memristor with a normalised state :math:`x \in [0, 1]`, its current and
    state equation those of the family (written once over the math namespace, also rendered to ngspice):

    .. math::  i = I_f(v, x; \theta),\qquad \frac{dx}{dt} = F_f(v, x; \theta),\qquad
               G_{chord}(x) = \frac{I_f(v_{read}, x; \theta)}{v_{read}}

    e.g. the metastable switch: :math:`I = (x/R_{on} + (1 - x)/R_{off})\,v`,
    :math:`\tau \dot x = (1 - x)\,\sigma((v - v_{on})/k) - x\,\sigma((v_{off} - v)/k)`.
    :meth:`simulate` integrates every device under a common or per-device voltage waveform with
    :func:`memsim.integrate.odeint` (RK4 by default; the state is kept in [0, 1]).

    Args:
        family: a :class:`memsim.families.DeviceFamily` (``memsim.get_family("vteam")``, ...).
        params: the family's parameters in SI units (Ohm, V, s, ...), each a number shared by every device or a
            tensor broadcastable to ``shape`` (per-device values, e.g. device-to-device variation; autograd
            flows through them). Ranges and relations (``R_on < R_off``) are checked for every device.
        shape: the batch of devices (int or tuple).
        dtype: ``torch.float32`` or ``torch.float64`` (verification).
        device: torch device.
        name: names the array in error messages and warnings.
        voltage_range: ``(low, high)`` in V where the parameters are valid (from the card with
            :meth:`from_card`): a simulation that leaves it warns once (:class:`VoltageRangeWarning`), naming it.

    Units and shapes: voltages in V, currents in A, conductances in S, time in s; :meth:`current`,
    :meth:`dxdt` and :meth:`conductance` take tensors broadcastable to ``shape``; :meth:`simulate` returns
    ``t`` ``[n_steps + 1]`` and ``v``, ``i``, ``x`` ``[n_steps + 1, *shape]``.

    Example: three metastable switches held at -0.2, 0 and 0.2 V. At a constant voltage the state equation
    is linear in :math:`x`, :math:`\tau \dot x = a - (a + b)\,x`, so
    :math:`x(t) = x_\infty + (x_0 - x_\infty)\,e^{-(a + b) t / \tau}` with :math:`x_\infty = a / (a + b)`.

        >>> import torch
        >>> from memsim import DeviceArray, load_card
        >>> dev = DeviceArray.from_card(load_card("mss_mif"), shape=(3,), dtype=torch.float64)
        >>> v = torch.tensor([-0.2, 0.0, 0.2], dtype=torch.float64)           # V
        >>> t, _, i, x = dev.simulate(lambda t: v, dt=1e-5, n_steps=200)     # 2 ms
        >>> p = dev.p
        >>> a, b = torch.sigmoid((v - p.v_on) / p.k), torch.sigmoid((p.v_off - v) / p.k)
        >>> x_ref = a / (a + b) + (p.x0 - a / (a + b)) * torch.exp(-(a + b) * t[:, None] / p.tau)
        >>> bool(torch.allclose(x, x_ref, atol=1e-9)), tuple(x.shape)
        (True, (201, 3))
        >>> bool(torch.allclose(i, (x / p.R_on + (1 - x) / p.R_off) * v))   # A
        True
        >>> g = dev.conductance(torch.tensor([0.0, 1.0], dtype=torch.float64), v_read=0.1)   # S, OFF and ON
        >>> bool(torch.allclose(g, torch.tensor([1 / p.R_off, 1 / p.R_on], dtype=torch.float64)))
        True
    """

    def __init__(self, family: DeviceFamily, params: Mapping[str, float | torch.Tensor], shape=(1,), *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", name: str = "device",
                 voltage_range: tuple[float, float] | None = None):
        self.family, self.name = family, name
        self.voltage_range = voltage_range
        self._warned_range = False
        self.shape = torch.Size(shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,))
        scalars = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
        tensors = {k: v for k, v in params.items() if isinstance(v, torch.Tensor)}
        # range/relations of the scalar part, then every per-device tensor
        probe = dict(scalars)
        for k, v in tensors.items():
            probe[k] = float(v.detach().flatten()[0]) if v.numel() else float("nan")
        family.validate(probe, where=name)
        p = {}
        for k, v in params.items():
            if not isinstance(v, torch.Tensor):
                # shared by every device: a Python float, so the equations fold it into coefficients
                # computed once in double precision (see memsim.mathns.TorchMath)
                p[k] = float(v)
                continue
            t = torch.as_tensor(v, dtype=dtype, device=device)
            if isinstance(v, torch.Tensor):
                _check_tensor_param(family, k, t.detach(), name)
                try:
                    torch.broadcast_shapes(t.shape, self.shape)
                except RuntimeError:
                    raise ParameterError(f"{name}.{k}", tuple(t.shape), f"broadcastable to {tuple(self.shape)}",
                                         "give one value per device or a scalar") from None
                t = v.to(dtype=dtype, device=device)  # keep autograd history of user tensors
            p[k] = t
        if tensors:  # cross-parameter relations (R_on < R_off, ...) for every device, not only the first
            family.check_relations({k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in p.items()},
                                   name)
        self.p = SimpleNamespace(**p)
        self.dtype, self.device = dtype, torch.device(device)
        self.math = TorchMath(dtype)

    @classmethod
    def from_card(cls, card: Card, shape=(1,), *, dtype=torch.float32, device="cpu", **overrides) -> "DeviceArray":
        params = dict(card.parameters)
        params.update(overrides)
        return cls(card.family, params, shape, dtype=dtype, device=device, name=card.name,
                   voltage_range=card.voltage_range)

    def initial_state(self) -> torch.Tensor:
        x0 = self.p.x0
        if not isinstance(x0, torch.Tensor):
            return torch.full(self.shape, x0, dtype=self.dtype, device=self.device)
        return torch.broadcast_to(x0, self.shape).clone()

    def current(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Device current in A."""
        return self.family.bounded_current(self.math, self.p, v, x)

    def dxdt(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.family.state_derivative(self.math, self.p, v, x)

    def conductance(self, x: torch.Tensor, v_read: float) -> torch.Tensor:
        """Chord conductance i/v in S at read voltage ``v_read`` (V, non-zero)."""
        v = torch.full_like(x, v_read)
        return self.current(v, x) / v

    def simulate(self, voltage: Callable[[torch.Tensor], torch.Tensor], dt: float, n_steps: int, *,
                 method: str = "rk4", substeps: int = 1, x0: torch.Tensor | None = None, record=None,
                 compile: bool = False):
        """Drive every device with ``voltage(t)`` (V; broadcastable to the batch).

        Returns ``(t, v, i, x)``, each ``[n_steps + 1, *shape]`` except ``t``. ``record`` (an index such as
        ``slice(0, 8)``, applied as ``x[record]``) keeps only some devices' traces, so a large batch does not
        store every device at every step. ``compile=True``: see :func:`memsim.integrate.odeint`.
        """
        x = self.initial_state() if x0 is None else x0
        f = lambda t, y: self.dxdt(voltage(t), y)
        pick = (lambda y: y) if record is None else (lambda y: y[record])

        def observe(t, y):
            v = torch.broadcast_to(voltage(t), y.shape)
            return torch.stack([pick(v), pick(self.current(v, y)), pick(y)])

        traj = odeint(f, x, dt, n_steps, method=method, substeps=substeps, observe=observe,
                      project=lambda y: y.clamp(0.0, 1.0), name=f"{self.name} state", compile=compile)
        t = torch.arange(n_steps + 1, dtype=self.dtype, device=self.device) * dt
        self._check_voltages(traj[:, 0])
        return t, traj[:, 0], traj[:, 1], traj[:, 2]

    def _check_voltages(self, v: torch.Tensor) -> None:
        if self.voltage_range is None or self._warned_range or v.numel() == 0:
            return
        lo, hi = self.voltage_range
        v_min, v_max = float(v.detach().min()), float(v.detach().max())
        if v_min < lo or v_max > hi:
            self._warned_range = True
            warnings.warn(f"{self.name}: the terminal voltage reached [{v_min:.4g}, {v_max:.4g}] V, outside the "
                          f"card's valid range [{lo:g}, {hi:g}] V; the parameters are not validated there",
                          VoltageRangeWarning, stacklevel=3)


def conductance_window(card, v_read: float) -> tuple[float, float]:
    """(g_min, g_max) in S: the card's chord conductance i/v at ``v_read`` for states x = 0 and x = 1."""
    if not (isinstance(v_read, (int, float)) and v_read != 0 and card.voltage_range[0] <= v_read <= card.voltage_range[1]):
        raise ParameterError("device.v_read", v_read, f"a non-zero voltage inside the card's range {list(card.voltage_range)} V",
                             "give the read voltage at which the conductance window is taken")
    dev = DeviceArray.from_card(card, shape=(2,), dtype=torch.float64)
    g = dev.conductance(torch.tensor([0.0, 1.0], dtype=torch.float64), float(v_read))
    lo, hi = float(g.min()), float(g.max())
    if not (0 < lo < hi):
        raise ParameterError(f"{card.name}.window", (lo, hi), "0 < g_min < g_max",
                             "use a card whose conductance changes with its state")
    return lo, hi
