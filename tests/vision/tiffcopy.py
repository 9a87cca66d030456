"""Copies of camera band files with every tag kept, for fixtures and calibration tests.

GDAL and Pillow rewrite a TIFF's directory when they save it and drop what they do not know
(MicaSense's private tags, parts of EXIF). A calibration test needs the camera's own metadata
byte for byte with only what the test changes (a crop, the pixels, an exposure time), so this
writes the classic TIFF structure itself: one uncompressed strip, then the directories.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SUB_IFDS = (34665, 34853, 40965)  # EXIF, GPS, Interoperability
_LAYOUT = {256, 257, 273, 278, 279, 322, 323, 324, 325}
_POSITION = {282, 283, 286, 287, 296}
Entry = tuple[int, int, int, bytes]  # tag, type, count, value bytes


def _read_ifd(buf: bytes, off: int) -> dict[int, Entry | list]:
    n = struct.unpack_from("<H", buf, off)[0]
    out: dict[int, Entry | list] = {}
    for i in range(n):
        tag, typ, count, val = struct.unpack_from("<HHII", buf, off + 2 + 12 * i)
        if tag in _SUB_IFDS:
            out[tag] = [_read_ifd(buf, val)]
            continue
        size = _SIZES.get(typ, 1) * count
        inline = buf[off + 10 + 12 * i : off + 14 + 12 * i][:size]
        raw = inline if size <= 4 else buf[val : val + size]
        out[tag] = (tag, typ, count, raw)
    return out


def _rational(v: float) -> bytes:
    den = 1_000_000_000 if abs(v) < 4 else 1000
    return struct.pack("<II", int(round(v * den)), den)


def _write_ifd(ifd: Mapping[int, Entry | list], base: int) -> tuple[bytes, int]:
    """Bytes of a directory placed at `base` (its sub-directories and values after it)."""
    n = len(ifd)
    head = 2 + 12 * n + 4
    tail = bytearray()
    entries = []
    pos = base + head
    for tag in sorted(ifd):
        e = ifd[tag]
        if isinstance(e, list):
            sub, _ = _write_ifd(e[0], pos + len(tail))
            entries.append(struct.pack("<HHII", tag, 4, 1, pos + len(tail)))
            tail += sub
        else:
            _, typ, count, raw = e
            if len(raw) <= 4:
                entries.append(struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0"))
            else:
                entries.append(struct.pack("<HHII", tag, typ, count, pos + len(tail)))
                tail += raw
        if len(tail) % 2:
            tail += b"\0"
    body = struct.pack("<H", n) + b"".join(entries) + struct.pack("<I", 0)
    return body + bytes(tail), base


def copy_band_file(
    src: Path,
    dst: Path,
    *,
    window: tuple[int, int, int, int] | None = None,
    pixels: np.ndarray | None = None,
    exif: Mapping[int, float] | None = None,
    drop: Iterable[int] = (),
    drop_exif: Iterable[int] = (),
) -> None:
    """Copy a single-band little-endian TIFF (a MicaSense band file) with all its tags.

    `window` (col, row, width, height): keep that part, and record where it lies in the camera's
    image with the TIFF XPosition/YPosition tags (pixels: ResolutionUnit none, resolution 1),
    added to the position `src` records if it is a crop itself.
    `pixels`: new pixel values (same type; the window's shape). `exif`: EXIF rational tags to set
    (e.g. {33434: exposure in seconds}). `drop`/`drop_exif`: tags to leave out.
    """
    buf = src.read_bytes()
    if buf[:4] != b"II*\0":
        raise ValueError(f"{src} is not a little-endian classic TIFF")
    ifd = _read_ifd(buf, struct.unpack_from("<I", buf, 4)[0])
    import rasterio

    with rasterio.open(src) as ds:
        data = ds.read(1)
    if window is not None:
        c, r, w, h = window
        data = data[r : r + h, c : c + w]
    if pixels is not None:
        if pixels.shape != data.shape or pixels.dtype != data.dtype:
            raise ValueError(f"pixels are {pixels.shape} {pixels.dtype}, not {data.shape}")
        data = pixels
    h, w = data.shape
    strip = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
    x0 = y0 = 0
    if window is not None and 286 in ifd and 287 in ifd:
        # Source already a crop (whole pixels, resolution 1: as this function writes them).
        x0 = int(np.divide(*struct.unpack("<II", ifd[286][3])))
        y0 = int(np.divide(*struct.unpack("<II", ifd[287][3])))
    for tag in list(ifd):
        if tag in _LAYOUT or tag in set(drop) or (window is not None and tag in _POSITION):
            del ifd[tag]
    ifd[256] = (256, 4, 1, struct.pack("<I", w))
    ifd[257] = (257, 4, 1, struct.pack("<I", h))
    ifd[273] = (273, 4, 1, struct.pack("<I", 8))
    ifd[278] = (278, 4, 1, struct.pack("<I", h))
    ifd[279] = (279, 4, 1, struct.pack("<I", len(strip)))
    if window is not None:
        ifd[282] = (282, 5, 1, _rational(1.0))
        ifd[283] = (283, 5, 1, _rational(1.0))
        ifd[296] = (296, 3, 1, struct.pack("<H", 1))
        ifd[286] = (286, 5, 1, struct.pack("<II", x0 + window[0], 1))
        ifd[287] = (287, 5, 1, struct.pack("<II", y0 + window[1], 1))
    sub = ifd.get(34665)
    if isinstance(sub, list):
        for tag in drop_exif:
            sub[0].pop(tag, None)
        for tag, value in (exif or {}).items():
            sub[0][tag] = (tag, 5, 1, _rational(value))
    base = 8 + len(strip) + (len(strip) % 2)
    directory, _ = _write_ifd(ifd, base)
    out = b"II*\0" + struct.pack("<I", base) + strip + b"\0" * (len(strip) % 2) + directory
    dst.write_bytes(out)
