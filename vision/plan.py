"""Which method makes a field map, at which ground sample distance: decided once, said plainly.

A map that is confidently wrong is the worst thing Khet can make, so the crop/weed split is
painted only by a method that holds at the image's ground sample distance (GSD):

1. **model**: a bundle whose bands the image has, whose validated GSD range holds the image's
   GSD, and that learned the field's crop when the field states one (vision/crops.py). The
   image is read at the model's own GSD (resampled while reading). A bundle that states
   no range (one trained by a user on their own data) is used at the image's own GSD, and the map
   says it is unvalidated. `--model` names one; outside its range that is an error, not a map.
2. **rows**: no model holds (at this GSD, or for this crop), the GSD is drone scale (2 mm to 10
   cm per pixel) and crop rows are found (vision/rows.py): vegetation on a row is crop, between
   the rows weed.
3. **index**: otherwise vegetation and soil only, from the vegetation index; the map says why crop
   and weed are not told apart. An unknown GSD lands here (with "give --gsd" in the reason).

Vigour and the vegetation indices hold at any GSD and are made by every method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from khet.vision import crops as crops_
from khet.vision import gsd as gsd_
from khet.vision import indices as vi
from khet.vision import rows as rows_
from khet.vision.bundle import Bundle, BundleInfo, ClassInfo, bundle_path, list_bundles
from khet.vision.grid import Grid
from khet.vision.scene import Scene

from khet.errors import BandError, InputError, KhetError, ModelError

# Crop rows are looked for from 2 mm per pixel: rows are found at a 2.5 cm analysis GSD whatever
# the image's (rows.py), and on uav_potato (bench/rows_potato.py) the rows' weed cover and crop
# precision / recall at 3 and 5 mm equal those at 1 cm (per-tile weed cover MAE 0.74-0.75 pp,
# crop 0.95-0.96 / 0.75-0.78). Below 2 mm a picture covers a few metres at most: no rows to see.
ROWS_GSD_M = (0.002, 0.10)
SOIL = ClassInfo("soil", "#8b6b4a")
CROP = ClassInfo("crop", "#2e9e44")
WEED = ClassInfo("weed", "#e0452b")
VEGETATION = ClassInfo("vegetation", "#9ccc65")  # plants, crop and weed not told apart
SAME_GSD = 0.05  # within 5 % of the model's GSD the image is read as it is
CELL_M = 0.5  # map cell of a rule-based map when rows do not say better
SEGMENTATION_CELL = 32  # working pixels per map cell for a segmentation bundle
RULE_TILE = 256  # working pixels per processing window when no model runs
MAX_ZOOM = 4.0  # a model never sees an image enlarged more than 4 times
_VISIBLE = {"red", "green", "blue"}


@dataclass
class Plan:
    """How this scene's map is made."""

    method: str  # "model", "rows", "index"
    classes: tuple[ClassInfo, ...]
    grid: Grid
    zoom: float  # working pixels per scene pixel
    working_gsd_m: float | None
    detail: str  # the method in words, for the summary, legend and report
    bundle: Bundle | None = None
    vegetation: vi.Vegetation | None = None
    rows: rows_.Rows | None = None
    warnings: list[str] = field(default_factory=list)
    # The share of red-purple pixels when an RGB image looks like a near-infrared camera's false
    # colour (vi.RED_PURPLE_SHARE), else 0: its plants then count as soil, and the legend says so.
    red_purple: float = 0.0
    # The share of the image whose near-infrared is well below red (or green) when that is more
    # than what reads as plants (vi.INVERTED_SHARE), else 0: its bands are probably named in the
    # wrong order, and its plants count as soil.
    inverted: float = 0.0
    # The share of saturated blue soil-like pixels when an RGB image looks stored blue, green, red
    # (vi.SWAPPED_SHARE), else 0: no RGB model made its map, and the legend says so.
    swapped: float = 0.0

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def segmentation(self) -> bool:
        return self.bundle is not None and self.bundle.info.kind == "segmentation"


