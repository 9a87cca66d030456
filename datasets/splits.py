"""Splits by image: all tiles of one image fall on one side, so test scores measure new images.

Images are stratified by a label per image (e.g. which plant class dominates it) and dealt out
systematically inside each stratum after a seeded shuffle, so each side gets a similar mix.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np
from khet.datasets.tiles import CROP, WEED, TileSet

from khet.errors import InputError


def split_images(
    ids: Sequence[str],
    fractions: Mapping[str, float],
    seed: int = 0,
    strata: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Assign each image id to one side; ``fractions`` like {"train": .7, "val": .1, "test": .2}.

    Ids are ordered by stratum then by a seeded shuffle, and each goes to the side furthest below
    its quota, which spreads every stratum over the sides in proportion. Every side with a
    positive fraction gets at least one image when there are enough images.
    """
    ids = sorted(set(ids))
    names = list(fractions)
    total = float(sum(fractions.values()))
    if total <= 0 or any(f < 0 for f in fractions.values()):
        raise ValueError("fractions must be >= 0 and sum to > 0")
    share = {k: fractions[k] / total for k in names}
    rng = random.Random(seed)
    keys = {i: rng.random() for i in ids}
    strata = strata or {}
    order = sorted(ids, key=lambda i: (str(strata.get(i, "")), keys[i]))
    out: dict[str, list[str]] = {k: [] for k in names}
    # Small sides first: guarantee one image each where possible.
    need = [k for k in sorted(names, key=lambda k: share[k]) if share[k] > 0]
    for n, i in enumerate(order):
        deficit = {k: share[k] * (n + 1) - len(out[k]) for k in names}
        empty = [k for k in need if not out[k]]
        if empty and len(order) - n <= len(empty):
            side = empty[0]
        else:
            side = max(names, key=lambda k: (deficit[k], share[k]))
        out[side].append(i)
    return {k: sorted(v) for k, v in out.items()}


def image_strata(tiles: TileSet, bins: int = 3) -> dict[str, str]:
    """A stratum per image: the weed share of its plant tiles, in ``bins`` quantile bins."""
    ids = sorted(set(tiles.image_ids.tolist()))
    share = {}
    for i in ids:
        lab = tiles.labels[tiles.image_ids == i]
        plant = int(np.sum(lab == CROP) + np.sum(lab == WEED))
        share[i] = float(np.sum(lab == WEED)) / plant if plant else -1.0
    values = np.array([share[i] for i in ids])
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if len(ids) >= bins else []
    return {i: f"w{int(np.searchsorted(edges, share[i], side='right'))}" for i in ids}


def assert_disjoint(split: Mapping[str, Sequence[str]]) -> None:
    """Raise if any image id appears on two sides."""
    seen: dict[str, str] = {}
    for side, ids in split.items():
        for i in ids:
            if i in seen and seen[i] != side:
                raise ValueError(f"image {i} is on both {seen[i]} and {side}")
            seen[i] = side


def contiguous_blocks(
    ids: Sequence[str], fractions: Mapping[str, float], gap: int = 1
) -> dict[str, list[str]]:
    """Sides as runs of consecutive images (in `ids` order), with `gap` images left out between
    neighbouring runs.

    Photos taken one after another along a strip overlap or show the same plants: interleaving
    them over train and test lets a test image be half-seen in training, and the test score
    measures memory, not the model. Here each side is one run of the strip, and the images at
    each boundary are used on neither side."""
    ids = list(ids)
    names = list(fractions)
    usable = len(ids) - gap * (len(names) - 1)
    total = float(sum(fractions.values()))
    sizes = [max(1, round(usable * fractions[k] / total)) for k in names]
    sizes[0] = usable - sum(sizes[1:])  # the first side takes the rounding
    if min(sizes) < 1:
        raise InputError(
            f"{len(ids)} images are too few to split into runs for training, early stopping "
            "and test (with one image left out at each boundary); use more images."
        )
    out: dict[str, list[str]] = {}
    i = 0
    for k, n in zip(names, sizes, strict=True):
        out[k] = sorted(ids[i : i + n])
        i += n + gap
    return out
