"""Generates design_space_sweep.ipynb (outputs cleared). Edit here, then run: python notebooks/make_design_space_sweep.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# A design-space sweep

`memsim.sweep` deploys a trained network on many crossbar designs - tile size, programming noise, ADC bits, wire
resistance, access device, dense or sparse mapping, pruning - and records accuracy (mean and spread over chips),
the crossbar product's error, tiles, utilisation and a first-order energy / latency / area estimate per point.
This notebook runs a tiny grid on the 8x8 digits (seconds): the same spec as a TOML file runs with
`memsim sweep run SPEC` on a process pool or a Ray cluster, and `memsim sweep plot` draws the figures below.

Each cell asserts what it claims."""),
    new_code_cell("""import tempfile
from pathlib import Path
import torch
import matplotlib.pyplot as plt
from memsim.training import parse_config, train
from memsim.sweep import parse_spec, run_sweep, table
from memsim.sweep.plots import plot_accuracy_vs_tile, plot_pareto, pareto_front

torch.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="sweep_"))
cfg = parse_config({"network": {"layers": [64, 16, 10], "time_steps": 6},
                    "training": {"epochs": 1, "batch_size": 64, "learning_rate": 2e-2},
                    "output": {"dir": str(work / "run"), "plot": False}})
ckpt = train(cfg, progress=False, log=lambda *_: None, max_batches=8).checkpoint
print(ckpt)"""),
    new_markdown_cell("""## The spec

A dict here; the same keys in a TOML file. Axes are preset keys (`tile.size` sets rows and columns, `noise.program`
the programming-noise std as a fraction of the conductance window) plus the sweep's own (`model`, `mapping`,
`prune`, `mode`). Every value is checked before any work: a misspelt axis names the closest valid one."""),
    new_code_cell("""spec_dict = {"name": "notebook",
             "base": {"checkpoint": str(ckpt), "preset": "hfox_1t1r_64", "mode": "noisy", "chips": 3, "limit": 150},
             "axes": {"tile.size": [16, 32, 64], "noise.program": [0.0, 0.2]}}
spec = parse_spec(spec_dict)
print(len(spec.points()), "points:", spec.points())
try:
    parse_spec({**spec_dict, "axes": {"noise.programm": [0.1]}})
except Exception as exc:
    print(type(exc).__name__, ":", exc)
    assert "did you mean 'noise.program'" in str(exc)"""),
    new_code_cell("""out = work / "results"
r = run_sweep(spec, out, workers=1, progress=False)
df = table(out)
assert r["failed"] == 0 and len(df) == 6
df[["tile.size", "noise.program", "accuracy", "accuracy_std", "output_error", "tiles", "utilisation", "energy",
    "latency", "area"]].sort_values(["noise.program", "tile.size"])"""),
    new_markdown_cell("""## What the table says

Programming noise raises the crossbar product's error at every tile size; smaller tiles need more of them
(more converters: more area and energy per inference). A rerun of the same spec skips every finished point."""),
    new_code_cell("""noisy, clean = df[df["noise.program"] == 0.2], df[df["noise.program"] == 0.0]
assert noisy["output_error"].min() > clean["output_error"].max()
t = df.groupby("tile.size")["tiles"].first()
assert t[16] > t[32] > t[64]
again = run_sweep(spec, out, workers=1, progress=False)
assert again["ran"] == 0 and again["skipped"] == 6"""),
    new_markdown_cell("""## Converter ranges come from the signal

Each chip's ADC full scale is calibrated on the layer's own column outputs (`[adc] calibration = "percentile"`, the
99th percentile over 256 training images; the DAC's input range likewise, at its 99.99th), as real macros and CrossSim set it,
so a conclusion about ADC bits is about the devices, not about a range someone forgot to tune. The fixed rule
(`"fixed"`: full scale = `adc.range x rows x v_max x dG`) is still an axis value, to show what it would have said."""),
    new_code_cell("""adc_spec = parse_spec({"name": "adc", "base": {"checkpoint": str(ckpt), "preset": "hfox_1t1r_64", "mode": "noisy",
                                               "chips": 2, "limit": 150},
                        "axes": {"adc.bits": [4, 6], "adc.calibration": ["percentile", "fixed"]}})
run_sweep(adc_spec, work / "adc", workers=1, progress=False)
dfa = table(work / "adc")
view = dfa.pivot(index="adc.bits", columns="adc.calibration", values="output_error")
print(dfa.pivot(index="adc.bits", columns="adc.calibration", values="accuracy"))
print(view)
assert (view["percentile"] < view["fixed"]).all()  # the calibrated ADC reads the product more exactly"""),
    new_code_cell("""fig_paths = [plot_accuracy_vs_tile(df, work / "acc_tile.png"), plot_pareto(df, work / "pareto.png", color="noise.program")]
front = pareto_front(df[df.status == "ok"])
print(front[["tile.size", "noise.program", "accuracy", "energy"]])
from IPython.display import Image, display
for p in fig_paths:
    display(Image(filename=str(p)))"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, Path(__file__).with_name("design_space_sweep.ipynb"))
