"""Map tiles, TileJSON and click-to-inspect for a flight."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from khet.service import storage
from khet.service.config import service_settings
from khet.service.db import Flight, sessionmaker_for
from khet.service.dependencies import (
    AUTHENTICATED,
    DB,
    CurrentUser,
    IdPath,
    get_flight,
    require_user,
)
from khet.service.schemas import Problem
from khet.service.tiles import NotGeoreferenced, layer_source, point_values, render_tile, tilejson
from khet.service.values import mapping, text
from sqlalchemy.orm import defer

from khet.errors import NotFoundError

router = APIRouter(prefix="/api/v1/flights", tags=["map tiles"])
Layer = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9_]{1,32}$",
        description="imagery, classes, vigour, or an index (ndvi, vari, ...)",
    ),
]
LayerQ = Annotated[
    str,
    Query(
        pattern=r"^[a-z0-9_]{1,32}$",
        description="imagery, classes, vigour, or an index (ndvi, vari, ...)",
    ),
]


TILE_DOC = (
    "A 256 px web-map tile (XYZ, Web Mercator). Needs the same login or token as every "
    "endpoint (checked in the worker thread that draws the tile)."
)


async def tile(
    flight_id: IdPath,
    layer: Layer,
    z: Annotated[int, Path(ge=0, le=30)],
    x: Annotated[int, Path(ge=0, le=2**30)],
    y: Annotated[int, Path(ge=0, le=2**30)],
    request: Request,
) -> Response:
    """A web-map tile of one layer of a flight, drawn in a worker thread."""
    suffix = request.url.path.rsplit("/", 1)[-1].partition(".")[2]
    return await _tile(request, flight_id, layer, z, x, y, TILE_FORMATS.get(suffix, "auto"))


# One handler on four paths: `.png` asks for PNG, `.jpg` or `.jpeg` for JPEG (what many XYZ
# clients write); without a suffix the server picks (JPEG for imagery inside the image, else
# PNG). The suffixed routes are bound first, so that `{y}` never swallows "3.png".
TILE_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg"}
for _suffix, _fmt in TILE_FORMATS.items():
    router.get(
        f"/{{flight_id}}/tiles/{{layer}}/{{z}}/{{x}}/{{y}}.{_suffix}",
        dependencies=AUTHENTICATED,  # documented; the user is found in the worker thread
        responses={200: {"content": {f"image/{_fmt}": {}}}, 404: {"model": Problem}},
        response_class=Response,
        summary=f"A web-map tile as {_fmt.upper()}"
        + (" (no transparency: outside the map is black)" if _fmt == "jpeg" else ""),
        description=TILE_DOC,
        name=f"tile_{_suffix}",
    )(tile)
router.get(
    "/{flight_id}/tiles/{layer}/{z}/{x}/{y}",
    dependencies=AUTHENTICATED,  # documented; the user is found in the worker thread
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 404: {"model": Problem}},
    response_class=Response,
    summary="A web-map tile, JPEG where it has no transparent pixel, else PNG",
    description=TILE_DOC + " Map layers are always PNG; imagery tiles inside the image are "
    "JPEG (the format TileJSON advertises).",
    name="tile_auto",
)(tile)


async def _tile(
    request: Request, flight_id: int, layer: str, z: int, x: int, y: int, fmt: str
) -> Response:
    if x >= 2**z or y >= 2**z:
        raise NotFoundError("No such tile at this zoom.")
    body, media = await run_in_threadpool(_tile_bytes, request, flight_id, layer, z, x, y, fmt)
    return Response(body, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


def _tile_bytes(
    request: Request, flight_id: int, layer: str, z: int, x: int, y: int, fmt: str
) -> tuple[bytes, str]:
    """Who asks, whether they may see the flight, which file, and the tile: in one worker
    thread. A map view asks for dozens of tiles at once; FastAPI's dependencies would cost a
    thread hop each, and the summary (only index layers need it) is loaded only when used."""
    with sessionmaker_for()() as db:
        user = require_user(request, db)
        flight = get_flight(db, user, flight_id, defer(Flight.summary))
        path, opts = layer_source(flight, layer)
    return render_tile(path, opts, z, x, y, fmt)


@router.get("/{flight_id}/tilejson.json", summary="TileJSON for one layer of a flight")
def flight_tilejson(
    flight_id: IdPath, request: Request, user: CurrentUser, db: DB, layer: LayerQ = "classes"
) -> dict:
    """Flights whose imagery had no map coordinates answer `"georeferenced": false`, no tile
    URLs, and a `message`: their maps are in pixel space; use preview.png. Tile URLs are
    absolute when KHET_PUBLIC_URL is set, else paths on this server."""
    flight = get_flight(db, user, flight_id)
    # Not from the request's Host header, which the client chooses: the configured address,
    # else a path on this server (what the map pages use).
    root = request.scope.get("root_path", "")
    url = f"{root}/api/v1/flights/{flight_id}/tiles/{layer}/{{z}}/{{x}}/{{y}}"
    public = service_settings().public_url
    if public:
        url = public.rstrip("/") + url
    try:
        path, _ = layer_source(flight, layer, web=False)
        return tilejson(path, url, f"flight {flight.id} {layer}")
    except NotGeoreferenced as e:
        return {
            "tilejson": "3.0.0",
            "name": f"flight {flight.id} {layer}",
            "tiles": [],
            "georeferenced": False,
            "message": e.message,
        }


@router.get("/{flight_id}/point", summary="Class, vigour and index values at a point")
def point(
    flight_id: IdPath,
    user: CurrentUser,
    db: DB,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
) -> dict:
    """For click-to-inspect: `inside` is false when the point is off the map; `confidence` is
    the model's confidence in the class there, in percent."""
    flight = get_flight(db, user, flight_id)
    summary = mapping(flight.summary)
    out: dict = {
        "lon": lon,
        "lat": lat,
        "inside": False,
        "class": None,
        "confidence": None,
        "vigour": None,
        "indices": {},
    }
    try:
        layer_source(flight, "classes")  # georeferenced and ready?
    except NotGeoreferenced as e:
        raise NotFoundError(e.message) from None
    field = flight.field
    results = storage.flight_dir(field.farm_id, field.id, flight.id) / "results"
    # Values come from the field map itself, not from its web copies.
    cls = point_values(results / "classes.tif", lon, lat)
    if cls is None:
        return out
    out["inside"] = True
    listed = summary.get("classes")
    classes: list = listed if isinstance(listed, list) else []
    if isinstance(cls, int) and 0 <= cls < len(classes) and isinstance(classes[cls], dict):
        out["class"] = text(classes[cls].get("name")) or cls
    else:
        out["class"] = cls
    if (results / "confidence.tif").is_file():
        c = point_values(results / "confidence.tif", lon, lat)
        out["confidence"] = c if isinstance(c, int) and 0 <= c <= 100 else None
    if (results / "vigour.tif").is_file():
        v = point_values(results / "vigour.tif", lon, lat)
        levels = mapping(summary.get("vigour")).get("levels")
        levels = levels if isinstance(levels, list) else []
        if isinstance(v, int) and 0 <= v < len(levels) and isinstance(levels[v], dict):
            out["vigour"] = text(levels[v].get("name")) or v
    for p in sorted((results / "indices").glob("*.tif")) if (results / "indices").is_dir() else []:
        v = point_values(p, lon, lat)
        out["indices"][p.stem] = None if v is None else round(float(v), 4)
    return out
