"""Pruning before mapping: one frozen, validated value (:class:`Pruning`) and the masks of its methods.

A chip zeroes a share of each crossbar layer's weights before the weights are placed on tiles
(:class:`memsim.deploy.Chip` ``prune=``). The method decides which weights, and so whether sparse mapping
(:mod:`memsim.crossbar.sparse`) can leave tiles out:

* ``"unstructured"``: the ``round(fraction * weights)`` weights of smallest magnitude
  (:func:`memsim.nn.grouped.prune_by_magnitude`). Rarely leaves a block empty, so sparse mapping places about as
  many tiles as dense.
* ``"block"``: the unrolled ``[out, in]`` matrix (a conv's ``[C_out, C_in kh kw]``) is cut into
  ``block = (outputs, inputs)`` rectangles aligned to the dense tile grid (starting at row and column 0; the block
  divides the tile's ``(outputs_per_tile, rows)``, the default is one whole tile); the ``round(fraction *
  blocks)`` blocks of smallest L2 (Frobenius) norm are zeroed (ties: the first in row-major block order; blocks at
  the matrix's right and bottom edges are smaller and compete with their own norm). Every zeroed block of a
  tile-sized pruning is a tile that sparse mapping does not place. In a grouped convolution (``groups > 1``,
  depthwise included) the blocks are the groups themselves (the blocks of its block-diagonal matrix, which sparse
  mapping packs), ranked by norm: depthwise layers stay packed block-diagonally.
* ``"nm"``: of every ``m`` consecutive weights along the input dimension of each output (a conv filter's
  ``C_in / groups * kh * kw`` weights, in unfold order) the ``n`` of largest magnitude are kept (ties: the first);
  a last run of ``r < m`` weights keeps ``min(n, r)``. ``fraction`` and ``(n, m)`` say the same,
  ``fraction = 1 - n / m``; given a fraction only, ``m = 4`` (0.5 is 2:4, 0.75 is 1:4). The kept positions differ
  between outputs, so no tile's word line is free: sparse mapping places as many tiles as dense.
* ``"nm_tile"``: N:M with the kept positions shared by the outputs of one tile: the outputs are cut into groups of
  ``block`` (default: the tile's ``outputs_per_tile``, aligned with the tile grid; it must divide them), and of
  every ``m`` consecutive inputs the ``n`` of largest L2 norm over the group's outputs are kept for all of them. A
  pruned input is then a free word line of that group's tiles: sparse mapping stacks the kept inputs, ``n / m`` of
  the rows (a 2:4 layer on about half the tiles). In a grouped convolution the outputs of each group share.
* ``"filter"``: whole output filters of each conv layer, the ``round(fraction * C_out)`` of smallest L2 norm (ties:
  the first); linear layers are not pruned (zeroing a classifier's output is not pruning), and a network without a
  conv layer is an error. A pruned filter is an all-zero row of the matrix: sparse mapping leaves it out of the
  tiles' outputs.

Every mask is exact (the count of zeroed weights, blocks, filters is the rounded fraction) and deterministic. The
old form, a bare fraction, means ``"unstructured"`` (:meth:`Pruning.parse`).

Fine-tuning after pruning keeps the mask: :func:`hold_masks` makes the pruned weights' gradients zero (and their
values zero), so any optimiser step leaves them at zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..errors import ParameterError
from .grouped import GroupedCrossbarConv2d, _Mapped, prune_by_magnitude

__all__ = ["Pruning", "METHODS", "TILED", "DEFAULT_M", "block_mask", "nm_mask", "nm_group_mask", "filter_mask",
           "weight_mask", "tile_block", "check_tile", "detection_block", "prune_layer_", "prune_weights_",
           "prune_model_", "prune_and_hold_", "check_applies", "hold_masks"]

#: pruning methods (see the module doc)
METHODS = ("unstructured", "block", "nm", "nm_tile", "filter")
#: methods whose structure is aligned to the tile (their ``block`` divides it)
TILED = ("block", "nm_tile")
#: ``m`` of N:M pruning given as a fraction only
DEFAULT_M = 4
_FIELDS = ("method", "fraction", "block", "n", "m")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Pruning:
    """How a chip prunes each crossbar layer before mapping (see the module doc).

    Args:
        method: ``"unstructured"`` | ``"block"`` | ``"nm"`` | ``"nm_tile"`` | ``"filter"``.
        fraction: share in [0, 1) of the weights (unstructured), blocks (block), filters (filter) zeroed; for
            ``"nm"`` and ``"nm_tile"`` it is ``1 - n / m`` (give either). 0: no pruning.
        block: ``"block"``: ``(outputs, inputs)`` of a block, or ``k`` for ``k x k``; ``"nm_tile"``: ``k``, the
            outputs that share a pattern (kept as ``(k, 1)``). ``None``: one tile (``outputs_per_tile x rows`` of the
            chip's preset). It must divide the tile.
        n, m: ``"nm"`` / ``"nm_tile"`` only: keep ``n`` of every ``m`` consecutive weights, ``1 <= n < m``.

    Example:
        >>> from memsim.nn.pruning import Pruning
        >>> Pruning.parse(0.5)
        Pruning(method='unstructured', fraction=0.5, block=None, n=None, m=None)
        >>> p = Pruning("nm", 0.75); (p.n, p.m), str(p)
        ((1, 4), 'nm 1:4')
        >>> bool(Pruning("block", 0.0)), str(Pruning("block", 0.5, block=16))
        (False, 'block 0.5 (16x16)')
    """

    method: str = "unstructured"
    fraction: float = 0.0
    block: tuple[int, int] | None = None
    n: int | None = None
    m: int | None = None
    where: str = "prune"  # the name errors give this value (not part of the value: excluded from ==)

    def __post_init__(self):
        w = self.where
        if self.method not in METHODS:
            raise ParameterError(f"{w}.method", self.method, f"one of {list(METHODS)}",
                                 "unstructured zeroes single weights, block whole tile-aligned blocks, nm n of every "
                                 "m weights along the inputs, filter whole conv filters")
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f < 1.0:
            raise ParameterError(w if self.method == "unstructured" else f"{w}.fraction", f, "a fraction in [0, 1)",
                                 "give the share of weights to zero, e.g. 0.5")
        object.__setattr__(self, "fraction", float(f))
        if self.block is not None:
            if self.method not in TILED:
                raise ParameterError(f"{w}.block", self.block, f"None for method '{self.method}'",
                                     f"a block size is read by the methods {list(TILED)} only: drop it")
            shared = self.method == "nm_tile"
            b = (self.block, 1 if shared else self.block) if _is_int(self.block) else self.block
            if not isinstance(b, (tuple, list)) or len(b) != 2 or not all(_is_int(v) and v >= 1 for v in b) or (
                    shared and b[1] != 1):
                raise ParameterError(f"{w}.block", self.block, "an integer k >= 1 (the outputs sharing a pattern)"
                                     if shared else "an integer k >= 1 (k x k blocks) or a pair (outputs, inputs) of "
                                     "integers >= 1", "e.g. 32, or leave it out for one tile")
            object.__setattr__(self, "block", (int(b[0]), int(b[1])))
        if self.method not in ("nm", "nm_tile"):
            for k in ("n", "m"):
                if getattr(self, k) is not None:
                    raise ParameterError(f"{w}.{k}", getattr(self, k), f"None for method '{self.method}'",
                                         "n and m are read by the methods 'nm' and 'nm_tile' only: drop them")
            return
        self._resolve_nm()

    def _resolve_nm(self) -> None:
        w, n, m = self.where, self.n, self.m
        for k, v in (("n", n), ("m", m)):
            if v is not None and (not _is_int(v) or v < 1):
                raise ParameterError(f"{w}.{k}", v, "an integer >= 1", "N:M pruning keeps n of every m weights, "
                                                                       "1 <= n < m, e.g. n = 2, m = 4")
        if n is not None:
            m = DEFAULT_M if m is None else m
            if n >= m:
                raise ParameterError(f"{w}.n", n, f"an integer 1 <= n < m = {m}",
                                     "n of every m weights are kept: n = m would prune nothing (use fraction 0)")
            frac = 1.0 - n / m
            if self.fraction and abs(self.fraction - frac) > 1e-9:
                raise ParameterError(f"{w}.fraction", self.fraction, f"1 - n / m = {frac:g} (n = {n}, m = {m}), "
                                     "or left out", "give either the fraction or n and m")
            object.__setattr__(self, "fraction", frac)
        elif self.fraction:
            m = DEFAULT_M if m is None else m
            pruned = self.fraction * m
            if abs(pruned - round(pruned)) > 1e-9:
                raise ParameterError(f"{w}.fraction", self.fraction, f"a multiple of 1 / m = 1/{m} (method 'nm', "
                                     f"m = {m})", "give m so that fraction * m is an integer (0.5 with m = 4 is "
                                                  "2:4), or n and m")
            n = m - round(pruned)
        else:
            n = m = None  # fraction 0: nothing pruned
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "m", m)

    def __eq__(self, other):
        if not isinstance(other, Pruning):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in _FIELDS)

    def __hash__(self):
        return hash(tuple(getattr(self, k) for k in _FIELDS))

    def __repr__(self) -> str:
        return "Pruning(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS) + ")"

    def __bool__(self) -> bool:
        return self.fraction > 0.0

    def __str__(self) -> str:
        if self.method == "unstructured":
            return f"{self.fraction:g}"
        if self.method == "nm":
            return f"nm {self.n}:{self.m}" if self else "nm 0"
        if self.method == "nm_tile":
            k = "tile" if self.block is None else f"{self.block[0]} outputs"
            return f"nm_tile {self.n}:{self.m} ({k})" if self else "nm_tile 0"
        if self.method == "block":
            b = "tile" if self.block is None else f"{self.block[0]}x{self.block[1]}"
            return f"block {self.fraction:g} ({b})"
        return f"filter {self.fraction:g}"

    @classmethod
    def parse(cls, value: Any, where: str = "prune") -> "Pruning":
        """A :class:`Pruning` from a fraction (the old form: unstructured), a Pruning, or a mapping with the keys
        ``method``, ``fraction``, ``block``, ``n``, ``m``; errors name ``where``."""
        if isinstance(value, Pruning):
            return value if value.where == where else cls(**value.describe(), where=where)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_FIELDS))
            if unknown:
                raise ParameterError(f"{where}.{unknown[0]}", value[unknown[0]], f"one of the keys {list(_FIELDS)}",
                                     "remove the key or correct its spelling")
            d = dict(value)
            if isinstance(d.get("block"), list):
                d["block"] = tuple(d["block"])
            return cls(**d, where=where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(where, value, "a fraction in [0, 1), or a pruning method {method, fraction, block, "
                                 "n, m}", "give the share of weights to zero, e.g. 0.5")
        return cls("unstructured", value, where=where)

    def describe(self) -> dict[str, Any]:
        """The value as JSON-able fields (``block`` a list)."""
        return {"method": self.method, "fraction": self.fraction,
                "block": None if self.block is None else list(self.block), "n": self.n, "m": self.m}

    def block_for(self, tile: tuple[int, int] | None, where: str | None = None) -> tuple[int, int]:
        """The block of a tiled method (:data:`TILED`) on a tile of ``(outputs_per_tile, rows)`` (``None``: no tile,
        the ideal chip): the given block, checked to divide the tile, else the tile (``"nm_tile"``: its outputs)."""
        where = where or f"{self.where}.block"
        if tile is None:
            if self.block is None:
                raise ParameterError(where, None, "a block size (outputs, inputs) when there is no tile",
                                     "the ideal chip has no tiles to align blocks to: give the block, e.g. the "
                                     "tile's (outputs_per_tile, rows) = (32, 64) for 64 x 64 differential tiles "
                                     "(nm_tile: its 32 outputs)")
            return self.block
        if self.block is None:
            return (tile[0], 1) if self.method == "nm_tile" else tuple(tile)
        bo, bi = self.block
        if tile[0] % bo or tile[1] % bi:
            raise ParameterError(where, self.block, f"a block (outputs, inputs) dividing the tile's "
                                 f"({tile[0]} outputs, {tile[1]} rows), so blocks align with the tiles",
                                 f"choose divisors, e.g. {_divisor_hint(tile)}, or leave it out for one tile")
        return self.block


def _divisor_hint(tile) -> str:
    k = math.gcd(*tile)
    return f"{k} or ({tile[0]}, {tile[1]})"


def tile_block(preset) -> tuple[int, int]:
    """``(outputs_per_tile, rows)`` of a crossbar preset's tile: the default block of block pruning."""
    outputs = preset.cols // 2 if preset.scheme == "differential" else preset.cols - 1
    return outputs, preset.rows


def check_tile(pruning: Pruning, tile: tuple[int, int] | None) -> None:
    """A tiled pruning (:data:`TILED`) must fit ``tile`` (``None``: the ideal chip, which needs its block given):
    the error names the block and the fix, before any work."""
    if pruning and pruning.method in TILED:
        pruning.block_for(tile)


def detection_block(pruning: Pruning, block: tuple[int, int] | None, tile: tuple[int, int]) -> tuple[int, int] | None:
    """The block size sparse mapping detects non-zero blocks at (``block`` of
    :class:`memsim.crossbar.sparse.SparseGrid`) for a layer that is not grouped: ``block`` when given, else a tiled
    pruning's own block on ``tile`` (``nm_tile``: one input of its outputs, so the pruned inputs are free word
    lines), else ``None`` (the default, 8 x 8)."""
    if block is not None or not pruning or pruning.method not in TILED:
        return block
    return pruning.block_for(tile)


# -- masks (pure functions of a weight) ----------------------------------------------------------------------

def _order_smallest(scores: torch.Tensor) -> torch.Tensor:
    return torch.argsort(scores.reshape(-1), stable=True)


def block_mask(matrix: torch.Tensor, fraction: float, block: tuple[int, int]) -> torch.Tensor:
    """Mask of ``matrix`` [out, in] zeroing the ``round(fraction * blocks)`` aligned ``block`` rectangles of
    smallest L2 norm (see the module doc)."""
    bo, bi = block
    out, inp = matrix.shape
    nbo, nbi = math.ceil(out / bo), math.ceil(inp / bi)
    sq = torch.nn.functional.pad(matrix.detach().double() ** 2, (0, nbi * bi - inp, 0, nbo * bo - out))
    norms = sq.reshape(nbo, bo, nbi, bi).sum(dim=(1, 3)).sqrt()
    keep = torch.ones(nbo * nbi, dtype=torch.bool, device=matrix.device)
    k = int(round(fraction * nbo * nbi))
    if k:
        keep[_order_smallest(norms)[:k]] = False
    full = keep.reshape(nbo, nbi).repeat_interleave(bo, 0).repeat_interleave(bi, 1)[:out, :inp]
    return full.to(matrix.dtype)


def nm_mask(matrix: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Mask of ``matrix`` [out, in] keeping the ``n`` largest magnitudes of every ``m`` consecutive weights of each
    row (ties: the first; a last run of ``r < m`` keeps ``min(n, r)``)."""
    out, inp = matrix.shape
    runs = math.ceil(inp / m)
    a = torch.nn.functional.pad(matrix.detach().abs().double(), (0, runs * m - inp), value=-1.0)  # pads never win
    a = a.reshape(out, runs, m)
    order = torch.argsort(-a, dim=-1, stable=True)
    keep = torch.zeros_like(a, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n], True)
    return keep.reshape(out, runs * m)[:, :inp].to(matrix.dtype)


def nm_group_mask(matrix: torch.Tensor, n: int, m: int, group: int) -> torch.Tensor:
    """Mask of ``matrix`` [out, in] keeping, for each aligned group of ``group`` outputs, the ``n`` inputs of every
    ``m`` consecutive ones with the largest L2 norm over the group's outputs (ties: the first), shared by them."""
    out, inp = matrix.shape
    ng = math.ceil(out / group)
    sq = torch.nn.functional.pad(matrix.detach().double() ** 2, (0, 0, 0, ng * group - out))
    norms = sq.reshape(ng, group, inp).sum(1).sqrt()          # [groups, in]
    return nm_mask(norms, n, m).repeat_interleave(group, 0)[:out].to(matrix.dtype)


def filter_mask(weight: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask of a conv ``weight`` [C_out, ...] zeroing the ``round(fraction * C_out)`` filters of smallest L2
    norm (ties: the first)."""
    norms = weight.detach().double().reshape(weight.shape[0], -1).pow(2).sum(1)
    keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    k = int(round(fraction * weight.shape[0]))
    if k:
        keep[_order_smallest(norms)[:k]] = False
    return keep.reshape(-1, *([1] * (weight.dim() - 1))).expand_as(weight).to(weight.dtype)


def weight_mask(weight: torch.Tensor, pruning: Pruning, *, groups: int = 1,
                tile: tuple[int, int] | None = None) -> torch.Tensor | None:
    """The mask (1 kept, 0 pruned; shape and dtype of ``weight``) of ``pruning`` for one layer's weight:
    ``[out, in]`` (linear) or ``[C_out, C_in / groups, kh, kw]`` (conv). ``tile``: ``(outputs_per_tile, rows)`` of
    the chip's tile (``None``: the ideal chip). ``None`` when the method leaves this layer alone (filter pruning
    of a linear layer)."""
    p = pruning
    conv = weight.dim() == 4
    if not p:
        return torch.ones_like(weight)
    if p.method == "unstructured":
        return prune_by_magnitude(weight, p.fraction)
    if p.method == "filter":
        return filter_mask(weight, p.fraction) if conv else None
    rows = weight.reshape(weight.shape[0], -1)   # [out, in] (unfold order for a conv; per group when grouped)
    if p.method == "nm":
        return nm_mask(rows, p.n, p.m).reshape(weight.shape)
    if p.method == "nm_tile":  # in a grouped conv the outputs of each group share (its block of the matrix)
        group = weight.shape[0] // groups if conv and groups > 1 else p.block_for(tile)[0]
        return nm_group_mask(rows, p.n, p.m, group).reshape(weight.shape)
    if conv and groups > 1:  # block: the groups are the blocks (of the block-diagonal matrix sparse mapping packs)
        per = weight.shape[0] // groups
        g = rows.reshape(groups, per * rows.shape[1])
        return block_mask(g, p.fraction, (1, g.shape[1])).reshape(weight.shape)
    return block_mask(rows, p.fraction, p.block_for(tile)).reshape(weight.shape)


def check_applies(pruning: Pruning, weights: Iterable[torch.Tensor]) -> None:
    """Filter pruning needs a conv layer among ``weights`` (else it would prune nothing)."""
    if pruning and pruning.method == "filter" and not any(w.dim() == 4 for w in weights):
        raise ParameterError(f"{pruning.where}.method", "filter", "'unstructured', 'block', 'nm' or 'nm_tile' for a "
                             "network without conv layers", "filter pruning zeroes conv filters and this network has "
                             "none: use 'block' (whole tiles) or 'nm_tile' (whole word lines of a tile)")


def prune_weights_(weights: Iterable[tuple[torch.Tensor, int]], pruning: Pruning,
                   tile: tuple[int, int] | None = None) -> list[torch.Tensor | None]:
    """Prune float weights in place: ``weights`` ``(tensor, groups)`` pairs (``nn.Linear`` / ``nn.Conv2d``
    weights, an exact synapse's); returns their masks (``None``: left alone)."""
    pairs = list(weights)
    check_applies(pruning, (w for w, _ in pairs))
    masks = []
    with torch.no_grad():
        for w, groups in pairs:
            mask = weight_mask(w, pruning, groups=groups, tile=tile)
            if mask is not None:
                w.mul_(mask)
            masks.append(mask)
    return masks


def prune_layer_(layer: _Mapped, pruning: Pruning) -> torch.Tensor:
    """Prune a mapped crossbar layer (:class:`memsim.nn.grouped.MappedCrossbarLinear` /
    :class:`memsim.nn.grouped.GroupedCrossbarConv2d`) in place on its own tiles, then place it again; its
    ``weight_mask`` (returned) keeps the pruned weights at zero in further training. Blocks align with the
    layer's tile."""
    groups = layer.groups if isinstance(layer, GroupedCrossbarConv2d) else 1
    with torch.no_grad():
        mask = weight_mask(layer.weight * layer.weight_mask, pruning, groups=groups, tile=tile_block(layer.preset))
        if mask is not None:
            mask = mask * layer.weight_mask
            layer.weight_mask.copy_(mask)
            layer.weight.mul_(mask)
    layer.remap()
    return layer.weight_mask


def hold_masks(params: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list:
    """Keep pruned weights at zero under training: for each ``(parameter, mask)`` the parameter is multiplied by
    the mask now and its gradient by the mask at every backward pass, so a plain, momentum or Adam(W) step from a
    fresh optimiser state leaves every pruned weight at exactly zero. Returns the hook handles (``.remove()``)."""
    handles = []
    with torch.no_grad():
        for p, mask in params:
            if tuple(mask.shape) != tuple(p.shape):
                raise ParameterError("mask.shape", tuple(mask.shape), f"the parameter's shape {tuple(p.shape)}",
                                     "pass each weight with its own mask")
            m = mask.detach().to(device=p.device, dtype=p.dtype)
            p.mul_(m)
            handles.append(p.register_hook(lambda g, m=m: g * m))
    return handles


def prune_model_(model: nn.Module, pruning: Pruning, tile: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Prune the ``nn.Linear`` / ``nn.Conv2d`` layers of a float model in place (the ideal chip's pruning:
    ``tile`` ``None``); returns ``{layer name: mask}`` of the layers pruned."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    masks = prune_weights_([(m.weight, getattr(m, "groups", 1)) for _, m in layers], pruning, tile)
    return {n: mask for (n, _), mask in zip(layers, masks) if mask is not None}


def prune_and_hold_(weights: Iterable[tuple[torch.Tensor, int]], pruning: Pruning,
                    tile: tuple[int, int] | None = None) -> list:
    """Fine-tuning after pruning: prune the ``(weight, groups)`` parameters in place (:func:`prune_weights_`) and
    hold their masks under training (:func:`hold_masks`); returns the hook handles."""
    pairs = list(weights)
    masks = prune_weights_(pairs, pruning, tile)
    return hold_masks([(w, m) for (w, _), m in zip(pairs, masks) if m is not None])
