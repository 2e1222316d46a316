"""``memsim device fit DATA --family F [--init CARD] [--free p1,p2] -o mydevice.toml``.

F is a device family (fitted through the torch simulation of its circuit, checked in ngspice) or a behavioural
pulse-response family (exp_saturation, linear_step, soft_bounds, power_step: fitted to pulse data, written as a
pulse card with its cycle-to-cycle noise), or ``auto`` to rank them all.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..crossbar.presets import load_preset
from ..devices.cards import load_card
from ..errors import ParameterError
from ..families import FAMILIES
from ..plots import save
from ..pulse.cards import PulseCard, load_pulse_card
from ..pulse.families import PULSE_FAMILIES
from ..schema import suggest
from .behavioural import fit_pulse_family, model_curves
from .card import (card_data, overlay_figure, pulse_card_data, spice_check, torch_observations, write_card,
                   write_pulse_card)
from .data import DataError, UnitsWarning, read_measurement
from .fit import FitError, fit
from .protocol import PulseTiming
from .pulses import check_polarities, pulse_curves, with_amplitudes
from .select import default_card, rank, suitable_families, table


def add_parser(dsub) -> None:
    p = dsub.add_parser("fit", help="fit a device card to measured I-V sweeps or pulse conductance curves",
                        description="Fit a family's parameters to measured data through the differentiable torch "
                                    "simulation, check the fitted card in ngspice, write the card, its .lib and an "
                                    "overlay plot; or fit a behavioural pulse-response family (exp_saturation, "
                                    "linear_step, soft_bounds, power_step) to an LTP/LTD curve and write a pulse card "
                                    "with its cycle-to-cycle noise. Loss: NRMSE = RMS error / (max - min) of the "
                                    "measured current (I-V) or read conductance (pulses).")
    p.add_argument("data", help="CSV (or .xlsx) with time,voltage,current or amplitude,width,conductance or "
                                "polarity,conductance columns (optional read_voltage, pulse); optional "
                                "'cycle'/'device' columns tell experiments apart")
    p.add_argument("--family", required=True, help="device or pulse-response family, or 'auto' to fit every family "
                                                   "that suits the data and rank them by AIC")
    p.add_argument("--init", help="initial card (name or path; default: the first library card of the family; "
                                  "behavioural families: estimates from the curve)")
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
    p.add_argument("--v-read", type=float, help="pulse data: read voltage in V (default: the data's read_voltage "
                                                "column, else 0.1)")
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
    out = {}
    for item in items:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise ParameterError("--bounds", item, "NAME=LO:HI in SI units", "e.g. --bounds R_on=10:1000") from None
    return out


def _family(name: str):
    """(device family or None, pulse family or None) for --family; an unknown name lists both kinds."""
    if name in PULSE_FAMILIES:
        return None, PULSE_FAMILIES[name]
    if name in FAMILIES:
        return FAMILIES[name], None
    known = [*FAMILIES, *PULSE_FAMILIES]
    raise ParameterError("--family", name, f"'auto', a device family {sorted(FAMILIES)} or a pulse-response family "
                         f"{sorted(PULSE_FAMILIES)}", suggest(name, known, "use one of the listed families"))


def _read_voltage(args, meas) -> float:
    """The read voltage of pulse data: the file's read_voltage column, else --v-read, else 0.1 V."""
    if meas.read_voltage is not None:
        if args.v_read is not None and args.v_read != meas.read_voltage:
            raise ParameterError("--v-read", args.v_read, f"the data's read_voltage {meas.read_voltage:g} V",
                                 "drop --v-read (the file states its read voltage) or correct the column")
        return meas.read_voltage
    v = 0.1 if args.v_read is None else args.v_read
    if v == 0:
        raise ParameterError("--v-read", v, "a non-zero read voltage in V", "e.g. --v-read 0.1")
    return v


