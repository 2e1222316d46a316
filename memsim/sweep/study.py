"""A design-space study: the networks it needs and the sweeps it runs on them, from a fresh folder to its tables and
figures in one call (``memsim sweep study SPEC --out DIR``).

A study is a TOML file::

    name = "digits_dse"
    description = "..."

    [networks.ann]                      # a network: a bundled training config (memsim configs) or a path from
    config = "digits_quickstart"        # the study's folder, with optional overrides (dotted keys, as --set)
    overrides = { "network.kind" = "ann", "network.layers" = [64, 32, 10] }
    quick = { "training.learning_rate" = 3e-3 }   # overrides applied by --quick only (optional)

    [[sweep]]                           # a sweep: an existing sweep spec file (from the study's folder) ...
    spec = "tile_noise.toml"            # ... whose [base] names no checkpoint: the study gives it
    network = "ann"                     # one network (base.checkpoint), or
    # networks = ["ann", "msnn"]        # several (base.models; the axis "model" picks one)
    # name = "tile_noise_ann"           # its results folder, sweeps/<name> (default: the spec's name)

    [[sweep]]                           # ... or the spec inline: name, [sweep.base], [sweep.axes], [sweep.design]
    name = "wires"
    network = "ann"
    base = { mode = "irdrop", chips = 3 }
    axes = { "wires.r" = [0.1, 1.0, 2.5], "tile.size" = [16, 32] }

    [quick]                             # --quick: the same study at a reduced scale
    epochs = 1                          # training.epochs (and base.finetune_epochs) at most this
    train_batches = 20                  # training batches per epoch (0 = all; also base.finetune_batches)
    limit = 200                         # test images per point at most
    chips = 2                           # chips per point at most
    axis_values = 2                     # values per axis at most (the first and the last kept; not "model")
    points = 16                         # points per sweep at most (a larger grid becomes a Latin hypercube)

Its output folder::

    DIR/study.json                      the study's name, scale (quick or full), networks and sweeps
    DIR/networks/<net>/                 the training run of each network (memsim train's run folder)
    DIR/sweeps/<sweep>/                 each sweep's results folder (memsim sweep run's) and its figures
    DIR/results.csv, DIR/summary.md     every sweep's points in one table; mean accuracies per sweep

Every path a study writes into a spec or a record is relative to DIR, so the folder can move and still resume.
Everything that can fail on bad input is checked before any training or sweep starts (:func:`plan_study`).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from ..deploy.kinds import network_kind
from ..errors import MemsimError
from ..io import atomic_write_text
from ..resources import bundled_configs, data_dir, resolve_config
from ..schema import KeySpec, check_keys, is_finite_number, read_toml, suggest
from ..training.checkpoint import RunDirectory, save_checkpoint
from ..training.config import load_config
from .plots import plot_all
from .results import ResultsDir, table
from .runner import check_ray_address, local_pool, run_sweep
from .spec import SweepError, SweepSpec, check_limit, parse_spec, point_key
from .worker import evaluate_point

__all__ = ["StudyError", "Study", "StudyPlan", "load_study", "parse_study", "find_study", "bundled_studies",
           "plan_study", "run_study", "evaluate_in_folder", "QUICK_DEFAULTS"]


class StudyError(SweepError):
    """A study file, its networks or sweeps, or its output folder is unusable."""


# The keys of a study file, table by table: parse_study checks each table's keys against these specs, and the
# documentation's reference (docs/reference/study.md) is generated from them.
_TOP_KEYS = {
    "name": KeySpec("str", "the study's name (letters, digits, '_', '.', '-')", default=None,
                    absent="the study file's name"),
    "description": KeySpec("str", "one line on the study", default=""),
    "networks": KeySpec("table", "the networks the sweeps deploy: [networks.NAME] per network (keys below)"),
    "sweep": KeySpec("table_list", "the sweeps: [[sweep]] per sweep (keys below)", min_len=1),
    "quick": KeySpec("table", "the reduced scale of --quick ([quick] keys below)", default=None,
                     absent="the [quick] defaults below"),
}
_NET_KEYS = {
    "config": KeySpec("str", "its training config: a bundled config's name (memsim configs) or a path from the "
                             "study's folder"),
    "overrides": KeySpec("table", "dotted config keys set on the config, as --set: { \"network.layers\" = [...] }",
                         default={}),
    "quick": KeySpec("table", "dotted config keys set by --quick only", default={}),
    "datasets": KeySpec("table", "what --dataset DATASET switches to: [networks.NAME.datasets.DATASET] per dataset "
                                 "(keys below)", default={}),
}
_VARIANT_KEYS = {
    "config": KeySpec("str", "the variant's own training config (the network's overrides are then dropped)",
                      default=None, absent="the network's config and overrides"),
    "overrides": KeySpec("table", "dotted config keys added to the config (data.dataset is set to DATASET)",
                         default={}),
}
_SWEEP_KEYS = {
    "spec": KeySpec("str", "a sweep spec file, a path from the study's folder; its [base] names no checkpoint",
                    default=None, absent="the spec inline: name, base, axes, design"),
    "network": KeySpec("str", "the one network it deploys (a name of [networks]; base.checkpoint)", default=None,
                       absent="networks (give one of the two)"),
    "networks": KeySpec("str_list", "several networks it deploys (base.models; the axis model picks one)",
                        default=None, min_len=1, absent="network (give one of the two)"),
    "name": KeySpec("str", "its results folder, sweeps/NAME", default=None,
                    absent="the spec's name, else sweepN (N its index)"),
    "base": KeySpec("table", "inline spec: the sweep spec's [base] (no checkpoint, models or nir)", default=None,
                    absent="the spec file's, else the sweep spec's defaults"),
    "axes": KeySpec("table", "inline spec: the sweep spec's [axes]", default=None,
                    absent="the spec file's, else no axis (one point)"),
    "design": KeySpec("table", "inline spec: the sweep spec's [design]", default=None,
                      absent="the spec file's, else kind = grid"),
    "description": KeySpec("str", "inline spec: one line on the sweep (with spec, the file's is used)",
                           default=None, absent="the spec file's, else none"),
    "datasets": KeySpec("str_list", "the only datasets --dataset may run it on (e.g. a fine-tuning sweep whose "
                                    "base.config reads one dataset); under another --dataset the study leaves it out",
                        default=None, min_len=1, absent="every dataset"),
}
#: the [quick] keys: what --quick reduces, and to what at most
_QUICK_KEYS = {
    "epochs": KeySpec("int", "training.epochs (and base.finetune_epochs) at most this", default=1, lo=1),
    "train_batches": KeySpec("int", "training batches per epoch, the networks' and the points' fine-tuning "
                                    "(base.finetune_batches) (0 = all)", default=20, lo=0),
    "limit": KeySpec("int", "test images per point at most", default=200, lo=1),
    "chips": KeySpec("int", "chips per point at most", default=2, lo=1),
    "axis_values": KeySpec("int", "values per axis at most (the first and the last kept; not the axis model)",
                           default=2, lo=1),
    "points": KeySpec("int", "points per sweep at most (a larger grid becomes a Latin hypercube)", default=16, lo=1),
}
#: the [quick] keys and their defaults
QUICK_DEFAULTS = {k: s.default for k, s in _QUICK_KEYS.items()}
#: config keys that may differ between a checkpoint and its network's config (where it runs, not what it learns)
_FREE_KEYS = {"data.data_dir", "data.download", "data.verify", "training.threads", "training.device",
              "output.dir", "output.keep_checkpoints", "output.plot"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STUDY_FILE = "study.json"


def bundled_studies() -> dict[str, Path]:
    """The studies that ship with memsim (``configs/studies/*.toml``), by name."""
    d = data_dir("configs") / "studies"
    return {p.stem: p for p in sorted(d.glob("*.toml"))} if d.is_dir() else {}


def find_study(name_or_path) -> Path:
    """A study argument as a file: an existing path, else a bundled study's name (``digits_dse``)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    studies = bundled_studies()
    stem = p.stem if p.suffix == ".toml" else p.name
    if len(p.parts) == 1 and stem in studies:
        return studies[stem]
    raise StudyError(f"study {name_or_path} is neither a file nor a bundled study; "
                     f"{_hint(stem, studies, f'bundled studies: {sorted(studies)}')} Fix: give the path of a "
                     f"study .toml file or one of the bundled names")


def _hint(name: str, options, otherwise: str) -> str:
    """``did you mean 'x'?``, else ``otherwise``, ending a sentence."""
    h = suggest(name, options, otherwise, cutoff=0.5)
    return h if h.endswith(("?", ".")) else h + "."


# ----------------------------------------------------------------------------------------------------------
# the study file

@dataclass
class Network:
    """A network of a study: its training config (as written, and the file it names) and overrides."""

    name: str
    config: str                      # as written in the study (a bundled name or a path from the study's folder)
    config_file: Path
    overrides: dict
    quick: dict
    #: dataset -> (config as written or None, its file or None, overrides): what ``--dataset`` switches to
    datasets: dict = field(default_factory=dict)

    def variant(self, dataset: str | None, source: str) -> tuple[str, Path, dict]:
        """The config (as written, its file) and overrides of this network on ``dataset`` (None: its own). A
        variant with its own config drops the network's overrides; one with overrides only adds them."""
        if dataset is None:
            return self.config, self.config_file, dict(self.overrides)
        if dataset not in self.datasets:
            try:
                own = load_config(self.config_file, self.overrides).data.dataset
            except MemsimError as exc:
                raise StudyError(f"{source}.networks.{self.name} (config {self.config!r}): {exc}") from None
            if own == dataset:
                return self.config, self.config_file, dict(self.overrides)
            raise StudyError(f"{source}.networks.{self.name}: no variant for --dataset {dataset} (its config trains on "
                             f"{own}; known variants: {sorted(self.datasets) or 'none'}). Fix: add "
                             f"[networks.{self.name}.datasets.{dataset}] with config = \"...\" and/or overrides = "
                             f"{{ \"network.layers\" = [...] }}")
        name, vfile, ov = self.datasets[dataset]
        if vfile is None:
            return self.config, self.config_file, {**self.overrides, **ov, "data.dataset": dataset}
        return name, vfile, {**ov, "data.dataset": dataset}

    def run_dir(self, out: Path) -> Path:
        return Path(out) / "networks" / self.name


@dataclass
class SweepEntry:
    """A sweep of a study: its name (its results folder), the networks it deploys and its spec's data."""

    index: int
    name: str
    networks: list[str]
    data: dict                       # the sweep spec's data, without networks
    origin: str                      # where it came from, for messages
    datasets: list[str] | None = None  # the only --dataset values it runs under (None: every one)


@dataclass
class Study:
    """A parsed study file (:func:`load_study`): its networks, sweeps and [quick] scale."""

    name: str
    description: str
    networks: dict[str, Network]
    sweeps: list[SweepEntry]
    quick: dict
    source: str
    root: Path


def _check_name(value, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise StudyError(f"{where} = {value!r} is invalid: allowed a name of letters, digits, '_', '.' and '-' "
                         f"(it names a folder). Fix: rename it")
    return value


def load_study(path) -> Study:
    path = find_study(path)
    data = read_toml(path, StudyError, what="study")
    return parse_study(data, source=path.name, root=path.parent.resolve())


def parse_study(data: dict, source: str = "study", root: Path | None = None) -> Study:
    """Validate a study dict: its keys, its networks' configs (resolved and parsed with their overrides) and its
    sweeps' references to the networks. The sweeps themselves are checked by :func:`plan_study`."""
    root = Path.cwd() if root is None else Path(root)
    check_keys(data, _TOP_KEYS, source, StudyError, cutoff=0.5)
    name = _check_name(data.get("name", Path(source).stem), f"{source}.name")
    nets_in = data.get("networks")
    if not isinstance(nets_in, dict) or not nets_in:
        raise StudyError(f"{source}: no [networks]: a study trains the networks its sweeps deploy. Fix: add "
                         f"[networks.NAME] with config = \"a bundled config (memsim configs) or a path\"")
    networks = {}
    for n, t in nets_in.items():
        where = f"{source}.networks.{n}"
        _check_name(n, f"{source}: network name")
        if not isinstance(t, dict):
            raise StudyError(f"{where} must be a table with config = \"...\"")
        check_keys(t, _NET_KEYS, where, StudyError, cutoff=0.5)
        if not isinstance(t.get("config"), str):
            raise StudyError(f"{where}.config is missing: allowed a bundled config's name (memsim configs: "
                             f"{sorted(bundled_configs())}) or a path from the study's folder")
        try:
            cfile = resolve_config(t["config"], root=root)
        except MemsimError as exc:
            raise StudyError(f"{where}.config = {t['config']!r}: {exc}") from None
        for k in ("overrides", "quick"):
            if not isinstance(t.get(k, {}), dict):
                raise StudyError(f"{where}.{k} must be a table of dotted config keys, e.g. "
                                 f"{{ \"training.epochs\" = 3 }}")
        datasets = {}
        if not isinstance(t.get("datasets", {}), dict):
            raise StudyError(f"{where}.datasets must be a table: [networks.{n}.datasets.DATASET] per dataset")
        for ds, v in t.get("datasets", {}).items():
            w = f"{where}.datasets.{ds}"
            if not isinstance(v, dict):
                raise StudyError(f"{w} must be a table with config = \"...\" and/or overrides = {{ ... }}")
            check_keys(v, _VARIANT_KEYS, w, StudyError, cutoff=0.5)
            if not isinstance(v.get("overrides", {}), dict):
                raise StudyError(f"{w}.overrides must be a table of dotted config keys")
            vfile = None
            if "config" in v:
                try:
                    vfile = resolve_config(v["config"], root=root)
                except MemsimError as exc:
                    raise StudyError(f"{w}.config = {v['config']!r}: {exc}") from None
            datasets[ds] = (v.get("config"), vfile, dict(v.get("overrides", {})))
        networks[n] = Network(n, t["config"], cfile, dict(t.get("overrides", {})), dict(t.get("quick", {})),
                              datasets)
    sweeps_in = data.get("sweep")
    if not isinstance(sweeps_in, list) or not sweeps_in:
        raise StudyError(f"{source}: no [[sweep]]: a study runs at least one sweep. Fix: add [[sweep]] with "
                         f"spec = \"a sweep spec file\" (or its name, base, axes inline) and network = \"NAME\"")
    sweeps = []
    for i, s in enumerate(sweeps_in):
        where = f"{source}.sweep[{i}]"
        if not isinstance(s, dict):
            raise StudyError(f"{where} must be a table")
        check_keys(s, _SWEEP_KEYS, where, StudyError, cutoff=0.5)
        if ("network" in s) == ("networks" in s):
            raise StudyError(f"{where}: give either network = \"NAME\" or networks = [\"NAME\", ...] (the networks "
                             f"it deploys, from [networks])")
        names = [s["network"]] if "network" in s else s["networks"]
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            raise StudyError(f"{where}.networks = {names!r}: allowed a non-empty list of network names")
        for x in names:
            if x not in networks:
                raise StudyError(f"{where}: network '{x}' is not defined by the study; "
                                 f"{_hint(x, networks, f'defined: {sorted(networks)}')} Fix: add "
                                 f"[networks.{x}] or name a defined network")
        if "spec" in s:
            if not isinstance(s["spec"], str):
                raise StudyError(f"{where}.spec = {s['spec']!r}: allowed the path of a sweep spec (a string)")
            if any(k in s for k in ("base", "axes", "design")):
                raise StudyError(f"{where}: give either spec = \"FILE\" or the spec inline (base, axes, design), "
                                 f"not both")
            spath = Path(s["spec"]) if Path(s["spec"]).is_absolute() else root / s["spec"]
            if not spath.is_file():
                raise StudyError(f"{where}.spec = {s['spec']!r}: no such sweep spec (looked at {spath}). Fix: give "
                                 f"its path from the study's folder")
            sdata = read_toml(spath, StudyError, what="sweep spec")
            origin = f"{source}.sweep[{i}] ({s['spec']})"
        else:
            sdata = {k: copy.deepcopy(s[k]) for k in ("base", "axes", "design", "description") if k in s}
            origin = where
        base = sdata.get("base", {})
        if isinstance(base, dict):
            for k in ("checkpoint", "models", "nir"):
                if k in base:
                    raise StudyError(f"{origin}.base.{k}: a study's sweep takes its networks from the study "
                                     f"(network / networks), not from a path. Fix: remove base.{k}")
        sname = _check_name(s.get("name", sdata.get("name", f"sweep{i}")), f"{where}.name")
        sdata["name"] = sname
        only = s.get("datasets")
        if only is not None and (not isinstance(only, list) or not only or not all(isinstance(x, str) for x in only)):
            raise StudyError(f"{where}.datasets = {only!r}: allowed a non-empty list of dataset names, e.g. "
                             f"[\"fashion_mnist\"]")
        sweeps.append(SweepEntry(i, sname, list(names), sdata, origin, list(only) if only else None))
    quick = dict(QUICK_DEFAULTS)
    q = data.get("quick", {})
    if not isinstance(q, dict):
        raise StudyError(f"{source}.quick must be a table")
    check_keys(q, _QUICK_KEYS, f"{source}.quick", StudyError, cutoff=0.5)
    for k, v in q.items():
        lo = int(_QUICK_KEYS[k].lo)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise StudyError(f"{source}.quick.{k} = {v!r} is invalid: allowed an integer >= {lo}")
        quick[k] = v
    return Study(name, str(data.get("description", "")), networks, sweeps, quick, source, root)


# ----------------------------------------------------------------------------------------------------------
# the plan: every network's config and state, every sweep's spec, checked before any work

@dataclass
class NetworkPlan:
    """A network as a run will treat it: its config (overrides and scale applied), run folder and state."""

    network: Network
    config: object                   # memsim.training.config.Config
    run_dir: Path
    state: str                       # "done" | "resume" | "train"
    checkpoint: str                  # relative to the study folder
    max_batches: int | None
    config_name: str = ""            # the config as written (the network's, or its dataset variant's)


@dataclass
class StudyPlan:
    """What :func:`run_study` will do in a study folder, every part checked (:func:`plan_study`)."""

    study: Study
    out: Path
    quick: bool
    dataset: str | None
    networks: dict[str, NetworkPlan]
    sweeps: list[tuple[SweepEntry, dict]]   # (entry, spec data with the networks' checkpoints, relative paths)
    specs: dict[str, SweepSpec] = field(default_factory=dict)   # as checked (for counting points; not to run)
    left_out: list[SweepEntry] = field(default_factory=list)  # sweeps whose datasets exclude --dataset
    networks_left_out: list[str] = field(default_factory=list)  # networks only left-out sweeps use (not trained)

    def sweep_spec(self, entry: SweepEntry) -> SweepSpec:
        return self.specs[entry.name]

    def sweep_dir(self, entry: SweepEntry) -> Path:
        return self.out / "sweeps" / entry.name


def _network_config(net: Network, out: Path, quick: bool, q: dict, data_dir_: str | None, source: str,
                    dataset: str | None = None):
    config_name, config_file, ov = net.variant(dataset, source)
    if quick:
        ov.update(net.quick)
    ov["output.dir"] = str(net.run_dir(out))
    if data_dir_:
        ov["data.data_dir"] = data_dir_
    where = f"{source}.networks.{net.name}" + (f".datasets.{dataset}" if dataset in net.datasets else "")
    try:
        cfg = load_config(config_file, ov)
        if quick and cfg.training.epochs > q["epochs"]:
            ov["training.epochs"] = q["epochs"]
            cfg = load_config(config_file, ov)
        network_kind(cfg.network.kind, f"{where}: network.kind").check_config(cfg)
    except MemsimError as exc:
        raise StudyError(f"{where} (config {config_name!r}): {exc}") from None
    return config_name, cfg


def _differences(saved: dict, now: dict) -> list[str]:
    out = []
    for s, t in now.items():
        for k, v in t.items():
            if f"{s}.{k}" in _FREE_KEYS or k not in saved.get(s, {}) or (s, k) == ("training", "epochs"):
                continue
            a = saved[s][k]
            a, b = (list(x) if isinstance(x, tuple) else x for x in (a, v))
            if a != b:
                out.append(f"{s}.{k}: checkpoint {a!r}, config {b!r}")
    return out


def _network_state(net: Network, cfg, run: RunDirectory, source: str) -> str:
    """``done`` (its final checkpoint is there and holds its config), ``resume`` or ``train``; an error for a
    checkpoint that is not this network's."""
    latest = run.latest_checkpoint()
    if latest is None:
        return "resume" if run.checkpoints() else "train"
    epochs = cfg.training.epochs
    diff = _differences(latest.config or {}, cfg.to_dict())
    if latest.config is None:
        diff = ["the checkpoint holds no config"]
    if latest.epoch > epochs:
        diff.append(f"training.epochs: checkpoint at epoch {latest.epoch}, config {epochs}")
    if diff:
        raise StudyError(f"{source}.networks.{net.name}: checkpoint {latest.path} does not match the network's "
                         f"config ({'; '.join(diff)}). Fix: use another --out folder, restore the study's settings "
                         f"for this network, or delete {run.path} to train it again")
    return "done" if latest.epoch == epochs else "resume"


def _trim(values: list, n: int) -> list:
    """At most ``n`` of ``values``, evenly spaced, the first and the last kept."""
    if len(values) <= n:
        return list(values)
    if n == 1:
        return [values[0]]
    idx = sorted({round(i * (len(values) - 1) / (n - 1)) for i in range(n)})
    return [values[i] for i in idx]


def quick_spec_data(data: dict, q: dict) -> dict:
    """A sweep spec's data at the reduced scale of ``q`` (the [quick] table)."""
    d = copy.deepcopy(data)
    base = d.setdefault("base", {})
    if not isinstance(base, dict):  # parse_spec says what is wrong
        return d

    def capped(key, default, cap):  # a value of the wrong type is left for parse_spec to name
        v = base.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            base[key] = cap if not v else min(v, cap)

    capped("limit", 0, q["limit"])  # 0 = the whole test set
    capped("chips", 3, q["chips"])
    if base.get("finetune_epochs"):
        capped("finetune_epochs", 0, q["epochs"])
        if q["train_batches"]:  # 0: every batch, as the networks' training at this scale
            capped("finetune_batches", 0, q["train_batches"])
    axes = d.get("axes", {})
    if isinstance(axes, dict):
        d["axes"] = {k: (_trim(v, q["axis_values"]) if isinstance(v, list) and k != "model" else v)
                     for k, v in axes.items()}
    design = d.setdefault("design", {})
    if isinstance(design, dict):
        kind = design.get("kind", "grid")
        if kind in ("random", "lhs") and isinstance(design.get("n"), int):
            design["n"] = min(design["n"], q["points"])
        elif kind == "points" and isinstance(design.get("points"), list):
            design["points"] = design["points"][:q["points"]]
        elif kind == "grid" and isinstance(d.get("axes"), dict):
            grid = math.prod(len(v) if isinstance(v, list) else 1 for v in d["axes"].values())
            if grid > q["points"]:
                design.update(kind="lhs", n=q["points"], seed=design.get("seed", 0))
    return d


class FolderSweepSpec(SweepSpec):
    """A study's sweep spec: its checkpoint paths enter the points' configs (and so their keys and records)
    relative to the study's folder (``root``), so that a moved folder still resumes."""

    def resolve(self, point: dict) -> dict:
        r = super().resolve(point)
        if r.get("checkpoint"):
            r["checkpoint"] = os.path.relpath(r["checkpoint"], self.root)
        if r.get("config") and isinstance(self.base.get("config"), str) and \
                self.base["config"] in bundled_configs():  # a bundled config by name, not where it is installed
            r["config"] = self.base["config"]
        return r


def _as_folder_spec(spec: SweepSpec) -> FolderSweepSpec:
    return FolderSweepSpec(**{f.name: getattr(spec, f.name) for f in fields(SweepSpec) if f.init})


def evaluate_in_folder(root: str, resolved: dict) -> dict:
    """:func:`memsim.sweep.worker.evaluate_point` for a point whose paths are relative to the study folder
    ``root``; the record keeps the relative config."""
    local = dict(resolved)
    if local.get("checkpoint") and not os.path.isabs(local["checkpoint"]):
        local["checkpoint"] = os.path.join(root, local["checkpoint"])
    rec = evaluate_point(local)
    rec["config"] = resolved
    return rec


def _stand_in(path: Path, cfg) -> None:
    """A placeholder checkpoint holding ``cfg``: what a sweep spec's checks read of a network not trained yet (its
    config), so a sweep is checked before any training. Written in a temporary folder only."""
    save_checkpoint(path, model=torch.nn.Linear(1, 1), epoch=cfg.training.epochs, config=cfg)


def _meta(study: Study, quick: bool, dataset: str | None, plan_nets: dict[str, NetworkPlan],
          left_out: list | tuple = ()) -> dict:
    return {"name": study.name, "scale": "quick" if quick else "full", "dataset": dataset,
            "quick": study.quick if quick else None,
            "networks": {n: {"config": p.config_name, "dataset": p.config.data.dataset, "checkpoint": p.checkpoint}
                         for n, p in plan_nets.items()},
            "sweeps": [e.name for e in study.sweeps if e not in left_out]}


def plan_study(study: Study, out, *, quick: bool = False, data_dir: str | None = None, yes: bool = False,
               backend: str = "local", address: str | None = None, dataset: str | None = None) -> StudyPlan:
    """Every check a study can fail before any work: the folder's scale (quick or full) and dataset (``dataset``:
    each network's variant for that dataset, ``[networks.NAME.datasets.DATASET]``), each network's config and
    existing checkpoint, the sweeps' results folders (distinct) and specs (each validated as ``memsim sweep run``
    would, against the networks' configs)."""
    out = Path(out).resolve()
    meta_path = out / STUDY_FILE
    scale = "quick" if quick else "full"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise StudyError(f"{meta_path} is unreadable ({exc}). Fix: give another --out folder") from None
        if old.get("name") != study.name:
            raise StudyError(f"{out} holds the results of study '{old.get('name')}', not '{study.name}'. Fix: give "
                             f"another --out folder")
        if old.get("scale") != scale:
            raise StudyError(f"{out} holds the {old.get('scale')} results of study '{old.get('name')}'; this run is "
                             f"{'--quick' if quick else 'the full study (no --quick)'}. Quick and full results are "
                             f"never mixed. Fix: give another --out folder"
                             + (" (e.g. the default, studies/NAME_quick)" if quick else ""))
        if old.get("dataset") != dataset:
            was = old.get("dataset") or "its networks' own datasets"
            raise StudyError(f"{out} holds the results of study '{old.get('name')}' on {was}; this run asks for "
                             f"{'--dataset ' + dataset if dataset else 'their own datasets (no --dataset)'}. Fix: give "
                             f"another --out folder")
        if quick and old.get("quick") != study.quick:  # the training batches are in no checkpoint's config
            raise StudyError(f"{out} holds quick results made with [quick] = {old.get('quick')}; the study's [quick] "
                             f"is now {study.quick}. Fix: give another --out folder, or restore its [quick] table")
    elif out.is_dir() and any(out.iterdir()):
        raise StudyError(f"{out} is not empty and holds no {STUDY_FILE}: it is not a study's folder. Fix: give a new "
                         f"or empty --out folder")
    if backend == "ray":
        check_ray_address(address)
    q = study.quick
    skipped = [e for e in study.sweeps if dataset is not None and e.datasets is not None and dataset not in e.datasets]
    used = {n for e in study.sweeps if e not in skipped for n in e.networks}
    nets, nets_left_out = {}, []
    for n, net in study.networks.items():
        if dataset is not None and n not in used:  # only left-out sweeps use it (e.g. no variant for this dataset)
            nets_left_out.append(n)
            continue
        cname, cfg = _network_config(net, out, quick, q, data_dir, study.source, dataset)
        run = RunDirectory(net.run_dir(out), keep=cfg.output.keep_checkpoints)
        state = _network_state(net, cfg, run, study.source)
        ck = os.path.relpath(run.checkpoint_path(cfg.training.epochs), out)
        nets[n] = NetworkPlan(net, cfg, run.path, state, ck, (q["train_batches"] or None) if quick else None,
                              cname)
    # results folders: one per sweep, none inside another's or a network's run
    dirs = {}
    for e in study.sweeps:
        key = e.name.lower()
        if key in dirs:
            other = dirs[key]
            raise StudyError(f"{study.source}: sweeps {other.origin} and {e.origin} would both write "
                             f"sweeps/{e.name} (a results folder per sweep name, case-insensitive). Fix: give one of "
                             f"them another name = \"...\"")
        dirs[key] = e
    plan = StudyPlan(study, out, quick, dataset, nets, [], networks_left_out=nets_left_out)
    with tempfile.TemporaryDirectory(prefix="memsim-study-") as tmp:
        tmp = Path(tmp)
        for n, p in nets.items():  # stand-ins at the checkpoints' relative places, so the points' keys are final
            _stand_in(tmp / p.checkpoint, p.config)
        for e in study.sweeps:
            if e in skipped:
                plan.left_out.append(e)  # its datasets key says it runs on its own datasets only
                continue
            data = copy.deepcopy(e.data)
            axes, design = data.get("axes", {}), data.get("design", {})
            if len(e.networks) > 1 and isinstance(axes, dict) and "model" not in axes and \
                    not (isinstance(design, dict) and design.get("kind") == "points"):
                data["axes"] = {"model": list(e.networks), **axes}  # every network it names, at each point
            if quick:
                data = quick_spec_data(data, q)
            base = data.setdefault("base", {})
            if not isinstance(base, dict):
                raise StudyError(f"{e.origin}: [base] must be a table")
            if isinstance(base.get("config"), str) and base["config"] not in bundled_configs():
                base["config"] = str((study.root / base["config"]).resolve())  # a file beside the study
            if len(e.networks) == 1:
                base["checkpoint"] = nets[e.networks[0]].checkpoint
            else:
                base["models"] = {x: nets[x].checkpoint for x in e.networks}
            try:
                spec = _as_folder_spec(parse_spec(data, source=e.origin, root=tmp))
                check_limit(spec, yes)
                fp = spec.fingerprint()
            except SweepError as exc:
                raise StudyError(str(exc).replace(str(tmp) + os.sep, "")) from None
            old = ResultsDir(plan.sweep_dir(e)).meta()
            if old is not None and old.get("fingerprint") != fp:
                raise StudyError(f"{plan.sweep_dir(e)} holds the results of another version of sweep '{e.name}' "
                                 f"(fingerprint {old.get('fingerprint')}; now {fp}). Fix: give another --out folder, "
                                 f"or restore the sweep as it was")
            plan.sweeps.append((e, data))
            plan.specs[e.name] = spec
    return plan


# ----------------------------------------------------------------------------------------------------------
# running

def _train(p: NetworkPlan, progress: bool, log: Callable[[str], None]) -> None:
    kind = network_kind(p.config.network.kind)
    log(f"network {p.network.name}: {'resuming' if p.state == 'resume' else 'training'} "
        f"{p.config.training.epochs} epoch(s) from {p.config_name} in {p.run_dir}")
    kind.train(p.config, resume=p.state == "resume", progress=progress, log=log, max_batches=p.max_batches)


def _spec_for_run(plan: StudyPlan, entry: SweepEntry, data: dict) -> FolderSweepSpec:
    return _as_folder_spec(parse_spec(copy.deepcopy(data), source=entry.origin, root=plan.out))


def run_study(plan: StudyPlan, *, backend: str = "local", workers: int = 2, address: str | None = None,
              yes: bool = False, progress: bool = True, log: Callable[[str], None] = print,
              share_pool: bool = True) -> dict:
    """Train the networks that are not trained yet, run every sweep (finished points skipped), write the tables
    and figures. Returns per-network and per-sweep summaries and the paths written. ``share_pool``: the sweeps run on
    one local pool (False: each sweep starts its own, as ``memsim sweep run`` does; for benchmarks)."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(plan.study, plan.quick, plan.dataset, plan.networks, plan.left_out)
    atomic_write_text(out / STUDY_FILE, json.dumps(meta, indent=1))
    t0 = time.perf_counter()
    trained = []
    for n, p in plan.networks.items():
        if p.state == "done":
            log(f"network {n}: trained ({p.checkpoint})")
            continue
        _train(p, progress, log)
        trained.append(n)
    t_train = time.perf_counter() - t0
    for e in plan.left_out:
        log(f"sweep {e.name}: left out (it runs on {', '.join(e.datasets)} only; this run is --dataset {plan.dataset})")
    for n in plan.networks_left_out:
        log(f"network {n}: left out (only sweeps left out under --dataset {plan.dataset} use it)")
    sweeps = {}
    with contextlib.ExitStack() as stack:
        pool = None  # one local pool for every sweep, started at the first point to run: its workers load the data once

        def shared_pool():
            nonlocal pool
            if pool is None and share_pool and backend == "local" and workers > 1:
                pool = stack.enter_context(local_pool(workers))
            return pool

        for entry, data in plan.sweeps:
            spec = _spec_for_run(plan, entry, data)
            rdir = plan.sweep_dir(entry)
            todo = not ResultsDir(rdir).done() >= {point_key(spec.resolve(p)) for p in spec.points()}
            r = run_sweep(spec, rdir, backend=backend, workers=workers, address=address, yes=yes,
                          progress=progress, evaluate=functools.partial(evaluate_in_folder, str(out)),
                          pool=shared_pool() if todo else None)
            if r.get("pool_broke") and pool is not None:  # a worker died: the next sweep gets a new pool
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
            sweeps[entry.name] = _sweep_done(entry, rdir, r, log)
    tables = write_study_tables(plan)
    return {"networks": {n: p.state for n, p in plan.networks.items()}, "trained": trained, "sweeps": sweeps,
            "train_s": t_train, "elapsed_s": time.perf_counter() - t0, **tables}


def _sweep_done(entry: SweepEntry, rdir: Path, r: dict, log: Callable[[str], None]) -> dict:
    """A finished sweep's figures (redrawn when it ran points) and summary line."""
    figures = sorted(str(f) for f in rdir.glob("*.png"))
    if r["ran"] or not figures:  # a rerun with nothing new keeps its figures
        try:
            figures = [str(f) for f in plot_all(rdir, group="model" if len(entry.networks) > 1 else None)]
        except SweepError as exc:  # no finished point, or an axis a figure needs is not swept
            log(f"sweep {entry.name}: no figures ({exc})")
    log(f"sweep {entry.name}: {r['points']} points, {r['ran']} run ({r['failed']} failed), {r['skipped']} "
        f"already done")
    return {**{k: r[k] for k in ("points", "ran", "failed", "skipped", "elapsed_s")}, "figures": figures}


# ----------------------------------------------------------------------------------------------------------
# tables

def study_table(plan: StudyPlan):
    """Every finished point of every sweep of the study, one table: ``sweep`` and ``network`` columns first."""
    import pandas as pd

    frames = []
    for entry, _ in plan.sweeps:
        rdir = plan.sweep_dir(entry)
        if not (rdir / "sweep.json").is_file():
            continue
        d = table(rdir)
        if not len(d):
            continue
        names = {nm: nm for nm in entry.networks}
        d.insert(0, "network", d["model"].map(names).fillna(entry.networks[0]) if len(entry.networks) > 1
                 else entry.networks[0])
        d.insert(0, "sweep", entry.name)
        frames.append(d)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ideal(plan: StudyPlan) -> dict[str, float]:
    out = {}
    for n, p in plan.networks.items():
        rows = RunDirectory(p.run_dir).read_metrics()
        acc = rows[-1].get("test_accuracy") if rows else None
        if is_finite_number(acc):
            out[n] = float(acc)
    return out


def _md(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def write_study_tables(plan: StudyPlan) -> dict:
    """``results.csv`` (every point of every sweep) and ``summary.md`` (per sweep: mean accuracy over the chips,
    in %, for each combination of its swept axes; the networks' ideal test accuracy) in the study folder."""
    df = study_table(plan)
    out = plan.out
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    ideal = _ideal(plan)
    on = f", --dataset {plan.dataset}" if plan.dataset else ""
    lines = [f"# Study {plan.study.name} ({'quick' if plan.quick else 'full'} scale{on})", ""]
    if plan.study.description:
        lines += [plan.study.description, ""]
    lines += ["## Networks (ideal test accuracy after training)", "",
              _md(_frame([{"network": n, "config": p.config_name, "epochs": p.config.training.epochs,
                           "ideal accuracy (%)": 100 * ideal[n] if n in ideal else math.nan}
                          for n, p in plan.networks.items()])), ""]
    for entry, _ in plan.sweeps:
        d = df[(df["sweep"] == entry.name) & (df["status"] == "ok")] if len(df) else df
        lines += [f"## Sweep {entry.name}", ""]
        if not len(d):
            lines += ["(no finished point)", ""]
            continue
        meta = ResultsDir(plan.sweep_dir(entry)).meta() or {}
        axes = [a for a in meta.get("spec", {}).get("axes", {}) if a in d.columns and a != "model"]
        keys = (["network"] if len(entry.networks) > 1 else []) + axes
        g = d.groupby(keys, sort=True) if keys else None
        if g is None:
            rows = [{"points": len(d), "accuracy (%)": 100 * d["accuracy"].mean(),
                     "chip spread (%)": 100 * d["accuracy_std"].mean()}]
            t = _frame(rows)
        else:
            t = g.agg(points=("accuracy", "size"), acc=("accuracy", "mean"), spread=("accuracy_std", "mean"))
            t = t.reset_index().rename(columns={"acc": "accuracy (%)", "spread": "chip spread (%)"})
            t["accuracy (%)"] *= 100
            t["chip spread (%)"] *= 100
        lines += [f"{len(d)} points, {int(d['samples'].iloc[0])} test images and "
                  f"{int(d['chips'].iloc[0])} chips per point", "", _md(t), ""]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    return {"csv": str(out / "results.csv"), "summary": str(out / "summary.md")}


def _frame(rows):
    import pandas as pd
    return pd.DataFrame(rows)
