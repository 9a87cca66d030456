"""A small georeferenced field for the page tests: soil, crop, a weak crop strip, a weed patch.

The tiny test bundle scores soil by red, crop by green and weed by the mean of all bands, so a
bluish patch reads as weed. The patch sits in the north-east corner so the report's advice has a
known answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

# Near Ludhiana, Punjab (UTM 43N).
ORIGIN = (380000.0, 3420000.0)
CRS = "EPSG:32643"


def make_field(
    path: Path, size: int = 384, res: float = 0.25, seed: int = 1, weeds: str = "north-east"
) -> Path:
    rng = np.random.default_rng(seed)
    red = np.full((size, size), 45, np.int32)
    green = np.full((size, size), 170, np.int32)
    blue = np.full((size, size), 50, np.int32)
    # Bare soil along the west edge.
    red[:, : size // 5] = 150
    green[:, : size // 5] = 110
    blue[:, : size // 5] = 80
    # Weaker crop in a strip across the south.
    s = slice(int(size * 0.75), size)
    red[s, size // 5 :] = 95
    green[s, size // 5 :] = 140
    # A weed patch in one corner.
    if weeds == "north-east":
        w, e = slice(0, size // 4), slice(int(size * 0.7), size)
    else:
        w, e = slice(int(size * 0.55), int(size * 0.8)), slice(size // 5, int(size * 0.45))
    red[w, e] = 90
    green[w, e] = 100
    blue[w, e] = 250
    data = np.stack([red, green, blue])
    data = np.clip(data + rng.integers(-6, 7, data.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(ORIGIN[0], ORIGIN[1], res, res),
        tiled=True,
        blockxsize=128,
        blockysize=128,
    ) as ds:
        ds.write(data)
        for i, name in enumerate(("red", "green", "blue"), start=1):
            ds.set_band_description(i, name)
    return path


def boundary_lonlat(size: int = 384, res: float = 0.25, inset: float = 2.0) -> dict:
    from rasterio.warp import transform_geom

    x0, y1 = ORIGIN
    x1, y0 = x0 + size * res, y1 - size * res
    ring = [
        (x0 + inset, y0 + inset),
        (x1 - inset, y0 + inset),
        (x1 - inset, y1 - inset),
        (x0 + inset, y1 - inset),
        (x0 + inset, y0 + inset),
    ]
    return transform_geom(CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
