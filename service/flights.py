"""Making a flight from stored files: checks, the per-flight folder, the job.

Shared by the JSON API (uploads already stored) and the multipart upload. Everything is staged in
a folder of its own (`staging/`) and renamed into place only when every check passed, so a
refused flight leaves nothing behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path

import rasterio
from khet.service import storage
from khet.service.config import service_settings
from khet.service.db import Field, Flight, Job, User, now
from khet.service.jobs import enqueue, enqueue_web_copies
from khet.service.schemas import FlightOut, JobOut
from khet.service.tiles import WEB_DIR
from khet.vision import products
from khet.vision.flight import is_flight, read_flight
from khet.vision.maps import display_bands
from khet.vision.plan import check_mappable
from khet.vision.scene import SKIP, SceneFacts, inspect_scene
from khet.vision.sfm import load_pycolmap
from khet.vision.summary import Summary
from rasterio.errors import RasterioError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from khet.errors import ConflictError, InputError, KhetError, OutputError
from khet.settings import get_settings

log = logging.getLogger("khet.service.flights")


class QueueDown(KhetError):
    """The job queue (Redis) cannot be reached: 503 (service/errors.py)."""

    code = "queue_unavailable"


def find_by_client_id(db: Session, field_id: int, client_id: str | None) -> Flight | None:
    """The flight of this field a device already synced under `client_id`, if any."""
    if not client_id:
        return None
    return db.scalar(
        select(Flight).where(Flight.field_id == field_id).where(Flight.client_id == client_id)
    )


def request_sha256(
    imagery: list[tuple[str, str]], bands: list[str] | None, gsd: float | None
) -> str:
    """What the service would analyse: the imagery's (file name, sha256) pairs in any order, the
    band names and the stated GSD. A `client_id` posted again with the same gets its flight back
    (a retry); with other imagery or settings it is refused, never answered with a flight that
    is not the one asked for (the new imagery would be dropped without a word)."""
    key = {"imagery": sorted(imagery), "bands": bands, "gsd": gsd}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _replayed(existing: Flight, request: str | None) -> Flight:
    """The flight a request with its `client_id` already made, when it is the same request."""
    if existing.request_sha256 and request and existing.request_sha256 != request:
        raise ConflictError(
            f"client_id {existing.client_id!r} already names flight {existing.id} of this "
            "field, made from other imagery, bands or ground resolution. Send a new client_id "
            "for a new flight (the same request sent again gets that flight back)."
        )
    return existing


NO_TILES = (
    "The imagery has no map coordinates (CRS) or is several band files; only georeferenced "
    "single-file imagery is tiled. The field map layers (classes, vigour, indices) are tiled "
    "when the results are georeferenced."
)


def imagery_info(scene, reason: str | None = None) -> dict:
    """How the imagery layer is tiled: which bands as RGB, how to stretch them to 8 bits.
    `scene` None: imagery that is not tiled (a photo, a band capture, or one that failed)."""
    info: dict = {
        "georeferenced": scene is not None and scene.crs is not None and scene.georef == "crs",
        "kind": scene.kind if scene is not None else None,
        "tileable": False,
    }
    if not info["georeferenced"] or scene.kind != "raster" or len(scene.sources) != 1:
        info["reason"] = reason or NO_TILES
        return info
    names = list(scene.bands)
    pick = display_bands(names)  # as the preview shows it
    indexes = [scene.band_indexes[scene.band_names.index(n)] for n in pick]
    rescale = None
    if scene.dtype != "uint8":
        try:
            st = scene.stretch()
            rescale = [list(st[n]) for n in pick]
        except Exception:
            rescale = None
    info.update(
        tileable=True, file=scene.sources[0].name, bands=pick, indexes=indexes, rescale=rescale
    )
    return info


def flight_imagery_info(paths: list[Path]) -> dict:
    """A whole flight's frames: checked now (GPS, one camera, overlap: a second, from their
    metadata), mosaicked by the job, whose mosaic then becomes the flight's imagery."""
    flight = read_flight(paths)
    load_pycolmap()  # a server without the mosaic extra says so now, not when the job runs
    return {
        "georeferenced": False,
        "kind": "flight",
        "frames": len(flight.frames),
        "tileable": False,
        "reason": "The flight's frames are mosaicked by the analysis; its imagery is ready then.",
    }


