"""Crossbar arrays: weight mapping, tiling, periphery, non-idealities and an IR-drop nodal solver.

The tile solver is verified against ngspice ``.op`` (:mod:`memsim.crossbar.verify`);
the layers built on it live in :mod:`memsim.nn.crossbar`.
"""
from .array import MODES, CrossbarArray
from .circuit import TileCircuit, Transistor, Wires
from .mapping import Mapping, check_window, conductance_window, quantise, state_for_conductance
from .nonideal import NonIdealities
from .periphery import ADC, DAC
from .presets import Preset, list_presets, load_preset
from .solver import (NodeSolution, solve_approx, solve_ideal, solve_linear, solve_linear_nodes, solve_nonlinear)
from .tiling import TileGrid, TileInfo

__all__ = ["MODES", "CrossbarArray", "TileCircuit", "Transistor", "Wires", "Mapping", "check_window",
           "conductance_window", "quantise", "state_for_conductance", "NonIdealities", "ADC", "DAC", "Preset",
           "list_presets", "load_preset", "NodeSolution", "solve_approx", "solve_ideal", "solve_linear",
           "solve_linear_nodes", "solve_nonlinear", "TileGrid", "TileInfo"]
