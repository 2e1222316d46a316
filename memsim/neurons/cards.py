"""Neuron cards: TOML files in ``devices/`` with their own schema, validated on load.

A neuron card names its circuit type (``mif`` or ``vlif``), its memristors (by
device-card name, so the neuron reuses a device of the library, or as an inline
device table with a ``family``), the circuit parameters in SI units, the
documented time step and input-current range, its provenance (including the SI
derivation) and its verification stimuli::

    name = "mif_neuron"
    type = "mif"
    [memristors]
    M1 = "mss_mif"                         # a device card ...
    M2 = { card = "mss_mif", x0 = 0.0238 } # ... with overrides, or {family = ..., R_on = ..., ...}
    [parameters]   C, E1, E2, V0, tau_s  (mif) | C, R_L, V0, tau_s (vlif)
    [simulation]   dt, input_range = [lo, hi]
    [verify]       duration, step_current, ramp_current, train_amplitude, train_rate, seed

The ``type`` key (not ``family``) keeps neuron cards out of the device list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..errors import CardError, ParameterError
from ..schema import KeySpec, check_keys, check_required, is_finite_number, read_table, read_toml, suggest
from ..devices.cards import Card, LibraryEntry, _card_files, card_path, load_card
from ..families import get_family
from ..safetext import spice_name
from .circuits import NeuronCircuit, circuit_for


def _circuit_types() -> tuple[str, ...]:
    """The ``type`` of every neuron circuit (the subclasses of :class:`NeuronCircuit` that name one)."""
    found, todo = set(), list(NeuronCircuit.__subclasses__())
    while todo:
        c = todo.pop()
        if isinstance(vars(c).get("type"), str):
            found.add(c.type)
        todo += c.__subclasses__()
    return tuple(sorted(found))


# The keys of a neuron card, table by table: the loader checks against these specs (allowed and required keys,
# types, ranges, defaults) and the documentation's reference is generated from them.
_TOP = {
    "name": KeySpec("str", "the card's name: an identifier (letters, digits, _), also its SPICE subcircuit's and "
                           "its generated .lib file's"),
    "type": KeySpec("choice", "the neuron circuit (its parameters: the tables below)", choices=_circuit_types()),
    "description": KeySpec("str", "one line on the neuron", default=""),
    "provenance": KeySpec("table", "where the figures come from (source, doi, the SI derivation: strings)",
                          default={}),
    "memristors": KeySpec("table", "M1, M2, ...: a device card's name, a table {card = NAME, <parameter "
                                   "overrides>}, or an inline device {family = NAME, <parameters>}; one family"),
    "parameters": KeySpec("table", "the circuit's parameters in SI units (one key per parameter, see the type)"),
    "simulation": KeySpec("table", "the documented time step and input range ([simulation] keys)"),
    "verify": KeySpec("table", "the standard verification stimuli of memsim verify ([verify] keys)"),
}
_SIM = {
    "dt": KeySpec("float", "the time step (the integrator sub-steps stiff parts by itself)", unit="s", lo=0.0,
                  lo_open=True, rule="<= 0.1 x the fastest memristor's tau and <= the synapse's tau_s"),
    "input_range": KeySpec("range", "the documented input-current range", unit="A"),
}
_VERIFY = {
    "duration": KeySpec("float", "length of each verification stimulus", unit="s", lo=0.0, lo_open=True),
    "step_current": KeySpec("float", "amplitude of the current step", unit="A", lo=0.0, lo_open=True),
    "ramp_current": KeySpec("float", "final current of the ramp", unit="A", lo=0.0, lo_open=True),
    "train_amplitude": KeySpec("float", "amplitude of each input spike of the random spike train", unit="A", lo=0.0,
                               lo_open=True),
    "train_rate": KeySpec("float", "mean rate of the random input spike train", unit="Hz", lo=0.0, lo_open=True),
    "seed": KeySpec("int", "seed of the spike train's random draw", default=0),
}

#: the coarsest time step allowed, as a fraction of the fastest memristor's tau
DT_FRACTION_OF_TAU = 0.1


@dataclass(frozen=True)
class NeuronVerify:
    duration: float
    step_current: float
    ramp_current: float
    train_amplitude: float
    train_rate: float
    seed: int


@dataclass(frozen=True)
class NeuronCard(LibraryEntry):
    name: str
    type: str
    circuit: NeuronCircuit
    description: str
    provenance: dict
    memristors: tuple[Card, ...]
    parameters: dict[str, float]
    dt: float
    input_range: tuple[float, float]
    verify: NeuronVerify
    path: Path | None = field(default=None, compare=False)

    def namespaces(self):
        """(circuit parameters, memristor parameters) as namespaces of floats."""
        return SimpleNamespace(**self.parameters), [SimpleNamespace(**c.parameters) for c in self.memristors]

    def with_parameters(self, **overrides) -> "NeuronCard":
        """A copy with circuit parameters (or ``M1_<name>`` memristor parameters) overridden, re-validated."""
        params = dict(self.parameters)
        mems = [dict(c.parameters) for c in self.memristors]
        for key, value in overrides.items():
            if key[:1] == "M" and "_" in key and key.split("_", 1)[0][1:].isdigit():
                k = int(key.split("_", 1)[0][1:]) - 1
                if not 0 <= k < len(mems):
                    raise ParameterError(key, value, f"M1..M{len(mems)}_<param>", "name an existing memristor")
                mems[k][key.split("_", 1)[1]] = value
            else:
                params[key] = value
        cards = []
        for k, (card, p) in enumerate(zip(self.memristors, mems)):
            cards.append(Card(name=card.name, family=card.family, description=card.description,
                              provenance=card.provenance, parameters=card.family.validate(p, f"{self.name}.M{k + 1}"),
                              voltage_range=card.voltage_range, verify=card.verify, path=card.path))
        params = self.circuit.validate(params, self.name)
        check_dt(self.dt, cards, params, self.name)
        return NeuronCard(self.name, self.type, self.circuit, self.description, self.provenance, tuple(cards),
                          params, self.dt, self.input_range, self.verify, self.path)


def check_dt(dt, memristors, params, where: str = "") -> float:
    """A time step must resolve the memristors' switching time and the synapse."""
    field_ = f"{where}.dt" if where else "dt"
    if not is_finite_number(dt) or dt <= 0:
        raise ParameterError(field_, dt, "a positive time step in s", "give dt in seconds, e.g. 1e-5")
    taus = [float(c.parameters["tau"]) for c in memristors]
    limit = min(min(taus) * DT_FRACTION_OF_TAU, float(params["tau_s"]))
    if dt > limit * (1 + 1e-12):
        raise ParameterError(field_, dt, f"(0, {limit:g}] s (<= {DT_FRACTION_OF_TAU:g} x the memristor tau "
                             f"{min(taus):g} s and <= the synapse tau_s {params['tau_s']:g} s)",
                             f"use dt <= {limit:g} s; the integrator sub-steps stiff parts by itself")
    return float(dt)


