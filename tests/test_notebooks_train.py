"""notebooks/train_msnn.ipynb runs top to bottom, headless; its cells assert their own claims (the digits
network trains above 90 %, hidden MIF neurons spike, accuracy grows with time steps, deployment on presets)."""
from test_notebooks import notebook, count_images, errors, run_notebook


@notebook("train_msnn.ipynb")
def test_train_msnn_notebook():
    nb = run_notebook("train_msnn.ipynb")
    assert count_images(nb) >= 4
    assert not errors(nb)
