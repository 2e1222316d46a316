"""The exact linear operator of a programmed tile: column currents ``I = V @ A(G, wires)``.

With linear cells (0T1R resistors; 1T1R cells with the transistor as a series conductance) a tile
is a linear map from word-line voltages to sense-amplifier currents. :func:`tile_operator` computes
that ``rows x cols`` matrix ``A`` for a whole batch of tiles ``[..., rows, cols]`` at once, exactly
(to float64 rounding), so every later read is a matmul: exact IR drop at the cost of an ideal product.

How: block Gaussian elimination along the word lines (the array's banded structure), batched over tiles.

1. Each bit line is a tridiagonal chain. Eliminating it exactly leaves, for column ``j``, a dense
   ``rows x rows`` conductance ``Y_j`` seen from the word-line nodes of that column and the vector
   ``c_j`` of its sense current per word-line voltage. Its inverse is semiseparable, so ``Y_j`` and
   ``c_j`` come from O(rows) pivot recurrences (computed for all columns and tiles at once).
2. A sweep from the far end of the word lines to the driver keeps the Schur complement ``S``
   (rows x rows) of the columns already eliminated, and how their sense currents depend on the
   interface voltages. Each step is one batched Cholesky inverse: O(cols * rows^3) per tile in all,
   a few large batched kernels per column rather than a sparse factorisation per tile.

The precompute runs wherever ``g`` lives (CPU or CUDA), in float64 (hardware-aware training asks for float32,
twice as fast, about 1e-5 relative: the pivot recurrences and the Schur update carry only the cells' small share,
never ``gw`` cancelling ``gw``). It is differentiable: for word lines
driven from one end (the common layout) a hand-written adjoint reuses the sweep's inverses (backward
about 1.5 forwards); other layouts go through autograd. When the tensors kept for the backward pass would
take more than a quarter of the free memory, the tiles are processed in chunks under activation
checkpointing (slower, bounded memory). The gradient with respect to the conductances is computed once
per operator (once per optimiser step), not once per read.

:func:`sparse_operator` computes the same matrix from the sparse nodal solve of
:mod:`memsim.crossbar.solver` (one LU, ``rows`` right-hand sides); the tests check one against the other
and against ngspice, and the benchmark compares their speed.
"""
from __future__ import annotations

import math
import os

import torch
from torch.utils.checkpoint import checkpoint

from ..devices.array import DeviceArray
from ..errors import ParameterError
from .circuit import TileCircuit, Wires
from .solver import check_conductance_positive, effective_conductance, factor_tile

#: tiles per checkpointed chunk when the operator's gradient would not fit in memory otherwise
GRAD_CHUNK = 16


def _bitline(d: torch.Tensor, w: Wires) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Pivot data of every bit line: ``d`` [N, C, R] cell conductances, sense amplifier after row R-1.

    Returns (inverse diagonal [N, C, m], cumulative log ratios [N, C, m], chain length m) for the chain of
    free bit-line nodes 0..m-1 (m = R with a sense segment, R - 1 without: the last row's node is then the
    sense amplifier itself). ``K^-1[p, q] = inv_diag[max(p, q)] * exp(lf[max(p, q)] - lf[min(p, q)])``.
    """
    R = d.shape[-1]
    m = R if w.sense_segment else R - 1
    gb = 1.0 / w.r_bitline
    if m == 0:
        return d.new_zeros(d.shape[:-1] + (0,)), d.new_zeros(d.shape[:-1] + (0,)), 0
    dc = d[..., :m]
    # LDL^T pivots from the top (delta) and from the bottom (eps) of the chain K = Lb + D, written as
    # delta = gb + e and eps = gb [n > 0] + f so that the recurrences carry only the small parts e, f: the
    # textbook form a - gb^2 / delta cancels gb against gb and loses the cells' share (~1e-4 of gb) in float32.
    e = [dc[..., 0]]
    for k in range(1, m):
        e.append(dc[..., k] + gb * e[-1] / (gb + e[-1]))
    f = [dc[..., m - 1] + gb]  # the last node also links down to the amplifier
    for k in range(m - 2, -1, -1):
        f.append(dc[..., k] + gb * f[-1] / (gb + f[-1]))
    e = torch.stack(e, -1)
    f = torch.stack(f[::-1], -1)
    inv_diag = 1.0 / (e + f - dc)  # 1 / (delta + eps - a)
    ratio = -torch.log1p(e / gb)    # log(gb / delta)
    lf = torch.cat([torch.zeros_like(ratio[..., :1]), torch.cumsum(ratio[..., :-1], -1)], -1)
    return inv_diag, lf, m


_UPPER: dict = {}


def _upper(m: int, device) -> torch.Tensor:
    """The [m, m] mask p <= q (cached: bool .triu() is a slow path on the CPU)."""
    key = (m, str(device))
    if key not in _UPPER:
        idx = torch.arange(m, device=device)
        _UPPER[key] = idx[:, None] <= idx[None, :]
    return _UPPER[key]


def _moderate_fall(lf: torch.Tensor) -> bool:
    """Whether ``exp(-lf)`` and ``exp(lf)`` stay far from overflow in ``lf``'s dtype (the outer-product forms hold)."""
    return float(lf[:, -1].detach().min()) > (-300.0 if lf.dtype == torch.float64 else -40.0)


