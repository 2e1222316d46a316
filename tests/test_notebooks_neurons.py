"""notebooks/neuron_dynamics.ipynb runs top to bottom, headless; its cells assert their own claims
(ngspice vs torch within the verify criteria, f-I growth, refractory recovery, parameter effects)."""
import pytest

from test_notebooks import run_notebook


@pytest.mark.spice
def test_neuron_dynamics_notebook():
    nb = run_notebook("neuron_dynamics.ipynb")
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 5
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
