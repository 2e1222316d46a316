"""Generates train_msnn.ipynb (outputs cleared). Edit here, then run: python notebooks/make_train_msnn.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Training a fully memristive SNN on the digits

Synapses are crossbar conductances, neurons are memristive integrate-and-fire (MIF) circuits (`devices/mif_neuron.toml`).
The network is trained by backpropagation through time on the circuit equations - no surrogate gradient: the
analog membrane voltage of each MIF neuron drives the next crossbar's rows, and the output layer's membrane
voltage over time is the readout (cross-entropy at every step, as SPICEprop). This notebook

1. trains a small network on scikit-learn's 8x8 digits (`memsim.training.train`, the engine of `memsim train`);
2. shows the membrane traces of the output neurons (and a few hidden ones) for test digits;
3. measures accuracy against the number of time steps;
4. evaluates the trained network deployed on non-ideal crossbar presets (quantised levels, DAC/ADC, programming
   and read noise, faults, IR drop), averaged over noise seeds.

Each cell asserts what it claims."""),
    new_code_cell("""import tempfile, time
import numpy as np
import torch
import matplotlib.pyplot as plt
from memsim.training import load_config, train, build_encoder, load_datasets, evaluate, evaluate_checkpoint

torch.set_num_threads(1)
run_dir = tempfile.mkdtemp(prefix="msnn_")
cfg = load_config("../configs/digits_quickstart.toml",
                  ["network.layers=[64,64,10]", "network.time_steps=20", "training.epochs=5",
                   f"output.dir={run_dir}", "output.plot=false"])
t0 = time.perf_counter()
result = train(cfg, progress=False)
print(f"trained in {time.perf_counter() - t0:.1f} s")
net = result.network.eval()
final = result.final
assert final["test_accuracy"] > 0.9, final"""),
    new_code_cell("""h = result.history
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
a1.plot([r["epoch"] for r in h], [r["train_loss"] for r in h], "o-", label="train")
a1.plot([r["epoch"] for r in h], [r["test_loss"] for r in h], "s-", label="test")
a1.set_xlabel("epoch"); a1.set_ylabel("loss"); a1.legend()
a2.plot([r["epoch"] for r in h], [100 * r["test_accuracy"] for r in h], "s-", color="C1")
a2.set_xlabel("epoch"); a2.set_ylabel("test accuracy (%)")
fig.suptitle("learning curves (metrics.csv)"); fig.tight_layout(); plt.show()"""),
    new_markdown_cell("""## Membrane traces

Output neuron voltages over the 20 steps (0.8 ms) for three test digits; the label's neuron is drawn thick. The
dashed line is the card's spike level (M1 starts switching ON); a spike is the voltage excursion the two
memristors produce, with no threshold circuit."""),
    new_code_cell("""train_set, test_set = load_datasets(cfg)
encoder = build_encoder(cfg)
x = encoder(test_set.images[:3])
with torch.no_grad():
    out = net(x)
t_ms = (np.arange(cfg.network.time_steps) + 1) * net.dt * 1e3
level = net.neurons[-1].spike_level
fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
for b in range(3):
    ax = axes[0, b]
    label, pred = int(test_set.labels[b]), int(out.scores[b].argmax())
    for j in range(10):
        ax.plot(t_ms, out.voltages[-1][:, b, j], lw=3 if j == label else 1, label=str(j))
    ax.axhline(level, ls="--", color="k", lw=0.8)
    ax.set_title(f"test digit {b}: label {label}, predicted {pred}")
    ax.set_ylabel("output V (V)")
    for j in range(8):
        axes[1, b].plot(t_ms, out.voltages[0][:, b, j])
    axes[1, b].axhline(level, ls="--", color="k", lw=0.8)
    axes[1, b].set_xlabel("time (ms)"); axes[1, b].set_ylabel("hidden V (V), 8 neurons")
axes[0, 0].legend(ncol=5, fontsize=7)
fig.tight_layout(); plt.show()
spikes = net.hard_spike_counts(out)
print("mean spikes per neuron (hidden, output):", [round(float(s.mean()), 2) for s in spikes])
assert (out.scores.argmax(1) == test_set.labels[:3]).float().mean() >= 2 / 3
assert float(spikes[0].sum()) > 0, "hidden MIF neurons spike"
"""),
    new_markdown_cell("""## Accuracy against the number of time steps

The trained network (20 steps) evaluated with shorter and longer presentations of the same input."""),
    new_code_cell("""steps = [2, 5, 10, 15, 20, 30, 40]
acc = []
for T in steps:
    e = build_encoder(cfg.with_overrides([f"network.time_steps={T}"]))
    acc.append(evaluate(net, e, test_set)["accuracy"])
plt.figure(figsize=(5, 3.2))
plt.plot(steps, [100 * a for a in acc], "o-")
plt.axvline(cfg.network.time_steps, ls=":", color="k", label="trained")
plt.xlabel("time steps (dt = 40 us)"); plt.ylabel("test accuracy (%)"); plt.legend(); plt.grid(alpha=0.3)
plt.title("accuracy vs time steps"); plt.show()
print(dict(zip(steps, [round(100 * a, 2) for a in acc])))
assert acc[steps.index(20)] > acc[0]"""),
    new_markdown_cell("""## Deployment on non-ideal crossbars

The weights of the ideal run are programmed onto a preset's tiles (once per seed, kept for the whole test set,
as on a chip) and the test set is run through the array model: `noisy` = quantised conductance levels, DAC/ADC,
programming and read noise, device variation, stuck-at faults, drift; `irdrop` adds the exact IR drop of the wires.
`hfox_1t1r_64` is the realistic target of the benchmarks (64x64 1T1R tiles, 1 Ohm wire segments, 6-bit ADC,
5 % programming noise); `hfox_0t1r_32` is a passive array with sneak paths and 16 levels."""),
    new_code_cell("""ckpt = result.checkpoint
cases = [("ideal", None), ("hfox_1t1r_64", "noisy"), ("hfox_1t1r_64", "irdrop"), ("hfox_0t1r_32", "noisy")]
rows = []
for preset, mode in cases:
    r = evaluate_checkpoint(ckpt, preset=preset, mode=mode, seeds=2)
    rows.append((preset.split("/")[-1].removesuffix(".toml") + ("" if mode is None else f"\\n{mode}"),
                 100 * r["accuracy"], 100 * r["std"]))
    print(f"{preset:45s} {str(mode):7s} {100 * r['accuracy']:6.2f} % +- {100 * r['std']:.2f}")
plt.figure(figsize=(8, 3.2))
plt.bar(range(len(rows)), [r[1] for r in rows], yerr=[r[2] for r in rows], capsize=4)
plt.xticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
plt.ylabel("test accuracy (%)"); plt.ylim(0, 100); plt.title("trained ideal, deployed on presets (2 seeds)")
plt.tight_layout(); plt.show()
assert abs(rows[0][1] - 100 * final["test_accuracy"]) < 1e-6
assert all(r[1] > 50 for r in rows)"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
out = Path(__file__).with_name("train_msnn.ipynb")
nbformat.write(nb, out)
print(f"wrote {out}")
