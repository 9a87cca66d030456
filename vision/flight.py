"""A flight: the frames of one survey, found in what the user named, checked before any heavy work.

A folder (or a list of files) holding two or more captures is a flight; one frame, or the band
files of one multispectral capture, is not (it is analysed as it always was). Each capture is one
frame of the flight: a drone JPEG, or a MicaSense-style set of band files, which `open_scene`
co-registers so every band shares the frame's geometry.

The checks here read only EXIF/XMP, so a bad flight is refused in a second, not after minutes of
feature matching: frames without GPS are left out (and said), fewer than two frames with GPS,
frames from different cameras, differing bands, or frames too far apart to overlap are refused
with a message saying what to do.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from khet.vision.exif import CameraFacts, read_camera_facts
from khet.vision.scene import IMAGE_SUFFIXES, group_captures

from khet.errors import InputError

# Frames whose centres are further apart than this many footprints share no ground.
OVERLAP_FOOTPRINTS = 1.0
UNKNOWN_FOOTPRINT_M = 300.0


@dataclass
class FlightFrame:
    """One frame of a flight: its files (one, or one per band) and what its metadata says."""

    name: str
    files: list[Path]
    facts: CameraFacts

    @property
    def camera_key(self) -> str:
        return " ".join(x for x in (self.facts.make, self.facts.model) if x) or UNKNOWN_CAMERA

    @property
    def height_m(self) -> float | None:
        """Height above the take-off point or ground, from the drone's XMP, when recorded."""
        return self.facts.relative_altitude_m

    @property
    def attitude(self) -> tuple[float, float, float] | None:
        """Yaw, pitch and roll from the autopilot, in degrees, when all three are recorded."""
        f = self.facts
        if f.yaw_deg is None or f.pitch_deg is None or f.roll_deg is None:
            return None
        return f.yaw_deg, f.pitch_deg, f.roll_deg

    @property
    def lat(self) -> float:
        """Latitude (a flight's frames all have GPS: frames without it are left out first)."""
        assert self.facts.latitude is not None
        return self.facts.latitude

    @property
    def lon(self) -> float:
        """Longitude (see `lat`)."""
        assert self.facts.longitude is not None
        return self.facts.longitude


UNKNOWN_CAMERA = "unknown camera"


@dataclass
class Flight:
    frames: list[FlightFrame]
    left_out: dict[str, str]  # frame name -> why it is not in the mosaic