def make_plan(
    scene: Scene,
    models_dir: Path | None,
    model: str | Path | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    crop: str | None = None,
) -> Plan:
    """The method for this scene (see the module's docstring); KhetError when none can work.
    `crop` is the field's crop as stated (None: not stated)."""
    d, v = scene.sample(list(scene.bands), 1024)
    veg = vi.Vegetation.fit(d, v, scene.bands)
    share, swapped = vi.colour_shares(d, v, scene.bands)
    if share >= vi.RED_PURPLE_SHARE:  # a near-infrared camera's colours: not swapped RGB
        swapped = 0.0
    inverted = vi.inverted_share(d, v, scene.bands)
    del d, v  # the sample (27 MB of a big tiled raster) is not held through the row search
    plan = _choose(
        scene, veg, models_dir, model, tile_size, overlap, crop,
        swapped=swapped >= vi.SWAPPED_SHARE,
    )  # fmt: skip
    if share >= vi.RED_PURPLE_SHARE:
        plan.red_purple = share
        plan.warnings.append(near_infrared_note(share))
    if swapped >= vi.SWAPPED_SHARE:
        plan.swapped = swapped
        plan.warnings.append(swapped_note(swapped))
    if inverted >= vi.INVERTED_SHARE:
        plan.inverted = inverted
        plan.warnings.append(band_order_note(inverted, scene.bands))
    return plan


def near_infrared_note(share: float) -> str:
    """What a map whose image looks like a near-infrared camera's false colour says of it."""
    return (
        f"{share:.0%} of the image is saturated red-purple: the colour of plants in pictures "
        "from a camera that records near-infrared in place of red (a NIR-converted camera); in "
        "true colour, plants are green. Read as red, green and blue, such plants count as soil. "
        "If this camera is NIR-converted, name its bands (--bands nir,green,blue, or the order "
        "its maker gives) and analyse it again."
    )


def colour_notes(facts: dict) -> list[str]:
    """The notes on an image's colours from a summary's `input` facts: a near-infrared camera
    read as RGB, bands named in the wrong order, red and blue swapped."""
    out = []
    if facts.get("looks_near_infrared"):
        out.append(near_infrared_note(facts["looks_near_infrared"]))
    if facts.get("looks_misordered"):
        out.append(band_order_note(facts["looks_misordered"], facts.get("bands") or []))
    if facts.get("looks_swapped"):
        out.append(swapped_note(facts["looks_swapped"]))
    return out


def swapped_note(share: float) -> str:
    """What a map whose image looks stored blue, green, red says of it."""
    return (
        f"{share:.0%} of the image is saturated blue with red its lowest band: the colour of "
        "bare soil when an image's red and blue are swapped (stored blue, green, red, as some "
        "software writes it). No model that takes red, green and blue was used, as on such "
        "colours it paints soil as crop. Unless this is water, name the bands (--bands "
        "blue,green,red) and analyse it again."
    )


def band_order_note(share: float, bands: Sequence[str]) -> str:
    """What a map whose near-infrared band reads darker than red (or green) says of it."""
    other = "red" if "red" in bands else "green"
    return (
        f"{share:.0%} of the image has near-infrared well below {other}, more than reads as "
        f"plants. Plants and soil are brighter in near-infrared than in {other}; only open water "
        "is darker. Unless this is water, the bands are probably named in the wrong order "
        f"(read as {','.join(bands)}), and plants were counted as soil: name them in the "
        "camera's own order (--bands) and analyse it again."
    )


