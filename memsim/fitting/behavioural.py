"""Fit a behavioural pulse-response family (:mod:`memsim.pulse.families`) to measured LTP/LTD curves.

**Model.** Each group (cycle, device) starts at its own initial conductance G0, fitted with the parameters (an
initial read is a noisy measurement, not the state); each row applies its pulses (polarity, count) through the
family's equation, ``G <- clip(G + dG(G), G_min, G_max)``, and is compared with the read conductance. The loss is
the NRMSE of :mod:`memsim.fitting.fit` (RMS error / (max - min) of the measured conductance), minimised by the
same batched projected Levenberg-Marquardt with multi-starts, with the same identifiability report (Gauss-Newton
relative standard errors, equivalent starts, search bounds). The model is a closed form, so a fit of hundreds of
pulses takes about a second.

**Search box.** Parameters in a bounded range are searched in it; open-ended ones in [p0/span, p0*span] (log)
around the starting values (the ``--init`` card's, else estimates from the curve: its range and run lengths);
G_min in [max(lo - W, lo/20), lo + 0.3 W] and G_max in [hi - 0.3 W, hi + 2 W] of the measured range [lo, hi] (W = hi - lo),
unless ``bounds`` says otherwise.

**Weights.** Read noise often grows with the conductance (a relative error of the read current). After the first
fit the residuals give var(e) = a + b G^2 (non-negative least squares); when the standard deviation it implies
changes by more than :data:`HETEROSCEDASTIC` along the curve, the fit is repeated from its best starts with each
point weighted by 1/sd (feasible generalised least squares): the precise points count more, and the reported
standard errors hold for the noise the data have, not for its average. The NRMSE and the AIC stay unweighted.

**Cycle-to-cycle noise** is estimated from the one-pulse residuals: from each measured conductance, the fitted
model predicts the next read after one pulse; the deviations e are fitted as var(e) = c2c_abs^2 + c2c_rel^2 dG^2
(non-negative least squares; one component unless the data need both, by AIC), leaving out pulses that land within two standard deviations of a bound (their noise
is clipped). The estimate includes the read noise of the measurement, so it is an upper bound
of the programming noise; it is written to the card's [noise] table.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import ParameterError
from ..mathns import TorchMath
from ..progress import progress_bar
from ..schema import suggest
from ..pulse.cards import PulseCard
from ..pulse.families import PulseFamily
from .data import DataError, Measurement
from .fit import (RSE_LIMIT, Coord, FitError, FitResult, _sobol_starts, coordinates, flag_unidentified,
                  identifiability, levenberg_marquardt, one_thread)
from .pulses import PulseCurves, check_polarities, outside_window, pulse_curves

#: measured conductances may lie this far (fraction of the window) outside a fixed window: read noise at saturation
WINDOW_SLACK = 0.05
#: ratio of the largest to the smallest residual standard deviation along the curve above which points are weighted
HETEROSCEDASTIC = 1.5


class CurveProblem:
    """Residuals of candidate coordinate sets (family parameters, then one G0 per group) against the curves."""

    def __init__(self, curves: PulseCurves, family: PulseFamily, base: dict[str, float], coords: list[Coord],
                 dtype=torch.float64):
        self.curves, self.family, self.base, self.coords = curves, family, base, coords
        self.n_groups = len(curves.labels)
        self.family_coords = coords[:len(coords) - self.n_groups]
        self.target = torch.as_tensor(np.nan_to_num(curves.target), dtype=dtype)
        self.mask = torch.as_tensor(curves.mask)
        self.up = torch.as_tensor(curves.polarity > 0)
        self.count = torch.as_tensor(curves.count)
        self.row_max = curves.count.max(axis=1).tolist()   # pulses of the busiest group per row
        # a row whose pulses have one polarity in every group evaluates only that branch of the equation
        moving = curves.count > 0
        self.row_up = [bool(u[m].all()) if m.any() and (u[m].all() or not u[m].any()) else self.up[t]
                       for t, (u, m) in enumerate(zip(curves.polarity > 0, moving))]
        y = curves.target[curves.mask]
        self.span = float(y.max() - y.min())
        if self.span <= 0:
            raise DataError(f"the measured conductance is constant ({y[0]:g} S); there is nothing to fit")
        self.n = int(y.size)
        self.scale = self.span * math.sqrt(self.n)
        self.m = TorchMath(dtype)
        #: per-point weights [T, G] (mean square 1 over the measured points), None: unweighted
        self.weights: torch.Tensor | None = None

    def split(self, z: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """(family parameters: floats and [B, 1] tensors, initial conductances [B, G]) of coordinates [B, P]."""
        p = dict(self.base)
        for j, c in enumerate(self.family_coords):
            p[c.name] = c.value(z[:, j:j + 1])
        k = len(self.family_coords)
        g0 = torch.stack([c.value(z[:, k + j]) for j, c in enumerate(self.coords[k:])], 1)
        return p, g0

    def model(self, z: torch.Tensor) -> torch.Tensor:
        """Read conductances ``[T, B, G]`` of every candidate."""
        params, g = self.split(z)
        p = self.family.namespace(params)
        g = self.family.clip(self.m, g, p.G_min, p.G_max)
        out = []
        for t, n in enumerate(self.row_max):
            for k in range(n):
                new = self.family.after(self.m, p, g, self.row_up[t])
                g = torch.where(self.count[t] > k, new, g)
            out.append(g)
        return torch.stack(out)

    def residuals(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` scaled so that ||r||^2 = NRMSE^2 (weighted NRMSE^2 when :attr:`weights` is set)."""
        e = self.model(z) - self.target.unsqueeze(1)
        if self.weights is not None:
            e = e * self.weights.unsqueeze(1)
        r = e.permute(1, 0, 2)[:, self.mask] / self.scale
        return torch.nan_to_num(r, nan=1e3, posinf=1e3, neginf=-1e3)

    def noise_weights(self, z: torch.Tensor) -> torch.Tensor | None:
        """Weights 1/sd from var(e) = a + b G^2 fitted to the residuals of ``z`` [1, P]; None when the noise is
        homoscedastic enough (see the module docstring)."""
        with torch.no_grad():
            y = self.model(z)[:, 0]
        yy = y[self.mask].numpy()
        e2 = (y - self.target)[self.mask].numpy() ** 2
        a, b = _nonnegative_fit(e2, yy ** 2)
        var = a + b * y ** 2
        if b <= 0 or float(var[self.mask].max() / var[self.mask].min().clamp_min(1e-300)) < HETEROSCEDASTIC ** 2:
            return None
        w = 1.0 / var.sqrt()
        return w / w[self.mask].pow(2).mean().sqrt()


