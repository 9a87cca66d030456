"""Analysis jobs: Huey carries the message, the database keeps the truth.

Huey (SqliteHuey in the data folder, RedisHuey when KHET_REDIS_URL is set) delivers "a job is
waiting". The worker that gets the message claims the *fairest* queued job in the database (the
user who waited longest since their last job started goes first, so one tenant's fifty uploads
cannot starve another's one), heartbeats while `analyze()` runs, and records done/failed.

Claiming is a conditional UPDATE that also sets a fresh random `token`; every later write of
that worker (heartbeat, progress, the flight's imagery facts and summary, done/failed) names
the job *and* the token. A flight deleted while its job runs takes the job row with it: the
worker's next heartbeat changes nothing, so it stops the analysis, removes its work folder and
writes nowhere else. Ids are never reused (see db.py), so a stale worker cannot reach another
flight either.

Huey drops a message once a worker has taken it, so a worker killed mid-job would lose the
job; instead every worker, when it starts and then every `stale_seconds / 2`, re-queues running
jobs whose heartbeat went stale, sends a message for queued jobs that have none, and records a
heartbeat of its own (`worker_beats`, read by /readyz).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from huey import RedisHuey, SqliteHuey
from khet.service import storage
from khet.service.config import ServiceSettings, service_settings
from khet.service.db import Field, Flight, Job, WorkerBeat, now, session_scope
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.engine import CursorResult, Result

from khet.errors import KhetError
from khet.settings import Settings, get_settings

log = logging.getLogger("khet.service.jobs")
TASK_NAME = "khet.run_job"
COPIES_TASK = "khet.web_copies"
COPY_ATTEMPTS = 3  # an imagery web copy that failed this often is not tried again
_hueys: dict[tuple, object] = {}


def get_huey(settings: Settings | None = None, svc: ServiceSettings | None = None):
    """The queue for these settings (one per process and configuration)."""
    settings = settings or get_settings()
    svc = svc or service_settings()
    key = (settings.redis_url, str(storage.data_dir(settings)), svc.queue_name)
    huey = _hueys.get(key)
    if huey is None:
        if settings.redis_url:
            huey = RedisHuey(svc.queue_name, url=settings.redis_url, results=False)
        else:
            path = storage.data_dir(settings) / "queue.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            huey = SqliteHuey(svc.queue_name, filename=str(path), results=False, timeout=10)

        @huey.task(name=TASK_NAME)
        def run_job_task(job_id: int) -> None:
            run_next(job_id)

        @huey.task(name=COPIES_TASK)
        def web_copies_task(flight_id: int) -> None:
            build_web_copies(flight_id)

        huey._khet_task = run_job_task
        huey._khet_copies = web_copies_task
        _hueys[key] = huey
    return huey


def enqueue(job_id: int, settings: Settings | None = None) -> None:
    """Queue the analysis job with this id."""
    get_huey(settings)._khet_task(job_id)


def enqueue_web_copies(flight_id: int, settings: Settings | None = None) -> None:
    """Queue the making of a flight's web map copies."""
    get_huey(settings)._khet_copies(flight_id)


def queue_ok(settings: Settings | None = None) -> bool:
    """Whether the job queue answers."""
    huey = get_huey(settings)
    try:
        huey.pending_count()
        return True
    except Exception:
        return False


# --- claiming, fairly ----------------------------------------------------------------------------


class JobCancelled(Exception):
    """The job this worker runs was deleted, or re-queued and claimed by another worker."""


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _claimable(svc: ServiceSettings):
    stale = now() - timedelta(seconds=svc.stale_seconds)
    return or_(Job.status == "queued", (Job.status == "running") & (Job.heartbeat_at < stale))


def _claim(job_id: int, svc: ServiceSettings) -> str | None:
    """Take the job if it is queued (or its worker went silent): its new token, or None."""
    token = secrets.token_hex(16)
    with session_scope() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id)
            .where(_claimable(svc))
            .values(
                status="running",
                attempts=Job.attempts + 1,
                worker=_worker_name(),
                token=token,
                heartbeat_at=now(),
                started_at=now(),
                progress=0.0,
                stage=None,
                error=None,
            )
        )
        return token if _rows(res) == 1 else None


