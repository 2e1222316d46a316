"""Weight to conductance mapping, with the conductance window taken from a device card.

Schemes (``w`` normalised to [-1, 1] by the largest |weight| of its output, or of the layer: :data:`WEIGHT_SCALES`;
``dG = g_max - g_min``):

* ``differential``: each weight uses two columns, ``G+ = g_min + dG max(w, 0)`` and
  ``G- = g_min + dG max(-w, 0)``; the output is ``I+ - I-``.
* ``offset``: each weight uses one column, ``G = g_min + dG (w + 1) / 2``, and every
  tile has one reference column at ``G_ref = (g_min + g_max) / 2``; the output is
  ``I - I_ref``.

Finite conductance levels are quantised with a straight-through gradient.

**Bit-sliced weights** (``weight_bits`` W, ``cell_bits`` c < W, as CrossSim and NeuroSim model them): a weight's
code - its magnitude ``m = round(|w| (2^W - 1))`` for differential pairs (the sign picks the pair's column),
the offset-binary ``u = round((w + 1) / 2 (2^W - 1))`` for the offset scheme - is spread over ``W / c`` cells
(per sign) of ``2^c`` levels each, ``m = sum_t 2^{ct} m_t``. Slice t lives on its own tiles (the tile grid is
repeated once per slice); its column outputs are digitised separately and added digitally with the weights
:meth:`Mapping.slice_weights` (``2^{ct} (2^c - 1) / (2^W - 1)``, relative to an unsliced read).
"""
from __future__ import annotations

import torch

from ..devices.array import DeviceArray, conductance_window  # the window is the device's; re-exported
from ..errors import ParameterError

SCHEMES = ("differential", "offset")

#: what the programming controller does about a cell it finds stuck at g_max (its write-verify loop cannot move it):
#: ``none`` leaves the pair as it is (the pair then reads ``g_max - G-``); ``partner`` programs the pair's other
#: cell to ``g_max - (G+ - G-)`` (or ``g_max + (G+ - G-)`` when the stuck cell is the ``-`` one), clipped to the
#: window, so that the pair's difference is the target wherever the window allows it (differential scheme only)
STUCK_COMPENSATION = ("none", "partner")

#: which weights share one scale to the conductance window: each output's own (``column``: the largest |weight| of
#: each output maps to ``dG``, and a digital gain per output restores the units, as aihwkit's channel-wise
#: remapping does) or the whole layer's (``layer``: one largest |weight|, so outputs with small weights use a small
#: part of the window and feel programming noise, a fraction of ``dG``, the more)
WEIGHT_SCALES = ("column", "layer")


