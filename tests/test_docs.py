"""The documentation site builds with warnings as errors, and its reference misses nothing.

The default test builds the site once without running the notebooks, with Sphinx's ``dummy`` builder: it reads,
parses and cross-references every page exactly as the HTML build does (every warning of those stages is an
error), but writes no HTML, which saves a quarter of the time. It then checks the pages against the code,
enumerating what must be there independently of ``docs/_ext/memsim_docs.py``: every public name of ``memsim``
and of each subpackage (its ``__all__``) on an API page, every ``memsim`` command in the CLI reference, every key
of the training config, sweep spec, preset and card schemas in the reference, and every key table row with a
type, an allowed range, a default and a meaning (no dash where the code knows the answer: the rows come from the
loaders' key specs, tests/test_keyspec.py checks those without Sphinx). The ``slow`` test builds the HTML
site with every notebook executed, as ``python3 -m sphinx -W -b html docs docs/_build/html`` does.

Needs the ``docs`` extra (``pip install -e ".[dev,docs]"``, the README's install command); skipped without it.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import pickle
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

sphinx = pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e \".[dev,docs]\"")
pytest.importorskip("myst_nb", reason="the docs extra is not installed: pip install -e \".[dev,docs]\"")
pytest.importorskip("furo", reason="the docs extra is not installed: pip install -e \".[dev,docs]\"")

import memsim  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def sphinx_build(out: Path, builder: str, *options: str, timeout: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", builder,
           "-d", str(out / "doctrees"), *options, str(DOCS), str(out / builder)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fast_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    proc = sphinx_build(out, "dummy", "-D", "nb_execution_mode=off", timeout=600)
    assert proc.returncode == 0, f"the site does not build with -W:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out / "doctrees"


def doctree(doctrees: Path, docname: str):
    with open(doctrees / f"{docname}.doctree", "rb") as f:
        return pickle.load(f)


def object_ids(doctrees: Path, folder: str) -> set[str]:
    """The ids of every documented object (Python signatures) on the pages under ``folder``."""
    from sphinx import addnodes
    ids = set()
    for path in (doctrees / folder).glob("*.doctree"):
        for node in doctree(doctrees, f"{folder}/{path.stem}").findall(addnodes.desc_signature):
            ids.update(node["ids"])
    return ids


def reference_text(doctrees: Path) -> str:
    return "\n".join(doctree(doctrees, f"reference/{p.stem}").astext() for p in (doctrees / "reference").glob("*.doctree"))


def public_api() -> list[str]:
    """``package.name`` for every public name of memsim and every subpackage (``__all__``, else what the
    package's ``__init__`` binds)."""
    import __future__
    names = []
    pkgs = ["memsim"] + [m.name for m in pkgutil.walk_packages(memsim.__path__, "memsim.")
                         if m.ispkg and not any(p.startswith("_") for p in m.name.split("."))]
    for package in pkgs:
        mod = importlib.import_module(package)
        public = getattr(mod, "__all__", None)
        if public is None:
            public = [n for n, v in vars(mod).items() if not n.startswith("_") and not isinstance(v, type(sys))
                      and not isinstance(v, __future__._Feature)]
        names += [f"{package}.{n}" for n in public]
    return names


def cli_commands() -> list[str]:
    from memsim.cli import build_parser

    def walk(parser):
        yield parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    yield from walk(sub)
    return list(walk(build_parser()))


def test_every_public_name_is_on_an_api_page(fast_build):
    ids = object_ids(fast_build, "api")
    missing = [name for name in public_api() if name not in ids]
    assert not missing, f"public names missing from the API pages: {missing}"


def test_every_command_is_in_the_cli_reference(fast_build):
    tree = doctree(fast_build, "reference/cli")
    sections = {i for node in tree.findall(lambda n: n.tagname == "section") for i in node["ids"]}
    missing = [c for c in cli_commands() if "cli-" + c.replace(" ", "-") not in sections]
    assert not missing, f"commands missing from the CLI reference: {missing}"
    # every option of every command too
    from memsim.cli import build_parser
    text = tree.astext()
    options = {o for p in [build_parser()] for o in _all_options(p)}
    assert not [o for o in options if o not in text]


def _all_options(parser):
    for action in parser._actions:
        yield from action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_options(sub)


def test_every_schema_key_is_in_the_reference(fast_build):
    from memsim.crossbar import presets
    from memsim.devices import cards
    from memsim.families import FAMILIES
    from memsim.neurons import cards as neuron_cards
    from memsim.sweep import cost, spec, study
    from memsim.training.config import keys
    text = reference_text(fast_build)
    expected = list(keys())                                                            # training configs
    expected += [f"{s}.{k}" if s else k for s, ks in presets._KEYS.items() for k in ks]  # presets
    expected += list(spec.AXES) + [f"base.{k}" for k in spec._BASE_KEYS] + [f"design.{k}" for k in spec._DESIGN_KEYS]
    expected += [f"{s}.{k}" for s, ks in cost._SCHEMA.items() for k in ks]             # cost models
    expected += [f"{k}" for k in spec._TOP_KEYS]
    expected += list(cards._TOP_KEYS) + [f"verify.{k}" for k in cards._VERIFY_KEYS]    # device cards
    expected += [f"valid.{k}" for k in cards._VALID_KEYS]
    expected += [f"verify.pulse.{k}" for k in cards._PULSE_KEYS]
    expected += [f"parameters.{p.name}" for f in FAMILIES.values() for p in f.all_params()]
    expected += list(neuron_cards._TOP) + [f"simulation.{k}" for k in neuron_cards._SIM]  # neuron cards
    expected += [f"verify.{k}" for k in neuron_cards._VERIFY]
    expected += list(study._TOP_KEYS) + [f"networks.NAME.{k}" for k in study._NET_KEYS]       # study files
    expected += [f"networks.NAME.datasets.DATASET.{k}" for k in study._VARIANT_KEYS]
    expected += [f"sweep.{k}" for k in study._SWEEP_KEYS] + [f"quick.{k}" for k in study._QUICK_KEYS]
    missing = sorted({k for k in expected if k not in text})
    assert not missing, f"keys missing from the reference: {missing}"


#: the columns of a key table that must never be empty or a dash: the key's type, what it accepts, its default
#: (or "required", or what leaving it out means) and its meaning
COMPLETE_COLUMNS = ("type", "allowed", "default", "meaning")
DASH = "\u2014"


def key_tables(doctrees: Path):
    """(page, header, rows) of every table on the reference pages whose first column names keys or axes."""
    from docutils import nodes
    for path in sorted((doctrees / "reference").glob("*.doctree")):
        for tbl in doctree(doctrees, f"reference/{path.stem}").findall(nodes.table):
            rows = [[entry.astext().strip() for entry in row.findall(nodes.entry)] for row in tbl.findall(nodes.row)]
            if rows and rows[0][0] in ("key", "axis"):
                yield path.stem, rows[0], rows[1:]


def incomplete_rows(tables) -> list[str]:
    """The cells of the :data:`COMPLETE_COLUMNS` that say nothing: empty, a dash, or a bare "absent"."""
    gaps = []
    for page, header, rows in tables:
        for row in rows:
            for i, column in enumerate(header):
                if column in COMPLETE_COLUMNS and row[i] in ("", DASH, "absent", "absent:"):
                    gaps.append(f"{page}: {row[0]} has no {column}")
    return gaps


def test_every_key_in_the_reference_has_a_type_a_default_and_a_meaning(fast_build):
    """The schema tables come from the loaders' key specs; a key declared without a type, a default (or what its
    absence means) or a meaning shows a dash or nothing there, and fails here."""
    tables = list(key_tables(fast_build))
    pages = {page for page, _, _ in tables}
    assert {"cards", "presets", "sweep-spec", "study", "training-config"} <= pages, pages
    keys = [row[0] for _, _, rows in tables for row in rows]
    assert {"verify.pulse.width", "adc.percentile", "noise.drift_t", "base.chips", "design.kind",
            "training.epochs", "simulation.dt", "networks.NAME.config", "sweep.networks", "quick.points"} <= set(keys)
    gaps = incomplete_rows(tables)
    assert not gaps, "keys without type, default or meaning in the reference:\n" + "\n".join(gaps)
    # and the check finds a gap where there is one
    assert incomplete_rows([("p", ["key", "type", "default", "meaning"], [["a", "int", DASH, "x"]])]) == \
        ["p: a has no default"]


def test_the_sweep_axes_table_lists_the_allowed_pruning_methods(fast_build):
    """The pruning.method axis names every method memsim.nn.pruning accepts (and mode every simulation mode)."""
    from memsim.nn.pruning import METHODS
    from memsim.sweep.spec import MODES
    tables = [(header, rows) for page, header, rows in key_tables(fast_build) if page == "sweep-spec"
              and header[0] == "axis"]
    assert len(tables) == 1
    header, rows = tables[0]
    allowed = {row[0]: row[header.index("allowed")] for row in rows}

    def listed(name: str, cell: str) -> bool:  # quoted, in straight quotes or Sphinx's smart ones
        return re.search(rf"[\'\u2018\"]{re.escape(name)}[\'\u2019\"]", cell) is not None
    assert all(listed(m, allowed["pruning.method"]) for m in METHODS), allowed["pruning.method"]
    assert all(listed(m, allowed["mode"]) for m in MODES), allowed["mode"]
    assert not listed("nm_til", allowed["pruning.method"])  # the check is exact: a near name is not listed


def test_the_library_pages_list_every_card_and_preset(fast_build):
    from memsim import list_cards
    from memsim.crossbar import list_presets
    from memsim.neurons import list_neuron_cards
    text = doctree(fast_build, "reference/library").astext()
    missing = [n for n in list_cards() + list_neuron_cards() + list_presets() if n not in text]
    assert not missing, f"missing from the library page: {missing}"


def test_every_family_has_its_equations_on_the_design_page(fast_build):
    from memsim.families import FAMILIES
    tree = doctree(fast_build, "design")
    maths = [n.astext() for n in tree.findall(lambda n: n.tagname == "math_block")]
    assert len(maths) >= 2 * len(FAMILIES), maths
    text = tree.astext()
    assert all(f.name in text for f in FAMILIES.values())


def test_mathjax_comes_from_the_local_copy_when_the_docs_extra_ships_it():
    """With sphinx-mathjax-offline installed (the docs extra) the site loads MathJax from its own _static folder;
    a path set in conf.py, or memsim_local_mathjax = False, is left alone."""
    from types import SimpleNamespace
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import memsim_docs
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    cdn = "https://cdn.example/mathjax/tex-mml-chtml.js"
    cfg = SimpleNamespace(memsim_local_mathjax=True, mathjax_path=cdn)
    memsim_docs._use_local_mathjax(None, cfg)
    folder = memsim_docs.local_mathjax()
    if folder is None:
        assert cfg.mathjax_path == cdn
    else:
        assert cfg.mathjax_path == memsim_docs.MATHJAX_LOCAL == "mathjax/tex-chtml.js"
        assert (folder / "tex-chtml.js").is_file() and any((folder / "output" / "chtml" / "fonts").rglob("*.woff"))
    for kept in (SimpleNamespace(memsim_local_mathjax=False, mathjax_path=cdn),
                 SimpleNamespace(memsim_local_mathjax=True, mathjax_path="my/mathjax.js")):
        before = kept.mathjax_path
        memsim_docs._use_local_mathjax(None, kept)
        assert kept.mathjax_path == before


def test_generated_pages_are_not_committed():
    """The build writes its generated pages into docs/; git ignores them (docs/.gitignore)."""
    ignore = (DOCS / ".gitignore").read_text().splitlines()
    for pattern in ("api/memsim*.rst", "tutorials/*.ipynb", "benchmarks/*.md", "_build/"):
        assert pattern in ignore


@pytest.mark.slow
def test_full_site_with_notebooks_executed(tmp_path):
    """The HTML site with every notebook run (outputs cached in docs/_build/.jupyter_cache between builds)."""
    proc = sphinx_build(tmp_path, "html", timeout=1800)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    html = tmp_path / "html"
    design = (html / "design.html").read_text()
    assert "_static/memsim.css" in design  # wide equations scroll (docs/_static/memsim.css)
    if importlib.util.find_spec("sphinx-mathjax-offline") is not None:  # the docs extra: MathJax from the site
        assert '_static/mathjax/tex-chtml.js"' in design and (html / "_static/mathjax/tex-chtml.js").is_file()
    for nb in (DOCS.parent / "notebooks").glob("*.ipynb"):
        page = (html / "tutorials" / f"{nb.stem}.html").read_text()
        assert "data:image/png" in page or "<img" in page, f"{nb.name}: no figure on its tutorial page"
