"""Who sees what: farmer B, and an extension worker outside the assignment, get 404 on every one
of farmer A's resources (read, list, tile, point, results, retry, delete); assigned extension
workers and admins see them."""

from __future__ import annotations

import pytest

from tests.service.conftest import run_queued_jobs
from tests.service.rasters import bounds_lonlat


@pytest.fixture
def world(api, geotiff, use_test_models):
    c = api.client
    alice = api.user("farmer")
    bob = api.user("farmer")
    ext_in = api.user("extension")
    ext_out = api.user("extension")
    admin = api.user("admin")
    farm, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    r = c.post(f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"])
    flight = r.json()["id"]
    run_queued_jobs()
    r = c.post(
        f"/api/v1/farms/{farm}/assignments",
        json={"user_id": ext_in["id"]},
        headers=admin["headers"],
    )
    assert r.status_code == 201, r.text
    return {
        "alice": alice,
        "bob": bob,
        "ext_in": ext_in,
        "ext_out": ext_out,
        "admin": admin,
        "farm": farm,
        "field": field,
        "flight": flight,
        "upload": up,
    }


def _reads(w) -> list[tuple[str, str]]:
    import morecantile

    west, south, east, north = bounds_lonlat()
    t = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 18)
    f, fl = w["field"], w["flight"]
    return [
        ("GET", f"/api/v1/farms/{w['farm']}"),
        ("GET", f"/api/v1/farms/{w['farm']}/fields"),
        ("GET", f"/api/v1/fields/{f}"),
        ("GET", f"/api/v1/fields/{f}/flights"),
        ("GET", f"/api/v1/flights/{fl}"),
        ("GET", f"/api/v1/flights/{fl}/results/summary.json"),
        ("GET", f"/api/v1/flights/{fl}/results/classes.tif"),
        ("GET", f"/api/v1/flights/{fl}/tilejson.json?layer=classes"),
        ("GET", f"/api/v1/flights/{fl}/tiles/classes/{t.z}/{t.x}/{t.y}.png"),
        ("GET", f"/api/v1/flights/{fl}/tiles/imagery/{t.z}/{t.x}/{t.y}.png"),
        ("GET", f"/api/v1/flights/{fl}/point?lon={(west + east) / 2}&lat={(south + north) / 2}"),
    ]


def _writes(w) -> list[tuple[str, str, dict | None]]:
    f, fl = w["field"], w["flight"]
    return [
        ("PATCH", f"/api/v1/fields/{f}", {"name": "mine now"}),
        ("POST", f"/api/v1/farms/{w['farm']}/fields", {"name": "intruder"}),
        ("POST", f"/api/v1/fields/{f}/flights", {"uploads": []}),
        ("POST", f"/api/v1/flights/{fl}/retry", None),
        ("DELETE", f"/api/v1/flights/{fl}", None),
        ("DELETE", f"/api/v1/fields/{f}", None),
        ("DELETE", f"/api/v1/farms/{w['farm']}", None),
    ]


@pytest.mark.parametrize("who", ["bob", "ext_out"])
def test_outsiders_get_404_everywhere(api, world, who):
    c, h = api.client, world[who]["headers"]
    for method, url in _reads(world):
        r = c.request(method, url, headers=h)
        assert r.status_code == 404, (who, url, r.status_code, r.text)
        assert r.json()["error"] == "not_found"
    for method, url, body in _writes(world):
        r = c.request(method, url, headers=h, json=body)
        assert r.status_code == 404, (who, method, url, r.status_code, r.text)
    assert c.get("/api/v1/farms", headers=h).json() == []
    r = c.get(f"/api/v1/uploads/{world['upload']}", headers=h)
    assert r.status_code == 404
    # and the owner still has everything
    for method, url in _reads(world):
        assert c.request(method, url, headers=world["alice"]["headers"]).status_code == 200, url


@pytest.mark.parametrize("who", ["ext_in", "admin", "alice"])
def test_insiders_can_read(api, world, who):
    c, h = api.client, world[who]["headers"]
    for method, url in _reads(world):
        r = c.request(method, url, headers=h)
        assert r.status_code == 200, (who, url, r.status_code, r.text)
    farms = c.get("/api/v1/farms", headers=h).json()
    assert [f["id"] for f in farms] == [world["farm"]]


def test_extension_worker_cannot_delete_or_edit(api, world):
    c, h = api.client, world["ext_in"]["headers"]
    assert c.delete(f"/api/v1/flights/{world['flight']}", headers=h).status_code == 403
    assert c.delete(f"/api/v1/farms/{world['farm']}", headers=h).status_code == 403
    assert (
        c.patch(f"/api/v1/fields/{world['field']}", json={"name": "x"}, headers=h).status_code
        == 403
    )
    assert c.post("/api/v1/farms", json={"name": "x"}, headers=h).status_code == 403


def test_owner_deletes(api, world, tmp_path):
    c, h = api.client, world["alice"]["headers"]
    assert c.delete(f"/api/v1/flights/{world['flight']}", headers=h).status_code == 204
    assert c.get(f"/api/v1/flights/{world['flight']}", headers=h).status_code == 404
    assert not list((tmp_path / "khet-data" / "farms").rglob("classes.tif"))
    assert c.delete(f"/api/v1/farms/{world['farm']}", headers=h).status_code == 204
    assert c.get("/api/v1/farms", headers=h).json() == []


def test_admin_only_endpoints(api, world):
    c = api.client
    for who in ("alice", "ext_in"):
        h = world[who]["headers"]
        r = c.post(
            "/api/v1/users", json={"email": "x@example.org", "password": "12345678"}, headers=h
        )
        assert r.status_code == 403
        r = c.post(
            f"/api/v1/farms/{world['farm']}/assignments",
            json={"user_id": world["ext_out"]["id"]},
            headers=h,
        )
        assert r.status_code in (403, 404)
    r = c.post(
        "/api/v1/users",
        json={"email": "New@Example.org", "password": "sugar cane 42", "role": "extension"},
        headers=world["admin"]["headers"],
    )
    assert r.status_code == 201 and r.json()["email"] == "new@example.org"
    r = c.post(
        "/api/v1/users",
        json={"email": "new@example.org", "password": "sugar cane 42"},
        headers=world["admin"]["headers"],
    )
    assert r.status_code == 409
