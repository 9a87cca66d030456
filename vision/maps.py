"""From a classified grid to the field map a person reads: COGs, zones, preview and summary.

Crop vigour is a rule, not a learned class: within crop cells, the cell's mean vegetation index is
compared with the median of all crop cells of the same flight. The rule and its thresholds are
written into the summary and the legend so nobody mistakes it for a diagnosis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
from affine import Affine
from khet.vision import indices as vi
from khet.vision.bundle import Bundle
from khet.vision.outputs import Staging, write_cog, write_json
from khet.vision.scene import Scene
from PIL import Image, ImageDraw, ImageFont
from rasterio import features
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from khet.errors import KhetError

NODATA_CLASS = 255
VIGOUR_LEVELS = ("low", "medium", "high")
VIGOUR_COLORS = ("#d7301f", "#fdd835", "#1b7837")
VIGOUR_MIN_DELTA = 0.05  # index units: smaller differences are not called low or high
VIGOUR_RULE = (
    "Crop vigour is a rule, not a learned class: a crop cell is 'low' when its mean {index} is "
    "below the median of all crop cells of this flight by more than max(1.5 x robust spread, "
    f"{VIGOUR_MIN_DELTA}), 'high' when above by as much, else 'medium'. It shows where the crop "
    "is weaker than the rest of this field, not why."
)


class RunningStats:
    """Streaming statistics of one index: constant memory, any raster size."""

    BINS = 100

    def __init__(self, index: vi.Index) -> None:
        self.index = index
        lo, hi = index.value_range
        self.edges = np.linspace(lo, hi, self.BINS + 1)
        self.counts = np.zeros(self.BINS, np.int64)
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.lo = math.inf
        self.hi = -math.inf

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        if v.size == 0:
            return
        self.n += v.size
        self.total += float(v.sum(dtype=np.float64))
        self.total_sq += float(np.dot(v, v))
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))
        # bincount on computed bin numbers: several times faster than np.histogram's sort.
        lo, hi = self.edges[0], self.edges[-1]
        bins = ((v - lo) * (self.BINS / (hi - lo))).astype(np.int64)
        np.clip(bins, 0, self.BINS - 1, out=bins)
        self.counts += np.bincount(bins, minlength=self.BINS)

    def _quantile(self, q: float) -> float:
        c = np.cumsum(self.counts)
        i = int(np.searchsorted(c, q * c[-1]))
        return float((self.edges[i] + self.edges[min(i + 1, self.BINS)]) / 2)

    def result(self) -> dict[str, Any] | None:
        if self.n == 0:
            return None
        mean = self.total / self.n
        var = max(self.total_sq / self.n - mean * mean, 0.0)
        # A coarser histogram for charts: 20 bins over the index's range.
        coarse = self.counts.reshape(20, -1).sum(axis=1)
        return {
            "title": self.index.title,
            "formula": self.index.formula,
            "pixels": self.n,
            "mean": round(mean, 4),
            "std": round(math.sqrt(var), 4),
            "min": round(self.lo, 4),
            "max": round(self.hi, 4),
            "p10": round(self._quantile(0.10), 3),
            "median": round(self._quantile(0.50), 3),
            "p90": round(self._quantile(0.90), 3),
            "histogram": {
                "edges": [round(float(e), 3) for e in self.edges[::5]],
                "counts": [int(c) for c in coarse],
            },
        }


def grid_transform(scene: Scene, stride: int) -> Affine:
    return scene.transform @ Affine.scale(stride)


def clip_mask(geometry: dict, scene: Scene, grid) -> np.ndarray | None:
    """Cells whose centre lies inside a field boundary (GeoJSON geometry in EPSG:4326)."""
    if scene.crs is None:
        scene.warnings.append(
            "The field boundary was not applied: the imagery has no georeference to place it."
        )
        return None
    try:
        g = geometry.get("geometry", geometry) if isinstance(geometry, dict) else geometry
        local = transform_geom("EPSG:4326", scene.crs, g)
    except Exception as e:
        raise KhetError(f"The field boundary is not a valid GeoJSON geometry ({e}).") from e
    mask = features.geometry_mask(
        [local],
        out_shape=(grid.rows, grid.cols),
        transform=grid_transform(scene, grid.stride),
        invert=True,
    )
    if not mask.any():
        scene.warnings.append("The imagery does not overlap the field boundary.")
    return mask


def vigour_grid(
    classes: np.ndarray, cell_index: np.ndarray, crop_id: int | None, index_pos: int | None
) -> tuple[np.ndarray, dict[str, Any]]:
    out = np.full(classes.shape, NODATA_CLASS, np.uint8)
    if crop_id is None or index_pos is None:
        return out, {}
    values = cell_index[..., index_pos]
    crop = (classes == crop_id) & np.isfinite(values)
    if not crop.any():
        return out, {}
    v = values[crop]
    med = float(np.median(v))
    spread = float(1.4826 * np.median(np.abs(v - med)))
    delta = max(1.5 * spread, VIGOUR_MIN_DELTA)
    level = np.ones(v.shape, np.uint8)
    level[v < med - delta] = 0
    level[v > med + delta] = 2
    out[crop] = level
    return out, {
        "median": round(med, 4),
        "spread": round(spread, 4),
        "low_below": round(med - delta, 4),
        "high_above": round(med + delta, 4),
    }


def _colormap(colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (*_rgb(c), 255) for i, c in enumerate(colors)}
    cmap[NODATA_CLASS] = (0, 0, 0, 0)
    return cmap


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _utm_for(lon: float, lat: float) -> str:
    zone = int((lon + 180) // 6) + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _footprint(scene: Scene):
    t = scene.transform
    corners = [
        t @ (0, 0),
        t @ (scene.width, 0),
        t @ (scene.width, scene.height),
        t @ (0, scene.height),
    ]
    from shapely.geometry import Polygon

    return Polygon(corners) if scene.crs is not None else box(0, 0, scene.width, scene.height)


def write_field_map(
    scene: Scene,
    bundle: Bundle,
    grid,
    index_list: list[vi.Index],
    result: dict[str, Any],
    st: Staging,
    title: str | None = None,
) -> dict[str, Any]:
    """Write classes.tif, vigour.tif, zones.geojson, preview.png; return the summary."""
    info = bundle.info
    names = info.class_names
    classes: np.ndarray = result["classes"]
    probs: np.ndarray = result["probs"]
    gt = grid_transform(scene, grid.stride)
    crs = scene.crs
    crop_id = names.index("crop") if "crop" in names else None
    vig_index = vi.vigour_index(index_list)
    vig_pos = index_list.index(vig_index) if vig_index else None
    vigour, vig_params = vigour_grid(classes, result["cell_index"], crop_id, vig_pos)

    write_cog(
        st.file("classes.tif"),
        classes,
        transform=gt,
        crs=crs,
        nodata=NODATA_CLASS,
        colormap=_colormap([c.color for c in info.classes]),
        descriptions=["class"],
        tags={"classes": json.dumps(names), "model": f"{info.name} {info.version}"},
    )
    # Confidence of the chosen class, in percent: the map's honesty, cell by cell.
    conf = np.full(classes.shape, NODATA_CLASS, np.uint8)
    has = classes != NODATA_CLASS
    top = probs.astype(np.float32).max(axis=-1)
    conf[has] = np.clip(np.rint(top[has] * 100), 0, 100).astype(np.uint8)
    write_cog(
        st.file("confidence.tif"),
        conf,
        transform=gt,
        crs=crs,
        nodata=NODATA_CLASS,
        descriptions=["confidence (%)"],
    )
    write_cog(
        st.file("vigour.tif"),
        vigour,
        transform=gt,
        crs=crs,
        nodata=NODATA_CLASS,
        colormap=_colormap(list(VIGOUR_COLORS)),
        descriptions=["crop vigour"],
        tags={
            "levels": json.dumps(VIGOUR_LEVELS),
            "rule": VIGOUR_RULE.format(index=vig_index.title if vig_index else "index"),
        },
    )

    zones, areas, unit = _zones(scene, grid, classes, vigour, names)
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": zones}
    if crs is None:
        fc["khet:coordinates"] = "image pixels (no georeference)"
    write_json(st.file("zones.geojson"), fc, indent=None)
    write_preview(
        st.file("preview.png"), result["preview"], scene, grid, classes, info, areas, unit, title
    )

    analysed = int((classes != NODATA_CLASS).sum())
    # Shares are of area (cells at the image edge count only their part inside the image), so
    # the summary, the preview legend and the zones agree.
    total_area = sum(areas["class"].values())
    crop_area = sum(areas["vigour"].values())
    class_rows = []
    for i, c in enumerate(info.classes):
        sel = classes == i
        n = int(sel.sum())
        class_rows.append(
            {
                "name": c.name,
                "color": c.color,
                "cells": n,
                "share": round(areas["class"].get(c.name, 0.0) / total_area, 4)
                if total_area
                else 0.0,
                f"area_{unit}": round(areas["class"].get(c.name, 0.0), 6 if unit == "ha" else 0),
                "mean_confidence": round(float(probs[sel][:, i].astype(np.float32).mean()), 3)
                if n
                else None,
            }
        )
    vig_rows = []
    for lvl_i, lvl in enumerate(VIGOUR_LEVELS):
        n = int((vigour == lvl_i).sum())
        vig_rows.append(
            {
                "name": lvl,
                "color": VIGOUR_COLORS[lvl_i],
                "cells": n,
                "share_of_crop": round(areas["vigour"].get(lvl, 0.0) / crop_area, 4)
                if crop_area
                else 0.0,
                f"area_{unit}": round(areas["vigour"].get(lvl, 0.0), 6 if unit == "ha" else 0),
            }
        )
    loc = _location(scene)
    summary: dict[str, Any] = {
        "title": title,
        "input": scene.describe(),
        "radiometry": scene.radiometry,
        "location": loc,
        "area_unit": unit,
        "model": bundle.describe(),
        "tiling": {
            "tile_size": grid.tile,
            "overlap": grid.overlap,
            "stride": grid.stride,
            "rows": grid.rows,
            "cols": grid.cols,
            "cells_analysed": analysed,
            "cells_skipped": int(result["skipped"]),
            "min_valid_share": 0.5,
        },
        "classes": class_rows,
        "vigour": {
            "index": vig_index.name if vig_index else None,
            "rule": VIGOUR_RULE.format(index=vig_index.title)
            if vig_index
            else "No vegetation index available for these bands: vigour not assessed.",
            "thresholds": vig_params,
            "levels": vig_rows,
        },
        "indices": {s.index.name: s.result() for s in result["index_stats"]},
        "index_resolution_step": result["index_step"],
        "outputs": {
            "classes": "classes.tif",
            "vigour": "vigour.tif",
            "zones": "zones.geojson",
            "preview": "preview.png",
            "indices": {k: f"indices/{k}.tif" for k in result["index_paths"]},
        },
        "warnings": list(scene.warnings),
    }
    if unit == "ha":
        summary["area_total_ha"] = round(sum(areas["class"].values()), 6)
    else:
        gsd = scene.camera.gsd_m
        summary["area_total_px"] = int(sum(areas["class"].values()))
        if gsd:
            summary["area_total_ha_approx"] = round(summary["area_total_px"] * gsd * gsd / 1e4, 4)
    return summary


def _location(scene: Scene) -> dict[str, Any] | None:
    if scene.crs is not None:
        cx, cy = scene.transform @ (scene.width / 2, scene.height / 2)
        from rasterio.warp import transform as wt

        lon, lat = wt(scene.crs, "EPSG:4326", [cx], [cy])
        return {"lon": round(lon[0], 7), "lat": round(lat[0], 7), "based_on": "georeferenced image"}
    if scene.camera.has_gps:
        return {
            "lon": round(scene.camera.longitude, 7),
            "lat": round(scene.camera.latitude, 7),
            "based_on": "camera GPS (EXIF), image centre, approximate",
        }
    return None


def _reprojector(src, dst, decimals: int | None = None):
    """For shapely.transform: an (N, 2) array of coordinates from `src` to `dst`."""

    def run(xy: np.ndarray) -> np.ndarray:
        x, y = warp_transform(src, dst, xy[:, 0], xy[:, 1])
        out = np.column_stack([x, y])
        return out if decimals is None else np.round(out, decimals)

    return run


def _zones(scene, grid, classes, vigour, names):
    """Polygons of each class (crop split by vigour level) with their areas."""
    gt = grid_transform(scene, grid.stride)
    code = np.full(classes.shape, 255, np.uint8)
    valid = classes != NODATA_CLASS
    code[valid] = classes[valid] * 4 + 3  # 3 = no vigour level
    has_v = vigour != NODATA_CLASS
    code[has_v] = classes[has_v] * 4 + vigour[has_v]
    footprint = _footprint(scene)
    crs = scene.crs
    unit = "ha" if crs is not None else "px"
    utm = None
    if crs is not None:
        c = footprint.centroid
        lon, lat = transform_geom(crs, "EPSG:4326", mapping(c))["coordinates"]
        # Always measure in the local UTM zone: a projected CRS in metres is not necessarily
        # equal-area (Web Mercator inflates areas by 1/cos^2(latitude): +38% in Punjab).
        utm = _utm_for(lon, lat)
    zones: list[tuple[int, Any]] = []
    for geom, value in features.shapes(code, mask=code != 255, transform=gt, connectivity=4):
        poly = shape(geom).intersection(footprint)
        if not poly.is_empty:
            zones.append((int(value), poly))
    zones.sort(key=lambda z: z[0])
    polys = np.array([p for _, p in zones], dtype=object)
    if utm is not None and len(polys):
        # Every vertex of every zone reprojected in one array call: per-polygon calls cost
        # more than the model on large maps.
        area_list = shapely.area(shapely.transform(polys, _reprojector(crs, utm))) / 1e4
        out_geoms = [
            mapping(g) for g in shapely.transform(polys, _reprojector(crs, "EPSG:4326", 7))
        ]
    else:
        area_list = [p.area for _, p in zones]
        out_geoms = [mapping(p) for p in polys]
    feats = []
    areas: dict[str, dict[str, float]] = {"class": {}, "vigour": {}}
    for (value, _), area, out_geom in zip(zones, area_list, out_geoms, strict=True):
        cls_i, lvl = divmod(value, 4)
        props: dict[str, Any] = {"class": names[cls_i]}
        if lvl < 3:
            props["vigour"] = VIGOUR_LEVELS[lvl]
        props[f"area_{unit}"] = round(area, 5 if unit == "ha" else 0)
        feats.append({"type": "Feature", "geometry": out_geom, "properties": props})
        areas["class"][names[cls_i]] = areas["class"].get(names[cls_i], 0.0) + area
        if lvl < 3:
            areas["vigour"][VIGOUR_LEVELS[lvl]] = (
                areas["vigour"].get(VIGOUR_LEVELS[lvl], 0.0) + area
            )
    return feats, areas, unit


def _display_bands(bands: tuple[str, ...]) -> list[str]:
    for combo in (["red", "green", "blue"], ["nir", "red", "green"], ["nir", "red", "red"]):
        if all(b in bands for b in combo):
            return combo
    return [bands[0]] * 3


class PreviewCanvas:
    """The preview image, assembled from the blocks the pipeline reads anyway.

    Reading a big orthomosaic a second time, decimated, for the preview cost as much as a
    quarter of the model's time; each block is shrunk into place instead (INTER_AREA). Block
    edges are rounded from image coordinates, so neighbouring blocks tile exactly.
    """

    def __init__(self, scene: Scene, max_size: int = 1024) -> None:
        self.show = _display_bands(scene.bands)
        self.bands = list(dict.fromkeys(self.show))
        f = max(max(scene.width, scene.height) / max_size, 1.0)
        self.h, self.w = max(1, round(scene.height / f)), max(1, round(scene.width / f))
        self.sy, self.sx = self.h / scene.height, self.w / scene.width
        self.data = np.zeros((len(self.bands), self.h, self.w), scene.dtype)
        self.valid = np.zeros((self.h, self.w), bool)

    def add(
        self,
        data: np.ndarray,
        valid: np.ndarray | None,
        row0: int,
        col0: int,
        size: tuple[int, int] | None = None,
    ) -> None:
        """A block of the display bands (C x h x w) whose top-left pixel is (row0, col0).

        `valid` (at the block's resolution) None: all valid. `size`: the block's extent in image
        pixels, when `data` is a reduced copy of it."""
        h, w = size or data.shape[1:]
        y0, y1 = round(row0 * self.sy), round((row0 + h) * self.sy)
        x0, x1 = round(col0 * self.sx), round((col0 + w) * self.sx)
        if y1 <= y0 or x1 <= x0:
            return
        for c in range(len(self.bands)):
            self.data[c, y0:y1, x0:x1] = cv2.resize(
                data[c], (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA
            )
        if valid is None:
            self.valid[y0:y1, x0:x1] = True
            return
        small = cv2.resize(
            valid.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST
        )
        self.valid[y0:y1, x0:x1] = small > 0


def write_preview(
    path: Path,
    canvas: PreviewCanvas,
    scene: Scene,
    grid,
    classes: np.ndarray,
    info,
    areas,
    unit: str,
    title: str | None,
) -> None:
    """The image with the class map over it and a legend: what a farmer looks at first."""
    data, valid = canvas.data, canvas.valid
    rgb8 = scene.to_uint8(data, canvas.bands) if data.dtype != np.uint8 else data
    img = np.stack([rgb8[canvas.bands.index(b)] for b in canvas.show], axis=-1)
    ph, pw = img.shape[:2]
    # Which cell each preview pixel falls in.
    ys = np.minimum((np.arange(ph) + 0.5) * scene.height / ph // grid.stride, grid.rows - 1).astype(
        int
    )
    xs = np.minimum((np.arange(pw) + 0.5) * scene.width / pw // grid.stride, grid.cols - 1).astype(
        int
    )
    cell = classes[np.ix_(ys, xs)]
    colors = np.array([_rgb(c.color) for c in info.classes], np.uint8)
    has = cell != NODATA_CLASS
    overlay = colors[np.where(has, cell, 0)]
    alpha = 0.45
    blended = cv2.addWeighted(img, 1 - alpha, overlay, alpha, 0)
    img = np.where(has[..., None], blended, img)
    img[~valid] = 255  # nodata shown as white

    legend_w = 240
    canvas = Image.new("RGB", (pw + legend_w, max(ph, 220)), (250, 250, 247))
    canvas.paste(Image.fromarray(img), (0, 0))
    d = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
        small = ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType
        font = small = ImageFont.load_default()
    x0, y = pw + 14, 12
    d.text((x0, y), title or "Khet field map", fill=(20, 20, 20), font=font)
    y += 28
    total = sum(areas["class"].values()) or 1.0
    for c in info.classes:
        a = areas["class"].get(c.name, 0.0)
        d.rectangle([x0, y, x0 + 16, y + 16], fill=_rgb(c.color), outline=(60, 60, 60))
        amount = f"{a:.2f} ha" if unit == "ha" else f"{a / total:.0%}"
        d.text((x0 + 24, y), f"{c.name}  {amount}", fill=(20, 20, 20), font=font)
        y += 24
    y += 8
    d.text((x0, y), f"model {info.name} {info.version}", fill=(90, 90, 90), font=small)
    y += 18
    d.text((x0, y), f"cell {grid.stride} px; white = no data", fill=(90, 90, 90), font=small)
    if unit != "ha":
        y += 18
        d.text((x0, y), "no georeference: shares, not hectares", fill=(150, 60, 30), font=small)
    canvas.save(path, format="PNG", optimize=False)
