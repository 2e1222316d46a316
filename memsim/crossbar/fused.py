"""The programmed differential pairs of a ``noisy`` layer in one fused pass (hardware-aware training's hot path).

Every training step maps the weights, programs a new chip and reads it. Written as separate torch operations,
the chain - quantised pair targets (:class:`memsim.crossbar.mapping.Mapping`), the memristor behind the access
transistor (:func:`memsim.crossbar.solver.memristor_for_cell`), programming noise, device-to-device gain, drift
and stuck cells (:func:`memsim.crossbar.nonideal.program`) and the cell as the word line sees it
(:func:`memsim.crossbar.solver.effective_conductance`) - makes some thirty passes over every cell of the layer,
plus the interleaving of the pair columns and its strided undoing in the product. :func:`programmed_pairs` runs it
as one element-wise kernel, ``torch.compile``-d, straight from the packed signed weights ``[nr, nc, rows, pairs]``
to what the product needs: the pair signal ``gc+ - gc-`` and the read-noise weight ``gc+^2 + gc-^2``
(:mod:`memsim.crossbar.pairs`), and the two per-weight derivatives its backward needs.

Nothing random happens inside the kernel: the programming noise is drawn eagerly, by the caller, from the chip's
own ``program`` stream in the layout and order it always had (one Gaussian per cell, ``[nr, nc, rows, cols]``),
and the defects (d2d, stuck cells, drift) are the chip's :class:`memsim.crossbar.nonideal.FixedDefects`. So the
streams, the seeds and the programmed values are those of the unfused path (the kernel performs the same
floating-point operations per cell; ``tests/test_fused_noisy.py`` checks values and gradients against it).

Per cell (``+`` and ``-`` of each pair), with :math:`t` the quantised target, :math:`g_T` the row's transistor
conductance (1T1R; 0T1R: :math:`r_1 = r_2 = 1`), :math:`n` the cell's programming-noise draw:

.. math::  m = t\\,r_1,\\ r_1 = \\frac{g_T}{g_T - t};\\qquad
           p = \\mathrm{clip}(m + \\sigma n,\\ g_{min}, g_{max})\\,a + b;\\qquad
           g_c = p\\,r_2,\\ r_2 = \\frac{g_T}{g_T + p}

(:math:`a, b`: the chip's gain and offset), and the straight-through derivative
:math:`\\partial g_c / \\partial t = a\\,r_1^2 r_2^2`, as the unfused kernels' backward passes compose it.

:func:`read_noise` does the same for the read noise of the product (``y + sigma sqrt(var) noise`` and its
derivative in the variance, one pass instead of six).

The compiled kernels are used for layers (and reads) of at least :data:`MIN_CELLS` cells (values), when
``torch.compile`` works here (a C++ compiler on the CPU); elsewhere, or with :data:`ENABLED` False, the layer takes
the unfused path, which gives the same values. A compile that fails once switches fusion off for the process with a
warning.
"""
from __future__ import annotations

import warnings

import torch

from .mapping import retargeted_pair

#: fuse the noisy layers' cell chain (False: always the unfused path)
ENABLED = True
#: run the fused chain torch.compile-d (False: the same kernel eagerly, e.g. in quick tests)
COMPILE = True
#: smallest layer (cells of all its tiles) worth a compilation (~5-10 s once per layer shape); smaller layers take
#: the unfused path, whose cost is then small anyway
MIN_CELLS = 2 ** 16

_compiled: dict = {}
_failed = False


