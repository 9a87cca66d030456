"""Camera facts from EXIF and XMP: GPS position, altitude, focal length, band name.

Read with Pillow (rasterio does not expose the GPS IFD of TIFFs) and a plain scan of the XMP
packet, which is small text inside the file's first megabytes.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

log = logging.getLogger("khet.vision.exif")
# Pillow logs what it cannot read in a file ("More samples per pixel than can be decoded: 9")
# at error level; with no handler anywhere Python prints it on stderr beside Khet's own message.
# Metadata is optional here: a handler on Pillow's logger keeps it off the console, and an
# application that configures logging (the service) still receives it.
logging.getLogger("PIL").addHandler(logging.NullHandler())
_XMP_TAGS = (b"<x:xmpmeta", b"</x:xmpmeta>")


@dataclass
class CameraFacts:
    latitude: float | None = None
    longitude: float | None = None
    altitude_m: float | None = None  # GPS altitude above sea level
    relative_altitude_m: float | None = None  # height above ground (or take-off point), when known
    height_source: str | None = None  # where relative_altitude_m came from, e.g. "DJI XMP ..."
    focal_length_35mm: float | None = None  # EXIF FocalLengthIn35mmFilm
    focal_length_mm: float | None = None
    pixel_pitch_mm: float | None = None  # from FocalPlaneXResolution
    make: str | None = None
    model: str | None = None
    taken_at: str | None = None
    band_name: str | None = None  # MicaSense/Pix4D XMP Camera:BandName
    capture_id: str | None = None  # MicaSense XMP CaptureId: one per capture, shared by its bands
    wavelength_nm: float | None = None
    orientation: int | None = None
    # Camera attitude from the drone's XMP (senseFly, DJI): places a frame of a flight that
    # structure from motion could not. Degrees, as the autopilot records them.
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    roll_deg: float | None = None

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _dms(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError):
        return None
    v = d + m / 60 + s / 3600
    if not math.isfinite(v):
        return None
    if isinstance(ref, bytes):
        ref = ref.decode(errors="ignore")
    return -v if str(ref).strip().upper() in {"S", "W"} else v


def _text(value: Any) -> str | None:
    """An EXIF text tag without its padding; None when empty."""
    return (str(value).strip("\x00 ") or None) if value else None


def exif_datetime(value: Any) -> datetime | None:
    """An EXIF date and time ("YYYY:MM:DD HH:MM:SS", no time zone) as a naive datetime; None
    when absent or not in that form."""
    try:
        return datetime.strptime(str(value).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except (TypeError, ValueError):
        return None


def _xmp(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4 << 20)
    i = head.find(_XMP_TAGS[0])
    if i < 0:
        return ""
    j = head.find(_XMP_TAGS[1], i)
    return head[i : j if j > 0 else i + 65536].decode("utf-8", errors="replace")


def _xmp_value(xmp: str, key: str) -> str | None:
    m = re.search(rf"{key}\s*=\s*\"([^\"]*)\"", xmp) or re.search(rf"<{key}>([^<]*)</{key}>", xmp)
    return m.group(1).strip() if m else None


def read_camera_facts(path: Path) -> CameraFacts:
    """Whatever the file says about where and how it was taken; empty when it says nothing."""
    facts = CameraFacts()
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk
                # after the pixels (a 12000 x 12000 PNG: 430 MB to read its metadata). Only
                # what precedes the pixels is read here.
                exif = Image.Exif()
                if im.info.get("exif"):
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            gps = exif.get_ifd(IFD.GPSInfo)
            sub = exif.get_ifd(IFD.Exif)
    except Exception:  # Pillow cannot read every TIFF variant; EXIF is optional
        return facts
    if gps:
        lat = _dms(gps.get(GPS.GPSLatitude), gps.get(GPS.GPSLatitudeRef, "N"))
        lon = _dms(gps.get(GPS.GPSLongitude), gps.get(GPS.GPSLongitudeRef, "E"))
        # A position off the globe (a latitude of 95 degrees) is a broken receiver or tag: no
        # position, as for a frame without GPS, rather than one that places the map nowhere.
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            facts.latitude, facts.longitude = lat, lon
        alt = gps.get(GPS.GPSAltitude)
        if alt is not None:
            below = gps.get(GPS.GPSAltitudeRef) in (1, b"\x01")  # below sea level
            try:
                facts.altitude_m = float(alt) * (-1 if below else 1)
            except (TypeError, ValueError):
                pass
    facts.make = _text(exif.get(Base.Make))
    facts.model = _text(exif.get(Base.Model))
    facts.orientation = int(exif[Base.Orientation]) if Base.Orientation in exif else None
    taken = sub.get(Base.DateTimeOriginal) or exif.get(Base.DateTime)
    facts.taken_at = str(taken) if taken else None
    fl = sub.get(Base.FocalLength)
    if fl is not None:
        try:
            facts.focal_length_mm = float(fl)
        except (TypeError, ValueError):
            pass
    f35 = sub.get(Base.FocalLengthIn35mmFilm)
    try:
        facts.focal_length_35mm = float(f35) if f35 and float(f35) > 0 else None
    except (TypeError, ValueError):
        pass
    fpx, unit = sub.get(Base.FocalPlaneXResolution), sub.get(Base.FocalPlaneResolutionUnit)
    mm_per_unit = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(int(unit) if unit else 2)
    try:
        if fpx and float(fpx) > 0 and mm_per_unit:
            facts.pixel_pitch_mm = mm_per_unit / float(fpx)
    except (TypeError, ValueError):
        pass
    xmp = _xmp(path)
    if xmp:
        facts.band_name = _xmp_value(xmp, "Camera:BandName")
        facts.capture_id = _xmp_value(xmp, "MicaSense:CaptureId")
        facts.wavelength_nm = _xmp_float(xmp, "Camera:CentralWavelength")
        for key, source in _HEIGHT_KEYS:
            h = _xmp_float(xmp, key)
            if h is not None and 0 < h < 10000:
                facts.relative_altitude_m, facts.height_source = h, f"{source} ({key})"
                break
        for attr, keys in _XMP_ANGLES.items():
            values = (_xmp_float(xmp, k) for k in keys)
            setattr(facts, attr, next((v for v in values if v is not None), None))
    return facts


# The drone's attitude (senseFly body angles) or, where a gimbal holds the camera, the gimbal's.
_XMP_ANGLES = {
    "yaw_deg": ("sensefly:Heading", "drone-dji:GimbalYawDegree"),
    "pitch_deg": ("sensefly:PitchAngle", "drone-dji:GimbalPitchDegree"),
    "roll_deg": ("sensefly:RollAngle", "drone-dji:GimbalRollDegree"),
}


#: XMP keys that give the camera's height above the ground (or above the take-off point, which
#: is the ground for a field flown from its edge), by maker.
_HEIGHT_KEYS = (
    ("drone-dji:RelativeAltitude", "DJI XMP, height above take-off"),
    ("sensefly:Height", "senseFly XMP, height above ground"),
    ("Camera:AboveGroundAltitude", "Parrot XMP, height above ground"),
)


def _xmp_float(xmp: str, key: str) -> float | None:
    v = _xmp_value(xmp, key)
    if v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        f = math.nan
    if not math.isfinite(f):
        _not_a_number(key, v)
        return None
    return f


def _not_a_number(key: str, value: str) -> None:
    """A damaged or odd XMP number is left out, with a warning: it must not stop the analysis."""
    log.warning("The XMP value %s=%r is not a number; it is ignored.", key, value[:40])


# -- XMP helpers for other modules (radiometry reads MicaSense calibration from the XMP) --------


def read_xmp(path: Path) -> str:
    """The file's XMP packet as text ("" when it has none or cannot be read)."""
    try:
        return _xmp(path)
    except OSError:
        return ""


def xmp_value(xmp: str, key: str) -> str | None:
    """A simple XMP property (`<ns:Key>v</ns:Key>` or `ns:Key="v"`) as text."""
    return _xmp_value(xmp, key)


def xmp_float(xmp: str, key: str) -> float | None:
    """A numeric XMP property; None when absent or not a finite number (a damaged or odd packet
    must not stop the analysis)."""
    return _xmp_float(xmp, key)


def xmp_floats(xmp: str, key: str) -> list[float] | None:
    """A list property (`<ns:Key><rdf:Seq><rdf:li>1</rdf:li>...`, or comma-separated text) as
    numbers; None when absent or when any item is not a finite number."""
    m = re.search(rf"<{key}>(.*?)</{key}>", xmp, re.S)
    if m:
        items = re.findall(r"<rdf:li>([^<]*)</rdf:li>", m.group(1)) or m.group(1).split(",")
    else:
        v = _xmp_value(xmp, key)
        if v is None:
            return None
        items = v.split(",")
    try:
        out = [float(i) for i in items if i.strip()]
    except ValueError:
        out = [math.nan]
    if not all(math.isfinite(f) for f in out):
        _not_a_number(key, ",".join(i.strip() for i in items))
        return None
    return out or None
