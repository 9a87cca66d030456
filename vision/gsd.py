"""Ground sample distance: how much ground one pixel covers, and how Khet knows.

Every later stage depends on it: a model is run only at the ground sample distance (GSD) it was
validated for, crop rows are measured in metres, and areas of a photo without a georeference are
approximate hectares only when the GSD is known. The sources, in order of trust:

1. ``--gsd`` (the user states it): taken as given.
2. A projected CRS: the pixel size, in metres (feet are converted); on the ground, where the
   projection stretches distances by more than 1 % (Web Mercator: 1.41 times at 45 degrees).
3. A geographic CRS (degrees): the pixel size converted to metres at the image centre.
4. A drone frame: height above ground x pixel pitch / focal length (a nadir photo; a tilted
   frame's pixels are larger away from its centre). The height comes from the XMP (DJI
   ``RelativeAltitude``, senseFly ``Height``, Parrot ``AboveGroundAltitude``); the pixel pitch
   from EXIF ``FocalPlaneXResolution``, else from ``FocalLengthIn35mmFilm`` and the image size,
   else from a small table of common drone cameras.

Anything else is unknown, and said so: nothing guesses a GSD silently.
"""

from __future__ import annotations

import math

from khet.vision.exif import CameraFacts
from khet.vision.summary import Gsd
from rasterio.crs import CRS

from khet.errors import InputError

# A stated ground sample distance outside these (metres per pixel) is a typo, not imagery: a
# hundredth of a millimetre is a microscope's, a kilometre a weather satellite's.
GSD_MIN_M, GSD_MAX_M = 1e-5, 1000.0
#: A projected CRS whose pixel differs from the ground's by more than this share gives the
#: ground's length as the GSD (see from_crs).
SCALE_TOLERANCE = 0.01

#: Sensor pixel pitch (mm) of common drone cameras, by EXIF Model, for files without
#: FocalPlaneXResolution. Sensor width / image width from the makers' specifications.
CAMERA_PIXEL_PITCH_MM: dict[str, float] = {
    "FC6310": 13.2 / 5472,  # DJI Phantom 4 Pro / Pro V2.0
    "FC6310S": 13.2 / 5472,
    "FC6310R": 13.2 / 5472,  # Phantom 4 RTK
    "FC330": 6.17 / 4000,  # Phantom 4
    "FC300X": 6.17 / 4000,  # Phantom 3
    "FC220": 6.17 / 4000,  # Mavic Pro
    "L1D-20c": 13.2 / 5472,  # Mavic 2 Pro (Hasselblad)
    "FC3170": 6.4 / 8000,  # Mavic Air 2
    "FC7303": 6.3 / 4000,  # Mini 2
    "FC3582": 9.7 / 8064,  # Mini 3 Pro
    "M3M": 17.3 / 5280,  # Mavic 3 Multispectral, RGB camera
    "FC6520": 17.3 / 5280,  # Zenmuse X5S
    "FC6510": 13.2 / 5472,  # Zenmuse X4S
    "RedEdge": 4.8 / 1280,  # MicaSense RedEdge / RedEdge-M / -MX (3.75 um)
    "RedEdge-M": 4.8 / 1280,
    "RedEdge-MX": 4.8 / 1280,
    "Altum": 7.12 / 2064,  # MicaSense Altum multispectral bands (3.45 um)
    "Sequoia": 4.8 / 1280,  # Parrot Sequoia multispectral bands (3.75 um)
}
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


def check_stated(metres: float | None, said: str = "A ground sample distance of") -> None:
    """InputError unless a stated GSD is metres per pixel Khet maps (NaN and inf are not);
    `said` names it in the message (the CLI's "A ground sample distance of", edge's "--gsd")."""
    if metres is not None and not (GSD_MIN_M <= metres < GSD_MAX_M and math.isfinite(metres)):
        raise InputError(
            f"{said} {metres} does not work: give metres per pixel, from {GSD_MIN_M:g} up to "
            f"(not including) {GSD_MAX_M:g}, e.g. --gsd 0.03 for 3 cm."
        )


def from_user(metres: float) -> Gsd:
    """A ground sample distance stated by the user (--gsd), in metres per pixel."""
    return Gsd(metres=metres, source="user", detail="stated with --gsd")


