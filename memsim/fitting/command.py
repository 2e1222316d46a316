"""``memsim device fit DATA --family F [--init CARD] [--free p1,p2] -o mydevice.toml``."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(dsub) -> None:
    p = dsub.add_parser("fit", help="fit a device card to measured I-V sweeps or pulse conductance curves",
                        description="Fit a family's parameters to measured data through the differentiable torch "
                                    "simulation, check the fitted card in ngspice, write the card, its .lib and an "
                                    "overlay plot. Loss: NRMSE = RMS error / (max - min) of the measured current "
                                    "(I-V) or read conductance (pulses).")
    p.add_argument("data", help="CSV (or .xlsx) with time,voltage,current or amplitude,width,conductance columns; "
                                "optional 'cycle'/'device' columns tell experiments apart")
    p.add_argument("--family", required=True, help="model family, or 'auto' to fit every family and rank by AIC")
    p.add_argument("--init", help="initial card (name or path; default: the first library card of the family)")
    p.add_argument("--free", help="comma-separated parameters to fit (default: the family's shape parameters)")
    p.add_argument("-o", "--output", required=True, help="the fitted card (.toml); its .lib is written next to it")
    p.add_argument("--plot", help="overlay figure (default: OUTPUT with _fit.png)")
    p.add_argument("--no-spice", action="store_true", help="skip the ngspice check (the card says so)")
    p.add_argument("--starts", type=int, default=16, help="multi-start count (default 16)")
    p.add_argument("--max-iter", type=int, default=60, help="optimiser iterations (default 60)")
    p.add_argument("--method", choices=("lm", "adam"), default="lm",
                   help="lm: Levenberg-Marquardt (default); adam: Adam with backpropagated gradients")
    p.add_argument("--span", type=float, default=10.0,
                   help="search factor around the initial value for open-ended positive parameters (default 10)")
    p.add_argument("--bounds", action="append", default=[], metavar="NAME=LO:HI", help="search range of a parameter")
    p.add_argument("--substeps", type=int, default=1, help="RK4 steps per measured interval (default 1)")
    p.add_argument("--rse-limit", type=float, default=0.025,
                   help="relative standard error above which a parameter is reported as not identified (0.025)")
    p.add_argument("--group", help="column telling cycles/devices apart (default: 'cycle' and/or 'device')")
    p.add_argument("--v-read", type=float, default=0.1, help="pulse data: read voltage in V (default 0.1)")
    p.add_argument("--gap", type=float, help="pulse data: time at 0 V between a pulse and its read (s; default: width)")
    p.add_argument("--max-nrmse", type=float, default=0.05,
                   help="a fit above this NRMSE is reported and no card is written (default 0.05)")
    p.add_argument("--variation", action="store_true",
                   help="also fit each cycle/device and write the spread as a crossbar preset noise section")
    p.add_argument("--preset-base", default="hfox_0t1r_32", help="crossbar preset the variation preset starts from")
    p.add_argument("--preset-out", help="variation preset file (default: OUTPUT with _preset.toml)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_fit)


def _bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    from ..errors import ParameterError

    out = {}
    for item in items:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise ParameterError("--bounds", item, "NAME=LO:HI in SI units", "e.g. --bounds R_on=10:1000") from None
    return out


def run_fit(args) -> int:
    import warnings

    from ..devices.cards import load_card
    from ..plots import save
    from .card import card_data, overlay_figure, spice_check, torch_observations, write_card
    from .data import DataError, UnitsWarning, read_measurement
    from .fit import FitError
    from .protocol import PulseTiming
    from .select import default_card, rank, table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnitsWarning)
        meas = read_measurement(args.data, group=args.group)
    for w in caught:
        print(f"memsim: warning: {w.message}", file=sys.stderr)
    print(f"{args.data}: {meas.describe()}")
    lo, hi = meas.voltage_range()
    if not lo < 0 < hi:  # checked before fitting: a card's verification stimuli need both polarities
        raise DataError(f"{args.data}: the voltages span [{lo:g}, {hi:g}] V; a device card needs data of both "
                        "polarities (SET and RESET). Fix: include the other branch of the sweep or pulse train")
    if args.variation and len(meas.groups) < 3:
        raise DataError(f"{args.data}: --variation needs at least 3 cycles or devices told apart by a 'cycle' or "
                        f"'device' column (or --group); the file has {len(meas.groups)}")
    timing = PulseTiming(v_read=args.v_read, gap=args.gap) if meas.kind == "pulse" else None
    options = dict(starts=args.starts, max_iter=args.max_iter, method=args.method, span=args.span,
                   bounds=_bounds(args.bounds), substeps=args.substeps, timing=timing, rse_limit=args.rse_limit,
                   progress=not args.quiet)
    free = [s.strip() for s in args.free.split(",") if s.strip()] if args.free else None
    if args.family == "auto":
        if free or args.init:
            print("memsim: --family auto fits each family's default free parameters from its library card; "
                  "--free/--init are ignored", file=sys.stderr)
        ranked = rank(meas, **options)
        print(table(ranked))
        result = next((r for _, r in ranked if not isinstance(r, str)), None)
        if result is None:
            raise FitError("no family could be fitted")
        init = default_card(result.family.name)
        print(f"best: {result.family.name}")
    else:
        from ..families import get_family
        family = get_family(args.family, field="--family")
        init = load_card(args.init) if args.init else default_card(family.name)
        if init is None:
            raise FitError(f"no library card of family {family.name} to start from; give --init CARD")
        if init.family.name != family.name:
            from ..errors import ParameterError
            raise ParameterError("--init", args.init, f"a card of family {family.name}",
                                 f"'{init.name}' is a {init.family.name} card")
        from .fit import fit
        result = fit(meas, init, free, **options)
    print(f"{result.family.name}: NRMSE {result.nrmse:.3%} (torch) after {result.iterations} iterations, "
          f"{result.starts} starts, {result.seconds:.1f} s")
    print(result.table())
    if result.not_identified:
        print(f"not identified (values are the optimiser's, not the data's): {', '.join(result.not_identified)}")
    nrmse_spice, traces = None, None
    if not args.no_spice:
        nrmse_spice, traces = spice_check(result, meas, timing=timing)
        print(f"ngspice check of the fitted card on the measured stimulus: NRMSE {nrmse_spice:.3%} "
              f"(torch {result.nrmse:.3%})")
    if result.nrmse > args.max_nrmse or (nrmse_spice is not None and nrmse_spice > args.max_nrmse):
        worst = max(result.nrmse, nrmse_spice or 0.0)
        raise FitError(f"the fit did not converge to an acceptable result: best NRMSE {worst:.3%} > --max-nrmse "
                       f"{args.max_nrmse:.3%} (best parameters above); no card written. Fix: free other parameters, "
                       "widen --span/--bounds, add --starts, or try another family (--family auto)", result)
    out = Path(args.output)
    data = card_data(result, meas, out, nrmse_spice=nrmse_spice, timing=timing, init_name=init.name)
    path, lib = write_card(data, out)
    print(f"wrote {path} and {lib}")
    if traces is None:  # --no-spice: measured and torch only
        traces = [(y, None) for y in torch_observations(result, meas, timing=timing)]
    spice_txt = f", ngspice {nrmse_spice:.2%}" if nrmse_spice is not None else ""
    fig = overlay_figure(meas, traces, f"{path.name}: {result.family.name} fitted to {Path(args.data).name} "
                                       f"(NRMSE torch {result.nrmse:.2%}{spice_txt})")
    plot = save(fig, args.plot or out.with_name(out.stem + "_fit.png"))
    print(f"wrote {plot}")
    if args.variation:
        from .variation import fit_variation, write_preset, write_variation
        from ..crossbar.presets import load_preset
        v_read = load_preset(args.preset_base).v_read
        lo, hi = meas.voltage_range()
        if not lo < v_read < hi:  # read inside the fitted range, where the card is valid
            v_read = 0.5 * min(abs(lo), hi) * (1 if v_read > 0 else -1)
        var = fit_variation(meas, result, v_read=v_read, timing=timing, progress=not args.quiet)
        print(var.table())
        preset = write_preset(var, path, args.preset_base, args.preset_out or out.with_name(out.stem + "_preset.toml"),
                              v_read=v_read)
        print(f"wrote {preset}")
        table_path = write_variation(var, out.with_name(out.stem + "_variation.toml"),
                                     f"per-group fits of {Path(args.data).name} (sha256 {meas.sha256})")
        print(f"wrote {table_path}")
    return 0