def _kinv(inv_diag: torch.Tensor, lf: torch.Tensor) -> torch.Tensor:
    """The inverse [N, m, m] of the bit-line chain matrices from their pivot data (see :func:`_bitline`).

    ``K^-1[p, q] = inv_diag[q] exp(lf[q] - lf[p])`` for p <= q (lf falls with the index). While the total fall is
    moderate (always, unless cells rival the bit line's own conductance over hundreds of rows) that is an outer
    product of exp(-lf) and inv_diag exp(lf); beyond, exp(-|lf[q] - lf[p]|) avoids the overflow."""
    upper = _upper(lf.shape[-1], lf.device)
    if _moderate_fall(lf):
        u = inv_diag * torch.exp(lf)
        kinv = torch.exp(-lf)[:, :, None] * u[:, None, :]
        return torch.where(upper, kinv, kinv.transpose(1, 2))
    kinv = torch.exp(-(lf[:, None, :] - lf[:, :, None]).abs())
    return kinv * torch.where(upper, inv_diag[:, None, :], inv_diag[:, :, None])


def _column(d: torch.Tensor, inv_diag, lf, m: int, gb: float, ideal_bitline: bool):
    """``Y`` [N, R, R] and ``c`` [N, R] of one column (``d`` [N, R], pivot data [N, m])."""
    N, R = d.shape
    if ideal_bitline or m == 0:
        y = d.new_zeros(N, R, R)
        y.diagonal(dim1=1, dim2=2).copy_(d)
        return y, d
    dc = d[:, :m]
    if _moderate_fall(lf):
        # Y = D - D K^-1 D with K^-1[p, q] = exp(-lf[p]) inv_diag[q] exp(lf[q]) (p <= q): for p <= q,
        # Y[p, q] = -a[p] b[q] with a = d exp(-lf), b = d inv_diag exp(lf): one outer product, mirrored
        a = dc * torch.exp(-lf)
        b = dc * inv_diag * torch.exp(lf)
        outer = a[:, :, None] * b.neg()[:, None, :]
        yc = torch.where(_upper(m, d.device), outer, outer.transpose(1, 2))
        c = (gb * inv_diag[:, m - 1] * torch.exp(lf[:, m - 1]))[:, None] * a
    else:
        kinv = _kinv(inv_diag, lf)
        c = gb * dc * kinv[:, :, m - 1]
        yc = -(dc[:, :, None] * kinv * dc[:, None, :])
    y = yc if m == R else torch.nn.functional.pad(yc, (0, R - m, 0, R - m))
    y.diagonal(dim1=1, dim2=2).add_(d)
    if m < R:  # the last row's cell feeds the amplifier directly
        c = torch.cat([c, d[:, m:]], -1)
    return y, c


