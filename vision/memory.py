"""glibc allocator knobs. `analyze()` bounds the arenas and gives freed pages back between its
stages (and between the row search's blocks, which each allocate and free tens of MB): its
strip workers reuse their buffers, but freed memory stranded in the heap and in each thread's
arena made the peak grow with the raster (`bench/pipeline_memory.py`, crop rows at 8192 and
32768 px: 388 and 478 MB; with these, 342 and 431 MB; one arena held 26 MB less than two at
32768 px, at the same pipeline speed). The edge runner, analysing capture after capture, also
fixes the mmap threshold (`tune_malloc`): that cost the row method a fifth of its speed, which
a single analysis need not pay."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_M_ARENA_MAX = -8
ARENAS = 1


@functools.cache
def _glibc() -> Any:
    """glibc, loaded once; None where it is not the C library (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_malloc(mmap_threshold: int = 256 * 1024, arenas: int = ARENAS) -> bool:
    """Make freed buffers go back to the system at once (glibc); True when done.

    glibc's dynamic mmap threshold moves multi-MB sizes from mmap into the heap after the first
    free, and each thread's heap (arena) keeps what is freed: a process that analyzes capture
    after capture keeps its largest strips resident for good (once measured: 1.5 GB on a
    16384 px orthomosaic whose working set is 0.3 GB). A fixed threshold gives every buffer
    above it its own mapping, returned when freed; fewer arenas bound what small allocations
    can strand. Set at run time with `mallopt` (the MALLOC_* environment variables are read only
    at process start). Not glibc (musl, macOS): nothing to do.
    """
    libc = _glibc()
    ok = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    return bound_arenas(arenas) and ok


def bound_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas from now on (glibc; each thread otherwise gets its own, up
    to 8 per core, each keeping what is freed in it); True when set."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Give freed heap pages back to the system (glibc only): between captures, between the
    pipeline's stages and between the row search's blocks."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
