"""Radiometric calibration of MicaSense band files: raw numbers to radiance to reflectance.

A band file holds raw sensor numbers. Each band is exposed on its own (auto-exposure changes
exposure time and gain through a flight), each lens darkens towards its edges, and the light
changes between flights: an index computed from raw numbers compares numbers that are not
comparable. This module turns them into reflectance, the share of the light falling on the field
that the field sends back, which is what agronomists compare from flight to flight.

The model is MicaSense's own, from their open processing code (micasense/imageprocessing, MIT:
`Image.radiance`, `Image.vignette`, `dls.py`, `panel.py`), checked in the tests against the
radiance and irradiance figures that code's own test suite expects for the shared sample:

1. Radiance from the metadata every band file carries,
   L = V(r) * R(y) * (p - black) / (gain * exposure) * a1 / 2**bits, where V = 1 / (1 + k1 r +
   k2 r^2 + ...) undoes the lens fall-off around `VignettingCenter` (`VignettingPolynomial` k),
   R = 1 / (1 + a2 y / exposure - a3 y) undoes the sensor's row gradient, and (a1, a2, a3) are the
   `RadiometricCalibration` coefficients.
2. Irradiance E, the light falling on the field, per band, from
   - a capture of a calibrated reflectance panel: E = pi * L_panel / rho_panel, the panel found
     through its QR code (OpenCV) and rho_panel its known reflectance in that band;
   - the downwelling light sensor (DLS) reading in the XMP, corrected for the sensor's tilt
     against the sun (sun position from astral) and its diffuser's Fresnel reflection;
   - or both: the panel sets the level, the light sensor the change in light between the panel
     capture and this one (MicaSense tutorial 3, "tying the camera and DLS together via panels").
3. Reflectance rho = pi * L / E.

What this module will not do: calibrate other cameras' files, correct the view angle (BRDF) or
shadows, or guess a panel's reflectance: it comes from the user, the camera, or the short table
below of panels whose calibration is published.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from khet.vision.exif import (
    CameraFacts,
    exif_datetime,
    read_xmp,
    xmp_float,
    xmp_floats,
    xmp_value,
)
from PIL import Image

from khet.errors import InputError, KhetError

log = logging.getLogger("khet.vision.radiometry")
METHODS = ("auto", "panel+dls", "panel", "dls", "none")

# Panels whose per-band reflectance is published. RP02-1603036-SC is the panel in the shared
# MicaSense RedEdge sample (micasense/imageprocessing, data/0000SET/000/IMG_0000_*.tif): MicaSense
# give its calibration in "MicaSense Image Processing Tutorial 1.ipynb" ("Our panel calibration
# by band (from MicaSense for our specific panel)": Blue 0.67, Green 0.69, Red 0.68, Red edge
# 0.67, NIR 0.61) and use the same figures in tests/test_capture.py (panel_reflectance_by_band).
KNOWN_PANELS: dict[str, dict[str, float]] = {
    "RP02-1603036-SC": {"blue": 0.67, "green": 0.69, "red": 0.68, "rededge": 0.67, "nir": 0.61},
}
KNOWN_PANEL_SOURCE = (
    "MicaSense's published calibration of panel {serial} (micasense/imageprocessing)"
)

# MicaSense panel geometry in millimetres around the QR code's centre, by panel version (from
# micasense/imageprocessing panel.py): half the QR code's side, the side of the measured square
# (the inner half of the grey panel) and where its centre lies from the QR code's centre.
_PANEL_GEOMETRY = {
    2: (42.0, 76.2, (-143.2, 0.0)),  # RP02: 152.4 mm panel, 84 mm QR code, 143.2 mm apart
    3: (45.0, 50.0, (-145.8, 0.0)),  # RP03 to RP05
    6: (41.0, 50.0, (0.0, -130.84)),  # RP06 and later: panel below the QR code
}
_SERIAL_RE = re.compile(r"RP(\d{2})-\d{7}-[A-Z]{2}")
_DIFFUSE_SHARE = 1.0 / 6.0  # clear sky: about 1/6 of the light is diffuse (MicaSense's assumption)
PANEL_MAX_CV = 0.05  # a panel reading whose pixels vary more than this is suspect
PANEL_MAX_SATURATED = 0.01
# Band-to-band spread of the light change the DLS reports between the panel and the flight above
# which it is more likely the sensor than the sky (on the shared sample: 0.86x to 1.02x in 91 s).
LIGHT_CHANGE_SPREAD = 1.10


@dataclass(frozen=True)
class Options:
    """How to calibrate a capture: `khet analyze --panel ... --panel-reflectance ... --calibration`.

    `panel`: the band files (or folder) of a reflectance panel capture taken for this flight.
    `panel_reflectance`: the panel's reflectance, one number for every band or one per band name;
    None: the camera's reading of the panel's QR code, or a panel Khet knows.
    `method`: "auto" (panel and light sensor, whichever the capture allows), or one of them forced,
    or "none" (raw numbers).
    """

    panel: tuple[Path, ...] = ()
    panel_reflectance: float | Mapping[str, float] | None = None
    method: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(
                f"Unknown calibration {self.method!r}: use one of {', '.join(METHODS)}."
            )
        if self.panel_reflectance is not None and not self.panel:
            raise InputError(
                "--panel-reflectance is the reflectance of the panel capture named with --panel: "
                "give --panel too (the light sensor needs no panel values)."
            )

    @property
    def stated(self) -> bool:
        """Whether anything was asked of the calibration beyond its default."""
        return bool(self.panel) or self.method != "auto" or self.panel_reflectance is not None


def parse_panel_reflectance(text: str) -> float | dict[str, float]:
    """`0.5` (every band) or `blue=0.67,green=0.69,...` (per band name), each in (0, 1]."""

    def number(v: str, what: str) -> float:
        try:
            f = float(v)
        except ValueError:
            f = float("nan")
        if not (0.0 < f <= 1.0):
            raise InputError(
                f"Panel reflectance {what}{v.strip()!r} is not a number between 0 and 1 "
                "(e.g. 0.67 for 67%)."
            )
        return f

    text = text.strip()
    if "=" not in text:
        return number(text, "")
    from khet.vision.scene import normalise_band_name  # scene imports this module

    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InputError(
                f"Panel reflectance {part.strip()!r} is not BAND=VALUE; write e.g. "
                "--panel-reflectance blue=0.67,green=0.69,red=0.68,nir=0.61,rededge=0.67."
            )
        band = normalise_band_name(name)
        if band in out:
            raise InputError(f"--panel-reflectance gives {name.strip()} twice: give it once.")
        out[band] = number(value, f"for {name.strip()}: ")
    return out


# -- what one band file says -------------------------------------------------------------------
@dataclass
class BandMeta:
    """The calibration facts of one band file (None where the file does not say)."""

    path: Path
    band: str
    black_level: float = 0.0
    bits: int = 16
    radiometric: tuple[float, float, float] | None = None
    exposure_s: float | None = None
    gain: float | None = None
    vignetting_center: tuple[float, float] | None = None
    vignetting_poly: tuple[float, ...] | None = None
    # Where this image lies on the sensor: (0, 0) for a camera's own file; a crop of one records
    # its position in the TIFF XPosition/YPosition tags (in pixels with ResolutionUnit "none").
    offset: tuple[float, float] = (0.0, 0.0)
    offset_recorded: bool = False
    spectral_irradiance: float | None = None  # DLS reading on the sensor's face, W/m^2/nm
    direct_irradiance: float | None = None  # DLS2: direct and scattered parts
    scattered_irradiance: float | None = None
    dls_pose: tuple[float, float, float] | None = None  # yaw, pitch, roll (radians)
    taken_at: datetime | None = None  # UTC
    latitude: float | None = None
    longitude: float | None = None
    pressure_alt_m: float | None = None
    panel_albedo: float | None = None  # the camera's own reading of a panel (newer firmware)
    panel_region: list[tuple[int, int]] | None = None
    panel_serial: str | None = None

    def radiance_missing(self) -> list[str]:
        """The metadata radiance needs that this file lacks."""
        need = {
            "RadiometricCalibration": self.radiometric,
            "ExposureTime": self.exposure_s,
            "ISOSpeed (gain)": self.gain,
            "VignettingCenter": self.vignetting_center,
            "VignettingPolynomial": self.vignetting_poly,
        }
        return [k for k, v in need.items() if v is None]

    @property
    def has_dls(self) -> bool:
        return bool(self.spectral_irradiance) or bool(
            self.direct_irradiance and self.scattered_irradiance
        )


def _rational(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def read_band_meta(path: Path, band: str, facts: CameraFacts | None = None) -> BandMeta:
    """Calibration facts from a band file's TIFF/EXIF tags and XMP; never raises for odd files."""
    m = BandMeta(path=path, band=band)
    if facts is not None:
        m.latitude, m.longitude = facts.latitude, facts.longitude
    sub: Mapping[int, Any] = {}
    try:
        with Image.open(path) as im:
            tags = dict(im.tag_v2) if hasattr(im, "tag_v2") else {}
            sub = dict(im.getexif().get_ifd(0x8769))
    except Exception:  # Pillow cannot read every TIFF variant; then the file is uncalibrated
        tags = {}
    black, bits = tags.get(50714), tags.get(258)
    try:
        if black is not None:
            vals = black if isinstance(black, tuple) else (black,)
            m.black_level = float(np.mean([float(v) for v in vals]))
        if bits is not None:
            m.bits = int(bits[0] if isinstance(bits, tuple) else bits)
    except (TypeError, ValueError, IndexError):
        m.black_level, m.bits = 0.0, 16
    if not (0 < m.bits <= 32 and math.isfinite(m.black_level)):
        m.black_level, m.bits = 0.0, 16
    xpos, ypos = _rational(tags.get(286)), _rational(tags.get(287))
    if xpos is not None and ypos is not None:
        xres, yres = _rational(tags.get(282)) or 1.0, _rational(tags.get(283)) or 1.0
        m.offset, m.offset_recorded = (xpos * xres, ypos * yres), True
    m.exposure_s = _rational(sub.get(33434))
    if m.exposure_s is not None and abs(m.exposure_s - 1.0 / 6329.0) < 1e-6:
        m.exposure_s = 0.000274  # legacy RedEdge firmware wrote this exposure wrongly (MicaSense)
    if m.exposure_s is not None and m.exposure_s <= 0:
        m.exposure_s = None
    iso = sub.get(34867) or sub.get(34855)
    iso = iso[0] if isinstance(iso, tuple) and iso else iso
    gain = _rational(iso)
    m.gain = gain / 100.0 if gain and gain > 0 else None
    m.taken_at = _capture_time(sub.get(36867), sub.get(37520))

    xmp = read_xmp(path)
    if not xmp:
        return m
    rc = xmp_floats(xmp, "MicaSense:RadiometricCalibration")
    m.radiometric = (rc[0], rc[1], rc[2]) if rc and len(rc) >= 3 and rc[0] > 0 else None
    vc = xmp_floats(xmp, "Camera:VignettingCenter")
    m.vignetting_center = (vc[0], vc[1]) if vc and len(vc) == 2 else None
    vp = xmp_floats(xmp, "Camera:VignettingPolynomial")
    m.vignetting_poly = tuple(vp) if vp else None
    m.pressure_alt_m = xmp_float(xmp, "MicaSense:PressureAlt")
    # DLS readings are scaled to W/m^2/nm: DLS2 files say by how much, DLS1 readings are already.
    scale = xmp_float(xmp, "Camera:IrradianceScaleToSIUnits")
    if scale is None:
        scale = 0.01 if xmp_value(xmp, "Camera:HorizontalIrradiance") is not None else 1.0
    irr = xmp_float(xmp, "Camera:Irradiance") or xmp_float(xmp, "DLS:SpectralIrradiance")
    m.spectral_irradiance = _irradiance(irr, scale)
    direct = _irradiance(xmp_float(xmp, "Camera:DirectIrradiance"), scale)
    scattered = _irradiance(xmp_float(xmp, "Camera:ScatteredIrradiance"), scale)
    if direct and scattered:
        m.direct_irradiance, m.scattered_irradiance = direct, scattered
    pose = [xmp_float(xmp, f"DLS:{k}") for k in ("Yaw", "Pitch", "Roll")]
    if all(v is not None for v in pose):
        m.dls_pose = (pose[0], pose[1], pose[2])  # type: ignore[assignment]
    else:
        deg = [xmp_float(xmp, f"Camera:Irradiance{k}") for k in ("Yaw", "Pitch", "Roll")]
        if all(v is not None for v in deg):
            m.dls_pose = tuple(math.radians(v) for v in deg)  # type: ignore[assignment,arg-type]
    if xmp_value(xmp, "Camera:CalibrationPicture") == "2":
        m.panel_albedo = xmp_float(xmp, "Camera:Albedo")
        area = xmp_floats(xmp, "Camera:ReflectArea")
        if area and len(area) == 8:
            m.panel_region = [(int(area[i]), int(area[i + 1])) for i in range(0, 8, 2)]
        m.panel_serial = xmp_value(xmp, "Camera:PanelSerial")
    return m


