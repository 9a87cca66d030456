"""Carrot-Weed (Lameski et al., 2017): RGB phone photos of carrot seedlings and weeds.

31 top-down 3264 x 2448 JPEGs under variable light, with masks ``masks/IMG_N_mask.png``:
0 soil, 1 weed, 2 carrot. 30 of the 31 JPEGs carry EXIF Orientation=3 (rotate 180 degrees).
Measured here (and checked by a test on the real data): the masks match the EXIF-*oriented*
image, not the raw pixel array: plant pixels by an excess-green threshold overlap the mask with
IoU 0.85-0.93 after applying the orientation and 0.00-0.16 without it. So the raw array is
decoded (``IMREAD_IGNORE_ORIENTATION``, independent of the decoder's EXIF handling) and the EXIF
orientation is then applied explicitly. There is no official split (see ``splits.py``).
Licence: free for non-commercial use; cite Lameski et al., ICT Innovations 2017.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from khet.datasets.tiles import CROP, SOIL, WEED, TileSet, cut_tiles

from khet.errors import InputError

BANDS: tuple[str, ...] = ("red", "green", "blue")
LICENCE = (
    "Carrot-Weed (Lameski, Zdravevski, Trajkovik, Kulakov, 'Weed detection dataset with RGB "
    "images taken under variable light conditions', ICT Innovations 2017): free for "
    "non-commercial use only."
)
#: mask value -> Khet class index
_REMAP = np.array([SOIL, WEED, CROP] + [SOIL] * 253, dtype=np.uint8)


def _check(root: Path) -> Path:
    root = Path(root)
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise InputError(f"{root} is not the Carrot-Weed folder (expected images/ and masks/).")
    return root


def image_ids(root: Path) -> list[str]:
    """Image stems (``IMG_3438``...) that have a mask."""
    root = _check(root)
    return sorted(
        p.stem
        for p in (root / "images").glob("*.JPG")
        if (root / "masks" / f"{p.stem}_mask.png").is_file()
    )


def exif_orientation(path: Path) -> int:
    """The EXIF Orientation tag (1 when absent)."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.getexif().get(0x0112, 1) or 1)


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """The array as a viewer shows it for EXIF ``orientation`` (1-8)."""
    ops = {
        1: lambda x: x,
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(a))


def read_image(root: Path, stem: str, scale: float = 1.0) -> np.ndarray:
    """H x W x 3 uint8 RGB, EXIF orientation applied (the frame the masks were drawn in)."""
    path = Path(root) / "images" / f"{stem}.JPG"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise InputError(f"Cannot read {path}.")
    bgr = apply_orientation(bgr, exif_orientation(path))
    if scale != 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(root: Path, stem: str, scale: float = 1.0) -> np.ndarray:
    """H x W uint8 class indices (SOIL, CROP, WEED)."""
    path = Path(root) / "masks" / f"{stem}_mask.png"
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if m is None:
        raise InputError(f"Cannot read {path}.")
    if scale != 1.0:
        m = cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return _REMAP[m]


def load_tiles(
    root: Path,
    stems: list[str],
    tile_size: int = 128,
    overlap: int = 32,
    scale: float = 1.0,
    **rule: float,
) -> TileSet:
    """Labeled tiles of the given images, optionally resampled by ``scale`` first."""
    root = _check(root)
    parts = [
        cut_tiles(
            read_image(root, s, scale),
            read_mask(root, s, scale),
            tile_size,
            overlap,
            image_id=s,
            bands=BANDS,
            **rule,
        )
        for s in stems
    ]
    return TileSet.concat(parts)
