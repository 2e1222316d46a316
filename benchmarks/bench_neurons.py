"""Neuron-steps per second: the torch neuron layer (10^5 neurons) against an ngspice transient of one neuron.

Both run in this process, in one invocation, on the card's irregular spike-train stimulus (through the alpha
synapse) at the card's time step dt:

* torch: ``memsim.nn`` layer (RK4, automatic sub-steps) with N neurons (default 10^5), T steps; neuron 0 gets the
  card's verification spike train, the others independent seeded Poisson trains of the same rate and amplitude.
  neuron-steps/s = N * T / wall time (no autograd; the timed loop includes the layer's finiteness check).
* ngspice: one neuron, the same spike train over the card's verify duration, with the maximum step of the
  verification (dt/10) and with dt; neuron-steps/s = (duration / dt) / wall time of ``spice.run`` (netlist
  parsing and transient; the fastest of ``--spice-repeats``).

The torch neuron 0 is compared with the dt/10 ngspice run (waveform error / spike amplitude, spike shift in steps),
so the speed is not bought with error.

    python benchmarks/bench_neurons.py                          # both cards, 1e5 neurons, float32, CPU
    python benchmarks/bench_neurons.py --card mif_neuron --neurons 100000 --steps 50 --dtype float64

``--single``: one neuron, a 20 ms trace at dt = 1 us (20,000 steps; the card's step current, switched on
at 10 %), memsim's scalar path (:mod:`memsim.scalar`, the same equations rendered to one Python loop,
the torch layer's RK4 sub-steps) against ngspice running the same trace (maximum step = dt), and
torch with a batch of one; accuracy against ngspice at dt/10.

    python benchmarks/bench_neurons.py --single --card mif_neuron
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memsim.neurons import load_neuron_card
from memsim.neurons.simulate import NeuronTrace, compare, spice_trace, standard_stimuli
from memsim.nn.neurons import MemristiveNeuron


def bench_card(name, n_neurons, n_steps, dtype, device, spice_repeats):
    card = load_neuron_card(name)
    stim = standard_stimuli(card)[2]  # the irregular spike train, through the synapse
    assert stim.synapse
    dt = card.dt
    T_full = len(stim.current)

    # -- ngspice, one neuron ---------------------------------------------------------------------------
    from memsim import spice
    from memsim.neurons.netlist import testbench
    timings = {}
    for label, max_step in (("dt/10", dt / 10), ("dt", dt)):
        net = testbench(card, stim.current, dt, synapse=True, max_step=max_step)
        best = float("inf")
        for _ in range(spice_repeats):
            start = time.perf_counter()
            spice.run(net)
            best = min(best, time.perf_counter() - start)
        timings[label] = best
        if label == "dt/10":
            ref = spice_trace(card, stim, dt, max_step=max_step)

    # -- torch, N neurons --------------------------------------------------------------------------------
    layer = MemristiveNeuron(card, synapse=True, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(card.verify.seed)
    T = max(n_steps, 1)
    pulses = torch.rand(T, 1, n_neurons, generator=g) < card.verify.train_rate * dt
    x = pulses.to(dtype) * card.verify.train_amplitude
    x[:, 0, 0] = torch.as_tensor(stim.current[:T], dtype=dtype)
    x = x.to(device)
    with torch.no_grad():
        layer(x[:2])  # warm-up (allocator, first-call overhead)
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = layer(x)
        if device != "cpu":
            torch.cuda.synchronize()
        torch_time = time.perf_counter() - start
    torch_rate = n_neurons * T / torch_time

    # -- accuracy of the same layer on neuron 0 over the full stimulus (single neuron, float64 not needed) --
    with torch.no_grad():
        full = layer(torch.as_tensor(stim.current, dtype=dtype, device=device).view(-1, 1, 1),
                     return_states=True)
    st = torch.cat([layer.initial_state(1, 1)[None], full.states])[:, 0, 0].double().cpu().numpy()
    model = NeuronTrace("torch", np.arange(len(st)) * dt, st[:, 0], st[:, :len(card.circuit.state_names)])
    c = compare(card, model, ref, dt)
    spikes = int(out.spikes.sum().item())
    return {
        "card": name, "neurons": n_neurons, "steps": T, "substeps": layer.substeps, "dtype": str(dtype),
        "torch_s": torch_time, "torch_rate": torch_rate, "spikes": spikes,
        "spice_steps": T_full, "spice_s_fine": timings["dt/10"], "spice_s_dt": timings["dt"],
        "spice_rate_fine": T_full / timings["dt/10"], "spice_rate_dt": T_full / timings["dt"],
        "wave": c["waveform_error"], "shift": c["spike_shift_steps"],
        "spikes_cmp": f"{c['spikes_torch']}/{c['spikes_spice']}",
    }


def single(name, duration, dt, spice_repeats, torch_single=True):
    """One neuron over ``duration`` at ``dt`` under the card's step current: scalar vs ngspice vs torch."""
    from memsim import scalar, spice
    from memsim.neurons.netlist import testbench
    from memsim.neurons.simulate import NeuronStimulus, torch_trace

    card = load_neuron_card(name)
    n = int(round(duration / dt))
    current = np.zeros(n)
    current[n // 10:] = card.verify.step_current
    scalar._compile.cache_clear()
    start = time.perf_counter()
    fast = scalar.neuron_trace(card, current, dt)
    first = time.perf_counter() - start
    start = time.perf_counter()
    scalar.neuron_trace(card, current, dt)
    steady = time.perf_counter() - start
    spice_time = float("inf")
    net = testbench(card, current, dt, synapse=False, max_step=dt)
    for _ in range(spice_repeats):
        start = time.perf_counter()
        spice.run(net)
        spice_time = min(spice_time, time.perf_counter() - start)
    stim = NeuronStimulus(f"step {card.verify.step_current:.3g} A", current, False)
    coarse = spice_trace(card, stim, dt, max_step=dt)
    reference = spice_trace(card, stim, dt, max_step=dt / 10)

    def err(trace):
        c = compare(card, trace, reference, dt)
        return f"{c['waveform_error']:.2e} / {c['spike_shift_steps']:.2f} ({c['spikes_torch']}/{c['spikes_spice']})"

    rows = [("ngspice, max step = dt", spice_time, err(coarse)), ("memsim scalar, first call", first, err(fast)),
            ("memsim scalar, again", steady, "")]
    if torch_single:
        start = time.perf_counter()
        model = torch_trace(card, stim, dt)
        rows.append(("memsim torch, batch of 1", time.perf_counter() - start, err(model)))
    print(f"\n{card.name}: one neuron, {stim.label} from t = {(n // 10) * dt:g} s, {duration * 1e3:g} ms at "
          f"dt = {dt:g} s ({n} steps, {scalar.neuron_trace.__module__} with the layer's RK4 sub-steps)")
    print(f"{'':30s}{'wall (s)':>10s}{'steps/s':>12s}  {'wave err / spike shift (spikes)':34s}{'vs ngspice':>11s}")
    for label, wall, e in rows:
        print(f"{label:30s}{wall:10.3f}{n / wall:12.4g}  {e:34s}{spice_time / wall:10.2f}x")
    print("errors against ngspice at max step dt/10: waveform error / spike amplitude, spike shift in steps")
    return {label: spice_time / wall for label, wall, _ in rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", action="append", help="neuron card(s) (default: mif_neuron and vlif_neuron)")
    ap.add_argument("--single", action="store_true", help="one neuron, --duration at --dt, instead of a layer")
    ap.add_argument("--duration", type=float, default=20e-3, help="--single: trace length in s (default 20 ms)")
    ap.add_argument("--dt", type=float, default=1e-6, help="--single: time step in s (default 1 us)")
    ap.add_argument("--no-torch-single", action="store_true", help="--single: skip torch with a batch of one")
    ap.add_argument("--neurons", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=50, help="time steps of the torch run")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--spice-repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.single:
        torch.set_num_threads(1)  # one neuron: threads only add overhead
        return {name: single(name, args.duration, args.dt, args.spice_repeats, not args.no_torch_single)
                for name in args.card or ["mif_neuron"]}
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, {args.dtype}")
    for name in args.card or ["mif_neuron", "vlif_neuron"]:
        r = bench_card(name, args.neurons, args.steps, dtype, args.device, args.spice_repeats)
        print(f"\n{r['card']}: torch {r['neurons']} neurons x {r['steps']} steps (RK4, {r['substeps']} sub-steps/dt) "
              f"in {r['torch_s']:.2f} s -> {r['torch_rate']:.3g} neuron-steps/s ({r['spikes']} spikes)")
        print(f"  ngspice 1 neuron x {r['spice_steps']} steps: max step dt/10 {r['spice_s_fine']:.3f} s -> "
              f"{r['spice_rate_fine']:.3g} neuron-steps/s; max step dt {r['spice_s_dt']:.3f} s -> "
              f"{r['spice_rate_dt']:.3g} neuron-steps/s")
        print(f"  ratio torch / ngspice: {r['torch_rate'] / r['spice_rate_fine']:.3g}x (vs dt/10), "
              f"{r['torch_rate'] / r['spice_rate_dt']:.3g}x (vs dt)")
        print(f"  accuracy of torch vs ngspice (dt/10) on the spike train: waveform error {r['wave']:.2e} of the "
              f"spike amplitude, spike shift {r['shift']:.3f} steps, spikes {r['spikes_cmp']}")


if __name__ == "__main__":
    main()
