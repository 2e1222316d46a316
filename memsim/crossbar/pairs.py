"""The product of differential-pair tiles in the linear modes, read noise included, with a hand-written backward.

A pair's output is ``I+ - I- = V @ (M+ - M-)`` for the tile matrix ``M`` (the cell conductances with ideal
wires, the exact operator with IR drop), and its read noise is one Gaussian of variance
``read^2 * V^2 @ (gc+^2 + gc-^2)`` (the two columns fluctuate independently; ``gc``: the cell conductances).
Both are products with half-width matrices ``[n_row_tiles, n_col_tiles, rows, pairs]``.

Autograd would differentiate this through strided column slices, a square root with a guard at zero variance
and two einsums, about twenty passes over every read's outputs; the backward below forms each gradient in
one product or one element-wise pass. :class:`memsim.crossbar.CrossbarArray` uses it for differential tiles;
the tests check it against the generic path (per-column currents, then subtraction) and its gradients against
autograd's. :func:`tile_major_product` is the same product from the half-width matrices themselves, laid out
``[n_row_tiles, ..., ...]`` so that each product is one batched matmul with no layout copies: the fused ``noisy``
training read (:mod:`memsim.crossbar.fused`) forms those matrices directly and adds the read noise in one pass.
"""
from __future__ import annotations

import torch

from . import fused

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


def _product(ctx, vt, signal, q, noise, sigma, keep=(), amplitude_grad=True):
    """The forward product of the half-width ``signal`` (and read noise of weight ``q``); saves ``keep`` and what
    the backward needs on ``ctx`` (without ``amplitude_grad``, the read noise is added but its amplitude gets no
    gradient: the backward of the noiseless product)."""
    y = torch.einsum(_PRODUCT, vt, signal)
    ctx.noisy = q is not None and amplitude_grad
    if q is not None:
        std = torch.einsum(_PRODUCT, vt * vt, q).clamp_min_(0).sqrt_()
        y.addcmul_(std, noise, value=sigma)
    if ctx.noisy:
        # d y / d var = sigma * noise / (2 std), and no gradient where no current flows (std = 0)
        dvar = (noise * (0.5 * sigma) / std).nan_to_num_(0.0, 0.0, 0.0) if any(ctx.needs_input_grad) else None
        ctx.save_for_backward(*keep, vt, signal, q, dvar)
    else:
        ctx.save_for_backward(*keep, vt, signal)
    return y


def _product_grads(ctx, gy, need_v, need_s, need_q, saved):
    """``(grad_v, grad_signal, grad_q)`` of :func:`_product` (``saved``: its saved tensors after ``keep``)."""
    if ctx.noisy:
        vt, signal, q, dvar = saved
    else:
        vt, signal = saved
    grad_v = torch.einsum(_INPUT_GRAD, gy, signal) if need_v else None
    gs = torch.einsum(_WEIGHT_GRAD, vt, gy) if need_s else None
    gq = None
    if ctx.noisy and (need_v or need_q):
        gvar = gy * dvar
        if need_v:
            grad_v = grad_v + 2 * vt * torch.einsum(_INPUT_GRAD, gvar, q)
        if need_q:
            gq = torch.einsum(_WEIGHT_GRAD, vt * vt, gvar)
    return grad_v, gs, gq


class _PairProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vt, m, gc, noise, sigma, pairs, amplitude_grad=True):
        mp = _pairs(m, pairs)
        ctx.pairs, ctx.cols = pairs, m.shape[-1]
        ctx.same = gc is m
        keep = () if gc is None or not amplitude_grad else (gc,)
        return _product(ctx, vt, mp[..., 0] - mp[..., 1], None if gc is None else pair_squares(gc, pairs), noise,
                        sigma, keep=keep, amplitude_grad=amplitude_grad)

    @staticmethod
    def backward(ctx, gy):
        need_v, need_m, need_gc = ctx.needs_input_grad[:3]
        saved = ctx.saved_tensors
        gc, saved = (saved[0], saved[1:]) if ctx.noisy else (None, saved)
        grad_v, gs, gq = _product_grads(ctx, gy, need_v, need_m, need_gc or (ctx.same and need_m), saved)
        grad_m = grad_gc = None
        if ctx.same:  # one tensor for the product and the noise: one gradient
            grad_m = _pair_grad(gc, gq, gs, ctx.pairs, ctx.cols) if need_m else None
        else:
            grad_m = _pair_grad(None, None, gs, ctx.pairs, ctx.cols) if need_m else None
            grad_gc = _pair_grad(gc, gq, None, ctx.pairs, ctx.cols) if gq is not None else None
        return grad_v, grad_m, grad_gc, None, None, None, None


