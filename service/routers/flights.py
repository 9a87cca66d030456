"""Flights: imagery in, a job, results out."""

from __future__ import annotations

import json
import shutil
import uuid
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from khet.service import storage
from khet.service.db import Flight, now
from khet.service.dependencies import (
    DB,
    CurrentUser,
    ForbiddenError,
    IdPath,
    can_edit,
    get_field,
    get_flight,
    get_upload,
)
from khet.service.flights import check_imagery, create_flight, enqueue_or_fail, flight_out
from khet.service.routers.uploads import STREAMED
from khet.service.schemas import FlightIn, FlightOut, Problem, RetryIn
from khet.service.tiles import READERS
from khet.service.uploads import MultipartSink, limit_bytes, stream_body, too_large
from khet.vision import products
from pydantic import ValidationError
from sqlalchemy import select

from khet.errors import ConflictError, InputError, KhetError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["flights"])


@router.post(
    "/fields/{field_id}/flights",
    response_model=FlightOut,
    status_code=201,
    responses={
        200: {"model": FlightOut, "description": "Existing flight with this client_id"},
        409: {"model": Problem, "description": "client_id already used for other imagery"},
        422: {"model": Problem},
    },
    summary="Create a flight from finished uploads (or from a device's results)",
)
def create_from_uploads(
    field_id: IdPath, body: FlightIn, user: CurrentUser, db: DB, response: Response
) -> FlightOut:
    """`uploads`: the imagery (one file, the band files of one capture, or every frame of a
    flight, which the job mosaicks first), all complete.
    Queues an analysis job clipped to the field boundary. With `results` (an edge device
    already analysed the imagery) no job runs: the flight is stored as done, source "edge".
    The same `client_id` for the same field returns the existing flight (200), when it was
    made from the same uploads, bands and GSD; with other imagery it is a 409."""
    field = get_field(db, user, field_id)
    inputs, digests, results = [], [], []
    for uid in body.uploads:
        up = get_upload(db, user, uid)
        if not up.complete:
            raise ConflictError(
                f"Upload {up.filename} is not complete ({up.offset} of {up.size} bytes)."
            )
        inputs.append((up.filename, storage.upload_path(user.id, up.id)))
        digests.append(up.sha256)
    for name, uid in (body.results or {}).items():
        up = get_upload(db, user, uid)
        if not up.complete:
            raise ConflictError(
                f"Upload {up.filename} is not complete ({up.offset} of {up.size} bytes)."
            )
        results.append((name, storage.upload_path(user.id, up.id)))
    flight, created = create_flight(
        db,
        user,
        field,
        inputs=inputs,
        results=results or None,
        bands=body.bands,
        gsd=body.gsd,
        captured_at=body.captured_at.isoformat() if body.captured_at else None,
        client_id=body.client_id,
        digests=digests,
    )
    response.status_code = 201 if created else 200
    return flight_out(flight)


#: The form fields of a multipart flight: FlightIn's, but for the uploads (the form's files).
FORM_FIELDS = ("bands", "captured_at", "gsd", "client_id")


def form_fields(fields: dict[str, str]) -> FlightIn:
    """A multipart flight's form fields checked by the JSON route's schema (FlightIn): the same
    limits and messages either way. `bands` is comma-separated in a form; empty fields are left
    out; a 422 like the JSON route's when a value is wrong."""
    form: dict[str, object] = {}
    for name in FORM_FIELDS:
        value = (fields.get(name) or "").strip()
        if value:
            form[name] = value
    if "bands" in form:
        form["bands"] = [b.strip() for b in str(form["bands"]).split(",") if b.strip()]
    try:
        return FlightIn.model_validate(form, strict=False)  # form values are text
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from None


