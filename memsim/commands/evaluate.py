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


def _preset_origin(args, cfg) -> tuple[str, str]:
    """The preset to evaluate on and what named it, for errors that point at the right thing."""
    if args.preset:
        return args.preset, "--preset"
    if cfg.hardware.eval_preset:
        return cfg.hardware.eval_preset, f"hardware.eval_preset of {cfg.source}"
    return cfg.network.crossbar, f"network.crossbar of {cfg.source}"


def _check_preset(name: str, origin: str):
    """The named preset (None for 'ideal'), or an error naming ``origin`` (e.g. ``--preset``) and the closest
    preset, before any data is loaded."""
    from ..crossbar.presets import list_presets, load_preset, preset_path
    from ..errors import CardError, ParameterError
    from ..schema import suggest

    if name == "ideal":
        return None
    try:
        preset_path(name)
    except CardError:
        names = list_presets()
        raise ParameterError(origin, name, f"a crossbar preset name ({', '.join(names)}), a preset .toml file, "
                                           f"or 'ideal'",
                             suggest(name, names, "pick one") + " (memsim crossbar list shows the presets)") from None
    return load_preset(name)


def _check_mode(mode: str, mode_origin: str, preset, preset_name: str, preset_origin: str) -> None:
    """irdrop on ideal wires would silently be the noisy product: refuse it, naming the preset's wires and the fix."""
    if mode != "irdrop":
        return
    from ..errors import ParameterError
    if preset is None:
        if mode_origin == "--mode":  # a run trained with irdrop may still be evaluated on 'ideal' (exact product)
            raise ParameterError("--mode", mode, "'noisy' or no --mode with the 'ideal' preset (the exact "
                                                 "product: no wires, no noise)",
                                 f"drop --mode irdrop, or give {preset_origin} a crossbar preset with wire "
                                 f"resistance (memsim crossbar list)")
        return
    w = preset.circuit.wires
    if w.ideal:
        raise ParameterError(mode_origin, mode, "'noisy' for a preset with ideal wires (nothing for irdrop to solve)",
                             f"the preset '{preset.name}' ({preset_origin} = {preset_name!r}) has ideal wires "
                             f"(r_wordline = {w.r_wordline:g}, r_bitline = {w.r_bitline:g}, r_source = "
                             f"{w.r_source:g} Ohm), so irdrop would evaluate without IR drop. Use a preset with "
                             f"wire resistance (memsim crossbar list), or --mode noisy")


def run(args) -> int:
    from ..training.loop import evaluate_checkpoint, read_trained

    cfg = read_trained(args.checkpoint)[1]
    preset_name, preset_origin = _preset_origin(args, cfg)
    preset = _check_preset(preset_name, preset_origin)
    mode = args.mode or cfg.hardware.mode
    _check_mode(mode, "--mode" if args.mode else f"hardware.mode of {cfg.source}", preset, preset_name,
                preset_origin)
    if args.mapping != "dense" or args.prune:
        from ..ann.deploy import evaluate_deployed
        r = evaluate_deployed(args.checkpoint, preset_name, mapping=args.mapping, prune=args.prune, mode=mode,
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
