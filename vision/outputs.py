"""Writing field-map outputs so that a crash never leaves a file that looks finished.

Every output is written inside a staging folder next to the final one and renamed into place
(`os.replace`, atomic on one filesystem) only when the whole run has succeeded; `summary.json`
is renamed last, so its presence means the map beside it is complete. Files and folders are
fsync'd before the summary is renamed in, so that holds after a power cut too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from khet.vision import products
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy

from khet.errors import OutputError

SUMMARY = products.SUMMARY.path  # renamed into place last: its presence means "complete"


def _as_output_error(e: OSError, where: Path) -> OutputError:
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OutputError(
            f"The disk is full while writing to {where}; nothing was left half-written."
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(
            f"Cannot write to {where}: permission denied. Choose another output folder."
        )
    return OutputError(f"Cannot write to {where} ({e.strerror or e}).")


def _gdal_write_error(e: Exception, where: Path) -> OutputError:
    text = str(e).lower()
    if any(
        k in text for k in ("no space", "file too large", "disk full", "short write", "write error")
    ):
        return OutputError(
            f"The disk is full while writing to {where}; nothing was left half-written."
        )
    return OutputError(f"Cannot write the results to {where} ({str(e).splitlines()[0][:160]}).")


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to the disk (not only to the page cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the names in a folder (renames, new files) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a platform without directory handles: nothing more can be done
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # filesystems that cannot sync a folder
            raise
    finally:
        os.close(fd)


class Staging:
    """A folder of outputs being written; `commit()` moves them into the output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        # The folders this run makes, deepest first: a failed run takes them away again when it
        # leaves them empty (a failure writes nothing, not even an empty folder).
        self._made = missing_folders(self.out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.path = self.out_dir / f".khet-partial-{uuid.uuid4().hex[:8]}"
            self.path.mkdir()
        except OSError as e:
            raise _as_output_error(e, self.out_dir) from e
        if not os.access(self.out_dir, os.W_OK):
            raise OutputError(f"Cannot write to {self.out_dir}: permission denied.")

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, replaces: tuple[products.Product, ...] = ()) -> list[Path]:
        """Rename every staged file into place, the summary last, durably.

        `replaces`: the products an earlier run may have left in the output folder that this
        run's files replace as a whole (a new field map replaces the earlier map): those of
        them this run did not write are removed, before the new summary is renamed in, so the
        folder never mixes two maps (an earlier model map's confidence.tif beside an index map).

        A rename is atomic against a crash of the process, not against a power cut: the
        filesystem may write the new name before the file's bytes (ext4's delayed allocation
        then leaves an empty file under it). So each file's bytes are fsync'd before its rename,
        and the folders after, before the summary (which says "complete") is renamed in."""
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == SUMMARY)
        done: list[Path] = []
        try:
            # An earlier summary says "complete" about files we are about to replace: drop it first.
            old = self.out_dir / SUMMARY
            if old.exists():
                old.unlink()
            for p in files:
                fsync_file(p)
            folders = {self.out_dir}
            new = {p.relative_to(self.path).as_posix() for p in files}
            for p in files:
                dest = self.out_dir / p.relative_to(self.path)
                if p.name == SUMMARY:  # every other file's name durable before this one
                    _remove_stale(self.out_dir, replaces, new)
                    for d in sorted(folders, key=lambda d: -len(d.parts)):
                        fsync_dir(d)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
                folders.add(dest.parent)
                done.append(dest)
            for d in sorted(folders, key=lambda d: -len(d.parts)):
                fsync_dir(d)
        except OSError as e:
            raise _as_output_error(e, self.out_dir) from e
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
        return done

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        remove_empty(self._made)


def _remove_stale(out_dir: Path, replaces: tuple[products.Product, ...], new: set[str]) -> None:
    """Remove the files of `replaces` in `out_dir` that are not among `new` (relative names),
    and the folders that leaves empty. Only the products' own folders are listed, once each, and
    only their names matched: nothing else in the folder is touched."""
    by_folder: dict[Path, list[products.Product]] = {}
    for prod in replaces:
        by_folder.setdefault((out_dir / prod.path).parent, []).append(prod)
    found: list[Path] = []
    for folder, prods in by_folder.items():
        if not folder.is_dir():
            continue
        rel = folder.relative_to(out_dir).as_posix()
        for f in folder.iterdir():
            name = f.name if rel == "." else f"{rel}/{f.name}"
            if name not in new and any(p.pattern.match(name) for p in prods) and f.is_file():
                found.append(f)
    for f in found:
        f.unlink()
    for d in sorted({f.parent for f in found} - {out_dir}, key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: what a run that
    creates `folder` makes, and takes away again if it fails (see `remove_empty`)."""
    made, p = [], Path(folder).absolute()
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) while they are empty: another run may write there."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            break


@contextmanager
def staging(out_dir: Path) -> Iterator[Staging]:
    """Write outputs in a staging folder; on any error discard it (OutputError for a write)."""
    st = Staging(out_dir)
    try:
        yield st
    except OSError as e:
        st.discard()
        raise _as_output_error(e, Path(out_dir)) from e
    except RasterioError as e:
        # Read failures became InputError in the scene; what reaches here is a failed write.
        st.discard()
        raise _gdal_write_error(e, Path(out_dir)) from e
    except BaseException:
        st.discard()
        raise


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """`indent=None` writes compact JSON, with Python's C encoder: several times faster for the
    thousands of coordinates of a zones file."""
    seps = (",", ":") if indent is None else None
    text = json.dumps(
        data, indent=indent, separators=seps, ensure_ascii=False, default=_json_default
    )
    path.write_text(text + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    transform,
    crs,
    nodata: float | int,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    resampling: str = "nearest",
    descriptions: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a small in-memory array (a class grid) as a Cloud-Optimized GeoTIFF."""
    bands = data if data.ndim == 3 else data[None]
    profile = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(bands)
            if colormap:
                dst.write_colormap(1, colormap)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
            if tags:
                dst.update_tags(**tags)
        with mem.open() as src:
            cog_from(src, path, resampling=resampling, nodata=nodata)


def cog_from(src, path: Path, *, resampling: str, nodata: float | int | None) -> None:
    """Copy an open dataset into a COG at `path` with GDAL's COG driver (one pass, overviews).

    Float index maps use LERC with a maximum error of 0.001 index units: far below what a
    sensor can tell apart, three times smaller and faster to write than lossless DEFLATE. Its
    ZSTD stage at level 1 halves the time of the default level for 3% more bytes.
    Class grids use lossless DEFLATE.
    """
    opts: dict[str, Any] = {
        "BLOCKSIZE": 256 if max(src.width, src.height) >= 256 else 128,
        "OVERVIEW_RESAMPLING": resampling.upper(),
        "BIGTIFF": "IF_SAFER",
    }
    if src.dtypes[0].startswith("float"):
        opts.update(COMPRESS="LERC_ZSTD", MAX_Z_ERROR=0.001, LEVEL=1)
    else:
        opts.update(COMPRESS="DEFLATE", PREDICTOR="YES")
    rio_copy(src, str(path), driver="COG", **opts)


def open_scratch_raster(
    path: Path,
    *,
    width: int,
    height: int,
    count: int,
    dtype: str,
    transform,
    crs,
    nodata: float | None,
) -> rasterio.io.DatasetWriter:
    """An uncompressed tiled GeoTIFF that takes arbitrary window writes cheaply."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
        "SPARSE_OK": "TRUE",
        "interleave": "band",  # each index map is copied out on its own
    }
    if crs is not None:
        profile["crs"] = crs
    return rasterio.open(path, "w", **profile)
