"""What a segmentation network's output grid alone costs: uav_potato's test labels averaged to a
coarser grid (as soft class shares) and brought back bilinearly, then scored against themselves.

    python bench/seg_output_grid.py [--data ../shared/data/uav_potato]

A network that paints its classes at 1/k of its input can at best do what this oracle does at
that grid. Plain LR-ASPP paints at 1/8: at the drone model's 6 mm per pixel a 4.8 cm grid, where
the perfect labels keep weed F1 0.64 (measured; 0.91 at 2.4 cm, 0.97 at 1.2 cm). That is why the
shipped model refines its scores to 1/2 (`FineLRASPP`, models/nets.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

NATIVE_GSD = 0.003  # uav_potato, metres per pixel (an estimate: see its model card)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/uav_potato")
    )
    args = ap.parse_args()

    from khet.datasets import labelme
    from khet.models import segment as sg
    from khet.models.evaluate import confusion

    data = Path(args.data)
    split, _ = sg.split_images(data, labelme.find_images(data))
    test = sg.load(data, {"potato": "crop", "weed": "weed"}, split["test"])
    print(f"{len(test)} test tiles of {data.name}; labels to a grid and back, scored on themselves")
    for f in (2, 4, 8, 16):
        conf = np.zeros((3, 3), np.int64)
        for im in test:
            h, w = im.mask.shape
            shares = np.stack([(im.mask == c).astype(np.float32) for c in range(3)], -1)
            small = cv2.resize(shares, (w // f, h // f), interpolation=cv2.INTER_AREA)
            back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).argmax(-1)
            conf += confusion(im.mask.ravel(), back.ravel())
        s = sg.pixel_scores(conf)
        grid_mm = NATIVE_GSD * f * 1000
        print(
            f"grid {grid_mm:4.0f} mm (1/{f // 2} of the model's 6 mm input): "
            f"macro-F1 {s['macro_f1']:.3f}, weed F1 {s['weed']['f1']:.3f}"
        )


if __name__ == "__main__":
    main()
