"""notebooks/nir_import.ipynb runs top to bottom, headless: an snnTorch network exported to NIR gives the same spikes
in memsim, and a programmed chip changes some of them (its cells assert both)."""
import pytest

from test_notebooks import notebook, count_images, errors, run_notebook

pytest.importorskip("nir")
pytest.importorskip("snntorch")


@notebook("nir_import.ipynb")
def test_nir_import_notebook():
    nb = run_notebook("nir_import.ipynb")
    assert count_images(nb) >= 1
    assert not errors(nb)