def _choose(
    scene: Scene,
    veg: vi.Vegetation | None,
    models_dir: Path | None,
    model: str | Path | None,
    tile_size: int | None,
    overlap: int | None,
    crop: str | None,
    *,
    swapped: bool = False,
) -> Plan:
    g = scene.gsd.metres
    if model is not None:
        bundle = _named_bundle(model, models_dir, scene.bands)
        _check_range(bundle, scene)
        check_model_crop(bundle.info, crop)
        return _model_plan(scene, bundle, veg, tile_size, overlap, crop)
    best, passed = _best_bundle(scene, models_dir, crop, swapped)
    if best is not None:
        return _model_plan(scene, best, veg, tile_size, overlap, crop)
    if veg is None:  # no model took the bands either
        raise _unmappable(scene.bands, scene.sources[0].name, len(scene.sources) == 1)
    why = "; ".join(passed) if passed else "no model fits these bands"
    if g is None:
        return _index_plan(
            scene,
            veg,
            f"Crop and weed are not told apart: the ground sample distance is unknown "
            f"({scene.gsd.detail}); give it with --gsd. Vegetation and soil only.",
        )
    if ROWS_GSD_M[0] <= g <= ROWS_GSD_M[1]:
        found = rows_.find(
            lambda win, z: scene.read(win, list(veg.bands), zoom=z),
            scene.width,
            scene.height,
            g,
            veg,
        )
        if isinstance(found, rows_.Rows):
            return _rows_plan(scene, veg, found, why)
        return _index_plan(
            scene,
            veg,
            f"Crop and weed are not told apart: {why}, and no crop rows were found "
            f"({found.reason}). Vegetation and soil only.",
        )
    return _index_plan(
        scene,
        veg,
        f"Crop and weed are not told apart at {gsd_.describe(g)} per pixel: {why}, and crop "
        f"rows are looked for only between {gsd_.describe(ROWS_GSD_M[0])} and "
        f"{gsd_.describe(ROWS_GSD_M[1])}. Vegetation and soil only.",
    )


# -- the model -----------------------------------------------------------------------------------
def _named_bundle(model: str | Path, models_dir: Path | None, bands: Sequence[str]) -> Bundle:
    p = bundle_path(model, models_dir)
    if p is None:
        known = ", ".join(b.stem for b in list_bundles(models_dir)) or "none"
        raise ModelError(f"No model named {model!r}. Known: {known}.")
    b = Bundle(p, threads=1)
    missing = [x for x in b.info.bands if x not in bands]
    if missing:
        raise BandError(
            f"Model {b.info.name} needs band(s) {', '.join(missing)}, but the image has "
            f"{', '.join(bands) or 'no named bands'}. Name the bands with --bands."
        )
    return b


def _range_text(bundle: Bundle) -> str:
    lo, hi = bundle.info.validated_range or (0.0, 0.0)
    return f"{gsd_.describe(lo)} to {gsd_.describe(hi)} per pixel"


def _check_range(bundle: Bundle, scene: Scene) -> None:
    """A model named with --model must hold at this GSD: never paint far outside its range."""
    info, g = bundle.info, scene.gsd.metres
    if info.validated_range is None:
        return
    if g is None:
        raise InputError(
            f"Model {info.name} is validated for imagery of {_range_text(bundle)}, but this "
            f"image's ground sample distance is unknown ({scene.gsd.detail}). Give it with --gsd."
        )
    if not info.validated_at(g):
        raise InputError(
            f"Model {info.name} is validated for imagery of {_range_text(bundle)}; this image is "
            f"{gsd_.describe(g)} per pixel ({scene.gsd.source}). Its crop/weed split would mean "
            "nothing here: leave out --model and Khet uses what holds at this resolution."
        )


def _crops_text(info: BundleInfo) -> str:
    return " and ".join(info.crops)


def check_model_crop(info: BundleInfo, crop: str | None) -> None:
    """InputError unless a model named with --model learned the field's stated crop (or
    either is not stated)."""
    if crops_.learned(crop, info.crops) is False:
        other = " and ".join(crops_.others(crop, info.crops))
        raise InputError(
            f"Model {info.name} learned {_crops_text(info)}; this field's crop is {crop}. Its "
            f"crop/weed split is untested on {other}: leave out --model and Khet uses what holds "
            "for this crop."
        )


