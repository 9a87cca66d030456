"""Shared helpers for the benchmarks: orthomosaics of any size made of real drone imagery.

The pipeline's speed on flat synthetic colours flatters it: real orthomosaics are compressed
(ODM writes DEFLATE or JPEG-in-TIFF) and full of texture, which costs decoding time. So the
benchmarks tile `uav_potato`'s 150 real UAV tiles (MIT, 640 px at about 3 mm) over the requested
size, in a seeded order, and write them compressed as a real orthomosaic would be.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

SHARED = Path(
    os.environ.get("KHET_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
COMPRESSIONS = {
    "none": {},
    "deflate": {"compress": "DEFLATE", "predictor": 2, "zlevel": 6},
    "jpeg": {"compress": "JPEG", "photometric": "YCBCR", "jpeg_quality": 90},
}


def real_tiles(seed: int = 0) -> list[np.ndarray]:
    """uav_potato's images as 3 x 640 x 640 uint8 arrays, in a seeded order."""
    import cv2

    folder = SHARED / "uav_potato" / "images"
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"real imagery not found in {folder}: set KHET_SHARED_DATA")
    order = np.random.default_rng(seed).permutation(len(paths))
    out = []
    for i in order:
        bgr = cv2.imread(str(paths[i]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert bgr is not None, paths[i]
        out.append(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
    return out


def make_orthomosaic(
    path: Path, size: int, compression: str = "deflate", gsd: float = 0.003, overviews: bool = False
) -> Path:
    """A georeferenced, tiled RGB GeoTIFF of size x size px in UTM 43N at `gsd`, made of real
    drone tiles, written block by block (memory stays small at any size). With `overviews`,
    internal overviews averaged by 2, 4, 8, ... as `gdaladdo` or ODM's `--cog` / `--build-overviews`
    write them."""
    tiles = real_tiles()
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32643",
        "transform": Affine(gsd, 0, 350000, 0, -gsd, 3500000),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
        "photometric": "RGB",
        **COMPRESSIONS[compression],
    }
    t = tiles[0].shape[1]
    k = 0
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, t):
            for x in range(0, size, t):
                h, w = min(t, size - y), min(t, size - x)
                block = tiles[k % len(tiles)][:, :h, :w]
                k += 1
                dst.write(block, window=rasterio.windows.Window(x, y, w, h))
    if overviews:
        from rasterio.enums import Resampling

        opts = COMPRESSIONS[compression]
        env = {"COMPRESS_OVERVIEW": opts.get("compress", "NONE")}
        if compression == "jpeg":
            env |= {"PHOTOMETRIC_OVERVIEW": "YCBCR", "JPEG_QUALITY_OVERVIEW": "90"}
        if compression == "deflate":
            env |= {"PREDICTOR_OVERVIEW": "2"}
        factors = [f for f in (2, 4, 8, 16, 32, 64) if size // f >= 256]
        with rasterio.Env(**env), rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, Resampling.average)
    return path


def declared_at(raster: Path, gsd: float) -> Path:
    """A copy of `raster` georeferenced at `gsd` metres per pixel (the same pixels): a stated
    GSD does not override a georeferenced image's own."""
    import shutil

    import rasterio
    from rasterio.transform import Affine

    copy = raster.with_name(f"{raster.stem}-{gsd * 100:g}cm.tif")
    shutil.copyfile(raster, copy)
    with rasterio.open(copy, "r+") as ds:
        t = ds.transform
        ds.transform = Affine(gsd, 0, t.c, 0, -gsd, t.f)
    return copy