def _imagery_at_arrival(facts) -> dict:
    """What is known of the imagery layer before the worker opens the imagery: a georeferenced
    raster will be tiled once the worker has looked at it ("pending"); anything else never."""
    if facts.kind == "raster" and facts.georef == "crs":
        return {"georeferenced": True, "kind": "raster", "tileable": False, "pending": True}
    return {"georeferenced": False, "kind": facts.kind, "tileable": False, "reason": NO_TILES}


def _check_results(staged: Path) -> dict:
    """Cheap checks of a device's results, in the request: JSON parses, rasters are TIFFs of a
    size a server can tile (headers only: the web copies are made by the worker)."""
    summary_path = staged / "summary.json"
    if not summary_path.exists():
        raise InputError("Results from a device must include summary.json.")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"), parse_constant=_no_nan)
    except (ValueError, UnicodeDecodeError):
        raise InputError("summary.json is not valid JSON.") from None
    summary = check_device_summary(summary)
    for path in staged.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(staged).as_posix()
        if rel.endswith(".geojson"):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise InputError(f"{rel} is not valid GeoJSON.") from None
            if not isinstance(doc, dict) or "type" not in doc:
                raise InputError(f"{rel} is not valid GeoJSON.")
        elif rel.endswith(".tif"):
            _check_tif(path, rel)
        elif rel.endswith(".png"):
            with open(path, "rb") as f:
                if storage.sniff(f.read(16)) != "png":
                    raise InputError(f"{rel} is not a PNG image.")
    return summary


def _no_nan(word: str) -> None:
    raise InputError(
        f"summary.json holds {word}, which JSON does not allow; send a number or null."
    )


def check_device_summary(summary: object) -> dict:
    """A device's summary.json checked against the typed summary (vision/summary.py): the pages,
    the report and the tiles read it, so a malformed one is refused now (422), not a page that
    fails later, and one whose values do not add up (a share past 1, a class larger than the
    map, a schema_version this server does not know, no classes) is refused too. Server paths
    are dropped on the way in."""
    typed = Summary.read(summary, "The device's summary.json")
    if not typed.classes:
        raise InputError(
            "The device's summary.json lists no classes: a field map says how much of the "
            "field is soil, crop, weed or vegetation."
        )
    unit = typed.area_unit
    total = typed.area_total_ha if unit == "ha" else typed.area_total_px
    if total is None and any(getattr(c, f"area_{unit}") is not None for c in typed.classes):
        raise InputError(
            f"The device's summary.json gives class areas in {unit} but no area_total_{unit}, "
            "the whole map they are parts of."
        )
    return storage.strip_server_paths(typed.to_json())


#: Result rasters of one class (or level) per cell: one band of whole numbers.
CATEGORICAL = {p.path for p in products.PRODUCTS if p.kind == "categorical" and p.synced}


def _check_tif(path: Path, rel: str) -> None:
    if storage.sniff_file(path) != "tiff":
        raise InputError(f"{rel} is not a GeoTIFF.")
    limit = service_settings().max_result_pixels
    try:
        with rasterio.open(path) as ds:
            if ds.width * ds.height > limit:
                raise InputError(
                    f"{rel} is {ds.width} x {ds.height} pixels; a result may have at most "
                    f"{limit:,} (KHET_MAX_RESULT_PIXELS): a field map has one pixel per "
                    "analysed cell, far fewer."
                )
            if rel in CATEGORICAL and (
                ds.count != 1 or not ds.dtypes[0].startswith(("uint", "int"))
            ):
                raise InputError(
                    f"{rel} has {ds.count} band(s) of {ds.dtypes[0]}; a class map is one band of "
                    "whole numbers (a class per cell), as `khet analyze` writes it."
                )
            ds.read(1, window=((0, min(ds.height, 16)), (0, min(ds.width, 16))))
    except RasterioError as e:
        raise InputError(f"{rel} cannot be opened as a GeoTIFF ({str(e)[:120]}).") from None


class TooManyJobs(KhetError):
    """A user has as many analyses queued or running as allowed: 429 (service/errors.py)."""

    code = "too_many_jobs"


