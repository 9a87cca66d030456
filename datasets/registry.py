"""The published labelled datasets Khet trains tile classifiers on, one spec each.

A spec says everything `khet train` and `khet evaluate` need to know of a dataset: how to list
and load its images as tiles, how its sides are split, which plain vegetation index is its
baseline, its licence and its ground sample distance. Adding a dataset is adding a spec here;
the training and evaluation code has no branch per dataset. (A user's own GeoTIFFs and polygon
folders are not published datasets: their bands, GSD and licence come from the user.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from khet.datasets import carrot_weed, cwfid
from khet.datasets.tiles import TileSet

Pairs = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Published:
    """One published dataset."""

    name: str
    title: str
    bundle: str  # the name of the bundle trained on it
    bands: tuple[str, ...]
    crops: tuple[str, ...]  # what its "crop" class is (the bundle states it: vision/crops.py)
    licence: str
    gsd_m: float  # estimated ground sample distance at scale 1 (the data files do not state it)
    default_scale: float  # images are resampled by this before tiling
    index: str  # the plain index baseline: "NDVI" or "ExG" (vision/indices.py)
    images_per_side: int  # a reduced run (--max-images N) reads N x this many images
    split_note: str  # how the sides are chosen, with {fr} for the fractions
    ids: Callable[[Path], list[str]]
    tiles: Callable[[Path, list[str], int, int, float, float], TileSet]
    pairs: Callable[[Path, list[str], float], Pairs]


def _cwfid_num(image_id: str) -> int:
    return int(image_id.split("-")[1])


CWFID = Published(
    name="cwfid",
    title="CWFID",
    bundle="khet-rednir-cwfid",
    bands=cwfid.BANDS,
    crops=("carrot",),
    licence=cwfid.LICENCE,
    gsd_m=0.0002,
    default_scale=1.0,
    index="NDVI",
    images_per_side=3,
    split_note=(
        "CWFID split into runs of consecutive images (train, then early stopping, then test: "
        "{fr}), one image left out at each boundary, so no test image has a neighbour in "
        "training (the official split interleaves neighbouring images)."
    ),
    ids=lambda data: [f"cwfid-{i:03d}" for i in cwfid.image_ids(data)],
    tiles=lambda data, ids, tile, overlap, scale, plant_min: cwfid.load_tiles(
        data, [_cwfid_num(i) for i in ids], tile, overlap, plant_min=plant_min
    ),
    pairs=lambda data, ids, scale: (
        (cwfid.read_image(data, n), cwfid.read_mask(data, n)) for n in map(_cwfid_num, ids)
    ),
)

CARROT_WEED = Published(
    name="carrot_weed",
    title="Carrot-Weed",
    bundle="khet-rgb-carrotweed",
    bands=carrot_weed.BANDS,
    crops=("carrot",),
    licence=carrot_weed.LICENCE,
    gsd_m=0.0002,
    default_scale=0.5,
    index="ExG",
    images_per_side=1,
    split_note=(
        "Carrot-Weed has no official split; its photos were taken one after another along a "
        "strip, so the sides are runs of consecutive photos ({fr}), with one photo left out at "
        "each boundary: no test photo has a neighbour in training."
    ),
    ids=lambda data: carrot_weed.image_ids(data),
    tiles=lambda data, ids, tile, overlap, scale, plant_min: carrot_weed.load_tiles(
        data, ids, tile, overlap, scale, plant_min=plant_min
    ),
    pairs=lambda data, ids, scale: (
        (carrot_weed.read_image(data, s, scale), carrot_weed.read_mask(data, s, scale)) for s in ids
    ),
)

PUBLISHED: dict[str, Published] = {d.name: d for d in (CWFID, CARROT_WEED)}