def run_fit(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnitsWarning)
        meas = read_measurement(args.data, group=args.group)
    for w in caught:
        print(f"memsim: warning: {w.message}", file=sys.stderr)
    print(f"{args.data}: {meas.describe()}")
    device_family, pulse_family = (None, None) if args.family == "auto" else _family(args.family)
    # every check of the data and the options runs here, before any fitting
    if meas.kind == "iv" and pulse_family is not None:
        raise DataError(f"{args.data}: an I-V sweep; the behavioural family {pulse_family.name} fits pulse data "
                        "(polarity,conductance or amplitude,width,conductance). Fix: fit a device family")
    if meas.kind in ("iv", "pulse") and pulse_family is None:
        lo, hi = meas.voltage_range()
        if not lo < 0 < hi:  # a card's verification stimuli need both polarities
            raise DataError(f"{args.data}: the voltages span [{lo:g}, {hi:g}] V; a device card needs data of both "
                            "polarities (SET and RESET). Fix: include the other branch of the sweep or pulse train")
    if meas.kind == "polarity" and pulse_family is None:
        check_polarities(pulse_curves(meas), {"ltp", "ltd"}, "a card fitted by --family "
                         f"{args.family}")
    if args.variation and (pulse_family is not None):
        raise ParameterError("--variation", True, "a device family (the spread goes into a crossbar preset)",
                             "drop --variation; a pulse card's d2d noise is set in its [noise] table")
    if args.variation and len(meas.groups) < 3:
        raise DataError(f"{args.data}: --variation needs at least 3 cycles or devices told apart by a 'cycle' or "
                        f"'device' column (or --group); the file has {len(meas.groups)}")
    v_read = _read_voltage(args, meas) if meas.kind != "iv" else None
    timing = PulseTiming(v_read=v_read, gap=args.gap) if meas.kind != "iv" else None
    options = dict(starts=args.starts, max_iter=args.max_iter, method=args.method, span=args.span,
                   bounds=_bounds(args.bounds), substeps=args.substeps, timing=timing, rse_limit=args.rse_limit,
                   progress=not args.quiet)
    free = [s.strip() for s in args.free.split(",") if s.strip()] if args.free else None
    init = None
    if args.family == "auto":
        if free or args.init:
            print("memsim: --family auto fits each family's default free parameters from its library card; "
                  "--free/--init are ignored", file=sys.stderr)
        # --variation writes a crossbar preset around a device card: rank the device families only
        families = suitable_families(meas, behavioural=not args.variation)
        ranked = rank(meas, families, read_voltage=v_read or 0.1, **options)
        print(table(ranked))
        result = next((r for _, r in ranked if not isinstance(r, str)), None)
        if result is None:
            raise FitError("no family could be fitted")
        if not isinstance(result.card, PulseCard):
            init = default_card(result.family.name)
        print(f"best: {result.family.name}")
    elif pulse_family is not None:
        start = load_pulse_card(args.init) if args.init else None
        result = fit_pulse_family(meas, pulse_family, start, free, read_voltage=v_read, **options)
        init_name = start.name if start else ""
    else:
        family = device_family
        init = load_card(args.init) if args.init else default_card(family.name)
        if init is None:
            raise FitError(f"no library card of family {family.name} to start from; give --init CARD")
        if init.family.name != family.name:
            raise ParameterError("--init", args.init, f"a card of family {family.name}",
                                 f"'{init.name}' is a {init.family.name} card")
        result = fit(with_amplitudes(meas, init), init, free, **options)
    print(f"{result.family.name}: NRMSE {result.nrmse:.3%} (torch) after {result.iterations} iterations, "
          f"{result.starts} starts, {result.seconds:.1f} s")
    print(result.table())
    if result.not_identified:
        print(f"not identified (values are the optimiser's, not the data's): {', '.join(result.not_identified)}")
    if isinstance(result.card, PulseCard):
        return _write_pulse_fit(args, meas, result, "" if args.family == "auto" else init_name)
    meas = with_amplitudes(meas, init)  # polarity data: the stimulus the device card was fitted on
    for note in meas.notes:
        print(f"note: {note}")
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
        from .variation import fit_variation, write_preset, write_variation  # layer 3: writes a crossbar preset
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


def _write_pulse_fit(args, meas, result, init_name: str) -> int:
    """A behavioural fit: the noise estimate, the NRMSE limit, the pulse card (loaded back) and the overlay plot."""
    noise = result.extras["noise"]
    print(f"cycle-to-cycle noise from the one-pulse residuals of {noise['pulses']} pulses: c2c_abs "
          f"{noise['c2c_abs']:.4g} S, c2c_rel {noise['c2c_rel']:.4g} (includes the read noise)")
    print("no ngspice check: a behavioural pulse-response model has no circuit")
    if result.nrmse > args.max_nrmse:
        raise FitError(f"the fit did not converge to an acceptable result: best NRMSE {result.nrmse:.3%} > "
                       f"--max-nrmse {args.max_nrmse:.3%} (best parameters above); no card written. Fix: try another "
                       "family (--family auto), add --starts, or widen --span/--bounds", result)
    out = Path(args.output)
    path = write_pulse_card(pulse_card_data(result, meas, out, init_name=init_name), out)
    print(f"wrote {path}")
    traces = [(y, None) for y in model_curves(result, meas)]
    fig = overlay_figure(meas, traces, f"{path.name}: {result.family.name} fitted to {Path(args.data).name} "
                                       f"(NRMSE {result.nrmse:.2%})")
    plot = save(fig, args.plot or out.with_name(out.stem + "_fit.png"))
    print(f"wrote {plot}")
    return 0
