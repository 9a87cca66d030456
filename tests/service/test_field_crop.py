"""The field's crop reaches the analysis: a model that learned another crop is not used on it, the
summary keeps the crop it was made for, and the report says why crop and weed are not told apart
(in Urdu too)."""

from __future__ import annotations

import pytest

from tests.bundles import make_segmentation_bundle
from tests.service.rasters import make_geotiff


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_fields_crop_keeps_a_model_of_another_crop_off_its_map(api, tmp_path, monkeypatch):
    from khet.settings import get_settings

    models = tmp_path / "models"
    make_segmentation_bundle(models / "potato-seg.onnx", crops=("potato",), name="potato-seg")
    monkeypatch.setenv("KHET_MODELS_DIR", str(models))
    get_settings.cache_clear()
    c = api.client
    alice = api.user()
    farm = c.post("/api/v1/farms", json={"name": "Home"}, headers=alice["headers"]).json()["id"]
    r = c.post(
        f"/api/v1/farms/{farm}/fields",
        json={"name": "Canal field", "crop": "Maize"},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    field = r.json()["id"]
    image = make_geotiff(
        tmp_path / "in" / "f.tif", size=256, bands=("red", "green", "blue"), res=0.01
    )

    def summary_of(flight: int) -> dict:
        r = c.get(f"/api/v1/flights/{flight}/results/summary.json", headers=alice["headers"])
        assert r.status_code == 200, r.text
        return r.json()

    maize = api.flight(alice, field, image, run=True)["id"]
    s = summary_of(maize)
    assert s["crop"] == "Maize" and s["method"] != "model" and s.get("model") is None
    assert "model potato-seg learned potato, not Maize" in s["layers"]["classes"]["detail"]
    # The report a farmer reads says why, in their language.
    r = c.post("/api/v1/session", json={"email": alice["email"], "password": alice["password"]})
    assert r.status_code == 200, r.text
    en = c.get(f"/flights/{maize}/report?lang=en")
    assert en.status_code == 200
    assert "has not learned Maize, the field&#39;s crop" in en.text, en.text[:2000]
    ur = c.get(f"/flights/{maize}/report?lang=ur")
    assert "کھیت کی فصل (Maize) نہیں سیکھی" in ur.text

    # The same field as potato, in Urdu: the model makes the map.
    r = c.patch(f"/api/v1/fields/{field}", json={"crop": "آلو"}, headers=alice["headers"])
    assert r.status_code == 200, r.text
    potato = api.flight(alice, field, image, run=True)["id"]
    s = summary_of(potato)
    assert s["crop"] == "آلو" and s["method"] == "model" and s["model"]["crops"] == ["potato"]
    assert summary_of(maize)["crop"] == "Maize"  # the earlier map keeps what it was made for