def _kernel(w, noise, gain, offset, gt, s, quantised: bool, want_q: bool, atten=None, shift=None, retarget=None):
    """The fused chain (plain torch; compiled by :func:`_run`). ``w`` [..., P] packed signed weights in [-1, 1];
    ``noise`` [..., P, 2] standard normals or None; ``gain``, ``offset`` broadcasting against [..., P, 2]; ``gt``
    broadcasting against ``w`` (the rows' axis) or None; ``s`` = (levels - 1, step, g_min, delta, sigma, lo, hi)
    as a float tensor.

    ``atten``, ``shift`` [..., P, 2] or None: ``irdrop`` with a reused first-order operator
    (:meth:`memsim.crossbar.CrossbarArray.irdrop_reuse`): each cell's current in the signal (not in the read noise)
    is ``atten * gc + shift``.

    ``retarget`` [..., P, 2] or None: 1 where the cell's partner is stuck at g_max and the cell is retargeted
    (``mapping.stuck_compensation = "partner"``, :func:`memsim.crossbar.mapping.compensate_stuck`).

    Returns ``(signal, ds)`` or ``(signal, q, ds, dq)``: ``ds = d signal / d w``, ``dq = d q / d w``."""
    lv, step, g_min, delta, sigma, lo, hi, top = s.unbind()
    q = torch.round(w * lv) if quantised else w
    tp = q.clamp_min(0) * step + g_min                      # the pair's targets, as Mapping.pair_cells
    tm = q.neg().clamp_min(0) * step + g_min
    pos = (w > 0).to(w.dtype) * delta                      # d t+ / d w (straight-through rounding)
    neg = (w < 0).to(w.dtype) * delta                      # -d t- / d w
    if retarget is not None:                                # partners of cells stuck at g_max (mapping.py)
        rp, rm = retarget[..., 0], retarget[..., 1]
        tp, tm = retargeted_pair(tp, tm, rp, rm, g_min, top)
        pos, neg = pos + rp * neg, neg + rm * pos           # both now follow d t+/dw - d t-/dw (straight through)
    if gt is not None:                                      # the memristor behind the transistor
        r1p = gt / (gt - tp)
        r1m = gt / (gt - tm)
        tp = tp * r1p
        tm = tm * r1m
    gain_p, gain_m = gain[..., 0], gain[..., 1]
    if noise is not None:
        pp = (noise[..., 0] * sigma + tp).clamp(lo, hi)
        pm = (noise[..., 1] * sigma + tm).clamp(lo, hi)
    else:
        pp, pm = tp, tm
    pp = pp * gain_p + offset[..., 0]
    pm = pm * gain_m + offset[..., 1]
    ap, am = gain_p, gain_m                                 # d gc / d t, straight through the clip
    if gt is not None:                                      # the cell as the word line sees it
        r2p = gt / (gt + pp)
        r2m = gt / (gt + pm)
        pp = pp * r2p
        pm = pm * r2m
        ap = (r2p * r2p) * ap * (r1p * r1p)
        am = (r2m * r2m) * am * (r1m * r1m)
    if atten is None:
        signal = pp - pm
        ds = ap * pos + am * neg
    else:
        signal = (pp * atten[..., 0] + shift[..., 0]) - (pm * atten[..., 1] + shift[..., 1])
        ds = ap * atten[..., 0] * pos + am * atten[..., 1] * neg
    if not want_q:  # contiguous: written in w's layout, the batched matmul's, with no copy after the kernel
        return signal.contiguous(), ds.contiguous()
    sq = torch.addcmul(pp * pp, pm, pm)
    dq = 2 * (pp * ap * pos - pm * am * neg)
    return signal.contiguous(), sq.contiguous(), ds.contiguous(), dq.contiguous()


#: torch's cache of compiled variants per code object holds 8 by default; a kernel that every layer of every network
#: in one process calls (the converter: tensor ranks 2-5 of dense and conv reads, per-tile or per-layer ranges, with
#: and without the slope, two dtypes) exceeded it in a study's serial run and fell back to eager with a warning
RECOMPILE_LIMIT = 64


def compiled_call(name: str, fn, *args, dynamic: bool | None = False, many_variants: bool = False):
    """``fn(*args)`` through its torch.compile-d version (compiled on first use), or eagerly when compilation is
    off or failed. ``dynamic=None``: torch's automatic dynamic shapes (one generic kernel once a second shape
    comes, for a kernel that every layer and batch size of a network calls, where one kernel per shape would hit
    torch's recompile limit). ``many_variants``: the call may meet more than torch's default 8 variants (ranks,
    dtypes, flags) of its inputs; the limit is raised to :data:`RECOMPILE_LIMIT` while it runs."""
    global _failed
    if COMPILE and not _failed:
        try:
            if name not in _compiled:
                _compiled[name] = torch.compile(fn, dynamic=dynamic)
            if many_variants:
                limit = max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)
                with torch._dynamo.config.patch(recompile_limit=limit):
                    return _compiled[name](*args)
            return _compiled[name](*args)
        except Exception as exc:  # no working compiler here: the unfused path from now on (same values)
            _failed = True
            warnings.warn(f"memsim: torch.compile of the fused noisy-layer kernels failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); noisy layers take the unfused path "
                          f"(same results, slower)", RuntimeWarning, stacklevel=3)
    return fn(*args)


def _run(*args):
    return compiled_call("cells", _kernel, *args)


