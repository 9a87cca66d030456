"""What the pages and the report say, where QA found them wrong: the advice on a map that shows
plants but not crop and weed, areas too small for their unit, and the visit thresholds form."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from khet.service.i18n import Translator
from khet.service.report import advice

from tests.pages.conftest import app_client
from tests.pages.test_pages import _capture_flight, _login, _user

MICASENSE = Path("tests/fixtures/micasense_crop")
NONE_EN = "The map shows no crop or weeds; check that the right field was flown."


@pytest.fixture
def app(monkeypatch):
    """The app with the shipped model bundles (none of which holds for the MicaSense capture)."""
    with app_client(monkeypatch) as client:
        yield client


def _advice(page: str) -> list[str]:
    block = re.search(r'class="advice">(.*?)</[ou]l>', page, re.S)
    assert block, page[-2000:]
    return [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def test_a_vegetation_map_says_it_cannot_tell_crop_from_weed_and_why(app):
    """The MicaSense capture (64% vegetation, mapped by the vegetation index alone) was told to
    check that the right field was flown, on the report and the map page, in both languages."""
    from tests.service.conftest import run_queued_jobs

    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Chak 42"}).json()
    field = app.post(f"/api/v1/farms/{farm['id']}/fields", json={"name": "Vines"}).json()["id"]
    fl = _capture_flight(app, field, MICASENSE, "2026-06-12T09:00:00")
    run_queued_jobs()
    summary = app.get(f"/api/v1/flights/{fl}").json()["summary"]
    assert summary["layers"]["classes"]["method"] == "index"
    veg = next(c for c in summary["classes"] if c["name"] == "vegetation")["share"]
    assert veg > 0.3
    for path in (f"/flights/{fl}/report", f"/flights/{fl}"):
        said = _advice(app.get(path).text)
        assert NONE_EN not in said, (path, said)
        first = said[0]
        assert "cannot tell crop from weeds" in first, (path, said)
        assert f"{veg * 100:.0f}%" in first
        # Why, from the method's detail: without its panel capture this capture's ground
        # sample distance is unknown, so crop and weed cannot be told apart.
        assert "ground sample distance is unknown" in summary["layers"]["classes"]["detail"]
        assert "how much ground a pixel covers is unknown" in first
    ur = _advice(app.get(f"/flights/{fl}/report?lang=ur").text)
    assert "فصل اور جڑی بوٹیوں میں فرق نہیں کر سکتا" in ur[0]
    assert "ایک پکسل زمین کا کتنا حصہ" in ur[0]
    assert "صحیح کھیت" not in ur[0]


def _summary(method: str, detail: str, gsd: float | None, classes: dict[str, float]) -> dict:
    out: dict = {
        "area_unit": "ha",
        "area_total_ha": 1.0,
        "method": method,
        "layers": {"classes": {"method": method, "detail": detail}},
        "classes": [{"name": n, "share": s, "area_ha": s} for n, s in classes.items()],
    }
    if gsd is not None:
        out["gsd"] = {"metres": gsd, "source": "crs"}
    return out


@pytest.mark.parametrize(
    ("method", "detail", "gsd", "en", "ur"),
    [
        (
            "index",
            "Crop and weed are not told apart: the ground sample distance is unknown (no CRS); "
            "give it with --gsd. Vegetation and soil only.",
            None,
            "how much ground a pixel covers is unknown",
            "ایک پکسل زمین کا کتنا حصہ",
        ),
        (
            "index",
            "Crop and weed are not told apart at 20 cm per pixel: no model fits these bands, and "
            "crop rows are looked for only between 1 cm and 10 cm. Vegetation and soil only.",
            0.2,
            "at 20.0 cm per pixel no model is made for this image",
            "20.0 cm فی پکسل",
        ),
        (
            "index",
            "Crop and weed are not told apart: no model fits these bands, and no crop rows were "
            "found (no regular spacing). Vegetation and soil only.",
            0.03,
            "no crop rows were found in it",
            "قطاریں نہیں ملیں",
        ),
        ("rows", "Crop rows: ...", 0.03, "where no crop rows were found", "قطاریں نہیں ملیں"),
        (
            "index",
            "Crop and weed are not told apart: model khet-rgb-uav learned potato, not Maize, and "
            "no crop rows were found (no regular spacing). Vegetation and soil only.",
            0.005,
            "Khet's model has not learned Maize, the field's crop",
            "کھیت کی فصل (Maize) نہیں سیکھی",
        ),
        (
            "index",
            "Crop and weed are not told apart: model khet-rgb-uav learned potato, not maize, and "
            "no crop rows were found (no regular spacing). Vegetation and soil only.",
            0.005,
            "Khet's model has not learned potato-maize, the field's crop",
            "کھیت کی فصل (potato-maize) نہیں سیکھی",
        ),
    ],
)
def test_vegetation_only_advice_gives_the_methods_reason(method, detail, gsd, en, ur):
    classes = {"soil": 0.36, "vegetation": 0.64}
    if method == "rows":
        classes = {"soil": 0.36, "crop": 0.0, "weed": 0.0, "vegetation": 0.64}
    s = _summary(method, detail, gsd, classes)
    if "Maize" in detail:
        s["crop"] = "Maize"  # the field's crop, as the analysis was given it
    elif "not maize" in detail:
        s["crop"] = "potato-maize"  # an intercrop: the model learned one of its crops
    said = advice(s, {"features": []}, None, Translator("en"))
    assert said[0].startswith("The map shows plants on 64% of the field"), said
    assert en in said[0] and NONE_EN not in said
    assert ur in advice(s, {"features": []}, None, Translator("ur"))[0]


def test_a_models_map_of_a_field_without_a_crop_advises_setting_it_first():
    """The model's crop class is the crop it learned: on a field whose crop was not stated its
    weeds may be the field's own crop, so the report says so before any advice on weeds."""
    classes = {"soil": 0.7, "crop": 0.1, "weed": 0.2}
    s = _summary("model", "Learned model khet-rgb-uav 1.1.1", 0.006, classes)
    s["model"] = {"name": "khet-rgb-uav", "crops": ["potato"]}
    said = advice(s, {"features": []}, None, Translator("en"))
    assert said[0].startswith("The field's crop was not set") and "learned potato only" in said[0]
    assert len(said) == 3 and said[1].startswith("No weed patch")  # then the usual advice
    assert "صرف آلو سیکھی ہے" in advice(s, {"features": []}, None, Translator("ur"))[0]
    s["crop"] = "Potato"  # stated: nothing to say
    assert not [a for a in advice(s, {"features": []}, None, Translator("en")) if "not set" in a]
    s["crop"], s["model"]["crops"] = None, []  # a model that states no crop
    assert not [a for a in advice(s, {"features": []}, None, Translator("en")) if "not set" in a]


