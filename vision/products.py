"""The files a field map is made of, defined once.

Every reader of a results folder (the service's downloads and tiles, the pages, the report, the
edge runner's outbox) takes the names from here; nothing else spells a result file name. WebODM's
asset map is the model: one entry per product, saying what it is and who uses it.

`synced` marks what a field device sends to the service; `heavy` ones (the index maps and the
preview: megabytes, where the map's own layers are kilobytes) only when asked to send its imagery
too (`khet edge run --with-imagery`), as on a rural link every megabyte counts. `tileable` marks the
map layers the service cuts into web-map tiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

Kind = Literal["categorical", "continuous", "vector", "image", "document"]


@dataclass(frozen=True)
class Product:
    """One output of a field map."""

    key: str
    path: str  # relative to the results folder; "{index}" stands for an index name
    media_type: str
    kind: Kind
    title: str
    tileable: bool = False
    synced: bool = False
    heavy: bool = False  # synced only with the imagery (see above)
    required: bool = False  # every finished map has it

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.path).replace(r"\{index\}", INDEX_NAME) + "$")

    def name(self, index: str | None = None) -> str:
        """The file's path in a results folder (an index product needs the index's name)."""
        if "{index}" in self.path:
            if index is None or not re.fullmatch(INDEX_NAME, index):
                raise ValueError(f"{self.key} needs an index name")
            return self.path.replace("{index}", index)
        return self.path


INDEX_NAME = r"[a-z0-9_]{1,32}"

SUMMARY = Product(
    "summary",
    "summary.json",
    "application/json",
    "document",
    "Summary",
    synced=True,
    required=True,
)
CLASSES = Product(
    "classes",
    "classes.tif",
    "image/tiff",
    "categorical",
    "Soil, crop and weed",
    tileable=True,
    synced=True,
    required=True,
)
VIGOUR = Product(
    "vigour",
    "vigour.tif",
    "image/tiff",
    "categorical",
    "Crop vigour",
    tileable=True,
    synced=True,
)
CONFIDENCE = Product(
    "confidence",
    "confidence.tif",
    "image/tiff",
    "continuous",
    "Model confidence (%)",
    synced=True,
)
COVER = Product(
    "cover", "cover.tif", "image/tiff", "continuous", "Crop and weed cover (%)", synced=True
)
INDEX = Product(
    "index",
    "indices/{index}.tif",
    "image/tiff",
    "continuous",
    "Vegetation index",
    tileable=True,
    synced=True,
    heavy=True,
)
ZONES = Product(
    "zones",
    "zones.geojson",
    "application/geo+json",
    "vector",
    "Zones",
    synced=True,
    required=True,
)
PREVIEW = Product(
    "preview", "preview.png", "image/png", "image", "Preview", synced=True, heavy=True
)
# A flight's mosaic, which the map was made from (vision/mosaic.py). A device sends it as the
# flight's imagery when asked (`--with-imagery`), not with the map.
ORTHO = Product("ortho", "ortho.tif", "image/tiff", "image", "Orthomosaic of the flight")

# Management zones and prescriptions (vision/prescription.py), made on demand from a finished
# map into its `management/` folder; not part of the map itself, so never required or synced.
_MEDIA = {
    "json": "application/json",
    "geojson": "application/geo+json",
    "tif": "image/tiff",
    "zip": "application/zip",
}
MANAGEMENT: tuple[Product, ...] = (
    Product("mz_json", "management/zones.json", _MEDIA["json"], "document", "Management zones"),
    Product(
        "mz_geojson", "management/zones.geojson", _MEDIA["geojson"], "vector", "Management zones"
    ),
    Product("mz_tif", "management/zones.tif", _MEDIA["tif"], "categorical", "Management zones"),
) + tuple(
    Product(
        f"{kind}_{role}",
        f"management/{kind}{suffix}",
        _MEDIA[ext],
        kind_of,
        f"{title} ({what})",
    )
    for kind, title in (("rate", "Variable-rate prescription"), ("spot", "Spot-spray map"))
    for role, suffix, ext, kind_of, what in cast(
        tuple[tuple[str, str, str, Kind, str], ...],
        (
            ("json", ".json", "json", "document", "description"),
            ("geojson", ".geojson", "geojson", "vector", "GeoJSON"),
            ("shapefile", "-shapefile.zip", "zip", "vector", "ESRI Shapefile"),
            ("taskdata", "-taskdata.zip", "zip", "vector", "ISO 11783-10 TaskData"),
        ),
    )
)

PRODUCTS: tuple[Product, ...] = (
    SUMMARY, CLASSES, VIGOUR, CONFIDENCE, COVER, INDEX, ZONES, PREVIEW, ORTHO, *MANAGEMENT,
)  # fmt: skip
BY_KEY = {p.key: p for p in PRODUCTS}
#: What a new field map written into a folder replaces there: an earlier map's files (those
#: the new one has not are removed), its mosaic, and the zones and prescriptions made from it.
REPLACED_BY_A_MAP = PRODUCTS


def product_of(name: str) -> Product | None:
    """The product a result file name belongs to, or None when Khet does not know the name."""
    for p in PRODUCTS:
        if p.pattern.match(name):
            return p
    return None


def is_result(name: str) -> bool:
    """Whether a file name is one of the field map's outputs."""
    return product_of(name) is not None


def media_type(name: str) -> str:
    """The media type of an output file, by its name."""
    p = product_of(name)
    return p.media_type if p else "application/octet-stream"


def synced_names(present: list[str], heavy: bool = False) -> list[str]:
    """Of the files in a results folder, those a device sends (the `heavy` ones too when asked),
    summary first."""
    names = sorted(
        n
        for n in present
        if (p := product_of(n)) is not None and p.synced and (heavy or not p.heavy)
    )
    return sorted(names, key=lambda n: n != SUMMARY.path)


def described() -> str:
    """The result names for messages and API docs: "summary.json, classes.tif, ..."."""
    return ", ".join(p.path.replace("{index}", "<name>") for p in PRODUCTS if p not in MANAGEMENT)
