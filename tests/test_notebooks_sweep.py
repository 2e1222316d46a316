"""notebooks/design_space_sweep.ipynb runs top to bottom, headless, on a tiny digits grid; its cells assert their own
claims (noise raises the product error, smaller tiles need more tiles, a rerun skips finished points)."""
from test_notebooks import notebook, count_images, errors, run_notebook


@notebook("design_space_sweep.ipynb")
def test_design_space_sweep_notebook():
    nb = run_notebook("design_space_sweep.ipynb")
    assert count_images(nb) >= 2
    assert not errors(nb)
