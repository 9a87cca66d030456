"""The outbox: results wait on disk until `khet edge sync` uploads them as flights of a field.

When a capture is done its results (the outputs vision/products.py marks `synced`: summary,
zones, the class, vigour, cover and confidence maps, a few kB; with `--with-imagery`, its image
files, its index maps and the preview too) are hard-linked (copied across filesystems) into
`OUT/.khet-edge/outbox/<capture>/`, and their sizes and sha256 are recorded in the journal in the
same transaction that marks the capture done. The pipeline replaces outputs by renaming, never by
writing in place, so a linked file never changes under the outbox.

Sync follows the service's resumable upload contract:

    POST /api/v1/uploads {filename, size, sha256}     -> {id, offset, size, complete}  (200: exists)
    PUT  /api/v1/uploads/{id}  Content-Range: bytes START-END/TOTAL  -> {offset, complete}
    GET  /api/v1/uploads/{id}                          -> {id, offset, size, complete, filename}
    POST /api/v1/fields/{field}/flights {uploads, client_id, captured_at, results}  (200: exists)

Idempotent and resumable at any byte: each upload id is recorded as soon as the service gives it,
and a new sync asks the service how many bytes it holds and sends only the rest (a second POST of
the same file also answers the existing upload, so even an id lost in a crash is found again).
The flight's `client_id` is the identity of the capture's result (`edge.stamp.client_id`: its
input files' sha256, the models and options), so posting it again, even after the journal was
lost and the capture found finished by its stamp, never makes a second flight; the field is
recorded before the flight is posted, so a retry goes to the same one, and forgotten again when
the server refuses the post (no such field, a bad token), so a later `--field` can correct it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from khet.vision import products
from khet.vision.bundle import file_sha256
from khet.vision.outputs import fsync_dir, fsync_file

from khet.errors import AuthError, KhetError, NotFoundError, OutputError, TooLargeError

from .journal import STATE_DIR, Journal

CHUNK = 1 << 20
RETRIES = 3  # a request whose connection failed is tried again this often (0.2, 0.4, 0.8 s)
MIN_CHUNK = 1024  # a chunk is halved down to this while the link drops before it is through
MAX_DROPS_WITHOUT_PROGRESS = 4  # drops in a row of the smallest chunk: the link is down
API = "/api/v1"


def outbox_dir(out_dir: Path) -> Path:
    """Where results wait for `edge sync` under an output folder."""
    return Path(out_dir) / STATE_DIR / "outbox"


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem (an SD card), or links not supported
        shutil.copyfile(src, tmp)
        fsync_file(tmp)  # a copy's bytes, durable before its name
    os.replace(tmp, dest)


def stage(
    out_dir: Path, name: str, result_dir: Path, imagery: list[Path], summary: dict[str, Any]
) -> dict[str, Any]:
    """Put a finished capture's results in the outbox; returns the entry for the journal. With
    `imagery` (`--with-imagery`) the heavy results go too."""
    box = outbox_dir(out_dir) / name
    try:
        shutil.rmtree(box, ignore_errors=True)
        files = []
        present = [f.relative_to(result_dir).as_posix() for f in result_dir.rglob("*")]
        wanted = [
            (r, result_dir / r, box / r)
            for r in products.synced_names(present, heavy=bool(imagery))
        ]
        wanted += [("imagery", f, box / "imagery" / f.name) for f in imagery]
        for role, src, dest in wanted:
            _link(src, dest)
            files.append(
                {
                    "role": role,
                    "path": str(dest.relative_to(out_dir)),
                    "size": dest.stat().st_size,
                    "sha256": file_sha256(dest),
                }
            )
        for d in {dest.parent for _, _, dest in wanted}:  # the names, durable before "done"
            fsync_dir(d)
        fsync_dir(box.parent)
    except OSError as e:
        raise OutputError(f"Cannot put the results of {name} in the outbox ({e}).") from e
    summary_sha = next(f["sha256"] for f in files if f["role"] == "summary.json")
    return {"client_id": summary_sha, "captured_at": _captured_at(summary), "files": files}


def _captured_at(summary: dict[str, Any]) -> str | None:
    taken = ((summary.get("input") or {}).get("camera") or {}).get("taken_at")
    if not taken:
        return None
    t = str(taken).strip()
    if len(t) >= 19 and t[4] == ":" and t[7] == ":":  # EXIF "YYYY:MM:DD HH:MM:SS"
        return f"{t[0:4]}-{t[5:7]}-{t[8:10]}T{t[11:19]}"
    return t


@dataclass
class SyncReport:
    synced: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    already: int = 0
    existing: int = 0  # flights the server already had (a retry, a rebuilt journal)
    bytes_needed: int = 0  # what the server lacked when each upload started
    drops: int = 0  # connections that dropped mid-chunk and were resumed in this sync

    def line(self) -> str:
        # `synced` holds the flights the server already had too: each is counted once.
        parts = [f"{len(self.synced) - self.existing} flight(s) sent"]
        if self.failed:
            parts.append(f"{len(self.failed)} waiting with errors")
        if self.already:
            parts.append(f"{self.already} sent before")
        if self.existing:
            parts.append(f"{self.existing} already on the server")
        if self.drops:
            parts.append(f"link dropped {self.drops} time(s) mid-chunk, resumed each time")
        return "sync: " + ", ".join(parts)


class Unreachable(KhetError):
    """No network, or the server failing: everything waits for the next sync."""


class _Client:
    """The service's upload and flight endpoints; errors become `KhetError`s."""

    def __init__(self, server: str, token: str, timeout: float, transport: Any = None) -> None:
        import httpx

        self.server = server.rstrip("/")
        self.http = httpx.Client(
            base_url=self.server,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "khet-edge"},
        )
        self.report = SyncReport()
        self.pause = 0.2  # seconds before the first retry; doubles each time
        self.step: int | None = None  # chunk size that the link lets through (upload())

    def close(self) -> None:
        self.http.close()

    def call(
        self, method: str, url: str, *, retries: int = RETRIES, **kw: Any
    ) -> tuple[int, dict[str, Any]]:
        """One request; a connection that fails is tried again `retries` times (every call of
        the contract is idempotent), then the network is taken to be down (`Unreachable`)."""
        import httpx

        for attempt in range(retries + 1):
            try:
                r = self.http.request(method, API + url, **kw)
                break
            except httpx.HTTPError as e:
                if attempt < retries:
                    time.sleep(min(self.pause * 2**attempt, 5.0))
                    continue
                raise Unreachable(
                    f"Cannot reach the server at {self.server} ({type(e).__name__}); the results "
                    "stay in the outbox: run `khet edge sync` again when the network is back."
                ) from e
        try:
            body = r.json() if r.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {"value": body}
        if r.status_code == 409 and "offset" in body:
            return r.status_code, body
        if r.status_code >= 400:
            detail = (
                body.get("message") or body.get("detail") or body.get("error") or r.reason_phrase
            )
            if r.status_code == 401:
                raise AuthError(
                    f"The server refused the token ({detail}). Create a new one with "
                    "`khet token create` on the server."
                )
            if r.status_code == 404:
                kind, _, rest = url.strip("/").partition("/")
                raise NotFoundError(
                    f"The server has no {kind[:-1]} {rest.split('/')[0]} ({detail})."
                )
            if r.status_code == 413:
                raise TooLargeError(f"The server refused a file as too large ({detail}).")
            if r.status_code >= 500:
                raise Unreachable(
                    f"The server has a problem ({r.status_code}: {detail}); the results stay in "
                    "the outbox: run `khet edge sync` again later."
                )
            raise KhetError(f"The server answered {r.status_code} to {method} {url}: {detail}.")
        return r.status_code, body