def _irradiance(value: float | None, scale: float) -> float | None:
    """A light-sensor reading in W/m^2/nm; None when absent, or when no daylight gives it (a
    damaged number would otherwise turn the reflectance to zeros or infinities)."""
    if value is None or value <= 0:
        return None
    e = value * scale
    if not IRRADIANCE_RANGE[0] <= e <= IRRADIANCE_RANGE[1]:
        log.warning("A light-sensor reading of %g W/m^2/nm is not daylight; it is ignored.", e)
        return None
    return e


# Spectral irradiance a light sensor can read: full sun gives about 2 W/m^2/nm in the visible
# and near infrared; far below the range, a reading is noise.
IRRADIANCE_RANGE = (1e-6, 10.0)


def _capture_time(original: Any, subsec: Any) -> datetime | None:
    """DateTimeOriginal + SubSecTime; MicaSense cameras keep their clock in UTC (GPS time)."""
    t = exif_datetime(original)
    if t is None:
        return None
    digits = re.sub(r"\D", "", str(subsec or ""))
    if digits:
        t += timedelta(seconds=float("0." + digits))
    return t.replace(tzinfo=UTC)


# -- radiance ----------------------------------------------------------------------------------
def vignetting(m: BandMeta, shape: tuple[int, int]) -> np.ndarray:
    """The factor that undoes the lens fall-off, per pixel (float32); >= 1 away from the centre."""
    assert m.vignetting_center is not None and m.vignetting_poly is not None
    h, w = shape
    cx, cy = m.vignetting_center
    x = np.arange(w, dtype=np.float64) + m.offset[0] - cx
    y = np.arange(h, dtype=np.float64)[:, None] + m.offset[1] - cy
    r = np.sqrt(x * x + y * y)
    poly = np.zeros_like(r)
    for k in reversed(m.vignetting_poly):  # Horner: 1 + k1 r + k2 r^2 + ...
        poly += k
        poly *= r
    poly += 1.0
    if not np.isfinite(poly).all() or poly.min() <= 0:
        raise ValueError("the vignetting polynomial is not positive over the image")
    # A lens loses a few times its light at the corners, not thousands: a polynomial outside
    # that is a damaged number (it would turn the band to zeros or to infinities).
    if poly.min() < 1 / VIGNETTING_MAX or poly.max() > VIGNETTING_MAX:
        raise ValueError("the vignetting polynomial is far outside what a lens does")
    return (1.0 / poly).astype(np.float32)