def _add_diag(a: torch.Tensor, value: float) -> torch.Tensor:
    """``a + value * I`` (batched), without materialising an identity."""
    out = a.clone()
    out.diagonal(dim1=-2, dim2=-1).add_(value)
    return out


def _spd_inverse(s: torch.Tensor) -> torch.Tensor:
    """Inverse of symmetric positive definite matrices ``s`` [N, n, n] from their Cholesky factor.

    For batches of small blocks (n <= 128) ``L^-T L^-1`` from one triangular solve against the identity is faster
    on the CPU than ``cholesky_inverse`` (64x64: 1.5 vs 2.5 ms per 104 blocks in float32); from 256 on LAPACK's
    ``potri`` wins (512: 1.9 vs 5.6 ms)."""
    factor, info = torch.linalg.cholesky_ex(s)
    if bool(info.any()):
        torch.linalg.cholesky(s)  # raises torch's own error, naming the failing matrix
    if s.shape[-1] >= 256:
        return torch.cholesky_inverse(factor)
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device).expand_as(s)
    inv_factor = torch.linalg.solve_triangular(factor, eye, upper=False)
    return inv_factor.transpose(-2, -1) @ inv_factor


#: float32 sweeps take H = (S + gw I)^-1 from its Neumann series when it converges this fast or faster
NEUMANN_MAX_RATIO = 0.25
#: ... and sum it to this relative truncation error (well below float32's own rounding over a sweep)
NEUMANN_TOL = 1e-9


def _neumann(s: torch.Tensor, gw: float):
    """``(H, H S)`` for ``H = (S + gw I)^-1`` from ``H S = X - X^2 + X^3 - ...``, ``X = S / gw``, or None.

    The word lines' segment conductance ``gw`` dominates the Schur complement ``S`` of the cells (~1e-2 against
    1 S for 1 Ohm wires), so the series converges in a few terms: with ``rho = ||X||_inf`` the tail after ``k``
    terms is at most ``rho^(k+1) / (1 - rho)`` relative, and ``k`` is chosen for :data:`NEUMANN_TOL`. It costs ``k``
    batched products where the Cholesky route costs a factorisation, a triangular solve and two products (about
    3x more on the CPU for 64x64 blocks). None when ``rho`` exceeds :data:`NEUMANN_MAX_RATIO` (weak or long wires)."""
    x = s * (1.0 / gw)
    rho = float(x.abs().sum(-1).amax())
    if not rho < NEUMANN_MAX_RATIO:
        return None
    k = 1
    while rho ** (k + 1) / (1.0 - rho) > NEUMANN_TOL:
        k += 1
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device).expand_as(s)
    z = None
    for _ in range(k - 1):  # Horner: H S = X (I - X (I - X (...)))
        z = eye - x if z is None else torch.baddbmm(eye, x, z, alpha=-1.0)
    h_s = x if z is None else x @ z
    return (eye - h_s).mul_(1.0 / gw), h_s


def _inverse(s: torch.Tensor, gw: float):
    """``(H, H S)`` with ``H = (S + gw I)^-1``; ``H S`` only in float32 (see :func:`_advance`), else None."""
    if s.dtype == torch.float64:
        return _spd_inverse(_add_diag(s, gw)), None
    pair = _neumann(s, gw)
    if pair is not None:
        return pair
    h = _spd_inverse(_add_diag(s, gw))
    return h, h @ s


def _advance(h, h_s, s, o, y, c, gw: float):
    """One step of the sweep: ``O <- [c_j, gw H O]`` and ``S <- Y_j + gw I - gw^2 H`` with ``H = (S + gw I)^-1``.

    In float32 the update goes through ``H S = I - gw H``, so that ``gw I`` never cancels against ``gw^2 H`` (the
    cells' share is ~1e-4 of ``gw`` and would lose most of its digits); in float64 the cancellation costs nothing
    worth the extra product."""
    if h_s is None:
        o = torch.cat([c[:, :, None], gw * (h @ o)], -1)
        s = torch.add(y, h, alpha=-gw * gw)
        s.diagonal(dim1=1, dim2=2).add_(gw)
        return o, s
    return torch.cat([c[:, :, None], o - h_s @ o], -1), torch.add(y, h_s, alpha=gw)


