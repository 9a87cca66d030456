"""Map tile latency under concurrent clients, against a real uvicorn process on loopback.

    python bench/service_tiles.py [--size 4096] [--clients 8] [--seconds 20]

Builds a georeferenced RGB orthomosaic, analyses it with a tiny test bundle (the model does not
matter here, the COGs do), then 8 clients fetch random tiles of every layer at every zoom where
the map has data. The COGs are read once first (page cache warm). Goal: p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.service_common import start_server  # noqa: E402


def _client(base: str, token: str, urls: list, start: float, seconds: float, seed: int) -> list:
    """One map client: random tiles back to back for `seconds` from `start`; (layer, z, ms,
    status) of each."""
    rnd = random.Random(seed)
    out = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        c.get(urls[0][2])  # connect before the clock starts
        time.sleep(max(0.0, start - time.time()))
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            layer, z, u = rnd.choice(urls)
            t = time.perf_counter()
            r = c.get(u)
            out.append((layer, z, (time.perf_counter() - t) * 1000, r.status_code))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096, help="orthomosaic width/height in pixels")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument(
        "--processes", type=int, default=None, help="khet serve --processes (default: its own)"
    )
    ap.add_argument(
        "--cache",
        type=int,
        default=1024,
        help="KHET_TILE_CACHE for the server; 0 = render every tile",
    )
    args = ap.parse_args()

    import morecantile

    from tests.bundles import make_bundle
    from tests.service.rasters import bounds_lonlat, make_geotiff

    work = Path(tempfile.mkdtemp(prefix="khet-bench-tiles-"))
    models = work / "models"
    make_bundle(models / "rgb.onnx", bands=("red", "green", "blue"), name="bench-rgb")
    image = make_geotiff(work / "ortho.tif", size=args.size, bands=("red", "green", "blue"))
    env = {"KHET_MODELS_DIR": str(models), "KHET_TILE_CACHE": str(args.cache)}
    proc, base, token = start_server(work / "data", env, worker=True, processes=args.processes)
    h = {"Authorization": f"Bearer {token}"}
    try:
        c = httpx.Client(base_url=base, headers=h, timeout=60)
        farm = c.post("/api/v1/farms", json={"name": "bench"}).json()["id"]
        field = c.post(f"/api/v1/farms/{farm}/fields", json={"name": "f"}).json()["id"]
        with image.open("rb") as f:
            flight = c.post(
                f"/api/v1/fields/{field}/flights/upload",
                files=[("files", ("ortho.tif", f, "image/tiff"))],
            ).json()
        t0 = time.time()
        while True:
            st = c.get(f"/api/v1/flights/{flight['id']}").json()
            if st["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert st["status"] == "done", st
        print(f"analysis of {args.size}x{args.size} px: {time.time() - t0:.1f} s (embedded worker)")
        # The worker goes on to make the imagery's web-optimized copy: wait for it, so that
        # its making does not share the cores with the measurement.
        web = next((work / "data").glob("farms/*/fields/*/flights/*/results/web"))
        while not (web / "imagery.tif").exists():
            time.sleep(0.2)
        print(f"web-optimized imagery ready after {time.time() - t0:.1f} s")
        layers = ["imagery", "classes", "vigour"] + sorted(st["summary"]["indices"])[:1]
        w, s, e, n = bounds_lonlat(args.size)
        tms = morecantile.tms.get("WebMercatorQuad")
        tj = c.get(f"/api/v1/flights/{flight['id']}/tilejson.json?layer=classes").json()
        # The tile URLs each layer's TileJSON gives, as the map page uses them.
        templates = {
            layer: c.get(f"/api/v1/flights/{flight['id']}/tilejson.json?layer={layer}").json()[
                "tiles"
            ][0]
            for layer in layers
        }
        urls = []
        for z in range(tj["maxzoom"] - 4, tj["maxzoom"] + 1):
            for t in tms.tiles(w, s, e, n, [z]):
                for layer in layers:
                    url = templates[layer].format(z=z, x=t.x, y=t.y).removeprefix(base)
                    urls.append((layer, z, url))
        print(
            f"{len(urls)} distinct tiles over layers {layers}, zooms {tj['maxzoom'] - 4}-{tj['maxzoom']}"
        )
        for _, _, u in urls:  # warm the page cache and check every tile answers
            r = c.get(u)
            assert r.status_code in (200, 404), (u, r.status_code, r.text[:200])

        # Each client is its own process, as browsers are: client threads sharing one
        # interpreter would add their own GIL waits to the latencies measured.
        import multiprocessing

        start = time.time() + 1.0
        jobs = [(base, token, urls, start, args.seconds, i) for i in range(args.clients)]
        with multiprocessing.get_context("fork").Pool(args.clients) as pool:
            results = [r for rs in pool.starmap(_client, jobs) for r in rs]
        lat = [ms for _, _, ms, _ in results]
        errors = [sum(1 for *_, status in results if status >= 500)]
        by_group: dict[tuple[str, int], list[float]] = {}
        for layer, z, ms, _ in results:
            by_group.setdefault((layer, z), []).append(ms)
        lat.sort()
        q = statistics.quantiles(lat, n=100)
        print(
            f"tile cache: {args.cache} tiles; {args.clients} concurrent clients, {len(lat)} tiles in {args.seconds:.0f} s "
            f"({len(lat) / args.seconds:.0f} tiles/s), server errors: {errors[0]}"
        )
        print("p95 by layer and zoom (ms):")
        for layer in layers:
            row = []
            for z in range(tj["maxzoom"] - 4, tj["maxzoom"] + 1):
                g = sorted(by_group.get((layer, z), []))
                row.append(f"z{z} {g[int(0.95 * (len(g) - 1))]:6.1f}" if g else f"z{z}    -  ")
            print(f"  {layer:8s} " + "  ".join(row))
        print(
            f"tile latency: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, max {lat[-1]:.1f} ms "
            f"(goal p95 < 50 ms: {'met' if q[94] < 50 else 'NOT met'})"
        )
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
