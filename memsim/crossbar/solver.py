"""Nodal analysis of one crossbar tile with wire resistance (IR drop).

Three solvers share one topology (:mod:`memsim.crossbar.circuit`):

* :func:`solve_linear` - linear cells (conductances): the sparse nodal matrix is
  assembled, factored once with scipy's SuperLU (``splu``) and applied to a whole
  batch of input vectors. It is a ``torch.autograd.Function``; its backward
  reuses the same factorisation for the adjoint (transposed) solve, so gradients
  with respect to conductances and input voltages cost one more triangular solve
  pair, not a new factorisation.
* :func:`solve_nonlinear` - cells with the card family's own I-V (e.g. the sinh
  of Stanford-PKU) at a frozen state: damped Newton iteration with a sparse LU
  of the Jacobian per step. The cell current is the family's ``bounded_current``
  evaluated with :data:`memsim.mathns.TORCH`; dI/dV comes from autograd, so no
  equation is retyped. Differentiable w.r.t. inputs and states through the
  implicit-function theorem (adjoint solve with the converged Jacobian).
* :func:`solve_approx` - a fast, GPU-friendly fixed-point approximation for
  training: wire drops from cumulative sums of the cell currents, a few
  iterations. Its error against the exact solve is measured by the tests and the
  benchmark (it is exact in the limit and degrades as r_wire * G * N^2 grows).

Units: conductances in S, voltages in V, currents in A. The output is the current
of each column into its sense amplifier (virtual ground), ``[B, cols]``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..errors import NonFiniteError, ParameterError
from ..mathns import TORCH
from .circuit import TileCircuit, transistor_conductance


_BLAS_CONTROLLER = None


def _serial_blas():
    """SuperLU's supernodal solves call BLAS on small blocks; OpenBLAS threads only add overhead there
    (measured: the batched 64x64 and 128x128 solves ran 3x faster with one BLAS thread). Limit BLAS to one
    thread around the sparse LU work (threadpoolctl, a scikit-learn dependency; a no-op without it)."""
    global _BLAS_CONTROLLER
    try:
        if _BLAS_CONTROLLER is None:
            from threadpoolctl import ThreadpoolController
            _BLAS_CONTROLLER = ThreadpoolController()  # after scipy.sparse.linalg loaded its OpenBLAS
        return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
    except ImportError:
        return contextlib.nullcontext()


# ---------------------------------------------------------------------------
# input checks (before any solve)
# ---------------------------------------------------------------------------

def check_inputs(g: torch.Tensor, v: torch.Tensor, name: str = "conductance") -> None:
    if g.dim() != 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ParameterError(f"{name}.shape", tuple(g.shape), "a 2-D [rows, cols] tensor with rows, cols >= 1",
                             "pass one tile's matrix (inputs along rows, outputs along columns)")
    if v.dim() < 1 or v.shape[-1] != g.shape[0]:
        raise ParameterError("voltages.shape", tuple(v.shape), f"[..., {g.shape[0]}] (one voltage per row)",
                             "give one input voltage per word line; the last dimension must equal rows")
    if not torch.isfinite(g).all():
        raise ParameterError(name, "NaN/inf entries", "finite values", "remove NaN/inf before solving")
    if not torch.isfinite(v).all():
        raise ParameterError("voltages", "NaN/inf entries", "finite values", "remove NaN/inf from the inputs")


def check_conductance_positive(g: torch.Tensor, name: str = "conductance") -> None:
    if (g < 0).any():
        raise ParameterError(name, float(g.min()), "conductances >= 0 S", "map weights onto the device window first")


# ---------------------------------------------------------------------------
# topology: node numbering and stamps
# ---------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _topology(rows: int, cols: int, mid: bool):
    """Node indices: word-line nodes W, bit-line nodes B (and 1T1R mid nodes M)."""
    w = np.arange(rows * cols).reshape(rows, cols)
    b = rows * cols + w
    m = 2 * rows * cols + w if mid else None
    n = (3 if mid else 2) * rows * cols
    return w, b, m, n


def _pair(a: np.ndarray, c: np.ndarray, g: np.ndarray):
    """COO stamps of conductances g between node arrays a and c."""
    a, c = a.ravel(), c.ravel()
    g = np.broadcast_to(np.asarray(g, dtype=float).ravel() if np.ndim(g) else g, a.shape)
    return (np.concatenate([a, c, a, c]), np.concatenate([a, c, c, a]), np.concatenate([g, g, -g, -g]))


def _wire_coo(rows: int, cols: int, circuit: TileCircuit, mid: bool):
    w, b, _, n = _topology(rows, cols, mid)
    wires = circuit.wires
    gw, gb, g0 = 1.0 / wires.r_wordline, 1.0 / wires.r_bitline, 1.0 / (wires.r_source + wires.r_wordline)
    parts = [_pair(w[:, :-1], w[:, 1:], np.full(rows * (cols - 1), gw)),
             _pair(b[:-1, :], b[1:, :], np.full((rows - 1) * cols, gb))]
    diag_idx = np.concatenate([w[:, 0], b[-1, :]])
    diag_val = np.concatenate([np.full(rows, g0), np.full(cols, gb)])
    parts.append((diag_idx, diag_idx, diag_val))
    return parts, g0, gb


def _matrix(n: int, parts) -> sp.csc_matrix:
    r = np.concatenate([p[0] for p in parts])
    c = np.concatenate([p[1] for p in parts])
    v = np.concatenate([p[2] for p in parts])
    return sp.csc_matrix((v, (r, c)), shape=(n, n))


def gate_conductance(circuit: TileCircuit, rows: int, v_gate=None, dtype=torch.float64, device="cpu"):
    """Per-row access-transistor conductance g_T in S ([rows]); None for 0T1R."""
    if circuit.access != "1T1R":
        return None
    t = circuit.transistor
    vg = torch.full((rows,), t.v_gate, dtype=dtype, device=device) if v_gate is None else \
        torch.as_tensor(v_gate, dtype=dtype, device=device).expand(rows)
    return transistor_conductance(TORCH, t.namespace(), vg)


def effective_conductance(g: torch.Tensor, circuit: TileCircuit, v_gate=None) -> torch.Tensor:
    """Cell conductance seen between word and bit line: g (0T1R) or g in series with g_T (1T1R)."""
    gt = gate_conductance(circuit, g.shape[-2], v_gate, dtype=g.dtype, device=g.device)
    if gt is None:
        return g
    gt = gt[:, None]
    return g * gt / (g + gt)


# ---------------------------------------------------------------------------
# linear cells: splu once, batched RHS, adjoint backward
# ---------------------------------------------------------------------------

class _Factored:
    """The nodal matrix of a linear tile and its LU factors."""

    def __init__(self, g: np.ndarray, circuit: TileCircuit):
        rows, cols = g.shape
        self.rows, self.cols = rows, cols
        w, b, _, n = _topology(rows, cols, False)
        parts, self.g0, self.gb = _wire_coo(rows, cols, circuit, False)
        parts.append(_pair(w, b, g))
        self.w, self.b, self.n = w, b, n
        with _serial_blas():
            self.lu = spla.splu(_matrix(n, parts))

    def solve(self, v: np.ndarray) -> np.ndarray:
        """Node voltages [n, B] for input voltages v [B, rows]."""
        rhs = np.zeros((self.n, v.shape[0]), order="F")  # SuperLU solves column-major RHS ~20x faster
        rhs[self.w[:, 0]] = self.g0 * v.T
        with _serial_blas():
            return self.lu.solve(rhs)

    def out(self, u: np.ndarray) -> np.ndarray:
        return (self.gb * u[self.b[-1, :]]).T  # [B, cols]


class _LinearSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, v, circuit, factors):
        f = factors if factors is not None else _Factored(g.detach().cpu().double().numpy(), circuit)
        u = f.solve(v.detach().cpu().double().numpy())
        ctx.f, ctx.u = f, u
        return torch.from_numpy(f.out(u)).to(dtype=v.dtype, device=v.device)

    @staticmethod
    def backward(ctx, grad_out):
        f, u = ctx.f, ctx.u
        go = grad_out.detach().cpu().double().numpy()  # [B, cols]
        rhs = np.zeros((f.n, go.shape[0]), order="F")
        rhs[f.b[-1, :]] = f.gb * go.T
        with _serial_blas():
            lam = f.lu.solve(rhs, trans="T")  # adjoint: A^T lam = dI/du^T grad
        gv = gg = None
        if ctx.needs_input_grad[1]:
            gv = torch.from_numpy((f.g0 * lam[f.w[:, 0]]).T.copy()).to(grad_out)
        if ctx.needs_input_grad[0]:
            dl = lam[f.w.ravel()] - lam[f.b.ravel()]
            du = u[f.w.ravel()] - u[f.b.ravel()]
            gg = torch.from_numpy(-(dl * du).sum(axis=1).reshape(f.rows, f.cols)).to(grad_out)
        return gg, gv, None, None


def factor_tile(g: torch.Tensor, circuit: TileCircuit, v_gate=None) -> _Factored:
    """The sparse LU factors of a tile, to reuse over many :func:`solve_linear` calls (a programmed chip)."""
    check_inputs(g, g.new_zeros(g.shape[0]))
    check_conductance_positive(g)
    geff = effective_conductance(g.detach(), circuit, v_gate)
    return _Factored(geff.cpu().double().numpy(), circuit)


def solve_linear(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit, v_gate=None, factors=None) -> torch.Tensor:
    """Column currents [..., cols] in A of a tile of linear cells ``g`` [rows, cols] (S) driven by ``v`` [..., rows] (V).

    Exact nodal solution with wire resistance; differentiable w.r.t. ``g`` and ``v``.
    For 1T1R the access transistor is a series conductance set by the row's gate voltage.
    ``factors``: the tile's :func:`factor_tile` result for these same ``g``, ``circuit`` and ``v_gate``
    (skips the factorisation; the caller guarantees they match).
    """
    check_inputs(g, v)
    check_conductance_positive(g)
    lead = v.shape[:-1]
    geff = effective_conductance(g, circuit, v_gate)
    out = _LinearSolve.apply(geff, v.reshape(-1, g.shape[0]), circuit, factors)
    return out.reshape(*lead, g.shape[1])


@dataclass
class NodeSolution:
    """Node voltages of a solved tile (V), ``[B, rows, cols]``, and column currents ``[B, cols]`` (A)."""

    v_wordline: np.ndarray
    v_bitline: np.ndarray
    i_out: np.ndarray
    v_mid: np.ndarray | None = None
    iterations: int = 1

    @property
    def v_cell(self) -> np.ndarray:
        """Voltage across the memristor of each cell."""
        top = self.v_wordline
        bottom = self.v_mid if self.v_mid is not None else self.v_bitline
        return top - bottom


def solve_linear_nodes(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit, v_gate=None) -> NodeSolution:
    """Like :func:`solve_linear` but returns every node voltage (no autograd); for maps and plots."""
    check_inputs(g, v)
    check_conductance_positive(g)
    v2 = v.reshape(-1, g.shape[0]).detach().double().cpu()
    g64 = g.detach().double().cpu()
    geff = effective_conductance(g64, circuit, v_gate)
    f = _Factored(geff.numpy(), circuit)
    u = f.solve(v2.numpy())
    rows, cols = g.shape
    vw = u[f.w.ravel()].T.reshape(-1, rows, cols)
    vb = u[f.b.ravel()].T.reshape(-1, rows, cols)
    vm = None
    if circuit.access == "1T1R":  # the mid node divides the cell voltage between memristor and transistor
        gt = gate_conductance(circuit, rows, v_gate).numpy()[None, :, None]
        gc = g64.numpy()[None]
        vm = vb + (vw - vb) * gc / (gc + gt)
    return NodeSolution(vw, vb, f.out(u), vm)


def memristor_for_cell(g_cell: torch.Tensor, circuit: TileCircuit, v_gate=None) -> torch.Tensor:
    """Inverse of :func:`effective_conductance`: the memristor conductance giving cell conductance ``g_cell``."""
    gt = gate_conductance(circuit, g_cell.shape[-2], v_gate, dtype=g_cell.dtype, device=g_cell.device)
    if gt is None:
        return g_cell
    gt = gt[:, None]
    return gt * g_cell / (gt - g_cell)


def solve_ideal(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit | None = None, v_gate=None) -> torch.Tensor:
    """The ideal product ``v @ g`` (no wire resistance), with the 1T1R series conductance if any."""
    geff = g if circuit is None else effective_conductance(g, circuit, v_gate)
    return v @ geff


# ---------------------------------------------------------------------------
# fast approximation (training)
# ---------------------------------------------------------------------------

def solve_approx(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit, iterations: int = 3,
                 v_gate=None, check: bool = True) -> torch.Tensor:
    """Fixed-point IR-drop estimate: O(rows*cols) per vector, pure torch (autograd, CUDA).

    Each iteration takes the cell currents of the previous estimate, computes the
    word-line drops (reverse cumulative sum of currents times segment resistances,
    from the driver) and bit-line rises (cumulative sums towards the sense
    amplifier), and updates the cell voltages. Iteration 0 is the ideal product;
    the fixed point is the exact nodal solution. Accurate while the total wire
    drop is a modest fraction of the input (r_wire * G * N^2 << 1).

    With ``check`` (default) a tile on which the iteration diverges (its last update larger than
    the one before and above 1e-3 of the largest input) raises :class:`ParameterError` instead of
    returning a meaningless estimate: use the exact solve (``mode="irdrop"``) there.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ParameterError("iterations", iterations, "an integer >= 0", "use e.g. 3")
    check_inputs(g, v)
    geff = effective_conductance(g, circuit, v_gate)
    w = circuit.wires
    cols = g.shape[1]
    rseg = torch.full((cols,), w.r_wordline, dtype=v.dtype, device=v.device)
    rseg[0] = w.r_source + w.r_wordline
    vin = v[..., :, None]
    vc = vin.expand(*v.shape, cols)
    steps = []
    for _ in range(iterations):
        i = geff * vc
        j = torch.flip(torch.cumsum(torch.flip(i, [-1]), -1), [-1])    # word-line segment currents
        vw = vin - torch.cumsum(j * rseg, -1)
        k = torch.cumsum(i, -2)                                          # bit-line segment currents
        vb = torch.flip(torch.cumsum(torch.flip(k, [-2]), -2), [-2]) * w.r_bitline
        if check:
            steps.append(float((vw - vb - vc).detach().abs().max()))
        vc = vw - vb
    if check and len(steps) >= 2 and steps[-1] > steps[-2] and steps[-1] > 1e-3 * float(v.detach().abs().max()):
        raise ParameterError("mode", "approx", "a tile on which the fixed-point IR-drop estimate converges "
                             f"(here its updates grow: {steps[-2]:.3g} V -> {steps[-1]:.3g} V)",
                             "use the exact solve (mode='irdrop') for this tile size / wire resistance")
    return (geff * vc).sum(-2)


