"""Tiny rasters generated in code: a synthetic field with soil, crop rows and a weed patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

# A field in Punjab, Pakistan, in UTM 43N: 5 cm pixels.
UTM43N = "EPSG:32643"
ORIGIN = (350000.0, 3500000.0)


def field_rgb(h: int = 256, w: int = 320, seed: int = 0) -> np.ndarray:
    """Brown soil, green crop rows every 64 px, a reddish weed patch in the north-east."""
    rng = np.random.default_rng(seed)
    img = np.empty((3, h, w), np.uint8)
    img[0], img[1], img[2] = 150, 110, 80
    rows = (np.arange(h) // 32) % 2 == 0
    img[:, rows, :] = np.array([60, 170, 60], np.uint8)[:, None, None]
    img[:, : h // 4, 3 * w // 4 :] = np.array([170, 90, 120], np.uint8)[:, None, None]
    noise = rng.integers(-8, 9, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs=UTM43N,
    res: float = 0.05,
    nodata=None,
    descriptions=None,
    colorinterp=None,
    tiled=True,
    mask: np.ndarray | None = None,
) -> Path:
    count, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
        "nodata": nodata,
    }
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)
        if colorinterp:
            dst.colorinterp = colorinterp
        elif count == 3 and data.dtype == np.uint8:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if mask is not None:
            dst.write_mask(mask.astype(np.uint8) * 255)
    return path


def write_jpeg_with_gps(path: Path, data: np.ndarray, lat=31.5204, lon=74.3587) -> Path:
    from PIL import Image

    im = Image.fromarray(np.moveaxis(data, 0, -1))
    exif = Image.Exif()
    exif[271] = "DJI"
    exif[272] = "FC6310"

    def dms(v):
        v = abs(v)
        d = int(v)
        m = int((v - d) * 60)
        s = (v - d - m / 60) * 3600
        return (d, m, round(s, 4))

    exif.get_ifd(0x8825).update(
        {
            1: "N" if lat >= 0 else "S",
            2: dms(lat),
            3: "E" if lon >= 0 else "W",
            4: dms(lon),
            6: 212.5,
        }
    )
    im.save(path, format="JPEG", quality=92, exif=exif)
    return path
