"""notebooks/neuron_dynamics.ipynb runs top to bottom, headless; its cells assert their own claims
(ngspice vs torch within the verify criteria, f-I growth, refractory recovery, parameter effects)."""
import pytest

from test_notebooks import notebook, count_images, errors, run_notebook


@pytest.mark.spice
@notebook("neuron_dynamics.ipynb")
def test_neuron_dynamics_notebook():
    nb = run_notebook("neuron_dynamics.ipynb")
    assert count_images(nb) >= 5
    assert not errors(nb)
