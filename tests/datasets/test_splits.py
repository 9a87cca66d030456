"""Splits by image: no image on two sides, fixed seeds, strata spread over the sides."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from khet.datasets import carrot_weed, splits
from khet.datasets.tiles import CROP, SOIL, WEED, TileSet

from khet.errors import InputError


def test_disjoint_complete_and_proportional():
    ids = [f"img{i}" for i in range(31)]
    s = splits.split_images(ids, {"train": 0.6, "val": 0.15, "test": 0.25}, seed=3)
    splits.assert_disjoint(s)
    assert sorted(sum(s.values(), [])) == sorted(ids)
    assert [len(s[k]) for k in ("train", "val", "test")] in ([19, 5, 7], [18, 5, 8], [19, 4, 8])


def test_fixed_seed_is_reproducible_and_seed_matters():
    ids = [str(i) for i in range(20)]
    fr = {"train": 0.7, "test": 0.3}
    assert splits.split_images(ids, fr, 1) == splits.split_images(ids, fr, 1)
    assert splits.split_images(ids, fr, 1) != splits.split_images(ids, fr, 2)


def test_strata_are_spread():
    ids = [str(i) for i in range(12)]
    strata = {i: ("a" if int(i) < 6 else "b") for i in ids}
    s = splits.split_images(ids, {"train": 0.5, "test": 0.5}, 0, strata)
    for side in s.values():
        assert sum(strata[i] == "a" for i in side) == 3


def test_every_side_gets_an_image():
    s = splits.split_images(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05}, 0)
    assert all(len(v) == 1 for v in s.values())


def test_assert_disjoint_catches_overlap():
    with pytest.raises(ValueError):
        splits.assert_disjoint({"train": ["a", "b"], "test": ["b"]})


def test_image_strata_from_tiles():
    labels = np.array([CROP, CROP, SOIL, WEED, WEED, WEED, SOIL, SOIL, CROP, WEED])
    ids = np.array(list("aaabbbccdd"))
    ts = TileSet(
        np.zeros((10, 1, 2, 2), np.uint8),
        labels,
        ids,
        np.zeros(10, np.float32),
        np.zeros((10, 2), np.int32),
    )
    st = splits.image_strata(ts, bins=2)
    assert st["b"] != st["a"]  # all-weed vs all-crop images fall in different strata


def test_real_carrot_weed_split_keeps_images_whole(carrot_weed_root):
    stems = carrot_weed.image_ids(carrot_weed_root)
    assert len(stems) == 31
    s = splits.split_images(stems, {"train": 0.6, "val": 0.15, "test": 0.25}, seed=0)
    splits.assert_disjoint(s)
    assert not set(s["train"]) & set(s["test"])


def test_contiguous_blocks_keep_neighbouring_images_on_one_side():
    from khet.datasets.splits import contiguous_blocks

    ids = [f"IMG_{n}" for n in range(3438, 3469)]  # Carrot-Weed's 31 photos along one strip
    s = contiguous_blocks(ids, {"train": 0.6, "val": 0.15, "test": 0.25}, gap=1)
    assert sum(len(v) for v in s.values()) == len(ids) - 2
    pos = {i: k for k, v in s.items() for i in v}
    for a, b in itertools.pairwise(ids):  # no two consecutive photos on two different sides
        if a in pos and b in pos:
            assert pos[a] == pos[b], (a, b)
    assert len(s["test"]) == 7 and s["test"][-1] == "IMG_3468"


def test_too_few_images_for_runs_is_said_plainly():
    with pytest.raises(InputError, match="4 images are too few"):
        splits.contiguous_blocks(["a", "b", "c", "d"], {"train": 0.6, "val": 0.15, "test": 0.25})
