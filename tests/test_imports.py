"""No import runs upward in memsim's layers (DESIGN.md, "Layout"), including imports inside functions.

A lower layer importing a higher one ties the equations and the device stack to the training stack; the
layers below are the ones of DESIGN.md, refined. The package facade (``memsim/__init__.py``) re-exports from
every layer and is left out. Imports under ``if TYPE_CHECKING:`` are annotations only and are allowed.
"""
import ast
from pathlib import Path

import memsim

ROOT = Path(memsim.__file__).resolve().parent

#: module prefix -> layer (the longest matching prefix wins)
LAYERS = {
    # 0: the math namespace and helpers every layer may use
    "memsim.mathns": 0, "memsim.errors": 0, "memsim.io": 0, "memsim.schema": 0, "memsim.resources": 0,
    "memsim.plots": 0, "memsim.stimuli": 0, "memsim._data": 0, "memsim.checks": 0, "memsim.safetext": 0,
    "memsim.progress": 0,
    # 1: equations only
    "memsim.families": 1, "memsim.neurons.circuits": 1,
    # 2: cards, SPICE bridge, torch integrators and the device / neuron simulations built on them;
    #    device fitting beside them
    "memsim.devices": 2, "memsim.neurons": 2, "memsim.spice": 2, "memsim.integrate": 2, "memsim.scalar": 2,
    "memsim.fitting": 2, "memsim.pulse": 2,
    # 3: crossbar; the variation fit writes a crossbar preset
    "memsim.crossbar": 3, "memsim.fitting.variation": 3,
    # 4: layers
    "memsim.nn": 4,
    # 5: deployment: the chip, the network-kind registry, evaluation on chips, what a chip does per inference
    "memsim.deploy": 5,
    # 6: the network kinds and their stacks, registered with deploy (the float ANN path is the MSNN training
    #    stack's sibling: `memsim train` trains both)
    "memsim.training": 6, "memsim.ann": 6, "memsim.interop": 6,
    # 7: design-space sweeps and their cost model
    "memsim.sweep": 7,
    # 8: the command line
    "memsim.commands": 8, "memsim.cli": 8, "memsim.verify": 8, "memsim.__main__": 8, "memsim.fitting.command": 8,
}


def layer(module: str) -> int | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else LAYERS[best]


def module_name(path: Path) -> str:
    parts = ["memsim", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: str):
    """(line, imported module or name) for every import in the file, TYPE_CHECKING blocks excepted."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from . import spice" imports the module memsim.spice
            yield from ((node.lineno, f"{mod}.{a.name}" if layer(f"{mod}.{a.name}") is not None else mod)
                        for a in node.names)


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in ROOT.rglob("*.py") if module_name(p) != "memsim"
               and layer(module_name(p)) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_import_runs_upward():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        me = module_name(path)
        if me == "memsim":
            continue
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        for line, target in imports(path, package):
            if target.startswith("memsim.") and (layer(target) or 0) > layer(me):
                upward.append(f"{me} (layer {layer(me)}) imports {target} (layer {layer(target)}), line {line}")
    assert not upward, "\n".join(upward)
