"""Device flights that QA found the service mishandling: a flight with only a summary, summaries
that are well-formed field by field but do not add up, class maps that are not class maps,
capture dates out of range, and the same bytes uploaded under another name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.fixture
def edge_results(tmp_path, geotiff, use_test_models):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    return out


def _post_flight(api, who, field, results, **extra):
    body = {"uploads": [], "results": results, **extra}
    return api.client.post(f"/api/v1/fields/{field}/flights", json=body, headers=who["headers"])


def test_a_summary_only_flight_has_no_zones_or_prescriptions(api, edge_results):
    """README allows a device flight of summary.json alone; zones, rate and spot-spray on it
    are a 422 that says there is no class map (it was a 500: classes.tif missing)."""
    c = api.client
    alice = api.user()
    h = alice["headers"]
    _, field = api.farm_field(alice)
    summary = api.upload(alice, edge_results / "summary.json")
    r = _post_flight(api, alice, field, {"summary.json": summary})
    assert r.status_code == 201, r.text
    fl = r.json()["id"]
    for path, body in (
        ("zones", {}),
        ("prescriptions/spot", {}),
        ("prescriptions/rate", {"rates": [100, 80]}),
    ):
        r = c.post(f"/api/v1/flights/{fl}/{path}", json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        assert "no class map" in r.json()["detail"], r.text
    # A full device flight of the same field cannot take the summary-only one into its zones.
    full = {
        name: api.upload(alice, edge_results / name)
        for name in ("summary.json", "classes.tif", "zones.geojson")
    }
    full["indices/vari.tif"] = api.upload(alice, edge_results / "indices" / "vari.tif")
    r = _post_flight(api, alice, field, full, client_id="full")
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = c.post(f"/api/v1/flights/{other}/zones", json={"flights": [fl]}, headers=h)
    assert r.status_code == 422 and f"Flight {fl} has no class map" in r.json()["detail"]
    r = c.post(f"/api/v1/flights/{other}/zones", json={"zones": 2, "smooth": 0}, headers=h)
    assert r.status_code == 201, r.text
    # Nothing was written for the summary-only flight; its listings stay empty.
    assert c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json() == {}
    assert c.get(f"/api/v1/flights/{fl}/zones", headers=h).status_code == 404


def _scale_class(s, name, factor):
    row = next(c for c in s["classes"] if c["name"] == name)
    row["area_ha"] *= factor


BAD_SUMMARIES = {
    "negative_total": (lambda s: s.update(area_total_ha=-3), "area_total_ha"),
    "class_larger_than_map": (
        lambda s: s["classes"][0].update(area_ha=1e12),
        "larger than the whole map",
    ),
    "shares_past_one": (
        lambda s: [c.update(share=0.95) for c in s["classes"][:2]],
        "add up to",
    ),
    "negative_class_area": (lambda s: s["classes"][0].update(area_ha=-0.01), "area_ha"),
    "share_disagrees_with_area": (
        lambda s: s["classes"][0].update(share=s["classes"][0]["share"] / 2),
        "does not agree",
    ),
    "vigour_shares_past_one": (
        lambda s: [v.update(share_of_crop=0.9) for v in s["vigour"]["levels"]],
        "vigour.levels",
    ),
    "unknown_schema": (lambda s: s.update(schema_version=99), "schema_version 99"),
    "no_classes": (lambda s: s.update(classes=[]), "no classes"),
    "areas_without_total": (lambda s: s.pop("area_total_ha"), "no area_total_ha"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUMMARIES))
def test_device_summaries_that_do_not_add_up_are_refused(api, edge_results, tmp_path, case):
    """Each value was well-formed on its own and the summary was stored (201) and shown as is;
    now the parts must fit the whole: 422 with the reason, and no flight is stored."""
    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    summary = json.loads((edge_results / "summary.json").read_text())
    assert summary["area_unit"] == "ha" and len(summary["classes"]) >= 2
    change, words = BAD_SUMMARIES[case]
    change(summary)
    path = tmp_path / case / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps(summary))
    results = {
        "summary.json": api.upload(alice, path),
        "classes.tif": api.upload(alice, edge_results / "classes.tif"),
    }
    r = _post_flight(api, alice, field, results)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"] and "Value error" not in r.text, r.text
    assert c.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json() == []


def test_what_the_pipeline_writes_is_accepted_whole(api, edge_results):
    """The pipeline's own summary (rounded shares and areas) passes the same checks."""
    alice = api.user()
    _, field = api.farm_field(alice)
    summary = json.loads((edge_results / "summary.json").read_text())
    r = _post_flight(
        api, alice, field, {"summary.json": api.upload(alice, edge_results / "summary.json")}
    )
    assert r.status_code == 201, r.text
    assert r.json()["summary"]["classes"] == summary["classes"]


