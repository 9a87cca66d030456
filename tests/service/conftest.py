"""Service fixtures: every API test runs on SQLite and on PostgreSQL, each with a clean schema.

PostgreSQL and Redis come from `.ci/services` (KHET_TEST_POSTGRES_URL, KHET_TEST_REDIS_URL); the
defaults below are the same values, so a developer machine set up like CI needs nothing else.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.rasters import make_geotiff

POSTGRES_URL = os.environ.get(
    "KHET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("KHET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, monkeypatch, tmp_path) -> Iterator[str]:
    """The database backend of this test, migrated from empty."""
    from khet.service.db import dispose_engines

    from khet.settings import get_settings

    dispose_engines()
    if request.param == "postgres":
        reset_postgres(POSTGRES_URL)
        monkeypatch.setenv("KHET_DATABASE_URL", POSTGRES_URL)
    else:
        monkeypatch.delenv("KHET_DATABASE_URL", raising=False)
    monkeypatch.setenv("KHET_QUEUE_NAME", f"khet-test-{os.getpid()}-{tmp_path.name}")
    get_settings.cache_clear()
    yield request.param
    dispose_engines()


@pytest.fixture
def sqlite_only(monkeypatch, tmp_path) -> Iterator[str]:
    from khet.service.db import dispose_engines

    from khet.settings import get_settings

    dispose_engines()
    monkeypatch.delenv("KHET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield "sqlite"
    dispose_engines()


class Api:
    """A TestClient plus helpers to make users and their tokens."""

    def __init__(self, client) -> None:
        self.client = client
        self._n = 0

    def user(self, role: str = "farmer", password: str = "correct horse") -> dict:
        from khet.service.db import session_scope
        from khet.service.routers.auth import add_user, make_token

        self._n += 1
        email = f"{role}{self._n}@example.org"
        with session_scope() as db:
            user = add_user(db, email, password, role)
            token, _ = make_token(db, user, "test")
            uid = user.id
        return {
            "id": uid,
            "email": email,
            "password": password,
            "headers": {"Authorization": f"Bearer {token}"},
        }

    def farm_field(self, who: dict, boundary: dict | None = None) -> tuple[int, int]:
        r = self.client.post("/api/v1/farms", json={"name": "Home farm"}, headers=who["headers"])
        assert r.status_code == 201, r.text
        farm = r.json()["id"]
        body: dict[str, object] = {"name": "North field", "crop": "wheat"}
        if boundary:
            body["boundary"] = boundary
        r = self.client.post(f"/api/v1/farms/{farm}/fields", json=body, headers=who["headers"])
        assert r.status_code == 201, r.text
        return farm, r.json()["id"]

    def flight(self, who: dict, field: int, path: Path, run: bool = False) -> dict:
        """A flight of `field` from the image at `path`, as `who`; analysed when `run`."""
        up = self.upload(who, path, chunk=4 << 20)
        r = self.client.post(
            f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=who["headers"]
        )
        assert r.status_code == 201, r.text
        if run:
            run_queued_jobs()
        return r.json()

    def upload(self, who: dict, path: Path, chunk: int = 64 * 1024, name: str | None = None) -> str:
        data = path.read_bytes()
        r = self.client.post(
            "/api/v1/uploads",
            headers=who["headers"],
            json={
                "filename": name or path.name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        )
        assert r.status_code in (200, 201), r.text
        up = r.json()
        offset = up["offset"]
        while offset < len(data):
            part = data[offset : offset + chunk]
            r = self.client.put(
                f"/api/v1/uploads/{up['id']}",
                content=part,
                headers={
                    **who["headers"],
                    "Content-Range": f"bytes {offset}-{offset + len(part) - 1}/{len(data)}",
                },
            )
            assert r.status_code == 200, r.text
            offset = r.json()["offset"]
        return up["id"]


@pytest.fixture
def api(database) -> Iterator[Api]:
    from fastapi.testclient import TestClient
    from khet.service.main import create_app

    with TestClient(create_app()) as client:
        yield Api(client)


@pytest.fixture
def geotiff(tmp_path) -> Path:
    return make_geotiff(tmp_path / "inputs" / "field.tif", bands=("red", "green", "blue"))


def run_queued_jobs() -> list[int]:
    """Run every queued job in this process (what a worker would do)."""
    from khet.service.db import Job, session_scope
    from khet.service.jobs import run_job
    from sqlalchemy import select

    with session_scope() as db:
        ids = list(db.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id)))
    for job_id in ids:
        run_job(job_id)
    return ids


def drain_queue() -> int:
    """Run every message waiting in the real job queue in this process, as a worker would
    (analyses and web copies alike); how many ran."""
    from khet.service.jobs import get_huey

    huey = get_huey()
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran
