"""A field device that already analysed a flight sends its results; nothing runs again."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def edge_results(tmp_path, geotiff, use_test_models):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    return out


def test_results_from_device(api, edge_results, tmp_path):
    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    results = {
        name: api.upload(alice, edge_results / name)
        for name in ("summary.json", "classes.tif", "vigour.tif", "zones.geojson", "preview.png")
    }
    results["indices/vari.tif"] = api.upload(alice, edge_results / "indices" / "vari.tif")
    body = {
        "uploads": [],
        "results": results,
        "client_id": "edge-1:flight-42",
        "captured_at": "2026-06-12T07:30:00Z",
    }
    r = c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"])
    assert r.status_code == 201, r.text
    flight = r.json()
    assert flight["status"] == "done" and flight["source"] == "edge"
    assert flight["summary"]["classes"]
    assert "indices/vari.tif" in flight["results"]
    assert (
        c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"]).json()["id"]
        == flight["id"]
    )
    r = c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"])
    assert r.status_code == 200
    r = c.get(f"/api/v1/flights/{flight['id']}/results/summary.json", headers=alice["headers"])
    assert json.loads(r.content)["classes"] == flight["summary"]["classes"]
    r = c.get(
        f"/api/v1/flights/{flight['id']}/tilejson.json?layer=classes", headers=alice["headers"]
    )
    assert r.json()["georeferenced"] is True
    assert (
        c.post(f"/api/v1/flights/{flight['id']}/retry", headers=alice["headers"]).status_code == 409
    )
    assert len(c.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()) == 1


@pytest.mark.parametrize("case", ["bad_json", "tif_not_tif", "no_summary", "unknown_name"])
def test_bad_results_refused(api, edge_results, tmp_path, case):
    c = api.client
    alice = api.user()
    _, field = api.farm_field(alice)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    (bad / "classes.tif").write_bytes(b"II*\x00garbage" * 50)
    good_summary = api.upload(alice, edge_results / "summary.json")
    results = {
        "bad_json": {"summary.json": api.upload(alice, bad / "summary.json")},
        "tif_not_tif": {
            "summary.json": good_summary,
            "classes.tif": api.upload(alice, bad / "classes.tif"),
        },
        "no_summary": {"classes.tif": api.upload(alice, edge_results / "classes.tif")},
        "unknown_name": {"summary.json": good_summary, "../evil.tif": good_summary},
    }[case]
    r = c.post(
        f"/api/v1/fields/{field}/flights", json={"results": results}, headers=alice["headers"]
    )
    assert r.status_code == 422, r.text
    assert c.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json() == []
    assert not list((tmp_path / "khet-data" / "farms").rglob("*.tif"))


def test_report_draws_the_class_map_of_a_flight_sent_without_its_preview(api, edge_results):
    """A device sends its map's own layers (kB) without the preview (MB, only with
    --with-imagery): the report still has a picture, the class map in its legend colours."""
    import base64
    import io
    import re

    import numpy as np
    import rasterio
    from PIL import Image

    c = api.client
    fid = _device_flight(api, edge_results, "edge-2:flight-7")
    page = c.get(f"/flights/{fid}/report")
    assert page.status_code == 200
    src = re.search(r'<img class="r-preview" src="data:image/png;base64,([^"]+)"', page.text)
    assert src, "no map drawing in the report"
    drawing = np.asarray(Image.open(io.BytesIO(base64.b64decode(src[1]))).convert("RGB"))
    with rasterio.open(edge_results / "classes.tif") as ds:
        classes, colours = ds.read(1), ds.colormap(1)
    drawn = {tuple(int(v) for v in px) for px in drawing.reshape(-1, 3)}
    mapped = {tuple(colours[int(v)][:3]) for v in np.unique(classes) if v != 255}
    assert mapped and mapped <= drawn, (mapped, drawn)  # every class on the map is drawn
    pdf = c.get(f"/flights/{fid}/report.pdf?lang=ur")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_device_map_with_misordered_bands_says_to_run_it_again_on_the_device(
    api, tmp_path, shared_data, use_test_models
):
    """A device analysed a near-infrared camera's frame with its bands named red,green,nir:
    the flight page says the map is probably wrong, and since the server cannot analyse a
    device's flight again, says to run it again on the device (no re-run form)."""
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    frame = shared_data / "seneca_flight" / "images" / "IMG_0471.jpg"
    analyze(frame, out, bands=["red", "green", "nir"])
    c = api.client
    fid = _device_flight(api, out, "edge-3:flight-1")
    page = c.get(f"/flights/{fid}?lang=en").text
    top = page[page.index('id="band-order"') :]
    top = top[: top.index("</section>")]
    assert "wrong order" in top and "khet edge run" in top and "/retry" not in top


def _device_flight(api, results_dir, client_id: str) -> int:
    """A new user's device sends a map's own layers from `results_dir` (no preview) as a
    flight; the browser is then signed in as that user. Returns the flight's id."""
    c = api.client
    alice = api.user(password="a long password")
    _, field = api.farm_field(alice)
    results = {
        name: api.upload(alice, results_dir / name)
        for name in ("summary.json", "classes.tif", "vigour.tif", "zones.geojson")
    }
    body = {"uploads": [], "results": results, "client_id": client_id}
    r = c.post(f"/api/v1/fields/{field}/flights", json=body, headers=alice["headers"])
    assert r.status_code == 201, r.text
    assert c.post("/api/v1/session", json={"email": alice["email"], "password": "a long password"})
    return r.json()["id"]
