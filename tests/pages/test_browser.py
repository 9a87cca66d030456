"""The web app in headless Chromium against a real `khet serve`: log in, upload a georeferenced
image through a dropped connection, wait for the analysis, see map tiles load, inspect a point,
open the report, download the PDF, switch to Urdu; an extension worker's flags and thresholds;
comparing two flights; a phone-sized screen. Screenshots go to $KHET_SCREENSHOTS."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.pages.conftest import PASSWORD, ROOT, offsite_guard

pytestmark = pytest.mark.slow


def _login(page, server, email: str) -> None:
    page.goto(server.url + "/")
    assert "/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/")


def _unlabelled(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')).filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)""")


def _wait_tiles(page, tile_status: list[tuple[str, int]], layer: str) -> int:
    page.wait_for_function(
        f"""() => {{
          const t = Array.from(document.querySelectorAll('img.leaflet-tile'))
            .filter(i => i.src.includes('/tiles/{layer}/'));
          return t.length > 0 && t.every(i => i.complete) &&
                 t.filter(i => i.naturalWidth > 0).length > 0;
        }}""",
        timeout=30000,
    )
    loaded = page.evaluate(f"""() => Array.from(document.querySelectorAll('img.leaflet-tile'))
        .filter(i => i.src.includes('/tiles/{layer}/') && i.naturalWidth === 256).length""")
    seen = [s for u, s in tile_status if f"/tiles/{layer}/" in u]
    assert seen and all(s == 200 for s in seen), seen
    return loaded


