"""``memsim evaluate CHECKPOINT --preset P``: accuracy after deployment on chips of a (non-ideal) crossbar preset.

The flags make one :class:`memsim.deploy.Chip` design (preset, mode, mapping, pruning, calibration batch); its
``--seeds`` chips are programmed, calibrated and evaluated by :func:`memsim.training.evaluate_checkpoint`, the same
for every network kind."""
from __future__ import annotations

import argparse
import json
import warnings

from ..crossbar.mapping import STUCK_COMPENSATION
from ..crossbar.presets import list_presets, load_preset, preset_path
from ..errors import CardError, ParameterError
from ..nn.calibration import CalibrationReport
from ..nn.pruning import DEFAULT_M, METHODS, Pruning, check_applies
from ..schema import suggest
from .argtypes import positive_int

#: the flag behind each field of the chip's pruning (the :class:`Pruning` is built with ``where="chip.prune"``)
_PRUNE_FLAGS = {"chip.prune": "--prune", "chip.prune.fraction": "--prune", "chip.prune.method": "--prune-method",
                "chip.prune.block": "--prune-block", "chip.prune.n": "--prune-n", "chip.prune.m": "--prune-m"}


def prune_block(text: str) -> int | tuple[int, int]:
    """``--prune-block``: ``K`` (an integer >= 1) or ``OUTxIN`` (two integers >= 1, e.g. ``32x64``)."""
    parts = text.lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block size (allowed: K, an integer >= 1, for K x K "
                                         f"blocks, or OUTxIN, two integers >= 1, e.g. 32x64)")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _pruning(args) -> Pruning:
    """The pruning of the --prune* flags, checked before any data or network is loaded; errors name the flag."""
    try:
        pruning = Pruning(args.prune_method, args.prune, block=args.prune_block, n=args.prune_n, m=args.prune_m,
                          where="chip.prune")
    except ParameterError as exc:
        raise ParameterError(_PRUNE_FLAGS.get(exc.field, exc.field), exc.value, exc.allowed, exc.fix) from None
    if args.prune_method != "unstructured" and not pruning:
        needs = "--prune F or --prune-n N" if args.prune_method in ("nm", "nm_tile") else "--prune F"
        raise ParameterError("--prune", args.prune, f"a fraction in (0, 1) with --prune-method {args.prune_method}",
                             f"give {needs} (--prune-method alone prunes nothing)")
    return pruning


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a trained checkpoint deployed on a crossbar preset, "
                                        "averaged over noise seeds")
    p.add_argument("checkpoint", help="a checkpoint file written by memsim train (RUN/checkpoints/epoch_NNNN.pt), or "
                                      "a NIR graph (MODEL.nir, e.g. from snnTorch's export; needs --data)")
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
                        "packed)")
    p.add_argument("--prune", type=float, default=0.0, metavar="F",
                   help="zero this fraction of each crossbar layer's weights (blocks, filters: --prune-method) "
                        "before mapping, 0 <= F < 1")
    p.add_argument("--prune-method", choices=METHODS, default="unstructured",
                   help="what --prune zeroes (memsim.nn.pruning): unstructured (single weights by magnitude), block "
                        "(tile-aligned blocks by norm), nm (n of every m weights along each output's inputs), "
                        "nm_tile (nm with the pattern shared by a tile's outputs) or filter (whole conv filters)")
    p.add_argument("--prune-block", type=prune_block, metavar="K|OUTxIN",
                   help="block: K x K blocks or OUT x IN (outputs, inputs) blocks; nm_tile: K outputs share a "
                        "pattern; must divide the preset's tile (default: one tile)")
    p.add_argument("--prune-n", type=positive_int, metavar="N",
                   help="nm / nm_tile: keep N of every M weights (instead of --prune = 1 - N / M), 1 <= N < M")
    p.add_argument("--prune-m", type=positive_int, metavar="M",
                   help=f"nm / nm_tile: the group size M of N:M pruning, M >= 2 (default {DEFAULT_M})")
    p.add_argument("--stuck-compensation", choices=STUCK_COMPENSATION,
                   help="what programming does about cells stuck at g_max: none, or partner (the pair's other cell "
                        "is retargeted so that the pair keeps its difference; default: the run's "
                        "hardware.stuck_compensation, else the preset's mapping.stuck_compensation)")
    p.add_argument("--calibration-samples", type=positive_int, metavar="N",
                   help="the first N training images calibrate each chip's converter ranges, N >= 1 (default: "
                        "memsim.deploy.Chip's calibration_samples)")
    nir = p.add_argument_group("NIR graphs (MODEL.nir): what the graph does not state")
    nir.add_argument("--data", metavar="DATASET", help="the dataset it classifies (digits, mnist, fashion_mnist, ...)")
    nir.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are (default: the known locations)")
    nir.add_argument("--steps", type=positive_int, default=25, metavar="T", help="time steps per image (default 25)")
    nir.add_argument("--encoding", choices=("direct", "rate", "latency"), default="direct",
                     help="how an image drives the input over the steps (default direct: the intensities every step)")
    nir.add_argument("--dt", type=float, metavar="S",
                     help="the neurons' time step (default: the graph's metadata; snnTorch exports use 1e-4)")
    nir.add_argument("--neurons", choices=("digital", "memristive"), default="digital",
                     help="LIF nodes as NIR's equations (digital, default) or on vLIF circuits fitted to them "
                          "(memristive; the fit's error is printed)")
    nir.add_argument("--neuron-card", metavar="CARD",
                     help="the vLIF neuron card of --neurons memristive (default vlif_neuron)")
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


