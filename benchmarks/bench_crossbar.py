"""Crossbar speed and accuracy, each figure a ratio against a baseline measured in the same run (one thread).

Sections (``--only NAME ...`` to run some):

* ``layers``     - one SGD step (forward + backward) of a 784-256-10 MLP at batch 128 with memsim's crossbar
                   layers on ``hfox_1t1r_64`` (ideal; noisy fused and unfused, on the full padded tiles
                   (``trim_padding = False``), and fused without the read noise's
                   amplitude gradient (``read_noise_grad = False``); programming noise only; irdrop exact
                   and with ``irdrop_reuse = k``, with its product error against the exact operators of the same
                   chips) against the same MLP of ``nn.Linear``, interleaved rounds, wall and CPU time; and an
                   eval-mode read of a programmed chip (irdrop: operator cached) against noisy.
* ``reads``      - exact reads after the precompute: ``V @ A`` for a batch of 128 vectors on one 64x64 and one
                   128x128 tile (1 Ohm wires, 10 Ohm drivers, HfOx window), its error against the per-vector
                   sparse solve, and the operator's speed-up over the per-vector solve for B*T = 128*25 reads.
* ``precompute`` - the operator of a 784x256 layer on 64x64 tiles (differential: 104 tiles), its cache size,
                   single tiles of 128..512, and the factorisation choices measured per tile: the banded sweep
                   against scipy's SuperLU (COLAMD and MMD(A^T+A) orderings) with ``rows`` right-hand sides.
* ``approx``     - the fixed-point iteration stopped at 1e-9 against the operator, same reads, same error target.
* ``linearised`` - the operator of the chord conductances at v_read against Newton with the card's own sinh I-V,
                   on the realistic presets (random weights, inputs up to v_max).
* ``spice``      - the operator against ngspice .op on one tile of each size.
* ``trim``       - the Fashion VGG's crossbar layers (3x3 convs of 16, 32, 64 channels on 28, 14, 7 pixels; a
                   576-10 classifier) read in eval mode (a programmed, calibrated chip, ``noisy``) on 64- and
                   256-row tiles, computing the occupied rows and outputs of the tiles only (``trim_padding``, the
                   default) against the full padded tiles, interleaved, median of ``--rounds``.
* ``device``     - (not run by default; ``--only device --device cuda``) the 784x256 layer's operators with their
                   gradient (forward + backward, float32 and float64) on ``--device`` against one CPU thread, median of
                   ``--rounds``, the device synchronised; with the largest difference between the two results.

    python benchmarks/bench_crossbar.py                    # everything (~5-10 minutes on 2 cores)
    python benchmarks/bench_crossbar.py --only reads precompute
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import nn

from memsim.crossbar import CrossbarArray, TileCircuit, Wires, fused, load_preset, solve_linear
from memsim.crossbar.operator import sparse_operator, tile_operator
from memsim.crossbar.solver import (_Factored, _serial_blas, effective_conductance, relative_error, solve_approx,
                                    solve_nonlinear)
from memsim.errors import ConvergenceError
from memsim.nn import CrossbarConv2d, CrossbarLinear
from memsim.nn.calibration import calibrate

WIRES = TileCircuit(Wires(1.0, 1.0, 10.0))
SECTIONS = ("layers", "trim", "reads", "precompute", "approx", "linearised", "spice", "device")


def best_of(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def hfox_tile(n: int, cols: int | None = None, seed: int = 0, batch: int = 128):
    p = load_preset("hfox_0t1r_32")
    gen = torch.Generator().manual_seed(seed)
    g = p.g_min + (p.g_max - p.g_min) * torch.rand(n, cols or n, generator=gen, dtype=torch.float64)
    v = p.v_max * (2 * torch.rand(batch, n, generator=gen, dtype=torch.float64) - 1)
    return g, v


# ------------------------------------------------------------------------------------------------------------
def section_layers(args):
    x = torch.rand(128, 784)
    y = torch.randint(0, 10, (128,))
    preset = load_preset("hfox_1t1r_64")

    def mlp(mode=None, noise=None, reuse=1, read_noise_grad=True, trim=True):
        torch.manual_seed(0)
        if mode is None:
            return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        model = nn.Sequential(CrossbarLinear(784, 256, preset=preset, mode=mode, noise=noise), nn.ReLU(),
                              CrossbarLinear(256, 10, preset=preset, mode=mode, noise=noise))
        for k in (0, 2):
            model[k].array.irdrop_reuse = reuse
            model[k].array.read_noise_grad = read_noise_grad
            model[k].array.trim_padding = trim
        return model

    def stepper(model, unfused=False, redraw=False):
        """One SGD step (a new chip's defects first when ``redraw``, as hardware-aware training draws them)."""
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        count = [0]

        def step():
            if redraw:
                for k in (0, 2):
                    model[k].array.redraw_defects(1000 + count[0])
            count[0] += 1
            fused.ENABLED = not unfused
            try:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            finally:
                fused.ENABLED = True
        return step

    k = args.irdrop_reuse
    contenders = {
        "nn.Linear": (stepper(mlp()), 1),
        "ideal": (stepper(mlp("ideal")), 1),
        "noisy": (stepper(mlp("noisy")), 1),
        "noisy, unfused": (stepper(mlp("noisy"), unfused=True), 1),
        "noisy, padded tiles": (stepper(mlp("noisy", trim=False)), 1),
        "noisy, read_noise_grad = False": (stepper(mlp("noisy", read_noise_grad=False)), 1),
        "program noise only": (stepper(mlp("noisy", preset.noise.only("program"))), 1),
        "program noise only, unfused": (stepper(mlp("noisy", preset.noise.only("program")), unfused=True), 1),
        "irdrop, exact every step": (stepper(mlp("irdrop"), redraw=True), 1),
        f"irdrop, irdrop_reuse = {k}": (stepper(mlp("irdrop", reuse=k), redraw=True), k),
    }
    t0 = time.perf_counter()
    for step, _ in contenders.values():  # warm-up (and the fused kernel's one-off compilation)
        step()
    warm = time.perf_counter() - t0
    wall = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for _ in range(args.rounds):  # interleaved: each round times every contender once, so load hits all alike
        for name, (step, n) in contenders.items():
            reps = n if n > 1 else (1 if name.startswith("irdrop") else 5)
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps):  # a whole reuse cycle (one exact step + n - 1 reused ones) per timing
                step()
            wall[name].append((time.perf_counter() - w0) / reps)
            cpu[name].append((time.process_time() - c0) / reps)
    med = {name: (float(np.median(wall[name])), float(np.median(cpu[name]))) for name in contenders}
    base, noisy = med["nn.Linear"], med["noisy"]
    print(f"\n== layers: one SGD step of a 784-256-10 MLP, batch 128, one thread, median of {args.rounds} interleaved "
          f"rounds (warm-up incl. compilation {warm:.1f} s) ==")
    print(f"  {'contender':34s} {'wall ms':>9s} {'x nn.Linear':>11s} {'cpu ms':>9s} {'x nn.Linear':>11s} "
          f"{'x noisy (cpu)':>13s}")
    for name, (w, c) in med.items():
        print(f"  {name:34s} {w * 1e3:9.2f} {w / base[0]:11.1f} {c * 1e3:9.2f} {c / base[1]:11.1f} "
              f"{c / noisy[1]:13.2f}")
    _floor_and_eval(mlp, base[1])
    _reuse_error(mlp, stepper, x, k)


