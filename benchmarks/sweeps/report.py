"""Merge the case-study sweeps into one table and draw the figures of benchmarks/sweeps.md.

    python benchmarks/sweeps/report.py [--results studies/fashion_dse/sweeps] [--out benchmarks/sweeps]

(--results: the sweeps/ folder of `memsim sweep study benchmarks/sweeps/study.toml`, see run_case_study.sh.)

Writes results.csv (every finished point of every sweep), accuracy_vs_tile.png (one panel per network, one line
per programming-noise level), heatmap_*.png, pareto_accuracy_energy.png, and prints the markdown tables."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from memsim.sweep.plots import pareto_front, plot_accuracy_vs_tile, plot_heatmap, plot_pareto  # noqa: E402
from memsim.sweep.results import table  # noqa: E402

NAMES = {"fashion_msnn": "MSNN", "fashion_mlp_full": "MLP", "fashion_mlp": "MLP", "fashion_mlp_wires": "MLP (IR drop)",
         "fashion_msnn_wires": "MSNN (IR drop)",
         "fashion_vgg": "VGG", "fashion_vgg_dw": "VGG-dw"}


def md(df: pd.DataFrame, floatfmt="{:.2f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(floatfmt.format(v) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="studies/fashion_dse/sweeps")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    a = ap.parse_args()
    res, out = Path(a.results), Path(a.out)
    frames = []
    for name, label in NAMES.items():
        if name == "fashion_mlp" and (res / "fashion_mlp_full" / "sweep.json").is_file():
            continue  # the LHS half, contained in the full grid
        if (res / name / "sweep.json").is_file():
            d = table(res / name)
            if len(d):
                d.insert(0, "network", label)
                d.insert(0, "study", name)
                frames.append(d)
    df = pd.concat(frames, ignore_index=True)
    keep = ["study", "network", "status", "mapping", "prune", "tile.size", "wires.r", "noise.program", "adc.bits",
            "mode", "chips", "limit", "accuracy", "accuracy_std", "accuracy_per_chip", "output_error", "tiles",
            "utilisation", "nonzero_utilisation", "energy", "energy_array", "energy_dac", "energy_adc", "latency",
            "area", "elapsed_s", "error", "key"]
    df = df[[c for c in keep if c in df.columns]]
    df.to_csv(out / "results.csv", index=False)
    ok = df[df["status"] == "ok"].copy()
    print(f"{len(df)} points ({len(ok)} ok) in {df['study'].nunique()} sweeps: "
          + ", ".join(f"{k} {v}" for k, v in df.groupby("study").size().items()))
    wire_studies = ("fashion_mlp_wires", "fashion_msnn_wires")
    main_runs = ok[~ok["study"].isin(wire_studies)]
    for bits in (8, 6):
        d = main_runs[main_runs["adc.bits"] == bits]
        if len(d):
            plot_accuracy_vs_tile(d, out / f"accuracy_vs_tile_adc{bits}.png", group="network",
                                  title=f"{bits}-bit ADC; error bars: spread over the 3 chips and the other axes")
    for net in ("MSNN", "MLP"):
        d = main_runs[main_runs["network"] == net]
        if len(d):
            plot_heatmap(d, out / f"heatmap_{net.lower()}_tile_noise.png", "tile.size", "noise.program")
    w = ok[ok["study"].isin(wire_studies)]
    for study in wire_studies:
        ws = w[w["study"] == study]
        if len(ws):
            plot_heatmap(ws, out / f"heatmap_{study.split('_')[1]}_irdrop_tile_wires.png", "tile.size", "wires.r")
    plot_pareto(main_runs, out / "pareto_accuracy_energy.png", color="network")

    print("\n### Mean accuracy (%) by network, ADC bits, programming noise and tile size "
          "(mean over mapping / pruning where swept; n = points per cell)\n")
    for net, d in main_runs.groupby("network", sort=False):
        for bits in sorted(d["adc.bits"].dropna().unique(), reverse=True):
            db = d[d["adc.bits"] == bits]
            pv = db.pivot_table(index="noise.program", columns="tile.size", values="accuracy", aggfunc="mean") * 100
            cnt = db.pivot_table(index="noise.program", columns="tile.size", values="accuracy", aggfunc="size")
            best = pv.idxmax(axis=1)
            out_t = pv.copy()
            for c in pv.columns:
                out_t[c] = [f"{v:.1f} (n={int(k)})" if v == v else "-" for v, k in zip(pv[c], cnt[c].fillna(0))]
            out_t.columns = [f"tile {c}" for c in pv.columns]
            out_t["best tile"] = best.astype(int).astype(str)
            print(f"**{net}, {int(bits)}-bit ADC**\n\n" + md(out_t.reset_index()) + "\n")
    print("\n### Cost per inference by network and tile size (dense mapping, unpruned, 8-bit ADC)\n")
    d = main_runs[(main_runs["mapping"] == "dense") & (main_runs["prune"] == 0) & (main_runs["adc.bits"] == 8)]
    c = d.groupby(["network", "tile.size"]).agg(points=("tiles", "size"), tiles=("tiles", "mean"), utilisation=("utilisation", "mean"),
                                                energy_nJ=("energy", lambda x: 1e9 * x.mean()),
                                                latency_us=("latency", lambda x: 1e6 * x.mean()),
                                                area_mm2=("area", lambda x: 1e6 * x.mean())).reset_index()
    print(md(c, "{:.3g}"))
    if main_runs["mapping"].nunique() > 1:
        print("\n### Dense vs sparse mapping\n")
        g = main_runs.groupby(["network", "prune", "mapping"]).agg(
            points=("accuracy", "size"), accuracy=("accuracy", lambda x: 100 * x.mean()),
            tiles=("tiles", "mean"), utilisation=("utilisation", "mean"),
            energy_nJ=("energy", lambda x: 1e9 * x.mean()), area_mm2=("area", lambda x: 1e6 * x.mean())).reset_index()
        print(md(g, "{:.3g}"))
        t = main_runs[main_runs["network"].isin(
            main_runs.groupby("network")["mapping"].nunique().loc[lambda x: x > 1].index)]
        tt = t.pivot_table(index=["network", "prune", "tile.size"], columns="mapping", values="tiles", aggfunc="mean")
        tu = t.pivot_table(index=["network", "prune", "tile.size"], columns="mapping", values="utilisation",
                           aggfunc="mean")
        tt.columns = [f"tiles {c}" for c in tt.columns]
        tu.columns = [f"utilisation {c}" for c in tu.columns]
        print("\nTiles and utilisation at the same tile size (deterministic: independent of noise and ADC):\n\n"
              + md(tt.join(tu).reset_index(), "{:.3g}"))
        # noise sensitivity: accuracy drop from 0 to 10 % programming noise, per mapping
        s = main_runs.pivot_table(index=["network", "mapping"], columns="noise.program", values="accuracy",
                                  aggfunc="mean") * 100
        s.columns = [f"noise {c:g}" for c in s.columns]
        print("\nAccuracy (%) against programming noise, by mapping:\n\n" + md(s.reset_index()))
    for study, ws in w.groupby("study"):
        print(f"\n### {NAMES[study]}: accuracy (%) by wire resistance and tile size (mean over noise)\n")
        pv = ws.pivot_table(index="wires.r", columns="tile.size", values="accuracy", aggfunc="mean") * 100
        pv.columns = [f"tile {c}" for c in pv.columns]
        print(md(pv.reset_index()))
        pe = ws.pivot_table(index="wires.r", columns="tile.size", values="output_error", aggfunc="mean")
        pe.columns = [f"tile {c}" for c in pe.columns]
        print("\nOutput error (relative RMS of the crossbar product):\n\n" + md(pe.reset_index(), "{:.3f}"))
    print("\n### ADC bits (mean accuracy %, all tiles and noise levels)\n")
    pv = main_runs.pivot_table(index="network", columns="adc.bits", values="accuracy", aggfunc="mean") * 100
    pv.columns = [f"{int(c)}-bit" for c in pv.columns]
    print(md(pv.reset_index()))
    front = pareto_front(main_runs)
    print("\n### Pareto front (accuracy vs energy)\n")
    print(md(front[["network", "mapping", "tile.size", "noise.program", "adc.bits", "accuracy", "energy"]]
             .assign(accuracy=lambda x: 100 * x["accuracy"], energy=lambda x: 1e9 * x["energy"])
             .rename(columns={"energy": "energy_nJ"}).sort_values("energy_nJ"), "{:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
