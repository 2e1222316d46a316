"""``memsim configs``: the example training configs that ship with memsim (usable by name in ``memsim train``)."""
from __future__ import annotations

from ..errors import ConfigError
from ..resources import bundled_configs, data_dir, resolve_config


def register(sub) -> None:
    p = sub.add_parser("configs", help="list the bundled training configs (memsim train NAME runs one)",
                       description="List the example training configs bundled with memsim. Each can be given "
                                   "by name to 'memsim train', e.g. 'memsim train digits_quickstart'; --show NAME "
                                   "prints one, to copy and edit.")
    p.add_argument("--show", metavar="NAME", help="print the TOML of one bundled config")
    p.set_defaults(func=run)


def run(args) -> int:
    configs = bundled_configs()
    if args.show:
        print(resolve_config(args.show).read_text(), end="")
        return 0
    if not configs:
        raise ConfigError(f"no bundled configs found in {data_dir('configs')}. Fix: reinstall memsim")
    for name, path in configs.items():
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        print(f"{name:26s} {first}")
    print(f"({data_dir('configs')}; run one with: memsim train NAME)")
    return 0
