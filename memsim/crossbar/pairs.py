"""The product of differential-pair tiles in the linear modes, read noise included, with a hand-written backward.

A pair's output is ``I+ - I- = V @ (M+ - M-)`` for the tile matrix ``M`` (the cell conductances with ideal
wires, the exact operator with IR drop), and its read noise is one Gaussian of variance
``read^2 * V^2 @ (gc+^2 + gc-^2)`` (the two columns fluctuate independently; ``gc``: the cell conductances).
Both are products with half-width matrices ``[n_row_tiles, n_col_tiles, rows, pairs]``.

Autograd would differentiate this through strided column slices, a square root with a guard at zero variance
and two einsums, about twenty passes over every read's outputs; the backward below forms each gradient in
one product or one element-wise pass. :class:`memsim.crossbar.CrossbarArray` uses it for differential tiles;
the tests check it against the generic path (per-column currents, then subtraction) and its gradients against
autograd's.
"""
from __future__ import annotations

import torch

_PRODUCT = "bri,rcij->brcj"        # [B, nr, rows] x [nr, nc, rows, pairs] -> [B, nr, nc, pairs]
_WEIGHT_GRAD = "bri,brcj->rcij"    # -> [nr, nc, rows, pairs]
_INPUT_GRAD = "brcj,rcij->bri"     # -> [B, nr, rows]


def _pairs(m: torch.Tensor, pairs: int) -> torch.Tensor:
    """[..., cols] -> [..., pairs, 2] view of the pair columns (2k = +, 2k+1 = -); an odd last column is left out."""
    return m[..., :2 * pairs].unflatten(-1, (pairs, 2))


def pair_squares(gc: torch.Tensor, pairs: int) -> torch.Tensor:
    """``gc+^2 + gc-^2`` [..., pairs] of cells ``gc`` [..., cols]: a pair output's read-noise variance per ``V^2``."""
    gp = _pairs(gc, pairs)
    return torch.addcmul(gp[..., 0].square(), gp[..., 1], gp[..., 1])


def _pair_grad(gc: torch.Tensor | None, gq: torch.Tensor | None, gs: torch.Tensor | None, pairs: int,
               cols: int) -> torch.Tensor:
    """Gradient on the cells [..., cols] from ``gs`` (on ``M+ - M-``) and ``gq`` (on ``gc+^2 + gc-^2``).

    Built from contiguous passes: the pair-wise factors are repeated to the cell layout rather than broadcast
    into strided pair views (several times slower on the CPU)."""
    out = None
    if gs is not None:
        out = torch.stack((gs, -gs), -1).flatten(-2)                     # [..., 2 pairs]
    if gq is not None:
        noise = gc[..., :2 * pairs] * (2 * gq).repeat_interleave(2, -1)
        out = noise if out is None else out.add_(noise)
    if out.shape[-1] < cols:  # an odd last column carries no signal
        out = torch.nn.functional.pad(out, (0, cols - out.shape[-1]))
    return out


class _PairProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vt, m, gc, noise, sigma, pairs):
        mp = _pairs(m, pairs)
        signal = mp[..., 0] - mp[..., 1]
        y = torch.einsum(_PRODUCT, vt, signal)
        ctx.pairs, ctx.cols = pairs, m.shape[-1]
        ctx.same = gc is m
        ctx.noisy = gc is not None
        if ctx.noisy:
            q = pair_squares(gc, pairs)
            std = torch.einsum(_PRODUCT, vt * vt, q).clamp_min_(0).sqrt_()
            y.addcmul_(std, noise, value=sigma)
            # d y / d var = sigma * noise / (2 std), and no gradient where no current flows (std = 0)
            dvar = (noise * (0.5 * sigma) / std).nan_to_num_(0.0, 0.0, 0.0) if any(ctx.needs_input_grad) else None
            ctx.save_for_backward(vt, signal, gc, q, dvar)
        else:
            ctx.save_for_backward(vt, signal)
        return y

    @staticmethod
    def backward(ctx, gy):
        need_v, need_m, need_gc = ctx.needs_input_grad[:3]
        if ctx.noisy:
            vt, signal, gc, q, dvar = ctx.saved_tensors
        else:
            vt, signal = ctx.saved_tensors
        grad_v = torch.einsum(_INPUT_GRAD, gy, signal) if need_v else None
        gs = torch.einsum(_WEIGHT_GRAD, vt, gy) if need_m else None
        gq = None
        if ctx.noisy and (need_v or need_gc):
            gvar = gy * dvar
            if need_v:
                grad_v = grad_v + 2 * vt * torch.einsum(_INPUT_GRAD, gvar, q)
            if need_gc:
                gq = torch.einsum(_WEIGHT_GRAD, vt * vt, gvar)
        grad_m = grad_gc = None
        if ctx.same:  # one tensor for the product and the noise: one gradient
            grad_m = _pair_grad(gc, gq, gs, ctx.pairs, ctx.cols) if need_m else None
        else:
            grad_m = _pair_grad(None, None, gs, ctx.pairs, ctx.cols) if need_m else None
            grad_gc = _pair_grad(gc, gq, None, ctx.pairs, ctx.cols) if gq is not None else None
        return grad_v, grad_m, grad_gc, None, None, None


def pair_product(vt: torch.Tensor, m: torch.Tensor, pairs: int, gc: torch.Tensor | None = None,
                 noise: torch.Tensor | None = None, sigma: float = 0.0) -> torch.Tensor:
    """Signed outputs ``[B, nr, nc, pairs]`` of differential tiles ``m`` ``[nr, nc, rows, cols]`` for ``vt``
    ``[B, nr, rows]``, plus read noise ``sigma * sqrt(V^2 @ (gc+^2 + gc-^2)) * noise`` when ``gc`` is given
    (``noise``: standard normal draws ``[B, nr, nc, pairs]``)."""
    if gc is None or not sigma:
        return _PairProduct.apply(vt, m, None, None, 0.0, pairs)
    return _PairProduct.apply(vt, m, gc, noise, float(sigma), pairs)