def _floor_and_eval(mlp, base):
    # the floor of the noisy step: its Gaussian draws alone (programming noise per cell, read noise per pair output
    # per read, both layers), drawn as the layers draw them (float32, torch's CPU generator)
    model = mlp("noisy")
    cells = sum(layer.array.grid.n_tiles * layer.preset.rows * layer.preset.cols for layer in (model[0], model[2]))
    reads = sum(128 * layer.array.grid.n_tiles * layer.array.grid.outputs_per_tile for layer in (model[0], model[2]))
    gen = torch.Generator().manual_seed(0)
    t = best_of(lambda: (torch.randn(cells, generator=gen), torch.randn(reads, generator=gen)), 20, time.process_time)
    print(f"  noisy's random draws alone: {cells} programming + {reads} read-noise normals = {t * 1e3:.2f} ms cpu "
          f"= {t / base:.1f}x nn.Linear's step (a floor of a noisy step on this CPU)")
    # the other floor: the batched products of both layers (forward: signal and read-noise variance; backward:
    # the input gradient, its read-noise term, the signal and variance gradients)
    mats = []
    for layer in (model[0], model[2]):
        grid = layer.array.grid
        k = grid.n_col_tiles * grid.outputs_per_tile
        mats.append((torch.rand(grid.n_row_tiles, 128, grid.rows), torch.rand(grid.n_row_tiles, grid.rows, k),
                     torch.rand(grid.n_row_tiles, 128, k)))

    def products():
        for v, m, gy in mats:
            for _ in range(2):
                torch.bmm(v, m), torch.bmm(gy, m.transpose(1, 2)), torch.bmm(v.transpose(1, 2), gy)
    t = best_of(products, 20, time.process_time)
    print(f"  noisy's six batched products per layer alone: {t * 1e3:.2f} ms cpu = {t / base:.1f}x nn.Linear's step "
          f"(the other floor; three of them without read noise)")
    # eval reads of a programmed chip: T = 25 time steps of batch 128 through the first layer
    xs = torch.rand(25 * 128, 784)
    for mode in ("noisy", "irdrop"):
        layer = CrossbarLinear(784, 256, preset="hfox_1t1r_64", mode=mode).eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            calibrate(layer, lambda: layer(xs[:128]))  # programs the chip (and the operators for irdrop), calibrates it
            first = time.perf_counter() - t0
            t = best_of(lambda: layer(xs), 3)
        print(f"  eval {mode:6s}: programming{' + operator' if mode == 'irdrop' else ''} {first:.2f} s once; "
              f"3200 reads {t * 1e3:.1f} ms")


