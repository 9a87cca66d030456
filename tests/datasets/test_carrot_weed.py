"""Carrot-Weed loader: EXIF orientation, mask remapping, and the real images' alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from khet.datasets import carrot_weed
from khet.datasets.tiles import CROP, SOIL, WEED
from PIL import Image


def _fake(root: Path, orientation: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = 48, 64
    viewed = np.full((h, w, 3), (120, 90, 60), np.uint8)  # as a viewer shows it
    viewed[:16, :16] = (40, 200, 40)  # a green plant at the top-left, as the mask says
    raw = viewed[::-1, ::-1] if orientation == 3 else viewed  # what the camera stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(raw)).save(
        root / "images" / "IMG_1.JPG", exif=exif, quality=100
    )
    mask = np.zeros((h, w), np.uint8)
    mask[:16, :16] = 2  # carrot
    mask[32:, 48:] = 1  # weed
    Image.fromarray(mask).save(root / "masks" / "IMG_1_mask.png")
    return root


@pytest.mark.parametrize("orientation", [1, 3])
def test_orientation_applied_so_image_matches_mask(tmp_path, orientation):
    root = _fake(tmp_path / "cw", orientation)
    assert carrot_weed.exif_orientation(root / "images" / "IMG_1.JPG") == orientation
    img = carrot_weed.read_image(root, "IMG_1")
    assert img.shape == (48, 64, 3)
    assert img[:16, :16, 1].mean() > 150 and img[:16, :16, 0].mean() < 100  # green top-left


def test_mask_remap_and_scale(tmp_path):
    root = _fake(tmp_path / "cw")
    m = carrot_weed.read_mask(root, "IMG_1")
    assert m[0, 0] == CROP and m[-1, -1] == WEED and m[20, 20] == SOIL
    assert carrot_weed.read_mask(root, "IMG_1", 0.5).shape == (24, 32)
    assert carrot_weed.read_image(root, "IMG_1", 0.5).shape == (24, 32, 3)
    ts = carrot_weed.load_tiles(root, ["IMG_1"], tile_size=16, overlap=0)
    assert ts.tiles.shape[1] == 3 and CROP in ts.labels and WEED in ts.labels


def test_all_eight_orientations_invert():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for o in range(1, 9):
        out = carrot_weed.apply_orientation(a, o)
        assert sorted(out.ravel()) == sorted(a.ravel())


def test_real_images_match_masks_after_orientation(carrot_weed_root):
    """The masks follow the EXIF-oriented image (IoU of an ExG threshold with the mask)."""
    for stem in ("IMG_3438", "IMG_3449", "IMG_3468"):
        img = carrot_weed.read_image(carrot_weed_root, stem, 0.25).astype(np.float32)
        m = carrot_weed.read_mask(carrot_weed_root, stem, 0.25) != SOIL
        exg = 2 * img[..., 1] - img[..., 0] - img[..., 2]
        plant = exg > 20
        iou = (plant & m).sum() / (plant | m).sum()
        assert iou > 0.7, (stem, iou)
        flipped = plant[::-1, ::-1]
        assert iou > 2 * (flipped & m).sum() / (flipped | m).sum()


def test_real_listing(carrot_weed_root):
    stems = carrot_weed.image_ids(carrot_weed_root)
    assert len(stems) == 31 and stems[0] == "IMG_3438"
