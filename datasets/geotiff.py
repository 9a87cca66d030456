"""Your own fields: any GeoTIFF plus a label raster or a GeoJSON of labeled polygons.

This is Raster Vision's chip-classification idea: label some ground, cut the image into tiles,
and give each tile the class of the labeled pixels in its central cell (the rule in
``tiles.py``). Pixels outside every polygon are *unlabeled* and do not count, so a user can
label a few patches instead of the whole field; a cell with too little labeled ground is skipped.

Folder convention for ``khet train --dataset geotiff``: ``field1.tif`` with either
``field1.labels.tif`` (single band: 0 soil, 1 crop, 2 weed, anything else or nodata =
unlabeled) or ``field1.geojson`` (polygons with a ``class`` property: "soil", "crop", "weed",
or 0/1/2). Label rasters on another grid are resampled (nearest) onto the image grid; GeoJSON
coordinates are WGS84 (RFC 7946) unless the file names a ``crs``.

Image pixels must be uint8 (used as is) or uint16 (scaled by 1/257, a linear map of the full
range); bundles take uint8 tiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from khet.datasets.tiles import CLASS_NAMES, IGNORE, TileSet, cut_tiles
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_geom

from khet.errors import InputError

_CLASS_INDEX = {n: i for i, n in enumerate(CLASS_NAMES)}


def find_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(image, labels) pairs in ``folder`` by the naming convention above."""
    folder = Path(folder)
    pairs = []
    for img in sorted(folder.glob("*.tif")):
        if img.name.endswith(".labels.tif"):
            continue
        stem = img.name[: -len(".tif")]
        for cand in (folder / f"{stem}.labels.tif", folder / f"{stem}.geojson"):
            if cand.is_file():
                pairs.append((img, cand))
                break
    return pairs


def read_image(path: Path, bands: int | None = None) -> tuple[np.ndarray, dict]:
    """H x W x bands uint8 and the rasterio profile."""
    try:
        with rasterio.open(path) as src:
            arr = src.read()
            profile = src.profile
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"Cannot read {path} as a raster ({e}).") from e
    if bands is not None and arr.shape[0] < bands:
        raise InputError(f"{Path(path).name} has {arr.shape[0]} bands; {bands} were named.")
    if bands is not None:
        arr = arr[:bands]
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) // 257).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InputError(f"{Path(path).name} is {arr.dtype}; use uint8 or uint16 imagery.")
    return np.ascontiguousarray(arr.transpose(1, 2, 0)), profile


def read_label_raster(path: Path, profile: dict) -> np.ndarray:
    """Class indices on the image grid; values other than 0/1/2 and nodata are IGNORE."""
    with rasterio.open(path) as src:
        same = (
            src.width == profile["width"]
            and src.height == profile["height"]
            and src.transform == profile["transform"]
        )
        if same:
            lab = src.read(1)
            nodata = src.nodata
        else:
            lab = np.full((profile["height"], profile["width"]), IGNORE, dtype=np.uint8)
            reproject(
                rasterio.band(src, 1),
                lab,
                dst_transform=profile["transform"],
                dst_crs=profile.get("crs") or src.crs,
                dst_nodata=IGNORE,
                resampling=Resampling.nearest,
            )
            nodata = IGNORE
    out = np.where(np.isin(lab, [0, 1, 2]), lab, IGNORE).astype(np.uint8)
    if nodata is not None and nodata not in (0, 1, 2):
        out[lab == nodata] = IGNORE
    return out


def rasterize_geojson(path: Path, profile: dict) -> np.ndarray:
    """Burn labeled polygons onto the image grid; later features win where they overlap."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot read {path} as GeoJSON ({e}).") from e
    src_crs = CRS.from_user_input(doc.get("crs", {}).get("properties", {}).get("name", "EPSG:4326"))
    dst_crs = profile.get("crs")
    shapes = []
    for f in doc.get("features", []):
        cls = (f.get("properties") or {}).get("class")
        idx = _CLASS_INDEX.get(cls) if isinstance(cls, str) else cls
        if idx not in (0, 1, 2) or not f.get("geometry"):
            continue
        geom = f["geometry"]
        if dst_crs and src_crs != dst_crs:
            geom = transform_geom(src_crs, dst_crs, geom)
        shapes.append((geom, int(idx)))
    if not shapes:
        raise InputError(f"{Path(path).name} has no polygons with class soil, crop or weed.")
    return rasterize(
        shapes,
        out_shape=(profile["height"], profile["width"]),
        transform=profile["transform"],
        fill=IGNORE,
        dtype="uint8",
    )


def load_tiles(
    image: Path,
    labels: Path,
    tile_size: int = 128,
    overlap: int = 32,
    bands: tuple[str, ...] = ("red", "green", "blue"),
    **rule: float,
) -> TileSet:
    """Labeled tiles of one GeoTIFF and its label raster or GeoJSON."""
    arr, profile = read_image(image, len(bands))
    if str(labels).endswith(".geojson") or str(labels).endswith(".json"):
        mask = rasterize_geojson(labels, profile)
    else:
        mask = read_label_raster(labels, profile)
    return cut_tiles(
        arr, mask, tile_size, overlap, image_id=Path(image).stem, bands=tuple(bands), **rule
    )


def pixel_size_m(path: Path) -> float | None:
    """Ground sample distance in metres when the CRS is projected in metres, else None."""
    with rasterio.open(path) as src:
        if src.crs and src.crs.is_projected and (src.crs.linear_units or "").startswith("met"):
            return float(abs(src.transform.a))
    return None
