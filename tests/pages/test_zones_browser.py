"""Zones and prescriptions in headless Chromium against a real `khet serve`: make zones from
the flight page, see them on the map with a legend, type rates and watch the total, make the
prescription and download its Shapefile (read back here), make a spot-spray map, see a bad rate
refused, and find it all in the report. Screenshots go to $KHET_SCREENSHOTS."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from tests.pages.conftest import PASSWORD, offsite_guard
from tests.pages.rasters import boundary_lonlat

pytestmark = pytest.mark.slow
EMAIL = "zones@example.org"


@pytest.fixture(scope="module")
def zoned_flight(server) -> int:
    """A flight of its own farmer (the other browser tests count their fields), analysed."""
    server.cli("user", "add", EMAIL, "--role", "farmer", "--password", PASSWORD)
    with server.client(EMAIL) as c:
        farm = c.post("/api/v1/farms", json={"name": "Zones farm"}).json()
        field = c.post(
            f"/api/v1/farms/{farm['id']}/fields",
            json={"name": "Zones field", "boundary": boundary_lonlat(size=1024, res=0.1)},
        ).json()
        with server.image.open("rb") as f:
            r = c.post(
                f"/api/v1/fields/{field['id']}/flights/upload",
                files={"files": ("zones.tif", f, "image/tiff")},
            )
        assert r.status_code == 201, r.text
        fl = r.json()["id"]
        deadline = time.time() + 180
        while time.time() < deadline:
            status = c.get(f"/api/v1/flights/{fl}").json()["status"]
            if status in ("done", "failed"):
                break
            time.sleep(1)
        assert status == "done"
    return fl


def test_zones_form_prescription_and_downloads(server, browser, shots, zoned_flight, tmp_path):
    import pyogrio

    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = ctx.new_page()
    offsite: list[str] = []
    offsite_guard(page, server.url, offsite)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/")

    page.goto(f"{server.url}/flights/{zoned_flight}")
    page.wait_for_selector("img.leaflet-tile")
    page.get_by_label("Number of zones").select_option("3")
    page.get_by_role("button", name="Make zones").click()
    page.wait_for_selector("#zones-legend")
    zones = page.evaluate(f"fetch('/api/v1/flights/{zoned_flight}/zones').then(r => r.json())")
    assert page.locator("#zones-legend > div").count() == len(zones["zones"])
    page.wait_for_selector("path.khet-zone")
    assert page.locator("path.khet-zone").count() >= len(zones["zones"])
    assert page.get_by_role("checkbox", name="Management zones").is_checked()
    page.screenshot(path=shots / "zones-01-map.png", full_page=True)

    # Rates typed per zone: the total follows.
    rates = [150, 120, 90][: len(zones["zones"])]
    for z, rate in zip(zones["zones"], rates, strict=True):
        page.locator(f"#rate-{z['zone']}").fill(str(rate))
    expected = sum(r * z["area_ha"] for r, z in zip(rates, zones["zones"], strict=True))
    assert page.locator("#rate-total").inner_text() == f"{expected:.2f} kg"
    page.get_by_label("Product").fill("Urea N")
    page.get_by_role("button", name="Make the prescription").click()
    page.wait_for_selector("#rate-out a.dl-shapefile")
    with page.expect_download() as dl:
        page.locator("#rate-out a.dl-shapefile").click()
    shp_zip = tmp_path / "rx.zip"
    dl.value.save_as(shp_zip)
    with zipfile.ZipFile(shp_zip) as z:
        z.extractall(tmp_path / "rx")
    _, _, _, cols = pyogrio.raw.read(next(Path(tmp_path / "rx").glob("*.shp")))
    assert list(cols[2]) == rates  # RATE
    with page.expect_download() as dl:
        page.locator("#rate-out a.dl-taskdata").click()
    dl.value.save_as(tmp_path / "td.zip")
    with zipfile.ZipFile(tmp_path / "td.zip") as z:
        assert "Urea N" in z.read("TASKDATA/TASKDATA.XML").decode()
    page.screenshot(path=shots / "zones-02-rates.png", full_page=True)

    # A negative rate is refused with the reason; nothing changes.
    page.locator(f"#rate-{zones['zones'][0]['zone']}").fill("-5")
    assert page.locator("#rate-total").inner_text() == "–"
    page.get_by_role("button", name="Make the prescription").click()
    alert = page.locator("#mgmt-error")
    alert.wait_for(state="visible")
    assert "zero or more" in alert.inner_text()
    page.screenshot(path=shots / "zones-03-bad-rate.png", full_page=True)

    page.get_by_role("button", name="Make the spot-spray map").click()
    page.wait_for_selector("#spot-share")
    spot = page.evaluate(
        f"fetch('/api/v1/flights/{zoned_flight}/prescriptions/spot').then(r => r.json())"
    )
    assert f"{spot['sprayed_share'] * 100:.1f}%" in page.locator("#spot-share").inner_text()
    assert page.locator("#spot-out a.dl-shapefile").count() == 1
    page.screenshot(path=shots / "zones-04-spot.png", full_page=True)

    page.goto(f"{server.url}/flights/{zoned_flight}/report")
    assert page.locator("#zone-table tbody tr").count() == len(zones["zones"])
    assert page.locator("#rate-table tbody tr").count() == len(zones["zones"])
    assert "less Herbicide" in page.locator("#spray-saving").inner_text()
    page.locator("#management").screenshot(path=shots / "zones-05-report.png")
    page.goto(f"{server.url}/flights/{zoned_flight}/report?lang=ur")
    assert page.get_attribute("html", "dir") == "rtl"
    page.locator("#management").screenshot(path=shots / "zones-06-report-ur.png")
    assert offsite == [] and errors == []
    ctx.close()
