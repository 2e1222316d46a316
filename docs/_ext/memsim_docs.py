"""Sphinx extension: memsim's reference pages, generated from the code at build time.

Nothing here retypes what the code knows. At ``builder-inited`` it writes the pages that follow the package's
shape (one API page per package of ``memsim``, one tutorial per notebook in ``notebooks/``, one page per
``benchmarks/*.md``); its directives render, while the site is built,

* ``memsim-api PACKAGE``    every public name (``__all__``) of a package and of its modules that have one;
* ``memsim-cli``            every ``memsim`` command from the argparse parsers of :mod:`memsim.cli`;
* ``memsim-schema NAME``    the keys of a TOML schema (``device-card``, ``neuron-card``, ``preset``,
  ``training-config``, ``sweep-spec``, ``study``, ``cost-model``, ``family-params``, ``neuron-params``) from the
  key specs the loaders validate with (:class:`memsim.schema.KeySpec`: type, unit, allowed, default, meaning);
* ``memsim-library NAME``   ``devices``, ``neurons``, ``presets`` or ``configs``: the bundled data, loaded;
* ``memsim-families``       each device family's equations, rendered as math from the family's own code
  (a SymPy math namespace beside memsim's torch, SPICE and Python ones), with its parameters;
* ``memsim-modules``        every module of the package with the first line of its docstring;
* ``memsim-verify``         the ``memsim verify`` table: the checks it runs and, when the build is asked to
  (``-D memsim_run_verify=1`` or ``MEMSIM_DOCS_VERIFY=1``), their results from running it.

``memsim-api``, ``memsim-modules``, ``memsim-families`` and ``memsim-schema preset`` parse reStructuredText (the
docstrings); in a Markdown page they sit inside an ``{eval-rst}`` block. Every page that uses one of these
directives is read again on every build (Sphinx cannot see that it depends on the code). memsim's docstrings
write code and equations as indented blocks after a paragraph; ``literal_indented_blocks`` shows those as written.

When the docs extra's ``sphinx-mathjax-offline`` is installed, the HTML site loads MathJax from a copy of it in
``_static/mathjax`` instead of a CDN (``memsim_local_mathjax``; :func:`local_mathjax`).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import io
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.fileutil import copy_asset
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parent.parent
REPO = DOCS.parent

#: where the build writes the pages it generates (ignored by git, rewritten on every build)
GENERATED = {"api": DOCS / "api", "tutorials": DOCS / "tutorials", "benchmarks": DOCS / "benchmarks"}
#: the generated files in each folder (the folders' index pages are written by hand); docs/.gitignore lists them
GENERATED_GLOB = {"api": "memsim*.rst", "tutorials": "*.ipynb", "benchmarks": "*.md"}
HANDWRITTEN = {"index.md"}


# ---------------------------------------------------------------------------------------------------------------
# what is public
# ---------------------------------------------------------------------------------------------------------------

@functools.cache
def packages() -> tuple[str, ...]:
    """``memsim`` and every subpackage (any depth), private ones (``_name``) left out."""
    import memsim
    out = ["memsim"]
    for info in pkgutil.walk_packages(memsim.__path__, "memsim."):
        if info.ispkg and not any(part.startswith("_") for part in info.name.split(".")):
            out.append(info.name)
    return tuple(out)


def _source_defines_all(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return False
    return any(isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in (node.targets if isinstance(node, ast.Assign)
                                                               else [node.target])) for node in tree.body)


@functools.cache
def modules_with_all(package: str) -> tuple[str, ...]:
    """The modules (not packages) directly in ``package`` whose source defines ``__all__``."""
    pkg = importlib.import_module(package)
    out = []
    for info in pkgutil.iter_modules(pkg.__path__, package + "."):
        if info.ispkg or info.name.rsplit(".", 1)[1].startswith("_"):
            continue
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and _source_defines_all(Path(spec.origin)):
            out.append(info.name)
    return tuple(out)


def public_names(module: str) -> list[str]:
    """``__all__``; a package without one: the names its ``__init__`` binds (no modules, no ``_names``)."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is not None:
        return list(names)
    import __future__
    return [n for n, v in vars(mod).items() if not n.startswith("_") and not inspect.ismodule(v)
            and not isinstance(v, __future__._Feature)]


@functools.cache
def api_entries() -> tuple[tuple[str, list[str]], ...]:
    """(module, public names) for every package and every module with ``__all__`` inside one, in page order."""
    out = []
    for package in packages():
        out.append((package, public_names(package)))
        out += [(m, public_names(m)) for m in modules_with_all(package)]
    return tuple(out)


def _is_routine(obj) -> bool:
    return inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj)


@functools.cache
def canonical_homes() -> dict[int, str]:
    """id(class or function) -> the dotted path it is documented under in full: the public path whose module is
    a prefix of the object's ``__module__``: the deepest such package, else the deepest such module, else the
    shallowest path."""
    candidates: dict[int, list[tuple[str, str]]] = {}
    pkgs = set(packages())
    for module, names in api_entries():
        mod = importlib.import_module(module)
        for name in names:
            obj = getattr(mod, name, None)
            if inspect.isclass(obj) or _is_routine(obj):
                candidates.setdefault(id(obj), []).append((module, name))
    homes = {}
    for key, paths in candidates.items():
        obj = getattr(importlib.import_module(paths[0][0]), paths[0][1])
        home_mod = getattr(obj, "__module__", "") or ""

        def rank(item, home_mod=home_mod):
            module = item[0]
            prefix = module == home_mod or home_mod.startswith(module + ".")
            return (not prefix, module not in pkgs, -len(module) if prefix else module.count("."))
        best = min(paths, key=rank)
        homes[key] = f"{best[0]}.{best[1]}"
    return homes


