"""From a field map to work in the field: management zones, variable-rate and spot-spray
prescriptions, and the files a machine loads.

Everything here reads a finished results folder (what `analyze()` wrote) and writes into its
`management/` subfolder, staged and renamed into place like every other output, so a failed run
leaves the previous files untouched. What this module does, and does not do:

- **Management zones** are made on the map's own cell grid from a vegetation index (or several
  flights of the same field, each index standardised): the index is averaged over each cell,
  smoothed over the neighbouring cells, clustered (scikit-learn k-means, or mapclassify's
  Fisher-Jenks natural breaks), and patches smaller than the minimum zone area are merged into
  their largest neighbour (GDAL's sieve filter through rasterio). Zone 1 has the lowest index.
  The method and every parameter are written into `zones.json`.
- **Prescriptions** give each zone a rate (entered per zone, or a base rate moved by a
  percentage from the lowest to the highest zone), or turn the weed map into spray polygons
  (buffered, merged, small patches dropped). They are written as GeoJSON, an ESRI Shapefile zip
  and ISO 11783-10 TaskData (`TASKDATA/TASKDATA.XML`, written and read with the `isoxml`
  package), all in EPSG:4326, and each file is read back before it is kept: areas within 0.5 %
  and totals must match, else nothing is written.
- A capture with no georeference (a single drone frame) is **placed approximately**: the
  camera's GPS at the image centre, the ground sample distance per pixel, the image's top
  towards the camera's heading when the file records it (else north). Every output says so; a
  machine following it is off by the GPS error (metres) and any heading error.
- It does not say *why* a zone is weaker, nor what rate a crop needs: rates are the user's.
"""

from __future__ import annotations

import functools
import json
import math
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import rasterio
import shapely
from affine import Affine
from khet.vision import products
from khet.vision.indices import BY_NAME, NODATA, VIGOUR_ORDER
from khet.vision.maps import NODATA_CLASS, _reprojector, boundary_geometry, hectares
from khet.vision.outputs import staging, write_cog, write_json
from khet.vision.summary import Summary
from khet.vision.units import fmt_area
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject, transform_geom
from rasterio.warp import transform as warp_transform
from shapely.geometry import mapping, shape

from khet.errors import InputError, KhetError, OutputError, short_reason

OUT_DIR = "management"
MIN_ZONES, MAX_ZONES = 2, 7
ZONE_NODATA = 255
#: Fewest zones that explain this share of the index's variance (the stated criterion for
#: choosing the zone count when the user does not).
EXPLAINED_TARGET = 0.80
#: Zones of a larger map are made on coarser cells (blocks of map cells): no field needs
#: management zones finer than a million cells, and memory and time stay bounded.
MAX_ZONE_CELLS = 1 << 20
DEFAULT_MIN_ZONE_SHARE = 0.02  # of the mapped area, when no minimum zone area is given
AREA_TOLERANCE = 0.005  # read-back check: 0.5 %
ZONE_COLORS = ("#d7301f", "#fc8d59", "#fee08b", "#d9ef8b", "#91cf60", "#1a9850", "#006837")
Method = Literal["kmeans", "natural-breaks"]


@dataclass(frozen=True)
class RateUnit:
    """A rate unit and how ISO 11783-10 states it (its DDI and the integer scale)."""

    name: str
    ddi: int  # Setpoint ... Per Area Application Rate
    iso_unit: str
    iso_per_unit: float  # ISO integer units per one of ours
    maximum: float  # above this a rate is taken for a typing error
    total_unit: str


RATE_UNITS = {
    # DDI 6: Setpoint Mass Per Area Application Rate, mg/m2; 1 kg/ha = 100 mg/m2.
    "kg/ha": RateUnit("kg/ha", 0x0006, "mg/m²", 100.0, 2000.0, "kg"),
    # DDI 1: Setpoint Volume Per Area Application Rate, mm3/m2; 1 L/ha = 100 mm3/m2.
    "L/ha": RateUnit("L/ha", 0x0001, "mm³/m²", 100.0, 2000.0, "L"),
}