def _memristor(spec, where: str) -> Card:
    if isinstance(spec, str):
        return load_card(spec)
    if not isinstance(spec, dict):
        raise CardError(f"{where}: give a device card name or a table (card = ... or family = ...)")
    spec = dict(spec)
    if "card" in spec:
        base = load_card(spec.pop("card"))
        params = dict(base.parameters)
        params.update(spec)
        return Card(name=base.name, family=base.family, description=base.description, provenance=base.provenance,
                    parameters=base.family.validate(params, where), voltage_range=base.voltage_range,
                    verify=base.verify, path=base.path)
    if "family" not in spec:
        raise CardError(f"{where}: an inline memristor needs 'family' (or 'card' to reuse a device card)")
    family = get_family(spec.pop("family"), f"{where}.family")
    name = spice_name(spec.pop("name", where.replace(".", "_")), f"{where}.name")
    return Card(name=name, family=family, description=f"memristor of neuron card ({where})", provenance={},
                parameters=family.validate(spec, where), voltage_range=(-1.0, 1.0), verify=None)


def parse_neuron_card(data: dict, source: str, path: Path | None = None) -> NeuronCard:
    check_keys(data, _TOP, source)
    name = data.get("name")
    spice_name(name, f"{source}.name")  # a SPICE subcircuit name and a file name (NAME.lib)
    type_ = data.get("type")
    mems = data.get("memristors")
    if not isinstance(mems, dict):
        raise CardError(f"{source}: missing [memristors] table (M1 = \"device card\" ...)")
    cards = []
    for k in range(len(mems)):
        key = f"M{k + 1}"
        if key not in mems:
            raise CardError(f"{source}.memristors: expected keys M1..M{len(mems)}, got {sorted(mems)}")
        cards.append(_memristor(mems[key], f"{name}.{key}"))
    families = {c.family.name for c in cards}
    if len(families) != 1:
        raise CardError(f"{source}.memristors: all memristors must share one family, got {sorted(families)}")
    circuit = circuit_for(type_, cards[0].family, f"{source}.type")
    if len(cards) != circuit.n_memristors:
        raise CardError(f"{source}.memristors: a '{type_}' neuron has {circuit.n_memristors} memristor(s), "
                        f"the card gives {len(cards)}")
    check_required(data, _TOP, source)  # after the memristors and type: their errors say more
    params = data.get("parameters")
    if not isinstance(params, dict):
        raise CardError(f"{source}: missing [parameters] table")
    params = circuit.validate(params, f"{name}")
    sim = read_table(data["simulation"], _SIM, f"{source}.simulation")
    dt = check_dt(sim["dt"], cards, params, name)
    rng = sim["input_range"]
    verify = NeuronVerify(**read_table(data["verify"], _VERIFY, f"{source}.verify"))
    prov = data.get("provenance", _TOP["provenance"].default)
    if not isinstance(prov, dict):
        raise CardError(f"{source}: [provenance] must be a table")
    return NeuronCard(name=name, type=type_, circuit=circuit, description=str(data.get("description", _TOP["description"].default)),
                      provenance={k: str(v) for k, v in prov.items()}, memristors=tuple(cards), parameters=params,
                      dt=dt, input_range=(float(rng[0]), float(rng[1])), verify=verify, path=path)


def list_neuron_cards(unreadable: list[tuple[str, str]] | None = None) -> list[str]:
    """Names of the neuron cards on the device search path; files that are not readable TOML are left out
    (and named with their error in ``unreadable`` when a list is given)."""
    out = []
    for name, path in _card_files().items():
        try:
            data = read_toml(path, what="card")
        except CardError as exc:
            if unreadable is not None:
                unreadable.append((name, str(exc)))
            continue
        if "type" in data and "family" not in data:
            out.append(name)
    return out


def load_neuron_card(name_or_path) -> NeuronCard:
    """Load and validate a neuron card by name (search path of :mod:`memsim.devices.cards`) or path."""
    try:
        path = card_path(name_or_path)
    except CardError:
        key = str(name_or_path)
        names = list_neuron_cards()
        hint = suggest(key, names, f"the neuron cards are {names} ('memsim neuron --list')")
        raise CardError(f"unknown neuron card '{key}'; {hint}") from None
    data = read_toml(path)
    if "family" in data and "type" not in data:
        raise CardError(f"{path}: this is a device card (family = {data['family']!r}), not a neuron card; "
                        "use 'memsim device' for it")
    return parse_neuron_card(data, str(path.name), path)
