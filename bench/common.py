"""Shared helpers for the benchmarks: synthetic orthomosaics of any size, written in blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def field_block(size: int = 1024, seed: int = 0) -> np.ndarray:
    """A 1024 px square of field: soil, crop rows, weeds, noise (3 x size x size uint8)."""
    rng = np.random.default_rng(seed)
    img = np.empty((3, size, size), np.uint8)
    img[0], img[1], img[2] = 150, 110, 80
    rows = (np.arange(size) // 48) % 3 == 0
    img[:, rows, :] = np.array([60, 170, 60], np.uint8)[:, None, None]
    for _ in range(12):
        y, x = rng.integers(0, size - 64, 2)
        img[:, y : y + 40, x : x + 40] = np.array([170, 90, 120], np.uint8)[:, None, None]
    noise = rng.integers(-10, 11, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def make_orthomosaic(path: Path, size: int, compress: str | None = None) -> Path:
    """A georeferenced tiled RGB GeoTIFF of size x size px, in UTM 43N at 3 cm."""
    block = field_block()
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32643",
        "transform": Affine(0.03, 0, 350000, 0, -0.03, 3500000),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
        "photometric": "RGB",
    }
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        b = block.shape[1]
        for y in range(0, size, b):
            for x in range(0, size, b):
                h, w = min(b, size - y), min(b, size - x)
                dst.write(block[:, :h, :w], window=rasterio.windows.Window(x, y, w, h))
    return path
