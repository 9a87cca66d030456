"""Keeping the pipeline's memory flat: glibc's allocator, tuned for strips handed across threads."""

from __future__ import annotations

import ctypes
import sys

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_M_ARENA_MAX = -8

_tuned = False


def tune_malloc(mmap_threshold: int = 256 * 1024, arenas: int = 2) -> bool:
    """Make freed tile buffers go back to the system at once (glibc); True when done.

    The pipeline allocates strips of tiles (a few MB each) in its reader thread and frees them in
    the main thread. glibc's dynamic mmap threshold moves such sizes from mmap into the heap
    after the first free, and each thread's heap (arena) keeps what is freed, so resident memory
    grew to 1.5 GB on a 16384 px orthomosaic whose working set is 0.3 GB. A fixed threshold keeps
    every buffer above it in its own mapping, returned to the system when freed: the same run
    peaked at 0.40 GB. Fewer arenas also bound what small allocations can strand. The environment
    variables (MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX) would do the same but are read only at
    process start; `mallopt` works at run time. Not glibc (musl, macOS): nothing to do.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
        return bool(libc.mallopt(_M_ARENA_MAX, arenas)) and ok
    except (OSError, AttributeError):
        return False


def release_free_memory() -> None:
    """Give freed heap pages back to the system between captures (glibc only)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def tune_once() -> None:
    """`tune_malloc` the first time a process analyzes something."""
    global _tuned
    if not _tuned:
        tune_malloc()
        _tuned = True