def _noise_kernel(y, var, noise, sigma, want_dvar: bool):
    """Read noise on the product ``y``: ``y + sigma sqrt(var) noise`` and ``d y / d var = sigma noise / (2 std)``
    (0 where no current flows), as :mod:`memsim.crossbar.pairs` computes them in separate passes."""
    std = var.clamp_min(0).sqrt()
    out = torch.addcmul(y, std, noise, value=sigma)
    if not want_dvar:
        return out.contiguous(), None
    # contiguous: in y's layout (the noise may be a transposed view), so the backward's ``gy * dvar`` is one pass
    return out.contiguous(), torch.nan_to_num(noise * (0.5 * sigma) / std, 0.0, 0.0, 0.0).contiguous()


def read_noise(y: torch.Tensor, var: torch.Tensor, noise: torch.Tensor, sigma: float, want_dvar: bool):
    """``(y + sigma sqrt(var) noise, dy/dvar or None)`` in one pass (compiled for large reads when fusion is on)."""
    if available(y.numel()):
        return compiled_call("noise", _noise_kernel, y, var, noise, sigma, want_dvar)
    return _noise_kernel(y, var, noise, sigma, want_dvar)


def available(cells: int) -> bool:
    """Whether a layer of ``cells`` cells takes the fused kernel."""
    return ENABLED and not _failed and cells >= MIN_CELLS


class _ProgrammedPairs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, noise, gain, offset, gt, s, quantised, want_q, compiled, atten, shift, retarget):
        out = (_run if compiled else _kernel)(w, noise, gain, offset, gt, s, quantised, want_q, atten, shift,
                                              retarget)
        if want_q:
            signal, sq, ds, dq = out
            ctx.save_for_backward(ds, dq)
            return signal, sq
        signal, ds = out
        ctx.save_for_backward(ds)
        return signal, None

    @staticmethod
    def backward(ctx, g_signal, g_q):
        saved = ctx.saved_tensors
        grad = None if g_signal is None else g_signal * saved[0]
        if len(saved) > 1 and g_q is not None:
            grad = g_q * saved[1] if grad is None else grad.addcmul_(g_q, saved[1])
        return grad, None, None, None, None, None, None, None, None, None, None, None


def programmed_pairs(w: torch.Tensor, *, levels: int, g_min: float, delta: float, noise: torch.Tensor | None,
                     sigma: float, lo: float, hi: float, gain, offset, gt: torch.Tensor | None,
                     want_q: bool, compiled: bool = True, atten: torch.Tensor | None = None,
                     shift: torch.Tensor | None = None,
                     retarget: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(signal, q)`` ``[nr, rows, nc * pairs]`` (tile-row-major: the layout of one batched matmul over the row
    tiles, :func:`memsim.crossbar.pairs.tile_major_product`) of a programmed differential layer, from its packed
    signed weights ``w`` ``[nr, rows, nc, pairs]`` (normalised to [-1, 1]); ``q`` is None unless ``want_q`` (read
    noise). Differentiable in ``w``.

    ``noise``: the chip's programming-noise draws in the cells' layout ``[nr, nc, rows, cols]`` (None: no
    programming noise); ``gain``/``offset``: the chip's affine (:meth:`memsim.crossbar.nonideal.FixedDefects.affine`),
    tensors of the cells' shape or floats; ``gt``: the rows' transistor conductances ``[rows]`` (None: 0T1R);
    ``sigma``, ``lo``, ``hi``: as :func:`memsim.crossbar.nonideal.program` takes them. ``compiled``: the
    torch.compile-d kernel (else the same kernel eagerly). ``retarget``: the cells to retarget for partner
    compensation (:meth:`memsim.crossbar.nonideal.FixedDefects.partner_retarget`, cells' layout) or None."""
    nr, rows, nc, pairs = w.shape

    def halves(t):  # cells [nr, nc, rows, cols] -> [nr, rows, nc, pairs, 2] (a view)
        if isinstance(t, torch.Tensor) and t.dim():
            return t[..., :2 * pairs].transpose(1, 2).unflatten(-1, (pairs, 2))
        return torch.full((2,), float(t), dtype=w.dtype, device=w.device)

    s = torch.tensor([max(levels - 1, 0), delta / (levels - 1) if levels else delta, g_min, delta, sigma, lo, hi,
                      g_min + delta], dtype=w.dtype, device=w.device)
    signal, q = _ProgrammedPairs.apply(w, None if noise is None else halves(noise), halves(gain), halves(offset),
                                       None if gt is None else gt[:, None, None], s, bool(levels), bool(want_q),
                                       compiled, None if atten is None else halves(atten),
                                       None if shift is None else halves(shift),
                                       None if retarget is None else halves(retarget))
    return signal.reshape(nr, rows, nc * pairs), None if q is None else q.reshape(nr, rows, nc * pairs)
