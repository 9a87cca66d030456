"""What a model's crop/weed split is worth on a crop it did not learn: khet-rgb-uav (potato) on
the Carrot-Weed photos brought to drone scale. Why Khet does not use a model on a field whose
stated crop it did not learn (vision/crops.py).

    python bench/other_crop.py [--data ../shared/data/carrot_weed] [--scale 12]

Each of the 31 photos (about 0.2 mm per pixel, an estimate) is averaged down by `--scale`
(12: 2.4 mm, the model's lowest validated GSD) and analysed as `analyze()` reads an image (the
same reading, tiling and resampling to the model's 6 mm), then scored per pixel against its
labels (carrot, weed, soil) at the labels' resolution. Prints precision / recall / F1 per class,
plant against soil, and the share of carrot pixels painted weed: what a farmer would spray.
Carrot-Weed is for non-commercial use: it is read from ../shared, never copied into the repo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

BUNDLES = Path(__file__).resolve().parent.parent / "models" / "bundles"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/carrot_weed")
    )
    ap.add_argument("--scale", type=int, default=12, help="averaged down by this factor")
    ap.add_argument("--model", default=str(BUNDLES / "khet-rgb-uav.onnx"))
    args = ap.parse_args()

    from khet.datasets import carrot_weed as cw
    from khet.datasets.registry import CARROT_WEED
    from khet.models.segment import predict
    from khet.vision.bundle import Bundle

    root = Path(args.data)
    bundle = Bundle(Path(args.model), threads=0).load()
    gsd = CARROT_WEED.gsd_m * args.scale
    conf = np.zeros((3, 3), np.int64)  # labels x predictions: soil, crop, weed
    stems = cw.image_ids(root)
    for s in stems:
        img, mask = cw.read_image(root, s), cw.read_mask(root, s)
        small = cv2.resize(
            img, None, fx=1 / args.scale, fy=1 / args.scale, interpolation=cv2.INTER_AREA
        )
        pred, _ = predict(bundle, small, gsd)
        h, w = mask.shape
        ys = np.minimum(((np.arange(h) + 0.5) * pred.shape[0] / h).astype(int), pred.shape[0] - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * pred.shape[1] / w).astype(int), pred.shape[1] - 1)
        p = pred[np.ix_(ys, xs)].astype(np.int64)
        conf += np.bincount(mask.ravel().astype(np.int64) * 3 + p.ravel(), minlength=9).reshape(
            3, 3
        )
    info = bundle.info
    print(
        f"{info.name} {info.version} (learned {', '.join(info.crops) or 'no stated crop'}) on "
        f"{len(stems)} Carrot-Weed photos at {gsd * 1000:.1f} mm per pixel (1/{args.scale})"
    )
    for k, name in enumerate(("soil", "crop (carrot)", "weed")):
        tp = conf[k, k]
        prec, rec = tp / max(conf[:, k].sum(), 1), tp / max(conf[k].sum(), 1)
        f1 = 2 * prec * rec / max(prec + rec, 1e-9)
        print(f"  {name:14s} precision {prec:.2f}  recall {rec:.2f}  F1 {f1:.2f}")
    hit, truth, said = conf[1:, 1:].sum(), conf[1:, :].sum(), conf[:, 1:].sum()
    print(f"  plants vs soil precision {hit / said:.2f}  recall {hit / truth:.2f}")
    print(f"  carrot pixels painted weed: {conf[1, 2] / conf[1].sum():.0%}")


if __name__ == "__main__":
    main()
