"""Crossbar tile solve with wire resistance: memsim vs ngspice .op vs a dense torch.linalg.solve, in one run.

For each tile size N (N x N, 0T1R, random conductances in the HfOx card window of ``hfox_0t1r_32``,
1 Ohm word/bit-line segments, 10 Ohm drivers) and a batch of B input vectors:

* memsim exact (``solve_linear``): sparse LU (scipy splu) of the nodal matrix, factored once and applied
  to the whole batch; the forward, and forward + backward (adjoint solve with the same factors);
* memsim approx (``solve_approx``): the fixed-point estimate used for fast training, and its error;
* memsim nonlinear (``solve_nonlinear``, the card's sinh I-V, Newton) on a few vectors;
* ngspice ``.op`` of the same tile (the netlist of ``memsim crossbar export``), one input vector
  (ngspice solves one vector per run), linear cells, and nonlinear cells at N <= --spice-nonlinear-max;
* dense ``torch.linalg.solve`` of the same nodal system (what simple simulators do), at N <= --dense-max.

Every time is reported per input vector (memsim amortised over the batch) with the ratios, and the
error of each against ngspice. Memory: LU factor size vs the dense matrix, and peak RSS growth.

    python benchmarks/bench_crossbar.py                      # N = 64 and 128, batch 128 (~3-4 minutes)
    python benchmarks/bench_crossbar.py --sizes 32 64 --dense-max 32
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from memsim import spice
from memsim.crossbar import TileCircuit, Wires, load_preset, solve_approx, solve_linear, solve_nonlinear
from memsim.crossbar.netlist import column_currents, tile_netlist
from memsim.crossbar.solver import _Factored, _matrix, _pair, _topology, _wire_coo, relative_error


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def dense_matrix(g: np.ndarray, circuit: TileCircuit) -> tuple[np.ndarray, object]:
    rows, cols = g.shape
    w, b, _, n = _topology(rows, cols, False)
    parts, _, _ = _wire_coo(rows, cols, circuit, False)
    parts.append(_pair(w, b, g))
    return _matrix(n, parts).toarray(), n


def run_size(n: int, batch: int, repeats: int, spice_nl_max: int, dense_max: int, no_spice: bool) -> dict:
    preset = load_preset("hfox_0t1r_32")
    circuit = TileCircuit(Wires(1.0, 1.0, 10.0), "0T1R")
    gen = torch.Generator().manual_seed(n)
    g = preset.g_min + (preset.g_max - preset.g_min) * torch.rand(n, n, generator=gen, dtype=torch.float64)
    x = torch.rand(n, n, generator=gen, dtype=torch.float64)
    v = preset.v_max * (2 * torch.rand(batch, n, generator=gen, dtype=torch.float64) - 1)
    r: dict = {"N": n, "batch": batch, "nodes": 2 * n * n}

    rss0 = rss_mb()
    i_exact = solve_linear(g, v, circuit)
    r["memsim_fwd"] = best_of(lambda: solve_linear(g, v, circuit), repeats)

    def fwd_bwd():
        gg, vv = g.clone().requires_grad_(), v.clone().requires_grad_()
        solve_linear(gg, vv, circuit).sum().backward()
    r["memsim_fwd_bwd"] = best_of(fwd_bwd, repeats)
    f = _Factored(g.numpy(), circuit)
    r["lu_nnz"] = int(f.lu.L.nnz + f.lu.U.nnz)
    r["lu_mb"] = r["lu_nnz"] * 12 / 2**20  # float64 value + int32 index per entry
    r["dense_mb"] = r["nodes"] ** 2 * 8 / 2**20
    r["factor_s"] = best_of(lambda: _Factored(g.numpy(), circuit), repeats)
    try:
        i_apx = solve_approx(g, v, circuit, 3)
        r["approx_fwd"] = best_of(lambda: solve_approx(g, v, circuit, 3), repeats)
        r["approx_err"] = relative_error(i_apx.numpy(), i_exact.numpy())
    except Exception as exc:  # the fixed point diverges on this tile
        r["approx_fwd"], r["approx_err"] = float("nan"), float("nan")
        print(f"  approx: {exc}")
    nl_vectors = 4
    t = time.perf_counter()
    i_nl = solve_nonlinear(preset.card, x, v[:nl_vectors], circuit)
    r["newton_per_vec"] = (time.perf_counter() - t) / nl_vectors
    r["rss_memsim_mb"] = rss_mb() - rss0

    if not no_spice and spice.available():
        t = time.perf_counter()
        ref = column_currents(spice.run(tile_netlist(v[0].numpy(), circuit, g=g.numpy())), n)
        r["spice_lin"] = time.perf_counter() - t
        r["err_lin"] = relative_error(i_exact[0].numpy(), ref)
        if n <= spice_nl_max:
            t = time.perf_counter()
            ref = column_currents(spice.run(tile_netlist(v[0].numpy(), circuit, card=preset.card, x=x.numpy())), n)
            r["spice_nl"] = time.perf_counter() - t
            r["err_nl"] = relative_error(i_nl[0].numpy(), ref)
    if n <= dense_max:
        a, nn = dense_matrix(g.numpy(), circuit)
        at = torch.from_numpy(a)
        w, b, _, _ = _topology(n, n, False)
        rhs = torch.zeros(nn, batch, dtype=torch.float64)
        rhs[torch.from_numpy(w[:, 0])] = (1.0 / (circuit.wires.r_source + circuit.wires.r_wordline)) * v.T
        rss1 = rss_mb()
        t = time.perf_counter()
        u = torch.linalg.solve(at, rhs)
        r["dense_fwd"] = time.perf_counter() - t
        i_dense = (u[torch.from_numpy(b[-1, :])] / circuit.wires.r_bitline).T
        r["err_dense_vs_sparse"] = relative_error(i_dense.numpy(), i_exact.numpy())
        r["rss_dense_mb"] = rss_mb() - rss1
        del a, at, u
    return r


def report(rs: list[dict]) -> str:
    out = []
    for r in rs:
        n, b = r["N"], r["batch"]
        per = r["memsim_fwd"] / b
        out.append(f"\n== {n}x{n} tile ({r['nodes']} nodes), batch {b}, 1 Ohm segments, 10 Ohm drivers ==")
        out.append(f"memsim exact (splu once, batched): forward {r['memsim_fwd']:.3f} s/batch = {per * 1e3:.3f} ms/vector;"
                   f" forward+backward {r['memsim_fwd_bwd']:.3f} s/batch; factorisation alone {r['factor_s']:.3f} s")
        out.append(f"memsim approx (3 fixed-point iterations): {r['approx_fwd']:.4f} s/batch, "
                   f"max error vs exact {r['approx_err']:.2e} (relative to the peak current)")
        out.append(f"memsim nonlinear (Newton, sinh cells): {r['newton_per_vec']:.3f} s/vector")
        if "spice_lin" in r:
            out.append(f"ngspice .op linear: {r['spice_lin']:.2f} s/vector; memsim error vs ngspice {r['err_lin']:.1e}; "
                       f"speed-up per vector {r['spice_lin'] / per:,.0f}x")
        if "spice_nl" in r:
            out.append(f"ngspice .op nonlinear: {r['spice_nl']:.2f} s/vector; memsim Newton error {r['err_nl']:.1e}; "
                       f"speed-up {r['spice_nl'] / r['newton_per_vec']:,.1f}x")
        if "dense_fwd" in r:
            out.append(f"dense torch.linalg.solve (same system, same batch): {r['dense_fwd']:.2f} s/batch; "
                       f"memsim sparse is {r['dense_fwd'] / r['memsim_fwd']:,.0f}x faster; "
                       f"dense vs sparse error {r['err_dense_vs_sparse']:.1e}")
        else:
            out.append(f"dense torch.linalg.solve: not run (the matrix alone is {r['dense_mb']:,.0f} MB)")
        out.append(f"memory: LU factors {r['lu_nnz']:,} nonzeros = {r['lu_mb']:.1f} MB vs dense matrix "
                   f"{r['dense_mb']:,.0f} MB ({r['dense_mb'] / r['lu_mb']:,.0f}x); peak RSS growth memsim "
                   f"{r['rss_memsim_mb']:.0f} MB" + (f", dense solve {r['rss_dense_mb']:.0f} MB" if "rss_dense_mb" in r else ""))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="memsim timings: best of this many")
    ap.add_argument("--spice-nonlinear-max", type=int, default=64, help="largest N for the nonlinear ngspice run")
    ap.add_argument("--dense-max", type=int, default=64, help="largest N for the dense solve (128: 8.6 GB)")
    ap.add_argument("--no-spice", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared 2-core machine more threads made every "
                         "torch op ~20x slower; ngspice and SuperLU run on one thread too)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; SuperLU with one BLAS thread")
    rs = []
    for n in args.sizes:
        rs.append(run_size(n, args.batch, args.repeats, args.spice_nonlinear_max, args.dense_max, args.no_spice))
        print(report(rs[-1:]), flush=True)
    return rs


if __name__ == "__main__":
    main()