def _compensated(preset, args, run_default=None):
    """The preset (None: the ideal chip) with ``--stuck-compensation`` when given, else as ``run_default`` makes it
    (the run's ``hardware.stuck_compensation``), else as it is."""
    if preset is None:
        return None
    if args.stuck_compensation is None:
        return preset if run_default is None else run_default(preset)
    try:
        return preset.replace(stuck_compensation=args.stuck_compensation)
    except ParameterError as exc:
        raise ParameterError("--stuck-compensation", args.stuck_compensation, exc.allowed, exc.fix) from None


def _check_mode(mode: str, mode_origin: str, preset, preset_name: str, preset_origin: str) -> None:
    """irdrop on ideal wires would silently be the noisy product: refuse it, naming the preset's wires and the fix."""
    if mode != "irdrop":
        return
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


def _origins(args, cfg, preset_origin: str) -> dict[str, str]:
    """The flag (or config key) behind each field of the chip, for errors that name what the user wrote."""
    return {"chip.mapping": "--mapping", "chip.calibration_samples": "--calibration-samples", **_PRUNE_FLAGS,
            "chip.mode": "--mode" if args.mode else f"hardware.mode of {cfg.source}", "chip.preset": preset_origin}


def _chip(args, cfg, preset, pruning: Pruning):
    """The chip design of the flags."""
    from ..deploy.chip import Chip

    fields = {"mapping": args.mapping, "prune": pruning}
    if args.calibration_samples is not None:
        fields["calibration_samples"] = args.calibration_samples
    if preset is None:
        return Chip.ideal(**fields)
    return Chip(preset, mode=args.mode or cfg.hardware.mode, **fields)


def _run_nir(args) -> int:
    """``memsim evaluate MODEL.nir``: the imported network on ``--seeds`` chips of ``--preset`` (default: ideal)."""
    from ..deploy import Chip, evaluate_on_chips
    from ..interop.kind import NIRSetup, load_nir
    from ..interop.nir import import_nir
    from ..interop.nir_fit import NIRFitWarning
    from ..training.data import ImageDataset, load_dataset

    if not args.data:
        raise ParameterError("--data", None, "a dataset name", "say which dataset the graph classifies, e.g. "
                                                              "--data fashion_mnist")
    pruning = _pruning(args)
    setup = NIRSetup(dataset=args.data, steps=args.steps, encoding=args.encoding, dt=args.dt, data_dir=args.data_dir,
                     neurons=args.neurons, card=args.neuron_card)
    network = load_nir(args.checkpoint, setup)
    fits = {}
    if setup.neurons == "memristive":  # the fits' measured errors, printed once (not as a warning per chip)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NIRFitWarning)
            net = import_nir(network.state, dt=setup.dt, neurons=setup.neurons, card=setup.card)
        fits = {k: rep.summary() for k, rep in net.fit_reports.items()}
        if not args.json:
            for name, text in fits.items():
                print(f"LIF node '{name}' on {setup.card or 'vlif_neuron'} circuits: {text}")
    preset = _compensated(_check_preset(args.preset or "ideal", "--preset"), args)
    mode = args.mode or "noisy"
    _check_mode(mode, "--mode", preset, args.preset or "ideal", "--preset")
    origins = {"chip.mapping": "--mapping", "chip.mode": "--mode", **_PRUNE_FLAGS,
               "chip.calibration_samples": "--calibration-samples", "chip.preset": "--preset"}
    try:
        fields = {"mapping": args.mapping, "prune": pruning}
        if args.calibration_samples is not None:
            fields["calibration_samples"] = args.calibration_samples
        chip = Chip.ideal(**fields) if preset is None else Chip(preset, mode=mode, **fields)
        chips = chip.series(1 if preset is None else (args.seeds or 1))
    except ParameterError as exc:
        raise ParameterError(origins.get(exc.field, exc.field), exc.value, exc.allowed, exc.fix) from None
    train = load_dataset(args.data, "train", data_dir=args.data_dir, flatten=True)
    data = train if args.split == "train" else load_dataset(args.data, "test", data_dir=args.data_dir, flatten=True)
    if args.limit:
        data = ImageDataset(data.images[:args.limit], data.labels[:args.limit], data.info, data.split)
    with warnings.catch_warnings():
        if fits:
            warnings.simplefilter("ignore", NIRFitWarning)
        try:
            ev = evaluate_on_chips(network, chips, data, calibration=train, progress=True)
        except ParameterError as exc:  # e.g. filter pruning of a graph without conv layers: name the flag
            raise ParameterError(origins.get(exc.field, exc.field), exc.value, exc.allowed, exc.fix) from None
    r = {"model": str(args.checkpoint), "preset": chip.name, "mode": chip.mode, "seeds": len(chips),
         "pruning": pruning.describe(),
         "accuracy": ev.accuracy, "std": ev.std, "per_seed": ev.per_chip, "output_error": ev.output_error,
         "samples": len(data), **({"fits": fits} if fits else {})}
    if not _print_json(r, args):
        _print_accuracy(f"{r['model']} (NIR)", r, "chip(s)", args.split)
    return 0


