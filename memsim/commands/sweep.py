"""``memsim sweep``: run a design-space sweep (local pool or Ray), show its progress, plot its results."""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("sweep", help="design-space sweeps: run a spec, show progress, plot results")
    s = p.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    r = s.add_parser("run", help="run a sweep spec (TOML); finished points are skipped on a rerun")
    r.add_argument("spec", help="sweep spec (.toml)")
    r.add_argument("--out", help="results folder (default: sweeps/<spec name>)")
    r.add_argument("--workers", type=int, default=2, help="parallel workers (default 2; 1 = serial, in-process)")
    r.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster")
    r.add_argument("--address", help="Ray cluster HOST:PORT or 'auto' (default: start a local Ray instance)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the number of points and an estimated run time from one timed probe point")
    r.add_argument("--yes", action="store_true", help="run a grid larger than base.max_points")
    r.add_argument("--max-points", type=int, help="run at most this many of the remaining points")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run_run)

    pl = s.add_parser("plot", help="figures of a results folder or table: accuracy vs tile size, heatmap, Pareto")
    pl.add_argument("results", help="results folder, results.csv or results.parquet")
    pl.add_argument("--out", help="folder for the PNGs (default: beside the results)")
    pl.add_argument("--heatmap", nargs=2, metavar=("X", "Y"), help="the two axes of the heatmap")
    pl.add_argument("--group", help="one accuracy-vs-tile panel per value of this column (e.g. model, mapping)")
    pl.set_defaults(func=run_plot)

    sd = s.add_parser("study", help="a whole study (TOML): train its networks where their checkpoints are absent, "
                                    "run its sweeps, write its tables and figures; resumable",
                      description="Run a design-space study: the networks it lists are trained from their configs "
                                  "into OUT/networks/ (resumed where a run stopped), its sweeps run into OUT/sweeps/ "
                                  "(finished points skipped), the tables go to OUT/results.csv and OUT/summary.md. "
                                  "Every check that can fail on bad input runs before any work.")
    sd.add_argument("spec", help="study file (.toml) or a bundled study's name (e.g. digits_dse)")
    sd.add_argument("--out", help="study folder (default: studies/<name>[_<dataset>][_quick])")
    sd.add_argument("--quick", action="store_true",
                    help="the same study at a reduced scale (its [quick] table: fewer epochs, points, images); "
                         "never mixed with full results in one folder")
    sd.add_argument("--workers", type=int, default=2, help="parallel workers (default 2; 1 = serial, in-process)")
    sd.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local process pool (default) or a Ray cluster")
    sd.add_argument("--address", help="Ray cluster HOST:PORT or 'auto' (default: start a local Ray instance)")
    sd.add_argument("--dataset", help="run the study on another dataset (e.g. cifar10): each network's variant "
                                      "[networks.NAME.datasets.DATASET] of the study")
    sd.add_argument("--data-dir", help="folder of the dataset files (data.data_dir of every network)")
    sd.add_argument("--yes", action="store_true", help="run sweeps larger than their base.max_points")
    sd.add_argument("--dry-run", action="store_true",
                    help="check the study and print what a run would do (networks to train, points per sweep)")
    sd.add_argument("--quiet", action="store_true", help="no progress bars")
    sd.set_defaults(func=run_study)

    st = s.add_parser("status", help="progress of a results folder")
    st.add_argument("dir")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)


def run_run(args) -> int:
    from pathlib import Path

    from ..sweep.runner import dry_run, run_sweep
    from ..sweep.spec import check_limit, load_spec

    spec = load_spec(args.spec)
    if args.dry_run:
        check_limit(spec, True)
        r = dry_run(spec, workers=args.workers)
        over = len(spec.points()) > spec.base.get("max_points", 2000)
        print(f"{spec.name}: {r['points']} points ({r['design']} design over a grid of {r['grid']})"
              + (" - more than base.max_points: a run needs --yes" if over else ""))
        if "probe_s" in r:
            status = "ok" if r["probe_status"] == "ok" else f"FAILED: {r['probe_error']}"
            print(f"probe point: {r['probe_s']:.1f} s ({status}); estimated run time with {r['workers']} "
                  f"worker(s): {r['estimate_s'] / 60:.1f} min")
        return 0
    out = args.out or str(Path("sweeps") / spec.name)
    r = run_sweep(spec, out, backend=args.backend, workers=args.workers, address=args.address, yes=args.yes,
                  progress=not args.quiet, max_points=args.max_points)
    print(f"{spec.name}: {r['points']} points, {r['ran']} run ({r['failed']} failed), {r['skipped']} already done; "
          f"{r['elapsed_s']:.1f} s; table {r['csv']}")
    return 1 if r["failed"] else 0


def run_study(args) -> int:
    from pathlib import Path

    from ..sweep.results import ResultsDir
    from ..sweep.study import load_study, plan_study
    from ..sweep.study import run_study as run

    study = load_study(args.spec)
    name = study.name + (f"_{args.dataset}" if args.dataset else "") + ("_quick" if args.quick else "")
    out = args.out or str(Path("studies") / name)
    plan = plan_study(study, out, quick=args.quick, data_dir=args.data_dir, yes=args.yes, backend=args.backend,
                      address=args.address, dataset=args.dataset)
    if args.dry_run:
        print(f"study {study.name} ({'quick' if args.quick else 'full'} scale) in {plan.out}")
        for n, p in plan.networks.items():
            print(f"  network {n}: {p.state} ({p.config_name} on {p.config.data.dataset}, "
                  f"{p.config.training.epochs} epochs, {p.checkpoint})")
        for entry, _ in plan.sweeps:
            spec = plan.sweep_spec(entry)
            done = len(ResultsDir(plan.sweep_dir(entry)).done())
            print(f"  sweep {entry.name}: {len(spec.points())} points ({done} done), networks {entry.networks}")
        for entry in plan.left_out:
            print(f"  sweep {entry.name}: left out (it runs on {', '.join(entry.datasets)} only)")
        for n in plan.networks_left_out:
            print(f"  network {n}: left out (only left-out sweeps use it)")
        return 0
    r = run(plan, backend=args.backend, workers=args.workers, address=args.address, yes=args.yes,
            progress=not args.quiet)
    failed = sum(s["failed"] for s in r["sweeps"].values())
    print(f"study {study.name}: {len(r['trained'])} network(s) trained, {len(r['sweeps'])} sweep(s), "
          f"{failed} failed point(s); {r['elapsed_s']:.1f} s; table {r['csv']}; summary {r['summary']}")
    return 1 if failed else 0


def run_plot(args) -> int:
    from ..sweep.plots import plot_all
    for p in plot_all(args.results, args.out, tuple(args.heatmap) if args.heatmap else None, group=args.group):
        print(p)
    return 0


def run_status(args) -> int:
    from ..sweep.results import status
    s = status(args.dir)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    mp = f", {s['mean_point_s']:.1f} s per point" if s["mean_point_s"] else ""
    print(f"{s['name']} ({s['fingerprint']}): {s['done']}/{s['points']} done, {s['failed']} failed, "
          f"{s['remaining']} remaining{mp}")
    for k, e in s["errors"][:20]:
        print(f"  {k}: {e}", file=sys.stdout)
    return 0
