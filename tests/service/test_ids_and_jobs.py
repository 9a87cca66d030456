"""Ids are never reused, a deleted flight's job stops, and a worker writes only to its own job.

The bug: farmer B deleted a flight while its job ran; farmer A's next flight got the same flight
and job ids (SQLite without AUTOINCREMENT hands out max(id) + 1 again), and B's still-running
worker then wrote progress and an error naming B's folders into A's job, so A's analysis never
ran. Run on SQLite and PostgreSQL; the queue is the real Huey (SQLite, or Redis with PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.service.conftest import REDIS_URL, drain_queue, run_queued_jobs
from tests.service.rasters import make_geotiff

ROOT = Path(__file__).resolve().parents[2]


def _job(flight_id: int) -> dict | None:
    from khet.service.db import Job, session_scope
    from sqlalchemy import select

    with session_scope() as db:
        job = db.scalar(select(Job).where(Job.flight_id == flight_id))
        if job is None:
            return None
        return {"id": job.id, "status": job.status, "error": job.error, "attempts": job.attempts}


def test_ids_are_never_reused(api, geotiff, use_test_models):
    c = api.client
    alice, bob = api.user(), api.user()
    _, field_a = api.farm_field(alice)
    farm_b, field_b = api.farm_field(bob)
    gone = api.flight(bob, field_b, geotiff)
    assert c.delete(f"/api/v1/flights/{gone['id']}", headers=bob["headers"]).status_code == 204
    new = api.flight(alice, field_a, geotiff)
    assert new["id"] > gone["id"]
    assert new["job"]["id"] > gone["job"]["id"]
    # The same for fields and farms.
    assert c.delete(f"/api/v1/farms/{farm_b}", headers=bob["headers"]).status_code == 204
    farm_a2, field_a2 = api.farm_field(alice)
    assert farm_a2 > farm_b and field_a2 > field_b


@pytest.mark.slow
def test_deleting_a_running_flight_stops_its_job(api, tmp_path, use_test_models, monkeypatch):
    """B's worker, whose flight is deleted under it, stops and writes nothing more: A's new
    flight, made meanwhile, keeps its own untouched queued job, which then runs normally; B's
    folder is not brought back."""
    from khet.service import storage
    from khet.service.jobs import run_job

    from khet.settings import get_settings

    monkeypatch.setenv("KHET_BATCH_SIZE", "1")  # a job long enough to delete it mid-way
    monkeypatch.setenv("KHET_HEARTBEAT_SECONDS", "0.2")
    get_settings.cache_clear()
    big = make_geotiff(tmp_path / "big.tif", size=1536, bands=("red", "green", "blue"))
    small = make_geotiff(tmp_path / "small.tif", size=128, bands=("red", "green", "blue"))
    c = api.client
    alice, bob = api.user(), api.user()
    _, field_a = api.farm_field(alice)
    _, field_b = api.farm_field(bob)
    fb = api.flight(bob, field_b, big)
    fdir_b = storage.flight_dir(
        c.get(f"/api/v1/fields/{field_b}", headers=bob["headers"]).json()["farm_id"],
        field_b,
        fb["id"],
    )
    worker = threading.Thread(target=run_job, args=(fb["job"]["id"],))
    worker.start()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        r = c.get(f"/api/v1/flights/{fb['id']}", headers=bob["headers"]).json()
        if r["status"] == "running" and r["progress"] > 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("B's job never started")
    assert c.delete(f"/api/v1/flights/{fb['id']}", headers=bob["headers"]).status_code == 204
    fa = api.flight(alice, field_a, small)
    worker.join(120)
    assert not worker.is_alive()
    assert fa["id"] != fb["id"] and fa["job"]["id"] != fb["job"]["id"]
    job_a = _job(fa["id"])
    assert job_a["status"] == "queued" and job_a["error"] is None and job_a["attempts"] == 0
    assert not fdir_b.exists(), "the deleted flight's folder came back"
    assert not list((storage.data_dir() / "work").glob("*")), "the stopped job left its work"
    drain_queue()
    run_queued_jobs()
    body = c.get(f"/api/v1/flights/{fa['id']}", headers=alice["headers"]).json()
    assert body["status"] == "done", body
    assert body["summary"]["input"]["width"] == 128  # A's own image, not B's


def test_worker_writes_only_while_it_owns_the_job(api, geotiff, use_test_models):
    """A worker whose job was re-queued and claimed by another (it was silent too long) cannot
    finish it: its writes name a token the job no longer has."""
    from khet.service.config import service_settings
    from khet.service.jobs import _claim, _finish

    alice = api.user()
    _, field = api.farm_field(alice)
    fl = api.flight(alice, field, geotiff)
    job_id = fl["job"]["id"]
    first = _claim(job_id, service_settings())
    assert first is not None
    assert _claim(job_id, service_settings()) is None  # running and fresh: not claimable
    from datetime import timedelta

    from khet.service.db import Job, now, session_scope
    from khet.service.jobs import requeue_stale

    with session_scope() as db:
        db.get(Job, job_id).heartbeat_at = now() - timedelta(hours=1)
    assert requeue_stale() == [job_id]
    second = _claim(job_id, service_settings())
    assert second is not None and second != first
    _finish(job_id, first, "failed", error="stale worker")  # the silent one wakes up
    assert _job(fl["id"])["status"] == "running"
    _finish(job_id, second, "done")
    assert _job(fl["id"])["status"] == "done"


def test_fair_queue(api, database, geotiff, use_test_models, monkeypatch):
    """A tenant who queued three flights does not make another wait for all three: the real
    queue (Huey on SQLite; on Redis beside PostgreSQL) runs A, B, A, A."""
    from khet.service.db import Job, session_scope
    from sqlalchemy import select

    from khet.settings import get_settings

    if database == "postgres":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        monkeypatch.setenv("KHET_REDIS_URL", REDIS_URL)
        get_settings.cache_clear()

    alice, bob = api.user(), api.user()
    _, field_a = api.farm_field(alice)
    _, field_b = api.farm_field(bob)
    a = [api.flight(alice, field_a, geotiff)["job"]["id"] for _ in range(3)]
    b = api.flight(bob, field_b, geotiff)["job"]["id"]
    assert drain_queue() == 4
    with session_scope() as db:
        order = [j.id for j in db.scalars(select(Job).order_by(Job.started_at))]
        assert all(j.status == "done" for j in db.scalars(select(Job)))
    assert order == [a[0], b, a[1], a[2]], order


def test_per_user_job_limit(api, geotiff, use_test_models, monkeypatch):
    from khet.settings import get_settings

    monkeypatch.setenv("KHET_MAX_JOBS_PER_USER", "2")
    get_settings.cache_clear()
    alice, bob = api.user(), api.user()
    _, field_a = api.farm_field(alice)
    _, field_b = api.farm_field(bob)
    for _ in range(2):
        api.flight(alice, field_a, geotiff)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field_a}/flights", json={"uploads": [up]}, headers=alice["headers"]
    )
    assert r.status_code == 429 and "KHET_MAX_JOBS_PER_USER" in r.json()["detail"], r.text
    api.flight(bob, field_b, geotiff)  # another tenant is not held back
    run_queued_jobs()
    api.flight(alice, field_a, geotiff)  # and once A's are done, A may send more


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_migration_keeps_rows_and_stops_reuse(database, tmp_path):
    """An existing SQLite database (schema 0002, ids reused) is rebuilt with AUTOINCREMENT
    without losing a row: dropping the old tables must not cascade to their children."""
    from alembic import command
    from alembic.config import Config
    from khet.service.db import dispose_engines, get_engine, migrate
    from sqlalchemy import text

    dispose_engines()
    engine = get_engine()
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "service" / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    t = "2026-06-01 00:00:00"
    rows = {
        "users": f"(1, 'a@x.org', NULL, 'farmer', 'h', '{t}')",
        "api_tokens": f"(1, 1, 'dev', 'abc', '{t}', NULL)",
        "farms": f"(1, 'F', 1, '{t}')",
        "fields": f"(1, 1, 'N', NULL, NULL, NULL, '{t}')",
        "flights": f"(1, 1, 1, 'service', NULL, NULL, NULL, '[]', NULL, NULL, '{t}'), "
        f"(2, 1, 1, 'service', NULL, NULL, NULL, '[]', NULL, NULL, '{t}')",
        "jobs": f"(1, 1, 'done', 1, NULL, 1, NULL, NULL, '{t}', NULL, NULL), "
        f"(2, 2, 'done', 1, NULL, 1, NULL, NULL, '{t}', NULL, NULL)",
    }
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        for table, values in rows.items():
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES {values}")
        conn.exec_driver_sql("DELETE FROM flights WHERE id = 2")
    migrate()
    with engine.begin() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in rows}
        assert counts == {
            "users": 1,
            "api_tokens": 1,
            "farms": 1,
            "fields": 1,
            "flights": 1,
            "jobs": 1,
        }
        expires = conn.execute(text("SELECT expires_at FROM api_tokens")).scalar()
        assert expires is not None  # old tokens expire too (a year on)
        insert = text(
            "INSERT INTO flights (field_id, source, inputs, created_at) "
            f"VALUES (1, 'service', '[]', '{t}')"
        )
        conn.execute(insert)
        conn.execute(text("DELETE FROM flights WHERE id = (SELECT max(id) FROM flights)"))
        conn.execute(insert)
        ids = [r[0] for r in conn.execute(text("SELECT id FROM flights ORDER BY id"))]
    assert ids == [1, 3], "a deleted flight's id was handed out again"
    dispose_engines()
