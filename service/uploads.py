"""Streaming bodies to disk: bounded memory, a running SHA-256, a size limit."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from khet.service import storage
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from khet.errors import KhetError, TooLargeError

# Running hashes of chunked uploads, so each chunk is hashed once as it streams by. A process that
# restarts (or another server process) re-hashes the stored prefix from disk once, in chunks.
_HASHERS: OrderedDict[str, tuple[int, object]] = OrderedDict()
_LOCK = threading.Lock()
_MAX_HASHERS = 256


def take_hasher(upload_id: str, path: Path, offset: int):
    """The running sha256 of an upload at `offset`: kept from the last chunk, or rebuilt from the
    file."""
    with _LOCK:
        entry = _HASHERS.pop(upload_id, None)
    if entry is not None and entry[0] == offset:
        return entry[1]
    h = hashlib.sha256()
    if offset:
        with open(path, "rb") as f:
            left = offset
            while left:
                block = f.read(min(storage.CHUNK, left))
                if not block:
                    break
                h.update(block)
                left -= len(block)
    return h


def keep_hasher(upload_id: str, offset: int, h) -> None:
    """Keep an upload's running sha256 for its next chunk (a bounded number are kept)."""
    with _LOCK:
        _HASHERS[upload_id] = (offset, h)
        while len(_HASHERS) > _MAX_HASHERS:
            _HASHERS.popitem(last=False)


def drop_hasher(upload_id: str) -> None:
    """Forget an upload's running sha256 (finished or abandoned)."""
    with _LOCK:
        _HASHERS.pop(upload_id, None)


def limit_bytes() -> int:
    """The largest upload this service accepts, in bytes (KHET_MAX_UPLOAD_MB)."""
    from khet.settings import get_settings

    return get_settings().max_upload_mb * 1024 * 1024


def too_large(what: str) -> TooLargeError:
    """The error for a file over the upload limit, naming the limit."""
    from khet.settings import get_settings

    return TooLargeError(
        f"{what} is larger than the {get_settings().max_upload_mb} MB this service accepts "
        "(KHET_MAX_UPLOAD_MB)."
    )


def fsync_close(f) -> None:
    """Flush, fsync and close a file: its bytes are on disk before anything refers to it."""
    f.flush()
    os.fsync(f.fileno())
    f.close()


def fsync_close_keep(f) -> None:
    """Flush and fsync without closing (the caller still holds the lock)."""
    f.flush()
    os.fsync(f.fileno())


