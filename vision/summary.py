"""`summary.json`, typed: what a field map says, in one definition every reader shares.

The pipeline builds a `Summary` and writes it; the service validates one that a device sends
before storing it (a 4xx for a malformed one, never a page that fails later), and the pages, the
report and the edge runner read it through `Summary.read`. rio-tiler's typed models are the
precedent. Fields that older Khet versions did not write are optional, so a summary from before
`schema_version` existed still reads (as version 1).

What a value means is said here, once:
- shares are fractions of the analysed area (0..1); areas are hectares when the map has a
  georeference (`area_unit` "ha"), else image pixels ("px");
- ground sample distances are metres per pixel;
- `layers` says which method made each layer, at which ground sample distance, and why a layer
  that could not be made honestly was left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from khet.errors import InputError

SCHEMA_VERSION = 2


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


Finite = Annotated[float, AfterValidator(_finite)]
Area = Annotated[float, Field(ge=0.0), AfterValidator(_finite)]  # hectares or pixels
Share = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_finite)]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
Count = Annotated[int, Field(ge=0)]
Text = Annotated[str, Field(max_length=2000)]
Name = Annotated[str, Field(max_length=64)]


class _Model(BaseModel):
    # Newer writers may add fields: keep them (they travel with the file), check what is known.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ClassRow(_Model):
    name: Name
    color: Color
    cells: Count = 0
    share: Share = 0.0
    area_ha: Area | None = None
    area_px: Area | None = None
    mean_confidence: Share | None = None


class VigourLevel(_Model):
    name: Name
    color: Color
    cells: Count = 0
    share_of_crop: Share = 0.0
    area_ha: Area | None = None
    area_px: Area | None = None


class Vigour(_Model):
    index: Name | None = None
    rule: Text = ""
    thresholds: dict[Name, Finite] = Field(default_factory=dict)
    levels: list[VigourLevel] = Field(default_factory=list, max_length=16)


class Histogram(_Model):
    edges: list[Finite] = Field(default_factory=list, max_length=1024)
    counts: list[Count] = Field(default_factory=list, max_length=1024)


class IndexStats(_Model):
    title: Name = ""
    formula: Text = ""
    pixels: Count = 0
    mean: Finite | None = None
    std: Finite | None = None
    min: Finite | None = None
    max: Finite | None = None
    p10: Finite | None = None
    median: Finite | None = None
    p90: Finite | None = None
    histogram: Histogram | None = None


class Gsd(_Model):
    """A ground sample distance and how it was found."""

    metres: Annotated[float, Field(gt=0, lt=1000), AfterValidator(_finite)] | None = None
    source: Text = "unknown"  # "crs", "crs-geographic", "camera", "user", "unknown"
    detail: Text = ""


class ModelInfo(_Model):
    name: Name
    version: Name = ""
    file: Text = ""
    sha256: Annotated[str, Field(max_length=64)] = ""
    bands: list[Name] = Field(default_factory=list, max_length=32)
    classes: list[Name] = Field(default_factory=list, max_length=32)
    tile_size: Count = 0
    precision: Name = ""
    kind: Name = "tiles"
    gsd_m: Finite | None = None
    gsd_range_m: list[Finite] | None = None
    crops: list[Name] = Field(default_factory=list, max_length=32)  # what its "crop" learned
    label_rule: Text = ""
    macro_f1: Finite | None = None


class Tiling(_Model):
    tile_size: Count = 0
    overlap: Count = 0
    stride: Count = 0
    rows: Count = 0
    cols: Count = 0
    cells_analysed: Count = 0
    cells_skipped: Count = 0
    min_valid_share: Share = 0.5
    cell_m: Finite | None = None  # cell side on the ground, metres


class InputInfo(_Model):
    sources: list[Text] = Field(default_factory=list, max_length=10000)
    kind: Name = "raster"
    width: Count = 0
    height: Count = 0
    bands: list[Name] = Field(default_factory=list, max_length=32)
    dtype: Name = ""
    georeference: Name = "none"
    crs: Text | None = None
    pixel_size: list[Finite] | None = None
    camera: dict[str, Any] = Field(default_factory=dict)
    alignment: list[dict[str, Any]] = Field(default_factory=list, max_length=64)
    # Set when an image read as red, green and blue looks like a near-infrared camera's false
    # colour: the share of its pixels that are saturated red-purple (vision/indices.py).
    looks_near_infrared: Share | None = None
    # Set when the image's near-infrared reads darker than red (or green) over more of it than
    # reads as plants: the share of such pixels; its bands are probably named in the wrong order.
    looks_misordered: Share | None = None
    # Set when an RGB image looks stored blue, green, red: the share of saturated blue pixels
    # with red the lowest band (bare soil with red and blue swapped; vision/indices.py).
    looks_swapped: Share | None = None


class Location(_Model):
    lon: Annotated[float, Field(ge=-180, le=180)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    based_on: Text = ""


class Layer(_Model):
    """How one layer of the map was made."""

    method: Literal["model", "rows", "index", "rule", "none"]
    detail: Text = ""
    gsd_m: Finite | None = None  # the ground sample distance the layer was computed at


class Cover(_Model):
    """Shares of the analysed area covered by vegetation, crop and weed (pixel counts, not
    cells): weed pressure is `weed`."""

    vegetation: Share | None = None
    crop: Share | None = None
    weed: Share | None = None
    method: Name = ""


class Radiometry(_Model):
    """How pixel values became the numbers indices are computed from (vision/radiometry.py):
    reflectance (`calibrated` true), radiance or raw numbers (false: not comparable between
    flights), or values used as stored in a file Khet does not calibrate (absent)."""

    calibrated: bool | None = None
    values: Literal["reflectance", "radiance", "raw", "as stored"] = "as stored"
    method: Literal["panel+dls", "panel", "dls", "none"] = "none"
    note: Text = ""
    bands: dict[Name, dict[str, Any]] = Field(default_factory=dict, max_length=32)
    panel: dict[str, Any] | None = None


class Timing(_Model):
    seconds: Finite = 0.0
    inference_seconds: Finite = 0.0
    tiles: Count = 0
    tiles_per_second: Finite = 0.0


class LargestZone(_Model):
    """The largest connected zone of a class (crop: of a vigour level), where advice points."""

    name: Name  # the class
    vigour: Name | None = None
    area: Area  # in the map's area unit (ha or px), as the zone's own area in zones.geojson
    x: Finite  # its centroid: longitude, or image column on a map without georeference
    y: Finite  # latitude, or image row


class Zones(_Model):
    """What zones.geojson holds, for readers that do not need every polygon (the report's
    advice): a big field's zones file has tens of thousands of them."""

    features: Count = 0
    largest: list[LargestZone] = Field(default_factory=list, max_length=128)
    bounds: tuple[Finite, Finite, Finite, Finite] | None = None  # of all zones, x and y as above


