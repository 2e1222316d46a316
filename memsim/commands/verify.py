"""``memsim verify``: every model against ngspice, as a table of max errors."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("verify", help="compare every torch model with ngspice under standard stimuli")
    p.add_argument("--kind", action="append", help="only this kind of model (device, neuron, crossbar); repeatable")
    p.add_argument("--model", action="append", help="only this card/preset; repeatable")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..verify import collect, format_table, run_checks

    results = run_checks(collect(args.kind, args.model), progress=not args.quiet)
    print(format_table(results))
    if args.json:
        from ..io import atomic_write_text
        atomic_write_text(args.json, json.dumps([r.__dict__ | {"passed": r.passed} for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1
