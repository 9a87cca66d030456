"""Web map tiles of a flight, read with rio-tiler (TiTiler's endpoints are the model).

Layers: `imagery` (the uploaded image, RGB or false colour), `classes` and `vigour` (the COGs'
embedded colour maps), and each vegetation index (`ndvi`, `vari`, ...) with a named rio-tiler
colour map stretched over that flight's 10th–90th percentile. Only georeferenced rasters are
tiled: a flight from a plain camera frame (no CRS) has its maps in pixel space, which no web map
can place; its TileJSON says so and its preview.png shows the map instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from khet.service import storage
from khet.service.db import Flight

from khet.errors import KhetError, NotFoundError

INDEX_RE = re.compile(r"^[a-z0-9_]{1,32}$")
INDEX_COLORMAP = "rdylgn"
TILE_SIZE = 256


class NotGeoreferenced(KhetError):
    status_code = 404
    code = "not_georeferenced"


def layer_source(flight: Flight, layer: str) -> tuple[Path, dict]:
    """The file behind a layer and how to render it; NotFoundError when there is none."""
    field = flight.field
    fdir = storage.flight_dir(field.farm_id, field.id, flight.id)
    if layer == "imagery":
        info = flight.imagery or {}
        if not info.get("tileable"):
            raise NotGeoreferenced(info.get("reason", "This flight has no imagery to tile."))
        return fdir / "input" / info["file"], {
            "indexes": info["indexes"],
            "rescale": info.get("rescale"),
        }
    if flight.job is not None and flight.job.status != "done":
        raise NotFoundError("The field map is not ready yet.")
    results = fdir / "results"
    if layer in ("classes", "vigour"):
        path = results / f"{layer}.tif"
        opts: dict = {"colormap": "embedded"}
    elif INDEX_RE.match(layer):
        path = results / "indices" / f"{layer}.tif"
        stats = ((flight.summary or {}).get("indices") or {}).get(layer) or {}
        lo, hi = stats.get("p10"), stats.get("p90")
        if not isinstance(lo, int | float) or not isinstance(hi, int | float) or hi <= lo:
            lo, hi = stats.get("min", -1.0), stats.get("max", 1.0)
        if not isinstance(lo, int | float) or not isinstance(hi, int | float) or hi <= lo:
            lo, hi = -1.0, 1.0
        opts = {"colormap": INDEX_COLORMAP, "rescale": [[float(lo), float(hi)]]}
    else:
        raise NotFoundError(f"No layer {layer!r}: use imagery, classes, vigour or an index name.")
    if not path.is_file():
        raise NotFoundError(f"This flight has no {layer} layer.")
    return path, opts


def _reader(path: Path):
    from rasterio.errors import RasterioIOError
    from rio_tiler.io import Reader

    try:
        reader = Reader(str(path))
    except RasterioIOError as e:
        raise NotFoundError(f"The layer file cannot be read ({str(e)[:80]}).") from None
    if reader.dataset.crs is None:
        reader.close()
        raise NotGeoreferenced("This map has no coordinates (the imagery had no CRS).")
    return reader


class _TileCache:
    """Rendered PNGs of recent tiles, keyed by file, its mtime and the tile (results never change
    in place: a re-run renames a new folder in, which changes the mtime). KHET_TILE_CACHE tiles,
    0 turns it off."""

    def __init__(self) -> None:
        import threading
        from collections import OrderedDict

        from khet.service.config import service_settings

        self.size = service_settings().tile_cache
        self.items: OrderedDict[tuple, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self.lock:
            png = self.items.get(key)
            if png is not None:
                self.items.move_to_end(key)
            return png

    def put(self, key: tuple, png: bytes) -> None:
        if self.size <= 0:
            return
        with self.lock:
            self.items[key] = png
            while len(self.items) > self.size:
                self.items.popitem(last=False)


TILE_CACHE = _TileCache()


def render_tile(path: Path, opts: dict, z: int, x: int, y: int) -> bytes:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise NotFoundError("This layer is not there (the flight may have been deleted).") from None
    key = (str(path), mtime, repr(opts), z, x, y)
    png = TILE_CACHE.get(key)
    if png is None:
        png = _render_tile(path, opts, z, x, y)
        TILE_CACHE.put(key, png)
    return png


def _encode_png(rgba) -> bytes:
    import cv2

    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    return buf.tobytes()


def _colorize(img, colormap) -> bytes:
    """Palette lookup with NumPy and PNG encoding with OpenCV: a few times faster than GDAL's PNG
    driver, which is most of a tile's time once the COG is in the page cache."""
    import numpy as np

    lut = np.zeros((256, 4), np.uint8)
    for k, v in colormap.items():
        if 0 <= int(k) < 256:
            lut[int(k)] = v
    band = np.asarray(img.data[0])
    rgba = lut[np.clip(band, 0, 255).astype(np.uint8)]
    rgba[..., 3] = np.where(np.asarray(img.mask) > 0, rgba[..., 3], 0)
    return _encode_png(np.ascontiguousarray(rgba))


def _render_tile(path: Path, opts: dict, z: int, x: int, y: int) -> bytes:
    from rio_tiler.colormap import cmap
    from rio_tiler.errors import TileOutsideBounds

    with _reader(path) as reader:
        if not reader.tile_exists(x, y, z):
            raise NotFoundError("No map at this tile.")
        try:
            img = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=opts.get("indexes"))
        except TileOutsideBounds:
            raise NotFoundError("No map at this tile.") from None
        colormap = None
        if opts.get("colormap") == "embedded":
            colormap = reader.colormap
        elif opts.get("colormap"):
            colormap = cmap.get(opts["colormap"])
        if opts.get("rescale"):
            img.rescale(in_range=[tuple(r) for r in opts["rescale"]])
        if colormap is not None and img.count == 1:
            return _colorize(img, colormap)
        if img.count == 3 and str(img.data.dtype) == "uint8":
            import numpy as np

            rgba = np.dstack([*np.asarray(img.data), np.asarray(img.mask)]).astype(np.uint8)
            return _encode_png(np.ascontiguousarray(rgba))
        return img.render(img_format="PNG", colormap=colormap)


def tilejson(path: Path, tiles_url: str, name: str) -> dict:
    with _reader(path) as reader:
        west, south, east, north = reader.get_geographic_bounds(reader.tms.rasterio_geographic_crs)
        minzoom, maxzoom = reader.minzoom, reader.maxzoom
    return {
        "tilejson": "3.0.0",
        "name": name,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": max(0, minzoom - 4),
        "maxzoom": maxzoom + 2,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, maxzoom],
        "georeferenced": True,
    }


def point_values(path: Path, lon: float, lat: float) -> float | int | None:
    from rio_tiler.errors import PointOutsideBounds

    with _reader(path) as reader:
        try:
            pt = reader.point(lon, lat, indexes=1)
        except PointOutsideBounds:
            return None
        if bool(pt.mask[0] == 0):
            return None
        v = pt.data[0].item()
        return v
