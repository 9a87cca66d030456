"""Analysis jobs: Huey carries the message, the database keeps the truth.

Huey (SqliteHuey in the data folder, RedisHuey when KHET_REDIS_URL is set) delivers "run job N".
A worker claims the job in the database (queued → running, attempts + 1), heartbeats while
`analyze()` runs, and records done/failed. Huey drops a message once a worker has taken it, so a
worker killed mid-job would lose the job; instead every worker, when it starts and then every
`stale_seconds / 2`, re-queues running jobs whose heartbeat went stale. Claiming is a conditional
UPDATE, so a job that is delivered twice still runs once at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from khet.service import storage
from khet.service.config import ServiceSettings, service_settings
from khet.service.db import Flight, Job, now, session_scope
from sqlalchemy import or_, select, update

from khet.errors import KhetError
from khet.settings import Settings, get_settings

log = logging.getLogger("khet.service.jobs")
TASK_NAME = "khet.run_job"
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
            run_job(job_id)

        huey._khet_task = run_job_task
        _hueys[key] = huey
    return huey


def enqueue(job_id: int, settings: Settings | None = None) -> None:
    get_huey(settings)._khet_task(job_id)


def queue_ok(settings: Settings | None = None) -> bool:
    huey = get_huey(settings)
    try:
        huey.pending_count()
        return True
    except Exception:
        return False


# --- the work ----------------------------------------------------------------------------------


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _claim(job_id: int, svc: ServiceSettings) -> bool:
    stale = now() - timedelta(seconds=svc.stale_seconds)
    with session_scope() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id)
            .where(
                or_(Job.status == "queued", (Job.status == "running") & (Job.heartbeat_at < stale))
            )
            .values(
                status="running",
                attempts=Job.attempts + 1,
                worker=_worker_name(),
                heartbeat_at=now(),
                started_at=now(),
                progress=0.0,
                stage=None,
                error=None,
            )
        )
        return res.rowcount == 1


def _set(job_id: int, **values) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


class _Heartbeat(threading.Thread):
    """Tells the database the job is alive, and passes on progress at most every second."""

    def __init__(self, job_id: int, every: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.job_id, self.every = job_id, every
        self.stop = threading.Event()
        self.progress: float | None = None
        self.stage: str | None = None

    def run(self) -> None:
        while not self.stop.wait(min(self.every, 1.0)):
            values = {"heartbeat_at": now()}
            if self.progress is not None:
                values["progress"] = self.progress
            if self.stage is not None:
                values["stage"] = self.stage
            try:
                _set(self.job_id, **values)
            except Exception:  # the database blinked: try again next beat
                log.exception("heartbeat failed for job %s", self.job_id)


def run_job(job_id: int) -> None:
    """Run one analysis job, if nobody else is running it."""
    from khet.service.tiles import build_imagery_layer, build_map_layers
    from khet.vision.pipeline import analyze

    svc = service_settings()
    if not _claim(job_id, svc):
        log.info("job %s already taken or finished", job_id)
        return
    with session_scope() as s:
        job = s.get(Job, job_id)
        flight = job.flight
        field = flight.field
        fdir = storage.flight_dir(field.farm_id, field.id, flight.id)
        inputs = [fdir / "input" / name for name in flight.inputs]
        bands, clip, title = flight.bands, field.boundary, f"{field.name} · flight {flight.id}"
        imagery = dict(flight.imagery or {})
    beat = _Heartbeat(job_id, svc.heartbeat_seconds)

    def progress(done: int, total: int) -> None:
        beat.progress = round(done / total, 4) if total else 0.0

    def stage(text: str) -> None:
        beat.stage = text[:200]

    # We hold the claim: any other work folder is what a dead attempt left behind.
    for old in fdir.glob(".work-*"):
        storage.remove_tree(old)
    work = fdir / f".work-{job_id}-{os.getpid()}"
    beat.start()
    try:
        summary = analyze(
            inputs if len(inputs) > 1 else inputs[0],
            work,
            bands=bands,
            clip=clip,
            progress=progress,
            title=title,
            stage=stage,
        )
        if "mosaic" in summary:  # a flight: its imagery is the mosaic, kept in the results
            imagery = _mosaic_imagery(work)
        _web_copies(lambda: build_map_layers(work), job_id, "map layers")
        # Swap by renames: a crash in between leaves the old results in .old-*, never nothing.
        results, previous = fdir / "results", fdir / f".old-results-{job_id}"
        if results.exists():
            os.replace(results, previous)
        os.replace(work, results)
        storage.remove_tree(previous)
    except KhetError as e:
        beat.stop.set()
        storage.remove_tree(work)
        _finish(job_id, "failed", error=e.message)
        return
    except Exception as e:  # a bug, not the user's fault: say so plainly, keep the trace in the log
        beat.stop.set()
        log.exception("job %s crashed", job_id)
        storage.remove_tree(work)
        _finish(
            job_id,
            "failed",
            error=f"The analysis stopped on an internal error "
            f"({type(e).__name__}); retry, or report it.",
        )
        return
    finally:
        beat.stop.set()
    with session_scope() as s:
        flight = s.get(Flight, _flight_id(s, job_id))
        flight.summary = summary
        if imagery.get("in_results"):
            flight.imagery = imagery
    _finish(job_id, "done")
    if imagery.get("tileable"):
        src = fdir / ("results" if imagery.get("in_results") else "input") / imagery["file"]
        _web_copies(lambda: build_imagery_layer(fdir / "results", src, imagery), job_id, "imagery")


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


def _web_copies(build, job_id: int, what: str) -> None:
    """Web-optimized copies only make tiles faster: without them tiles are read from the
    originals, so a failure here (disk full, an odd raster) is logged, not a failed job."""
    try:
        build()
    except Exception:
        log.warning("job %s: no web-optimized copy of the %s", job_id, what, exc_info=True)


def _flight_id(s, job_id: int) -> int:
    return s.execute(select(Job.flight_id).where(Job.id == job_id)).scalar_one()


def _finish(job_id: int, status: str, error: str | None = None) -> None:
    values = {"status": status, "error": error, "finished_at": now(), "heartbeat_at": now()}
    if status == "done":
        values["progress"], values["stage"] = 1.0, None
    _set(job_id, **values)


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


class Reaper(threading.Thread):
    """Runs `requeue_stale` now and every `stale_seconds / 2` inside a worker."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="khet-reaper")
        self.stop = threading.Event()
        self.every = max(0.5, service_settings().stale_seconds / 2)

    def run(self) -> None:
        while True:
            try:
                requeue_stale()
            except Exception:
                log.exception("re-queue of stale jobs failed")
            if self.stop.wait(self.every):
                return


def run_worker(workers: int = 1) -> None:
    """The consumer loop of `khet worker` (and of the worker `khet serve` starts)."""
    from huey.consumer import Consumer
    from khet.service.db import migrate

    migrate()
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


def inputs_dir(flight_path: Path) -> Path:
    return flight_path / "input"