def check_job_quota(db: Session, user: User) -> None:
    """One user may have `max_jobs_per_user` analyses queued or running at once."""
    limit = service_settings().max_jobs_per_user
    waiting = (
        db.scalar(
            select(func.count())
            .select_from(Job)
            .join(Flight, Flight.id == Job.flight_id)
            .where(Flight.created_by == user.id)
            .where(Job.status.in_(("queued", "running")))
        )
        or 0
    )
    if waiting >= limit:
        raise TooManyJobs(
            f"You have {waiting} analyses waiting or running, the most this service takes from "
            f"one account at once ({limit}, KHET_MAX_JOBS_PER_USER); send more when they "
            "are done."
        )


def create_flight(
    db: Session,
    user: User,
    field: Field,
    *,
    inputs: list[tuple[str, Path]],
    results: list[tuple[str, Path]] | None = None,
    bands: list[str] | None = None,
    captured_at: str | None = None,
    client_id: str | None = None,
    gsd: float | None = None,
    digests: list[str] | None = None,
) -> tuple[Flight, bool]:
    """The new flight (and True), or the existing one with this client_id (and False).

    `digests`: the sha256 of each of `inputs`, in order. A flight the service analyses keeps
    `request_sha256` of them with the bands and GSD, and a `client_id` posted again with other
    imagery is refused (409). A device's flight (with `results`) is not checked: its client_id
    is already the identity of its inputs, models and options (edge/stamp.py), and whether its
    imagery came along (`--with-imagery`) does not make it another flight.

    Files are checked and assembled in a staging folder with no database transaction open
    (SQLite's write lock would make every other tenant wait, then fail); the flight and its
    job are then inserted in one short transaction and the folder renamed into place. Only
    headers are read here: decoding, analysis and web copies happen in the worker."""
    request = None
    if client_id and not results and digests is not None:
        request = request_sha256(
            [(name, d) for (name, _), d in zip(inputs, digests, strict=True)], bands, gsd
        )
    existing = find_by_client_id(db, field.id, client_id)
    if existing is not None:
        return _replayed(existing, request), False
    if not inputs and not results:
        raise InputError("A flight needs imagery (uploads) or results from a device.")
    if not results:
        check_job_quota(db, user)
    names = _checked_names(inputs, results)
    staged, imagery, summary = _stage(inputs, names, results, bands, gsd)
    flight = Flight(
        field_id=field.id,
        created_by=user.id,
        client_id=client_id,
        request_sha256=request,
        captured_at=captured_at,
        bands=bands,
        gsd_m=gsd,
        inputs=names,
        source="edge" if results else "service",
        imagery=imagery,
        summary=summary,
    )
    if results:
        job = Job(status="done", progress=1.0, attempts=0, finished_at=now(), queued_at=now())
    else:
        job = Job(status="queued")
    flight.job = job
    try:
        # The unique (field, client_id) conflict may surface at the flush (an autoflush, the
        # insert) or at the commit: both are inside this block.
        db.add(flight)
        db.flush()
        db.commit()
    except IntegrityError:  # the same client_id raced in from a second request
        db.rollback()
        storage.remove_tree(staged)
        existing = find_by_client_id(db, field.id, client_id)
        if existing is None:
            raise
        return _replayed(existing, request), False
    except BaseException:
        db.rollback()
        storage.remove_tree(staged)
        raise
    final = storage.flight_dir(field.farm_id, field.id, flight.id)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
    except OSError as e:
        storage.remove_tree(staged)
        db.delete(flight)
        db.commit()
        raise OutputError(f"The flight could not be stored ({e.strerror or e}).") from None
    if results:
        try:
            enqueue_web_copies(flight.id)
        except Exception:  # tiles are read from the originals meanwhile; the worker retries
            log.warning("could not queue web copies of flight %s", flight.id, exc_info=True)
    else:
        enqueue_or_fail(db, flight)
    return flight, True


def _checked_names(
    inputs: list[tuple[str, Path]], results: list[tuple[str, Path]] | None
) -> list[str]:
    """The inputs' safe file names, once each is known to be an image and each result file a
    result Khet knows; InputError otherwise."""
    names = [storage.safe_filename(n) for n, _ in inputs]
    if len(set(names)) != len(names):
        raise InputError("Two of the files have the same name; each band file needs its own name.")
    for name, src in inputs:
        storage.require_image(src, name)
    for n, _ in results or []:
        if not storage.result_name_ok(n):
            raise InputError(f"{n!r} is not a result file Khet knows ({products.described()}).")
    return names