def test_no_vegetation_at_all_still_says_check_the_field():
    bare = _summary("index", "Vegetation and soil only.", 0.2, {"soil": 1.0, "vegetation": 0.0})
    assert advice(bare, {"features": []}, None, Translator("en"))[0] == NONE_EN
    model = _summary("model", "Learned model", 0.006, {"soil": 1.0, "crop": 0.0, "weed": 0.0})
    assert advice(model, {"features": []}, None, Translator("en"))[0] == NONE_EN


# --- small areas ---------------------------------------------------------------------------------

UNIT = re.compile(r"(m²|ha)$")


def _column(page: str, table_id: str | None, heading: str | None = None) -> list[str]:
    """The area cells (those ending in a unit) of a report table."""
    if table_id:
        m = re.search(rf'id="{table_id}">(.*?)</table>', page, re.S)
    else:
        m = re.search(rf"<h2[^>]*>{re.escape(heading or '')}</h2>\s*<table.*?</table>", page, re.S)
    assert m, (table_id, heading)
    cells = [html.unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(0))]
    return [c for c in cells if UNIT.search(c)]


def test_small_areas_keep_their_size_and_one_unit_per_column(app, tmp_path):
    """A 16 m² field on a 41 m² image: the dashboard said "0.00 ha", the vigour table mixed
    "0 m²" and "0 ha", a zone of a fraction of a square metre read "0 m²", and so did the
    minimum zone."""
    from tests.pages.rasters import boundary_lonlat, make_field
    from tests.service.conftest import run_queued_jobs

    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    farm = app.post("/api/v1/farms", json={"name": "Chak 42"}).json()
    boundary = boundary_lonlat(size=128, res=0.05, inset=1.2)  # 4 m x 4 m
    field = app.post(
        f"/api/v1/farms/{farm['id']}/fields",
        json={"name": "Seed plot", "crop": "wheat", "boundary": boundary},
    ).json()
    assert 0.0015 < field["area_ha"] < 0.0017
    for page in (app.get("/").text, app.get(f"/fields/{field['id']}").text):
        assert "0.00 ha" not in page
        assert re.search(r">1[56] m²<", page), page[-3000:]
    image = make_field(tmp_path / "plot.tif", size=128, res=0.05)
    files = {"files": ("plot.tif", image.read_bytes(), "image/tiff")}
    r = app.post(f"/api/v1/fields/{field['id']}/flights/upload", files=files)
    assert r.status_code == 201, r.text
    fl = r.json()["id"]
    run_queued_jobs()
    summary = app.get(f"/api/v1/flights/{fl}").json()["summary"]
    assert summary["area_total_ha"] < 0.01
    r = app.post(
        f"/api/v1/flights/{fl}/zones", json={"zones": 2, "smooth": 0, "min_zone_ha": 0.00001}
    )
    assert r.status_code == 201, r.text
    zones = r.json()
    report = app.get(f"/flights/{fl}/report").text
    classes = _column(report, None, "Area by class")
    vigour = _column(report, None, "Crop vigour")
    zone_cells = _column(report, "zone-table")
    for cells, rows in (
        (classes, summary["classes"]),
        (vigour, summary["vigour"]["levels"]),
        (zone_cells, zones["zones"]),
    ):
        assert len(cells) == len(rows), (cells, rows)
        assert {UNIT.search(c).group(1) for c in cells} == {"m²"}, cells
        for cell, row in zip(cells, rows, strict=True):
            if row["area_ha"] > 0:
                assert cell not in ("0 m²", "0 ha"), (cell, row)
    assert "Square metres" in report
    assert "minimum zone 0.1 m²" in report, re.findall(r"minimum zone [^.<]*", report)
    assert app.get(f"/flights/{fl}").status_code == 200


