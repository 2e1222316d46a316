"""NIR interop, measured in one run: an snnTorch Fashion-MNIST SNN imported into memsim through NIR.

1. Trains an snnTorch MLP [784, 256, 10] of ``Leaky`` neurons (reset to zero, the form NIR can express) on
   Fashion-MNIST for ``--epochs`` (direct input: the image drives the first layer at every step, T steps).
2. Exports it with snnTorch's own NIR export, writes the ``.nir`` file, imports it with
   :func:`memsim.interop.import_nir` (ideal hardware) and evaluates both on the full test set with the same
   readout (the most spikes): the accuracies must agree within 0.2 points (the issue's target).
3. Deploys the imported network on ``--preset`` chips (``--chips`` unseen chips, mode ``--mode``), each
   programmed once and calibrated on training images, and reports their accuracy beside it.
4. Times the import of a 1M-parameter graph (a 1000 x 1000 ``Affine`` and a LIF layer) from its file,
   against ``nir.read`` of the same file in the same run (target: import <= 2 s).
5. Imports the same graph with its LIF nodes on fitted vLIF circuits (``neurons="memristive"``), prints each fit's
   measured error and the accuracy on the first ``--memristive-samples`` test images beside the digital neurons' on
   the same images.
6. Trains memsim's digits MSNN (``configs/digits_quickstart.toml``, ``--msnn-epochs``), exports it with each MIF
   neuron as a fitted LIF (``export_nir(..., neurons="lif_approximation")``), imports it back (digital LIF) and
   compares the test accuracies (the round trip keeps the weights exactly; the neurons are the approximation).

    python benchmarks/bench_nir.py --out runs/bench_nir [--epochs 2 --steps 25 --chips 3]
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import nir
import snntorch as snn
import snntorch.functional as SF
import snntorch.utils
from snntorch.export_nir import export_to_nir

from memsim.interop import export_nir, import_nir
from memsim.interop.nir_fit import NIRFitWarning
from memsim.nn.calibration import calibrate
from memsim.training.config import load_config
from memsim.training.data import ImageDataset, load_dataset
from memsim.training.loop import build_encoder, evaluate, load_datasets, train_msnn

DT = 1e-4  # snnTorch's export step


def build_snntorch(beta: float = 0.9) -> torch.nn.Sequential:
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 256), snn.Leaky(beta=torch.full((256,), beta), threshold=torch.ones(256), **kw),
        torch.nn.Linear(256, 10), snn.Leaky(beta=torch.full((10,), beta), threshold=torch.ones(10), output=True,
                                            **kw))


def snntorch_forward(net, images: torch.Tensor, steps: int) -> torch.Tensor:
    """Output spikes [T, B, 10] for the images held at the input for ``steps`` steps."""
    snntorch.utils.reset(net)
    return torch.stack([net(images)[0] for _ in range(steps)])


def train(net, data, epochs: int, steps: int, batch: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_count_loss()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            spikes = snntorch_forward(net, data.images[idx], steps)
            loss = loss_fn(spikes, data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"  epoch {epoch + 1}/{epochs}: loss {float(loss):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def accuracy(run, data, batch: int = 500) -> float:
    correct = 0
    with torch.no_grad():
        for k in range(0, len(data), batch):
            counts = run(data.images[k:k + batch]).sum(0)
            correct += int((counts.argmax(-1) == data.labels[k:k + batch]).sum())
    return correct / len(data)


def memsim_runner(net, steps: int):
    return lambda images: net(images.unsqueeze(0).expand(steps, *images.shape))


def reseed(net, seed: int) -> None:
    """Chip ``seed``: layer k's programming and read noise from seed + k (as memsim's own deployments)."""
    layers = [m for m in net.modules() if hasattr(m, "array")]
    for k, layer in enumerate(layers):
        layer.array.reseed(seed + k)
        layer._programmed = None


def import_timing(folder: Path) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    n = 1000
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(np.array([n])),
        "fc": nir.Affine(weight=rng.standard_normal((n, n)).astype(np.float32), bias=np.zeros(n, np.float32)),
        "lif": nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n)),
        "out": nir.Output(np.array([n]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    path = folder / "one_million.nir"
    nir.write(path, graph)
    t0 = time.perf_counter()
    nir.read(path)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = import_nir(path, dt=DT)
    t_import = time.perf_counter() - t0
    return t_import, t_read, sum(p.numel() for p in net.parameters())


def head(data, n: int):
    return ImageDataset(data.images[:n], data.labels[:n], data.info, data.split)


def memristive_rows(path: Path, test_set, steps: int, samples: int) -> tuple[float, float, dict, float, float]:
    """Digital and memristive-neuron accuracy of the graph on the first ``samples`` test images, the fits' reports,
    and the seconds each evaluation took (measured in this run)."""
    subset = head(test_set, samples)
    digital = import_nir(path, dt=DT)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRFitWarning)  # printed below, with the reports
        memristive = import_nir(path, dt=DT, neurons="memristive")
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc_d = accuracy(memsim_runner(digital, steps), subset)
    t_d = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc_m = accuracy(memsim_runner(memristive, steps), subset, batch=250)
    t_m = time.perf_counter() - t0
    return acc_d, acc_m, memristive.fit_reports, t_fit, t_m / max(t_d, 1e-9)


def msnn_round_trip(out: Path, epochs: int, seed: int) -> dict:
    """memsim's digits MSNN, then exported with LIF-approximated neurons and imported back: test accuracies."""
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "digits_quickstart.toml").with_overrides(
        {"training.epochs": epochs, "training.seed": seed, "output.dir": str(out / "msnn_digits")})
    t0 = time.perf_counter()
    result = train_msnn(cfg, progress=False, log=lambda _: None)
    t_train = time.perf_counter() - t0
    net = result.network.eval()
    test = load_datasets(cfg)[1]
    acc_msnn = evaluate(net, build_encoder(cfg), test)["accuracy"]
    row = {"msnn": acc_msnn, "train_s": t_train, "samples": len(test)}
    for neurons in ("lif_approximation", "li_approximation"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NIRFitWarning)
            graph = export_nir(net, neurons=neurons, input_scale=cfg.encoding.scale)
        path = out / f"msnn_digits_{neurons}.nir"
        nir.write(path, graph)
        back = import_nir(path)
        same = all(torch.equal(back.layers[f"fc{k}"].weight, s.weight.detach()) for k, s in enumerate(net.synapses))
        row[neurons] = (accuracy(memsim_runner(back, cfg.network.time_steps), test), same)
        row["meta"] = graph.metadata
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .nir files")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--preset", default="hfox_1t1r_64")
    ap.add_argument("--mode", default="noisy")
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--calibration", type=int, default=256, help="training images per chip calibration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memristive-samples", type=int, default=1000,
                    help="test images for the memristive-neuron row (its circuits take sub-steps per time step)")
    ap.add_argument("--msnn-epochs", type=int, default=8, help="epochs of the digits MSNN of the export round trip")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    train_set, test_set = (load_dataset("fashion_mnist", s, flatten=True) for s in ("train", "test"))
    net = build_snntorch()
    print(f"training snnTorch [784, 256, 10], T = {args.steps}, {args.epochs} epochs on Fashion-MNIST")
    t_train = train(net, train_set, args.epochs, args.steps, args.batch, args.seed)
    net.eval()
    acc_snn = accuracy(lambda x: snntorch_forward(net, x, args.steps), test_set)

    graph = export_to_nir(net, torch.zeros(1, 784), ignore_dims=[0])
    path = args.out / "fashion_snntorch.nir"
    nir.write(path, graph)
    ideal = import_nir(path, dt=DT)
    acc_ideal = accuracy(memsim_runner(ideal, args.steps), test_set)

    chip_accs = []
    t_cal = t_eval = 0.0
    for chip in range(1000, 1000 + args.chips):  # seeds no training touched
        deployed = import_nir(path, dt=DT, preset=args.preset, mode=args.mode)
        reseed(deployed, chip)
        run = memsim_runner(deployed, args.steps)
        t0 = time.perf_counter()
        calibrate(deployed, lambda: run(train_set.images[:args.calibration]))
        t_cal += time.perf_counter() - t0
        t0 = time.perf_counter()
        chip_accs.append(accuracy(run, test_set))
        t_eval += time.perf_counter() - t0
    t_import, t_read, n_params = import_timing(args.out)
    acc_d, acc_m, fits, t_fit, slow = memristive_rows(path, test_set, args.steps, args.memristive_samples)
    rt = msnn_round_trip(args.out, args.msnn_epochs, args.seed)

    mean, std = float(np.mean(chip_accs)), float(np.std(chip_accs, ddof=1)) if len(chip_accs) > 1 else 0.0
    print(f"\nsnnTorch (its own forward)            {100 * acc_snn:6.2f} %   (training {t_train:.0f} s)")
    print(f"memsim, imported through NIR, ideal   {100 * acc_ideal:6.2f} %   difference "
          f"{100 * (acc_ideal - acc_snn):+.2f} points (target: within 0.2)")
    print(f"memsim on {args.chips} {args.preset} chips ({args.mode})  {100 * mean:6.2f} ± {100 * std:.2f} %   "
          f"per chip {[round(100 * a, 2) for a in chip_accs]}; calibration {t_cal / max(t_eval, 1e-9):.1%} of "
          f"the evaluation time")
    print(f"import of a {n_params / 1e6:.2f}M-parameter graph: {t_import:.2f} s "
          f"(nir.read of the same file alone: {t_read:.2f} s; target <= 2 s)")
    print(f"\nLIF nodes on fitted vlif_neuron circuits (neurons='memristive'), first {args.memristive_samples} test "
          f"images: {100 * acc_m:6.2f} % vs digital neurons on the same images {100 * acc_d:6.2f} % "
          f"(change {100 * (acc_m - acc_d):+.2f} points); fitting {t_fit:.1f} s, evaluation {slow:.0f}x the digital")
    for name, rep in fits.items():
        print(f"  fit of '{name}': {rep.summary()}")
    print(f"\ndigits MSNN ({args.msnn_epochs} epochs, {rt['train_s']:.0f} s): {100 * rt['msnn']:6.2f} % on its "
          f"{rt['samples']} test images")
    for neurons in ("lif_approximation", "li_approximation"):
        acc, same = rt[neurons]
        print(f"  exported with neurons='{neurons}', imported back: {100 * acc:6.2f} % (change "
              f"{100 * (acc - rt['msnn']):+.2f} points; weights equal after the round trip: {same})")
    meta = rt["meta"]
    print(f"  fit: {meta['fit_summary']}; LIF drive error {100 * float(meta['fit_drive_error']):.1f} %, "
          f"LI membrane error {100 * float(meta['fit_li_error']):.1f} %")


if __name__ == "__main__":
    main()