def test_farmer_upload_map_report_pdf(server, browser, shots, tmp_path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = ctx.new_page()
    offsite: list[str] = []
    offsite_guard(page, server.url, offsite)
    tile_status: list[tuple[str, int]] = []
    page.on("response", lambda r: "/tiles/" in r.url and tile_status.append((r.url, r.status)))

    # Login page: language attribute, skip link first in the tab order, labelled inputs.
    page.goto(server.url + "/")
    assert page.get_attribute("html", "lang") == "en"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    assert _unlabelled(page) == []
    page.screenshot(path=shots / "01-login.png")
    page.get_by_label("Email").fill("farmer@example.org")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email or password."
    _login(page, server, "farmer@example.org")
    assert page.get_by_role("heading", name="Your fields").is_visible()
    assert page.locator(".field-card").count() == 2
    page.screenshot(path=shots / "02-dashboard-empty.png", full_page=True)

    # Upload: the second chunk's connection is cut once; the page asks for the offset and goes on.
    cut = []

    def drop_one(route):
        req = route.request
        if (
            req.method == "PUT"
            and not cut
            and not (req.headers.get("content-range") or "").startswith("bytes 0-")
        ):
            cut.append(req.headers.get("content-range"))
            route.abort("connectionreset")
        else:
            route.fallback()

    page.route("**/api/v1/uploads/*", drop_one)
    page.goto(f"{server.url}/fields/{server.field_id}/upload")
    assert _unlabelled(page) == []
    page.get_by_label("Image files").set_input_files(str(server.image))
    page.get_by_label("Flight date").fill("2026-03-02")
    crop = page.get_by_label("Crop growing in this field")
    assert crop.input_value() == "wheat"  # the field's crop, saved with it when changed
    crop.fill("Durum wheat")
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_selector("#upload-status.alert-info", timeout=20000)  # "Connection lost..."
    page.screenshot(path=shots / "03-upload-retrying.png", full_page=True)
    page.wait_for_url(re.compile(r".*/flights/\d+$"), timeout=90000)
    assert cut, "no chunk was cut: the file is smaller than two chunks"
    flight_id = int(page.url.rsplit("/", 1)[1])
    with server.client("farmer@example.org") as c:
        assert c.get(f"/api/v1/fields/{server.field_id}").json()["crop"] == "Durum wheat"
        said = c.get(f"/api/v1/flights/{flight_id}/results/summary.json").json()
        assert said["crop"] == "Durum wheat"  # the analysis was given the crop just saved

    # The map: class tiles load (200, real PNGs), legend, click-to-inspect.
    loaded = _wait_tiles(page, tile_status, "classes")
    assert loaded > 0
    _wait_tiles(page, tile_status, "imagery")
    assert page.locator("#legend").inner_text().count("\n") >= 2
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#inspect dl", timeout=10000)
    inspect = page.locator("#inspect").inner_text()
    assert "Class" in inspect and "Confidence" in inspect and "VARI" in inspect
    page.screenshot(path=shots / "04-map-classes.png")
    page.get_by_label("Crop vigour").check()
    page.locator("#opacity").fill("90")
    _wait_tiles(page, tile_status, "vigour")
    assert "Low" in page.locator("#legend").inner_text()
    page.get_by_label("VARI").check()
    _wait_tiles(page, tile_status, "vari")
    page.screenshot(path=shots / "05-map-vari.png")
    assert _unlabelled(page) == []

    # The report, then its PDF.
    page.get_by_role("link", name="Report", exact=True).click()
    page.wait_for_url(f"{server.url}/flights/{flight_id}/report")
    assert page.locator("h1").inner_text() == "Field report: North field"
    advice = page.locator(".r-next").inner_text()
    assert "weed patch in the north-east of the field" in advice, advice
    assert page.locator("svg.chart").count() >= 2
    assert "2026-03-02" in page.locator(".r-facts").inner_text()
    page.screenshot(path=shots / "06-report.png", full_page=True)
    with page.expect_download() as dl:
        page.locator("#pdf-link").click()
    pdf = tmp_path / "report.pdf"
    dl.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        assert "North field" in text and "weed patch" in text and "indicative" in text
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
        assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) >= 2
        subprocess.run(
            [
                "pdftoppm",
                "-r",
                "50",
                "-png",
                "-f",
                "1",
                "-l",
                "2",
                str(pdf),
                str(shots / "07-report-pdf"),
            ],
            check=False,
        )

    # Urdu: right to left, Urdu language attribute, translated headings; the PDF follows.
    page.get_by_role("link", name="اردو").click()
    page.wait_for_function("document.documentElement.dir === 'rtl'")
    assert page.get_attribute("html", "lang") == "ur"
    assert "کھیت کی رپورٹ" in page.locator("h1").inner_text()
    font = page.evaluate("getComputedStyle(document.querySelector('.report')).fontFamily")
    assert "Nastaliq" in font
    page.screenshot(path=shots / "08-report-urdu.png", full_page=True)
    with page.expect_download() as dl:
        page.locator("#pdf-link").click()
    dl.value.save_as(tmp_path / "report-ur.pdf")
    assert (tmp_path / "report-ur.pdf").read_bytes().startswith(b"%PDF")
    page.goto(server.url + "/")
    assert page.get_attribute("html", "dir") == "rtl"  # the choice is remembered
    page.screenshot(path=shots / "09-dashboard-urdu.png", full_page=True)
    page.goto(server.url + "/?lang=en")

    assert offsite == [], offsite
    ctx.close()


def test_worker_flags_thresholds_and_compare(server, browser, shots):
    # Two flights of the field (the second with weeds in another corner), sent as a script would;
    # the first may already exist from the upload test.
    from tests.pages.rasters import make_field

    _done_flight(server)
    _api_flight(
        server,
        make_field(
            server.data.parent / "second.tif", size=512, res=0.2, seed=3, weeds="south-west"
        ),
        "2026-03-20T10:00:00",
    )
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    offsite: list[str] = []
    offsite_guard(page, server.url, offsite)
    tile_status: list[tuple[str, int]] = []
    page.on("response", lambda r: "/tiles/" in r.url and tile_status.append((r.url, r.status)))
    _login(page, server, "worker@example.org")
    assert page.get_by_role("heading", name="Farms assigned to you").is_visible()
    card = page.locator(".field-card", has_text="North field")
    assert "Needs a visit" in card.inner_text()
    page.screenshot(path=shots / "10-worker-dashboard.png", full_page=True)

    # Raise the thresholds: the flag goes; they are stored for this worker.
    page.get_by_label("Weed share above (%)").fill("60")
    page.get_by_label("Weak-crop share above (% of crop)").fill("80")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved.")
    card = page.locator(".field-card", has_text="North field")
    assert "Needs a visit" not in card.inner_text()
    page.reload()
    assert page.get_by_label("Weed share above (%)").input_value() == "60"

    # Compare the two flights: two maps of class tiles and the change in hectares per class.
    page.goto(f"{server.url}/fields/{server.field_id}")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_selector("#delta-table")
    rows = page.locator("#delta-table tbody tr").all_inner_texts()
    assert len(rows) == 3 and all("ha" in r for r in rows), rows
    page.wait_for_function(
        """() => ['#map-0', '#map-1'].every(m => {
        const t = Array.from(document.querySelectorAll(m + ' img.leaflet-tile'));
        return t.length > 0 && t.every(i => i.complete && i.naturalWidth > 0);
    })""",
        timeout=30000,
    )
    page.wait_for_timeout(300)  # Leaflet's fade-in
    assert tile_status and all(s == 200 for _, s in tile_status), tile_status
    page.screenshot(path=shots / "11-compare.png", full_page=True)

    # Another farmer's field is "not found", as in the API.
    page.goto(f"{server.url}/fields/{server.field_id + 100}")
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert offsite == [], offsite
    ctx.close()