# ---------------------------------------------------------------------------------------------------------------
# generated pages
# ---------------------------------------------------------------------------------------------------------------

def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


_LOCAL_LINK = re.compile(r"(\]\()(?!https?:|mailto:|#|/)([^)\s]+)\)")


def generate_pages(app) -> None:
    """Write the pages that follow the repository's shape; remove those whose source has gone."""
    wanted: dict[Path, str | Path] = {}
    for package in packages():
        body = [_title(package), f".. memsim-api:: {package}\n"]
        wanted[GENERATED["api"] / f"{package}.rst"] = "\n".join(body)
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        wanted[GENERATED["tutorials"] / nb.name] = nb
    rel = os.path.relpath(REPO / "benchmarks", GENERATED["benchmarks"])
    for md in sorted((REPO / "benchmarks").glob("*.md")):
        # a copy, its links to files beside it (figures, tables) pointed back at benchmarks/; the other pages
        # of benchmarks/ are copied beside it, so links between them stay as they are
        wanted[GENERATED["benchmarks"] / md.name] = _LOCAL_LINK.sub(
            lambda m: m.group(0) if m.group(2).endswith(".md") else f"{m.group(1)}{rel}/{m.group(2)})",
            md.read_text())
    for kind, folder in GENERATED.items():
        for f in folder.glob(GENERATED_GLOB[kind]):
            if f not in wanted and f.name not in HANDWRITTEN:
                f.unlink()
    for path, content in wanted.items():
        if isinstance(content, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_bytes() != content.read_bytes():
                shutil.copyfile(content, path)
        else:
            _write(path, content)


# ---------------------------------------------------------------------------------------------------------------
# node helpers
# ---------------------------------------------------------------------------------------------------------------

def _cell(content) -> nodes.entry:
    entry = nodes.entry()
    if isinstance(content, nodes.Node):
        entry += content if isinstance(content, nodes.Body) else nodes.paragraph("", "", content)
    else:
        entry += nodes.paragraph(text="" if content is None else str(content))
    return entry


def table(headers: list[str], rows: list[list], widths: list[int] | None = None, classes=()) -> nodes.table:
    """A docutils table; a cell is text or an inline/body node (text is never parsed as markup)."""
    tbl = nodes.table(classes=["memsim-table", *classes])
    group = nodes.tgroup(cols=len(headers))
    tbl += group
    for w in widths or [1] * len(headers):
        group += nodes.colspec(colwidth=w)
    head = nodes.thead()
    row = nodes.row()
    for h in headers:
        row += _cell(h)
    head += row
    group += head
    body = nodes.tbody()
    for r in rows:
        row = nodes.row()
        for c in r:
            row += _cell(c)
        body += row
    group += body
    return tbl


def literal(text: str) -> nodes.literal:
    return nodes.literal(text=text)


def section(directive: SphinxDirective, title: str, ident: str | None = None) -> nodes.section:
    ident = nodes.make_id(ident or title)
    sec = nodes.section(ids=[ident], names=[nodes.fully_normalize_name(title)])
    sec += nodes.title(text=title)
    directive.state.document.note_implicit_target(sec, sec)
    # a label, so that any page can link here with {ref}`...`
    std = directive.env.domains["std"]
    std.anonlabels[ident] = directive.env.docname, ident
    std.labels[ident] = directive.env.docname, ident, title
    return sec


def paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph(text=text)


def parse_rst(directive: SphinxDirective, lines: list[str], source: str) -> list[nodes.Node]:
    """Parse reStructuredText lines (generated, or a docstring) into nodes. In a Markdown page the directive must
    sit inside an ``{eval-rst}`` block, so that its state parses reStructuredText, not Markdown."""
    if type(directive.state).__module__.startswith("myst_parser"):
        raise directive.error(f"{directive.name} writes reStructuredText: in a Markdown page, put it inside "
                              "an {eval-rst} block")
    holder = nodes.section()
    holder.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(lines, source=source), holder)
    return holder.children


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


DASH = "\u2014"


# ---------------------------------------------------------------------------------------------------------------
# memsim-api
# ---------------------------------------------------------------------------------------------------------------

class _Generated(SphinxDirective):
    """A directive whose output comes from the code: its page is read again on every build."""

    def run(self):
        _note_generated(self.env)
        return self.generate()


