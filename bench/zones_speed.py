"""What zones and prescriptions cost on a large map: a results folder of N x N map cells (a
field of patchy vigour with scattered weed patches, 0.25 m cells in UTM), then `make_zones`,
`variable_rate` and `spot_spray`, each timed, with the process's peak memory.

    .venv/bin/python bench/zones_speed.py [--cells 2048]

2048 x 2048 cells of 0.25 m is a 26 ha field mapped at a quarter of a 1 m row spacing. The map
is made in code (the figures are about the zone and export code, not the analysis).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_map(folder: Path, n: int, seed: int = 0) -> None:
    import cv2
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    # Vigour: smooth large-scale patches plus noise; weeds: a few hundred blobs.
    base = cv2.resize(rng.random((8, 8)).astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    ndvi = (0.3 + 0.4 * base + rng.normal(0, 0.05, (n, n))).astype(np.float32)
    classes = np.where(ndvi > 0.45, 1, 0).astype(np.uint8)  # crop / soil
    for _ in range(400):
        y, x = rng.integers(0, n, 2)
        cv2.circle(classes, (int(x), int(y)), int(rng.integers(1, 8)), 2, -1)  # weed
    t = Affine(0.25, 0, 500000, 0, -0.25, 3500000)
    prof = dict(driver="GTiff", width=n, height=n, count=1, crs="EPSG:32643", transform=t)
    (folder / "indices").mkdir(parents=True)
    with rasterio.open(folder / "classes.tif", "w", dtype="uint8", nodata=255, **prof) as d:
        d.write(classes, 1)
    with rasterio.open(folder / "indices" / "ndvi.tif", "w", dtype="float32", **prof) as d:
        d.write(ndvi, 1)
    summary = {
        "schema_version": 2,
        "input": {"width": n, "height": n, "bands": ["red", "nir"], "georeference": "crs"},
        "area_unit": "ha",
        "classes": [
            {"name": "soil", "color": "#8b6b4a"},
            {"name": "crop", "color": "#2e9e44"},
            {"name": "weed", "color": "#e0452b"},
        ],
        "vigour": {"index": "ndvi"},
        "indices": {"ndvi": {"title": "NDVI"}},
        "layers": {"classes": {"method": "model"}},
        "created": "2026-01-01T00:00:00+00:00",
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=2048)
    args = ap.parse_args()
    from khet.vision import prescription as rx

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "map"
        make_map(folder, args.cells)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for what, call in (
            ("zones (auto count)", lambda: rx.make_zones(folder)),
            ("zones (4)", lambda: rx.make_zones(folder, n_zones=4)),
            ("rate", lambda: rx.variable_rate(folder, base_rate=120, adjust_pct=-20)),
            ("spot spray", lambda: rx.spot_spray(folder)),
        ):
            t = time.perf_counter()
            res = call()
            dt = time.perf_counter() - t
            extra = ""
            if res["kind"] == "zones":
                extra = f"{len(res['zones'])} zones, {res['area_ha']:.1f} ha"
            elif res["kind"] == "spot":
                extra = f"{res['polygons']} polygons, {res['sprayed_share']:.1%} sprayed"
            else:
                extra = f"total {res['total']:.0f} {res['total_unit']}"
            print(f"{what:20s} {dt:6.2f} s  {extra}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{args.cells} x {args.cells} cells; peak memory {peak:.0f} MB "
            f"({peak - rss0:+.0f} MB over the map's creation)"
        )


if __name__ == "__main__":
    main()