def fair_order(s) -> list[int]:
    """Queued job ids, fairest first: users with fewer jobs running, then users whose last job
    started longest ago, then the oldest job. A tenant who queues fifty flights gets one of
    them run in turn with everyone else's, not all fifty first."""
    queued = s.execute(
        select(Job.id, Flight.created_by, Job.queued_at)
        .join(Flight, Flight.id == Job.flight_id)
        .where(Job.status == "queued")
        .order_by(Job.queued_at, Job.id)
        .limit(1000)
    ).all()
    if not queued:
        return []
    owners = {r.created_by for r in queued}
    running = dict(
        s.execute(
            select(Flight.created_by, func.count())
            .join(Job, Job.flight_id == Flight.id)
            .where(Job.status == "running")
            .group_by(Flight.created_by)
        ).all()
    )
    last = dict(
        s.execute(
            select(Flight.created_by, func.max(Job.started_at))
            .join(Job, Job.flight_id == Flight.id)
            .where(Flight.created_by.in_([o for o in owners if o is not None]))
            .group_by(Flight.created_by)
        ).all()
    )
    floor = datetime.min

    def key(r) -> tuple:
        started = last.get(r.created_by)
        started = started.replace(tzinfo=None) if started is not None else floor
        return (running.get(r.created_by, 0), started, r.queued_at.replace(tzinfo=None), r.id)

    return [r.id for r in sorted(queued, key=key)]


def run_next(hint: int | None = None) -> int | None:
    """Run the fairest queued job (any job: Huey messages only say "one is waiting")."""
    svc = service_settings()
    with session_scope() as s:
        order = fair_order(s)
    for job_id in order:
        token = _claim(job_id, svc)
        if token is not None:
            _run(job_id, token, svc)
            return job_id
    if hint is not None:  # a job whose worker went silent and was re-queued by message
        token = _claim(hint, svc)
        if token is not None:
            _run(hint, token, svc)
            return hint
    return None


def run_job(job_id: int) -> None:
    """Run this job, if nobody else is running it."""
    svc = service_settings()
    token = _claim(job_id, svc)
    if token is None:
        log.info("job %s already taken or finished", job_id)
        return
    _run(job_id, token, svc)


# --- the work ----------------------------------------------------------------------------------


def _set(job_id: int, token: str, **values) -> bool:
    """Write to the job if this worker still owns it; False when it does not any more."""
    with session_scope() as s:
        res = s.execute(
            update(Job).where(Job.id == job_id).where(Job.token == token).values(**values)
        )
        return _rows(res) == 1


def _owns(s, job_id: int, token: str):
    return exists().where(Job.id == job_id).where(Job.token == token)


class _Heartbeat(threading.Thread):
    """Tells the database the job is alive, passes on progress at most every second and a new
    stage at once (a stage can last less than a beat: "placing frame 3 of 8" on a small
    flight), and notices when the job is no longer this worker's (deleted, or taken over)."""

    def __init__(self, job_id: int, token: str, every: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.job_id, self.token, self.every = job_id, token, every
        self.stop = threading.Event()
        self.cancelled = threading.Event()
        self.progress: float | None = None
        self.stage: str | None = None
        self._wake = threading.Event()

    def say(self, text: str) -> None:
        """A new stage: written at once rather than at the next beat."""
        self.stage = text[:200]
        self._wake.set()

    def finish(self) -> None:
        """Stop beating (the job's end is written by the caller)."""
        self.stop.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=30)  # no late beat may overwrite the job's final state

    def run(self) -> None:
        while True:
            self._wake.wait(min(self.every, 1.0))
            self._wake.clear()
            if self.stop.is_set():
                return
            values: dict[str, Any] = {"heartbeat_at": now()}
            if self.progress is not None:
                values["progress"] = self.progress
            if self.stage is not None:
                values["stage"] = self.stage
            try:
                if not _set(self.job_id, self.token, **values):
                    self.cancelled.set()
                    return
            except Exception:  # the database blinked: try again next beat
                log.exception("heartbeat failed for job %s", self.job_id)


def _rows(result: Result) -> int:
    """Rows an UPDATE touched (SQLAlchemy types `Session.execute` as a plain Result)."""
    return cast(CursorResult, result).rowcount


