"""One exception hierarchy for memsim.

Every error a user can trigger with bad input derives from :class:`MemsimError`
and says *what* was wrong (field and value), *what is allowed* and *how to fix it*.
"""
from __future__ import annotations


class MemsimError(Exception):
    """Root of all memsim errors."""


class ParameterError(MemsimError, ValueError):
    """A parameter, argument or option has an invalid value."""

    def __init__(self, field: str, value, allowed: str, fix: str | None = None):
        self.field, self.value, self.allowed, self.fix = field, value, allowed, fix
        msg = f"{field} = {value!r} is invalid: allowed {allowed}."
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class CalibrationError(MemsimError, RuntimeError):
    """A converter range that the preset asks to calibrate was never measured, or a calibration could not run.

    ``layer`` names the crossbar layer (its qualified name in the model, when known)."""

    def __init__(self, message: str, layer: str | None = None):
        self.layer = layer
        super().__init__(message)


class CardError(MemsimError):
    """A device card (TOML) is missing, malformed or inconsistent."""


class ConfigError(MemsimError, ValueError):
    """A training configuration (TOML file or command-line override) has an unknown key or a bad value.

    ``key`` is the dotted key (``training.epochs``), ``value`` the offending value and ``allowed`` what
    would be accepted, when they apply.
    """

    def __init__(self, message: str, key: str | None = None, value=None, allowed: str | None = None):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(message)


class DataError(MemsimError, ValueError):
    """A data file is unusable: a dataset file missing, corrupt, truncated or not the expected release, or a
    measurement file that cannot be fitted (what, where, and how to fix it)."""


class StimulusError(MemsimError, ValueError):
    """A stimulus waveform or simulation time step is unusable."""


class NonFiniteError(MemsimError, FloatingPointError):
    """A simulated state or output became NaN or infinite."""


class SpiceUnavailableError(MemsimError, ImportError):
    """ngspice or PySpice is not installed, so the SPICE path cannot run."""


class SpiceError(MemsimError, RuntimeError):
    """ngspice rejected a netlist or an analysis failed to converge.

    ``netlist`` holds the netlist that was run and ``log`` ngspice's own messages.
    """

    def __init__(self, message: str, netlist: str = "", log: str = ""):
        self.netlist, self.log = netlist, log
        text = message
        if log:
            text += "\n--- ngspice said ---\n" + log.strip()
        if netlist:
            numbered = "\n".join(f"{k + 1:4d}  {line}" for k, line in enumerate(netlist.splitlines()))
            text += "\n--- netlist ---\n" + numbered
        super().__init__(text)


class ConvergenceError(MemsimError, ArithmeticError):
    """An iterative solve stopped short of its tolerance; carries the residual it reached."""

    def __init__(self, message: str, residual: float, iterations: int):
        super().__init__(message)
        self.residual, self.iterations = residual, iterations