def check_mappable(
    bands: Sequence[str], name: str, single_file: bool, models_dir: Path | None
) -> None:
    """BandError when nothing can map an image of these bands: no model takes them and no
    vegetation index can be computed from them. `make_plan`'s rule from the band names alone,
    so that the service refuses such a flight before it is queued."""
    if vi.vegetation_index(bands) is not None:
        return
    for p in list_bundles(models_dir):
        try:
            if all(x in bands for x in Bundle(p, threads=1).info.bands):
                return
        except ModelError:
            continue
    raise _unmappable(bands, name, single_file)


def _unmappable(bands: Sequence[str], name: str, single_file: bool) -> BandError:
    if len(bands) == 1 and single_file:
        return BandError(
            f"{name} has a single band (a greyscale picture, or one band file of a "
            "multispectral capture): maps need colour (red, green and blue) or red and "
            "near-infrared. For a multispectral capture, give all its band files."
        )
    return BandError(
        f"Nothing can map these bands ({', '.join(bands) or 'unnamed'}): no model fits them "
        "and no vegetation index can be computed from them (it needs near-infrared with red or "
        "green, or red, green and blue). Name the bands with --bands."
    )


def _best_bundle(
    scene: Scene, models_dir: Path | None, crop: str | None = None, swapped: bool = False
) -> tuple[Bundle | None, list[str]]:
    """The best bundle that holds at this GSD for this crop, and why the others were passed
    over. `swapped`: the image looks stored blue, green, red; no bundle taking red and blue."""
    g = scene.gsd.metres
    validated: list[Bundle] = []
    unstated: list[Bundle] = []
    passed: list[str] = []
    for p in list_bundles(models_dir):
        try:
            b = Bundle(p, threads=1)
        except ModelError as e:
            passed.append(str(e))
            continue
        if not all(x in scene.bands for x in b.info.bands):
            continue
        ok = b.info.validated_at(g)
        holds = ok or b.info.validated_range is None
        # Said only of a model that would otherwise hold here (the others have their GSD).
        if holds and crops_.learned(crop, b.info.crops) is False:
            other = " and ".join(crops_.others(crop, b.info.crops))
            passed.append(f"model {b.info.name} learned {_crops_text(b.info)}, not {other}")
        elif holds and swapped and {"red", "blue"} <= set(b.info.bands):
            passed.append(
                f"model {b.info.name} takes red, green and blue, and the image looks stored "
                "blue, green, red"
            )
        elif ok:
            validated.append(b)
        elif b.info.validated_range is None:
            unstated.append(b)
        elif g is None:
            passed.append(f"model {b.info.name} needs a known ground sample distance")
        else:
            passed.append(f"model {b.info.name} is validated for {_range_text(b)}")
    for group in (validated, unstated):
        if group:
            return min(group, key=_preference), passed
    return None, passed


def _preference(b: Bundle) -> tuple[int, int, str]:
    """NIR and red edge separate plants from soil better than colour; then more bands."""
    extra = sum(1 for x in b.info.bands if x not in _VISIBLE)
    return -extra, -len(b.info.bands), b.info.name


