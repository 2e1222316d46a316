"""The device library: TOML cards in ``devices/``, validated on load.

A card names a family, gives its parameters in SI units, says where they come
from (provenance) and for which stimuli they are valid, and states the standard
verification stimuli. Users add a device by adding a card, not by writing Python.

Search path for a card given by name: the directories in ``$MEMSIM_DEVICE_PATH``
(``os.pathsep``-separated), then the bundled ``devices/`` (inside the installed package, or the
repository's in a checkout; see :mod:`memsim.resources`). A name that is an existing file path is
loaded directly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CardError, ParameterError
from ..schema import check_keys, check_number, read_toml, suggest
from ..families import FAMILIES, DeviceFamily, get_family
from ..resources import data_dir, env_dirs, require_library
from ..safetext import spice_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVICES_DIR = data_dir("devices")

_TOP_KEYS = {"name", "family", "description", "provenance", "parameters", "valid", "verify"}
_VERIFY_KEYS = {"amplitude", "frequencies", "cycles", "steps_per_period", "pulse"}
_PULSE_KEYS = {"set_voltage", "reset_voltage", "width", "rise", "gap", "count", "steps_per_width"}


@dataclass(frozen=True)
class PulseSpec:
    set_voltage: float
    reset_voltage: float
    width: float
    rise: float
    gap: float
    count: int
    steps_per_width: int


@dataclass(frozen=True)
class VerifySpec:
    amplitude: float
    frequencies: tuple[float, ...]
    cycles: float
    steps_per_period: int
    pulse: PulseSpec


class LibraryEntry:
    """What every card in ``devices/`` (device or neuron) has: a subcircuit name and its generated ``.lib``.

    Subclasses are dataclasses with ``name`` and ``path`` fields.
    """

    @property
    def subckt_name(self) -> str:
        return self.name.upper()

    def lib_path(self) -> Path:
        base = self.path.parent if self.path is not None else DEVICES_DIR
        return base / f"{self.name}.lib"


@dataclass(frozen=True)
class Card(LibraryEntry):
    """A validated device card."""

    name: str
    family: DeviceFamily
    description: str
    provenance: dict[str, str]
    parameters: dict[str, float]
    voltage_range: tuple[float, float]
    verify: VerifySpec
    path: Path | None = field(default=None, compare=False)



def search_path() -> list[Path]:
    return env_dirs("MEMSIM_DEVICE_PATH") + [DEVICES_DIR]


def _card_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in search_path():
        if directory.is_dir():
            for f in sorted(directory.glob("*.toml")):
                found.setdefault(f.stem, f)
    return found


def list_cards(kind: str | None = "device", unreadable: list[tuple[str, str]] | None = None) -> list[str]:
    """Names of the cards on the search path (``kind=None``: every card, devices and neurons).

    A file that is not readable TOML has no kind: it is left out, and named with its error in ``unreadable``
    when a list is given (the listing commands report it). A search path without any card raises
    :class:`CardError` (a broken install, not an empty library)."""
    names = []
    files = _card_files()
    require_library("device or neuron cards", list(files), search_path(), "MEMSIM_DEVICE_PATH")
    for name, path in files.items():
        try:
            family = read_toml(path, what="card").get("family")
        except CardError as exc:
            if unreadable is not None:
                unreadable.append((name, str(exc)))
            continue
        is_device = isinstance(family, str) and family in FAMILIES
        if kind is None or (kind == "device") == is_device:
            names.append(name)
    return names


def _number(table: dict, key: str, where: str, positive: bool = True) -> float:
    if key not in table:
        raise CardError(f"{where}: missing key '{key}'")
    return check_number(table[key], f"{where}.{key}", positive=positive, fix=f"correct {key} in the card")


def _integer(table: dict, key: str, where: str, minimum: int = 1) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{where}.{key}", value, f"an integer >= {minimum}", f"correct {key} in the card")
    return value


def _parse_verify(table: Any, where: str, vrange: tuple[float, float]) -> VerifySpec:
    if not isinstance(table, dict):
        raise CardError(f"{where}: missing [verify] table")
    check_keys(table, _VERIFY_KEYS, where)
    amplitude = _number(table, "amplitude", where)
    freqs = table.get("frequencies")
    if not isinstance(freqs, list) or len(freqs) < 2:
        raise ParameterError(f"{where}.frequencies", freqs, "a list of at least two frequencies in Hz",
                             "give two sine frequencies, e.g. [1.0, 10.0]")
    frequencies = tuple(_number({"f": f}, "f", f"{where}.frequencies") for f in freqs)
    pulse_table = table.get("pulse")
    if not isinstance(pulse_table, dict):
        raise CardError(f"{where}: missing [verify.pulse] table")
    check_keys(pulse_table, _PULSE_KEYS, f"{where}.pulse")
    pw = f"{where}.pulse"
    pulse = PulseSpec(
        set_voltage=_number(pulse_table, "set_voltage", pw, positive=False),
        reset_voltage=_number(pulse_table, "reset_voltage", pw, positive=False),
        width=_number(pulse_table, "width", pw), rise=_number(pulse_table, "rise", pw),
        gap=_number(pulse_table, "gap", pw), count=_integer(pulse_table, "count", pw),
        steps_per_width=_integer(pulse_table, "steps_per_width", pw, minimum=10),
    )
    for key, value in (("amplitude", amplitude), ("amplitude", -amplitude),
                       ("pulse.set_voltage", pulse.set_voltage), ("pulse.reset_voltage", pulse.reset_voltage)):
        if not vrange[0] <= value <= vrange[1]:
            raise ParameterError(f"{where}.{key}", value, f"inside the card's valid voltage range {list(vrange)} V",
                                 "lower the stimulus or widen [valid].voltage if the model supports it")
    return VerifySpec(amplitude=amplitude, frequencies=frequencies, cycles=_number(table, "cycles", where),
                      steps_per_period=_integer(table, "steps_per_period", where, minimum=10), pulse=pulse)


def parse_card(data: dict, source: str, path: Path | None = None) -> Card:
    """Validate a card's TOML content. ``source`` names it in error messages."""
    check_keys(data, _TOP_KEYS, source)
    for key in ("name", "family", "parameters", "provenance", "valid", "verify"):
        if key not in data:
            raise CardError(f"{source}: missing required key '{key}'")
    # the name becomes a SPICE subcircuit name and a file name (NAME.lib): a safe identifier only
    name = spice_name(data["name"], f"{source}.name")
    family = get_family(data["family"], field=f"{source}.family")
    if not isinstance(data["parameters"], dict):
        raise CardError(f"{source}: [parameters] must be a table")
    params = family.validate(data["parameters"], where=f"{source}.parameters")
    prov = data["provenance"]
    if not isinstance(prov, dict) or not (prov.get("doi") or prov.get("source")):
        raise CardError(f"{source}: [provenance] needs at least 'source' (paper) or 'doi'")
    valid = data["valid"]
    volt = valid.get("voltage") if isinstance(valid, dict) else None
    if not (isinstance(volt, list) and len(volt) == 2 and all(isinstance(v, (int, float)) for v in volt)
            and volt[0] < volt[1]):
        raise ParameterError(f"{source}.valid.voltage", volt, "[low, high] in V with low < high",
                             "state the terminal-voltage range the parameters are valid for")
    vrange = (float(volt[0]), float(volt[1]))
    verify = _parse_verify(data["verify"], f"{source}.verify", vrange)
    return Card(name=name, family=family, description=str(data.get("description", "")),
                provenance={k: str(v) for k, v in prov.items()}, parameters=params,
                voltage_range=vrange, verify=verify, path=path)


def card_path(name_or_path: str | os.PathLike) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    files = _card_files()
    key = str(name_or_path)
    if key in files:
        return files[key]
    hint = suggest(key, files, "run 'memsim device list' to see the cards")
    raise CardError(f"unknown device card '{key}' (searched {[str(p) for p in search_path()]}); {hint}")


def load_card(name_or_path: str | os.PathLike) -> Card:
    """Load and validate a device card by name (``hp_tio2_joglekar``) or path."""
    path = card_path(name_or_path)
    return parse_card(read_toml(path), source=path.stem, path=path)


def with_parameters(card: Card, **overrides: float) -> Card:
    """A copy of ``card`` with some parameters replaced (validated again)."""
    merged = dict(card.parameters)
    merged.update(overrides)
    params = card.family.validate(merged, where=f"{card.name}.parameters")
    return Card(name=card.name, family=card.family, description=card.description, provenance=card.provenance,
                parameters=params, voltage_range=card.voltage_range, verify=card.verify, path=card.path)
