"""Pages and report without a browser (TestClient): access, languages, no external URLs, the
report's advice and charts, the PDF, contrast of the palette, the messages tables."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from khet.service.i18n import EN, MESSAGES, Translator
from khet.service.report import advice, direction, histogram_chart, share_chart, zone_facts

from tests.pages.conftest import app_client
from tests.pages.rasters import boundary_lonlat, make_field

STATIC = Path(__file__).resolve().parents[2] / "service" / "static" / "khet"
PASSWORD = "field-secret-1"


@pytest.fixture
def app(monkeypatch, use_test_models):
    with app_client(monkeypatch) as client:
        yield client


def _user(role: str, email: str) -> None:
    from khet.service.db import session_scope
    from khet.service.routers.auth import add_user

    with session_scope() as db:
        add_user(db, email, PASSWORD, role)


def _login(client, email: str) -> None:
    r = client.post("/login", data={"email": email, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text


@pytest.fixture
def flight(app, tmp_path):
    """A farmer with one analysed, georeferenced flight (run in-process)."""
    from tests.service.conftest import run_queued_jobs

    out = _queued_flight(app, tmp_path)
    run_queued_jobs()
    return out


def _queued_flight(app, tmp_path) -> dict:
    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Chak 42"}).json()
    field = app.post(
        f"/api/v1/farms/{farm['id']}/fields",
        json={"name": "North field", "crop": "wheat", "boundary": boundary_lonlat()},
    ).json()
    fl = _send_flight(app, field["id"], make_field(tmp_path / "f.tif"), "2026-06-12T09:00:00")
    return {"farm": farm["id"], "field": field["id"], "flight": fl}


def _seneca_nir_frame_flight(app, tmp_path, shared_data, bands: str | None = None) -> int:
    """A farmer, signed in, sends one Seneca frame (a near-infrared camera's: near-infrared,
    green, blue) as a flight on a new field, its bands named if given; the flight's id."""
    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Seneca"}).json()
    field = app.post(f"/api/v1/farms/{farm['id']}/fields", json={"name": "Verges"}).json()
    frame = tmp_path / "IMG_0471.jpg"
    shutil.copy(shared_data / "seneca_flight" / "images" / "IMG_0471.jpg", frame)
    return _send_flight(app, field["id"], frame, "2013-06-04T13:40:03", bands=bands)


def _alert(page: str, anchor: str) -> str:
    """The page's alert section with id `anchor`."""
    top = page[page.index(f'id="{anchor}"') :]
    return top[: top.index("</section>")]


def _says_at_the_top(app, flight: int, anchor: str, en: str, ur: str, bands: str) -> str:
    """The flight's page (English) with the alert `anchor` saying `en` above its re-run form
    with `bands` named, and the Urdu page saying `ur`; the flight's page URL."""
    url = f"/flights/{flight}"
    page = app.get(url + "?lang=en").text
    assert f'id="{anchor}"' in page and en in page
    top = _alert(page, anchor)
    assert f'action="{url}/retry"' in top and f'value="{bands}"' in top
    assert ur in app.get(url + "?lang=ur").text
    return url


def _retry_as_nir_green_blue(app, flight: int) -> dict:
    """Run the flight again from its page's re-run form with its bands named nir,green,blue;
    the new summary."""
    from tests.service.conftest import run_queued_jobs

    r = app.post(
        f"/flights/{flight}/retry", data={"bands": "nir,green,blue"}, follow_redirects=False
    )
    assert r.status_code == 303
    run_queued_jobs()
    return app.get(f"/api/v1/flights/{flight}/results/summary.json").json()


