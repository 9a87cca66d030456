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
    """The indices the bands allow."""
    return [i for i in INDICES if all(b in bands for b in i.bands)]


def needed_bands(indices: Sequence[Index]) -> list[str]:
    """The bands the indices read, each once, in order of first use."""
    out: list[str] = []
    for i in indices:
        out.extend(b for b in i.bands if b not in out)
    return out


def vigour_index(indices: Sequence[Index]) -> Index | None:
    """The index crop vigour is judged by, the first of VIGOUR_ORDER available."""
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


# -- vegetation vs soil --------------------------------------------------------------------------
#: The index that tells vegetation from soil, first one available, the range its Otsu threshold
#: is kept in (an image that is nearly all plants or all soil has no second mode, and Otsu's split
#: of one mode means nothing), and the value used when the split is not clear.
#: GNDVI serves a camera that records near-infrared in place of red (NIR, green, blue): on the
#: Seneca flight's frames (an NIR-modified consumer camera, uncalibrated) Otsu split soil (about 0)
#: from grass and trees (0.3) at 0.10-0.19; calibrated reflectance puts soil higher, about 0.3.
VEGETATION_ORDER: tuple[tuple[str, tuple[float, float], float], ...] = (
    ("ndvi", (0.15, 0.6), 0.3),
    ("gndvi", (0.05, 0.6), 0.15),
    ("exg", (0.03, 0.3), 0.1),
)
MIN_SEPARABILITY = 0.75  # Otsu's between-class share of variance; 2/pi for one Gaussian mode
DARK_SHARE = 0.5  # of the median plant brightness: darker "plants" are shadows


