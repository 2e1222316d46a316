"""Nodal analysis of one crossbar tile with wire resistance (IR drop), one input vector at a time.

These solvers share one network (:mod:`memsim.crossbar.network`, built from
:class:`memsim.crossbar.circuit.TileCircuit` with its wire layout) with the netlist writer.
For reads of a programmed tile, :func:`memsim.crossbar.operator.tile_operator` turns the linear
case into a matmul; the solvers here are its per-vector reference and serve the node maps.

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
* :func:`solve_approx` - a fixed-point iteration in plain torch: wire drops from cumulative sums
  of the cell currents, iterated until the update falls below a tolerance (it raises when the
  tolerance is not met, and reports its residual).

Units: conductances in S, voltages in V, currents in A. The output is the current
of each column into its sense amplifier (virtual ground), ``[B, cols]``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..devices.array import DeviceArray
from ..errors import ConvergenceError, NonFiniteError, ParameterError
from ..mathns import TORCH
from .circuit import TileCircuit, transistor_conductance
from .network import TileNetwork, tile_network


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


def _cell_stamps(net: TileNetwork, top: np.ndarray, bot: np.ndarray, g: np.ndarray) -> sp.csc_matrix:
    """Conductance stamps of edges ``top -> bot`` (S) over all nodes of ``net``."""
    r = np.concatenate([top, bot, top, bot])
    c = np.concatenate([top, bot, bot, top])
    v = np.concatenate([g, g, -g, -g])
    return sp.csc_matrix((v, (r, c)), shape=(net.n, net.n))


def gate_conductance(circuit: TileCircuit, rows: int, v_gate=None, dtype=torch.float64, device="cpu"):
    """Per-row access-transistor conductance g_T in S ([rows]); None for 0T1R."""
    if circuit.access != "1T1R":
        return None
    t = circuit.transistor
    vg = torch.full((rows,), t.v_gate, dtype=dtype, device=device) if v_gate is None else \
        torch.as_tensor(v_gate, dtype=dtype, device=device).expand(rows)
    return transistor_conductance(TORCH, t.namespace(), vg)


class _Series(torch.autograd.Function):
    """``g gt / (gt + s g)``: ``s = +1`` puts ``g`` in series with ``gt``, ``s = -1`` takes ``gt`` out again.

    Its derivative is ``(gt / (gt + s g))^2``, the squared ratio the forward pass already forms: one pass
    backward instead of autograd's five over every cell of a layer (training evaluates it every step)."""

    @staticmethod
    def forward(ctx, g, gt, s):
        ratio = gt / torch.add(gt, g, alpha=s)
        ctx.save_for_backward(ratio)
        return g * ratio

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad * ratio.square(), None, None


def _series(g: torch.Tensor, gt: torch.Tensor, s: int) -> torch.Tensor:
    if gt.requires_grad and torch.is_grad_enabled():  # a differentiable gate voltage: let autograd see both
        return g * gt / (gt + s * g)
    return _Series.apply(g, gt, s)


def effective_conductance(g: torch.Tensor, circuit: TileCircuit, v_gate=None) -> torch.Tensor:
    """Cell conductance seen between word and bit line: g (0T1R) or g in series with g_T (1T1R)."""
    gt = gate_conductance(circuit, g.shape[-2], v_gate, dtype=g.dtype, device=g.device)
    if gt is None:
        return g
    return _series(g, gt[:, None], 1)


# ---------------------------------------------------------------------------
# linear cells: one sparse LU, batched right-hand sides, adjoint backward
# ---------------------------------------------------------------------------