def _send_flight(app, field: int, image, captured_at: str, bands: str | None = None) -> int:
    """Upload `image` in one chunk and make a flight of it on `field` (its bands named, if
    given); the flight's id."""
    data = image.read_bytes()
    up = app.post(
        "/api/v1/uploads",
        json={
            "filename": image.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    ).json()
    app.put(
        f"/api/v1/uploads/{up['id']}",
        content=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
    )
    return app.post(
        f"/api/v1/fields/{field}/flights",
        json={
            "uploads": [up["id"]],
            "captured_at": captured_at,
            **({"bands": bands.split(",")} if bands else {}),
        },
    ).json()["id"]


def _potato_tiles_flight(app, tmp_path, shared_data, field: str, swapped: bool = False):
    """Two real uav_potato tiles side by side (3 mm; red and blue swapped if asked) sent as a
    flight of a new field `field` of a farmer's new farm, and analysed: (farm, field, flight)."""
    from khet.datasets import labelme
    from khet.models.segment import _write_geotiff

    from tests.service.conftest import run_queued_jobs

    items = {i.stem: i for i in labelme.find_images(shared_data / "uav_potato")}
    pair = np.hstack(
        [
            labelme.load(items[n], {"potato": "crop", "weed": "weed"})[0]
            for n in ("tile_10_5", "tile_13_5")
        ]
    )
    image = tmp_path / "field.tif"
    _write_geotiff(image, pair[:, :, ::-1].copy() if swapped else pair, 0.003)
    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Okara"}).json()
    made = app.post(f"/api/v1/farms/{farm['id']}/fields", json={"name": field}).json()
    fl = _send_flight(app, made["id"], image, "2026-02-01T10:00:00")
    run_queued_jobs()
    return farm, made, fl


def test_a_flight_being_analysed_shows_its_progress(app, tmp_path):
    fl = _queued_flight(app, tmp_path)
    r = app.get(f"/flights/{fl['flight']}")
    assert r.status_code == 200
    assert 'id="job-bar"' in r.text and "Waiting in the queue" in r.text
    r = app.get(f"/flights/{fl['flight']}/report", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/flights/{fl['flight']}"
    assert "Waiting in the queue" in app.get("/").text


def test_logged_out_pages_go_to_login(app):
    for path in (
        "/",
        "/fields/1",
        "/flights/1",
        "/flights/1/report",
        "/flights/1/report.pdf",
        "/fields/1/compare",
        "/fields/1/upload",
    ):
        r = app.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    r = app.get("/login")
    assert r.status_code == 200 and '<html lang="en" dir="ltr">' in r.text
    r = app.get("/login?lang=ur")
    assert '<html lang="ur" dir="rtl">' in r.text and "لاگ ان" in r.text


def test_login_refuses_bad_password_and_foreign_redirects(app):
    _user("farmer", "a@example.org")
    r = app.post("/login", data={"email": "a@example.org", "password": "nope-nope"})
    assert r.status_code == 401 and "Wrong email or password." in r.text
    r = app.post(
        "/login",
        data={"email": "a@example.org", "password": PASSWORD, "next": "//evil.example/steal"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_pages_reference_nothing_outside_the_server(app, flight):
    paths = [
        "/",
        f"/fields/{flight['field']}",
        f"/fields/{flight['field']}/upload",
        f"/flights/{flight['flight']}",
        f"/flights/{flight['flight']}/report",
        f"/flights/{flight['flight']}/report?lang=ur",
        f"/fields/{flight['field']}/compare",
    ]
    for path in paths:
        r = app.get(path)
        assert r.status_code == 200, path
        # SVG's xmlns is a name, not a request.
        text = r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), (path, re.findall(r"https?://[^\s\"']+", text))
    for f in STATIC.iterdir():
        text = f.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://", text), f
    assert app.get("/static/leaflet/leaflet.js").status_code == 200
    assert app.get("/static/leaflet/leaflet.css").status_code == 200


def test_another_farmers_flight_is_not_found(app, flight):
    _user("farmer", "other@example.org")
    _login(app, "other@example.org")
    for path in (
        f"/flights/{flight['flight']}",
        f"/flights/{flight['flight']}/report",
        f"/flights/{flight['flight']}/report.pdf",
        f"/fields/{flight['field']}",
    ):
        r = app.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    r = app.post(f"/flights/{flight['flight']}/retry", data={"gsd": "0.03"})
    assert r.status_code == 404 and "Not found" in r.text


def test_report_says_where_the_weeds_are_and_renders_a_pdf(app, flight):
    r = app.get(f"/flights/{flight['flight']}/report")
    assert r.status_code == 200
    assert "weed patch in the north-east of the field" in r.text
    assert "2026-06-12" in r.text and "test-rgb" in r.text and "indicative" in r.text
    assert r.text.count("<svg") >= 2
    r = app.get(f"/flights/{flight['flight']}/report.pdf?lang=en")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert r.headers["content-type"] == "application/pdf"
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-", "-"], input=r.content, capture_output=True, check=True
        ).stdout.decode()
        assert "North field" in text and "Chak 42" in text and "2026-06-12" in text
        assert "Hectares" in text and "What to do next" in text
    r = app.get(f"/flights/{flight['flight']}/report.pdf?lang=ur")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")


def test_report_gives_the_vigour_rule_with_its_limits_in_the_readers_language(app, flight):
    """The vigour rule is written with this flight's limits, in English and in Urdu (it was the
    analysis's English paragraph in both)."""
    import html as html_

    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        th = db.get(Flight, flight["flight"]).summary["vigour"]["thresholds"]
    limits = [f"{th[k]:.3f}" for k in ("low_below", "high_above", "median")]
    en = html_.unescape(app.get(f"/flights/{flight['flight']}/report?lang=en").text)
    assert "a crop cell is low when its mean" in en and all(v in en for v in limits), limits
    ur = html_.unescape(app.get(f"/flights/{flight['flight']}/report?lang=ur").text)
    rule = re.search(r'<p class="r-note"[^>]*>(فصل کی طاقت ایک اصول ہے[^<]*)</p>', ur)
    assert rule and all(v in rule[1] for v in limits), limits
    assert 'lang="en" dir="ltr">فصل' not in ur  # not marked as English any more


def test_thresholds_are_stored_per_user(app, flight):
    r = app.get("/")
    assert "Needs a visit" in r.text  # weak crop above the default 25 %
    r = app.post("/settings/visit", data={"weed": "50", "low": "90"}, follow_redirects=False)
    assert r.status_code == 303
    r = app.get("/")
    assert 'value="50"' in r.text and 'value="90"' in r.text
    assert "⚑" not in r.text
    r = app.post("/settings/visit", data={"weed": "abc", "low": "-3"})
    assert 'value="50"' in app.get("/").text  # nonsense is ignored, not stored


def test_flight_without_georeference_shows_the_preview(app, flight, tmp_path):
    """A flight without georeference says so and shows preview.png, never a broken map."""
    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        fl = db.get(Flight, flight["flight"])
        fl.summary = {**fl.summary, "area_unit": "px", "area_total_px": 1000}
    r = app.get(f"/flights/{flight['flight']}")
    assert "no map projection" in r.text and "preview.png" in r.text
    assert "leaflet.js" not in r.text


def test_a_photo_with_a_stated_gsd_shows_its_preview_not_an_empty_map(app, flight):
    """Hectares (approximate, from a stated GSD) are no place on Earth: the page laid such a
    map on the web map, empty, with a script error."""
    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        fl = db.get(Flight, flight["flight"])
        fl.summary = {**fl.summary, "input": {**fl.summary["input"], "crs": None}}
    r = app.get(f"/flights/{flight['flight']}")
    assert "no map projection" in r.text and "preview.png" in r.text
    assert "leaflet.js" not in r.text


# --- report logic --------------------------------------------------------------------------------


def test_direction_words():
    assert direction(10, 10, 20) == "ne"
    assert direction(-10, -10, 20) == "sw"
    assert direction(0, 15, 20) == "n"
    assert direction(1, 1, 20) == "c"


def _square(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def test_advice_for_a_pixel_map_uses_image_words():
    zones = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": _square(0, 0, 100, 100),
                "properties": {"class": "crop", "vigour": "medium", "area_px": 8000},
            },
            {
                "type": "Feature",
                "geometry": _square(0, 80, 20, 100),
                "properties": {"class": "weed", "area_px": 400},
            },
            {
                "type": "Feature",
                "geometry": _square(90, 0, 100, 10),
                "properties": {"class": "weed", "area_px": 100},
            },
        ],
    }
    summary = {
        "area_unit": "px",
        "area_total_px": 10000,
        "classes": [
            {"name": "crop", "share": 0.8, "area_px": 8000},
            {"name": "weed", "share": 0.05, "area_px": 500},
        ],
    }
    assert zone_facts(summary, zones, "px").largest("weed").area == 400
    out = advice(summary, zones, None, Translator("en"))
    assert "bottom left of the image" in out[0]  # rows grow downwards in image space
    assert out[-1].startswith("The map is indicative")
    ur = advice(summary, zones, None, Translator("ur"))
    assert "نیچے بائیں" in ur[0]
    # A map made since the summary says what the advice needs of its zones: the same advice
    # without reading the zones file.
    summary["zones"] = {
        "features": 3,
        "largest": [
            {"name": "crop", "vigour": "medium", "area": 8000, "x": 50, "y": 50},
            {"name": "weed", "area": 400, "x": 10, "y": 90},
        ],
        "bounds": [0, 0, 100, 100],
    }
    assert advice(summary, None, None, Translator("en")) == out


