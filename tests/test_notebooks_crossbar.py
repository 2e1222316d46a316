"""The crossbar notebook runs top to bottom, headless; its cells assert their own claims
(mapping exact without non-idealities, each source alone > 0, IR drop growing with N and wire R,
the ngspice table passing)."""
from test_notebooks import notebook, count_images, run_notebook


@notebook("crossbar_nonidealities.ipynb")
def test_crossbar_nonidealities_notebook():
    nb = run_notebook("crossbar_nonidealities.ipynb")
    assert count_images(nb) >= 3
