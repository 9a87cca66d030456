"""The committed bundles follow the contract the pipeline reads (vision/bundle.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from khet.vision.bundle import Bundle

BUNDLES = Path(__file__).resolve().parents[2] / "models" / "bundles"
EXPECTED = {
    "khet-rgb-carrotweed": ("red", "green", "blue"),
    "khet-rednir-cwfid": ("red", "nir"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundle_contract(name):
    path = BUNDLES / f"{name}.onnx"
    assert path.is_file(), f"{path} missing: train it with khet train"
    assert path.stat().st_size < 10e6
    b = Bundle(path, threads=1)
    info = b.info
    assert info.name == name and info.bands == EXPECTED[name]
    assert [(c.name, c.color) for c in info.classes] == [
        ("soil", "#8b6b4a"),
        ("crop", "#2e9e44"),
        ("weed", "#e0452b"),
    ]
    assert info.dtype == "uint8" and info.precision in ("fp32", "int8")
    stride = info.tile_size - info.overlap
    assert info.tile_size <= 224 and stride % 16 == 0
    assert "central" in info.label_rule and "non-commercial" in info.training_data
    assert info.crops == ("carrot",)  # CWFID and Carrot-Weed are carrot fields
    assert 0 < info.gsd_m < 0.01
    assert {"macro_f1", "per_class", "baseline"} <= set(info.metrics)
    x = np.zeros((3, len(info.bands), info.tile_size, info.tile_size), np.uint8)
    p = b.predict(x)
    assert p.shape == (3, 3) and np.allclose(p.sum(1), 1, atol=1e-4)
    card = (BUNDLES / f"{name}.md").read_text()
    assert "non-commercial research only" in card and "Confusion matrix" in card
    assert "- Crop: carrot." in card
    assert f"{info.metrics['macro_f1']:.3f}" in card
    assert json.loads(json.dumps(info.metrics))  # plain JSON


@pytest.mark.parametrize(
    ("bands", "gsd", "want"),
    [
        (("red", "green", "blue"), 0.0004, "khet-rgb-carrotweed"),
        (("red", "green", "blue"), 0.006, "khet-rgb-uav"),  # drone imagery at 6 mm
        (("red", "green", "blue"), 0.02, None),  # 2 cm: crop rows, not a learned model
        (("red", "green", "blue", "nir"), 0.0002, "khet-rednir-cwfid"),
        (("red", "green", "blue", "nir"), 0.05, None),  # survey GSD: no close-range model
    ],
)
def test_pipeline_picks_by_bands_and_gsd(tmp_path, monkeypatch, bands, gsd, want):
    from khet.vision.plan import make_plan
    from khet.vision.scene import open_scene

    from tests.vision.rasters import field_rgb, write_geotiff

    img = field_rgb(128, 128)
    data = np.concatenate([img, img[1:2]])[: len(bands)]
    path = write_geotiff(tmp_path / "f.tif", data, res=gsd, descriptions=list(bands))
    with open_scene(path) as scene:
        plan = make_plan(scene, BUNDLES)
    assert (plan.bundle.info.name if plan.bundle else None) == want


def test_manifest_lists_every_shipped_bundle_with_its_checksum():
    """Field devices verify bundles against models/bundles/manifest.json before use."""
    from khet.edge.bundles import expected_sha256
    from khet.vision.bundle import file_sha256

    folder = Path(__file__).resolve().parents[2] / "models" / "bundles"
    listed = json.loads((folder / "manifest.json").read_text())["bundles"]
    shipped = sorted(p.name for p in folder.glob("*.onnx"))
    assert sorted(listed) == shipped
    for name in shipped:
        assert expected_sha256(folder / name) == file_sha256(folder / name)