def _stage(
    inputs: list[tuple[str, Path]],
    names: list[str],
    results: list[tuple[str, Path]] | None,
    bands: list[str] | None,
    gsd: float | None = None,
) -> tuple[Path, dict | None, dict | None]:
    """A staging folder with the flight's files, what its imagery is, and a device's summary;
    the folder is removed again if anything fails."""
    staged = storage.staging_dir()
    imagery, summary = None, None
    try:
        for (_name, src), clean in zip(inputs, names, strict=True):
            storage.link_or_copy(src, staged / "input" / clean)
        if inputs:
            paths = [staged / "input" / n for n in names]
            if is_flight(paths):  # a whole flight's frames: mosaicked by the job
                imagery = flight_imagery_info(paths)
            else:
                facts = _inspect(paths, bands, gsd)
                imagery = _imagery_at_arrival(facts)
        if results:
            for name, src in results:
                storage.link_or_copy(src, staged / "results" / name)
            summary = _check_results(staged / "results")
    except BaseException:
        storage.remove_tree(staged)
        raise
    return staged, imagery, summary


def check_imagery(flight: Flight, bands: list[str] | None, gsd: float | None) -> None:
    """The checks a flight's imagery had when it was made (headers only), with other band
    names or ground sample distance: InputError when they do not fit it."""
    field = flight.field
    folder = storage.flight_dir(field.farm_id, field.id, flight.id) / "input"
    paths = [folder / n for n in flight.inputs]
    if not is_flight(paths):
        _inspect(paths, bands, gsd)


def _inspect(paths: list[Path], bands: list[str] | None, gsd: float | None) -> SceneFacts:
    """The imagery's headers checked as the analysis will read them, and its bands checked to
    be ones something can map (a model or a vegetation index): InputError or BandError."""
    facts = inspect_scene(paths if len(paths) > 1 else paths[0], bands=bands, gsd=gsd)
    named = [b for b in facts.band_names if b != SKIP]
    check_mappable(named, paths[0].name, len(paths) == 1, get_settings().models_dir)
    return facts


def enqueue_or_fail(db: Session, flight: Flight) -> None:
    """Queue the flight's job; if the queue cannot be reached, mark the job failed and say so."""
    job = flight.job
    assert job is not None  # made with the flight
    try:
        enqueue(job.id)
    except Exception as e:
        log.exception("could not queue job %s", job.id)
        job.status, job.error = "failed", "The job queue could not be reached; retry."
        db.commit()
        raise QueueDown(
            f"The job queue is unreachable ({type(e).__name__}); retry later."
        ) from None


def result_files(flight: Flight) -> list[str]:
    """The result files a user downloads (the web-optimized copies behind the tiles are not
    listed)."""
    field = flight.field
    d = storage.flight_dir(field.farm_id, field.id, flight.id) / "results"
    if not d.is_dir():
        return []
    files = (p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    return sorted(f for f in files if not f.startswith(WEB_DIR + "/"))


def public_summary(summary: dict | None) -> dict | None:
    """The summary as users see it: without server paths (flights analysed before they were
    removed at the source still have them stored)."""
    if summary is None:
        return None
    return storage.strip_server_paths(copy.deepcopy(summary))


def flight_out(flight: Flight, with_summary: bool = True) -> FlightOut:
    """A flight as the API returns it (its job, results and, unless told not to, its summary)."""
    job = flight.job
    status = job.status if job else "done"
    return FlightOut(
        id=flight.id,
        field_id=flight.field_id,
        farm_id=flight.field.farm_id,
        status=status,
        progress=job.progress if job else 1.0,
        error=storage.public_message(job.error) if job and job.error else None,
        source=flight.source,
        client_id=flight.client_id,
        captured_at=flight.captured_at,
        inputs=list(flight.inputs or []),
        bands=flight.bands,
        gsd=flight.gsd_m,
        created_at=flight.created_at,
        job=JobOut.model_validate(job).model_copy(
            update={"error": storage.public_message(job.error) if job.error else None}
        )
        if job
        else None,
        summary=public_summary(flight.summary) if with_summary else None,
        results=result_files(flight) if status == "done" else [],
    )