def _nonnegative_fit(e2: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """(a, b) >= 0 minimising ||e2 - a - b x||: a variance model var = a + b x."""
    (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], 1), e2, rcond=None)
    if b < 0:
        return float(np.mean(e2)), 0.0
    if a < 0:
        return 0.0, float(np.sum(e2 * x) / np.sum(x * x))
    return float(a), float(b)


def _window_bounds(curves: PulseCurves, free: list[str], bounds: dict | None) -> dict:
    lo, hi = curves.range()
    w = hi - lo
    out = dict(bounds or {})
    # positive boxes make log coordinates: the identifiability report compares coordinates per unit of log-value,
    # while a linear coordinate in S would be per siemens and swamp every other one
    if "G_min" in free and "G_min" not in out:
        out["G_min"] = (max(lo - w, lo / 20), lo + 0.3 * w)
    if "G_max" in free and "G_max" not in out:
        out["G_max"] = (max(hi - 0.3 * w, 1e-3 * w), hi + 2 * w)
    return out


def estimate_noise(curves: PulseCurves, family: PulseFamily, params: dict[str, float]) -> dict[str, float]:
    """c2c_abs (S) and c2c_rel from the one-pulse residuals (see the module docstring) and how many pulses gave them."""
    m = TorchMath(torch.float64)
    p = family.namespace(params)
    prev = torch.as_tensor(curves.target[:-1])
    up = torch.as_tensor(curves.polarity[1:] > 0)
    with torch.no_grad():
        pred = family.after(m, p, prev, up).numpy()
        step = family.step(m, p, prev, up).numpy()
    w = params["G_max"] - params["G_min"]
    use = (curves.mask[1:] & curves.mask[:-1] & (curves.count[1:] == 1) & (curves.polarity[1:] != 0)
           # a prediction held at a bound has its noise clipped away
           & (pred > params["G_min"] + 1e-9 * w) & (pred < params["G_max"] - 1e-9 * w))
    e2_all, s2_all = (curves.target[1:] - pred) ** 2, step ** 2
    if use.sum() < 3:
        return {"c2c_abs": 0.0, "c2c_rel": 0.0, "pulses": int(use.sum())}
    a, b = _variance_model(e2_all[use], s2_all[use])
    # a pulse that lands within 2 sd of a bound has the tail of its noise cut off: leave those out and fit again
    sd = np.sqrt(a + b * s2_all)
    room = np.minimum(pred - params["G_min"], params["G_max"] - pred)
    if (use & (room > 2 * sd)).sum() >= 3:
        use = use & (room > 2 * sd)
        a, b = _variance_model(e2_all[use], s2_all[use])
    return {"c2c_abs": math.sqrt(a), "c2c_rel": math.sqrt(b), "pulses": int(use.sum())}


