"""The SPICE bridge: memsim's only contact with PySpice and ngspice.

ngspice runs as a shared library inside this process (PySpice's ``NgSpiceShared``;
PySpice's subprocess mode cannot parse ngspice 39's output). This module

* loads it lazily, so ``import memsim`` works without ngspice, and raises
  :class:`SpiceUnavailableError` with the install command when SPICE is used;
* silences PySpice's "Unsupported Ngspice version" warning and routes ngspice's
  stdout/stderr into the result's ``log`` instead of the terminal;
* decides success from the produced data (a transient that reached its stop
  time, an operating point that exists), not from ngspice's chatter, and maps a
  failure to :class:`SpiceError` carrying the netlist and ngspice's messages;
* removes each circuit after its run (a loaded circuit otherwise stays in the
  shared instance and memory grows) and serialises access with a lock.

Each worker process gets its own ngspice instance, so a process pool can run
netlists in parallel (:func:`run_many`).
"""
from __future__ import annotations

import ctypes.util
import logging
import multiprocessing
import os
import re
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import SpiceError, SpiceUnavailableError

INSTALL_HINT = ("install ngspice's shared library: 'apt-get install ngspice libngspice0 libngspice0-dev' "
                "and the Python bridge: 'pip install PySpice==1.5' (or set NGSPICE_LIBRARY_PATH to libngspice.so)")

_lock = threading.Lock()
_instance = None
_instance_pid = None  # process that created or inherited _instance


@dataclass
class SpiceResult:
    """Vectors of one analysis by lower-case name (``time``, ``v(a)``, ``vsrc#branch``...)."""

    analysis: str
    vectors: dict[str, np.ndarray]
    log: str = ""
    netlist: str = field(default="", repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        key = name.lower()
        if key in self.vectors:
            return self.vectors[key]
        bare = re.fullmatch(r"v\((.+)\)", key)
        if bare and bare.group(1) in self.vectors:  # ngspice names node vectors without v()
            return self.vectors[bare.group(1)]
        raise KeyError(f"no vector '{name}' in the {self.analysis} result; have {sorted(self.vectors)}")


def _library_path() -> str | None:
    if os.environ.get("NGSPICE_LIBRARY_PATH"):
        return os.environ["NGSPICE_LIBRARY_PATH"]
    for candidate in ("/usr/lib/x86_64-linux-gnu/libngspice.so", "/usr/lib/aarch64-linux-gnu/libngspice.so",
                      "/usr/lib/libngspice.so", "/usr/local/lib/libngspice.so"):
        if os.path.exists(candidate):
            return candidate
    found = ctypes.util.find_library("ngspice")  # e.g. libngspice.so.0 without the -dev symlink
    return found


def available() -> bool:
    """True when ngspice can be loaded (does not raise)."""
    try:
        _ngspice()
        return True
    except SpiceUnavailableError:
        return False


def _ngspice():
    """The process's ngspice instance, created on first use."""
    global _instance, _instance_pid
    if _instance is not None:
        # A forked child inherits a private copy of the loaded library and its state;
        # it keeps using it (re-initialising would re-declare PySpice's cffi types).
        _instance_pid = os.getpid()
        return _instance
    path = _library_path()
    if path is None:
        raise SpiceUnavailableError(f"ngspice's shared library libngspice was not found; {INSTALL_HINT}")
    os.environ.setdefault("NGSPICE_LIBRARY_PATH", path)
    for name in ("PySpice", "PySpice.Spice.NgSpice.Shared"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
    except ImportError as exc:
        raise SpiceUnavailableError(f"PySpice is not importable ({exc}); {INSTALL_HINT}") from None
    NgSpiceShared.LIBRARY_PATH = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _instance = NgSpiceShared.new_instance()
    except OSError as exc:
        raise SpiceUnavailableError(f"could not load {path}: {exc}; {INSTALL_HINT}") from None
    _instance_pid = os.getpid()
    return _instance


def _stop_time(netlist: str) -> float | None:
    match = re.search(r"^\s*\.tran\s+(\S+)\s+(\S+)", netlist, flags=re.IGNORECASE | re.MULTILINE)
    if not match:
        return None
    return _spice_number(match.group(2))


_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}


def _spice_number(text: str) -> float:
    match = re.fullmatch(r"([-+]?[0-9.]+(?:e[-+]?\d+)?)(meg|[tgkmunpf])?[a-z]*", text.lower())
    if not match:
        raise SpiceError(f"cannot read the number '{text}' in the netlist")
    return float(match.group(1)) * _SUFFIX.get(match.group(2) or "", 1.0)


def _read_plot(ng, plot_name: str) -> dict[str, np.ndarray]:
    plot = ng.plot(None, plot_name)
    out = {}
    for name, vec in plot.items():
        data = np.array(vec._data)  # PySpice keeps the raw numpy array here
        out[name.lower()] = data.real if np.iscomplexobj(data) and not np.any(data.imag) else data
    return out


def run(netlist: str) -> SpiceResult:
    """Run the analysis in ``netlist`` (one ``.tran`` or ``.op``) and return its vectors."""
    analysis = "tran" if re.search(r"^\s*\.tran\b", netlist, re.I | re.M) else \
        "op" if re.search(r"^\s*\.op\b", netlist, re.I | re.M) else None
    if analysis is None:
        raise SpiceError("the netlist has no .tran or .op analysis", netlist=netlist)
    stop = _stop_time(netlist) if analysis == "tran" else None
    with _lock:
        ng = _ngspice()
        failure = None
        try:
            ng.destroy()  # drop plots of earlier runs so this run's plot is unambiguous
            ng.clear_output()
            try:
                ng.load_circuit(netlist)
            except Exception as exc:  # PySpice raises on any 'error' in ngspice's output
                failure = f"ngspice rejected the netlist ({type(exc).__name__})"
            messages = ng._stdout + ng._stderr  # each PySpice command clears them: keep the parser's
            if failure is None:
                try:
                    ng.run()
                except Exception:
                    pass  # judged below from the data actually produced
            log = "\n".join(line.rstrip() for line in messages + ng._stdout + ng._stderr)
            plots = [p for p in ng.plot_names if p.lower().startswith(analysis)]
            vectors = _read_plot(ng, plots[0]) if plots and failure is None else {}
        finally:
            try:
                ng.remove_circuit()
            except Exception:
                pass
            ng.destroy()
    if failure is None and not vectors:
        failure = f"ngspice produced no {analysis} result"
    if failure is None and analysis == "tran":
        t = vectors.get("time")
        if t is None or t.size == 0 or t[-1] < stop * (1 - 1e-9):
            reached = "nothing" if t is None or t.size == 0 else f"t = {t[-1]:g} s"
            failure = f"transient stopped early: reached {reached} of {stop:g} s (convergence failure)"
    if failure is not None:
        raise SpiceError(failure, netlist=netlist, log=log)
    return SpiceResult(analysis=analysis, vectors=vectors, log=log, netlist=netlist)


def run_many(netlists: list[str], processes: int | None = None) -> list[SpiceResult]:
    """Run independent netlists, in a process pool when ``processes`` > 1 (each worker its own ngspice)."""
    if processes is None or processes <= 1 or len(netlists) <= 1:
        return [run(n) for n in netlists]
    # 'spawn': each worker starts clean and loads its own ngspice, whatever the parent had loaded
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run, netlists))