class Summary(_Model):
    schema_version: int = 1
    title: Text | None = None
    input: InputInfo = Field(default_factory=InputInfo)
    radiometry: Radiometry | None = None
    gsd: Gsd | None = None
    location: Location | None = None
    area_unit: Literal["ha", "px"] = "px"
    crop: Text | None = None  # the field's crop, as stated (vision/crops.py)
    model: ModelInfo | None = None
    layers: dict[Name, Layer] = Field(default_factory=dict)
    tiling: Tiling = Field(default_factory=Tiling)
    classes: list[ClassRow] = Field(default_factory=list, max_length=32)
    cover: Cover | None = None
    vigour: Vigour = Field(default_factory=Vigour)
    zones: Zones | None = None
    indices: dict[Name, IndexStats | None] = Field(default_factory=dict)
    index_resolution_step: Count = 1
    outputs: dict[Name, Any] = Field(default_factory=dict)
    warnings: list[Text] = Field(default_factory=list, max_length=200)
    area_total_ha: Area | None = None
    area_total_px: Area | None = None
    area_total_ha_approx: Area | None = None
    timing: Timing | None = None
    khet_version: Name | None = None
    created: Name | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if not 1 <= v <= SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is not one this Khet reads (1 to {SCHEMA_VERSION}); "
                "a newer device needs a newer server"
            )
        return v

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[ClassRow]) -> list[ClassRow]:
        names = [c.name for c in v]
        if len(set(names)) != len(names):
            raise ValueError("class names repeat")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Summary:
        """Values that are each well-formed must also add up: shares of one whole sum to at
        most 1, no part is larger than the whole, and a share agrees with its area. Tolerances
        cover the rounding the pipeline writes with (shares to 4 decimals, hectares to 6,
        pixels to whole numbers)."""
        _parts_of_one("classes", [(c.name, c.share) for c in self.classes])
        _parts_of_one("vigour.levels", [(v.name, v.share_of_crop) for v in self.vigour.levels])
        if self.cover is not None and self.cover.vegetation is not None:
            for name in ("crop", "weed"):
                part = getattr(self.cover, name)
                if part is not None and part > self.cover.vegetation + SHARE_TOLERANCE:
                    raise ValueError(
                        f"cover.{name} ({part:g}) is more than cover.vegetation "
                        f"({self.cover.vegetation:g}), of which it is a part"
                    )
        for unit, total, slack in (
            ("ha", self.area_total_ha, HA_ROUNDING),
            ("px", self.area_total_px, PX_ROUNDING),
        ):
            key = f"area_{unit}"
            rows: list[tuple[str, float | None, float | None]] = [
                (
                    f"classes[{c.name}]",
                    getattr(c, key),
                    c.share if "share" in c.model_fields_set else None,
                )
                for c in self.classes
            ]
            if total is None:
                continue
            allowed = total * (1 + SHARE_TOLERANCE) + slack
            for where, area, share in rows:
                if area is None:
                    continue
                if area > allowed:
                    raise ValueError(
                        f"{where}.{key} ({area:g}) is larger than the whole map "
                        f"(area_total_{unit} {total:g})"
                    )
                if share is not None and abs(area - share * total) > (
                    SHARE_TOLERANCE * total + slack
                ):
                    raise ValueError(
                        f"{where}.share ({share:g}) does not agree with its {key} "
                        f"({area:g} of area_total_{unit} {total:g})"
                    )
            parts = sum(a for _, a, _ in rows if a is not None)
            if parts > allowed:
                raise ValueError(
                    f"the classes' {key} add up to {parts:g}, more than the whole map "
                    f"(area_total_{unit} {total:g})"
                )
            for v in self.vigour.levels:
                area = getattr(v, key)
                if area is not None and area > allowed:
                    raise ValueError(
                        f"vigour.levels[{v.name}].{key} ({area:g}) is larger than the whole "
                        f"map (area_total_{unit} {total:g})"
                    )
        return self

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def read(cls, data: Any, source: str = "summary.json") -> Summary:
        """A summary from its JSON object; InputError saying what is wrong when it is not one."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise InputError(f"{source} is not a Khet summary: {_first_problem(e)}.") from None

    @classmethod
    def load(cls, path: Path) -> Summary:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{Path(path).name} is not readable JSON ({e}).") from None
        return cls.read(data, Path(path).name)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to summary.json (None fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    # -- what readers ask ------------------------------------------------------------------
    def class_row(self, name: str) -> ClassRow | None:
        return next((c for c in self.classes if c.name == name), None)

    def share(self, name: str) -> float | None:
        row = self.class_row(name)
        return row.share if row is not None else None


#: How far shares of one whole may sum past 1, and a part past its whole (relative).
SHARE_TOLERANCE = 0.01
#: Rounding of written areas: hectares to 6 decimals, pixels to whole numbers.
HA_ROUNDING = 1e-5
PX_ROUNDING = 1.0


def _parts_of_one(where: str, parts: list[tuple[str, float]]) -> None:
    total = sum(share for _, share in parts)
    if total > 1 + SHARE_TOLERANCE:
        listed = ", ".join(f"{n} {s:g}" for n, s in parts if s)
        raise ValueError(
            f"the shares in {where} add up to {total:.3g} ({listed}); shares of one map add "
            "up to at most 1"
        )


def _first_problem(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
