"""The edge runner's memory across power losses: one SQLite file in the output folder.

SQLite (standard library, rollback journal, `synchronous=FULL`) gives what a device that may lose
power at any moment needs: each state change is one transaction that is either on disk or not.
The journal is the only place that says a capture is done; a `summary.json` on disk without the
journal's word is not trusted (the capture is analyzed again, which replaces it).

Capture states: `running` (started; found so at start-up means the run was interrupted),
`done`, `failed` (with the message; not retried unless its files change).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khet.errors import OutputError

STATE_DIR = ".khet-edge"
DB_NAME = "state.sqlite"
MAX_ATTEMPTS = 3  # a capture that kills the process this often is marked failed, not retried

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    key TEXT PRIMARY KEY,          -- where it came from (relative path of the capture)
    name TEXT UNIQUE NOT NULL,     -- its folder under OUT
    files TEXT NOT NULL,           -- JSON list of paths
    fingerprint TEXT NOT NULL,     -- sizes and mtimes when analyzed
    status TEXT NOT NULL,          -- running, done, failed
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    field TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trusted_bundles (
    file TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    capture TEXT PRIMARY KEY,      -- captures.name
    field TEXT,
    client_id TEXT NOT NULL,
    captured_at TEXT,
    bands TEXT,                    -- JSON list given with --bands, sent with the imagery
    state TEXT NOT NULL,           -- pending, synced
    flight_id TEXT,
    message TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_files (
    capture TEXT NOT NULL,
    role TEXT NOT NULL,            -- summary.json, zones.geojson, classes.tif, imagery
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    upload_id TEXT,
    complete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (capture, path)
);
"""


@dataclass
class CaptureRecord:
    key: str
    name: str
    files: list[str]
    fingerprint: str
    status: str
    message: str | None
    attempts: int
    field: str | None


class Journal:
    """The state database of one edge output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.state_dir = self.out_dir / STATE_DIR
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.state_dir / DB_NAME, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
            if "bands" not in cols:  # a state file from before the column
                self._db.execute("ALTER TABLE outbox ADD COLUMN bands TEXT")
        except (OSError, sqlite3.Error) as e:
            raise OutputError(f"Cannot keep the edge state in {self.state_dir} ({e}).") from e
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- captures ------------------------------------------------------------------------------
    def capture(self, key: str) -> CaptureRecord | None:
        row = self._db.execute("SELECT * FROM captures WHERE key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def captures(self, status: str | None = None) -> list[CaptureRecord]:
        q, args = "SELECT * FROM captures", ()
        if status:
            q, args = q + " WHERE status = ?", (status,)
        return [_record(r) for r in self._db.execute(q + " ORDER BY key", args)]

    def name_for(self, key: str, wanted: str, alternative: str) -> str:
        """The output folder name of a capture: stable once given, never shared by two captures."""
        rec = self.capture(key)
        if rec:
            return rec.name
        taken = {r[0] for r in self._db.execute("SELECT name FROM captures")}
        for n in (wanted, alternative):
            if n not in taken:
                return n
        i = 2
        while f"{alternative}_{i}" in taken:
            i += 1
        return f"{alternative}_{i}"

    def begin(
        self, key: str, name: str, files: list[str], fingerprint: str, field: str | None
    ) -> CaptureRecord:
        """Mark a capture as running (committed before any work starts) and count the attempt.

        Attempts count runs that never finished (power loss, a crash) on the same files.
        """
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO captures (key, name, files, fingerprint, status, attempts, field,"
                " updated) VALUES (?, ?, ?, ?, 'running', 1, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET files = excluded.files,"
                " fingerprint = excluded.fingerprint, status = 'running', message = NULL,"
                " attempts = CASE WHEN captures.status = 'running'"
                " AND captures.fingerprint = excluded.fingerprint"
                "   THEN captures.attempts + 1 ELSE 1 END,"
                " field = excluded.field, updated = excluded.updated",
                (key, name, json.dumps(files), fingerprint, field, now),
            )
        rec = self.capture(key)
        assert rec is not None
        return rec

    def fail(self, key: str, message: str) -> None:
        self._db.execute(
            "UPDATE captures SET status = 'failed', message = ?, updated = ? WHERE key = ?",
            (message, time.time(), key),
        )

    def finish(self, key: str, outbox: dict[str, Any] | None) -> None:
        """Mark a capture done and, in the same transaction, put its results in the outbox."""
        rec = self.capture(key)
        assert rec is not None
        with self.transaction() as db:
            db.execute(
                "UPDATE captures SET status = 'done', message = NULL, updated = ? WHERE key = ?",
                (time.time(), key),
            )
            if outbox is not None:
                db.execute("DELETE FROM outbox_files WHERE capture = ?", (rec.name,))
                db.execute(
                    "INSERT OR REPLACE INTO outbox (capture, field, client_id, captured_at,"
                    " bands, state, updated) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        rec.name,
                        rec.field,
                        outbox["client_id"],
                        outbox.get("captured_at"),
                        json.dumps(outbox["bands"]) if outbox.get("bands") else None,
                        time.time(),
                    ),
                )
                for f in outbox["files"]:
                    db.execute(
                        "INSERT INTO outbox_files (capture, role, path, size, sha256)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (rec.name, f["role"], f["path"], f["size"], f["sha256"]),
                    )

    # -- bundles -------------------------------------------------------------------------------
    def trusted_sha256(self, file: str) -> str | None:
        row = self._db.execute(
            "SELECT sha256 FROM trusted_bundles WHERE file = ?", (file,)
        ).fetchone()
        return row[0] if row else None

    def trust(self, file: str, sha256: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO trusted_bundles (file, sha256, first_seen) VALUES (?, ?, ?)",
            (file, sha256, time.time()),
        )

    # -- outbox --------------------------------------------------------------------------------
    def pending(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM outbox WHERE state = 'pending' ORDER BY capture")
        out = []
        for r in rows.fetchall():
            item = dict(r)
            item["files"] = [
                dict(f)
                for f in self._db.execute(
                    "SELECT * FROM outbox_files WHERE capture = ?"
                    " ORDER BY role = 'imagery' DESC, path",
                    (r["capture"],),
                )
            ]
            out.append(item)
        return out

    def outbox_items(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM outbox ORDER BY capture")]

    def set_upload(self, capture: str, path: str, upload_id: str | None, complete: bool) -> None:
        self._db.execute(
            "UPDATE outbox_files SET upload_id = ?, complete = ? WHERE capture = ? AND path = ?",
            (upload_id, int(complete), capture, path),
        )

    def set_outbox(
        self,
        capture: str,
        *,
        state: str | None = None,
        flight_id: str | None = None,
        message: str | None = None,
        field: str | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE outbox SET state = COALESCE(?, state), flight_id = COALESCE(?, flight_id),"
            " message = ?, field = COALESCE(?, field), updated = ? WHERE capture = ?",
            (state, flight_id, message, field, time.time(), capture),
        )


def _record(row: sqlite3.Row) -> CaptureRecord:
    return CaptureRecord(
        key=row["key"],
        name=row["name"],
        files=json.loads(row["files"]),
        fingerprint=row["fingerprint"],
        status=row["status"],
        message=row["message"],
        attempts=row["attempts"],
        field=row["field"],
    )
