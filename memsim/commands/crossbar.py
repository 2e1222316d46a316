"""``memsim crossbar``: list presets, tile reports, SPICE netlist export, IR-drop maps."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..crossbar.irdrop import PATTERNS, irdrop_figure, irdrop_map, size_sweep, size_sweep_figure
from ..crossbar.netlist import tile_netlist
from ..crossbar.operator import operator_bytes
from ..crossbar.presets import CROSSBAR_DIR, list_presets, load_preset
from ..crossbar.tiling import TileGrid
from ..crossbar.verify import VERIFY_SIZE, random_tile
from ..errors import ParameterError
from ..io import atomic_write_text
from ..plots import save
from .argtypes import plot_file
from .listing import load_listed


def register(sub) -> None:
    p = sub.add_parser("crossbar", help="crossbar presets: list, info/tiling, SPICE netlist export, IR-drop maps")
    csub = p.add_subparsers(dest="crossbar_command", required=True, metavar="ACTION")

    lst = csub.add_parser("list", help="list the crossbar presets")
    lst.set_defaults(func=run_list)

    info = csub.add_parser("info", help="show a preset; with --shape, how a weight matrix tiles onto it")
    info.add_argument("preset", help="preset name (memsim crossbar list) or path to a preset .toml")
    info.add_argument("--shape", nargs=2, type=int, metavar=("OUT", "IN"), help="weight matrix shape to tile")
    info.set_defaults(func=run_info)

    ex = csub.add_parser("export", help="write one tile of the preset as an ngspice .op netlist")
    ex.add_argument("preset", nargs="?", help="preset name or path (omit with --all)")
    ex.add_argument("-o", "--output", default="-", help="output file ('-' = stdout, the default)")
    ex.add_argument("--all", action="store_true",
                    help="write the reference netlist of every preset to crossbar/<name>.cir: the small tile that "
                         "`memsim verify --kind crossbar` checks (nonlinear cells where the card is nonlinear)")
    ex.add_argument("--cells", choices=("linear", "nonlinear"), default="linear",
                    help="linear: resistors at the read-voltage chord conductance; nonlinear: the card's I-V")
    ex.add_argument("--size", type=int, help="tile size N (N x N; default: the preset's tile)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the random conductances/states and inputs")
    ex.set_defaults(func=run_export)

    ir = csub.add_parser("irdrop", help="voltage-drop heatmap and output error vs ideal (random and all-ON weights); "
                                        "with --sizes, the error per tile size and wire resistance")
    ir.add_argument("preset", help="preset name or path")
    ir.add_argument("--plot", metavar="FILE", type=plot_file, help="output figure (.png or .svg)")
    ir.add_argument("--cells", choices=("linear", "nonlinear"), default="linear",
                    help="heatmaps: linear cells (chord conductance at v_read) or the card's own I-V (Newton)")
    ir.add_argument("--seed", type=int, default=0, help="seed of the random weight pattern")
    ir.add_argument("--sizes", type=_int_list, metavar="N,N,...",
                    help="tile sizes for a table of the column-current error against the ideal product, e.g. "
                         "16,32,64,128,256,512 (exact operator; all inputs at v_max, random weights)")
    ir.add_argument("--wires", type=_float_list, default=[0.1, 1.0, 2.5], metavar="R,R,...",
                    help="wire resistances per segment in Ohm for --sizes (default 0.1,1,2.5)")
    ir.set_defaults(func=run_irdrop)


def run_list(args) -> int:
    for _, preset in load_listed(list_presets(), load_preset):
        print(preset.summary())
    return 0


def run_info(args) -> int:
    p = load_preset(args.preset)
    print(p.summary())
    print(f"description: {p.description}\nprovenance: {p.provenance}")
    lo, hi = p.cell_window()
    print(f"cell window (incl. access device): {lo:.4g}..{hi:.4g} S; noise: {p.noise.as_dict()}")
    if args.shape:
        print(TileGrid(args.shape[0], args.shape[1], p.rows, p.cols, p.scheme).report())
    return 0


def reference_netlist(preset) -> str:
    """The committed reference netlist of a preset: its verify tile (8x8, seed 0)."""
    size = min(VERIFY_SIZE, preset.rows, preset.cols)
    g, x, v = random_tile(preset, size, 0)
    cells = {"card": preset.card, "x": x.numpy()} if preset.nonlinear else {"g": g.numpy()}
    return tile_netlist(v.numpy(), preset.circuit, title=f"memsim crossbar {preset.name} reference tile (seed 0)",
                        **cells)


def run_export(args) -> int:
    if args.all == bool(args.preset):
        print("memsim crossbar export: give a PRESET or --all", file=sys.stderr)
        return 2
    if args.all:
        for name in list_presets():
            p = load_preset(name)
            path = (p.path.parent if p.path is not None else CROSSBAR_DIR) / f"{name}.cir"
            print(f"wrote {atomic_write_text(path, reference_netlist(p))}")
        return 0
    p = load_preset(args.preset)
    size = p.rows if args.size is None else args.size
    if size < 1:
        raise ParameterError("--size", size, "an integer >= 1", "give the tile size N")
    g, x, v = random_tile(p, size, args.seed)
    cells = {"g": g.numpy()} if args.cells == "linear" else {"card": p.card, "x": x.numpy()}
    text = tile_netlist(v.numpy(), p.circuit, title=f"memsim crossbar {p.name} seed {args.seed}", **cells)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        print(f"wrote {atomic_write_text(args.output, text)}")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers (e.g. 16,32,64)")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': give tile sizes >= 1, e.g. 16,32,64")
    return vals


def _float_list(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers (e.g. 0.1,1,2.5)")
    if not vals or min(vals) < 0 or not all(np.isfinite(vals)):
        raise argparse.ArgumentTypeError(f"'{text}': give finite wire resistances >= 0 Ohm, e.g. 0.1,1,2.5")
    return vals


def run_irdrop(args) -> int:
    p = load_preset(args.preset)
    if args.sizes:
        big = max(args.sizes)
        print(f"memory: the operator precompute of one {big}x{big} tile needs ~{operator_bytes(1, big, big) / 2**20:.0f} MB")
        sweep = size_sweep(p, args.sizes, args.wires, seed=args.seed, progress=True)
        print(f"{p.summary()}\ncolumn-current error of a random-weight tile, all inputs at {p.v_max} V:")
        print(sweep.table())
        if args.plot:
            print(f"wrote {save(size_sweep_figure(sweep), args.plot)}")
        return 0
    maps = [irdrop_map(p, pat, args.seed, args.cells) for pat in PATTERNS]
    print(p.summary())
    for m in maps:
        print(f"{m.pattern:7s}: max cell voltage drop {m.max_drop * 1e3:.3f} mV of {m.v_in * 1e3:.0f} mV; "
              f"max column error vs ideal {m.max_error:.3%}")
    if args.plot:
        print(f"wrote {save(irdrop_figure(p, maps), args.plot)}")
    return 0
