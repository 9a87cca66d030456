"""CWFID loader: a tiny fixture built in code, then checks on the real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from khet.datasets import cwfid
from khet.datasets.tiles import CROP, SOIL, WEED

from khet.errors import InputError


def _fake_cwfid(root: Path, ids=(1, 2, 3)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for i in ids:
        rgb = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        rgb[:, :, 2] = rgb[:, :, 0]  # channel 2 repeats red, as in CWFID
        cv2.imwrite(str(root / "images" / f"{i:03d}_image.png"), rgb[:, :, ::-1])
        ann = np.zeros((40, 48, 3), np.uint8)  # RGB
        ann[0:10, 0:10] = (0, 255, 0)  # crop
        ann[20:30, 20:30] = (255, 0, 0)  # weed
        cv2.imwrite(str(root / "annotations" / f"{i:03d}_annotation.png"), ann[:, :, ::-1])
    (root / "train_test_split.yaml").write_text("train: [1, 2]\ntest: [2, 3]\n")
    return root


def test_fixture_reads_red_nir_and_mask(tmp_path):
    root = _fake_cwfid(tmp_path / "cwfid")
    png = cv2.imread(str(root / "images" / "001_image.png"))[:, :, ::-1]
    img = cwfid.read_image(root, 1)
    assert img.shape == (40, 48, 2)
    np.testing.assert_array_equal(img[:, :, 0], png[:, :, 0])  # red
    np.testing.assert_array_equal(img[:, :, 1], png[:, :, 1])  # nir
    m = cwfid.read_mask(root, 1)
    assert m[5, 5] == CROP and m[25, 25] == WEED and m[35, 5] == SOIL


def test_fixture_split_keeps_duplicate_in_train_only(tmp_path):
    root = _fake_cwfid(tmp_path / "cwfid")
    assert cwfid.official_split(root) == {"train": [1, 2], "test": [3]}


def test_fixture_tiles(tmp_path):
    root = _fake_cwfid(tmp_path / "cwfid")
    ts = cwfid.load_tiles(root, [1, 3], tile_size=16, overlap=0)
    assert ts.tiles.shape[1:] == (2, 16, 16)
    assert set(ts.image_ids.tolist()) == {"cwfid-001", "cwfid-003"}
    assert {CROP, WEED, SOIL} <= set(ts.labels.tolist())


def test_not_a_cwfid_folder(tmp_path):
    with pytest.raises(InputError):
        cwfid.official_split(tmp_path)


def test_real_split_has_no_image_on_both_sides(cwfid_root):
    s = cwfid.official_split(cwfid_root)
    assert not set(s["train"]) & set(s["test"])
    assert cwfid.DUPLICATE_ID in s["train"] and cwfid.DUPLICATE_ID not in s["test"]
    assert len(s["train"]) == 40 and len(s["test"]) == 20


def test_real_images_are_red_nir_false_colour(cwfid_root):
    for i in (1, 28, 60):
        png = cv2.imread(str(cwfid_root / "images" / f"{i:03d}_image.png"))
        assert np.array_equal(png[:, :, 0], png[:, :, 2])  # BGR: blue == red
        img = cwfid.read_image(cwfid_root, i)
        m = cwfid.read_mask(cwfid_root, i)
        plant = m != SOIL
        # plants are bright in NIR relative to red
        ratio = img[:, :, 1].astype(float) - img[:, :, 0]
        assert ratio[plant].mean() > ratio[~plant].mean() + 10
