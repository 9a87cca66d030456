"""LabelMe / AnyLabeling polygon folders: the real uav_potato labels, and a user's own folder."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from khet.datasets import labelme
from khet.datasets.tiles import CROP, IGNORE, SOIL, WEED

from khet.errors import InputError

POTATO = {"potato": "crop", "weed": "weed"}


def test_uav_potato_labels_are_drawn_as_crop_and_weed(shared_data):
    folder = shared_data / "uav_potato"
    items = labelme.find_images(folder)
    assert len(items) == 150 and items[0].image.parent.name == "images"
    doc = json.loads(items[0].labels.read_text())
    image, mask = labelme.load(items[0], POTATO)
    assert image.shape == (doc["imageHeight"], doc["imageWidth"], 3)
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {SOIL, CROP, WEED}
    # Every polygon is painted with its own class (sample one point inside each polygon).
    for s in doc["shapes"]:
        pts = np.asarray(s["points"], np.float64)
        inside = np.zeros(mask.shape, np.uint8)
        cv2.fillPoly(inside, [np.rint(pts).astype(np.int32)], 1)
        want = CROP if s["label"] == "potato" else WEED
        share = (mask[inside > 0] == want).mean()
        assert share > 0.5 or want == CROP, (s["label"], share)  # weed painted over crop
    # Over the dataset (every 10th tile): potato a few percent of the ground, weed less.
    masks = [labelme.load(i, POTATO)[1] for i in items[::10]]
    crop = np.mean([(m == CROP).mean() for m in masks])
    weed = np.mean([(m == WEED).mean() for m in masks])
    assert 0.01 < crop < 0.2 and 0 < weed < crop


def _write(folder, stem, shapes, size=(40, 60)):
    h, w = size
    img = np.full((h, w, 3), (120, 90, 60), np.uint8)
    cv2.imwrite(str(folder / f"{stem}.png"), img)
    doc = {"shapes": shapes, "imageHeight": h, "imageWidth": w}
    (folder / f"{stem}.json").write_text(json.dumps(doc))


def test_a_users_own_folder_with_rectangles_circles_and_overlaps(tmp_path):
    _write(
        tmp_path,
        "a",
        [
            {"label": "maize", "shape_type": "rectangle", "points": [[10, 5], [30, 25]]},
            {"label": "grass", "shape_type": "circle", "points": [[20, 15], [24, 15]]},
            {"label": "note", "shape_type": "point", "points": [[1, 1]]},
        ],
    )
    (tmp_path / "b.png").write_bytes(b"")  # an image without labels is not a training image
    items = labelme.find_images(tmp_path)
    assert [i.stem for i in items] == ["a"]
    cmap = labelme.parse_class_map("maize=crop, grass=weed, note=soil")
    _, mask = labelme.load(items[0], cmap)
    assert mask[15, 20] == WEED  # the weed circle is painted over the crop rectangle
    assert mask[6, 11] == CROP and mask[35, 50] == SOIL
    _, patchy = labelme.load(items[0], cmap, background="ignore")
    assert patchy[35, 50] == IGNORE and patchy[6, 11] == CROP


@pytest.mark.parametrize(
    ("shapes", "cmap", "message"),
    [
        ([{"label": "potatoe", "points": [[0, 0], [5, 0], [5, 5]]}], POTATO, "'potatoe'"),
        ([{"label": "potato", "points": [[0, 0], ["x", 0], [5, 5]]}], POTATO, "unreadable"),
        ([{"label": "potato", "shape_type": "mask", "points": []}], POTATO, "mask"),
    ],
)
def test_bad_labels_are_named(tmp_path, shapes, cmap, message):
    _write(tmp_path, "a", shapes)
    with pytest.raises(InputError, match=message):
        labelme.load(labelme.find_images(tmp_path)[0], cmap)


def test_bad_class_maps_and_folders(tmp_path):
    with pytest.raises(InputError, match="no '='"):
        labelme.parse_class_map("potato:crop")
    with pytest.raises(InputError, match="one of soil, crop, weed"):
        labelme.parse_class_map("potato=plant")
    with pytest.raises(InputError, match="no images with LabelMe"):
        labelme.find_images(tmp_path)
    _write(tmp_path, "a", [], size=(40, 60))
    (tmp_path / "a.json").write_text(json.dumps({"shapes": [], "imageHeight": 41}))
    doc = json.loads((tmp_path / "a.json").read_text())
    doc["imageWidth"] = 60
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="60 x 41 image"):
        labelme.load(labelme.find_images(tmp_path)[0], POTATO)


def test_cli_says_a_bad_class_map_with_exit_code_2(tmp_path):
    _write(tmp_path, "a", [{"label": "potato", "points": [[0, 0], [5, 0], [5, 5]]}])
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "train", "--dataset", "labelme", "--data",
         str(tmp_path), "--classes", "potato=plant", "--gsd", "0.003", "-o", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "one of soil, crop, weed" in r.stderr and "Traceback" not in r.stderr
