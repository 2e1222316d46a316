"""Generates in_situ_training.ipynb (outputs cleared). Edit here, then run: python notebooks/make_in_situ_training.py"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# In-situ training: learning through the synapses' pulse response

On a chip that learns, every weight update is a train of programming pulses, and the synapse device decides how
far each pulse moves its conductance. This notebook

1. draws the LTP/LTD curves (conductance after each pulse) of several synapse models: the behavioural pulse cards
   and the response of `stanford_pku_hfox_10k` derived from its state equation,
2. fits a behavioural model to a "measured" curve (made from hidden parameters with 1 % read noise) with
   `memsim device fit`, and
3. trains the same network (digits, an MLP 64-32-10) in float, with pulsed analog SGD and with Tiki-Taka on the
   fitted device, through `memsim.training.train` with `training.update = "pulsed"`."""),
    new_code_cell("""import tempfile, tomllib
from pathlib import Path
import numpy as np
import torch
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import Image, display
from memsim.cli import main
from memsim.fitting.synthetic import polarity_curve, write_csv
from memsim.insitu import load_pulse_response, nominal_step
from memsim.pulse import PULSE_FAMILIES, PulseCard, load_pulse_card
from memsim.training import train
from memsim.training.config import parse_config

matplotlib.use("Agg")
torch.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="in_situ_training_"))

def show(fig, name):
    fig.tight_layout(); fig.savefig(work / name, dpi=100); plt.close(fig)
    display(Image(filename=str(work / name)))"""),
    new_markdown_cell("""## 1. LTP/LTD curves
80 potentiation pulses from G_min, then 80 depression pulses, noise-free (the cards' mean step), conductance as a
fraction of each model's window. `stanford_pku_hfox_10k` is a filamentary RRAM: under 1.1 V / 100 ns set pulses its
conductance barely moves for ~120 pulses and then jumps (the gap closes, and the conductance is exponential in the
gap); -0.8 V / 100 ns reset pulses lower it gradually. In-situ training uses one branch per device pair
(`training.pulse_polarity`): the gradual one."""),
    new_code_cell("""names = ["pulse_ideal_linear", "pulse_linear_step", "pulse_soft_bounds", "pulse_power_step",
         "pulse_exp_saturation"]
responses = {n: load_pulse_response(n) for n in names}
responses["stanford_pku_hfox_10k (derived)"] = load_pulse_response("stanford_pku_hfox_10k", 1.1, -0.8, 1e-7)
train_pulses = [1] * 80 + [-1] * 80
fig, ax = plt.subplots(figsize=(7, 3.6))
for name, r in responses.items():
    g = r.curve(train_pulses, g0=r.g_min).numpy()
    u = (g - r.g_min) / (r.g_max - r.g_min)
    assert u.min() >= 0 and u.max() <= 1 + 1e-12          # the window bounds every pulse
    ax.plot(np.arange(1, len(u) + 1), u, label=name)
ideal = responses["pulse_ideal_linear"].curve(train_pulses, g0=2e-6).numpy()
assert np.allclose(np.diff(ideal[:80]), 1.8e-8, rtol=1e-9)   # the ideal device: equal steps
ax.axvline(80.5, color="0.7", lw=0.8)
ax.set(xlabel="pulse", ylabel="(G - G_min) / (G_max - G_min)", title="80 potentiation, then 80 depression pulses")
ax.legend(fontsize=7, loc="upper right")
show(fig, "ltp_ltd.png")
for name, r in responses.items():
    for polarity, drive in (("set", 1), ("reset", -1)):
        step, n = nominal_step(r, drive)
        print(f"{name:34s} {polarity:5s}: {n:4d} pulses from its bound to mid-window")"""),
    new_markdown_cell("""## 2. A behavioural model fitted to a measured curve
The "measurement": two cycles of 60 potentiation and 70 depression pulses through a power-step device with hidden
parameters, read with 1 % noise, written as `polarity,conductance` (one row per pulse). `memsim device fit`
fits the power-step family to it and writes a pulse card, cycle-to-cycle noise estimated from the residuals."""),
    new_code_cell("""W_MIN, W_MAX = 2e-6, 2e-5
W = W_MAX - W_MIN
hidden = {"G_min": W_MIN, "G_max": W_MAX, "dg_ltp": 0.06 * W, "dg_ltd": 0.09 * W, "gamma_ltp": 1.5,
          "gamma_ltd": 2.5}
family = PULSE_FAMILIES["power_step"]
quiet = {"c2c_rel": 0.0, "c2c_abs": 0.0, "d2d_step": 0.0, "d2d_bounds": 0.0}
card = PulseCard("hidden_power_step", family, "", {"source": "notebook"}, family.validate(hidden, "hidden"),
                 quiet, 0.2)
pulses = ([1] * 60 + [-1] * 70) * 2
csv = write_csv(work / "measured.csv", polarity_curve(card, pulses, noise=0.01, seed=3))
fitted_path = work / "fitted_power_step.toml"
assert main(["device", "fit", str(csv), "--family", "power_step", "-o", str(fitted_path), "--quiet"]) == 0
fitted = load_pulse_card(fitted_path)
doc = tomllib.loads(fitted_path.read_text())
print(f"{'parameter':10s} {'hidden':>10s} {'fitted':>10s} {'error':>8s}")
for k in ("dg_ltp", "dg_ltd", "gamma_ltp", "gamma_ltd"):
    err = fitted.parameters[k] / hidden[k] - 1
    print(f"{k:10s} {hidden[k]:10.4g} {fitted.parameters[k]:10.4g} {err:+8.2%}")
    assert abs(err) < 0.1, k
print("fitted noise:", fitted.noise)
measured = np.loadtxt(csv, delimiter=",", skiprows=1)[:, 1]
model = load_pulse_response(str(fitted_path)).curve(pulses, g0=float(measured[0])).numpy()
nrmse = np.sqrt(np.mean((model - measured[1:]) ** 2)) / np.ptp(measured)
print(f"NRMSE of the fitted curve against the measurement: {100 * nrmse:.2f} %")
assert nrmse < 0.03
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(measured * 1e6, ".", ms=3, label="measured (1 % read noise)")
ax.plot(np.arange(1, len(model) + 1), model * 1e6, label="fitted power step")
ax.set(xlabel="pulse", ylabel="G (uS)"); ax.legend()
show(fig, "fit.png")"""),
    new_markdown_cell("""## 3. Learning on the fitted device
The same MLP, initialisation, batch order and recipe (SGD, momentum 0, learning rate 0.1) in float, then with each
weight a differential pair of the fitted device (window = 4 x the layer's largest initial weight, at most 10 pulses
per device per step, refresh of saturated pairs), trained with pulsed SGD and with Tiki-Taka (a fast array,
transferred to the slow one every 16 steps, its window a quarter of the slow one's), and, for reference, pulsed
SGD on the ideal linear device. The epoch metrics count the pulses, those cut by the per-step maximum, the
refreshes and the transfers."""),
    new_code_cell("""def run(name, **training):
    cfg = parse_config({"network": {"kind": "ann", "layers": [64, 32, 10]},
                        "training": {"epochs": 4, "batch_size": 32, "optimizer": "sgd", "momentum": 0.0,
                                     "learning_rate": 0.1, "device": "cpu", "seed": 0, **training},
                        "output": {"dir": str(work / name), "plot": False}}, source=name)
    return train(cfg, progress=False, log=lambda *_: None).history

pulsed = {"update": "pulsed"}
runs = {"float SGD": run("float"),
        "pulsed SGD, ideal linear": run("ideal", **pulsed, pulse_response="pulse_ideal_linear"),
        "pulsed SGD, fitted device": run("sgd", **pulsed, pulse_response=str(fitted_path)),
        "Tiki-Taka, fitted device": run("tt", **pulsed, pulse_response=str(fitted_path),
                                        pulse_algorithm="tiki_taka")}
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for name, hist in runs.items():
    ax.plot([r["epoch"] for r in hist], [100 * r["test_accuracy"] for r in hist], "o-", label=name)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits, MLP 64-32-10"); ax.legend(fontsize=8)
show(fig, "learning_curves.png")
for name, hist in runs.items():
    last = hist[-1]
    extra = (f"; pulses {last['pulses']}, clipped {last['pulses_clipped']}, refreshes {last['refreshes']}, "
             f"transfers {last['transfers']}" if "pulses" in last else "")
    print(f"{name:26s} test accuracy {100 * last['test_accuracy']:.1f} %{extra}")
final = {n: h[-1]["test_accuracy"] for n, h in runs.items()}
assert final["float SGD"] > 0.85
assert abs(final["pulsed SGD, ideal linear"] - final["float SGD"]) < 0.05   # the ideal device learns as float
assert all(h[-1]["pulses"] > 0 for n, h in runs.items() if n != "float SGD")"""),
    new_markdown_cell("""The measured Fashion-MNIST figures (float against pulsed SGD and Tiki-Taka on the derived
Stanford-PKU response and on a NeuroSim-style asymmetric device, and the cost of a pulsed epoch against a
hardware-aware one) are in `benchmarks/insitu.md` (`python benchmarks/bench_insitu.py OUT`)."""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
nbformat.write(nb, __file__.replace("make_in_situ_training.py", "in_situ_training.ipynb"))
