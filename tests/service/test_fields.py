"""Field boundaries are checked before they are stored; the map is clipped to them."""

from __future__ import annotations

import pytest

from tests.service.conftest import run_queued_jobs
from tests.service.rasters import bounds_lonlat

SQUARE = {
    "type": "Polygon",
    "coordinates": [[[75.0, 30.0], [75.001, 30.0], [75.001, 30.001], [75.0, 30.001], [75.0, 30.0]]],
}
BAD = {
    "not_closed": {
        "type": "Polygon",
        "coordinates": [[[75.0, 30.0], [75.001, 30.0], [75.001, 30.001], [75.0, 30.001]]],
    },
    "bowtie": {
        "type": "Polygon",
        "coordinates": [
            [[75.0, 30.0], [75.001, 30.001], [75.001, 30.0], [75.0, 30.001], [75.0, 30.0]]
        ],
    },
    "lat_out_of_range": {
        "type": "Polygon",
        "coordinates": [[[75.0, 95.0], [75.001, 95.0], [75.001, 95.001], [75.0, 95.0]]],
    },
    "tiny": {
        "type": "Polygon",
        "coordinates": [[[75.0, 30.0], [75.00001, 30.0], [75.00001, 30.00001], [75.0, 30.0]]],
    },
    "huge": {
        "type": "Polygon",
        "coordinates": [[[70.0, 20.0], [80.0, 20.0], [80.0, 30.0], [70.0, 20.0]]],
    },
    "point": {"type": "Point", "coordinates": [75.0, 30.0]},
    "strings": {
        "type": "Polygon",
        "coordinates": [[["a", "b"], ["c", "d"], ["e", "f"], ["a", "b"]]],
    },
    "nested_junk": {"type": "MultiPolygon", "coordinates": [[[[[1]]]]]},
    "antimeridian": {  # read as a ring around the globe: GDAL cannot project it
        "type": "Polygon",
        "coordinates": [
            [[179.9995, 0], [-179.9995, 0], [-179.9995, 0.001], [179.9995, 0.001], [179.9995, 0]]
        ],
    },
    "named_utm": {  # old GeoJSON's crs member: these numbers are not degrees
        **SQUARE,
        "crs": {"type": "name", "properties": {"name": "EPSG:32643"}},
    },
    "huge_integer": {  # no float holds it
        "type": "Polygon",
        "coordinates": [[[10**400, 31.5], [75.001, 30.0], [75.001, 30.001], [10**400, 31.5]]],
    },
    "no_coords": {"type": "Polygon"},
}


def test_field_crud_and_boundary(api):
    c = api.client
    alice = api.user()
    farm, field = api.farm_field(alice, boundary=SQUARE)
    r = c.get(f"/api/v1/fields/{field}", headers=alice["headers"])
    assert 1.0 < r.json()["area_ha"] < 1.2  # ~107 m x 96 m at 30°N
    r = c.patch(
        f"/api/v1/fields/{field}", json={"crop": "rice", "boundary": None}, headers=alice["headers"]
    )
    assert r.status_code == 200 and r.json()["crop"] == "rice" and r.json()["boundary"] is None
    r = c.patch(
        f"/api/v1/fields/{field}",
        json={"boundary": {"type": "Feature", "geometry": SQUARE}},
        headers=alice["headers"],
    )
    assert r.status_code == 200 and r.json()["boundary"]["type"] == "Polygon"
    assert [
        f["id"] for f in c.get(f"/api/v1/farms/{farm}/fields", headers=alice["headers"]).json()
    ] == [field]
    assert c.delete(f"/api/v1/fields/{field}", headers=alice["headers"]).status_code == 204
    assert c.get(f"/api/v1/fields/{field}", headers=alice["headers"]).status_code == 404