def test_the_summary_says_what_the_zones_file_says_of_its_largest_zones(tmp_path, use_test_models):
    """The analysis writes the largest zone of each class and vigour level (area, centroid) and
    the zones' bounds into the summary, so a page need not read every polygon of a big field's
    zones file for its advice: they agree with what the file itself gives."""
    from khet.vision.pipeline import analyze

    from tests.vision.rasters import field_rgb, write_geotiff

    for crs in ("EPSG:32643", None):
        out = tmp_path / str(crs)
        tif = write_geotiff(tmp_path / f"{crs}.tif", field_rgb(), res=0.003, crs=crs)
        s = analyze(tif, out)
        unit = s["area_unit"]
        zones = json.loads((out / "zones.geojson").read_text())
        assert s["zones"]["features"] == len(zones["features"]) > 3
        given, read = zone_facts(s, None, unit), zone_facts({}, zones, unit)
        assert given.bounds == pytest.approx(read.bounds, abs=1e-6)
        for cls, vigour in {(c, v) for c, v, _ in read.patches}:
            a, b = given.largest(cls, vigour), read.largest(cls, vigour)
            assert a is not None and b is not None, (cls, vigour)
            assert (a.area, a.x, a.y) == pytest.approx((b.area, b.x, b.y), abs=1e-6)


