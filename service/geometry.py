"""Field boundaries: GeoJSON (Multi)Polygons in lon/lat (bare, a Feature or a FeatureCollection),
checked before they are stored as one (Multi)Polygon."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from khet.service.config import service_settings
from khet.vision.maps import boundary_geometry, boundary_polygons, hectares
from shapely.geometry import shape

from khet.errors import InputError

MAX_AREA_M2 = 10_000 * 10_000.0  # 10,000 ha


def _finite(c: float) -> bool:
    try:
        return math.isfinite(c)
    except OverflowError:  # an integer of hundreds of digits
        return False


def _rings(geom: dict) -> list[list]:
    coords = geom.get("coordinates")
    polys = [coords] if geom["type"] == "Polygon" else coords
    if not isinstance(polys, list) or not polys:
        raise InputError("The boundary has no coordinates.")
    rings = []
    for poly in polys:
        if not isinstance(poly, list) or not poly:
            raise InputError("Each polygon of the boundary needs at least one ring of points.")
        rings.extend(poly)
    return rings


def validate_boundary(value: Any) -> tuple[dict, float]:
    """The cleaned geometry and its area in hectares, or an InputError that says what is wrong."""
    # A bare geometry, a Feature or a FeatureCollection (a layer exported from QGIS), as
    # `khet analyze --boundary` takes them; stored as one (Multi)Polygon.
    rings = [ring for poly in boundary_polygons(value) for ring in _rings(poly)]
    # Every list page carries the boundary: a million points made each of them 100 MB.
    limit = service_settings().max_boundary_vertices
    points = sum(len(r) if isinstance(r, list) else 0 for r in rings)
    if points > limit:
        raise InputError(
            f"The boundary has {points:,} points; at most {limit:,} are accepted "
            "(KHET_MAX_BOUNDARY_VERTICES). Simplify it (e.g. in QGIS: Vector > Geometry Tools "
            "> Simplify)."
        )
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise InputError(
                "Each boundary ring needs at least 4 points (the last repeats the first)."
            )
        for pt in ring:
            if (
                not isinstance(pt, list | tuple)
                or len(pt) < 2
                or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pt[:2])
                or not all(_finite(c) for c in pt[:2])
            ):
                raise InputError("Boundary points must be [longitude, latitude] numbers.")
            lon, lat = pt[0], pt[1]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise InputError(
                    f"Boundary point [{lon}, {lat}] is not a longitude/latitude: "
                    "use WGS84 degrees, longitude first."
                )
        if list(ring[0][:2]) != list(ring[-1][:2]):
            raise InputError("The boundary is not closed: its last point must repeat the first.")
    # Then the analysis's own check (vision/maps.py), so a boundary the web stores is one the
    # analysis takes as it is: a ring that touches itself (a pinched field) is repaired the
    # same way, a bow-tie refused with the same words, the same least area.
    geom = boundary_geometry(value)
    try:
        area = float(hectares(np.array([shape(geom)], dtype=object), "EPSG:4326")[0]) * 1e4
    except Exception as e:
        raise InputError(f"The boundary cannot be placed on the map ({e}).") from None
    if area > MAX_AREA_M2:
        raise InputError(
            f"The boundary encloses {area / 10_000:,.0f} ha, more than 10,000 ha: "
            "is it the right shape?"
        )
    return geom, area / 10_000
