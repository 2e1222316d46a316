"""``memsim train [CONFIG] [--set key=value ...]``: train a fully memristive SNN (see memsim.training)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train", help="train a fully memristive SNN (BPTT through MIF neurons and crossbars)",
                       description="Train from a TOML config (default: the digits quickstart) with --set overrides. "
                                   "Writes RUN/metrics.csv, RUN/checkpoints/epoch_NNNN.pt every epoch and "
                                   "RUN/learning_curves.png at the end.")
    p.add_argument("config", nargs="?", help="TOML config file (omit for the built-in defaults: digits)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.epochs=3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in output.dir from its last good checkpoint")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from a checkpoint's weights (e.g. hardware-aware "
                                                         "fine-tuning of an ideal run)")
    p.add_argument("--epochs", type=int, help="shortcut for --set training.epochs=N")
    p.add_argument("--output", "-o", help="shortcut for --set output.dir=DIR")
    p.add_argument("--data-dir", help="shortcut for --set data.data_dir=DIR (MNIST / Fashion-MNIST IDX files)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the full validated config and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..training import prepare, train

    overrides = list(args.overrides)
    for flag, key in ((args.epochs, "training.epochs"), (args.output, "output.dir"), (args.data_dir, "data.data_dir")):
        if flag is not None:
            overrides.append(f"{key}={flag if not isinstance(flag, str) else repr(flag)}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        prepare(cfg)
        print(cfg.to_toml())
        return 0
    result = train(cfg, resume=args.resume, init=args.init, progress=not args.no_progress)
    final = result.final
    if final:
        print(f"final: test accuracy {100 * final['test_accuracy']:.2f} % after {final['epoch']} epochs; "
              f"checkpoint {result.checkpoint}; metrics {result.run_dir / 'metrics.csv'}"
              + (f"; plot {result.plot}" if result.plot else ""))
    return 0