def _sweep(g: torch.Tensor, w: Wires) -> torch.Tensor:
    """The operator of tiles ``g`` [N, R, C] (cell conductances, S; float64) with the sense amplifiers at the bottom."""
    N, R, C = g.shape
    if w.drive == "left" and w.r_wordline > 0 and C > 1 and g.requires_grad and torch.is_grad_enabled():
        return _LeftDrivenSweep.apply(g, w)
    d = g.transpose(1, 2).contiguous()  # [N, C, R]: one bit line per column; contiguous column slices
    ideal_b = w.r_bitline == 0
    if ideal_b:
        gb, inv_diag, lf, m = math.inf, None, None, 0
    else:
        gb = 1.0 / w.r_bitline
        inv_diag, lf, m = _bitline(d, w)

    def column(j):
        return _column(d[:, j], None if ideal_b else inv_diag[:, j], None if ideal_b else lf[:, j], m, gb, ideal_b)

    r_drv = w.driver_resistance()
    g_drv = math.inf if r_drv == 0 else 1.0 / r_drv
    both = w.drive == "both"

    if w.r_wordline == 0:  # each word line is one node shared by all its cells
        ys, cs = zip(*(column(j) for j in range(C)))
        o = torch.stack(cs, -1)  # [N, R, C]
        if math.isinf(g_drv):
            return o
        gt = g_drv * (2 if both else 1)
        return gt * (_spd_inverse(_add_diag(sum(ys), gt)) @ o)

    gw = 1.0 / w.r_wordline
    y, c = column(C - 1)
    # Invariant after eliminating columns j..C-1, seen from the word-line nodes W_j of column j:
    #   current drawn from W_j = S W_j - F V,   sense currents of columns j.. = O^T W_j + Q^T V.
    if both and math.isinf(g_drv):
        if C == 1:
            return c[:, :, None]
        # W_{C-1} is held at V: start one column earlier, linked to that known node
        y2, c2 = column(C - 2)
        s, f = _add_diag(y2, gw), _add_diag(torch.zeros_like(y2), gw)
        o = torch.stack([c2, torch.zeros_like(c)], -1)  # column C-1 does not depend on W_{C-2}
        q = torch.stack([torch.zeros_like(c2), c], -1)
        first = C - 3
    else:
        g_r = g_drv if both else 0.0
        s = _add_diag(y, g_r)
        f = _add_diag(torch.zeros_like(y), g_r) if both else None
        o, q = c[:, :, None], None
        first = C - 2
    for j in range(first, -1, -1):
        h, h_s = _inverse(s, gw)
        y, c = column(j)
        if f is not None:
            hf = h @ f
            q_new = hf.transpose(1, 2) @ o + (q if q is not None else 0.0)
            q = torch.cat([torch.zeros_like(c[:, :, None]), q_new], -1)
            f = gw * hf
        o, s = _advance(h, h_s, s, o, y, c, gw)
    if math.isinf(g_drv):  # the first cell's node is the source itself
        a = o
    else:
        p = _spd_inverse(_add_diag(s, g_drv))  # W_0 = P (g_drv V + F V)
        p = g_drv * p if f is None else p @ _add_diag(f, g_drv)
        a = p.transpose(1, 2) @ o
    return a if q is None else a + q


