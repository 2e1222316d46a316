"""Pulse-response cards: behavioural synapse models as TOML files in ``devices/``, validated on load.

A pulse card lives on the device search path beside the device and neuron cards and is told apart by its
``family`` key, which names a pulse-response family (:data:`memsim.pulse.families.PULSE_FAMILIES`), not a device
family: :func:`memsim.devices.cards.list_cards` (device cards: ``memsim verify``, ``memsim device export``) leaves
it out, the neuron list (``type`` without ``family``) too, and ``memsim device list`` shows it in its own section::

    name = "synapse_exp_saturation"
    family = "exp_saturation"              # exp_saturation | linear_step | soft_bounds | power_step
    description = "..."
    read_voltage = 0.2                     # V: the conductances are chord conductances read there
    [provenance]                           # source or doi required, as for device cards
    [parameters]                           # the family's parameters, SI units (G in S)
    [noise]                                # optional: c2c_rel, c2c_abs (S), d2d_step, d2d_bounds; missing = 0
    [pulse]                                # optional: the pulses the curve was measured with
    set_voltage = 1.2                      # V, width in s: documentation of the measurement, not used by
    reset_voltage = -1.4                   #    the model (one pulse shape per polarity)
    width = 1e-6

It has no ``.lib``: a behavioural model describes measured conductance steps, not a circuit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..devices.cards import _card_files, card_path
from ..errors import CardError, ParameterError
from ..safetext import spice_name
from ..schema import check_keys, check_number, read_toml
from .families import PULSE_FAMILIES, PulseFamily, check_noise, get_pulse_family

_TOP = {"name", "family", "description", "provenance", "parameters", "noise", "read_voltage", "pulse"}
_PULSE = {"set_voltage", "reset_voltage", "width"}


@dataclass(frozen=True)
class PulseCard:
    """A validated pulse-response card (see the module docstring)."""

    name: str
    family: PulseFamily
    description: str
    provenance: dict[str, str]
    parameters: dict[str, float]
    noise: dict[str, float]
    read_voltage: float
    pulse: dict[str, float] | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def window(self) -> tuple[float, float]:
        return self.parameters["G_min"], self.parameters["G_max"]

    def with_parameters(self, **overrides: float) -> "PulseCard":
        """A copy with some parameters or noise values replaced (validated again)."""
        params = {**self.parameters, **{k: v for k, v in overrides.items() if k not in self.noise}}
        noise = {**self.noise, **{k: v for k, v in overrides.items() if k in self.noise}}
        return PulseCard(self.name, self.family, self.description, self.provenance,
                         self.family.validate(params, f"{self.name}.parameters"),
                         check_noise(noise, f"{self.name}.noise"), self.read_voltage, self.pulse, self.path)


def is_pulse_card(data: dict) -> bool:
    """A card's TOML content names a pulse-response family (not a device family, not a neuron type)."""
    return isinstance(data.get("family"), str) and data["family"] in PULSE_FAMILIES


def parse_pulse_card(data: dict, source: str, path: Path | None = None) -> PulseCard:
    """Validate a pulse card's TOML content; ``source`` names it in messages."""
    check_keys(data, _TOP, source)
    for key in ("name", "family", "parameters", "provenance", "read_voltage"):
        if key not in data:
            raise CardError(f"{source}: missing required key '{key}'")
    name = spice_name(data["name"], f"{source}.name")  # a file name: a safe identifier, as for device cards
    family = get_pulse_family(data["family"], field=f"{source}.family")
    if not isinstance(data["parameters"], dict):
        raise CardError(f"{source}: [parameters] must be a table")
    params = family.validate(data["parameters"], where=f"{source}.parameters")
    noise_table = data.get("noise", {})
    if not isinstance(noise_table, dict):
        raise CardError(f"{source}: [noise] must be a table (c2c_rel, c2c_abs, d2d_step, d2d_bounds)")
    noise = check_noise(noise_table, where=f"{source}.noise")
    prov = data["provenance"]
    if not isinstance(prov, dict) or not (prov.get("doi") or prov.get("source")):
        raise CardError(f"{source}: [provenance] needs at least 'source' (paper or data) or 'doi'")
    v_read = check_number(data["read_voltage"], f"{source}.read_voltage", fix="give the read voltage in V, e.g. 0.2")
    if v_read == 0:
        raise ParameterError(f"{source}.read_voltage", v_read, "a non-zero voltage in V",
                             "give the voltage at which the conductances were read, e.g. 0.2")
    pulse = data.get("pulse")
    if pulse is not None:
        if not isinstance(pulse, dict):
            raise CardError(f"{source}: [pulse] must be a table (set_voltage, reset_voltage, width)")
        check_keys(pulse, _PULSE, f"{source}.pulse")
        pulse = {k: check_number(v, f"{source}.pulse.{k}", positive=(k == "width"),
                                 fix=f"give {k} in SI units (V, s)") for k, v in pulse.items()}
    return PulseCard(name=name, family=family, description=str(data.get("description", "")),
                     provenance={k: str(v) for k, v in prov.items()}, parameters=params, noise=noise,
                     read_voltage=v_read, pulse=pulse, path=path)


def load_pulse_card(name_or_path: str | os.PathLike) -> PulseCard:
    """Load and validate a pulse card by name (device search path) or path."""
    path = card_path(name_or_path)
    data = read_toml(path, what="card")
    if not is_pulse_card(data):
        what = f"a device card (family = {data['family']!r})" if "family" in data else "a neuron card"
        raise CardError(f"{path}: this is {what}, not a pulse-response card (family one of {sorted(PULSE_FAMILIES)}). "
                        "Fix: use memsim.pulse.derive_response for a device card's pulse response")
    return parse_pulse_card(data, source=path.stem, path=path)


def list_pulse_cards() -> list[str]:
    """Names of the pulse cards on the device search path (unreadable files are reported by the device list)."""
    out = []
    for name, path in _card_files().items():
        try:
            data = read_toml(path, what="card")
        except CardError:
            continue
        if is_pulse_card(data):
            out.append(name)
    return out