class _Factored:
    """The nodal matrix of a linear tile, partitioned into free and known nodes, and the LU of its free block.

    With ``L`` the conductance matrix over all nodes and ``u`` all node voltages: ``L_ff u_f = -L_fk u_k``;
    the current into sense amplifier ``j`` is ``-(L u)[sense_j]``.
    """

    def __init__(self, g: np.ndarray, circuit: TileCircuit):
        rows, cols = g.shape
        self.rows, self.cols = rows, cols
        self.net = net = tile_network(rows, cols, circuit)
        self.L = net.laplacian(net.cell_top, net.cell_bottom, g.ravel())
        nf = net.n_free
        self.L_fk = self.L[:nf, nf:]
        self.L_s = self.L.tocsr()[net.sense]
        self.lu = None
        if nf:
            with _serial_blas():
                self.lu = spla.splu(self.L[:nf, :nf].tocsc())

    def _solve_free(self, rhs: np.ndarray, trans: str = "N") -> np.ndarray:
        if self.lu is None:
            return rhs
        with _serial_blas():
            return self.lu.solve(np.asfortranarray(rhs), trans=trans)  # column-major RHS: ~20x faster in SuperLU

    def solve(self, v: np.ndarray) -> np.ndarray:
        """All node voltages [n, B] for input voltages ``v`` [B, rows]."""
        uk = self.net.known_values(v)
        uf = self._solve_free(-(self.L_fk @ uk))
        return np.concatenate([uf, uk], 0)

    def out(self, u: np.ndarray) -> np.ndarray:
        """Column currents [B, cols] (A) from the node voltages of :meth:`solve`."""
        return -(self.L_s @ u).T

    def adjoint(self, grad_out: np.ndarray) -> np.ndarray:
        """Adjoint node vector ``lam`` [n, B] for output gradients [B, cols]: dloss/dL = lam u^T (per edge)."""
        nf = self.net.n_free
        lam_f = self._solve_free(self.L_s[:, :nf].T @ grad_out.T, trans="T")
        return np.concatenate([lam_f, np.zeros((self.rows, grad_out.shape[0])), -grad_out.T], 0)


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
        lam = f.adjoint(grad_out.detach().cpu().double().numpy())
        gv = gg = None
        if ctx.needs_input_grad[1]:
            gv = torch.from_numpy(np.ascontiguousarray((f.L.tocsr()[f.net.src] @ lam).T)).to(grad_out)
        if ctx.needs_input_grad[0]:
            top, bot = f.net.cell_top, f.net.cell_bottom
            gg = torch.from_numpy(((lam[top] - lam[bot]) * (u[top] - u[bot])).sum(axis=1)
                                  .reshape(f.rows, f.cols)).to(grad_out)
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
    vw = np.moveaxis(u[f.net.w], -1, 0)
    vb = np.moveaxis(u[f.net.b], -1, 0)
    vm = None
    if circuit.access == "1T1R":  # the mid node divides the cell voltage between memristor and transistor
        gt = gate_conductance(circuit, g.shape[0], v_gate).numpy()[None, :, None]
        gc = g64.numpy()[None]
        vm = vb + (vw - vb) * gc / (gc + gt)
    return NodeSolution(vw, vb, f.out(u), vm)


def memristor_for_cell(g_cell: torch.Tensor, circuit: TileCircuit, v_gate=None) -> torch.Tensor:
    """Inverse of :func:`effective_conductance`: the memristor conductance giving cell conductance ``g_cell``."""
    gt = gate_conductance(circuit, g_cell.shape[-2], v_gate, dtype=g_cell.dtype, device=g_cell.device)
    if gt is None:
        return g_cell
    return _series(g_cell, gt[:, None], -1)


def solve_ideal(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit | None = None, v_gate=None) -> torch.Tensor:
    """The ideal product ``v @ g`` (no wire resistance), with the 1T1R series conductance if any."""
    geff = g if circuit is None else effective_conductance(g, circuit, v_gate)
    return v @ geff


# ---------------------------------------------------------------------------
# fast approximation (training)
# ---------------------------------------------------------------------------

