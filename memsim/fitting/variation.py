"""Variation: fit every cycle / device of a measurement on its own and turn the spread into a crossbar preset's
``[noise]`` section.

Each group (a cycle, a device, or a device/cycle pair) is fitted with the same free parameters, warm-started at
the joint fit. From the per-group cards:

* parameter spread: mean, standard deviation and lognormal sigma (std of ln|p|) of every free parameter,
  device-to-device (over device means) and cycle-to-cycle (within each device, pooled);
* crossbar noise, in the units of :class:`memsim.crossbar.nonideal.NonIdealities`, from the ON-state read
  conductance G_on = i(v_read, x = 1) / v_read of each group:
  ``d2d`` = std over devices of ln(mean G_on of the device) (the lognormal factor of a cell), and
  ``program`` = pooled within-device std of G_on over cycles / (g_max - g_min) of the joint card (write noise as
  a fraction of the window). A file with only a ``cycle`` column gives ``program`` only; one with only devices
  (or another group column) gives ``d2d`` only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..crossbar.presets import parse_preset, preset_path
from ..devices.array import conductance_window
from ..io import atomic_write_text
from ..schema import read_toml
from .card import card_name, toml_text
from .data import DataError, Measurement
from .fit import FitResult, fit


@dataclass
class Variation:
    per_group: dict[str, dict[str, float]]             # group label -> fitted parameters
    nrmse: dict[str, float]
    spread: dict[str, dict[str, float]]                # parameter -> statistics
    g_on: dict[str, float]
    noise: dict[str, float]                            # program, d2d
    levels: tuple[str, ...] = field(default_factory=tuple)

    def table(self) -> str:
        rows = [f"{'parameter':10s} {'mean':>12s} {'std':>11s} {'CV':>7s} {'sigma ln':>9s} {'d2d CV':>7s} {'c2c CV':>7s}"]
        pct = lambda v: f"{v:7.2%}" if v is not None and math.isfinite(v) else f"{'-':>7s}"
        for k, s in self.spread.items():
            rows.append(f"{k:10s} {s['mean']:12.5g} {s['std']:11.4g} {pct(s['cv'])} {s['sigma_log']:9.4f} "
                        f"{pct(s.get('d2d_cv'))} {pct(s.get('c2c_cv'))}")
        rows.append(f"crossbar noise: program = {self.noise['program']:.4g} (of g_max - g_min), "
                    f"d2d = {self.noise['d2d']:.4g} (lognormal sigma)")
        return "\n".join(rows)


def _split(label: str, columns: tuple[str, ...]) -> tuple[str, str]:
    parts = label.split("/")
    names = dict(zip(columns, parts))
    device = names.get("device", "" if "cycle" in names else label)
    cycle = names.get("cycle", "")
    return device, cycle


def fit_variation(meas: Measurement, joint: FitResult, *, v_read: float = 0.2, starts: int = 4, max_iter: int = 40,
                  timing=None, progress: bool = False) -> Variation:
    if len(meas.groups) < 3:
        raise DataError(f"variation needs at least 3 cycles or devices (told apart by a 'cycle' or 'device' "
                        f"column); the data have {len(meas.groups)}")
    per_group, errs, g_on = {}, {}, {}
    for g in meas.groups:
        sub = Measurement(meas.kind, meas.path, meas.sha256, [g], meas.group_columns)
        r = fit(sub, joint.card, joint.free, starts=starts, max_iter=max_iter, timing=timing, span=3.0,
                progress=progress)
        per_group[g.label], errs[g.label] = r.params, r.nrmse
        g_on[g.label] = conductance_window(r.card, v_read)[1]
    labels = list(per_group)
    split = {lab: _split(lab, meas.group_columns) for lab in labels}
    devices = sorted({d for d, _ in split.values()})
    has_cycles = any(c for _, c in split.values())
    spread = {}
    for name in joint.free:
        vals = np.array([per_group[lab][name] for lab in labels])
        logs = np.log(np.abs(vals))
        s = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)), "sigma_log": float(logs.std(ddof=1))}
        s["cv"] = s["std"] / abs(s["mean"]) if s["mean"] else math.inf
        by_dev = {d: vals[[split[lab][0] == d for lab in labels]] for d in devices}
        if len(devices) > 1:
            means = np.array([v.mean() for v in by_dev.values()])
            s["d2d_cv"] = float(means.std(ddof=1) / abs(means.mean()))
        if has_cycles:
            within = [v.std(ddof=1) / abs(v.mean()) for v in by_dev.values() if len(v) > 1]
            s["c2c_cv"] = float(np.sqrt(np.mean(np.square(within)))) if within else float("nan")
        spread[name] = s
    g_min, g_max = conductance_window(joint.card, v_read)
    gon = {d: np.array([g_on[lab] for lab in labels if split[lab][0] == d]) for d in devices}
    d2d = float(np.std([np.log(v.mean()) for v in gon.values()], ddof=1)) if len(devices) > 1 else 0.0
    if has_cycles:
        within = [v.var(ddof=1) for v in gon.values() if len(v) > 1]
        program = float(math.sqrt(np.mean(within)) / (g_max - g_min)) if within else 0.0
    else:
        program = 0.0
    return Variation(per_group, errs, spread, g_on, {"program": program, "d2d": d2d},
                     tuple(meas.group_columns))


def write_preset(variation: Variation, card_path: Path, base: str, out: str | Path, v_read: float | None = None) -> Path:
    """A crossbar preset: ``base`` with the fitted card as its device and the fitted noise section."""
    data = read_toml(preset_path(base))
    out = Path(out)
    data["name"] = card_name(out)
    data["description"] = f"{data.get('description', '')} Device and noise from a fit ({Path(card_path).name})."
    data["provenance"] = (f"{data.get('provenance', '')} Device card {Path(card_path).name} and [noise] program/d2d "
                          f"fitted by 'memsim device fit --variation' (per-group fits of {len(variation.per_group)} "
                          f"{'/'.join(variation.levels) or 'group'}s).")
    data.setdefault("device", {})["card"] = str(Path(card_path).resolve())
    if v_read is not None:
        data["device"]["v_read"] = v_read
    noise = dict(data.get("noise", {}))
    noise.update({"program": round(variation.noise["program"], 6), "d2d": round(variation.noise["d2d"], 6)})
    data["noise"] = noise
    parse_preset(data, source=out.stem, path=out)  # validated before it is written
    return atomic_write_text(out, toml_text(data))


def write_variation(variation: Variation, out: str | Path, source: str) -> Path:
    """The per-group fits and the spread statistics as TOML (next to the card)."""
    clean = lambda d: {k: v for k, v in d.items() if not (isinstance(v, float) and not math.isfinite(v))}
    data = {"source": source, "levels": "/".join(variation.levels),
            "noise": dict(variation.noise),
            "spread": {k: clean(s) for k, s in variation.spread.items()},
            "groups": {lab: {**p, "nrmse": variation.nrmse[lab], "g_on": variation.g_on[lab]}
                       for lab, p in variation.per_group.items()}}
    return atomic_write_text(out, toml_text(data))
