"""A flight's ground sample distance: stated through the API when the files cannot tell it,
used by the analysis, and shown in the report and on the map page."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import run_queued_jobs


def _photo(path, seed=0):
    """A plain photo of plants on soil: no georeference, no flying height in its metadata."""
    rng = np.random.default_rng(seed)
    img = np.full((240, 320, 3), (150, 115, 85), np.uint8)
    for y, x in rng.integers(0, 240, (40, 2)):
        img[max(0, y - 4) : y + 4, max(0, x - 4) : x + 4] = (50, 160, 55)
    Image.fromarray(img).save(path)
    return path


def test_stated_gsd_is_used_and_shown(api, tmp_path, use_test_models):
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, _photo(tmp_path / "plants.png"))
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [up], "gsd": 0.02},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["gsd"] == 0.02
    run_queued_jobs()
    flight = api.client.get(f"/api/v1/flights/{r.json()['id']}", headers=alice["headers"]).json()
    s = flight["summary"]
    # Said in the words of the API and upload page, not the command line's --gsd.
    stated = 'stated with the "ground resolution" field (`gsd`)'
    assert s["gsd"] == {"metres": 0.02, "source": "user", "detail": stated}
    assert s["area_unit"] == "ha"  # approximate hectares from the stated GSD
    c = api.client  # the pages use the session cookie, as a browser does
    assert (
        c.post(
            "/api/v1/session", json={"email": alice["email"], "password": alice["password"]}
        ).status_code
        == 200
    )
    page = c.get(f"/flights/{flight['id']}/report").text
    assert "Each pixel covers 2.0 cm of ground (as given)." in page
    urdu = c.get(f"/flights/{flight['id']}/report?lang=ur").text
    assert "ہر پکسل زمین کا 2.0 cm حصہ دکھاتا ہے" in urdu
    assert "2.0 cm" in c.get(f"/flights/{flight['id']}").text


@pytest.mark.parametrize("gsd", [0, -1, 1e-7, 5000, "abc"])
def test_bad_gsd_is_refused(api, tmp_path, gsd):
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, _photo(tmp_path / "p.png"))
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [up], "gsd": gsd},
        headers=alice["headers"],
    )
    assert r.status_code == 422


def test_a_gsd_that_is_not_a_number_is_said_so(api, tmp_path):
    """NaN (which Python's JSON reader takes) was refused as 'less than 1000'."""
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, _photo(tmp_path / "p.png"))
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        content='{"uploads": ["' + up + '"], "gsd": NaN}',
        headers={**alice["headers"], "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "finite number" in r.json()["detail"], r.text


def test_a_gsd_against_the_coordinates_is_refused_before_anything_is_stored(api, geotiff):
    """The upload is georeferenced at 5 cm: 999 m per pixel is refused at once (422, in the
    API's words), with no flight made; the same value from the command line is exit code 2."""
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [up], "gsd": 999},
        headers=alice["headers"],
    )
    assert r.status_code == 422, r.text
    said = r.json()["detail"]
    assert "georeferenced at 5.0 cm per pixel" in said and "999" in said, said
    assert "--gsd" not in said and '"ground resolution" field' in said, said
    flights = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"])
    assert flights.json() == []
