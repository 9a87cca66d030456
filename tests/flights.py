"""Real flights for the mosaic tests: subsets of the Seneca survey (../shared/data/seneca_flight).

The subsets are the frames nearest the flight's centre (where two roads cross), so they overlap
and show roads, field edges and buildings; 24 frames mosaic in about half a minute on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SENECA_24 = (
    "IMG_0471 IMG_0472 IMG_0475 IMG_0476 IMG_0477 IMG_0478 IMG_0479 IMG_0483 IMG_0512 IMG_0513 "
    "IMG_0545 IMG_0546 IMG_0550 IMG_0551 IMG_0552 IMG_0553 IMG_0554 IMG_0561 IMG_0594 IMG_0595 "
    "IMG_0596 IMG_0609 IMG_0610 IMG_0611"
).split()
SENECA_8 = "IMG_0471 IMG_0476 IMG_0477 IMG_0545 IMG_0551 IMG_0552 IMG_0553 IMG_0610".split()


def seneca_images(shared_data: Path) -> Path:
    return shared_data / "seneca_flight" / "images"


def seneca_frames(shared_data: Path, dest: Path, names: list[str]) -> Path:
    """A folder holding (links to) the named frames, as a card would. The links point into the
    shared data: a test that changes a frame replaces its link, never writes through it."""
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        os.symlink(seneca_images(shared_data) / f"{n}.jpg", dest / f"{n}.jpg")
    return dest


# Band k of each synthetic capture is shifted by these (dx, dy) pixels, as separate lenses are.
BAND_SHIFTS = ((0, 0), (6, -4), (-5, 3))


def multispectral_flight(shared_data: Path, dest: Path, names: list[str]) -> Path:
    """Real frames split into one 16-bit TIFF per band (IMG_n_1.tif ... _3.tif), each band
    shifted a few pixels as a multi-lens camera's are, carrying the frame's EXIF (GPS)."""
    import cv2
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        with Image.open(seneca_images(shared_data) / f"{n}.jpg") as src:
            exif = src.getexif()
            rgb = np.asarray(src.convert("RGB"))
        for k, (dx, dy) in enumerate(BAND_SHIFTS):
            band = rgb[:, :, k].astype(np.float32) * 200.0
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            moved = cv2.warpAffine(band, m, band.shape[::-1], borderMode=cv2.BORDER_REFLECT)
            Image.fromarray(moved.astype(np.uint16)).save(dest / f"{n}_{k + 1}.tif", exif=exif)
    return dest


def pose_from_summary(d: dict):
    """A frame's pose as `khet mosaic` reports it (local metres; see `local_origin`)."""
    import pycolmap
    from khet.vision.sfm import Pose

    cam = d["camera"]
    camera = pycolmap.Camera.create_from_model_name(
        0, cam["model"], 1.0, cam["width"], cam["height"]
    )
    camera.params = [float(v) for v in cam["params"]]
    m = np.array(d["cam_from_world"], np.float64)
    return Pose(m[:9].reshape(3, 3), m[9:12], camera, d["how"])
