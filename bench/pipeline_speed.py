"""End-to-end analyze() throughput against the bare ONNX Runtime model, in one run.

    python bench/pipeline_speed.py [--size 16384] [--model PATH]

Goal (issue 2): pipeline tiles/s >= 0.8 x bare ONNX Runtime tiles/s on the same tiles.
The bare figure runs the same bundle on tiles already in memory, in the same batch size:
everything the pipeline adds (reading, masks, indices, COG writing, zones, preview) is the gap.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import make_orthomosaic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--model", help="bundle path (default: the shipped RGB bundle)")
    ap.add_argument("--compress", default=None, help="e.g. DEFLATE; default uncompressed")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from khet.vision.bundle import Bundle, choose_bundle
    from khet.vision.pipeline import analyze
    from khet.vision.scene import open_scene

    from khet.settings import apply_gdal_env, get_settings

    apply_gdal_env()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="khet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    raster = work / f"ortho-{args.size}.tif"
    if not raster.exists():
        t = time.perf_counter()
        make_orthomosaic(raster, args.size, args.compress)
        print(
            f"made {raster.name} ({raster.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s"
        )
    bundle = Bundle(Path(args.model)) if args.model else choose_bundle(("red", "green", "blue"))
    info = bundle.info
    batch = get_settings().batch_size
    print(
        f"model {info.name} {info.version} ({info.precision}), tile {info.tile_size}, "
        f"overlap {info.overlap}, batch {batch}, {os.cpu_count()} cores"
    )

    # Bare model: the same tiles, already in memory as uint8.
    from rasterio.windows import Window

    with open_scene(raster) as scene:
        n_bare = 64 * batch
        tiles = []
        stride = info.tile_size - info.overlap
        per_row = scene.width // stride
        for k in range(n_bare):
            r, c = divmod(k, per_row)
            d, _ = scene.read(
                Window(c * stride, r * stride, info.tile_size, info.tile_size), list(info.bands)
            )
            tiles.append(d)
        tiles_arr = np.stack(tiles)
    bundle.predict(tiles_arr[:batch])  # warm up

    one = Bundle(bundle.path, threads=1)
    one.predict(tiles_arr[:batch])

    def bare_rate(rounds: int = 4) -> float:
        """The faster of: one session using every core, or one single-threaded run per core."""
        import threading

        t = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, n_bare, batch):
                bundle.predict(tiles_arr[i : i + batch])
        whole = rounds * n_bare / (time.perf_counter() - t)

        cores = os.cpu_count() or 1

        def work(k: int) -> None:
            for _ in range(rounds):
                for i in range(k * batch, n_bare, cores * batch):
                    one.predict(tiles_arr[i : i + batch])

        t = time.perf_counter()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(cores)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        side_by_side = rounds * n_bare / (time.perf_counter() - t)
        return max(whole, side_by_side)

    # The machine is a VM whose speed drifts: measure bare before and after the pipeline run.
    bare_before = bare_rate()
    out = work / "out"
    t = time.perf_counter()
    s = analyze(raster, out, model=bundle.path)
    elapsed = time.perf_counter() - t
    tiles = s["tiling"]["cells_analysed"]
    e2e = tiles / elapsed
    bare_after = bare_rate()
    bare = (bare_before + bare_after) / 2
    print(f"bare before/after : {bare_before:8.0f} / {bare_after:.0f} tiles/s")
    print(f"bare ONNX Runtime : {bare:8.0f} tiles/s")
    print(
        f"pipeline end-to-end: {e2e:8.0f} tiles/s  ({tiles} tiles in {elapsed:.1f} s; "
        f"inference {s['timing']['inference_seconds']:.1f} s)"
    )
    print(f"ratio pipeline/bare: {e2e / bare:.2f}  (goal >= 0.80)")


if __name__ == "__main__":
    main()
