"""Notebooks run top to bottom, headless. Each one asserts its own claims in its cells."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, timeout: int = 600):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def count_images(nb) -> int:
    return sum(1 for o in outputs(nb) if "image/png" in o.get("data", {}))


def errors(nb) -> list:
    return [o for o in outputs(nb) if o.get("output_type") == "error"]


def test_device_behaviour_notebook():
    nb = run_notebook("device_behaviour.ipynb")
    assert count_images(nb) >= 4
