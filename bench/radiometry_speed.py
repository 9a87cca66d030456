"""What radiometric calibration costs: `analyze()` of the shared MicaSense flight capture with
calibration off, with the light sensor, and with the panel capture and the light sensor.

    .venv/bin/python bench/radiometry_speed.py [--repeat 3]

Every figure comes from one run of this script and the ratios are computed within it (the best
of `--repeat` runs per configuration, in turns, so a busy machine slows each alike). Also
printed: the NDVI of the capture from raw numbers and from reflectance, for the README.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = Path(os.environ.get("KHET_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLE = SAMPLE / "micasense_rededge"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from khet.vision import radiometry
    from khet.vision.pipeline import analyze
    from khet.vision.radiometry import Options

    # The calibration step itself, timed inside each analyze() (scene.py calls it through the
    # module, so wrapping the module's function times exactly that call).
    spent: list[float] = []
    calibrate = radiometry.calibrate

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return calibrate(*a, **kw)
        finally:
            spent.append(time.perf_counter() - t0)

    radiometry.calibrate = timed

    configs = {
        "none": Options(method="none"),
        "dls": Options(method="dls"),
        "panel+dls": Options(panel=(SAMPLE / "panel",), method="panel+dls"),
    }
    best = {k: float("inf") for k in configs}
    step = {k: float("inf") for k in configs}
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for name, opts in configs.items():
                spent.clear()
                t0 = time.perf_counter()
                summaries[name] = analyze(SAMPLE / "flight", Path(tmp) / name, calibration=opts)
                best[name] = min(best[name], time.perf_counter() - t0)
                step[name] = min(step[name], sum(spent))
    print(f"analyze() of the 1280 x 960 px 5-band flight capture, best of {args.repeat}:")
    for name, t in best.items():
        print(
            f"  {name:10s} analyze {t:5.2f} s, of which calibration {step[name]:5.3f} s "
            f"({step[name] / t:.1%})"
        )
    print("NDVI over the capture:")
    for name, s in summaries.items():
        n = s["indices"]["ndvi"]
        print(
            f"  {name:10s} mean {n['mean']:.3f}  median {n['median']:.3f}  "
            f"p10 {n.get('p10', float('nan')):.3f}  p90 {n.get('p90', float('nan')):.3f}"
        )


if __name__ == "__main__":
    main()
