"""Map tiles, TileJSON and click-to-inspect for a flight."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from khet.service import storage
from khet.service.dependencies import DB, CurrentUser, IdPath, get_flight
from khet.service.schemas import Problem
from khet.service.tiles import NotGeoreferenced, layer_source, point_values, render_tile, tilejson

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


@router.get(
    "/{flight_id}/tiles/{layer}/{z}/{x}/{y}.png",
    responses={200: {"content": {"image/png": {}}}, 404: {"model": Problem}},
    response_class=Response,
    summary="A 256 px web-map tile (XYZ, Web Mercator)",
)
def tile(
    flight_id: IdPath,
    layer: Layer,
    z: Annotated[int, Path(ge=0, le=30)],
    x: Annotated[int, Path(ge=0, le=2**30)],
    y: Annotated[int, Path(ge=0, le=2**30)],
    user: CurrentUser,
    db: DB,
) -> Response:
    if x >= 2**z or y >= 2**z:
        raise NotFoundError("No such tile at this zoom.")
    flight = get_flight(db, user, flight_id)
    path, opts = layer_source(flight, layer)
    db.close()  # release the connection before the raster work
    png = render_tile(path, opts, z, x, y)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{flight_id}/tilejson.json", summary="TileJSON for one layer of a flight")
def flight_tilejson(
    flight_id: IdPath, request: Request, user: CurrentUser, db: DB, layer: LayerQ = "classes"
) -> dict:
    """Flights whose imagery had no map coordinates answer `"georeferenced": false`, no tile
    URLs, and a `message`: their maps are in pixel space; use preview.png."""
    flight = get_flight(db, user, flight_id)
    url = str(request.url_for("tile", flight_id=flight_id, layer=layer, z="{z}", x="{x}", y="{y}"))
    url = url.replace("%7B", "{").replace("%7D", "}")
    try:
        path, _ = layer_source(flight, layer)
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
    summary = flight.summary or {}
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
        path, _ = layer_source(flight, "classes")
    except NotGeoreferenced as e:
        raise NotFoundError(e.message) from None
    cls = point_values(path, lon, lat)
    if cls is None:
        return out
    out["inside"] = True
    classes = summary.get("classes") or []
    if isinstance(cls, int) and 0 <= cls < len(classes) and isinstance(classes[cls], dict):
        out["class"] = classes[cls].get("name", cls)
    else:
        out["class"] = cls
    field = flight.field
    results = storage.flight_dir(field.farm_id, field.id, flight.id) / "results"
    if (results / "confidence.tif").is_file():
        c = point_values(results / "confidence.tif", lon, lat)
        out["confidence"] = c if isinstance(c, int) and 0 <= c <= 100 else None
    if (results / "vigour.tif").is_file():
        v = point_values(results / "vigour.tif", lon, lat)
        levels = ((summary.get("vigour") or {}).get("levels")) or []
        if isinstance(v, int) and 0 <= v < len(levels) and isinstance(levels[v], dict):
            out["vigour"] = levels[v].get("name", v)
    for p in sorted((results / "indices").glob("*.tif")) if (results / "indices").is_dir() else []:
        v = point_values(p, lon, lat)
        out["indices"][p.stem] = None if v is None else round(float(v), 4)
    return out
