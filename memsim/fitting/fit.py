"""Fit a family's parameters to a measurement through the torch simulation.

**Loss.** NRMSE = sqrt(mean((y_model - y_meas)^2)) / (max(y_meas) - min(y_meas)), over every point of every group,
with y the current (I-V sweeps) or the read conductance (pulse trains). The same figure is reported for the
torch fit and for the fitted card re-run in ngspice.

**Bounds.** Each free parameter is searched inside its declared range (:class:`memsim.families.Param`); a range
that is open-ended is narrowed around the initial value: a positive (or negative) parameter to
[p0 / span, p0 * span] **in log space** (it may span decades), a parameter that may take either sign to
p0 +- max(|p0|, 0.1) linearly. ``bounds={"name": (lo, hi)}`` overrides a parameter's search range (still inside
the declared one). Internally each parameter is a coordinate z in [0, 1] (log or linear).

**Optimiser.** Multi-start: start 0 is the initial card, the others a scrambled Sobol sample of the box. All
starts run as one batch on the device axis of :class:`memsim.devices.DeviceArray`. ``method="lm"`` (default):
projected Levenberg-Marquardt; the Jacobian of every start comes from central differences evaluated in the same
batched simulation (K starts x (2P + 1) parameter sets in one run). ``method="adam"``: Adam on the loss, with the
gradient by backpropagation through the RK4 simulation (slower; for large free sets).

**Identifiability.** At the optimum the Gauss-Newton Hessian J^T J (J in log units for log parameters) gives the
covariance sigma^2 (J^T J)^-1, sigma^2 = RSS / (N - P). A parameter whose relative standard error exceeds
``rse_limit`` (or which lies in a null direction of J^T J) is reported as *not identified*: its value is the
optimiser's, not a measurement. So is a parameter that differs by more than 2 x ``rse_limit`` between starts that
ended statistically as good as the best (a profile along a curved valley, which the local Hessian misses), and
one that ends on its search bound.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..errors import MemsimError, ParameterError
from ..families import DeviceFamily
from ..progress import progress_bar
from ..devices.cards import Card, with_parameters
from ..schema import suggest
from .data import DataError, Measurement
from .protocol import PulseTiming, protocols, simulate

#: default free parameters per family: the ones that set the I-V shape; parameters that enter only in a fixed
#: combination with another (D with mu_v or k; Ea with Vel0 at a fixed T) stay at the card's value
DEFAULT_FREE = {
    "linear_drift_joglekar": ("R_on", "R_off", "mu_v", "x0"),
    "linear_drift_biolek": ("R_on", "R_off", "mu_v", "x0"),
    "linear_drift_prodromakis": ("R_on", "R_off", "mu_v", "x0"),
    "vteam": ("R_on", "R_off", "k_off", "k_on", "alpha_off", "alpha_on", "v_off", "v_on"),
    "yakopcic": ("a1", "a2", "b", "Vp", "Vn", "Ap", "An", "x0"),
    "stanford_pku": ("I0", "g0", "V0", "Vel0", "gamma0", "beta"),
    "metastable_switch": ("R_on", "R_off", "v_on", "v_off", "k", "tau"),
}

#: relative standard error above which a parameter is reported as not identified
RSE_LIMIT = 0.025


class FitError(MemsimError):
    """The fit did not reach an acceptable result; ``result`` holds the best one found."""

    def __init__(self, message: str, result: "FitResult | None" = None):
        self.result = result
        super().__init__(message)


@dataclass(frozen=True)
class Coord:
    """One free parameter as a coordinate z in [0, 1]: value = lo * (hi/lo)^z (log) or lo + (hi - lo) z."""

    name: str
    lo: float
    hi: float
    log: bool
    sign: float = 1.0

    def value(self, z):
        if self.log:
            a, b = math.log(abs(self.lo)), math.log(abs(self.hi))
            return self.sign * torch.exp(a + (b - a) * z) if isinstance(z, torch.Tensor) else \
                self.sign * math.exp(a + (b - a) * z)
        return self.lo + (self.hi - self.lo) * z

    def z(self, value: float) -> float:
        if self.log:
            a, b = math.log(abs(self.lo)), math.log(abs(self.hi))
            return min(max((math.log(abs(value)) - a) / (b - a), 0.0), 1.0)
        return min(max((value - self.lo) / (self.hi - self.lo), 0.0), 1.0)

    @property
    def width(self) -> float:
        """d(log value)/dz for log coordinates, d(value)/dz for linear ones."""
        return math.log(abs(self.hi) / abs(self.lo)) if self.log else self.hi - self.lo


def coordinates(family: DeviceFamily, init: dict[str, float], free: list[str], span: float = 10.0,
                bounds: dict[str, tuple[float, float]] | None = None) -> list[Coord]:
    specs = {q.name: q for q in family.all_params()}
    if not (isinstance(span, (int, float)) and span > 1 and math.isfinite(span)):
        raise ParameterError("--span", span, "a factor > 1", "e.g. --span 10 (one decade each way)")
    stray = [n for n in (bounds or {}) if n not in free]
    if stray:
        raise ParameterError("--bounds", stray[0], f"one of the free parameters {free}",
                             f"add {stray[0]} to --free or drop its bounds")
    out = []
    for name in free:
        q, p0 = specs[name], init[name]
        # open ends of a finite range are kept out of reach by a hair (1e-9 of the width)
        eps = 1e-9 * (q.hi - q.lo) if math.isfinite(q.hi - q.lo) else 0.0
        lo_decl = q.lo + (eps if q.lo_open else 0.0)
        hi_decl = q.hi - (eps if q.hi_open else 0.0)
        if bounds and name in bounds:
            lo, hi = bounds[name]
            if not (lo < hi and lo >= q.lo and hi <= q.hi) or (q.lo_open and lo <= q.lo) or (q.hi_open and hi >= q.hi):
                raise ParameterError(f"--bounds {name}", (lo, hi), f"lo < hi inside {q.allowed()}",
                                     f"give a search range for {name} inside its declared range")
            log = lo > 0 or hi < 0
            out.append(Coord(name, lo, hi, log, -1.0 if hi < 0 else 1.0) if log else Coord(name, lo, hi, False))
            continue
        if math.isfinite(q.lo) and math.isfinite(q.hi):
            out.append(Coord(name, lo_decl, hi_decl, False))
        elif p0 > 0 and q.lo >= 0:
            out.append(Coord(name, max(p0 / span, q.lo), min(p0 * span, hi_decl), True))
        elif p0 < 0 and q.hi <= 0:
            out.append(Coord(name, max(p0 * span, lo_decl), min(p0 / span, q.hi), True, -1.0))
        else:
            d = max(abs(p0), 0.1)
            out.append(Coord(name, max(p0 - d, lo_decl), min(p0 + d, hi_decl), False))
    return out


@dataclass
class ParamReport:
    name: str
    value: float
    rse: float           # relative standard error (inf: in a null direction)
    identified: bool
    at_bound: bool
    lo: float
    hi: float


@dataclass
class FitResult:
    card: Card                        # the fitted card (not yet written), family + all parameters
    family: DeviceFamily
    free: list[str]
    params: dict[str, float]
    nrmse: float                      # torch
    report: list[ParamReport]
    n_points: int
    rss: float                        # sum of squared residuals in SI units^2
    seconds: float
    iterations: int
    starts: int
    start_nrmse: list[float] = field(default_factory=list)
    nrmse_spice: float | None = None
    #: fitted values that are not card parameters (a behavioural fit's initial conductance per group) count in
    #: the AIC like the free parameters
    extra_dof: int = 0
    #: what a fit knows beyond the parameters (a behavioural fit: noise estimate, initial conductances)
    extras: dict = field(default_factory=dict)

    @property
    def aic(self) -> float:
        n, k = self.n_points, len(self.free) + self.extra_dof
        return n * math.log(max(self.rss, 1e-300) / n) + 2 * k

    @property
    def not_identified(self) -> list[str]:
        return [r.name for r in self.report if not r.identified]

    def table(self) -> str:
        lines = [f"{'parameter':10s} {'value':>13s} {'rel. std err':>12s}  status"]
        for r in self.report:
            rse = "inf" if not math.isfinite(r.rse) else f"{r.rse:.2%}"
            status = "identified" if r.identified else "NOT identified (the data do not determine it)"
            if r.at_bound:
                status += f"; at the search bound [{r.lo:.4g}, {r.hi:.4g}]"
            lines.append(f"{r.name:10s} {r.value:13.6g} {rse:>12s}  {status}")
        return "\n".join(lines)


class Problem:
    """Residuals of candidate coordinate sets against one measurement."""

    def __init__(self, meas: Measurement, card: Card, coords: list[Coord], *, substeps: int = 1,
                 timing: PulseTiming | None = None, dtype=torch.float64):
        self.meas, self.card, self.coords, self.dtype = meas, card, coords, dtype
        self.protos = protocols(meas, substeps=substeps, timing=timing)
        target = meas.target
        self.targets = [torch.as_tensor(g.columns[target], dtype=dtype) for g in meas.groups]
        y = meas.values(target)
        self.span = float(y.max() - y.min())
        if self.span <= 0:
            raise DataError(f"the measured {target} is constant ({y[0]:g}); there is nothing to fit")
        self.n = int(y.size)
        self.scale = self.span * math.sqrt(self.n)
        # groups with the same stimulus are simulated once
        self.unique: dict[tuple, int] = {}
        self.slot = [self.unique.setdefault(p.key(), len(self.unique)) for p in self.protos]
        self.unique_protos = [self.protos[self.slot.index(s)] for s in range(len(self.unique))]

    def params(self, z: torch.Tensor) -> dict:
        return {c.name: c.value(z[:, j]) for j, c in enumerate(self.coords)}

    def model(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Per group ``[n_obs, B]`` model observations for ``z`` [B, P]."""
        p = self.params(z)
        sims = [simulate(self.card, p, proto, z.shape[0], self.dtype) for proto in self.unique_protos]
        return [sims[s] for s in self.slot]

    def residuals(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` scaled so that ||r||^2 = NRMSE^2."""
        ys = self.model(z)
        r = torch.cat([(y - t.unsqueeze(1)) for y, t in zip(ys, self.targets)], dim=0).T / self.scale
        return torch.nan_to_num(r, nan=1e3, posinf=1e3, neginf=-1e3)


def _jacobian(problem: Problem, z: torch.Tensor, h: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals [K, N] and central-difference Jacobian [K, N, P], from one simulation of K (2P + 1) sets."""
    K, P = z.shape
    eye = torch.eye(P, dtype=z.dtype)
    zp = (z.unsqueeze(1) + h * eye).clamp(0, 1)            # [K, P, P]
    zm = (z.unsqueeze(1) - h * eye).clamp(0, 1)
    batch = torch.cat([z.unsqueeze(1), zp, zm], dim=1).reshape(K * (2 * P + 1), P)
    r = problem.residuals(batch).reshape(K, 2 * P + 1, -1)
    dz = (torch.diagonal(zp, dim1=1, dim2=2) - torch.diagonal(zm, dim1=1, dim2=2))  # [K, P]
    # contiguous: einsum over a transposed view takes a slow path (milliseconds instead of microseconds per call)
    J = ((r[:, 1:P + 1] - r[:, P + 1:]) / dz.unsqueeze(-1)).transpose(1, 2).contiguous()
    return r[:, 0], J


def _sobol_starts(coords: list[Coord], init: dict[str, float], starts: int, seed: int) -> torch.Tensor:
    z0 = torch.tensor([[c.z(init[c.name]) for c in coords]], dtype=torch.float64)
    if starts <= 1:
        return z0
    sob = torch.quasirandom.SobolEngine(len(coords), scramble=True, seed=seed).draw(starts - 1).double()
    return torch.cat([z0, 0.05 + 0.9 * sob])


def levenberg_marquardt(problem: Problem, z: torch.Tensor, max_iter: int = 40, tol: float = 1e-4,
                        progress=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Projected LM for every start at once. Returns (z, loss [K], J at z, iterations)."""
    K, P = z.shape
    r, J = _jacobian(problem, z)
    loss = (r * r).sum(1)
    lam = torch.full((K,), 1e-2, dtype=z.dtype)
    stall = torch.zeros(K, dtype=torch.long)
    it = 0
    for it in range(1, max_iter + 1):
        g = torch.einsum("knp,kn->kp", J, r)
        H = torch.einsum("knp,knq->kpq", J, J)
        # parameters at a bound with the gradient pushing outwards are held there this step
        held = ((z <= 0) & (g > 0)) | ((z >= 1) & (g < 0))
        keep = (~held).to(z.dtype)
        Hm = H * keep.unsqueeze(1) * keep.unsqueeze(2)
        d = torch.diagonal(Hm, dim1=1, dim2=2)
        floor = 1e-12 * d.amax(1, keepdim=True).clamp_min(1e-30)
        A = Hm + torch.diag_embed(lam.unsqueeze(1) * (d + floor) + (1 - keep) + floor)
        delta = torch.linalg.solve(A, -(g * keep).unsqueeze(-1)).squeeze(-1)
        z_new = (z + delta).clamp(0, 1)
        r_new, J_new = _jacobian(problem, z_new)
        loss_new = (r_new * r_new).sum(1)
        better = loss_new < loss
        gain = (loss - loss_new) / loss.clamp_min(1e-300)
        # a start stalls when a step gains less than tol, or when steps keep failing at a large damping
        stalled = (better & (gain <= tol)) | (~better & (lam >= 1e4))
        stall = torch.where(stalled, stall + 1, torch.where(better, torch.zeros_like(stall), stall))
        b = better.unsqueeze(1)
        z = torch.where(b, z_new, z)
        r = torch.where(b, r_new, r)
        J = torch.where(b.unsqueeze(2), J_new, J)
        loss = torch.where(better, loss_new, loss)
        lam = torch.where(better, (lam / 3).clamp_min(1e-9), (lam * 4).clamp_max(1e12))
        if progress is not None:
            progress.set_postfix(nrmse=f"{float(loss.min().sqrt()):.3%}")
            progress.update(1)
        # done when every start still in contention (within 2x the best loss) has stalled 4 times in a row
        contending = loss <= 2 * loss.min()
        if bool((stall[contending] >= 4).all()):
            break
    return z, loss, J, it


def adam(problem: Problem, z: torch.Tensor, max_iter: int = 200, lr: float = 0.02, progress=None):
    """Adam on NRMSE^2 with gradients by backpropagation through the RK4 simulation."""
    u = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    best_z, best = z.clone(), torch.full((z.shape[0],), math.inf, dtype=z.dtype)
    for it in range(1, max_iter + 1):
        opt.zero_grad()
        r = problem.residuals(u.clamp(0, 1))
        loss = (r * r).sum(1)
        improved = loss.detach() < best
        best_z[improved] = u.detach().clamp(0, 1)[improved]
        best = torch.minimum(best, loss.detach())
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            u.clamp_(0, 1)
        if progress is not None:
            progress.set_postfix(nrmse=f"{float(best.min().sqrt()):.3%}")
            progress.update(1)
    r, J = _jacobian(problem, best_z)
    return best_z, (r * r).sum(1), J, max_iter


def identifiability(coords: list[Coord], values: dict[str, float], J: torch.Tensor, loss: float, n: int,
                    rse_limit: float = RSE_LIMIT) -> list[ParamReport]:
    """Relative standard errors from the Gauss-Newton Hessian at the optimum (J: [N, P] in z units)."""
    P = len(coords)
    width = torch.tensor([c.width for c in coords], dtype=J.dtype)
    Jn = J / width  # per unit of log-value (log coordinates) or of value (linear ones)
    H = Jn.T @ Jn
    sigma2 = loss / max(n - P, 1)
    evals, evecs = torch.linalg.eigh(H)
    null = evals <= 1e-10 * evals.max().clamp_min(1e-300)
    inv = torch.where(null, torch.zeros_like(evals), 1.0 / evals.clamp_min(1e-300))
    cov = (evecs * inv) @ evecs.T * sigma2
    in_null = (evecs[:, null] ** 2).sum(1) > 1e-3
    out = []
    for j, c in enumerate(coords):
        v = values[c.name]
        se = math.sqrt(max(float(cov[j, j]), 0.0))
        rse = se if c.log else (se / abs(v) if v != 0 else math.inf)
        if bool(in_null[j]):
            rse = math.inf
        z = c.z(v)
        out.append(ParamReport(c.name, v, rse, rse <= rse_limit, z <= 1e-6 or z >= 1 - 1e-6, c.lo, c.hi))
    return out


@contextmanager
def one_thread():
    """One torch thread for the duration of a fit, restored after. A fit evaluates small batches (hundreds of
    candidate sets, [K, P, P] normal equations): a thread pool only adds the latency of waking its workers, which
    made the behavioural fits 4-7x slower on a loaded two-core machine."""
    n = torch.get_num_threads()
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def flag_unidentified(report: list[ParamReport], coords: list[Coord], z: torch.Tensor, loss: torch.Tensor,
                      best: float, n: int, rse_limit: float) -> None:
    """Mark in ``report`` what the data leave open beyond the local Hessian's view.

    A local Hessian cannot see a curved valley: starts that ended statistically as good as the best (chi^2 within
    P of it, chi^2 = loss / sigma^2) but elsewhere show what the data leave open. A value held by the search box is
    the box's, not the data's."""
    P = len(coords)
    equivalent = (loss - best) <= best * P / max(n - P, 1)
    if int(equivalent.sum()) > 1:
        vals = torch.stack([c.value(z[equivalent, j]) for j, c in enumerate(coords)], 1)
        spread = (vals.amax(0) - vals.amin(0)) / vals.abs().amin(0).clamp_min(1e-300)
        for j, r in enumerate(report):
            if float(spread[j]) > 2 * rse_limit:
                r.identified = False
                r.rse = max(r.rse, float(spread[j]) / 2)
    for r in report:
        if r.at_bound:
            r.identified = False


def fit(meas: Measurement, init: Card, free: list[str] | None = None, *, starts: int = 16, max_iter: int = 60,
        method: str = "lm", span: float = 10.0, bounds: dict | None = None, substeps: int = 1,
        timing: PulseTiming | None = None, rse_limit: float = RSE_LIMIT, seed: int = 0,
        progress: bool = False, z_starts: torch.Tensor | None = None) -> FitResult:
    """Fit ``init``'s family to ``meas``; the parameters not in ``free`` keep ``init``'s values."""
    family = init.family
    names = family.param_names()
    free = list(free or DEFAULT_FREE.get(family.name, ()))
    unknown = [p for p in free if p not in names]
    if unknown:
        raise ParameterError("--free", unknown[0], f"parameters of {family.name}: {names}",
                             suggest(unknown[0], names, "name parameters of the family"))
    if not free:
        raise ParameterError("--free", "", f"one or more of {names}", "name the parameters to fit")
    if meas.n_points <= len(free):
        raise DataError(f"{meas.n_points} measured points for {len(free)} free parameters: a fit needs more points "
                        f"than free parameters. Fix: measure more points or fix some of {free}")
    if method not in ("lm", "adam"):
        raise ParameterError("method", method, "'lm' or 'adam'", "use 'lm' (default)")
    coords = coordinates(family, init.parameters, free, span, bounds)
    problem = Problem(meas, init, coords, substeps=substeps, timing=timing)
    z0 = z_starts if z_starts is not None else _sobol_starts(coords, init.parameters, starts, seed)
    t0 = time.perf_counter()
    with one_thread(), progress_bar(total=max_iter, desc=f"fit {family.name}", unit="it", disable=not progress,
                                    leave=False) as bar:
        if method == "lm":
            z, loss, J, its = levenberg_marquardt(problem, z0, max_iter=max_iter, progress=bar)
        else:
            z, loss, J, its = adam(problem, z0, max_iter=max_iter, progress=bar)
    seconds = time.perf_counter() - t0
    order = torch.argsort(loss)
    chosen = None
    for k in order.tolist():  # the best start whose parameters satisfy the family's relations
        values = {c.name: float(c.value(float(z[k, j]))) for j, c in enumerate(coords)}
        try:
            card = with_parameters(init, **values)
        except ParameterError:
            continue
        chosen = k
        break
    if chosen is None:
        raise FitError(f"no start of the {family.name} fit ended with valid parameters (e.g. R_on < R_off); "
                       f"best NRMSE {float(loss.min().sqrt()):.3%}")
    k = chosen
    lk = float(loss[k])
    report = identifiability(coords, values, J[k], lk, problem.n, rse_limit)
    flag_unidentified(report, coords, z, loss, lk, problem.n, rse_limit)
    return FitResult(card=card, family=family, free=free, params=dict(card.parameters), nrmse=math.sqrt(lk),
                     report=report, n_points=problem.n, rss=lk * problem.scale ** 2, seconds=seconds,
                     iterations=its, starts=z0.shape[0], start_nrmse=sorted(loss.sqrt().tolist()))
