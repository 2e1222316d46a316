"""memsim's imports keep DESIGN.md's layers ("Layout"): no import runs upward, no two packages import each other,
and memsim modules are imported at the top of a module, where the reader (and Python, at import time) sees them.

A lower layer importing a higher one ties the equations and the device stack to the training stack; the layers
below are the ones of DESIGN.md, refined. Two packages that import each other are one package in two folders, and
an import moved into a function to hide such a circle hides it from these tests too: so every import counts,
inside functions as well, and an import inside a function is allowed only where it has to be lazy:

* the command line (:data:`CLI`): ``memsim.cli`` imports every command module to build its parser, so
  ``memsim --help`` costs what ``import memsim`` and those modules' top levels cost; each command imports the
  stack it runs (training, deployment, sweeps...) inside the function that runs it. Such an import is allowed
  when ``memsim --help`` does not load that module anyway (checked in a fresh interpreter), and
  :func:`test_help_leaves_the_command_stacks_unloaded` checks that the stacks stay out of it;
* imports under ``if TYPE_CHECKING:`` (annotations only, never executed);
* the built-in network kinds, loaded by name with ``importlib.import_module`` on first use (``BUILTIN`` in
  :mod:`memsim.deploy.kinds`, as a plugin's entry point would be): not an import statement, so not an edge here.

Not exceptions, because the laziness they need lives elsewhere: ``import memsim`` works without ngspice because
:mod:`memsim.spice` loads PySpice on first use (its modules import the bridge at their top), and matplotlib
(half a second) is imported by :func:`memsim.plots.pyplot` when the first figure is drawn;
:func:`test_importing_memsim_loads_neither_ngspice_nor_matplotlib` checks both. A sweep worker needs torch
anyway (``import memsim`` imports it), so :mod:`memsim.sweep` imports its modules eagerly.

The package facade (``memsim/__init__.py``) re-exports from every layer and is left out of the layer test.
"""
import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import memsim

ROOT = Path(memsim.__file__).resolve().parent

