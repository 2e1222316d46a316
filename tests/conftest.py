import pytest


def _spice_available() -> bool:
    from memsim import spice
    return spice.available()


SPICE = _spice_available()
requires_spice = pytest.mark.skipif(not SPICE, reason="ngspice shared library / PySpice not installed")


def pytest_collection_modifyitems(config, items):
    # tests marked 'spice' are skipped with a clear reason when ngspice is absent
    for item in items:
        if "spice" in item.keywords and not SPICE:
            item.add_marker(pytest.mark.skip(reason="ngspice shared library / PySpice not installed"))


def pytest_collection_finish(session):
    # the notebooks the selected tests run (after -m/-k deselection and the skips above), planned so that
    # tests/test_notebooks.py runs them two at a time
    names = [m.args[0] for item in session.items if (m := item.get_closest_marker("notebook"))
             and not item.get_closest_marker("skip")]
    if names:
        from test_notebooks import plan
        plan(names)