class _LeftDrivenSweep(torch.autograd.Function):
    """The sweep for word lines driven from the left (the common layout) with a hand-written adjoint.

    Autograd through the batched Cholesky inverses costs about three forwards and keeps every column's
    intermediates; this backward reuses the stored inverses ``H_j`` and costs a few batched matmuls per column,
    and differentiates each bit line's elimination in closed form:
    with ``Z = K^-1 D``, ``dL/dd = diag(Ybar) - 2 rowsum(Ybar * Z) + rowsum((Z Ybar) * Z)`` from ``Y = D - D K^-1 D``,
    and ``dL/dd = gb k (cbar - K^-1 (d * cbar))`` from ``c = gb D k`` with ``k = K^-1 e_last``.
    """

    @staticmethod
    def forward(ctx, g, w: Wires):
        with torch.no_grad():
            N, R, C = g.shape
            d = g.transpose(1, 2).contiguous()  # each column d[:, j] contiguous: strided slices cost 3x per op
            ideal_b = w.r_bitline == 0
            gb = math.inf if ideal_b else 1.0 / w.r_bitline
            inv_diag, lf, m = (None, None, 0) if ideal_b else _bitline(d, w)
            column = lambda j: _column(d[:, j], None if ideal_b else inv_diag[:, j],  # noqa: E731
                                       None if ideal_b else lf[:, j], m, gb, ideal_b)
            gw = 1.0 / w.r_wordline
            r_drv = w.driver_resistance()
            g_drv = math.inf if r_drv == 0 else 1.0 / r_drv
            y, c = column(C - 1)
            s, o = y, c[:, :, None]
            hs, olds = [None] * C, [None] * C
            for j in range(C - 2, -1, -1):
                h, h_s = _inverse(s, gw)
                hs[j], olds[j] = h, o
                y, c = column(j)
                o, s = _advance(h, h_s, s, o, y, c, gw)
            p = None if math.isinf(g_drv) else g_drv * _spd_inverse(_add_diag(s, g_drv))
            a = o if p is None else p @ o
        ctx.save_for_backward(d)
        ctx.state = (hs, olds, p, o, inv_diag, lf, m, gb, gw, g_drv, ideal_b)
        return a

    @staticmethod
    def backward(ctx, abar):
        (d,) = ctx.saved_tensors
        hs, olds, p, o, inv_diag, lf, m, gb, gw, g_drv, ideal_b = ctx.state
        N, C, R = d.shape
        dd = torch.zeros_like(d)
        if p is None:
            obar, sbar = abar, torch.zeros_like(abar[:, :, :1].expand(N, R, R))
        else:
            obar = p @ abar
            sbar = -(1.0 / g_drv) * (p @ (abar @ o.transpose(1, 2)) @ p)
        for j in range(C):
            # column j entered as S = Y_j + gw I - gw^2 H_j (its Y_j) and O = [c_j, gw H_j O_old]
            dd[:, j] = _column_adjoint(d[:, j], sbar, obar[:, :, 0], None if ideal_b else inv_diag[:, j],
                                       None if ideal_b else lf[:, j], m, gb, ideal_b)
            if j == C - 1:
                break
            h, ob1 = hs[j], obar[:, :, 1:]
            hbar = torch.baddbmm(sbar, ob1, olds[j].transpose(1, 2), beta=-gw * gw, alpha=gw)
            obar = torch.bmm(h, ob1).mul_(gw)
            sbar = torch.bmm(torch.bmm(h, hbar), h).neg_()
        ctx.state = None
        return dd.transpose(1, 2), None


