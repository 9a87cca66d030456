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
    ur = app.get(f"/flights/{fl}/report?lang=ur").text
    assert "انتظامی زون" in ur and "صرف جڑی بوٹیوں پر سپرے" in ur
    for lang in ("en", "ur"):
        r = app.get(f"/flights/{fl}/report.pdf?lang={lang}")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        if lang == "en" and shutil.which("pdftotext"):
            text = subprocess.run(
                ["pdftotext", "-", "-"], input=r.content, capture_output=True, check=True
            ).stdout.decode()
            assert "Management zones" in text and "Spot spray" in text
            assert "Variable rate: Nitrogen" in text
