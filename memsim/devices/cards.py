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
from ..schema import KeySpec, check_keys, check_required, read_table, read_toml, suggest
from ..families import FAMILIES, DeviceFamily, get_family
from ..resources import data_dir, env_dirs, require_library
from ..safetext import spice_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVICES_DIR = data_dir("devices")

# The keys of a card, table by table: the loader checks against these specs (allowed and required keys, types,
# ranges, defaults) and the documentation's reference is generated from them.
_TOP_KEYS = {
    "name": KeySpec("str", "the card's name: an identifier (letters, digits, _), also its SPICE subcircuit's and "
                           "its generated .lib file's"),
    "family": KeySpec("choice", "the device model family (memsim device families)", choices=tuple(FAMILIES)),
    "description": KeySpec("str", "one line on the device", default=""),
    "provenance": KeySpec("table", "where the figures come from: doi and/or source (the paper), and free-text "
                                   "notes (strings)"),
    "parameters": KeySpec("table", "the family's parameters, in SI units (one key per parameter, see the family)"),
    "valid": KeySpec("table", "the stimuli the parameters are valid for ([valid] keys)"),
    "verify": KeySpec("table", "the standard verification stimuli of memsim verify ([verify] keys)"),
}
_VALID_KEYS = {
    "voltage": KeySpec("range", "terminal voltages the parameters are valid for; every stimulus stays inside",
                       unit="V"),
}
_VERIFY_KEYS = {
    "amplitude": KeySpec("float", "amplitude of the sine I-V sweeps (inside valid.voltage)", unit="V", lo=0.0,
                         lo_open=True),
    "frequencies": KeySpec("float_list", "frequencies of the sine sweeps (the pinched loop shrinks with frequency)",
                           unit="Hz", lo=0.0, lo_open=True, min_len=2),
    "cycles": KeySpec("float", "periods simulated per sine sweep", lo=0.0, lo_open=True),
    "steps_per_period": KeySpec("int", "time steps per sine period", lo=10),
    "pulse": KeySpec("table", "the SET/RESET pulse train ([verify.pulse] keys)"),
}
_PULSE_KEYS = {
    "set_voltage": KeySpec("float", "SET pulse amplitude (inside valid.voltage)", unit="V"),
    "reset_voltage": KeySpec("float", "RESET pulse amplitude (inside valid.voltage)", unit="V"),
    "width": KeySpec("float", "pulse width at full amplitude", unit="s", lo=0.0, lo_open=True),
    "rise": KeySpec("float", "rise and fall time of a pulse", unit="s", lo=0.0, lo_open=True),
    "gap": KeySpec("float", "time between pulses", unit="s", lo=0.0, lo_open=True),
    "count": KeySpec("int", "pulses of each polarity", lo=1),
    "steps_per_width": KeySpec("int", "time steps per pulse width", lo=10),
}


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


def _parse_verify(table: Any, where: str, vrange: tuple[float, float]) -> VerifySpec:
    values = read_table(table, _VERIFY_KEYS, where)
    amplitude, frequencies = values["amplitude"], values["frequencies"]
    pulse = PulseSpec(**read_table(values["pulse"], _PULSE_KEYS, f"{where}.pulse"))
    for key, value in (("amplitude", amplitude), ("amplitude", -amplitude),
                       ("pulse.set_voltage", pulse.set_voltage), ("pulse.reset_voltage", pulse.reset_voltage)):
        if not vrange[0] <= value <= vrange[1]:
            raise ParameterError(f"{where}.{key}", value, f"inside the card's valid voltage range {list(vrange)} V",
                                 "lower the stimulus or widen [valid].voltage if the model supports it")
    return VerifySpec(amplitude=amplitude, frequencies=frequencies, cycles=values["cycles"],
                      steps_per_period=values["steps_per_period"], pulse=pulse)


def parse_card(data: dict, source: str, path: Path | None = None) -> Card:
    """Validate a card's TOML content. ``source`` names it in error messages."""
    check_keys(data, _TOP_KEYS, source)
    check_required(data, _TOP_KEYS, source)
    # the name becomes a SPICE subcircuit name and a file name (NAME.lib): a safe identifier only
    name = spice_name(data["name"], f"{source}.name")
    family = get_family(data["family"], field=f"{source}.family")
    if not isinstance(data["parameters"], dict):
        raise CardError(f"{source}: [parameters] must be a table")
    params = family.validate(data["parameters"], where=f"{source}.parameters")
    prov = data["provenance"]
    if not isinstance(prov, dict) or not (prov.get("doi") or prov.get("source")):
        raise CardError(f"{source}: [provenance] needs at least 'source' (paper) or 'doi'")
    vrange = read_table(data["valid"], _VALID_KEYS, f"{source}.valid")["voltage"]
    verify = _parse_verify(data["verify"], f"{source}.verify", vrange)
    return Card(name=name, family=family, description=str(data.get("description", _TOP_KEYS["description"].default)),
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
