"""Sweep specs: a TOML file naming a base experiment, the axes to vary and the design, validated up front.

Layout::

    name = "fashion_case"
    description = "..."

    [base]
    checkpoint = "runs/digits/checkpoints/epoch_0008.pt"   # deploy a trained network as it is (no retraining)
    # models = { msnn = "a.pt", mlp = "b.pt" }             # several networks: the axis "model" picks one
    # nir = { dataset = "fashion_mnist", steps = 25, dt = 1e-4 }  # for a .nir model (snnTorch & co.): what the graph
                                     # does not state (memsim.interop.kind.NIRSetup: dataset, steps, encoding, dt)
    # config = "fashion_hardware_aware"; finetune_epochs = 1  # hardware-aware fine-tuning per point (from checkpoint);
                                     # a bundled config's name (memsim configs) or a path from the spec's folder
    # finetune_batches = 0           # batches per fine-tuning epoch (0 = all)
    preset = "hfox_1t1r_64"          # the crossbar preset the axes modify
    mode = "auto"                    # auto (irdrop: the exact IR-drop solve) | noisy | irdrop
    chips = 3                        # chips per point (noise seeds chip_seed..chip_seed+chips-1): mean and spread
    chip_seed = 0                    # the first chip's noise seed (also an axis: other chips, same design)
    limit = 1000                     # evaluate on the first N test images (0 = all)
    max_points = 2000                # more points than this needs --yes

    [axes]                           # any preset key, plus the sweep's own axes
    "tile.size" = [32, 64, 128]      # rows = cols (or "tile.rows", "tile.cols")
    "wires.r" = [0.1, 1.0]           # word and bit line (or "wires.r_wordline", ...)
    "noise.program" = [0.0, 0.05]
    "adc.bits" = [4, 6, 8]
    mapping = ["dense", "sparse"]    # weight layout on tiles; per layer: "features.3=sparse,classifier.0=dense"
    prune = [0.0, 0.5]               # pruning fraction before deployment (of weights, blocks or filters)
    "pruning.method" = ["unstructured", "block", "nm", "nm_tile"]   # | "filter" (conv layers); default unstructured
    # "pruning.block" = [32]         # block: k x k blocks, nm_tile: k outputs share (divides the tile; default: a tile)
    # "pruning.m" = [4, 8]           # nm, nm_tile: n = m * (1 - prune) of every m weights kept (default m = 4)
    model = ["msnn", "mlp"]          # keys of base.models
    chip_seed = [0, 100]             # the first chip of each point's chips (a different set of chips)

    [design]
    kind = "grid"                    # grid | random | lhs (a subset of the grid, seeded) | points
    n = 300                          # random / lhs: points drawn
    seed = 0
    # points = [{ "tile.size" = 32, "adc.bits" = 4 }, ...]   # kind = "points"

Every point is resolved to a flat, JSON-able config (``resolve``) whose SHA-256 is its key in the results folder.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crossbar.presets import parse_preset, preset_path
from ..interop.kind import NIRSetup, load_nir
from ..errors import CardError, ConfigError, MemsimError, ParameterError
from ..nn.pruning import METHODS as PRUNING_METHODS
from ..nn.pruning import Pruning, check_tile, tile_block
from ..resources import resolve_config
from ..schema import check_keys, is_finite_number, read_toml, suggest
from ..schema import KeySpec
from ..training.checkpoint import read_checkpoint
from ..training.config import load_config


class SweepError(MemsimError, ValueError):
    """A sweep spec, a results folder or a backend is unusable."""


_PRESET_SECTIONS = {
    "tile": {"rows": int, "cols": int, "access": str, "size": int},
    "wires": {"r_wordline": float, "r_bitline": float, "r_source": float, "r": float},
    "transistor": {"k": float, "v_th": float, "g_off": float, "v_gate": float},
    "device": {"card": str, "v_read": float},
    "mapping": {"scheme": str, "levels": int, "weight_bits": int, "cell_bits": int, "weight_scale": str,
                "stuck_compensation": str},
    "dac": {"bits": int, "v_max": float, "calibration": str, "percentile": float, "slice_bits": int},
    "adc": {"bits": int, "range": float, "calibration": str, "percentile": float, "granularity": str,
            "columns_per_adc": int},
    "noise": {"program": float, "read": float, "d2d": float, "stuck_on": float, "stuck_off": float,
              "drift_nu": float, "drift_t": float, "drift_t0": float},
}
PRESET_KEYS = {f"{s}.{k}": t for s, ks in _PRESET_SECTIONS.items() for k, t in ks.items()}
LAYOUTS = ("dense", "sparse")
MODES = ("auto", "noisy", "irdrop")
#: how the ``prune`` fraction prunes (:class:`memsim.nn.pruning.Pruning`); the base may set them too
PRUNING_AXES = {"pruning.method": str, "pruning.block": int, "pruning.m": int}
SWEEP_AXES = {"model": str, "mapping": str, "prune": float, "mode": str, "chip_seed": int, **PRUNING_AXES}
AXES = {**PRESET_KEYS, **SWEEP_AXES}
DESIGNS = ("grid", "random", "lhs", "points")
# The keys of a spec, table by table: parse_spec checks against these specs (allowed keys, types, ranges) and the
# documentation's reference is generated from them; SweepSpec.resolve applies the defaults (a test compares them).
_TOP_KEYS = {
    "name": KeySpec("str", "the sweep's name", default=None, absent="the spec file's name"),
    "description": KeySpec("str", "one line on the sweep", default=""),
    "base": KeySpec("table", "the experiment every point shares ([base] keys)"),
    "axes": KeySpec("table", "the axes to vary: axis = [values] (the axes below)", default={}),
    "design": KeySpec("table", "which points of the axes' grid run ([design] keys)", default=None,
                      absent="kind = grid"),
}
_BASE_KEYS = {
    "checkpoint": KeySpec("str", "the network to deploy as trained: a checkpoint of memsim train or a .nir graph, "
                                 "a path from the spec's folder", default=None,
                          absent="base.models, or base.config to fine-tune"),
    "models": KeySpec("table", "several networks: name = checkpoint path; the axis model picks one", default=None,
                      absent="base.checkpoint"),
    "nir": KeySpec("table", "for .nir models, what the graph does not state: dataset, steps, encoding, dt, "
                            "data_dir, neurons, card (memsim.interop NIRSetup)", default=None, absent="no .nir model"),
    "config": KeySpec("str", "a training config (a bundled config's name or a path): hardware-aware fine-tuning "
                             "per point, from checkpoint when given", default=None, absent="no fine-tuning"),
    "finetune_epochs": KeySpec("int", "fine-tuning epochs per point (>= 1 with base.config)", default=0, lo=0),
    "finetune_batches": KeySpec("int", "training batches per fine-tuning epoch (0 = all; a study's --quick caps it)",
                                default=0, lo=0),
    "preset": KeySpec("str", "the crossbar preset the axes modify (memsim crossbar list, or a .toml path)",
                      default="hfox_1t1r_64"),
    "mode": KeySpec("choice", "crossbar simulation: auto (irdrop: the exact IR-drop solve), noisy (ideal wires) "
                              "or irdrop; also an axis", default="auto", choices=MODES),
    "chips": KeySpec("int", "chips per point (noise seeds chip_seed .. chip_seed + chips - 1): their mean and "
                            "spread", default=3, lo=1),
    "limit": KeySpec("int", "evaluate on the first N images of the split (0 = all)", default=0, lo=0),
    "split": KeySpec("choice", "the data split evaluated", default="test", choices=("test", "train")),
    "batch_size": KeySpec("int", "images per evaluation batch", default=256, lo=1),
    "max_points": KeySpec("int", "a sweep with more points needs --yes", default=2000, lo=1),
    "cost_model": KeySpec("str", "the energy/latency/area model: a bundled name (crossbar/cost/) or a .toml path",
                          default="default"),
    "mapping": KeySpec("str", "weight layout on tiles: dense or sparse, or per layer 'LAYER=scheme,...'; also an "
                              "axis", default="dense", rule=f"schemes {list(LAYOUTS)}"),
    "prune": KeySpec("float", "pruning fraction before deployment (of weights, blocks or filters); also an axis",
                     default=0.0, lo=0.0, hi=1.0, hi_open=True),
    "chip_seed": KeySpec("int", "noise seed of a point's first chip; also an axis", default=0, lo=0),
    "pruning.method": KeySpec("choice", "how prune prunes (memsim.nn.pruning); also an axis", default="unstructured",
                              choices=PRUNING_METHODS),
    "pruning.block": KeySpec("int", "block pruning: k x k blocks (dividing the tile); also an axis", default=None,
                             lo=1, absent="one tile"),
    "pruning.m": KeySpec("int", "nm pruning: n = m (1 - prune) of every m weights kept; also an axis", default=None,
                         lo=2, absent="memsim.nn.pruning's default m"),
}
_DESIGN_KEYS = {
    "kind": KeySpec("choice", "all the grid's points, a seeded random or Latin-hypercube subset of n, or the listed "
                              "points", default="grid", choices=DESIGNS),
    "n": KeySpec("int", "points drawn by random and lhs", default=None, lo=1, absent="required by random and lhs"),
    "seed": KeySpec("int", "seed of the random and lhs draws", default=0),
    "points": KeySpec("table_list", "kind = points: the points, each a table axis = value", default=None, min_len=1,
                      absent="required by kind = points"),
}
#: the axes that are neither a preset key nor a [base] key
_AXIS_ONLY_KEYS = {
    "model": KeySpec("str", "a name of base.models: the network of the point", default=None,
                     absent="the first of base.models"),
    "tile.size": KeySpec("int", "the tile's rows and cols together (a square tile)", default=None, lo=1,
                         absent="the preset's tile"),
    "wires.r": KeySpec("float", "word- and bit-line resistance per cell segment together", unit="Ohm", default=None,
                       lo=0.0, absent="the preset's wires"),
}
_KIND_TYPES = {"int": int, "float": float, "str": str, "choice": str}  # the kinds _check_type checks


def _check_type(where: str, value, kind) -> None:
    ok = (isinstance(value, str) if kind is str else
          (isinstance(value, int) and not isinstance(value, bool)) if kind is int else
          is_finite_number(value))
    if not ok:
        noun = {str: "a string", int: "an integer", float: "a finite number"}[kind]
        raise SweepError(f"{where} = {value!r} has the wrong type: allowed {noun}. Fix: write it as {noun} in the spec")


def _canon(v):
    """Numbers that are equal compare (and hash) equal: 1 and 1.0 are one value."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


