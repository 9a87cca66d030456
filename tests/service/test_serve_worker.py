"""`khet serve`'s job worker is supervised and dies with it, and /readyz tells the truth.

Before: `kill -9` of the embedded worker left jobs queued forever while /readyz said ok; `kill
-9` of serve left the worker orphaned and still taking jobs, and a restart added a second.
Real processes, SQLite and the on-disk Huey queue, as a field office runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.bundles import make_bundle
from tests.servers import free_port, run_khet, spawn_serve, wait_for, wait_until_serving
from tests.service.rasters import make_geotiff

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sugar cane 42"


def _workers(env_dir: str) -> list[psutil.Process]:
    """`khet worker` processes of this test (found by their data folder)."""
    out = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = p.info["cmdline"] or []
            if "khet.cli" in cmd and "worker" in cmd:
                if (p.environ() or {}).get("KHET_DATA_DIR") == env_dir:
                    out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def _serve(env: dict, port: int, log: Path) -> subprocess.Popen:
    return spawn_serve(env, port, log, processes=1, worker=True)


@pytest.mark.slow
def test_worker_is_supervised_and_dies_with_serve(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    make_bundle(models / "test-rgb.onnx", bands=("red", "green", "blue"), name="test-rgb")
    data = str(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("KHET_DATABASE_URL", "KHET_REDIS_URL")}
    env.update(
        KHET_DATA_DIR=data,
        KHET_MODELS_DIR=str(models),
        KHET_HEARTBEAT_SECONDS="0.5",
        KHET_QUEUE_NAME=f"serve-{os.getpid()}",
        PYTHONUNBUFFERED="1",
    )
    run_khet(env, "user", "add", "f@example.org", "--password", PASSWORD)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    image = make_geotiff(tmp_path / "f.tif", bands=("red", "green", "blue"))
    serve = _serve(env, port, log)
    serve2 = None
    try:
        wait_until_serving(url, serve, log)
        c = httpx.Client(base_url=url, timeout=30)
        assert c.post("/api/v1/session", json={"email": "f@example.org", "password": PASSWORD}
                      ).status_code == 200  # fmt: skip
        wait_for(lambda: c.get("/readyz").status_code == 200, 30, "a ready service", log)
        first = wait_for(lambda: _workers(data), 30, "the worker", log)
        assert len(first) == 1
        # The worker is killed: /readyz says so within seconds, serve starts another, and a
        # flight sent meanwhile is analysed.
        first[0].send_signal(signal.SIGKILL)
        first[0].wait(10)
        farm = c.post("/api/v1/farms", json={"name": "F"}).json()["id"]
        field = c.post(f"/api/v1/farms/{farm}/fields", json={"name": "N"}).json()["id"]
        with image.open("rb") as f:
            r = c.post(f"/api/v1/fields/{field}/flights/upload",
                       files={"files": ("f.tif", f, "image/tiff")})  # fmt: skip
        assert r.status_code == 201, r.text
        flight = r.json()["id"]
        second = wait_for(
            lambda: [w for w in _workers(data) if w.pid != first[0].pid], 30, "a new worker", log
        )
        assert len(_workers(data)) == 1
        wait_for(
            lambda: c.get(f"/api/v1/flights/{flight}").json()["status"] == "done",
            90,
            "the flight to be analysed by the new worker",
            log,
        )
        # The worker stops: readiness says so (a queue nobody takes from is not ready).
        serve_proc = psutil.Process(serve.pid)
        assert second[0].ppid() == serve.pid
        second[0].send_signal(signal.SIGSTOP)  # alive but silent, as a hung worker is
        try:
            r = wait_for(lambda: (x := c.get("/readyz")).status_code == 503 and x, 30,
                      "/readyz to notice the silent worker", log)  # fmt: skip
            assert r.json()["checks"]["worker"] != "ok"
        finally:
            second[0].send_signal(signal.SIGCONT)
        wait_for(lambda: c.get("/readyz").status_code == 200, 30, "/readyz ok again", log)
        # serve is killed with -9: its worker and web processes do not stay behind.
        serve_proc.send_signal(signal.SIGKILL)
        serve.wait(10)
        wait_for(lambda: not _workers(data), 20, "the orphaned worker to stop", log)
        # A new serve has exactly one worker.
        serve2 = _serve(env, port, log)
        wait_until_serving(url, serve2, log)
        wait_for(lambda: len(_workers(data)) == 1, 30, "one worker", log)
        time.sleep(2)
        assert len(_workers(data)) == 1
    finally:
        for proc in (serve, serve2):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for w in _workers(data):
            w.kill()
