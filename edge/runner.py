"""The offline runner: analyze captures from a file, a folder or a watched SD card, exactly once.

Every capture goes through `khet.vision.pipeline.analyze` (the one pipeline) into `OUT/<name>/`.
The journal (`edge.journal`) records `running` before the work and `done` after `analyze` has
renamed `summary.json` into place, in one transaction with the outbox entry. After a power loss a
capture found `running` is analyzed again from scratch (its leftover staging folder is removed):
nothing half-written is taken as done, and nothing done is analyzed twice. A capture that keeps
killing the process (out of memory, a crashing library) is marked failed after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from khet.errors import InputError, KhetError
from khet.settings import Settings, get_settings

from . import bundles as edge_bundles
from . import outbox, resources
from .journal import MAX_ATTEMPTS, STATE_DIR, Journal

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class EdgeOptions:
    """What `khet edge run/watch` was asked; None means the KHET_* setting or the derived value."""

    out: Path
    bands: list[str] | None = None
    model: str | None = None
    model_sha256: str | None = None
    precision: str = "auto"
    threads: int | None = None
    batch_size: int | None = None
    gdal_cache_mb: int | None = None
    max_memory_mb: int | None = None
    field: str | None = None
    with_imagery: bool = False
    retry_failed: bool = False
    models_dir: Path | None = None
    mosaic: bool = False  # a folder of a flight's frames is one capture, mosaicked first
    # After each map, a spot-spray map (vision/prescription.spot_spray's keyword arguments:
    # margin_m, min_patch_m2, rate, ...) into OUT/<capture>/management/; None: none.
    spot_spray: dict[str, Any] | None = None


@dataclass
class Capture:
    key: str  # relative path of the capture (stable across runs)
    wanted: str  # preferred folder name under OUT
    alternative: str  # used when another capture has the wanted name
    files: list[Path] = field(default_factory=list)


def discover(
    inputs: Sequence[Path], exclude: Path | None = None, flights: bool = False
) -> dict[str, Capture]:
    """Captures in files and folders (searched recursively; hidden folders and OUT skipped).

    With `flights`, a folder holding two or more captures is one flight: analysed as one
    capture, which the pipeline mosaics before making the map (`khet edge run --mosaic`)."""
    from khet.vision.flight import is_flight_captures
    from khet.vision.scene import IMAGE_SUFFIXES, group_captures

    found: dict[str, Capture] = {}
    ex = exclude.resolve() if exclude else None
    loose: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            root = p.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                d = Path(dirpath)
                dirnames[:] = sorted(
                    n
                    for n in dirnames
                    if not n.startswith(".") and (ex is None or (d / n).resolve() != ex)
                )
                files = sorted(
                    d / f
                    for f in filenames
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
                )
                groups = group_captures(files)
                if flights and is_flight_captures(list(groups.values())):
                    _add(found, d, root, files)
                    continue
                for key, group in groups.items():
                    _add(found, Path(key), root, group)
        elif p.is_file():
            loose.append(p.resolve())
        else:
            raise InputError(f"{p} does not exist.")
    for key, group in group_captures(loose).items():
        _add(found, Path(key), Path(key).parent, group)
    return found


def _add(found: dict[str, Capture], key: Path, root: Path, files: list[Path]) -> None:
    rel = key.relative_to(root) if key.is_relative_to(root) else Path(key.name)
    if not rel.parts:  # the folder given is itself a flight
        rel = Path(root.name)
    is_file = key.suffix.lower() in {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt"}
    stem = rel.with_suffix("") if is_file else rel
    wanted = "__".join(stem.parts)
    alternative = "__".join(rel.parts).replace(".", "_")
    found[str(key)] = Capture(str(key), wanted, alternative, files)


def fingerprint(files: Sequence[Path]) -> str:
    """Sizes and modification times: equal fingerprints mean the files did not change."""
    parts = []
    for f in sorted(files):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _lock(path: Path):
    """One runner per output folder: two would analyze the same capture twice."""
    import fcntl

    f = open(path, "a")  # noqa: SIM115 - held open for the runner's life, closed in close()
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise KhetError(
            f"Another `khet edge run` or `watch` is already using {path.parent.parent}; "
            "wait for it to finish or stop it."
        ) from None
    return f


class EdgeRunner:
    """Analyzes captures into one output folder; see the module note for the guarantees."""

    def __init__(
        self, options: EdgeOptions, settings: Settings | None = None, log: Log = _print
    ) -> None:
        self.options = options
        self.out = Path(options.out)
        self.log = log
        base = settings or get_settings()
        self.journal = Journal(self.out)
        self.state_dir = self.out / STATE_DIR
        try:
            self._lock = _lock(self.state_dir / "runner.lock")
        except BaseException:
            self.journal.close()
            raise
        try:
            self._setup(options, base)
        except BaseException:
            self.close()
            raise

    def _setup(self, options: EdgeOptions, base: Settings) -> None:
        self.bundles = edge_bundles.select(
            options.models_dir or base.models_dir,
            self.state_dir / "models",
            self.journal,
            model=options.model,
            model_sha256=options.model_sha256,
            precision=options.precision,
        )
        tile = max(b.info.tile_size for b in self.bundles)
        nb = max(len(b.info.bands) for b in self.bundles) + 2  # + bands read for the indices
        self.plan = resources.plan(
            base,
            threads=options.threads,
            batch_size=options.batch_size,
            gdal_cache_mb=options.gdal_cache_mb,
            max_memory_mb=options.max_memory_mb,
            tile_size=tile,
            bands=nb,
        )
        resources.apply_process_limits(self.plan)
        # The pipeline chooses among the verified copies, not the folder they came from.
        self.settings = self.plan.settings(base).model_copy(
            update={"models_dir": self.state_dir / "models"}
        )
        self.peak_mb = resources.rss_mb()
        self.last_peak_mb = self.peak_mb
        self._recover()

    def close(self) -> None:
        self.journal.close()
        self._lock.close()

    def __enter__(self) -> EdgeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        models = ", ".join(
            f"{b.info.name} ({b.info.precision}, sha256 {b.sha256[:12]}… by {b.checked_by})"
            for b in self.bundles
        )
        p = self.plan
        mem = f", max memory {p.max_memory_mb} MB" if p.max_memory_mb else ""
        return (
            f"models: {models}; threads {p.threads or 'all'}, batch {p.batch_size}, "
            f"GDAL cache {p.gdal_cache_mb} MB{mem}"
        )

    # -- power-loss recovery -------------------------------------------------------------------
    def _recover(self) -> None:
        for rec in self.journal.captures("running"):
            if rec.attempts >= MAX_ATTEMPTS:
                self.journal.fail(
                    rec.key,
                    f"The analysis stopped unexpectedly {rec.attempts} times (power loss or out of "
                    "memory?); not trying again. Allow more --max-memory, lower --batch-size, "
                    "or check the images.",
                )
                self.log(f"{rec.name}: failed {rec.attempts} times, giving up")
            else:
                self.log(f"{rec.name}: interrupted last time, will analyze again")

    # -- one capture ---------------------------------------------------------------------------
    def should_process(self, cap: Capture, fp: str) -> bool:
        rec = self.journal.capture(cap.key)
        if rec is None or rec.status == "running":
            return True
        if rec.status == "done":
            return False
        # failed: only again when its files changed, or when asked
        return rec.fingerprint != fp or self.options.retry_failed

    def process(
        self,
        cap: Capture,
        fp: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> bool:
        """Analyze one capture; True when done, False when it failed (recorded, not raised)."""
        from khet.vision.pipeline import analyze

        fp = fp or fingerprint(cap.files)
        name = self.journal.name_for(cap.key, cap.wanted, cap.alternative)
        rec = self.journal.begin(cap.key, name, [str(f) for f in cap.files], fp, self.options.field)
        if rec.attempts > MAX_ATTEMPTS:
            msg = f"The analysis stopped unexpectedly {rec.attempts - 1} times; not trying again."
            self.journal.fail(cap.key, msg)
            self.log(f"{name}: failed: {msg}")
            return False
        dest = self.out / name
        for partial in dest.glob(".khet-partial-*"):  # left by an interrupted run
            shutil.rmtree(partial, ignore_errors=True)
        guard = resources.MemoryGuard(self.plan.max_memory_mb, progress)
        single = self.bundles[0].path if len(self.bundles) == 1 else None
        try:
            with guard:
                summary = analyze(
                    cap.files,
                    dest,
                    bands=self.options.bands,
                    model=single,
                    progress=guard,
                    settings=self.settings,
                    title=name,
                )
            if self.plan.max_memory_mb and guard.peak_mb > self.plan.max_memory_mb:
                self.log(
                    f"{name}: warning: memory peaked at {guard.peak_mb:.0f} MB while "
                    f"writing the outputs, over --max-memory {self.plan.max_memory_mb}"
                )
            imagery = cap.files if self.options.with_imagery else []
            if imagery and "mosaic" in summary:  # a flight: its imagery is the mosaic
                imagery = [dest / summary["mosaic"]["output"]]
            entry = outbox.stage(self.out, name, dest, imagery, summary)
            entry["bands"] = self.options.bands
        except KhetError as e:
            self.journal.fail(cap.key, e.message)
            self.log(f"{name}: failed: {e.message}")
            return False
        except MemoryError:
            msg = "Out of memory: allow more with --max-memory or lower --batch-size."
            self.journal.fail(cap.key, msg)
            self.log(f"{name}: failed: {msg}")
            return False
        finally:
            self.last_peak_mb = guard.peak_mb
            self.peak_mb = max(self.peak_mb, guard.peak_mb, resources.peak_rss_mb())
            resources.release_free_memory()
        self.journal.finish(cap.key, entry)
        self.log(_one_line(summary, dest))
        if self.options.spot_spray is not None:
            self._spot_spray(name, dest)
        return True

    def _spot_spray(self, name: str, dest: Path) -> None:
        """A spot-spray map of a finished capture, offline. The map is done either way: a map
        that cannot make one (no weeds told apart, no map coordinates) gets a note, not a
        failure."""
        from khet.vision.prescription import spot_spray

        try:
            res = spot_spray(dest, **(self.options.spot_spray or {}))
        except KhetError as e:
            self.log(f"{name}: no spot-spray map: {e.message}")
            return
        self.log(
            f"{name}: spot spray {res['sprayed_share']:.1%} of the field "
            f"({res['sprayed_ha']:.4f} of {res['field_ha']:.4f} ha, saving "
            f"{res['saving_share']:.1%}): {dest / res['files']['shapefile']}"
        )

    # -- many captures -------------------------------------------------------------------------
    def run(self, inputs: Sequence[Path]) -> dict[str, int]:
        """Analyze every capture in `inputs` that is not done yet."""
        counts = {"done": 0, "failed": 0, "skipped": 0}
        for cap in discover(inputs, exclude=self.out, flights=self.options.mosaic).values():
            fp = fingerprint(cap.files)
            if not self.should_process(cap, fp):
                rec = self.journal.capture(cap.key)
                assert rec is not None
                why = "already done" if rec.status == "done" else f"failed before: {rec.message}"
                self.log(f"{rec.name}: skipped ({why})")
                counts["skipped"] += 1
                continue
            counts["done" if self.process(cap, fp) else "failed"] += 1
        return counts

    def watch(
        self,
        folder: Path,
        *,
        interval: float = 5.0,
        settle: float = 10.0,
        sync: Callable[[], Any] | None = None,
        sync_every: float = 60.0,
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, int]:
        """Poll `folder`; analyze each capture once its files have not changed for `settle` s.

        `sync` (when the watcher was given a server) is tried when new results are ready and
        every `sync_every` seconds; a sync that fails (no network) is simply tried again later.
        """
        counts = {"done": 0, "failed": 0}
        seen: dict[str, tuple[str, float]] = {}
        next_sync = 0.0
        fresh = False  # new results since the last sync: try to send them now
        folder = Path(folder)
        while True:
            now = time.monotonic()
            caps = (
                discover([folder], exclude=self.out, flights=self.options.mosaic)
                if folder.is_dir()
                else {}
            )
            for key, cap in caps.items():
                try:
                    fp = fingerprint(cap.files)
                except OSError:  # a file vanished between listing and stat (card removed)
                    seen.pop(key, None)
                    continue
                if not self.should_process(cap, fp):
                    continue
                prev = seen.get(key)
                if prev is None or prev[0] != fp:
                    seen[key] = (fp, now)
                    continue
                if now - prev[1] < settle:
                    continue
                ok = self.process(cap, fp)
                counts["done" if ok else "failed"] += 1
                fresh = fresh or ok
                seen.pop(key, None)
            if sync is not None and (fresh or time.monotonic() >= next_sync):
                fresh = False
                try:
                    sync()
                except KhetError as e:
                    self.log(f"sync: {e.message} (will try again)")
                next_sync = time.monotonic() + sync_every
            if stop is not None and stop():
                return counts
            time.sleep(interval)


def _one_line(summary: dict[str, Any], out: Path) -> str:
    try:
        from khet.vision.cli import one_line

        return one_line(summary, out)
    except Exception:  # noqa: BLE001 - a summary line is a courtesy, never a failure
        return f"{out}: done"


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
