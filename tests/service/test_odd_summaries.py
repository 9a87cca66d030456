"""A summary with odd values (from a device, or stored by an older version) breaks no page.

Before: `"share": "abc"` or `"indices": [1, 2]` in a device's summary.json made the farmer's
dashboard, the field page, the flight page, the report, its PDF and the admin dashboard answer
500 until the flight was deleted. The odd summaries are stored directly (as an older server or a
device got them in); every reader must survive them.
"""

from __future__ import annotations

import pytest

from tests.service.conftest import drain_queue

VARIANTS = {
    "share_text": {"classes": [{"name": "weed", "share": "abc", "area_ha": "x"}]},
    "indices_list": {"indices": [1, 2]},
    "classes_dict": {"classes": {"weed": 1}},
    "vigour_list": {"vigour": [1, 2], "classes": [{"name": "crop", "share": 0.5}]},
    "levels_odd": {"vigour": {"index": 5, "levels": ["low", {"name": 3, "share_of_crop": []}]}},
    "histogram_odd": {
        "indices": {"ndvi": {"histogram": {"edges": ["a", 1], "counts": [None]}, "p10": "x"}}
    },
    "nan_and_inf": {"classes": [{"name": "weed", "share": float("nan")}], "area_total_ha": 1e309},
    "unit_odd": {"area_unit": ["px"], "area_total_px": "many"},
    "color_injection": {
        "classes": [{"name": "weed", "share": 0.2, "color": "red;background-image:url(/x)"}],
        "vigour": {
            "index": "ndvi",
            "levels": [{"name": "low", "share_of_crop": 0.1, "color": "url(javascript:1)"}],
        },
    },
    "radiometry_odd": {"radiometry": {"calibrated": [1], "method": {}}, "input": [1]},
    "location_odd": {"location": {"lat": "north", "lon": None}, "model": "m", "warnings": 3},
    "names_odd": {
        "classes": [{"name": None}, {"name": ["x"]}, 7, "weed"],
        "indices": {"": {"title": 5}, "../x": {}},
    },
}


@pytest.fixture
def edge_flight(api, tmp_path, geotiff, use_test_models):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    c = api.client
    alice, admin = api.user(), api.user("admin")
    _, field = api.farm_field(alice)
    flights = []
    for i in range(2):
        results = {
            n: api.upload(alice, out / n)
            for n in ("summary.json", "classes.tif", "vigour.tif", "zones.geojson", "preview.png")
        }
        r = c.post(
            f"/api/v1/fields/{field}/flights",
            json={"results": results, "client_id": f"edge:{i}"},
            headers=alice["headers"],
        )
        assert r.status_code == 201, r.text
        flights.append(r.json()["id"])
    drain_queue()
    return {"alice": alice, "admin": admin, "field": field, "flights": flights}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pages_survive_odd_summary_values(api, database, edge_flight, variant):
    from khet.service.db import Flight, session_scope

    c = api.client
    field, (fl, other) = edge_flight["field"], edge_flight["flights"]
    odd = VARIANTS[variant]
    if database == "postgres" and variant == "nan_and_inf":  # PostgreSQL's JSON cannot hold NaN
        odd = {"classes": [{"name": "weed", "share": "NaN"}], "area_total_ha": "Infinity"}
    with session_scope() as db:
        for fid in (fl, other):
            flight = db.get(Flight, fid)
            flight.summary = {**flight.summary, **odd}
    paths = [
        "/",
        f"/fields/{field}",
        f"/flights/{fl}",
        f"/flights/{fl}/report",
        f"/flights/{fl}/report?lang=ur",
        f"/flights/{fl}/report.pdf",
        f"/fields/{field}/compare?a={fl}&b={other}",
    ]
    api_paths = [
        f"/api/v1/flights/{fl}",
        f"/api/v1/fields/{field}/flights",
        f"/api/v1/flights/{fl}/tilejson.json?layer=classes",
        f"/api/v1/flights/{fl}/tilejson.json?layer=ndvi",
        f"/api/v1/flights/{fl}/point?lon=75.75&lat=30.9",
        f"/api/v1/flights/{fl}/tiles/vari/18/186000/107000",
    ]
    for who in ("alice", "admin"):
        c.cookies.clear()
        user = edge_flight[who]
        r = c.post("/login", data={"email": user["email"], "password": user["password"]},
                   follow_redirects=False)  # fmt: skip
        assert r.status_code == 303
        for path in paths:
            r = c.get(path)
            assert r.status_code == 200, (variant, who, path, r.status_code, r.text[-500:])
            assert "background-image" not in r.text and "javascript:" not in r.text, path
        for path in api_paths:
            r = c.get(path, headers=user["headers"])
            assert r.status_code < 500, (variant, who, path, r.status_code, r.text[-500:])


def test_device_summary_with_nan_is_refused(api, tmp_path, edge_flight):
    """JSON has no NaN, but Python's parser takes it: on PostgreSQL storing it was a 500."""
    alice = edge_flight["alice"]
    bad = tmp_path / "nan" / "summary.json"
    bad.parent.mkdir()
    bad.write_text('{"classes": [{"name": "weed", "share": NaN}]}')
    r = api.client.post(
        f"/api/v1/fields/{edge_flight['field']}/flights",
        json={"results": {"summary.json": api.upload(alice, bad)}},
        headers=alice["headers"],
    )
    assert r.status_code == 422 and "NaN" in r.json()["detail"], r.text