@router.post(
    "/fields/{field_id}/flights/upload",
    response_model=FlightOut,
    status_code=201,
    responses={413: {"model": Problem}, 422: {"model": Problem}},
    summary="Upload imagery as multipart/form-data and queue its analysis",
    max_body_size=STREAMED,  # streamed to disk against KHET_MAX_UPLOAD_MB
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "One image, the band files of one capture, or a "
                                "flight's frames",
                            },
                            "bands": {
                                "type": "string",
                                "description": "Comma-separated band names",
                            },
                            "captured_at": {"type": "string", "format": "date-time"},
                            "client_id": {"type": "string", "maxLength": 200},
                        },
                    }
                }
            },
        }
    },
)
async def create_from_multipart(
    field_id: IdPath, request: Request, user: CurrentUser, db: DB
) -> Response:
    """For browsers and scripts: the body is streamed to disk as it arrives (never held in
    memory), with the same checks as the chunked uploads (size limit, content sniffing, file
    names, the image must open)."""
    field = await run_in_threadpool(get_field, db, user, field_id)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes() + MultipartSink.OVERHEAD:
        # Refused before a byte is read, as the JSON routes refuse a long body.
        raise too_large("The upload")
    folder = storage.data_dir() / "uploads" / str(user.id) / f"mp-{uuid.uuid4().hex}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        sink = MultipartSink(folder, request.headers.get("content-type", ""))
        try:
            _, dropped = await stream_body(request, sink.write)
            if dropped:
                raise KhetError("The connection dropped during the upload; send it again.")
            await run_in_threadpool(sink.finish)
        except KhetError:
            raise
        except Exception as e:  # the multipart parser's complaints are the sender's fault
            raise InputError(f"The form data is malformed ({str(e)[:120]}).") from None
        finally:
            sink_ref = locals().get("sink")
            if sink_ref is not None:
                sink_ref.close()
        files = [f for f in sink.files if f["field"] in ("files", "file")]
        if not files:
            raise InputError("Attach at least one image as the form field 'files'.")
        for f in files:
            if f["size"] == 0:
                raise InputError(f"{f['filename']} is empty (0 bytes).")
        body = form_fields(sink.fields)
        flight, created = await run_in_threadpool(
            create_flight,
            db,
            user,
            field,
            inputs=[(f["filename"], f["path"]) for f in files],
            digests=[f["hash"].hexdigest() for f in files],
            bands=body.bands,
            gsd=body.gsd,
            captured_at=body.captured_at.isoformat() if body.captured_at else None,
            client_id=body.client_id,
        )
        out = await run_in_threadpool(flight_out, flight)
        return Response(
            out.model_dump_json(),
            status_code=201 if created else 200,
            media_type="application/json",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.get(
    "/fields/{field_id}/flights", response_model=list[FlightOut], summary="A field's flights"
)
def list_flights(field_id: IdPath, user: CurrentUser, db: DB) -> list[FlightOut]:
    """The flights of a field, newest first."""
    field = get_field(db, user, field_id)
    flights = db.scalars(select(Flight).where(Flight.field_id == field.id).order_by(Flight.id))
    return [flight_out(f, with_summary=False) for f in flights]


@router.get(
    "/flights/{flight_id}",
    response_model=FlightOut,
    summary="One flight: status, progress, error in plain words, summary",
)
def read_flight(flight_id: IdPath, user: CurrentUser, db: DB) -> FlightOut:
    """One flight: its job's state, results and summary."""
    return flight_out(get_flight(db, user, flight_id))


def check_rerun(flight: Flight, user) -> None:
    """ConflictError or ForbiddenError unless `user` may queue `flight`'s analysis again now:
    imagery on the server (not a device's map), not already queued or running, and a finished
    map replaced only by the farm's owner or an administrator."""
    job = flight.job
    if flight.source == "edge" or not flight.inputs or job is None:
        raise ConflictError("This flight was analysed on a device; there is no imagery to re-run.")
    if job.status in ("queued", "running"):
        raise ConflictError("This flight's analysis is already queued or running.")
    if job.status == "done" and not can_edit(user, flight.field.farm):
        # A finished map, and the zones and prescriptions the farm made on it, would go.
        raise ForbiddenError(
            "Only the farm's owner or an administrator can re-run a finished analysis: it "
            "replaces the map and the zones and prescriptions made on it."
        )


@router.post(
    "/flights/{flight_id}/retry",
    response_model=FlightOut,
    summary="Queue a failed (or finished) analysis again",
)
def retry_flight(
    flight_id: IdPath, user: CurrentUser, db: DB, body: RetryIn | None = None
) -> FlightOut:
    """Queue a failed or finished flight's analysis again (not one made on a device), with the
    band names or ground sample distance corrected when the body gives them (checked against
    the imagery's headers first, as when the flight was made: 422 changes nothing). A finished
    flight's map is replaced, and the zones and prescriptions made on it with it: only the
    farm's owner or an administrator may do that (403); anyone who sees a failed flight may
    re-run it."""
    flight = get_flight(db, user, flight_id)
    check_rerun(flight, user)
    job = flight.job
    assert job is not None  # check_rerun
    given = body.model_fields_set if body is not None else set()
    if body is not None and given:
        bands = body.bands if "bands" in given else flight.bands
        gsd = body.gsd if "gsd" in given else flight.gsd_m
        check_imagery(flight, bands, gsd)
        flight.bands, flight.gsd_m = bands, gsd
    job.status, job.progress, job.error = "queued", 0.0, None
    job.queued_at, job.started_at, job.finished_at, job.attempts = now(), None, None, 0
    db.commit()
    enqueue_or_fail(db, flight)
    return flight_out(flight)


@router.delete("/flights/{flight_id}", status_code=204, summary="Delete a flight and its files")
def delete_flight(flight_id: IdPath, user: CurrentUser, db: DB) -> Response:
    """Delete a flight, its imagery and its results."""
    flight = get_flight(db, user, flight_id)
    field = flight.field
    if not can_edit(user, field.farm):
        raise ForbiddenError("Only the farm's owner or an administrator can delete flights.")
    path = storage.flight_dir(field.farm_id, field.id, flight.id)
    db.delete(flight)
    db.commit()
    READERS.forget(path)
    storage.remove_tree(path)
    return Response(status_code=204)


@router.get(
    "/flights/{flight_id}/results/{name:path}",
    responses={
        200: {
            "content": {
                "image/tiff": {},
                "image/png": {},
                "application/geo+json": {},
                "application/json": {},
            }
        }
    },
    summary=f"Download a result: {products.described()}",
)
def read_result(
    flight_id: IdPath, name: Annotated[str, PathParam(max_length=64)], user: CurrentUser, db: DB
) -> Response:
    """Download one of a flight's result files (map COGs, preview, summary, ...)."""
    flight = get_flight(db, user, flight_id)
    if not storage.result_name_ok(name):
        raise NotFoundError("No such result file.")
    field = flight.field
    path = storage.flight_dir(field.farm_id, field.id, flight.id) / "results" / name
    if not path.is_file():
        raise NotFoundError("That result is not ready (or this flight has none).")
    if name == "summary.json":
        # As stored (a device's, byte for byte), but without this server's folders: summaries
        # of analyses made before they were removed at the source still name them.
        try:
            raw = path.read_text(encoding="utf-8")
            if str(storage.data_dir()) in raw:
                return JSONResponse(
                    storage.strip_server_paths(json.loads(raw)),
                    headers={"Content-Disposition": 'attachment; filename="summary.json"'},
                )
        except (OSError, ValueError):
            raise NotFoundError("That result cannot be read.") from None
    return FileResponse(path, media_type=products.media_type(name), filename=path.name)


# HEAD on a result (a download manager's or `curl -I`'s first question): the same handler, whose
# FileResponse sends the headers alone; not a second operation in the OpenAPI document.
router.add_api_route(
    "/flights/{flight_id}/results/{name:path}",
    read_result,
    methods=["HEAD"],
    include_in_schema=False,
)
