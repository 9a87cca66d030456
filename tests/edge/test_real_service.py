"""Sync to a real `khet serve` process, with the connection cut mid-transfer.

The service runs as it would in production (its own process, SQLite in a temporary
KHET_DATA_DIR, a user and an API token made with `khet user add` / `khet token create`); a TCP
proxy between the device and the service drops the connection after a set number of bytes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from khet.edge import outbox
from khet.edge.journal import Journal
from khet.edge.outbox import sync

from khet.cli import main
from khet.errors import KhetError
from tests.edge.fakeservice import CutProxy
from tests.servers import ServerDidNotStart, free_port, start_serve, stop_serve
from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _khet(env: dict, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def service(tmp_path, use_test_models):
    """A running service: (url, token, field id)."""
    env = {
        **os.environ,
        "KHET_DATA_DIR": str(tmp_path / "server-data"),
        "KHET_MODELS_DIR": str(use_test_models),
    }
    _khet(
        env,
        "user",
        "add",
        "farmer@example.org",
        "--password",
        "correct-horse-9",
        "--role",
        "farmer",
    )
    token = _khet(env, "token", "create", "farmer@example.org", "--name", "drone-box").splitlines()[
        -1
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        proc = start_serve(env, port, tmp_path / "serve.log", processes=1, worker=False)
    except ServerDidNotStart as e:
        pytest.fail(str(e))
    try:
        auth = {"Authorization": f"Bearer {token}"}
        farm = httpx.post(f"{url}/api/v1/farms", json={"name": "Chak 42"}, headers=auth)
        assert farm.status_code == 201, farm.text
        fld = httpx.post(
            f"{url}/api/v1/farms/{farm.json()['id']}/fields",
            json={"name": "North wheat", "crop": "wheat"},
            headers=auth,
        )
        assert fld.status_code == 201, fld.text
        yield url, token, str(fld.json()["id"])
    finally:
        stop_serve(proc)


def test_sync_to_real_service_survives_cuts(tmp_path, use_test_models, service, monkeypatch):
    url, token, field_id = service
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "plot1.tif", field_rgb(256, 320, seed=5))
    write_geotiff(src / "plot2.tif", field_rgb(192, 256, seed=6))
    out = tmp_path / "out"
    assert (
        main(
            [
                "edge",
                "run",
                str(src),
                "-o",
                str(out),
                "--field",
                field_id,
                "--with-imagery",
                "--bands",
                "red,green,blue",
            ]
        )
        == 0
    )
    with Journal(out) as j:
        local = {
            p["capture"]: {f["role"]: f["sha256"] for f in p["files"] if f["role"] != "imagery"}
            for p in j.pending()
        }
        total = sum(f["size"] for p in j.pending() for f in p["files"])
        ids = {p["capture"]: p["client_id"] for p in j.pending()}

    # Two cuts at different bytes (inside an upload body, then further on), then a clean run.
    for budget in (total // 3, (2 * total) // 3):
        proxy = CutProxy(int(url.rsplit(":", 1)[1]), budget=budget)
        with Journal(out) as j, pytest.raises(KhetError, match="Cannot reach the server"):
            sync(j, proxy.url, token, field_id, chunk=40 * 1024, timeout=10)
        assert proxy.cut.is_set()
        proxy.close()
    # A reply lost after the service created the first flight: the retry must not make another.
    real_call = outbox._Client.call

    def lose_flight_reply(self, method, path, **kw):
        answer = real_call(self, method, path, **kw)
        if path.endswith("/flights"):
            raise outbox.Unreachable("Cannot reach the server (reply lost)")
        return answer

    auth = {"Authorization": f"Bearer {token}"}
    before = len(httpx.get(f"{url}/api/v1/fields/{field_id}/flights", headers=auth).json())
    assert before < 2
    monkeypatch.setattr(outbox._Client, "call", lose_flight_reply)
    with Journal(out) as j, pytest.raises(KhetError, match="reply lost"):
        sync(j, url, token, field_id, chunk=40 * 1024, timeout=10)
    monkeypatch.undo()
    flights = httpx.get(f"{url}/api/v1/fields/{field_id}/flights", headers=auth).json()
    assert len(flights) == before + 1
    assert main(["edge", "sync", "-o", str(out), "--server", url, "--token", token]) == 0
    assert main(["edge", "sync", "-o", str(out), "--server", url, "--token", token]) == 0

    flights = httpx.get(f"{url}/api/v1/fields/{field_id}/flights", headers=auth).json()
    assert len(flights) == 2, flights
    by_client = {f["client_id"]: f for f in flights}
    for name, files in local.items():
        flight = by_client[ids[name]]  # client_id: the capture's identity (its stamp)
        assert flight["source"] == "edge"
        assert flight["inputs"] == [f"{name}.tif"]
        assert flight["bands"] == ["red", "green", "blue"]
        # Every result the device made reaches the service as it was: the map's layers and,
        # with --with-imagery, its index maps and the preview the report draws.
        assert {"vigour.tif", "preview.png", "indices/vari.tif"} <= set(files), files
        assert set(flight["results"]) >= set(files), flight["results"]
        for result in files:
            r = httpx.get(f"{url}/api/v1/flights/{flight['id']}/results/{result}", headers=auth)
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).hexdigest() == files[result], (name, result)
