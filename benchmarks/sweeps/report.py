"""The tables and figures of benchmarks/sweeps.md from the study benchmarks/sweeps/study.toml (issue 19, item 5).

    python benchmarks/sweeps/report.py [--study studies/fashion_dse] [--out benchmarks/sweeps] [--tables FILE]

--study: the output folder of `memsim sweep study benchmarks/sweeps/study.toml` (its results.csv, study.json and
networks/); the figures go to --out, the markdown tables to stdout (and to --tables FILE when given). A quick-scale
folder (`--quick`) renders too, every table and figure marked "QUICK SCALE: a smoke test, not results".

One table per question of the study (each sweep a full grid; a cell is one point: the mean over its chips, +- the
chips' standard deviation):
  1. tile size against accuracy (tile_noise) and against cost (tiles, utilisation, energy, latency, area)
  2. SNN against ANN: the MSNN against the MLP of the same shape (and the conv MSNN against the VGG, when run)
  3. dense against sparse mapping under noise, per pruning method and fraction (mapping_unpruned, mapping_pruned),
     and with the stuck cells' partners retargeted (stuck_compensation, paired with mapping_unpruned's points)
  4. ADC: bits x calibrated / fixed range x tile size (adc)
  5. wire resistance with the exact IR-drop solve (wires)
  6. deployed as trained against fine-tuned (finetune_*, against the same points of tile_noise)
  7. the DSE paper's findings side by side (their finding, sourced; ours, filled in after the run)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from memsim.io import atomic_write_text  # noqa: E402
from memsim.plots import pyplot, save  # noqa: E402
from memsim.sweep.plots import label, pareto_front, plot_pareto  # noqa: E402

LABELS = {"msnn": "MSNN", "msnn_vgg": "conv MSNN", "mlp": "MLP", "vgg": "VGG", "vgg_dw": "VGG-dw"}
ORDER = ["msnn", "mlp", "msnn_vgg", "vgg", "vgg_dw"]
#: SNN / ANN pairs of the same shape
PAIRS = [("msnn", "mlp"), ("msnn_vgg", "vgg")]
METHODS = {"none": "unpruned", "unstructured": "unstructured", "block": "block (one tile)",
           "nm_tile": "N:M (tile-shared, m = 4)", "nm": "N:M (per output, m = 4)"}
ERRBAR = "error bars: +-1 s.d. over the {chips} chips of each point"
#: the DSE paper (Lammie et al., ISCAS 2022, pp. 1107-1111, doi:10.1109/ISCAS48785.2022.9937207, arXiv:2201.06703):
#: only what its abstract states (the full text was not available to check more)
DSE = [
    ("tile size against accuracy and cost",
     "\"a case study quantifying and formalizing the trade-offs of typical non-idealities introduced into 1T1R tiled "
     "memristive architectures and the size of modular crossbar tiles using the CIFAR-10 dataset\" (abstract; the "
     "direction of the trade-off is not stated there)", "tables 1, 5"),
    ("dense against sparse under noise",
     "sparse connectivity \"promotes less power consumption\", but \"its performance on tiled RRAM arrays may be more "
     "susceptible to noise due to under-parameterization, when compared to dense mapping schemes\" (abstract)",
     "table 3"),
    ("SNN against ANN", "not studied (the abstract names deep-learning networks only)", "table 2"),
    ("ADC calibrated against fixed", "not stated in the abstract", "table 4"),
]


def md(df: pd.DataFrame, floatfmt="{:.2f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(
            ("-" if v != v else floatfmt.format(v)) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def cell(mean: float, std: float) -> str:
    """``mean +- std`` in %, or - for a cell the grid has no point in (quick scale)."""
    if mean != mean:
        return "-"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std == std else f"{100 * mean:.1f}"


def grid(d: pd.DataFrame, rows: str, cols: str, rows_fmt="{:g}", cols_fmt="{:g}", order=None) -> pd.DataFrame:
    """A table rows x cols of ``mean +- chips' s.d.`` (one point per cell in a full grid; the mean where several);
    ``order``: the rows' sort key (default: numbers, then text)."""
    g = d.groupby([rows, cols]).agg(m=("accuracy", "mean"), s=("accuracy_std", "mean")).reset_index()
    rv = sorted(d[rows].dropna().unique(), key=order or _sort_key)
    cv = sorted(d[cols].dropna().unique(), key=_sort_key)
    out = []
    for r in rv:
        row = {rows: _fmt(r, rows_fmt)}
        for c in cv:
            x = g[(g[rows] == r) & (g[cols] == c)]
            row[f"{cols} {_fmt(c, cols_fmt)}"] = cell(float(x["m"].iloc[0]), float(x["s"].iloc[0])) if len(x) else "-"
        out.append(row)
    return pd.DataFrame(out)


