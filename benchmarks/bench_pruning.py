"""Fashion MLP [784, 256, 10]: tiles placed dense vs sparse on 64x64 tiles (hfox_1t1r_64) for unstructured / block /
N:M pruning at 50 and 75 %, and ideal accuracy after pruning with and without 1 epoch of fine-tuning (mask held).
Exploration: the first ``--test-images`` test images only (default 2000). The fine-tuning is a plain-torch epoch of
Adam at the config's learning rate with the pruning masks held (:func:`memsim.nn.pruning.hold_masks`); the row
"unstructured 0" is the control (the same epoch without pruning).

    memsim train configs/fashion_ann_mlp.toml -o RUN --epochs 2 --set output.plot=false --no-progress
    python benchmarks/bench_pruning.py RUN/checkpoints/epoch_0002.pt

Figures: benchmarks/pruning.md.
"""
import argparse
import copy
import time

import torch
from torch.nn import functional as F

from memsim.deploy.chip import Chip
from memsim.deploy.usage import tile_usage
from memsim.ann.train import evaluate_ann
from memsim.nn.pruning import Pruning, hold_masks, prune_model_
from memsim.training.data import ImageDataset
from memsim.training.loop import load_datasets
from memsim.training.trained import load_trained

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("checkpoint", help="a trained Fashion-MNIST ANN MLP checkpoint (or its run folder)")
ap.add_argument("--test-images", type=int, default=2000)
args = ap.parse_args()
torch.set_num_threads(1)
network = load_trained(args.checkpoint)
train_set, test_set = load_datasets(network.config)
N_TEST = args.test_images
test = ImageDataset(test_set.images[:N_TEST], test_set.labels[:N_TEST], test_set.info, test_set.split)
TILE = (32, 64)  # (outputs_per_tile, rows) of a 64 x 64 differential tile: block pruning's blocks on the ideal chip

base = evaluate_ann(copy.deepcopy(network.state).eval(), test)["accuracy"]
dense0 = tile_usage(network, Chip.load("hfox_1t1r_64", mode="ideal", mapping="dense"))["tiles"]
sparse0 = tile_usage(network, Chip.load("hfox_1t1r_64", mode="ideal", mapping="sparse"))["tiles"]
print(f"unpruned: ideal accuracy {base:.4f} ({N_TEST} test images); tiles dense {dense0}, sparse {sparse0}")
print("| method | pruned | tiles dense | tiles sparse | ideal acc. pruned | ideal acc. + 1 epoch fine-tuning | "
      "pruned weights still 0 | fine-tune s |")
print("|---|---|---|---|---|---|---|---|")
for method, fracs in (("unstructured", (0.0, 0.5, 0.75)), ("block", (0.5, 0.75)), ("nm", (0.5, 0.75)),
                      ("nm_tile", (0.5, 0.75))):
    for frac in fracs:  # unstructured 0: the control (the same fine-tuning epoch without pruning)
        p = Pruning(method, frac)
        tiles = {m: tile_usage(network, Chip.load("hfox_1t1r_64", mode="ideal", mapping=m, prune=p))["tiles"]
                 for m in ("dense", "sparse")}
        ideal = Pruning(method, frac, block={"block": TILE, "nm_tile": TILE[0]}.get(method))
        chip = Chip.ideal(prune=ideal)
        acc = evaluate_ann(network.kind.deploy(network, chip).eval(), test)["accuracy"]
        # fine-tuning: the float model pruned as the chip prunes, masks held, 1 epoch of Adam at the config's lr
        model = copy.deepcopy(network.state)
        masks = prune_model_(model, ideal)
        mods = dict(model.named_modules())
        hold_masks([(mods[n].weight, m) for n, m in masks.items()])
        cfg = network.config.training
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        g = torch.Generator().manual_seed(0)
        images, labels = train_set.tensors()
        model.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(len(labels), generator=g).split(cfg.batch_size):
            opt.zero_grad()
            F.cross_entropy(model(images[idx]), labels[idx]).backward()
            opt.step()
        ft_s = time.perf_counter() - t0
        held = all(bool((mods[n].weight[m == 0] == 0).all()) for n, m in masks.items())
        # the chip prunes the fine-tuned weights again at deployment: the same mask (idempotent)
        again = prune_model_(copy.deepcopy(model), ideal)
        same = all(torch.equal(again[n], masks[n]) for n in masks)
        acc_ft = evaluate_ann(model.eval(), test)["accuracy"]
        print(f"| {method} | {p} | {tiles['dense']} | {tiles['sparse']} | {acc:.4f} | {acc_ft:.4f} | "
              f"{held and same} | {ft_s:.1f} |")
