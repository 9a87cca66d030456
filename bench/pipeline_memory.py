"""Peak memory of analyze() at two raster sizes, each in a fresh process, in one run.

    python bench/pipeline_memory.py [--sizes 8192 32768] [--model PATH]

Goal (issue 2): the two peaks within 10% of each other and under 500 MB.
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

from bench.common import make_orthomosaic  # noqa: E402

CHILD = """
import json, sys, time
from khet.vision.pipeline import analyze
t = time.perf_counter()
s = analyze(sys.argv[1], sys.argv[2], model=(sys.argv[3] or None))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
peak_mb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"peak_mb": peak_mb, "seconds": time.perf_counter() - t,
                  "tiles": s["tiling"]["cells_analysed"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[8192, 32768])
    ap.add_argument("--model", default="")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="khet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in args.sizes:
        raster = work / f"ortho-{size}.tif"
        if not raster.exists():
            t = time.perf_counter()
            make_orthomosaic(raster, size)
            print(
                f"made {raster.name} ({raster.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s"
            )
        r = subprocess.run(
            [sys.executable, "-c", CHILD, str(raster), str(work / f"out-{size}"), args.model],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        results[size] = json.loads(r.stdout.strip().splitlines()[-1])
        res = results[size]
        print(
            f"{size:>6} px: peak {res['peak_mb']:.0f} MB, {res['tiles']} tiles in {res['seconds']:.1f} s"
        )
    a, b = (results[s]["peak_mb"] for s in args.sizes)
    print(
        f"peak ratio {args.sizes[1]}/{args.sizes[0]}: {b / a:.3f}  (goal within 1.10, both < 500 MB)"
    )


if __name__ == "__main__":
    main()
