"""Where memsim's data lives: device cards, crossbar presets and example configs.

The repository keeps them at its top level (``devices/``, ``crossbar/``, ``configs/``). A wheel or a
non-editable install carries copies inside the package (``memsim/_data/<kind>/``, written at build time by
``setup.py``), found with :mod:`importlib.resources`. A source checkout or an editable install has no
``_data`` folder and uses the repository's folders. User folders named by ``$MEMSIM_DEVICE_PATH`` and
``$MEMSIM_CROSSBAR_PATH`` are searched before these (see :mod:`memsim.devices.cards`,
:mod:`memsim.crossbar.presets`).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import CardError, ConfigError
from .schema import closest

__all__ = ["KINDS", "data_dir", "env_dirs", "bundled_configs", "resolve_config"]

#: the data folders that ship with memsim
KINDS = ("devices", "crossbar", "configs")

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(kind: str) -> Path:
    """The bundled folder of ``kind`` (one of :data:`KINDS`): inside the installed package, else the repository's."""
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {KINDS}")
    packaged = resources.files("memsim").joinpath("_data", kind)
    if packaged.is_dir():
        return Path(str(packaged))
    return _REPO_ROOT / kind


def env_dirs(variable: str) -> list[Path]:
    """The folders of an ``os.pathsep``-separated search-path variable, in order (empty entries skipped)."""
    return [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p]


def require_library(kind: str, names: list[str], dirs: list[Path], variable: str) -> list[str]:
    """``names`` unchanged, or a :class:`CardError` when the search path holds no card at all (a broken
    install or a wrong ``variable`` must not look like an empty library)."""
    if names:
        return names
    searched = ", ".join(f"{d}{'' if d.is_dir() else ' (missing)'}" for d in dirs)
    raise CardError(f"no {kind} found (searched {searched}). Fix: reinstall memsim (its wheel carries the "
                    f"library in memsim/_data/), or point ${variable} at a folder of .toml cards")


def bundled_configs() -> dict[str, Path]:
    """The example training configs that ship with memsim, by name (``digits_quickstart``, ...)."""
    d = data_dir("configs")
    return {p.stem: p for p in sorted(d.glob("*.toml"))} if d.is_dir() else {}


def resolve_config(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A config argument as a file: an existing path (a relative one taken from ``root``, by default the working
    folder; a sweep spec passes its own folder), else a bundled config named ``NAME``, ``NAME.toml`` or
    ``configs/NAME.toml`` (so the README's commands work from any folder)."""
    given = Path(name_or_path).expanduser()
    path = given if root is None or given.is_absolute() else Path(root) / given
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {path} is a directory; give a TOML file (a run folder's config is "
                          f"{path / 'config.toml'})", key="config", value=str(path))
    configs = bundled_configs()
    stem = given.stem if given.suffix == ".toml" else given.name
    if stem in configs and (len(given.parts) == 1 or given.parent.name == "configs"):
        return configs[stem]
    near = closest(stem, configs)
    hint = f"Did you mean '{near}'?" if near else f"Bundled configs: {sorted(configs)} (memsim configs)."
    raise ConfigError(f"config file {path} does not exist and is not a bundled config. {hint}",
                      key="config", value=str(path), allowed=", ".join(sorted(configs)))