def _sort_key(v):
    return (0, float(v)) if isinstance(v, (int, float, np.number)) else (1, str(v))


def _fmt(v, f):
    return f.format(v) if isinstance(v, (int, float, np.number)) else str(v)


def load(study: Path) -> tuple[pd.DataFrame, dict, dict]:
    meta_path = study / "study.json"
    if not meta_path.is_file() or not (study / "results.csv").is_file():
        raise SystemExit(f"report.py: {study} is not a finished study folder (no study.json / results.csv). Fix: give "
                         f"--study, the --out folder of memsim sweep study benchmarks/sweeps/study.toml")
    meta = json.loads(meta_path.read_text())
    df = pd.read_csv(study / "results.csv")
    if len(df) == 0:
        raise SystemExit(f"report.py: {study}/results.csv holds no point yet")
    # the conv MSNN's points of tile_noise's grid are a sweep of their own (Fashion-MNIST only): one table with them
    df["sweep"] = df["sweep"].replace({"tile_noise_conv_msnn": "tile_noise"})
    if "pruning.method" not in df.columns:
        df["pruning.method"] = np.nan
    df["method"] = np.where(df["prune"] > 0, df["pruning.method"].fillna("unstructured"), "none")
    if "adc.calibration" not in df.columns:
        df["adc.calibration"] = np.nan
    df["adc.calibration"] = df["adc.calibration"].fillna("percentile")
    ideal = {}
    for n in meta.get("networks", {}):
        m = study / "networks" / n / "metrics.csv"
        if m.is_file():
            rows = pd.read_csv(m)
            if "test_accuracy" in rows.columns and len(rows):
                ideal[n] = float(rows["test_accuracy"].iloc[-1])
    return df, meta, ideal


def nets(d: pd.DataFrame) -> list[str]:
    have = set(d["network"].dropna())
    return [n for n in ORDER if n in have] + sorted(have - set(ORDER))


def name(n: str) -> str:
    return LABELS.get(n, n)


# ---------------------------------------------------------------------------------------------------- figures

def errbar(d: pd.DataFrame) -> str:
    return ERRBAR.format(chips=int(d["chips"].max()) if "chips" in d and len(d) else "")


def accuracy_line(ax, points: pd.DataFrame, x: str, *, at=None, **style):
    """One errorbar line: the points' mean accuracy (%) against axis ``x`` (its values mapped by ``at``, e.g. to
    evenly spaced positions or to percent), error bars the mean standard deviation over chips."""
    m = points.groupby(x).agg(a=("accuracy", "mean"), s=("accuracy_std", "mean")).reset_index()
    xs = m[x] if at is None else [at(v) for v in m[x]]
    ax.errorbar(xs, 100 * m["a"], yerr=100 * m["s"].fillna(0), **style)


CYCLE = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def colours(values) -> dict:
    """One colour per value, the same in every panel of a figure."""
    return dict(zip(sorted(set(values), key=_sort_key), CYCLE * 4))


def legend_all(fig, axes, title: str) -> None:
    """One legend for the whole figure: every line of every panel, each label once (panels may differ in lines)."""
    seen = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), fontsize=7, title=title, title_fontsize=7, loc="center left",
               bbox_to_anchor=(1.0, 0.5))


