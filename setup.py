"""Build hook: copy the data libraries (devices/, crossbar/, configs/ and its studies/) into the wheel as
memsim/_data/.

The repository keeps them at its top level; an installed memsim finds the copies with importlib.resources
(memsim/resources.py). An editable install needs no copy: the package then sits in the repository.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = {"devices": ("*.toml", "*.lib"), "crossbar": ("*.toml", "*.cir", "cost/*.toml"),
        "configs": ("*.toml", "studies/*.toml")}


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        for kind, patterns in DATA.items():
            target = Path(self.build_lib) / "memsim" / "_data" / kind
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for pattern in patterns:
                for f in sorted((ROOT / kind).glob(pattern)):
                    dest = target / f.relative_to(ROOT / kind)  # keeps sub-folders such as crossbar/cost/
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dest)


setup(cmdclass={"build_py": build_py_with_data})