def work_root(settings: Settings | None = None) -> Path:
    """Where analyses write before their results are renamed into the flight's folder: outside
    it, so a flight deleted meanwhile is not brought back by a worker's writes."""
    return storage.data_dir(settings) / "work"


def _run(job_id: int, token: str, svc: ServiceSettings) -> None:
    from khet.service.tiles import build_map_layers
    from khet.vision.pipeline import analyze

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        flight = job.flight
        field = flight.field
        fdir = storage.flight_dir(field.farm_id, field.id, flight.id)
        inputs = [fdir / "input" / name for name in flight.inputs]
        bands, clip, title = flight.bands, field.boundary, f"{field.name} · flight {flight.id}"
        flight_id, gsd, crop = flight.id, flight.gsd_m, field.crop
    beat = _Heartbeat(job_id, token, svc.heartbeat_seconds)

    def progress(done: int, total: int) -> None:
        if beat.cancelled.is_set():
            raise JobCancelled()
        beat.progress = round(done / total, 4) if total else 0.0

    def stage(text: str) -> None:
        beat.say(text)

    work = work_root() / f"{job_id}-{token}"
    storage.remove_tree(work)
    beat.start()
    imagery: dict = {}
    try:
        imagery = _imagery_facts(inputs, bands)
        if not _save_flight(flight_id, job_id, token, imagery=imagery):
            raise JobCancelled()
        summary = analyze(
            inputs if len(inputs) > 1 else inputs[0],
            work,
            bands=bands,
            clip=clip,
            progress=progress,
            title=title,
            stage=stage,
            gsd=gsd,
            crop=crop,
        )
        storage.strip_server_paths(summary)
        if "mosaic" in summary:  # a flight: its imagery is the mosaic, kept in the results
            imagery = _mosaic_imagery(work)
        _web_copies(lambda: build_map_layers(work), job_id, "map layers")
        if beat.cancelled.is_set() or not (fdir / "input").is_dir():
            raise JobCancelled()
        # Swap by renames: a crash in between leaves the old results in .old-*, never nothing.
        results, previous = fdir / "results", fdir / f".old-results-{job_id}"
        if results.exists():
            os.replace(results, previous)
        os.replace(work, results)
        storage.remove_tree(previous)
    except JobCancelled:
        beat.finish()
        storage.remove_tree(work)
        log.info("job %s: its flight was deleted or the job taken over; stopped", job_id)
        return
    except KhetError as e:
        beat.finish()
        storage.remove_tree(work)
        _finish(job_id, token, "failed", error=storage.public_message(e.message))
        return
    except Exception as e:  # a bug, not the user's fault: say so plainly, keep the trace in the log
        beat.finish()
        log.exception("job %s crashed", job_id)
        storage.remove_tree(work)
        _finish(
            job_id,
            token,
            "failed",
            error=f"The analysis stopped on an internal error "
            f"({type(e).__name__}); retry, or report it.",
        )
        return
    finally:
        beat.finish()
    values: dict = {"summary": summary}
    if imagery.get("in_results"):
        values["imagery"] = imagery
    if not _save_flight(flight_id, job_id, token, **values):
        _forget_deleted(fdir, flight_id)
        return
    _finish(job_id, token, "done")
    if imagery.get("tileable"):
        _imagery_copy(flight_id, fdir, imagery, job_id)


def _imagery_facts(inputs: list[Path], bands) -> dict:
    """How the imagery layer is tiled (opened here, in the worker: the request only read the
    headers)."""
    from khet.service.flights import imagery_info
    from khet.vision.scene import open_scene

    if len(inputs) != 1 or storage.sniff_file(inputs[0]) != "tiff":
        return imagery_info(None)
    with open_scene(inputs[0], bands=bands) as scene:
        return imagery_info(scene)


def _mosaic_imagery(results: Path) -> dict:
    """How the mosaic a flight's job made is tiled as the flight's imagery."""
    from khet.service.flights import imagery_info
    from khet.vision.mosaic import ORTHO
    from khet.vision.scene import open_scene

    with open_scene(results / ORTHO) as scene:
        info = imagery_info(scene)
    if info.get("tileable"):
        info.update(file=ORTHO, in_results=True)
    return info