@dataclass
class SweepSpec:
    name: str
    description: str
    base: dict
    axes: dict[str, list]
    design: dict
    source: str = ""
    root: Path = field(default_factory=Path.cwd)
    _points: list[dict] | None = field(default=None, repr=False)
    _config: Path | None = field(default=None, repr=False)

    # -- the design ----------------------------------------------------------------
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.axes.values()) if self.axes else 1

    def points(self) -> list[dict]:
        """The design's points: each a dict axis -> value (only the swept axes)."""
        if self._points is not None:
            return self._points
        kind = self.design.get("kind", "grid")
        names = list(self.axes)
        if kind == "points":
            pts = [dict(p) for p in self.design["points"]]
        else:
            grid = [dict(zip(names, combo)) for combo in itertools.product(*(self.axes[n] for n in names))]
            if kind == "grid":
                pts = grid
            else:
                n, seed = self.design["n"], self.design.get("seed", 0)
                rng = random.Random(seed)
                if n >= len(grid):
                    pts = grid
                elif kind == "random":
                    pts = [grid[i] for i in sorted(rng.sample(range(len(grid)), n))]
                else:  # Latin hypercube on the grid's levels: every level of every axis used n/k times (+-1)
                    levels = {a: [min(int((i + rng.random()) / n * len(self.axes[a])), len(self.axes[a]) - 1)
                                  for i in range(n)] for a in names}
                    best = None
                    for _ in range(500):  # re-pair the columns until no two points coincide
                        for a in names:
                            rng.shuffle(levels[a])
                        idx = [tuple(levels[a][i] for a in names) for i in range(n)]
                        uniq = list(dict.fromkeys(idx))
                        if best is None or len(uniq) > len(best):
                            best = uniq
                        if len(uniq) == n:
                            break
                    pts = [{a: self.axes[a][j] for a, j in zip(names, t)} for t in best]
                    if len(pts) < n:  # still short: top up with distinct random grid points
                        have = set(best)
                        rest = [g for g in grid if tuple(self.axes[a].index(g[a]) for a in names) not in have]
                        pts += rng.sample(rest, n - len(pts))
        self._points = pts
        return pts

    # -- resolution -----------------------------------------------------------------
    def models(self) -> dict[str, str]:
        b = self.base
        if "models" in b:
            return dict(b["models"])
        return {"model": b["checkpoint"]} if "checkpoint" in b else {}

    def resolve(self, point: dict) -> dict:
        """The full config of a point: every setting that changes its result (hashed into its key)."""
        b = self.base
        models = self.models()
        model = point.get("model", next(iter(models)) if models else "config")
        preset = {k: _canon(v) for k, v in sorted(point.items()) if k in PRESET_KEYS}
        mode = point.get("mode", b.get("mode", "auto"))
        r = {
            "model": model,
            "checkpoint": str(self._path(models[model])) if models else None,
            "config": str(self.config_file()) if "config" in b else None,
            "finetune_epochs": int(b.get("finetune_epochs", 0)),
            "preset_base": str(b.get("preset", "hfox_1t1r_64")),
            "preset": preset,
            "mapping": point.get("mapping", b.get("mapping", "dense")),
            "prune": float(point.get("prune", b.get("prune", 0.0))),
            "mode": mode,
            "chips": int(b.get("chips", 3)),
            "chip_seed": int(point.get("chip_seed", b.get("chip_seed", 0))),  # chips: seeds chip_seed.. + chips-1
            "limit": int(b.get("limit", 0)),
            "split": str(b.get("split", "test")),
            "batch_size": int(b.get("batch_size", 256)),
            "cost_model": str(b.get("cost_model", "default")),
        }
        if int(b.get("finetune_batches", 0)) and "config" in b:  # only then: every other point's key stays as it was
            r["finetune_batches"] = int(b["finetune_batches"])
        r.update(_pruning_keys(point, b))
        if r["mode"] == "auto":
            r["mode"] = "irdrop"  # every preset has wire resistance (> 0): the exact solve applies
        if models and str(models[model]).endswith(".nir"):  # only then: the keys of every other point stay as they were
            r["nir"] = dict(b["nir"])
        return r

    def _path(self, p) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.root / p).resolve()

    def config_file(self) -> Path:
        """``base.config`` as a file: a path relative to the spec's folder, else a bundled config named as in
        ``memsim train`` (``fashion_hardware_aware``, ``configs/NAME.toml``: see ``memsim configs``)."""
        if self._config is None:
            try:
                self._config = resolve_config(self.base["config"], root=self.root).resolve()
            except ConfigError as exc:
                raise SweepError(f"{self.source}.base.config = {self.base['config']!r}: {exc}") from None
        return self._config

    def fingerprint(self) -> str:
        """SHA-256 of what defines the sweep's points (not its name or description)."""
        payload = {"base": self.base, "axes": self.axes, "design": self.design,
                   "points": [point_key(self.resolve(p)) for p in self.points()]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "base": self.base, "axes": self.axes,
                "design": self.design}


