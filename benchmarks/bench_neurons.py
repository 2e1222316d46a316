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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", action="append", help="neuron card(s) (default: mif_neuron and vlif_neuron)")
    ap.add_argument("--neurons", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=50, help="time steps of the torch run")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--spice-repeats", type=int, default=3)
    args = ap.parse_args(argv)
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