def _variance_model(e2: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """var(e) = a + b s2 with a, b >= 0: absolute noise only, relative only, or both, whichever has the lowest AIC
    of the Gaussian likelihood (two components from a few hundred pulses trade off easily; one is kept unless the
    data need both)."""
    both = _nonnegative_fit(e2, s2)
    candidates = [(float(np.mean(e2)), 0.0), (0.0, float(np.sum(e2 * s2) / max(np.sum(s2 * s2), 1e-300))), both]

    def aic(ab):
        v = np.maximum(ab[0] + ab[1] * s2, 1e-300)
        return 2 * sum(x > 0 for x in ab) + float(np.sum(np.log(v) + e2 / v))
    return min(candidates, key=aic)


def fit_pulse_family(meas: Measurement, family: PulseFamily, init: PulseCard | None = None,
                     free: list[str] | None = None, *, starts: int = 16, max_iter: int = 60, span: float = 10.0,
                     bounds: dict | None = None, rse_limit: float = RSE_LIMIT, seed: int = 0, progress: bool = False,
                     read_voltage: float = 0.1, **ignored) -> FitResult:
    """Fit ``family`` to the pulse curves of ``meas``; parameters not in ``free`` keep ``init``'s values.

    Without ``init`` every parameter is free and starts from estimates of the curve. Returns a
    :class:`memsim.fitting.fit.FitResult` whose ``card`` is a :class:`memsim.pulse.PulseCard` (named ``fit``; the
    command names and writes it) and whose ``extras`` hold the noise estimate and the initial conductances.
    Options of the device fits that do not apply here (``timing``, ``substeps``, ``method``) are ignored."""
    curves = pulse_curves(meas)
    names = family.param_names()
    if init is not None and init.family.name != family.name:
        raise ParameterError("--init", init.name, f"a card of family {family.name}",
                             f"'{init.name}' is a {init.family.name} card")
    free = list(free or names) if init is not None else list(names)
    unknown = [p for p in free if p not in names]
    if unknown:
        raise ParameterError("--free", unknown[0], f"parameters of {family.name}: {names}",
                             suggest(unknown[0], names, "name parameters of the family"))
    needed = {family.direction(n) for n in free} - {None} or {"ltp", "ltd"}
    check_polarities(curves, needed, f"fitting {family.name} ({', '.join(free)})")
    lo, hi = curves.range()
    if init is not None:
        base = dict(init.parameters)
        fixed = [k for k in ("G_min", "G_max") if k not in free]
        problem = outside_window(curves, base["G_min"], base["G_max"], WINDOW_SLACK) if fixed else None
        if problem:
            raise DataError(f"{problem}; with {' and '.join(fixed)} fixed at {init.name}'s value the model cannot reach "
                            f"them. Fix: free {' and '.join(fixed)} (--free), or start from a card whose window holds "
                            "the data")
    else:
        base = family.guess(lo, hi, curves.run_length(1), curves.run_length(-1))
    if curves.n_points <= len(free) + len(curves.labels):
        raise DataError(f"{curves.n_points} measured points for {len(free)} parameters and {len(curves.labels)} initial "
                        "conductance(s): a fit needs more points. Fix: measure a longer curve or fix parameters")
    box = _window_bounds(curves, free, bounds)
    start = {**base, **{k: min(max(base[k], box[k][0]), box[k][1]) for k in ("G_min", "G_max") if k in box}}
    coords = coordinates(family, start, free, span, box)
    w = hi - lo
    g0_coords = [Coord(f"G0[{lab}]", max(lo - 0.2 * w, lo / 2), hi + 0.2 * w, True) for lab in curves.labels]
    first = [float(curves.target[0, j]) for j in range(len(curves.labels))]
    problem = CurveProblem(curves, family, base, coords + g0_coords)
    z0 = _sobol_starts(coords, start, starts, seed)
    z_g0 = torch.tensor([[c.z(v) for c, v in zip(g0_coords, first)]], dtype=torch.float64).expand(z0.shape[0], -1)
    z0 = torch.cat([z0, z_g0], 1)
    t0 = time.perf_counter()
    with one_thread(), progress_bar(total=max_iter, desc=f"fit {family.name}", unit="it", disable=not progress,
                                    leave=False) as bar:
        z, loss, J, its = levenberg_marquardt(problem, z0, max_iter=max_iter, progress=bar)
        problem.weights = problem.noise_weights(z[torch.argmin(loss)].unsqueeze(0))
        if problem.weights is not None:  # the weighted fit, from the two best starts of the unweighted one
            best = torch.argsort(loss)[:2]
            z, loss, J, more = levenberg_marquardt(problem, z[best], max_iter=max(10, max_iter // 2))
            its += more
    seconds = time.perf_counter() - t0
    chosen = None
    for k in torch.argsort(loss).tolist():  # the best start whose parameters satisfy the family's relations
        values = {c.name: float(c.value(float(z[k, j]))) for j, c in enumerate(problem.coords)}
        try:
            params = family.validate({**base, **{c.name: values[c.name] for c in coords}}, where=family.name)
        except ParameterError:
            continue
        chosen = k
        break
    if chosen is None:
        raise FitError(f"no start of the {family.name} fit ended with valid parameters (G_min < G_max); best NRMSE "
                       f"{float(loss.min().sqrt()):.3%}")
    k, lk = chosen, float(loss[chosen])
    report = identifiability(problem.coords, values, J[k], lk, problem.n, rse_limit)
    flag_unidentified(report, problem.coords, z, loss, lk, problem.n, rse_limit)
    weighted = problem.weights is not None
    problem.weights = None
    with torch.no_grad():  # the NRMSE (and the AIC's RSS) unweighted, as every other fit reports them
        lk = float(problem.residuals(z[k:k + 1]).pow(2).sum())
    noise = estimate_noise(curves, family, params)
    card = PulseCard(name="fit", family=family, description="", provenance={"source": "fit"}, parameters=params,
                     noise={"c2c_rel": noise["c2c_rel"], "c2c_abs": noise["c2c_abs"], "d2d_step": 0.0,
                            "d2d_bounds": 0.0}, read_voltage=read_voltage, pulse=curves.pulse)
    g0 = {lab: values[c.name] for lab, c in zip(curves.labels, g0_coords)}
    return FitResult(card=card, family=family, free=free, params=params, nrmse=math.sqrt(lk),
                     report=report[:len(coords)], n_points=problem.n, rss=lk * problem.scale ** 2, seconds=seconds,
                     iterations=its, starts=z0.shape[0], start_nrmse=sorted(loss.sqrt().tolist()),
                     extra_dof=len(g0_coords), extras={"noise": noise, "g0": g0, "weighted": weighted})


def model_curves(result: FitResult, meas: Measurement) -> list[np.ndarray]:
    """Per group, the fitted model's read conductances on the measured pulses (for plots)."""
    curves = pulse_curves(meas)
    family = result.family
    params = dict(result.params)
    g0 = [result.extras["g0"][lab] for lab in curves.labels]
    # no free parameter; each G0 a coordinate on [0, 1] whose value is its z: the fitted G0 passed as it is
    problem = CurveProblem(curves, family, params, [Coord(f"G0[{lab}]", 0.0, 1.0, False) for lab in curves.labels])
    with torch.no_grad():
        y = problem.model(torch.tensor([g0], dtype=torch.float64))[:, 0].numpy()
    return [y[curves.mask[:, j], j] for j in range(len(curves.labels))]