def check_window(g: torch.Tensor, g_min: float, g_max: float, field: str = "conductance", rel: float = 1e-9) -> None:
    """Raise when any conductance lies outside the card's window [g_min, g_max] (relative slack ``rel``)."""
    if not torch.isfinite(g).all():
        raise ParameterError(field, "NaN/inf entries", f"finite values in [{g_min:.6g}, {g_max:.6g}] S",
                             "remove NaN/inf")
    lo, hi = g_min * (1 - rel), g_max * (1 + rel)
    bad = (g < lo) | (g > hi)
    if bad.any():
        idx = tuple(int(k) for k in bad.nonzero()[0])
        raise ParameterError(f"{field}{list(idx)}", float(g[idx]), f"[{g_min:.6g}, {g_max:.6g}] S (the device card's window)",
                             "map weights with memsim.crossbar.mapping (or clip them to the window yourself)")


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() in the forward pass, identity in the backward pass."""
    return _RoundSTE.apply(x)


class _ClampSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def clamp_ste(x, lo, hi):
    return _ClampSTE.apply(x, lo, hi)


def retargeted_pair(tp, tm, rp, rm, lo, top, clamp=torch.clamp):
    """The pair targets ``(t+, t-)`` with the cells marked in ``rp`` / ``rm`` (> 0) retargeted against a partner stuck
    at ``top``: ``t+ = top + (t+ - t-)``, ``t- = top - (t+ - t-)``, each ``clamp``-ed to ``[lo, top]``. The one
    definition of partner compensation (:func:`compensate_stuck` and the fused kernel of
    :mod:`memsim.crossbar.fused` both call it)."""
    d = tp - tm
    return (torch.where(rp > 0, clamp(d + top, lo, top), tp), torch.where(rm > 0, clamp(top - d, lo, top), tm))


def compensate_stuck(cells: torch.Tensor, retarget: torch.Tensor, lo: float, top: float) -> torch.Tensor:
    """Pair targets ``cells`` [..., cols] (interleaved ``+``/``-`` cells, as the window's cell conductances) with the
    cells marked in ``retarget`` (1: the partner is stuck at the window's top ``top``, this cell is free; see
    :meth:`memsim.crossbar.nonideal.FixedDefects.partner_retarget`) set so that the pair keeps its difference:
    ``G+ = top + (G+ - G-)``, ``G- = top - (G+ - G-)``, clipped to ``[lo, top]`` with a straight-through gradient
    (the fused kernel, :mod:`memsim.crossbar.fused`, computes the same)."""
    pairs = retarget.shape[-1] // 2
    c = cells[..., :2 * pairs].unflatten(-1, (pairs, 2))
    r = retarget[..., :2 * pairs].unflatten(-1, (pairs, 2))
    plus, minus = retargeted_pair(c[..., 0], c[..., 1], r[..., 0], r[..., 1], lo, top, clamp_ste)
    out = torch.stack((plus, minus), -1).flatten(-2)
    return torch.cat([out, cells[..., 2 * pairs:]], -1) if cells.shape[-1] > 2 * pairs else out


def bit_slices(code: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    """Integer ``code`` (>= 0, int64) as ``n`` digits of ``bits`` bits, least significant first:
    ``[n, *code.shape]``."""
    shifts = torch.arange(n, device=code.device, dtype=torch.int64).mul_(bits).view(-1, *([1] * code.dim()))
    return torch.bitwise_right_shift(code.unsqueeze(0), shifts).bitwise_and_(2 ** bits - 1)


def _slice_share(z: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    """The straight-through part of ``n`` slices of the continuous code ``z``: ``(z - z.detach()) 2^{-bits t} / n``
    per slice t (zero in the forward pass), so that the slices' shift-add has the gradient of ``z`` itself."""
    share = torch.tensor([2.0 ** (-bits * t) / n for t in range(n)], dtype=z.dtype, device=z.device)
    return (z - z.detach()).unsqueeze(0) * share.view(-1, *([1] * z.dim()))


def quantise(g: torch.Tensor, g_min: float, g_max: float, levels: int) -> torch.Tensor:
    """Round to ``levels`` equally spaced conductances in [g_min, g_max] (straight-through gradient); 0 = analog."""
    if levels == 0:
        return g
    step = (g_max - g_min) / (levels - 1)
    return g_min + round_ste((g - g_min) / step) * step


class Mapping:
    """Maps normalised weights to conductances of one scheme inside a window."""

    def __init__(self, scheme: str, g_min: float, g_max: float, levels: int = 0, weight_bits: int | None = None,
                 cell_bits: int | None = None):
        if scheme not in SCHEMES:
            raise ParameterError("mapping.scheme", scheme, f"one of {list(SCHEMES)}", "choose a mapping scheme")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels == 1 or levels < 0:
            raise ParameterError("mapping.levels", levels, "0 (analog) or an integer >= 2",
                                 "give the number of programmable conductance levels")
        if not (0 < g_min < g_max):
            raise ParameterError("mapping.window", (g_min, g_max), "0 < g_min < g_max", "check the device card")
        self.weight_bits, self.cell_bits = check_slicing(weight_bits, cell_bits, levels)
        self.scheme, self.g_min, self.g_max, self.levels = scheme, float(g_min), float(g_max), levels

    @property
    def delta(self) -> float:
        return self.g_max - self.g_min

    @property
    def g_ref(self) -> float:
        return 0.5 * (self.g_min + self.g_max)

    @property
    def columns_per_weight(self) -> int:
        return 2 if self.scheme == "differential" else 1

    @property
    def gain(self) -> float:
        """Output current per (normalised weight x volt): I_out = gain * sum_i w_i v_i."""
        return self.delta if self.scheme == "differential" else 0.5 * self.delta

    @property
    def slices(self) -> int:
        """Cells per weight and sign (1: not bit-sliced)."""
        return 1 if self.weight_bits is None else self.weight_bits // self.cell_bits

    def slice_weights(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """Digital weight of each slice's outputs ``[slices]`` relative to an unsliced read (module doc)."""
        if self.slices == 1:
            return torch.ones(1, dtype=dtype, device=device)
        c, top = self.cell_bits, 2 ** self.weight_bits - 1
        return torch.tensor([2.0 ** (c * t) * (2 ** c - 1) / top for t in range(self.slices)], dtype=dtype,
                            device=device)

    def _slice_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Slices ``[slices, *z.shape]`` of the non-negative continuous codes ``z`` (rounded), straight-through."""
        n, c = self.slices, self.cell_bits
        digits = bit_slices(z.detach().round().to(torch.int64), n, c).to(z.dtype)
        return digits + _slice_share(z, n, c)

    def sliced_pair_cells(self, w: torch.Tensor, cols: int) -> torch.Tensor:
        """Bit-sliced differential cells ``[slices, ..., cols]`` for packed signed weights ``w`` [..., pairs] in
        [-1, 1]: slice t of ``|w|``'s W-bit code on the pair's + or - cell (interleaved as :meth:`pair_cells`,
        odd last column erased). Straight-through gradient ``d G+_t / d w = step (2^W - 1) 2^{-ct} / n [w > 0]``,
        so the slices' shift-add has the gradient of :meth:`pair_cells`."""
        z = w * (2 ** self.weight_bits - 1)
        pos, neg = (w > 0).to(w.dtype), (w < 0).to(w.dtype)  # the gradient masks of pair_cells
        m = self._slice_codes(z.abs())  # |z| has the gradient sign(z): the - cells' slope comes out negative
        step = self.delta / (2 ** self.cell_bits - 1)
        cells = torch.stack((m * pos, m * neg), -1).flatten(-2).mul(step).add(self.g_min)
        if cells.shape[-1] < cols:
            cells = torch.nn.functional.pad(cells, (0, cols - cells.shape[-1]), value=self.g_min)
        return cells

    def sliced_conductances(self, wn: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per slice, ``[G+, G-]`` (differential) or ``[G]`` (offset, offset-binary code) for normalised weights
        ``wn`` in [-1, 1]: the bit-sliced :meth:`to_conductance`."""
        top, step = 2 ** self.weight_bits - 1, self.delta / (2 ** self.cell_bits - 1)
        if self.scheme == "differential":
            z = wn * top
            m = self._slice_codes(z.abs())
            pos, neg = (wn > 0).to(wn.dtype), (wn < 0).to(wn.dtype)
            return [[self.g_min + step * m[t] * pos, self.g_min + step * m[t] * neg] for t in range(self.slices)]
        u = self._slice_codes((wn + 1.0) * (0.5 * top))
        return [[self.g_min + step * u[t]] for t in range(self.slices)]

    def to_conductance(self, wn: torch.Tensor) -> list[torch.Tensor]:
        """[G+, G-] (differential) or [G] (offset) for normalised weights ``wn`` in [-1, 1], quantised."""
        if self.scheme == "differential":
            gs = [self.g_min + self.delta * torch.relu(wn), self.g_min + self.delta * torch.relu(-wn)]
        else:
            gs = [self.g_min + self.delta * 0.5 * (wn + 1.0)]
        return [quantise(g, self.g_min, self.g_max, self.levels) for g in gs]

    def pair_cells(self, w: torch.Tensor, cols: int) -> torch.Tensor:
        """Interleaved, quantised differential cells [..., cols] for packed signed weights ``w`` [..., pairs]
        in [-1, 1] (0 = an erased pair at g_min); the ``differential`` scheme's :meth:`to_conductance` + packing."""
        if self.scheme != "differential":
            raise ParameterError("mapping.scheme", self.scheme, "'differential'", "use to_conductance and pack")
        return _PairCells.apply(w, self.g_min, self.delta, self.levels, cols)


def check_slicing(weight_bits, cell_bits, levels: int) -> tuple[int | None, int | None]:
    """Validated ``(weight_bits, cell_bits)``: both None (not sliced), or W in [1, 16] and c dividing W (default W),
    with ``levels`` = 2**c, the levels of one cell."""
    if weight_bits is None:
        if cell_bits is not None:
            raise ParameterError("mapping.cell_bits", cell_bits, "only together with mapping.weight_bits",
                                 "give mapping.weight_bits, the bits of a weight's code that the cells share")
        return None, None
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 1 <= weight_bits <= 16:
        raise ParameterError("mapping.weight_bits", weight_bits, "an integer in [1, 16]",
                             "give the bits of a weight's code (its magnitude for differential pairs)")
    c = weight_bits if cell_bits is None else cell_bits
    if isinstance(c, bool) or not isinstance(c, int) or c < 1 or weight_bits % c:
        divisors = [d for d in range(1, weight_bits + 1) if weight_bits % d == 0]
        raise ParameterError("mapping.cell_bits", c, f"a divisor of mapping.weight_bits = {weight_bits}: one of "
                                                     f"{divisors}", "each cell holds an equal slice of the code")
    if levels != 2 ** c:
        raise ParameterError("mapping.levels", levels, f"{2 ** c} (= 2**cell_bits: the levels of one cell), or "
                                                       "left out", "with weight_bits set, a cell's levels follow "
                                                                   "cell_bits; leave mapping.levels out")
    return weight_bits, c


class _PairCells(torch.autograd.Function):
    """Differential pairs of cells from packed signed weights, interleaved (2k = G+, 2k+1 = G-), quantised.

    ``G+ = g_min + step round(relu(w) (levels - 1))``, ``G- = g_min + step round(relu(-w) (levels - 1))``
    (``step = dG / (levels - 1)``; analog: ``g_min + dG relu(+-w)``), with the straight-through gradient
    ``dG+/dw = dG [w > 0]``, ``dG-/dw = -dG [w < 0]``: the same cells and gradient as
    :meth:`Mapping.to_conductance` followed by packing, built from one signed tensor instead of two."""

    @staticmethod
    def forward(ctx, w, g_min, delta, levels, cols):
        if levels:
            q = (w * (levels - 1)).round_()
            step = delta / (levels - 1)
        else:
            q, step = w, delta
        cells = torch.stack((q.clamp_min(0), q.neg().clamp_min_(0)), -1).flatten(-2).mul_(step).add_(g_min)
        if cells.shape[-1] < cols:  # an odd last column stays erased
            cells = torch.nn.functional.pad(cells, (0, cols - cells.shape[-1]), value=g_min)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((w > 0).to(w.dtype).mul_(delta), (w < 0).to(w.dtype).mul_(-delta))
        return cells

    @staticmethod
    def backward(ctx, grad):
        plus, minus = ctx.saved_tensors
        pairs = grad[..., :2 * plus.shape[-1]].unflatten(-1, (plus.shape[-1], 2))
        return torch.addcmul(pairs[..., 0] * plus, pairs[..., 1], minus), None, None, None, None


class _StateFromConductance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, dev, v_read):
        lo = torch.zeros_like(g)
        hi = torch.ones_like(g)
        g0 = dev.conductance(torch.zeros_like(g), v_read)
        g1 = dev.conductance(torch.ones_like(g), v_read)
        increasing = g1 > g0
        for _ in range(64):  # bisection to float64 resolution of x
            mid = 0.5 * (lo + hi)
            gm = dev.conductance(mid, v_read)
            go_up = (gm < g) == increasing
            lo = torch.where(go_up, mid, lo)
            hi = torch.where(go_up, hi, mid)
        x = 0.5 * (lo + hi)
        ctx.save_for_backward(x)
        ctx.dev, ctx.v_read = dev, v_read
        return x

    @staticmethod
    def backward(ctx, grad_x):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            dg_dx = torch.autograd.grad(ctx.dev.conductance(xx, ctx.v_read).sum(), xx)[0]
        return grad_x / dg_dx, None, None


def state_for_conductance(card, g: torch.Tensor, v_read: float) -> torch.Tensor:
    """States x in [0, 1] whose chord conductance at ``v_read`` is ``g`` (bisection; implicit gradient dx/dg = 1/G'(x))."""
    g_min, g_max = conductance_window(card, v_read)
    check_window(g.detach(), g_min, g_max)
    g64 = g.double().clamp(g_min, g_max)
    dev = DeviceArray.from_card(card, shape=tuple(g.shape), dtype=torch.float64)
    return _StateFromConductance.apply(g64, dev, float(v_read))