def _reuse_error(mlp, stepper, x, k):
    """The product error of ``irdrop_reuse = k`` in training: the first layer's signed tile outputs (the ADC inputs)
    through the reused first-order operators against the exact operators of the same chips, over one reuse cycle of
    real SGD steps (new defects and programming noise each step, as training draws them)."""
    model = mlp("irdrop", reuse=k)
    step = stepper(model, redraw=True)
    layer = model[0]
    weights = []
    for _ in range(k):
        weights.append(layer.weight.detach().clone())
        step()
    twin = CrossbarArray(layer.preset, 256, 784, mode="irdrop")  # the same seed: it replays the same chips
    circuit, grid = layer.preset.circuit, twin.grid
    v = grid.pack_inputs((x / x.abs().max() * layer.preset.v_max).double())

    def out(a):
        return torch.einsum("bri,rcij->brcj", v, grid.column_signal(a))

    errors, ideal, attenuation = [], [], []
    twin.irdrop_reuse = k
    atten = None
    for j, w in enumerate(weights):
        twin.redraw_defects(1000 + j)
        g = twin.conductances(w)[0]
        with torch.enable_grad():  # a training read: exact at j = 0, the first-order update after it
            reused = twin.operator(g.detach().requires_grad_()).detach().double()
        with torch.no_grad():
            g = g.double()
            exact, cells = tile_operator(g, circuit), effective_conductance(g, circuit)
            if atten is None:
                atten = exact / cells  # the earlier scheme, for comparison: each cell's attenuation A / gc reused
                continue  # the exact step itself
            ref = out(exact)
            errors.append(float((out(reused) - ref).norm() / ref.norm()))
            attenuation.append(float((out(cells * atten) - ref).norm() / ref.norm()))
            ideal.append(float((out(cells) - ref).norm() / ref.norm()))
    print(f"  irdrop_reuse = {k}: product error against the exact operators of the same chip (first layer, signed "
          f"tile outputs, steps 2..{k} of a cycle): mean {100 * np.mean(errors):.2f} %, max {100 * max(errors):.2f} %; "
          f"reusing each cell's attenuation A / gc instead: {100 * np.mean(attenuation):.2f} %; ignoring IR drop "
          f"there: {100 * np.mean(ideal):.2f} %")


