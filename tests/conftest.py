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
