"""From a classified grid to the field map a person reads: COGs, zones, preview and summary.

Crop vigour is a rule, not a learned class: within crop cells, the cell's mean vegetation index is
compared with the median of all crop cells of the same flight. The rule and its thresholds are
written into the summary and the legend so nobody mistakes it for a diagnosis.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import shapely
from affine import Affine
from khet.vision import gsd as gsd_
from khet.vision import indices as vi
from khet.vision import products
from khet.vision.grid import MIN_VALID, Grid
from khet.vision.outputs import Staging, write_cog
from khet.vision.scene import Scene
from khet.vision.units import area_scale, fmt_area
from PIL import Image, ImageDraw, ImageFont
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from khet.errors import InputError, KhetError

if TYPE_CHECKING:  # the pipeline and the plan pass these in; neither is imported at run time
    from khet.vision.pipeline import CellMaps
    from khet.vision.plan import Plan

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


def working_transform(scene: Scene, zoom: float) -> Affine:
    """The transform of the working image (the scene resampled by `zoom`)."""
    return scene.transform @ Affine.scale(1 / zoom) if zoom != 1 else scene.transform


def grid_transform(scene: Scene, grid: Grid, zoom: float = 1.0) -> Affine:
    """The transform of the map's cell grid (one pixel of classes.tif per cell)."""
    return working_transform(scene, zoom) @ Affine.scale(grid.cell)


#: A self-crossing boundary is repaired (shapely's make_valid) only when that changes the area
#: it encloses by less than this share: a ring touching itself, a sliver loop. A bow-tie (two
#: corners swapped) encloses something else once repaired, so it is refused instead.
BOUNDARY_REPAIR_TOLERANCE = 0.01
#: A boundary enclosing less is a mistake (points on one line, a sliver); the service's check
#: of stored field boundaries (service/geometry.py) is this one too.
MIN_BOUNDARY_M2 = 10.0
_POLYGONS = ("Polygon", "MultiPolygon")
_GEOMETRIES = (*_POLYGONS, "Point", "MultiPoint", "LineString", "MultiLineString")


def boundary_geometry(value: Any, notes: list[str] | None = None) -> dict[str, Any]:
    """A field boundary as one GeoJSON Polygon or MultiPolygon in longitude/latitude (EPSG:4326)
    from a bare geometry, a Feature or a FeatureCollection (their polygons together; points and
    lines beside them are left out). InputError when it holds no polygon with an area, when its
    points are not longitude/latitude, or when it crosses itself so that a repair would change
    the field; a repair that does not (see BOUNDARY_REPAIR_TOLERANCE) is said in `notes`."""
    parts = []
    for poly in boundary_polygons(value):
        if not isinstance(poly.get("coordinates"), list | tuple):
            raise InputError(f"The field boundary's {poly['type']} has no coordinates.")
        try:
            g = shapely.force_2d(shape(poly))
        except Exception as e:
            raise InputError(f"The field boundary is not a valid GeoJSON polygon ({e}).") from None
        xy = shapely.get_coordinates(g)
        if not np.isfinite(xy).all():
            raise InputError("The field boundary's points must be [longitude, latitude] numbers.")
        bad = (np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)
        if bad.any():
            lon, lat = xy[bad][0]
            raise InputError(
                f"Field boundary point [{lon:g}, {lat:g}] is not a longitude/latitude: the "
                "boundary must be in WGS84 degrees (EPSG:4326), longitude first."
            )
        # Each polygon on its own: parts that overlap each other are one field, as features do.
        for part in getattr(g, "geoms", [g]):
            if not part.is_valid:
                part = _repaired(part, notes)
            if not part.is_empty and part.area > 0:
                parts.append(part)
    if not parts:
        raise InputError(
            "The field boundary encloses no area (its points are on one line or repeat one "
            "point): give the field's outline as a polygon."
        )
    union = shapely.union_all(parts)
    west, _, east, _ = union.bounds
    if east - west > 180:
        raise InputError(
            f"The field boundary spans {east - west:.0f}° of longitude (from {west:g} to "
            f"{east:g}): a field across the 180° meridian is not supported; is it the right "
            "shape?"
        )
    try:
        m2 = float(hectares(np.array([union], dtype=object), "EPSG:4326")[0]) * 1e4
    except Exception as e:  # a projection error (GDAL's message says which point)
        raise InputError(f"The field boundary cannot be placed on the map ({e}).") from None
    if math.isfinite(m2) and m2 < MIN_BOUNDARY_M2:
        raise InputError(
            f"The field boundary encloses {m2:.2g} m², too small for a field (at least "
            f"{MIN_BOUNDARY_M2:g} m²): is it the right shape?"
        )
    if not isinstance(union, shapely.Polygon | shapely.MultiPolygon):
        union = shapely.MultiPolygon(
            [p for p in getattr(union, "geoms", []) if isinstance(p, shapely.Polygon)]
        )
    return json.loads(json.dumps(mapping(union)))