class ApiDirective(_Generated):
    """Every public name of a package and of its modules with ``__all__``: a summary table, then each in full
    (or, for a class or function documented in full under another path, its signature and a link there)."""

    required_arguments = 1

    def generate(self):
        package = self.arguments[0]
        entries, homes = api_entries(), canonical_homes()
        inside = modules_with_all(package)
        own = [(m, names) for m, names in entries if m == package or m in inside]
        lines = [f".. automodule:: {package}", "   :no-members:", ""]
        for module, names in own:
            if module != package:
                lines += ["", module, "-" * len(module), "", f".. automodule:: {module}", "   :no-members:", ""]
            if not names:
                lines += ["This package has no public names of its own (no ``__all__``, nothing bound in its "
                          "``__init__``).", ""]
                continue
            mod = importlib.import_module(module)
            lines += [f".. currentmodule:: {module}", "", ".. rubric:: Public names", "", ".. list-table::",
                      "   :widths: 2 7", "   :class: memsim-summary", ""]
            for n in names:
                lines += [f"   * - :py:obj:`~{module}.{n}`", f"     - {summary(getattr(mod, n)) or DASH}"]
            lines.append("")
            for name in names:
                lines += self._entry(module, name, getattr(mod, name), homes) + [""]
        result = parse_rst(self, lines, f"<memsim-api {package}>")
        self._note_aliases(result, {f"{m}.{n}" for m, names in own for n in names})
        return result

    def _note_aliases(self, result, public: set[str]) -> None:
        """A re-exported class or function is shown (``:no-index:``) where it is re-exported, with an anchor, and
        noted as an *alias* for cross-references: an unqualified ``Chip`` then still finds the one full entry."""
        from sphinx import addnodes
        py = self.env.domains["py"]
        for node in result:
            for desc in node.findall(addnodes.desc):
                if not desc.get("no-index"):
                    continue
                for sig in desc.findall(addnodes.desc_signature):
                    path = f"{sig.get('module')}.{sig.get('fullname')}"
                    if path not in public:
                        continue
                    sig["ids"].append(path)
                    if path not in py.objects:
                        py.note_object(path, desc["objtype"], path, aliased=True, location=sig)

    @staticmethod
    def _entry(module: str, name: str, obj, homes) -> list[str]:
        path = f"{module}.{name}"
        if inspect.isclass(obj):
            home = homes.get(id(obj), path)
            kind = "exception" if issubclass(obj, BaseException) else "class"
            if home != path:
                return [f".. py:{kind}:: {name}", f"   :module: {module}", "   :no-index:", "",
                        f"   The same {kind} as :py:class:`{home}` (documented there in full).", ""]
            return [f".. auto{kind}:: {path}", "   :members:", "   :show-inheritance:"]
        if _is_routine(obj):
            home = homes.get(id(obj), path)
            if home != path:
                return [f".. py:function:: {name}{_signature(obj)}", f"   :module: {module}", "   :no-index:", "",
                        f"   The same function as :py:func:`{home}` (documented there in full).", ""]
            return [f".. autofunction:: {path}"]
        # data: its own ``#:`` comment where the module has one, never the docstring of its type (dict, tuple)
        lines = [f".. py:data:: {name}", f"   :module: {module}"]
        text = repr(obj)
        if len(text) <= 100 and "\n" not in text:
            lines.append(f"   :value: {text}")
        else:
            lines.append(f"   :type: {type(obj).__name__}")
        doc = _attr_doc(module, name)
        lines += [""] + [f"   {ln}" for ln in doc] if doc else []
        return lines


_ABBREVIATIONS = ("e.g", "i.e", "cf", "etc", "vs", "approx")


def summary(obj) -> str:
    """The first sentence of a class's or function's docstring (of a constant: its ``#:`` comment's), on one
    line: cut at a full stop outside inline literals and roles, so it is whole reStructuredText."""
    if not (inspect.isclass(obj) or _is_routine(obj)):
        return ""
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc.startswith(obj.__name__ + "("):
        return ""  # the signature dataclasses write as a docstring
    par = " ".join(doc.strip().split("\n\n")[0].split())
    literal = role = False
    k = 0
    while k < len(par):
        if par.startswith("``", k) and not role:
            literal = not literal
            k += 2
            continue
        if par[k] == "`" and not literal:
            role = not role
        elif par[k] == "." and not (literal or role) and (k + 1 == len(par) or par[k + 1] == " ") and \
                not par[:k].lower().endswith(_ABBREVIATIONS):
            return par[:k + 1]
        k += 1
    return "" if literal or role else par


def _signature(obj) -> str:
    from sphinx.util.inspect import stringify_signature
    try:
        return stringify_signature(inspect.signature(obj), show_annotation=False)
    except (TypeError, ValueError):
        return "(...)"


def _attr_doc(module: str, name: str) -> list[str]:
    """The ``#:`` comment (or the string after the assignment) documenting ``name`` in ``module``, if any."""
    from sphinx.pycode import ModuleAnalyzer
    try:
        docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    except Exception:  # noqa: BLE001 - a module without source: no attribute docs
        return []
    return [ln for ln in docs.get(("", name), [])]


# ---------------------------------------------------------------------------------------------------------------
# memsim-cli
# ---------------------------------------------------------------------------------------------------------------

def cli_commands(parser: argparse.ArgumentParser | None = None, help_text: str = ""):
    """(parser, its one-line help) for ``memsim`` and every subcommand, depth first, in registration order."""
    if parser is None:
        from memsim.cli import build_parser
        parser = build_parser()
    yield parser, help_text
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                yield from cli_commands(sub, helps.get(name, ""))


def _formatter(parser):
    return parser.formatter_class(prog=parser.prog, width=100)