def test_a_boundary_exported_from_qgis_is_taken(api):
    """QGIS saves a layer as a FeatureCollection (with a `crs` member and properties), as
    `khet analyze --boundary` takes it: its polygons are stored as the field, a point beside
    them (a well, say) left out."""
    c = api.client
    alice = api.user()
    farm, _ = api.farm_field(alice)
    east = {
        "type": "Polygon",
        "coordinates": [[[x + 0.002, y] for x, y in SQUARE["coordinates"][0]]],
    }
    well = {"type": "Point", "coordinates": [75.0, 30.0]}
    layer = {
        "type": "FeatureCollection",
        "name": "fields",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {"type": "Feature", "properties": {"name": "North"}, "geometry": SQUARE},
            {"type": "Feature", "properties": {}, "geometry": east},
            {"type": "Feature", "properties": {"name": "well"}, "geometry": well},
        ],
    }
    r = c.post(
        f"/api/v1/farms/{farm}/fields",
        json={"name": "From QGIS", "boundary": layer},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["boundary"]["type"] == "MultiPolygon"
    assert len(r.json()["boundary"]["coordinates"]) == 2
    assert 2.0 < r.json()["area_ha"] < 2.4  # two squares of ~107 m x 96 m
    empty = {"type": "FeatureCollection", "features": []}
    r = c.post(
        f"/api/v1/farms/{farm}/fields",
        json={"name": "x", "boundary": empty},
        headers=alice["headers"],
    )
    assert r.status_code == 422 and "no polygon" in r.json()["detail"], r.text


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_boundaries_refused(api, case):
    c = api.client
    alice = api.user()
    farm, field = api.farm_field(alice)
    r = c.post(
        f"/api/v1/farms/{farm}/fields",
        json={"name": "x", "boundary": BAD[case]},
        headers=alice["headers"],
    )
    assert r.status_code == 422, (case, r.status_code, r.text)
    assert r.json()["detail"]
    r = c.patch(f"/api/v1/fields/{field}", json={"boundary": BAD[case]}, headers=alice["headers"])
    assert r.status_code == 422
    assert c.get(f"/api/v1/fields/{field}", headers=alice["headers"]).json()["boundary"] is None


def test_a_pinched_boundary_is_repaired_as_the_analysis_repairs_it(api):
    """A ring that touches itself at one point (a field pinched in the middle, drawn in one
    go) is invalid to GEOS but encloses a clear area: stored repaired, as `khet analyze
    --boundary` takes it, not refused as 'crosses itself'."""
    import shapely
    from khet.vision.maps import boundary_geometry
    from shapely.geometry import shape

    d = 0.001
    pinched = {
        "type": "Polygon",
        "coordinates": [
            [
                [75, 30],
                [75 + d, 30],
                [75 + d / 2, 30 + d / 2],
                [75 + d, 30 + d],
                [75, 30 + d],
                [75 + d / 2, 30 + d / 2],
                [75, 30],
            ]  # fmt: skip
        ],
    }
    alice = api.user()
    farm, _ = api.farm_field(alice)
    r = api.client.post(
        f"/api/v1/farms/{farm}/fields",
        json={"name": "Pinched", "boundary": pinched},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    stored = r.json()["boundary"]
    assert stored == boundary_geometry(pinched)  # what the analysis would clip to
    assert shapely.is_valid(shape(stored))
    assert 0.5 < r.json()["area_ha"] < 0.6  # two triangles, half of ~107 m x 96 m


def test_infinite_coordinates_refused(api):
    alice = api.user()
    farm, _ = api.farm_field(alice)
    raw = (
        '{"name": "x", "boundary": {"type": "Polygon", "coordinates": [[[75.0, 30.0], '
        "[75.001, 30.0], [1e400, 30.001], [75.0, 30.0]]]}}"
    )
    r = api.client.post(
        f"/api/v1/farms/{farm}/fields",
        content=raw,
        headers={**alice["headers"], "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text


def test_map_is_clipped_to_boundary(api, geotiff, use_test_models):
    w, s, e, n = bounds_lonlat()
    mid = (w + e) / 2  # keep the western (soil) half only
    left_half = {
        "type": "Polygon",
        "coordinates": [
            [
                [w - 1e-6, s - 1e-6],
                [mid, s - 1e-6],
                [mid, n + 1e-6],
                [w - 1e-6, n + 1e-6],
                [w - 1e-6, s - 1e-6],
            ]
        ],
    }
    alice = api.user()
    _, field = api.farm_field(alice, boundary=left_half)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
    )
    run_queued_jobs()
    body = api.client.get(f"/api/v1/flights/{r.json()['id']}", headers=alice["headers"]).json()
    assert body["status"] == "done", body
    cells = sum(c["cells"] for c in body["summary"]["classes"])
    assert 0 < cells <= (128 // 32) ** 2 * 0.75  # about half of the 16 cells are outside