def from_crs(crs: CRS, transform, width: int, height: int) -> Gsd | None:
    """The pixel size of a georeferenced raster in metres (the mean of x and y)."""
    px, py = abs(transform.a), abs(transform.e)
    if transform.b or transform.d:  # rotated: the length of each pixel side
        px, py = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_projected:
        unit = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        m = (px + py) / 2 * unit
        ground = _ground_pixel_m(crs, transform, width, height)
        detail = f"pixel size of {crs.to_string()}"
        if ground is not None and abs(ground / m - 1) > SCALE_TOLERANCE:
            # A projection that is not made for measuring (Web Mercator, a wide-zone CRS far
            # from its centre line): its pixel is not the ground's. Survey projections (UTM,
            # State Plane) stretch by under 0.1 % and keep their pixel size exactly.
            detail = (
                f"{crs.to_string()} pixels of {m:.3g} m are {ground:.3g} m on the ground at the "
                f"image centre (the projection's scale factor there is {m / ground:.3f})"
            )
            m = ground
        if not GSD_MIN_M <= m < GSD_MAX_M:  # a climate grid, or a wrong georeference
            return Gsd(
                detail=f"the pixel size of {crs.to_string()}, {m:g} m, is outside what Khet maps "
                f"({GSD_MIN_M:g} m up to, not including, {GSD_MAX_M:g} m)"
            )
        return Gsd(metres=m, source="crs", detail=detail)
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        cx, cy = transform * (width / 2, height / 2)
        if not (-180 <= cx <= 180 and -90 <= cy <= 90):
            return None
        _, _, dx = geod.inv(cx, cy, cx + px, cy)
        _, _, dy = geod.inv(cx, cy, cx, cy + py)
        return Gsd(
            metres=(abs(dx) + abs(dy)) / 2,
            source="crs-geographic",
            detail=f"{px:.3g} degree pixels converted at the image centre ({cy:.4f} N)",
        )
    return None


def _ground_pixel_m(crs: CRS, transform, width: int, height: int) -> float | None:
    """The mean ground length (geodesic, metres) of a pixel's two sides at the image centre of a
    projected raster, measured over a step of up to 100 pixels; None where the centre cannot be
    placed on the ellipsoid."""
    from pyproj import CRS as ProjCRS
    from pyproj import Geod, Transformer

    try:
        src = ProjCRS.from_user_input(crs.to_wkt())
        geo = src.geodetic_crs or ProjCRS.from_epsg(4326)
        to_geo = Transformer.from_crs(src, geo, always_xy=True)
        geod = geo.get_geod() or Geod(ellps="WGS84")
        c, k = (width / 2, height / 2), max(1.0, min(100.0, width / 2, height / 2))
        pts = [transform * c, transform * (c[0] + k, c[1]), transform * (c[0], c[1] + k)]
        lon, lat = to_geo.transform([p[0] for p in pts], [p[1] for p in pts])
        _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, dy = geod.inv(lon[0], lat[0], lon[2], lat[2])
    except Exception:  # pyproj's errors: a CRS or point it cannot transform
        return None
    ground = (abs(dx) + abs(dy)) / 2 / k
    return ground if math.isfinite(ground) and ground > 0 else None


def pixel_pitch_mm(camera: CameraFacts, width: int, height: int) -> tuple[float, str] | None:
    """The sensor's pixel pitch in mm and where it came from."""
    if camera.pixel_pitch_mm:
        return camera.pixel_pitch_mm, "EXIF FocalPlaneXResolution"
    if camera.focal_length_35mm and camera.focal_length_mm and width and height:
        crop = camera.focal_length_35mm / camera.focal_length_mm
        diagonal = FULL_FRAME_DIAGONAL_MM / crop
        return diagonal / math.hypot(width, height), "EXIF FocalLengthIn35mmFilm"
    model = (camera.model or "").strip()
    if model in CAMERA_PIXEL_PITCH_MM:
        return CAMERA_PIXEL_PITCH_MM[model], f"the {model} camera's specification"
    return None


def from_camera(camera: CameraFacts, width: int, height: int) -> Gsd | None:
    """Height above ground x pixel pitch / focal length, for a frame looking straight down."""
    h, f = camera.relative_altitude_m, camera.focal_length_mm
    pitch = pixel_pitch_mm(camera, width, height)
    if not h or not f or pitch is None or h <= 0 or f <= 0:
        return None
    return Gsd(
        metres=h * pitch[0] / f,
        source="camera",
        detail=(
            f"{h:.1f} m above ground ({camera.height_source or 'XMP'}), focal length {f:g} mm, "
            f"pixel pitch {pitch[0] * 1000:.2f} um ({pitch[1]}); approximate, for a frame "
            "looking straight down"
        ),
    )


def missing_reason(camera: CameraFacts, georeferenced: bool) -> str:
    """Why the GSD is unknown, in words a user can act on."""
    if georeferenced:
        return "the coordinate reference system does not give a pixel size in metres"
    if not camera.relative_altitude_m:
        return "the image has no georeference and its metadata give no height above ground"
    if not camera.focal_length_mm:
        return "the image's metadata give no focal length"
    return "the camera's pixel size is not in its metadata"


def describe(metres: float | None) -> str:
    """A GSD in the unit people use for it: "4.9 cm", "3.0 mm", "1.2 m"."""
    if metres is None:
        return "unknown"
    if metres < 0.01:
        return f"{metres * 1000:.1f} mm"
    if metres < 1:
        return f"{metres * 100:.1f} cm"
    return f"{metres:.2f} m"