class CliDirective(_Generated):
    """Every ``memsim`` command: usage, description and a table of its arguments, from the parsers."""

    def generate(self):
        out = []
        for parser, help_text in cli_commands():
            sec = section(self, parser.prog, "cli-" + parser.prog.replace(" ", "-"))
            if help_text:
                sec += paragraph(help_text[0].upper() + help_text[1:] + ("" if help_text.endswith(".") else "."))
            fmt = _formatter(parser)
            fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
            sec += nodes.literal_block(text=fmt.format_help().strip(), language="none")
            if parser.description:
                raw = parser.formatter_class is not argparse.HelpFormatter
                sec += (nodes.literal_block(text=parser.description, language="none") if raw
                        else paragraph(parser.description))
            rows = []
            for action in parser._actions:
                if action.help == argparse.SUPPRESS:
                    continue
                if isinstance(action, argparse._SubParsersAction):
                    for sub_action in action._choices_actions:
                        ref = nodes.reference("", "", literal(f"{parser.prog} {sub_action.dest}"),
                                              refid=nodes.make_id(f"cli {parser.prog} {sub_action.dest}"))
                        rows.append([nodes.inline("", "", ref), sub_action.help or "", DASH])
                    continue
                rows.append([literal(self._invocation(action)), self._help(parser, action), self._default(action)])
            if rows:
                sec += table(["argument", "meaning", "default"], rows, [3, 8, 2])
            if parser.epilog:
                sec += nodes.literal_block(text=parser.epilog, language="none")
            out.append(sec)
        return out

    @staticmethod
    def _invocation(action) -> str:
        fmt = argparse.HelpFormatter("memsim")
        return fmt._format_action_invocation(action)

    @staticmethod
    def _help(parser, action) -> str:
        text = _formatter(parser)._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action, argparse._SubParsersAction) and "{" not in \
                CliDirective._invocation(action):
            text += f" (one of: {', '.join(map(str, action.choices))})"
        return text

    @staticmethod
    def _default(action) -> str:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.required:
            return DASH
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return _fmt_value(action.default)
        d = action.default
        return DASH if d is None or d == argparse.SUPPRESS else _fmt_value(d)


# ---------------------------------------------------------------------------------------------------------------
# memsim-schema
# ---------------------------------------------------------------------------------------------------------------

def field_comments(cls) -> dict[str, str]:
    """``name: type = default  # comment`` in a class body: name -> comment (units where the code states them)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    line_names = {}
    for n, line in enumerate(src.splitlines(), 1):
        m = re.match(r"\s+(\w+)\s*:", line)
        if m:
            line_names[n] = m.group(1)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in line_names:
            out[line_names[tok.start[0]]] = tok.string.lstrip("#").strip()
    return out


def dataclass_fields(cls) -> dict[str, tuple[str, str, str]]:
    """field -> (type, default, comment) of a dataclass."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    comments = field_comments(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = _fmt_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = _fmt_value(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out[f.name] = (kind, default, comments.get(f.name, ""))
    return out


def _key_rows(prefix: str, keys, dc=None, types: dict | None = None, extra: dict | None = None) -> list[list]:
    """Rows (key, type, default, meaning) for ``keys``, typed from a dataclass or a table (the cost model, whose
    loader has no key specs)."""
    meta = dataclass_fields(dc)
    rows = []
    for key in sorted(keys, key=lambda k: (list(meta).index(k) if k in meta else len(meta), k)):
        kind, default, comment = meta.get(key, (DASH, DASH, ""))
        if kind == DASH and types and key in types:
            t = types[key]
            kind = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        note = (extra or {}).get(key, comment) or DASH
        rows.append([literal(f"{prefix}{key}"), kind, default, note])
    return rows


#: the columns of a table of key specs (:class:`memsim.schema.KeySpec`)
SPEC_HEADERS = ["key", "type", "unit", "allowed", "default", "meaning"]
SPEC_WIDTHS = [3, 1, 1, 3, 2, 6]


def spec_row(key: str, spec, default: str | None = None) -> list:
    """One row of a key spec: what the loader checks (kind, range or values, default) and what the key means."""
    return [literal(key), spec.kind, getattr(spec, "unit", ""), spec.allowed(),
            default if default is not None else spec.default_text(), spec.doc]


def spec_rows(prefix: str, specs) -> list[list]:
    """The rows of a loader's table of key specs (``{key: KeySpec}``), in its declaration order."""
    return [spec_row(f"{prefix}{key}", spec) for key, spec in specs.items()]