def solve_approx(g: torch.Tensor, v: torch.Tensor, circuit: TileCircuit, *, tol: float | None = None, max_iter: int = 1000,
                 v_gate=None, return_info: bool = False):
    """Fixed-point IR-drop solve in plain torch (autograd, CUDA), stopped on a tolerance.

    Each iteration takes the cell currents of the previous estimate, computes the word-line drops
    (reverse cumulative sums of the currents times the segment resistances, from the driver) and the
    bit-line rises (cumulative sums towards the sense amplifier), and updates the cell voltages.
    Iteration 0 is the ideal product; the fixed point is the exact nodal solution. It stops when the
    largest cell-voltage update falls below ``tol`` times the largest input voltage, and raises
    :class:`ConvergenceError` (with the residual reached) when that does not happen within ``max_iter``
    iterations or the updates grow: the iteration converges only while the wires' drop is a modest
    fraction of the input (roughly r_wire * G * N^2 < 1).

    ``tol``: default 1e-9 for float64 inputs, 1e-5 for float32 (whose rounding stalls the iteration near 1e-7).
    ``return_info``: also return ``{"iterations": k, "residual": last update / max |v|}``.
    Layouts: one driver per word line and sense amplifiers after one bit-line segment or none.
    """
    if tol is None:
        tol = 1e-9 if v.dtype == torch.float64 else 1e-5
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise ParameterError("tol", tol, "a float in (0, 1)", "give the relative tolerance, e.g. 1e-9")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ParameterError("max_iter", max_iter, "an integer >= 1", "give the iteration budget, e.g. 1000")
    check_inputs(g, v)
    floor = 50 * torch.finfo(v.dtype).eps
    if tol < floor:
        raise ParameterError("tol", tol, f">= {floor:.1g} for {v.dtype} inputs (the iteration cannot resolve less)",
                             "pass float64 voltages for a tighter tolerance, or raise tol")
    w = circuit.wires
    if w.drive != "left":
        raise ParameterError("wires.drive", w.drive, "'left' for the fixed-point solve",
                             "use the exact operator (mode='irdrop') for word lines driven from both ends")
    geff = effective_conductance(g, circuit, v_gate)
    if w.sense_end == "top":
        geff = geff.flip(-2)
        v = v.flip(-1)
    cols = g.shape[1]
    rseg = torch.full((cols,), w.r_wordline, dtype=v.dtype, device=v.device)
    rseg[0] = w.driver_resistance()
    vin = v[..., :, None]
    vc = vin.expand(*v.shape, cols)
    scale = max(float(v.detach().abs().max()), 1e-300)
    steps: list[float] = []
    for k in range(1, max_iter + 1):
        i = geff * vc
        j = torch.flip(torch.cumsum(torch.flip(i, [-1]), -1), [-1])    # word-line segment currents
        vw = vin - torch.cumsum(j * rseg, -1)
        kk = torch.cumsum(i, -2)                                          # bit-line segment currents
        vb = torch.flip(torch.cumsum(torch.flip(kk, [-2]), -2), [-2]) * w.r_bitline
        if not w.sense_segment:  # the last row's node is the amplifier's virtual ground
            vb = vb - w.r_bitline * kk[..., -1:, :]
        step = float((vw - vb - vc).detach().abs().max()) / scale
        vc = vw - vb
        steps.append(step)
        if step <= tol:
            break
        if k >= 3 and step > steps[-2] > steps[-3]:
            raise ConvergenceError(f"fixed-point IR-drop solve diverges on this tile (updates grow: "
                                   f"{steps[-3]:.3g} -> {steps[-2]:.3g} -> {step:.3g} of the input); "
                                   "use the exact operator (mode='irdrop')", residual=step, iterations=k)
    else:
        raise ConvergenceError(f"fixed-point IR-drop solve did not reach tol={tol:g} in {max_iter} iterations "
                               f"(residual {steps[-1]:.3g} of the input); raise max_iter or use the exact operator "
                               "(mode='irdrop')", residual=steps[-1], iterations=max_iter)
    out = (geff * vc).sum(-2)
    return (out, {"iterations": len(steps), "residual": steps[-1]}) if return_info else out


# ---------------------------------------------------------------------------
# nonlinear cells: Newton
# ---------------------------------------------------------------------------

