"""The crossbar notebook runs top to bottom, headless; its cells assert their own claims
(mapping exact without non-idealities, each source alone > 0, IR drop growing with N and wire R,
the ngspice table passing)."""
from test_notebooks import run_notebook


def test_crossbar_nonidealities_notebook():
    nb = run_notebook("crossbar_nonidealities.ipynb")
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 3
