"""Crossbar layers with a mapping scheme and pruning: grouped / depthwise convolutions, sparse-mapped matrices.

* :class:`GroupedCrossbarConv2d` - a 2-D convolution with any ``groups`` (depthwise included) as im2col +
  crossbar product. Its unrolled weight is block-diagonal, ``[out, in * kh * kw]`` with one
  ``[out / groups, in / groups * kh * kw]`` block per group. ``mapping="dense"`` tiles the whole matrix,
  zeros included (:class:`memsim.crossbar.tiling.TileGrid`); ``mapping="sparse"`` places only the groups
  that hold a non-zero weight (:class:`memsim.crossbar.sparse.SparseGrid`).
* :class:`MappedCrossbarLinear` - ``nn.Linear`` on crossbars with a weight mask and either mapping
  (sparse: the non-zero ``block`` rectangles of a block-pruned matrix, default 8 x 8).

Both keep a ``weight_mask`` buffer (1 = kept, 0 = pruned): in training the product uses
``weight * weight_mask``, so pruned weights stay zero under further training; :func:`prune_by_magnitude`
gives the mask of unstructured magnitude pruning. The layout of a sparse layer is fixed when it is built
or :meth:`remap`-ped (a chip's tiles are placed once); weights that later move off it are not mapped.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.array import DEFAULT_MODE, CrossbarArray
from ..crossbar.sparse import DEFAULT_BLOCK, Block, SparseGrid
from ..crossbar.tiling import TileGrid
from ..errors import ParameterError
from .crossbar import CrossbarConv2d, CrossbarLinear, _CrossbarCore, _copy_parameters, _pair

__all__ = ["MAPPINGS", "GroupedCrossbarConv2d", "MappedCrossbarLinear", "prune_by_magnitude", "mapping_stats",
           "check_mapping", "check_prune"]

MAPPINGS = ("dense", "sparse")


def check_mapping(mapping: str, where: str = "mapping") -> str:
    if mapping not in MAPPINGS:
        raise ParameterError(where, mapping, f"one of {list(MAPPINGS)}",
                             "dense tiles the whole matrix, sparse places only its non-zero blocks")
    return mapping


def check_prune(prune, where: str = "prune") -> float:
    if isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0.0 <= prune < 1.0:
        raise ParameterError(where, prune, "a fraction in [0, 1)", "give the share of weights to zero, e.g. 0.5")
    return float(prune)


def prune_by_magnitude(weight: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask (same shape, dtype of ``weight``) zeroing exactly ``round(fraction * numel)`` weights of smallest
    magnitude (ties broken by position, so the count is exact)."""
    check_prune(fraction)
    n = weight.numel()
    k = int(round(fraction * n))
    mask = torch.ones(n, dtype=weight.dtype, device=weight.device)
    if k:
        order = torch.argsort(weight.detach().abs().reshape(-1), stable=True)
        mask[order[:k]] = 0
    return mask.reshape(weight.shape)


class _Mapped(_CrossbarCore):
    """Shared parts: the weight mask, the grid for the mapping, a cached unrolled weight for eval."""

    def _init_mapping(self, mapping: str, block, remap: bool):
        """Mapping state of a freshly initialised layer; ``remap``: place the sparse layout now (from_linear /
        from_conv pass False and place the copied weights instead)."""
        self.mapping = check_mapping(mapping)
        self.block = None if block is None else tuple(block)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))
        self._unrolled = None
        if mapping == "sparse" and remap:
            self.remap()

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _blocks(self, matrix: torch.Tensor) -> list[Block] | None:
        return None  # None: detect from the zero pattern

    def matrix(self) -> torch.Tensor:
        """The mapped [out, in] matrix (masked, unrolled); one tensor per weight version in eval, so the
        programmed chip is reused across batches."""
        if self.training:
            self._unrolled = None
            return self._matrix(self.weight * self.weight_mask)
        key = (self.weight.data_ptr(), self.weight._version, self.weight_mask._version)
        if self._unrolled is None or self._unrolled[0] != key:
            with torch.no_grad():
                self._unrolled = (key, self._matrix(self.weight * self.weight_mask))
        return self._unrolled[1]

    def remap(self) -> None:
        """Place the current (masked) matrix on tiles again: the sparse layout follows its zero pattern."""
        out, inp = self.array.grid.out_features, self.array.grid.in_features
        p = self.preset
        if self.mapping == "dense":
            grid = TileGrid(out, inp, p.rows, p.cols, p.scheme)
        else:
            with torch.no_grad():
                m = self._matrix(self.weight * self.weight_mask).detach().cpu()
            blocks = self._blocks(m)
            grid = SparseGrid(out, inp, p.rows, p.cols, p.scheme, mask=m, blocks=blocks,
                              block=self.block or DEFAULT_BLOCK)
        old = self.array
        self.array = CrossbarArray(p, out, inp, mode=old.mode, noise=old.noise,
                                   grid=grid)
        self._programmed = None
        self._unrolled = None
        buf = self.adc_full_scale  # a new layout: its tiles' ADCs are calibrated anew
        self.adc_full_scale = torch.zeros(self.array.adc_shape, dtype=buf.dtype, device=buf.device)

    def prune_(self, fraction: float) -> "torch.Tensor":
        """Unstructured magnitude pruning of ``fraction`` of this layer's weights (in place), then remap."""
        with torch.no_grad():
            mask = prune_by_magnitude(self.weight * self.weight_mask, fraction) * self.weight_mask
            self.weight_mask.copy_(mask)
            self.weight.mul_(mask)
        self.remap()
        return self.weight_mask


