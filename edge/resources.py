"""Bounded resources on a small device: threads, batch size, GDAL cache and a memory ceiling.

`--max-memory MB` is honoured in two ways:

1. Planning. What the process holds before any pixel is read (Python, GDAL, ONNX Runtime and the
   model) is measured; the rest is split between GDAL's block cache and the strips of tiles in
   flight (the pipeline keeps about `STRIPS_IN_FLIGHT` strips of `batch_size` tiles), which sets the
   batch size. The pipeline's memory does not grow with the raster size, so a plan that fits for
   one strip fits for the whole orthomosaic.
2. Enforcement by resident memory (RSS, what the kernel's OOM killer counts), checked after every
   strip through the pipeline's progress callback: over the ceiling, the capture stops with a
   clear message and is recorded as failed; its half-made outputs are discarded by the pipeline.
   Writing the outputs (after the last strip) is measured too, by the kernel's exact peak: a
   capture that went over the ceiling there is recorded as failed and its outputs removed, never
   done with a warning.

Why not `setrlimit(RLIMIT_AS)`: it limits address space, not memory. ONNX Runtime's and glibc's
per-thread arenas and the mapped libraries reserve hundreds of MB that are never touched, so an
honest RAM figure would make allocations fail at random, and a failed allocation inside GDAL or
ONNX Runtime's C++ can abort the process instead of raising, which on a device means a crash loop.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass

from khet.vision.memory import release_free_memory, tune_malloc  # noqa: F401 (re-exported)

from khet.errors import KhetError
from khet.settings import Settings

STRIPS_IN_FLIGHT = 5  # queue of 3, one being read, one being inferred
MIN_GDAL_CACHE_MB = 8
MAX_GDAL_CACHE_MB = 256
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Resident memory of this process now, in MB (peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    VmHWM where /proc has it: ru_maxrss survives exec on Linux, so a process started from a big
    parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (VmHWM) so that it measures what comes next;
    False where the kernel does not allow it (then only sampling sees the peak)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tile_bytes(tile_size: int, bands: int) -> int:
    """Memory one tile costs while in flight: its pixels as read (up to 16-bit, with the index
    bands), the model's uint8 copy, the float32 index work of its cell, and the network's
    activations (assumed a few float32 feature maps of the tile's size)."""
    pixels = tile_size * tile_size
    return pixels * (bands * (2 + 1 + 4) + 1 + 4 * 8)


@dataclass
class Plan:
    threads: int
    batch_size: int
    gdal_cache_mb: int
    max_memory_mb: int | None
    baseline_mb: float

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(
            update={
                "threads": self.threads,
                "batch_size": self.batch_size,
                "gdal_cache_mb": self.gdal_cache_mb,
            }
        )


def plan(
    base: Settings,
    *,
    threads: int | None,
    batch_size: int | None,
    gdal_cache_mb: int | None,
    max_memory_mb: int | None,
    tile_size: int,
    bands: int,
) -> Plan:
    """Resources for the analyses to come; explicit settings win but must fit in `max_memory_mb`."""
    t = base.threads if threads is None else threads
    batch = batch_size or base.batch_size
    cache = gdal_cache_mb or base.gdal_cache_mb
    baseline = rss_mb()
    if max_memory_mb is not None:
        free = max_memory_mb - baseline
        if free < 2 * MIN_GDAL_CACHE_MB:
            raise KhetError(
                f"--max-memory {max_memory_mb} MB is too low: Khet and the model already use "
                f"{baseline:.0f} MB. Allow at least {baseline + 64:.0f} MB."
            )
        # Never more than asked: a quarter for GDAL's cache (within bounds), half for strips,
        # the rest as headroom for writing the outputs and for the allocator.
        cache = min(cache, int(min(MAX_GDAL_CACHE_MB, max(MIN_GDAL_CACHE_MB, free * 0.25))))
        per_tile = tile_bytes(tile_size, bands) * STRIPS_IN_FLIGHT / 2**20
        batch = min(batch, max(1, int(free * 0.5 / per_tile)))
    return Plan(
        threads=t,
        batch_size=batch,
        gdal_cache_mb=cache,
        max_memory_mb=max_memory_mb,
        baseline_mb=baseline,
    )


def apply_process_limits(p: Plan) -> None:
    """Process-wide knobs set before rasters open: malloc, GDAL's cache, OpenCV threads."""
    tune_malloc()
    from rasterio.env import set_gdal_config

    # Process-wide (GDALSetCacheMax64), in bytes: a number here is bytes, not megabytes.
    set_gdal_config("GDAL_CACHEMAX", p.gdal_cache_mb * 1024 * 1024)
    if p.threads:
        import cv2

        cv2.setNumThreads(p.threads)


class MemoryGuard:
    """A progress callback that stops an analysis when resident memory passes the ceiling.

    The process's peak (VmHWM) is reset when a capture starts, so at its end it is the capture's
    exact peak; a sampling thread also watches it where the kernel cannot reset it. The check
    runs in the pipeline's main loop, after every strip, where stopping is clean. Writing the
    outputs after the last strip is not interrupted: a capture whose peak went over the ceiling
    there (`over`) is failed by the runner after the fact, and its outputs removed.
    """

    def __init__(
        self,
        max_memory_mb: int | None,
        progress: Callable[[int, int], None] | None = None,
        every: float = 0.1,
    ) -> None:
        self.max_memory_mb = max_memory_mb
        self.progress = progress
        self.peak_mb = rss_mb()
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryGuard:
        self.exact = reset_peak_rss()
        self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, name="khet-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
        if self.exact:  # the kernel's peak since __enter__: no spike between samples missed
            self.peak_mb = max(self.peak_mb, peak_rss_mb())

    @property
    def over(self) -> bool:
        """The capture went over the ceiling at some moment (writing its outputs included)."""
        return self.max_memory_mb is not None and self.peak_mb > self.max_memory_mb

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __call__(self, done: int, total: int) -> None:
        now = rss_mb()
        self.peak_mb = max(self.peak_mb, now)
        if self.max_memory_mb is not None and now > self.max_memory_mb:
            raise KhetError(
                f"The analysis needed more than the {self.max_memory_mb} MB allowed by "
                f"--max-memory (it reached {now:.0f} MB); stopped and left nothing half-written. "
                "Allow more memory or lower --batch-size."
            )
        if self.progress:
            self.progress(done, total)
