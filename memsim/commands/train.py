"""``memsim train [CONFIG] [--set key=value ...]``: train the network a config describes, of whichever kind its
``network.kind`` names (an MSNN, :mod:`memsim.training`; an ANN, :mod:`memsim.ann`)."""
from __future__ import annotations

from ..resources import resolve_config
from .argtypes import positive_int


def register(sub) -> None:
    p = sub.add_parser("train", help="train a fully memristive SNN (BPTT through MIF neurons and crossbars) or, "
                                     "with network.kind = 'ann', a conventional network",
                       description="Train from a TOML config (default: the digits quickstart) with --set overrides. "
                                   "Writes RUN/metrics.csv, RUN/checkpoints/epoch_NNNN.pt every epoch and "
                                   "RUN/learning_curves.png at the end.")
    p.add_argument("config", nargs="?", help="TOML config file, a bundled config's name (memsim configs), or a "
                                             "run folder's RUN/config.toml (with --resume: continue that run); "
                                             "omit for the built-in defaults (digits)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.epochs=3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in output.dir (or the run folder of "
                                                          "RUN/config.toml) from its last good checkpoint; an error "
                                                          "if there is no run there")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from a checkpoint's weights (e.g. hardware-aware "
                                                         "fine-tuning of an ideal run)")
    p.add_argument("--epochs", type=positive_int, help="shortcut for --set training.epochs=N")
    p.add_argument("--output", "-o", help="shortcut for --set output.dir=DIR")
    p.add_argument("--data-dir", help="shortcut for --set data.data_dir=DIR (MNIST / Fashion-MNIST IDX files)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the full validated config and exit")
    p.set_defaults(func=run)


def _run_folder(config):
    """The run folder when ``config`` is a run's own ``RUN/config.toml`` (next to metrics.csv or checkpoints/)."""
    if config is None or config.name != "config.toml":
        return None
    folder = config.parent
    return folder if (folder / "checkpoints").is_dir() or (folder / "metrics.csv").is_file() else None


def run(args) -> int:
    from ..deploy.kinds import network_kind
    from ..training.config import load_config
    from ..training.loop import train

    overrides = list(args.overrides)
    for flag, key in ((args.epochs, "training.epochs"), (args.output, "output.dir"), (args.data_dir, "data.data_dir")):
        if flag is not None:
            overrides.append(f"{key}={flag if not isinstance(flag, str) else repr(flag)}")
    config = resolve_config(args.config) if args.config else None
    run_dir = _run_folder(config)
    if run_dir is not None and args.output is None and not any(o.strip().startswith("output.dir") for o in overrides):
        overrides.append(f"output.dir={str(run_dir)!r}")  # the run folder the config sits in, wherever it moved
    cfg = load_config(config, overrides)
    if args.print_config:
        network_kind(cfg.network.kind).check_config(cfg)
        print(cfg.to_toml())
        return 0
    result = train(cfg, resume=args.resume, init=args.init, progress=not args.no_progress)
    final = result.final
    if final:
        print(f"final: test accuracy {100 * final['test_accuracy']:.2f} % after {final['epoch']} epochs; "
              f"checkpoint {result.checkpoint}; metrics {result.run_dir / 'metrics.csv'}"
              + (f"; plot {result.plot}" if result.plot else ""))
    return 0