class MappedCrossbarLinear(_Mapped):
    r"""``y = x (W * mask)^T + b`` on crossbar tiles with a dense or sparse mapping; parameters as ``nn.Linear``.

    The product is that of :class:`memsim.nn.CrossbarLinear` (differential pairs or an offset column, DAC,
    the tiles' column currents, ADC, partial sums over tiles) applied to the masked matrix
    :math:`\tilde W = W \odot M`, :math:`M \in \{0, 1\}` (the ``weight_mask`` buffer):

    .. math::  y = \frac{s_x \|\tilde W\|_\infty}{g\,v_{max}} \sum_{t} \mathrm{ADC}\big(I^+_t - I^-_t\big) + b,
               \qquad I_{t,j} = \sum_{i} V_{t,i}\, G_{t,ij}(\tilde W)

    which is :math:`x \tilde W^T + b` exactly in ``mode="ideal"``. ``mapping="dense"`` tiles the whole
    :math:`[out, in]` matrix: :math:`\lceil in / rows \rceil \cdot \lceil out / outputs\_per\_tile \rceil`
    tiles (``outputs_per_tile`` = ``cols / 2`` for differential pairs). ``mapping="sparse"`` places only the
    ``block`` rectangles of :math:`\tilde W` that hold a non-zero weight (:class:`memsim.crossbar.sparse.SparseGrid`).

    Args:
        in_features, out_features: sizes of the weight matrix ``[out_features, in_features]``.
        bias: add a learnable bias (weight units).
        preset: crossbar preset name, path or :class:`memsim.crossbar.Preset` (tile size, wires, device card,
            converters, noise).
        mode: ``"ideal"``, ``"noisy"``, ``"irdrop"`` or ``"nonlinear"``, as for :class:`memsim.nn.CrossbarLinear`.
        mapping: ``"dense"`` or ``"sparse"``.
        block: ``(outputs, inputs)`` of the blocks the sparse layout is cut into (default 8 x 8).
        noise: :class:`memsim.crossbar.NonIdealities` overriding the preset's (``None``: the preset's).
        scale_momentum: momentum of the running input scale :math:`s_x` (the DAC range), updated in training.
        device, dtype: as for ``nn.Linear``.

    Shapes: input ``[..., in_features]`` (any units; scaled to the DAC range), output ``[..., out_features]`` in
    the units of ``x W^T``; ``weight_mask`` has the shape of ``weight``. Conductances in S, voltages in V,
    currents in A inside. :meth:`prune_` zeroes a fraction of the weights by magnitude and re-places the layout.

    Example: the ideal product equals the masked matrix product, and pruning keeps exactly the rest.

        >>> import torch
        >>> from memsim.nn.grouped import MappedCrossbarLinear
        >>> _ = torch.manual_seed(0)
        >>> layer = MappedCrossbarLinear(100, 24, preset="hfox_1t1r_64", mode="ideal")
        >>> layer.array.grid.n_tiles            # ceil(100 / 64) row tiles x ceil(24 / 32) column tiles
        2
        >>> mask = layer.prune_(0.75)
        >>> int(mask.sum()), int((layer.weight == 0).sum())        # of 2400 weights
        (600, 1800)
        >>> x = torch.rand(8, 100)
        >>> bool(torch.allclose(layer(x), x @ (layer.weight * mask).T + layer.bias, atol=1e-5))
        True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, preset="hfox_1t1r_64",
                 mode: str = DEFAULT_MODE, mapping: str = "dense", block=None, noise=None,
                 scale_momentum: float = 0.9, device=None, dtype=None, _remap: bool = True):
        super().__init__()
        CrossbarLinear._init_linear(self, in_features, out_features, bias, preset, mode, noise, scale_momentum,
                                    device, dtype)
        self._init_mapping(mapping, block, _remap)

    @classmethod
    def from_linear(cls, layer: nn.Linear, **kw) -> "MappedCrossbarLinear":
        new = cls(layer.in_features, layer.out_features, layer.bias is not None, device=layer.weight.device,
                  dtype=layer.weight.dtype, _remap=False, **kw)
        _copy_parameters(layer, new)
        new.remap()
        return new

    def _matrix(self, weight):
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ParameterError("input.shape", tuple(x.shape), f"[..., {self.in_features}]",
                                 "the last dimension must equal in_features")
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(-1, self.in_features), self.matrix()).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"preset={self.preset.name}, mode={self.mode}, mapping={self.mapping}, tiles={self.array.grid.n_tiles}")


class GroupedCrossbarConv2d(_Mapped):
    r"""2-D convolution with ``groups`` >= 1 (depthwise: ``groups = in_channels``) as im2col + crossbar product;
    parameters and init as ``nn.Conv2d``.

    Each output position's receptive field :math:`u` (``in_channels * kh * kw`` values, ``F.unfold``) is
    multiplied on the crossbar tiles (as in :class:`MappedCrossbarLinear`) by the block-diagonal unrolled
    weight of the :math:`g` groups,

    .. math::  \tilde W = \mathrm{diag}(W_1, \dots, W_g),\qquad W_k \in
               \mathbb{R}^{\frac{C_{out}}{g} \times \frac{C_{in}}{g} k_h k_w},\qquad
               y[n, :, p] = \tilde W\,u[n, :, p] + b,

    which is ``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` exactly in ``mode="ideal"``.
    ``mapping="dense"`` tiles the whole :math:`[C_{out}, C_{in} k_h k_w]` matrix, zeros included;
    ``mapping="sparse"`` places only the groups that hold a non-zero weight (one block per group, packed; a
    tile holds the word lines of :math:`\lfloor rows / (C_{in} k_h k_w / g) \rfloor` depthwise groups).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as for ``nn.Conv2d`` (integer
            padding, zero padding mode).
        groups: an integer >= 1 dividing both channel counts.
        bias: add a learnable bias (weight units).
        preset: crossbar preset name, path or :class:`memsim.crossbar.Preset`.
        mode: ``"ideal"``, ``"noisy"``, ``"irdrop"`` or ``"nonlinear"``, as for :class:`memsim.nn.CrossbarConv2d`.
        mapping: ``"dense"`` or ``"sparse"``.
        block: ``(outputs, inputs)`` blocks for the sparse layout (default: the groups themselves).
        noise: :class:`memsim.crossbar.NonIdealities` overriding the preset's (``None``: the preset's).
        scale_momentum: momentum of the running input scale (the DAC range), updated in training.
        device, dtype: as for ``nn.Conv2d``.

    Shapes: input ``[N, C_in, H, W]`` (any units), output ``[N, C_out, H_out, W_out]`` as for ``nn.Conv2d``;
    ``weight`` ``[C_out, C_in / groups, kh, kw]``. Conductances in S, voltages in V, currents in A inside.

    Example: a depthwise 3x3 convolution of 64 channels on 64 x 64 differential tiles: the ideal product is
    ``F.conv2d``; dense mapping needs 9 x 2 tiles for the ``[64, 576]`` matrix, sparse mapping
    :math:`\lceil 64 / \lfloor 64 / 9 \rfloor \rceil` = 10.

        >>> import torch
        >>> from torch.nn import functional as F
        >>> from memsim.nn.grouped import GroupedCrossbarConv2d
        >>> _ = torch.manual_seed(0)
        >>> conv = GroupedCrossbarConv2d(64, 64, 3, padding=1, groups=64, preset="hfox_1t1r_64", mode="ideal")
        >>> x = torch.rand(2, 64, 8, 8)
        >>> y = conv(x)
        >>> tuple(y.shape), bool(torch.allclose(y, F.conv2d(x, conv.weight, conv.bias, padding=1, groups=64),
        ...                                     atol=1e-5))
        ((2, 64, 8, 8), True)
        >>> conv.array.grid.n_tiles, GroupedCrossbarConv2d(64, 64, 3, groups=64, mapping="sparse").array.grid.n_tiles
        (18, 10)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, preset="hfox_1t1r_64", mode: str = DEFAULT_MODE,
                 mapping: str = "dense", block=None, noise=None,
                 scale_momentum: float = 0.9, device=None, dtype=None, _remap: bool = True):
        super().__init__()
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 \
                or in_channels % groups or out_channels % groups:
            raise ParameterError("groups", groups, f"an integer >= 1 dividing in_channels ({in_channels}) and "
                                                   f"out_channels ({out_channels})", "as for nn.Conv2d")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), \
            _pair(dilation, "dilation")
        kh, kw = self.kernel_size
        self._init_core(preset, out_channels, in_channels * kh * kw, mode, noise, scale_momentum)
        kw_ = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw, **kw_))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw_)) if bias else None
        CrossbarConv2d.reset_parameters(self)
        self._init_mapping(mapping, block, _remap)

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, **kw) -> "GroupedCrossbarConv2d":
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ParameterError("conv", f"padding={layer.padding!r}, padding_mode={layer.padding_mode!r}",
                                 "integer padding, padding_mode='zeros'", "keep this layer digital")
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, layer.groups, layer.bias is not None, device=layer.weight.device,
                  dtype=layer.weight.dtype, _remap=False, **kw)
        _copy_parameters(layer, new)
        new.remap()
        return new

    @property
    def group_shape(self) -> tuple[int, int]:
        """(outputs, inputs) of one group's block of the unrolled matrix."""
        kh, kw = self.kernel_size
        return self.out_channels // self.groups, self.in_channels // self.groups * kh * kw

    def _matrix(self, weight):
        if self.groups == 1:
            return weight.reshape(self.out_channels, -1)
        bo, bi = self.group_shape
        return torch.block_diag(*weight.reshape(self.groups, bo, bi))

    def _blocks(self, matrix):
        if self.block is not None or self.groups == 1:
            return None  # detect from the zero pattern with self.block (default 8 x 8)
        bo, bi = self.group_shape
        return [Block(g * bo, (g + 1) * bo, g * bi, (g + 1) * bi) for g in range(self.groups)
                if bool((matrix[g * bo:(g + 1) * bo, g * bi:(g + 1) * bi] != 0).any())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ParameterError("input.shape", tuple(x.shape), f"[N, {self.in_channels}, H, W]",
                                 "pass a 4-D batch with in_channels channels")
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        flat = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        y = self._matmul(flat, self.matrix())
        y = y.reshape(n, ho * wo, self.out_channels).transpose(1, 2).reshape(n, self.out_channels, ho, wo)
        return y if self.bias is None else y + self.bias[None, :, None, None]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, preset={self.preset.name}, mode={self.mode}, "
                f"mapping={self.mapping}, tiles={self.array.grid.n_tiles}")


def _unrolled(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, _Mapped):
        return layer._matrix(layer.weight * layer.weight_mask).detach()
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def mapping_stats(layer: nn.Module) -> dict:
    """Tiles and cells of a crossbar layer (CrossbarLinear/CrossbarConv2d or a mapped layer): the mapped
    matrix shape, tiles, cells holding a mapped / non-zero / zero weight, utilisation, weights."""
    grid = layer.array.grid
    m = _unrolled(layer)
    cpw = 2 if grid.scheme == "differential" else 1
    nnz = int((m != 0).sum())
    cells = grid.n_tiles * grid.rows * grid.cols
    if isinstance(grid, SparseGrid):
        used = sum(t.used_cells for t in grid.tiles())
        nonzero, zero = grid.nonzero_cells, grid.zero_cells
    else:
        used = sum(t.used_cells for t in grid.tiles())
        nonzero, zero = nnz * cpw, used - nnz * cpw
    if isinstance(layer, (GroupedCrossbarConv2d, CrossbarConv2d)):
        kind = "grouped_conv" if getattr(layer, "groups", 1) > 1 else "conv"
    else:
        kind = "linear"
    weights = layer.weight.numel()
    mask = getattr(layer, "weight_mask", None)
    nonzero_w = int(((layer.weight * mask) if mask is not None else layer.weight).detach().ne(0).sum())
    return {"type": kind, "mapping": getattr(layer, "mapping", "dense"), "out": grid.out_features,
            "in": grid.in_features, "groups": getattr(layer, "groups", 1), "tiles": grid.n_tiles,
            "n_row_tiles": grid.n_row_tiles, "n_col_tiles": grid.n_col_tiles, "rows": grid.rows, "cols": grid.cols,
            "outputs_per_tile": grid.outputs_per_tile, "cells": cells, "used_cells": used, "nonzero_cells": nonzero,
            "zero_cells": zero, "utilisation": used / cells if cells else 0.0,
            "nonzero_utilisation": nonzero / cells if cells else 0.0, "weights": weights,
            "nonzero_weights": nonzero_w}


def conv_output_size(layer, h: int, w: int) -> int:
    """Output positions (Ho * Wo) of a conv layer for an ``h x w`` input: input vectors per sample."""
    kh, kw = layer.kernel_size
    ho = (h + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    wo = (w + 2 * layer.padding[1] - layer.dilation[1] * (kw - 1) - 1) // layer.stride[1] + 1
    return max(ho, 0) * max(wo, 0)

