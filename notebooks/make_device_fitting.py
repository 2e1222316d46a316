"""Generates device_fitting.ipynb (outputs cleared). Edit here, then run: python notebooks/make_device_fitting.py"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Device fitting: measured data in, a verified card out

A researcher measures a new RRAM stack and wants a compact model. Here the "measurement" is made in ngspice from
a card whose parameters are hidden from the fit, with 1 % Gaussian current noise added. Then

1. `memsim device fit` fits the metastable-switch family through the differentiable torch simulation
   (multi-start Levenberg-Marquardt, every start batched on the device axis),
2. the recovered parameters are compared with the hidden ones; the fit itself says which ones the data determine
   (relative standard error from the Gauss-Newton Hessian, spread of equally good starts),
3. the fitted card is re-run in ngspice on the measured stimulus (NRMSE torch vs ngspice, overlay plot),
4. the fitted card drives a crossbar layer."""),
    new_code_cell("""import tempfile, tomllib
from pathlib import Path
import numpy as np
import torch
import matplotlib.pyplot as plt
from IPython.display import Image, display
from memsim import load_card, spice
from memsim.cli import main
from memsim.fitting.synthetic import iv_sweep, write_csv

torch.set_num_threads(1)
assert spice.available(), "this notebook makes its data in ngspice"
work = Path(tempfile.mkdtemp(prefix="device_fitting_"))
card = load_card("mss_mif")
hidden = {"R_on": 1300.0, "R_off": 90000.0, "v_on": 0.12, "v_off": 0.006, "k": 0.017, "tau": 0.0009}
data = iv_sweep(card, hidden, points=200, noise=0.01, seed=7)       # ngspice, 100 Hz sine, 2 cycles
csv = write_csv(work / "measured.csv", data)
print(open(csv).read()[:200])"""),
    new_markdown_cell("""## 1. Fit
The same command a user runs. The loss is NRMSE = RMS(I_model - I_measured) / (max - min of I_measured);
bounds are one decade around the library card (log space) for positive parameters."""),
    new_code_cell("""out = work / "my_mss.toml"
rc = main(["device", "fit", str(csv), "--family", "metastable_switch", "--starts", "6", "--max-iter", "25",
           "-o", str(out), "--quiet"])
assert rc == 0
display(Image(filename=str(work / "my_mss_fit.png")))"""),
    new_markdown_cell("""## 2. Recovered against hidden parameters
Only the parameters the fit claims as identified are held to the 5 % target; the others are reported as not
determined by this sweep (e.g. `R_off`, which barely affects a current dominated by the ON branch)."""),
    new_code_cell("""doc = tomllib.loads(out.read_text())
fitted, prov = doc["parameters"], doc["provenance"]
unidentified = {s.strip() for s in prov["not_identified"].split(",")}
print(f"{'parameter':9s} {'hidden':>11s} {'fitted':>11s} {'error':>8s}  claim")
names = list(hidden)
for k in names:
    err = fitted[k] / hidden[k] - 1
    print(f"{k:9s} {hidden[k]:11.4g} {fitted[k]:11.4g} {err:+8.2%}  {'not identified' if k in unidentified else 'identified'}")
    if k not in unidentified:
        assert abs(err) < 0.05, k
print("NRMSE torch", prov["nrmse_torch"], " ngspice", prov["nrmse_spice"])
assert float(prov["nrmse_spice"]) <= 0.02 and float(prov["nrmse_torch"]) <= 0.02
assert len(unidentified & set(names)) < len(names)

fig, ax = plt.subplots(figsize=(6, 3.2))
err = [fitted[k] / hidden[k] - 1 for k in names]
ax.bar(names, np.array(err) * 100, color=["0.6" if k in unidentified else "C0" for k in names])
ax.axhspan(-5, 5, color="C2", alpha=0.15, label="5 % target")
ax.set(ylabel="fitted / hidden - 1 (%)", title="recovery (grey: reported as not identified)")
ax.legend(); fig.tight_layout()
fig.savefig(work / "recovery.png", dpi=110); plt.close(fig)   # the CLI's plotting runs matplotlib headless (Agg)
display(Image(filename=str(work / "recovery.png")))"""),
    new_markdown_cell("""## 3. The fitted card in a crossbar
The card written by the fit is an ordinary library card: it loads by path (or by name from `$MEMSIM_DEVICE_PATH`),
has its generated `.lib`, and goes straight into a crossbar preset. Its conductance window at the preset's read
voltage is compared with the hidden device's, and a layer mapped onto it is run ideal and with
programming, read and device-to-device noise."""),
    new_code_cell("""from memsim.crossbar.presets import load_preset
from memsim.devices.array import conductance_window
from memsim.devices.cards import with_parameters
from memsim.crossbar.nonideal import NonIdealities
from memsim.nn import CrossbarLinear

fitted_card = load_card(out)
print(open(fitted_card.lib_path()).read().splitlines()[4][:110], "...")
preset = load_preset("tio2_0t1r_16").replace(card=fitted_card)
g_fit = conductance_window(fitted_card, preset.v_read)
g_true = conductance_window(with_parameters(card, **hidden), preset.v_read)
print("window fitted (S):", g_fit, " hidden:", g_true)
assert abs(g_fit[1] / g_true[1] - 1) < 0.05          # g_max = 1/R_on is what the sweep determines

torch.manual_seed(0)
x = torch.rand(64, 16)
ideal = CrossbarLinear(16, 8, preset=preset, mode="ideal")
noisy = CrossbarLinear(16, 8, preset=preset, mode="noisy",
                       noise=NonIdealities(program=0.02, read=0.005, d2d=0.05, seed=1))
noisy.load_state_dict(ideal.state_dict())
with torch.no_grad():
    ref = x @ ideal.weight.T + ideal.bias
    y_ideal, y_noisy = ideal(x), noisy(x)
print(f"ideal mapping error {float((y_ideal - ref).norm() / ref.norm()):.2e}, "
      f"with programming, read and d2d noise {float((y_noisy - ref).norm() / ref.norm()):.2%}")
assert float((y_ideal - ref).norm() / ref.norm()) < 1e-4 < float((y_noisy - ref).norm() / ref.norm())"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, __file__.replace("make_device_fitting.py", "device_fitting.ipynb"))
