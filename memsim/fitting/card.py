"""The fitted card: TOML written atomically with its provenance, valid range and generated ``.lib`` (a behavioural
pulse-response card: with its noise estimate, no ``.lib``); the ngspice check of the fitted card on the measured
stimulus; the overlay plot."""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write_text
from ..devices.cards import load_card, parse_card
from ..devices.netlist import subcircuit
from ..plots import _current_scale, _time_scale, pyplot
from ..pulse.cards import load_pulse_card, parse_pulse_card
from ..safetext import check_strings, one_line
from .data import DataError, Measurement
from .fit import FitResult, Problem, coordinates
from .protocol import PulseTiming, protocols, spice_observe


def nrmse(model: np.ndarray, measured: np.ndarray) -> float:
    """sqrt(mean((model - measured)^2)) / (max(measured) - min(measured))."""
    return float(np.sqrt(np.mean((model - measured) ** 2)) / (measured.max() - measured.min()))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_text(data: dict) -> str:
    """A TOML document from scalars at the top and one level of tables (deeper dicts become inline tables)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_toml_key(k)}]"] + [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def card_name(path: str | Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)
    return name if name and name[0].isalpha() else f"fit_{name}"


def verify_section(meas: Measurement, timing: PulseTiming | None) -> dict:
    """Verification stimuli inside the fit's voltage range, at the time scale of the measurement."""
    lo, hi = meas.voltage_range()
    amplitude = min(abs(lo), abs(hi))
    if meas.kind == "iv":
        g = meas.groups[0].columns["time"]
        duration = float(g[-1] - g[0])
        width = duration / 20
    else:
        width = float(np.max(meas.values("width")))
        duration = 20 * width
    f = 1.0 / duration
    return {"amplitude": amplitude, "frequencies": [f, 10 * f], "cycles": 2.0, "steps_per_period": 2000,
            "pulse": {"set_voltage": hi, "reset_voltage": lo, "width": width, "rise": width / 10, "gap": width,
                      "count": 3, "steps_per_width": 100}}


def card_data(result: FitResult, meas: Measurement, out: str | Path, *, nrmse_spice: float | None,
              timing: PulseTiming | None = None, init_name: str = "") -> dict:
    lo, hi = meas.voltage_range()
    if not (lo < 0 < hi):
        raise DataError(f"the measured voltages span [{lo:g}, {hi:g}] V; a card's verification needs both "
                        "polarities. Fix: include the RESET (negative) branch in the data")
    # file names become free text of the card: one printable line (a card may hold no control character)
    src = one_line(meas.path.name) if meas.path is not None else "data"
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    spice_txt = f", ngspice NRMSE {nrmse_spice:.3%}" if nrmse_spice is not None else ""
    what = "current" if meas.kind == "iv" else "read conductance"
    ident = ", ".join(f"{r.name} (rel. s.e. {r.rse:.1%})" if math.isfinite(r.rse) else f"{r.name} (rel. s.e. inf)"
                      for r in result.report if r.identified) or "none"
    unident = ", ".join(result.not_identified) or "none"
    return {
        "name": card_name(out),
        "family": result.family.name,
        "description": f"{result.family.title} fitted to {src} ({meas.describe()}).",
        "provenance": {
            "source": (f"fitted to {src} (sha256 {meas.sha256}) on {date}, NRMSE {result.nrmse:.3%} on {what} "
                       f"(torch){spice_txt}"),
            "data": one_line(meas.path) if meas.path is not None else "",
            "sha256": meas.sha256,
            "date": date,
            "initial_card": one_line(init_name),
            "free": ", ".join(result.free),
            "nrmse_torch": f"{result.nrmse:.6g}",
            "nrmse_spice": "" if nrmse_spice is None else f"{nrmse_spice:.6g}",
            "identified": ident,
            "not_identified": unident,
            "notes": ("NRMSE = RMS error / (max - min) of the measured " + what + ". Parameters listed under "
                      "not_identified have a relative standard error (Gauss-Newton Hessian) above the limit: their "
                      "values are the optimiser's, not determined by the data. Parameters not in 'free' are the "
                      "initial card's."),
        },
        "parameters": {k: float(v) for k, v in result.params.items()},
        "valid": {"voltage": [lo, hi]},
        "verify": verify_section(meas, timing),
    }


def pulse_card_data(result: FitResult, meas: Measurement, out: str | Path, *, init_name: str = "") -> dict:
    """A behavioural fit (:func:`memsim.fitting.behavioural.fit_pulse_family`) as the TOML content of a pulse card."""
    src = one_line(meas.path.name) if meas.path is not None else "data"
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    noise = result.extras["noise"]
    ident = ", ".join(f"{r.name} (rel. s.e. {r.rse:.1%})" if math.isfinite(r.rse) else f"{r.name} (rel. s.e. inf)"
                      for r in result.report if r.identified) or "none"
    family = result.family
    data = {
        "name": card_name(out),
        "family": family.name,
        "description": f"{family.title} fitted to {src} ({meas.describe()}).",
        "read_voltage": result.card.read_voltage,
        "provenance": {
            "source": f"fitted to {src} (sha256 {meas.sha256}) on {date}, NRMSE {result.nrmse:.3%} on read conductance",
            "data": one_line(meas.path) if meas.path is not None else "",
            "sha256": meas.sha256,
            "date": date,
            "model": one_line(family.reference),
            "initial_card": one_line(init_name) or "none (estimates from the curve)",
            "free": ", ".join(result.free),
            "nrmse_torch": f"{result.nrmse:.6g}",
            "identified": ident,
            "not_identified": ", ".join(result.not_identified) or "none",
            "noise": (f"c2c_abs and c2c_rel from the one-pulse residuals of {noise['pulses']} pulses, "
                      "var(e) = c2c_abs^2 + (c2c_rel dG)^2; they include the read noise of the measurement (an upper "
                      "bound of the programming noise). d2d_step and d2d_bounds are not fitted (0)."),
            "notes": ("NRMSE = RMS error / (max - min) of the measured read conductance; each cycle/device starts "
                      "at its own fitted initial conductance. " + " ".join(meas.notes)).strip(),
        },
        "parameters": {k: float(v) for k, v in result.params.items()},
        "noise": {"c2c_rel": float(noise["c2c_rel"]), "c2c_abs": float(noise["c2c_abs"]), "d2d_step": 0.0,
                  "d2d_bounds": 0.0},
    }
    if result.card.pulse:
        data["pulse"] = dict(result.card.pulse)
    return data