ZONES_JSON = f"{OUT_DIR}/zones.json"
ZONES_GEOJSON = f"{OUT_DIR}/zones.geojson"
ZONES_TIF = f"{OUT_DIR}/zones.tif"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _readable_map(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A map file that is missing or damaged (deleted, cut short by a full disk) is the user's
    to fix, in one line: not a traceback. Only file names are said, never the server's folders."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except RasterioError as e:
            why = re.sub(r"[^\s:]*/", "", short_reason(e))  # file names, not their folders
            raise InputError(
                f"A file of the field map cannot be read ({why}): the map is incomplete or "
                "damaged; run `khet analyze` again."
            ) from None

    return run


def files(kind: Literal["rate", "spot"]) -> dict[str, str]:
    """The files of one prescription, by role."""
    return {
        "json": f"{OUT_DIR}/{kind}.json",
        "geojson": f"{OUT_DIR}/{kind}.geojson",
        "shapefile": f"{OUT_DIR}/{kind}-shapefile.zip",
        "taskdata": f"{OUT_DIR}/{kind}-taskdata.zip",
    }


# -- the map's grid, on the ground ---------------------------------------------------------------


@dataclass
class FieldGrid:
    """A results folder's cell grid, placed on the ground, with the field it covers."""

    folder: Path
    summary: Summary
    classes: np.ndarray
    class_names: list[str]
    crs: CRS
    transform: Affine  # cells to `crs`
    pixel_transform: Affine  # as stored in the files (image pixels when not georeferenced)
    placement: Literal["georeference", "approximate"]
    placement_note: str
    field_geom: Any  # shapely geometry in `crs`: the imaged area, clipped to the boundary
    valid: np.ndarray  # cells with a class, inside the field
    warnings: list[str] = field(default_factory=list)
    coarsened: int = 1  # map cells per grid cell side (zones of very large maps)

    @property
    def map_shape(self) -> tuple[int, int]:
        """The shape of the map's own class grid (classes.tif)."""
        h, w = self.classes.shape
        return (h * self.coarsened, w * self.coarsened)


def _utm(lon: float, lat: float) -> CRS:
    zone = int((lon + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def map_summary(folder: Path, name: str | None = None) -> Summary:
    """The summary of a folder `khet analyze` wrote a finished map to; InputError, naming the
    folder as the user gave it (`name`), when it is not one."""
    called = name or str(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise InputError(
            f"{called} {what}: give the folder `khet analyze -o` wrote the field map to."
        )
    if not (folder / products.SUMMARY.path).is_file():
        raise InputError(
            f"{called} holds no finished field map (no summary.json): run `khet analyze` first."
        )
    return Summary.load(folder / products.SUMMARY.path)


def open_map(folder: Path, boundary: dict | None = None) -> FieldGrid:
    """A results folder's grid on the ground; InputError when the folder holds no finished map
    or the map cannot be placed."""
    folder = Path(folder)
    summary = map_summary(folder)
    names = [c.name for c in summary.classes]
    with rasterio.open(folder / products.CLASSES.path) as src:
        classes = src.read(1)
        crs, pixel_transform = src.crs, src.transform
    warnings: list[str] = []
    placement: Literal["georeference", "approximate"]
    if crs is not None:
        grid_crs, transform = crs, pixel_transform
        placement, note = "georeference", "placed by the imagery's georeference"
    else:
        loc, g = summary.location, (summary.gsd.metres if summary.gsd else None)
        if loc is None or g is None:
            lacks = "no camera GPS position" if loc is None else "no ground sample distance"
            fix = (
                "analyse an orthomosaic, or a frame with GPS"
                if loc is None
                else "analyse it again with --gsd"
            )
            raise InputError(
                f"This map has no georeference and {lacks}, so it cannot be placed in the "
                f"field: {fix}."
            )
        grid_crs = _utm(loc.lon, loc.lat)
        (e0,), (n0,) = warp_transform("EPSG:4326", grid_crs, [loc.lon], [loc.lat])
        w, h = summary.input.width, summary.input.height
        yaw = summary.input.camera.get("yaw_deg")
        heading = float(yaw) if isinstance(yaw, int | float) and math.isfinite(yaw) else 0.0
        place = (
            Affine.translation(e0, n0)
            * Affine.rotation(-heading)
            * Affine.scale(g, -g)
            * Affine.translation(-w / 2, -h / 2)
        )
        transform = place * pixel_transform
        placement = "approximate"
        note = (
            "placed approximately: the image has no georeference, so its centre is put at the "
            f"camera's GPS position ({loc.lat:.6f}, {loc.lon:.6f}) at "
            f"{g * 100:.1f} cm per pixel with the image's top towards "
            + (f"the camera's heading ({heading:.0f} degrees)" if yaw is not None else "north")
            + "; a machine following it is off by the GPS error and any heading error"
        )
        warnings.append(f"Map {note}.")
    if summary.input.looks_near_infrared:
        warnings.append(
            "The map looks made from a near-infrared camera's pictures read as red, green and "
            "blue (its plants counted as soil, its index wrong): analyse the imagery again with "
            "its bands named (--bands nir,green,blue) before acting on these zones or rates."
        )
    if summary.input.looks_misordered:
        warnings.append(
            "The map's near-infrared band reads darker than its red or green over much of the "
            "image: unless the field is under water, its bands were named in the wrong order and "
            "its plants counted as soil. Analyse the imagery again with its bands in the "
            "camera's order (--bands) before acting on these zones or rates."
        )
    footprint = _footprint(folder, summary, pixel_transform, transform)
    field_geom = footprint
    if boundary is not None:
        field_geom = footprint.intersection(_boundary_in(boundary, grid_crs))
        if field_geom.is_empty or field_geom.area <= 0:
            raise InputError("The field boundary does not overlap this map.")
    valid = classes != NODATA_CLASS
    if boundary is not None:
        inside = features.geometry_mask(
            [mapping(field_geom)], out_shape=classes.shape, transform=transform, invert=True
        )
        valid &= inside
    if not valid.any():
        raise InputError("The map has no analysed cells inside the field.")
    return FieldGrid(
        folder=folder,
        summary=summary,
        classes=classes,
        class_names=names,
        crs=grid_crs,
        transform=transform,
        pixel_transform=pixel_transform,
        placement=placement,
        placement_note=note,
        field_geom=field_geom,
        valid=valid,
        warnings=warnings,
    )


def _footprint(folder: Path, summary: Summary, pixel_transform: Affine, transform: Affine):
    """The imaged area in the grid's CRS: the class grid's last cells reach past the image."""
    w, h = summary.input.width, summary.input.height
    to_ground = transform * ~pixel_transform  # stored coordinates to the grid's CRS
    index_file = next(iter(sorted((folder / "indices").glob("*.tif"))), None)
    if index_file is not None:
        with rasterio.open(index_file) as src:
            b = src.bounds
        corners = [(b.left, b.top), (b.right, b.top), (b.right, b.bottom), (b.left, b.bottom)]
    elif w and h and summary.input.georeference in ("none", "exif-gps"):
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
    else:
        with rasterio.open(folder / products.CLASSES.path) as src:
            b = src.bounds
        corners = [(b.left, b.top), (b.right, b.top), (b.right, b.bottom), (b.left, b.bottom)]
    return shapely.Polygon([to_ground * c for c in corners])


def _boundary_in(boundary: dict, crs: CRS):
    g = boundary_geometry(boundary)  # InputError unless it holds a polygon with an area
    try:
        local = shape(transform_geom("EPSG:4326", crs, g))
    except Exception as e:
        raise InputError(f"The field boundary is not a valid GeoJSON geometry ({e}).") from e
    if not local.is_valid:
        local = shapely.make_valid(local)
    return local


# -- management zones ----------------------------------------------------------------------------


def _same_ground(grid: FieldGrid, other: Summary, called: str, first: str) -> None:
    """InputError unless a second flight's map can be laid on the first's: both placed by their
    georeference, or both by camera GPS with their centres within the first map's reach (maps
    without map coordinates are combined cell by cell)."""
    if (other.input.crs is not None) != (grid.placement == "georeference"):
        placed = "georeferenced" if grid.placement == "georeference" else "placed by camera GPS"
        raise InputError(
            f"{first} is {placed} and {called} is not: zones from several flights need maps "
            "placed the same way, of the same ground."
        )
    a, b = grid.summary.location, other.location
    if grid.placement == "georeference" or a is None or b is None:
        return  # georeferenced maps' overlap is checked on the grid
    from pyproj import Geod

    _, _, apart = Geod(ellps="WGS84").inv(a.lon, a.lat, b.lon, b.lat)
    x0, y0, x1, y1 = grid.field_geom.bounds
    reach = math.hypot(x1 - x0, y1 - y0) / 2
    if apart > reach:
        raise InputError(
            f"{called} was taken {apart:,.0f} m from {first} (camera GPS), farther than its map "
            f"reaches ({reach:,.0f} m): zones from several flights need maps of the same ground."
        )


def _index_name(summary: Summary, folder: Path, index: str | None) -> str:
    present = [p.stem for p in sorted((folder / "indices").glob("*.tif"))]
    present = [n for n in present if summary.indices.get(n) is not None] or present
    if index is not None:
        index = index.strip().lower()  # NDVI or ndvi
        if index not in present:
            have = ", ".join(present) or "none"
            raise InputError(
                f"This flight has no {index} index map (it has: {have}); choose one of those."
            )
        return index
    for n in ((summary.vigour.index,) if summary.vigour.index else ()) + VIGOUR_ORDER:
        if n in present:
            return n
    if present:
        return present[0]
    if summary.indices:  # computed by the analysis, but their files are not here
        raise InputError(
            "This flight's vegetation index maps were not kept with its results (a field device "
            "sends them only with `khet edge run --with-imagery`), so zones cannot be made from "
            "it."
        )
    raise InputError(
        "This flight has no vegetation index map, so zones cannot be made from it (its bands "
        f"are {', '.join(summary.input.bands) or 'unknown'})."
    )


def index_on_grid(grid: FieldGrid, folder: Path, index: str) -> np.ndarray:
    """The mean of an index map over each cell of `grid` (NaN where there is none)."""
    out = np.full(grid.classes.shape, np.nan, np.float32)
    with rasterio.open(Path(folder) / "indices" / f"{index}.tif") as src:
        data = src.read(1).astype(np.float32)
        data[(data == NODATA) | ~np.isfinite(data)] = np.nan
        if src.crs is not None:
            src_crs, src_t = src.crs, src.transform
            dst_crs, dst_t = grid.crs, grid.transform
        else:  # both in image pixels: resample in that frame
            src_crs, src_t = grid.crs, src.transform
            dst_crs, dst_t = grid.crs, grid.pixel_transform
            if Path(folder) != grid.folder:
                with rasterio.open(Path(folder) / products.CLASSES.path) as cl:
                    if -(-cl.shape[0] // grid.coarsened) * grid.coarsened != grid.map_shape[0] or (
                        -(-cl.shape[1] // grid.coarsened) * grid.coarsened != grid.map_shape[1]
                    ):
                        raise InputError(
                            "Flights without map coordinates can only be combined when their "
                            "maps have the same size; these differ."
                        )
    reproject(
        data,
        out,
        src_transform=src_t,
        src_crs=src_crs,
        dst_transform=dst_t,
        dst_crs=dst_crs,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.average,
    )
    return out


def _smooth(values: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """NaN-aware mean over (2r+1)^2 neighbouring cells: zones follow patterns, not single cells."""
    if radius <= 0:
        return values
    import cv2

    ok = valid & np.isfinite(values)
    v = np.where(ok, values, 0).astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    s = cv2.boxFilter(v, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    n = cv2.boxFilter(ok.astype(np.float32), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = s / n
    out[~ok] = np.nan
    return out


def _explained(x: np.ndarray, labels: np.ndarray) -> float:
    """Share of the variance of the features `x` (N x F) explained by the zones."""
    total = float(((x - x.mean(axis=0)) ** 2).sum())
    if total <= 0:
        return 1.0
    within = 0.0
    for lab in np.unique(labels):
        xi = x[labels == lab]
        within += float(((xi - xi.mean(axis=0)) ** 2).sum())
    return 1.0 - within / total


def _cluster(x: np.ndarray, k: int, method: Method) -> np.ndarray:
    """Zone labels 0..k-1 for features `x` (N x F)."""
    rng = np.random.default_rng(0)
    sample = x if len(x) <= 20000 else x[rng.choice(len(x), 20000, replace=False)]
    if method == "natural-breaks":
        try:
            import mapclassify
        except ImportError:
            raise KhetError(
                "Natural-breaks zones need mapclassify: pip install 'khet[zones]' (or use kmeans)."
            ) from None

        y = x.mean(axis=1)
        # Fisher-Jenks is quadratic in the values: breaks from at most 2000 of them.
        ys = sample.mean(axis=1)[:2000]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Numba not installed": fine at this size
            classifier = mapclassify.FisherJenks(ys, k=k)
        bins = np.asarray(classifier.bins[:-1], dtype=np.float64)
        return np.digitize(y, bins, right=True).astype(np.int32)
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        # Fewer distinct values than zones ends as fewer zones, which the zones file says.
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=4, random_state=0).fit(sample)
    return km.predict(x).astype(np.int32)


def _check_zone_options(
    folders: list[Path], n_zones: int | None, method: str, min_zone_ha: float | None, smooth: int
) -> None:
    """What `make_zones` is asked, checked before any map is read."""
    if not folders:
        raise InputError("Give at least one analysed flight.")
    seen: set[Path] = set()
    for f in folders:
        if f.resolve() in seen:
            raise InputError(f"{f} is given twice: give each analysed flight once.")
        seen.add(f.resolve())
    if n_zones is not None and not (MIN_ZONES <= int(n_zones) <= MAX_ZONES):
        raise InputError(
            f"The number of zones must be {MIN_ZONES} to {MAX_ZONES} (got {n_zones}); "
            "leave it out to let Khet choose."
        )
    if method not in ("kmeans", "natural-breaks"):
        raise InputError(f"Unknown zoning method {method!r}: use kmeans or natural-breaks.")
    if min_zone_ha is not None and not (0 <= min_zone_ha < 1e5):
        raise InputError(
            f"The minimum zone area must be zero or more hectares, under 100,000 (got "
            f"{min_zone_ha:g})."
        )
    if not (0 <= smooth <= 10):
        raise InputError("Smoothing must be 0 to 10 cells.")


@_readable_map
def make_zones(
    folders: list[Path] | Path,
    *,
    n_zones: int | None = None,
    index: str | None = None,
    method: Method = "kmeans",
    min_zone_ha: float | None = None,
    smooth: int = 1,
    boundary: dict | None = None,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Management zones of a field from its map's vegetation index (several flights: their
    standardised indices together), written to `<first folder>/management/`; returns what
    `zones.json` says. `names` are the folders as messages call them (the service's "flight
    12"; by default the folder names)."""
    folders = [Path(folders)] if isinstance(folders, str | Path) else [Path(f) for f in folders]
    _check_zone_options(folders, n_zones, method, min_zone_ha, smooth)
    grid = open_map(folders[0], boundary)
    weed_i = grid.class_names.index("weed") if "weed" in grid.class_names else None
    weed = (grid.classes == weed_i).astype(np.float32) if weed_i is not None else None
    cover = _weed_cover(grid)
    factor = math.ceil(math.sqrt(grid.valid.size / MAX_ZONE_CELLS))
    if factor > 1:  # zones need no finer grid than this: bounded memory and time
        grid, weed, cover = _coarsen(grid, factor, weed, cover)
    name = _index_name(grid.summary, folders[0], index)
    layers, sources = [], []
    called = names or [g.name for g in folders]
    for f in folders:
        s = grid.summary if f == folders[0] else map_summary(f, called[folders.index(f)])
        if f != folders[0]:
            _same_ground(grid, s, called[folders.index(f)], called[0])
        n = name if f == folders[0] else _index_name(s, f, name)
        layer = index_on_grid(grid, f, n)
        if f != folders[0] and not (np.isfinite(layer) & grid.valid).any():
            raise InputError(
                f"{called[folders.index(f)]} does not overlap {called[0]}: zones from several "
                "flights need maps of the same ground."
            )
        layers.append(layer)
        sources.append({"folder": f.name, "index": n, "created": s.created})
    raw = layers[0]
    valid = grid.valid & np.all([np.isfinite(v) for v in layers], axis=0)
    if valid.sum() < 2 * MAX_ZONES:
        raise InputError("Too few analysed cells with an index value to make zones.")
    values = raw[valid]
    distinct = np.unique(np.round(values, 3)).size
    if distinct < (n_zones or MIN_ZONES):
        raise InputError(
            f"The {name.upper()} index hardly varies over this field ({float(values.min()):.3f} "
            f"to {float(values.max()):.3f}, {distinct} distinct value{'s' if distinct > 1 else ''}"
            f"): there is nothing to split into {n_zones or MIN_ZONES} zones; one rate fits it."
        )
    # The minimum zone area, checked against the field before the clustering.
    cell_ha = float(hectares(np.array([_cell(grid, 0, 0)], dtype=object), grid.crs)[0])
    mapped_ha = float(valid.sum()) * cell_ha
    min_ha = DEFAULT_MIN_ZONE_SHARE * mapped_ha if min_zone_ha is None else float(min_zone_ha)
    if min_ha > mapped_ha / MIN_ZONES:  # a larger minimum cannot be honoured by two zones
        what = "larger than the whole" if min_ha > mapped_ha else "more than half the"
        raise InputError(
            f"The minimum zone area ({fmt_area(min_ha)}) is {what} mapped field "
            f"({fmt_area(mapped_ha)}), "
            f"so no {MIN_ZONES} zones can be that large: give at most "
            f"{math.floor(mapped_ha / MIN_ZONES * 1e6) / 1e6:g} ha "
            f"({fmt_area(mapped_ha / MIN_ZONES, down=True)}; or leave --min-zone-ha out: "
            f"{DEFAULT_MIN_ZONE_SHARE:.0%} of the field)."
        )
    # A patch can be no larger than the map: GDAL's sieve takes sizes below the raster's.
    min_cells = min(max(1, math.ceil(min_ha / cell_ha - 1e-9)), valid.size - 1)
    feats = []
    for v in layers:
        sm = _smooth(v, valid, smooth)[valid].astype(np.float64)
        sd = sm.std()
        feats.append((sm - sm.mean()) / sd if sd > 0 else sm - sm.mean())
    x = np.column_stack(feats)
    # The zone count: the user's, else the fewest zones explaining EXPLAINED_TARGET.
    tried: dict[int, float] = {}
    if n_zones is not None:
        k = int(n_zones)
        labels = _cluster(x, k, method)
        tried[k] = _explained(x, labels)
        how = "given by the user"
    else:
        labels = None
        k = MAX_ZONES
        for kk in range(MIN_ZONES, MAX_ZONES + 1):
            lab = _cluster(x, kk, method)
            tried[kk] = _explained(x, lab)
            labels, k = lab, kk
            if tried[kk] >= EXPLAINED_TARGET:
                break
        how = (
            f"the fewest zones ({MIN_ZONES}-{MAX_ZONES}) whose {method} clustering explains at "
            f"least {EXPLAINED_TARGET:.0%} of the index variance"
        )
    assert labels is not None
    # Order zones by their mean (first flight's) index: zone 1 is the lowest.
    primary = raw[valid]
    means = [np.nanmean(primary[labels == i]) if (labels == i).any() else np.inf for i in range(k)]
    order = np.argsort(means)
    rank = np.empty(k, np.int32)
    rank[order] = np.arange(k)
    zone = np.full(grid.classes.shape, ZONE_NODATA, np.uint8)
    zone[valid] = (rank[labels] + 1).astype(np.uint8)
    # Spatial coherence: patches under the minimum zone area join their largest neighbour.
    if min_cells > 1:
        sieved = features.sieve(zone, size=min_cells, mask=valid, connectivity=4)
        zone = np.where(valid, sieved, ZONE_NODATA).astype(np.uint8)
    kept = [z for z in range(1, k + 1) if (zone == z).any()]
    relabel = np.full(256, ZONE_NODATA, np.uint8)
    for new, old in enumerate(kept, start=1):
        relabel[old] = new
    zone = relabel[zone]
    warnings = list(grid.warnings)
    if len(kept) < k:
        warnings.append(
            f"{k - len(kept)} of {k} zones were smaller than the minimum zone area "
            f"({fmt_area(min_ha)}) everywhere and were merged into their neighbours."
        )
    polys = _zone_polygons(grid, zone, len(kept))
    polys_ll = _to_4326(polys, grid.crs)
    areas = hectares(np.array(polys_ll, dtype=object), "EPSG:4326")
    rows = []
    for z in range(1, len(kept) + 1):
        sel = zone == z
        v = raw[sel]
        v = v[np.isfinite(v)]
        row: dict[str, Any] = {
            "zone": z,
            "color": ZONE_COLORS[round((z - 1) * (len(ZONE_COLORS) - 1) / max(len(kept) - 1, 1))],
            "cells": int(sel.sum()),
            "area_ha": round(float(areas[z - 1]), 6),
            "index_mean": round(float(v.mean()), 4) if v.size else None,
            "index_std": round(float(v.std()), 4) if v.size else None,
            "index_p10": round(float(np.percentile(v, 10)), 4) if v.size else None,
            "index_p90": round(float(np.percentile(v, 90)), 4) if v.size else None,
            "weed_share": round(float(np.nanmean(weed[sel])), 4) if weed is not None else None,
        }
        if cover is not None:
            row["weed_cover"] = round(float(np.nanmean(cover[sel])) / 100, 4)
        rows.append(row)
    total = float(sum(areas))
    idx = BY_NAME.get(name)
    result: dict[str, Any] = {
        "kind": "zones",
        "map_created": grid.summary.created,
        "index": name,
        "index_title": idx.title if idx else name,
        "method": {
            "name": method,
            "library": "scikit-learn KMeans (n_init=4, random_state=0)"
            if method == "kmeans"
            else "mapclassify FisherJenks (natural breaks)",
            "features": (
                f"{name} averaged over each map cell, smoothed over "
                f"{2 * smooth + 1}x{2 * smooth + 1} cells"
                + (
                    f", standardised per flight ({len(folders)} flights)"
                    if len(folders) > 1
                    else ", standardised"
                )
            ),
            "zone_count": how,
            # The same, as data: the report words it in the reader's language.
            "chosen_by": "user" if n_zones is not None else "explained_variance",
            "zone_range": [MIN_ZONES, MAX_ZONES],
            "explained_target": EXPLAINED_TARGET,
            "flights": len(folders),
            "explained_variance": {str(kk): round(v, 4) for kk, v in tried.items()},
            "smooth_cells": smooth,
            "min_zone_ha": round(min_ha, 6),
            "min_zone_cells": min_cells,
            "spatial_filter": (
                "rasterio.features.sieve (GDAL), 4-connected: patches under the minimum zone "
                "area join their largest neighbouring zone"
            ),
            "cell_m": round(math.sqrt(cell_ha * 1e4), 4),
            "map_cells_per_zone_cell": factor**2,
        },
        "zones_requested": n_zones,
        "zones": rows,
        "area_ha": round(total, 6),
        "placement": grid.placement,
        "placement_note": grid.placement_note,
        "boundary": boundary is not None,
        "sources": sources,
        "files": {"geojson": ZONES_GEOJSON, "cog": ZONES_TIF, "json": ZONES_JSON},
        "warnings": warnings,
    }
    fc = _feature_collection(
        [
            {k2: r[k2] for k2 in ("zone", "area_ha", "index_mean", "index_std", "weed_share")}
            | {"index": name}
            for r in rows
        ],
        polys_ll,
    )
    out = grid.folder / OUT_DIR
    with staging(out) as st:
        write_json(st.file("zones.geojson"), fc, indent=None)
        write_cog(
            st.file("zones.tif"),
            zone,
            transform=grid.transform,
            crs=grid.crs,
            nodata=ZONE_NODATA,
            colormap={
                **{z: (*_rgb(rows[z - 1]["color"]), 255) for z in range(1, len(rows) + 1)},
                ZONE_NODATA: (0, 0, 0, 0),
            },
            descriptions=["management zone"],
            tags={"index": name, "placement": grid.placement_note, "method": method},
        )
        write_json(st.file("zones.json"), result)
        st.commit()
    remove_stale(grid.folder)
    return result


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """NaN-aware mean over f x f blocks (the last blocks may be partial)."""
    h, w = a.shape
    padded = np.full((-(-h // f) * f, -(-w // f) * f), np.nan, np.float32)
    padded[:h, :w] = a
    blocks = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(blocks, axis=(1, 3))


def _coarsen(
    grid: FieldGrid, f: int, weed: np.ndarray | None, cover: np.ndarray | None
) -> tuple[FieldGrid, np.ndarray | None, np.ndarray | None]:
    """The grid in cells of f x f map cells: valid where at least half the block is; weed share
    and cover averaged over the block's valid cells."""
    valid_share = _block_mean(grid.valid.astype(np.float32), f)
    valid = np.nan_to_num(valid_share) >= 0.5

    def mean(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else _block_mean(np.where(grid.valid, a, np.nan), f)

    scale = Affine.scale(f)
    coarse = replace(
        grid,
        classes=np.where(valid, 0, NODATA_CLASS).astype(np.uint8),
        transform=grid.transform * scale,
        pixel_transform=grid.pixel_transform * scale,
        valid=valid,
        coarsened=f,
        warnings=[
            *grid.warnings,
            f"The map has {grid.valid.size:,} cells: zones were made on cells of {f} x {f} "
            "map cells.",
        ],
    )
    return coarse, mean(weed), mean(cover)


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _cell(grid: FieldGrid, r: int, c: int):
    t = grid.transform
    return shapely.Polygon([t * (c, r), t * (c + 1, r), t * (c + 1, r + 1), t * (c, r + 1)])


def _weed_cover(grid: FieldGrid) -> np.ndarray | None:
    return _cover_band(grid, "weed")


def _cover_band(grid: FieldGrid, target: str) -> np.ndarray | None:
    """Percent of each cell covered by weeds ("weed") or by any plant ("vegetation"), from
    cover.tif; None when the map has none."""
    path = grid.folder / products.COVER.path
    if not path.is_file():
        return None
    with rasterio.open(path) as src:
        bands = {(d or "").split(" cover")[0]: i for i, d in enumerate(src.descriptions, start=1)}
        if target == "weed":
            if "weed" not in bands:
                return None
            out = src.read(bands["weed"]).astype(np.float32)
            nodata = out == NODATA_CLASS
        else:
            layers = src.read().astype(np.float32)
            nodata = np.all(layers == NODATA_CLASS, axis=0)
            out = np.where(layers == NODATA_CLASS, 0, layers).sum(axis=0)
    out[nodata] = np.nan
    return out


def _zone_polygons(grid: FieldGrid, zone: np.ndarray, n: int) -> list:
    """One (multi)polygon per zone 1..n in the grid's CRS, clipped to the field."""
    parts: dict[int, list] = {z: [] for z in range(1, n + 1)}
    for geom, value in features.shapes(
        zone, mask=zone != ZONE_NODATA, transform=grid.transform, connectivity=4
    ):
        parts[int(value)].append(shape(geom))
    out = []
    for z in range(1, n + 1):
        g = shapely.union_all(parts[z]).intersection(grid.field_geom)
        out.append(_polygonal(g))
    return out


def analysed_area(grid: FieldGrid):
    """The field's analysed cells (`grid.valid`) as a MultiPolygon in the grid's CRS, clipped
    to the field: what the map's area counts, without its no-data cells."""
    cells = [
        shape(g)
        for g, v in features.shapes(
            grid.valid.astype(np.uint8), mask=grid.valid, transform=grid.transform, connectivity=4
        )
        if v == 1
    ]
    return _polygonal(shapely.union_all(cells).intersection(grid.field_geom))


def _polygonal(g):
    """Only the polygons of a geometry (an intersection may add lines and points), as a
    MultiPolygon."""
    if isinstance(g, shapely.Polygon):
        return shapely.MultiPolygon([g]) if not g.is_empty else shapely.MultiPolygon()
    if isinstance(g, shapely.MultiPolygon):
        return g
    polys = []
    for p in getattr(g, "geoms", []):
        if isinstance(p, shapely.Polygon) and not p.is_empty:
            polys.append(p)
        elif isinstance(p, shapely.MultiPolygon):
            polys.extend(p.geoms)
    return shapely.MultiPolygon(polys)


def _to_4326(geoms: list, crs: CRS) -> list:
    if not geoms:
        return []
    arr = shapely.transform(np.array(geoms, dtype=object), _reprojector(crs, "EPSG:4326"))
    return [_polygonal(shapely.make_valid(g)) if not g.is_valid else g for g in arr]


def _feature_collection(props: list[dict[str, Any]], geoms: list) -> dict[str, Any]:
    feats = []
    for p, g in zip(props, geoms, strict=True):
        gj = mapping(shapely.set_precision(g, 1e-8) if not g.is_empty else g)
        feats.append({"type": "Feature", "geometry": gj, "properties": p})
    return {"type": "FeatureCollection", "features": feats}


# -- prescriptions -------------------------------------------------------------------------------


def _unit(unit: str) -> RateUnit:
    if unit not in RATE_UNITS:
        raise InputError(f"Unknown rate unit {unit!r}: use {' or '.join(RATE_UNITS)}.")
    return RATE_UNITS[unit]


def _check_rate(rate: float, unit: RateUnit, what: str) -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise InputError(f"The {what} must be a number (got {rate!r}).") from None
    if not math.isfinite(r) or r < 0:
        raise InputError(f"The {what} must be zero or more {unit.name} (got {rate}).")
    if r > unit.maximum:
        raise InputError(
            f"The {what} of {r:g} {unit.name} is more than {unit.maximum:g} {unit.name}: "
            "check the number and the unit."
        )
    # ISO 11783-10 carries a rate as a whole number of its units (1 mg/m², 0.01 kg/ha): a finer
    # one would reach the terminal rounded, unlike the Shapefile and GeoJSON beside it.
    iso = r * unit.iso_per_unit
    if abs(iso - round(iso)) > 1e-9 * max(1.0, iso):
        step = 1 / unit.iso_per_unit
        lo, hi = math.floor(iso) * step, math.ceil(iso) * step
        raise InputError(
            f"The {what} of {r:g} {unit.name} is finer than a terminal's TaskData carries "
            f"(steps of {step:g} {unit.name}, 1 {unit.iso_unit}): give {lo:g} or {hi:g}."
        )
    return r


def check_rate(rate: float, unit: str, what: str) -> float:
    """A rate in `unit` (kg/ha, L/ha) as every prescription takes it: InputError otherwise."""
    return _check_rate(rate, _unit(unit), what)


def _check_product(product: str) -> str:
    p = (product or "").strip()
    if not p or len(p) > 32 or not p.isprintable():
        raise InputError("Name the product in 1 to 32 printable characters (e.g. Urea N).")
    return p


def load_zones(folder: Path) -> tuple[dict[str, Any], list]:
    """The zones made for a results folder (zones.json and their polygons in EPSG:4326)."""
    folder = Path(folder)
    map_summary(folder)
    path = folder / ZONES_JSON
    if not path.is_file():
        raise InputError("This flight has no management zones yet: make them first (`khet zones`).")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("map_created") != _map_created(folder):
        raise InputError(
            "The management zones were made on an earlier map of this flight: make them again."
        )
    fc = json.loads((folder / ZONES_GEOJSON).read_text(encoding="utf-8"))
    geoms = [shape(f["geometry"]) for f in fc["features"]]
    return meta, geoms


def zone_rates(
    zones: list[dict[str, Any]],
    *,
    rates: list[float] | None = None,
    base_rate: float | None = None,
    adjust_pct: float = 0.0,
    unit: str = "kg/ha",
) -> list[float]:
    """A rate per zone: the list given (one per zone, zone 1 first), or the base rate moved
    linearly from `-adjust_pct` % in zone 1 (lowest index) to `+adjust_pct` % in the last zone
    (a negative percentage gives the weak zones more)."""
    u = _unit(unit)
    if (rates is None) == (base_rate is None):
        raise InputError("Give either a rate per zone or a base rate (with a +/- percentage).")
    n = len(zones)
    if rates is not None:
        if len(rates) != n:
            raise InputError(f"Give {n} rates, one per zone (got {len(rates)}).")
        return [_check_rate(r, u, f"rate of zone {i + 1}") for i, r in enumerate(rates)]
    assert base_rate is not None  # one of the two is given (checked above)
    base = _check_rate(base_rate, u, "base rate")
    try:
        pct = float(adjust_pct)
    except (TypeError, ValueError):
        raise InputError("The percentage must be a number.") from None
    if not math.isfinite(pct) or abs(pct) > 100:
        raise InputError("The +/- percentage must be between -100 and 100.")
    out = []
    for i in range(n):
        t = (i / (n - 1)) * 2 - 1 if n > 1 else 0.0  # -1 for zone 1 .. +1 for the last
        # To the TaskData's step (see _check_rate).
        step = round(base * (1 + t * pct / 100) * u.iso_per_unit) / u.iso_per_unit
        out.append(_check_rate(step, u, f"rate of zone {i + 1}"))
    return out


@_readable_map
def variable_rate(
    folder: Path,
    *,
    rates: list[float] | None = None,
    base_rate: float | None = None,
    adjust_pct: float = 0.0,
    unit: str = "kg/ha",
    product: str = "Nitrogen",
) -> dict[str, Any]:
    """A variable-rate prescription on the flight's management zones, written as GeoJSON,
    Shapefile and ISO 11783-10 TaskData (each read back before it is kept)."""
    folder = Path(folder)
    u = _unit(unit)
    product = _check_product(product)
    meta, geoms = load_zones(folder)
    zrows = meta["zones"]
    per_zone = zone_rates(zrows, rates=rates, base_rate=base_rate, adjust_pct=adjust_pct, unit=unit)
    areas = hectares(np.array(geoms, dtype=object), "EPSG:4326")
    zones_out = []
    for row, rate, a in zip(zrows, per_zone, areas, strict=True):
        zones_out.append(
            {
                "zone": row["zone"],
                "rate": rate,
                "area_ha": round(float(a), 6),
                "product": round(rate * float(a), 6),
                "index_mean": row.get("index_mean"),
            }
        )
    total = sum(z["rate"] * z["area_ha"] for z in zones_out)
    area = float(sum(areas))
    result = {
        "kind": "rate",
        "map_created": meta.get("map_created"),
        "product": product,
        "unit": u.name,
        "total_unit": u.total_unit,
        "iso": {"ddi": u.ddi, "unit": u.iso_unit},
        "how": (
            "a rate entered per zone"
            if rates is not None
            else f"base rate {base_rate:g} {u.name}, {adjust_pct:+g}% in the highest-index zone "
            f"and {-adjust_pct:+g}% in the lowest, linear between"
        ),
        "zones": zones_out,
        "area_ha": round(area, 6),
        "total": round(total, 6),
        "mean_rate": round(total / area, 6) if area else 0.0,
        "index": meta.get("index"),
        "placement": meta.get("placement"),
        "placement_note": meta.get("placement_note"),
        "files": files("rate"),
        "warnings": list(meta.get("warnings", [])),
    }
    items = [
        (z["zone"], f"Zone {z['zone']}", g, z["rate"])
        for z, g in zip(zones_out, geoms, strict=True)
    ]
    _write_prescription(folder, "rate", result, items, u, product, default_rate=0.0)
    return result


@_readable_map
def spot_spray(
    folder: Path,
    *,
    margin_m: float = 0.5,
    min_patch_m2: float = 0.5,
    rate: float = 100.0,
    unit: str = "L/ha",
    product: str = "Herbicide",
    target: Literal["weed", "vegetation"] = "weed",
    min_cover_pct: float | None = 1.0,
    boundary: dict | None = None,
) -> dict[str, Any]:
    """Spray polygons from the weed map: weed cells, patches under `min_patch_m2` dropped,
    buffered by `margin_m`, merged and clipped to the field; with the share of the field
    sprayed against blanket spraying."""
    folder = Path(folder)
    u = _unit(unit)
    product = _check_product(product)
    rate = _check_rate(rate, u, "spray rate")
    if not (0 <= margin_m <= 20):
        raise InputError("The spray margin must be 0 to 20 metres.")
    if not (0 <= min_patch_m2 <= 10000):
        raise InputError("The minimum patch size must be 0 to 10000 square metres.")
    if min_cover_pct is not None and not (0 < min_cover_pct <= 100):
        raise InputError("The minimum weed cover of a cell must be above 0 and at most 100%.")
    if target not in ("weed", "vegetation"):
        raise InputError("Spray either 'weed' (weeds only) or 'vegetation' (every green plant).")
    grid = open_map(folder, boundary)
    names = grid.class_names
    if target == "weed":
        if (
            "weed" not in names
            or grid.summary.layers.get("classes", None) is not None
            and (grid.summary.layers["classes"].method == "index")
        ):
            raise InputError(
                "This map does not tell weeds from crop (it was made from the vegetation index "
                "alone), so it cannot make a weed spray map; spray all vegetation instead "
                "(target vegetation) or analyse imagery a weed model or crop rows can read."
            )
        hit = grid.classes == names.index("weed")
    else:
        plants = [i for i, n in enumerate(names) if n != "soil"]
        hit = np.isin(grid.classes, plants)
    # A cell the map calls soil or crop may still hold a small weed: where the map says how
    # much of each cell the target covers (cover.tif), any cover above `min_cover_pct` counts.
    cover = _cover_band(grid, target)
    if cover is not None and min_cover_pct is not None:
        hit |= np.nan_to_num(cover) >= min_cover_pct
        how_cells = f"cells with {target} cover of at least {min_cover_pct:g}% (cover.tif) or"
    else:
        how_cells = ""
    hit &= grid.valid
    patches = [
        shape(g)
        for g, v in features.shapes(
            hit.astype(np.uint8), mask=hit, transform=grid.transform, connectivity=8
        )
        if v == 1
    ]
    merged = shapely.union_all(patches) if patches else shapely.MultiPolygon()
    pieces = list(getattr(merged, "geoms", [merged])) if not merged.is_empty else []
    kept = [p for p in pieces if p.area >= min_patch_m2]
    spray = shapely.union_all([p.buffer(margin_m, quad_segs=4) for p in kept]) if kept else None
    # The field sprayed, and blanket-sprayed in the comparison, is what the map analysed: its
    # cells with a class inside the field (as summary.json and the zones count it), not the
    # no-data margins of the image's extent.
    analysed = analysed_area(grid)
    spray = _polygonal(spray.intersection(analysed)) if spray is not None else None
    field_ll = _to_4326([analysed], grid.crs)[0]
    field_ha = float(hectares(np.array([field_ll], dtype=object), "EPSG:4326")[0])
    spray_ll = _to_4326([spray], grid.crs)[0] if spray is not None else shapely.MultiPolygon()
    spray_ha = (
        float(hectares(np.array([spray_ll], dtype=object), "EPSG:4326")[0])
        if not spray_ll.is_empty
        else 0.0
    )
    share = spray_ha / field_ha if field_ha else 0.0
    result: dict[str, Any] = {
        "kind": "spot",
        "map_created": grid.summary.created,
        "target": target,
        "product": product,
        "unit": u.name,
        "total_unit": u.total_unit,
        "iso": {"ddi": u.ddi, "unit": u.iso_unit},
        "rate": rate,
        "margin_m": margin_m,
        "min_patch_m2": min_patch_m2,
        "min_cover_pct": min_cover_pct if cover is not None else None,
        "cell_m": round(math.sqrt(abs(grid.transform.determinant)), 4),  # the report's "how"
        "patches_found": len(pieces),
        "patches_sprayed": len(kept),
        "polygons": len(spray_ll.geoms) if not spray_ll.is_empty else 0,
        "field_ha": round(field_ha, 6),
        "field_from": "the field boundary and the map"
        if boundary is not None
        else "the mapped area (no field boundary given)",
        "sprayed_ha": round(spray_ha, 6),
        "sprayed_share": round(share, 4),
        "saving_share": round(1 - share, 4),
        "total": round(rate * spray_ha, 6),
        "blanket_total": round(rate * field_ha, 6),
        "how": (
            f"{how_cells} {target} cells of the map ".lstrip()
            + f"({math.sqrt(abs(grid.transform.determinant)):.2f} m), "
            f"patches under {min_patch_m2:g} m² left out, buffered by {margin_m:g} m, merged "
            "and clipped to the field's analysed cells"
        ),
        "placement": grid.placement,
        "placement_note": grid.placement_note,
        "files": files("spot"),
        "warnings": list(grid.warnings),
    }
    if not kept:
        result["warnings"].append("No patch to spray: nothing above the minimum patch size.")
    if boundary is None:
        result["warnings"].append(
            "No field boundary: the field is taken as the mapped area, so the share sprayed "
            "and the saving are of that area."
        )
    items = [(1, "Spray", spray_ll, rate)] if not spray_ll.is_empty else []
    _write_prescription(folder, "spot", result, items, u, product, default_rate=0.0)
    return result


# -- exports: GeoJSON, Shapefile, ISO 11783-10 TaskData ------------------------------------------


def _write_prescription(
    folder: Path,
    kind: Literal["rate", "spot"],
    result: dict[str, Any],
    items: list[tuple[int, str, Any, float]],
    unit: RateUnit,
    product: str,
    default_rate: float,
) -> None:
    """Write one prescription's files, each read back and checked, then rename into place."""
    names = files(kind)
    areas = (
        [float(a) for a in hectares(np.array([g for *_, g, _ in items], dtype=object), "EPSG:4326")]
        if items
        else []
    )
    expected = {code: (a, rate) for (code, _, _, rate), a in zip(items, areas, strict=True)}
    props = [
        {"zone": code, "name": label, "rate": rate, "unit": unit.name, "product": product}
        | {"area_ha": round(a, 6)}
        for (code, label, _, rate), a in zip(items, areas, strict=True)
    ]
    with staging(folder / OUT_DIR) as st:
        write_json(
            st.file(Path(names["geojson"]).name),
            _feature_collection(props, [g for *_, g, _ in items]),
            indent=None,
        )
        shp = st.file(Path(names["shapefile"]).name)
        write_shapefile_zip(shp, kind, items, unit, product)
        _check_read_back("Shapefile", read_shapefile_zip(shp), expected)
        td = st.file(Path(names["taskdata"]).name)
        write_taskdata_zip(td, kind, items, unit, product, default_rate)
        back = read_taskdata_zip(td)
        _check_read_back("ISO-XML TaskData", back["zones"], expected)
        result["checked"] = (
            "Shapefile (pyogrio) and TaskData (isoxml) read back: areas within "
            f"{AREA_TOLERANCE:.1%} and rates equal"
        )
        write_json(st.file(Path(names["json"]).name), result)
        st.commit()


def _check_read_back(
    what: str, zones: dict[int, tuple[float, float]], expected: dict[int, tuple[float, float]]
) -> None:
    if set(zones) != set(expected):
        raise OutputError(f"The {what} export did not read back with the same zones.")
    for code, (a, r) in expected.items():
        a2, r2 = zones[code]
        if abs(a2 - a) > AREA_TOLERANCE * max(a, 1e-9) or abs(r2 - r) > 1e-6 + 1e-3 * r:
            raise OutputError(
                f"The {what} export read back zone {code} as {a2:.5f} ha at {r2:g}, not "
                f"{a:.5f} ha at {r:g}: it was not kept."
            )


def _shp_fields(kind: str) -> list[str]:
    return ["ZONE", "NAME", "RATE", "UNIT", "PRODUCT", "AREA_HA"]


def write_shapefile_zip(
    path: Path,
    kind: str,
    items: list[tuple[int, str, Any, float]],
    unit: RateUnit,
    product: str,
) -> None:
    """An ESRI Shapefile (.shp/.shx/.dbf/.prj/.cpg, EPSG:4326, MultiPolygon) zipped: what most
    terminals and Pix4Dfields' exports take. One feature per zone, `RATE` in `UNIT`."""
    import pyogrio.raw

    geoms = [g for *_, g, _ in items]
    areas = hectares(np.array(geoms, dtype=object), "EPSG:4326") if geoms else np.zeros(0)
    with tempfile.TemporaryDirectory() as tmp:
        shp = Path(tmp) / f"khet_{kind}.shp"
        field_data = [
            np.array([c for c, *_ in items], dtype=np.int32),
            np.array([n for _, n, *_ in items], dtype=object),
            np.array([r for *_, r in items], dtype=np.float64),
            np.array([unit.name] * len(items), dtype=object),
            np.array([product] * len(items), dtype=object),
            np.round(np.asarray(areas, dtype=np.float64), 6),
        ]
        pyogrio.raw.write(
            str(shp),
            shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([], dtype=object),
            field_data,
            _shp_fields(kind),
            driver="ESRI Shapefile",
            geometry_type="MultiPolygon",
            crs="EPSG:4326",
            encoding="UTF-8",
        )
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(Path(tmp).iterdir()):
                z.write(p, p.name)


def read_shapefile_zip(path: Path) -> dict[int, tuple[float, float]]:
    """{zone: (area ha, rate)} of a prescription Shapefile zip, read with pyogrio."""
    import pyogrio.raw

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as z:
            z.extractall(tmp)
        shp = next(Path(tmp).glob("*.shp"))
        meta, _, geoms, data = pyogrio.raw.read(str(shp))
    cols = list(meta["fields"])
    if "EPSG:4326" not in str(meta.get("crs")):
        raise OutputError(f"The Shapefile's CRS is {meta.get('crs')}, not EPSG:4326.")
    gs = shapely.from_wkb(geoms) if geoms is not None else np.array([], dtype=object)
    areas = hectares(gs, "EPSG:4326") if len(gs) else np.zeros(0)
    zone, rate = data[cols.index("ZONE")], data[cols.index("RATE")]
    return {int(z): (float(a), float(r)) for z, r, a in zip(zone, rate, areas, strict=True)}


def write_taskdata_zip(
    path: Path,
    kind: str,
    items: list[tuple[int, str, Any, float]],
    unit: RateUnit,
    product: str,
    default_rate: float,
) -> None:
    """ISO 11783-10 (version 4) TaskData: one task whose treatment zones hold the polygons and
    the setpoint rate (DDI per unit) of one product; zone 0 (rate `default_rate`) is used where
    no polygon lies, outside the field and when the position is lost. Zipped as
    TASKDATA/TASKDATA.XML."""
    import isoxml.models.base.v4 as iso
    from isoxml.converter.shapely_geom import ShapelyConverterV4
    from isoxml.util.isoxml_io import isoxml_to_text

    from khet import __version__

    conv = ShapelyConverterV4()
    ddi = unit.ddi.to_bytes(2, "big")

    def pdv(rate: float):
        return iso.ProcessDataVariable(
            process_data_ddi=ddi,
            process_data_value=int(round(rate * unit.iso_per_unit)),
            product_id_ref="PDT1",
        )

    zones = [
        iso.TreatmentZone(
            code=0, designator="No application", process_data_variables=[pdv(default_rate)]
        )
    ]
    for code, label, geom, rate in items:
        zones.append(
            iso.TreatmentZone(
                code=int(code),
                designator=label[:32],
                polygons=[
                    conv.to_iso_polygon(p, iso.PolygonType.TreatmentZone) for p in geom.geoms
                ],
                process_data_variables=[pdv(rate)],
            )
        )
    task = iso.Task(
        id="TSK1",
        designator=("Khet variable rate" if kind == "rate" else "Khet spot spray"),
        status=iso.TaskStatus.Planned,
        treatment_zones=zones,
        default_treatment_zone_code=0,
        position_lost_treatment_zone_code=0,
        out_of_field_treatment_zone_code=0,
    )
    td = iso.Iso11783TaskData(
        management_software_manufacturer="Khet",
        management_software_version=__version__,
        data_transfer_origin=iso.Iso11783TaskDataDataTransferOrigin.FMIS,
        products=[iso.Product(id="PDT1", designator=product[:32])],
        tasks=[task],
    )
    xml = isoxml_to_text(td)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("TASKDATA/TASKDATA.XML", xml)


def read_taskdata_zip(path: Path) -> dict[str, Any]:
    """What a TaskData zip says, read with the isoxml package: {"zones": {code: (area ha,
    rate in our unit)}, "ddi", "product"}."""
    from isoxml.converter.shapely_geom import ShapelyConverterV4
    from isoxml.util.isoxml_io import isoxml_from_text

    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.upper().endswith("TASKDATA.XML"))
        td = isoxml_from_text(z.read(name).decode("utf-8"))
    conv = ShapelyConverterV4()
    task = td.tasks[0]
    ddis = {
        pdv.process_data_ddi for tz in task.treatment_zones for pdv in tz.process_data_variables
    }
    unit = next((u for u in RATE_UNITS.values() if u.ddi.to_bytes(2, "big") in ddis), None)
    if unit is None:
        raise OutputError("The TaskData states no rate Khet knows.")
    out: dict[int, tuple[float, float]] = {}
    for tz in task.treatment_zones:
        if not tz.polygons:
            continue
        geom = shapely.MultiPolygon([conv.to_shapely_polygon(p) for p in tz.polygons])
        a = float(hectares(np.array([geom], dtype=object), "EPSG:4326")[0])
        rate = tz.process_data_variables[0].process_data_value / unit.iso_per_unit
        out[int(tz.code)] = (a, rate)
    return {
        "zones": out,
        "unit": unit.name,
        "product": td.products[0].designator if td.products else None,
        "default_zone": task.default_treatment_zone_code,
    }


def _map_created(folder: Path) -> str | None:
    try:
        return Summary.load(Path(folder) / products.SUMMARY.path).created
    except (InputError, OSError):
        return None


def listing(folder: Path) -> dict[str, Any]:
    """What a results folder holds of zones and prescriptions (their JSON descriptions), leaving
    out what was made on an earlier map of the folder."""
    out: dict[str, Any] = {}
    created = _map_created(folder)
    for key, rel in (
        ("zones", ZONES_JSON),
        ("rate", files("rate")["json"]),
        ("spot", files("spot")["json"]),
    ):
        p = Path(folder) / rel
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("map_created") == created:
                out[key] = data
    return out


def remove_stale(folder: Path) -> None:
    """Zones changed: prescriptions made on the old zones no longer hold."""
    for name in files("rate").values():
        p = Path(folder) / name
        if p.exists():
            p.unlink()


__all__ = [
    "make_zones",
    "variable_rate",
    "spot_spray",
    "read_shapefile_zip",
    "read_taskdata_zip",
    "listing",
]