VIGNETTING_MAX = 50.0  # the largest lens fall-off, either way, taken for real


def radiance(raw: np.ndarray, m: BandMeta) -> np.ndarray:
    """Spectral radiance (W/m^2/sr/nm) of each pixel of a raw band image, float32."""
    assert m.radiometric is not None and m.exposure_s and m.gain
    a1, a2, a3 = m.radiometric
    t = m.exposure_s
    h, _ = raw.shape
    y = np.arange(h, dtype=np.float64)[:, None] + m.offset[1]
    row = (1.0 / (1.0 + a2 * y / t - a3 * y)).astype(np.float32)
    scale = a1 / (m.gain * t * 2.0**m.bits)
    if not (
        np.isfinite(row).all() and row.min() > 0 and 0 < scale < float(np.finfo(np.float32).max)
    ):
        raise ValueError("the radiometric calibration numbers are out of range")
    out = raw.astype(np.float32)
    out -= np.float32(m.black_level)
    np.maximum(out, 0, out=out)
    out *= vignetting(m, raw.shape)
    out *= row
    out *= np.float32(scale)
    return out


def _vignetting_plausible(m: BandMeta, shape: tuple[int, int]) -> bool:
    """A camera's own file has its lens centre near the middle; a crop or a resized file whose
    position is not recorded does not, and its fall-off cannot be undone."""
    if m.offset_recorded:
        return True
    h, w = shape
    cx, cy = m.vignetting_center or (w / 2, h / 2)
    return abs(cx - w / 2) < w / 4 and abs(cy - h / 2) < h / 4


