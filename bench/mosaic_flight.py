"""Mosaic a real flight and print what the issue asks to be measured, in one run.

    python bench/mosaic_flight.py [FOLDER] [--threads 2] [--resolution M] [--footprint-ha 15]
           [--png mosaic.png]

FOLDER defaults to ../shared/data/seneca_flight/images (167 frames, 900 x 675). The full
resolution flight (3600 x 2700) is the public repository OpenDroneMap/odm_data_seneca: check it
out somewhere and give its `images` folder (never commit it).

Each run is in a fresh process, so its peak memory (VmHWM) is the mosaic's alone. Printed:
share of frames placed (by structure from motion, by GPS and attitude), mean reprojection error,
residual between solved camera positions and GPS, seam misalignment (median and 90th percentile
over features both frames of each seam see, projected on the ground from each), covered area
against the flight's footprint, wall time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KHET_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT = SHARED / "seneca_flight" / "images"

CHILD = """
import json, sys, time
from khet.settings import Settings
from khet.vision.mosaic import mosaic
threads, resolution = int(sys.argv[3]), (float(sys.argv[4]) or None)
t = time.perf_counter()
s = mosaic(sys.argv[1], sys.argv[2], resolution=resolution, settings=Settings(threads=threads))
s["wall_seconds"] = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
s["peak_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status")
                    if l.startswith("VmHWM")) / 1024
print(json.dumps(s))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resolution", type=float, default=0.0, help="metres (default: native)")
    ap.add_argument("--footprint-ha", type=float, default=15.0, help="the flight's footprint")
    ap.add_argument("--png", type=Path, help="also save a downscaled PNG of the mosaic here")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out = Path(tmp) / "ortho.tif"
        cmd = [sys.executable, "-c", CHILD, str(args.folder), str(out), str(args.threads)]
        cmd.append(str(args.resolution))
        # taskset: the run gets exactly `threads` cores, as on a 2-core field computer.
        if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > args.threads:
            cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[: args.threads])
            cmd = ["taskset", "-c", cores, *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            sys.exit(res.stderr[-4000:])
        s = json.loads(res.stdout.strip().splitlines()[-1])
        if args.png:
            from khet.vision.mosaic import save_preview

            save_preview(out, args.png)
    frames = s["frames"]
    placed = s["placed_by_sfm"] + s["placed_by_gps_attitude"]
    g, seams = s["georeference_residual_m"], s["seams"]
    print(f"flight                    {args.folder} ({frames} frames)")
    print(
        f"frames placed             {placed}/{frames} = {placed / frames:.1%} "
        f"({s['placed_by_sfm']} by structure from motion, {s['placed_by_gps_attitude']} by GPS "
        f"and attitude, {s['left_out']} left out)"
    )
    print(f"mean reprojection error   {s['reprojection_error_px']:.3f} px (SfM image size)")
    print(
        f"georeference residual     median {g['median']:.2f} m, 90th percentile {g['p90']:.2f} m "
        f"(horizontal median {g['horizontal_median']:.2f} m)"
    )
    print(
        f"seam misalignment         median {seams.get('median_px', float('nan')):.2f} px, "
        f"90th percentile {seams.get('p90_px', float('nan')):.2f} px "
        f"({seams.get('features', 0)} features on {seams.get('pairs', 0)} seams)"
    )
    print(
        f"covered area              {s['covered_ha']:.2f} ha = "
        f"{s['covered_ha'] / args.footprint_ha:.2f} x the {args.footprint_ha:g} ha footprint, "
        f"{s['width']} x {s['height']} px at {s['pixel_size_m'] * 100:.2f} cm ({s['crs']})"
    )
    print(f"ground                    {s['ground']['kind']}, relief {s['ground']['relief_m']} m")
    print(f"exposure gains            {s['exposure_gain_range']}, flat field {s['flat_field']}")
    gains = sorted((min(d["gain"]), d["name"]) for d in s["frame_details"] if "gain" in d)
    print(f"  darkest-made frames: {gains[:3]}; brightest-made: {gains[-3:]}")
    print(f"wall time                 {s['wall_seconds']:.0f} s on {args.threads} core(s)")
    print(f"peak memory               {s['peak_mb']:.0f} MB")
    left = [d for d in s["frame_details"] if d["how"] == "left out"]
    for d in left:
        print(f"  left out: {d['name']}: {d['reason']}")


if __name__ == "__main__":
    main()
