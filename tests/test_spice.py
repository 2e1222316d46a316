"""The SPICE bridge: results against closed form, failures as SpiceError, quiet output, process pools."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from memsim.errors import SpiceError

pytestmark = pytest.mark.spice

DIVIDER = """.title divider
V1 in 0 DC 2.0
R1 in mid 1k
R2 mid 0 3k
.op
.end
"""

RC = """.title rc step
V1 in 0 PWL(0 0 1n 1)
R1 in out 1k
C1 out 0 1u
.options reltol=1e-6
.tran 1e-6 5e-3 0 1e-6
.end
"""


def test_operating_point_matches_voltage_divider():
    from memsim import spice
    res = spice.run(DIVIDER)
    assert res.analysis == "op"
    assert res["v(mid)"][0] == pytest.approx(1.5, rel=1e-12)
    assert -res["v1#branch"][0] == pytest.approx(2.0 / 4e3, rel=1e-12)


def test_transient_matches_rc_charging():
    from memsim import spice
    res = spice.run(RC)
    t, v = res["time"], res["v(out)"]
    assert t[-1] == pytest.approx(5e-3)
    exact = 1 - np.exp(-np.clip(t - 1e-9, 0, None) / 1e-3)
    assert np.max(np.abs(v - exact)) < 1e-4


def test_syntax_error_raises_spice_error_with_netlist_and_message():
    from memsim import spice
    with pytest.raises(SpiceError) as info:
        spice.run(".title bad\nX1 a 0 NOSUCH\nV1 a 0 DC 1\n.op\n.end\n")
    text = str(info.value)
    assert "X1 a 0 NOSUCH" in text and "--- netlist ---" in text and "nosuch" in info.value.log.lower()


def test_non_converging_transient_raises_spice_error():
    from memsim import spice
    # a B-source with a state that runs away to infinity in finite time (x' = x^2) cannot reach t = 2 s
    runaway = textwrap.dedent("""\
        .title runaway
        Bx 0 x I = V(x)*V(x)
        Cx x 0 1 IC=1
        .tran 1e-3 2 0 1e-3 uic
        .end
        """)
    with pytest.raises(SpiceError, match="stopped early|no tran result|rejected") as info:
        spice.run(runaway)
    assert "Bx 0 x" in str(info.value)


def test_missing_analysis_is_an_error():
    from memsim import spice
    with pytest.raises(SpiceError, match="no .tran or .op"):
        spice.run(".title x\nR1 a 0 1k\n.end\n")


def test_no_pyspice_warning_or_ngspice_chatter_on_the_terminal():
    code = textwrap.dedent("""\
        from memsim import spice
        r = spice.run('''.title d\\nV1 a 0 DC 1\\nR1 a 0 1k\\n.op\\n.end\\n''')
        print('OK', r['v(a)'][0])
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK 1.0"
    assert "Unsupported Ngspice" not in out.stderr and out.stderr.strip() == ""


def test_pool_of_two_worker_processes_gives_the_serial_results():
    from memsim import spice
    nets = [DIVIDER.replace("DC 2.0", f"DC {v}") for v in (1.0, 2.0, 3.0, 4.0)]
    serial = [r["v(mid)"][0] for r in spice.run_many(nets, processes=1)]
    pooled = [r["v(mid)"][0] for r in spice.run_many(nets, processes=2)]
    assert pooled == serial == pytest.approx([0.75, 1.5, 2.25, 3.0])


def test_forked_workers_reuse_the_inherited_instance():
    import multiprocessing
    from memsim import spice
    spice.run(DIVIDER)  # the parent has loaded ngspice before forking
    nets = [DIVIDER.replace("DC 2.0", f"DC {v}") for v in (1.0, 3.0)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        values = [r["v(mid)"][0] for r in pool.map(spice.run, nets)]
    assert values == pytest.approx([0.75, 2.25])


def test_import_memsim_without_ngspice_and_clear_message_on_use():
    code = textwrap.dedent("""\
        import sys
        sys.modules['PySpice'] = None   # PySpice is not installed
        import memsim, memsim.verify, memsim.cli
        from memsim import spice
        assert not spice.available()
        try:
            spice.run('.title x\\n.op\\n.end\\n')
        except memsim.SpiceUnavailableError as e:
            print(e)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "apt-get install ngspice libngspice0 libngspice0-dev" in out.stdout
    env = dict(os.environ, NGSPICE_LIBRARY_PATH="/nonexistent/libngspice.so")
    out = subprocess.run([sys.executable, "-c", "from memsim import spice; print(spice.available())"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.strip() == "False", out.stderr