def test_fmt_area_for_small_and_mixed_columns():
    from khet.service.report import area_scale, fmt_area

    t = Translator("en")
    assert fmt_area(0.000029, "ha", t) == "0.3 m²"  # a zone of 8 cells
    assert fmt_area(0.0016, "ha", t) == "16 m²"
    assert fmt_area(0.00000001, "ha", t) == "<0.1 m²"
    assert fmt_area(0.065, "ha", t) == "650 m²"
    assert fmt_area(0.065, "ha", t, scale=2.0) == "0.065 ha"  # in a column of hectares
    column = [0.0, 0.00004, 0.002]
    scale = area_scale(column)
    assert [fmt_area(v, "ha", t, scale=scale) for v in column] == ["0 m²", "0.4 m²", "20 m²"]
    big = [0.0, 0.0004, 2.5]
    assert [fmt_area(v, "ha", t, scale=area_scale(big)) for v in big] == [
        "0 ha",
        "<0.001 ha",
        "2.50 ha",
    ]


# --- visit thresholds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "bad"),
    [
        ({"weed": "-5", "low": "30"}, ["“-5”"]),
        ({"weed": "abc", "low": "30"}, ["“abc”"]),
        ({"weed": "1e308", "low": "nan"}, ["“1e308”", "“nan”"]),
        ({"weed": "", "low": "30"}, ["“”"]),
    ],
)
def test_visit_thresholds_refuse_nonsense_and_keep_the_old_values(app, form, bad):
    """weed=-5, weed=abc or weed=1e308&low=nan redirected to "Saved." and silently kept the old
    value. Now: 422, the page says which value is wrong and that the old one still holds, and
    nothing is saved (not even the valid half of the form)."""
    _user("farmer", "farmer@example.org")
    _login(app, "farmer@example.org")
    r = app.post("/settings/visit", data={"weed": "40", "low": "60"}, follow_redirects=False)
    assert r.status_code == 303
    r = app.post("/settings/visit", data=form, follow_redirects=False)
    assert r.status_code == 422, r.text[-500:]
    assert "Saved." not in r.text
    errors = re.search(r'id="visit-errors">(.*?)</div>', r.text, re.S)
    assert errors, r.text[-2000:]
    said = html.unescape(errors.group(1))
    for value in bad:
        assert value in said, said
    assert "Nothing was saved" in said
    assert "the old value, 40%, still holds" in said  # every case has a bad weed value
    page = app.get("/").text
    assert 'value="40"' in page and 'value="60"' in page  # both old values, as stored
    r = app.post("/settings/visit?lang=ur", data=form, follow_redirects=False)
    assert r.status_code == 422 and "کچھ محفوظ نہیں" in html.unescape(r.text)
    r = app.post("/settings/visit", data={"weed": "12.5", "low": "70"}, follow_redirects=False)
    assert r.status_code == 303
    assert 'value="12.5"' in app.get("/").text