def _save_flight(flight_id: int, job_id: int, token: str, **values) -> bool:
    """Write the flight's columns only while this worker still owns its job."""
    with session_scope() as s:
        res = s.execute(
            update(Flight)
            .where(Flight.id == flight_id)
            .where(_owns(s, job_id, token))
            .values(**values)
        )
        return _rows(res) == 1


def _forget_deleted(fdir: Path, flight_id: int) -> None:
    """The flight was deleted while its results were being renamed in: remove what is left."""
    with session_scope() as s:
        if s.get(Flight, flight_id) is None:
            storage.remove_tree(fdir)


def _imagery_copy(flight_id: int, fdir: Path, imagery: dict, job_id: int | None) -> None:
    from khet.service.tiles import build_imagery_layer

    with session_scope() as s:
        flight = s.get(Flight, flight_id)
        if flight is None:
            return
        info = dict(flight.imagery or imagery)
        info["copy_attempts"] = int(info.get("copy_attempts") or 0) + 1
        flight.imagery = info
    src = fdir / ("results" if imagery.get("in_results") else "input") / imagery["file"]
    _web_copies(lambda: build_imagery_layer(fdir / "results", src, imagery), job_id, "imagery")


def _web_copies(build, job_id: int | None, what: str) -> None:
    """Web-optimized copies only make tiles faster: without them tiles are read from the
    originals, so a failure here (disk full, an odd raster) is logged, not a failed job."""
    try:
        build()
    except Exception:
        log.warning("job %s: no web-optimized copy of the %s", job_id, what, exc_info=True)


def _finish(job_id: int, token: str, status: str, error: str | None = None) -> None:
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "finished_at": now(),
        "heartbeat_at": now(),
    }
    if status == "done":
        values["progress"], values["stage"] = 1.0, None
    _set(job_id, token, **values)


def build_web_copies(flight_id: int) -> None:
    """Web-optimized copies for a flight whose results arrived from a device (or whose imagery
    copy never finished): made by the worker, never inside a web request."""
    from khet.service.flights import imagery_info
    from khet.service.tiles import WEB_DIR, build_map_layers

    with session_scope() as s:
        flight = s.get(Flight, flight_id)
        if flight is None:
            return
        field = flight.field
        fdir = storage.flight_dir(field.farm_id, field.id, flight.id)
        inputs = [fdir / "input" / n for n in flight.inputs or []]
        imagery, bands = dict(flight.imagery or {}), flight.bands
    results = fdir / "results"
    if not results.is_dir():
        return
    if not (results / WEB_DIR).is_dir():
        staged = results / f".web-{secrets.token_hex(4)}"
        try:
            staged.mkdir()  # no parents: a deleted flight's folder is not made again
            build_map_layers(results, web=staged)
            os.replace(staged, results / WEB_DIR)
        except Exception:
            log.warning("flight %s: no web-optimized copies", flight_id, exc_info=True)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    if inputs and imagery.get("pending"):
        try:
            imagery = _imagery_facts(inputs, bands)
        except KhetError as e:
            imagery = imagery_info(None, reason=storage.public_message(e.message))
        with session_scope() as s:
            res = s.execute(update(Flight).where(Flight.id == flight_id).values(imagery=imagery))
            if _rows(res) != 1:
                return
    if (
        imagery.get("tileable")
        and not (results / WEB_DIR / "imagery.tif").is_file()
        and int(imagery.get("copy_attempts") or 0) < COPY_ATTEMPTS
    ):
        _imagery_copy(flight_id, fdir, imagery, None)


# --- recovery ----------------------------------------------------------------------------------


def requeue_stale(settings: Settings | None = None) -> list[int]:
    """Re-queue running jobs whose worker stopped heartbeating (killed, machine lost)."""
    svc = service_settings()
    stale = now() - timedelta(seconds=svc.stale_seconds)
    requeued: list[int] = []
    with session_scope(settings) as s:
        jobs = s.scalars(
            select(Job).where(Job.status == "running").where(Job.heartbeat_at < stale)
        ).all()
        for job in jobs:
            job.token = None  # whatever the silent worker still writes goes nowhere
            if job.attempts >= svc.max_attempts:
                job.status, job.finished_at = "failed", now()
                job.error = (
                    f"The analysis was interrupted {job.attempts} times (the worker "
                    "stopped); the image may be too large for this machine. Retry it."
                )
                continue
            job.status, job.queued_at, job.progress = "queued", now(), 0.0
            job.error = None
            requeued.append(job.id)
    for job_id in requeued:
        log.warning("job %s: worker stopped, re-queued", job_id)
        enqueue(job_id, settings)
    return requeued


