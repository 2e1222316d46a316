"""``memsim evaluate CHECKPOINT --preset P``: accuracy after deployment on a (non-ideal) crossbar preset."""
from __future__ import annotations

import json

from .argtypes import positive_int


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a trained checkpoint deployed on a crossbar preset, "
                                        "averaged over noise seeds")
    p.add_argument("checkpoint", help="a checkpoint file written by memsim train (RUN/checkpoints/epoch_NNNN.pt)")
    p.add_argument("--preset", help="crossbar preset name or .toml path, or 'ideal' (default: the run's "
                                    "hardware.eval_preset, else its network.crossbar)")
    p.add_argument("--seeds", type=positive_int, help="noise seeds to average (default: the run's hardware.eval_seeds)")
    p.add_argument("--mode", choices=("noisy", "irdrop"),
                   help="crossbar simulation: noisy (ideal wires) or irdrop (exact IR drop through each tile's operator)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate on the first N samples only (N >= 1)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="data split to evaluate (default test)")
    p.add_argument("--substeps", type=positive_int, metavar="N",
                   help="neuron integration sub-steps per time step, N >= 1 (default: as trained)")
    p.add_argument("--mapping", choices=("dense", "sparse"), default="dense",
                   help="weights on tiles: dense (whole matrices, zeros included) or sparse (only non-zero blocks, "
                        "packed; memsim.ann.deploy)")
    p.add_argument("--prune", type=float, default=0.0, metavar="F",
                   help="zero this fraction of each crossbar layer's weights by magnitude before mapping, 0 <= F < 1")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.loop import evaluate_checkpoint

    if args.mapping != "dense" or args.prune:
        from ..ann.deploy import evaluate_deployed
        from ..training.checkpoint import read_checkpoint
        from ..training.config import parse_config
        cfg = parse_config(read_checkpoint(args.checkpoint).config, source=args.checkpoint)
        r = evaluate_deployed(args.checkpoint, args.preset or cfg.hardware.eval_preset or cfg.network.crossbar,
                              mapping=args.mapping, prune=args.prune, mode=args.mode or cfg.hardware.mode,
                              seeds=args.seeds or cfg.hardware.eval_seeds, split=args.split, limit=args.limit,
                              progress=True)
    else:
        r = evaluate_checkpoint(args.checkpoint, preset=args.preset, seeds=args.seeds, mode=args.mode,
                                split=args.split, limit=args.limit, progress=True, substeps=args.substeps)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        per = ", ".join(f"{100 * a:.2f}" for a in r["per_seed"])
        print(f"{r['checkpoint']} on {r['preset']} ({r['mode']}): accuracy {100 * r['accuracy']:.2f} % "
              f"+- {100 * r['std']:.2f} over {r['seeds']} seed(s) [{per}], {r['samples']} {args.split} samples")
        if r.get("tiles"):
            print(f"{r['mapping']} mapping, prune {r['prune']:g}: {r['tiles']} tiles, utilisation "
                  f"{100 * r['utilisation']:.1f} % ({100 * r['nonzero_utilisation']:.1f} % non-zero), "
                  f"{r['zero_cells']} zero cells programmed, product error {r['output_error']:.3g}")
    return 0
