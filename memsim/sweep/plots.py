"""Sweep figures (PNG): accuracy against tile size (one line per noise level), a heatmap over any two axes, and
the accuracy/energy Pareto front."""
from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save
from .results import table
from .spec import SweepError


def _ok(df):
    d = df[df["status"] == "ok"].copy()
    if d.empty:
        raise SweepError("no finished point without error to plot")
    return d


def _tile_col(df):
    for c in ("tile.size", "tile.rows", "tile.cols"):
        if c in df.columns and df[c].notna().any():
            return c
    return None


def pareto_front(df, x="energy", y="accuracy"):
    """Rows not dominated: no other row has lower-or-equal ``x`` and higher-or-equal ``y`` (one strictly)."""
    d = df.sort_values([x, y], ascending=[True, False])
    best, keep = -float("inf"), []
    for idx, row in d.iterrows():
        if row[y] > best:
            keep.append(idx)
            best = row[y]
    return df.loc[keep]


#: axis labels with units for the common sweep axes (a figure should read without the text)
LABELS = {"tile.size": "tile size (rows = columns, cells)", "tile.rows": "tile rows (cells)",
          "noise.program": "programming noise (fraction of G window)", "wires.r": "wire resistance (Ohm per cell)",
          "adc.bits": "ADC resolution (bits)", "dac.bits": "DAC resolution (bits)", "prune": "pruned fraction",
          "mapping": "mapping", "levels": "conductance levels", "mapping.levels": "conductance levels"}


def label(axis: str) -> str:
    """The axis's label with its unit (the key itself where memsim has no label for it)."""
    return LABELS.get(axis, axis)


def plot_accuracy_vs_tile(df, path, noise="noise.program", group=None, title: str = ""):
    plt = pyplot()
    d = _ok(df)
    tc = _tile_col(d)
    if tc is None:
        raise SweepError("the sweep has no tile-size axis (tile.size / tile.rows); accuracy vs tile size needs one")
    groups = [None] if group is None or group not in d.columns else sorted(d[group].dropna().unique())
    # the tile sizes equally spaced, each labelled: a doubling series (32-256) spans less than a decade, so no log axis
    tiles = sorted(d[tc].dropna().unique())
    pos = {t: i for i, t in enumerate(tiles)}
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False, sharey=True)
    for ax, g in zip(axes[0], groups):
        dg = d if g is None else d[d[group] == g]
        levels = sorted(dg[noise].dropna().unique()) if noise in dg.columns else [None]
        for lv in levels:
            dl = dg if lv is None else dg[dg[noise] == lv]
            # error bar: the chips' spread and the spread over the other axes, in quadrature
            m = dl.groupby(tc).agg(mean=("accuracy", "mean"), std=("accuracy", "std"),
                                   chip=("accuracy_std", lambda x: float((x.fillna(0) ** 2).mean() ** 0.5)))
            m = m.reset_index()
            err = (m["std"].fillna(0) ** 2 + m["chip"] ** 2) ** 0.5
            ax.errorbar([pos[t] for t in m[tc]], 100 * m["mean"], yerr=100 * err, marker="o", capsize=3,
                        label="all points" if lv is None else f"{lv:g}")
        ax.set_xticks(range(len(tiles)), [f"{t:g}" for t in tiles])
        ax.set_xlabel(label(tc))
        ax.set_title("" if g is None else f"{group} = {g}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%), mean over the other axes")
    fig.suptitle((title + "\n" if title else "") + "error bars: 1 s.d., chip-to-chip and over the other axes, "
                 "in quadrature", fontsize=8)
    axes[0][-1].legend(fontsize=7, title=label(noise) if noise in d.columns else None, title_fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def plot_heatmap(df, path, x, y, value="accuracy"):
    plt = pyplot()
    d = _ok(df)
    for a in (x, y):
        if a not in d.columns:
            raise SweepError(f"no column '{a}' in the results; columns: {sorted(d.columns)}")
    pv = d.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(pv.columns), 1.0 + 0.6 * len(pv.index)))
    scale = 100 if value == "accuracy" else 1
    im = ax.imshow(pv.values * scale, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(pv.columns)), [f"{c:g}" if isinstance(c, float) else str(c) for c in pv.columns])
    ax.set_yticks(range(len(pv.index)), [f"{c:g}" if isinstance(c, float) else str(c) for c in pv.index])
    for i in range(len(pv.index)):
        for j in range(len(pv.columns)):
            v = pv.values[i, j] * scale
            if v == v:
                bright = im.norm(v) > 0.6  # dark text on the bright end of viridis
                ax.text(j, i, f"{v:.1f}" if value == "accuracy" else f"{v:.3g}", ha="center", va="center",
                        fontsize=7, color="k" if bright else "w")
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    fig.colorbar(im, ax=ax, label=f"{value}{' (%)' if value == 'accuracy' else ''}, mean over the other axes")
    return save(fig, path)


def plot_pareto(df, path, color="arch"):
    plt = pyplot()
    d = _ok(df)
    d = d[d["energy"] > 0]
    if d.empty:
        raise SweepError("no point with a positive energy (presets without converters or no crossbar layers)")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    col = color if color in d.columns and d[color].notna().any() else None
    for g, dg in ([(None, d)] if col is None else d.groupby(col)):
        ax.scatter(dg["energy"] * 1e9, 100 * dg["accuracy"], s=12, alpha=0.6, label=g)
    front = pareto_front(d).sort_values("energy")
    ax.step(front["energy"] * 1e9, 100 * front["accuracy"], where="post", color="k", lw=1.2, label="Pareto front")
    e = d["energy"] * 1e9
    if e.max() >= 10 * e.min():  # a log axis only when the energies span a decade or more
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 2, 5, 10, 20 nJ: plain numbers
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("energy per inference (nJ)")
    ax.set_ylabel("accuracy (%), mean over chips")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=label(col) if col else None, title_fontsize=7)
    return save(fig, path)


def plot_all(results, out_dir=None, heatmap: tuple[str, str] | None = None, group=None) -> list[Path]:
    """The three figures of a results folder (or table); skips a figure whose axes the sweep lacks."""
    import pandas as pd
    res = Path(results)
    df = pd.read_parquet(res) if res.suffix == ".parquet" else pd.read_csv(res) if res.suffix == ".csv" \
        else table(res)
    out = Path(out_dir) if out_dir else (res.parent if res.is_file() else res)
    made = []
    if _tile_col(df) is not None:
        made.append(plot_accuracy_vs_tile(df, out / "accuracy_vs_tile.png", group=group))
    if heatmap is None:
        axes = [c for c in ("tile.size", "noise.program", "wires.r", "adc.bits", "mapping") if c in df.columns
                and df[c].nunique() > 1]
        heatmap = tuple(axes[:2]) if len(axes) >= 2 else None
    if heatmap:
        made.append(plot_heatmap(df, out / f"heatmap_{heatmap[0]}_{heatmap[1]}.png", *heatmap))
    if "energy" in df.columns and (df["energy"].fillna(0) > 0).any():
        made.append(plot_pareto(df, out / "pareto_accuracy_energy.png"))
    return made
