"""``memsim export-spice CHECKPOINT``: the trained network as one ngspice netlist (conductances + MIF neurons)."""
from __future__ import annotations

from .argtypes import nonnegative_int, positive_int


def register(sub) -> None:
    p = sub.add_parser("export-spice", help="write a trained network as an ngspice netlist (and check it)",
                       description="Writes the network of CHECKPOINT, driven by one encoded test sample, as a "
                                   "netlist of crossbar conductances (differential pairs at virtual-ground bit "
                                   "lines) and MIF neuron subcircuits. --check N runs N test samples through "
                                   "ngspice and compares output voltages and classes with torch.")
    p.add_argument("checkpoint", help="a checkpoint file written by memsim train (RUN/checkpoints/epoch_NNNN.pt)")
    p.add_argument("-o", "--output", help="netlist file (default: CHECKPOINT.sample<K>.cir)")
    p.add_argument("--sample", type=nonnegative_int, default=0, help="test sample that drives the inputs (default 0)")
    p.add_argument("--check", type=nonnegative_int, default=0, metavar="N",
                   help="run the first N test samples in ngspice and compare with torch")
    p.add_argument("--processes", type=positive_int, default=1, help="ngspice processes for --check")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.export_spice import compare_with_spice, export_checkpoint
    from ..training.loop import build_encoder, load_datasets

    path, info = export_checkpoint(args.checkpoint, args.output, sample=args.sample)
    n_lines = path.read_text().count("\n")
    print(f"wrote {path} ({n_lines} lines; layers {info['net'].layers}, label of sample {args.sample}: "
          f"{info['label']})")
    if args.check > 0:
        cfg = info["cfg"]
        _, test = load_datasets(cfg)
        x = build_encoder(cfg)(test.images[:args.check])
        r = compare_with_spice(info["net"], x, test.labels[:args.check], processes=args.processes)
        n = r["samples"]
        print(f"ngspice vs torch reference (the exported circuit, RK4 with each layer's currents following the "
              f"previous layer within a step): max |dV| {r['max_error_V']:.3e} V = "
              f"{100 * r['max_error_fraction']:.2g} % of the {r['swing_V']:.3f} V output swing")
        print(f"ngspice vs fast twin (the network as trained: one crossbar read per time step, "
              f"{info['net'].neurons[0].substeps} neuron sub-step(s)): max |dV| "
              f"{100 * r['twin_max_error_fraction']:.2g} % of the swing")
        agree = sum(a == b for a, b in zip(r["pred_spice"], r["pred_twin"]))
        correct = {k: sum(int(p == y) for p, y in zip(r[k], r["labels"])) for k in ("pred_spice", "pred_reference",
                                                                                    "pred_twin")}
        print(f"classes: spice {r['pred_spice']} reference {r['pred_reference']} twin {r['pred_twin']} "
              f"labels {r['labels']}")
        print(f"on these {n} samples: accuracy ngspice {correct['pred_spice']}/{n}, reference "
              f"{correct['pred_reference']}/{n}, fast twin {correct['pred_twin']}/{n}; the fast twin's class equals "
              f"the exact circuit's (ngspice) on {agree}/{n}")
        return 0 if r["classes_agree"] else 1
    return 0