class SchemaDirective(_Generated):
    """The keys of a schema, each with the kind, unit, range or values, default and meaning that its loader's key
    spec (:class:`memsim.schema.KeySpec`; the training config's own spec class) declares."""

    required_arguments = 1

    def generate(self):
        name = self.arguments[0]
        fn = getattr(self, "_" + name.replace("-", "_"), None)
        if fn is None:
            raise self.error(f"unknown schema {name!r}")
        return fn()

    # device cards -------------------------------------------------------------------------------------------
    def _device_card(self):
        from memsim.devices import cards
        rows = (spec_rows("", cards._TOP_KEYS) + spec_rows("valid.", cards._VALID_KEYS)
                + spec_rows("verify.", cards._VERIFY_KEYS) + spec_rows("verify.pulse.", cards._PULSE_KEYS))
        return [table(SPEC_HEADERS, rows, SPEC_WIDTHS)]

    def _family_params(self):
        from memsim.families import FAMILIES
        out = []
        for fam in FAMILIES.values():
            sec = section(self, f"{fam.name}", f"family-{fam.name}")
            sec += paragraph(f"{fam.title}. {fam.reference}.")
            sec += _param_table(fam.all_params(), "parameters.")
            out.append(sec)
        return out

    # neuron cards ---------------------------------------------------------------------------------------------
    def _neuron_card(self):
        from memsim.neurons import cards
        rows = (spec_rows("", cards._TOP) + spec_rows("simulation.", cards._SIM)
                + spec_rows("verify.", cards._VERIFY))
        return [table(SPEC_HEADERS, rows, SPEC_WIDTHS)]

    def _neuron_params(self):
        out = []
        for circuit in _neuron_circuits():
            sec = section(self, f"type = \"{circuit.type}\"", f"neuron-{circuit.type}")
            sec += paragraph(circuit.title + ".")
            sec += _param_table(circuit.params, "parameters.")
            out.append(sec)
        return out

    # crossbar presets -------------------------------------------------------------------------------------------
    def _preset(self):
        from memsim.crossbar import presets
        from memsim.crossbar.circuit import Transistor, Wires
        from memsim.crossbar.nonideal import NonIdealities
        from memsim.crossbar.periphery import ADC, DAC
        from memsim.sweep import spec
        classes = {"wires": Wires, "transistor": Transistor, "dac": DAC, "adc": ADC, "noise": NonIdealities}
        out = []
        for sec_name, specs in presets._KEYS.items():
            title = "top level" if sec_name == "" else f"[{sec_name}]"
            sec = section(self, title, f"preset-{sec_name or 'top'}")
            prefix = f"{sec_name}." if sec_name else ""
            rows = [row + ["yes" if f"{prefix}{key}" in spec.PRESET_KEYS else "no"]
                    for row, key in zip(spec_rows(prefix, specs), specs)]
            cls = classes.get(sec_name)
            if cls is not None and cls.__doc__:
                doc = inspect.cleandoc(cls.__doc__)
                if not doc.startswith(cls.__name__ + "("):  # not dataclass's generated signature
                    lines = doc.splitlines()
                    literal_indented_blocks(self.env.app, "class", sec_name, None, {}, lines)
                    sec += parse_rst(self, lines, f"docstring of {cls.__qualname__}")
            sec += table(SPEC_HEADERS + ["sweep axis"], rows, SPEC_WIDTHS + [1])
            out.append(sec)
        return out

    # training configs ---------------------------------------------------------------------------------------------
    def _training_config(self):
        from memsim.training import config
        out = []
        specs = config.keys()
        for sec_name, cls in config.SECTIONS.items():
            sec = section(self, f"[{sec_name}]", f"config-{sec_name}")
            meta = dataclass_fields(cls)
            rows = []
            for f in dataclasses.fields(cls):
                key = f"{sec_name}.{f.name}"
                rows.append(spec_row(key, specs[key], default=meta[f.name][1]))
            sec += table(SPEC_HEADERS, rows, SPEC_WIDTHS)
            out.append(sec)
        return out

    # sweep specs ---------------------------------------------------------------------------------------------------
    def _sweep_spec(self):
        from memsim.crossbar import presets
        from memsim.sweep import spec
        out = []
        for title, prefix, specs in (("top level", "", spec._TOP_KEYS), ("[base]", "base.", spec._BASE_KEYS),
                                     ("[design]", "design.", spec._DESIGN_KEYS)):
            sec = section(self, title, f"sweep-{prefix.rstrip('.') or 'top'}")
            sec += table(SPEC_HEADERS, spec_rows(prefix, specs), SPEC_WIDTHS)
            out.append(sec)
        sec = section(self, "[axes]", "sweep-axes")
        sec += paragraph("Each axis is a list of values. Axes are the crossbar preset's keys (see the preset "
                         "reference; a point's value replaces the preset's) and the sweep's own (a point's value "
                         "replaces the [base] key of that name). The type is what the sweep checks each value "
                         "against before any work; the range is the loader's.")
        rows = []
        for axis, kind in spec.AXES.items():
            section_name, _, key = axis.partition(".")
            ks = (presets._KEYS.get(section_name, {}).get(key) if axis in spec.PRESET_KEYS else None) \
                or spec._BASE_KEYS.get(axis) or spec._AXIS_ONLY_KEYS.get(axis)
            if ks is None:
                rows.append([literal(axis), kind.__name__, "", DASH, DASH, DASH])
                continue
            origin = "preset key" if axis in spec.PRESET_KEYS and key in presets._KEYS.get(section_name, {}) else \
                "[base] key" if axis in spec._BASE_KEYS else "sweep axis"
            rows.append([literal(axis), kind.__name__, ks.unit, ks.allowed(), origin, ks.doc])
        sec += table(["axis", "type", "unit", "allowed", "kind", "meaning"], rows, [3, 1, 1, 3, 1, 6])
        out.append(sec)
        return out

    # studies -------------------------------------------------------------------------------------------------------
    def _study(self):
        from memsim.sweep import study
        out = []
        for title, ident, prefix, specs, note in (
                ("top level", "top", "", study._TOP_KEYS, ""),
                ("[networks.NAME]", "networks", "networks.NAME.", study._NET_KEYS,
                 "One table per network; NAME names its run folder, networks/NAME."),
                ("[networks.NAME.datasets.DATASET]", "datasets", "networks.NAME.datasets.DATASET.",
                 study._VARIANT_KEYS, "The network on another dataset (--dataset DATASET): its own config, or "
                                      "overrides added to the network's."),
                ("[[sweep]]", "sweep", "sweep.", study._SWEEP_KEYS,
                 "One table per sweep: a sweep spec file (spec), or the spec inline (base, axes, design, "
                 "description: the sweep spec's keys, see the sweep-spec reference); the study gives it the "
                 "networks' checkpoints."),
                ("[quick]", "quick", "quick.", study._QUICK_KEYS,
                 "--quick runs the same study at a reduced scale: each key caps what the study would run.")):
            sec = section(self, title, f"study-{ident}")
            if note:
                sec += paragraph(note)
            sec += table(SPEC_HEADERS, spec_rows(prefix, specs), SPEC_WIDTHS)
            out.append(sec)
        return out

    # cost models ---------------------------------------------------------------------------------------------------
    def _cost_model(self):
        from memsim.schema import read_toml
        from memsim.sweep import cost
        default = read_toml(cost.cost_model_path("default"))
        meta = dataclass_fields(cost.CostModel)
        rows = []
        for sec_name, keys in cost._SCHEMA.items():
            for k in sorted(keys):
                f = meta.get(f"{sec_name}_{k}") or meta.get(k) or (DASH, DASH, "")
                rows.append([literal(f"{sec_name}.{k}"), f[0], _fmt_value(default.get(sec_name, {}).get(k, DASH)),
                             f[2] or DASH])
        return [table(["key", "type", "value in the bundled default.toml", "unit (from the code)"], rows,
                      [3, 1, 3, 3])]


