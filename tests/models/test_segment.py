"""`khet train --dataset labelme`: a reduced run on real drone tiles (uav_potato) gives a
segmentation bundle that states its GSD range, a model card with its figures, and a bundle the
pipeline uses on drone imagery at that GSD."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from khet.vision.bundle import Bundle

TRAIN = ["tile_11_0", "tile_11_1", "tile_11_2", "tile_11_3"]
VAL = ["tile_12_0", "tile_12_1"]  # the last grid row of training tiles: early stopping
TEST = ["tile_13_0", "tile_13_1"]


@pytest.fixture(scope="module")
def small_uav(shared_data, tmp_path_factory):
    """Eight real tiles of uav_potato (links) and their split, as a user's folder."""
    src = shared_data / "uav_potato"
    folder = tmp_path_factory.mktemp("uav")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for stem in TRAIN + VAL + TEST:
        (folder / "images" / f"{stem}.jpg").symlink_to(src / "images" / f"{stem}.jpg")
        (folder / "labels" / f"{stem}.json").symlink_to(src / "labels" / f"{stem}.json")
    rows = [f"{s},train" for s in TRAIN + VAL] + [f"{s},val" for s in TEST]
    (folder / "splits.csv").write_text("tile,split\n" + "\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def trained(small_uav, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "train", "--dataset", "labelme", "--data",
         str(small_uav), "--classes", "potato=crop,weed=weed", "--gsd", "0.003",
         "--epochs", "1", "--epoch-tiles", "32", "--threads", "2", "--name", "khet-rgb-test",
         "--class-weights", "1,1.5,2", "--dice-weight", "0.5",
         "-o", str(out), "--work-dir", str(out / "work")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stderr


def test_reduced_run_gives_a_segmentation_bundle_with_its_gsd_range(trained):
    out, log = trained
    assert "4 train, 2 validation, 2 test images" in log
    b = Bundle(out / "khet-rgb-test.onnx", threads=1)
    info = b.info
    assert info.kind == "segmentation" and info.bands == ("red", "green", "blue")
    assert info.gsd_m == pytest.approx(0.006)
    assert b.outputs == {"probs", "classes", "maxprob"}  # per-pixel classes in the graph
    from khet.models.segment import FACTORS

    lo, hi = info.gsd_range_m  # validated: a little finer than the labels, to the coarsest
    assert lo == pytest.approx(0.0024) and hi == pytest.approx(0.003 * max(FACTORS))
    assert "Polygon-labeled images from" in info.training_data
    assert info.crops == ("potato",)  # the label mapped to crop: kept off other crops' fields
    x = np.zeros((2, 3, info.tile_size, info.tile_size), np.uint8)
    p = b.predict(x)  # per-pixel class probabilities
    assert p.shape[:2] == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-3)
    card = (out / "khet-rgb-test.md").read_text()
    f1 = info.metrics["macro_f1"]  # the test score at the labels' own GSD, as the card says
    row = re.search(r"^\| 1x \(3 mm\) \| ([0-9.]+) \[", card, re.M)
    assert row and abs(float(row.group(1)) - f1) < 0.0011, card
    assert "2 training, 2 early-stopping and 2 test images" not in card
    assert "4 training, 2 early-stopping and 2 test images" in card
    assert "potato, early season" not in card  # a user's data is not described as uav_potato's
    assert "- Crop: potato. The crop class means this crop only" in card
    assert "class weights soil/crop/weed (1.0, 1.5, 2.0), plus 0.5 x the soft Dice loss" in card
    json.dumps(info.metrics)


def test_evaluating_it_again_keeps_how_it_was_trained(trained, small_uav, tmp_path):
    """`khet evaluate` rewrites the card from the test images; the training facts (epochs, best
    epoch, time) come from the bundle itself when the training report is not beside it, as for a
    shipped bundle. The card says where the weed errors lie (near labelled outlines or not)."""
    out, _ = trained
    bundle = tmp_path / "khet-rgb-test.onnx"
    bundle.write_bytes((out / "khet-rgb-test.onnx").read_bytes())
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "evaluate", "--dataset", "labelme", "--data",
         str(small_uav), "--classes", "potato=crop,weed=weed", "--gsd", "0.003",
         "--threads", "2", str(bundle)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    card = (tmp_path / "khet-rgb-test.md").read_text()
    trained_card = (out / "khet-rgb-test.md").read_text()
    training = re.search(r"^- 1 epochs of 32 random .*$", card, re.M)
    assert training and training.group(0) in trained_card  # not SegConfig's defaults
    best = re.search(r"Best validation epoch \d+;", trained_card)
    assert best and best.group(0) in card
    report = json.loads((tmp_path / "khet-rgb-test.json").read_text())
    wo = report["1x"]["weed_outlines"]
    assert wo["band_m"] == pytest.approx(0.01)
    assert 0 <= wo["errors_in_band"] <= wo["errors"]
    assert 0 < wo["band_share_of_pixels"] < 1
    assert "### Where the weed errors are" in card


def test_the_pipeline_uses_it_on_drone_imagery_in_range_and_not_outside(
    trained, small_uav, tmp_path
):
    from khet.datasets import labelme
    from khet.models.segment import _write_geotiff
    from khet.vision.pipeline import analyze

    out, _ = trained
    item = labelme.find_images(small_uav)[-1]
    tif = tmp_path / "tile.tif"
    _write_geotiff(tif, labelme.read_image(item.image), 0.003)
    s = analyze(tif, tmp_path / "in", model=out / "khet-rgb-test.onnx")
    assert s["method"] == "model" and s["model"]["name"] == "khet-rgb-test"
    assert s["gsd"]["metres"] == pytest.approx(0.003)
    assert (tmp_path / "in" / "classes.tif").is_file()
    # At 3 cm the model is out of its range: asked for by name, that is a clear refusal.
    from khet.errors import InputError

    coarse = tmp_path / "coarse.tif"  # the same pixels, georeferenced at 3 cm
    _write_geotiff(coarse, labelme.read_image(item.image), 0.03)
    with pytest.raises(InputError, match=r"validated for imagery of 2\.4 mm to 1\.5 cm .* 3\.0 cm"):
        analyze(coarse, tmp_path / "out", model=out / "khet-rgb-test.onnx")


def test_soft_dice_scores_overlap_per_class_not_pixel_count():
    import torch
    from khet.models.segment import soft_dice

    y = torch.zeros(2, 3, 8, 8)
    y[:, 0] = 1
    y[:, 0, :1, :2], y[:, 2, :1, :2] = 0, 1  # a weed of 2 pixels in 64
    y[:, 0, 4:, :], y[:, 1, 4:, :] = 0, 1  # crop: half the tile
    assert float(soft_dice(y, y)) < 0.02  # perfect: no loss
    miss = y.clone()
    miss[:, 0, :1, :2], miss[:, 2, :1, :2] = 1, 0  # the weed called soil: 2 pixels of 128 wrong
    assert float(soft_dice(miss, y)) > 0.35  # yet 0.4 of the loss: weed's Dice is near 0
