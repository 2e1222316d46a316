"""The nodal network of one tile, built once from :class:`TileCircuit` for every solver and the netlist.

Nodes are the word-line nodes ``w[i, j]``, the bit-line nodes ``b[i, j]`` and, for 1T1R cells
simulated with their own I-V, the mid nodes ``m[i, j]`` between memristor and transistor. Wires
of zero resistance merge the nodes they join (``scipy.sparse.csgraph.connected_components``), so
an ideal wire is exact rather than a huge conductance. Each node is then either

* **free** (ids ``0 .. n_free-1``): its voltage is solved for, or
* **known** (ids ``n_free + i`` for the source of driver ``i``, at ``V_i``; ``n_free + rows + j``
  for sense amplifier ``j``, at 0 V).

Everything is described by two-terminal edges ``(a, c, g)`` between node ids. With the full
conductance (Laplacian) matrix ``L`` over all nodes, the free voltages solve
``L_ff u_f = -L_fk u_k`` and the current into sense amplifier ``j`` is ``-(L u)[sense_j]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .circuit import TileCircuit


@dataclass(frozen=True)
class TileNetwork:
    rows: int
    cols: int
    n_free: int
    w: np.ndarray          # [rows, cols] node ids of the word-line nodes
    b: np.ndarray          # [rows, cols] node ids of the bit-line nodes
    m: np.ndarray | None   # [rows, cols] node ids of the 1T1R mid nodes (None: linear cells, no mid node)
    wire_a: np.ndarray     # wire edges: node ids and conductances (S)
    wire_c: np.ndarray
    wire_g: np.ndarray

    @property
    def n(self) -> int:
        return self.n_free + self.rows + self.cols

    @property
    def src(self) -> np.ndarray:
        """Node ids of the driver sources (known, at V_i)."""
        return self.n_free + np.arange(self.rows)

    @property
    def sense(self) -> np.ndarray:
        """Node ids of the sense amplifiers (known, at 0 V)."""
        return self.n_free + self.rows + np.arange(self.cols)

    @property
    def cell_top(self) -> np.ndarray:
        """Word-line end of each memristor, [rows * cols] (row-major)."""
        return self.w.ravel()

    @property
    def cell_bottom(self) -> np.ndarray:
        """Bit-line end of each memristor (the mid node for 1T1R), [rows * cols]."""
        return (self.m if self.m is not None else self.b).ravel()

    def laplacian(self, a: np.ndarray, c: np.ndarray, g: np.ndarray) -> sp.csc_matrix:
        """The conductance matrix over all nodes of the wires plus the extra edges ``(a, c, g)``."""
        a = np.concatenate([self.wire_a, a])
        c = np.concatenate([self.wire_c, c])
        g = np.concatenate([self.wire_g, np.broadcast_to(np.asarray(g, dtype=float), np.shape(a[len(self.wire_a):]))])
        keep = a != c  # a cell between two merged nodes carries no current
        a, c, g = a[keep], c[keep], g[keep]
        r = np.concatenate([a, c, a, c])
        k = np.concatenate([a, c, c, a])
        v = np.concatenate([g, g, -g, -g])
        return sp.csc_matrix((v, (r, k)), shape=(self.n, self.n))

    def known_values(self, v: np.ndarray) -> np.ndarray:
        """Known-node voltages [rows + cols, B] for inputs ``v`` [B, rows]."""
        return np.concatenate([v.T, np.zeros((self.cols, v.shape[0]))], 0)


def _free_ids(labels: np.ndarray, known_labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map component labels to node ids: free components first, then the known nodes in their order."""
    n_comp = int(labels.max()) + 1
    ids = np.full(n_comp, -1, dtype=np.int64)
    is_known = np.zeros(n_comp, dtype=bool)
    is_known[known_labels] = True
    free = np.flatnonzero(~is_known)
    ids[free] = np.arange(len(free))
    ids[known_labels] = len(free) + np.arange(len(known_labels))
    return ids, len(free)


@lru_cache(maxsize=32)
def tile_network(rows: int, cols: int, circuit: TileCircuit, mid: bool = False) -> TileNetwork:
    """The network of a ``rows`` x ``cols`` tile (``mid``: give 1T1R cells a mid node between memristor and
    transistor; the caller adds the transistor edges ``m -> b``, whose conductance depends on the gate voltage)."""
    w = circuit.wires
    rc = rows * cols
    mid = mid and circuit.access == "1T1R"
    # raw node numbering: W, B, (M), sources, sense amplifiers
    raw_w = np.arange(rc).reshape(rows, cols)
    raw_b = rc + raw_w
    raw_m = 2 * rc + raw_w if mid else None
    base = (3 if mid else 2) * rc
    raw_src = base + np.arange(rows)
    raw_sense = base + rows + np.arange(cols)
    n_raw = base + rows + cols
    end = rows - 1 if w.sense_end == "bottom" else 0  # the bit-line row next to the sense amplifier

    # zero-resistance links merge nodes
    za, zc = [], []
    if w.r_wordline == 0:
        za.append(raw_w[:, :-1].ravel()), zc.append(raw_w[:, 1:].ravel())
    drive_cols = [0] + ([cols - 1] if w.drive == "both" else [])
    r_drv = w.driver_resistance()
    if r_drv == 0:
        for j in drive_cols:
            za.append(raw_src), zc.append(raw_w[:, j])
    if w.r_bitline == 0:
        za.append(raw_b.ravel()), zc.append(np.broadcast_to(raw_sense, (rows, cols)).ravel())
    elif not w.sense_segment:
        za.append(raw_b[end]), zc.append(raw_sense)
    if za:
        za, zc = np.concatenate(za), np.concatenate(zc)
        graph = sp.coo_matrix((np.ones(len(za)), (za, zc)), shape=(n_raw, n_raw))
        _, labels = connected_components(graph, directed=False)
    else:
        labels = np.arange(n_raw)
    ids, n_free = _free_ids(labels, labels[np.concatenate([raw_src, raw_sense])])
    node = ids[labels]

    ea, ec, eg = [], [], []

    def edge(a, c, g):
        a, c = np.ravel(a), np.ravel(c)
        ea.append(node[a]), ec.append(node[c]), eg.append(np.full(a.shape, float(g)))

    if w.r_wordline > 0 and cols > 1:
        edge(raw_w[:, :-1], raw_w[:, 1:], 1.0 / w.r_wordline)
    if r_drv > 0:
        for j in drive_cols:
            edge(raw_src, raw_w[:, j], 1.0 / r_drv)
    if w.r_bitline > 0:
        if rows > 1:
            edge(raw_b[:-1], raw_b[1:], 1.0 / w.r_bitline)
        if w.sense_segment:
            edge(raw_b[end], raw_sense, 1.0 / w.r_bitline)
    a, c, g = (np.concatenate(x) if x else np.zeros(0) for x in (ea, ec, eg))
    keep = a != c
    return TileNetwork(rows, cols, n_free, node[raw_w], node[raw_b], node[raw_m] if mid else None,
                       a[keep].astype(np.int64), c[keep].astype(np.int64), g[keep])
