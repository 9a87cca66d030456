"""Tiny georeferenced rasters built in code for the service tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

# A small field near Ludhiana, Punjab (UTM 43N); 0.05 m pixels.
ORIGIN = (380000.0, 3420000.0)
CRS = "EPSG:32643"


def make_geotiff(
    path: Path,
    size: int = 128,
    bands: tuple[str, ...] = ("red", "green", "blue", "nir"),
    res: float = 0.05,
    seed: int = 0,
) -> Path:
    """A uint8 GeoTIFF: the left half bare soil, the right half green crop."""
    rng = np.random.default_rng(seed)
    data = np.zeros((len(bands), size, size), np.uint8)
    for i, name in enumerate(bands):
        soil = {"red": 150, "green": 110, "blue": 80, "nir": 120}.get(name, 100)
        crop = {"red": 40, "green": 160, "blue": 50, "nir": 220}.get(name, 100)
        data[i, :, : size // 2] = soil
        data[i, :, size // 2 :] = crop
    data = np.clip(data.astype(int) + rng.integers(-8, 8, data.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=len(bands),
        dtype="uint8",
        crs=CRS,
        transform=from_origin(ORIGIN[0], ORIGIN[1], res, res),
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as ds:
        ds.write(data)
        for i, name in enumerate(bands, start=1):
            ds.set_band_description(i, name)
    return path


def bounds_lonlat(size: int = 128, res: float = 0.05) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    x0, y1 = ORIGIN
    return transform_bounds(CRS, "EPSG:4326", x0, y1 - size * res, x0 + size * res, y1)


def make_sparse_geotiff(path: Path, size: int, dtype: str = "uint8") -> Path:
    """A `size` x `size` GeoTIFF of a few hundred KB: tiled, compressed, no tile written (GDAL
    reads them as zeros). What an attacker sends to make a server work for hours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype=dtype,
        crs=CRS,
        transform=from_origin(ORIGIN[0], ORIGIN[1], 0.05, 0.05),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        sparse_ok=True,
        BIGTIFF="YES",
    ):
        pass
    return path


def make_png_bomb(path: Path, width: int, height: int, channels: int = 3) -> Path:
    """A PNG of black pixels declaring `width` x `height`: about 1 KB per 1000 rows on disk, the
    full size once decoded. Written row by row, so making it takes no memory either."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    color = {1: 0, 3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + width * channels)  # filter byte + pixels
    idat = bytearray()
    rows_per_step = max(1, (8 << 20) // len(row))
    done = 0
    while done < height:
        n = min(rows_per_step, height - done)
        idat += comp.compress(row * n)
        done += n
    idat += comp.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", bytes(idat))
        + chunk(b"IEND", b"")
    )
    return path