def boundary_polygons(value: Any) -> list[dict]:
    """The GeoJSON Polygons and MultiPolygons a boundary holds: a bare geometry, a Feature or a
    FeatureCollection (as QGIS exports a layer); points and lines beside them are left out.
    InputError when there is none."""
    _check_named_crs(value)
    polygons: list[dict] = []
    others: list[str] = []
    _collect_polygons(value, polygons, others, depth=0)
    if not polygons:
        found = ", ".join(dict.fromkeys(others)) or "nothing"
        raise InputError(
            f"The field boundary holds no polygon (it has {found}): give the field's outline "
            "as a GeoJSON Polygon or MultiPolygon (a bare geometry, a Feature or a "
            "FeatureCollection)."
        )
    return polygons


def _check_named_crs(value: Any) -> None:
    """GeoJSON of 2008 could name its CRS (`"crs": {"type": "name", ...}`; QGIS still writes
    CRS84 there). One that is not longitude/latitude is refused: read as degrees, a UTM file's
    numbers would place the field elsewhere, or nowhere."""
    crs = value.get("crs") if isinstance(value, dict) else None
    if crs is None:
        return
    props = crs.get("properties") if isinstance(crs, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise InputError(
            "The field boundary's `crs` member names no CRS: leave it out (GeoJSON is longitude/"
            "latitude, EPSG:4326)."
        )
    try:
        lonlat = "CRS84" in name.upper() or CRS.from_user_input(name).to_epsg() == 4326
    except Exception:
        lonlat = False
    if not lonlat:
        raise InputError(
            f"The field boundary is in {name[:80]}, not longitude/latitude: save it as GeoJSON "
            "in EPSG:4326 (in QGIS: Export > Save Features As, CRS EPSG:4326)."
        )


def _collect_polygons(value: Any, polygons: list[dict], others: list[str], depth: int) -> None:
    """The Polygon and MultiPolygon geometries of a GeoJSON object, and the names of the
    other things it holds (for the message when there is no polygon)."""
    if depth > 8:
        raise InputError("The field boundary nests GeoJSON collections too deeply.")
    if not isinstance(value, dict):
        what = {list: "a list", str: "text", type(None): "null"}.get(type(value), "a number")
        raise InputError(
            f"The field boundary must be a GeoJSON object (Polygon, MultiPolygon, Feature or "
            f"FeatureCollection), not {what}."
        )
    kind = value.get("type")
    if kind == "FeatureCollection":
        feats = value.get("features")
        if not isinstance(feats, list | tuple):
            raise InputError("The field boundary's FeatureCollection has no list of features.")
        if not feats:
            others.append("no features")
        for f in feats:
            _collect_polygons(f, polygons, others, depth + 1)
    elif kind == "Feature":
        if value.get("geometry") is None:
            others.append("a feature without geometry")
        else:
            _collect_polygons(value["geometry"], polygons, others, depth + 1)
    elif kind == "GeometryCollection":
        members = value.get("geometries")
        if not isinstance(members, list | tuple):
            raise InputError("The field boundary's GeometryCollection has no list of geometries.")
        for m in members:
            _collect_polygons(m, polygons, others, depth + 1)
    elif kind in _POLYGONS:
        polygons.append(value)
    elif kind in _GEOMETRIES:
        others.append(f"a {kind}")
    else:
        raise InputError(
            f"The field boundary is not GeoJSON: its type is {str(kind)[:40]!r}, not Polygon, "
            "MultiPolygon, Feature or FeatureCollection."
        )


def _repaired(g: Any, notes: list[str] | None) -> Any:
    """A self-crossing polygon made valid, when that keeps the area it encloses (empty when it
    encloses none); else InputError saying where it crosses."""
    from shapely.validation import explain_validity

    why = explain_validity(g)
    fixed = shapely.make_valid(g)
    polys = [
        p
        for p in getattr(fixed, "geoms", [fixed])
        if isinstance(p, shapely.Polygon | shapely.MultiPolygon) and p.area > 0
    ]
    if not polys:  # a line or a point drawn as a polygon: it encloses nothing
        return shapely.Polygon()
    fixed = shapely.union_all(polys)
    if abs(fixed.area - abs(float(g.area))) > BOUNDARY_REPAIR_TOLERANCE * fixed.area:
        raise InputError(
            f"The field boundary crosses itself ({why}), so which side is the field is "
            "unclear: redraw it as one outline that does not cross (e.g. in QGIS: Vector > "
            "Geometry Tools > Check Validity)."
        )
    if notes is not None:
        notes.append(f"The field boundary was repaired ({why}); the area it encloses is kept.")
    return fixed


def clip_mask(geometry: dict, scene: Scene, grid: Grid, zoom: float = 1.0) -> np.ndarray | None:
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
        transform=grid_transform(scene, grid, zoom),
        invert=True,
    )
    if not mask.any():
        scene.warnings.append("The imagery does not overlap the field boundary.")
    return mask