def section_trim(args):
    torch.manual_seed(0)
    images = torch.rand(args.trim_images, 1, 28, 28)
    base = load_preset("hfox_1t1r_64")

    def vgg(rows, trim):
        torch.manual_seed(0)
        preset = base.replace(rows=rows, cols=rows)
        convs = [CrossbarConv2d(c_in, c_out, 3, padding=1, preset=preset, mode="noisy")
                 for c_in, c_out in ((1, 16), (16, 32), (32, 64))]
        head = CrossbarLinear(576, 10, preset=preset, mode="noisy")
        model = nn.Sequential(*[m for c in convs for m in (c, nn.ReLU(), nn.MaxPool2d(2))], nn.Flatten(), head)
        for layer in (*convs, head):
            layer.array.trim_padding = trim
        model.eval()
        calibrate(model, lambda: model(images[:64]))
        return model

    contenders = {(rows, trim): vgg(rows, trim) for rows in (64, 256) for trim in (False, True)}
    times = {k: [] for k in contenders}
    outs = {}
    with torch.no_grad():
        for k, model in contenders.items():  # warm-up
            outs[k] = model(images)
        for _ in range(args.rounds):
            for k, model in contenders.items():
                t0 = time.perf_counter()
                model(images)
                times[k].append(time.perf_counter() - t0)
    print(f"\n== trim: eval reads of the Fashion VGG's crossbar layers (noisy, calibrated), {args.trim_images} images, "
          f"one thread, median of {args.rounds} interleaved rounds ==")
    for rows in (64, 256):
        full, trim = (float(np.median(times[(rows, t)])) for t in (False, True))
        diff = float((outs[(rows, True)] - outs[(rows, False)]).abs().max() / outs[(rows, False)].abs().max())
        tiles = sum(m.array.grid.n_tiles for m in contenders[(rows, True)] if hasattr(m, "array"))
        print(f"  {rows:3d}-row tiles ({tiles:2d} tiles): padded {full:6.3f} s, trimmed {trim:6.3f} s "
              f"(x{full / trim:.2f} faster); outputs differ by {diff:.1e} (max, relative)")
    t64, t256 = (float(np.median(times[(r, True)])) for r in (64, 256))
    print(f"  trimmed: 256-row tiles cost x{t256 / t64:.2f} the 64-row tiles "
          f"(padded: x{float(np.median(times[(256, False)])) / float(np.median(times[(64, False)])):.2f})")


def section_reads(args):
    print("\n== reads after the precompute: batch of 128 vectors, 1 Ohm wires, 10 Ohm drivers ==")
    for n in (64, 128):
        g, v = hfox_tile(n)
        a = tile_operator(g, WIRES)
        t_read = best_of(lambda: v @ a, 20)
        err = relative_error((v @ a).numpy(), solve_linear(g, v, WIRES).numpy())
        print(f"  {n}x{n}: V @ A {t_read * 1e3:.3f} ms per batch of 128; error vs per-vector solve {err:.1e}")
    print("  operator vs per-vector sparse solve (one LU, B*T = 3200 right-hand sides), same tile:")
    for n in (64, 128, 256):
        g, v = hfox_tile(n, batch=3200)
        t_op = best_of(lambda: tile_operator(g, WIRES), 1)
        a = tile_operator(g, WIRES)
        t_mm = best_of(lambda: v @ a, 3)
        nb = 3200 if n < 256 else 320  # at 256 the per-vector solve is timed on 320 vectors and scaled
        t0 = time.perf_counter()
        f = _Factored(g.numpy(), WIRES)
        i_pv = f.out(f.solve(v[:nb].numpy()))
        t_pv = (time.perf_counter() - t0) * 3200 / nb
        err = relative_error((v[:nb] @ a).numpy(), i_pv)
        print(f"  {n}x{n}: operator {t_op:.3f} s + reads {t_mm * 1e3:.1f} ms; per-vector {t_pv:.2f} s"
              f"{' (scaled from 320)' if nb < 3200 else ''}; speed-up {t_pv / (t_op + t_mm):.1f}x; error {err:.1e}")