class _CellModel:
    """I(v) of the tile's memristors at frozen states: the family's equation, evaluated with TORCH."""

    def __init__(self, card, x: torch.Tensor, **overrides):
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
    """Damped Newton on the KCL residual of one input vector, over the free nodes of the tile network."""

    def __init__(self, cell: _CellModel, rows: int, cols: int, circuit: TileCircuit, v_gate=None):
        self.cell, self.rows, self.cols, self.circuit = cell, rows, cols, circuit
        self.net = net = tile_network(rows, cols, circuit, mid=True)
        if net.m is not None:  # the access transistors: linear, from the mid node to the bit line
            gt = gate_conductance(circuit, rows, v_gate).numpy()
            self.a_lin = net.laplacian(net.m.ravel(), net.b.ravel(), np.repeat(gt, cols))
        else:
            self.a_lin = net.laplacian(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        self.top, self.bot = net.cell_top, net.cell_bottom
        self.nf = net.n_free
        self.s_rows = self.a_lin.tocsr()[net.sense]

    def cell_currents(self, u):
        vc = u[self.top] - u[self.bot]
        i, d = self.cell(vc.reshape(self.rows, self.cols))
        return i.ravel(), d.ravel()

    def residual(self, u):
        """Net current leaving every node into the network (A), and each cell's dI/dV."""
        i, d = self.cell_currents(u)
        r = self.a_lin @ u
        r += np.bincount(self.top, weights=i, minlength=self.net.n) - np.bincount(self.bot, weights=i, minlength=self.net.n)
        return r, d

    def jacobian(self, d):
        return self.a_lin + _cell_stamps(self.net, self.top, self.bot, d)

    def solve_free(self, j, rhs, trans="N"):
        return spla.splu(j[:self.nf, :self.nf].tocsc()).solve(rhs, trans=trans)

    def solve(self, vin: np.ndarray, tol: float, max_iter: int):
        uk = self.net.known_values(vin[None])[:, 0]
        nf = self.nf
        u = np.concatenate([np.zeros(nf), uk])
        # start: the linear solution with each cell's small-signal conductance at 0 V
        _, d0 = self.cell(np.zeros((self.rows, self.cols)))
        j0 = self.jacobian(d0.ravel())
        if nf:
            u[:nf] = spla.spsolve(j0[:nf, :nf].tocsc(), -(j0[:nf, nf:] @ uk))
        scale = max(1.0, float(np.max(np.abs(vin))))
        r, d = self.residual(u)
        for it in range(1, max_iter + 1):
            if nf == 0:
                return u, 0, d
            du = -self.solve_free(self.jacobian(d), r[:nf])
            fn = np.linalg.norm(r[:nf])
            t = 1.0
            while True:
                un = u.copy()
                un[:nf] += t * du
                rnew, dnew = self.residual(un)
                if np.all(np.isfinite(rnew)) and (np.linalg.norm(rnew[:nf]) <= (1 - 1e-4 * t) * fn or t < 1e-3):
                    break
                t *= 0.5
            u, r, d = un, rnew, dnew
            if not np.all(np.isfinite(u)):
                raise NonFiniteError(f"crossbar Newton iteration {it}: node voltages became non-finite")
            if np.max(np.abs(t * du)) <= tol * scale:
                return u, it, d
        raise NonFiniteError(f"crossbar Newton did not converge in {max_iter} iterations "
                             f"(last step {np.max(np.abs(t * du)):.3g} V); lower the input voltage or wire resistance")

    def out(self, u) -> np.ndarray:
        r, _ = self.residual(u)
        return -r[self.net.sense]


class _NonlinearSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, newton, tol, max_iter):
        vn = v.detach().cpu().double().numpy()
        outs, us, ds, its = [], [], [], []
        for k in range(vn.shape[0]):
            with _serial_blas():
                u, it, d = newton.solve(vn[k], tol, max_iter)
            outs.append(newton.out(u))
            us.append(u), ds.append(d), its.append(it)
        ctx.newton, ctx.us, ctx.ds = newton, us, ds
        newton.last_iterations = max(its) if its else 0
        newton.last_nodes = np.stack(us) if us else None
        return torch.from_numpy(np.stack(outs)).to(dtype=v.dtype, device=v.device)

    @staticmethod
    def backward(ctx, grad_out):
        nt = ctx.newton
        net, nf = nt.net, nt.nf
        go = grad_out.detach().cpu().double().numpy()
        gv = np.zeros((go.shape[0], nt.rows))
        gx = np.zeros(nt.rows * nt.cols)
        for k, (u, d) in enumerate(zip(ctx.us, ctx.ds)):
            jac = nt.jacobian(d).tocsr()
            # adjoint of I = -r_sense(u) with r_free(u) = 0 (the same algebra as the linear solve, J for L)
            lam = np.zeros(net.n)
            lam[net.sense] = -go[k]
            if nf:
                with _serial_blas():
                    lam[:nf] = nt.solve_free(jac, jac[net.sense][:, :nf].T @ go[k], trans="T")
            gv[k] = (jac[net.src] @ lam)
            if ctx.needs_input_grad[0]:
                vc = (u[nt.top] - u[nt.bot]).reshape(nt.rows, nt.cols)
                _, _, didx = nt.cell(vc, want_dx=True)
                gx += (lam[nt.top] - lam[nt.bot]) * didx.ravel()
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
        net = newton.net
        vw = u[:, net.w]
        vb = u[:, net.b]
        vm = u[:, net.m] if net.m is not None else None
        return NodeSolution(vw, vb, out.detach().double().numpy(), vm, newton.last_iterations)
    return out.reshape(*lead, cols)


def relative_error(a, b) -> float:
    """max |a - b| / max |b| (column currents), as a float."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
