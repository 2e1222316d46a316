"""Device fitting: measured I-V sweeps and pulse conductance curves in, a verified device card out.

:mod:`.data` reads and checks measurements, :mod:`.protocol` replays their stimulus in torch (batched over
candidate parameter sets) and in ngspice, :mod:`.fit` fits a family (bounded, multi-start, identifiability
from the Gauss-Newton Hessian), :mod:`.card` writes the fitted card and its ``.lib``, :mod:`.variation` fits
cycle-to-cycle and device-to-device spread into a crossbar preset's noise section, :mod:`.select` ranks
families, :mod:`.synthetic` makes ngspice data with hidden parameters for tests and benchmarks.
:mod:`.pulses` turns pulse data into LTP/LTD curves (and polarity data into a card's pulses), and
:mod:`.behavioural` fits the behavioural pulse-response families (:mod:`memsim.pulse`) to them.
"""
from .data import DataError, Measurement, UnitsWarning, read_measurement
from .behavioural import fit_pulse_family
from .fit import DEFAULT_FREE, FitError, FitResult, fit
from .protocol import PulseTiming

__all__ = ["DataError", "Measurement", "UnitsWarning", "read_measurement", "DEFAULT_FREE", "FitError", "FitResult",
           "fit", "fit_pulse_family", "PulseTiming"]