def _column_adjoint(d, ybar, cbar, inv_diag, lf, m: int, gb: float, ideal_bitline: bool) -> torch.Tensor:
    """dL/dd [N, R] of one column from the gradients of its ``Y`` [N, R, R] and ``c`` [N, R] (see _column)."""
    if ideal_bitline or m == 0:
        return ybar.diagonal(dim1=1, dim2=2) + cbar
    out = ybar.diagonal(dim1=1, dim2=2) + cbar  # the direct terms (rows off the chain: all of it)
    dc = d[:, :m]
    cb = cbar[:, :m]
    yb = ybar[:, :m, :m] + ybar[:, :m, :m].transpose(1, 2)  # twice the symmetric part (Y is symmetric)
    if _moderate_fall(lf):
        # K^-1[p, q] = e[min(p, q)] u[max(p, q)] (e = exp(-lf), u = inv_diag exp(lf)): Z = K^-1 D from two outer
        # products, and K^-1 x from two cumulative sums, without forming K^-1
        e, u = torch.exp(-lf), inv_diag * torch.exp(lf)
        z = torch.where(_upper(m, d.device), e[:, :, None] * (u * dc)[:, None, :], u[:, :, None] * (e * dc)[:, None, :])
        k = e * u[:, m - 1:]                      # K^-1[:, m - 1]
        ux, ex = u * dc * cb, e * dc * cb
        kx = e * ux.flip(-1).cumsum(-1).flip(-1) + u * (ex.cumsum(-1) - ex)   # K^-1 (d * cbar)
    else:
        kinv = _kinv(inv_diag, lf)
        z = kinv * dc[:, None, :]
        k = kinv[:, :, m - 1]
        kx = (kinv @ (dc * cb)[:, :, None])[:, :, 0]
    # -2 rowsum(Ysym * Z) + rowsum((Z Ysym) * Z) = rowsum(((Z - 2 I) Ysym) * Z), with Ysym = yb / 2
    chain = 0.5 * torch.einsum("npq,npq->np", torch.baddbmm(yb, z, yb, beta=-2.0), z)
    chain = chain + gb * k * (cb - kx) - cb  # cbar*1 counted above; c = gb d k
    out = out.clone()
    out[:, :m] += chain
    return out


def _saved_bytes(rows: int, cols: int) -> int:
    """Bytes kept per tile for the backward pass: the sweep's inverses and output maps (hand-written adjoint),
    with margin for the generic layouts that go through autograd."""
    return 8 * (2 * cols * rows * rows + rows * cols * cols)


def operator_bytes(n_tiles: int, rows: int, cols: int, grad: bool = False, chunk: int | None = None) -> int:
    """Peak working memory of :func:`tile_operator` in bytes (float64), estimated from the sweep's tensors.

    ``chunk``: tiles whose autograd tensors are alive at once (all of them unless checkpointed)."""
    per_tile = 8 * (8 * rows * rows + 4 * rows * cols)       # column terms, Schur complement, inverse, O, Q
    saved = _saved_bytes(rows, cols) * (n_tiles if chunk is None else min(chunk, n_tiles)) if grad else 0
    return n_tiles * (8 * rows * cols * 2 + per_tile) + saved


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _free_bytes(device) -> int | None:
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    return _available_bytes()


def check_memory(n_tiles: int, rows: int, cols: int, grad: bool = False, device="cpu", chunk: int | None = None) -> int:
    """Raise before allocating when the operator precompute will not fit in memory; returns the estimate."""
    need = operator_bytes(n_tiles, rows, cols, grad, chunk)
    have = _free_bytes(device)
    if have is not None and need > 0.8 * have:
        raise ParameterError("tile size", f"{n_tiles} tile(s) of {rows}x{cols}",
                             f"a precompute that fits in memory (needs ~{need / 2**30:.2f} GiB, "
                             f"{have / 2**30:.2f} GiB available)",
                             "use smaller tiles, fewer tiles at once, or a machine with more memory")
    return need


