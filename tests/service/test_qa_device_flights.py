"""Device flights that QA found the service mishandling: a flight with only a summary, summaries
that are well-formed field by field but do not add up, class maps that are not class maps,
capture dates out of range, and the same bytes uploaded under another name."""

from __future__ import annotations

import pytest


@pytest.fixture
def edge_results(tmp_path, geotiff, use_test_models):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    return out


def _post_flight(api, who, field, results, **extra):
    body = {"uploads": [], "results": results, **extra}
    return api.client.post(f"/api/v1/fields/{field}/flights", json=body, headers=who["headers"])


def test_a_summary_only_flight_has_no_zones_or_prescriptions(api, edge_results):
    """README allows a device flight of summary.json alone; zones, rate and spot-spray on it
    are a 422 that says there is no class map (it was a 500: classes.tif missing)."""
    c = api.client
    alice = api.user()
    h = alice["headers"]
    _, field = api.farm_field(alice)
    summary = api.upload(alice, edge_results / "summary.json")
    r = _post_flight(api, alice, field, {"summary.json": summary})
    assert r.status_code == 201, r.text
    fl = r.json()["id"]
    for path, body in (
        ("zones", {}),
        ("prescriptions/spot", {}),
        ("prescriptions/rate", {"rates": [100, 80]}),
    ):
        r = c.post(f"/api/v1/flights/{fl}/{path}", json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        assert "no class map" in r.json()["detail"], r.text
    # A full device flight of the same field cannot take the summary-only one into its zones.
    full = {
        name: api.upload(alice, edge_results / name)
        for name in ("summary.json", "classes.tif", "zones.geojson")
    }
    full["indices/vari.tif"] = api.upload(alice, edge_results / "indices" / "vari.tif")
    r = _post_flight(api, alice, field, full, client_id="full")
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = c.post(f"/api/v1/flights/{other}/zones", json={"flights": [fl]}, headers=h)
    assert r.status_code == 422 and f"Flight {fl} has no class map" in r.json()["detail"]
    r = c.post(f"/api/v1/flights/{other}/zones", json={"zones": 2, "smooth": 0}, headers=h)
    assert r.status_code == 201, r.text
    # Nothing was written for the summary-only flight; its listings stay empty.
    assert c.get(f"/api/v1/flights/{fl}/prescriptions", headers=h).json() == {}
    assert c.get(f"/api/v1/flights/{fl}/zones", headers=h).status_code == 404
