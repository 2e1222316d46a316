"""``memsim device``: list cards, draw I-V hysteresis (SPICE vs torch), export `.lib` subcircuits, fit cards to data."""
from __future__ import annotations

import sys

from ..devices.cards import card_path, list_cards, load_card, with_parameters
from ..devices.netlist import subcircuit
from ..devices.simulate import SPICE_STEP_FRACTION, spice_trace, standard_stimuli, torch_trace
from ..errors import CardError, ParameterError
from ..fitting.command import add_parser as add_fit_parser
from ..io import atomic_write_text
from ..plots import hysteresis_figure, save
from ..pulse.cards import is_pulse_card, list_pulse_cards, load_pulse_card
from ..pulse.families import NOISE
from ..schema import read_toml
from .argtypes import plot_file
from .listing import load_listed


def register(sub) -> None:
    p = sub.add_parser("device", help="device cards: list, info, iv plots, SPICE export, fit")
    dsub = p.add_subparsers(dest="device_command", required=True, metavar="ACTION")

    lst = dsub.add_parser("list", help="list the device cards and their families")
    lst.set_defaults(func=run_list)

    info = dsub.add_parser("info", help="show a card: family, parameters, provenance")
    info.add_argument("card", help="card name (memsim device list) or path to a .toml card")
    info.set_defaults(func=run_info)

    iv = dsub.add_parser("iv", help="pinched hysteresis loops, SPICE and torch overlaid")
    iv.add_argument("card", help="card name (memsim device list) or path to a .toml card")
    iv.add_argument("--plot", required=True, metavar="FILE", type=plot_file,
                    help="output figure (.png, .svg, .pdf, ...)")
    iv.add_argument("--no-spice", action="store_true", help="torch only (no ngspice needed)")
    iv.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a card parameter (SI units), validated like the card; repeatable")
    iv.set_defaults(func=run_iv)

    ex = dsub.add_parser("export", help="write the card's ngspice subcircuit (.lib)")
    ex.add_argument("card", nargs="?", help="card name or path (omit with --all)")
    ex.add_argument("-o", "--output", help="output file (default: next to the card; '-' for stdout)")
    ex.add_argument("--all", action="store_true", help="regenerate the .lib of every card")
    ex.set_defaults(func=run_export)

    add_fit_parser(dsub)


def run_list(args) -> int:
    unreadable: list = []
    for name, card in load_listed(list_cards(unreadable=unreadable), load_card, unreadable):
        print(f"{name:24s} {card.family.name:26s} {card.description}")
    pulse = list(load_listed(list_pulse_cards(), load_pulse_card))
    if pulse:
        print("\npulse-response cards (behavioural synapse models, no circuit):")
        for name, card in pulse:
            print(f"{name:24s} {card.family.name:26s} {card.description}")
    return 0


def _load_device_card(name):
    """A device card; a pulse-response card named here gets a message saying what it is."""
    path = card_path(name)
    if is_pulse_card(read_toml(path, what="card")):
        raise CardError(f"{path}: '{path.stem}' is a pulse-response card (a behavioural synapse model, no circuit); "
                        "'memsim device info' shows it. Fix: give a device card (memsim device list, first section)")
    return load_card(path)


def _pulse_info(path) -> int:
    card = load_pulse_card(path)
    print(f"{card.name}: {card.description}\nfamily: {card.family.title} ({card.family.name}), pulse-response card "
          f"(no circuit)\nref: {card.family.reference}")
    specs = {q.name: q for q in (*card.family.all_params(), *NOISE)}
    print(f"  {'parameter':10s}   {'value':12s} {'unit':10s} {'allowed range':24s} meaning")
    for k, v in [*card.parameters.items(), *card.noise.items()]:
        q = specs[k]
        rng = q.allowed()[:-len(q.unit)].rstrip() if q.unit and q.allowed().endswith(q.unit) else q.allowed()
        print(f"  {k:10s} = {v:<12g} {q.unit or '-':10s} {rng:24s} {q.doc}")
    print(f"read voltage: {card.read_voltage:g} V")
    if card.pulse:
        print("measured with pulses: " + ", ".join(f"{k} {v:g}" for k, v in card.pulse.items()))
    for k, v in card.provenance.items():
        print(f"{k}: {v}")
    return 0


def run_info(args) -> int:
    path = card_path(args.card)
    if is_pulse_card(read_toml(path, what="card")):
        return _pulse_info(path)
    card = load_card(path)
    print(f"{card.name}: {card.description}\nfamily: {card.family.title} ({card.family.name})")
    specs = {q.name: q for q in card.family.all_params()}
    print(f"  {'parameter':10s}   {'value':12s} {'unit':10s} {'allowed range':24s} meaning")
    for k, v in card.parameters.items():
        q = specs[k]
        rng = q.allowed()[:-len(q.unit)].rstrip() if q.unit and q.allowed().endswith(q.unit) else q.allowed()
        print(f"  {k:10s} = {v:<12g} {q.unit or '-':10s} {rng:24s} {q.doc}")
    print(f"valid voltage: {list(card.voltage_range)} V")
    for k, v in card.provenance.items():
        print(f"{k}: {v}")
    return 0


def parse_params(items: list[str]) -> dict[str, float]:
    """``["R_on=100", "p=2"]`` -> ``{"R_on": 100.0, "p": 2.0}``; the card validates names and ranges."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ParameterError("--param", item, "NAME=VALUE with a number in SI units", "e.g. --param R_on=100")
    return params


def run_iv(args) -> int:
    card = _load_device_card(args.card)
    overrides = parse_params(args.param)
    if overrides:
        card = with_parameters(card, **overrides)
    traces = []
    for std in standard_stimuli(card):
        model = torch_trace(card, std.stimulus, std.dt)
        ref = None if args.no_spice else spice_trace(card, std.stimulus, std.dt * SPICE_STEP_FRACTION)
        traces.append((std.label, model, ref))
    path = save(hysteresis_figure(card.name, traces), args.plot)
    print(f"wrote {path}")
    return 0


def run_export(args) -> int:
    if args.all == bool(args.card):
        print("memsim device export: give a CARD or --all", file=sys.stderr)
        return 2
    for name in (list_cards() if args.all else [args.card]):
        card = load_card(name) if args.all else _load_device_card(name)
        text = subcircuit(card)
        if args.output == "-":
            sys.stdout.write(text)
            continue
        path = atomic_write_text(args.output or card.lib_path(), text)
        print(f"wrote {path}")
    return 0
