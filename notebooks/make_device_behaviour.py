"""Generates device_behaviour.ipynb (outputs cleared). Edit here, then run: python notebooks/make_device_behaviour.py"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Device behaviour: every RRAM family, torch twin and ngspice side by side

Each card in `devices/` names a model family, SI parameters and their provenance. The family's equations are
written once; memsim renders them as an ngspice subcircuit and as batched torch functions. This notebook shows

1. the pinched hysteresis loop of every family,
2. the loop shrinking as the drive frequency rises (a memristor fingerprint),
3. the response to SET/RESET pulse trains,
4. SPICE against torch, with the error table of `memsim verify`.

Sections 1-3 trace one device at a time, so they use `memsim.scalar` (the same equations rendered to one Python
loop; the same numbers as the torch path to 1e-11, and several times faster than ngspice for one device);
section 4 compares both paths with ngspice."""),
    new_code_cell("""import numpy as np
import torch
import matplotlib.pyplot as plt
import memsim
from memsim import DeviceArray, Sine, load_card, list_cards, pulse_train
from memsim.devices.simulate import standard_stimuli, torch_trace, spice_trace, compare, SPICE_STEP_FRACTION
from memsim.scalar import device_trace
from memsim import spice

cards = [load_card(n) for n in list_cards()]
for c in cards:
    print(f"{c.name:22s} {c.family.title}\\n{'':22s} {c.provenance.get('doi', c.provenance.get('source'))}")"""),
    new_markdown_cell("## 1. Hysteresis loops of every family\nEach card under its first verification sine (amplitude and frequency from the card)."),
    new_code_cell("""def grid(n, height=3.5):
    rows = -(-n // 4)
    fig, axes = plt.subplots(rows, 4, figsize=(16, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat

def time_unit(span):
    return next((s, u) for s, u in ((1, "s"), (1e3, "ms"), (1e6, "µs"), (1e9, "ns"), (1e12, "ps")) if span * s >= 1)

fig, axes = grid(len(cards))
for ax, card in zip(axes, cards):
    std = standard_stimuli(card)[0]
    tr = device_trace(card, std.stimulus, std.dt)
    scale = 1e3
    ax.plot(tr.v, tr.i * scale, lw=1.2)
    ax.set(title=f"{card.name}\\n{std.label}", xlabel="V (V)", ylabel="I (mA)")
    ax.axhline(0, color="k", lw=0.4); ax.axvline(0, color="k", lw=0.4)
fig.tight_layout()"""),
    new_markdown_cell("""## 2. The loop shrinks as frequency rises
At low frequency the state has time to move during each half period and the loop is wide; at high
frequency the state barely moves and the device degenerates to a fixed resistor (a straight line).
The area of the positive lobe (the first half period, where v >= 0) is printed per frequency: it must fall
monotonically. (Over a whole period the two lobes of the pinched loop have opposite orientation and cancel.)"""),
    new_code_cell("""card = load_card("hp_tio2_joglekar")
freqs = [0.5, 1.0, 2.0, 5.0, 20.0]
fig, ax = plt.subplots(figsize=(6, 5))
areas = []
for f in freqs:
    stim = Sine(1.0, f, cycles=1)
    tr = device_trace(card, stim, 1 / (f * 2000))
    ax.plot(tr.v, tr.i * 1e6, label=f"{f:g} Hz")
    half = tr.t <= 0.5 / f
    areas.append(abs(np.trapezoid(tr.i[half], tr.v[half])))
ax.set(xlabel="V (V)", ylabel="I (µA)", title=f"{card.name}: loop area vs frequency")
ax.legend()
for f, a in zip(freqs, areas):
    print(f"{f:5g} Hz  positive-lobe area {a * 1e6:9.4f} µA*V")
assert all(a > b for a, b in zip(areas, areas[1:])), "loop area must shrink with frequency"
"""),
    new_markdown_cell("""## 3. Pulse response
Three SET pulses then three RESET pulses (the cards' verification trains). The state moves in steps during
pulses and holds between them for non-volatile devices; the volatile metastable switch (`mss_mif`) relaxes
back between pulses."""),
    new_code_cell("""fig, axes = grid(len(cards), height=3.2)
for ax, card in zip(axes, cards):
    std = standard_stimuli(card)[-1]
    tr = device_trace(card, std.stimulus, std.dt)
    s, unit = time_unit(tr.t[-1])
    ax.plot(tr.t * s, tr.x, color="C1", label="state x")
    ax.set(title=card.name, xlabel=f"t ({unit})", ylabel="x", ylim=(-0.05, 1.05))
    tw = ax.twinx(); tw.plot(tr.t * s, tr.v, color="C2", lw=0.7, label="voltage (right axis)")
    tw.set_ylabel("V (V)", color="C2")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + tw.get_legend_handles_labels()[0], fontsize=7,
              loc="center right")
fig.tight_layout()"""),
    new_markdown_cell("""## 4. SPICE against torch
The same subcircuit text that `memsim device export` writes is simulated by ngspice (tight tolerances,
maximum step a tenth of the torch step) and compared with torch RK4 and the scalar path, under each card's
first verification sine (`memsim verify` and the tests run all three stimuli). The tolerance of `memsim verify`
is 1e-3 of the peak current."""),
    new_code_cell("""print(open(load_card("yakopcic_oblea").lib_path()).read())"""),
    new_code_cell("""if not spice.available():
    print("ngspice is not installed: skipping the SPICE comparison")
else:
    rows = []
    fig, axes = grid(len(cards))
    for ax, card in zip(axes, cards):
        std = standard_stimuli(card)[0]
        model = torch_trace(card, std.stimulus, std.dt)
        fast = device_trace(card, std.stimulus, std.dt)
        ref = spice_trace(card, std.stimulus, std.dt * SPICE_STEP_FRACTION)
        err, err_fast = compare(model, ref), compare(fast, ref)
        rows.append((card.name, std.label, err["current_error"], err_fast["current_error"]))
        ax.plot(ref.v, ref.i * 1e3, color="0.6", lw=4, label="ngspice")
        ax.plot(model.v, model.i * 1e3, color="C0", lw=1.2, label="torch RK4")
        ax.plot(fast.v, fast.i * 1e3, color="C3", lw=0.6, ls="--", label="scalar RK4")
        ax.set(title=f"{card.name}: err {err['current_error']:.1e}", xlabel="V (V)", ylabel="I (mA)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    print(f"{'card':22s} {'stimulus':20s} {'torch':>10s} {'scalar':>10s}   (max|di| / peak, fraction)")
    for name, label, e, ef in rows:
        print(f"{name:22s} {label:20s} {e:10.2e} {ef:10.2e}")
    assert max(max(e, ef) for *_, e, ef in rows) < 1e-3"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, __file__.replace("make_device_behaviour.py", "device_behaviour.ipynb"))
