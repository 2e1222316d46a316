"""memsim.allocator: large buffers stay in the heap (counted in page faults), and a user's own choice is kept."""
import subprocess
import sys
import textwrap

import pytest

from memsim import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocate, touch and free a 64 MiB buffer 20 times; print the minor page faults of the last 10 rounds (the first
# ones may grow the heap) and what tune_malloc said. Untuned glibc maps each buffer afresh: ~16 k faults a round.
# The probe loads memsim/allocator.py by its path: it imports nothing of memsim (import layer 0), and importing the
# package would import torch (~2.5 s per interpreter).
_PROBE = textwrap.dedent("""
    import importlib.util, resource, sys, ctypes
    spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    tune_malloc = allocator.tune_malloc
    said = tune_malloc() if sys.argv[1] == "tune" else "untouched"
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    n = 64 << 20
    def round_trip():
        p = libc.malloc(n)
        ctypes.memset(p, 1, n)
        libc.free(p)
    for _ in range(10):
        round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        round_trip()
    print(said, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str, env: dict | None = None) -> tuple[str, int]:
    import os
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, allocator.__file__], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return " ".join(out[:-1]), int(out[-1])


def test_tuned_heap_reuses_large_blocks_without_page_faults():
    said, tuned = _faults("tune", {"MEMSIM_MALLOC": ""})
    _, untuned = _faults("plain")
    assert said == "tuned"
    pages = 10 * (64 << 20) // 4096  # 10 rounds of 64 MiB in 4 KiB pages
    assert untuned > 0.5 * pages, untuned   # glibc's default maps (and faults in) every round's block
    assert tuned < 0.01 * pages, tuned      # tuned: the freed block is reused, already mapped


@pytest.mark.parametrize("env, reason", [
    ({"MEMSIM_MALLOC": "system"}, "MEMSIM_MALLOC=system"),
    ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "$MALLOC_TRIM_THRESHOLD_ is set"),
])
def test_a_users_allocator_choice_is_kept(env, reason):
    said, faults = _faults("tune", env)
    assert said == reason
    assert faults > 0.5 * 10 * (64 << 20) // 4096  # nothing was tuned: glibc's default behaviour