def section_precompute(args):
    print("\n== precompute ==")
    p = load_preset("hfox_1t1r_64")
    arr = CrossbarArray(p, 256, 784, mode="irdrop")
    torch.manual_seed(0)
    g, _ = arr.conductances(torch.randn(256, 784))
    g = g.double()
    t = best_of(lambda: tile_operator(g, p.circuit), 2)
    mb = g.numel() * 4 / 2**20
    print(f"  784x256 layer on {arr.grid.n_row_tiles}x{arr.grid.n_col_tiles} = {arr.grid.n_tiles} tiles of 64x64 "
          f"(1T1R): {t:.2f} s; cache {mb:.1f} MB per layer in float32 ({2 * mb:.1f} MB float64)")
    for dtype in (torch.float64, torch.float32):
        gg = g.to(dtype).clone().requires_grad_()
        t0 = time.perf_counter()
        a = tile_operator(gg, p.circuit, dtype=dtype)
        t1 = time.perf_counter()
        a.sum().backward()
        t2 = time.perf_counter()
        print(f"  the same with its gradient, {str(dtype)[6:]} (training computes float32 layers' in float32): "
              f"forward {t1 - t0:.2f} s + backward {t2 - t1:.2f} s = {t2 - t0:.2f} s")
    print("  one tile, rows right-hand sides: banded sweep vs SuperLU orderings (factor + solve)")
    for n in args.sizes:
        g1, _ = hfox_tile(n)
        t_sweep = best_of(lambda: tile_operator(g1[None], WIRES), 1 if n >= 256 else 2)
        row = f"  {n}x{n}: sweep {t_sweep:.2f} s"
        if n <= args.superlu_max:
            eye = np.eye(n)
            for spec in ("COLAMD", "MMD_AT_PLUS_A"):
                t0 = time.perf_counter()
                base = _Factored(g1.numpy(), WIRES)  # assembles and factors with COLAMD
                if spec != "COLAMD":
                    nf = base.net.n_free
                    with _serial_blas():
                        base.lu = spla.splu(base.L[:nf, :nf].tocsc(), permc_spec=spec)
                base.out(base.solve(eye))
                row += f"; SuperLU {spec} {time.perf_counter() - t0:.2f} s"
        print(row)


def section_approx(args):
    print("\n== fixed-point iteration (tol 1e-9) vs operator, B*T = 3200 reads of one tile ==")
    print("   (the fixed point is timed on 320 reads and scaled by 10: its cost is linear in the reads)")
    for n, r in ((64, 1.0), (128, 1.0), (128, 2.5)):
        g, v = hfox_tile(n, batch=3200)
        c = TileCircuit(Wires(r, r, 10.0))
        t0 = time.perf_counter()
        a = tile_operator(g, c)
        i_op = v @ a
        t_op = time.perf_counter() - t0
        ref = solve_linear(g, v[:16], c).numpy()
        try:
            t0 = time.perf_counter()
            i_ap, info = solve_approx(g, v[:320], c, tol=1e-9, return_info=True)
            t_ap = (time.perf_counter() - t0) * 10
            print(f"  {n}x{n}, {r} Ohm: approx {t_ap:.2f} s ({info['iterations']} iterations, error "
                  f"{relative_error(i_ap[:16].numpy(), ref):.1e}); operator {t_op:.2f} s (error "
                  f"{relative_error(i_op[:16].numpy(), ref):.1e}); operator {t_ap / t_op:.0f}x faster")
        except ConvergenceError as exc:
            print(f"  {n}x{n}, {r} Ohm: approx fails ({exc}); operator {t_op:.2f} s")


def section_linearised(args):
    print("\n== linearised (operator of chord conductances at v_read) vs Newton (card I-V), realistic presets ==")
    for name in ("hfox_1t1r_64", "hfox_0t1r_32"):
        p = load_preset(name)
        arr = CrossbarArray(p.replace(noise=p.noise.off()), 40, p.rows, mode="irdrop")
        torch.manual_seed(1)
        g, _ = arr.conductances(torch.randn(40, p.rows, dtype=torch.float64))
        g = g[0, 0].double()
        v = p.v_max * torch.rand(4, p.rows, dtype=torch.float64)
        from memsim.crossbar.mapping import state_for_conductance
        x = state_for_conductance(p.card, g.clamp(p.g_min, p.g_max), p.v_read).detach()
        t0 = time.perf_counter()
        i_nl = solve_nonlinear(p.card, x, v, p.circuit)
        t_nl = (time.perf_counter() - t0) / len(v)
        i_lin = v @ tile_operator(g, p.circuit)
        print(f"  {name} ({p.rows}x{p.cols} {p.circuit.access}, {p.card.name}): max error "
              f"{relative_error(i_lin.numpy(), i_nl.numpy()):.2%} of the peak current; Newton {t_nl:.2f} s/vector")


