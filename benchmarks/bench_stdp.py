"""Supervised pair-based STDP of a one-stage memristive SNN [64, 10] on the digits, through the devices' pulses.

Trains the same network (MIF neurons, ideal crossbar, T steps of 40 us, rate-coded 0.2 V input pulses) by
supervised STDP (:class:`memsim.insitu.stdp.SupervisedSTDP`) on

* ``pulse_ideal_linear`` (1000 equal noise-free steps),
* ``pulse_exp_saturation`` (NeuroSim-style saturating LTP/LTD, with cycle-to-cycle noise and device spread),
* ``stanford_pku_hfox_10k``'s response derived from its state equation (RESET pulses of -0.8 V, 100 ns),

and by the float gradient (BPTT through the circuit, Adam, the existing MSNN training step), then prints the test
accuracies on the digits test split (359 images) against chance (10 %)::

    python benchmarks/bench_stdp.py [--epochs 6] [--batch 32] [--lr 1e-2] [--remote 1.0] [--mode all] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

import torch

from memsim.insitu import InSituSettings, load_pulse_response
from memsim.insitu.stdp import STDPRule, SupervisedSTDP
from memsim.training.data import load_digits, make_encoder
from memsim.training.loop import train_step
from memsim.training.network import MemristiveSNN

CARDS = {
    "ideal linear (pulse_ideal_linear)": (("pulse_ideal_linear",), {}),
    "exp. saturation (pulse_exp_saturation)": (("pulse_exp_saturation",), {}),
    "stanford_pku_hfox_10k derived, RESET": (("stanford_pku_hfox_10k", 1.1, -0.8, 1e-7), {"polarity": "reset"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=25, help="time steps per sample")
    ap.add_argument("--lr", type=float, default=1e-2, help="STDP learning rate (weight per pair per item)")
    ap.add_argument("--w-max", type=float, default=0.25, help="weight of one full device window")
    ap.add_argument("--remote", type=float, default=1.0, help="weight of the free run's STDP subtracted")
    ap.add_argument("--mode", default="all", choices=["all", "nearest"])
    ap.add_argument("--max-pulses", type=int, default=10)
    ap.add_argument("--teacher-every", type=int, default=1, help="a teacher pulse every this many steps")
    ap.add_argument("--teacher-current", type=float, default=5e-5, help="A per teacher pulse (and of inhibition)")
    ap.add_argument("--float-lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch order, rate code, init and devices")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings of the contenders to run (float, ideal, exp, stanford)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, test = load_digits("train"), load_digits("test")
    (xtr, ytr), (xte, yte) = train.tensors(), test.tensors()
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    enc = make_encoder("rate", args.steps, scale=0.2, gain=1.0, seed=args.seed)
    test_in = enc(xte, generator=torch.Generator().manual_seed(1234))   # one fixed test encoding for all

    def accuracy(net) -> float:
        with torch.no_grad():
            return float((net(test_in).scores.argmax(1) == yte).float().mean())

    def batches(epoch: int):
        g = torch.Generator().manual_seed(100 + 1000 * args.seed + epoch)
        perm = torch.randperm(len(xtr), generator=g)
        for k in range(0, len(xtr), args.batch):
            idx = perm[k:k + args.batch]
            yield enc(xtr[idx], generator=g), ytr[idx]

    results = {}
    wanted = [s for s in args.only.split(",") if s]
    pick = lambda name: not wanted or any(s in name for s in wanted)
    if pick("float"):
        torch.manual_seed(args.seed)
        net = MemristiveSNN([64, 10], time_steps=args.steps)
        opt = torch.optim.Adam(net.parameters(), lr=args.float_lr)
        t0 = time.perf_counter()
        for ep in range(args.epochs):
            for x, y in batches(ep):
                train_step(net, lambda v: v, x, y, opt, grad_clip=1.0)
        results["float gradient (BPTT, Adam)"] = (accuracy(net), time.perf_counter() - t0, "")
    rule = STDPRule(mode=args.mode)
    for name, (load, kw) in CARDS.items():
        if not pick(name):
            continue
        torch.manual_seed(args.seed)
        net = MemristiveSNN([64, 10], time_steps=args.steps)
        settings = InSituSettings(load_pulse_response(*load), max_pulses=args.max_pulses, seed=args.seed, **kw)
        stdp = SupervisedSTDP(net, rule, settings, w_max=args.w_max, lr=args.lr, remote=args.remote,
                              teacher_every=args.teacher_every, teacher_current=args.teacher_current,
                              inhibit_current=args.teacher_current)
        t0 = time.perf_counter()
        curve = []
        for ep in range(args.epochs):
            for x, y in batches(ep):
                stdp.step(x, y)
            curve.append(accuracy(net))
        m = stdp.metrics
        info = (f"per epoch {' '.join(f'{a:.3f}' for a in curve)}; {m.pulses.applied} pulses, "
                f"{m.pulses.clipped} cut, {m.refreshed} refreshed")
        results[f"STDP, {name}"] = (curve[-1], time.perf_counter() - t0, info)
    print(f"digits [64, 10] MSNN, {args.epochs} epochs, batch {args.batch}, T = {args.steps}, rate-coded input; "
          f"STDP mode {args.mode}, lr {args.lr:g}, w_max {args.w_max:g}, remote {args.remote:g}, "
          f"max {args.max_pulses} pulses/step, seed {args.seed}, teacher {args.teacher_current:g} A every "
          f"{args.teacher_every} steps; chance 10 %")
    for name, (acc, secs, info) in results.items():
        print(f"  {name:48s} test acc {100 * acc:5.1f} %   ({secs:5.1f} s)  {info}")


if __name__ == "__main__":
    main()
