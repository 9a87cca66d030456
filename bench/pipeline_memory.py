"""Peak memory of analyze() at two raster sizes, each in a fresh process, in one run.

    python bench/pipeline_memory.py [--sizes 8192 32768] [--model PATH]

Goal: the two peaks within 10 % of each other and under 500 MB, for the shipped drone model
(reading a 3 mm orthomosaic of real tiles at its own 6 mm: every window resampled while read)
and for the crop-row method (the same raster declared 2 cm: rows found in a first pass over it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import declared_at, make_orthomosaic  # noqa: E402

CHILD = """
import json, sys, time
from khet.vision.pipeline import analyze
t = time.perf_counter()
s = analyze(sys.argv[1], sys.argv[2], model=(sys.argv[3] or None))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
peak_mb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"peak_mb": peak_mb, "seconds": time.perf_counter() - t,
                  "cells": s["tiling"]["cells_analysed"], "method": s["method"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[8192, 32768])
    ap.add_argument("--methods", nargs="+", default=["model", "rows"], choices=["model", "rows"])
    ap.add_argument("--model", default=str(ROOT / "models" / "bundles" / "khet-rgb-uav.onnx"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="khet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = {"model": ("drone model", args.model, ""), "rows": ("crop rows", "", "0.02")}
    for label, model, gsd in (runs[m] for m in args.methods):
        results = {}
        for size in args.sizes:
            raster = work / f"ortho-{size}-deflate.tif"
            if not raster.exists():
                t = time.perf_counter()
                make_orthomosaic(raster, size, "deflate")
                print(
                    f"made {raster.name} ({raster.stat().st_size / 1e6:.0f} MB) in "
                    f"{time.perf_counter() - t:.0f} s"
                )
            # The crop-row run reads a copy georeferenced at 2 cm (the same pixels): a stated
            # GSD does not override a georeferenced raster's own.
            source = declared_at(raster, float(gsd)) if gsd else raster
            r = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(source),
                    str(work / f"out-{size}-{gsd}"),
                    model,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            results[size] = res = json.loads(r.stdout.strip().splitlines()[-1])
            print(
                f"[{label}] {size:>6} px: method {res['method']}, peak {res['peak_mb']:.0f} MB, "
                f"{res['cells']} cells in {res['seconds']:.1f} s"
            )
        a, b = (results[s]["peak_mb"] for s in args.sizes)
        print(
            f"[{label}] peak ratio {args.sizes[1]}/{args.sizes[0]}: {b / a:.3f}  "
            "(goal within 1.10, both < 500 MB)"
        )


if __name__ == "__main__":
    main()
