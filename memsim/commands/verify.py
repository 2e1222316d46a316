"""``memsim verify``: every model against ngspice, as a table of max errors."""
from __future__ import annotations

import json

from ..crossbar.presets import list_presets
from ..devices.cards import list_cards
from ..errors import MemsimError
from ..io import atomic_write_text
from ..pulse.cards import list_pulse_cards
from ..schema import closest

KINDS = ("device", "neuron", "crossbar")


def register(sub) -> None:
    p = sub.add_parser("verify", help="compare every torch model with ngspice under standard stimuli")
    p.add_argument("--kind", action="append", choices=KINDS, help="only this kind of model; repeatable")
    p.add_argument("--model", action="append", help="only this card/preset (a name from memsim device list, memsim "
                                                     "neuron --list, memsim crossbar list); repeatable")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..verify import collect, format_table, run_checks  # the checks load every model's simulation

    checks = collect(args.kind, args.model)
    if not checks:
        pulse_cards = set(list_pulse_cards())
        behavioural = sorted(set(args.model or []) & pulse_cards)
        if behavioural:
            raise MemsimError(f"{', '.join(behavioural)}: a pulse-response card (a behavioural synapse model) has no "
                              "circuit to compare with ngspice. Fix: verify device, neuron or crossbar models (memsim "
                              "device list, first section)")
        known = [n for n in list_cards(kind=None) if n not in pulse_cards] + list_presets()
        near = sorted({c for c in (closest(m, known) for m in args.model or []) if c})
        hint = f"did you mean {near}? " if near else ""
        raise MemsimError(f"no checks match --kind {args.kind or 'any'} --model {args.model or 'any'}. Fix: {hint}"
                          f"name a model of that kind (memsim device list, memsim neuron --list, memsim crossbar "
                          f"list)")
    results = run_checks(checks, progress=not args.quiet)
    print(format_table(results))
    if args.json:
        atomic_write_text(args.json, json.dumps([r.__dict__ | {"passed": r.passed} for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1