# ---------------------------------------------------------------------------
# nonlinear cells: Newton
# ---------------------------------------------------------------------------

class _CellModel:
    """I(v) of the tile's memristors at frozen states: the family's equation, evaluated with TORCH."""

    def __init__(self, card, x: torch.Tensor, **overrides):
        from ..device import DeviceArray
        self.dev = DeviceArray.from_card(card, shape=tuple(x.shape), dtype=torch.float64, **overrides)
        self.x = x.detach().double().cpu()

    def __call__(self, vcell: np.ndarray, want_dx: bool = False):
        with torch.enable_grad():  # also inside an autograd.Function's forward
            v = torch.from_numpy(np.ascontiguousarray(vcell)).requires_grad_(True)
            x = self.x.expand_as(v).clone().requires_grad_(want_dx)
            i = self.dev.current(v, x)
            grads = torch.autograd.grad(i.sum(), [v, x] if want_dx else [v])
        out = [i.detach().numpy(), grads[0].numpy()]
        if want_dx:
            out.append(grads[1].numpy())
        return out


class _Newton:
    """Damped Newton on the KCL residual of one input vector."""

    def __init__(self, cell: _CellModel, rows: int, cols: int, circuit: TileCircuit, v_gate=None):
        self.cell, self.rows, self.cols, self.circuit = cell, rows, cols, circuit
        mid = circuit.access == "1T1R"
        w, b, m, n = _topology(rows, cols, mid)
        parts, self.g0, self.gb = _wire_coo(rows, cols, circuit, mid)
        if mid:
            gt = gate_conductance(circuit, rows, v_gate).numpy()
            parts.append(_pair(m, b, np.broadcast_to(gt[:, None], (rows, cols)).copy()))
            self.top, self.bot = w.ravel(), m.ravel()  # memristor from word line to mid node
        else:
            self.top, self.bot = w.ravel(), b.ravel()
        self.w, self.b, self.m, self.n = w, b, m, n
        self.parts = parts
        self.a_lin = _matrix(n, parts)

    def residual(self, u, rhs):
        vc = u[self.top] - u[self.bot]
        i, d = self.cell(vc.reshape(self.rows, self.cols))
        f = self.a_lin @ u - rhs
        f[self.top] += i.ravel()
        f[self.bot] -= i.ravel()
        return f, d.ravel()

    def jacobian(self, d):
        return _matrix(self.n, self.parts + [_pair(self.top, self.bot, d)])

    def solve(self, vin: np.ndarray, tol: float, max_iter: int):
        rhs = np.zeros(self.n)
        rhs[self.w[:, 0]] = self.g0 * vin
        # start: the linear solution with each cell's small-signal conductance at 0 V
        _, d0 = self.cell(np.zeros((self.rows, self.cols)))
        u = spla.spsolve(self.jacobian(d0.ravel()), rhs)
        scale = max(1.0, float(np.max(np.abs(vin))))
        f, d = self.residual(u, rhs)
        for it in range(1, max_iter + 1):
            lu = spla.splu(self.jacobian(d))
            du = -lu.solve(f)
            fn = np.linalg.norm(f)
            t = 1.0
            while True:
                un = u + t * du
                fnew, dnew = self.residual(un, rhs)
                if np.all(np.isfinite(fnew)) and (np.linalg.norm(fnew) <= (1 - 1e-4 * t) * fn or t < 1e-3):
                    break
                t *= 0.5
            u, f, d = un, fnew, dnew
            if not np.all(np.isfinite(u)):
                raise NonFiniteError(f"crossbar Newton iteration {it}: node voltages became non-finite")
            if np.max(np.abs(t * du)) <= tol * scale:
                return u, it, spla.splu(self.jacobian(d))
        raise NonFiniteError(f"crossbar Newton did not converge in {max_iter} iterations "
                             f"(last step {np.max(np.abs(t * du)):.3g} V); lower the input voltage or wire resistance")


