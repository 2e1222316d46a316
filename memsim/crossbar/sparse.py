"""Sparse mapping: only the non-zero blocks of a weight matrix on tiles, packed onto as few tiles as possible.

Dense mapping (:class:`memsim.crossbar.tiling.TileGrid`) tiles the whole ``[out, in]`` matrix, zeros
included. A matrix with structured sparsity - the block-diagonal unrolled weight of a grouped or
depthwise convolution, or a block-pruned matrix - wastes most of those cells. :class:`SparseGrid`
places only the blocks that hold non-zero weights:

* **Blocks.** A block is a rectangle ``outputs [o0, o1) x inputs [i0, i1)`` of the matrix. They come
  either from the caller (the groups of a grouped convolution) or from :func:`detect_blocks`, which cuts
  the matrix into aligned ``block = (bo, bi)`` rectangles (default 8 x 8), keeps those with a non-zero
  entry and joins horizontally adjacent kept blocks of one block row into runs. Blocks larger than a tile
  are cut into tile-sized pieces (their partial sums are added after the ADC, as in dense tiling).
* **Packing.** Three packings are tried and the one with the fewest tiles kept (ties: the first).
  (1) Best-fit decreasing (:func:`pack_blocks`): pieces sorted by area (largest first) go into the open
  tile where they add the fewest new rows and outputs (a tile holds a set of input rows and a set of
  output columns; pieces with the same inputs share word lines, pieces with the same outputs share bit
  lines), else into a new tile - first-fit-decreasing's usual improvement for 2-D vector bin packing; it
  reconstructs the dense tiling when the matrix has no zero blocks. (2) Band packing
  (:func:`pack_stream`): blocks fill bands of ``outputs_per_tile`` outputs and are stacked along the
  rows, cut at tile boundaries - better when blocks are taller than half a tile (e.g. 4 groups of
  36 inputs on 64-row tiles: 3 tiles instead of 4). (3) Aligned packing (:func:`pack_aligned`): the dense
  tiling's grid with only the non-zero pieces placed, so sparse mapping never needs more tiles than dense.
* **Compaction.** When the blocks are detected and the matrix has all-zero outputs or inputs (a pruned conv
  filter is an all-zero row; an input no kept weight reads needs no word line), the three packings are tried
  on the matrix without them as well, and that layout is kept when it needs fewer tiles: a tile's inputs and
  outputs are index lists, so they need not be contiguous in the layer.
* **Layout in the crossbar engine.** Every tile is its own tile row (``n_col_tiles = 1``), with its own
  gathered inputs (:meth:`pack_inputs`; unused rows get 0 V) and its own output list; :meth:`combine`
  scatter-adds the digitised tile outputs into the layer outputs (``index_add``). A cell holds its weight
  only when its (output, input) pair belongs to a piece placed on that tile; every other cell is erased
  (``g_pad``), except, in the offset scheme, cells whose row and column are both in use, which must hold
  the zero-weight conductance ``g_ref`` so the reference column cancels them (they are counted as zero
  cells programmed).

Any object with this interface plugs into :class:`memsim.crossbar.array.CrossbarArray` (``grid=``), so
every simulation mode and non-ideality applies to sparse layouts unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ParameterError
from .tiling import TileInfo, check_tile_size

__all__ = ["Block", "SparseGrid", "detect_blocks", "split_blocks", "pack_blocks", "pack_stream", "pack_aligned",
           "DEFAULT_BLOCK"]

#: default block size (outputs, inputs) of :func:`detect_blocks`
DEFAULT_BLOCK = (8, 8)


@dataclass(frozen=True)
class Block:
    """Outputs ``[o0, o1)`` x inputs ``[i0, i1)`` of a weight matrix."""
    o0: int
    o1: int
    i0: int
    i1: int

    @property
    def outputs(self) -> int:
        return self.o1 - self.o0

    @property
    def inputs(self) -> int:
        return self.i1 - self.i0

    @property
    def area(self) -> int:
        return self.outputs * self.inputs


def _check_block(block) -> tuple[int, int]:
    if (not isinstance(block, (tuple, list)) or len(block) != 2
            or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in block)):
        raise ParameterError("block", block, "a pair of integers >= 1 (outputs, inputs)",
                             "give the block size of the sparsity pattern, e.g. (8, 8)")
    return int(block[0]), int(block[1])


def detect_blocks(mask: torch.Tensor, block=DEFAULT_BLOCK) -> list[Block]:
    """The non-zero blocks of a ``[out, in]`` matrix (or boolean mask): aligned ``block`` rectangles with a
    non-zero entry, horizontally adjacent ones of a block row joined into one run."""
    if mask.dim() != 2:
        raise ParameterError("mask.shape", tuple(mask.shape), "a 2-D [out, in] matrix", "pass the layer's weight")
    bo, bi = _check_block(block)
    out, inp = mask.shape
    nz = (mask != 0)
    nbo, nbi = math.ceil(out / bo), math.ceil(inp / bi)
    padded = torch.nn.functional.pad(nz.to(torch.uint8), (0, nbi * bi - inp, 0, nbo * bo - out))
    kept = padded.reshape(nbo, bo, nbi, bi).amax(dim=(1, 3)).bool().tolist()
    blocks = []
    for r, row in enumerate(kept):
        c = 0
        while c < nbi:
            if not row[c]:
                c += 1
                continue
            start = c
            while c < nbi and row[c]:
                c += 1
            blocks.append(Block(r * bo, min((r + 1) * bo, out), start * bi, min(c * bi, inp)))
    return blocks


def split_blocks(blocks: list[Block], rows: int, outputs: int) -> list[Block]:
    """Cut blocks into pieces of at most ``rows`` inputs x ``outputs`` outputs (one tile each at most)."""
    pieces = []
    for b in blocks:
        for o in range(b.o0, b.o1, outputs):
            for i in range(b.i0, b.i1, rows):
                pieces.append(Block(o, min(o + outputs, b.o1), i, min(i + rows, b.i1)))
    return pieces


class _Tile:
    __slots__ = ("rows", "outs", "pieces")

    def __init__(self):
        self.rows: dict[int, None] = {}   # insertion-ordered sets
        self.outs: dict[int, None] = {}
        self.pieces: list[Block] = []

    def added(self, b: Block) -> tuple[int, int]:
        rows, outs = self.rows, self.outs
        return (sum(1 for i in range(b.i0, b.i1) if i not in rows),
                sum(1 for o in range(b.o0, b.o1) if o not in outs))

    def place(self, b: Block) -> None:
        self.rows.update(dict.fromkeys(range(b.i0, b.i1)))
        self.outs.update(dict.fromkeys(range(b.o0, b.o1)))
        self.pieces.append(b)


def pack_blocks(pieces: list[Block], rows: int, outputs: int) -> list[_Tile]:
    """Best-fit decreasing packing of tile-sized pieces onto tiles of ``rows`` inputs x ``outputs`` outputs.

    Cost of a piece on a tile = new rows / rows + new outputs / outputs. Only tiles that share a row or an
    output with the piece can cost less than the full piece, so they are found through an index of which
    tiles hold each row and output; among the rest the first with room (first fit) is the candidate."""
    tiles: list[_Tile] = []
    row_tiles: dict[int, set[int]] = {}
    out_tiles: dict[int, set[int]] = {}
    order = sorted(range(len(pieces)), key=lambda k: (-pieces[k].area, k))
    for k in order:
        b = pieces[k]
        best, best_cost = None, None
        sharing: set[int] = set()
        for i in range(b.i0, b.i1):
            sharing |= row_tiles.get(i, set())
        for o in range(b.o0, b.o1):
            sharing |= out_tiles.get(o, set())
        for ti in sorted(sharing):
            t = tiles[ti]
            dr, do = t.added(b)
            if len(t.rows) + dr > rows or len(t.outs) + do > outputs:
                continue
            cost = dr / rows + do / outputs
            if best_cost is None or cost < best_cost:
                best, best_cost = ti, cost
        if best is None:
            best = next((ti for ti, t in enumerate(tiles) if ti not in sharing and len(t.rows) + b.inputs <= rows
                         and len(t.outs) + b.outputs <= outputs), None)
        if best is None:
            tiles.append(_Tile())
            best = len(tiles) - 1
        tiles[best].place(b)
        for i in range(b.i0, b.i1):
            row_tiles.setdefault(i, set()).add(best)
        for o in range(b.o0, b.o1):
            out_tiles.setdefault(o, set()).add(best)
    return tiles


def pack_stream(blocks: list[Block], rows: int, outputs: int) -> list[_Tile]:
    """Band packing: blocks go first-fit into bands of at most ``outputs`` outputs; each band's blocks are
    stacked along the rows and cut at tile boundaries (a block may span two tiles; partial sums are added
    after the ADC). Better than whole-piece packing when blocks are taller than half a tile."""
    bands: list[tuple[set, list[Block]]] = []
    for b in sorted(split_blocks(blocks, 1 << 62, outputs), key=lambda b: (b.o0, b.i0)):
        for outs, members in bands:
            if len(outs | set(range(b.o0, b.o1))) <= outputs:
                outs.update(range(b.o0, b.o1))
                members.append(b)
                break
        else:
            bands.append((set(range(b.o0, b.o1)), [b]))
    tiles: list[_Tile] = []
    for _, members in bands:
        tile = _Tile()
        tiles.append(tile)
        for b in members:
            i = b.i0
            while i < b.i1:
                room = rows - len(tile.rows)
                if room == 0:
                    tile = _Tile()
                    tiles.append(tile)
                    room = rows
                piece = Block(b.o0, b.o1, i, min(b.i1, i + room))
                dr, _ = tile.added(piece)
                while dr > room:  # rows already present are shared; never overfill
                    piece = Block(b.o0, b.o1, i, piece.i1 - (dr - room))
                    dr, _ = tile.added(piece)
                tile.place(piece)
                i = piece.i1
    return [t for t in tiles if t.pieces]


def pack_aligned(blocks: list[Block], rows: int, outputs: int) -> list[_Tile]:
    """The dense tiling's grid with only the non-zero pieces placed: blocks cut at the dense tile boundaries,
    one tile per dense tile that holds any. Never more tiles than dense mapping (the bound the others meet)."""
    tiles: dict[tuple[int, int], _Tile] = {}
    for b in blocks:
        o = b.o0
        while o < b.o1:
            o_end = min(b.o1, (o // outputs + 1) * outputs)
            i = b.i0
            while i < b.i1:
                i_end = min(b.i1, (i // rows + 1) * rows)
                tiles.setdefault((i // rows, o // outputs), _Tile()).place(Block(o, o_end, i, i_end))
                i = i_end
            o = o_end
    return [tiles[k] for k in sorted(tiles)]


class SparseGrid:
    """A layout of the non-zero blocks of an ``[out, in]`` matrix on ``(rows, cols)`` tiles (see module doc).

    ``blocks``: the blocks to place (default: :func:`detect_blocks` of ``mask`` with ``block``). ``mask``:
    the matrix (or its non-zero pattern) used to detect blocks and to count zero and non-zero cells.
    """

    def __init__(self, out_features: int, in_features: int, rows: int, cols: int, scheme: str = "differential", *,
                 mask: torch.Tensor | None = None, blocks: list[Block] | None = None, block=DEFAULT_BLOCK):
        for name, v in (("out_features", out_features), ("in_features", in_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1", "give the weight matrix shape (out, in)")
        check_tile_size(rows, cols, scheme)
        self.out_features, self.in_features, self.rows, self.cols, self.scheme = \
            out_features, in_features, rows, cols, scheme
        if mask is not None and tuple(mask.shape) != (out_features, in_features):
            raise ParameterError("mask.shape", tuple(mask.shape), f"({out_features}, {in_features})",
                                 "pass the layer's [out, in] matrix")
        detected = blocks is None
        if detected:
            if mask is None:
                raise ParameterError("blocks", None, "a list of Blocks or a mask to detect them from",
                                     "pass mask=weight (or blocks=...)")
            blocks = detect_blocks(mask, block)
        for b in blocks:
            if not (0 <= b.o0 < b.o1 <= out_features and 0 <= b.i0 < b.i1 <= in_features):
                raise ParameterError("block", b, f"inside the [{out_features}, {in_features}] matrix",
                                     "check the block list")
        self.blocks = list(blocks)
        mask_bool = None if mask is None else (mask.detach() != 0).cpu()
        best, best_mask, keep = self._packings(self.blocks), mask_bool, None
        if detected:  # the matrix without its all-zero outputs and inputs (pruned filters, pruned word lines)
            keep_out, keep_in = mask_bool.any(1).nonzero()[:, 0], mask_bool.any(0).nonzero()[:, 0]
            if 0 < len(keep_out) * len(keep_in) < out_features * in_features:
                small = mask_bool[keep_out][:, keep_in]
                tiles = self._packings(detect_blocks(small, block))
                if len(tiles) < len(best):
                    best, best_mask, keep = tiles, small, (keep_out, keep_in)
        self._layout(best, best_mask)
        if keep is not None:  # back to the matrix's own outputs and inputs
            self.out_idx = torch.where(self.out_idx >= 0, keep[0][self.out_idx.clamp_min(0)], self.out_idx)
            self.in_idx = torch.where(self.in_idx >= 0, keep[1][self.in_idx.clamp_min(0)], self.in_idx)

    def _packings(self, blocks: list[Block]) -> list[_Tile]:
        """The packing of ``blocks`` with the fewest tiles (ties: the earlier of best-fit, band, aligned)."""
        rows, opt = self.rows, self.outputs_per_tile
        fit = pack_blocks(split_blocks(blocks, rows, opt), rows, opt)
        layouts = [fit, pack_stream(blocks, rows, opt), pack_aligned(blocks, rows, opt)]
        return min(layouts, key=len)

    # -- construction ----------------------------------------------------------
    def _layout(self, tiles: list[_Tile], mask: torch.Tensor | None) -> None:
        n, rows, opt = max(len(tiles), 1), self.rows, self.outputs_per_tile
        in_idx = torch.full((n, rows), -1, dtype=torch.long)
        out_idx = torch.full((n, opt), -1, dtype=torch.long)
        placed = torch.zeros((n, rows, opt), dtype=torch.bool)
        for t, tile in enumerate(tiles):
            rpos = {i: r for r, i in enumerate(tile.rows)}
            cpos = {o: c for c, o in enumerate(tile.outs)}
            in_idx[t, :len(rpos)] = torch.tensor(list(tile.rows), dtype=torch.long)
            out_idx[t, :len(cpos)] = torch.tensor(list(tile.outs), dtype=torch.long)
            for b in tile.pieces:
                r = [rpos[i] for i in range(b.i0, b.i1)]
                c = [cpos[o] for o in range(b.o0, b.o1)]
                placed[t, torch.tensor(r)[:, None], torch.tensor(c)[None, :]] = True
        self.in_idx, self.out_idx, self.placed = in_idx, out_idx, placed
        self._n_tiles = len(tiles)
        cpw = 2 if self.scheme == "differential" else 1
        used_rows = (in_idx >= 0).sum(1)
        used_outs = (out_idx >= 0).sum(1)
        placed_n = placed.sum((1, 2))
        if mask is not None:
            nzw = mask[out_idx.clamp_min(0)[:, None, :], in_idx.clamp_min(0)[:, :, None]] & placed
            nonzero = nzw.sum((1, 2))
        else:
            nonzero = placed_n
        if self.scheme == "differential":
            zero = (placed_n - nonzero) * cpw
        else:  # cells of used rows x used outputs are programmed (placed weights, or g_ref where not placed)
            zero = used_rows * used_outs - nonzero
        self._stats = [(int(used_rows[t]), int(used_outs[t]), int(placed_n[t]) * cpw, int(nonzero[t]) * cpw,
                        int(zero[t])) for t in range(self._n_tiles)]

    # -- TileGrid interface ------------------------------------------------------
    @property
    def outputs_per_tile(self) -> int:
        return self.cols // 2 if self.scheme == "differential" else self.cols - 1

    @property
    def n_row_tiles(self) -> int:
        return max(self._n_tiles, 1)  # an all-zero matrix still gets one (erased) tile so shapes stay valid

    @property
    def n_col_tiles(self) -> int:
        return 1

    @property
    def n_tiles(self) -> int:
        return self._n_tiles

    def tiles(self) -> list[TileInfo]:
        return [TileInfo(t, 0, ur, uo, used, self.rows * self.cols)
                for t, (ur, uo, used, _, _) in enumerate(self._stats)]

    def utilisation(self) -> float:
        """Cells holding a placed weight / cells of all tiles."""
        cells = self.n_tiles * self.rows * self.cols
        return sum(s[2] for s in self._stats) / cells if cells else 0.0

    @property
    def nonzero_cells(self) -> int:
        """Cells holding a non-zero weight (differential pairs count two); needs ``mask``."""
        return sum(s[3] for s in self._stats)

    @property
    def zero_cells(self) -> int:
        """Cells programmed with a zero weight: zeros inside placed blocks (differential), or every
        programmed cell of a used row and used output that holds no non-zero weight (offset)."""
        return sum(s[4] for s in self._stats)

    def report(self) -> str:
        lines = [f"{self.out_features}x{self.in_features} weights, {len(self.blocks)} non-zero block(s), sparse-mapped "
                 f"on {self.n_tiles} tiles of {self.rows}x{self.cols} ({self.scheme}); overall utilisation "
                 f"{self.utilisation():.1%}"]
        lines += [f"  tile {t.row_tile}: {t.used_rows} rows x {t.used_outputs} outputs, {t.utilisation:.1%}"
                  for t in self.tiles()]
        return "\n".join(lines)

    def _index(self, device):
        if self.in_idx.device != device:
            self.in_idx, self.out_idx, self.placed = (x.to(device) for x in (self.in_idx, self.out_idx, self.placed))
        return self.in_idx, self.out_idx, self.placed

    def pack(self, gs: list[torch.Tensor], g_pad: float, g_ref: float) -> torch.Tensor:
        """Conductances [n_tiles, 1, rows, cols] from per-weight matrices ``gs`` ([out, in] each)."""
        in_idx, out_idx, placed = self._index(gs[0].device)
        used = (in_idx >= 0)[:, :, None] & (out_idx >= 0)[:, None, :]        # [T, rows, opt]
        fill = g_ref if self.scheme != "differential" else g_pad              # zero weight of the scheme
        per = []
        for g in gs:
            cell = g[out_idx.clamp_min(0)[:, None, :], in_idx.clamp_min(0)[:, :, None]]  # [T, rows, opt]
            other = torch.where(used, torch.as_tensor(fill, dtype=g.dtype, device=g.device),
                                torch.as_tensor(g_pad, dtype=g.dtype, device=g.device))
            per.append(torch.where(placed, cell, other))
        n, rows, opt = placed.shape
        if self.scheme == "differential":
            tiles = torch.stack(per, -1).reshape(n, rows, 2 * opt)
        else:
            tiles = torch.cat([per[0], torch.full((n, rows, 1), g_ref, dtype=gs[0].dtype, device=gs[0].device)], -1)
        if tiles.shape[-1] < self.cols:
            tiles = torch.cat([tiles, torch.full((n, rows, self.cols - tiles.shape[-1]), g_pad, dtype=tiles.dtype,
                                                 device=tiles.device)], -1)
        return tiles[:, None]

    def pack_inputs(self, v: torch.Tensor) -> torch.Tensor:
        """[B, in] -> [B, n_tiles, rows]: each tile's inputs gathered (unused rows 0 V)."""
        in_idx = self._index(v.device)[0]
        ext = torch.nn.functional.pad(v, (0, 1))  # index in_features = the zero column
        idx = torch.where(in_idx >= 0, in_idx, torch.full_like(in_idx, self.in_features))
        return ext[:, idx]

    def column_signal(self, i: torch.Tensor) -> torch.Tensor:
        """Column currents [..., cols] -> signed output currents [..., outputs_per_tile]."""
        opt = self.outputs_per_tile
        if self.scheme == "differential":
            return i[..., 0:2 * opt:2] - i[..., 1:2 * opt:2]
        return i[..., :opt] - i[..., opt:opt + 1]

    def combine(self, y: torch.Tensor) -> torch.Tensor:
        """Digitised tile outputs [B, n_tiles, 1, outputs_per_tile] -> layer outputs [B, out] (scatter-add)."""
        out_idx = self._index(y.device)[1]
        idx = torch.where(out_idx >= 0, out_idx, torch.full_like(out_idx, self.out_features)).reshape(-1)
        flat = y.reshape(y.shape[0], -1)
        total = torch.zeros(y.shape[0], self.out_features + 1, dtype=y.dtype, device=y.device).index_add(1, idx, flat)
        return total[:, :self.out_features]
