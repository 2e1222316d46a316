"""Generates nir_import.ipynb (outputs cleared). Edit here, then run: python notebooks/make_nir_import.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# A network from snnTorch, through NIR, on memristive chips

Spiking networks move between frameworks as NIR graphs (the `nir` package). Here a small snnTorch network is
exported with snnTorch's own NIR export, imported into memsim, checked spike for spike against snnTorch, and then run
on chips of a memristive crossbar preset, whose programming noise changes the spikes. The network is untrained (this
runs in seconds); `benchmarks/bench_nir.py` does the same with a trained Fashion-MNIST network.

Each cell asserts what it claims."""),
    new_code_cell("""import tempfile
from pathlib import Path
import torch, nir, snntorch as snn, snntorch.utils
from snntorch.export_nir import export_to_nir
import matplotlib.pyplot as plt
from memsim.interop import import_nir
from memsim.nn.calibration import calibrate
from memsim.training.data import load_dataset

torch.manual_seed(0)
kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)   # the form NIR expresses
net = torch.nn.Sequential(torch.nn.Linear(64, 32), snn.Leaky(beta=torch.full((32,), 0.9), threshold=torch.ones(32), **kw),
                          torch.nn.Linear(32, 10), snn.Leaky(beta=torch.full((10,), 0.85), threshold=torch.ones(10),
                                                             output=True, **kw))
with torch.no_grad():
    net[0].weight.mul_(4.0); net[2].weight.mul_(4.0)                     # enough drive to spike on the digits
path = Path(tempfile.mkdtemp()) / "digits.nir"
nir.write(path, export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
graph = nir.read(path)
print({name: type(node).__name__ for name, node in graph.nodes.items()})"""),
    new_markdown_cell("""## Spike for spike

memsim integrates NIR's LIF equation by forward Euler at the graph's time step (snnTorch exports with
`dt = 1e-4`); with a reset to zero that is exactly snnTorch's `Leaky`."""),
    new_code_cell("""digits = load_dataset("digits", "test", flatten=True)
T = 20
x = digits.images[:64].unsqueeze(0).expand(T, 64, 64)                    # [T, B, 64]: the image at every step
snntorch.utils.reset(net)
with torch.no_grad():
    reference = torch.stack([net(x[t])[0] for t in range(T)])
    ideal = import_nir(path, dt=1e-4)(x)
print("spikes:", int(reference.sum()), "identical:", torch.equal(ideal, reference))
assert reference.sum() > 10 and torch.equal(ideal, reference)"""),
    new_markdown_cell("""## On a memristive chip

With a preset, every `Affine` becomes a crossbar layer: weights mapped to conductance pairs, programmed with the
preset's noise, read through its DAC and ADC. A programmed chip calibrates its converters once, on training images,
then runs."""),
    new_code_cell("""train = load_dataset("digits", "train", flatten=True)
xt = train.images[:128].unsqueeze(0).expand(T, 128, 64)
chip = import_nir(path, dt=1e-4, preset="hfox_1t1r_64", mode="noisy")
print(calibrate(chip, lambda: chip(xt)).summary())
with torch.no_grad():
    on_chip = chip(x)
changed = (on_chip != reference).float().mean().item()
print(f"spikes on the chip: {int(on_chip.sum())}; {100 * changed:.1f} % of the output spike bins differ")
assert 0 < changed < 0.3"""),
    new_code_cell("""fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
for ax, s, title in ((axes[0], reference, "snnTorch = memsim ideal"), (axes[1], on_chip, "memsim on hfox_1t1r_64")):
    t, n = torch.nonzero(s[:, 0]).T
    ax.scatter(t, n, marker="|", s=80)
    ax.set(title=f"{title} (sample 0)", xlabel="time step", ylabel="output neuron")
fig.tight_layout()"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, Path(__file__).with_name("nir_import.ipynb"))
