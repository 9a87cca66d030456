"""Open any drone imagery as a `Scene`: bands named, georeferenced where possible, read by window.

This is the one way Khet opens a raster. Whatever came in (a GeoTIFF/COG orthomosaic, a drone
JPEG/PNG, or one file per band of a multispectral capture) ends up as a rasterio dataset with
named bands, a validity mask, and facts about where it is on Earth:

- GeoTIFF/COG (and any GDAL raster with a CRS) is read in windows, straight from disk, so memory
  does not grow with the raster.
- JPEG/PNG frames have no internal tiling, so windowed reads would decode them again and again;
  they are decoded once into memory (bounded by `max_decoded_mb`).
- Multi-file captures (MicaSense RedEdge: IMG_0001_1.tif ... _5.tif) are calibrated to
  reflectance (radiometry.py), co-registered onto one band's grid and stacked in memory; camera
  frames are small.

What this module will not do: orthorectify frames, mosaic several captures, or guess band names
that neither the file nor the user gives.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from khet.vision import align, radiometry
from khet.vision import gsd as gsd_
from khet.vision.exif import CameraFacts, read_camera_facts
from khet.vision.summary import Gsd
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Compression, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import MemoryFile
from rasterio.windows import Window

from khet.errors import BandError, DamagedError, InputError, short_reason
from khet.settings import Settings, apply_gdal_env, get_settings

NO_GEOREF_PIXELS = (
    "No georeference and no ground sample distance: areas are in pixels, not hectares. Give the "
    "ground sample distance with --gsd for areas in square metres."
)
NO_GEOREF_GPS = (
    "No georeference: the location is the camera's GPS position (EXIF) at the image centre, "
    "approximate; zones are in image pixels."
)
IMAGE_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt"}
SUPPORTED_DTYPES = {"uint8", "uint16", "float32"}
# Scene.sample: a big raster without overviews is sampled in SAMPLE_PATCHES^2 patches of at most
# SAMPLE_PATCH px (about 1.3 megapixels, from 36 blocks: 3.5% of a 16384 px orthomosaic).
SAMPLE_ALL_PX = 16_000_000
SAMPLE_PATCHES = 6
SAMPLE_PATCH = 192
KNOWN_BANDS = ("blue", "green", "red", "rededge", "nir")
_ALIASES = {
    "r": "red",
    "g": "green",
    "b": "blue",
    "n": "nir",
    "nearinfrared": "nir",
    "nearir": "nir",
    "infrared": "nir",
    "ir": "nir",
    "re": "rededge",
    "rededge": "rededge",
    "redEdge": "rededge",
    "gray": "gray",
    "grey": "gray",
    "panchromatic": "gray",
}
SKIP = "-"  # a band name the user gives to a band Khet should ignore
_CAPTURE_RE = re.compile(r"^(?P<prefix>.+)_(?P<band>\d{1,2})$")
AS_STORED = {
    "calibrated": None,
    "values": "as stored",
    "method": "none",
    "note": "Values as stored in the file: Khet calibrates MicaSense band files to reflectance; "
    "other imagery (a reflectance orthomosaic, a photo) is used as it is.",
}


def _all_true(shape: tuple[int, int]) -> np.ndarray:
    """A read-only all-valid mask, shared by every read of that shape."""
    m = _ALL_TRUE.get(shape)
    if m is None:
        m = np.ones(shape, bool)
        m.flags.writeable = False
        if len(_ALL_TRUE) > 16:
            _ALL_TRUE.clear()
        _ALL_TRUE[shape] = m
    return m


_ALL_TRUE: dict[tuple[int, int], np.ndarray] = {}


def _finite(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`valid` less the pixels with a NaN or infinite band, which are set to 0 in `data` (in
    place): NaN is how float rasters (reflectance, an index) mark no data when they declare no
    nodata value, and the map must not read it as soil."""
    if data.dtype.kind != "f":
        return valid
    bad = ~np.isfinite(data)
    if not bad.any():
        return valid
    data[bad] = 0
    return valid & ~bad.any(axis=0)


def is_all_valid(valid: np.ndarray) -> bool:
    """Whether `Scene.read` said "every pixel valid" (its shared mask) rather than a real mask."""
    return valid is _ALL_TRUE.get(valid.shape)


def normalise_band_name(name: str) -> str:
    """A band name in Khet's spelling (`Red Edge`, `RE` -> `rededge`)."""
    key = re.sub(r"[\s_\-]", "", name.strip().lower())
    if key in KNOWN_BANDS:
        return key
    return _ALIASES.get(key, key)


