"""``memsim verify``: every model against ngspice, as a table of max errors."""
from __future__ import annotations

import json

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
    from ..verify import collect, format_table, run_checks

    from ..errors import MemsimError

    checks = collect(args.kind, args.model)
    if not checks:
        from ..schema import closest

        from ..crossbar.presets import list_presets
        from ..devices.cards import list_cards
        known = list_cards(kind=None) + list_presets()
        near = sorted({c for c in (closest(m, known) for m in args.model or []) if c})
        hint = f"did you mean {near}? " if near else ""
        raise MemsimError(f"no checks match --kind {args.kind or 'any'} --model {args.model or 'any'}. Fix: {hint}"
                          f"name a model of that kind (memsim device list, memsim neuron --list, memsim crossbar "
                          f"list)")
    results = run_checks(checks, progress=not args.quiet)
    print(format_table(results))
    if args.json:
        from ..io import atomic_write_text
        atomic_write_text(args.json, json.dumps([r.__dict__ | {"passed": r.passed} for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1
