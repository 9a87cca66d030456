"""Images with polygon labels in LabelMe / AnyLabeling JSON: the format agronomists label in.

A folder holds images (``.jpg``, ``.png``, ``.tif``) and, beside each or in a ``labels/`` folder, a
JSON file of the same stem as LabelMe, AnyLabeling and X-AnyLabeling write it (CVAT exports it as
"LabelMe 3.0" too, via its converters)::

    {"shapes": [{"label": "potato", "shape_type": "polygon", "points": [[x, y], ...]}, ...],
     "imageHeight": 640, "imageWidth": 640}

Each label maps to a Khet class (``soil``, ``crop``, ``weed``) through a class mapping such as
``{"potato": "crop", "weed": "weed"}``; a label the mapping does not name is an error, so a typo
never silently becomes soil. Polygons, rectangles and circles are filled; where shapes overlap,
weed wins over crop over soil (a weed growing into a crop plant is what a farmer must act on).
Pixels outside every shape are ``background``: soil by default (the usual convention, and what
``uav_potato`` states), or ``IGNORE`` when only patches of a field were labeled.

The image is decoded without EXIF rotation (LabelMe draws on the stored pixel array), and its size
is checked against ``imageHeight`` / ``imageWidth`` when the file states them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from khet.datasets.tiles import CLASS_NAMES, CROP, IGNORE, SOIL, WEED

from khet.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: Drawing order: later classes are painted over earlier ones.
_PRIORITY = (SOIL, CROP, WEED)


@dataclass(frozen=True)
class LabeledImage:
    """One image and its label file."""

    stem: str
    image: Path
    labels: Path


def parse_class_map(text: str) -> dict[str, str]:
    """``"potato=crop,weed=weed"`` as a mapping; every target must be a Khet class."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InputError(
                f"Class mapping {part.strip()!r} has no '='; write it as label=class, "
                "e.g. potato=crop,weed=weed."
            )
        label, cls = (s.strip() for s in part.split("=", 1))
        out[label] = cls
    return check_class_map(out)


def check_class_map(mapping: Mapping[str, str]) -> dict[str, str]:
    """The label-to-class mapping, checked: every target is a Khet class and it is not empty."""
    bad = sorted({c for c in mapping.values() if c not in CLASS_NAMES})
    if bad:
        raise InputError(
            f"Class mapping names {', '.join(bad)}; map each label to one of "
            f"{', '.join(CLASS_NAMES)}."
        )
    if not mapping:
        raise InputError("The class mapping is empty: give label=class pairs.")
    return dict(mapping)


def find_images(folder: Path) -> list[LabeledImage]:
    """Images that have a label file, sorted by stem. Labels sit beside the image or in
    ``labels/``; images may sit in ``images/``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Data folder {folder} does not exist.")
    image_dirs = [d for d in (folder / "images", folder) if d.is_dir()]
    label_dirs = [d for d in (folder / "labels", folder) if d.is_dir()]
    found: dict[str, LabeledImage] = {}
    for d in image_dirs:
        for img in sorted(d.iterdir()):
            if img.suffix.lower() not in IMAGE_SUFFIXES or img.stem in found:
                continue
            for ld in label_dirs:
                lab = ld / f"{img.stem}.json"
                if lab.is_file():
                    found[img.stem] = LabeledImage(img.stem, img, lab)
                    break
    if not found:
        raise InputError(
            f"{folder} holds no images with LabelMe/AnyLabeling JSON labels "
            "(image.jpg beside image.json, or images/ and labels/)."
        )
    return [found[k] for k in sorted(found)]


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB, the stored pixel array (no EXIF rotation)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise InputError(f"Cannot read {path} as an image.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_labels(
    path: Path,
    shape: tuple[int, int],
    class_map: Mapping[str, str],
    background: str = "soil",
) -> np.ndarray:
    """H x W uint8 class indices from one LabelMe JSON file, drawn on an image of ``shape``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{Path(path).name} is not a readable LabelMe JSON file ({e}).") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise InputError(f"{Path(path).name} has no 'shapes' list: not a LabelMe JSON file.")
    h, w = shape
    stated = (doc.get("imageHeight"), doc.get("imageWidth"))
    if all(isinstance(v, int) for v in stated) and stated != (h, w):
        raise InputError(
            f"{Path(path).name} was drawn on a {stated[1]} x {stated[0]} image, but the image is "
            f"{w} x {h}."
        )
    if background not in ("soil", "ignore"):
        raise ValueError("background is 'soil' or 'ignore'")
    index = {n: i for i, n in enumerate(CLASS_NAMES)}
    layers: dict[int, np.ndarray] = {c: np.zeros((h, w), np.uint8) for c in _PRIORITY}
    for n, s in enumerate(doc["shapes"]):
        label = str(s.get("label", "")).strip() if isinstance(s, dict) else ""
        if label not in class_map:
            raise InputError(
                f"{Path(path).name}: shape {n} is labeled {label!r}, which the class mapping "
                f"does not name (it names {', '.join(sorted(class_map))})."
            )
        cls = index[class_map[label]]
        _draw(layers[cls], s, Path(path).name, n)
    mask = np.full((h, w), SOIL if background == "soil" else IGNORE, np.uint8)
    for c in _PRIORITY:
        mask[layers[c] > 0] = c
    return mask


def _draw(layer: np.ndarray, s: dict, name: str, n: int) -> None:
    kind = s.get("shape_type") or "polygon"
    try:
        pts = np.asarray(s.get("points"), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: shape {n} has unreadable points ({e}).") from e
    if not np.isfinite(pts).all():
        raise InputError(f"{name}: shape {n} has points that are not numbers.")
    if kind == "polygon" and len(pts) >= 3:
        cv2.fillPoly(layer, [np.rint(pts).astype(np.int32)], 1)
    elif kind == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = np.rint(pts).astype(int)
        cv2.rectangle(layer, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), 1, -1)
    elif kind == "circle" and len(pts) == 2:
        (cx, cy), (px, py) = pts
        r = int(round(float(np.hypot(px - cx, py - cy))))
        cv2.circle(layer, (int(round(cx)), int(round(cy))), r, 1, -1)
    elif kind in ("point", "line", "linestrip", "points"):
        return  # no area: nothing to paint
    else:
        raise InputError(
            f"{name}: shape {n} is a {kind} with {len(pts)} points; Khet reads "
            "polygons, rectangles and circles."
        )


def load(
    item: LabeledImage, class_map: Mapping[str, str], background: str = "soil"
) -> tuple[np.ndarray, np.ndarray]:
    """(image H x W x 3 uint8, mask H x W class indices) of one labeled image."""
    image = read_image(item.image)
    return image, read_labels(item.labels, image.shape[:2], class_map, background)