@dataclass(frozen=True)
class Vegetation:
    """Which pixels are plants: the index above a threshold, and not in deep shadow.

    Ratio indices are noisy where every band is dark: the shadow between vine rows reads as
    vegetation by NDVI alone. A pixel whose mean brightness (in the index's own bands) is below
    half the median brightness of plant pixels is a shadow, not a plant."""

    index: Index
    threshold: float
    dark: float
    how: str  # how the threshold was chosen, for the summary

    @property
    def bands(self) -> tuple[str, ...]:
        return self.index.bands

    def values(self, data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """The index of a block of this vegetation's bands (C x h x w), NaN where invalid."""
        return compute([self.index], data, self.bands, valid)[0]

    def plants(self, data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        v = self.values(data, valid)
        bright = data.astype(np.float32, copy=False).mean(axis=0)
        return (v > self.threshold) & (bright >= self.dark)

    @classmethod
    def fit(cls, data: np.ndarray, valid: np.ndarray | None, bands: Sequence[str]):
        """The vegetation rule for an image, from a decimated read of all of it (`data`: the
        bands `bands`, C x h x w); None when no vegetation index can be computed."""
        found = vegetation_index(bands)
        if found is None:
            return None
        idx, (lo, hi), default = found
        block = np.stack([data[list(bands).index(b)] for b in idx.bands])
        v = compute([idx], block, idx.bands, valid)[0]
        thr, sep = otsu(v)
        if sep >= MIN_SEPARABILITY and lo <= thr <= hi:
            how = f"Otsu threshold of {idx.title} over the image: {thr:.3f}"
        else:
            thr = float(np.clip(thr, lo, hi)) if sep >= MIN_SEPARABILITY else default
            how = f"{idx.title} above {thr:.3f} (no clear split between plants and soil)"
        bright = block.astype(np.float32).mean(axis=0)
        plant = np.isfinite(v) & (v > thr)
        dark = float(DARK_SHARE * np.median(bright[plant])) if plant.any() else 0.0
        return cls(idx, float(thr), dark, how)


def vegetation_index(bands: Sequence[str]) -> tuple[Index, tuple[float, float], float] | None:
    """(index, threshold range, default threshold) for telling plants from soil, or None."""
    for name, rng, default in VEGETATION_ORDER:
        idx = BY_NAME[name]
        if all(b in bands for b in idx.bands):
            return idx, rng, default
    return None


def otsu(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu's threshold of finite `values` and its separability (between-class variance over
    total variance, 0..1: near 1 for two well-separated modes)."""
    v = values[np.isfinite(values)]
    if v.size < 16 or float(v.max()) <= float(v.min()):
        return float(v.mean()) if v.size else 0.0, 0.0
    hist, edges = np.histogram(v, bins=bins)
    p = hist.astype(np.float64) / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    mt = m0[-1]
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between)
    k = int(np.argmax(between))
    total = float(np.var(v))
    return float(edges[k + 1]), float(between[k] / total) if total > 0 else 0.0


# -- a camera that sees near-infrared, read as red, green and blue -----------------------------
#: A share of red-purple pixels (red the highest band, blue at least green, saturated) above which
#: an RGB image looks like a near-infrared camera's false colour. Measured on the data here, per
#: image: Seneca (an NIR-modified camera) median 24 %, 143 of 167 frames above 5 %; uav_potato,
#: Carrot-Weed and CWFID at most 2.3 %. Red soil is orange (blue below green), not red-purple.
RED_PURPLE_SHARE = 0.05
RED_PURPLE_SATURATION = 0.2


# -- red and blue swapped: an image stored blue, green, red -----------------------------------
#: A share of saturated blue pixels (blue the highest band, red the lowest, the spread at least
#: `SWAPPED_SATURATION` of the highest) above which an RGB image looks stored blue, green, red:
#: bare soil (red over green over blue) then reads blue. Measured per image, at saturation 0.3:
#: uav_potato 0.000, Carrot-Weed at most 0.014, the Seneca near-infrared frames that do not look
#: red-purple at most 0.031; the same images swapped at least 0.314 (uav_potato, 10th percentile
#: 0.58) and 0.114 (Carrot-Weed close up). On swapped uav_potato tiles khet-rgb-uav painted 5 to
#: 14 % of the area crop more than on the true colours (a tile without potato: 14 % crop). A
#: tenth is three times the most seen on true colours; more water or tarp than that is told from
#: swapped soil by the plants (`PLANTS_BLUE`).
SWAPPED_SHARE = 0.1
SWAPPED_SATURATION = 0.3
#: The plants have the last word when there are enough of them (at least `PLANTS_SHARE` of the
#: image green-highest, spread at least 0.2): in true colour a leaf's red is above its blue, in
#: an image stored blue, green, red its blue is. Measured per image, the share of plant pixels
#: with blue above red: uav_potato at most 0.004, Carrot-Weed at most 0.15; the same swapped at
#: least 0.995 and 0.84. So a field with a pond, a flooded paddy or blue tarps over a tenth of
#: the image keeps its true colours when its plants look true; below half, they do.
PLANTS_SHARE = 0.002
PLANTS_BLUE = 0.5


def colour_shares(
    data: np.ndarray, valid: np.ndarray | None, bands: Sequence[str]
) -> tuple[float, float]:
    """(red-purple, swapped) shares of the valid pixels of an image read as red, green and blue,
    each over its lit pixels' saturated ones: red-purple as plants look to a camera recording
    near-infrared in place of red, swapped as bare soil looks when red and blue are swapped
    (blue the highest band, red the lowest), unless the image's plants show true colours
    (`PLANTS_BLUE`). (0, 0) when the image has near-infrared or lacks
    one of red, green, blue. One pass for both: the plan asks both of the same sample."""
    if "nir" in bands or not all(b in bands for b in ("red", "green", "blue")):
        return 0.0, 0.0
    r, g, b = (
        data[list(bands).index(n)].astype(np.float32, copy=False) for n in ("red", "green", "blue")
    )
    top = np.maximum(np.maximum(r, g), b)
    ok = np.isfinite(top) if valid is None else valid & np.isfinite(top)
    n = int(ok.sum())
    if not n:
        return 0.0, 0.0
    lit = ok & (top >= 0.15 * float(np.percentile(top[ok], 99)))
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = (top - np.minimum(np.minimum(r, g), b)) / top
    purple = lit & (spread >= RED_PURPLE_SATURATION) & (r >= top) & (b >= g) & (r > b)
    blue = lit & (spread >= SWAPPED_SATURATION) & (b >= top) & (g > r) & (b > r)
    swapped = float(blue.sum() / n)
    if swapped >= SWAPPED_SHARE:
        plants = lit & (spread >= RED_PURPLE_SATURATION) & (g >= top) & (g > np.minimum(r, b))
        n_plants = int(plants.sum())
        if n_plants >= PLANTS_SHARE * n and (plants & (b > r)).sum() < PLANTS_BLUE * n_plants:
            swapped = 0.0  # leaves red above blue: true colour, the blue is water or a tarp
    return float(purple.sum() / n), swapped


# -- near-infrared darker than red: bands named in the wrong order -----------------------------
#: An index value below which a pixel's near-infrared is well below its red (or green): plants
#: and soil are never like that, open water is. Measured on the MicaSense capture named in its
#: order, no pixel is below (NDVI's 5th percentile 0.23); with red and near-infrared swapped,
#: 99.7 % are. The Seneca frames (a camera recording near-infrared, green, blue) named red,
#: green, nir had 0-43 % below, and fewer above +0.2.
INVERTED_BELOW = -0.2
#: The share of the image that far below, and more than plainly above (+0.2), for the map to say
#: its bands are probably named in the wrong order.
INVERTED_SHARE = 0.05


def inverted_share(data: np.ndarray, valid: np.ndarray | None, bands: Sequence[str]) -> float:
    """The share of valid pixels whose near-infrared is well below red (NDVI) or, without red,
    green (GNDVI), when more of the image is that far below than plainly above; else 0. High
    on an image whose bands are named in the wrong order, where plants then read as soil."""
    found = vegetation_index(bands)
    if found is None or "nir" not in found[0].bands:
        return 0.0
    idx = found[0]
    block = np.stack([data[list(bands).index(b)] for b in idx.bands])
    v = compute([idx], block, idx.bands, valid)[0]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    below = float((v < INVERTED_BELOW).mean())
    above = float((v > -INVERTED_BELOW).mean())
    return below if below > above else 0.0