#: module prefix -> layer (the longest matching prefix wins)
LAYERS = {
    # 0: the math namespace and helpers every layer may use
    "memsim.mathns": 0, "memsim.errors": 0, "memsim.io": 0, "memsim.schema": 0, "memsim.resources": 0,
    "memsim.plots": 0, "memsim.stimuli": 0, "memsim._data": 0, "memsim.checks": 0, "memsim.safetext": 0,
    "memsim.progress": 0, "memsim.allocator": 0,
    # 1: equations only
    "memsim.families": 1, "memsim.neurons.circuits": 1,
    # 2: cards, SPICE bridge, torch integrators and the device / neuron simulations built on them;
    #    device fitting beside them
    "memsim.devices": 2, "memsim.neurons": 2, "memsim.spice": 2, "memsim.integrate": 2, "memsim.scalar": 2,
    "memsim.fitting": 2, "memsim.pulse": 2,
    # 3: crossbar; the variation fit writes a crossbar preset
    "memsim.crossbar": 3, "memsim.fitting.variation": 3,
    # 4: layers; in-situ training's device-pair weights and pulsed optimisers (on the pulse responses)
    "memsim.nn": 4, "memsim.insitu": 4,
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

#: the command line: the layer whose functions may import the stacks they run (see the module's docstring)
CLI = 8

# PENDING_*: imports that work in progress does not yet follow, listed so that it can land on its own (the pulse
# responses and the fitting have landed: both empty). An entry that no longer occurs fails, so the lists only shrink.

#: package edges left out of the circle test
PENDING_EDGES: set[tuple[str, str]] = set()
#: function-local imports to move to the top, as (module, function, imported module)
PENDING_LOCAL: set[tuple[str, str, str]] = set()


def layer(module: str) -> int | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else LAYERS[best]


def module_name(path: Path) -> str:
    parts = ["memsim", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """True when ``name`` (``memsim.a.b``) is a module or package of memsim, not a name inside one."""
    base = ROOT.joinpath(*name.split(".")[1:])
    return name.startswith("memsim.") and (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file())


def package(module: str) -> str:
    """The package a module belongs to, for the circle test: ``memsim.training.loop`` -> ``memsim.training``."""
    return ".".join(module.split(".")[:2])


@dataclass(frozen=True)
class Import:
    line: int
    target: str              # the imported memsim module, or another top-level name (torch, numpy...)
    function: str | None     # the function the import sits in; None at module level (or in a class body)

    def where(self, module: str) -> str:
        return f"{module}{f'.{self.function}()' if self.function else ''}, line {self.line}"


@cache
def imports(path: Path) -> tuple[Import, ...]:
    """Every import of the file, at module level and inside functions, TYPE_CHECKING blocks excepted."""
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other, function)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(child.lineno, a.name, function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                # "from . import spice" imports the module memsim.spice; "from .loop import train" memsim....loop
                found.extend(Import(child.lineno, f"{mod}.{a.name}" if is_module(f"{mod}.{a.name}") else mod,
                                    function) for a in child.names)
            inner = function or (child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
            visit(child, inner)

    visit(tree, None)
    return tuple(dict.fromkeys(found))  # "from .a import x, y": one import of memsim...a


def memsim_imports(path: Path):
    return [i for i in imports(path) if i.target == "memsim" or i.target.startswith("memsim.")]


def sources() -> list[tuple[str, Path]]:
    return [(module_name(p), p) for p in sorted(ROOT.rglob("*.py"))]


def _run(code: str) -> set[str]:
    """The modules loaded after running ``code`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(out.stdout.split())


@cache
def loaded_by_help() -> set[str]:
    """The modules ``memsim --help`` loads: memsim, the command line and every command module's top level."""
    return _run("import memsim.cli; memsim.cli.build_parser()")


def test_every_module_has_a_layer():
    missing = [me for me, _ in sources() if me != "memsim" and layer(me) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_import_runs_upward():
    upward = []
    for me, path in sources():
        if me == "memsim":
            continue
        for imp in memsim_imports(path):
            if imp.target != "memsim" and (layer(imp.target) or 0) > layer(me):
                upward.append(f"{imp.where(me)} (layer {layer(me)}) imports {imp.target} (layer {layer(imp.target)})")
    assert not upward, "\n".join(upward)


def test_no_import_circle_between_packages():
    edges: dict[tuple[str, str], dict[str, None]] = {}
    for me, path in sources():
        for imp in memsim_imports(path):
            edge = (package(me), package(imp.target))
            if edge[0] != edge[1] and edge not in PENDING_EDGES:
                edges.setdefault(edge, {})[imp.where(me)] = None  # each import statement once
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def path_back(start: str) -> list[str] | None:
        """A shortest path start -> ... -> start (breadth first), or None."""
        seen, queue = {start: [start]}, [start]
        for node in queue:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return seen[node] + [start]
                if nxt not in seen:
                    seen[nxt] = seen[node] + [nxt]
                    queue.append(nxt)
        return None

    circles = {}
    for start in sorted(graph):
        cycle = path_back(start)
        if cycle and frozenset(cycle) not in circles:
            steps = [f"  {a} -> {b}: {', '.join(list(edges[(a, b)])[:3])}" for a, b in zip(cycle, cycle[1:])]
            circles[frozenset(cycle)] = " -> ".join(cycle) + "\n" + "\n".join(steps)
    assert not circles, ("packages that import each other (move what both need below them, or the import that "
                         "points the wrong way):\n" + "\n".join(circles.values()))
    stale = [e for e in PENDING_EDGES if e not in {(package(me), package(i.target)) for me, path in sources()
                                                   for i in memsim_imports(path)}]
    assert not stale, f"these PENDING_EDGES are gone: remove them from the list: {stale}"


def test_memsim_modules_are_imported_at_the_top():
    help_loads = loaded_by_help()
    local, seen = [], set()
    for me, path in sources():
        for imp in memsim_imports(path):
            if imp.function is None:
                continue
            key = (me, imp.function, imp.target)
            seen.add(key)
            if (layer(me) == CLI and imp.target not in help_loads) or key in PENDING_LOCAL:
                continue
            why = ("`memsim --help` loads it anyway, so the lazy import saves nothing" if layer(me) == CLI
                   else "import it at the top of the module; if that makes a circle, the import points the wrong "
                        "way or the function lives in the wrong module")
            local.append(f"{imp.where(me)}: imports {imp.target} ({why})")
    assert not local, "function-local imports of memsim modules:\n" + "\n".join(local)
    stale = sorted(PENDING_LOCAL - seen)
    assert not stale, f"these PENDING_LOCAL imports are gone: remove them from the list: {stale}"


def test_help_leaves_the_command_stacks_unloaded():
    """What the command line's lazy imports are for: `memsim --help` loads none of the stacks its commands run."""
    stacks = {"memsim.training", "memsim.ann", "memsim.interop", "memsim.deploy", "memsim.sweep", "matplotlib",
              "PySpice", "pandas", "sklearn", "ray"}
    loaded = stacks & ({package(m) for m in loaded_by_help()} | {m.split(".")[0] for m in loaded_by_help()})
    assert not loaded, f"`memsim --help` loads {sorted(loaded)}: import them inside the command that runs them"


def test_importing_memsim_loads_neither_ngspice_nor_matplotlib():
    """Every memsim module imports without ngspice (DESIGN.md) and without drawing: the SPICE bridge loads PySpice,
    and memsim.plots matplotlib, on first use."""
    modules = [m.name for m in pkgutil.walk_packages(memsim.__path__, "memsim.") if m.name != "memsim.__main__"]
    loaded = _run("import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in modules))
    assert set(modules) <= loaded
    drawn = {"PySpice", "matplotlib"} & {m.split(".")[0] for m in loaded}
    assert not drawn, f"importing memsim loads {sorted(drawn)}: import it where it is used (memsim.spice, memsim.plots)"