def test_advice_when_nothing_stands_out():
    summary = {
        "area_unit": "ha",
        "area_total_ha": 1.0,
        "classes": [{"name": "crop", "share": 1.0, "area_ha": 1.0}],
    }
    out = advice(summary, {"features": []}, None, Translator("en"))
    assert "Fly again" in out[0]


def test_charts_are_plain_svg():
    svg = share_chart([{"label": "Weeds", "color": "#e0452b", "share": 0.25}], "shares")
    assert svg.startswith("<svg") and "25%" in svg and "#e0452b" in svg
    hist = histogram_chart(
        {
            "histogram": {"edges": [0, 0.5, 1], "counts": [3, 5]},
            "median": 0.6,
            "p10": 0.1,
            "p90": 0.9,
        },
        "VARI",
    )
    assert hist.count("<rect") == 2
    assert histogram_chart({"histogram": {"edges": [0, 1], "counts": [0]}}, "x") is None


# --- words and colours ---------------------------------------------------------------------


def test_every_language_has_every_message():
    for lang, table in MESSAGES.items():
        missing = set(EN) - set(table)
        assert not missing, (lang, sorted(missing))
        for key, text in table.items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", EN[key])), key


def _luminance(hex_color: str) -> float:
    rgb = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize(
    ("fg", "bg", "what"),
    [
        ("#1c2620", "#f5f4ef", "text on the page"),
        ("#55615a", "#ffffff", "muted text on cards"),
        ("#55615a", "#f5f4ef", "muted text on the page"),
        ("#ffffff", "#1f6f3a", "header and primary buttons"),
        ("#1f6f3a", "#ffffff", "links"),
        ("#ffffff", "#b8321c", "needs-a-visit flag"),
        ("#14512a", "#e6f2e8", "done badge"),
        ("#7a5200", "#fff4d6", "running badge"),
        ("#9b1c0c", "#fde3df", "failed badge"),
        ("#8a1a0b", "#fde3df", "error alert"),
        ("#5c3d00", "#fff4d6", "info alert"),
    ],
)
def test_contrast_meets_wcag_aa(fg, bg, what):
    css = (STATIC / "app.css").read_text()
    assert fg in css and bg in css, what
    assert _contrast(fg, bg) >= 4.5, (what, round(_contrast(fg, bg), 2))