def _model_plan(
    scene: Scene,
    bundle: Bundle,
    veg: vi.Vegetation | None,
    tile_size: int | None,
    overlap: int | None,
    crop: str | None = None,
) -> Plan:
    info, g = bundle.info, scene.gsd.metres
    zoom, working = 1.0, g
    if info.gsd_m is not None and g is not None and abs(g / info.gsd_m - 1) > SAME_GSD:
        zoom, working = g / info.gsd_m, info.gsd_m
    tile = tile_size or info.tile_size
    fixed = bundle.input_size
    if fixed is not None and tile != fixed:
        raise InputError(
            f"Model {info.name} takes tiles of {fixed} px only (its graph fixes the size); "
            f"leave out --tile-size, or give --tile-size {fixed}."
        )
    ov = info.overlap if overlap is None else overlap
    if tile <= 0 or ov < 0 or ov >= tile or (tile - ov) % 2 or ov % 2:
        raise KhetError(
            f"Tile size {tile} with overlap {ov} does not work: the overlap must be even, "
            "smaller than the tile and leave an even step."
        )
    cell = 0
    if info.kind == "segmentation":
        cell = math.gcd(tile - ov, SEGMENTATION_CELL)
    wz, hz = scene.working_size(zoom)
    if zoom > MAX_ZOOM:  # only a model used far outside what it was validated for gets here
        raise InputError(
            f"Model {info.name} takes imagery at {gsd_.describe(info.gsd_m)} per pixel; this "
            f"image is {gsd_.describe(g)}, {zoom:.0f} times coarser. Use a model for this "
            "resolution, or leave out --model."
        )
    grid = Grid(wz, hz, tile, ov, cell)
    warnings: list[str] = []
    where = f"read at {gsd_.describe(working)} per pixel" if working else "at the image's pixels"
    if info.validated_range is None:
        state = "the model states no validated ground sample distance: treat it as unvalidated"
        warnings.append(f"Model {info.name} {state}.")
    else:
        state = f"validated for imagery of {_range_text(bundle)}"
    learned = _for(bundle, crop)
    detail = f"Learned model {info.name} {info.version} ({info.kind}){learned}, {where}; {state}."
    if info.crops and crops_.learned(crop, info.crops) is None:
        warnings.append(
            f"The field's crop is not stated, and model {info.name} learned {_crops_text(info)} "
            "only: on another crop its crop and weed are untested. State the crop (--crop, or "
            "the field's crop) and Khet uses the model only where it learned that crop."
        )
    return Plan(
        "model", info.classes, grid, zoom, working, detail, bundle.load(), veg, None, warnings
    )


def _for(bundle: Bundle, crop: str | None) -> str:
    """The crops a model learned, for its detail: ' for potato (the field's crop)', ' for
    potato' (the field's crop not stated), or nothing when the model states none."""
    if not bundle.info.crops:
        return ""
    known = " for " + _crops_text(bundle.info)
    return known + " (the field's crop)" if crops_.learned(crop, bundle.info.crops) else known


# -- rules ---------------------------------------------------------------------------------------
def _rule_grid(scene: Scene, cell_m: float) -> Grid:
    g = scene.gsd.metres
    cell = 32 if g is None else int(max(2, min(128, round(cell_m / g))))
    tile = cell * max(1, RULE_TILE // cell)
    return Grid(scene.width, scene.height, tile, 0, cell)


def _rows_plan(scene: Scene, veg: vi.Vegetation, found: rows_.Rows, why: str) -> Plan:
    d = found.describe()
    # Cells a quarter of the row spacing: a row and the gap beside it are separate cells.
    cell_m = min(CELL_M, max(0.05, d["spacing_m"] / 4))
    detail = (
        f"Crop rows: {why}, so vegetation on the crop rows found in the image (spacing about "
        f"{d['spacing_m']:.2f} m, rows about {d['row_width_m']:.2f} m wide, over "
        f"{d['share_with_rows']:.0%} of the area with plants) is called crop and vegetation "
        "between them weed; a weed inside a row counts as crop. Where no rows were found, "
        "plants are shown as vegetation."
    )
    return Plan(
        "rows",
        (SOIL, CROP, WEED, VEGETATION),
        _rule_grid(scene, cell_m),
        1.0,
        scene.gsd.metres,
        detail,
        None,
        veg,
        found,
    )


def _index_plan(scene: Scene, veg: vi.Vegetation, detail: str) -> Plan:
    return Plan(
        "index",
        (SOIL, VEGETATION),
        _rule_grid(scene, CELL_M),
        1.0,
        scene.gsd.metres,
        f"{detail} Plants: {veg.how}.",
        None,
        veg,
        None,
    )
