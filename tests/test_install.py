"""A non-editable install works from any folder: the wheel carries every card, .lib, preset, reference .cir
and example config (memsim/_data/), and the CLI finds them through importlib.resources.

The wheel is built offline from a copy of the source tree and installed with no dependencies into a fresh
virtual environment that sees the system's torch etc. (``--system-site-packages``); every command then runs
from an empty temporary folder, far from the repository.
"""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = {"devices": ("*.toml", "*.lib"), "crossbar": ("*.toml", "*.cir"), "configs": ("*.toml",)}


def _run(cmd, cwd, env, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "runs", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "notebooks", "tests",
                                                             "benchmarks", ".benchmarks", "out"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMSIM_DEVICE_PATH",
                                                            "MEMSIM_CROSSBAR_PATH")}
    env["MEMSIM_NO_DOWNLOAD"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"),
          str(src)], base, env)
    wheel = next((base / "dist").glob("memsim-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], base, env)
    py = venv / "bin" / "python"
    # the system's pip, run by the venv's interpreter, installs into the venv
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(wheel)],
         base, env)
    work = base / "elsewhere"
    work.mkdir()
    return wheel, venv, work, env


def test_wheel_carries_the_whole_data_library(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, patterns in DATA.items():
        files = [f for p in patterns for f in (ROOT / kind).glob(p)]
        assert files
        for f in files:
            rel = f.relative_to(ROOT / kind).as_posix()
            assert f"memsim/_data/{kind}/{rel}" in names, f"{kind}/{rel} missing from the wheel"


def test_installed_memsim_runs_from_any_folder(installed):
    _, venv, work, env = installed
    py, memsim = str(venv / "bin" / "python"), str(venv / "bin" / "memsim")
    out = _run([py, "-c", "import memsim, memsim.resources as r; from memsim.crossbar.presets import load_preset; "
                          "p = load_preset('hfox_1t1r_64'); print(memsim.__file__); print(r.data_dir('devices')); "
                          "print(p.rows, p.cols, p.card.name); print(sorted(r.bundled_configs()))"], work, env)
    module, devices, preset, configs = out.strip().splitlines()
    assert "digits_quickstart" in configs
    assert str(venv) in module and "site-packages" in module          # the wheel, not the repository
    assert devices.endswith(os.path.join("memsim", "_data", "devices"))
    assert preset == "64 64 stanford_pku_hfox_10k"
    cost = _run([py, "-c", "from memsim.sweep.cost import cost_model_path, load_cost_model; load_cost_model(); print(cost_model_path())"], work, env)
    assert "site-packages" in cost  # the sweep's cost model ships too
    listing = _run([memsim, "device", "list"], work, env)
    for card in (ROOT / "devices").glob("*.toml"):
        if "neuron" not in card.stem:
            assert card.stem in listing
    out = _run([memsim, "train", "digits_quickstart", "--epochs", "1", "--no-progress", "-o", "run",
                "--set", "training.batch_size=256", "--set", "network.time_steps=10", "--set", "output.plot=false"],
               work, env)
    assert "final: test accuracy" in out
    assert (work / "run" / "checkpoints" / "epoch_0001.pt").is_file()
    assert (work / "run" / "metrics.csv").read_text().count("\n") == 2