class MultipartSink:
    """Streams a multipart/form-data body: file parts straight to disk, text parts kept small.

    The body is parsed as it arrives (python-multipart's push parser), so a 2 GB orthomosaic
    never sits in memory or in a temporary spool; each file is sniffed on its first bytes, hashed
    and counted against the upload limit as it goes.
    """

    MAX_TEXT = 4096
    # All text fields together (names and values): a flight's form has a handful of short
    # ones. Without it, thousands of distinct 4 KB fields grew the web process by 100 MB.
    MAX_TEXT_TOTAL = 64 * 1024
    MAX_TEXT_FIELDS = 100
    MAX_FILES = 2500  # a flight's frames (schemas.MAX_FLIGHT_FILES)
    # What a whole body may hold besides its files' bytes: part headers and boundaries (a few
    # hundred bytes a file) and the text fields.
    OVERHEAD = MAX_FILES * 1024 + MAX_TEXT_TOTAL + MAX_TEXT_FIELDS * 1024

    def __init__(self, folder: Path, content_type: str) -> None:
        self._parse_options = parse_options_header
        ctype, opts = parse_options_header(content_type or "")
        boundary = opts.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            from khet.errors import InputError

            raise InputError("Send the files as multipart/form-data.")
        self.folder = folder
        self.limit = limit_bytes()
        self.total = 0
        self.files: list[dict] = []
        self.fields: dict[str, str] = {}
        self.text_total = 0  # bytes of text fields' names and values so far
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._current: dict | None = None
        self._text: bytearray | None = None
        self._text_name = ""
        self.error: Exception | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
            },
        )

    # push-parser callbacks ---------------------------------------------------------------------
    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def _headers_done(self) -> None:
        from khet.errors import InputError

        _, opts = self._parse_options(self._headers.get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        if filename is not None:
            if len(self.files) >= self.MAX_FILES:
                raise InputError(f"At most {self.MAX_FILES} files per flight.")
            fname = storage.safe_filename(filename.decode("utf-8", "replace"))
            if any(f["filename"] == fname for f in self.files):
                raise InputError(f"Two files are named {fname}; each needs its own name.")
            path = self.folder / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            self._current = {
                "field": name,
                "filename": fname,
                "path": path,
                "size": 0,
                "hash": hashlib.sha256(),
                "fh": open(path, "wb"),
                "head": b"",
            }
            self.files.append(self._current)
        else:
            if len(self.fields) >= self.MAX_TEXT_FIELDS:
                raise InputError(f"The form has more than {self.MAX_TEXT_FIELDS} text fields.")
            self._text, self._text_name = bytearray(), name
            self._count_text(len(name.encode()))

    def _data(self, data: bytes, start: int, end: int) -> None:
        from khet.errors import InputError

        chunk = data[start:end]
        if self._current is not None:
            cur = self._current
            self.total += len(chunk)
            if self.total > self.limit:
                raise too_large("The upload")
            if len(cur["head"]) < 16:
                cur["head"] += chunk[: 16 - len(cur["head"])]
                if len(cur["head"]) >= 16 and storage.sniff(cur["head"]) is None:
                    raise InputError(f"{cur['filename']} is not a GeoTIFF, JPEG or PNG image.")
            cur["fh"].write(chunk)
            cur["hash"].update(chunk)
            cur["size"] += len(chunk)
        elif self._text is not None:
            self._text += chunk
            if len(self._text) > self.MAX_TEXT:
                raise InputError(f"The form field {self._text_name!r} is too long.")
            self._count_text(len(chunk))

    def _count_text(self, n: int) -> None:
        self.text_total += n
        if self.text_total > self.MAX_TEXT_TOTAL:
            raise TooLargeError(
                f"The form's text fields hold more than {self.MAX_TEXT_TOTAL // 1024} KB; a "
                "flight's form needs a few short ones."
            )

    def _part_end(self) -> None:
        if self._current is not None:
            self._current["fh"].close()
            self._current = None
        elif self._text is not None:
            self.fields[self._text_name] = self._text.decode("utf-8", "replace")
            self._text = None

    # driving ---------------------------------------------------------------------------------
    def write(self, chunk: bytes) -> None:
        self.parser.write(chunk)

    def finish(self) -> None:
        self.parser.finalize()
        for f in self.files:
            if not f["fh"].closed:
                f["fh"].close()

    def close(self) -> None:
        for f in self.files:
            if not f["fh"].closed:
                f["fh"].close()


async def stream_body(
    request: Request, write: Callable[[bytes], None], most: int | None = None
) -> tuple[int, bool]:
    """A request body as it arrives, handed to `write` in batches of `storage.CHUNK` bytes in a
    worker thread (the event loop never blocks on the disk, and the body is never held whole).
    Returns (bytes received, whether the client dropped the connection before the end); the
    bytes that did arrive are written either way, the caller decides whether to keep them.
    More than `most` bytes: KhetError, at once."""
    got, dropped, buf = 0, False, bytearray()
    try:
        async for part in request.stream():
            got += len(part)
            if most is not None and got > most:
                raise KhetError(f"The body is longer than Content-Range says ({most} bytes).")
            buf += part
            if len(buf) >= storage.CHUNK:
                data = bytes(buf)
                buf.clear()
                await run_in_threadpool(write, data)
    except ClientDisconnect:
        dropped = True
    if buf:
        await run_in_threadpool(write, bytes(buf))
    return got, dropped
