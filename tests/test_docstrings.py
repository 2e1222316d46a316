"""The examples in the public layers' and solvers' docstrings run as written (doctest)."""
import doctest

import pytest

import memsim.crossbar.operator
import memsim.devices.array
import memsim.nn.crossbar
import memsim.nn.grouped
import memsim.nn.neurons
import memsim.safetext
import memsim.training.network
import memsim.training.synapses
import memsim.training.twin


@pytest.mark.parametrize("module", [memsim.nn.crossbar, memsim.crossbar.operator, memsim.nn.neurons,
                                    memsim.nn.grouped, memsim.devices.array,
                                    memsim.training.twin, memsim.training.network,
                                    memsim.training.synapses, memsim.safetext])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