def write_pulse_card(data: dict, out: str | Path) -> Path:
    """Validate (as the library would load it), write the pulse card atomically and load it back."""
    out = Path(out)
    check_strings(data, out.stem)
    parse_pulse_card(data, source=out.stem, path=out)
    path = atomic_write_text(out, toml_text(data))
    load_pulse_card(path)
    return path


def write_card(data: dict, out: str | Path) -> tuple[Path, Path]:
    """Validate (as the library would load it), then write the card and its generated ``.lib`` next to it."""
    out = Path(out)
    check_strings(data, out.stem)  # never write a card that the library would refuse to load
    card = parse_card(data, source=out.stem, path=out)
    path = atomic_write_text(out, toml_text(data))
    card = load_card(path)
    lib = atomic_write_text(card.lib_path(), subcircuit(card))
    return path, lib


def torch_observations(result: FitResult, meas: Measurement, *, timing: PulseTiming | None = None) -> list:
    """Per group, the fitted card's torch observations on the measured stimulus."""
    problem = Problem(meas, result.card, coordinates(result.family, result.params, result.free[:1]), timing=timing)
    z = torch.tensor([[problem.coords[0].z(result.params[result.free[0]])]], dtype=torch.float64)
    with torch.no_grad():
        return [y[:, 0].numpy() for y in problem.model(z)]


def spice_check(result: FitResult, meas: Measurement, *, timing: PulseTiming | None = None) -> tuple[float, list]:
    """NRMSE of the fitted card in ngspice on the measured stimulus, and per group (torch, ngspice) arrays."""
    torch_obs = torch_observations(result, meas, timing=timing)
    spice_obs = [spice_observe(result.card, p) for p in protocols(meas, timing=timing)]
    measured = meas.values(meas.target)
    return nrmse(np.concatenate(spice_obs), measured), list(zip(torch_obs, spice_obs))


def overlay_figure(meas: Measurement, traces: list, title: str, max_groups: int = 4):
    """Measured, torch and ngspice: I-V and I(t) for sweeps, G against pulse number for pulse trains."""
    plt = pyplot()
    groups = meas.groups[:max_groups]
    if meas.kind == "iv":
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        peak = max(float(np.max(np.abs(g.columns["current"]))) for g in groups)
        scale, unit = _current_scale(peak)
        t_end = max(float(g.columns["time"][-1] - g.columns["time"][0]) for g in groups)
        tscale, tunit = _time_scale(t_end)
        drawn: list[np.ndarray] = []
        for k, (g, (ym, ys)) in enumerate(zip(groups, traces)):
            v, i, t = g.columns["voltage"], g.columns["current"], g.columns["time"] - g.columns["time"][0]
            axes[0].plot(v, i * scale, ".", ms=2.5, color="0.55", label="measured" if k == 0 else None)
            axes[1].plot(t * tscale, i * scale, ".", ms=2.5, color="0.55")
            # groups driven by the same stimulus share one model trace (the fit is joint)
            if any(len(d) == len(ym) and np.array_equal(d, ym) for d in drawn):
                continue
            drawn.append(ym)
            c = f"C{len(drawn) - 1}"
            lab = f" ({g.label})" if len(groups) > 1 and len(drawn) > 1 else ""
            axes[0].plot(v, ym * scale, "-", lw=2.6, alpha=0.75, color=c, label=f"torch fit{lab}")
            axes[1].plot(t * tscale, ym * scale, "-", lw=2.6, alpha=0.75, color=c)
            if ys is not None:
                axes[0].plot(v, ys * scale, "--", lw=1.0, color="k", label="ngspice" if len(drawn) == 1 else None)
                axes[1].plot(t * tscale, ys * scale, "--", lw=1.0, color="k")
        axes[0].set(xlabel="voltage (V)", ylabel=f"current ({unit})", title="I-V")
        axes[1].set(xlabel=f"time ({tunit})", ylabel=f"current ({unit})", title="I(t)")
        axes[0].legend(fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        axes = [ax]
        start = 0
        for k, (g, (ym, ys)) in enumerate(zip(groups, traces)):
            n = np.arange(start, start + len(ym))
            ax.plot(n, g.columns["conductance"] * 1e6, "o", ms=3, color="0.55", label="measured" if k == 0 else None)
            ax.plot(n, ym * 1e6, "-", lw=2.6, alpha=0.75, color=f"C{k}", label="torch fit" if k == 0 else None)
            if ys is not None:
                ax.plot(n, ys * 1e6, "--", color="k", lw=1.0, label="ngspice" if k == 0 else None)
            start += len(ym)
        ax.set(xlabel="pulse number", ylabel="read conductance (uS)", title="conductance after each pulse")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
