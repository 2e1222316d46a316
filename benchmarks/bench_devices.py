"""Batched torch device transient vs ngspice transient of the same card, in one run.

Torch integrates N devices (default 10^5) of a card with RK4 at the card's documented
step under its first verification sine; ngspice integrates one device of the same
card under the same stimulus with its maximum step set to that same step. Both
report device-steps per second; the ratio is printed with the accuracy of each
against a fine ngspice reference (so speed is not bought with error).

    python benchmarks/bench_devices.py                 # hp_tio2_joglekar, 1e5 devices
    python benchmarks/bench_devices.py --card yakopcic_oblea --devices 100000 --dtype float64

``--single``: one device for 20,000 RK4 steps (interactive use), memsim's scalar path
(:mod:`memsim.scalar`: the same equations rendered to one Python loop) against ngspice running the same
trace (maximum step = the RK4 step), and against torch with a batch of one; wall times include
everything a user waits for (rendering/compiling the loop on the first call, netlist parsing).

    python benchmarks/bench_devices.py --single --card hp_tio2_joglekar --card stanford_pku_hfox
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memsim import DeviceArray, Sine, load_card
from memsim.devices.simulate import Trace, compare, spice_trace, torch_trace


def torch_run(card, stim, dt, n_steps, n_devices, dtype, device, compile=False, record=8):
    """memsim's own batched transient (DeviceArray.simulate), recording the first ``record`` devices.

    Returns (steady-state wall time, wall time of the first call including any compilation, trace of device 0).
    """
    dev = DeviceArray.from_card(card, (n_devices,), dtype=dtype, device=device)

    def run():
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            _, _, i, _ = dev.simulate(stim, dt, n_steps, method="rk4", record=slice(0, record), compile=compile)
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start, i

    first, _ = run()
    elapsed, i = run()
    return elapsed, first, i[:, 0].double().cpu().numpy()


def single(card, n_steps, spice_repeats, torch_single=True):
    """One device, ``n_steps`` RK4 steps of the card's first verification sine: scalar vs ngspice vs torch."""
    from memsim import scalar

    spec = card.verify
    f = spec.frequencies[0]
    dt = 1.0 / (f * spec.steps_per_period)
    stim = Sine(spec.amplitude, f, cycles=n_steps / spec.steps_per_period)
    scalar._compile.cache_clear()
    start = time.perf_counter()
    fast = scalar.device_trace(card, stim, dt)
    first = time.perf_counter() - start
    start = time.perf_counter()
    scalar.device_trace(card, stim, dt)
    steady = time.perf_counter() - start
    spice_time, coarse = float("inf"), None
    for _ in range(spice_repeats):
        start = time.perf_counter()
        coarse = spice_trace(card, stim, dt)
        spice_time = min(spice_time, time.perf_counter() - start)
    reference = spice_trace(card, stim, dt / 10)
    rows = [("ngspice, max step = dt", spice_time, compare(coarse, reference)["current_error"]),
            ("memsim scalar, first call", first, compare(fast, reference)["current_error"]),
            ("memsim scalar, again", steady, None)]
    if torch_single:
        start = time.perf_counter()
        model = torch_trace(card, stim, dt)
        rows.append(("memsim torch, batch of 1", time.perf_counter() - start, compare(model, reference)["current_error"]))
    n = len(fast.t) - 1
    print(f"\ncard {card.name}: one device, {stim.label}, dt = {dt:.3g} s, {n} RK4 steps (ngspice: "
          f"{len(coarse.t) - 1} time points)")
    print(f"{'':30s}{'wall (s)':>10s}{'steps/s':>12s}{'max rel. error':>16s}{'speed vs ngspice':>18s}")
    for label, wall, err in rows:
        print(f"{label:30s}{wall:10.3f}{n / wall:12.4g}{'' if err is None else f'{err:.2e}':>16s}"
              f"{spice_time / wall:17.2f}x")
    print("errors: max |i - i_ref| / max |i_ref| against ngspice at a 10x finer maximum step")
    return {label: spice_time / wall for label, wall, _ in rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", action="append", help="card(s) (default hp_tio2_joglekar)")
    ap.add_argument("--single", action="store_true", help="one device for --steps RK4 steps instead of a batch")
    ap.add_argument("--steps", type=int, default=20_000, help="--single: RK4 steps (default 20000)")
    ap.add_argument("--no-torch-single", action="store_true", help="--single: skip torch with a batch of one")
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--spice-repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = ap.parse_args(argv)
    cards = args.card or ["hp_tio2_joglekar"]
    if args.single:
        torch.set_num_threads(1)  # one device: threads only add overhead
        return {name: single(load_card(name), args.steps, args.spice_repeats, not args.no_torch_single)
                for name in cards}
    results = {}
    for name in cards:
        results[name] = batched(args, load_card(name))
    return results


def batched(args, card):
    spec = card.verify
    stim = Sine(spec.amplitude, spec.frequencies[0], cycles=spec.cycles)
    dt = 1.0 / (spec.frequencies[0] * spec.steps_per_period)
    grid = stim.grid(dt)
    n_steps = len(grid) - 1
    dtype = getattr(torch, args.dtype)

    # reference: ngspice with a 10x finer maximum step
    reference = spice_trace(card, stim, dt / 10)

    # ngspice, one device, maximum step = the torch step
    spice_times = []
    for _ in range(args.spice_repeats):
        start = time.perf_counter()
        coarse = spice_trace(card, stim, dt)
        spice_times.append(time.perf_counter() - start)
    spice_time = min(spice_times)
    spice_steps = len(coarse.t) - 1
    spice_rate = spice_steps / spice_time

    model = torch_trace(card, stim, dt)  # device 0 in float64, for the state column
    err_spice = compare(coarse, reference)["current_error"]
    print(f"card {card.name}: {stim.label}, dt = {dt:.3g} s, {n_steps} steps, torch {args.dtype} on {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'':34s}{'device-steps/s':>16s}{'wall (s)':>10s}{'max rel. error':>16s}{'vs ngspice':>12s}")
    print(f"{'ngspice, 1 device':34s}{spice_rate:16.4g}{spice_time:10.3f}{err_spice:16.2e}{1:11.0f}x")
    results = {}
    for compiled in ([False] if args.no_compile else [False, True]):
        elapsed, first, i0 = torch_run(card, stim, dt, n_steps, args.devices, dtype, args.device, compile=compiled)
        rate = args.devices * n_steps / elapsed
        err = compare(Trace("torch", grid, model.v, i0, model.x), reference)["current_error"]
        label = f"memsim RK4{' compiled' if compiled else ''}, {args.devices} dev."
        print(f"{label:34s}{rate:16.4g}{elapsed:10.3f}{err:16.2e}{rate / spice_rate:11.0f}x")
        if compiled:
            once = args.devices * n_steps / first
            print(f"{'  first call, incl. compilation':34s}{once:16.4g}{first:10.3f}{'':16s}{once / spice_rate:11.0f}x")
        results["compiled" if compiled else "eager"] = (rate / spice_rate, err)
    print("goal: >= 1000x at max relative error <= 1e-3 (errors against ngspice at a 10x finer step)")
    return results


if __name__ == "__main__":
    main()
