"""Vegetation indices, chosen by the bands an image has.

Each index declares the bands it needs (TiTiler's algorithm classes are the model): the pipeline
computes every index whose bands are present. Values are float32; pixels where the denominator
vanishes or the input is invalid are NaN, written as nodata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

NODATA = -9999.0


@dataclass(frozen=True)
class Index:
    name: str
    bands: tuple[str, ...]
    title: str
    formula: str
    value_range: tuple[float, float]
    compute: Callable[..., np.ndarray]


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    return out


def _vari(red, green, blue):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (green - red) / (green + red - blue)
    return np.clip(out, -1.0, 1.0)


def _exg(red, green, blue):
    with np.errstate(divide="ignore", invalid="ignore"):
        total = red + green + blue
        return (2 * green - red - blue) / total


def _gli(red, green, blue):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (2 * green - red - blue) / (2 * green + red + blue)


INDICES: tuple[Index, ...] = (
    Index(
        "ndvi",
        ("nir", "red"),
        "NDVI",
        "(NIR - Red) / (NIR + Red)",
        (-1, 1),
        lambda nir, red: _ratio(nir, red),
    ),
    Index(
        "ndre",
        ("nir", "rededge"),
        "NDRE",
        "(NIR - RedEdge) / (NIR + RedEdge)",
        (-1, 1),
        lambda nir, re: _ratio(nir, re),
    ),
    Index(
        "gndvi",
        ("nir", "green"),
        "GNDVI",
        "(NIR - Green) / (NIR + Green)",
        (-1, 1),
        lambda nir, g: _ratio(nir, g),
    ),
    Index("vari", ("red", "green", "blue"), "VARI", "(G - R) / (G + R - B)", (-1, 1), _vari),
    Index("exg", ("red", "green", "blue"), "ExG", "(2G - R - B) / (R + G + B)", (-1, 2), _exg),
    Index("gli", ("red", "green", "blue"), "GLI", "(2G - R - B) / (2G + R + B)", (-1, 1), _gli),
)
BY_NAME = {i.name: i for i in INDICES}
# The index that judges crop vigour, first one available: NIR-based ones see chlorophyll.
VIGOUR_ORDER = ("ndvi", "gndvi", "ndre", "vari", "gli", "exg")


def available(bands: Sequence[str]) -> list[Index]:
    return [i for i in INDICES if all(b in bands for b in i.bands)]


def needed_bands(indices: Sequence[Index]) -> list[str]:
    out: list[str] = []
    for i in indices:
        out.extend(b for b in i.bands if b not in out)
    return out


def vigour_index(indices: Sequence[Index]) -> Index | None:
    names = {i.name for i in indices}
    for n in VIGOUR_ORDER:
        if n in names:
            return BY_NAME[n]
    return None


def compute(
    indices: Sequence[Index], data: np.ndarray, names: Sequence[str], valid: np.ndarray | None
) -> np.ndarray:
    """Indices x h x w float32 from a block of bands `names` (C x h x w); NaN where invalid
    (`valid` None: every pixel is valid) or where an index is undefined (0/0)."""
    f = data.astype(np.float32, copy=False)
    planes = {n: f[i] for i, n in enumerate(names)}
    out = np.empty((len(indices), *data.shape[1:]), np.float32)
    for k, idx in enumerate(indices):
        v = idx.compute(*(planes[b] for b in idx.bands))
        v = np.where(np.isfinite(v) if valid is None else valid & np.isfinite(v), v, np.nan)
        out[k] = v
    return out