def _print_json(r: dict, args) -> bool:
    """With --json, the whole result as JSON (and nothing else)."""
    if args.json:
        print(json.dumps(r, indent=2))
    return bool(args.json)


def _print_accuracy(what: str, r: dict, unit: str, split: str) -> None:
    per = ", ".join(f"{100 * a:.2f}" for a in r["per_seed"])
    print(f"{what} on {r['preset']} ({r['mode']}): accuracy {100 * r['accuracy']:.2f} % "
          f"+- {100 * r['std']:.2f} over {r['seeds']} {unit} [{per}], {r['samples']} {split} samples")


def run(args) -> int:
    if str(args.checkpoint).endswith(".nir"):
        return _run_nir(args)
    from ..training.config import with_compensation
    from ..training.loop import evaluate_checkpoint
    from ..training.trained import read_trained

    pruning = _pruning(args)
    ckpt, cfg = read_trained(args.checkpoint)
    try:  # filter pruning needs a conv layer: a state without 4-D weights has none (before any data is loaded)
        check_applies(pruning, [t for t in ckpt.model_state.values() if hasattr(t, "dim")])
    except ParameterError as exc:
        raise ParameterError(_PRUNE_FLAGS.get(exc.field, exc.field), exc.value, exc.allowed, exc.fix) from None
    preset_name, preset_origin = _preset_origin(args, cfg)
    preset = _compensated(_check_preset(preset_name, preset_origin), args, lambda p: with_compensation(cfg, p))
    mode = args.mode or cfg.hardware.mode
    _check_mode(mode, "--mode" if args.mode else f"hardware.mode of {cfg.source}", preset, preset_name,
                preset_origin)
    try:
        chip = _chip(args, cfg, preset, pruning)
        r = evaluate_checkpoint(args.checkpoint, chip, seeds=args.seeds or cfg.hardware.eval_seeds, split=args.split,
                                limit=args.limit, progress=True, substeps=args.substeps)
    except ParameterError as exc:  # name the flag, not the chip's field
        field = _origins(args, cfg, preset_origin).get(exc.field, exc.field)
        raise ParameterError(field, exc.value, exc.allowed, exc.fix) from None
    r["pruning"] = chip.prune.describe()
    if _print_json(r, args):
        return 0
    _print_accuracy(r["checkpoint"], r, "seed(s)", args.split)
    if r["tiles"]:
        print(f"{r['mapping']} mapping, prune {chip.prune}: {r['tiles']} tiles, utilisation "
              f"{100 * r['utilisation']:.1f} % ({100 * r['nonzero_utilisation']:.1f} % non-zero), "
              f"{r['zero_cells']} zero cells programmed, product error {r['output_error']:.3g}")
    if r["calibration"][0] is not None:
        print(f"calibration of chip {r['chip_seeds'][0]} ({r['calibration_samples']} training images, "
              f"{r['calibration_time_s']:.2f} s for {r['seeds']} chip(s)):")
        print("  " + CalibrationReport(r["calibration"][0]).summary().replace("\n", "\n  "))
    return 0