def test_location_words():
    from khet.service.report import latlon

    t = Translator("en")
    assert (
        latlon({"lat": 30.9, "lon": 73.7, "based_on": "georeferenced image"}, t)
        == "30.90000° N, 73.70000° E"
    )
    gps = latlon({"lat": 36.5, "lon": -119.4, "based_on": "camera GPS (EXIF)"}, t)
    assert gps.startswith("36.50000° N, 119.40000° W") and "approximate" in gps
    assert latlon(None, t) is None


def _capture_flight(app, field: int, folder: Path, day: str) -> int:
    files = [
        ("files", (f.name, f.read_bytes(), "image/tiff")) for f in sorted(folder.glob("*.tif"))
    ]
    r = app.post(f"/api/v1/fields/{field}/flights/upload", files=files, data={"captured_at": day})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_compare_and_report_say_when_a_flight_is_uncalibrated(app, tmp_path):
    """Two multispectral captures of a field: the demo capture (reflectance from its light
    sensor) and the same capture without its exposure times (raw numbers: uncalibrated)."""
    from tests.service.conftest import run_queued_jobs
    from tests.vision.tiffcopy import copy_band_file

    fixture = Path("tests/fixtures/micasense_crop")
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in sorted(fixture.glob("*.tif")):
        copy_band_file(f, raw / f.name, drop_exif=(33434,))
    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Chak 42"}).json()
    field = app.post(f"/api/v1/farms/{farm['id']}/fields", json={"name": "Vines"}).json()["id"]
    a = _capture_flight(app, field, raw, "2026-06-01T09:00:00")
    b = _capture_flight(app, field, fixture, "2026-06-12T09:00:00")
    run_queued_jobs()
    page = app.get(f"/fields/{field}/compare?a={a}&b={b}").text
    alert = re.search(r'id="compare-uncalibrated">([^<]*)<', page)
    assert alert and f"#{a}" in alert.group(1) and f"#{b}" not in alert.group(1)
    assert "raw sensor numbers" in alert.group(1)
    uncal = app.get(f"/flights/{a}/report").text
    assert re.search(r'id="radiometry-note">UNCALIBRATED', uncal)
    cal = app.get(f"/flights/{b}/report").text
    assert "calibrated with the light sensor" in cal and "UNCALIBRATED" not in cal
    assert "غیر کیلیبریٹ" in app.get(f"/flights/{a}/report?lang=ur").text
    both = app.get(f"/fields/{field}/compare?a={b}&b={b}").text
    assert 'id="compare-uncalibrated"' not in both


def test_summaries_from_before_calibration_count_captures_as_uncalibrated():
    from khet.service.report import radiometry_status

    assert radiometry_status({"input": {"kind": "capture"}}) == "uncalibrated"
    assert radiometry_status({"input": {"kind": "raster"}}) is None
    assert radiometry_status({"radiometry": {"calibrated": True}}) == "reflectance"
    assert radiometry_status({"radiometry": {"calibrated": None}}) is None
    assert radiometry_status(None) is None


def test_a_failed_upload_does_not_hide_the_fields_maps(app, flight, tmp_path):
    """The dashboard card showed only 'Analysis failed' after one bad upload, with no map or
    report link although the field had maps; it now gives both, and the latest map's date."""
    from khet.service.db import Flight, session_scope

    second = _send_flight(
        app, flight["field"], make_field(tmp_path / "g.tif"), "2026-06-20T09:00:00"
    )
    with session_scope() as db:
        job = db.get(Flight, second).job
        job.status, job.error = "failed", "The file is damaged."
    page = app.get("/?lang=en").text
    card = page[page.index(f'data-field="{flight["field"]}"') :]
    card = card[: card.index("</li>")]
    assert "Analysis failed" in card or "failed" in card.lower()
    assert f'href="/flights/{flight["flight"]}"' in card
    assert f'href="/flights/{flight["flight"]}/report"' in card and "Latest map" in card