def vigour_grid(
    classes: np.ndarray, cell_index: np.ndarray, crop_id: int | None, index_pos: int | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vigour levels of the crop cells from their index values, and their legend."""
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


def equal_area_crs(lon: float, lat: float) -> str:
    """A Lambert azimuthal equal-area projection centred on (lon, lat): areas in it are true
    (UTM is conformal: its areas are off by up to 0.2 % across a zone, Web Mercator by
    1/cos^2(latitude))."""
    return f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"


def hectares(geoms: np.ndarray, crs) -> np.ndarray:
    """Areas in hectares of shapely geometries in `crs`, measured in a local equal-area
    projection (every vertex reprojected in one array call)."""
    if len(geoms) == 0:
        return np.zeros(0)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    (lon,), (lat,) = warp_transform(crs, "EPSG:4326", [(x0 + x1) / 2], [(y0 + y1) / 2])
    return shapely.area(shapely.transform(geoms, _reprojector(crs, equal_area_crs(lon, lat)))) / 1e4


def write_field_map(
    scene: Scene,
    plan: Plan,
    index_list: list[vi.Index],
    result: CellMaps,
    st: Staging,
    title: str | None = None,
) -> dict[str, Any]:
    """Write the class, vigour, confidence and cover rasters, zones and preview; return the
    summary (as a dict the pipeline completes and checks against `Summary`)."""
    classes = result.classes
    names = plan.class_names
    vig_index = vi.vigour_index(index_list)
    vig_pos = index_list.index(vig_index) if vig_index else None
    # Vigour compares crop cells; a map that cannot tell crop compares all its vegetation.
    target = "crop" if "crop" in names else ("vegetation" if "vegetation" in names else None)
    vigour, vig_params = vigour_grid(
        classes, result.cell_index, names.index(target) if target else None, vig_pos
    )
    _class_rasters(scene, plan, result, vigour, vig_index, st)
    areas = _Areas.of(scene)
    zone_areas, zone_info = _zones(
        scene, plan, classes, vigour, names, areas, st.file(products.ZONES.path)
    )
    write_preview(
        st.file(products.PREVIEW.path),
        result.preview,
        scene,
        plan,
        classes,
        zone_areas,
        areas.unit,
        title,
    )
    summary = _summary(
        scene,
        plan,
        index_list,
        result,
        vigour,
        vig_index,
        vig_params,
        target,
        zone_areas,
        areas,
        title,
    )
    summary["zones"] = zone_info
    return summary


def _class_rasters(
    scene: Scene,
    plan: Plan,
    result: CellMaps,
    vigour: np.ndarray,
    vig_index: vi.Index | None,
    st: Staging,
) -> None:
    """classes.tif, vigour.tif and, where the method gives them, confidence.tif and cover.tif:
    COGs on the cell grid in the scene's CRS."""
    gt, crs, names = grid_transform(scene, plan.grid, plan.zoom), scene.crs, plan.class_names
    model = plan.bundle.info if plan.bundle else None
    write_cog(
        st.file(products.CLASSES.path),
        result.classes,
        transform=gt,
        crs=crs,
        nodata=NODATA_CLASS,
        colormap=_colormap([c.color for c in plan.classes]),
        descriptions=["class"],
        tags={
            "classes": json.dumps(names),
            "method": plan.method,
            "model": f"{model.name} {model.version}" if model else "",
        },
    )
    if result.confidence is not None:
        # The model's probability for the class it chose, in percent: its honesty, cell by cell.
        write_cog(
            st.file(products.CONFIDENCE.path),
            result.confidence,
            transform=gt,
            crs=crs,
            nodata=NODATA_CLASS,
            descriptions=["confidence (%)"],
        )
    if result.cover is not None:
        # Share of each cell's pixels per class (soil left out), in percent: weed pressure.
        keep = [i for i, n in enumerate(names) if n != "soil"]
        write_cog(
            st.file(products.COVER.path),
            np.moveaxis(result.cover[..., keep], -1, 0),
            transform=gt,
            crs=crs,
            nodata=NODATA_CLASS,
            descriptions=[f"{names[i]} cover (%)" for i in keep],
        )
    write_cog(
        st.file(products.VIGOUR.path),
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


class _Areas:
    """How areas are measured: hectares on a georeferenced map (equal-area projection),
    approximate hectares from the GSD on a frame without one, else image pixels."""

    def __init__(self, unit: str, basis: str, px_m2: float | None) -> None:
        self.unit, self.basis, self.px_m2 = unit, basis, px_m2

    @classmethod
    def of(cls, scene: Scene) -> _Areas:
        if scene.crs is not None:
            return cls("ha", "georeference", None)
        g = scene.gsd.metres
        if g is not None:
            return cls("ha", "ground sample distance (approximate)", g * g)
        return cls("px", "image pixels", None)

    def measure(self, geoms: np.ndarray, crs) -> np.ndarray:
        if crs is not None:
            return hectares(geoms, crs)
        px = shapely.area(geoms) if len(geoms) else np.zeros(0)
        return px * self.px_m2 / 1e4 if self.px_m2 is not None else px


def _summary(
    scene: Scene,
    plan: Plan,
    index_list: list[vi.Index],
    result: CellMaps,
    vigour: np.ndarray,
    vig_index: vi.Index | None,
    vig_params: dict[str, Any],
    target: str | None,
    zone_areas: dict[str, dict[str, float]],
    areas: _Areas,
    title: str | None,
) -> dict[str, Any]:
    classes, unit = result.classes, areas.unit
    # Shares are of area (cells at the image edge count only their part inside the image), so
    # the summary, the preview legend and the zones agree.
    total_area = sum(zone_areas["class"].values())
    crop_area = sum(zone_areas["vigour"].values())
    digits = 6 if unit == "ha" else 0
    class_rows = []
    for i, c in enumerate(plan.classes):
        sel = classes == i
        n = int(sel.sum())
        conf = None
        if result.confidence is not None and n:
            conf = round(float(result.confidence[sel].mean(dtype=np.float64)) / 100, 3)
        a = zone_areas["class"].get(c.name, 0.0)
        class_rows.append(
            {
                "name": c.name,
                "color": c.color,
                "cells": n,
                "share": round(a / total_area, 4) if total_area else 0.0,
                f"area_{unit}": round(a, digits),
                "mean_confidence": conf,
            }
        )
    vig_rows = []
    for lvl_i, lvl in enumerate(VIGOUR_LEVELS):
        a = zone_areas["vigour"].get(lvl, 0.0)
        vig_rows.append(
            {
                "name": lvl,
                "color": VIGOUR_COLORS[lvl_i],
                "cells": int((vigour == lvl_i).sum()),
                "share_of_crop": round(a / crop_area, 4) if crop_area else 0.0,
                f"area_{unit}": round(a, digits),
            }
        )
    rule = (
        VIGOUR_RULE.format(index=vig_index.title)
        if vig_index
        else "No vegetation index available for these bands: vigour not assessed."
    )
    if vig_index and target == "vegetation":
        rule += " Crop is not told apart here, so all vegetation is compared."
    g = plan.working_gsd_m
    grid = plan.grid
    layers = {
        "classes": {"method": plan.method, "detail": plan.detail, "gsd_m": g},
        "vigour": {"method": "rule", "detail": rule, "gsd_m": g},
        "indices": {
            "method": "index",
            "detail": "Vegetation indices per pixel, from the image's own values.",
            "gsd_m": g * result.index_step if g else None,
        },
    }
    summary: dict[str, Any] = {
        "title": title,
        "input": {
            **scene.describe(),
            **({"looks_near_infrared": round(plan.red_purple, 3)} if plan.red_purple else {}),
            **({"looks_misordered": round(plan.inverted, 3)} if plan.inverted else {}),
            **({"looks_swapped": round(plan.swapped, 3)} if plan.swapped else {}),
        },
        "radiometry": scene.radiometry,
        "gsd": scene.gsd.model_dump(exclude_none=True),
        "location": _location(scene),
        "area_unit": unit,
        "area_basis": areas.basis,
        "model": plan.bundle.describe() if plan.bundle else None,
        "method": plan.method,
        "layers": layers,
        "tiling": {
            "tile_size": grid.tile,
            "overlap": grid.overlap,
            "stride": grid.stride,
            "cell": grid.cell,
            "rows": grid.rows,
            "cols": grid.cols,
            "cells_analysed": result.analysed,
            "cells_skipped": result.skipped,
            "min_valid_share": MIN_VALID,
            "cell_m": round(g * grid.cell, 4) if g else None,
        },
        "classes": class_rows,
        "cover": _cover(plan, result),
        "vigour": {
            "index": vig_index.name if vig_index else None,
            "rule": rule,
            "thresholds": vig_params,
            "levels": vig_rows,
        },
        "indices": {s.index.name: s.result() for s in result.index_stats},
        "index_resolution_step": result.index_step,
        "outputs": {
            p.key: p.path
            for p in products.PRODUCTS
            if p.key not in ("index", "summary")
            and p not in products.MANAGEMENT  # made later, on demand
            and p is not products.ORTHO  # a flight's mosaic: listed by analyze_flight
            and (p.key != "confidence" or result.confidence is not None)
            and (p.key != "cover" or result.cover is not None)
        }
        | {"indices": {k: f"indices/{k}.tif" for k in result.index_paths}},
        "warnings": list(scene.warnings),
    }
    if plan.rows is not None:
        summary["rows"] = plan.rows.describe()
    if unit == "ha":
        summary["area_total_ha"] = round(total_area, 6)
        if scene.crs is None:
            scene.warnings.append(
                "No georeference: areas are approximate, from the ground sample distance "
                f"({gsd_.describe(scene.gsd.metres)} per pixel) for a frame looking straight down."
            )
            summary["warnings"] = list(scene.warnings)
    else:
        summary["area_total_px"] = int(total_area)
    return summary


def _cover(plan: Plan, result: CellMaps) -> dict[str, Any] | None:
    """Shares of the analysed area covered by each kind of plant, from per-pixel classes."""
    if result.cover is None:
        return None
    names = plan.class_names
    valid = result.classes != NODATA_CLASS
    if not valid.any():
        return None
    # Summed in integers: a float64 copy of the cover took 41 MB, the tail's peak, at 1.7
    # million cells.
    share = result.cover[valid].sum(axis=0, dtype=np.int64) / (100.0 * np.count_nonzero(valid))
    out: dict[str, Any] = {"method": plan.method}
    for i, n in enumerate(names):
        if n in ("crop", "weed", "vegetation"):
            out[n] = round(float(share[i]), 4)
    plants = [i for i, n in enumerate(names) if n != "soil"]
    out["vegetation"] = round(float(share[plants].sum()), 4)
    return out


def _location(scene: Scene) -> dict[str, Any] | None:
    if scene.crs is not None:
        cx, cy = scene.transform @ (scene.width / 2, scene.height / 2)
        from rasterio.warp import transform as wt

        lon, lat = wt(scene.crs, "EPSG:4326", [cx], [cy])
        return {"lon": round(lon[0], 7), "lat": round(lat[0], 7), "based_on": "georeferenced image"}
    lon, lat = scene.camera.longitude, scene.camera.latitude
    if lon is not None and lat is not None:
        return {
            "lon": round(lon, 7),
            "lat": round(lat, 7),
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


#: Zone polygons made and written at a time: the zones file is written as they come, so memory
#: is bounded by this, not by the field (all 29,000 polygons of a 32768 px orthomosaic held as
#: GeoJSON took 92 MB more at once; 7,250 at 16384 px).
ZONE_CHUNK = 2048

#: Rows of cells whose zones are traced at a time (see `_traced`). GDAL holds every outline it
#: traces until the last is read: all of one class's on a 1.7 million cell map took 48 MB at the
#: end of the run, growing with the field.
ZONE_BAND = 128


def _zones(
    scene, plan: Plan, classes, vigour, names, areas: _Areas, path: Path
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Write zones.geojson to `path`: polygons of each class (crop split by vigour level) with
    their areas, class by class. Return the area of each class and vigour level, and the
    summary's `zones` (see `_ZoneTally`)."""
    gt = grid_transform(scene, plan.grid, plan.zoom)
    code = np.full(classes.shape, 255, np.uint8)
    valid = classes != NODATA_CLASS
    code[valid] = classes[valid] * 4 + 3  # 3 = no vigour level
    has_v = vigour != NODATA_CLASS
    code[has_v] = classes[has_v] * 4 + vigour[has_v]
    # The last row and column of cells may reach past the image: zones are cut at its edge.
    edge = (scene.width * plan.zoom / plan.grid.cell, scene.height * plan.zoom / plan.grid.cell)
    crs = scene.crs
    tally = _ZoneTally(names, areas.unit)
    # One class and vigour level at a time (a zone is one value's connected cells), so the file
    # lists the zones class by class.
    found = itertools.chain.from_iterable(
        _traced(code == v, v) for v in np.unique(code[code != 255]).tolist()
    )
    head = '{"type":"FeatureCollection"'
    if crs is None:
        head += ',"khet:coordinates":"image pixels (no georeference)"'
    with open(path, "w", encoding="utf-8") as out:
        out.write(head + ',"features":[')
        sep = ""
        while chunk := list(itertools.islice(found, ZONE_CHUNK)):
            # Each step's copy of the chunk's polygons goes as the next is made (five copies
            # held at once were most of the end of the run's peak).
            values = np.array([v for v, _ in chunk])
            shapes = np.array([g for _, g in chunk], dtype=object)
            del chunk
            # Exterior rings counter-clockwise, holes clockwise, as GeoJSON (RFC 7946) says.
            shapes = shapely.orient_polygons(_placed(shapes, edge, gt))
            keep = ~shapely.is_empty(shapes)
            codes, polys = values[keep], shapes[keep]
            del shapes
            if not len(polys):
                continue
            area = np.asarray(areas.measure(polys, crs), np.float64)
            if crs is not None:
                polys = shapely.transform(polys, _reprojector(crs, "EPSG:4326", 7))
            # Feature by feature: a chunk's coordinates as Python lists took 38 MB.
            for feat in tally.features(codes, area, polys):
                out.write(sep + json.dumps(feat, separators=(",", ":"), ensure_ascii=False))
                sep = ","
        out.write("]}\n")
    return tally.totals, tally.summary()


def _traced(mask: np.ndarray, value: int, band: int | None = None):
    """Yield (value, polygon in cells) for each zone of `mask`'s cells (4-connected), band of
    `band` rows by band: the zones whose last row lies in the band, each traced whole from its
    first row (no zone is cut at a band's edge), so GDAL holds those zones' outlines, not the
    field's."""
    band = band or ZONE_BAND
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    top = stats[:, cv2.CC_STAT_TOP]
    last = top + stats[:, cv2.CC_STAT_HEIGHT] - 1  # each zone's last row
    last[0] = -1  # label 0: the cells of other values
    del mask, stats
    for r0 in range(0, labels.shape[0], band):
        r1 = min(r0 + band, labels.shape[0])
        ending = (last >= r0) & (last < r1)
        if not ending.any():
            continue
        first = int(top[ending].min())
        rows = labels[first:r1]
        at = Affine.translation(0, first)
        for g in _cell_polygons(features.shapes(rows, ending[rows], 4, at)):
            yield value, g


def _cell_polygons(shapes) -> np.ndarray:
    """rasterio's polygonised (GeoJSON polygon, value) pairs as shapely polygons, made in a few
    vectorised calls (shapely's `shape()` one by one was a third of `_zones`)."""
    rings: list[np.ndarray] = []
    ring_poly: list[int] = []
    for p, (geom, _) in enumerate(shapes):
        for ring in geom["coordinates"]:
            rings.append(np.asarray(ring, dtype=np.float64))
            ring_poly.append(p)
    if not rings:
        return np.zeros(0, dtype=object)
    ring_of = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
    lines = shapely.linearrings(np.concatenate(rings), indices=ring_of)
    return shapely.polygons(lines, indices=ring_poly)


def _placed(polys: np.ndarray, edge: tuple[float, float], transform: Affine) -> np.ndarray:
    """Polygons traced in cells, cut at `edge` (the image's width and height in cells) and
    placed by `transform`.

    A zone's outline runs along cell edges, and only the last column and row of cells can
    reach past the image, so moving its corners beyond the image onto the image's edge cuts it
    there exactly: what an intersection with the image's footprint gives, without one (that
    took 90 MB for the zones that hold thousands of holes on a 1.7 million cell map)."""

    def place(xy: np.ndarray) -> np.ndarray:
        cut: Any = np.minimum(xy, edge)  # Affine's stubs take numbers; it maps arrays as well
        return np.column_stack(transform * (cut[:, 0], cut[:, 1]))

    return shapely.transform(polys, place)


class _ZoneTally:
    """What the zones add up to, chunk by chunk: the area of each class and vigour level, and
    for the summary's `zones` their number, the largest of each class and vigour level (area
    and centroid, in the file's coordinates) and the bounds of them all."""

    def __init__(self, names: Sequence[str], unit: str) -> None:
        self.names, self.unit = names, unit
        self.digits = 7 if unit == "ha" else 0  # 0.001 m², or whole pixels
        self.totals: dict[str, dict[str, float]] = {"class": {}, "vigour": {}}
        self.largest: dict[int, tuple[float, Any]] = {}  # code -> (area, polygon)
        self.bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self.count = 0

    def _label(self, value: int) -> tuple[str, str | None]:
        cls_i, lvl = divmod(value, 4)
        return self.names[cls_i], VIGOUR_LEVELS[lvl] if lvl < 3 else None

    def features(
        self, codes: np.ndarray, area: np.ndarray, polys: np.ndarray
    ) -> Iterator[dict[str, Any]]:
        """Count a chunk of zones in (`polys` in the file's coordinates), then yield their
        GeoJSON features one by one."""
        b = shapely.total_bounds(polys)
        self.bounds = np.concatenate(
            [np.minimum(self.bounds[:2], b[:2]), np.maximum(self.bounds[2:], b[2:])]
        )
        self.count += len(polys)
        for value in np.unique(codes).tolist():
            idx = np.flatnonzero(codes == value)
            k = int(idx[np.argmax(area[idx])])
            if area[k] > self.largest.get(value, (-1.0, None))[0]:
                self.largest[value] = (float(area[k]), polys[k])
            name, level = self._label(value)
            part = float(area[idx].sum())
            self.totals["class"][name] = self.totals["class"].get(name, 0.0) + part
            if level is not None:
                self.totals["vigour"][level] = self.totals["vigour"].get(level, 0.0) + part
        return self._features(codes, area, polys)

    def _features(
        self, codes: np.ndarray, area: np.ndarray, polys: np.ndarray
    ) -> Iterator[dict[str, Any]]:
        for value, a, geom in zip(codes.tolist(), area.tolist(), _geojson(polys), strict=True):
            name, level = self._label(value)
            props: dict[str, Any] = {"class": name}
            if level is not None:
                props["vigour"] = level
            props[f"area_{self.unit}"] = round(a, self.digits)
            yield {"type": "Feature", "geometry": geom, "properties": props}

    def summary(self) -> dict[str, Any]:
        """The summary's `zones`."""
        largest = []
        for value, (a, poly) in sorted(self.largest.items()):
            name, level = self._label(value)
            c = shapely.centroid(poly)
            largest.append(
                {
                    "name": name,
                    "vigour": level,
                    "area": round(a, self.digits),
                    "x": round(float(c.x), 7),
                    "y": round(float(c.y), 7),
                }
            )
        out: dict[str, Any] = {"features": self.count, "largest": largest}
        if self.count:
            out["bounds"] = [round(float(v), 7) for v in self.bounds]
        return out


def _geojson(geoms: np.ndarray) -> Iterator[dict[str, Any]]:
    """GeoJSON geometries of shapely geometries, as `mapping` gives them, one by one; polygons
    (nearly all zones) from their coordinates taken in one vectorised call (`mapping` one by
    one took a third of `_zones` on a 16384 px orthomosaic), made into lists one at a time."""
    is_poly = shapely.get_type_id(geoms) == 3  # 3: Polygon
    coords = np.zeros((0, 2))
    rings = polys = np.zeros(1, np.int64)
    if is_poly.any():
        # The polygons' coordinates, their rings' starts in them, their polygons' in the rings.
        _, coords, (rings, polys) = shapely.to_ragged_array(geoms[is_poly])
    k = 0
    for g, poly in zip(geoms, is_poly.tolist(), strict=True):
        if not poly:
            yield mapping(g)
            continue
        yield {
            "type": "Polygon",
            "coordinates": [
                coords[rings[r] : rings[r + 1]].tolist() for r in range(polys[k], polys[k + 1])
            ],
        }
        k += 1


def display_bands(bands: Sequence[str]) -> list[str]:
    """The three bands an image is shown in (preview and imagery tiles): true colour, else the
    false colour of colour-infrared film (NIR, red, green), else a near-infrared camera's own
    (NIR, green, blue: plants red, as its user knows them), else grey."""
    combos = (
        ["red", "green", "blue"],
        ["nir", "red", "green"],
        ["nir", "green", "blue"],
        ["nir", "red", "red"],
    )
    for combo in combos:
        if all(b in bands for b in combo):
            return combo
    return [bands[0]] * 3


class PreviewCanvas:
    """The preview image, assembled from the blocks the pipeline reads anyway.

    Reading a big orthomosaic a second time, decimated, for the preview cost as much as a
    quarter of the model's time; each block is shrunk into place instead (INTER_AREA). Block
    edges are rounded from image coordinates, so neighbouring blocks tile exactly.
    """

    def __init__(self, scene: Scene, width: int, height: int, max_size: int = 1024) -> None:
        """A canvas for the working image of `width` x `height` pixels."""
        self.show = display_bands(scene.bands)
        self.bands = list(dict.fromkeys(self.show))
        f = max(max(width, height) / max_size, 1.0)
        self.h, self.w = max(1, round(height / f)), max(1, round(width / f))
        self.sy, self.sx = self.h / height, self.w / width
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


def _legend_text(d: ImageDraw.ImageDraw, xy: tuple[int, int], line: str, font, small) -> None:
    """A legend line; "²" is drawn as a raised small 2 (Pillow's default font has no "²")."""
    x, y = float(xy[0]), xy[1]
    for k, part in enumerate(line.split("²")):
        if k:
            d.text((x, y - 3), "2", fill=(20, 20, 20), font=small)
            x += d.textlength("2", font=small)
        d.text((x, y), part, fill=(20, 20, 20), font=font)
        x += d.textlength(part, font=font)


def write_preview(
    path: Path,
    canvas: PreviewCanvas,
    scene: Scene,
    plan: Plan,
    classes: np.ndarray,
    areas: dict[str, dict[str, float]],
    unit: str,
    title: str | None,
) -> None:
    """The image with the class map over it and a legend: what a farmer looks at first. The
    legend says which method made the classes, at which ground sample distance."""
    grid = plan.grid
    data, valid = canvas.data, canvas.valid
    rgb8 = scene.to_uint8(data, canvas.bands) if data.dtype != np.uint8 else data
    img = np.stack([rgb8[canvas.bands.index(b)] for b in canvas.show], axis=-1)
    ph, pw = img.shape[:2]
    # Which cell each preview pixel falls in.
    ys = (np.arange(ph) + 0.5) * grid.height / ph // grid.cell
    xs = (np.arange(pw) + 0.5) * grid.width / pw // grid.cell
    ys = np.minimum(ys, grid.rows - 1).astype(int)
    xs = np.minimum(xs, grid.cols - 1).astype(int)
    cell = classes[np.ix_(ys, xs)]
    colors = np.array([_rgb(c.color) for c in plan.classes], np.uint8)
    has = cell != NODATA_CLASS
    overlay = colors[np.where(has, cell, 0)]
    alpha = 0.45
    blended = cv2.addWeighted(img, 1 - alpha, overlay, alpha, 0)
    img = np.where(has[..., None], blended, img)
    img[~valid] = 255  # nodata shown as white

    legend_w = 260
    canvas_img = Image.new("RGB", (pw + legend_w, max(ph, 260)), (250, 250, 247))
    canvas_img.paste(Image.fromarray(img), (0, 0))
    d = ImageDraw.Draw(canvas_img)
    try:
        font = ImageFont.load_default(size=15)
        small = ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType
        font = small = ImageFont.load_default()
    x0, y = pw + 14, 12
    d.text((x0, y), title or "Khet field map", fill=(20, 20, 20), font=font)
    y += 28
    total = sum(areas["class"].values()) or 1.0
    scale = area_scale(areas["class"].values())  # the legend's areas read in one unit
    for c in plan.classes:
        a = areas["class"].get(c.name, 0.0)
        d.rectangle([x0, y, x0 + 16, y + 16], fill=_rgb(c.color), outline=(60, 60, 60))
        amount = fmt_area(a, scale) if unit == "ha" else f"{a / total:.0%}"
        _legend_text(d, (x0 + 24, y), f"{c.name}  {amount}", font, small)
        y += 24
    y += 8
    method = {
        "model": f"model {plan.bundle.info.name}" if plan.bundle else "model",
        "rows": "crop rows (on row: crop)",
        "index": "vegetation index only",
    }[plan.method]
    lines = [
        method,
        f"at {gsd_.describe(plan.working_gsd_m)} per pixel"
        if plan.working_gsd_m
        else "ground sample distance unknown",
        f"cell {gsd_.describe(plan.working_gsd_m * grid.cell)}; white = no data"
        if plan.working_gsd_m
        else f"cell {grid.cell} px; white = no data",
    ]
    if plan.bundle is not None and plan.bundle.info.crops:
        lines.insert(1, f"crop = {', '.join(plan.bundle.info.crops)} (what it learned)")
    if plan.method == "index":
        lines.append("crop and weed not told apart")
    for line in lines:
        d.text((x0, y), line, fill=(90, 90, 90), font=small)
        y += 18
    warn = []
    if unit != "ha":
        warn.append("no georeference: shares, not hectares")
    elif scene.crs is None:
        warn.append("no georeference: hectares approximate")
    if plan.red_purple:
        warn += ["plants red? a near-infrared camera:", "name its bands, see summary"]
    if plan.inverted:
        warn += ["near-infrared too dark: bands in", "the wrong order? see summary"]
    if plan.swapped:
        warn += ["soil blue? red and blue swapped:", "name its bands, see summary"]
    for line in warn:
        d.text((x0, y), line, fill=(150, 60, 30), font=small)
        y += 18
    # zlib level 1: a fifth of the default level's time for a few percent more bytes.
    canvas_img.save(path, format="PNG", optimize=False, compress_level=1)
