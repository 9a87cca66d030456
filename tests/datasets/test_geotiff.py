"""Generic GeoTIFF + label raster / GeoJSON loader on tiny rasters built in code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from khet.datasets import geotiff
from khet.datasets.tiles import CROP, IGNORE, SOIL, WEED
from rasterio.transform import from_origin

from khet.errors import InputError

# A 64 x 64 px image at 5 cm in UTM 33N.
X0, Y0, RES = 500000.0, 5000000.0, 0.05
TRANSFORM = from_origin(X0, Y0, RES, RES)


def _image(path: Path, dtype=np.uint8, bands: int = 3) -> Path:
    data = np.full((bands, 64, 64), 100, dtype=dtype)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=bands,
        dtype=dtype,
        crs="EPSG:32633",
        transform=TRANSFORM,
    ) as dst:
        dst.write(data)
    return path


def _labels(path: Path, transform=TRANSFORM, size: int = 64) -> Path:
    lab = np.full((size, size), 9, np.uint8)  # 9: unlabeled
    h = size // 2
    lab[:h, :h] = 0
    lab[:h, h:] = 1
    lab[h:, :h] = 2
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform,
        nodata=9,
    ) as dst:
        dst.write(lab, 1)
    return path


def _square(x: float, y: float, size: float) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [[[x, y], [x + size, y], [x + size, y - size], [x, y - size], [x, y]]],
    }


def test_label_raster_same_grid(tmp_path):
    img = _image(tmp_path / "f.tif")
    lab = _labels(tmp_path / "f.labels.tif")
    ts = geotiff.load_tiles(img, lab, tile_size=32, overlap=0)
    got = {tuple(c): int(lab) for c, lab in zip(ts.cells.tolist(), ts.labels, strict=True)}
    assert got == {(0, 0): SOIL, (0, 1): CROP, (1, 0): WEED}  # (1, 1) unlabeled: dropped
    assert ts.tiles.shape == (3, 3, 32, 32)


def test_label_raster_other_grid_is_resampled(tmp_path):
    img = _image(tmp_path / "f.tif")
    lab = _labels(tmp_path / "f.labels.tif", from_origin(X0, Y0, RES * 2, RES * 2), size=32)
    _, profile = geotiff.read_image(img)
    m = geotiff.read_label_raster(lab, profile)
    assert m.shape == (64, 64)
    assert m[0, 0] == SOIL and m[0, 40] == CROP and m[40, 0] == WEED and m[40, 40] == IGNORE


def test_geojson_polygons_in_image_crs(tmp_path):
    img = _image(tmp_path / "f.tif")
    gj = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"class": "weed"},
                "geometry": _square(X0, Y0, 32 * RES),
            },
            {
                "type": "Feature",
                "properties": {"class": "crop"},
                "geometry": _square(X0 + 32 * RES, Y0 - 32 * RES, 32 * RES),
            },
            {
                "type": "Feature",
                "properties": {"class": "tree"},
                "geometry": _square(X0, Y0 - 32 * RES, 32 * RES),
            },
        ],
    }
    path = tmp_path / "f.geojson"
    path.write_text(json.dumps(gj))
    ts = geotiff.load_tiles(img, path, tile_size=32, overlap=0)
    got = {tuple(c): int(lab) for c, lab in zip(ts.cells.tolist(), ts.labels, strict=True)}
    assert got == {(0, 0): WEED, (1, 1): CROP}


def test_geojson_wgs84_is_reprojected(tmp_path):
    from rasterio.warp import transform_geom

    img = _image(tmp_path / "f.tif")
    geom = transform_geom("EPSG:32633", "EPSG:4326", _square(X0, Y0, 64 * RES))
    path = tmp_path / "f.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"class": 1}, "geometry": geom}],
            }
        )
    )
    _, profile = geotiff.read_image(img)
    m = geotiff.rasterize_geojson(path, profile)
    assert (m[2:-2, 2:-2] == CROP).all()


def test_find_pairs_uint16_and_gsd(tmp_path):
    _image(tmp_path / "a.tif", np.uint16)
    _labels(tmp_path / "a.labels.tif")
    _image(tmp_path / "b.tif")
    (tmp_path / "b.geojson").write_text("{}")
    _image(tmp_path / "c.tif")  # no labels: ignored
    pairs = geotiff.find_pairs(tmp_path)
    assert [p[0].name for p in pairs] == ["a.tif", "b.tif"]
    arr, _ = geotiff.read_image(tmp_path / "a.tif")
    assert arr.dtype == np.uint8 and arr[0, 0, 0] == 100 // 257
    assert geotiff.pixel_size_m(tmp_path / "a.tif") == pytest.approx(RES)


def test_errors_for_users(tmp_path):
    img = _image(tmp_path / "f.tif", bands=2)
    with pytest.raises(InputError):
        geotiff.read_image(img, bands=3)
    bad = tmp_path / "f.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    _, profile = geotiff.read_image(img)
    with pytest.raises(InputError):
        geotiff.rasterize_geojson(bad, profile)
