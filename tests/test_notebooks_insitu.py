"""notebooks/in_situ_training.ipynb runs top to bottom, headless, on digits; its cells assert their own claims (the
LTP/LTD curves stay in their windows and the ideal device's steps are equal, the fitted power-step parameters within
10 % of the hidden ones at < 3 % NRMSE, float SGD above 85 %, pulsed SGD on the ideal device within 5 points of it,
pulses counted for every in-situ run)."""
from test_notebooks import notebook, count_images, errors, run_notebook


@notebook("in_situ_training.ipynb")
def test_in_situ_training_notebook():
    nb = run_notebook("in_situ_training.ipynb")
    assert count_images(nb) >= 3
    assert not errors(nb)