def _neuron_circuits():
    from memsim.neurons.circuits import NeuronCircuit
    found, todo = [], list(NeuronCircuit.__subclasses__())
    while todo:
        c = todo.pop(0)
        if hasattr(c, "type") and isinstance(getattr(c, "type", None), str):
            found.append(c)
        todo += c.__subclasses__()
    from memsim.families.metastable import MetastableSwitch
    return [c(MetastableSwitch()) for c in found]


def _param_table(params, prefix: str) -> nodes.table:
    rows = [[literal(f"{prefix}{q.name}"), q.unit or "1", q.allowed(), q.doc] for q in params]
    return table(["key", "unit", "allowed", "meaning"], rows, [2, 1, 3, 6])


# ---------------------------------------------------------------------------------------------------------------
# memsim-library
# ---------------------------------------------------------------------------------------------------------------

class LibraryDirective(_Generated):
    required_arguments = 1

    def generate(self):
        what = self.arguments[0]
        if what == "devices":
            from memsim import list_cards, load_card
            rows = []
            for name in list_cards():
                c = load_card(name)
                prov = c.provenance.get("doi") or c.provenance.get("source", "")
                rows.append([literal(name), nodes.inline("", "", literal(c.family.name),
                                                         nodes.Text(f" ({c.family.title})")),
                             c.description, f"doi:{prov}" if c.provenance.get("doi") else prov])
            return [table(["card", "family", "description", "provenance"], rows, [2, 3, 6, 3])]
        if what == "neurons":
            from memsim.neurons import list_neuron_cards, load_neuron_card
            rows = []
            for name in list_neuron_cards():
                c = load_neuron_card(name)
                rows.append([literal(name), c.type, ", ".join(m.name for m in c.memristors),
                             f"{c.dt:g} s", c.description])
            return [table(["card", "type", "memristors", "dt", "description"], rows, [2, 1, 2, 1, 6])]
        if what == "presets":
            from memsim.crossbar import list_presets, load_preset
            rows = []
            for name in list_presets():
                p = load_preset(name)
                rows.append([literal(name), p.summary().split(": ", 1)[1], p.description or DASH])
            return [table(["preset", "summary", "description"], rows, [2, 6, 4])]
        if what == "configs":
            from memsim.resources import bundled_configs
            rows = []
            for name, path in bundled_configs().items():
                first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines()
                              if ln.startswith("#")), "")
                rows.append([literal(name), first or DASH])
            return [table(["config", "what it trains"], rows, [2, 8])]
        raise self.error(f"unknown library {what!r}")


# ---------------------------------------------------------------------------------------------------------------
# memsim-families: the equations, rendered from the families' own code
# ---------------------------------------------------------------------------------------------------------------

class SympyMath:
    """A fourth rendering of memsim's math namespace (beside torch, SPICE and Python): SymPy expressions, for
    LaTeX. ``let`` keeps a named sub-expression as its own equation."""

    def __init__(self):
        import sympy
        self.sp = sympy
        self.bindings: list[tuple[object, object]] = []

    def symbol(self, name):
        return self.sp.Symbol(name)

    def let(self, name, value):
        sym = self.sp.Symbol(name)
        if not any(s == sym for s, _ in self.bindings):
            self.bindings.append((sym, value))
        return sym

    def exp(self, a): return self.sp.exp(a)
    def log(self, a): return self.sp.log(a)
    def sqrt(self, a): return self.sp.sqrt(a)
    def sinh(self, a): return self.sp.sinh(a)
    def cosh(self, a): return self.sp.cosh(a)
    def tanh(self, a): return self.sp.tanh(a)
    def abs(self, a): return self.sp.Abs(a)
    def maximum(self, a, b): return self.sp.Max(a, b)
    def minimum(self, a, b): return self.sp.Min(a, b)
    def pow(self, base, exponent): return self.sp.Pow(base, exponent)
    def sigmoid(self, a): return 1 / (1 + self.sp.exp(-a))
    def where(self, cond, a, b): return self.sp.Piecewise((a, cond), (b, True))
    def logical_and(self, a, b): return self.sp.And(a, b)
    def logical_or(self, a, b): return self.sp.Or(a, b)
    def clip(self, a, lo, hi): return self.sp.Min(self.sp.Max(a, lo), hi)
    def stop_gradient(self, a): return a