def list_captures(inputs: str | Path | Sequence[str | Path]) -> list[list[Path]]:
    """The captures (each a list of files) in what the user named: files, folders, or both."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(
                sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p} does not exist.")
    return list(group_captures(files).values())


FRAME_SUFFIXES = {".jpg", ".jpeg", ".png"}


def is_frame_capture(files: Sequence[Path]) -> bool:
    """A camera frame (a drone JPEG/PNG) or a multi-file capture, as opposed to a GeoTIFF
    orthomosaic: only frames make a flight (a folder of orthomosaic tiles is not one)."""
    return len(files) > 1 or Path(files[0]).suffix.lower() in FRAME_SUFFIXES


def is_flight_captures(captures: Sequence[Sequence[Path]]) -> bool:
    """Whether the captures are two or more camera frames: a flight to mosaic."""
    return len(captures) > 1 and all(is_frame_capture(c) for c in captures)


def is_flight(inputs: str | Path | Sequence[str | Path]) -> bool:
    """True when the inputs are two or more frames or captures: to mosaic before analysis."""
    try:
        return is_flight_captures(list_captures(inputs))
    except InputError:
        return False  # let the usual opening say what is wrong


def read_flight(inputs: str | Path | Sequence[str | Path]) -> Flight:
    """The frames of a flight, checked; raises InputError with what to do when it cannot work."""
    captures = list_captures(inputs)
    if not captures:
        raise InputError("No images found: name a folder of drone frames, or the frames.")
    if len(captures) < 2:
        raise InputError(
            "A mosaic needs at least two overlapping frames, and only one was given. Analyze a "
            "single frame with `khet analyze` instead."
        )
    frames = []
    left_out: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for files in captures:
        name = files[0].name if len(files) == 1 else _capture_name(files[0])
        size = _pixel_size(files[0])
        if size is None:  # a damaged file or one that is not an image: not a frame
            left_out[name] = "not readable as an image"
            continue
        sizes[name] = size
        frames.append(FlightFrame(name, files, read_camera_facts(files[0])))
    if sizes:
        # A frame of another size than the flight's (a resized or cropped copy) would need its
        # own camera model and unsettles the others' placement: left out, and said. The
        # flight's size is the one most frames have; with no such size, nothing is left out
        # on a guess.
        counts = Counter(sizes.values()).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            listed = ", ".join(f"{n} at {w} x {h}" for (w, h), n in counts)
            raise InputError(
                f"The frames have different pixel sizes ({listed} pixels): give the frames of "
                "one camera at one setting, as the drone recorded them."
            )
        (w, h), _ = counts[0]
        for f in frames:
            fw, fh = sizes[f.name]
            if (fw, fh) != (w, h):
                left_out[f.name] = f"{fw} x {fh} pixels, unlike the flight's {w} x {h}"
        frames = [f for f in frames if f.name not in left_out]
    if len(frames) < 2:
        raise InputError(
            f"A mosaic needs at least two overlapping frames, and {len(frames)} of the "
            f"{len(captures)} given can be used ({_listed(left_out)})."
        )
    if any(f.camera_key != UNKNOWN_CAMERA for f in frames):
        # A frame whose file names no camera (its EXIF stripped by an editor) is left out, not
        # taken for a second camera that refuses the whole flight.
        left_out |= {
            f.name: "no camera information in the file (EXIF)"
            for f in frames
            if f.camera_key == UNKNOWN_CAMERA
        }
        frames = [f for f in frames if f.camera_key != UNKNOWN_CAMERA]
    cameras = Counter(f.camera_key for f in frames)
    if len(cameras) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in cameras.most_common())
        raise InputError(
            f"The frames come from {len(cameras)} different cameras ({listed}). Mosaic one "
            "camera's flight at a time: put each camera's frames in their own folder."
        )
    bands = Counter(len(f.files) for f in frames)
    if len(bands) > 1:
        raise InputError(
            "Some captures have a different number of band files than others "
            f"({', '.join(f'{n} with {k}' for k, n in sorted(bands.items()))}); give complete "
            "captures only."
        )
    left_out |= {f.name: "no GPS position in the file" for f in frames if not f.facts.has_gps}
    located = [f for f in frames if f.facts.has_gps]
    if len(located) < 2:
        raise InputError(
            f"{len(frames) - len(located)} of the {len(frames)} frames have no GPS position "
            "(EXIF): Khet places a flight's frames by their GPS. Use the drone's original files, "
            "or analyze frames one by one with `khet edge run`."
        )
    _check_overlap(located)
    return Flight(located, left_out)


def _pixel_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (nothing decoded); None when it is no image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # Pillow raises several types for a file that is not a readable image
        return None


def _listed(left_out: dict[str, str]) -> str:
    shown = [f"{k}: {v}" for k, v in list(left_out.items())[:3]]
    more = len(left_out) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _capture_name(first: Path) -> str:
    stem = first.stem.rsplit("_", 1)[0]
    return stem


def _check_overlap(frames: list[FlightFrame]) -> None:
    """Refuse frames so far apart that no two can share ground (a folder of unrelated photos)."""
    nearest = nearest_distances(frames)
    footprint = footprint_m(frames)
    # Without a recorded height the footprint is unknown: only frames further apart than any
    # survey drone sees (300 m) are refused here; structure from motion tells the rest.
    limit = OVERLAP_FOOTPRINTS * footprint if footprint else UNKNOWN_FOOTPRINT_M
    if np.all(nearest > limit):
        covers = (
            f"each frame covers about {footprint:.0f} m of ground"
            if footprint
            else ("a survey frame covers a few hundred metres at most")
        )
        raise InputError(
            f"No two frames overlap: {covers}, but the nearest frames are "
            f"{np.median(nearest):.0f} m apart. A mosaic needs a survey flown with overlap "
            "(typically 60-80%)."
        )


def nearest_distances(frames: Sequence[FlightFrame]) -> np.ndarray:
    """Each frame's distance (m) to its nearest neighbour, by GPS."""
    xy = local_xy(frames)
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def utm_crs(frames: Sequence[FlightFrame]) -> str:
    """The UTM zone of the flight's centre, as an EPSG code."""
    lat = float(np.mean([f.lat for f in frames]))
    lon = float(np.mean([f.lon for f in frames]))
    zone = int((lon + 180) // 6) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def utm_positions(frames: Sequence[FlightFrame], crs: str) -> np.ndarray:
    """Easting, northing (metres, in `crs`) and height of each frame's camera.

    The height is the XMP height above the take-off point where every frame records it (a
    barometric height, steadier than GPS altitude), else the GPS altitude.
    """
    from rasterio.warp import transform

    lon = [f.lon for f in frames]
    lat = [f.lat for f in frames]
    e, n = transform("EPSG:4326", crs, lon, lat)
    heights = [f.height_m for f in frames]
    z = [h for h in heights if h is not None]
    if len(z) < len(heights):
        z = [f.facts.altitude_m or 0.0 for f in frames]
    return np.column_stack([e, n, z]).astype(np.float64)


def local_xy(frames: Sequence[FlightFrame]) -> np.ndarray:
    """Camera positions in metres on a local flat grid (for overlap checks only)."""
    lat = np.radians([f.lat for f in frames])
    lon = np.radians([f.lon for f in frames])
    r = 6_371_000.0
    x = (lon - lon.mean()) * r * math.cos(float(lat.mean()))
    y = (lat - lat.mean()) * r
    return np.column_stack([x, y])


def footprint_m(frames: Sequence[FlightFrame]) -> float | None:
    """The long side of a nadir frame's ground footprint, from height and field of view."""
    f0 = frames[0].facts
    heights = [f.height_m for f in frames if f.height_m]
    if not heights or not f0.focal_length_mm or not f0.pixel_pitch_mm:
        return None
    from PIL import Image

    with Image.open(frames[0].files[0]) as im:
        long_px = max(im.size)
    return float(np.median(heights)) * long_px * f0.pixel_pitch_mm / f0.focal_length_mm
