"""The first requests after `khet serve` starts.

A fresh `make test` once failed because two request threads imported `rio_tiler.io` at the same
moment ("cannot import name 'AsyncBaseReader' from partially initialized module"): the first
imagery tile answered 500. Request threads must find every module they need already imported.
Two checks: in a fresh interpreter, requests of every kind import nothing new (deterministic);
and a freshly started real server answers a burst of concurrent first requests without a 5xx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import morecantile
import pytest

from tests.service.conftest import run_queued_jobs
from tests.service.rasters import bounds_lonlat

ROOT = Path(__file__).resolve().parents[2]
TMS = morecantile.tms.get("WebMercatorQuad")


def _finished_flight(api, geotiff) -> tuple[dict, int]:
    from khet.service.jobs import beat

    alice = api.user()
    _, field = api.farm_field(alice)
    up = api.upload(alice, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [up]}, headers=alice["headers"]
    )
    assert r.status_code == 201, r.text
    run_queued_jobs()
    beat("test-worker")  # /readyz wants a live worker (KHET_HEARTBEAT_SECONDS below keeps it fresh)
    return alice, r.json()["id"]


def _request_paths(flight: int) -> list[str]:
    """One request of each kind a map page, a report and a script make."""
    w, s, e, n = bounds_lonlat()
    lon, lat = (w + e) / 2, (s + n) / 2
    t = TMS.tile(lon, lat, 22)
    paths = [
        f"/api/v1/flights/{flight}/tiles/{layer}/22/{t.x}/{t.y}"
        for layer in ("imagery", "classes", "vigour", "vari")
    ]
    paths += [
        f"/api/v1/flights/{flight}/tiles/imagery/22/{t.x}/{t.y}.png",
        f"/api/v1/flights/{flight}/tilejson.json?layer=imagery",
        f"/api/v1/flights/{flight}/tilejson.json?layer=classes",
        f"/api/v1/flights/{flight}/point?lon={lon}&lat={lat}",
        f"/api/v1/flights/{flight}",
        f"/api/v1/flights/{flight}/results/classes.tif",
        f"/api/v1/flights/{flight}/results/summary.json",
        "/readyz",
    ]
    return paths


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["KHET_DATA_DIR"] = os.environ["KHET_DATA_DIR"]
    env["PYTHONUNBUFFERED"] = "1"
    env["KHET_HEARTBEAT_SECONDS"] = "60"
    env.pop("KHET_DATABASE_URL", None)
    return env


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from khet.service.main import served_app

    app = served_app()
    before = set(sys.modules)
    paths, headers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    statuses = {}
    with TestClient(app) as c:
        before |= set(sys.modules)  # what the test client itself imports when it starts
        for p in paths:
            statuses[p] = c.get(p, headers=headers).status_code
        # The pages, logged in as a browser is (the password check is a request too).
        login = c.post("/api/v1/session", json=json.loads(sys.argv[3]))
        statuses["login"] = login.status_code
        for p in json.loads(sys.argv[4]):
            statuses[p] = c.get(p).status_code
    new = sorted(m for m in set(sys.modules) - before
                 if m.split(".")[0] not in sys.stdlib_module_names
           and m != "__mp_main__" and not m.startswith("_cython_"))
    print(json.dumps({"statuses": statuses, "imported": new}))
    """
)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_requests_import_nothing_after_start(api, geotiff, use_test_models, tmp_path):
    alice, flight = _finished_flight(api, geotiff)
    paths = _request_paths(flight)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            json.dumps(paths),
            json.dumps(alice["headers"]),
            json.dumps({"email": alice["email"], "password": alice["password"]}),
            json.dumps(
                [
                    "/",
                    f"/flights/{flight}",
                    f"/flights/{flight}/report",
                    f"/flights/{flight}/report.pdf",
                    f"/flights/{flight}/report?lang=ur",
                    "/login",
                    "/api/v1/docs",
                    "/api/v1/openapi.json",
                ]
            ),
        ],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(s == 200 for s in out["statuses"].values()), out["statuses"]
    assert out["imported"] == [], (
        "request threads imported modules after start-up (a concurrent first import can see a "
        f"partially initialised module): {out['imported']}"
    )


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_first_requests_after_start_run_concurrently(api, geotiff, use_test_models, tmp_path):
    from tests.servers import free_port, start_serve, stop_serve

    alice, flight = _finished_flight(api, geotiff)
    paths = _request_paths(flight)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = start_serve(_env(tmp_path), port, log, processes=2, worker=False)
    try:
        # Every kind at once, twice over, on fresh connections: the first tile of each kind in
        # each process runs beside the others.
        with httpx.Client(base_url=url, timeout=60, headers=alice["headers"]) as c:
            with ThreadPoolExecutor(max_workers=len(paths) * 2) as pool:
                statuses = list(pool.map(lambda p: (p, c.get(p).status_code), paths * 2))
    finally:
        stop_serve(proc)
    bad = [(p, s) for p, s in statuses if s != 200]
    assert not bad, (bad, log.read_text()[-3000:])
