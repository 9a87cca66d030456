"""The field report of one flight: the numbers, the charts and the advice, and its PDF.

Everything here is computed on the server from the flight's summary.json and zones.geojson, and the
charts are inline SVG, so the PDF (WeasyPrint) needs no JavaScript and no network. The advice is
derived from the map: the largest weed patch and the largest weak-crop patch, their area and where
they lie relative to the middle of the field, in compass words for a georeferenced map and in
image words ("top right") for one without coordinates.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import weasyprint
from khet.service.i18n import Translator
from khet.service.values import color, dicts, mapping, num, text
from khet.vision import products, units
from khet.vision.gsd import describe as describe_gsd
from khet.vision.units import area_scale, fmt_amount, fmt_rate, in_square_metres
from PIL import Image
from rasterio.errors import RasterioError
from weasyprint import HTML

WEED_WIDE_SHARE = 0.25  # above this weeds are a whole-field problem, not a patch
MIN_PATCH_SHARE = 0.01  # patches smaller than this share of the mapped area are not advice
INDEX_COLORS = ("#a50026", "#f46d43", "#fee08b", "#d9ef8b", "#66bd63", "#006837")  # rdylgn


# --- numbers -----------------------------------------------------------------------------------


def _vigour_rule(vig: dict, indices: dict, has_crop: bool, t: Translator) -> str | None:
    """The vigour rule in the reader's language with this flight's thresholds (the summary's
    `thresholds`); None where they are missing (then the analysis's English rule is shown)."""
    th = mapping(vig.get("thresholds"))
    median, low, high = (num(th.get(k)) for k in ("median", "low_below", "high_above"))
    name = text(vig.get("index"))
    if median is None or low is None or high is None or not name:
        return None
    index = text(mapping(indices.get(name)).get("title")) or name.upper()
    rule = t(
        "vigour_rule", index=index, low=f"{low:.3f}", high=f"{high:.3f}", median=f"{median:.3f}"
    )
    return rule if has_crop else f"{rule} {t('vigour_rule_vegetation')}"


def area_head(scale: float | None, t: Translator) -> str:
    """The heading of a column of hectare areas: the unit `fmt_area` writes them in."""
    return t("square_metres") if in_square_metres(scale) else t("hectares")


def fmt_area(
    value: float | None,
    unit: str,
    t: Translator,
    total: float | None = None,
    scale: float | None = None,
) -> str:
    """An area for people: hectares or square metres as everywhere in Khet (vision/units.py),
    `scale` (the largest area of a table column, `area_scale`) choosing the unit, so a column
    reads in one unit. For pixel maps: a share of the image."""
    if value is None:
        return "–"
    if unit == "ha":
        return units.fmt_area(value, scale)
    if total:
        return pct(value / total)
    return f"{value:,.0f} px"


def pct(share: float | None) -> str:
    """A share (0 to 1) as a percentage for people: one decimal below 10%."""
    if share is None:
        return "–"
    p = share * 100
    if p == 0:
        return "0%"
    return f"{p:.1f}%" if p < 10 else f"{p:.0f}%"


def latlon(location: object, t: Translator) -> str | None:
    """'30.90681° N, 73.74478° E', marked approximate when it comes from the camera's GPS."""
    location = mapping(location)
    lat, lon = num(location.get("lat")), num(location.get("lon"))
    if lat is None or lon is None:
        return None
    text = f"{abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.5f}° {'E' if lon >= 0 else 'W'}"
    if "georeferenced" not in str(location.get("based_on") or ""):
        text += f" ({t('approx_location')})"
    return text


def weed_share(summary: object) -> float | None:
    """The share of the analysed area that is weed; None when the map has no weed class."""
    for c in dicts(mapping(summary).get("classes")):
        if c.get("name") == "weed":
            return num(c.get("share"), 0.0)
    return None


def low_vigour_share(summary: object) -> float | None:
    """The share of the crop with low vigour; None without vigour levels."""
    for lvl in dicts(mapping(mapping(summary).get("vigour")).get("levels")):
        if lvl.get("name") == "low":
            return num(lvl.get("share_of_crop"), 0.0)
    return None


# --- where things are --------------------------------------------------------------------------


@dataclass
class Patch:
    area: float
    x: float  # centroid, lon or image column
    y: float  # centroid, lat or image row


def _polys(geom: dict) -> list[list[list[list[float]]]]:
    """The polygons of a geometry, keeping only rings of [x, y] numbers."""
    if not isinstance(geom, dict):
        return []
    coords = geom.get("coordinates")
    if geom.get("type") == "Polygon":
        polys = [coords]
    elif geom.get("type") == "MultiPolygon":
        polys = coords if isinstance(coords, list) else []
    else:
        return []
    out = []
    for poly in polys:
        rings = []
        for ring in poly if isinstance(poly, list) else []:
            pts = [
                [float(p[0]), float(p[1])]
                for p in (ring if isinstance(ring, list) else [])
                if isinstance(p, list | tuple)
                and len(p) >= 2
                and num(p[0]) is not None
                and num(p[1]) is not None
            ]
            if pts:
                rings.append(pts)
        if rings:
            out.append(rings)
    return out


def _ring_centroid(ring: list[list[float]]) -> tuple[float, float, float]:
    """Signed area and centroid of a ring (shoelace); coordinates as given. Computed from the
    ring's first point: a zone of a few centimetres at longitude 73 has an area of 1e-12 square
    degrees, lost in products of coordinates near 73 (its centroid came out 20 km away)."""
    if not ring:
        return 0.0, 0.0, 0.0
    ox, oy = ring[0][0], ring[0][1]
    a = cx = cy = 0.0
    for (x0, y0, *_), (x1, y1, *_) in zip(ring, ring[1:], strict=False):
        x0, y0, x1, y1 = x0 - ox, y0 - oy, x1 - ox, y1 - oy
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    a /= 2
    reach = max((max(abs(p[0] - ox), abs(p[1] - oy)) for p in ring), default=0.0)
    if abs(a) <= 1e-9 * reach * reach:  # a ring with no area (its points on a line)
        xs = [p[0] for p in ring]
        ys = [p[1] for p in ring]
        return 0.0, sum(xs) / len(xs), sum(ys) / len(ys)
    return a, ox + cx / (6 * a), oy + cy / (6 * a)


def _centroid(geom: dict) -> tuple[float, float] | None:
    total = sx = sy = 0.0
    for poly in _polys(geom):
        for k, ring in enumerate(poly):
            a, cx, cy = _ring_centroid(ring)
            w = abs(a) * (1 if k == 0 else -1)
            total += w
            sx += cx * w
            sy += cy * w
    if total <= 0:
        return None
    return sx / total, sy / total


def _bounds(geoms: list[dict]) -> tuple[float, float, float, float] | None:
    xs, ys = [], []
    for g in geoms:
        for poly in _polys(g):
            for ring in poly[:1]:
                xs += [p[0] for p in ring]
                ys += [p[1] for p in ring]
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def direction(dx: float, dy: float, half_extent: float) -> str:
    """A compass key (n, ne, ..., c) for an offset; dy points north (up)."""
    if half_extent <= 0 or math.hypot(dx, dy) < 0.25 * half_extent:
        return "c"
    angle = math.degrees(math.atan2(dx, dy)) % 360  # 0 = north, clockwise
    return ("n", "ne", "e", "se", "s", "sw", "w", "nw")[int((angle + 22.5) // 45) % 8]


def zone_facts(summary: dict, zones: dict | None, unit: str) -> ZoneFacts:
    """The largest zone of each class and vigour level and the bounds of all zones: from the
    summary's `zones` (maps made since Khet wrote it: a big field's zones file holds tens of
    thousands of polygons, read for nothing), else from zones.geojson."""
    given = _summary_zones(summary)
    if given is not None:
        patches = []
        for p in dicts(given["largest"]):
            area, x, y = num(p.get("area")), num(p.get("x")), num(p.get("y"))
            if text(p.get("name")) and area is not None and x is not None and y is not None:
                patches.append((str(p["name"]), text(p.get("vigour")), Patch(area, x, y)))
        b = given.get("bounds")
        box = [num(v) for v in b] if isinstance(b, list) and len(b) == 4 else []
        x0, y0, x1, y1 = box if box and None not in box else (None,) * 4
        bounds = None if x0 is None else (float(x0), float(y0), float(x1), float(y1))  # type: ignore[arg-type]
        return ZoneFacts(patches, bounds)
    patches = []
    for f in dicts(mapping(zones).get("features")):
        props = mapping(f.get("properties"))
        area, c = num(props.get(f"area_{unit}")), _centroid(mapping(f.get("geometry")))
        if text(props.get("class")) and area is not None and c is not None:
            patches.append((str(props["class"]), text(props.get("vigour")), Patch(area, *c)))
    geoms = [mapping(f.get("geometry")) for f in dicts(mapping(zones).get("features"))]
    return ZoneFacts(patches, _bounds(geoms))


@dataclass
class ZoneFacts:
    patches: list[tuple[str, str | None, Patch]]  # (class, vigour level, its largest zone)
    bounds: tuple[float, float, float, float] | None

    def largest(self, cls: str, vigour: str | None = None) -> Patch | None:
        """The biggest zone of a class (and vigour level)."""
        found = [p for c, v, p in self.patches if c == cls and (vigour is None or v == vigour)]
        return max(found, key=lambda p: p.area, default=None)


def locate(
    patch: Patch,
    bounds: tuple[float, float, float, float] | None,
    unit: str,
    boundary: dict | None,
) -> str:
    """Where the patch lies relative to the middle of the field (its boundary's, or of the
    zones' `bounds`: the image)."""
    b = bounds
    if unit == "ha" and boundary:
        b = _bounds([boundary.get("geometry", boundary)])
    if b is None:
        return "c"
    x0, y0, x1, y1 = b
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if unit == "ha":  # lon/lat: metres east and north
        k = math.cos(math.radians(cy))
        dx, dy = (patch.x - cx) * k, patch.y - cy
        half = max((x1 - x0) * k, y1 - y0) / 2
    else:  # image pixels: rows grow downwards
        dx, dy = patch.x - cx, cy - patch.y
        half = max(x1 - x0, y1 - y0) / 2
    return direction(dx, dy, half)


def advice(summary: dict, zones: dict | None, boundary: dict | None, t: Translator) -> list[str]:
    """What to do next, most important first; always ends with the caveat."""
    summary = mapping(summary)
    unit = area_unit(summary)
    total = num(summary.get(f"area_total_{unit}"), 0.0)
    out: list[str] = []
    classes = {c["name"]: c for c in dicts(summary.get("classes")) if text(c.get("name"))}
    where_key = "dir" if unit == "ha" else "img"
    facts = zone_facts(summary, zones, unit)
    ws = weed_share(summary) or 0.0
    if ws >= WEED_WIDE_SHARE:
        out.append(t("advice_weed_wide", share=pct(ws)))
    weed = facts.largest("weed")
    if weed and total and weed.area / total >= MIN_PATCH_SHARE:
        where = t(f"{where_key}_{locate(weed, facts.bounds, unit, boundary)}")
        if unit == "ha":
            out.append(t("advice_weed_patch", area=fmt_area(weed.area, unit, t), where=where))
        else:
            out.append(t("advice_weed_patch_img", share=pct(weed.area / total), where=where))
    low = facts.largest("crop", "low")
    crop_area = num(mapping(classes.get("crop")).get(f"area_{unit}"), 0.0)
    if low and crop_area and low.area / crop_area >= 0.05:
        where = t(f"{where_key}_{locate(low, facts.bounds, unit, boundary)}")
        if unit == "ha":
            out.append(t("advice_low_patch", area=fmt_area(low.area, unit, t), where=where))
        else:
            out.append(t("advice_low_patch_img", share=pct(low.area / crop_area), where=where))
    if not out:
        plant = sum(num(mapping(classes.get(n)).get("share"), 0.0) for n in ("crop", "weed"))
        veg = max(
            num(mapping(classes.get("vegetation")).get("share"), 0.0),
            num(mapping(summary.get("cover")).get("vegetation"), 0.0),
        )
        if plant > 0:
            out.append(t("advice_all_good"))
        elif veg > 0:  # plants, but the method cannot tell crop from weed: say so, and why
            out.append(t("advice_vegetation_only", share=pct(veg), why=why_no_split(summary, t)))
        else:
            out.append(t("advice_none"))
    learned = crop_unstated(summary, t)
    if learned:  # first, before any advice on weeds: they may be the crop
        out.insert(0, t("advice_crop_unstated", crops=learned))
    out.append(t("advice_check"))
    return out


def crop_unstated(summary: dict, t: Translator) -> str | None:
    """The crops a model learned, in the reader's language, when the model made the map and the
    field's crop was not stated (its crop class is then what it learned, whatever the field
    grows); else None."""
    summary = mapping(summary)
    if text(summary.get("crop")):
        return None
    layer = mapping(mapping(summary.get("layers")).get("classes"))
    if (text(layer.get("method")) or text(summary.get("method"))) != "model":
        return None
    crops = [c for c in (text(x) for x in mapping(summary.get("model")).get("crops") or []) if c]
    named = [t(f"crop_name_{c}") if f"crop_name_{c}" in t.known else c for c in crops]
    return " / ".join(named) or None


def why_no_split(summary: dict, t: Translator) -> str:
    """Why a map shows vegetation but not crop and weed, in the reader's words, from the
    method that made its classes and that method's detail (the analysis writes it in English:
    "Crop and weed are not told apart: ..., and no crop rows were found ...")."""
    summary = mapping(summary)
    layer = mapping(mapping(summary.get("layers")).get("classes"))
    method = text(layer.get("method")) or text(summary.get("method"))
    detail = (text(layer.get("detail")) or "").lower()
    gsd = num(mapping(summary.get("gsd")).get("metres"))
    if method == "rows":
        return t("why_rows_none")
    if method != "index":
        return t("why_other")
    if "ground sample distance is unknown" in detail or (gsd is None and "rows" not in detail):
        return t("why_gsd_unknown")
    crop = text(summary.get("crop"))
    # The plan's "model ... learned potato, not maize" (the field's crop, or the other crop of
    # an intercrop such as "potato-maize").
    if crop and " learned " in detail and "no crop rows were found" in detail:
        return t("why_crop", crop=crop)
    if "no crop rows were found" in detail:
        return t("why_no_rows")
    if gsd is not None and gsd > 0:
        return t("why_resolution", gsd=describe_gsd(gsd))
    return t("why_other")


# --- charts (inline SVG) -----------------------------------------------------------------------


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def share_chart(rows: list[dict], title: str) -> str:
    """A horizontal bar per class, in the class colours, with its share written next to it.
    Always drawn left to right (numbers and bars read the same way in Urdu reports)."""
    bar_h, gap, label_w, width = 24, 10, 130, 460
    height = len(rows) * (bar_h + gap) + gap
    plot_w = width - label_w - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>'
    ]
    for i, r in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max(0.0, min(1.0, num(r.get("share"), 0.0))) * plot_w
        ty = y + bar_h * 0.72
        parts.append(
            f'<text x="{label_w - 8}" y="{ty:.1f}" text-anchor="end" '
            f'class="chart-label">{_esc(r["label"])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" '
            f'fill="{_esc(color(r.get("color")))}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{ty:.1f}" class="chart-value">'
            f"{_esc(pct(r.get('share')))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _index_color(frac: float) -> str:
    frac = max(0.0, min(1.0, frac))
    return INDEX_COLORS[min(len(INDEX_COLORS) - 1, int(frac * len(INDEX_COLORS)))]


def histogram_chart(stats: dict, title: str, median_label: str = "median") -> str | None:
    """Bars of an index histogram, coloured like the map's index layer, with p10/median/p90."""
    stats = mapping(stats)
    hist = mapping(stats.get("histogram"))
    edges, counts = hist.get("edges"), hist.get("counts")
    if not isinstance(edges, list) or not isinstance(counts, list):
        return None
    edges, counts = [num(e) for e in edges], [num(c) for c in counts]
    if None in edges or None in counts or any(c < 0 for c in counts):
        return None
    if len(edges) != len(counts) + 1 or not counts or max(counts) <= 0:
        return None
    # Trim empty bins at both ends so the shape is readable.
    nz = [i for i, c in enumerate(counts) if c > 0]
    a, b = max(0, nz[0] - 1), min(len(counts), nz[-1] + 2)
    edges, counts = edges[a : b + 1], counts[a:b]
    width, height, pad_l, pad_b, pad_t = 460, 190, 26, 34, 20
    plot_w, plot_h = width - 2 * pad_l, height - pad_b - pad_t
    lo, hi = float(edges[0]), float(edges[-1])
    span = (hi - lo) or 1.0
    top = max(counts)
    p10, p90 = num(stats.get("p10")), num(stats.get("p90"))
    cl, ch = lo, hi
    if p10 is not None and p90 is not None and p90 > p10:
        cl, ch = p10, p90
    bw = plot_w / len(counts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>'
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{pad_l + plot_w}" '
        f'y2="{pad_t + plot_h}" class="axis"/>'
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / top
        mid = (float(edges[i]) + float(edges[i + 1])) / 2
        color = _index_color((mid - cl) / ((ch - cl) or 1.0))
        parts.append(
            f'<rect x="{pad_l + i * bw + 1:.1f}" y="{pad_t + plot_h - h:.1f}" '
            f'width="{max(bw - 2, 1):.1f}" height="{h:.1f}" fill="{color}"/>'
        )
    for i in range(0, len(edges), max(1, len(edges) // 5)):
        x = pad_l + i * bw
        parts.append(
            f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle" '
            f'class="chart-tick">{float(edges[i]):.2f}</text>'
        )
    med = num(stats.get("median"))
    if med is not None and lo <= med <= hi:
        x = pad_l + (med - lo) / span * plot_w
        right = x > width * 0.6  # keep the label inside the chart
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad_t - 8}" x2="{x:.1f}" y2="{pad_t + plot_h}" '
            f'class="median"/><text x="{x - 5 if right else x + 5:.1f}" y="{pad_t - 6}" '
            f'text-anchor="{"end" if right else "start"}" '
            f'class="chart-tick median-label">{_esc(median_label)} {med:.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# --- the report's data -------------------------------------------------------------------------


@dataclass
class Report:
    lang: str
    dir: str
    title: str
    field_name: str
    farm_name: str
    crop: str | None
    flight_id: int
    date: str
    location: str | None
    unit: str
    total: str | None
    classes: list[dict[str, Any]]
    vigour: list[dict[str, Any]]
    vigour_rule: str | None
    vigour_rule_translated: bool  # else the analysis's own English words
    class_chart: str
    histograms: list[dict[str, Any]]
    advice: list[str]
    model: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    radiometry: str | None = None  # the line on how the index values were calibrated
    uncalibrated: bool = False
    method: str | None = None  # which method made the crop/weed split, in words
    gsd: str | None = None  # the ground sample distance and how it was found, in words
    limits: str | None = None  # what the method cannot tell
    weed_cover: str | None = None  # weeds' share of the field's area, per pixel
    management: dict[str, Any] | None = None  # zones and prescriptions made for the flight
    class_area_head: str = ""  # the unit of the class table's area column
    vigour_area_head: str = ""


def _describe_method(summary: dict, t: Translator) -> dict[str, Any]:
    """The map's method, its GSD and its limits in the reader's language (the analysis writes
    them in English for scripts; a farmer reads these)."""
    gsd = mapping(summary.get("gsd"))
    metres = num(gsd.get("metres"))
    how = {
        "crs": "gsd_from_crs",
        "crs-geographic": "gsd_from_crs",
        "camera": "gsd_from_camera",
        "user": "gsd_from_user",
    }.get(str(gsd.get("source")))
    if metres is not None and metres > 0:
        gsd_line = t("gsd_line", gsd=describe_gsd(metres), how=t(how) if how else "")
    elif "method" in summary:
        gsd_line = t("gsd_unknown")
    else:
        gsd_line = None  # a summary from before Khet knew ground sample distances
    method = text(summary.get("method"))
    model = mapping(summary.get("model"))
    line = limits = None
    if method == "model":
        rng = model.get("gsd_range_m")
        lo, hi = (num(v) for v in rng) if isinstance(rng, list) and len(rng) == 2 else (None, None)
        work = num(mapping(mapping(summary.get("layers")).get("classes")).get("gsd_m"))
        line = t(
            "method_model",
            name=str(model.get("name", "?")),
            version=str(model.get("version", "?")),
            gsd=describe_gsd(work) if work else "?",
        )
        if lo and hi:
            line += " " + t("method_model_range", lo=describe_gsd(lo), hi=describe_gsd(hi))
        limits = t("limits_model")
    elif method == "rows":
        spacing = num(mapping(summary.get("rows")).get("spacing_m"))
        line = t("method_rows", spacing=f"{spacing:.1f}" if spacing else "?")
        limits = t("limits_rows")
    elif method == "index":
        line, limits = t("method_index"), t("limits_index")
    weed = num(mapping(summary.get("cover")).get("weed"))
    return {
        "method": line,
        "gsd": gsd_line,
        "limits": limits,
        "weed_cover": t("weed_cover", pct=pct(weed)) if weed is not None else None,
    }


def radiometry_status(summary: dict | None) -> str | None:
    """ "reflectance", "uncalibrated", or None (imagery Khet did not calibrate, e.g. a photo).

    Summaries written before calibration existed have no `radiometry`: their multispectral
    captures were raw numbers, so they count as uncalibrated."""
    summary = mapping(summary)
    r = summary.get("radiometry")
    if isinstance(r, dict):
        calibrated = r.get("calibrated")
        if not isinstance(calibrated, bool):
            return None
        return "reflectance" if calibrated else "uncalibrated"
    kind = mapping(summary.get("input")).get("kind")
    return "uncalibrated" if kind == "capture" else None


def flight_date(flight) -> str:
    """The day a flight was taken (else uploaded), as YYYY-MM-DD."""
    raw = flight.captured_at or (flight.created_at.isoformat() if flight.created_at else "")
    return str(raw)[:10]


def _summary_zones(summary: dict) -> dict | None:
    """The summary's `zones` (what the advice needs of zones.geojson), when the map has it."""
    given = mapping(mapping(summary).get("zones"))
    return given if isinstance(given.get("largest"), list) else None


def _zones_if_needed(summary: dict, results: Path) -> dict | None:
    """zones.geojson for a map whose summary does not say what the advice needs of it."""
    return None if _summary_zones(summary) is not None else load_zones(results)


def load_zones(results: Path) -> dict | None:
    """A flight's zones.geojson, or None when it is missing or unreadable."""
    try:
        return json.loads((results / "zones.geojson").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def area_unit(summary: object) -> str:
    """ "ha" for a georeferenced map, "px" for one in image pixels; anything else is "ha"."""
    return "px" if mapping(summary).get("area_unit") == "px" else "ha"


def build_report(flight, results: Path, t: Translator) -> Report:
    """The report of one finished flight, in the translator's language."""
    summary = mapping(flight.summary)
    field_ = flight.field
    unit = area_unit(summary)
    total_f = num(summary.get(f"area_total_{unit}"))
    classes = []
    class_scale = area_scale(
        [total_f] + [num(c.get(f"area_{unit}")) for c in dicts(summary.get("classes"))]
    )
    for c in dicts(summary.get("classes")):
        classes.append(
            {
                "name": text(c.get("name")),
                "label": t.name("cls", str(c.get("name"))),
                "color": color(c.get("color")),
                "share": num(c.get("share"), 0.0),
                "area": fmt_area(num(c.get(f"area_{unit}")), unit, t, total_f, class_scale),
            }
        )
    vig = mapping(summary.get("vigour"))
    crop_area = next(
        (
            num(c.get(f"area_{unit}"))
            for c in dicts(summary.get("classes"))
            if c.get("name") == "crop"
        ),
        None,
    )
    levels = []
    level_scale = area_scale(num(lvl.get(f"area_{unit}")) for lvl in dicts(vig.get("levels")))
    for lvl in dicts(vig.get("levels")):
        levels.append(
            {
                "name": text(lvl.get("name")),
                "label": t.name("lvl", str(lvl.get("name"))),
                "color": color(lvl.get("color")),
                "share": num(lvl.get("share_of_crop"), 0.0),
                "area": fmt_area(
                    num(lvl.get(f"area_{unit}")), unit, t, crop_area or None, level_scale
                ),
            }
        )
    hists = []
    indices = mapping(summary.get("indices"))
    vig_index = text(vig.get("index"))
    order = [vig_index] + [k for k in indices if k != vig_index]
    for name in [n for n in order if isinstance(n, str) and isinstance(indices.get(n), dict)][:2]:
        st = indices[name]
        label = text(st.get("title")) or name.upper()
        svg = histogram_chart(st, t("histogram", index=label), t("median"))
        if svg:
            hists.append(
                {
                    "name": name,
                    "title": t("histogram", index=label),
                    "note": t("histogram_note", index=label),
                    "svg": svg,
                    "formula": text(st.get("formula")),
                }
            )
    total: str | None
    if unit == "ha":
        total = fmt_area(total_f, unit, t, scale=class_scale)
    else:
        approx = num(summary.get("area_total_ha_approx"))
        total = t("approx_ha", ha=f"{approx:.2f}") if approx is not None else None
    translated_rule = _vigour_rule(vig, indices, crop_area is not None, t)
    model = mapping(summary.get("model"))
    warnings = summary.get("warnings")
    return Report(
        lang=t.lang,
        dir=t.dir,
        title=t("report_title"),
        field_name=field_.name,
        farm_name=field_.farm.name,
        crop=field_.crop,
        flight_id=flight.id,
        date=flight_date(flight),
        location=latlon(summary.get("location"), t),
        unit=unit,
        total=total,
        classes=classes,
        vigour=levels,
        vigour_rule=(translated_rule or text(vig.get("rule"))) if levels else None,
        vigour_rule_translated=translated_rule is not None,
        class_chart=share_chart(classes, t("class_share_chart")),
        histograms=hists,
        advice=advice(summary, _zones_if_needed(summary, results), field_.boundary, t),
        model={
            "name": str(model.get("name", "?")),
            "version": str(model.get("version", "?")),
            "label_rule": text(model.get("label_rule")),
            "gsd_m": num(model.get("gsd_m")),
        },
        warnings=[str(w) for w in warnings] if isinstance(warnings, list) else [],
        **_radiometry_line(summary, t),
        **_describe_method(summary, t),
        management=management_section(results, t),
        class_area_head=area_head(class_scale, t),
        vigour_area_head=area_head(level_scale, t),
    )


def management_section(results: Path, t: Translator) -> dict[str, Any] | None:
    """The zone table, the rate prescription and the spray saving, in the report's words;
    None when no zones or prescriptions were made for the flight."""
    from khet.vision import prescription as rx

    made = rx.listing(results)
    if not made:
        return None
    out: dict[str, Any] = {"approx": False}
    zones = made.get("zones")
    if zones:
        index = text(zones.get("index_title")) or "index"
        rows = []
        zone_scale = area_scale(num(z.get("area_ha")) for z in dicts(zones.get("zones")))
        for z in dicts(zones.get("zones")):
            rows.append(
                {
                    "zone": int(num(z.get("zone"), 0)),
                    "color": color(z.get("color")),
                    "area": fmt_area(num(z.get("area_ha")), "ha", t, scale=zone_scale),
                    "mean": _fixed(num(z.get("index_mean")), 2),
                    "std": _fixed(num(z.get("index_std")), 2),
                    "weed": pct(num(z.get("weed_share"))),
                }
            )
        how, how_lang = _zones_how(mapping(zones.get("method")), index, t)
        out["zones"] = {
            "title": t("mgmt_zones", index=index),
            "index": index,
            "rows": rows,
            "note": t("zones_note", index=index, how=""),
            "area_head": area_head(zone_scale, t),
            "how": how,
            "how_lang": how_lang,
        }
        out["approx"] = zones.get("placement") == "approximate"
    rate = made.get("rate")
    if rate:
        unit, tunit = text(rate.get("unit")), text(rate.get("total_unit"))
        by_zone = {int(num(z.get("zone"), 0)): z for z in dicts(rate.get("zones"))}
        rate_scale = area_scale(num(z.get("area_ha")) for z in by_zone.values())
        out["rate"] = {
            "title": t("rate_title", product=text(rate.get("product"))),
            "rate_col": t("rate_col", unit=unit),
            "area_head": area_head(rate_scale, t),
            "product_col": t("product_col", unit=tunit),
            "rows": [
                {
                    "zone": k,
                    "rate": _rate(num(z.get("rate"))),
                    "area": fmt_area(num(z.get("area_ha")), "ha", t, scale=rate_scale),
                    "product": _amount(num(z.get("product"))),
                }
                for k, z in sorted(by_zone.items())
            ],
            "total": t(
                "rate_total",
                total=_amount(num(rate.get("total"))),
                unit=tunit,
                area=fmt_area(num(rate.get("area_ha")), "ha", t),
                mean=_rate(num(rate.get("mean_rate"))),
                rate_unit=unit,
            ),
        }
        out["approx"] = out["approx"] or rate.get("placement") == "approximate"
    spot = made.get("spot")
    if spot:
        spot_scale = area_scale([num(spot.get("field_ha")), num(spot.get("sprayed_ha"))])
        spot_how, spot_lang = _spot_how(spot, t)
        out["spot"] = {
            "title": t("spot_title"),
            "share": num(spot.get("sprayed_share")),
            "line": t(
                "spot_line",
                sprayed=fmt_area(num(spot.get("sprayed_ha")), "ha", t, scale=spot_scale),
                field=fmt_area(num(spot.get("field_ha")), "ha", t, scale=spot_scale),
                share=pct(num(spot.get("sprayed_share"))),
                saving=pct(num(spot.get("saving_share"))),
                product=text(spot.get("product")),
                total=_amount(num(spot.get("total"))),
                blanket=_amount(num(spot.get("blanket_total"))),
                unit=text(spot.get("total_unit")),
            ),
            "how": spot_how,
            "how_lang": spot_lang,
        }
        out["approx"] = out["approx"] or spot.get("placement") == "approximate"
    return out


def _zones_how(method: dict, index: str, t: Translator) -> tuple[str, str]:
    """How the zones were made, in the reader's language where zones.json says it as data
    (zones made before it did give their English line); (the line, its language)."""
    library = text(method.get("library"))
    min_zone = fmt_area(num(method.get("min_zone_ha")), "ha", t)
    if "chosen_by" not in method:
        how = f"{library}; {text(method.get('features'))}; {text(method.get('zone_count'))}; "
        return how + f"minimum zone {min_zone}.", "en"
    n = 2 * int(num(method.get("smooth_cells"), 0)) + 1
    flights = int(num(method.get("flights"), 1))
    features = t("zones_how_features", index=index, n=n)
    if flights > 1:
        features += t("zones_how_flights", flights=flights)
    if method.get("chosen_by") == "user":
        count = t("zones_how_user")
    else:
        lo, hi = (int(num(v, 0)) for v in list(method.get("zone_range") or [0, 0])[:2])
        share = pct(num(method.get("explained_target")))
        count = t("zones_how_auto", lo=lo, hi=hi, share=share)
    return t("zones_how", library=library, features=features, count=count, min=min_zone), t.lang


def _spot_how(spot: dict, t: Translator) -> tuple[str, str]:
    """How the spot-spray map was drawn, in the reader's language where the file says it as
    data (older ones give their English line); (the line, its language)."""
    target = text(spot.get("target"))
    if "cell_m" not in spot or target not in ("weed", "vegetation"):
        return text(spot.get("how")) or "", "en"
    cover = spot.get("min_cover_pct")
    cells = (
        t(f"spot_cells_cover_{target}", pct=f"{num(cover, 0):g}")
        if cover is not None
        else t(f"spot_cells_{target}")
    )
    line = t(
        "spot_how",
        cells=cells,
        cell=f"{num(spot.get('cell_m'), 0):.2f}",
        patch=f"{num(spot.get('min_patch_m2'), 0):g}",
        margin=f"{num(spot.get('margin_m'), 0):g}",
    )
    return line, t.lang


def _fixed(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _rate(value: float | None) -> str:
    return "–" if value is None else fmt_rate(value)


def _amount(value: float | None) -> str:
    return "–" if value is None else fmt_amount(value)


def _radiometry_line(summary: dict, t: Translator) -> dict[str, Any]:
    status = radiometry_status(summary)
    if status == "uncalibrated":
        return {"radiometry": t("index_uncalibrated"), "uncalibrated": True}
    if status == "reflectance":
        method = str(mapping(summary.get("radiometry")).get("method"))
        return {"radiometry": t("index_reflectance", method=t(f"cal_{method}"))}
    return {}


def class_drawing(results: Path, width: int = 900) -> bytes | None:
    """The class map in its legend colours (no data white) as a PNG about `width` px wide: the
    report's picture of a map whose preview did not travel (a device's flight sent without its
    imagery: the preview is megabytes, the class map kilobytes). None without a class map."""
    try:
        with rasterio.open(results / products.CLASSES.path) as ds:
            classes = ds.read(1)
            colours = ds.colormap(1)
    except (RasterioError, ValueError):  # no class map, or one without colours
        return None
    lut = np.full((256, 3), 255, np.uint8)
    for value, (r, g, b, a) in colours.items():
        if 0 <= value < 255 and a:
            lut[value] = (r, g, b)
    h, w = classes.shape
    size = (width, max(1, round(h * width / max(w, 1))))
    img = Image.fromarray(lut[classes]).resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(source: Path | bytes, media: str = "image/png") -> str | None:
    """A file (or bytes) as a data: URI (images embedded in the PDF), or None when unreadable."""
    try:
        data = source if isinstance(source, bytes) else source.read_bytes()
    except OSError:
        return None
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


def render_pdf(html_text: str, base_url: str | None = None) -> bytes:
    """The report HTML as a PDF. WeasyPrint fetches nothing from the network: every image is
    inline (data URIs) and fonts come from the system."""
    fetcher_cls = getattr(weasyprint, "URLFetcher", None) or getattr(
        __import__("weasyprint.urls", fromlist=["URLFetcher"]), "URLFetcher", None
    )
    if fetcher_cls is not None:  # WeasyPrint >= 67
        fetcher = fetcher_cls(allowed_protocols={"data"})
    else:

        def fetcher(url: str, *a, **kw):
            if not url.startswith("data:"):
                raise ValueError(f"the report fetches nothing from the network: {url[:80]}")
            return weasyprint.default_url_fetcher(url, *a, **kw)

    return HTML(string=html_text, base_url=base_url, url_fetcher=fetcher).write_pdf()