# -- irradiance from the light sensor ------------------------------------------------------------
def _sun(m: BandMeta) -> tuple[float, float] | None:
    """Sun elevation and azimuth (radians) where and when the capture was taken."""
    if m.taken_at is None or m.latitude is None or m.longitude is None:
        return None
    import astral
    import astral.sun

    obs = astral.Observer(latitude=m.latitude, longitude=m.longitude)
    try:
        el = astral.sun.elevation(obs, m.taken_at)
        az = astral.sun.azimuth(obs, m.taken_at)
    except (ValueError, ArithmeticError):
        return None
    return math.radians(el), math.radians(az)


def _fresnel_transmission(phi: float, n1: float, n2: float) -> float:
    f1 = math.cos(phi)
    s = (n1 / n2 * math.sin(phi)) ** 2
    if s > 1:
        return 0.0
    f2 = math.sqrt(1 - s)
    rs = ((n1 * f1 - n2 * f2) / (n1 * f1 + n2 * f2)) ** 2
    rp = ((n1 * f2 - n2 * f1) / (n1 * f2 + n2 * f1)) ** 2
    t = 1.0 - 0.5 * rs - 0.5 * rp
    return t if 0.0 <= t <= 1.0 else 0.0


def _diffuser_transmission(phi: float) -> float:
    """Share of light at incidence `phi` that passes the DLS diffuser (air, polycarbonate,
    PTFE: MicaSense dls.fresnel)."""
    n = (1.000277, 1.6, 1.38)
    t, p = 1.0, phi
    for i in range(len(n) - 1):
        p = math.asin(math.sin(p) / n[i])
        t *= _fresnel_transmission(p, n[i], n[i + 1])
    return t


def _sensor_normal(pose: tuple[float, float, float]) -> np.ndarray:
    """The DLS's up-facing normal in North-East-Down coordinates (MicaSense dls.get_orientation)."""
    yaw, pitch, roll = pose
    c1, s1 = math.cos(-yaw), math.sin(-yaw)
    c2, s2 = math.cos(-pitch), math.sin(-pitch)
    c3, s3 = math.cos(-roll), math.sin(-roll)
    r_yaw = np.array([[c1, s1, 0], [-s1, c1, 0], [0, 0, 1]])
    r_pitch = np.array([[c2, 0, -s2], [0, 1, 0], [s2, 0, c2]])
    r_roll = np.array([[1, 0, 0], [0, c3, s3], [0, -s3, c3]])
    return r_yaw @ r_pitch @ r_roll @ np.array([0.0, 0.0, -1.0])


