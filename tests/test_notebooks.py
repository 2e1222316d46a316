"""Notebooks run top to bottom, headless. Each one asserts its own claims in its cells.

Each notebook runs in its own kernel process, so the notebooks the session's selected tests need are run two at a
time (this machine's two cores) as soon as the first of them is asked for: the notebook tests sit next to each
other in the run order, so nothing else runs meanwhile. ``conftest.py`` plans them (:func:`plan`) from the
tests' ``notebook`` markers."""
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: notebooks executed at once
PARALLEL = 2

_planned: list[str] = []
_runs: dict[str, Future] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def plan(names: list[str]) -> None:
    """The notebooks this session will ask for, in order (run ahead, :data:`PARALLEL` at a time)."""
    _planned[:] = [n for n in dict.fromkeys(names)]


def _execute(name: str, timeout: int):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def run_notebook(name: str, timeout: int = 600):
    """The executed notebook ``name`` (its kernel's error, if any, raised here)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="notebook")
        for n in dict.fromkeys([name, *_planned]):
            if n not in _runs:
                _runs[n] = _pool.submit(_execute, n, timeout)
    return _runs.pop(name).result()


def notebook(name: str):
    """Marks a test that runs notebook ``name`` (so that the session can plan it)."""
    return pytest.mark.notebook(name)


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def count_images(nb) -> int:
    return sum(1 for o in outputs(nb) if "image/png" in o.get("data", {}))


def errors(nb) -> list:
    return [o for o in outputs(nb) if o.get("output_type") == "error"]


@notebook("device_behaviour.ipynb")
def test_device_behaviour_notebook():
    nb = run_notebook("device_behaviour.ipynb")
    assert count_images(nb) >= 4
