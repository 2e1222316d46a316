"""Progress output fit for a log file: whole lines, at most one per LOG_INTERVAL, and the final state once."""
import subprocess
import sys
import textwrap

import memsim

#: load memsim/progress.py alone (it needs only tqdm): the package's own import would cost seconds per test
_LOAD = (f"import importlib.util; _s = importlib.util.spec_from_file_location('progress', "
         f"{memsim.__file__.replace('__init__.py', 'progress.py')!r}); progress = importlib.util.module_from_spec(_s); "
         f"_s.loader.exec_module(progress); progress_bar = progress.progress_bar\n")


def _run(code: str) -> str:
    """stderr of ``code`` run with stderr redirected to a pipe (not a terminal), as under a batch job."""
    proc = subprocess.run([sys.executable, "-c", _LOAD + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_log_file_gets_whole_lines_not_redraws():
    err = _run("""
        import time
        progress.LOG_INTERVAL = 0.3
        bar = progress_bar(total=2000, desc="epoch 1/3", leave=True)
        for _ in range(2000):
            time.sleep(0.0005)
            bar.update(1)
        bar.close()
    """)
    assert "\r" not in err
    lines = err.strip().splitlines()
    # ~1.2 s of updates at one line per 0.3 s, plus the final line: a handful, never one per update
    assert 2 <= len(lines) <= 8, lines
    assert lines[-1].startswith("epoch 1/3: 100%") and "2000/2000" in lines[-1]
    assert len(set(lines)) == len(lines)


def test_a_short_bar_in_a_log_prints_its_final_state_once():
    err = _run("""
        for _ in progress_bar(range(500), desc="verify", unit="check"):
            pass
        for _ in progress_bar(range(500), desc="batches", leave=False):
            pass
    """)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("verify: 100%"), lines


def test_postfix_updates_do_not_bypass_the_interval():
    """The training loop sets a postfix every batch; tqdm redraws on each one. A log still gets no per-batch line."""
    err = _run("""
        progress.LOG_INTERVAL = 30.0
        bar = progress_bar(total=500, desc="epoch 1/1", leave=False)
        for k in range(500):
            bar.update(1)
            bar.set_postfix(loss=1.0 / (k + 1))
        bar.close()
        with progress_bar(total=5, desc="chips") as bar:
            for _ in range(5):
                bar.update(1)
                bar.set_postfix(acc=0.5)
    """)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chips: 100%"), lines
