"""The main path end to end: account, farm, field, chunked upload, job, results, tiles."""

from __future__ import annotations

from tests.service.conftest import run_queued_jobs
from tests.service.rasters import bounds_lonlat


def test_flight_end_to_end(api, geotiff, use_test_models):
    c = api.client
    alice = api.user()
    farm, field = api.farm_field(alice)
    up = api.upload(alice, geotiff, chunk=10_000)
    r = c.post(f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"])
    assert r.status_code == 201, r.text
    flight = r.json()
    assert flight["status"] == "queued"
    assert run_queued_jobs() == [flight["job"]["id"]]
    r = c.get(f"/api/v1/flights/{flight['id']}", headers=alice["headers"])
    body = r.json()
    assert body["status"] == "done", body
    assert body["progress"] == 1.0
    assert "classes.tif" in body["results"]
    assert body["summary"]["classes"]
    for name in ("classes.tif", "vigour.tif", "zones.geojson", "preview.png", "summary.json"):
        r = c.get(f"/api/v1/flights/{flight['id']}/results/{name}", headers=alice["headers"])
        assert r.status_code == 200, name
    r = c.get(
        f"/api/v1/flights/{flight['id']}/tilejson.json?layer=classes", headers=alice["headers"]
    )
    assert r.status_code == 200, r.text
    tj = r.json()
    assert tj["georeferenced"] and tj["tiles"][0].endswith("/classes/{z}/{x}/{y}")
    import morecantile

    w, s, e, n = bounds_lonlat()
    t = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, 18)
    for layer in ("classes", "vigour", "imagery", "vari"):
        r = c.get(
            f"/api/v1/flights/{flight['id']}/tiles/{layer}/{t.z}/{t.x}/{t.y}.png",
            headers=alice["headers"],
        )
        assert r.status_code == 200, (layer, r.text)
        assert r.content.startswith(b"\x89PNG")
    r = c.get(
        f"/api/v1/flights/{flight['id']}/point",
        params={"lon": (w + e) / 2, "lat": (s + n) / 2},
        headers=alice["headers"],
    )
    assert r.status_code == 200 and r.json()["inside"], r.text
    assert r.json()["class"] in ("soil", "crop", "weed")


def test_times_read_back_as_they_were_answered(api, geotiff):
    """Every time the API gives is in UTC with its zone, when a row is made and when it is read
    back, on SQLite as on PostgreSQL; a capture time given with an offset is that moment."""
    from datetime import datetime

    c = api.client
    alice = api.user()
    farm, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    made = c.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [up], "captured_at": "2026-03-02T10:00:00+05:00"},
        headers=alice["headers"],
    ).json()
    read = c.get(f"/api/v1/flights/{made['id']}", headers=alice["headers"]).json()
    listed = c.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()[0]
    for key in ("created_at", "captured_at"):
        assert made[key] == read[key] == listed[key], (key, made[key], read[key], listed[key])
        assert datetime.fromisoformat(read[key]).utcoffset() is not None, read[key]
    assert datetime.fromisoformat(read["captured_at"]) == datetime.fromisoformat(
        "2026-03-02T05:00:00+00:00"
    )
    field_made = c.get(f"/api/v1/fields/{field}", headers=alice["headers"]).json()
    assert datetime.fromisoformat(field_made["created_at"]).utcoffset() is not None


def test_a_flight_is_retried_with_its_bands_named(api, tmp_path, use_test_models):
    """A colour-infrared camera's three bands, unnamed, are read as red, green and blue (with a
    warning): the farmer names them on a retry (checked against the imagery first, as a new
    flight's are) and gets the NDVI map without uploading the imagery again."""
    from tests.service.rasters import make_geotiff

    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    h = alice["headers"]
    cir = make_geotiff(tmp_path / "cir.tif", bands=("", "", ""))
    flight = api.flight(alice, field, cir, run=True)
    first = c.get(f"/api/v1/flights/{flight['id']}", headers=h).json()
    assert first["status"] == "done" and "ndvi" not in first["summary"]["indices"]
    url = f"/api/v1/flights/{flight['id']}/retry"
    for body, words in (
        ({"bands": ["nir", "red"]}, "has 3 band(s)"),
        ({"bands": ["band_a", "band_b", "band_c"]}, "Nothing can map these bands"),
        ({"bands": ["nir", "red", "green"], "colour": "x"}, "colour"),
    ):
        r = c.post(url, json=body, headers=h)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    still = c.get(f"/api/v1/flights/{flight['id']}", headers=h).json()
    assert still["status"] == "done" and still["bands"] is None
    r = c.post(url, json={"bands": ["nir", "red", "green"]}, headers=h)
    assert r.status_code == 200 and r.json()["bands"] == ["nir", "red", "green"], r.text
    assert r.json()["status"] == "queued"
    run_queued_jobs()
    done = c.get(f"/api/v1/flights/{flight['id']}", headers=h).json()
    assert done["status"] == "done", done["error"]
    assert "ndvi" in done["summary"]["indices"], done["summary"]["indices"]
    # A retry without a body re-runs it as it is.
    assert c.post(url, headers=h).json()["bands"] == ["nir", "red", "green"]
    run_queued_jobs()


def test_bands_nothing_can_map_are_refused_before_the_flight_is_made(api, tmp_path):
    """One band, or two that are neither red and near-infrared nor colour: refused at once
    (422, in the API's words), not queued to fail in the worker."""
    from tests.service.rasters import make_geotiff

    alice = api.user()
    _, field = api.farm_field(alice)
    for bands, words in (
        (("grey",), "has a single band"),
        (("band_a", "band_b"), "Nothing can map these bands (band1, band2)"),
    ):
        image = make_geotiff(tmp_path / f"{len(bands)}.tif", bands=bands)
        up = api.upload(alice, image)
        r = api.client.post(
            f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
        )
        assert r.status_code == 422 and words in r.json()["detail"], r.text
        assert "--bands" not in r.json()["detail"]
    listed = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()
    assert listed == []