def tile_operator(g: torch.Tensor, circuit: TileCircuit, v_gate=None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The operator ``A`` [..., rows, cols] of tiles of memristor conductances ``g`` [..., rows, cols] (S).

    Column currents for word-line voltages ``V`` [..., rows] are ``V @ A`` (A), exactly, for the circuit's
    wires and layout; 1T1R cells include the access transistor as a series conductance at ``v_gate``:
    :math:`A_{ij} = \partial I_j / \partial V_i` of the nodal system :math:`L(G) u = 0` with the word lines
    driven at :math:`V` and the sense amplifiers at 0 V. Differentiable with respect to ``g``. Computed in
    ``dtype`` (float64: exact to rounding; float32, which hardware-aware training uses: about 1e-5 relative, the
    recurrences carry no cancelling terms), returned in ``g``'s dtype. Raises :class:`ParameterError` before
    allocating when it will not fit.

    Example:
        >>> import torch
        >>> from memsim.crossbar import TileCircuit, Wires, solve_linear
        >>> g = 1e-6 + 1e-4 * torch.rand(16, 8, dtype=torch.float64)
        >>> v = 0.2 * torch.rand(5, 16, dtype=torch.float64)
        >>> circuit = TileCircuit(Wires(r_wordline=1.0, r_bitline=1.0, r_source=10.0))
        >>> A = tile_operator(g, circuit)
        >>> bool(torch.allclose(v @ A, solve_linear(g, v, circuit), rtol=1e-10, atol=0))
        True
        >>> bool(torch.equal(tile_operator(g, TileCircuit(Wires(0.0, 0.0, 0.0))), g))  # ideal wires: A = G
        True
    """
    if g.dim() < 2:
        raise ParameterError("conductance.shape", tuple(g.shape), "[..., rows, cols]", "pass one or more tiles")
    if not torch.isfinite(g).all():
        raise ParameterError("conductance", "NaN/inf entries", "finite values", "remove NaN/inf before solving")
    check_conductance_positive(g)
    rows, cols = g.shape[-2:]
    lead = g.shape[:-2]
    geff = effective_conductance(g.to(dtype), circuit, v_gate)
    w = circuit.wires
    if w.ideal:
        return geff.to(g.dtype)
    g3 = geff.reshape(-1, rows, cols)
    if w.sense_end == "top":  # the bit lines' orientation is the only thing that distinguishes the rows
        g3 = g3.flip(-2)
    grad = torch.is_grad_enabled() and g3.requires_grad
    n = g3.shape[0]
    free = _free_bytes(g3.device)
    chunked = grad and free is not None and _saved_bytes(rows, cols) * n > free / 4
    check_memory(n, rows, cols, grad, g3.device, GRAD_CHUNK if chunked else None)
    if chunked:
        parts = [checkpoint(_sweep, g3[k:k + GRAD_CHUNK], w, use_reentrant=False)
                 for k in range(0, g3.shape[0], GRAD_CHUNK)]
        a = torch.cat(parts, 0)
    else:
        a = _sweep(g3, w)
    if w.sense_end == "top":
        a = a.flip(-2)
    return a.reshape(*lead, rows, cols).to(g.dtype)


def sparse_operator(g: torch.Tensor, circuit: TileCircuit, v_gate=None) -> torch.Tensor:
    """The same operator from the sparse nodal solve (one LU per tile, ``rows`` unit inputs); no gradient."""
    rows, cols = g.shape[-2:]
    out = []
    eye = torch.eye(rows, dtype=torch.float64).numpy()
    for tile in g.detach().to(torch.float64).cpu().reshape(-1, rows, cols):
        f = factor_tile(tile, circuit, v_gate)
        out.append(torch.from_numpy(f.out(f.solve(eye)).copy()))
    return torch.stack(out).reshape(g.shape).to(g.dtype)


def linearised_operator(card, x: torch.Tensor, circuit: TileCircuit, v_read, v_gate=None) -> torch.Tensor:
    """The operator of nonlinear cells linearised at their read voltage: each cell of ``card`` at state ``x``
    [..., rows, cols] becomes its chord conductance ``I(v_read, x) / v_read``. Exact for linear cards; for a
    nonlinear card (e.g. the sinh of Stanford-PKU) its error against Newton with the card's own I-V grows with
    the IR drop, which moves cells away from ``v_read`` (benchmarks/crossbar.md gives figures per preset)."""
    if v_read is None or isinstance(v_read, bool) or not isinstance(v_read, (int, float)) \
            or not math.isfinite(v_read) or v_read == 0:
        raise ParameterError("v_read", v_read, "a non-zero read voltage in V inside the card's range "
                             f"{list(card.voltage_range)}",
                             "give the voltage at which the cells are linearised (a preset's device.v_read)")
    lo, hi = card.voltage_range
    if not lo <= v_read <= hi:
        raise ParameterError("v_read", v_read, f"inside the card's range {list(card.voltage_range)} V",
                             "choose a read voltage the card is valid at")
    dev = DeviceArray.from_card(card, shape=tuple(x.shape), dtype=torch.float64)
    return tile_operator(dev.conductance(x.to(torch.float64), float(v_read)), circuit, v_gate)