def upload(
    client: _Client,
    path: Path,
    size: int,
    sha256: str,
    upload_id: str | None,
    remember: Any,
    chunk: int = CHUNK,
) -> str:
    """Send the bytes the service lacks; `remember(id, complete)` records progress."""
    state: dict[str, Any] | None = None
    if upload_id:
        try:
            _, state = client.call("GET", f"/uploads/{upload_id}")
        except NotFoundError:
            upload_id = None
    if not upload_id:
        _, state = client.call(
            "POST", "/uploads", json={"filename": path.name, "size": size, "sha256": sha256}
        )
        upload_id = str(state["id"])
        remember(upload_id, bool(state.get("complete")))
    assert state is not None
    offset, complete = int(state.get("offset", 0)), bool(state.get("complete"))
    client.report.bytes_needed += 0 if complete else size - offset
    stalled = drops = streak = 0
    # The chunk size now: halved while drops keep nothing, grown back after; it carries over
    # from file to file (the link is the same).
    step = min(chunk, client.step or chunk)
    with open(path, "rb") as fh:
        while not complete:
            fh.seek(offset)
            data = fh.read(step)
            if not data:
                raise KhetError(
                    f"The server holds all {size} bytes of {path.name} but does not "
                    "accept it as complete (checksum mismatch?)."
                )
            end = offset + len(data) - 1
            try:
                _, body = client.call(
                    "PUT",
                    f"/uploads/{upload_id}",
                    retries=0,  # not sent again blindly: the server may have kept part of it
                    content=data,
                    headers={
                        "Content-Range": f"bytes {offset}-{end}/{size}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                streak += 1
                if streak >= 4 and step < chunk:  # the link holds again: larger chunks
                    step, streak = min(chunk, step * 2), 0
            except Unreachable:
                # The link dropped mid-chunk. The server keeps what its reader took in (all but
                # the last few kB in flight); ask where it stands and go on from there. A drop
                # that kept nothing halves the chunk, so a link that drops every few kB still
                # gets whole chunks through; only drops with the smallest chunk count as down.
                client.report.drops += 1
                streak = 0
                # A moment for the server to finish with the dropped request (it keeps its
                # bytes), so that the offset asked for next counts them.
                time.sleep(client.pause / 2)
                _, body = client.call("GET", f"/uploads/{upload_id}")
                if int(body.get("offset", offset)) <= offset:
                    if step > MIN_CHUNK:
                        step = max(MIN_CHUNK, step // 2)
                    else:
                        drops += 1
                        if drops > MAX_DROPS_WITHOUT_PROGRESS:
                            raise
                        if drops > 1:  # a link that stays down: wait a little longer each time
                            time.sleep(min(client.pause * 2 ** (drops - 2), 5.0))
            new = int(body.get("offset", offset))
            complete = bool(body.get("complete"))
            if new > offset:
                drops = 0
                stalled = 0
            elif not complete:
                stalled += 1
                if stalled > 64:
                    raise KhetError(
                        f"The server does not take more of {path.name} (stuck at byte {offset})."
                    )
            offset = new
            client.step = step
    remember(upload_id, True)
    return upload_id


def sync(
    journal: Journal,
    server: str,
    token: str,
    field_id: str | None = None,
    *,
    chunk: int = CHUNK,
    timeout: float = 60.0,
    transport: Any = None,
    log: Any = None,
) -> SyncReport:
    """Upload every pending outbox entry as a flight; see the module note."""
    out_dir = journal.out_dir
    with _sync_lock(journal, log):
        return _sync(journal, out_dir, server, token, field_id, chunk, timeout, transport, log)


@contextmanager
def _sync_lock(journal: Journal, log: Any) -> Iterator[None]:
    """One sync of an output folder at a time: a second (the watcher's and a manual one, or a
    sync started twice) waits for the first, then finds what is still pending. Two syncs side by
    side would send the same bytes twice and fight over the same uploads."""
    import fcntl

    path = journal.state_dir / "sync.lock"
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if log:
                log("another sync of this folder is running; waiting for it to finish")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def _sync(
    journal: Journal,
    out_dir: Path,
    server: str,
    token: str,
    field_id: str | None,
    chunk: int,
    timeout: float,
    transport: Any,
    log: Any,
) -> SyncReport:
    _tidy(journal)
    client = _Client(server, token, timeout, transport)
    report = client.report
    report.already = sum(1 for i in journal.outbox_items() if i["state"] == "synced")
    try:
        for item in journal.pending():
            name = item["capture"]
            fld = item["field"] or field_id
            if not fld:
                msg = "No field given: run `khet edge sync --field FIELD_ID`."
                journal.set_outbox(name, message=msg)
                report.failed[name] = msg
                continue
            given_now = not item["field"]
            if given_now:
                journal.set_outbox(name, field=str(fld))
            try:
                flight, created = _send(client, journal, out_dir, item, str(fld), chunk)
            except Unreachable:  # nothing can be sent now; the field stays (see above)
                raise
            except AuthError:
                if given_now:  # refused before any flight was made: no field to keep
                    journal.forget_field(name)
                raise
            except ResultChanged as e:  # not this result any more: analysed again first
                journal.reopen(name, e.message)
                report.failed[name] = e.message
                if log:
                    log(f"{name}: not sent: {e.message}")
                continue
            except KhetError as e:  # this entry's problem (refused, missing): the others may go
                if given_now:  # the server answered no: a mistyped --field must not stick
                    journal.forget_field(name)
                journal.set_outbox(name, message=e.message)
                report.failed[name] = e.message
                if log:
                    log(f"{name}: not sent: {e.message}")
                continue
            journal.set_outbox(name, state="synced", flight_id=flight)
            report.synced.append(name)
            report.existing += 0 if created else 1
            if log:
                how = "sent as" if created else "already on the server as"
                log(f"{name}: {how} flight {flight} of field {fld}")
            _tidy(journal)
    finally:
        client.close()
    return report


class ResultChanged(OutputError):
    """An outbox file no longer holds the bytes the analysis wrote."""


def _send(
    client: _Client, journal: Journal, out_dir: Path, item: dict[str, Any], fld: str, chunk: int
) -> tuple[str, bool]:
    """Upload an entry's files and post its flight: (flight id, True when newly made)."""
    name = item["capture"]
    ids: dict[str, str] = {}
    imagery: list[str] = []
    for f in item["files"]:
        uid = f["upload_id"] if f["complete"] else None  # complete: the bytes are not needed
        if uid is None:
            path = out_dir / f["path"]
            if (
                not path.is_file()
                or path.stat().st_size != f["size"]
                or file_sha256(path) != f["sha256"]
            ):
                raise ResultChanged(
                    f"Its result {f['path']} was changed or removed after the analysis: the "
                    "next `khet edge run` analyses the capture again, and the sync after it "
                    "sends the new result."
                )

            def remember(uid: str, complete: bool, _p: str = f["path"]) -> None:
                journal.set_upload(name, _p, uid, complete)

            uid = upload(client, path, f["size"], f["sha256"], f["upload_id"], remember, chunk)
        if f["role"] == "imagery":
            imagery.append(uid)
        else:
            ids[f["role"]] = uid
    body: dict[str, Any] = {"uploads": imagery, "client_id": item["client_id"], "results": ids}
    if item.get("captured_at"):
        body["captured_at"] = item["captured_at"]
    if imagery and item.get("bands"):
        body["bands"] = json.loads(item["bands"])
    code, flight = client.call("POST", f"/fields/{fld}/flights", json=body)
    return str(flight.get("id", "")), code == 201


def _tidy(journal: Journal) -> None:
    """Free the disk space of entries already sent (their results stay in OUT/<capture>/)."""
    box = outbox_dir(journal.out_dir)
    for item in journal.outbox_items():
        if item["state"] == "synced" and (box / item["capture"]).exists():
            shutil.rmtree(box / item["capture"], ignore_errors=True)