def tiles_of(d: pd.DataFrame) -> str:
    """The tile size(s) of ``d``: ``32x32`` (or ``32x32 / 64x64``)."""
    return " / ".join(f"{int(t)}x{int(t)}" for t in sorted(d["tile.size"].dropna().unique()))


def plain_log(ax, axis: str = "x") -> None:
    """A log axis (the values span a decade or more) with plain-number tick labels (2, 5, 10, 20), not powers of 10."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def fig_tile(d: pd.DataFrame, path: Path, note: str) -> Path:
    """Accuracy against tile size (equally spaced: 32-256 is less than a decade), one line per noise level, one panel
    per network."""
    plt = pyplot()
    ns = nets(d)
    fig, axes = plt.subplots(1, len(ns), figsize=(3.4 * len(ns), 3.4), squeeze=False, sharey=True)
    tiles = sorted(d["tile.size"].dropna().unique())
    pos = {t: i for i, t in enumerate(tiles)}
    col = colours(d["noise.program"].dropna())
    for ax, n in zip(axes[0], ns):
        dn = d[d["network"] == n]
        for lv, dl in dn.groupby("noise.program"):
            accuracy_line(ax, dl, "tile.size", at=pos.get, marker="o", capsize=3, color=col[lv],
                          label=f"{100 * lv:g} %")
        ax.set_xticks(range(len(tiles)), [f"{t:g}" for t in tiles])
        ax.set_xlabel(label("tile.size"))
        ax.set_title(name(n))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test accuracy (%), mean over {int(d['chips'].max())} chips")
    legend_all(fig, axes, "programming noise\n(% of G window)")
    fig.suptitle(f"Accuracy vs tile size, 8-bit calibrated ADC, ideal wires; {errbar(d)}{note}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def fig_cost(d: pd.DataFrame, path: Path, note: str) -> Path:
    """Tiles, energy and area per inference against tile size, one line per network (noise-free points: the cost
    model does not depend on the noise)."""
    plt = pyplot()
    d0 = d[d["noise.program"] == d["noise.program"].min()]
    tiles = sorted(d0["tile.size"].dropna().unique())
    pos = {t: i for i, t in enumerate(tiles)}
    cols = [("tiles", 1, "crossbar tiles placed"), ("energy", 1e9, "energy per inference (nJ)"),
            ("area", 1e6, "array + periphery area (mm²)")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    col = colours(d0["network"].dropna())
    for ax, (c, k, lab) in zip(axes, cols):
        for n in nets(d0):
            m = d0[d0["network"] == n].groupby("tile.size")[c].mean()
            ax.plot([pos[t] for t in m.index], k * m.values, marker="o", color=col[n], label=name(n))
        v = k * d0[c].replace(0, np.nan).dropna()
        if len(v) and v.max() >= 10 * v.min():  # a log axis only over a decade or more
            plain_log(ax, "y")
        ax.set_xticks(range(len(tiles)), [f"{t:g}" for t in tiles])
        ax.set_xlabel(label("tile.size"))
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    legend_all(fig, axes, "network")
    fig.suptitle(f"Cost per inference vs tile size (cost model, dense mapping, 8-bit ADC; deterministic: no error "
                 f"bars){note}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def fig_mapping(d: pd.DataFrame, path: Path, note: str) -> Path:
    """Accuracy against programming noise, dense (solid) and sparse (dashed), one panel per network and pruning
    method, one colour per pruned fraction."""
    plt = pyplot()
    ns = nets(d)
    methods = [m for m in METHODS if m != "none" and m in set(d["method"])]
    fig, axes = plt.subplots(len(ns), max(len(methods), 1), figsize=(3.3 * max(len(methods), 1), 2.9 * len(ns)),
                             squeeze=False, sharey=True)
    unpruned = d[d["method"] == "none"]
    for i, n in enumerate(ns):
        for j, meth in enumerate(methods):
            ax = axes[i][j]
            sub = pd.concat([unpruned[unpruned["network"] == n], d[(d["network"] == n) & (d["method"] == meth)]])
            for (frac, mp), dl in sub.groupby(["prune", "mapping"]):
                accuracy_line(ax, dl, "noise.program", at=lambda v: 100 * v, capsize=2,
                              marker="o" if mp == "dense" else "s", ls="-" if mp == "dense" else "--",
                              color={0.0: "k", 0.5: "tab:blue", 0.75: "tab:red"}.get(round(frac, 2), None),
                              label=f"{mp}, {100 * frac:g} % pruned")
            ax.set_title(f"{name(n)}: {METHODS[meth]}", fontsize=9)
            ax.set_xticks([100 * v for v in sorted(d["noise.program"].dropna().unique())])
            ax.set_xlabel("programming noise (% of G window)")
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("test accuracy (%)")
    legend_all(fig, axes, "mapping, pruned share")
    fig.suptitle(f"Dense (solid) vs sparse (dashed) mapping, {tiles_of(d)} tiles, no retraining after pruning; "
                 f"{errbar(d)}{note}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def fig_adc(d: pd.DataFrame, path: Path, note: str) -> Path:
    """Accuracy against ADC bits, calibrated (solid) and fixed (dashed) range, one line per tile size."""
    plt = pyplot()
    ns = nets(d)
    fig, axes = plt.subplots(1, len(ns), figsize=(3.4 * len(ns), 3.4), squeeze=False, sharey=True)
    col = colours(d["tile.size"].dropna())
    for ax, n in zip(axes[0], ns):
        for (cal, t), dl in d[d["network"] == n].groupby(["adc.calibration", "tile.size"]):
            accuracy_line(ax, dl, "adc.bits", capsize=2, color=col[t],
                          ls="-" if cal == "percentile" else "--", marker="o" if cal == "percentile" else "x",
                          label=f"{t:g}, {'calibrated' if cal == 'percentile' else 'fixed'}")
        ax.set_xticks(sorted(d["adc.bits"].dropna().unique()))
        ax.set_xlabel(label("adc.bits"))
        ax.set_title(name(n))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    legend_all(fig, axes, "tile size (cells), ADC range")
    fig.suptitle(f"ADC bits: calibrated (99th percentile, solid) vs fixed range (dashed), 2.5 % programming noise; "
                 f"{errbar(d)}{note}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def fig_wires(d: pd.DataFrame, path: Path, note: str) -> Path:
    """Accuracy against wire resistance (exact IR drop), one line per tile size, one panel per network."""
    plt = pyplot()
    ns = nets(d)
    fig, axes = plt.subplots(1, len(ns), figsize=(3.6 * len(ns), 3.4), squeeze=False, sharey=True)
    col = colours(d["tile.size"].dropna())
    for ax, n in zip(axes[0], ns):
        for t, dl in d[d["network"] == n].groupby("tile.size"):
            accuracy_line(ax, dl, "wires.r", capsize=2, marker="o", color=col[t], label=f"{t:g}")
        r = d["wires.r"].dropna()
        if len(r) and r.max() >= 10 * r.min():  # 0.1-2.5 Ohm: 25x, a log axis
            ax.set_xscale("log")
            ax.set_xticks(sorted(r.unique()), [f"{v:g}" for v in sorted(r.unique())])
            ax.minorticks_off()
        ax.set_xlabel(label("wires.r"))
        ax.set_title(name(n))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    legend_all(fig, axes, label("tile.size"))
    fig.suptitle(f"Wire resistance with the exact IR-drop solve, 2.5 % programming noise, 8-bit ADC; {errbar(d)}{note}",
                 fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def fig_finetune(pairs: pd.DataFrame, path: Path, note: str) -> Path:
    """As trained against fine-tuned, one bar pair per network x tile x noise."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(pairs) + 1), 3.4))
    x = np.arange(len(pairs))
    for off, col, lab in ((-0.2, "trained", "as trained"), (0.2, "finetuned", "fine-tuned (1 epoch)")):
        ax.bar(x + off, 100 * pairs[col], width=0.4, yerr=100 * pairs[col + "_std"].fillna(0), capsize=2, label=lab)
    ax.set_xticks(x, [f"{name(r.network)}\n{r.tile:g}, {100 * r.noise:g} %" for r in pairs.itertuples()], fontsize=7)
    ax.set_xlabel("network, tile size (cells), programming noise (% of G window)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title(f"Deployed as trained vs fine-tuned per point; {errbar(pairs)}{note}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------- tables

def finetune_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each fine-tuned point beside the tile_noise point with the same network, tile, noise and ADC bits."""
    rows = []
    base = df[df["sweep"] == "tile_noise"]
    for _, r in df[df["sweep"].str.startswith("finetune_")].iterrows():
        b = base[(base["network"] == r["network"]) & (base["tile.size"] == r["tile.size"])
                 & (base["noise.program"] == r["noise.program"]) & (base["adc.bits"] == r["adc.bits"])]
        rows.append({"network": r["network"], "tile": r["tile.size"], "noise": r["noise.program"],
                     "trained": float(b["accuracy"].mean()) if len(b) else np.nan,
                     "trained_std": float(b["accuracy_std"].mean()) if len(b) else np.nan,
                     "finetuned": r["accuracy"], "finetuned_std": r["accuracy_std"], "chips": r["chips"]})
    out = pd.DataFrame(rows)
    return out.sort_values(["network", "tile", "noise"], ignore_index=True) if len(out) else out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", default="studies/fashion_dse", help="the study's output folder")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="folder of the figures")
    ap.add_argument("--tables", help="also write the markdown tables to this file")
    a = ap.parse_args(argv)
    study, out = Path(a.study), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df, meta, ideal = load(study)
    quick = meta.get("scale") == "quick"
    note = "\nQUICK SCALE: a smoke test, not results" if quick else ""
    ok = df[df["status"] == "ok"].copy()
    lines = []
    p = lines.append
    if quick:
        p("> **QUICK SCALE** (`--quick`): fewer epochs, points, chips and test images: a smoke test of the pipeline, "
          "not results.\n")
    sizes = ", ".join(f"{s} {n}" for s, n in df.groupby("sweep", sort=False).size().items())
    p(f"{len(df)} points ({len(ok)} ok) in {df['sweep'].nunique()} sweeps ({sizes}); "
      f"{int(ok['samples'].max()) if len(ok) else 0} test images and {int(ok['chips'].max()) if len(ok) else 0} chips "
      f"per point. A cell: mean accuracy over the chips ± their standard deviation (%).\n")
    p("### Networks (ideal test accuracy after training)\n")
    p(md(pd.DataFrame([{"network": name(n), "config": v.get("config"), "ideal accuracy (%)":
                        100 * ideal[n] if n in ideal else np.nan} for n, v in meta.get("networks", {}).items()])))
    figures = []

    tn = ok[ok["sweep"] == "tile_noise"]
    if len(tn):
        p("\n### 1. Tile size: accuracy (%) by programming noise and tile size (8-bit calibrated ADC, dense)\n")
        for n in nets(tn):
            p(f"**{name(n)}**\n\n" + md(grid(tn[tn["network"] == n], "noise.program", "tile.size")) + "\n")
        p("Cost per inference by tile size (cost model; the same at every noise level):\n")
        c = tn[tn["noise.program"] == tn["noise.program"].min()].groupby(["network", "tile.size"]).agg(
            tiles=("tiles", "mean"), utilisation=("utilisation", "mean"),
            energy_nJ=("energy", lambda x: 1e9 * x.mean()), latency_us=("latency", lambda x: 1e6 * x.mean()),
            area_mm2=("area", lambda x: 1e6 * x.mean())).reset_index()
        c["network"] = c["network"].map(name)
        p(md(c, "{:.3g}"))
        figures += [fig_tile(tn, out / "accuracy_vs_tile.png", note), fig_cost(tn, out / "cost_vs_tile.png", note)]

        p("\n### 2. SNN vs ANN of the same shape (tile_noise): accuracy difference SNN - ANN (points)\n")
        for snn, ann in PAIRS:
            s, t = tn[tn["network"] == snn], tn[tn["network"] == ann]
            if not (len(s) and len(t)):
                why = "not in this study" if snn not in meta.get("networks", {}) else "no points"
                p(f"({name(snn)} vs {name(ann)}: {why})\n")
                continue
            j = s.merge(t, on=["tile.size", "noise.program"], suffixes=("_s", "_a"))
            if not len(j):
                p(f"({name(snn)} vs {name(ann)}: no point of the one at the other's tile and noise at this scale)\n")
                continue
            j["diff"] = [f"{100 * (x - y):+.1f} ± {100 * np.hypot(sx, sy):.1f}" for x, y, sx, sy in
                         zip(j["accuracy_s"], j["accuracy_a"], j["accuracy_std_s"], j["accuracy_std_a"])]
            pv = j.pivot(index="noise.program", columns="tile.size", values="diff")
            pv.columns = [f"tile {c:g}" for c in pv.columns]
            p(f"**{name(snn)} - {name(ann)}** (± the two spreads in quadrature)\n\n" + md(pv.reset_index(), "{:g}")
              + "\n")
            e = j.groupby("tile.size").agg(es=("energy_s", "mean"), ea=("energy_a", "mean"),
                                           ls=("latency_s", "mean"), la=("latency_a", "mean")).reset_index()
            e = pd.DataFrame({"tile.size": e["tile.size"], "energy SNN / ANN": e["es"] / e["ea"],
                              "latency SNN / ANN": e["ls"] / e["la"]})
            p("Cost ratios SNN / ANN:\n\n" + md(e, "{:.3g}") + "\n")

    mp = ok[ok["sweep"].isin(["mapping_unpruned", "mapping_pruned"])]
    if len(mp):
        p(f"\n### 3. Dense vs sparse mapping under programming noise ({tiles_of(mp)} tiles, 8-bit ADC, no "
          f"retraining)\n")
        for n in nets(mp):
            dn = mp[mp["network"] == n].copy()
            dn["pruning"] = [f"{METHODS[m]}, {100 * f:g} %" if m != "none" else "unpruned"
                             for m, f in zip(dn["method"], dn["prune"])]
            dn["row"] = dn["pruning"] + ", " + dn["mapping"]
            rank = {r: (list(METHODS).index(m), f, mp) for r, m, f, mp in
                    zip(dn["row"], dn["method"], dn["prune"], dn["mapping"])}
            p(f"**{name(n)}**: accuracy (%) by pruning, mapping and programming noise\n\n"
              + md(grid(dn, "row", "noise.program", order=rank.get)) + "\n")
            dn["rank"] = dn["row"].map(rank)
            t = dn.sort_values("rank").groupby(["pruning", "mapping"], sort=False).agg(
                tiles=("tiles", "mean"), utilisation=("utilisation", "mean"),
                energy_nJ=("energy", lambda x: 1e9 * x.mean())).reset_index()
            lo, hi = dn["noise.program"].min(), dn["noise.program"].max()
            drop = dn.groupby(["pruning", "mapping", "noise.program"])["accuracy"].mean().unstack("noise.program")
            t["loss 0 -> max noise (points)"] = [100 * (drop.loc[(r.pruning, r.mapping), lo]
                                                       - drop.loc[(r.pruning, r.mapping), hi]) for r in t.itertuples()]
            p(f"Tiles, utilisation, energy and noise sensitivity (accuracy at {100 * lo:g} % minus at {100 * hi:g} % "
              f"programming noise):\n\n" + md(t, "{:.3g}") + "\n")
        figures.append(fig_mapping(mp, out / "mapping_dense_sparse.png", note))

    sc = ok[ok["sweep"] == "stuck_compensation"]
    un = ok[ok["sweep"] == "mapping_unpruned"]
    if len(sc) and len(un):
        p(f"\n### 3b. Stuck cells' partners retargeted (`mapping.stuck_compensation = \"partner\"`): accuracy (%) "
          f"by mapping and programming noise, {tiles_of(sc)} tiles, the same chips as mapping_unpruned\n")
        for n in nets(sc):
            both = pd.concat([un[un["network"] == n].assign(compensation="none"),
                              sc[sc["network"] == n].assign(compensation="partner")])
            both["row"] = both["mapping"] + ", " + both["compensation"]
            p(f"**{name(n)}**\n\n" + md(grid(both, "row", "noise.program")) + "\n")

    adc = ok[ok["sweep"].isin(["adc", "adc_cnn"])]
    if len(adc):
        p("\n### 4. ADC: accuracy (%) by bits x converter range x tile size (2.5 % programming noise; the CNNs on "
          "32- and 64-row tiles only)\n")
        for n in nets(adc):
            dn = adc[adc["network"] == n].copy()
            dn["ADC"] = [f"{int(b)} bit, {'calibrated' if c == 'percentile' else 'fixed'}"
                         for b, c in zip(dn["adc.bits"], dn["adc.calibration"])]
            p(f"**{name(n)}**\n\n" + md(grid(dn, "ADC", "tile.size")) + "\n")
        figures.append(fig_adc(adc, out / "adc_calibrated_fixed.png", note))

    w = ok[ok["sweep"] == "wires"]
    if len(w):
        p("\n### 5. Wire resistance with the exact IR-drop solve: accuracy (%) (2.5 % programming noise, 8-bit ADC)\n")
        for n in nets(w):
            dn = w[w["network"] == n]
            pe = dn.pivot_table(index="wires.r", columns="tile.size", values="output_error", aggfunc="mean")
            pe.columns = [f"tile {c:g}" for c in pe.columns]
            p(f"**{name(n)}**\n\n" + md(grid(dn, "wires.r", "tile.size")) + "\n\nOutput error (relative RMS of the "
              f"crossbar product):\n\n" + md(pe.reset_index(), "{:.3f}") + "\n")
        figures.append(fig_wires(w, out / "wires_irdrop.png", note))

    ft = finetune_pairs(ok)
    if len(ft):
        p("\n### 6. Deployed as trained vs fine-tuned per point (one hardware-aware epoch; 8-bit ADC, noisy mode)\n")
        t = pd.DataFrame({"network": ft["network"].map(name), "tile.size": [f"{v:g}" for v in ft["tile"]],
                          "programming noise (%)": [f"{100 * v:g}" for v in ft["noise"]],
                          "as trained (%)": [cell(m, s) for m, s in zip(ft["trained"], ft["trained_std"])],
                          "fine-tuned (%)": [cell(m, s) for m, s in zip(ft["finetuned"], ft["finetuned_std"])],
                          "gain (points)": 100 * (ft["finetuned"] - ft["trained"])})
        p(md(t, "{:.1f}"))
        figures.append(fig_finetune(ft, out / "finetune.png", note))

    main_runs = ok[ok["sweep"].isin(["tile_noise", "adc", "adc_cnn"])].copy()
    if len(main_runs) and (main_runs["energy"].fillna(0) > 0).any():
        main_runs["network"] = main_runs["network"].map(name)
        figures.append(plot_pareto(main_runs, out / "pareto_energy.png", color="network"))
        front = pareto_front(main_runs[main_runs["energy"] > 0])
        p("\n### Pareto front (accuracy vs energy per inference; tile_noise and adc points)\n")
        cols = [c for c in ("network", "tile.size", "noise.program", "adc.bits", "adc.calibration") if c in front]
        p(md(front[cols + ["accuracy", "energy"]].assign(accuracy=lambda x: 100 * x["accuracy"],
                                                          energy=lambda x: 1e9 * x["energy"])
             .rename(columns={"energy": "energy (nJ)", "accuracy": "accuracy (%)"}).sort_values("energy (nJ)"),
             "{:.3g}"))

    p("\n### 7. Side by side with the DSE paper (Lammie et al., ISCAS 2022)\n")
    p(md(pd.DataFrame([{"question": q, "their finding (sourced)": f, "ours": f"see {where}; written after the run"}
                       for q, f, where in DSE])))
    text = "\n".join(lines)
    print(text)
    if a.tables:
        atomic_write_text(Path(a.tables), text + "\n")
    print("\nfigures: " + ", ".join(str(f) for f in figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