@dataclass
class Scene:
    """An opened capture. Close it (or use `with`) to release the file."""

    dataset: rasterio.io.DatasetReader
    band_names: tuple[str, ...]  # one per band used (alpha excluded); SKIP for ignored bands
    band_indexes: tuple[int, ...]  # 1-based dataset band index of each name
    sources: list[Path]
    georef: str  # "crs" (georeferenced), "exif-gps" (a GPS point only), "none"
    camera: CameraFacts = field(default_factory=CameraFacts)
    warnings: list[str] = field(default_factory=list)
    kind: str = "raster"  # "raster", "frame", "capture"
    alignment: list[dict] = field(default_factory=list)
    gsd: Gsd = field(default_factory=Gsd)  # metres per pixel and how it was found ("unknown")
    radiometry: dict = field(default_factory=lambda: dict(AS_STORED))
    _memfile: MemoryFile | None = None
    _stretch: dict[str, tuple[float, float]] | None = None
    _common: dict[tuple[str, ...], float] = field(default_factory=dict)

    # -- facts -------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def dtype(self) -> str:
        return self.dataset.dtypes[self.band_indexes[0] - 1]

    @property
    def crs(self) -> CRS | None:
        return self.dataset.crs if self.georef == "crs" else None

    @property
    def transform(self) -> Affine:
        """Pixel to map coordinates; image pixels (the identity) without a georeference, even
        where the file has a geotransform but no CRS: its units are then unknown."""
        return self.dataset.transform if self.georef == "crs" else Affine.identity()

    @property
    def bands(self) -> tuple[str, ...]:
        """The named bands (skipped ones left out)."""
        return tuple(b for b in self.band_names if b != SKIP)

    @cached_property
    def alpha_is_band(self) -> bool:
        """GDAL flags a band as alpha that Khet reads as a spectral band (see _band_layout)."""
        return any(self.dataset.colorinterp[i - 1] == ColorInterp.alpha for i in self.band_indexes)

    @cached_property
    def has_mask(self) -> bool:
        if self._memfile is not None and self.kind == "capture":
            return True
        flags = self.dataset.mask_flag_enums
        return any(MaskFlags.all_valid not in f for f in flags)

    def working_size(self, zoom: float = 1.0) -> tuple[int, int]:
        """(width, height) of the scene resampled by `zoom` (working pixels per scene pixel)."""
        if zoom == 1.0:
            return self.width, self.height
        return max(1, round(self.width * zoom)), max(1, round(self.height * zoom))

    def _resampling(self, zoom: float) -> Resampling:
        """Averaging when shrinking, bilinear when enlarging; but a JPEG-compressed GeoTIFF
        without overviews shrunk by 2, 4 or 8 is read by libjpeg's scaled decoding (GDAL's
        implicit JPEG overviews, which a nearest-neighbour read uses), a low-pass reduction in
        the DCT itself: twice as fast as decoding every pixel and averaging, measured on a
        16384 px orthomosaic."""
        if zoom >= 1:
            return Resampling.bilinear
        factor = 1 / zoom
        exact = abs(factor - round(factor)) < 1e-6 and round(factor) in (2, 4, 8)
        return Resampling.nearest if exact and self._jpeg_without_overviews else Resampling.average

    @cached_property
    def _jpeg_without_overviews(self) -> bool:
        ds = self.dataset
        return (
            ds.driver == "GTiff"
            and ds.compression == Compression.jpeg
            and not ds.overviews(self.band_indexes[0])
        )

    def _valid(self, window: Window | None = None, out_shape=None) -> np.ndarray:
        """Validity from GDAL's mask (nodata, alpha, internal mask), or from nodata alone when
        GDAL's alpha band is really a spectral band. `window` None: the whole scene."""
        window = window or Window(0, 0, self.width, self.height)
        if self.alpha_is_band:
            nd = self.dataset.nodata
            shape = out_shape or (int(window.height), int(window.width))
            if nd is None:
                return np.ones(shape, bool)
            data = self.dataset.read(
                list(self.band_indexes), window=window, out_shape=(len(self.band_indexes), *shape)
            )
            return ~(data == nd).all(axis=0)
        if not self.has_mask:
            return _all_true(out_shape or (int(window.height), int(window.width)))
        return self.dataset.dataset_mask(window=window, out_shape=out_shape) > 0

    def describe(self) -> dict:
        t = self.transform
        d = {
            "sources": [str(p) for p in self.sources],
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "bands": list(self.bands),
            "dtype": self.dtype,
            "georeference": self.georef,
            "crs": self.crs.to_string() if self.crs else None,
            # The length of each pixel side in map units (a rotated grid's too).
            "pixel_size": [math.hypot(t.a, t.d), math.hypot(t.b, t.e)] if self.crs else None,
        }
        if self.camera.as_dict():
            d["camera"] = self.camera.as_dict()
        if self.alignment:
            d["alignment"] = self.alignment
        return d

    # -- reading -----------------------------------------------------------------------------
    def require(self, names: Sequence[str], why: str) -> list[int]:
        """Dataset band indexes of `names`, or a BandError saying what is missing for `why`."""
        missing = [n for n in names if n not in self.band_names or n == SKIP]
        if missing:
            raise BandError(
                f"{why} needs band(s) {', '.join(missing)}, but the image has "
                f"{', '.join(self.bands) or 'no named bands'}. Name the bands with --bands."
            )
        return [self.band_indexes[self.band_names.index(n)] for n in names]

    def read(
        self,
        window: Window,
        names: Sequence[str],
        out: np.ndarray | None = None,
        zoom: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands `names` in `window` (which may reach past the edges: padded with 0) and validity.

        Returns (data C x h x w in the scene dtype, valid h x w bool). `out`, an array of that
        shape and dtype, is filled and returned instead of a new one: the pipeline reuses its
        strip buffers, since a fresh multi-MB array per strip costs page faults and, freed from
        a thread, interrupts the other cores. The validity may be a shared read-only array.

        `zoom` reads the scene resampled to `zoom` working pixels per scene pixel (a model's
        ground sample distance): `window` is then in working pixels. GDAL resamples while
        reading (averaging when shrinking, using overviews where the file has them; bilinear
        when enlarging), so no full-size copy is ever made.
        """
        idx = self.require(names, "This step")
        wz, hz = self.working_size(zoom)
        full = Window(0, 0, wz, hz)
        try:
            inner = window.intersection(full)
        except Exception:  # rasterio raises WindowError when they do not meet
            inner = None
        h, w = int(window.height), int(window.width)
        if out is None:
            data = np.zeros((len(idx), h, w), dtype=self.dtype)
        elif out.shape != (len(idx), h, w) or out.dtype != np.dtype(self.dtype):
            raise ValueError(f"out is {out.shape} {out.dtype}, not {(len(idx), h, w)} {self.dtype}")
        else:
            data = out
        if inner is None or inner.width <= 0 or inner.height <= 0:
            data[...] = 0
            return data, np.zeros((h, w), dtype=bool)
        r0 = int(inner.row_off - window.row_off)
        c0 = int(inner.col_off - window.col_off)
        ih, iw = int(inner.height), int(inner.width)
        inside = (r0, c0, ih, iw) == (0, 0, h, w)
        if out is not None and not inside:
            data[...] = 0  # the padding past the image's edge
        try:
            if zoom == 1.0:
                self.dataset.read(idx, window=inner, out=data[:, r0 : r0 + ih, c0 : c0 + iw])
                v = self._valid(inner)
            else:
                # A fractional window: GDAL resamples exactly this footprint of the scene.
                src = Window(inner.col_off / zoom, inner.row_off / zoom, iw / zoom, ih / zoom)
                how = self._resampling(zoom)
                part = data[:, r0 : r0 + ih, c0 : c0 + iw]
                if part.flags.c_contiguous:  # the whole window is inside: read in place
                    self.dataset.read(idx, window=src, out=part, resampling=how)
                else:
                    part[...] = self.dataset.read(
                        idx, window=src, out_shape=(len(idx), ih, iw), resampling=how
                    )
                v = self._valid(src, out_shape=(ih, iw))
        except RasterioError as e:
            raise DamagedError(
                f"{self.sources[0].name} is damaged: pixels near row {int(inner.row_off)} "
                f"cannot be read ({short_reason(e)})."
            ) from e
        v = _finite(data[:, r0 : r0 + ih, c0 : c0 + iw], v)
        if inside:
            return data, v
        valid = np.zeros((h, w), dtype=bool)
        valid[r0 : r0 + ih, c0 : c0 + iw] = v
        return data, valid

    def sample(self, names: Sequence[str], max_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Pixels to fit a whole-scene rule on (the vegetation threshold, the display stretch).

        The decimated whole scene (`overview`) when that is cheap: a file with overviews, or a
        scene of at most `SAMPLE_ALL_PX` pixels, or a file in strips of a few rows. A big tiled
        raster without overviews would have every block decoded for it (measured: 1.2 s for an
        8192 px DEFLATE orthomosaic, as much as a fifth of the model's time), so it gives
        instead a lattice of `SAMPLE_PATCHES` squared full-resolution patches, one in each of as
        many blocks spread evenly over the scene, side by side in one array (C x h x w, and
        validity h x w) like an overview's."""
        ds = self.dataset
        bh, bw = ds.block_shapes[0]
        small = self.width * self.height <= SAMPLE_ALL_PX
        striped = min(bh, bw) < 16  # strips of a few rows: patches would be slivers
        if small or striped or ds.overviews(self.band_indexes[0]) or ds.driver != "GTiff":
            return self.overview(names, max_size)
        idx = self.require(names, "The preview")
        k = SAMPLE_PATCHES
        ph, pw = min(SAMPLE_PATCH, bh, self.height // k), min(SAMPLE_PATCH, bw, self.width // k)
        data = np.zeros((len(idx), k * ph, k * pw), self.dtype)
        valid = np.zeros((k * ph, k * pw), bool)
        try:
            for i in range(k):
                # The block holding the lattice point, and a patch at its start (one block read).
                y = min(int((i + 0.5) * self.height / k) // bh * bh, self.height - ph)
                for j in range(k):
                    x = min(int((j + 0.5) * self.width / k) // bw * bw, self.width - pw)
                    win = Window(x, y, pw, ph)
                    out = data[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw]
                    out[...] = ds.read(idx, window=win)
                    valid[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = self._valid(win)
        except RasterioError as e:
            raise DamagedError(f"{self.sources[0].name} is damaged ({short_reason(e)}).") from e
        return data, _finite(data, valid)

    def overview(self, names: Sequence[str], max_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of the whole scene (uses overviews when the file has them)."""
        scale = max(self.width, self.height) / max_size
        scale = max(scale, 1.0)
        oh, ow = max(1, round(self.height / scale)), max(1, round(self.width / scale))
        idx = self.require(names, "The preview")
        try:
            data = self.dataset.read(idx, out_shape=(len(idx), oh, ow))
            valid = self._valid(None, out_shape=(oh, ow))
        except RasterioError as e:
            raise DamagedError(f"{self.sources[0].name} is damaged ({short_reason(e)}).") from e
        return data, _finite(data, valid)

    def stretch(self) -> dict[str, tuple[float, float]]:
        """Per band 2nd and 98th percentile of valid pixels, to map uint16/float to uint8."""
        if self._stretch is None:
            names = list(self.bands)
            data, valid = self.sample(names, 1024)
            out: dict[str, tuple[float, float]] = {}
            for i, n in enumerate(names):
                v = data[i][valid]
                if v.size == 0:
                    out[n] = (0.0, 1.0)
                    continue
                lo, hi = np.percentile(v, (2, 98))
                out[n] = (float(lo), float(max(hi, lo + 1e-6)))
            self._stretch = out
        return self._stretch

    def common_scale(self, names: Sequence[str]) -> float:
        """One top value for all of `names` together: the 99.5th percentile of their valid
        pixels pooled (see `to_uint8`)."""
        key = tuple(names)
        if key not in self._common:
            data, valid = self.sample(list(names), 1024)
            v = data[:, valid]
            hi = float(np.nanpercentile(v, 99.5)) if v.size else 1.0
            self._common[key] = hi if np.isfinite(hi) and hi > 0 else 1.0
        return self._common[key]

    def to_uint8(
        self, data: np.ndarray, names: Sequence[str], keep_colour: bool = False
    ) -> np.ndarray:
        """Scale a block of this scene to uint8 the same way everywhere in the scene.

        For display, each band is stretched on its own (2nd to 98th percentile). For a model
        (`keep_colour`), all bands share one scale from 0 (see `common_scale`): the bands'
        ratios, the colour the model learned, stay as they are; a stretch per band would move
        the white balance (16-bit RGB read that way gave a fifth more crop than the same pixels
        in 8 bits)."""
        if data.dtype == np.uint8:
            return data
        out = np.empty(data.shape, np.uint8)
        if keep_colour:
            common = np.float32(255.0 / self.common_scale(names))
            np.clip(data.astype(np.float32) * common, 0, 255, out=out, casting="unsafe")
            return out
        st = self.stretch()
        for i, n in enumerate(names):
            lo, hi = st[n]
            scale = 255.0 / (hi - lo)
            np.clip((data[i].astype(np.float32) - lo) * scale, 0, 255, out=out[i], casting="unsafe")
        return out

    def close(self) -> None:
        self.dataset.close()
        if self._memfile is not None:
            self._memfile.close()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- opening -------------------------------------------------------------------------------------
def resolve_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files of one capture from what the user named: a file, several band files, or a folder."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise InputError(
            "No input given: name an image file, the band files of a capture, or a folder."
        )
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InputError(f"Folder {p} holds no images (.tif, .jpg, .png).")
            captures = group_captures(found)
            if len(captures) > 1:
                names = ", ".join(sorted(captures)[:3])
                raise InputError(
                    f"Folder {p} holds {len(captures)} captures ({names}...); analyze one at a "
                    "time, or use `khet edge run` for a whole folder."
                )
            files.extend(next(iter(captures.values())))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p} does not exist.")
    return files


def group_captures(files: Sequence[Path]) -> dict[str, list[Path]]:
    """Group files into captures: IMG_0001_1.tif ... IMG_0001_5.tif are one capture."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        m = _CAPTURE_RE.match(f.stem)
        key = (
            str(f.parent / m.group("prefix"))
            if m and f.suffix.lower() in {".tif", ".tiff"}
            else str(f)
        )
        groups.setdefault(key, []).append(f)
    for v in groups.values():
        v.sort(key=_band_number)
    return groups


def _band_number(f: Path) -> int:
    m = _CAPTURE_RE.match(f.stem)
    return int(m.group("band")) if m else 0


def _open_dataset(path: Path) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError as e:
        msg = str(e)
        if "not recognized as" in msg or "not a supported" in msg.lower():
            raise InputError(
                f"{path.name} is not an image Khet can read (not a GeoTIFF, JPEG or PNG)."
            ) from e
        raise InputError(
            f"{path.name} cannot be opened: it looks damaged or truncated ({short_reason(e)})."
        ) from e
    except RasterioError as e:
        raise InputError(f"{path.name} cannot be opened ({short_reason(e)}).") from e
    try:
        _ = ds.colorinterp
    except CPLE_BaseError:
        # GDAL reports a malformed metadata packet (a JPEG's XMP that does not parse) as an
        # error left pending after the open, raised by the next call: the pixels are fine, and
        # what the packet would have said is simply not known.
        pass
    return ds


def _check_dataset(ds, path: Path, settings: Settings) -> None:
    if ds.width <= 0 or ds.height <= 0 or ds.count <= 0:
        raise InputError(f"{path.name} has no pixels ({ds.width} x {ds.height}, {ds.count} bands).")
    if ds.width * ds.height > settings.max_pixels:
        raise InputError(
            f"{path.name} declares {ds.width} x {ds.height} pixels, more than the "
            f"{settings.max_pixels:,} one machine analyses in reasonable time "
            "(KHET_MAX_PIXELS); split it into parts, or it may be damaged."
        )
    bad = sorted({d for d in ds.dtypes if d not in SUPPORTED_DTYPES})
    if bad:
        raise InputError(
            f"{path.name} stores pixels as {', '.join(bad)}; Khet reads 8- or 16-bit integers "
            "or 32-bit float reflectance. Convert it (e.g. gdal_translate -ot UInt16)."
        )


def _names_from_metadata(ds, facts: CameraFacts) -> list[str | None]:
    names: list[str | None] = []
    ci_map = {
        ColorInterp.red: "red",
        ColorInterp.green: "green",
        ColorInterp.blue: "blue",
        ColorInterp.gray: None,
        ColorInterp.undefined: None,
    }
    for i in range(ds.count):
        desc = ds.descriptions[i]
        name = normalise_band_name(desc) if desc else None
        if name not in KNOWN_BANDS:
            name = None
        if name is None:
            name = ci_map.get(ds.colorinterp[i])
        names.append(name)
    if ds.count == 1 and facts.band_name:
        names = [normalise_band_name(facts.band_name)]
    return names


def _band_layout(ds, facts: CameraFacts, user: Sequence[str] | None, label: str, warn: list[str]):
    """(names, 1-based indexes) of the non-alpha bands, named by user > metadata > convention."""
    # A band GDAL calls alpha (any 4th band of an 8-bit GeoTIFF written without PHOTOMETRIC)
    # is a spectral band when its description or the user says so.
    described = [normalise_band_name(d) if d else None for d in ds.descriptions]
    alpha = [
        i
        for i in range(ds.count)
        if ds.colorinterp[i] == ColorInterp.alpha
        and described[i] not in KNOWN_BANDS
        and not (user and len(user) == ds.count)
    ]
    indexes = [i + 1 for i in range(ds.count) if i not in alpha]
    if user:
        what = f"{label} has {len(indexes)} band(s)"
        hint = "one name per band, e.g. --bands red,green,blue (use - for a band to ignore)"
        return _user_band_names(user, len(indexes), what, hint), indexes
    meta = _names_from_metadata(ds, facts)
    names = [meta[i - 1] for i in indexes]
    if all(names) and len(set(names)) == len(names):
        return names, indexes
    if len(indexes) == 3 and ds.dtypes[0] == "uint8":
        warn.append(
            "Band names not recorded in the file: read as red, green, blue (use --bands if not)."
        )
        return ["red", "green", "blue"], indexes
    if (
        len(indexes) == 4
        and all(n in (None, "red", "green", "blue") for n in names)
        and names[:3] == ["red", "green", "blue"]
    ):
        warn.append("Fourth band not named in the file: read as nir (use --bands if not).")
        return ["red", "green", "blue", "nir"], indexes
    generic = [n or f"band{i + 1}" for i, n in enumerate(names)]
    warn.append(
        f"Band names not recorded in the file ({', '.join(generic)}); name them with --bands."
    )
    return _no_duplicates(generic), indexes


def _user_band_names(user: Sequence[str], count: int, what: str, hint: str) -> list[str]:
    """The names given with --bands: one per band, `-` for a band to ignore, no repeats."""
    names = [SKIP if n.strip() in {SKIP, "skip", "_"} else normalise_band_name(n) for n in user]
    if len(names) != count:
        raise BandError(f"{what} but --bands names {len(names)}: give {hint}.")
    if all(n == SKIP for n in names):
        raise BandError(
            "--bands ignores every band (all -): name at least the bands to analyze, "
            "e.g. --bands red,green,blue."
        )
    return _no_duplicates(names)


def _no_duplicates(names: list[str]) -> list[str]:
    seen = [n for n in names if n != SKIP]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise BandError(f"Band name(s) {', '.join(dup)} given twice; use - for a band to ignore.")
    return names


def _georef(ds, facts: CameraFacts, path: Path, warn: list[str]) -> str:
    crs = None
    try:
        crs = ds.crs
    except RasterioError:
        crs = None
    if crs is not None and not ds.transform.is_identity:
        try:
            from rasterio.warp import transform as warp_transform

            cx, cy = ds.xy(ds.height // 2, ds.width // 2)
            lon, lat = warp_transform(crs, "EPSG:4326", [cx], [cy])
            if not (np.isfinite(lon[0]) and np.isfinite(lat[0])):
                raise ValueError("not finite")
        except Exception as e:
            raise InputError(
                f"{path.name} has a coordinate reference system Khet cannot place on Earth "
                f"({short_reason(e)}); re-export it with an EPSG code (e.g. EPSG:32643)."
            ) from e
        return "crs"
    if ds.gcps[0]:
        warn.append(
            "The image is georeferenced by ground control points only; warp it first for a map."
        )
    elif crs is None and not ds.transform.is_identity:
        warn.append(
            "The image has map coordinates but no coordinate reference system, so Khet cannot "
            "place it: it is mapped in image pixels. Give it its CRS (e.g. gdal_edit.py -a_srs "
            "EPSG:32643 image.tif) for a map in hectares."
        )
    return "exif-gps" if facts.has_gps else "none"


def _to_memory(
    arrays: np.ndarray, valid: np.ndarray | None, dtype: str
) -> tuple[MemoryFile, rasterio.io.DatasetReader]:
    count, h, w = arrays.shape
    mem = MemoryFile()
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": dtype,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with mem.open(**profile) as dst:
        dst.write(arrays)
        if valid is not None:
            dst.write_mask((valid * 255).astype(np.uint8))
    return mem, mem.open()


def open_scene(
    inputs: str | Path | Sequence[str | Path],
    bands: Sequence[str] | None = None,
    settings: Settings | None = None,
    gsd: float | None = None,
    calibration: radiometry.Options | None = None,
) -> Scene:
    """Open a file, the band files of one capture, or a folder holding one capture.

    `gsd` states the ground sample distance (metres per pixel) instead of taking it from the
    file (see vision/gsd.py). Band files of a MicaSense capture are calibrated to reflectance
    (see radiometry.py), with `calibration` saying how (a panel capture, the light sensor, or
    none)."""
    settings = settings or get_settings()
    apply_gdal_env(settings)
    gsd_.check_stated(gsd)
    files = resolve_inputs(inputs)
    if len(files) == 1 and calibration is not None and calibration.stated:
        raise InputError(
            "--panel, --panel-reflectance and --calibration calibrate the band files of a "
            f"multispectral capture (MicaSense); {files[0].name} is a single image."
        )
    scene = (
        _open_single(files[0], bands, settings)
        if len(files) == 1
        else _open_capture(files, bands, settings, calibration or radiometry.Options())
    )
    scene.gsd = _ground_sample_distance(scene, gsd)
    # What a scene without a georeference can place and measure, said once its GSD is known:
    # with a GSD its areas are approximate hectares (said when the map is written), not pixels.
    if scene.georef == "exif-gps":
        scene.warnings.append(NO_GEOREF_GPS)
    elif scene.georef == "none" and scene.gsd.metres is None:
        scene.warnings.append(NO_GEOREF_PIXELS)
    return scene


#: A GSD stated for a georeferenced image within this factor of its pixel size is taken as
#: agreeing (rounded, or the centre of a geographic CRS); beyond it, the two cannot both be right.
GSD_AGREE = 1.5


def _check_stated_gsd(name: str, own: float, stated: float | None, warn: list[str]) -> None:
    """A GSD stated for a georeferenced image of `own` metres per pixel: set aside with a warning
    when it agrees, an InputError when it does not."""
    if stated is None:
        return
    ratio = max(stated, own) / min(stated, own)
    if ratio > GSD_AGREE:
        raise InputError(
            f"{name} is georeferenced at {gsd_.describe(own)} per pixel (its map coordinates, "
            f"which also measure its areas), but --gsd gives {gsd_.describe(stated)}. Leave out "
            "--gsd for a georeferenced image, or fix its georeference."
        )
    if ratio > 1.0001:
        warn.append(
            f"--gsd {stated:g} set aside: {name}'s map coordinates give {gsd_.describe(own)} "
            "per pixel, which its areas are measured in."
        )


def _ground_sample_distance(scene: Scene, stated: float | None) -> Gsd:
    """The GSD from the CRS, the user or the camera, in that order; "unknown" with the reason.

    A georeferenced image's pixel size is what its areas are measured in, so a stated GSD does
    not override it: one that agrees (within GSD_AGREE) is set aside with a warning, one that
    does not is an InputError (a typo, or the wrong file)."""
    found: Gsd | None = None
    if scene.crs is not None:
        try:
            found = gsd_.from_crs(scene.crs, scene.transform, scene.width, scene.height)
        except Exception:  # an unusual CRS without usable units: said below as unknown
            found = None
    if found is not None and found.metres is not None:
        _check_stated_gsd(scene.sources[0].name, found.metres, stated, scene.warnings)
        return found
    if stated is not None:
        return gsd_.from_user(stated)
    if found is not None:  # a pixel size beyond what Khet maps: said as such
        return found
    found = gsd_.from_camera(scene.camera, scene.width, scene.height)
    if found is not None:
        return found
    return Gsd(source="unknown", detail=gsd_.missing_reason(scene.camera, scene.crs is not None))


def _open_single(path: Path, bands: Sequence[str] | None, settings: Settings) -> Scene:
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")
    ds = _open_dataset(path)
    driver = ds.driver
    try:
        ds = _expand_palette(ds, path)
        _check_dataset(ds, path, settings)
        facts = read_camera_facts(path)
        warn: list[str] = []
        names, indexes = _band_layout(ds, facts, bands, path.name, warn)
        georef = _georef(ds, facts, path, warn)
        if driver in {"GTiff", "COG", "VRT", "JP2OpenJPEG"} or georef == "crs":
            scene = Scene(ds, tuple(names), tuple(indexes), [path], georef, facts, warn, "raster")
        else:
            scene = _decode_frame(ds, path, names, indexes, georef, facts, warn, settings)
    except BaseException:
        ds.close()
        raise
    _probe(scene)
    return scene


def _expand_palette(ds, path: Path):
    """An indexed-colour image (a palette PNG or GeoTIFF) as its red, green and blue (and
    alpha, where the palette has transparency), through GDAL's `vrt://` expansion."""
    if ds.count != 1 or ds.colorinterp[0] != ColorInterp.palette or "?" in str(path):
        return ds
    try:
        alpha = any(c[3] < 255 for c in ds.colormap(1).values())
    except ValueError:  # no colour table after all
        return ds
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            expanded = rasterio.open(f"vrt://{path.absolute()}?expand={'rgba' if alpha else 'rgb'}")
    except RasterioError:  # a GDAL without vrt:// options: the palette stays, as before
        return ds
    ds.close()
    return expanded


def _check_decoded_size(ds, path: Path, indexes, settings: Settings) -> None:
    """A photo is decoded whole: refuse one whose pixels would not fit `max_decoded_mb`."""
    nbytes = ds.width * ds.height * len(indexes) * np.dtype(ds.dtypes[0]).itemsize
    if nbytes > settings.max_decoded_mb * 1024 * 1024:
        raise InputError(
            f"{path.name} is {ds.width} x {ds.height} pixels, too large to decode as a photo "
            f"(more than {settings.max_decoded_mb} MB decoded, KHET_MAX_DECODED_MB); "
            "convert it to a tiled GeoTIFF (gdal_translate -co TILED=YES)."
        )


def _decode_frame(ds, path, names, indexes, georef, facts, warn, settings) -> Scene:
    """JPEG/PNG: decode once into memory; windowed reads of a JPEG would decode it repeatedly."""
    _check_decoded_size(ds, path, indexes, settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = ds.read(indexes)
    except RasterioError as e:
        raise DamagedError(f"{path.name} is damaged or truncated ({short_reason(e)}).") from e
    valid = None
    if any(MaskFlags.all_valid not in f for f in ds.mask_flag_enums):
        valid = ds.dataset_mask() > 0
    dtype = ds.dtypes[indexes[0] - 1]
    ds.close()
    mem, mds = _to_memory(data, valid, dtype)
    return Scene(
        mds,
        tuple(names),
        tuple(range(1, len(indexes) + 1)),
        [path],
        georef,
        facts,
        warn,
        "frame",
        _memfile=mem,
    )


def _open_capture(
    files: list[Path],
    bands: Sequence[str] | None,
    settings: Settings,
    calibration: radiometry.Options,
) -> Scene:
    """One file per band: name each band, calibrate, co-register them onto one grid, stack."""
    arrays, names, facts_all = _read_band_files(files, settings)
    _one_capture(files, facts_all)
    warn: list[str] = []
    names = _capture_names(files, names, bands)
    numbers = [_band_number(f) for f in files]
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers)) if all(numbers) else []
    if missing:  # IMG_0001_1, _2, _3, _5: the fourth band file was not copied
        m = _CAPTURE_RE.match(files[0].stem)
        stem = m.group("prefix") if m else files[0].stem
        warn.append(
            f"The capture {stem} lacks band file(s) {', '.join(f'{stem}_{k}' for k in missing)}: "
            f"analysed with the bands it has ({', '.join(n for n in names if n != SKIP)})."
        )
    m = _CAPTURE_RE.match(files[0].stem)
    if m and all(numbers):  # IMG_0001_1 to _4 named, IMG_0001_5 beside them: left out?
        given = {f.resolve() for f in files}
        beside = sorted(
            f.name
            for f in files[0].parent.glob(f"{m.group('prefix')}_*{files[0].suffix}")
            if f.resolve() not in given and _band_number(f) > 0
        )
        if beside:
            warn.append(
                f"{', '.join(beside)} beside the capture's files was not given: analysed without "
                f"it (with {', '.join(n for n in names if n != SKIP)})."
            )
    panel = None
    if calibration.panel:
        try:
            pfiles = resolve_inputs(list(calibration.panel))
            panel = radiometry.BandFiles(pfiles, *_read_band_files(pfiles, settings))
        except InputError as e:  # said of the panel, not of the imagery to analyze
            raise InputError(f"The panel capture (--panel): {e}") from None
    # Radiance needs each band in its own lens's pixel grid (vignetting, row gradient): before
    # co-registration.
    cal = radiometry.calibrate(
        radiometry.BandFiles(files, arrays, names, facts_all), panel, calibration
    )
    arrays = cal.arrays
    warn.extend(cal.warnings)
    reference = (
        names.index("green") if "green" in names else (names.index("red") if "red" in names else 0)
    )
    aligned, valid, aligns = align.coregister(arrays, reference)
    report: list[dict[str, Any]] = [
        {"band": n, "shift_px": round(a.shift_px, 2), "score": round(a.score, 3)}
        for n, a in zip(names, aligns, strict=True)
    ]
    poor = [str(r["band"]) for r in report if r["score"] < 0.5]
    if poor:
        warn.append(
            f"Band(s) {', '.join(poor)} could not be aligned confidently; check the result."
        )
    facts = facts_all[0]
    if cal.height_above_ground_m is not None and facts.relative_altitude_m is None:
        facts.relative_altitude_m = cal.height_above_ground_m
        facts.height_source = cal.height_source
    georef = "exif-gps" if facts.has_gps else "none"
    # Trim the border that not every band covers, so no pixel mixes real and missing bands.
    stack = np.stack(aligned)
    mem, mds = _to_memory(stack, valid, str(stack.dtype))
    return Scene(
        mds,
        tuple(names),
        tuple(range(1, len(names) + 1)),
        list(files),
        georef,
        facts,
        warn,
        "capture",
        alignment=report,
        radiometry=cal.radiometry,
        _memfile=mem,
    )


def _one_capture(files: Sequence[Path], facts_all: Sequence[CameraFacts]) -> None:
    """InputError when the band files come from different captures (their MicaSense CaptureId
    differs): a panel's band beside a flight's four would be co-registered and mapped as if it
    were the same scene (seen: NDRE made from the panel)."""
    ids = [f.capture_id for f in facts_all]
    known = [i for i in ids if i]
    if len(set(known)) <= 1:
        return
    common = max(set(known), key=known.count)
    odd = [f.name for f, i in zip(files, ids, strict=True) if i and i != common]
    raise InputError(
        f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} from another capture than "
        f"{next(f.name for f, i in zip(files, ids, strict=True) if i == common)} (their "
        "MicaSense CaptureId differs): give the band files of one capture."
    )


def _read_band_files(
    files: Sequence[Path], settings: Settings
) -> tuple[list[np.ndarray], list[str], list[CameraFacts]]:
    """The raw image, XMP band name and camera facts of each band file of a capture."""
    arrays: list[np.ndarray] = []
    names: list[str] = []
    facts_all: list[CameraFacts] = []
    dtype = None
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{f.name} is empty (0 bytes).")
        ds = _open_dataset(f)
        with ds:
            _check_band_file(ds, f, settings, arrays[0].shape if arrays else None)
            if dtype and ds.dtypes[0] != dtype:
                raise InputError(
                    f"{f.name} stores {ds.dtypes[0]} pixels, unlike the other band files."
                )
            dtype = ds.dtypes[0]
            try:
                a = ds.read(1)
            except RasterioError as e:
                raise DamagedError(f"{f.name} is damaged or truncated ({short_reason(e)}).") from e
            facts = read_camera_facts(f)
            arrays.append(a)
            facts_all.append(facts)
            names.append(normalise_band_name(facts.band_name) if facts.band_name else "")
    return arrays, names, facts_all


def _check_band_file(ds, f: Path, settings: Settings, size: tuple[int, int] | None) -> None:
    """One file of a multi-file capture: one band, the size of the others."""
    _check_dataset(ds, f, settings)
    if ds.count != 1:
        raise InputError(
            f"{f.name} has {ds.count} bands, so the files given are not the band files of one "
            "capture (one band per file, as IMG_0001_1.tif ... IMG_0001_5.tif). Analyze one "
            "image at a time, or give the frames of a flight to mosaic them."
        )
    if size and (ds.height, ds.width) != size:
        raise InputError(f"{f.name} is {ds.width} x {ds.height}, unlike the other band files.")


def _capture_names(files: list[Path], names: list[str], bands: Sequence[str] | None) -> list[str]:
    """The band names of a capture: the user's, else one recorded in every file."""
    if bands:
        what = f"The capture has {len(files)} band files"
        names = _user_band_names(bands, len(files), what, "one name per file, in file order")
    elif not all(names):
        unnamed = [f.name for f, n in zip(files, names, strict=True) if not n]
        raise BandError(
            f"Band names are not recorded in {', '.join(unnamed)}; name every file's band with "
            "--bands in file order, e.g. --bands blue,green,red,nir,rededge."
        )
    return _no_duplicates(names)


def _probe(scene: Scene) -> None:
    """Read one small window so a truncated file fails now with a clear message, not mid-run."""
    w = Window(0, 0, min(scene.width, 64), min(scene.height, 64))
    scene.read(w, [n for n in scene.band_names if n != SKIP][:1] or [])
    last = Window(
        max(0, scene.width - 64),
        max(0, scene.height - 64),
        min(scene.width, 64),
        min(scene.height, 64),
    )
    if scene.bands:
        scene.read(last, scene.bands[:1])


@dataclass(frozen=True)
class SceneFacts:
    """What `inspect_scene` learns from the headers alone."""

    kind: str  # "raster", "frame", "capture"
    georef: str  # as Scene.georef
    width: int
    height: int
    band_names: tuple[str, ...]


def inspect_scene(
    inputs: str | Path | Sequence[str | Path],
    bands: Sequence[str] | None = None,
    settings: Settings | None = None,
    gsd: float | None = None,
) -> SceneFacts:
    """The checks `open_scene` makes before it reads a pixel: headers, sizes, pixel types, band
    names, a stated GSD against the coordinates, the decoded size of a photo. For a web
    request, which must answer quickly and in bounded memory; the worker then opens the scene
    for real (a photo is decoded only there)."""
    settings = settings or get_settings()
    apply_gdal_env(settings)
    files = resolve_inputs(inputs)
    names: list[str] = []
    size: tuple[int, int] | None = None
    kind, georef = "capture", "none"
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{f.name} is empty (0 bytes).")
        with _expand_palette(_open_dataset(f), f) as ds:
            facts = read_camera_facts(f)
            if len(files) == 1:
                _check_dataset(ds, f, settings)
                warn: list[str] = []
                names, indexes = _band_layout(ds, facts, bands, f.name, warn)
                georef = _georef(ds, facts, f, warn)
                kind = "raster" if ds.driver in {"GTiff", "COG", "VRT", "JP2OpenJPEG"} else "frame"
                kind = "raster" if georef == "crs" else kind
                if kind == "frame":
                    _check_decoded_size(ds, f, indexes, settings)
                if georef == "crs" and gsd is not None:
                    try:
                        own = gsd_.from_crs(ds.crs, ds.transform, ds.width, ds.height)
                    except Exception:  # an unusual CRS: the analysis says so
                        own = None
                    if own is not None and own.metres is not None:
                        _check_stated_gsd(f.name, own.metres, gsd, [])
                return SceneFacts(kind, georef, ds.width, ds.height, tuple(names))
            _check_band_file(ds, f, settings, size)
            size = (ds.height, ds.width)
            _check_decoded_size(ds, f, [1] * len(files), settings)
            names.append(normalise_band_name(facts.band_name) if facts.band_name else "")
    names = _capture_names(files, names, bands)
    h, w = size or (0, 0)
    return SceneFacts(kind, georef, w, h, tuple(names))
