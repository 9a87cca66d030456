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
