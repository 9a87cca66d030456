"""Management zones and prescriptions of a flight: made from its finished map on request,
listed, and downloaded through the flight's results (`/flights/{id}/results/management/...`).

The same access rule as every flight route (`get_flight`: another tenant's flight is 404);
anyone who sees a flight may make its zones and prescriptions, as they may add flights. The
work itself is vision/prescription.py's; bad input is its InputError, a 422 with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from khet.service import storage
from khet.service.dependencies import DB, CurrentUser, IdPath, get_flight
from khet.service.schemas import Problem, Strict
from khet.vision import prescription as rx
from khet.vision import products
from pydantic import Field, StrictInt

from khet.errors import ConflictError, InputError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["zones and prescriptions"])

Kind = Literal["rate", "spot"]


class ZonesIn(Strict):
    zones: StrictInt | None = Field(None, description="2-7; leave out to let Khet choose")
    index: Annotated[str, Field(max_length=32)] | None = Field(
        None, description="index to zone on (default: the map's vigour index)"
    )
    method: Literal["kmeans", "natural-breaks"] = "kmeans"
    min_zone_ha: float | None = Field(None, description="default: 2% of the mapped area")
    smooth: StrictInt = Field(1, description="cells around each cell to smooth over, 0-10")
    flights: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list,
        max_length=5,
        description="other finished flights of the same field whose indices join this one's",
    )


class RateIn(Strict):
    rates: list[float] | None = Field(None, max_length=7, description="one per zone, zone 1 first")
    base_rate: float | None = None
    adjust_pct: float = Field(0.0, description="+% in the highest-index zone, -% in the lowest")
    unit: Annotated[str, Field(max_length=16)] = "kg/ha"
    product: Annotated[str, Field(max_length=64)] = "Nitrogen"


class SpotIn(Strict):
    margin_m: float = 0.5
    min_patch_m2: float = 0.5
    rate: float = 100.0
    unit: Annotated[str, Field(max_length=16)] = "L/ha"
    product: Annotated[str, Field(max_length=64)] = "Herbicide"
    target: Literal["weed", "vegetation"] = "weed"
    min_cover_pct: float | None = 1.0


def _results(db, user, flight_id: int, *, need_map: bool = False) -> tuple[Path, Any]:
    """The flight's results folder, once its map is finished; with `need_map`, only when the
    results hold a class map (classes.tif) to make zones and prescriptions from: a device may
    send a summary alone, which is a finished flight with nothing to zone (422, not a 500)."""
    flight = get_flight(db, user, flight_id)
    if flight.job is not None and flight.job.status == "failed":
        raise ConflictError(
            f"Flight {flight.id}'s analysis failed, so it has no map to make zones or "
            "prescriptions from: retry it first."
        )
    if flight.job is not None and flight.job.status != "done":
        raise ConflictError(
            f"Flight {flight.id}'s map is not finished yet; zones and prescriptions need a "
            "finished map."
        )
    field = flight.field
    path = storage.flight_dir(field.farm_id, field.id, flight.id) / "results"
    if not (path / "summary.json").is_file():
        raise NotFoundError("This flight has no finished map.")
    if need_map and not (path / products.CLASSES.path).is_file():
        raise InputError(
            f"Flight {flight.id} has no class map (classes.tif) to make zones or prescriptions "
            "from: its device sent only its summary. Send the device's classes.tif and index "
            "maps with the flight, or analyse the imagery on the service."
        )
    return path, flight


def _with_downloads(flight_id: int, data: dict[str, Any]) -> dict[str, Any]:
    base = f"/api/v1/flights/{flight_id}/results/"
    return data | {"downloads": {k: base + v for k, v in data.get("files", {}).items()}}


@router.post(
    "/flights/{flight_id}/zones",
    status_code=201,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
    summary="Make the flight's management zones (replaces earlier ones)",
)
def create_zones(flight_id: IdPath, body: ZonesIn, user: CurrentUser, db: DB) -> dict[str, Any]:
    """Zones from the map's vegetation index (with `flights`, together with other flights of
    the same field, each standardised), clipped to the field boundary when the field has one:
    GeoJSON (EPSG:4326), a COG and the zone table (area, index mean and spread, weed share),
    with the method and parameters that made them. A rate prescription made on earlier zones
    is removed."""
    path, flight = _results(db, user, flight_id, need_map=True)
    folders, names = [path], [f"flight {flight_id}"]
    for other in dict.fromkeys(body.flights):
        if other == flight_id:
            continue
        other_path, other_flight = _results(db, user, other, need_map=True)
        if other_flight.field_id != flight.field_id:
            raise InputError(f"Flight {other} is of another field; zones combine one field's.")
        folders.append(other_path)
        names.append(f"flight {other}")
    res = rx.make_zones(
        folders,
        n_zones=body.zones,
        index=body.index,
        method=body.method,
        min_zone_ha=body.min_zone_ha,
        smooth=body.smooth,
        boundary=flight.field.boundary,
        names=names,
    )
    return _with_downloads(flight_id, res)


@router.get(
    "/flights/{flight_id}/zones",
    responses={404: {"model": Problem}},
    summary="The flight's management zones",
)
def read_zones(flight_id: IdPath, user: CurrentUser, db: DB) -> dict[str, Any]:
    """The zone table and how the zones were made, with download links; 404 before any."""
    path, _ = _results(db, user, flight_id)
    made = rx.listing(path)
    if "zones" not in made:
        raise NotFoundError("This flight has no management zones yet.")
    return _with_downloads(flight_id, made["zones"])


@router.post(
    "/flights/{flight_id}/prescriptions/rate",
    status_code=201,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
    summary="A variable-rate prescription on the flight's zones",
)
def create_rate(flight_id: IdPath, body: RateIn, user: CurrentUser, db: DB) -> dict[str, Any]:
    """A rate per zone (`rates`, zone 1 first) or a base rate with a +/- percentage; the total
    product for the field; Shapefile zip and ISO 11783-10 TaskData, both read back before
    they are kept."""
    path, _ = _results(db, user, flight_id, need_map=True)
    res = rx.variable_rate(
        path,
        rates=body.rates,
        base_rate=body.base_rate,
        adjust_pct=body.adjust_pct,
        unit=body.unit,
        product=body.product,
    )
    return _with_downloads(flight_id, res)


@router.post(
    "/flights/{flight_id}/prescriptions/spot",
    status_code=201,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
    summary="A spot-spray map from the flight's weed map",
)
def create_spot(flight_id: IdPath, body: SpotIn, user: CurrentUser, db: DB) -> dict[str, Any]:
    """Spray polygons (buffered, merged, small patches left out, clipped to the field), the
    share of the field sprayed against blanket spraying, and the same exports."""
    path, flight = _results(db, user, flight_id, need_map=True)
    res = rx.spot_spray(
        path,
        margin_m=body.margin_m,
        min_patch_m2=body.min_patch_m2,
        rate=body.rate,
        unit=body.unit,
        product=body.product,
        target=body.target,
        min_cover_pct=body.min_cover_pct,
        boundary=flight.field.boundary,
    )
    return _with_downloads(flight_id, res)


@router.get(
    "/flights/{flight_id}/prescriptions",
    responses={404: {"model": Problem}},
    summary="What the flight has: zones, rate and spot-spray prescriptions, with downloads",
)
def list_prescriptions(flight_id: IdPath, user: CurrentUser, db: DB) -> dict[str, Any]:
    """Zones, rate and spot-spray prescriptions made on the flight's current map, by kind."""
    path, _ = _results(db, user, flight_id)
    return {k: _with_downloads(flight_id, v) for k, v in rx.listing(path).items()}


@router.get(
    "/flights/{flight_id}/prescriptions/{kind}",
    responses={404: {"model": Problem}},
    summary="One prescription of the flight",
)
def read_prescription(flight_id: IdPath, kind: Kind, user: CurrentUser, db: DB) -> dict[str, Any]:
    """One prescription (rates and total, or sprayed share and saving) with download links."""
    path, _ = _results(db, user, flight_id)
    made = rx.listing(path)
    if kind not in made:
        raise NotFoundError("This flight has no such prescription yet.")
    return _with_downloads(flight_id, made[kind])
