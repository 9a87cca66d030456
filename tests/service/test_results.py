"""The results of a flight, as the API serves them: every output the map is made of, by the
names defined once in vision/products.py, and device summaries checked against the typed
summary before they are stored."""

from __future__ import annotations

import json

import pytest
from khet.vision import products

from tests.service.conftest import run_queued_jobs


def test_every_output_of_a_map_downloads(api, geotiff, use_test_models):
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
    )
    assert r.status_code == 201, r.text
    run_queued_jobs()
    flight = api.client.get(f"/api/v1/flights/{r.json()['id']}", headers=alice["headers"]).json()
    listed = flight["results"]
    # Every file the flight lists is a known product, and every required product is there.
    assert all(products.is_result(n) for n in listed), listed
    for p in products.PRODUCTS:
        if p.required:
            assert p.path in listed, (p.key, listed)
    assert "confidence.tif" in listed  # written by every model run; was 404 to download
    for name in listed:
        resp = api.client.get(
            f"/api/v1/flights/{flight['id']}/results/{name}", headers=alice["headers"]
        )
        assert resp.status_code == 200, (name, resp.text)
        assert resp.headers["content-type"].split(";")[0] == products.media_type(name), name
        assert len(resp.content) > 0
        # HEAD, as a download manager or `curl -I` asks first: the headers without the body.
        head = api.client.head(
            f"/api/v1/flights/{flight['id']}/results/{name}", headers=alice["headers"]
        )
        assert head.status_code == 200 and head.content == b"", name
        assert head.headers["content-type"] == resp.headers["content-type"], name


@pytest.mark.parametrize(
    "change",
    [
        {"classes": [{"name": "weed", "color": "red;background-image:url(https://x.example/a)"}]},
        {"classes": [{"name": "weed", "color": "#e0452b", "share": "abc"}]},
        {"indices": [1, 2]},
        {"classes": [{"name": "weed", "color": "#e0452b", "share": 7}]},
        {"area_unit": "acres"},
        {"warnings": "not a list"},
    ],
)
def test_malformed_device_summary_is_refused(api, tmp_path, geotiff, use_test_models, change):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    summary = json.loads((out / "summary.json").read_text())
    summary.update(change)
    (out / "summary.json").write_text(json.dumps(summary))
    alice = api.user()
    _, field = api.farm_field(alice)
    results = {n: api.upload(alice, out / n) for n in ("summary.json", "classes.tif")}
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [], "results": results, "client_id": "dev-1"},
        headers=alice["headers"],
    )
    assert r.status_code == 422, r.text
    assert "summary" in r.json()["detail"]
    flights = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()
    assert flights == []


def test_messages_name_what_the_web_and_api_call_an_option():
    """The analysis names its command-line options; a web or API user reads the names the upload
    page and API give them, and the options only the command line has are said to be its."""
    from khet.service.storage import public_message

    assert public_message("Name the bands with --bands.") == (
        'Name the bands with the "band names" field (`bands`).'
    )
    assert public_message("give --bands in file order, e.g. --bands blue,green,red.") == (
        'give the "band names" field (`bands`) in file order, e.g. band names "blue,green,red".'
    )
    assert public_message("The GSD must be 1e-05 to 1000, e.g. --gsd 0.03 for 3 cm.") == (
        "The GSD must be 1e-05 to 1000, e.g. a ground resolution of 3 cm per pixel."
    )
    assert (
        public_message("--gsd is unknown.") == 'The "ground resolution" field (`gsd`) is unknown.'
    )
    assert public_message("Give the panel capture with --panel.") == (
        "Give the panel capture with `khet analyze --panel`."
    )
    assert (
        public_message("a range of 10-20 cm, not -- at all") == "a range of 10-20 cm, not -- at all"
    )