def wake_for_queued(settings: Settings | None = None) -> int:
    """Send a message for each queued job beyond the messages waiting (a message lost with a
    killed worker, or a queue that was unreachable when the job was made). Messages are only
    wake-ups, so one too many costs nothing."""
    huey = get_huey(settings)
    quiet = now() - timedelta(seconds=5)
    with session_scope(settings) as s:
        waiting = s.scalar(
            select(func.count()).where(Job.status == "queued").where(Job.queued_at < quiet)
        )
    missing = int(waiting or 0) - huey.pending_count()
    for _ in range(max(0, missing)):
        enqueue(0, settings)
    return max(0, missing)


def beat(name: str) -> None:
    """This worker is alive (read by /readyz)."""
    with session_scope() as s:
        row = s.get(WorkerBeat, name)
        if row is None:
            s.add(WorkerBeat(name=name, seen_at=now()))
        else:
            row.seen_at = now()
        s.execute(delete(WorkerBeat).where(WorkerBeat.seen_at < now() - timedelta(days=1)))


def worker_alive(svc: ServiceSettings | None = None) -> bool:
    """Whether a job worker's heartbeat is recent."""
    svc = svc or service_settings()
    fresh = now() - timedelta(seconds=3 * svc.heartbeat_seconds + 5)
    with session_scope() as s:
        return bool(s.scalar(select(func.count()).where(WorkerBeat.seen_at >= fresh)))


