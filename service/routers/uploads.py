"""Resumable, idempotent chunked uploads (the protocol the edge devices speak).

1. `POST /api/v1/uploads {"filename", "size", "sha256"}` → 201 `{"id", "offset": 0, ...}`. The same
   user posting the same sha256, size and filename again gets the existing upload back (200)
   with its current offset: that is how a client resumes after losing its state (the upload's
   id is derived from the user, SHA-256, size and name, so two requests racing to declare the
   same file make one upload). The same bytes under a new name are a new upload with that name
   (201), complete at once when the bytes are already here: they are hard-linked, not stored
   twice.
2. `PUT /api/v1/uploads/{id}` with `Content-Range: bytes START-END/TOTAL` and the raw bytes as the
   body. START == offset appends and returns the new offset. START < offset (a chunk re-sent
   after a lost reply) changes nothing and returns the current offset (200). START > offset is a
   gap: 409 `{"error": "conflict", "offset": current}`. The last chunk triggers the SHA-256 check;
   a mismatch answers 422 and discards the data (offset back to 0).
3. `GET /api/v1/uploads/{id}` → where the upload stands.

Chunks stream to disk; the stored offset only moves after the bytes are fsync'd. A connection
that drops mid-chunk keeps the bytes that arrived (fsync'd, the offset moved past them, as tus
does): a link that drops more often than a chunk's length still makes progress. A crash of the
server mid-chunk leaves the upload at its previous offset (bytes past it are cut off).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from khet.service import storage
from khet.service import uploads as up_io
from khet.service.db import Upload, now
from khet.service.dependencies import DB, CurrentUser, get_upload
from khet.service.schemas import ChunkOut, Problem, UploadIn, UploadOut
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from khet.errors import ConflictError, InputError, KhetError

log = logging.getLogger("khet.service.uploads")
router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
UploadIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
# The chunk streams to disk and may not be longer than its Content-Range, which may not pass the
# declared size, which may not pass KHET_MAX_UPLOAD_MB: the app-wide body limit is not for it.
STREAMED = 1 << 50
_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19})\s*$")


class OffsetConflict(ConflictError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.extra = {"offset": offset}


def _out(up: Upload) -> UploadOut:
    return UploadOut(
        id=up.id, offset=up.offset, size=up.size, complete=up.complete, filename=up.filename
    )


@router.post(
    "",
    response_model=UploadOut,
    status_code=201,
    responses={
        200: {"model": UploadOut, "description": "Existing upload (resume/dedupe)"},
        413: {"model": Problem},
        422: {"model": Problem},
    },
    summary="Start (or resume) a chunked upload",
)
def start_upload(body: UploadIn, user: CurrentUser, db: DB, response: Response) -> UploadOut:
    """Declare a file: name, total size in bytes, SHA-256 (hex). If you already started an upload
    of the same file under the same name, it is returned (200) with its offset: resume from
    there, or, when `complete` is true, use its id right away. The same bytes under another
    name are a new upload with that name (201), complete at once when the bytes are already
    here (they are shared, not stored again): a file's name carries meaning (a band file's
    IMG_0001_3.tif)."""
    name = storage.safe_filename(body.filename)
    if body.size > up_io.limit_bytes():
        raise up_io.too_large(name)
    same_file = (
        select(Upload)
        .where(Upload.user_id == user.id)
        .where(Upload.sha256 == body.sha256)
        .where(Upload.size == body.size)
        .order_by(Upload.created_at)
    )
    existing = db.scalar(same_file.where(Upload.filename == name))
    if existing is not None:
        path = storage.upload_path(user.id, existing.id)
        if not path.exists() or (existing.complete and path.stat().st_size != existing.size):
            existing.offset, existing.complete = 0, False  # the file went missing: start over
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            db.commit()
        response.status_code = 200
        return _out(existing)
    up = Upload(
        id=upload_id_for(user.id, body.sha256, body.size, name),
        user_id=user.id,
        filename=name,
        size=body.size,
        sha256=body.sha256,
        offset=0,
        complete=False,
    )
    path = storage.upload_path(user.id, up.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _share_bytes(db, same_file, user.id, path):
        path.touch()
    else:  # the same bytes, already here and checked: this name's upload is complete
        up.offset, up.complete = body.size, True
    db.add(up)
    try:
        db.commit()
    except IntegrityError:  # the same file declared at the same moment by another request
        db.rollback()
        existing = db.get(Upload, up.id)
        if existing is None:
            raise
        response.status_code = 200
        return _out(existing)
    return _out(up)


def _share_bytes(db, same_file, user_id: int, path) -> bool:
    """Put the bytes of a complete upload of the same file at `path` (a hard link: stored
    once); False when there is none, or its bytes are not all there."""
    for other in db.scalars(same_file.where(Upload.complete.is_(True))):
        src = storage.upload_path(user_id, other.id)
        try:
            if src.stat().st_size != other.size:
                continue
            if path.exists():  # a leftover of an earlier declaration that never finished
                path.unlink()
            storage.link_or_copy(src, path)
            return True
        except OSError:
            continue
    return False


def upload_id_for(user_id: int, sha256: str, size: int, filename: str) -> str:
    """The id of a user's upload of one file under one name: derived from them, so two
    requests that declare it at the same moment (syncs run side by side, a retried request)
    make one upload, not two; the loser of the race finds the winner's row by its primary
    key. Uploads made before the name counted have ids without it; they are found by their
    columns, not by their id."""
    key = f"{user_id}:{sha256.lower()}:{size}:{filename}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@router.get("/{upload_id}", response_model=UploadOut, summary="Where an upload stands")
def read_upload(upload_id: UploadIdPath, user: CurrentUser, db: DB) -> UploadOut:
    """The offset to continue from. A chunk still being written (its connection just dropped,
    its bytes being kept) is waited for, briefly, so the answer counts its bytes: a client that
    resumes from an older offset would send bytes the server then ignores."""
    up = get_upload(db, user, upload_id)
    path = storage.upload_path(user.id, up.id)
    if not up.complete and path.exists():
        with open(path, "rb") as f:
            if _wait_lock(f.fileno(), fcntl.LOCK_SH, LOCK_WAIT):
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        db.refresh(up)
    return _out(up)


LOCK_WAIT = 2.0  # seconds a request waits for a chunk of the same upload being written


def _wait_lock(fd: int, kind: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)


@router.put(
    "/{upload_id}",
    response_model=ChunkOut,
    summary="Send one chunk (Content-Range: bytes START-END/TOTAL, raw body)",
    max_body_size=STREAMED,
    responses={
        409: {"description": "START is past the stored offset; body has `offset`"},
        422: {"model": Problem, "description": "Checksum mismatch (data discarded)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_chunk(
    upload_id: UploadIdPath,
    request: Request,
    user: CurrentUser,
    db: DB,
    content_range: Annotated[str, Header(description="bytes START-END/TOTAL (END inclusive)")],
) -> ChunkOut:
    """Append the bytes START..END (inclusive) of the file. Re-sending a chunk that is already
    stored is harmless; the reply always carries the offset to continue from."""
    m = _RANGE.match(content_range)
    if not m:
        raise KhetError("Content-Range must look like 'bytes START-END/TOTAL'.")
    start, end, total = (int(g) for g in m.groups())
    up = await run_in_threadpool(get_upload, db, user, upload_id)
    if total != up.size:
        raise InputError(
            f"Content-Range says the file has {total} bytes; the upload declared {up.size}."
        )
    if end < start or end >= up.size:
        raise KhetError(f"Content-Range bytes {start}-{end} do not fit a file of {up.size} bytes.")
    if up.complete or start < up.offset:
        return ChunkOut(offset=up.offset, complete=up.complete)
    if start > up.offset:
        raise OffsetConflict(
            f"This upload has {up.offset} bytes; send the chunk starting there.", up.offset
        )
    path = storage.upload_path(user.id, up.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "ab+")  # noqa: SIM115 - closed below on every path
    try:
        # A chunk of this upload still being written (a dropped connection's bytes being
        # kept, a retry racing its original) is waited for, briefly: its offset counts.
        if not await run_in_threadpool(_wait_lock, f.fileno(), fcntl.LOCK_EX, LOCK_WAIT):
            raise OffsetConflict(
                "Another chunk of this upload is being written; retry shortly.", up.offset
            )
        await run_in_threadpool(db.refresh, up)  # the offset as of holding the lock
        if up.complete or start < up.offset:
            return ChunkOut(offset=up.offset, complete=up.complete)
        if start > up.offset:
            raise OffsetConflict(
                f"This upload has {up.offset} bytes; send the chunk from there.", up.offset
            )
        want = end - start + 1
        hasher = await run_in_threadpool(up_io.take_hasher, up.id, path, up.offset)
        f.truncate(up.offset)  # bytes past the offset are from a chunk that never finished
        f.seek(up.offset)
        ok = False
        try:
            # A dropped link's bytes are the file's next bytes (TCP delivers them in order; the
            # SHA-256 of the whole file is still checked at the end): they are kept, as tus
            # does, so that a link that drops more often than a chunk's length still makes
            # progress. The client asks for the offset.
            got, dropped = await up_io.stream_body(
                request, lambda data: _write(f, hasher, data), most=want
            )
            if got != want and not dropped:
                raise KhetError(f"The body has {got} bytes; Content-Range says {want}.")
            if dropped and not got:  # nothing arrived: nothing to keep, the hash as it was
                ok = True
                up_io.keep_hasher(up.id, up.offset, hasher)
                return ChunkOut(offset=up.offset, complete=up.complete)
            await run_in_threadpool(up_io.fsync_close_keep, f)
            ok = True
        finally:
            if not ok:
                f.truncate(up.offset)
                up_io.drop_hasher(up.id)
        up.offset = start + got
        up.updated_at = now()
        if up.offset == up.size:
            digest = hasher.hexdigest()
            if digest != up.sha256:
                f.truncate(0)
                up.offset = 0
                up_io.drop_hasher(up.id)
                await run_in_threadpool(db.commit)
                raise InputError(
                    "The file arrived damaged: its SHA-256 does not match the one declared. "
                    "The data was discarded; upload it again from the start."
                )
            up.complete = True
            up_io.drop_hasher(up.id)
        else:
            up_io.keep_hasher(up.id, up.offset, hasher)
        await run_in_threadpool(db.commit)
        if dropped:
            log.info("upload %s: link dropped mid-chunk, kept %d bytes", up.id, got)
        return ChunkOut(offset=up.offset, complete=up.complete)
    finally:
        f.close()


def _write(f, hasher, data: bytes) -> None:
    f.write(data)
    hasher.update(data)
