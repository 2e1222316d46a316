"""notebooks/train_msnn.ipynb runs top to bottom, headless; its cells assert their own claims (the digits
network trains above 90 %, hidden MIF neurons spike, accuracy grows with time steps, deployment on presets)."""
from test_notebooks import run_notebook


def test_train_msnn_notebook():
    nb = run_notebook("train_msnn.ipynb")
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 4
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
