"""A sweep's results folder (:class:`ResultsDir`: its spec and one record per point) and its results table: one row
per point, every config column, accuracy (mean and spread over chips), output error, tiles, utilisation, energy,
latency, area; CSV and Parquet."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_write_bytes, atomic_write_text
from .spec import SweepError, SweepSpec, point_key

METRICS = ("accuracy", "accuracy_std", "output_error", "tiles", "utilisation", "nonzero_utilisation", "energy",
           "energy_array", "energy_dac", "energy_adc", "latency", "area", "area_cells", "area_periphery",
           "tile_reads", "adc_conversions", "samples", "arch", "kind")


class ResultsDir:
    def __init__(self, path):
        self.path = Path(path)
        self.points_dir = self.path / "points"

    @property
    def meta_path(self) -> Path:
        return self.path / "sweep.json"

    def meta(self) -> dict | None:
        if not self.meta_path.is_file():
            return None
        return json.loads(self.meta_path.read_text())

    def claim(self, spec: SweepSpec) -> None:
        """Bind the folder to ``spec``; refuse a folder that holds another spec's results."""
        fp = spec.fingerprint()
        meta = self.meta()
        if meta is not None and meta.get("fingerprint") != fp:
            raise SweepError(f"results folder {self.path} holds the results of another spec "
                             f"('{meta.get('name')}', fingerprint {meta.get('fingerprint')}; this spec: {fp}). "
                             f"Fix: give another --out folder (results of two specs are never mixed)")
        if meta is None and self.points_dir.is_dir() and any(self.points_dir.glob("*.json")):
            raise SweepError(f"results folder {self.path} holds point records but no sweep.json. Fix: give an "
                             f"empty or new --out folder")
        keys = [point_key(spec.resolve(p)) for p in spec.points()]
        atomic_write_text(self.meta_path, json.dumps({
            "name": spec.name, "fingerprint": fp, "source": spec.source, "spec": spec.to_dict(),
            "points": [{"key": k, "axes": p} for k, p in zip(keys, spec.points())]}, indent=1, default=str))

    def done(self) -> set[str]:
        if not self.points_dir.is_dir():
            return set()
        return {p.stem for p in self.points_dir.glob("*.json")}

    def write(self, key: str, record: dict) -> None:
        atomic_write_text(self.points_dir / f"{key}.json", json.dumps(record, indent=1, default=str))

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.points_dir.glob("*.json"))] \
            if self.points_dir.is_dir() else []


def table(path):
    """The results of a sweep folder as a pandas DataFrame (finished points only)."""
    import pandas as pd

    rd = ResultsDir(path)
    if rd.meta() is None:
        raise SweepError(f"{path} is not a sweep results folder (no sweep.json). Fix: give the --out folder of "
                         f"memsim sweep run")
    rows = []
    for rec in rd.records():
        cfg = rec["config"]
        row = {"key": rec["key"], "status": rec["status"], "error": rec.get("error", ""),
               "elapsed_s": rec.get("elapsed_s")}
        for k, v in cfg.items():
            if k == "preset":
                continue
            row[k] = v
        for k, v in cfg["preset"].items():
            row[k] = v
        m = rec.get("metrics", {})
        for k in METRICS:
            row[k] = m.get(k)
        row["accuracy_per_chip"] = json.dumps(m.get("accuracy_per_chip", []))
        rows.append(row)
    df = pd.DataFrame(rows)
    axes = list((rd.meta() or {}).get("spec", {}).get("axes", {}))
    lead = ["key", "status"] + [a for a in axes if a in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]] if len(df) else df


def write_tables(path) -> dict:
    df = table(path)
    path = Path(path)
    atomic_write_text(path / "results.csv", df.to_csv(index=False))
    import io
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path / "results.parquet", buf.getvalue())
    return {"csv": str(path / "results.csv"), "parquet": str(path / "results.parquet")}


def status(path) -> dict:
    rd = ResultsDir(path)
    meta = rd.meta()
    if meta is None:
        raise SweepError(f"{path} is not a sweep results folder (no sweep.json)")
    keys = [p["key"] for p in meta["points"]]
    recs = {r["key"]: r for r in rd.records()}
    done = [k for k in keys if k in recs]
    failed = [recs[k] for k in done if recs[k]["status"] != "ok"]
    times = [recs[k].get("elapsed_s", 0) for k in done]
    return {"name": meta["name"], "fingerprint": meta["fingerprint"], "points": len(keys), "done": len(done),
            "failed": len(failed), "remaining": len(keys) - len(done),
            "mean_point_s": sum(times) / len(times) if times else None,
            "errors": [(r["key"], r.get("error", "")) for r in failed]}