class _TileMajorProduct(torch.autograd.Function):
    """:func:`pair_product` from the pairs' half-width matrices (``signal = M+ - M-``, and ``q = gc+^2 + gc-^2`` for
    read noise, as :mod:`memsim.crossbar.fused` forms them), every operand laid out tile-row-major, so that each
    product is one batched matmul over the row tiles with no layout copies: ``vt`` [nr, B, rows], ``signal``/``q`` [nr, rows, K],
    ``noise`` and the output [nr, B, K] (``K`` = n_col_tiles * pairs)."""

    @staticmethod
    def forward(ctx, vt, signal, q, noise, sigma, amplitude_grad=True):
        y = torch.bmm(vt, signal)
        ctx.noisy = q is not None and amplitude_grad
        if q is None:
            ctx.save_for_backward(vt, signal)
            return y
        v2 = vt * vt
        # y + sigma std noise and d y / d var = sigma noise / (2 std) (none where no current flows), one pass
        y, dvar = fused.read_noise(y, torch.bmm(v2, q), noise, sigma, ctx.noisy and any(ctx.needs_input_grad))
        if ctx.noisy:
            ctx.save_for_backward(vt, signal, q, dvar, v2)
        else:  # the noise's amplitude gets no gradient: the backward of the noiseless product
            ctx.save_for_backward(vt, signal)
        return y

    @staticmethod
    def backward(ctx, gy):
        need_v, need_s, need_q = ctx.needs_input_grad[:3]  # gy may be strided: bmm takes any row-major batch
        if ctx.noisy:
            vt, signal, q, dvar, v2 = ctx.saved_tensors
        else:
            vt, signal = ctx.saved_tensors
        grad_v = torch.bmm(gy, signal.transpose(1, 2)) if need_v else None
        gs = torch.bmm(vt.transpose(1, 2), gy) if need_s else None
        gq = None
        if ctx.noisy and (need_v or need_q):
            gvar = gy * dvar
            if need_v:
                grad_v.addcmul_(vt, torch.bmm(gvar, q.transpose(1, 2)), value=2.0)
            if need_q:
                gq = torch.bmm(v2.transpose(1, 2), gvar)
        return grad_v, gs, gq, None, None, None


def tile_major_product(vt: torch.Tensor, signal: torch.Tensor, q: torch.Tensor | None = None,
                       noise: torch.Tensor | None = None, sigma: float = 0.0,
                       amplitude_grad: bool = True) -> torch.Tensor:
    """Signed tile outputs ``[nr, B, K]`` from word-line voltages ``vt`` ``[nr, B, rows]`` and the pairs'
    half-width matrices ``signal`` (and ``q`` with read noise ``noise`` ``[nr, B, K]``) ``[nr, rows, K]``, with
    gradients to all three (see :class:`_TileMajorProduct`); ``amplitude_grad`` False: none through the read noise's
    amplitude (``q`` gets no gradient; :attr:`memsim.crossbar.CrossbarArray.read_noise_grad`)."""
    if q is None or not sigma:
        return _TileMajorProduct.apply(vt, signal, None, None, 0.0, True)
    return _TileMajorProduct.apply(vt, signal, q, noise, float(sigma), bool(amplitude_grad))


def pair_product(vt: torch.Tensor, m: torch.Tensor, pairs: int, gc: torch.Tensor | None = None,
                 noise: torch.Tensor | None = None, sigma: float = 0.0, amplitude_grad: bool = True) -> torch.Tensor:
    """Signed outputs ``[B, nr, nc, pairs]`` of differential tiles ``m`` ``[nr, nc, rows, cols]`` for ``vt``
    ``[B, nr, rows]``, plus read noise ``sigma * sqrt(V^2 @ (gc+^2 + gc-^2)) * noise`` when ``gc`` is given
    (``noise``: standard normal draws ``[B, nr, nc, pairs]``); ``amplitude_grad`` False: the noise's amplitude gets
    no gradient (the backward of the noiseless product)."""
    if gc is None or not sigma:
        return _PairProduct.apply(vt, m, None, None, 0.0, pairs, True)
    return _PairProduct.apply(vt, m, gc, noise, float(sigma), pairs, bool(amplitude_grad))
