"""Generates neuron_dynamics.ipynb (outputs cleared). Edit here, then run: python notebooks/make_neuron_dynamics.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Memristive neuron dynamics: MIF and volatile-memristor LIF

Two neuron cards live in `devices/`: `mif_neuron` (memristive integrate-and-fire: a membrane capacitor and two
metastable-switch memristors in series with reversal potentials E1 < E2) and `vlif_neuron` (a threshold-switching
volatile memristor, a load resistor and a capacitor). Their equations are the device family's, written once; memsim
renders the circuit as an ngspice subcircuit and integrates it as a batched torch layer (`memsim.nn.MIFNeuron`,
`memsim.nn.VLIFNeuron`). This notebook shows

1. the spike waveform, ngspice and torch overlaid, with the `memsim verify` criteria;
2. the f-I curve;
3. the phase portrait;
4. refractory behaviour (paired pulses);
5. how each parameter changes the spike.

Each cell asserts what it claims."""),
    new_code_cell("""import numpy as np
import torch
import matplotlib.pyplot as plt
from memsim import spice
from memsim.neurons import load_neuron_card
from memsim.neurons.simulate import (standard_stimuli, torch_trace, spice_trace, compare, spike_times,
                                     WAVEFORM_TOLERANCE, SPIKE_TIME_TOLERANCE)
from memsim.neurons.characterise import fi_curve
from memsim.nn import MIFNeuron, VLIFNeuron

cards = {n: load_neuron_card(n) for n in ("mif_neuron", "vlif_neuron")}
for card in cards.values():
    p, devs = card.namespaces()
    print(f"{card.name} ({card.type}): dt = {card.dt:g} s, input range {list(card.input_range)} A")
    print("   circuit:", {k: v for k, v in card.parameters.items()})
    for k, d in enumerate(devs):
        print(f"   M{k + 1}:", vars(d))
print()
print("MIF SI derivation:", cards["mif_neuron"].provenance["derivation"])"""),
    new_markdown_cell("""## 1. Waveforms: ngspice against torch
The three verification stimuli of each card (current step, current ramp, irregular Poisson spike train through
the alpha synapse). ngspice runs the generated subcircuit (device subcircuits + capacitor + sources); torch runs the
layer (RK4, sub-stepped). Red lines: spikes found by the card's spike rule. Criteria: waveform within 1 % of the
spike amplitude, every spike within one time step."""),
    new_code_cell("""have_spice = spice.available()
traces = {}
fig, axes = plt.subplots(2, 3, figsize=(16, 7))
for row, card in zip(axes, cards.values()):
    p, devs = card.namespaces()
    rule = card.circuit.spike_rule(p, devs)
    for ax, stim in zip(row, standard_stimuli(card)):
        model = torch_trace(card, stim)
        ref = spice_trace(card, stim) if have_spice else None
        traces[(card.name, stim.label)] = model
        if ref is not None:
            c = compare(card, model, ref, card.dt)
            print(f"{card.name:12s} {stim.label:22s} waveform error {c['waveform_error']:.1e} of amplitude, "
                  f"spike shift {c['spike_shift_steps']:.2f} steps, spikes {c['spikes_torch']}/{c['spikes_spice']}")
            assert c["waveform_error"] <= WAVEFORM_TOLERANCE and c["spike_shift_steps"] <= SPIKE_TIME_TOLERANCE
            ax.plot(ref.t * 1e3, ref.v * 1e3, color="0.6", lw=3.5, label="ngspice")
        ax.plot(model.t * 1e3, model.v * 1e3, lw=1.1, label="torch")
        for ts in spike_times(model.t, model.states[:, rule.component], rule.level):
            ax.axvline(ts * 1e3, color="C3", lw=0.6, alpha=0.5)
        ax.set(title=f"{card.name}: {stim.label}", xlabel="time (ms)", ylabel="membrane V (mV)")
        ax.legend(fontsize=8)
fig.tight_layout()"""),
    new_markdown_cell("""The MIF spike: the input depolarises the membrane past E1 + v_on, memristor M1 switches ON and pulls the
membrane towards E1 (below the resting level between E1 and E2: hyperpolarisation); M1 then relaxes OFF
(volatile, v_off > 0) and the membrane repolarises to rest. No comparator, no reset circuit. The vLIF spike: the
threshold switch closes above v_on, discharges the membrane through the load resistor, and relaxes OFF again.

Under a *constant* current both neurons fire once at the onset and settle (phasic): the vLIF's two-state field has
negative divergence everywhere (Bendixson-Dulac: no limit cycle), the MIF settles with M1 partly ON. They fire
repeatedly under pulse-train input, the drive they see in a network."""),
    new_markdown_cell("""## 2. f-I curve
Output rate against mean input current for a seeded 3 kHz Poisson pulse train through the synapse, pulse amplitude
swept (one batched torch run per card)."""),
    new_code_cell("""fig, ax = plt.subplots(1, 2, figsize=(12, 4))
for a, card in zip(ax, cards.values()):
    amps = np.linspace(0.0, 3.0, 25) * card.verify.train_amplitude
    current, rate = fi_curve(card, amps, duration=5e-3)
    a.plot(current * 1e6, rate, "o-", color="C2")
    a.set(title=f"{card.name}: f-I", xlabel="mean input current (µA)", ylabel="output rate (Hz)")
    assert rate[0] == 0 and rate.max() > 0          # silent without input, fires with it
    assert rate[len(rate) // 3] > rate[1]           # the rate grows with the input at first
fig.tight_layout()"""),
    new_markdown_cell("""## 3. Phase portrait
The MIF under the irregular spike train: membrane voltage against each memristor state. Each spike is a loop:
V rises with x1 low, M1 turns ON (x1 rises) and pulls V down, then x1 relaxes. For the vLIF the same in (V, x).
The trajectories come from a run at dt/10 (the same held input, each sample repeated 10 times), so the fast
upstroke is resolved. One neuron over many steps is the scalar path's job (`memsim.scalar.neuron_trace`: the same
circuit equations rendered to one Python loop, the layer's RK4 sub-steps, checked against ngspice by the tests);
it must retrace the torch layer's trajectory at dt."""),
    new_code_cell("""from memsim.neurons.simulate import NeuronStimulus
from memsim.scalar import neuron_trace
fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
for a, card in zip(ax, cards.values()):
    stim = standard_stimuli(card)[2]
    label = stim.label
    fine = NeuronStimulus(label, np.repeat(stim.current, 10), stim.synapse)
    tr = neuron_trace(card, fine.current, dt=card.dt / 10, synapse=fine.synapse)
    coarse = traces[(card.name, label)]
    assert np.abs(tr.v[::10] - coarse.v).max() < 0.01 * (coarse.v.max() - coarse.v.min())   # same trajectory
    for j, name in enumerate(card.circuit.state_names[1:], start=1):
        a.plot(tr.v * 1e3, tr.states[:, j], lw=1.0, label=name)
        a.plot(tr.v[0] * 1e3, tr.states[0, j], "ko", ms=4)
    a.set(title=f"{card.name}: phase portrait ({label})", xlabel="membrane V (mV)", ylabel="memristor state")
    a.legend()
    assert ((tr.states[:, 1:] >= 0) & (tr.states[:, 1:] <= 1)).all()   # states stay in [0, 1], unclamped
fig.tight_layout()"""),
    new_markdown_cell("""## 4. Refractory behaviour: paired pulses
Two identical input pulses (through the synapse) separated by an interval. After a spike, M1 (MIF) or the threshold
switch (vLIF) is still partly ON and relaxes with its time constant tau, so a second pulse soon after the first
gives a smaller excursion (relative refractoriness); the response recovers as the interval grows. One batched run:
the batch index is the interval."""),
    new_code_cell("""intervals = np.array([3, 5, 10, 20, 40, 80, 160])    # steps
fig, ax = plt.subplots(1, 3, figsize=(17, 4.2))
for k, (layer, amp) in enumerate([(MIFNeuron(synapse=True, dtype=torch.float64), 3e-4),
                                  (VLIFNeuron(synapse=True, dtype=torch.float64), 1.5e-4)]):
    T, t1 = 220, 20
    x = torch.zeros(T, len(intervals), 1, dtype=torch.float64)
    x[t1] = amp
    for b, d in enumerate(intervals):
        x[t1 + d, b] = amp
    with torch.no_grad():
        v = layer(x).v[:, :, 0].numpy()
    x1 = torch.zeros(T, 1, 1, dtype=torch.float64)
    x1[t1] = amp
    with torch.no_grad():
        v1 = layer(x1).v[:, 0, 0].numpy()        # the first pulse alone
    amp1 = v1.max() - v1[t1 - 1]
    ratio = []
    for b, d in enumerate(intervals):
        after = v[t1 + d: t1 + d + 30, b]
        base = v1[t1 + d: t1 + d + 30]          # what the first pulse alone would do there
        ratio.append((after - base).max() / amp1)
    ratio = np.array(ratio)
    t = np.arange(1, T + 1) * layer.dt * 1e3
    for b in (1, 3, 5):
        ax[k].plot(t, v[:, b] * 1e3, lw=1.0, label=f"interval {intervals[b] * layer.dt * 1e3:g} ms")
    ax[k].set(title=f"{layer.card.name}: paired pulses", xlabel="time (ms)", ylabel="membrane V (mV)")
    ax[k].legend(fontsize=8)
    ax[2].semilogx(intervals * layer.dt * 1e3, ratio, "o-", label=layer.card.name)
    print(layer.card.name, "second-response / first-response amplitude:", np.round(ratio, 3))
    assert ratio[-1] > ratio[0]       # the response recovers with the interval
ax[2].set(title="recovery of the second response", xlabel="interval (ms)",
          ylabel="extra excursion / single-pulse amplitude")
ax[2].legend()
fig.tight_layout()"""),
    new_markdown_cell("""## 5. Parameter effects
The MIF response to one synaptic input pulse (100 µA for one step, just above its firing level) while one parameter is varied (the others at the card's values):
the membrane capacitance C, the upper reversal potential E2, the memristors' switching time constant tau, and
their ON threshold v_on (both memristors). Then the vLIF's load resistor and capacitance (pulse 300 µA). Every variant is a
re-validated card (`NeuronCard.with_parameters`), so an invalid value is refused with an error. One neuron at a time,
so the runs use the scalar path (`memsim.scalar.neuron_trace`, the same equations as the layer)."""),
    new_code_cell("""def one_pulse(cls, amp, T=150, t1=20, **over):
    card = cards["mif_neuron" if cls is MIFNeuron else "vlif_neuron"].with_parameters(**over)
    x = np.zeros(T)
    x[t1] = amp
    tr = neuron_trace(card, x, synapse=True)      # index 0 is the initial state; the layer reports steps 1..T
    return tr.t[1:] * 1e3, tr.v[1:]

sweeps = [(MIFNeuron, 1e-4, "C", [0.25e-9, 1e-9, 4e-9], "F"),
          (MIFNeuron, 1e-4, "E2", [0.03, 0.05, 0.08], "V"),
          (MIFNeuron, 1e-4, ("M1_tau", "M2_tau"), [0.5e-3, 1e-3, 2e-3], "s"),
          (MIFNeuron, 1e-4, ("M1_v_on", "M2_v_on"), [0.09, 0.11, 0.13], "V"),
          (VLIFNeuron, 3e-4, "R_L", [0.3e3, 1e3, 3e3], "Ohm"),
          (VLIFNeuron, 3e-4, "C", [5e-9, 1e-8, 2e-8], "F")]
fig, axes = plt.subplots(2, 3, figsize=(17, 8))
peaks = {}
for ax, (cls, amp, names, values, unit) in zip(axes.flat, sweeps):
    names = (names,) if isinstance(names, str) else names
    for val in values:
        t, v = one_pulse(cls, amp, **{n: val for n in names})
        ax.plot(t, v * 1e3, lw=1.2, label=f"{names[0].replace('M1_', '')} = {val:g} {unit}")
        peaks[(cls.__name__, names[0], val)] = v.max()
    ax.set(title=f"{cls.__name__}: effect of {names[0].replace('M1_', '')}", xlabel="time (ms)",
           ylabel="membrane V (mV)")
    ax.legend(fontsize=8)
fig.tight_layout()
for key in sorted(peaks):
    print(f"{key[0]:10s} {key[1]:8s} = {key[2]:<8g} peak {peaks[key] * 1e3:6.1f} mV")
# a larger capacitor integrates the same charge to a lower peak (below 1 nF the peak is capped by M1 turning ON)
assert peaks[("MIFNeuron", "C", 4e-9)] < peaks[("MIFNeuron", "C", 1e-9)]
assert peaks[("VLIFNeuron", "C", 2e-8)] < peaks[("VLIFNeuron", "C", 1e-8)] < peaks[("VLIFNeuron", "C", 5e-9)]
# a higher upper reversal potential raises rest and peak; slower or later switching lets the membrane rise further
for name, values in (("E2", (0.03, 0.05, 0.08)), ("M1_tau", (0.5e-3, 1e-3, 2e-3)), ("M1_v_on", (0.09, 0.11, 0.13))):
    assert peaks[("MIFNeuron", name, values[0])] < peaks[("MIFNeuron", name, values[1])] \
        < peaks[("MIFNeuron", name, values[2])], name"""),
    new_code_cell("""# bad parameters are refused before anything runs
from memsim.errors import ParameterError
for bad in ({"E1": 0.06}, {"C": 0.0}, {"M1_tau": -1e-3}):
    try:
        MIFNeuron(**bad)
    except ParameterError as exc:
        print(type(exc).__name__, "-", str(exc).splitlines()[0])
    else:
        raise AssertionError(f"{bad} was accepted")"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
out = Path(__file__).with_name("neuron_dynamics.ipynb")
nbformat.write(nb, out)
print(f"wrote {out}")
