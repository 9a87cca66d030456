"""The crop-row method against real labels: uav_potato's tiles put side by side and averaged to
1 and 2 cm per pixel (survey GSD), rows found, on-row vegetation called crop and the rest weed.

    python bench/rows_potato.py [--data ../shared/data/uav_potato]

Prints, per GSD: the rows found (spacing, direction, share of the field), weed cover (share of the
area) from the rows against the labels for the whole mosaic and per tile (mean absolute error),
and pixel precision / recall of weed and crop. The 150 tiles are cut from one orthomosaic but not
side by side, so the rows jump at tile edges: the method finds the phase of the rows every ~10 m,
coarser than a tile, and this is a harsh test of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/uav_potato")
    )
    ap.add_argument(
        "--gsd", nargs="+", type=float, default=[0.01, 0.02], help="GSDs in metres (0.003: native)"
    )
    args = ap.parse_args()

    from khet.datasets import labelme
    from khet.vision import indices as vi
    from khet.vision import rows
    from rasterio.windows import Window

    native, tile = 0.003, 640
    items = labelme.find_images(Path(args.data))
    pos = {i.stem: tuple(int(v) for v in i.stem.split("_")[1:]) for i in items}
    nr, nc = max(p[0] for p in pos.values()) + 1, max(p[1] for p in pos.values()) + 1
    img = np.zeros((nr * tile, nc * tile, 3), np.uint8)
    lab = np.zeros((nr * tile, nc * tile), np.uint8)
    for it in items:
        r, c = pos[it.stem]
        im, m = labelme.load(it, {"potato": "crop", "weed": "weed"})
        img[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = im
        lab[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = m
    print(
        f"{len(items)} tiles, {nr} x {nc}; labels: weed {np.mean(lab == 2):.4f}, crop {np.mean(lab == 1):.4f}"
    )
    for gsd in args.gsd:
        f = native / gsd
        h, w = round(img.shape[0] * f), round(img.shape[1] * f)
        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        data = np.moveaxis(small, -1, 0)
        bands = ["red", "green", "blue"]
        veg = vi.Vegetation.fit(data, None, bands)

        def read(win: Window, zoom: float, data=data) -> tuple[np.ndarray, np.ndarray]:
            z = (
                cv2.resize(
                    np.moveaxis(data, 0, -1), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA
                )
                if zoom != 1
                else np.moveaxis(data, 0, -1)
            )
            y0, x0 = int(win.row_off), int(win.col_off)
            block = z[y0 : y0 + int(win.height), x0 : x0 + int(win.width)]
            return np.moveaxis(block, -1, 0), np.ones(block.shape[:2], bool)

        found = rows.find(read, w, h, gsd, veg)
        if isinstance(found, rows.NoRows):
            print(f"{gsd * 1000:.0f} mm: no rows ({found.reason})")
            continue
        where = found.label(0, 0, h, w)
        plants = veg.plants(data, None)
        pred = np.zeros((h, w), np.uint8)
        pred[plants & (where == rows.ON)] = 1
        pred[plants & (where != rows.ON)] = 2
        # Labels on the coarse grid: each coarse pixel takes the most frequent label beneath it.
        truth = np.stack(
            [
                cv2.resize((lab == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                for k in range(3)
            ]
        ).argmax(0)
        weed_l = cv2.resize((lab == 2).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        per_tile = []
        tp = tile * f
        for r in range(nr):
            for c in range(nc):
                sl = (
                    slice(round(r * tp), round((r + 1) * tp)),
                    slice(round(c * tp), round((c + 1) * tp)),
                )
                per_tile.append(abs(float((pred[sl] == 2).mean()) - float(weed_l[sl].mean())))
        scores = []
        for k, n in ((1, "crop"), (2, "weed")):
            tp_ = float(((pred == k) & (truth == k)).sum())
            p = tp_ / max(float((pred == k).sum()), 1)
            rc = tp_ / max(float((truth == k).sum()), 1)
            scores.append(f"{n} P {p:.2f} R {rc:.2f}")
        print(
            f"{gsd * 1000:.0f} mm: rows {found.describe()}; weed cover rows {np.mean(pred == 2):.4f} vs "
            f"labels {weed_l.mean():.4f}; per-tile MAE {np.mean(per_tile):.4f}; "
            + ", ".join(scores)
        )


if __name__ == "__main__":
    main()