class _NonlinearSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, newton, tol, max_iter):
        vn = v.detach().cpu().double().numpy()
        outs, us, lus, its = [], [], [], []
        for k in range(vn.shape[0]):
            with _serial_blas():
                u, it, lu = newton.solve(vn[k], tol, max_iter)
            outs.append(newton.gb * u[newton.b[-1, :]])
            us.append(u), lus.append(lu), its.append(it)
        ctx.newton, ctx.us, ctx.lus = newton, us, lus
        newton.last_iterations = max(its) if its else 0
        newton.last_nodes = np.stack(us) if us else None
        return torch.from_numpy(np.stack(outs)).to(dtype=v.dtype, device=v.device)

    @staticmethod
    def backward(ctx, grad_out):
        nt = ctx.newton
        go = grad_out.detach().cpu().double().numpy()
        gv = np.zeros((go.shape[0], nt.rows))
        gx = np.zeros(nt.rows * nt.cols)
        for k, (u, lu) in enumerate(zip(ctx.us, ctx.lus)):
            rhs = np.zeros(nt.n)
            rhs[nt.b[-1, :]] = nt.gb * go[k]
            with _serial_blas():
                lam = lu.solve(rhs, trans="T")
            gv[k] = nt.g0 * lam[nt.w[:, 0]]
            if ctx.needs_input_grad[0]:
                vc = (u[nt.top] - u[nt.bot]).reshape(nt.rows, nt.cols)
                _, _, didx = nt.cell(vc, want_dx=True)
                gx -= (lam[nt.top] - lam[nt.bot]) * didx.ravel()
        gxt = torch.from_numpy(gx.reshape(nt.rows, nt.cols)).to(grad_out) if ctx.needs_input_grad[0] else None
        gvt = torch.from_numpy(gv).to(grad_out) if ctx.needs_input_grad[1] else None
        return gxt, gvt, None, None, None


