"""Files on disk: the data folder layout, safe names, sniffing, streaming with a checksum.

    <data_dir>/
      khet.db, queue.db
      uploads/<user id>/<upload id>             chunked uploads (kept; flights link to them)
      staging/<random>/                         a flight being assembled by a request
      work/<job id>-<token>/                    an analysis being written by a worker
      farms/<farm id>/fields/<field id>/flights/<flight id>/
          input/<file name>                      the imagery (hard link of the upload, or a copy)
          results/                      classes.tif, vigour.tif, indices/, zones.geojson, ...

Results are produced in `work/` and renamed into `results/`, so a reader never sees half a
result, and a flight deleted meanwhile is not brought back by the worker's writes.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
import uuid
from functools import lru_cache
from pathlib import Path

from khet.vision import products

from khet.errors import InputError
from khet.settings import Settings, get_settings

MAGIC = {
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
}
IMAGE_SUFFIXES = {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
CHUNK = 1024 * 1024


def data_dir(settings: Settings | None = None) -> Path:
    """The service's data folder as an absolute path."""
    return _resolved(str((settings or get_settings()).data_dir), os.getcwd())


@lru_cache(maxsize=16)
def _resolved(path: str, cwd: str) -> Path:
    """Resolving walks every folder of the path: once per path (and working folder) is enough."""
    return Path(path).resolve()


def staging_dir(settings: Settings | None = None) -> Path:
    """A fresh folder for a request to assemble a flight in before it is renamed into place
    (same file system as the flights, so the rename is atomic)."""
    path = data_dir(settings) / "staging" / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


def _gsd_in_cm(m: re.Match[str]) -> str:
    return f"a ground resolution of {float(m[1]) * 100:g} cm per pixel"


#: The command line's options that a web or API user has too, by the name they have there:
#: the analysis says "--gsd 0.03", the service "a ground resolution of 3 cm per pixel".
_FLAGS = (
    (re.compile(r"--bands ([a-z0-9_-]+(?:,[a-z0-9_-]+)+)"), r'band names "\1"'),
    (re.compile(r"--bands\b"), 'the "band names" field (`bands`)'),
    (re.compile(r"--gsd ([0-9.]*[0-9])(?: for [^.,;)]+)?"), _gsd_in_cm),
    (re.compile(r"--gsd\b"), 'the "ground resolution" field (`gsd`)'),
)
#: Options only `khet analyze` has: named as such, so a web user knows where they are.
_CLI_ONLY = re.compile(r"(?<![\w`])(--(?:panel-reflectance|panel|calibration|model|tile-size))\b")


def public_message(text: str, settings: Settings | None = None) -> str:
    """`text` as a web or API user should read it. Without this server's folders: a path under
    the data folder becomes its file name ("/srv/khet-data/farms/3/fields/9/flights/41/input/a.tif"
    → "a.tif"); users need the file name, not the layout of someone's server. And the analysis's
    command-line options by the names the upload page and API give them ("--bands" → "band
    names", "--gsd" → "ground resolution"); options only the command line has are said to be
    `khet analyze`'s."""
    root = re.escape(str(data_dir(settings)))
    text = re.sub(root + r"(?:/[^/\s'\"]+)*/", "", text).replace(str(data_dir(settings)), "")
    if "--" not in text:
        return text
    for flag, name in _FLAGS:
        text = flag.sub(name, text)
    text = re.sub(r'(^|[.!?:] )the "', r'\1The "', text)  # a sentence that began with the flag
    return _CLI_ONLY.sub(r"`khet analyze \1`", text)


def strip_server_paths(value, settings: Settings | None = None):
    """`public_message` applied to every string of a JSON-like value, in place; returned."""
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = strip_server_paths(v, settings)
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = strip_server_paths(v, settings)
        return value
    if isinstance(value, str) and ("/" in value or "--" in value):
        return public_message(value, settings)
    return value


def upload_path(user_id: int, upload_id: str, settings: Settings | None = None) -> Path:
    """Where an upload's bytes are kept while it is sent."""
    return data_dir(settings) / "uploads" / str(user_id) / upload_id


def flight_dir(
    farm_id: int, field_id: int, flight_id: int, settings: Settings | None = None
) -> Path:
    """A flight's folder: its imagery and its results."""
    return (
        data_dir(settings)
        / "farms"
        / str(farm_id)
        / "fields"
        / str(field_id)
        / "flights"
        / str(flight_id)
    )


def safe_filename(name: str) -> str:
    """The name as given, if it is a plain file name; otherwise a 422 (never silently renamed).

    Rejects anything that could leave its folder or hide: separators, a leading dot (`..`
    included), control characters, colons, over-long names. Dots inside ("field..tif") are fine:
    without a separator they go nowhere.
    """
    if not isinstance(name, str):
        raise InputError("The file name is missing.")
    clean = unicodedata.normalize("NFC", name).strip()
    if len(clean.encode()) > 200:
        raise InputError(
            f"The file name {name[:40]!r}... is too long ({len(clean.encode())} bytes; at most "
            "200): shorten it."
        )
    if (
        not clean
        or "/" in clean
        or "\\" in clean
        or clean.startswith(".")  # "..", and files that hide
        or any(unicodedata.category(c).startswith("C") for c in clean)
        or ":" in clean
    ):
        raise InputError(
            f"{name[:80]!r} is not an acceptable file name: use a plain name such as "
            "field_0612.tif, without folders, '..' or special characters."
        )
    return clean


def sniff(head: bytes) -> str | None:
    """'tiff', 'jpeg', 'png' from the first bytes, or None."""
    for kind, magics in MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return kind
    return None


def sniff_file(path: Path) -> str | None:
    """The image kind of a file from its first bytes, or None."""
    with open(path, "rb") as f:
        return sniff(f.read(16))


def require_image(path: Path, filename: str) -> str:
    """The image kind of an uploaded file; InputError when it is not an image Khet reads."""
    with open(path, "rb") as f:
        kind = sniff(f.read(16))
    if kind is None:
        raise InputError(
            f"{filename} is not a GeoTIFF, JPEG or PNG image (its content says otherwise)."
        )
    return kind


def result_name_ok(name: str) -> bool:
    """A result file name Khet writes (the names are defined once, in vision/products.py)."""
    return products.is_result(name)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put `src` at `dst` as a hard link, else as a copy renamed into place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def remove_tree(path: Path) -> None:
    """Rename then delete, so a half-deleted folder never looks like a real one."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{id(path)}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
