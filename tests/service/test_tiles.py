"""Map tiles: the web-optimized copies a job makes, and what a tile shows.

The test GeoTIFF is bare soil on its left half and green crop on its right half (tests/service/
rasters.py), so a tile's pixels can be checked against the image and the class map.
"""

from __future__ import annotations

import io

import morecantile
import numpy as np
import rasterio
from PIL import Image

from tests.service.conftest import drain_queue, run_queued_jobs
from tests.service.rasters import bounds_lonlat

TMS = morecantile.tms.get("WebMercatorQuad")


def _flight(api, geotiff) -> tuple[dict, int]:
    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
    )
    assert r.status_code == 201, r.text
    run_queued_jobs()
    return alice, r.json()["id"]


def _results(flight_id: int):
    from khet.service import storage
    from khet.service.db import Flight, session_scope

    with session_scope() as db:
        f = db.get(Flight, flight_id)
        assert f is not None
        return storage.flight_dir(f.field.farm_id, f.field_id, f.id) / "results"


def _tile(api, who, flight_id, layer, lon, lat, z=23, ext="", r=3):
    t = TMS.tile(lon, lat, z)
    resp = api.client.get(
        f"/api/v1/flights/{flight_id}/tiles/{layer}/{z}/{t.x}/{t.y}{ext}", headers=who["headers"]
    )
    assert resp.status_code == 200, (layer, resp.text)
    img = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))
    # The pixel of (lon, lat) within the tile.
    b = TMS.xy_bounds(t)
    x, y = TMS.xy(lon, lat)
    px = int((x - b.left) / (b.right - b.left) * 256)
    py = int((b.top - y) / (b.top - b.bottom) * 256)
    py, px = min(max(py, r), 255 - r), min(max(px, r), 255 - r)
    # The mean of the pixels around it: resampling moves the image's pixel noise around.
    patch = img[py - r : py + r + 1, px - r : px + r + 1]
    return resp, np.rint(patch.reshape(-1, 4).mean(axis=0))


def test_job_writes_web_optimized_copies(api, geotiff, use_test_models):
    alice, fl = _flight(api, geotiff)
    results = _results(fl)
    web = results / "web"
    names = {p.name for p in web.glob("*.tif")}
    assert {"classes.tif", "vigour.tif", "vari.tif", "imagery.tif"} <= names, names
    with rasterio.open(results / "classes.tif") as orig, rasterio.open(web / "classes.tif") as w:
        assert w.crs.to_epsg() == 3857
        assert w.block_shapes[0] == (256, 256)
        assert w.nodata == orig.nodata
        assert w.colormap(1)[1] == orig.colormap(1)[1]
        # Categories stay categories: no value the original does not have.
        assert set(np.unique(w.read(1))) <= set(np.unique(orig.read(1))) | {orig.nodata}
    with rasterio.open(web / "imagery.tif") as w:
        assert w.crs.to_epsg() == 3857 and w.count == 3 and w.dtypes[0] == "uint8"
    # TileJSON gives the map's own bounds, not the copy's (rounded out to whole tiles): a map
    # client asks for no tile outside them.
    tj = api.client.get(
        f"/api/v1/flights/{fl}/tilejson.json?layer=classes", headers=alice["headers"]
    ).json()
    assert np.allclose(tj["bounds"], bounds_lonlat(), atol=1e-5), (tj["bounds"], bounds_lonlat())
    # The copies are not result files a user downloads.
    body = api.client.get(f"/api/v1/flights/{fl}", headers=alice["headers"]).json()
    assert not [f for f in body["results"] if f.startswith("web/")]


def test_tiles_show_the_image_and_the_class_colours(api, geotiff, use_test_models):
    alice, fl = _flight(api, geotiff)
    # A result that is not a map layer says where it is (it said "no confidence layer").
    assert (_results(fl) / "confidence.tif").is_file()
    r = api.client.get(f"/api/v1/flights/{fl}/tiles/confidence/18/0/0", headers=alice["headers"])
    assert r.status_code == 404 and "results/confidence.tif" in r.json()["detail"], r.text
    summary = api.client.get(f"/api/v1/flights/{fl}", headers=alice["headers"]).json()["summary"]
    colors = {c["name"]: c["color"] for c in summary["classes"]}
    w, s, e, n = bounds_lonlat()
    lat = (s + n) / 2
    for lon, soil in (((w + (w + e) / 2) / 2, True), ((e + (w + e) / 2) / 2, False)):
        r, px = _tile(api, alice, fl, "imagery", lon, lat, ext=".png")
        assert r.headers["content-type"] == "image/png"
        want = (150, 110, 80) if soil else (40, 160, 50)  # the raster's soil and crop colours
        assert np.abs(px[:3] - want).max() <= 6, (px, want)
        assert px[3] == 255
        point = api.client.get(
            f"/api/v1/flights/{fl}/point", params={"lon": lon, "lat": lat}, headers=alice["headers"]
        ).json()
        _, px = _tile(api, alice, fl, "classes", lon, lat)
        c = colors[point["class"]].lstrip("#")
        assert tuple(px) == (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255), px


