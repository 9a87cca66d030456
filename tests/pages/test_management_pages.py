"""Zones and prescriptions in the pages and the report, without a browser (TestClient): the
flight page offers the forms and knows what was made; the report (HTML and PDF, English and
Urdu) gains the zone table, the rates and the spray saving."""

from __future__ import annotations

import shutil
import subprocess

from tests.pages.test_pages import app, flight  # noqa: F401  (fixtures)


def test_flight_page_offers_zones_and_report_shows_them(app, flight):  # noqa: F811
    fl = flight["flight"]
    page = app.get(f"/flights/{fl}")
    assert page.status_code == 200
    assert 'id="zones-form"' in page.text and "/static/khet/zones.js" in page.text
    assert 'id="zones-layer"' in page.text
    report = app.get(f"/flights/{fl}/report").text
    assert 'id="management"' not in report  # nothing made yet: no empty section
    r = app.post(f"/api/v1/flights/{fl}/zones", json={"zones": 2})
    assert r.status_code == 201, r.text
    r = app.post(f"/api/v1/flights/{fl}/prescriptions/rate", json={"rates": [120, 80]})
    assert r.status_code == 201, r.text
    rate = r.json()
    r = app.post(f"/api/v1/flights/{fl}/prescriptions/spot", json={"rate": 90})
    assert r.status_code == 201, r.text
    spot = r.json()
    page = app.get(f"/flights/{fl}").text
    assert '"management"' in page and "rate-shapefile.zip" in page

    report = app.get(f"/flights/{fl}/report").text
    assert 'id="zone-table"' in report and 'id="rate-table"' in report
    assert "Management zones and prescriptions" in report
    assert f"{rate['total']:.2f} kg" in report
    assert "less Herbicide than spraying the whole field" in report
    saving = f"{spot['saving_share'] * 100:.0f}%" if spot["saving_share"] >= 0.1 else None
    if saving:
        assert saving in report
    # How the zones were made, in the reader's language (it was English in the Urdu report).
    assert "number of zones given by the user; minimum zone" in report
    ur = app.get(f"/flights/{fl}/report?lang=ur").text
    assert "انتظامی زون" in ur and "صرف جڑی بوٹیوں پر سپرے" in ur
    assert "زونوں کی تعداد صارف نے دی؛ سب سے چھوٹا زون" in ur
    assert "given by the user" not in ur
    # And how the spot-spray map was drawn.
    assert f"({spot['cell_m']:.2f} m), patches under" in report
    assert f"({spot['cell_m']:.2f} میٹر)" in ur and "patches under" not in ur
    for lang in ("en", "ur"):
        r = app.get(f"/flights/{fl}/report.pdf?lang={lang}")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        if lang == "en" and shutil.which("pdftotext"):
            text = subprocess.run(
                ["pdftotext", "-", "-"], input=r.content, capture_output=True, check=True
            ).stdout.decode()
            assert "Management zones" in text and "Spot spray" in text
            assert "Variable rate: Nitrogen" in text


def test_zone_method_line_in_each_language_and_for_old_zones():
    """zones.json says how the zones were chosen as data, so the report words it in the
    reader's language; zones made before it did keep their English line, marked English."""
    from khet.service.i18n import Translator
    from khet.service.report import _zones_how

    method = {
        "library": "scikit-learn KMeans (n_init=4, random_state=0)",
        "smooth_cells": 1,
        "chosen_by": "explained_variance",
        "zone_range": [2, 7],
        "explained_target": 0.8,
        "flights": 2,
        "min_zone_ha": 0.05,
    }
    en, lang = _zones_how(method, "NDVI", Translator("en"))
    assert lang == "en"
    assert en == (
        "scikit-learn KMeans (n_init=4, random_state=0); NDVI averaged over each map cell, "
        "smoothed over 3x3 cells, standardised per flight (2 flights); the fewest zones (2-7) "
        "whose clustering explains at least 80% of the index variance; minimum zone 500 m²."
    )
    ur, lang = _zones_how(method, "NDVI", Translator("ur"))
    assert lang == "ur" and "کم سے کم زون (2 تا 7)" in ur and "80%" in ur and "(2 پروازیں)" in ur
    old = {"library": "mapclassify FisherJenks (natural breaks)", "features": "ndvi averaged",
           "zone_count": "given by the user", "min_zone_ha": 0.05}  # fmt: skip
    line, lang = _zones_how(old, "NDVI", Translator("ur"))
    assert lang == "en" and line.endswith(
        "; ndvi averaged; given by the user; minimum zone 500 m²."
    )
    from khet.service.report import _spot_how

    spot = {"target": "weed", "how": "weed cells of the map (0.25 m), ...", "min_patch_m2": 1}
    assert _spot_how(spot, Translator("ur")) == ("weed cells of the map (0.25 m), ...", "en")
    spot |= {"cell_m": 0.25, "margin_m": 0.5, "min_cover_pct": 5}
    line, lang = _spot_how(spot, Translator("en"))
    assert lang == "en" and line.startswith("Cells with weed cover of at least 5% (cover.tif) or")
    assert "(0.25 m), patches under 1 m² left out, buffered by 0.5 m" in line