def section_spice(args):
    from memsim import spice
    from memsim.crossbar.netlist import run_tile
    if not spice.available():
        print("\n== spice: ngspice not available, skipped ==")
        return
    print("\n== operator vs ngspice .op (linear cells) ==")
    for n in (16, 64):
        for access in ("0T1R", "1T1R"):
            g, v = hfox_tile(n, batch=1)
            c = TileCircuit(Wires(1.0, 1.0, 10.0), access)
            t0 = time.perf_counter()
            ref = run_tile(v[0].numpy(), c, g=g.numpy())
            t_sp = time.perf_counter() - t0
            print(f"  {n}x{n} {access}: error {relative_error((v[0] @ tile_operator(g, c)).numpy(), ref):.1e}; "
                  f"ngspice {t_sp:.2f} s per vector")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section_device(args):
    """The 784x256 layer's operators (104 tiles of 64x64, 1T1R) with their gradient, on args.device vs one CPU
    thread: forward + backward per dtype, median of args.rounds, alternating the two so load affects both alike."""
    device = torch.device(args.device)
    print(f"\n== device: the 784x256 layer's operators with their gradient, {device} vs one CPU thread ==")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        print(f"  {torch.cuda.get_device_name(device)}")
    p = load_preset("hfox_1t1r_64")
    arr = CrossbarArray(p, 256, 784, mode="irdrop")
    torch.manual_seed(0)
    g, _ = arr.conductances(torch.randn(256, 784))
    probe = torch.randn(g.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def step(gg, pp, dtype):
        gg = gg.detach().clone().requires_grad_()
        _sync(gg.device)
        t0 = time.perf_counter()
        a = tile_operator(gg, p.circuit, dtype=dtype)
        (a * pp).sum().backward()
        _sync(gg.device)
        return time.perf_counter() - t0, a.detach().cpu().double(), gg.grad.cpu().double()

    for dtype in (torch.float32, torch.float64):
        g_cpu, p_cpu = g.to(dtype), probe.to(dtype)
        g_dev, p_dev = g_cpu.to(device), p_cpu.to(device)
        step(g_dev, p_dev, dtype)  # warm-up (kernels, allocator)
        t_cpu, t_dev = [], []
        for _ in range(args.rounds):
            t, a_cpu, d_cpu = step(g_cpu, p_cpu, dtype)
            t_cpu.append(t)
            t, a_dev, d_dev = step(g_dev, p_dev, dtype)
            t_dev.append(t)
        tc, td = float(np.median(t_cpu)), float(np.median(t_dev))
        err_a = float((a_dev - a_cpu).abs().max() / a_cpu.abs().max())
        err_g = float((d_dev - d_cpu).abs().max() / d_cpu.abs().max())
        print(f"  {str(dtype)[6:]}: {device} {td * 1e3:.1f} ms, CPU {tc * 1e3:.0f} ms (x{tc / td:.1f}); "
              f"{device} vs CPU: operator {err_a:.1e}, gradient {err_g:.1e} (max relative)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=[s for s in SECTIONS if s != "device"],
                    help="sections to run (default: all but device)")
    ap.add_argument("--device", default="cuda", help="device: the torch device compared with the CPU (default cuda)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512], help="tile sizes (precompute)")
    ap.add_argument("--superlu-max", type=int, default=256, help="largest tile for the SuperLU comparison")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (layers)")
    ap.add_argument("--trim-images", type=int, default=500, help="test images per read (trim)")
    ap.add_argument("--irdrop-reuse", type=int, default=10, help="irdrop_reuse of the cheap IR-drop contender (layers)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.only:
        globals()[f"section_{name}"](args)


if __name__ == "__main__":
    main()
