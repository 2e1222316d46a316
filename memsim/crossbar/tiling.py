"""Tiling: any (out, in) weight matrix onto tiles of (rows, cols) cells, with partial sums.

Inputs run along a tile's rows (word lines), outputs along its columns (bit
lines). A tile holds ``outputs_per_tile`` outputs: ``cols // 2`` for differential
pairs (columns 2k = G+, 2k+1 = G-), ``cols - 1`` for the offset scheme (the last
column is the reference). Matrices that do not fill the last tiles are padded
with erased cells (g_min) and zero inputs. Partial sums of the tiles in one tile
column are added after the ADC. With ideal wires a read computes the occupied rows and outputs only
(:attr:`TileGrid.active_rows`, :attr:`TileGrid.active_outputs`, :attr:`TileGrid.last_rows`; see
:meth:`memsim.crossbar.CrossbarArray._active`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ParameterError


@dataclass(frozen=True)
class TileInfo:
    row_tile: int
    col_tile: int
    used_rows: int
    used_outputs: int
    used_cells: int
    cells: int

    @property
    def utilisation(self) -> float:
        """Fraction of the tile's cells that hold a weight (differential pairs count two cells)."""
        return self.used_cells / self.cells


def check_tile_size(rows, cols, scheme: str) -> None:
    for name, val in (("tile.rows", rows), ("tile.cols", cols)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ParameterError(name, val, "an integer >= 1", "give the tile size in cells, e.g. 64")
    if cols < 2:
        raise ParameterError("tile.cols", cols, f"an integer >= 2 for the '{scheme}' scheme",
                             "a differential pair or a reference column needs two columns")


@dataclass(frozen=True)
class TileGrid:
    out_features: int
    in_features: int
    rows: int
    cols: int
    scheme: str = "differential"

    def __post_init__(self):
        for name in ("out_features", "in_features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1", "give the weight matrix shape (out, in)")
        check_tile_size(self.rows, self.cols, self.scheme)

    @property
    def outputs_per_tile(self) -> int:
        return self.cols // 2 if self.scheme == "differential" else self.cols - 1

    @property
    def n_row_tiles(self) -> int:
        return math.ceil(self.in_features / self.rows)

    @property
    def n_col_tiles(self) -> int:
        return math.ceil(self.out_features / self.outputs_per_tile)

    @property
    def n_tiles(self) -> int:
        return self.n_row_tiles * self.n_col_tiles

    @property
    def active_rows(self) -> int:
        """Word lines of a tile that a read must drive: all ``rows`` when the layer spans several row tiles, else
        only the ``in_features`` that hold inputs (a zero-driven word line carries no current)."""
        return self.rows if self.n_row_tiles > 1 else self.in_features

    @property
    def active_outputs(self) -> int:
        """Outputs of a tile that a read must convert: all ``outputs_per_tile`` when the layer spans several column
        tiles, else only the ``out_features`` that hold weights (an unused bit line is not read)."""
        return self.outputs_per_tile if self.n_col_tiles > 1 else self.out_features

    @property
    def last_rows(self) -> int:
        """Rows of the last row tile that hold inputs (the rest of it is padding)."""
        return self.in_features - (self.n_row_tiles - 1) * self.rows

    @property
    def last_outputs(self) -> int:
        """Outputs of the last column tile that hold weights (the rest of it is padding)."""
        return self.out_features - (self.n_col_tiles - 1) * self.outputs_per_tile

    def tiles(self) -> list[TileInfo]:
        opt, cpw = self.outputs_per_tile, 2 if self.scheme == "differential" else 1
        out = []
        for r in range(self.n_row_tiles):
            used_rows = min(self.rows, self.in_features - r * self.rows)
            for c in range(self.n_col_tiles):
                used_out = min(opt, self.out_features - c * opt)
                out.append(TileInfo(r, c, used_rows, used_out, used_rows * used_out * cpw, self.rows * self.cols))
        return out

    def utilisation(self) -> float:
        """Cells holding weights / cells of all tiles."""
        t = self.tiles()
        return sum(x.used_cells for x in t) / sum(x.cells for x in t)

    def report(self) -> str:
        lines = [f"{self.out_features}x{self.in_features} weights on {self.n_row_tiles}x{self.n_col_tiles} tiles of "
                 f"{self.rows}x{self.cols} ({self.scheme}); overall utilisation {self.utilisation():.1%}"]
        lines += [f"  tile ({t.row_tile},{t.col_tile}): {t.used_rows} rows x {t.used_outputs} outputs, "
                  f"{t.utilisation:.1%}" for t in self.tiles()]
        return "\n".join(lines)

    # -- packing -------------------------------------------------------------
    def pack(self, gs: list[torch.Tensor], g_pad: float, g_ref: float) -> torch.Tensor:
        """Conductances [n_row_tiles, n_col_tiles, rows, cols] from per-weight matrices ``gs`` ([out, in] each)."""
        nr, nc, opt = self.n_row_tiles, self.n_col_tiles, self.outputs_per_tile
        padded = [self.pack_outputs(g, g_pad) for g in gs]  # [nr, nc, rows, opt], padded with erased cells
        if self.scheme == "differential":
            tiles = torch.stack(padded, -1).reshape(nr, nc, self.rows, 2 * opt)
        else:
            ref = torch.full((nr, nc, self.rows, 1), g_ref, dtype=gs[0].dtype, device=gs[0].device)
            tiles = torch.cat([padded[0], ref], -1)
        if tiles.shape[-1] < self.cols:  # an odd column left over in a differential tile
            extra = torch.full((nr, nc, self.rows, self.cols - tiles.shape[-1]), g_pad, dtype=tiles.dtype,
                               device=tiles.device)
            tiles = torch.cat([tiles, extra], -1)
        return tiles

    def pack_outputs(self, w: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """One value per weight, [out, in] -> [n_row_tiles, n_col_tiles, rows, outputs_per_tile] (padded with
        ``fill``): the tile layout of the outputs' cells, before the scheme turns each into its columns."""
        nr, nc, opt = self.n_row_tiles, self.n_col_tiles, self.outputs_per_tile
        full = torch.nn.functional.pad(w.t(), (0, nc * opt - self.out_features, 0, nr * self.rows - self.in_features),
                                       value=fill)
        return full.reshape(nr, self.rows, nc, opt).permute(0, 2, 1, 3)

    def pack_inputs(self, v: torch.Tensor) -> torch.Tensor:
        """[B, in] -> [B, n_row_tiles, rows] (zero-padded)."""
        pad = self.n_row_tiles * self.rows - self.in_features
        if pad:
            v = torch.nn.functional.pad(v, (0, pad))
        return v.reshape(v.shape[0], self.n_row_tiles, self.rows)

    def column_signal(self, i: torch.Tensor) -> torch.Tensor:
        """Column currents [..., cols] -> signed output currents [..., outputs_per_tile]."""
        opt = self.outputs_per_tile
        if self.scheme == "differential":
            return i[..., 0:2 * opt:2] - i[..., 1:2 * opt:2]
        return i[..., :opt] - i[..., opt:opt + 1]

    def unpack_outputs(self, y: torch.Tensor) -> torch.Tensor:
        """[B, n_col_tiles, outputs_per_tile] -> [B, out]."""
        return y.reshape(y.shape[0], -1)[:, :self.out_features]

    def combine(self, y: torch.Tensor) -> torch.Tensor:
        """Digitised tile outputs [B, n_row_tiles, n_col_tiles, outputs_per_tile] -> layer outputs [B, out]:
        the partial sums of the tiles that share outputs, added digitally after the ADC."""
        return self.unpack_outputs(y.sum(1))
