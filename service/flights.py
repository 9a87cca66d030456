"""Making a flight from stored files: checks, the per-flight folder, the job.

Shared by the JSON API (uploads already stored) and the multipart upload. Everything is staged in
a hidden sibling folder and renamed into place only when every check passed, so a refused flight
leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import rasterio
from khet.service import storage
from khet.service.db import Field, Flight, Job, User, now
from khet.service.jobs import enqueue
from khet.service.schemas import FlightOut, JobOut
from khet.service.tiles import WEB_DIR, build_map_layers
from khet.vision import products
from khet.vision.flight import is_flight, read_flight
from khet.vision.scene import open_scene
from khet.vision.sfm import load_pycolmap
from khet.vision.summary import Summary
from rasterio.errors import RasterioError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from khet.errors import InputError, KhetError

log = logging.getLogger("khet.service.flights")


class QueueDown(KhetError):
    status_code = 503
    code = "queue_unavailable"


def find_by_client_id(db: Session, field_id: int, client_id: str | None) -> Flight | None:
    if not client_id:
        return None
    return db.scalar(
        select(Flight).where(Flight.field_id == field_id).where(Flight.client_id == client_id)
    )


def imagery_info(scene) -> dict:
    """How the imagery layer is tiled: which bands as RGB, how to stretch them to 8 bits."""
    info: dict = {
        "georeferenced": scene.crs is not None and scene.georef == "crs",
        "kind": scene.kind,
        "tileable": False,
    }
    if not info["georeferenced"] or scene.kind != "raster" or len(scene.sources) != 1:
        info["reason"] = (
            "The imagery has no map coordinates (CRS) or is several band files; "
            "only georeferenced single-file imagery is tiled. The field map layers "
            "(classes, vigour, indices) are tiled when the results are georeferenced."
        )
        return info
    names = list(scene.bands)
    pick = next(
        (c for c in (["red", "green", "blue"], ["nir", "red", "green"]) if set(c) <= set(names)),
        names[:1],
    )
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


def _check_results(staged: Path) -> dict:
    summary_path = staged / "summary.json"
    if not summary_path.exists():
        raise InputError("Results from a device must include summary.json.")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError("summary.json is not valid JSON.") from None
    # The pages, the report and the tiles read this summary: a malformed one is refused now.
    summary = Summary.read(summary, "The device's summary.json").to_json()
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
            if storage.sniff(path.read_bytes()[:16]) != "png":
                raise InputError(f"{rel} is not a PNG image.")
    return summary


def _check_tif(path: Path, rel: str) -> None:
    if storage.sniff(path.open("rb").read(16)) != "tiff":
        raise InputError(f"{rel} is not a GeoTIFF.")
    try:
        with rasterio.open(path) as ds:
            if ds.width * ds.height > 1 << 34:
                raise InputError(f"{rel} is too large.")
            ds.read(1, window=((0, min(ds.height, 16)), (0, min(ds.width, 16))))
    except RasterioError as e:
        raise InputError(f"{rel} cannot be opened as a GeoTIFF ({str(e)[:120]}).") from None


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
) -> tuple[Flight, bool]:
    """The new flight (and True), or the existing one with this client_id (and False)."""
    existing = find_by_client_id(db, field.id, client_id)
    if existing is not None:
        return existing, False
    if not inputs and not results:
        raise InputError("A flight needs imagery (uploads) or results from a device.")
    names = [storage.safe_filename(n) for n, _ in inputs]
    if len(set(names)) != len(names):
        raise InputError("Two of the files have the same name; each band file needs its own name.")
    for name, src in inputs:
        storage.require_image(src, name)
    result_names = [n for n, _ in results or []]
    for n in result_names:
        if not storage.result_name_ok(n):
            raise InputError(f"{n!r} is not a result file Khet knows ({products.described()}).")

    flight = Flight(
        field_id=field.id,
        created_by=user.id,
        client_id=client_id,
        captured_at=captured_at,
        bands=bands,
        inputs=names,
        source="edge" if results else "service",
    )
    db.add(flight)
    db.flush()
    final = storage.flight_dir(field.farm_id, field.id, flight.id)
    staged = final.with_name(f".new-{flight.id}-{os.getpid()}")
    try:
        for (_name, src), clean in zip(inputs, names, strict=True):
            storage.link_or_copy(src, staged / "input" / clean)
        if inputs:
            paths = [staged / "input" / n for n in names]
            if is_flight(paths):
                flight.imagery = flight_imagery_info(paths)
            else:
                with open_scene(paths if len(paths) > 1 else paths[0], bands=bands) as scene:
                    flight.imagery = imagery_info(scene)
        if results:
            for name, src in results:
                storage.link_or_copy(src, staged / "results" / name)
            flight.summary = _check_results(staged / "results")
            _web_copies(staged / "results")
        storage.remove_tree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
    except BaseException:
        storage.remove_tree(staged)
        db.rollback()
        raise
    if results:
        db.add(
            Job(
                flight_id=flight.id,
                status="done",
                progress=1.0,
                attempts=0,
                finished_at=now(),
                queued_at=now(),
            )
        )
    else:
        db.add(Job(flight_id=flight.id, status="queued"))
    try:
        db.commit()
    except IntegrityError:  # the same client_id raced in from a second request
        db.rollback()
        storage.remove_tree(final)
        existing = find_by_client_id(db, field.id, client_id)
        if existing is None:
            raise
        return existing, False
    if not results:
        enqueue_or_fail(db, flight)
    return flight, True


def enqueue_or_fail(db: Session, flight: Flight) -> None:
    try:
        enqueue(flight.job.id)
    except Exception as e:
        log.exception("could not queue job %s", flight.job.id)
        flight.job.status, flight.job.error = "failed", "The job queue could not be reached; retry."
        db.commit()
        raise QueueDown(
            f"The job queue is unreachable ({type(e).__name__}); retry later."
        ) from None


def _web_copies(results: Path) -> None:
    """Web-optimized copies of a device's map layers, made here as the job does for uploads (a
    device's own `web/` folder is not trusted). Only tiles get faster: a failure is logged."""
    storage.remove_tree(results / WEB_DIR)
    try:
        build_map_layers(results)
    except Exception:
        log.warning("no web-optimized copies of synced results in %s", results, exc_info=True)
        storage.remove_tree(results / WEB_DIR)


def result_files(flight: Flight) -> list[str]:
    """The result files a user downloads (the web-optimized copies behind the tiles are not
    listed)."""
    field = flight.field
    d = storage.flight_dir(field.farm_id, field.id, flight.id) / "results"
    if not d.is_dir():
        return []
    files = (p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    return sorted(f for f in files if not f.startswith(WEB_DIR + "/"))


def flight_out(flight: Flight, with_summary: bool = True) -> FlightOut:
    job = flight.job
    status = job.status if job else "done"
    return FlightOut(
        id=flight.id,
        field_id=flight.field_id,
        farm_id=flight.field.farm_id,
        status=status,
        progress=job.progress if job else 1.0,
        error=job.error if job else None,
        source=flight.source,
        client_id=flight.client_id,
        captured_at=flight.captured_at,
        inputs=list(flight.inputs or []),
        bands=flight.bands,
        created_at=flight.created_at,
        job=JobOut.model_validate(job) if job else None,
        summary=flight.summary if with_summary else None,
        results=result_files(flight) if status == "done" else [],
    )