class Reaper(threading.Thread):
    """Inside a worker: its own heartbeat every `heartbeat_seconds`, and every
    `stale_seconds / 2` the stale jobs re-queued and missing messages sent."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="khet-reaper")
        svc = service_settings()
        self.stop = threading.Event()
        self.every = max(0.5, svc.stale_seconds / 2)
        self.beat_every = svc.heartbeat_seconds
        self.name_ = f"{socket.gethostname()}:{os.getpid()}"

    def run(self) -> None:
        next_sweep = 0.0
        while True:
            try:
                beat(self.name_)
            except Exception:
                log.exception("worker heartbeat failed")
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.every
                try:
                    requeue_stale()
                    wake_for_queued()
                except Exception:
                    log.exception("re-queue of stale jobs failed")
            if self.stop.wait(min(self.beat_every, self.every)):
                return


def clean_up(settings: Settings | None = None) -> None:
    """At worker start: remove what crashed work left behind, and queue what it did not finish.

    - `work/` folders of jobs that are not running with that token;
    - staging folders of requests (`staging/`, older than an hour: a request may be using one);
    - `.trash-*` (a deletion cut short), `.work-*` and `.new-*` (older layouts), `.web-*` and
      `.imagery.tif.part*` (a web copy cut short);
    - `.old-results-*`: put back if the flight has no results (a swap cut short), else removed;
    - flight folders whose flight no longer exists;
    - done flights whose web copies are missing get them queued again (a few times at most).
    """
    root = storage.data_dir(settings)
    svc = service_settings()
    stale = now() - timedelta(seconds=svc.stale_seconds)
    with session_scope(settings) as s:
        live = {
            f"{jid}-{tok}"
            for jid, tok in s.execute(
                select(Job.id, Job.token)
                .where(Job.status == "running")
                .where(Job.heartbeat_at >= stale)
            )
        }
        flights = {
            (fa, fi, fl): (imagery or {}, status)
            for fa, fi, fl, imagery, status in s.execute(
                select(Field.farm_id, Field.id, Flight.id, Flight.imagery, Job.status)
                .join(Field, Field.id == Flight.field_id)
                .outerjoin(Job, Job.flight_id == Flight.id)
            )
        }
        in_pixels = set(
            s.scalars(select(Flight.id).where(Flight.summary["area_unit"].as_string() == "px"))
        )
    work = root / "work"
    for d in work.iterdir() if work.is_dir() else []:
        if d.name not in live:
            storage.remove_tree(d)
    hour_ago = time.time() - 3600
    for base in (root / "staging", *(root / "uploads").glob("*")):
        for d in base.iterdir() if base.is_dir() else []:
            if (base.name == "staging" or d.name.startswith("mp-")) and _mtime(d) < hour_ago:
                storage.remove_tree(d) if d.is_dir() else d.unlink(missing_ok=True)
    again: list[int] = []
    for farm in _dirs(root / "farms"):
        for field_dir in _dirs(farm / "fields"):
            for fdir in _dirs(field_dir / "flights"):
                if not fdir.name.isdigit():
                    if fdir.name.startswith((".trash-", ".new-")):
                        shutil.rmtree(fdir, ignore_errors=True)
                    continue
                key = (int(farm.name), int(field_dir.name), int(fdir.name))
                if key not in flights:
                    storage.remove_tree(fdir)
                    continue
                _clean_flight(fdir)
                imagery, status = flights[key]
                web = fdir / "results" / "web"
                if key[2] in in_pixels and web.is_dir():
                    storage.remove_tree(web)  # older versions placed maps in pixels at 0°, 0°
                    continue
                if status in (None, "done") and (fdir / "results").is_dir():
                    missing_imagery = (
                        imagery.get("tileable") and not (web / "imagery.tif").is_file()
                    )
                    if (
                        not web.is_dir()
                        or imagery.get("pending")
                        or (
                            missing_imagery
                            and int(imagery.get("copy_attempts") or 0) < COPY_ATTEMPTS
                        )
                    ):
                        again.append(key[2])
            for d in _hidden(field_dir / "flights"):
                shutil.rmtree(d, ignore_errors=True)
    for flight_id in again:
        try:
            enqueue_web_copies(flight_id, settings)
        except Exception:
            log.warning("could not queue web copies of flight %s", flight_id, exc_info=True)


def _clean_flight(fdir: Path) -> None:
    results = fdir / "results"
    for d in sorted(fdir.glob(".old-results-*")):
        if not results.exists():
            os.replace(d, results)  # the swap was cut between its two renames
        else:
            shutil.rmtree(d, ignore_errors=True)
    for pattern in (".work-*", ".trash-*", ".new-*"):
        for d in fdir.glob(pattern):
            shutil.rmtree(d, ignore_errors=True)
    for d in results.glob(".web-*") if results.is_dir() else []:
        shutil.rmtree(d, ignore_errors=True)
    web = results / "web"
    for f in web.glob(".imagery.tif.part*") if web.is_dir() else []:
        f.unlink(missing_ok=True)


def _dirs(path: Path) -> list[Path]:
    return [d for d in path.iterdir() if d.is_dir() and d.name.isdigit()] if path.is_dir() else []


def _hidden(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return [d for d in path.iterdir() if d.name.startswith((".trash-", ".new-")) and d.is_dir()]


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return time.time()


# --- the worker process --------------------------------------------------------------------------


def watch_parent(fd: int) -> None:
    """Exit when the process that started this worker dies, even by `kill -9`: it holds the
    write end of a pipe whose read end is `fd`, and the kernel closes it on any death."""

    def wait() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        log.warning("the serving process is gone; this worker stops")
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(1)

    threading.Thread(target=wait, daemon=True, name="khet-parent-watch").start()


def run_worker(workers: int = 1, parent_fd: int | None = None) -> None:
    """The consumer loop of `khet worker` (and of the worker `khet serve` starts)."""
    from huey.consumer import Consumer
    from khet.service.db import migrate

    if parent_fd is not None:
        watch_parent(parent_fd)
    migrate()
    try:
        clean_up()
    except Exception:
        log.exception("clean-up at start failed")
    huey = get_huey()
    reaper = Reaper()
    reaper.start()
    consumer = Consumer(
        huey,
        workers=workers,
        worker_type="thread",
        periodic=False,
        check_worker_health=True,
        initial_delay=0.1,
        max_delay=1.0,
    )
    try:
        consumer.run()
    finally:
        reaper.stop.set()
        sys.stdout.flush()
