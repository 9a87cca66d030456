"""The offline runner: analyze captures from a file, a folder or a watched SD card, exactly once.

Every capture goes through `khet.vision.pipeline.analyze` (the one pipeline) into `OUT/<name>/`.
The journal (`edge.journal`) records `running` before the work and `done` after `analyze` has
renamed `summary.json` into place and the folder's stamp (`edge.stamp`) is written, in one
transaction with the outbox entry. After a power loss a capture found `running` is analyzed again
from scratch (its leftover staging folder is removed): nothing half-written is taken as done, and
nothing done is analyzed twice. Interruptions never make a capture fail, however many; a capture
that crashes the process itself (a fatal signal in native code, an out-of-memory kill) is marked
failed after `MAX_CRASHES` such crashes. A lost journal is rebuilt from the stamps.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from khet.errors import InputError, KhetError
from khet.settings import Settings, get_settings

from . import bundles as edge_bundles
from . import outbox, resources, stamp
from .journal import MAX_CRASHES, STATE_DIR, Journal

FATAL_LOG = "fatal.log"
ERRORS_LOG = "errors.log"  # traces of unexpected errors, one capture each


def boot_id() -> str | None:
    """This boot's id (Linux): a different one after a start means the device was off."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def oom_kills() -> int | None:
    """How many processes the kernel has killed for lack of memory since boot (Linux)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


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
    gsd: float | None = None  # ground sample distance stated for frames that cannot tell it
    crop: str | None = None  # the field's crop: a model that learned another is not used
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


#: Between a fingerprint's files and its options (`EdgeRunner.fingerprint`).
OPTIONS_MARK = "#options:"


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
        self._fatal: TextIO | None = None
        self.bundles = edge_bundles.select(
            options.models_dir or base.models_dir,
            self.state_dir / "models",
            self.journal,
            model=options.model,
            model_sha256=options.model_sha256,
            precision=options.precision,
        )
        if options.model is not None:  # a named model that cannot serve this crop: say so now
            from khet.vision.plan import check_model_crop

            check_model_crop(self.bundles[0].info, options.crop)
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
        self.identity_models = sorted(b.sha256 for b in self.bundles)
        self._recover()
        self._rebuild()
        self._catch_fatal()

    def _catch_fatal(self) -> None:
        """A crash in native code (SIGSEGV, SIGABRT, ...) leaves its trace in fatal.log: the
        evidence, at the next start, that the capture being analyzed brought the process down."""
        import faulthandler

        self._was_faulthandler = faulthandler.is_enabled()
        fatal = open(self.state_dir / FATAL_LOG, "a")  # noqa: SIM115 - closed in close()
        self._fatal = fatal
        faulthandler.enable(file=fatal)

    def close(self) -> None:
        fatal = getattr(self, "_fatal", None)
        if fatal is not None:
            import faulthandler

            faulthandler.disable()
            if self._was_faulthandler:  # as it was (pytest's, or -X faulthandler)
                try:
                    if sys.__stderr__ is not None:
                        faulthandler.enable(file=sys.__stderr__)
                except (AttributeError, ValueError, OSError):
                    pass
            fatal.close()
            self._fatal = None
        self.journal.close()
        self._lock.close()

    def __enter__(self) -> EdgeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        models = ", ".join(
            f"{b.info.name} {b.info.version} ({b.info.precision}, sha256 {b.sha256[:12]}… "
            + (
                f"by {b.checked_by})"
                if b.verified
                else "UNVERIFIED: no manifest knows it, checked only by first use)"
            )
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
        """Captures a run left `running`: interrupted (analyzed again, however often) or crashed
        by the capture itself (failed after `MAX_CRASHES`); see `edge.journal`."""
        fatal = self.state_dir / FATAL_LOG
        fatal_size = fatal.stat().st_size if fatal.exists() else 0
        boot, ooms = boot_id(), oom_kills()
        for rec in self.journal.captures("running"):
            same_boot = boot is not None and rec.boot_id == boot
            why = None
            if rec.fatal_mark is not None and fatal_size > rec.fatal_mark:
                why = f"a fatal error in the analysis (see {fatal})"
            elif same_boot and rec.oom_kills is not None and ooms is not None:
                if ooms > rec.oom_kills:
                    why = "the system ran out of memory"
            rec = self.journal.count_stop(rec.key, crashed=why is not None)
            if why is None:
                cause = "the device was off" if not same_boot and boot else "stopped or killed"
                self.log(
                    f"{rec.name}: interrupted last time ({cause}; {rec.interruptions} "
                    "interruption(s) so far), will analyze again"
                )
            elif rec.crashes >= MAX_CRASHES:
                self.journal.fail(
                    rec.key,
                    f"The analysis of this capture crashed {rec.crashes} times ({why}); not "
                    "trying again. Allow more --max-memory, lower --batch-size, or check the "
                    "images, then run with --retry-failed.",
                )
                self.log(f"{rec.name}: crashed {rec.crashes} times ({why}), giving up")
            else:
                self.log(
                    f"{rec.name}: crashed last time ({why}; {rec.crashes} of {MAX_CRASHES}), "
                    "will analyze again"
                )

    def _rebuild(self) -> None:
        """After the journal was lost, take back every finished result folder (by its stamp)."""
        found = 0
        known = {r.name: r for r in self.journal.captures()}
        for folder in sorted(p for p in self.out.iterdir() if p.is_dir()):
            if folder.name.startswith(".") or not (folder / stamp.NAME).exists():
                continue
            rec = known.get(folder.name)
            if rec is not None and rec.status == "done":
                continue
            data = stamp.read(folder)
            if data is None or not data.get("key"):
                continue
            if rec is not None and rec.key != data["key"]:
                continue
            self._adopt(folder.name, folder, data)
            found += 1
        if self.journal.lost:
            what = {
                "missing": "was missing",
                "empty": "was empty",
                "damaged": "was damaged (kept aside as state.sqlite.damaged-*)",
            }[self.journal.lost]
            self.log(
                f"warning: the edge journal {self.state_dir / 'state.sqlite'} {what}: rebuilt "
                f"it from {found} finished result folder(s); they are not analyzed again"
            )

    def _identity_options(self) -> dict[str, Any]:
        """The options that change a capture's map: part of its result's identity."""
        out: dict[str, Any] = {"bands": self.options.bands, "mosaic": self.options.mosaic}
        if self.options.gsd is not None:  # absent otherwise: earlier results keep their ids
            out["gsd"] = self.options.gsd
        if self.options.crop is not None:  # likewise
            out["crop"] = self.options.crop
        return out

    def fingerprint(self, cap: Capture) -> str:
        """The capture's files (sizes and times) and the options its map was asked with: a
        failed capture is tried again when either changed (new --bands or --gsd, as its error
        asked), a finished one when its files did (a photo replaced, a band file that arrived
        late)."""
        opts = json.dumps({**self._identity_options(), "model": self.options.model}, sort_keys=True)
        return f"{fingerprint(cap.files)}{OPTIONS_MARK}{opts}"

    def _stamp(
        self,
        cap: Capture,
        name: str,
        dest: Path,
        fp: str,
        inputs: list[dict[str, Any]],
        cid: str,
        imagery: list[Path],
    ) -> None:
        """Write the folder's stamp (see `edge.stamp`) once every result is durably on disk."""
        from khet.vision.bundle import file_sha256

        try:
            results = {
                p.relative_to(dest).as_posix(): file_sha256(p)
                for p in sorted(dest.rglob("*"))
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(dest).parts)
            }
            stamp.write(
                dest,
                {
                    "key": cap.key,
                    "name": name,
                    "inputs": inputs,
                    "fingerprint": fp,
                    "client_id": cid,
                    "field": self.options.field,
                    "bands": self.options.bands,
                    "imagery": [
                        str(p.relative_to(dest)) if p.is_relative_to(dest) else str(p)
                        for p in imagery
                    ],
                    "results": results,
                },
            )
        except OSError as e:
            raise KhetError(f"Cannot mark {dest} finished ({e.strerror or e}).") from e

    def _adopt(self, name: str, dest: Path, data: dict[str, Any]) -> bool:
        """Record a finished folder as done, and its results in the outbox (unless sent)."""
        entry = None
        try:
            import json as _json

            summary = _json.loads((dest / "summary.json").read_text(encoding="utf-8"))
            imagery = [Path(p) for p in data.get("imagery") or []]
            imagery = [p if p.is_absolute() else dest / p for p in imagery]
            entry = outbox.stage(self.out, name, dest, imagery, summary)
            entry["client_id"] = data["client_id"]
            entry["bands"] = data.get("bands")
        except (OSError, ValueError, KhetError) as e:
            self.log(f"{name}: finished, but its results cannot go to the outbox ({e})")
        self.journal.adopt(
            data["key"],
            name,
            [i["path"] for i in data.get("inputs") or []],
            data.get("fingerprint") or "",
            data.get("field"),
            entry,
        )
        return True

    # -- one capture ---------------------------------------------------------------------------
    def should_process(self, cap: Capture, fp: str) -> bool:
        rec = self.journal.capture(cap.key)
        if rec is None or rec.status == "running":
            return True
        had_files, _, had_opts = rec.fingerprint.partition(OPTIONS_MARK)
        files, _, opts = fp.partition(OPTIONS_MARK)
        # A journal of an earlier version recorded the files alone: no options to compare then.
        other_options = bool(had_opts) and had_opts != opts
        if rec.status == "done":
            # Done, unless its result was removed since (a folder deleted to have it redone), its
            # files changed (same name, other bytes: `process` finds out, by their hashes), or it
            # is asked for with other options (the --bands a warning asked for: the map made
            # without them is wrong, and must not stay as if it were the answer).
            return (
                had_files != files
                or other_options
                or not (self.out / rec.name / "summary.json").is_file()
            )
        # failed: only again when its files or options changed, or when asked
        return had_files != files or other_options or self.options.retry_failed

    def _again(self, cap: Capture, fp: str) -> str:
        """Why a capture recorded done is analysed again, for the log ("" when it is not)."""
        rec = self.journal.capture(cap.key)
        if rec is None or rec.status != "done":
            return ""
        had = rec.fingerprint.partition(OPTIONS_MARK)[2]
        now = fp.partition(OPTIONS_MARK)[2]
        if not had or had == now:
            return ""
        old, new = json.loads(had), json.loads(now)
        changed = ", ".join(
            f"{k} {old.get(k)} -> {new.get(k)}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        )
        entry = self.journal.outbox_entry(rec.name)
        sent = (
            f"; the earlier result stays on the server as flight {entry['flight_id']}"
            if entry and entry["state"] == "synced"
            else ""
        )
        return f"{rec.name}: done before with other options ({changed}): analysing again{sent}"

    def process(
        self,
        cap: Capture,
        fp: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> bool:
        """Analyze one capture; True when done, False when it failed (recorded, not raised)."""
        from khet.vision.pipeline import analyze

        fp = fp or self.fingerprint(cap)
        name = self.journal.name_for(cap.key, cap.wanted, cap.alternative)
        dest = self.out / name
        try:
            inputs = stamp.input_hashes(cap.files)
        except OSError as e:
            msg = f"Cannot read the capture's files ({e.strerror or e})."
            self.journal.begin(cap.key, name, [str(f) for f in cap.files], fp, self.options.field)
            self.journal.fail(cap.key, msg)
            self.log(f"{name}: failed: {msg}")
            return False
        cid = stamp.client_id(inputs, self.identity_models, self._identity_options())
        found = stamp.read(dest)
        if found is not None and found.get("client_id") == cid:
            # Finished before (the journal did not know it: lost, or the card moved).
            self._adopt(name, dest, {**found, "key": cap.key, "fingerprint": fp})
            self.log(f"{name}: already finished in {dest} (its stamp matches); not analyzed again")
            return True
        if (dest / stamp.NAME).exists():
            stamp.remove(dest)
        self.journal.begin(
            cap.key,
            name,
            [str(f) for f in cap.files],
            fp,
            self.options.field,
            boot_id=boot_id(),
            oom_kills=oom_kills(),
            fatal_mark=os.fstat(self._fatal.fileno()).st_size if self._fatal else None,
        )
        dest = self.out / name
        for partial in dest.glob(".khet-partial-*"):  # left by an interrupted run
            shutil.rmtree(partial, ignore_errors=True)
        guard = resources.MemoryGuard(self.plan.max_memory_mb, progress)
        # One verified bundle is named to the pipeline, unless it learned another crop than the
        # field's: the pipeline then passes it over and says why (vision/plan.py).
        from khet.vision.crops import learned

        only = self.bundles[0] if len(self.bundles) == 1 else None
        single = (
            only.path
            if only is not None and learned(self.options.crop, only.info.crops) is not False
            else None
        )
        try:
            with guard:
                summary = analyze(
                    cap.files,
                    dest,
                    bands=self.options.bands,
                    model=single,
                    gsd=self.options.gsd,
                    crop=self.options.crop,
                    progress=guard,
                    settings=self.settings,
                    title=name,
                )
            if guard.over:  # while writing the outputs, after the last strip was checked
                _withdraw(dest, summary)
                raise KhetError(
                    f"The analysis needed more than the {self.plan.max_memory_mb} MB allowed by "
                    f"--max-memory while writing the outputs (it reached {guard.peak_mb:.0f} "
                    "MB); its outputs were removed. Allow more memory or lower --batch-size."
                )
            imagery = cap.files if self.options.with_imagery else []
            if imagery and "mosaic" in summary:  # a flight: its imagery is the mosaic
                imagery = [dest / summary["mosaic"]["output"]]
            entry = outbox.stage(self.out, name, dest, imagery, summary)
            entry["bands"] = self.options.bands
            entry["client_id"] = cid
            self._stamp(cap, name, dest, fp, inputs, cid, imagery)
        except KhetError as e:
            self.journal.fail(cap.key, e.message)
            self.log(f"{name}: failed: {e.message}")
            return False
        except MemoryError:
            msg = "Out of memory: allow more with --max-memory or lower --batch-size."
            self.journal.fail(cap.key, msg)
            self.log(f"{name}: failed: {msg}")
            return False
        except Exception as e:  # noqa: BLE001 - a fault on one capture must not stop the card
            # Not a message Khet wrote for the user: a bug, or a library failing on odd data.
            # The capture fails with the error's name, the trace goes to errors.log for a bug
            # report, and the other captures are still analyzed.
            import traceback

            log = self.state_dir / ERRORS_LOG
            with open(log, "a") as f:
                f.write(f"--- {name} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
                traceback.print_exc(file=f)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            msg = (
                f"Unexpected error ({type(e).__name__}{': ' + first[:200] if first else ''}); "
                f"details in {log}. Please report it."
            )
            self.journal.fail(cap.key, msg)
            self.log(f"{name}: failed: {msg}")
            return False
        finally:
            self.last_peak_mb = guard.peak_mb
            self.peak_mb = max(self.peak_mb, guard.peak_mb, resources.peak_rss_mb())
            resources.release_free_memory()
        self.journal.finish(cap.key, entry)
        self.log(_one_line(summary, dest))
        from khet.vision.plan import colour_notes

        # The map is likely wrong, and what to do about it is the user's: said here.
        for note in colour_notes(summary.get("input") or {}):
            self.log(f"  note: {note}")
        if self.options.spot_spray is not None:
            self._spot_spray(name, dest)
        return True

    def _spot_spray(self, name: str, dest: Path) -> None:
        """A spot-spray map of a finished capture, offline. The map is done either way: a map
        that cannot make one (no weeds told apart, no map coordinates) gets a note, not a
        failure."""
        from khet.vision.prescription import spot_spray
        from khet.vision.units import fmt_area

        try:
            res = spot_spray(dest, **(self.options.spot_spray or {}))
        except KhetError as e:
            self.log(f"{name}: no spot-spray map: {e.message}")
            return
        self.log(
            f"{name}: spot spray {res['sprayed_share']:.1%} of the field "
            f"({fmt_area(res['sprayed_ha'])} of {fmt_area(res['field_ha'])}, saving "
            f"{res['saving_share']:.1%}): {dest / res['files']['shapefile']}"
        )

    # -- many captures -------------------------------------------------------------------------
    def run(self, inputs: Sequence[Path]) -> dict[str, int]:
        """Analyze every capture in `inputs` that is not done yet."""
        counts = {"done": 0, "failed": 0, "skipped": 0}
        for cap in discover(inputs, exclude=self.out, flights=self.options.mosaic).values():
            fp = self.fingerprint(cap)
            if not self.should_process(cap, fp):
                rec = self.journal.capture(cap.key)
                assert rec is not None
                why = "already done" if rec.status == "done" else f"failed before: {rec.message}"
                self.log(f"{rec.name}: skipped ({why}){self._refield(rec.name)}")
                counts["skipped"] += 1
                continue
            if again := self._again(cap, fp):
                self.log(again)
            counts["done" if self.process(cap, fp) else "failed"] += 1
        return counts

    def _refield(self, name: str) -> str:
        """A finished capture met again with another `--field`: its results go to that field if
        they are not sent yet (a mistyped field is corrected by running the command again with the
        right one); what was done, for the log line."""
        fld = self.options.field
        entry = self.journal.outbox_entry(name) if fld else None
        if entry is None or entry["field"] in (None, fld):
            return ""
        if entry["state"] == "pending":
            self.journal.set_outbox(name, field=fld)
            return f"; its results, not sent yet, now go to field {fld}, not {entry['field']}"
        if entry["state"] == "synced":
            return (
                f"; its results were sent to field {entry['field']} as flight "
                f"{entry['flight_id']}: --field {fld} does not move them (move it on the server)"
            )
        return ""

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
        failing = _Failing(self.log)
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
                    fp = self.fingerprint(cap)
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
                if again := self._again(cap, fp):
                    self.log(again)
                ok = self.process(cap, fp)
                counts["done" if ok else "failed"] += 1
                fresh = fresh or ok
                seen.pop(key, None)
            if sync is not None and (fresh or time.monotonic() >= next_sync):
                fresh = False
                try:
                    sync()
                except KhetError as e:
                    failing.failed(e.message)
                else:
                    failing.succeeded()
                next_sync = time.monotonic() + sync_every
            if stop is not None and stop():
                return counts
            time.sleep(interval)


class _Failing:
    """The watcher's log of a sync that keeps failing: a device out of network range tries every
    minute for days, and a line a try filled its log (1,440 lines a day). The first failure is
    said, then the same failure again only once an hour with how many tries it has been, and the
    first success after failures says so."""

    REPEAT_S = 3600.0

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.message: str | None = None
        self.tries = 0
        self.since = 0.0  # time.time() of the first failure
        self.said = 0.0  # time.monotonic() of the last line

    def failed(self, message: str) -> None:
        now = time.monotonic()
        if message != self.message:
            self.message, self.tries, self.since, self.said = message, 1, time.time(), now
            self.log(f"sync: {message} (will try again)")
            return
        self.tries += 1
        if now - self.said >= self.REPEAT_S:
            self.said = now
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.since))
            self.log(f"sync: still failing, {self.tries} tries since {started}: {message}")

    def succeeded(self) -> None:
        if self.message is not None:
            self.log(f"sync: working again after {self.tries} failed tries")
        self.message, self.tries = None, 0


def _withdraw(dest: Path, summary: dict[str, Any]) -> None:
    """Remove a capture's outputs (the summary first: without it nothing looks finished)."""
    from khet.vision import products

    (dest / products.SUMMARY.path).unlink(missing_ok=True)
    stamp.fsync_dir(dest)
    for p in sorted(dest.iterdir()):
        if p.name.startswith(".khet-edge"):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _one_line(summary: dict[str, Any], out: Path) -> str:
    try:
        from khet.vision.cli import one_line

        return one_line(summary, out)
    except Exception:  # noqa: BLE001 - a summary line is a courtesy, never a failure
        return f"{out}: done"
