"""Zones and prescriptions through the API: made on a finished flight, listed, downloaded and
read back; bad input is a 422 with the reason and changes nothing; other tenants get 404."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.service.conftest import run_queued_jobs


@pytest.fixture
def done(api, geotiff, use_test_models):
    alice = api.user("farmer")
    farm, field = api.farm_field(alice)
    flight = api.flight(alice, field, geotiff, run=True)
    return {"alice": alice, "farm": farm, "field": field, "flight": flight["id"]}


def _shifted(src, dst, east_m: float):
    """A copy of the GeoTIFF `src` moved `east_m` metres east."""
    import shutil

    import rasterio
    from rasterio.transform import Affine

    shutil.copyfile(src, dst)
    with rasterio.open(dst, "r+") as ds:
        t = ds.transform
        ds.transform = Affine(t.a, t.b, t.c + east_m, t.d, t.e, t.f)
    return dst


def _read_zip_shapefile(data: bytes):
    import pyogrio

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(tmp)
        meta, _, geoms, cols = pyogrio.raw.read(next(Path(tmp).glob("*.shp")))
        return meta, dict(zip(meta["fields"], cols, strict=True))


def test_zones_rate_and_spot_through_the_api(api, done, geotiff):
    c, h, fl = api.client, done["alice"]["headers"], done["flight"]
    assert c.get(f"/api/v1/flights/{fl}/zones", headers=h).status_code == 404
    assert c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json() == {}
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2, "smooth": 0}, headers=h)
    assert r.status_code == 201, r.text
    zones = r.json()
    assert len(zones["zones"]) == 2 and zones["placement"] == "georeference"
    assert zones["downloads"]["geojson"] == f"/api/v1/flights/{fl}/results/management/zones.geojson"
    assert "/srv" not in r.text and "khet-data" not in r.text  # no server paths
    r = c.get(zones["downloads"]["geojson"], headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    assert len(r.json()["features"]) == 2
    r = c.post(
        f"/api/v1/flights/{fl}/prescriptions/rate",
        json={"rates": [120, 80], "unit": "kg/ha", "product": "Urea N"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    rate = r.json()
    total = sum(z["rate"] * z["area_ha"] for z in rate["zones"])
    assert rate["total"] == pytest.approx(total, rel=1e-3)
    r = c.get(rate["downloads"]["shapefile"], headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    meta, cols = _read_zip_shapefile(r.content)
    assert list(cols["RATE"]) == [120, 80] and "4326" in str(meta["crs"])
    r = c.get(rate["downloads"]["taskdata"], headers=h)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        xml = z.read("TASKDATA/TASKDATA.XML").decode()
    assert "<TZN" in xml and 'A="0006"' in xml
    r = c.post(f"/api/v1/flights/{fl}/prescriptions/spot", json={"target": "vegetation"}, headers=h)
    assert r.status_code == 201, r.text
    spot = r.json()
    assert 0 <= spot["sprayed_share"] <= 1 and spot["saving_share"] == pytest.approx(
        1 - spot["sprayed_share"], abs=1e-4
    )
    made = c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json()
    assert set(made) == {"zones", "rate", "spot"}
    assert c.get(f"/api/v1/flights/{fl}/prescriptions/spot", headers=h).json()["kind"] == "spot"
    flight = c.get(f"/api/v1/flights/{fl}", headers=h).json()
    assert "management/rate-shapefile.zip" in flight["results"]
    # Two flights of the field together; a flight of another field, or another tenant's, is not.
    second = api.flight(done["alice"], done["field"], geotiff, run=True)["id"]
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2, "flights": [second]}, headers=h)
    assert r.status_code == 201, r.text
    assert len(r.json()["sources"]) == 2
    _, other_field = api.farm_field(done["alice"])
    elsewhere = api.flight(done["alice"], other_field, geotiff, run=True)["id"]
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"flights": [elsewhere]}, headers=h)
    assert r.status_code == 422 and "another field" in r.json()["detail"]
    # Of this field but of other ground (1 km east): said with the flights' ids, not "results".
    east = _shifted(geotiff, geotiff.with_name("east.tif"), 1000.0)
    away = api.flight(done["alice"], done["field"], east, run=True)["id"]
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"flights": [away]}, headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"flight {away} does not overlap flight {fl}:"), r.text
    bob = api.user("farmer")
    _, bob_field = api.farm_field(bob)
    bobs = api.flight(bob, bob_field, geotiff, run=True)["id"]
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"flights": [bobs]}, headers=h)
    assert r.status_code == 404
    # New zones drop the rate prescription made on the old ones.
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 3, "smooth": 0}, headers=h)
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        made = c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json()
        assert "rate" not in made


def test_bad_input_is_a_422_and_changes_nothing(api, done, geotiff):
    c, h, fl = api.client, done["alice"]["headers"], done["flight"]
    r = c.post(f"/api/v1/flights/{fl}/prescriptions/rate", json={"rates": [1, 2]}, headers=h)
    assert r.status_code == 422 and "no management zones" in r.json()["detail"]
    assert c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2}, headers=h).status_code == 201
    before = c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json()
    for url, body, msg in [
        ("zones", {"zones": 9}, "2 to 7"),
        ("zones", {"zones": 1}, "2 to 7"),
        ("zones", {"zones": True}, "integer"),  # was read as 1 ("got 1")
        ("zones", {"index": "ndre"}, "no ndre"),
        ("zones", {"smooth": 50}, "Smoothing"),
        ("zones", {"bogus": 1}, ""),
        ("prescriptions/rate", {"rates": [-1, 10]}, "zero or more"),
        ("prescriptions/rate", {"rates": [10]}, "Give 2 rates"),
        ("prescriptions/rate", {"base_rate": 1e7}, "more than"),
        ("prescriptions/rate", {"rates": [1, 2], "unit": "sacks"}, "Unknown rate unit"),
        ("prescriptions/rate", {}, "either"),
        # Raw JSON: a NUL and a lone surrogate, a number too large for a float, NaN.
        ("prescriptions/rate", '{"rates": [1, 2], "product": "N\\u0000"}', "printable"),
        ("prescriptions/rate", '{"rates": [1, 2], "product": "N\\ud800"}', "product"),
        ("prescriptions/rate", '{"base_rate": 1e999}', "zero or more"),
        ("prescriptions/spot", '{"min_patch_m2": NaN}', "minimum patch"),
        ("prescriptions/spot", {"margin_m": -2}, "margin"),
        ("prescriptions/spot", {"rate": -5}, "zero or more"),
    ]:
        if isinstance(body, str):
            r = c.post(
                f"/api/v1/flights/{fl}/{url}",
                content=body,
                headers={**h, "Content-Type": "application/json"},
            )
        else:
            r = c.post(f"/api/v1/flights/{fl}/{url}", json=body, headers=h)
        assert r.status_code == 422, (url, body, r.status_code, r.text)
        assert msg in r.json()["detail"], (body, r.text)
    assert c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json() == before
    # A flight whose analysis has not run yet: 409.
    queued = api.flight(done["alice"], done["field"], geotiff)
    r = c.post(f"/api/v1/flights/{queued['id']}/zones", json={}, headers=h)
    assert r.status_code == 409 and "not finished" in r.json()["detail"]
    # Named by its id when it is the other flight, and a failed one is said to have failed.
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"flights": [queued["id"]]}, headers=h)
    assert r.status_code == 409
    assert r.json()["detail"].startswith(f"Flight {queued['id']}'s map is not finished yet")
    run_queued_jobs()
    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        db.get(Flight, queued["id"]).job.status = "failed"
    r = c.post(f"/api/v1/flights/{fl}/zones", json={"flights": [queued["id"]]}, headers=h)
    assert r.status_code == 409 and "analysis failed" in r.json()["detail"], r.text
    assert "retry it first" in r.json()["detail"]


def test_other_tenants_get_404_and_assigned_workers_can_make_zones(api, done):
    c, fl = api.client, done["flight"]
    h = done["alice"]["headers"]
    assert c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2}, headers=h).status_code == 201
    bob = api.user("farmer")
    ext_out = api.user("extension")
    ext_in = api.user("extension")
    admin = api.user("admin")
    r = c.post(
        f"/api/v1/farms/{done['farm']}/assignments",
        json={"user_id": ext_in["id"]},
        headers=admin["headers"],
    )
    assert r.status_code == 201
    calls = [
        ("GET", f"/api/v1/flights/{fl}/zones", None),
        ("GET", f"/api/v1/flights/{fl}/prescriptions", None),
        ("GET", f"/api/v1/flights/{fl}/prescriptions/rate", None),
        ("GET", f"/api/v1/flights/{fl}/results/management/zones.geojson", None),
        ("GET", f"/api/v1/flights/{fl}/results/management/zones.tif", None),
        ("POST", f"/api/v1/flights/{fl}/zones", {"zones": 3}),
        ("POST", f"/api/v1/flights/{fl}/prescriptions/rate", {"rates": [1, 2]}),
        ("POST", f"/api/v1/flights/{fl}/prescriptions/spot", {}),
    ]
    for who in (bob, ext_out):
        for method, url, body in calls:
            r = c.request(method, url, json=body, headers=who["headers"])
            assert r.status_code == 404, (method, url, r.status_code, r.text)
            assert r.json()["error"] == "not_found"
    assert c.get(f"/api/v1/flights/{fl}/zones", headers=h).json()["zones_requested"] == 2
    for who in (ext_in, admin):
        r = c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2}, headers=who["headers"])
        assert r.status_code == 201, r.text
        r = c.get(f"/api/v1/flights/{fl}/results/management/zones.tif", headers=who["headers"])
        assert r.status_code == 200


def test_only_the_owner_reruns_a_finished_map(api, done):
    """Re-running a finished analysis replaces its map and the zones and prescriptions the farm
    made on it: an assigned extension worker, who may make zones, may not do that (403, nothing
    lost); the owner may."""
    c, fl = api.client, done["flight"]
    h = done["alice"]["headers"]
    assert c.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2}, headers=h).status_code == 201
    r = c.post(f"/api/v1/flights/{fl}/prescriptions/rate", json={"rates": [1, 2]}, headers=h)
    assert r.status_code == 201, r.text
    ext_in, admin = api.user("extension"), api.user("admin")
    r = c.post(
        f"/api/v1/farms/{done['farm']}/assignments",
        json={"user_id": ext_in["id"]},
        headers=admin["headers"],
    )
    assert r.status_code == 201
    r = c.post(f"/api/v1/flights/{fl}/retry", json={"gsd": 0.05}, headers=ext_in["headers"])
    assert r.status_code == 403 and "owner" in r.json()["detail"], r.text
    flight = c.get(f"/api/v1/flights/{fl}", headers=h).json()
    assert flight["status"] == "done" and flight["gsd"] is None
    assert c.get(f"/api/v1/flights/{fl}/prescriptions/rate", headers=h).status_code == 200
    r = c.post(f"/api/v1/flights/{fl}/retry", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
