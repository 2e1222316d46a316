"""Keep large tensor buffers in the process heap instead of returning them to the kernel after every operation.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB by default) with a fresh ``mmap``
and unmaps it on ``free``. A crossbar layer on a CPU allocates and frees buffers of tens to hundreds of MiB per read
(a spiking CNN's unfolded conv inputs over all time steps, the per-tile products, the read-noise draws), so every
read page-faults its buffers in again, zero-filled by the kernel: measured on the Fashion spiking CNN's noisy
evaluation, 52 s of system time against 28 s of user time. Raising the mmap and trim thresholds keeps freed blocks
for reuse, as the jemalloc/tcmalloc preload that PyTorch's CPU performance guide recommends does; the cost is a
resident size that stays at the run's peak instead of shrinking between reads.

:func:`tune_malloc` is called once by memsim's entry points (the command line, sweep workers); a library user
calls it (or not) themselves. It changes nothing where the user already chose (``MALLOC_*`` variables,
``GLIBC_TUNABLES``, a preloaded allocator, ``MEMSIM_MALLOC=system``) and off glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"]

#: blocks up to this size come from the heap (and go back to it on ``free``); mallopt takes a C int, so this is the
#: largest value it accepts (2 GiB)
MMAP_THRESHOLD = (1 << 31) - 1
#: the heap returns memory to the kernel only when this much is free at its top
TRIM_THRESHOLD = (1 << 31) - 1
#: the heap grows by at least this much, so a growing run takes fewer ``brk`` calls and page faults
TOP_PAD = 1 << 28

# mallopt's parameter numbers (<malloc.h>)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

_result: str | None = None  # what the first call did


def _user_chose() -> str | None:
    """Why the allocator is the user's business here, or None."""
    if os.environ.get("MEMSIM_MALLOC", "").strip().lower() == "system":
        return "MEMSIM_MALLOC=system"
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
        if name in os.environ:
            return f"${name} is set"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(lib in preload for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return "an allocator is preloaded"
    return None


def tune_malloc() -> str:
    """Raise glibc's mmap and trim thresholds for this process (once; later calls return the first answer).
    Returns what was done, for logs: ``"tuned"`` or why not."""
    global _result
    if _result is not None:
        return _result
    reason = _user_chose()
    if reason is None and not sys.platform.startswith("linux"):
        reason = f"not glibc ({sys.platform})"
    if reason is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            reason = "no mallopt in the C library (not glibc)"
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = all(mallopt(param, value) == 1 for param, value in (
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
            reason = "tuned" if ok else "mallopt refused the thresholds"
    _result = reason
    return reason