def _pruning_keys(point: dict, base: dict) -> dict:
    """A point's pruning method and its own keys (``pruning.block`` for block, ``pruning.m`` for nm; the others'
    are not read, so a grid may cross them; both for nm_tile), resolved only when the method is not the default:
    the keys of the points that prune as before stay as they were."""
    def get(k):
        return point.get(k, base.get(k))
    method = get("pruning.method") or "unstructured"
    if method == "unstructured":
        return {}
    own = {"block": ("pruning.block",), "nm": ("pruning.m",),
           "nm_tile": ("pruning.block", "pruning.m")}.get(method, ())
    return {"pruning.method": method, **{k: get(k) for k in own if get(k) is not None}}


def point_pruning(resolved: dict, where: str = "prune") -> Pruning:
    """The :class:`memsim.nn.pruning.Pruning` of a resolved point (its ``prune`` fraction and method keys)."""
    block = resolved.get("pruning.block")
    return Pruning(resolved.get("pruning.method", "unstructured"), resolved["prune"], block=block,
                   m=resolved.get("pruning.m"), where=where)


def point_key(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def preset_data(resolved: dict) -> dict:
    """The preset's TOML data with the point's keys set (``tile.size`` and ``wires.r`` set both of their pair)."""
    data = copy.deepcopy(read_toml(preset_path(resolved["preset_base"])))
    for key, value in resolved["preset"].items():
        sec, k = key.split(".", 1)
        t = data.setdefault(sec, {})
        if key == "tile.size":
            t["rows"] = t["cols"] = value
        elif key == "wires.r":
            t["r_wordline"] = t["r_bitline"] = value
        else:
            t[k] = float(value) if PRESET_KEYS[key] is float else value
    data["name"] = f"{data.get('name', resolved['preset_base'])}_sweep"  # an identifier: it names netlists and folders
    return data


def build_preset(resolved: dict):
    return parse_preset(preset_data(resolved), source=f"sweep preset ({resolved['preset_base']})")


# ----------------------------------------------------------------------------------------------------------
# loading and validation

def load_spec(path, *, check_points: bool = True) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep spec {path} does not exist. Fix: give the path of a .toml sweep spec")
    data = read_toml(path, SweepError, what="sweep spec")
    return parse_spec(data, source=str(path), root=path.parent.resolve(), check_points=check_points)


def parse_spec(data: dict, source: str = "spec", root: Path | None = None, *, check_points: bool = True) -> SweepSpec:
    """Validate a spec dict (every check that can fail on bad input, before any work)."""
    root = Path.cwd() if root is None else Path(root)
    check_keys(data, _TOP_KEYS, source, SweepError, cutoff=0.5)
    base = dict(data.get("base", {}))
    if not isinstance(data.get("base", {}), dict):
        raise SweepError(f"{source}: [base] must be a table")
    check_keys(base, _BASE_KEYS, f"{source}.base", SweepError, cutoff=0.5)
    n_src = sum(k in base for k in ("checkpoint", "models"))
    if n_src > 1:
        raise SweepError(f"{source}.base: give either 'checkpoint' or 'models', not both")
    if n_src == 0 and "config" not in base:
        raise SweepError(f"{source}.base: no experiment: give 'checkpoint' (deploy a trained network), 'models' "
                         f"(several), or 'config' with 'finetune_epochs' (hardware-aware fine-tuning per point)")
    if "models" in base and (not isinstance(base["models"], dict) or not base["models"]):
        raise SweepError(f"{source}.base.models must be a non-empty table name = checkpoint path")
    for k, ks in _BASE_KEYS.items():  # each key's type, and an integer's lower bound, from its spec
        if k in base and ks.kind in _KIND_TYPES:
            _check_type(f"{source}.base.{k}", base[k], _KIND_TYPES[ks.kind])
            if ks.kind == "int" and ks.lo is not None and base[k] < ks.lo:
                raise SweepError(f"{source}.base.{k} = {base[k]} is invalid: allowed {ks.allowed()}")
    if "config" in base and base.get("finetune_epochs", 0) < 1:
        raise SweepError(f"{source}.base: 'config' means fine-tuning per point, so finetune_epochs must be >= 1 "
                         f"(got {base.get('finetune_epochs', 0)}). Fix: set base.finetune_epochs, or drop 'config' "
                         f"to deploy the checkpoint as trained")
    if base.get("split", "test") not in _BASE_KEYS["split"].choices:
        raise SweepError(f"{source}.base.split = {base['split']!r}: allowed 'test' or 'train'")

    axes_in = data.get("axes", {})
    if not isinstance(axes_in, dict):
        raise SweepError(f"{source}: [axes] must be a table of lists")
    axes = {}
    check_keys(axes_in, AXES, f"{source}.axes", SweepError, cutoff=0.5)
    for k, vals in axes_in.items():
        if not isinstance(vals, list):
            vals = [vals]
        if not vals:
            raise SweepError(f"{source}.axes.{k} is empty: the grid has no points. Fix: give at least one value")
        for i, v in enumerate(vals):
            _check_type(f"{source}.axes.{k}[{i}]", v, AXES[k])
        canon = [_canon(v) for v in vals]
        if len(set(map(repr, canon))) != len(canon):
            raise SweepError(f"{source}.axes.{k} = {vals} repeats a value. Fix: list each value once")
        axes[k] = vals
    design = dict(data.get("design", {}))
    check_keys(design, _DESIGN_KEYS, f"{source}.design", SweepError, cutoff=0.5)
    kind = design.setdefault("kind", "grid")
    if kind not in DESIGNS:
        raise SweepError(f"{source}.design.kind = {kind!r}: allowed one of {list(DESIGNS)}")
    if kind in ("random", "lhs"):
        if "n" not in design:
            raise SweepError(f"{source}.design: kind '{kind}' needs n (the number of points to draw)")
        _check_type(f"{source}.design.n", design["n"], int)
        if design["n"] < 1:
            raise SweepError(f"{source}.design.n = {design['n']}: allowed an integer >= 1")
    if "seed" in design:
        _check_type(f"{source}.design.seed", design["seed"], int)
    if kind == "points":
        pts = design.get("points")
        if not isinstance(pts, list) or not pts:
            raise SweepError(f"{source}.design.points: kind 'points' needs a non-empty list of points")
        if axes:
            raise SweepError(f"{source}: kind 'points' lists its points itself; drop [axes] (or use kind 'grid')")
        for i, p in enumerate(pts):
            if not isinstance(p, dict):
                raise SweepError(f"{source}.design.points[{i}] must be a table of axis = value")
            check_keys(p, AXES, f"{source}.design.points[{i}]", SweepError, cutoff=0.5)
            for k, v in p.items():
                _check_type(f"{source}.design.points[{i}].{k}", v, AXES[k])
    elif "points" in design:
        raise SweepError(f"{source}.design.points is only read with kind = 'points' (kind is '{kind}')")
    spec = SweepSpec(name=str(data.get("name", Path(source).stem)), description=str(data.get("description", "")),
                     base=base, axes=axes, design=design, source=source, root=root)
    _check_references(spec)
    if check_points:
        check_points_valid(spec)
    return spec


def _check_references(spec: SweepSpec) -> None:
    src, b = spec.source, spec.base
    models = spec.models()
    for name, p in models.items():
        if not isinstance(p, str):
            raise SweepError(f"{src}.base.models.{name} = {p!r}: allowed a checkpoint path (string)")
        if not spec._path(p).is_file():
            raise SweepError(f"{src}.base: checkpoint '{p}' of model '{name}' does not exist "
                             f"(looked at {spec._path(p)}). Fix: train it first or correct the path")
    if "model" in spec.axes:
        for m in spec.axes["model"]:
            if m not in models:
                hint = suggest(m, models, f"valid: {sorted(models)}", cutoff=0.5)
                raise SweepError(f"{src}.axes.model: '{m}' is not in base.models; {hint}")
    for i, p in enumerate(spec.design.get("points", []) or []):
        if "model" in p and p["model"] not in models:
            raise SweepError(f"{src}.design.points[{i}].model: '{p['model']}' is not in base.models; "
                             f"{suggest(p['model'], models, f'valid: {sorted(models)}', cutoff=0.5)}")
    for ax, allowed in (("mapping", LAYOUTS), ("mode", MODES)):
        vals = list(spec.axes.get(ax, [])) + [p[ax] for p in spec.design.get("points", []) or [] if ax in p]
        if ax in b:
            vals.append(b[ax])
        for v in vals:
            if ax == "mapping" and "=" in v:  # per layer: "LAYER=sparse,LAYER2=dense" (layer names checked per point)
                for part in v.split(","):
                    name, _, scheme = part.partition("=")
                    if not name.strip() or scheme.strip() not in LAYOUTS:
                        raise SweepError(f"{src}: mapping = {v!r} is invalid: allowed one of {list(LAYOUTS)} or "
                                         f"'LAYER=scheme[,LAYER=scheme]' with a scheme in {list(LAYOUTS)}")
            elif v not in allowed:
                raise SweepError(f"{src}: {ax} = {v!r} is invalid: allowed one of {list(allowed)}")
    prunes = list(spec.axes.get("prune", [])) + [p["prune"] for p in spec.design.get("points", []) or []
                                                  if "prune" in p] + ([b["prune"]] if "prune" in b else [])
    for v in prunes:
        if not 0 <= v < 1:
            raise SweepError(f"{src}: prune = {v!r} is invalid: allowed a fraction in [0, 1)")
    for ax in PRUNING_AXES:
        vals = list(spec.axes.get(ax, [])) + [p[ax] for p in spec.design.get("points", []) or [] if ax in p] + (
            [b[ax]] if ax in b else [])
        for v in vals:
            if ax == "pruning.method" and v not in PRUNING_METHODS:
                raise SweepError(f"{src}: pruning.method = {v!r} is invalid: allowed one of {list(PRUNING_METHODS)}")
            if ax != "pruning.method" and v < (1 if ax == "pruning.block" else 2):
                raise SweepError(f"{src}: {ax} = {v!r} is invalid: allowed an integer >= "
                                 f"{1 if ax == 'pruning.block' else 2}")
    for v in list(spec.axes.get("chip_seed", [])) + [p["chip_seed"] for p in spec.design.get("points", []) or []
                                                      if "chip_seed" in p]:
        if v < 0:
            raise SweepError(f"{src}: chip_seed = {v!r} is invalid: allowed an integer >= 0 (a noise seed)")
    try:
        preset_path(b.get("preset", "hfox_1t1r_64"))
    except CardError as exc:
        raise SweepError(f"{src}.base.preset: {exc}") from None
    nir_models = {name: p for name, p in models.items() if str(p).endswith(".nir")}
    _check_nir_models(spec, nir_models)
    models = {name: p for name, p in models.items() if name not in nir_models}
    if "config" in b:
        cfg = load_config(spec.config_file())
        for name, p in models.items():
            check_checkpoint_matches(spec._path(p), cfg, f"{src}.base (model '{name}')")
    else:
        for name, p in models.items():
            ck = read_checkpoint(spec._path(p))
            if ck.config is None:
                raise SweepError(f"{src}.base: checkpoint '{p}' holds no config (not written by memsim train); "
                                 f"a sweep rebuilds the network from it")


def _check_nir_models(spec: SweepSpec, nir_models: dict[str, str]) -> None:
    """NIR graphs as models: ``base.nir`` says what they do not (dataset, steps, encoding, dt); each graph is read and
    checked against the dataset now, before any point runs; memsim does not fine-tune them."""
    src, b = spec.source, spec.base
    if not nir_models:
        if b.get("nir") is not None:
            raise SweepError(f"{src}.base.nir is given but no model is a .nir file. Fix: remove it, or name a .nir "
                             f"graph in base.checkpoint / base.models")
        return
    if not isinstance(b.get("nir"), dict):
        raise SweepError(f"{src}.base: model(s) {sorted(nir_models)} are NIR graphs, which do not say what they read. "
                         f"Fix: add base.nir = {{ dataset = \"fashion_mnist\", steps = 25, dt = 1e-4 }} (encoding "
                         f"\"direct\" by default)")
    if "config" in b:
        raise SweepError(f"{src}.base.config: memsim does not fine-tune NIR graphs ({sorted(nir_models)}). Fix: drop "
                         f"base.config and finetune_epochs, or train the network further in its own framework")
    check_keys(b["nir"], {f.name for f in dataclasses.fields(NIRSetup)}, f"{src}.base.nir", SweepError)
    try:
        setup = NIRSetup(**b["nir"])
        for name, p in nir_models.items():
            load_nir(spec._path(p), setup)
    except MemsimError as exc:
        raise SweepError(f"{src}.base.nir: {exc}") from None


def check_checkpoint_matches(ckpt_path: Path, cfg, where: str) -> None:
    """The checkpoint must hold the network the base config describes (same dataset and layer shapes)."""
    ck = read_checkpoint(ckpt_path)
    saved = ck.config or {}
    s_net, s_data = saved.get("network", {}), saved.get("data", {})
    mismatches = []
    if s_data.get("dataset", cfg.data.dataset) != cfg.data.dataset:
        mismatches.append(f"data.dataset: checkpoint {s_data.get('dataset')!r}, config {cfg.data.dataset!r}")
    for key in ("layers", "kind", "conv_channels", "conv_kernel", "conv_stride"):
        if key in s_net and hasattr(cfg.network, key):
            a, c = s_net[key], getattr(cfg.network, key)
            a, c = (list(v) if isinstance(v, (list, tuple)) else v for v in (a, c))
            if a != c:
                mismatches.append(f"network.{key}: checkpoint {a!r}, config {c!r}")
    if mismatches:
        raise SweepError(f"{where}: checkpoint {ckpt_path} does not match the base config ({'; '.join(mismatches)}). "
                         f"Fix: give the checkpoint trained from this config, or the config it was trained with")


def check_points_valid(spec: SweepSpec) -> None:
    """Build the crossbar preset of every point (cheap), so a bad value stops the sweep before any work."""
    seen = {}
    for p in spec.points():
        r = spec.resolve(p)
        k = json.dumps(r["preset"], sort_keys=True)
        if k not in seen:
            try:
                seen[k] = build_preset(r)
            except (ParameterError, CardError) as exc:
                keys = ", ".join(f"{a} = {v!r}" for a, v in r["preset"].items())
                raise SweepError(f"{spec.source}: the point ({keys}) gives an invalid crossbar preset: {exc}") from None
        try:  # the pruning of the point, on its tile (a block that does not divide the tile, a fraction nm can't)
            pruning = point_pruning(r)
            check_tile(pruning, tile_block(seen[k]))
        except ParameterError as exc:
            keys = ", ".join(f"{a} = {v!r}" for a, v in sorted(p.items()))
            raise SweepError(f"{spec.source}: the point ({keys}) has an invalid pruning: {exc}") from None


def check_limit(spec: SweepSpec, yes: bool) -> None:
    n = len(spec.points())
    limit = spec.base.get("max_points", 2000)
    if n > limit and not yes:
        raise SweepError(f"{spec.source}: {n} points is more than base.max_points = {limit}. Fix: pass --yes to run "
                         f"them all, raise base.max_points, or draw a subset (design.kind = 'lhs', n = ...)")
