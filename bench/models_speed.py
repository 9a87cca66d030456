"""fp32 vs static INT8 speed of the shipped bundles, measured in one run on this CPU.

    python bench/models_speed.py [--threads 2] [--seconds 5]

Calibrates INT8 on real tiles from ../shared/data (the same way `khet train` does), then times
both with ONNX Runtime at batch 64 and prints tiles/s and the int8/fp32 ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from khet.datasets import carrot_weed, cwfid
from khet.models.evaluate import onnx_session, tiles_per_second
from khet.models.export import quantize_int8

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
BUNDLES = ROOT / "models" / "bundles"


def _tiles(name: str) -> np.ndarray:
    if name == "khet-rednir-cwfid":
        return cwfid.load_tiles(DATA / "cwfid", [2, 5, 6, 7]).tiles
    return carrot_weed.load_tiles(DATA / "carrot_weed", ["IMG_3438", "IMG_3439"], scale=0.5).tiles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    for path in sorted(BUNDLES.glob("*.onnx")):
        tiles = _tiles(path.stem)
        with tempfile.TemporaryDirectory() as d:
            q = quantize_int8(path, Path(d) / "q.onnx", tiles[:512])
            f32 = tiles_per_second(onnx_session(path, a.threads), tiles, seconds=a.seconds)
            i8 = tiles_per_second(onnx_session(q, a.threads), tiles, seconds=a.seconds)
        print(
            f"{path.stem}: fp32 {f32:.0f} tiles/s, int8 {i8:.0f} tiles/s, int8/fp32 {i8 / f32:.2f}"
        )


if __name__ == "__main__":
    main()
