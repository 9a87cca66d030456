"""What the pages and the report say, where QA found them wrong: the advice on a map that shows
plants but not crop and weed, areas too small for their unit, and the visit thresholds form."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from khet.service.i18n import Translator
from khet.service.report import advice

from tests.pages.test_pages import _capture_flight, _login, _user

MICASENSE = Path("tests/fixtures/micasense_crop")
NONE_EN = "The map shows no crop or weeds; check that the right field was flown."


@pytest.fixture
def app(monkeypatch):
    """The app with the shipped model bundles (none of which holds for the MicaSense capture)."""
    from fastapi.testclient import TestClient
    from khet.service.db import dispose_engines
    from khet.service.main import create_app

    from khet.settings import get_settings

    dispose_engines()
    monkeypatch.delenv("KHET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client
    dispose_engines()


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
    ],
)
def test_vegetation_only_advice_gives_the_methods_reason(method, detail, gsd, en, ur):
    classes = {"soil": 0.36, "vegetation": 0.64}
    if method == "rows":
        classes = {"soil": 0.36, "crop": 0.0, "weed": 0.0, "vegetation": 0.64}
    s = _summary(method, detail, gsd, classes)
    said = advice(s, {"features": []}, None, Translator("en"))
    assert said[0].startswith("The map shows plants on 64% of the field"), said
    assert en in said[0] and NONE_EN not in said
    assert ur in advice(s, {"features": []}, None, Translator("ur"))[0]


def test_no_vegetation_at_all_still_says_check_the_field():
    bare = _summary("index", "Vegetation and soil only.", 0.2, {"soil": 1.0, "vegetation": 0.0})
    assert advice(bare, {"features": []}, None, Translator("en"))[0] == NONE_EN
    model = _summary("model", "Learned model", 0.006, {"soil": 1.0, "crop": 0.0, "weed": 0.0})
    assert advice(model, {"features": []}, None, Translator("en"))[0] == NONE_EN