def dls_irradiance(m: BandMeta) -> float | None:
    """Irradiance on level ground (W/m^2/nm) from the light sensor reading in the file's XMP.

    DLS2 (direct and scattered parts given): direct * sin(sun elevation) + scattered. DLS1 (one
    reading on the tilted sensor): the reading is undone for the diffuser's Fresnel loss and the
    sensor's angle to the sun, assuming clear sky (1/6 diffuse), then projected onto level ground.
    None when the file has no reading, or no position/time to place the sun.
    """
    sun = _sun(m)
    if sun is None:
        return None
    el, az = sun
    if el <= math.radians(5):
        return None  # sun too low for the cosine model
    if m.direct_irradiance and m.scattered_irradiance:
        return m.direct_irradiance * math.sin(el) + m.scattered_irradiance
    if not m.spectral_irradiance:
        return None
    n_sun = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), -math.sin(el)])
    n_sensor = _sensor_normal(m.dls_pose or (0.0, 0.0, 0.0))
    angle = math.acos(float(np.clip(n_sun @ n_sensor, -1.0, 1.0)))
    transmission = _diffuser_transmission(angle)
    if transmission <= 0:
        return None
    on_sensor = m.spectral_irradiance / transmission
    direct = on_sensor / (_DIFFUSE_SHARE + math.cos(angle))
    return direct * math.sin(el) + direct * _DIFFUSE_SHARE


# -- irradiance from a reflectance panel -------------------------------------------------------
@dataclass
class PanelReading:
    band: str
    serial: str | None
    corners: np.ndarray  # 4 x 2 image pixels of the measured square
    radiance: float  # mean over the square
    cv: float  # standard deviation / mean
    pixels: int
    saturated: float  # share of saturated raw pixels


def _to_gray8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, (0.5, 99.5))
    scale = 255.0 / max(float(hi - lo), 1e-12)
    return np.clip((img - lo) * scale, 0, 255).astype(np.uint8)