def test_imagery_tiles_are_jpeg_inside_and_transparent_png_outside(api, geotiff, use_test_models):
    alice, fl = _flight(api, geotiff)
    w, s, e, n = bounds_lonlat()
    # The image is 6.4 m wide; a zoom-24 tile about 2 m.
    r, px = _tile(api, alice, fl, "imagery", w + 0.7 * (e - w), (s + n) / 2, z=24)
    assert r.headers["content-type"] == "image/jpeg", "a tile inside the image"
    assert np.abs(px[:3] - (40, 160, 50)).max() <= 8, px
    # A tile on the image's edge: PNG, transparent outside the image.
    t = TMS.tile(w, n, 24)
    r = api.client.get(
        f"/api/v1/flights/{fl}/tiles/imagery/24/{t.x}/{t.y}", headers=alice["headers"]
    )
    assert r.headers["content-type"] == "image/png"
    alpha = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    tj = api.client.get(
        f"/api/v1/flights/{fl}/tilejson.json?layer=imagery", headers=alice["headers"]
    ).json()
    assert tj["tiles"][0].endswith("/tiles/imagery/{z}/{x}/{y}")
    # `.jpg` and `.jpeg` (what many XYZ clients write) always give JPEG, the edge tile too: no
    # data is black there, the image as it is; the class map's colours survive JPEG.
    lon, lat = w + 0.7 * (e - w), (s + n) / 2
    for ext in (".jpg", ".jpeg"):
        r = api.client.get(
            f"/api/v1/flights/{fl}/tiles/imagery/24/{t.x}/{t.y}{ext}", headers=alice["headers"]
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        img = np.asarray(Image.open(io.BytesIO(r.content)))
        assert img.ndim == 3 and img.shape[2] == 3
        assert img.reshape(-1, 3).sum(axis=1).min() <= 10 < img.reshape(-1, 3).sum(axis=1).max()
        r, px = _tile(api, alice, fl, "classes", lon, lat, z=24, ext=ext)
        assert r.headers["content-type"] == "image/jpeg"
        _, png = _tile(api, alice, fl, "classes", lon, lat, z=24, ext=".png")
        assert np.abs(px[:3] - png[:3]).max() <= 8, (px, png)


def test_tiles_without_web_copies_read_the_originals(api, geotiff, use_test_models):
    """Results from before the copies existed (or a copy that failed) still tile, the same."""
    from khet.service import storage
    from khet.service.tiles import READERS

    alice, fl = _flight(api, geotiff)
    w, s, e, n = bounds_lonlat()
    where = (w + 0.7 * (e - w), (s + n) / 2)
    before = {
        layer: _tile(api, alice, fl, layer, *where, r=12)[1]
        for layer in ("imagery", "classes", "vari")
    }
    results = _results(fl)
    READERS.forget(results)
    storage.remove_tree(results / "web")
    for layer, px in before.items():
        _, now = _tile(api, alice, fl, layer, *where, r=12)
        assert np.abs(now - px).max() <= 8, (layer, now, px)


def test_results_from_a_device_get_web_copies(api, geotiff, use_test_models, tmp_path):
    from khet.vision.pipeline import analyze

    out = tmp_path / "edge-out"
    analyze(geotiff, out)
    alice = api.user()
    _, field = api.farm_field(alice)
    results = {
        name: api.upload(alice, out / name)
        for name in ("summary.json", "classes.tif", "vigour.tif", "zones.geojson", "preview.png")
    }
    r = api.client.post(
        f"/api/v1/fields/{field}/flights",
        json={"uploads": [], "results": results, "client_id": "edge-7:1"},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    web = _results(r.json()["id"]) / "web"
    assert not web.exists()  # made by the worker, never inside the request
    assert drain_queue() == 1
    with rasterio.open(web / "classes.tif") as ds:
        assert ds.crs.to_epsg() == 3857
