"""Durable jobs with real processes: a worker killed with SIGKILL mid-job loses nothing.

Huey drops a message once a worker has taken it; the jobs table and the heartbeat bring the job
back. Run on SQLite + SqliteHuey (the embedded default) and on PostgreSQL + RedisHuey (the
scaled-out setting).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import wait_for
from tests.service.conftest import POSTGRES_URL, REDIS_URL, reset_postgres
from tests.service.rasters import make_geotiff

ROOT = Path(__file__).resolve().parents[2]


def _job(flight_id: int) -> dict:
    from khet.service.db import Job, session_scope
    from sqlalchemy import select

    with session_scope() as db:
        job = db.scalar(select(Job).where(Job.flight_id == flight_id))
        assert job is not None
        return {
            "status": job.status,
            "progress": job.progress,
            "attempts": job.attempts,
            "error": job.error,
        }


def _start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "khet.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite+sqlitehuey", "postgres+redis"])
def test_killed_worker_job_is_recovered(backend, tmp_path, monkeypatch, use_test_models):
    from fastapi.testclient import TestClient
    from khet.service.db import dispose_engines
    from khet.service.main import create_app

    from khet.settings import get_settings
    from tests.service.conftest import Api

    dispose_engines()
    queue = f"khet-kill-{os.getpid()}-{tmp_path.name}"
    monkeypatch.setenv("KHET_QUEUE_NAME", queue)
    monkeypatch.setenv("KHET_HEARTBEAT_SECONDS", "0.3")
    monkeypatch.setenv("KHET_STALE_SECONDS", "2")
    monkeypatch.setenv("KHET_BATCH_SIZE", "1")  # slow the job down so it can be killed mid-way
    if backend == "postgres+redis":
        import redis

        reset_postgres(POSTGRES_URL)
        monkeypatch.setenv("KHET_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("KHET_REDIS_URL", REDIS_URL)
        redis.Redis.from_url(REDIS_URL).flushdb()
    else:
        monkeypatch.delenv("KHET_DATABASE_URL", raising=False)
        monkeypatch.delenv("KHET_REDIS_URL", raising=False)
    get_settings.cache_clear()
    image = make_geotiff(tmp_path / "big.tif", size=2048, bands=("red", "green", "blue"))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()

    with TestClient(create_app()) as client:
        api = Api(client)
        alice = api.user()
        _, field = api.farm_field(alice)
        up = api.upload(alice, image, chunk=4 * 1024 * 1024)
        r = client.post(
            f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
        )
        assert r.status_code == 201, r.text
        flight = r.json()["id"]

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = tmp_path / "worker.log"
        first = _start_worker(env, log)
        try:
            wait_for(
                lambda: _job(flight)["status"] == "running" and _job(flight)["progress"] > 0.02,
                60,
                "the first worker to make progress",
                log,
            )
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        state = _job(flight)
        assert state["status"] == "running" and state["progress"] < 1, state

        second = _start_worker(env, log)
        try:
            wait_for(
                lambda: _job(flight)["status"] in ("done", "failed"),
                120,
                "the second worker to finish the job",
                log,
            )
        finally:
            second.send_signal(signal.SIGINT)
            try:
                second.wait(15)
            except subprocess.TimeoutExpired:
                second.kill()
        state = _job(flight)
        assert state["status"] == "done", state
        assert state["attempts"] == 2, state

        r = client.get(f"/api/v1/flights/{flight}", headers=alice["headers"])
        body = r.json()
        assert body["status"] == "done" and "classes.tif" in body["results"]
        stored = Path(get_settings().data_dir).resolve()
        inputs = list(stored.glob(f"farms/*/fields/{field}/flights/{flight}/input/big.tif"))
        assert len(inputs) == 1
        assert hashlib.sha256(inputs[0].read_bytes()).hexdigest() == digest
        assert not list(stored.glob(f"farms/*/fields/{field}/flights/{flight}/.work-*"))
    dispose_engines()