def test_flight_without_georeference(server, browser, shots):
    """MicaSense band files have GPS in EXIF but no map coordinates: the page says so in plain
    words and shows the analysed image instead of a map; the report gives shares, not ha."""
    bands = sorted((ROOT / "tests" / "fixtures" / "micasense_crop").glob("IMG_0001_*.tif"))
    fid = _api_flight(server, bands, "2026-03-05T10:00:00", field_id=server.field_id + 1)
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    _login(page, server, "farmer@example.org")
    page.goto(f"{server.url}/flights/{fid}")
    text = page.locator("#no-georef").inner_text()
    assert "no map projection" in text and "GPS" in text  # not "no GPS": it has GPS
    page.wait_for_function("document.querySelector('img.preview').naturalWidth > 0")
    assert page.locator("#map").count() == 0
    page.screenshot(path=shots / "15-no-georeference.png", full_page=True)
    page.goto(f"{server.url}/flights/{fid}/report")
    assert "shares of the image, not hectares" in page.locator("main").inner_text()
    page.screenshot(path=shots / "16-report-no-georeference.png", full_page=True)
    ctx.close()


def test_phone_screen(server, browser, shots):
    """Dashboard, upload page and a field's map fit a phone's width. Runs on its own too: the
    field gets a finished flight first when the tests before it have not made one."""
    _done_flight(server)
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = ctx.new_page()
    _login(page, server, "farmer@example.org")
    for name, path in (
        ("12-phone-dashboard", "/"),
        ("13-phone-upload", f"/fields/{server.field_id}/upload"),
        # The field's table and the account's sessions table scrolled the page sideways (at
        # 360 px: 417 and 377 px wide); each scrolls in its own box now.
        ("15-phone-field", f"/fields/{server.field_id}"),
        ("16-phone-account", "/account"),
        ("17-phone-account-urdu", "/account?lang=ur"),
    ):
        page.goto(server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px on a phone"
        page.screenshot(path=shots / f"{name}.png", full_page=True)
        # The way to the account page, the user's name, stays in the header on a phone.
        assert page.locator("a.who").is_visible()
    page.goto(server.url + "/?lang=en")
    page.locator(f".field-card[data-field='{server.field_id}'] a", has_text="Map").click()
    page.wait_for_selector("img.leaflet-tile-loaded", timeout=30000)
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.screenshot(path=shots / "14-phone-map.png", full_page=True)
    ctx.close()


def _done_flight(server) -> None:
    """The field has a finished, georeferenced flight (the upload test's, or one sent here)."""
    with server.client("farmer@example.org") as c:
        flights = c.get(f"/api/v1/fields/{server.field_id}/flights").json()
    if not any(f["status"] == "done" for f in flights):
        _api_flight(server, server.image, "2026-03-02T10:00:00")


def _api_flight(server, images, captured_at: str, field_id: int | None = None) -> int:
    """Upload with the chunk protocol as a script would, then wait for the analysis."""
    import hashlib
    import time

    ids = []
    with server.client("farmer@example.org") as c:
        for image in images if isinstance(images, list) else [images]:
            data = image.read_bytes()
            up = c.post(
                "/api/v1/uploads",
                json={
                    "filename": image.name,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
            ).json()
            r = c.put(
                f"/api/v1/uploads/{up['id']}",
                content=data,
                headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
            )
            assert r.status_code == 200, r.text
            ids.append(up["id"])
        r = c.post(
            f"/api/v1/fields/{field_id or server.field_id}/flights",
            json={"uploads": ids, "captured_at": captured_at},
        )
        assert r.status_code == 201, r.text
        fid = r.json()["id"]
        end = time.monotonic() + 60
        while time.monotonic() < end:
            f = c.get(f"/api/v1/flights/{fid}").json()
            if f["status"] in ("done", "failed"):
                assert f["status"] == "done", f["error"]
                return fid
            time.sleep(0.3)
    pytest.fail("the second flight's analysis did not finish")


def test_photo_without_flying_height_gets_its_ground_resolution(server, browser, tmp_path):
    """A photo that records no flying height: the map says its ground resolution is unknown in
    the words the upload page uses (not the command line's `--gsd`), and a farmer who gives it
    there in centimetres gets a map in square metres."""
    import time

    import cv2
    import numpy as np

    from tests.vision.rasters import field_rgb

    photo = tmp_path / "phone-photo.png"
    cv2.imwrite(str(photo), np.moveaxis(field_rgb(192, 256, seed=9), 0, -1)[..., ::-1])
    other_field = server.field_id + 1
    fid = _api_flight(server, photo, "2026-03-06T10:00:00", field_id=other_field)
    with server.client("farmer@example.org") as c:
        summary = c.get(f"/api/v1/flights/{fid}").json()["summary"]
    said = " ".join(summary["warnings"])
    assert summary["gsd"]["source"] == "unknown" and "--gsd" not in said, said
    assert 'the "ground resolution" field' in said, said

    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    _login(page, server, "farmer@example.org")
    page.goto(f"{server.url}/fields/{other_field}/upload")
    assert _unlabelled(page) == []
    page.get_by_role("button", name="Upload and analyse").click()  # no file chosen: said so
    page.wait_for_selector("#upload-status.alert-error", state="visible", timeout=5000)
    page.get_by_label("Image files").set_input_files(str(photo))
    page.get_by_label("Ground resolution").fill("-3")  # refused before anything is sent
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_selector("text=centimetres of ground per pixel", timeout=5000)
    assert page.url.endswith("/upload")
    page.get_by_label("Ground resolution").fill("2")
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_url(re.compile(r".*/flights/\d+$"), timeout=90000)
    web_fid = int(page.url.rsplit("/", 1)[1])
    ctx.close()
    assert web_fid != fid
    with server.client("farmer@example.org") as c:
        end = time.monotonic() + 60
        while (flight := c.get(f"/api/v1/flights/{web_fid}").json())["status"] != "done":
            assert flight["status"] != "failed" and time.monotonic() < end, flight
            time.sleep(0.3)
    assert flight["gsd"] == pytest.approx(0.02)
    s = flight["summary"]
    assert s["gsd"]["source"] == "user" and s["gsd"]["metres"] == pytest.approx(0.02)
    assert s["area_unit"] == "ha" and s["area_total_ha"] == pytest.approx(
        192 * 256 * 4e-8, rel=0.05
    )

    # The same photo again: at the same ground resolution it is that flight (a second click,
    # a lost answer); at another it is a new flight, not the first one passed off as it.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    _login(page, server, "farmer@example.org")
    again = []
    for cm in ("2", "3"):
        page.goto(f"{server.url}/fields/{other_field}/upload")
        page.get_by_label("Image files").set_input_files(str(photo))
        page.get_by_label("Ground resolution").fill(cm)
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_url(re.compile(r".*/flights/\d+$"), timeout=90000)
        again.append(int(page.url.rsplit("/", 1)[1]))
    ctx.close()
    assert again[0] == web_fid and again[1] not in (web_fid, fid), again
    with server.client("farmer@example.org") as c:
        assert c.get(f"/api/v1/flights/{again[1]}").json()["gsd"] == pytest.approx(0.03)
