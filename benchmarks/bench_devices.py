"""Batched torch device transient vs ngspice transient of the same card, in one run.

Torch integrates N devices (default 10^5) of a card with RK4 at the card's documented
step under its first verification sine; ngspice integrates one device of the same
card under the same stimulus with its maximum step set to that same step. Both
report device-steps per second; the ratio is printed with the accuracy of each
against a fine ngspice reference (so speed is not bought with error).

    python benchmarks/bench_devices.py                 # hp_tio2_joglekar, 1e5 devices
    python benchmarks/bench_devices.py --card yakopcic_oblea --devices 100000 --dtype float64
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memsim import DeviceArray, Sine, load_card
from memsim.simulate import Trace, compare, spice_trace, torch_trace


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="hp_tio2_joglekar")
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--spice-repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = ap.parse_args(argv)

    card = load_card(args.card)
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