def solve_nonlinear(card, x: torch.Tensor, v: torch.Tensor, circuit: TileCircuit, *, v_gate=None,
                    tol: float = 1e-13, max_iter: int = 100, return_nodes: bool = False, **overrides):
    """Column currents [..., cols] (A) of a tile of the card's memristors at states ``x`` [rows, cols] in [0, 1].

    Newton iteration on Kirchhoff's current law with the family's own I-V; each
    step factorises the sparse Jacobian. Differentiable w.r.t. ``x`` and ``v``.
    With ``return_nodes`` a :class:`NodeSolution` is returned instead (no autograd).
    """
    check_inputs(x, v, name="state")
    if (x < 0).any() or (x > 1).any():
        bad = x[(x < 0) | (x > 1)].flatten()[0].item()
        raise ParameterError("state", bad, "[0, 1] (normalised device state)", "map conductances to states first")
    if not (isinstance(tol, float) and 0 < tol < 1e-3):
        raise ParameterError("tol", tol, "a float in (0, 1e-3)", "use the default 1e-13")
    rows, cols = x.shape
    newton = _Newton(_CellModel(card, x, **overrides), rows, cols, circuit, v_gate)
    lead = v.shape[:-1]
    v2 = v.reshape(-1, rows)
    out = _NonlinearSolve.apply(x, v2, newton, tol, max_iter)
    if return_nodes:
        u = newton.last_nodes
        vw = u[:, newton.w.ravel()].reshape(-1, rows, cols)
        vb = u[:, newton.b.ravel()].reshape(-1, rows, cols)
        vm = u[:, newton.m.ravel()].reshape(-1, rows, cols) if newton.m is not None else None
        return NodeSolution(vw, vb, out.detach().double().numpy(), vm, newton.last_iterations)
    return out.reshape(*lead, cols)


def relative_error(a, b) -> float:
    """max |a - b| / max |b| (column currents), as a float."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
