"""The device-fitting notebook runs top to bottom, headless; its cells assert their own claims (identified
parameters within 5 % of the hidden ones, NRMSE <= 2 % in torch and ngspice, the fitted card's window in a
crossbar preset)."""
import pytest
from test_notebooks import notebook, count_images, run_notebook


@pytest.mark.spice
@notebook("device_fitting.ipynb")
def test_device_fitting_notebook():
    nb = run_notebook("device_fitting.ipynb")
    assert count_images(nb) >= 2
