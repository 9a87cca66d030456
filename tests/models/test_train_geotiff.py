"""`khet train --dataset geotiff` end to end on tiny GeoTIFFs + GeoJSON built in code.

Checks the plumbing a user relies on (split, training, export, INT8 comparison, evaluation,
card), not accuracy: a few hundred tile steps on synthetic rasters.
"""

from __future__ import annotations

import json

import numpy as np
import rasterio
from khet.vision.bundle import Bundle
from rasterio.transform import from_origin

from khet.cli import main

RES = 0.01


def _field(path, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 120, (3, 128, 128)).astype(np.uint8)  # soil
    img[:, :64, :64] = np.array([40, 190, 40], np.uint8)[:, None, None]  # crop: green
    img[:, 64:, 64:] = np.array([150, 160, 40], np.uint8)[:, None, None]  # weed: yellowish
    x0, y0 = 500000.0 + seed * 10, 5000000.0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=128,
        height=128,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(x0, y0, RES, RES),
    ) as dst:
        dst.write(img)

    def sq(c, r, n, cls):
        x, y = x0 + c * RES, y0 - r * RES
        ring = [[x, y], [x + n * RES, y], [x + n * RES, y - n * RES], [x, y - n * RES], [x, y]]
        return {
            "type": "Feature",
            "properties": {"class": cls},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        }

    gj = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "features": [sq(0, 0, 128, "soil"), sq(0, 0, 64, "crop"), sq(64, 64, 64, "weed")],
    }
    path.with_suffix(".geojson").write_text(json.dumps(gj))


def test_train_on_own_geotiffs(tmp_path):
    data = tmp_path / "fields"
    data.mkdir()
    for i in range(5):
        _field(data / f"field{i}.tif", i)
    out = tmp_path / "bundles"
    rc = main(
        [
            "train",
            "--dataset",
            "geotiff",
            "--data",
            str(data),
            "--bands",
            "red,green,blue",
            "-o",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--tile-size",
            "32",
            "--overlap",
            "0",
            "--epochs",
            "2",
            "--epoch-tiles",
            "128",
            "--batch-size",
            "32",
        ]
    )
    assert rc == 0
    (bundle,) = out.glob("*.onnx")
    b = Bundle(bundle)
    assert b.info.bands == ("red", "green", "blue") and b.info.tile_size == 32
    assert b.info.gsd_m == RES
    assert "macro_f1" in b.info.metrics
    card = bundle.with_suffix(".md").read_text()
    assert "ExG + Otsu" in card and "Confusion matrix" in card
    assert main(["evaluate", str(bundle), "--dataset", "geotiff", "--data", str(data)]) == 0
