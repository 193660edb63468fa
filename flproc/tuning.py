"""Process-wide allocator settings for processes that move large payloads.

Nothing here runs on import: entry points that receive or send model updates
and model versions (services, the demo, benchmarks) call
:func:`reuse_heap_buffers` once at start-up, as a deployment choice.

Why: moving a 4 MiB update allocates and frees multi-MiB buffers every time
(encoded messages and chunks, pickles, copies). With glibc's defaults, blocks
that large may come from fresh ``mmap`` pages, or the heap top is trimmed back
to the kernel after they are freed (which depends on what the process freed
before: glibc moves its threshold), so the next update touches new pages
again. Every new 4 KiB page costs a page fault, ~2.5 us in our VMs (the host
reclaims freed guest pages): milliseconds per update, more than the copies and
digests themselves. Keeping such blocks on the heap and not trimming it lets
the next update reuse the same, already mapped pages. bench.serde measures
both: pickle dumps+loads of a 4 MiB update runs at 1.7 GB/s with the defaults
and 15 GB/s tuned; the chunked codec (its reassembly buffer comes from numpy)
at 7.0 and 7.4 GB/s.

Cost: freed memory up to ``trim_threshold`` stays mapped in the process (RSS
does not shrink below its peak by more than that); blocks larger than
``mmap_threshold`` (very large models) still come from ``mmap`` as before.
The same settings can be given from outside as the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` (glibc).
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

DEFAULT_MMAP_THRESHOLD = 32 * 2**20
"""Blocks below this come from the heap (glibc's own limit for the knob is 32 MiB)."""

DEFAULT_TRIM_THRESHOLD = 256 * 2**20
"""Free memory at the heap top kept mapped rather than returned to the kernel."""


def reuse_heap_buffers(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> bool:
    """Ask glibc malloc to keep large freed buffers for reuse; True if it was applied.

    Changes process-global state (``mallopt``); call it from an entry point,
    not from library code. Returns False, changing nothing, where the C
    library is not glibc (musl, macOS, Windows).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter is linked with
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1)
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1) and ok
