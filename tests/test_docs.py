"""The documentation site builds with warnings as errors, and its reference misses nothing.

The default test builds the site once without running the notebooks, with Sphinx's ``dummy`` builder: it reads,
parses and cross-references every page exactly as the HTML build does (every warning of those stages is an
error), but writes no HTML, which saves a quarter of the time. It then checks the pages against the code,
enumerating what must be there independently of ``docs/_ext/memsim_docs.py``: every public name of ``memsim``
and of each subpackage (its ``__all__``) on an API page, every ``memsim`` command in the CLI reference, every key
of the training config, sweep spec, preset and card schemas in the reference. The ``slow`` test builds the HTML
site with every notebook executed, as ``python3 -m sphinx -W -b html docs docs/_build/html`` does.

Needs the ``docs`` extra (``pip install -e ".[dev,docs]"``, the README's install command); skipped without it.
"""
from __future__ import annotations

import argparse
import importlib
import pickle
import pkgutil
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
    from memsim.sweep import cost, spec
    from memsim.training.config import keys
    text = reference_text(fast_build)
    expected = list(keys())                                                            # training configs
    expected += [f"{s}.{k}" if s else k for s, ks in presets._KEYS.items() for k in ks]  # presets
    expected += list(spec.AXES) + [f"base.{k}" for k in spec._BASE_KEYS] + [f"design.{k}" for k in spec._DESIGN_KEYS]
    expected += [f"{s}.{k}" for s, ks in cost._SCHEMA.items() for k in ks]             # cost models
    expected += list(cards._TOP_KEYS) + [f"verify.{k}" for k in cards._VERIFY_KEYS]    # device cards
    expected += [f"verify.pulse.{k}" for k in cards._PULSE_KEYS]
    expected += [f"parameters.{p.name}" for f in FAMILIES.values() for p in f.all_params()]
    expected += list(neuron_cards._TOP) + [f"simulation.{k}" for k in neuron_cards._SIM]  # neuron cards
    expected += [f"verify.{k}" for k in neuron_cards._VERIFY]
    missing = sorted({k for k in expected if k not in text})
    assert not missing, f"keys missing from the reference: {missing}"


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
    for nb in (DOCS.parent / "notebooks").glob("*.ipynb"):
        page = (html / "tutorials" / f"{nb.stem}.html").read_text()
        assert "data:image/png" in page or "<img" in page, f"{nb.name}: no figure on its tutorial page"