def family_equations(family) -> list[str]:
    """LaTeX lines ``name = expression`` of a family's current and state equation, from its code."""
    import sympy
    m = SympyMath()
    p = type("P", (), {q.name: sympy.Symbol(q.name) for q in family.all_params()})()
    v, x = sympy.Symbol("v"), sympy.Symbol("x")
    i = family.current(m, p, v, x)
    d = family.dxdt(m, p, v, x)

    def tex(e) -> str:  # 1.0 - x as 1 - x: whole-number constants as integers
        if isinstance(e, sympy.Basic):
            e = e.xreplace({f: sympy.Integer(int(f)) for f in e.atoms(sympy.Float) if float(f).is_integer()})
        return sympy.latex(e)
    lines = [f"{tex(s)} = {tex(e)}" for s, e in m.bindings]
    lines.append(f"i = {tex(i)}")
    lines.append(r"\frac{dx}{dt} = " + tex(d))
    return lines


class FamiliesDirective(_Generated):
    def generate(self):
        from memsim.families import FAMILIES
        out = []
        shown: set[str] = set()
        for fam in FAMILIES.values():
            sec = section(self, fam.title, f"equations-{fam.name}")
            sec += nodes.paragraph("", "", nodes.Text("Family "), literal(fam.name),
                                   nodes.Text(f"; {fam.reference}. Terminal voltage v (V), current i (A), "
                                              "normalised state x in [0, 1]."))
            for line in family_equations(fam):
                sec += nodes.math_block(line, line, docname=self.env.docname, number=None, label=None,
                                        nowrap=False)
            sec += _param_table(fam.all_params(), "")
            module = type(fam).__module__
            doc = inspect.getdoc(sys.modules[module])
            if doc and module not in shown:  # one module may hold several families (the linear-drift windows)
                shown.add(module)
                lines = doc.splitlines()
                literal_indented_blocks(self.env.app, "module", module, None, {}, lines)
                sec += nodes.rubric(text=f"Notes ({module})")
                sec += parse_rst(self, lines, f"docstring of {module}")
            out.append(sec)
        return out


# ---------------------------------------------------------------------------------------------------------------
# memsim-modules
# ---------------------------------------------------------------------------------------------------------------

class ModulesDirective(_Generated):
    def generate(self):
        import memsim
        root = Path(memsim.__file__).resolve().parent
        rows = []
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = ["memsim", *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(p.startswith("_") and p != "__main__" for p in parts[1:]):
                continue
            try:
                doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            except SyntaxError:
                doc = ""
            rows.append((".".join(parts), doc.strip().split("\n\n")[0].replace("\n", " ")))
        rows.sort(key=lambda r: r[0])
        # the paragraphs are the docstrings' reStructuredText (roles, literals): parsed, in a list-table
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 2 7", "",
                 "   * - module", "     - what it is (its docstring's first paragraph)"]
        for name, par in rows:
            lines += [f"   * - ``{name}``", f"     - {par or DASH}"]
        return parse_rst(self, lines, "<memsim-modules>")


# ---------------------------------------------------------------------------------------------------------------
# memsim-verify
# ---------------------------------------------------------------------------------------------------------------

