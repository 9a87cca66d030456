"""The edge runner's memory across power losses: one SQLite file in the output folder.

SQLite (standard library, rollback journal truncated at commit, `synchronous=FULL`) gives what a
device that may lose power at any moment needs: each state change is one transaction that is
either on disk or not.
The journal and the folder's stamp (`edge.stamp`, written last, with every result's sha256) are
the only things that say a capture is done; a `summary.json` on disk without them is not trusted
(the capture is analyzed again, which replaces it).

Capture states: `running` (started; found so at start-up means the run did not finish),
`done`, `failed` (with the message; not retried unless its files change).

A run that did not finish is an interruption (power cut, `kill`, the device stopped) unless
there is evidence that the capture caused it: a fatal signal that `faulthandler` wrote to
`OUT/.khet-edge/fatal.log` while it ran (a crash in native code), or an out-of-memory kill
counted by the kernel (`oom_kill` in /proc/vmstat) during it on the same boot. Interruptions
are counted but never make a capture fail; `MAX_CRASHES` crashes caused by the capture do.

The journal can be lost (deleted, truncated, damaged): every finished result folder carries a
stamp (`edge.stamp`) from which the runner rebuilds it, so nothing done is analyzed again.
"""

from __future__ import annotations

import json
import os
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
MAX_CRASHES = 3  # a capture that crashes the process this often is marked failed, not retried

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    key TEXT PRIMARY KEY,          -- where it came from (relative path of the capture)
    name TEXT UNIQUE NOT NULL,     -- its folder under OUT
    files TEXT NOT NULL,           -- JSON list of paths
    fingerprint TEXT NOT NULL,     -- sizes and mtimes when analyzed
    status TEXT NOT NULL,          -- running, done, failed
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,  -- starts on these files
    field TEXT,
    updated REAL NOT NULL,
    crashes INTEGER NOT NULL DEFAULT 0,        -- runs the capture itself brought down
    interruptions INTEGER NOT NULL DEFAULT 0,  -- runs cut by power loss, kill or stop
    boot_id TEXT,                  -- the boot the last start happened in
    oom_kills INTEGER,             -- the kernel's OOM-kill count at the last start
    fatal_mark INTEGER             -- size of fatal.log at the last start
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
    state TEXT NOT NULL,           -- pending, synced, stale (its result changed: analyse again)
    flight_id TEXT,
    message TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_files (
    capture TEXT NOT NULL,
    role TEXT NOT NULL,            -- a result (summary.json, indices/ndvi.tif, ...) or imagery
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    upload_id TEXT,
    complete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (capture, path)
);
"""


_CAPTURE_COLUMNS = {
    "crashes": "INTEGER NOT NULL DEFAULT 0",
    "interruptions": "INTEGER NOT NULL DEFAULT 0",
    "boot_id": "TEXT",
    "oom_kills": "INTEGER",
    "fatal_mark": "INTEGER",
}


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
    crashes: int = 0
    interruptions: int = 0
    boot_id: str | None = None
    oom_kills: int | None = None
    fatal_mark: int | None = None


class Journal:
    """The state database of one edge output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.state_dir = self.out_dir / STATE_DIR
        # Why the journal starts empty, when it does: None (first use or intact), "missing",
        # "empty" (truncated to nothing) or "damaged" (moved aside as state.sqlite.damaged-*).
        self.lost: str | None = None
        path = self.state_dir / DB_NAME
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            had_state = any(p.name != DB_NAME for p in self.state_dir.iterdir())
            if not path.exists():
                self.lost = "missing" if had_state else None
            elif path.stat().st_size == 0:
                self.lost = "empty"
            try:
                self._open(path)
            except sqlite3.DatabaseError:  # not a database (damaged): keep it aside, start anew
                self.lost = "damaged"
                aside = path.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
                os.replace(path, aside)
                for extra in (path.with_name(DB_NAME + "-journal"),):
                    extra.unlink(missing_ok=True)
                self._open(path)
        except (OSError, sqlite3.Error) as e:
            raise OutputError(f"Cannot keep the edge state in {self.state_dir} ({e}).") from e
        self._db.row_factory = sqlite3.Row

    def _open(self, path: Path) -> None:
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            # A rollback journal that is deleted at commit (SQLite's default) can come back
            # after a power cut, the unlink not being synced, and roll the last commit back
            # (a capture done on disk, `running` in the journal). Truncated with
            # synchronous=FULL, the journal is synced at each commit.
            self._db.execute("PRAGMA journal_mode=TRUNCATE")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
            if "bands" not in cols:  # a state file from before the column
                self._db.execute("ALTER TABLE outbox ADD COLUMN bands TEXT")
            have = {r[1] for r in self._db.execute("PRAGMA table_info(captures)")}
            for col, decl in _CAPTURE_COLUMNS.items():  # a state file from before them
                if col not in have:
                    self._db.execute(f"ALTER TABLE captures ADD COLUMN {col} {decl}")
        except BaseException:
            self._db.close()
            raise

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
        where = " WHERE status = ?" if status else ""
        args = (status,) if status else ()
        return [
            _record(r)
            for r in self._db.execute(f"SELECT * FROM captures{where} ORDER BY key", args)
        ]

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
        self,
        key: str,
        name: str,
        files: list[str],
        fingerprint: str,
        field: str | None,
        *,
        boot_id: str | None = None,
        oom_kills: int | None = None,
        fatal_mark: int | None = None,
    ) -> CaptureRecord:
        """Mark a capture as running (committed before any work starts), with what tells, at the
        next start, an interruption from a crash the capture caused (see the module note).

        Crashes and interruptions are kept while the files stay the same; new files start anew.
        A run that names no field keeps the field an earlier run gave the capture.
        """
        now = time.time()
        same = "captures.fingerprint = excluded.fingerprint"
        with self.transaction() as db:
            db.execute(
                "INSERT INTO captures (key, name, files, fingerprint, status, attempts, field,"
                " updated, boot_id, oom_kills, fatal_mark)"
                " VALUES (?, ?, ?, ?, 'running', 1, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET files = excluded.files,"
                " fingerprint = excluded.fingerprint, status = 'running', message = NULL,"
                f" attempts = CASE WHEN {same} THEN captures.attempts + 1 ELSE 1 END,"
                f" crashes = CASE WHEN {same} THEN captures.crashes ELSE 0 END,"
                f" interruptions = CASE WHEN {same} THEN captures.interruptions ELSE 0 END,"
                " field = COALESCE(excluded.field, captures.field), updated = excluded.updated,"
                " boot_id = excluded.boot_id, oom_kills = excluded.oom_kills,"
                " fatal_mark = excluded.fatal_mark",
                (key, name, json.dumps(files), fingerprint, field, now, boot_id, oom_kills,
                 fatal_mark),
            )  # fmt: skip
        rec = self.capture(key)
        assert rec is not None
        return rec

    def count_stop(self, key: str, crashed: bool) -> CaptureRecord:
        """Count a run of `key` that did not finish, as a crash or as an interruption."""
        col = "crashes" if crashed else "interruptions"
        self._db.execute(f"UPDATE captures SET {col} = {col} + 1 WHERE key = ?", (key,))
        rec = self.capture(key)
        assert rec is not None
        return rec

    def adopt(
        self,
        key: str,
        name: str,
        files: list[str],
        fingerprint: str,
        field: str | None,
        outbox: dict[str, Any] | None,
    ) -> None:
        """Record a capture found finished on disk (its stamp checked) as done."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO captures (key, name, files, fingerprint, status, attempts, field,"
                " updated) VALUES (?, ?, ?, ?, 'done', 1, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET name = excluded.name, files = excluded.files,"
                " fingerprint = excluded.fingerprint, status = 'done', message = NULL,"
                " field = excluded.field, updated = excluded.updated",
                (key, name, json.dumps(files), fingerprint, field, time.time()),
            )
        if outbox is not None:
            self.finish(key, outbox, keep_synced=True)

    def reopen(self, name: str, message: str) -> None:
        """A finished capture whose result was changed or removed after its analysis: the next
        run analyses it again (its fingerprint is forgotten, so it counts as new files), and
        its outbox entry is set aside ("stale") until then, so no sync sends what changed."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE captures SET status = 'failed', message = ?, fingerprint = '',"
                " updated = ? WHERE name = ?",
                (message, now, name),
            )
            db.execute(
                "UPDATE outbox SET state = 'stale', message = ?, updated = ? WHERE capture = ?",
                (message, now, name),
            )

    def fail(self, key: str, message: str) -> None:
        self._db.execute(
            "UPDATE captures SET status = 'failed', message = ?, updated = ? WHERE key = ?",
            (message, time.time(), key),
        )

    def finish(self, key: str, outbox: dict[str, Any] | None, *, keep_synced: bool = False) -> None:
        """Mark a capture done and, in the same transaction, put its results in the outbox.

        `keep_synced`: an entry already sent stays sent (a result adopted from its stamp)."""
        rec = self.capture(key)
        assert rec is not None
        with self.transaction() as db:
            if keep_synced and outbox is not None:
                row = db.execute(
                    "SELECT state, client_id FROM outbox WHERE capture = ?", (rec.name,)
                ).fetchone()
                if row and row[0] == "synced" and row[1] == outbox["client_id"]:
                    db.execute(
                        "UPDATE captures SET status = 'done', message = NULL, updated = ?"
                        " WHERE key = ?",
                        (time.time(), key),
                    )
                    return
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

    def outbox_entry(self, capture: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM outbox WHERE capture = ?", (capture,)).fetchone()
        return dict(row) if row else None

    def outbox_items(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM outbox ORDER BY capture")]

    def set_upload(self, capture: str, path: str, upload_id: str | None, complete: bool) -> None:
        self._db.execute(
            "UPDATE outbox_files SET upload_id = ?, complete = ? WHERE capture = ? AND path = ?",
            (upload_id, int(complete), capture, path),
        )

    def forget_field(self, capture: str) -> None:
        """The outbox entry has no field again (one a sync gave that the server refused)."""
        self._db.execute(
            "UPDATE outbox SET field = NULL, updated = ? WHERE capture = ?", (time.time(), capture)
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
        crashes=row["crashes"],
        interruptions=row["interruptions"],
        boot_id=row["boot_id"],
        oom_kills=row["oom_kills"],
        fatal_mark=row["fatal_mark"],
    )
