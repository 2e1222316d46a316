"""A sweep's processes end with it: its local pool workers when the sweep is killed (kill -9), the Ray instance it
started when it gets SIGTERM; and what a sweep names is checked before any folder is made (``--address auto``
with no cluster, bundled config names in ``base.config``). The process tests read Linux's /proc."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsim.cli import main
from memsim.resources import bundled_configs
from memsim.sweep import SweepError, load_spec

from sweep_helpers import tiny_checkpoint

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from Linux /proc")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("lifecycle_ckpt"))


def _slow_spec(folder: Path, ckpt: Path, n: int = 10) -> Path:
    """``n`` points of about a second each (all test images, the exact IR-drop solve, 8 chips): busy workers."""
    p = folder / "slow.toml"
    noise = ", ".join(f"{0.01 * i:.2f}" for i in range(n))
    p.write_text(f'name = "slow"\n[base]\ncheckpoint = "{ckpt}"\npreset = "hfox_1t1r_64"\nmode = "irdrop"\n'
                 f'chips = 8\nlimit = 0\n[axes]\n"noise.program" = [{noise}]\n')
    return p


# -- processes, from /proc ---------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name in (...) may hold spaces
    return int(fields[1]), fields[0], fields[19]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process below ``root``."""
    table = {int(d): s for d in os.listdir("/proc") if d.isdigit() and (s := _stat(int(d)))}
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, start) in table.items():
            if ppid == parent and pid not in found and state != "Z":
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(pid: int, start: str) -> bool:
    """The same process (not a reused pid) still runs; a zombie has ended (nobody may reap an orphan here)."""
    s = _stat(pid)
    return s is not None and s[2] == start and s[1] not in ("Z", "X")