class VerifyDirective(_Generated):
    def generate(self):
        from memsim.verify import collect
        checks = collect()
        if str(self.config.memsim_run_verify).lower() in ("", "0", "false", "no", "none"):
            rows = [[c.kind, literal(c.model), c.stimulus] for c in checks]
            note = paragraph(f"The {len(checks)} checks that memsim verify runs (this build did not run them; "
                             "build with -D memsim_run_verify=1 or MEMSIM_DOCS_VERIFY=1 for the measured table).")
            return [note, table(["kind", "model", "stimulus"], rows, [1, 2, 3])]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "verify.json"
            proc = subprocess.run([sys.executable, "-m", "memsim", "verify", "--quiet", "--json", str(out)],
                                  capture_output=True, text=True, cwd=tmp)
            if not out.exists():
                raise self.error(f"memsim verify failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
            results = json.loads(out.read_text())
        rows = [[r["kind"], literal(r["model"]), r["stimulus"], f"{r['error']:.2e}", f"{r['tolerance']:.0e}",
                 "PASS" if r["passed"] else "FAIL", r["detail"]] for r in results]
        failed = sum(not r["passed"] for r in results)
        metrics = {}
        for r in results:
            metrics.setdefault(r["kind"], r["metric"])
        out_nodes = [paragraph(f"Measured by running memsim verify while this site was built: "
                               f"{len(results) - failed} passed, {failed} failed."),
                     table(["kind", "model", "stimulus", "error", "tol", "ok", "detail"], rows,
                           [1, 2, 2, 1, 1, 1, 4])]
        items = nodes.bullet_list()
        for kind, metric in metrics.items():
            items += nodes.list_item("", paragraph(f"{kind}: error = {metric}"))
        out_nodes += [paragraph("Errors and tolerances are fractions (1e-3 = 0.1 %):"), items]
        if failed:
            logger.warning(f"memsim verify: {failed} check(s) failed", location=(self.env.docname, self.lineno))
        return out_nodes


# ---------------------------------------------------------------------------------------------------------------
# memsim's docstring convention
# ---------------------------------------------------------------------------------------------------------------

_NOT_PROSE = re.compile(r"^(\.\. |[-*+] |\d+\. |#\. |:\w[^:]*:|>>> )")


def literal_indented_blocks(app, what, name, obj, options, lines: list[str]) -> None:
    """memsim's docstrings write code and equations as an indented block after a paragraph, as plain text
    would (``dx/dt = mu_v R_on / D^2 * i * f(x, i)``). In reStructuredText that is a block quote whose ``*`` and
    ``|`` are markup; mark each such block literal (the paragraph before it gets ``::``), so it shows as written.
    Blocks that are already reStructuredText (after ``::``, a directive, a list item, a field) are left alone."""
    if what in ("data", "attribute") and obj is not None and isinstance(type(obj).__doc__, str) and \
            "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__).strip():
        lines[:] = []  # a constant without a ``#:`` comment: not the docstring of its type (dict, tuple, str)
        return
    i = 1
    while i < len(lines):
        line, before = lines[i], lines[i - 1]
        if line[:1] == " " and line.strip() and not before.strip():
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            prev = lines[j] if j >= 0 else ""
            if j >= 0 and prev[:1] != " " and not prev.rstrip().endswith("::") and not _NOT_PROSE.match(prev):
                if prev.rstrip().endswith(":"):
                    lines[j] = prev.rstrip() + ":"
                else:
                    lines[i:i] = ["::", ""]
                    i += 2
            while i < len(lines) and (lines[i][:1] == " " or not lines[i].strip()):
                i += 1
            continue
        i += 1


# ---------------------------------------------------------------------------------------------------------------
# the pages follow the code on every build
# ---------------------------------------------------------------------------------------------------------------

def _note_generated(env) -> None:
    if not hasattr(env, "memsim_generated"):
        env.memsim_generated = set()
    env.memsim_generated.add(env.docname)


def _outdated(app, env, added, changed, removed):
    """Pages with a memsim-* directive depend on the code, which Sphinx does not track: read them again."""
    return sorted(d for d in getattr(env, "memsim_generated", set()) if d in env.found_docs)


def _purge(app, env, docname):
    getattr(env, "memsim_generated", set()).discard(docname)


def _merge(app, env, docnames, other):
    if not hasattr(env, "memsim_generated"):
        env.memsim_generated = set()
    env.memsim_generated |= getattr(other, "memsim_generated", set())


# ---------------------------------------------------------------------------------------------------------------
# MathJax from a local copy
# ---------------------------------------------------------------------------------------------------------------

#: where a local MathJax goes in the HTML site (under ``_static``), and the component the pages load
MATHJAX_LOCAL = "mathjax/tex-chtml.js"


def local_mathjax() -> Path | None:
    """The MathJax 3 folder that the ``sphinx-mathjax-offline`` package ships (the docs extra), if installed. Only
    its files are used (the package's own Sphinx hook copies them for every builder)."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    return folder if (folder / "tex-chtml.js").is_file() else None


def _use_local_mathjax(app, config) -> None:
    """Point ``mathjax_path`` at the local copy, unless conf.py set a path of its own or the copy is missing."""
    default = str(config.mathjax_path).startswith(("https://", "http://"))
    if config.memsim_local_mathjax and default and local_mathjax() is not None:
        config.mathjax_path = MATHJAX_LOCAL


def _copy_mathjax(app, exc) -> None:
    """Copy the local MathJax into an HTML site that loads it (once; MathJax loads its fonts and TeX extensions
    from beside the component)."""
    folder = local_mathjax()
    if exc is not None or app.builder.format != "html" or app.config.mathjax_path != MATHJAX_LOCAL or folder is None:
        return
    copy_asset(folder, Path(app.outdir) / "_static" / "mathjax")


#: bumped when this extension changes what it writes: a build with an older environment then reads every page again
VERSION = "6"


def setup(app):
    app.add_config_value("memsim_docs_version", VERSION, "env", types=(str,))
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.add_config_value("memsim_run_verify", os.environ.get("MEMSIM_DOCS_VERIFY", "") not in ("", "0"), "env",
                         types=(bool, int, str))
    app.add_config_value("memsim_local_mathjax", True, "html", types=(bool,))
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("builder-inited", generate_pages)
    app.connect("autodoc-process-docstring", literal_indented_blocks)
    app.add_directive("memsim-api", ApiDirective)
    app.add_directive("memsim-cli", CliDirective)
    app.add_directive("memsim-schema", SchemaDirective)
    app.add_directive("memsim-library", LibraryDirective)
    app.add_directive("memsim-families", FamiliesDirective)
    app.add_directive("memsim-modules", ModulesDirective)
    app.add_directive("memsim-verify", VerifyDirective)
    return {"version": VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