def test_a_failed_flight_is_tried_again_from_its_page(app, flight):
    """The API could retry a failed flight with corrected bands or GSD; its page offered only
    the error. Now a form does what the API does, with its checks."""
    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        job = db.get(Flight, flight["flight"]).job
        job.status, job.error = "failed", "Name the bands with --bands."
    url = f"/flights/{flight['flight']}"
    page = app.get(url + "?lang=en").text
    assert f'action="{url}/retry"' in page and "Try again" in page
    r = app.post(url + "/retry", data={"gsd": "-1"})
    assert r.status_code == 422 and 'id="retry-error"' in r.text and "gsd" in r.text
    r = app.post(url + "/retry", data={"bands": "red,green,blue"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == url
    api = app.get(f"/api/v1/flights/{flight['flight']}").json()
    assert api["status"] == "queued" and api["bands"] == ["red", "green", "blue"]
    assert 'action="' + url + '/retry"' not in app.get(url).text  # queued: no form


def test_odd_addresses_get_the_not_found_page(app, flight):
    """/fields/abc answered the API's JSON error in the browser; a compare naming a flight that
    is not a finished flight of the field showed another flight in its place."""
    for path in (
        "/fields/abc",
        "/flights/1e3",
        "/flights/%D9%A1",  # an Arabic-Indic digit: not an id here
        f"/fields/{flight['field']}/compare?b=abc",
        f"/fields/{flight['field']}/compare?b={flight['flight'] + 1}",
    ):
        r = app.get(path)
        assert r.status_code == 404 and "Not found" in r.text and "<html" in r.text, path
    r = app.get(f"/fields/{flight['field']}/compare?a={flight['flight']}&b={flight['flight']}")
    assert r.status_code == 200


def test_a_near_infrared_cameras_map_says_so_at_the_top_and_is_run_again_from_there(
    app, tmp_path, shared_data
):
    """A frame from a camera recording near-infrared in place of red, analysed as RGB: its page
    says at the top that the map is probably wrong (in the page's language), with a form that
    runs it again with its bands named; run again, the map finds the grass and the alert goes."""
    from tests.service.conftest import run_queued_jobs

    fl = _seneca_nir_frame_flight(app, tmp_path, shared_data)
    run_queued_jobs()
    url = _says_at_the_top(
        app, fl, "near-ir", "This map is probably wrong", "غالباً غلط", "nir,green,blue"
    )
    s = _retry_as_nir_green_blue(app, fl)
    veg = next(c["share"] for c in s["classes"] if c["name"] == "vegetation")
    assert veg > 0.15 and not s["input"].get("looks_near_infrared")
    assert 'id="near-ir"' not in app.get(url).text


def test_bands_named_in_the_wrong_order_say_so_at_the_top_and_are_run_again_from_there(
    app, tmp_path, shared_data
):
    """The same camera's frame sent with its bands named red,green,nir (its near-infrared is
    first): near-infrared reads darker than "red", plants count as soil, and the page says the
    bands are probably in the wrong order, with the names it used in a re-run form."""
    from tests.service.conftest import run_queued_jobs

    fl = _seneca_nir_frame_flight(app, tmp_path, shared_data, bands="red,green,nir")
    run_queued_jobs()
    url = _says_at_the_top(app, fl, "band-order", "wrong order", "غلط ترتیب", "red,green,nir")
    assert 'id="near-ir"' not in app.get(url).text
    s = _retry_as_nir_green_blue(app, fl)
    assert not s["input"].get("looks_misordered")
    assert 'id="band-order"' not in app.get(url).text


def test_the_upload_page_states_the_fields_crop_for_its_owner_to_change(app, flight):
    """The crop decides which method maps crop and weed (a model only on a crop it learned): the
    upload page shows the field's crop, editable by the farm's owner, read-only to an extension
    worker, with why it matters in the reader's language."""
    from khet.service.db import Assignment, session_scope
    from khet.service.routers.auth import add_user

    page = app.get(f"/fields/{flight['field']}/upload?lang=en").text
    box = page[page.index('id="crop"') :].split(">", 1)[0]
    assert 'value="wheat"' in box and "readonly" not in box
    assert "maps crop and weed only on the crop it learned" in page
    assert "فصل کی قطاریں" in app.get(f"/fields/{flight['field']}/upload?lang=ur").text
    with session_scope() as db:
        worker = add_user(db, "worker@example.org", PASSWORD, "extension")
        db.add(Assignment(farm_id=flight["farm"], user_id=worker.id))
    app.cookies.clear()
    _login(app, "worker@example.org")
    page = app.get(f"/fields/{flight['field']}/upload?lang=en").text
    box = page[page.index('id="crop"') :].split(">", 1)[0]
    assert 'value="wheat"' in box and "readonly" in box
    assert "Only the farm&#39;s owner can change the field&#39;s crop." in page


def test_an_image_with_red_and_blue_swapped_says_so_at_the_top_and_is_run_again_from_there(
    app, tmp_path, shared_data
):
    """Two real drone tiles saved blue, green, red: the flight's page says at the top that the
    map is probably wrong and why (in the page's language), with a re-run form naming the bands
    blue,green,red; run again, the alert goes."""
    from tests.service.conftest import run_queued_jobs

    _, _, fl = _potato_tiles_flight(app, tmp_path, shared_data, "Potatoes", swapped=True)
    url = _says_at_the_top(
        app,
        fl,
        "swapped",
        "red and blue are swapped",
        "سرخ اور نیلے رنگ آپس میں بدل",
        "blue,green,red",
    )
    r = app.post(f"{url}/retry", data={"bands": "blue,green,red"}, follow_redirects=False)
    assert r.status_code == 303
    run_queued_jobs()
    s = app.get(f"/api/v1/flights/{fl}/results/summary.json").json()
    assert not s["input"].get("looks_swapped")
    assert 'id="swapped"' not in app.get(url).text


def test_a_models_map_of_a_field_without_a_crop_says_so_and_sets_it_from_there(
    app, tmp_path, shared_data, monkeypatch
):
    """Real drone tiles of a field whose crop is not set: the drone model makes the map, and
    its crop class is potato, the one crop it learned (on carrots it painted half of them
    weed). The flight's page says so at the top in the page's language, with the field's crop
    to set and the re-run; an extension worker is told who can. Set to potato and maize (an
    intercrop), the map is made again without the model and the alert goes; a second re-run
    while one is queued is refused and the crop stays as it was."""
    from khet.service.db import Assignment, session_scope
    from khet.service.routers.auth import add_user

    from khet.settings import get_settings
    from tests.service.conftest import run_queued_jobs

    monkeypatch.setenv("KHET_MODELS_DIR", str(Path(__file__).parents[2] / "models" / "bundles"))
    get_settings.cache_clear()  # the shipped models: khet-rgb-uav learned potato
    farm, field, fl = _potato_tiles_flight(app, tmp_path, shared_data, "North")
    url = f"/flights/{fl}"
    assert app.get(f"/api/v1/flights/{fl}/results/summary.json").json()["method"] == "model"
    top = _alert(app.get(url + "?lang=en").text, "crop-unstated")
    assert "Crop and weed may be wrong here" in top and "learned potato only" in top
    assert f'action="{url}/crop"' in top and 'name="crop"' in top
    ur = _alert(app.get(url + "?lang=ur").text, "crop-unstated")
    assert "صرف آلو سیکھی ہے" in ur and "فصل محفوظ کریں" in ur
    report = app.get(url + "/report?lang=en").text
    assert "The field&#39;s crop was not set" in report

    with session_scope() as db:
        worker = add_user(db, "worker@example.org", PASSWORD, "extension")
        db.add(Assignment(farm_id=farm["id"], user_id=worker.id))
    reader = app.__class__(app.app)
    _login(reader, "worker@example.org")
    seen = _alert(reader.get(url + "?lang=en").text, "crop-unstated")
    assert "Only the farm&#39;s owner" in seen and "<form" not in seen
    assert reader.post(url + "/crop", data={"crop": "wheat"}).status_code == 403

    r = app.post(url + "/crop", data={"crop": "  "})
    assert r.status_code == 422 and 'id="crop-error"' in r.text
    r = app.post(url + "/crop", data={"crop": "Potato and maize"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == url
    assert app.get(f"/api/v1/fields/{field['id']}").json()["crop"] == "Potato and maize"
    r = app.post(url + "/crop", data={"crop": "wheat"})  # queued: refused, nothing changed
    assert r.status_code == 409
    assert app.get(f"/api/v1/fields/{field['id']}").json()["crop"] == "Potato and maize"
    run_queued_jobs()
    s = app.get(f"/api/v1/flights/{fl}/results/summary.json").json()
    assert s["crop"] == "Potato and maize" and s["method"] != "model"
    assert "learned potato, not maize" in s["layers"]["classes"]["detail"]
    assert 'id="crop-unstated"' not in app.get(url).text
    assert "crop was not set" not in app.get(url + "/report?lang=en").text