def test_a_class_map_must_be_one_band_of_whole_numbers(api, edge_results, tmp_path):
    """A 3-band RGB GeoTIFF sent as classes.tif was stored, and tiled as if it held classes."""
    from tests.service.rasters import make_geotiff

    alice = api.user()
    _, field = api.farm_field(alice)
    rgb = make_geotiff(tmp_path / "rgb" / "classes.tif", bands=("red", "green", "blue"))
    summary = api.upload(alice, edge_results / "summary.json")
    for name in ("classes.tif", "vigour.tif"):
        r = _post_flight(api, alice, field, {"summary.json": summary, name: api.upload(alice, rgb)})
        assert r.status_code == 422, r.text
        assert f"{name} has 3 band(s)" in r.json()["detail"], r.text
    floats = tmp_path / "float" / "classes.tif"
    floats.parent.mkdir()

    shutil.copy(edge_results / "indices" / "vari.tif", floats)
    r = _post_flight(
        api, alice, field, {"summary.json": summary, "classes.tif": api.upload(alice, floats)}
    )
    assert r.status_code == 422 and "float32" in r.json()["detail"], r.text
    r = _post_flight(
        api,
        alice,
        field,
        {"summary.json": summary, "classes.tif": api.upload(alice, edge_results / "classes.tif")},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        ("2999-01-01T00:00:00Z", "in the future"),
        ("0001-01-01T00:00:00", "before 2000"),
        ("1970-01-01T00:00:00+05:00", "before 2000"),
        (0, "before 2000"),  # a Unix timestamp of 0: a clock never set
    ],
)
def test_capture_dates_out_of_range_are_refused(api, geotiff, sent, words):
    """A flight said to be flown in 2999 or in year 1 was stored (201) and sorted by it."""
    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    body = {"uploads": [up], "captured_at": sent}
    r = c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"])
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("captured_at: ") and words in detail, r.text
    assert "Value error" not in detail
    if isinstance(sent, str):
        files = {"files": ("field.tif", geotiff.read_bytes(), "image/tiff")}
        r = c.post(
            f"/api/v1/fields/{field}/flights/upload",
            files=files,
            data={"captured_at": sent},
            headers=alice["headers"],
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("captured_at: ") and words in r.json()["detail"]
    assert c.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json() == []


def test_capture_times_without_a_zone_are_utc_on_both_routes(api, geotiff):
    """A time without a zone is taken as UTC, and stored with its zone, whichever route it
    came by; a time with a zone keeps it; tomorrow (a clock a little ahead) is taken."""
    from datetime import UTC, datetime, timedelta

    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    soon = (datetime.now(UTC) + timedelta(hours=20)).replace(microsecond=0)
    stored = []
    for i, (sent, want) in enumerate(
        [
            ("2026-06-12T09:00:00", "2026-06-12T09:00:00+00:00"),
            ("2026-06-12T07:30:00Z", "2026-06-12T07:30:00+00:00"),
            ("2026-06-12T07:30:00+05:00", "2026-06-12T07:30:00+05:00"),
            (soon.isoformat(), soon.isoformat()),
        ]
    ):
        body = {"uploads": [api.upload(alice, geotiff)], "captured_at": sent, "client_id": f"{i}"}
        r = c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"])
        assert r.status_code == 201, r.text
        assert r.json()["captured_at"] == want
        stored.append(want)
    r = c.post(
        f"/api/v1/fields/{field}/flights/upload",
        files={"files": ("field.tif", geotiff.read_bytes(), "image/tiff")},
        data={"captured_at": "2026-06-12T09:00:00"},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["captured_at"] == "2026-06-12T09:00:00+00:00"  # as the JSON route stores it


def _failed_flight(api, alice, field, image, damage: bool) -> dict:
    """A flight whose real job failed: on imagery of only no-data pixels (the imagery was
    opened first, so it has an imagery layer), or on imagery damaged on disk after it arrived (the
    job fails opening it: the imagery layer stays pending)."""
    from khet.service import storage

    from tests.service.conftest import run_queued_jobs

    flight = api.flight(alice, field, image)
    if damage:
        farm = api.client.get(f"/api/v1/flights/{flight['id']}", headers=alice["headers"])
        path = storage.flight_dir(farm.json()["farm_id"], field, flight["id"]) / "input"
        target = path / flight["inputs"][0]
        damaged = target.with_name("damaged.tmp")
        damaged.write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing else
        damaged.replace(target)
    run_queued_jobs()
    out = api.client.get(f"/api/v1/flights/{flight['id']}", headers=alice["headers"]).json()
    assert out["status"] == "failed", out
    return out


@pytest.mark.parametrize("damage", [False, True], ids=["no-data", "damaged-on-disk"])
def test_a_failed_flight_says_its_layers_will_not_come(api, tmp_path, use_test_models, damage):
    """The imagery tile of a failed flight said "The imagery layer is not ready yet." (404),
    which it never would be; so did its map layers. Now a 409 that says the analysis failed,
    and why."""
    from tests.service.rasters import make_geotiff

    c = api.client
    alice = api.user()
    h = alice["headers"]
    _, field = api.farm_field(alice)
    image = make_geotiff(tmp_path / "field.tif")
    if not damage:  # every pixel no data: the analysis fails after the imagery was opened
        import rasterio

        with rasterio.open(image, "r+") as ds:
            ds.nodata = 0
            ds.write(np.zeros((ds.count, ds.height, ds.width), np.uint8))
    queued = api.flight(alice, field, image)["id"]
    r = c.get(f"/api/v1/flights/{queued}/tiles/imagery/18/186000/107000", headers=h)
    assert r.status_code == 404 and "not ready yet" in r.json()["detail"]  # queued: it may come
    c.delete(f"/api/v1/flights/{queued}", headers=h)
    flight = _failed_flight(api, alice, field, image, damage)
    fl = flight["id"]
    paths = [
        f"/api/v1/flights/{fl}/tiles/classes/18/186000/107000",
        f"/api/v1/flights/{fl}/tilejson.json?layer=classes",
        f"/api/v1/flights/{fl}/point?lon=75.75&lat=30.9",
    ]
    if damage:  # the job failed before it could open the imagery
        paths += [
            f"/api/v1/flights/{fl}/tiles/imagery/18/186000/107000",
            f"/api/v1/flights/{fl}/tilejson.json?layer=imagery",
        ]
    else:  # the imagery was opened before the analysis failed: its layer is there
        r = c.get(f"/api/v1/flights/{fl}/tilejson.json?layer=imagery", headers=h)
        assert r.status_code == 200 and r.json()["tiles"], r.text
    for path in paths:
        r = c.get(path, headers=h)
        assert r.status_code == 409, (path, r.status_code, r.text)
        detail = r.json()["detail"]
        assert r.json()["error"] == "flight_failed"
        assert "analysis failed" in detail and "not ready" not in detail, detail
        assert flight["error"].rstrip(".")[:30] in detail  # the job's own reason
        assert "retry the flight" in detail


def test_the_same_bytes_under_a_new_name_keep_the_new_name(api, geotiff):
    """Re-uploading the same bytes as p2.jpg returned the upload named photo.jpg, and a flight
    made from it got the old name (band file names carry meaning). Now the new name is a new
    upload, complete at once, sharing the stored bytes."""
    import hashlib
    import os

    from khet.service import storage

    c = api.client
    alice = api.user()
    h = alice["headers"]
    _, field = api.farm_field(alice)
    data = geotiff.read_bytes()
    first = api.upload(alice, geotiff, name="photo.tif")
    declare = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    r = c.post("/api/v1/uploads", json={"filename": "p2.tif", **declare}, headers=h)
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["id"] != first and second["filename"] == "p2.tif"
    assert second["complete"] is True and second["offset"] == len(data)  # nothing to resend
    a = storage.upload_path(alice["id"], first)
    b = storage.upload_path(alice["id"], second["id"])
    assert b.read_bytes() == data
    assert os.stat(a).st_ino == os.stat(b).st_ino  # one copy of the bytes
    # Each name still resumes to its own upload.
    r = c.post("/api/v1/uploads", json={"filename": "photo.tif", **declare}, headers=h)
    assert r.status_code == 200 and r.json()["id"] == first
    assert r.json()["filename"] == "photo.tif"
    r = c.post("/api/v1/uploads", json={"filename": "p2.tif", **declare}, headers=h)
    assert r.status_code == 200 and r.json()["id"] == second["id"]
    r = c.post(f"/api/v1/fields/{field}/flights", json={"uploads": [second["id"]]}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["inputs"] == ["p2.tif"]
    r = c.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [first], "client_id": "old-name"},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["inputs"] == ["photo.tif"]


def test_a_new_name_for_bytes_still_arriving_is_its_own_upload(api, geotiff):
    """While the first upload of the bytes is incomplete there is nothing to share: the new
    name gets its own upload to send, and the first is not renamed under its sender."""
    import hashlib

    c = api.client
    alice = api.user()
    h = alice["headers"]
    data = geotiff.read_bytes()
    declare = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    r = c.post("/api/v1/uploads", json={"filename": "IMG_0001_3.tif", **declare}, headers=h)
    assert r.status_code == 201
    first = r.json()
    r = c.post("/api/v1/uploads", json={"filename": "IMG_0001_4.tif", **declare}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["id"] != first["id"] and r.json()["complete"] is False
    assert r.json()["filename"] == "IMG_0001_4.tif"
    up = c.get(f"/api/v1/uploads/{first['id']}", headers=h).json()
    assert up["filename"] == "IMG_0001_3.tif"
