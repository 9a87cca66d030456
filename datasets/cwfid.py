"""CWFID: the Crop/Weed Field Image Dataset (Haug & Ostermann, 2014), red + NIR false colour.

60 top-down 1296 x 966 PNGs of an organic carrot field from a field robot. Channel 0 is red,
channel 1 is near-infrared and channel 2 repeats red, so a model takes two bands: red, nir.
Annotations colour weed red (255, 0, 0) and crop green (0, 255, 0); everything else is soil.

The official split lists image 28 in both train and test; Khet keeps it in train only, so no
image is on both sides. Licence: non-commercial research only; cite Haug & Ostermann, CVPPP 2014.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from khet.datasets.tiles import CROP, SOIL, WEED, TileSet, cut_tiles

from khet.errors import InputError

BANDS: tuple[str, ...] = ("red", "nir")
#: Both sides list id 28; it stays in train.
DUPLICATE_ID = 28
LICENCE = (
    "CWFID (Haug & Ostermann, 'A Crop/Weed Field Image Dataset for the Evaluation of Computer "
    "Vision Based Precision Agriculture Tasks', CVPPP/ECCV workshops 2014): non-commercial "
    "research only."
)


def _check(root: Path) -> Path:
    root = Path(root)
    if not (root / "train_test_split.yaml").is_file() or not (root / "images").is_dir():
        raise InputError(
            f"{root} is not the CWFID folder (expected images/, annotations/ and "
            "train_test_split.yaml)."
        )
    return root


def official_split(root: Path) -> dict[str, list[int]]:
    """The official train/test ids, with the duplicated id 28 kept in train only."""
    root = _check(root)
    with open(root / "train_test_split.yaml") as f:
        split = yaml.safe_load(f)
    train = sorted(int(i) for i in split["train"])
    test = sorted(int(i) for i in split["test"] if int(i) not in set(train))
    return {"train": train, "test": test}


def read_image(root: Path, image_id: int) -> np.ndarray:
    """H x W x 2 uint8: red, nir."""
    path = Path(root) / "images" / f"{image_id:03d}_image.png"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"Cannot read {path}.")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb[:, :, :2])


def read_mask(root: Path, image_id: int) -> np.ndarray:
    """H x W uint8 class indices (SOIL, CROP, WEED) from the colour annotation."""
    path = Path(root) / "annotations" / f"{image_id:03d}_annotation.png"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"Cannot read {path}.")
    b, g, r = bgr[:, :, 0], bgr[:, :, 1], bgr[:, :, 2]
    mask = np.full(bgr.shape[:2], SOIL, dtype=np.uint8)
    mask[(g > 127) & (r <= 127) & (b <= 127)] = CROP
    mask[(r > 127) & (g <= 127) & (b <= 127)] = WEED
    return mask


def image_ids(root: Path) -> list[int]:
    """The image numbers of a CWFID copy, sorted."""
    root = _check(root)
    return sorted(int(p.name[:3]) for p in (root / "images").glob("*_image.png"))


def load_tiles(
    root: Path, ids: list[int], tile_size: int = 128, overlap: int = 32, **rule: float
) -> TileSet:
    """Labeled tiles of the given images; ``image_ids`` of the tiles are "cwfid-NNN"."""
    root = _check(root)
    parts = [
        cut_tiles(
            read_image(root, i),
            read_mask(root, i),
            tile_size,
            overlap,
            image_id=f"cwfid-{i:03d}",
            bands=BANDS,
            **rule,
        )
        for i in ids
    ]
    return TileSet.concat(parts)
