"""Generates crossbar_nonidealities.ipynb (outputs cleared). Edit here, then run:
python notebooks/make_crossbar_nonidealities.py"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Crossbar non-idealities: each alone, all together, and IR drop against tile size and wire resistance

A weight matrix `W` (out x in) is mapped onto crossbar tiles of a preset (`crossbar/*.toml`): conductances in the
window of the preset's device card, differential pairs or an offset column, DAC on the inputs, ADC per tile column,
partial sums added after the ADC. memsim models each non-ideality as a switch (all seeded):

| source | what it does |
|---|---|
| levels | conductances rounded to a finite number of levels (straight-through gradient) |
| program | programming (write) noise, Gaussian, a fraction of the window |
| read | noise on every read of every cell |
| d2d | device-to-device variation, a fixed lognormal factor per cell |
| stuck_on / stuck_off | cells stuck at the top / bottom of the window |
| drift | power-law conductance drift `G(t) = G(t0) (t/t0)^-nu` |
| DAC / ADC | converter resolution and clipping |
| IR drop | wire resistance of word and bit lines: the exact nodal solve (sparse LU) |

The error is `||y - x W^T|| / ||x W^T||` over a batch, against the ideal product."""),
    new_code_cell("""import dataclasses
import numpy as np
import torch
import matplotlib.pyplot as plt
from memsim.crossbar import CrossbarArray, NonIdealities, load_preset, solve_linear, solve_ideal, solve_approx
from memsim.crossbar.irdrop import PATTERNS, irdrop_map, irdrop_figure, pattern_conductance
from memsim.crossbar.solver import relative_error

base = load_preset("hfox_1t1r_64")
print(base.summary())
print("provenance:", base.provenance)
print("noise of the preset:", base.noise.as_dict())

OUT, IN = 24, 100
gen = torch.Generator().manual_seed(0)
W = torch.randn(OUT, IN, generator=gen, dtype=torch.float64) / IN ** 0.5
X = torch.rand(256, IN, generator=gen, dtype=torch.float64)
Y = X @ W.T

def rel(y):
    return float((y - Y).norm() / Y.norm())

def error(mode="noisy", noise=NonIdealities(), levels=0, dac=None, adc=None, preset=base):
    p = preset.replace(levels=levels, dac=dac, adc=adc, noise=noise)
    return rel(CrossbarArray(p, OUT, IN, mode=mode)(W, X))

clean = error()
print(f"no non-ideality switched on: error {clean:.1e} (the mapping itself is exact)")
assert clean < 1e-9"""),
    new_markdown_cell("""## 1. Each non-ideality alone, then all of them
The figures of the preset (`hfox_1t1r_64`: 5 % programming noise, 0.5 % read noise, 5 % d2d, 0.1 % / 0.2 % stuck,
drift after one hour, 32 levels, 8-bit DAC, 6-bit ADC, 1 Ohm wire segments) switched on one at a time."""),
    new_code_cell("""N = base.noise
alone = {
    "levels (32)": error(levels=base.levels),
    "program 5%": error(noise=N.only("program")),
    "read 0.5%": error(noise=N.only("read")),
    "d2d 5%": error(noise=N.only("d2d")),
    "stuck-ON 0.1%": error(noise=N.only("stuck_on")),
    "stuck-OFF 0.2%": error(noise=N.only("stuck_off")),
    "drift 1 h": error(noise=N.only("drift")),
    "DAC 8 b": error(dac=base.dac),
    "ADC 6 b": error(adc=base.adc),
    "IR drop": error(mode="irdrop"),
}
combined_ideal_wires = error(noise=N, levels=base.levels, dac=base.dac, adc=base.adc)
combined = error(mode="irdrop", noise=N, levels=base.levels, dac=base.dac, adc=base.adc)
alone["all but IR drop"] = combined_ideal_wires
alone["all + IR drop"] = combined
for k, v in alone.items():
    print(f"{k:16s} {v:8.2%}")
fig, ax = plt.subplots(figsize=(9, 4))
ax.barh(list(alone), [100 * v for v in alone.values()], color=["C0"] * (len(alone) - 2) + ["C3", "C3"])
ax.set(xscale="log", xlabel="relative output error vs x W^T (%)", title=f"{base.name}: each non-ideality alone, and combined")
ax.invert_yaxis(); fig.tight_layout()
assert all(v > 0 for v in alone.values())
assert combined > max(v for k, v in alone.items() if k not in ("IR drop", "all + IR drop")) * 0.5"""),
    new_markdown_cell("""Every source is seeded on its own stream: switching one on does not change the draws of another, and the same
seed gives the same chip. Drift is deterministic here (a global factor `(t/t0)^-nu`), so its error is a gain error
that a calibrated ADC would remove; IR drop is not a gain error: it depends on where a cell sits and on the inputs."""),
    new_code_cell("""a = error(noise=N.only("program")); b = error(noise=N.only("program"))
c = error(noise=dataclasses.replace(N.only("program"), seed=1))
print(f"program noise, seed 0 twice: {a:.4%} {b:.4%}; seed 1: {c:.4%}")
assert a == b and a != c"""),
    new_markdown_cell("""## 2. IR drop against tile size and wire resistance
One tile of random conductances in the HfOx window (0T1R, no driver resistance), every input at 0.2 V; error of the
column currents of the exact IR-drop operator (`V @ A`, `mode="irdrop"`) against the ideal `V G`, checked against
the per-vector nodal solve. Beside it: how many iterations the fixed-point solve (`solve_approx`) needs to
reach the same accuracy (1e-9), and where it cannot."""),
    new_code_cell("""p0 = load_preset("hfox_0t1r_32")
sizes = [16, 32, 64, 128]
wires = [0.1, 1.0, 5.0]
from memsim.crossbar.operator import tile_operator
from memsim.errors import ConvergenceError
err = np.zeros((len(wires), len(sizes))); iters = np.full_like(err, np.nan)
for a, r in enumerate(wires):
    for b, n in enumerate(sizes):
        p = p0.replace(rows=n, cols=n, r_wire=r)
        g = pattern_conductance(p, "random", seed=0)
        v = torch.full((1, n), 0.2, dtype=torch.float64)
        exact = (v @ tile_operator(g, p.circuit)).numpy()
        assert relative_error(exact, solve_linear(g, v, p.circuit).numpy()) < 1e-9  # operator = nodal solve
        err[a, b] = relative_error(exact, solve_ideal(g, v, p.circuit).numpy())
        try:
            iters[a, b] = solve_approx(g, v, p.circuit, tol=1e-9, max_iter=300, return_info=True)[1]["iterations"]
        except ConvergenceError:
            pass  # diverges, or needs more than 300 iterations: left blank in the plot
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for a, r in enumerate(wires):
    axes[0].plot(sizes, 100 * err[a], "o-", label=f"{r:g} Ohm/segment")
    axes[1].plot(sizes, iters[a], "o-", label=f"{r:g} Ohm/segment")
axes[0].set(xscale="log", yscale="log", xlabel="tile size N (N x N)", ylabel="max|I - I_ideal| / max|I_ideal| (%)",
            title="IR drop: exact operator vs ideal product")
axes[1].set(xscale="log", yscale="log", xlabel="tile size N (N x N)", ylabel="iterations to reach 1e-9",
            title="fixed-point solve (approx): iterations; missing = no convergence")
for ax in axes:
    ax.set_xticks(sizes, [str(s) for s in sizes]); ax.set_xticks([], minor=True); ax.legend(fontsize=8); ax.grid(alpha=0.3)
fig.tight_layout()
print("error vs ideal (%), rows = wire R, cols = N", sizes); print(np.array2string(100 * err, precision=3))
print("approx iterations to 1e-9 (nan: none)"); print(iters)
assert np.all(np.diff(err, axis=1) > 0) and np.all(np.diff(err, axis=0) > 0)  # grows with N and with R"""),
    new_markdown_cell("""The fixed point converges only while the total wire drop is a modest fraction of the input (roughly
`r_wire G N^2 < 1`), needs more iterations as tiles grow, and raises `ConvergenceError` (with its residual) instead of
returning a wrong answer. The exact operator has no such limit: one precompute per programmed chip, then a matmul
per read, differentiable (autograd through the operator).

## 3. Where the voltage goes
The drop of every cell's voltage below its input, for random and for all-ON weights, in the 64x64 1T1R preset
(the same figure as `memsim crossbar irdrop hfox_1t1r_64 --plot out.png`)."""),
    new_code_cell("""maps = [irdrop_map(base, pat) for pat in PATTERNS]
fig = irdrop_figure(base, maps)
from IPython.display import display
display(fig)  # memsim.plots renders headless (Agg), so show the figure explicitly
for m in maps:
    print(f"{m.pattern:7s}: max drop {m.max_drop*1e3:.2f} mV, max column error {m.max_error:.2%}")
assert maps[1].max_error > maps[0].max_error  # all-ON draws the most current"""),
    new_markdown_cell("""## 4. The solver against ngspice
`memsim verify --kind crossbar` solves small tiles of every preset with memsim and with ngspice `.op` on the
netlist that `memsim crossbar export` writes (linear cells: 1e-9, the card's sinh I-V: 1e-6 relative)."""),
    new_code_cell("""from memsim import spice
from memsim.verify import collect, format_table, run_checks
if not spice.available():
    print("ngspice is not installed: skipping the SPICE comparison")
else:
    results = run_checks(collect(["crossbar"]), progress=False)
    print(format_table(results))
    assert all(r.passed for r in results)"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, __file__.replace("make_crossbar_nonidealities.py", "crossbar_nonidealities.ipynb"))