def _region(shape: tuple[int, int], corners: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask.astype(bool)


def find_panel(raw: np.ndarray, rad: np.ndarray, m: BandMeta) -> PanelReading | None:
    """The measured square of a MicaSense reflectance panel in one band image, or None.

    Where the camera found the panel itself (newer firmware: `ReflectArea`), that region;
    otherwise the panel's QR code (OpenCV reads it, and its serial), and the square that lies
    beside it on the panel (MicaSense's panel geometry), trying the four ways the code may be
    turned and keeping the most uniform (the grey square is flat; the case around it is not).
    """
    sat_level = (2**m.bits - 1) * 0.992
    candidates: list[tuple[np.ndarray, str | None]] = []
    if m.panel_region:
        candidates.append((np.array(m.panel_region, np.float64), m.panel_serial))
    else:
        det = cv2.QRCodeDetector()
        try:
            text, pts, _ = det.detectAndDecode(_to_gray8(rad))
        except cv2.error:
            text, pts = "", None
        match = _SERIAL_RE.search(text or "")
        if pts is None or not match:
            return None
        qr = pts.reshape(-1, 2).astype(np.float32)
        version = int(match.group(1))
        key = 2 if version < 3 else (3 if version < 6 else 6)
        half_qr, side, (tx, ty) = _PANEL_GEOMETRY[key]
        ref_qr = np.array([[-1, 1], [1, 1], [1, -1], [-1, -1]], np.float32) * half_qr
        ref_panel = np.array([[-1, 1], [1, 1], [1, -1], [-1, -1]], np.float32) * side / 2
        ref_panel += np.array([tx, ty], np.float32)
        for turn in range(4):
            h = cv2.getPerspectiveTransform(np.roll(ref_qr, turn, axis=0), qr)
            corners = cv2.perspectiveTransform(ref_panel[None], h)[0].astype(np.float64)
            candidates.append((corners, match.group(0)))
    best: PanelReading | None = None
    h, w = rad.shape
    for corners, serial in candidates:
        if (corners < 0).any() or (corners[:, 0] >= w).any() or (corners[:, 1] >= h).any():
            continue
        mask = _region(rad.shape, corners)
        n = int(mask.sum())
        if n < 100:
            continue
        values = rad[mask]
        mean = float(values.mean())
        if mean <= 0:
            continue
        cv = float(values.std()) / mean
        reading = PanelReading(
            m.band, serial, corners, mean, cv, n, float((raw[mask] >= sat_level).mean())
        )
        if best is None or reading.cv < best.cv:
            best = reading
    return best


# -- calibrating a capture ---------------------------------------------------------------------
@dataclass
class BandFiles:
    """A capture as the scene read it: one raw array, file, band name and camera facts per band."""

    files: Sequence[Path]
    raws: Sequence[np.ndarray]
    names: Sequence[str]
    facts: Sequence[CameraFacts]


@dataclass
class Result:
    """Per-band arrays for the scene (float32 reflectance or radiance, or black-subtracted raw
    numbers in the file's type), the summary's `radiometry` entry, and warnings."""

    arrays: list[np.ndarray]
    radiometry: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    height_above_ground_m: float | None = None
    height_source: str | None = None


UNCALIBRATED = (
    "UNCALIBRATED: {why} Index values (NDVI ...) are {what}, so they are not comparable with "
    "other flights or other days, and the crop vigour levels only compare parts of this image. "
    "{fix}"
)


def _raw_result(capture: BandFiles, metas: list[BandMeta], why: str, fix: str) -> Result:
    arrays = []
    for raw, m in zip(capture.raws, metas, strict=True):
        black = int(round(m.black_level))
        arrays.append(np.where(raw > black, raw - black, 0).astype(raw.dtype) if black else raw)
    warning = UNCALIBRATED.format(why=why, what="raw sensor numbers minus the black level", fix=fix)
    info = {
        "calibrated": False,
        "values": "raw",
        "method": "none",
        "note": warning,
    }
    return Result(arrays, info, [warning])


def _why_not_calibratable(capture: BandFiles, metas: list[BandMeta]) -> str | None:
    """Why a capture's band files cannot be turned into light: missing camera metadata, or a
    crop whose position is not recorded. None when they can."""
    missing = {m.path.name: m.radiance_missing() for m in metas if m.radiance_missing()}
    if missing:
        name, what = next(iter(missing.items()))
        return (
            f"{name}{' and other band files' if len(missing) > 1 else ''} lack the camera "
            f"metadata that turns raw numbers into light ({', '.join(what)})."
        )
    for m, raw in zip(metas, capture.raws, strict=True):
        if not _vignetting_plausible(m, raw.shape):
            return (
                f"{m.path.name} looks cropped or resized (its lens centre is far from the image "
                "centre and no crop position is recorded), so the lens fall-off cannot be undone."
            )
    return None


def _method(asked: str, has_panel: bool, has_dls: bool, has_dls_panel: bool) -> str:
    """The calibration method: the one asked for if the data allow it, or for "auto" the best
    the data allow ("radiance" when there is no light reference at all)."""
    method = asked
    if asked == "auto":
        if has_panel and has_dls and has_dls_panel:
            method = "panel+dls"
        elif has_panel:
            method = "panel"
        elif has_dls:
            method = "dls"
        else:
            method = "radiance"
    if method == "dls" and not has_dls:
        raise InputError(
            "--calibration dls needs the light sensor's readings with the capture's GPS position "
            "and time in every band file; these band files do not have them all."
        )
    if method == "panel+dls" and not (has_dls and has_dls_panel):
        raise InputError(
            "--calibration panel+dls needs light sensor readings in both the panel capture and "
            "this one; use --calibration panel."
        )
    return method


def _band_info(
    m: BandMeta,
    dls_e: Mapping[str, float | None],
    panel_e: Mapping[str, float] | None,
    dls_panel: Mapping[str, float | None],
    irradiance: Mapping[str, float],
) -> dict[str, Any]:
    """What the summary records of one band's calibration."""
    row: dict[str, Any] = {
        "exposure_ms": round(m.exposure_s * 1000, 4),  # type: ignore[operator]
        "gain": m.gain,
        "black_level": m.black_level,
    }
    dls, at_panel = dls_e.get(m.band), dls_panel.get(m.band)
    if dls is not None:
        row["dls_irradiance"] = round(dls, 5)
    if panel_e is not None:
        row["panel_irradiance"] = round(panel_e[m.band], 5)
    if at_panel:
        row["dls_irradiance_at_panel"] = round(at_panel, 5)
        if dls is not None:
            row["light_change"] = round(dls / at_panel, 4)
    if m.band in irradiance:
        row["irradiance"] = round(irradiance[m.band], 5)
    return row


def _panel_gap(first: BandMeta, panel: BandMeta, panel_info: dict[str, Any]) -> list[str]:
    """Record how long before the capture the panel was taken; a warning when hours apart."""
    if not first.taken_at or not panel.taken_at:
        return []
    gap = (first.taken_at - panel.taken_at).total_seconds()
    panel_info["seconds_before_capture"] = round(gap, 1)
    if abs(gap) <= 2 * 3600:
        return []
    return [
        f"The panel capture was taken {abs(gap) / 3600:.1f} h "
        f"{'before' if gap > 0 else 'after'} this capture: the light may have changed in between."
    ]


def calibrate(capture: BandFiles, panel: BandFiles | None, options: Options) -> Result:
    """Turn a capture's raw band images into reflectance (or say loudly why not).

    A panel given with `--calibration dls` or `none` is not used for reflectance, and the
    result says so; it still gives the flight's height above ground (the panel capture is taken
    on the ground), hence the ground sample distance, which it gave with the other methods."""
    metas = [
        read_band_meta(f, n, facts)
        for f, n, facts in zip(capture.files, capture.names, capture.facts, strict=True)
    ]
    result = _calibrate(capture, metas, panel, options)
    if panel is not None and options.method in ("dls", "none"):
        if result.height_above_ground_m is None:
            on_ground = {
                n: read_band_meta(f, n, facts)
                for f, n, facts in zip(panel.files, panel.names, panel.facts, strict=True)
            }
            _height_above_ground(result, metas, on_ground)
        result.warnings.append(
            f"The panel capture (--panel) is not used for reflectance with --calibration "
            f"{options.method}: only for the flight's height above ground."
        )
    return result


def _calibrate(
    capture: BandFiles, metas: list[BandMeta], panel: BandFiles | None, options: Options
) -> Result:
    if options.method == "none":
        return _raw_result(
            capture,
            metas,
            "calibration was turned off (--calibration none).",
            "Leave out --calibration none to calibrate.",
        )
    why = _why_not_calibratable(capture, metas)
    if why:
        if panel is not None or options.method != "auto":
            raise InputError(
                f"Cannot calibrate this capture: {why} Use the camera's original band files."
            )
        fix = "Analyze the camera's original band files (MicaSense) to calibrate."
        return _raw_result(capture, metas, why, fix)
    try:
        rad = [radiance(raw, m) for raw, m in zip(capture.raws, metas, strict=True)]
    except ValueError as e:
        raise InputError(f"The band files' calibration metadata is damaged ({e}).") from e

    # Irradiance per band from the panel, the light sensor, or both.
    panel_e: dict[str, float] | None = None
    panel_info: dict[str, Any] | None = None
    panel_metas: dict[str, BandMeta] = {}
    warnings: list[str] = []
    if panel is not None and options.method in ("auto", "panel", "panel+dls"):
        panel_e, panel_info, panel_metas, w = _panel_irradiance(panel, capture.names, options)
        warnings += w
    elif options.method in ("panel", "panel+dls"):
        raise InputError(
            f"--calibration {options.method} needs the band files of a reflectance panel "
            "capture: give them with --panel."
        )
    dls_e = {m.band: dls_irradiance(m) for m in metas}
    has_dls = all(v is not None for v in dls_e.values())
    dls_panel = {b: dls_irradiance(pm) for b, pm in panel_metas.items()} if panel_metas else {}
    has_dls_panel = bool(dls_panel) and all(dls_panel.get(b) for b in capture.names)

    method = _method(options.method, panel_e is not None, has_dls, has_dls_panel)
    if method == "panel+dls":
        change = [dls_e[b] / dls_panel[b] for b in capture.names]  # type: ignore[operator]
        lo, hi = min(change), max(change)
        if hi / lo > LIGHT_CHANGE_SPREAD:
            warnings.append(
                f"Between the panel capture and this one the light sensor saw the light change "
                f"by {lo:.2f}x to {hi:.2f}x depending on the band; real changes in daylight "
                "(clouds) are nearly the same in every band, so under a clear, steady sky "
                "--calibration panel may be more exact."
            )
    irradiance: dict[str, float] = {}
    for b in capture.names:
        if method == "panel+dls":
            irradiance[b] = dls_e[b] * panel_e[b] / dls_panel[b]  # type: ignore[index,operator]
        elif method == "panel":
            irradiance[b] = panel_e[b]  # type: ignore[index]
        elif method == "dls":
            irradiance[b] = dls_e[b]  # type: ignore[assignment]

    bands_info = {m.band: _band_info(m, dls_e, panel_e, dls_panel, irradiance) for m in metas}

    if method == "radiance":
        warning = UNCALIBRATED.format(
            why="there is no reflectance panel capture (--panel) and no light sensor reading "
            "with GPS position and time in the band files.",
            what="radiance (corrected for exposure, gain and lens fall-off) that still depends "
            "on the day's light",
            fix="Give the panel capture taken for this flight with --panel.",
        )
        info = {
            "calibrated": False,
            "values": "radiance",
            "method": "none",
            "note": warning,
            "bands": bands_info,
        }
        return Result(rad, info, [warning] + warnings)

    arrays = []
    for r, b in zip(rad, capture.names, strict=True):
        r *= np.float32(math.pi / irradiance[b])
        arrays.append(r)
    notes = {
        "panel+dls": "the reflectance panel capture sets the light level and the light sensor "
        "(DLS) the change in light between the panel capture and this one",
        "panel": "the reflectance panel capture (the light assumed unchanged since then)",
        "dls": "the light sensor (DLS) reading alone, corrected for its tilt to the sun; less "
        "exact than a panel (a first-generation DLS differed from the panel by up to 27% per "
        "band on the shared sample)",
    }
    info = {
        "calibrated": True,
        "values": "reflectance",
        "method": method,
        "note": "Reflectance: radiance from each band file's calibration (black level, exposure, "
        f"gain, lens fall-off, row gradient); the light falling on the field from {notes[method]}.",
        "bands": bands_info,
    }
    if panel_info is not None:
        if capture.facts and panel_metas:
            warnings += _panel_gap(metas[0], next(iter(panel_metas.values())), panel_info)
        info["panel"] = panel_info
    result = Result(arrays, info, warnings)
    _height_above_ground(result, metas, panel_metas)
    return result


def _panel_irradiance(
    panel: BandFiles, bands: Sequence[str], options: Options
) -> tuple[dict[str, float], dict[str, Any], dict[str, BandMeta], list[str]]:
    """Irradiance per band from the panel capture, and what the summary says about it."""
    names = list(panel.names)
    lacking = [b for b in bands if b not in names]
    if lacking:
        raise InputError(
            f"The panel capture has no {', '.join(lacking)} band file(s) "
            f"(it has {', '.join(names) or 'no named bands'}); give all band files of the panel "
            "capture taken with this camera."
        )
    metas = {
        n: read_band_meta(f, n, facts)
        for f, n, facts in zip(panel.files, panel.names, panel.facts, strict=True)
    }
    readings: dict[str, PanelReading] = {}
    warnings: list[str] = []
    for raw, n in zip(panel.raws, names, strict=True):
        if n not in bands:
            continue
        m = metas[n]
        miss = m.radiance_missing()
        if miss or not _vignetting_plausible(m, raw.shape):
            raise InputError(
                f"The panel file {m.path.name} cannot be calibrated: "
                + (f"it lacks {', '.join(miss)}." if miss else "it looks cropped or resized.")
            )
        reading = find_panel(raw, radiance(raw, m), m)
        if reading is None:
            raise InputError(
                f"No reflectance panel found in {m.path.name}: Khet finds a MicaSense panel by "
                "its QR code, which must be whole and sharp in every band file of the panel "
                "capture."
            )
        if reading.saturated > PANEL_MAX_SATURATED:
            raise InputError(
                f"The panel is overexposed in {m.path.name} ({reading.saturated:.0%} of its pixels "
                "saturated): take the panel capture again, in the open, not into the sun."
            )
        if reading.cv > PANEL_MAX_CV:
            warnings.append(
                f"The panel in {m.path.name} is not evenly lit (pixels vary by {reading.cv:.0%}): "
                "a shadow or a reflection on it makes the calibration less exact."
            )
        readings[n] = reading
    serial = next((r.serial for r in readings.values() if r.serial), None)
    rho, source = _panel_reflectance(serial, metas, bands, options)
    irradiance = {b: math.pi * readings[b].radiance / rho[b] for b in bands}
    info = {
        "files": [str(f) for f in panel.files],
        "serial": serial,
        "reflectance": {b: rho[b] for b in bands},
        "reflectance_source": source,
        "uniformity_cv": {b: round(readings[b].cv, 4) for b in bands},
        "pixels": {b: readings[b].pixels for b in bands},
    }
    return irradiance, info, metas, warnings


def _panel_reflectance(
    serial: str | None, metas: Mapping[str, BandMeta], bands: Sequence[str], options: Options
) -> tuple[dict[str, float], str]:
    given = options.panel_reflectance
    if isinstance(given, int | float):
        return {b: float(given) for b in bands}, "given by the user (--panel-reflectance)"
    if isinstance(given, Mapping):
        unknown = [b for b in given if b not in bands]
        if unknown:
            raise InputError(
                f"--panel-reflectance names {', '.join(unknown)}, which the capture does not "
                f"have: its bands are {', '.join(bands)}."
            )
        lacking = [b for b in bands if b not in given]
        if lacking:
            raise InputError(
                f"--panel-reflectance gives no value for {', '.join(lacking)}: give one per band "
                "(e.g. blue=0.67,green=0.69,red=0.68,nir=0.61,rededge=0.67) or one for all."
            )
        return {b: float(given[b]) for b in bands}, "given by the user (--panel-reflectance)"
    albedo = {b: metas[b].panel_albedo if b in metas else None for b in bands}
    if all(v and 0 < v <= 1 for v in albedo.values()):
        return {b: float(v) for b, v in albedo.items()}, "the camera's reading of the panel"  # type: ignore[arg-type]
    if serial in KNOWN_PANELS:
        known = KNOWN_PANELS[serial]
        return {b: known[b] for b in bands}, KNOWN_PANEL_SOURCE.format(serial=serial)
    raise KhetError(
        f"Khet does not know the reflectance of panel {serial or '(serial not readable)'}: give "
        "the values from its calibration sheet with --panel-reflectance, e.g. "
        "blue=0.67,green=0.69,red=0.68,nir=0.61,rededge=0.67."
    )


def _height_above_ground(result: Result, metas: list[BandMeta], panel: dict[str, BandMeta]) -> None:
    """The capture's height above ground from the camera's barometer (PressureAlt): the panel
    capture is taken on the ground, so the difference is the flight's height above it."""
    if not panel:
        return
    flight = next((m.pressure_alt_m for m in metas if m.pressure_alt_m is not None), None)
    ground = next((m.pressure_alt_m for m in panel.values() if m.pressure_alt_m is not None), None)
    if flight is None or ground is None:
        return
    h = flight - ground
    if not (1.0 < h < 1500.0):
        return
    result.height_above_ground_m = round(h, 2)
    result.height_source = (
        f"MicaSense barometer (PressureAlt): {flight:.1f} m for this capture minus {ground:.1f} m "
        "for the panel capture on the ground"
    )