def _wait_gone(procs: dict[int, str], timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := {p: s for p, s in procs.items() if _alive(p, s)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _kill_left(procs: dict[int, str]) -> None:
    """A failing test must not leave 400 MB workers behind."""
    for pid, start in procs.items():
        if _alive(pid, start):
            os.kill(pid, signal.SIGKILL)


def _sweep(spec: Path, out: Path, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "memsim", "sweep", "run", str(spec), "--out", str(out),
                                 "--quiet", *args], stdout=f, stderr=subprocess.STDOUT)


def _wait_for_points(proc: subprocess.Popen, out: Path, log: Path, timeout: float = 90) -> None:
    """Until the sweep has written a point (its workers are up and busy with the next ones)."""
    deadline = time.monotonic() + timeout
    while not any((out / "points").glob("*.json")):
        assert proc.poll() is None, f"the sweep ended early ({proc.returncode}): {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no point written in {timeout} s: {log.read_text()[-2000:]}"
        time.sleep(0.1)


# -- 1. kill -9 of the sweep ends its pool workers ---------------------------------------------------------------

@needs_proc
def test_killed_sweep_leaves_no_workers(tmp_path, ckpt):
    """`kill -9` of `memsim sweep run` (local pool, 2 workers): every worker (and the resource tracker) is gone
    within 10 s; before, the workers stayed blocked on their task pipe, about 400 MB each, until killed by hand."""
    out, log = tmp_path / "out", tmp_path / "sweep.log"
    proc = _sweep(_slow_spec(tmp_path, ckpt), out, "--workers", "2", log=log)
    children = {}
    try:
        _wait_for_points(proc, out, log)
        children = _descendants(proc.pid)
        workers = [p for p in children if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2, {p: _cmdline(p) for p in children}
        proc.kill()
        proc.wait(timeout=10)
        left = _wait_gone(children, 10)
        assert not left, f"still running after the sweep was killed: {[_cmdline(p) for p in left]}"
    finally:
        proc.kill()
        _kill_left(children)


# -- 2. SIGTERM to a Ray sweep shuts its Ray instance down ---------------------------------------------------------

@needs_proc
def test_sigterm_shuts_local_ray_down(tmp_path, ckpt):
    """SIGTERM to `memsim sweep run --backend ray` (a local Ray instance memsim starts) while points run: exit
    code 143 (128 + SIGTERM), and no process of that instance is left: gcs_server, raylet, its workers and
    agents (all below the sweep's process), nor anything else naming its session folder."""
    pytest.importorskip("ray")
    out, log = tmp_path / "out", tmp_path / "sweep.log"
    proc = _sweep(_slow_spec(tmp_path, ckpt), out, "--backend", "ray", "--workers", "1", log=log)
    seen = {}
    try:
        deadline = time.monotonic() + 90
        while not any((out / "points").glob("*.json")):  # record Ray's processes as they start
            assert proc.poll() is None, f"the sweep ended early ({proc.returncode}): {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no point written in 90 s: {log.read_text()[-2000:]}"
            seen.update(_descendants(proc.pid))
            time.sleep(0.1)
        seen.update(_descendants(proc.pid))
        cmds = {p: _cmdline(p) for p in seen}
        assert any("gcs_server" in c for c in cmds.values()) and any("raylet" in c for c in cmds.values()), cmds
        session = next(a.split("=", 1)[1] for c in cmds.values() for a in c.split()
                       if a.startswith(("--session-dir=", "--session_dir=")))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-2000:]
        left = _wait_gone(seen, 10)
        assert not left, f"Ray processes left running: {[_cmdline(p) for p in left]}"
        strays = [c for d in os.listdir("/proc") if d.isdigit() and session in (c := _cmdline(int(d)))
                  and (s := _stat(int(d))) and s[1] != "Z"]
        assert not strays, f"processes of the Ray session {session} left running: {strays}"
    finally:
        proc.kill()
        _kill_left(seen)


# -- 3. --address auto with no cluster: an error before any folder -------------------------------------------------

def test_address_auto_without_cluster(tmp_path, ckpt, monkeypatch, capsys):
    """No cluster to find (Ray's own look-up: $RAY_ADDRESS, the last `ray start`, a raylet on this machine, made to
    find none so that a cluster another test runs cannot interfere): exit 2, one line saying how to start one or
    to drop --address, and no results folder. An address that auto finds but that does not answer: the same."""
    services = pytest.importorskip("ray._private.services")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: frozenset())
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir=None: None)
    spec, out = _slow_spec(tmp_path, ckpt, n=2), tmp_path / "out"
    argv = ["sweep", "run", str(spec), "--out", str(out), "--backend", "ray", "--address", "auto"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("memsim: error: --address auto: no running Ray cluster was found on this machine. Fix: start "
                   "one (ray start --head), or drop --address to let memsim start a local Ray instance")
    assert not out.exists()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # the discard port: nothing listens (Ray may name the host)
    assert main(argv) == 2
    assert re.search(r"the Ray cluster at \S+:9 \(found by --address auto\) does not answer",
                     capsys.readouterr().err)
    assert not out.exists()


# -- 4. bundled config names in a spec ----------------------------------------------------------------------------

def test_spec_config_bundled_name_or_spec_relative_path(tmp_path, monkeypatch):
    """base.config takes a bundled config's name, as `memsim train` does (NAME, NAME.toml, configs/NAME.toml); a
    relative path is read from the spec's folder, whatever the working folder, and wins over a bundled name; a
    name that is neither is refused naming the field, the value and the closest bundled name."""
    bundled = bundled_configs()["digits_quickstart"].resolve()
    specs = tmp_path / "specs"
    specs.mkdir()
    monkeypatch.chdir(tmp_path)  # not the spec's folder

    def config_of(value: str) -> Path:
        p = specs / "ft.toml"
        p.write_text(f'[base]\nconfig = "{value}"\nfinetune_epochs = 1\n[axes]\n"adc.bits" = [4]\n')
        spec = load_spec(p)
        return Path(spec.resolve(spec.points()[0])["config"])

    for name in ("digits_quickstart", "digits_quickstart.toml", "configs/digits_quickstart.toml"):
        assert config_of(name) == bundled
    (specs / "digits_quickstart.toml").write_text("[network]\nlayers = [64, 20, 10]\n")
    (specs / "cfg").mkdir()
    (specs / "cfg" / "mine.toml").write_text("[network]\nlayers = [64, 20, 10]\n")
    assert config_of("digits_quickstart.toml") == specs / "digits_quickstart.toml"
    assert config_of("cfg/mine.toml") == specs / "cfg" / "mine.toml"
    with pytest.raises(SweepError, match=r"ft.toml.base.config = 'digits_quikstart': config file \S+/specs/"
                                         r"digits_quikstart does not exist and is not a bundled config\. "
                                         r"Did you mean 'digits_quickstart'\?"):
        config_of("digits_quikstart")
