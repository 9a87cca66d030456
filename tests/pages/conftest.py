"""A real `khet serve` (API, pages and worker) on a free loopback port, and headless Chromium.

The server runs with its own data folder, the tiny test bundles and SQLite, exactly as a field
office would start it; users come from the `khet user` commands, farms and fields from the API.
Chromium is Debian's (/usr/bin/chromium, installed by .ci/run): Playwright's own browser
download needs the internet, which CI and field offices do not have.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.bundles import make_bundle
from tests.pages.rasters import boundary_lonlat, make_field
from tests.servers import ServerDidNotStart, free_port, spawn_serve, stop_serve, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KHET_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "field-secret-1"
SHOTS = Path(os.environ.get("KHET_SCREENSHOTS", "/tmp/khet-screenshots"))


@dataclass
class Server:
    url: str
    env: dict
    data: Path
    log: Path
    image: Path
    field_id: int = 0
    farm_id: int = 0
    users: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "khet.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    @contextmanager
    def client(self, email: str) -> Iterator[httpx.Client]:
        """An HTTP client logged in with the session cookie, as the pages' JavaScript is."""
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.post("/api/v1/session", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            yield c


@contextmanager
def app_client(monkeypatch) -> Iterator:
    """A TestClient of the app on the embedded defaults (SQLite in the test's data folder)."""
    from fastapi.testclient import TestClient
    from khet.service.db import dispose_engines
    from khet.service.main import create_app

    from khet.settings import get_settings

    dispose_engines()
    monkeypatch.delenv("KHET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client
    dispose_engines()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("khet-web")
    models = base / "models"
    models.mkdir()
    make_bundle(models / "test-rgb.onnx", bands=("red", "green", "blue"), name="test-rgb")
    env = {k: v for k, v in os.environ.items() if k not in ("KHET_DATABASE_URL", "KHET_REDIS_URL")}
    env.update(
        KHET_DATA_DIR=str(base / "data"),
        KHET_MODELS_DIR=str(models),
        KHET_QUEUE_NAME=f"khet-web-{os.getpid()}",
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    log = base / "server.log"
    # 1024 px at 10 cm: three 1 MB chunks, so the upload test can drop one mid-way.
    srv = Server(
        url=f"http://127.0.0.1:{port}",
        env=env,
        data=base / "data",
        log=log,
        image=make_field(base / "north-field.tif", size=1024, res=0.1),
    )
    srv.cli(
        "user",
        "add",
        "farmer@example.org",
        "--role",
        "farmer",
        "--password",
        PASSWORD,
        "--name",
        "Amna Bibi",
    )
    srv.cli(
        "user",
        "add",
        "worker@example.org",
        "--role",
        "extension",
        "--password",
        PASSWORD,
        "--name",
        "Imran (extension)",
    )
    srv.cli("user", "add", "other@example.org", "--role", "farmer", "--password", PASSWORD)
    # Two web processes and the worker, as `khet serve` runs on a 2-core machine.
    proc = spawn_serve(env, port, log, processes=2, worker=True)
    try:
        try:
            wait_until_serving(srv.url, proc, log)
        except ServerDidNotStart as e:
            pytest.fail(str(e))
        with srv.client("farmer@example.org") as c:
            farm = c.post("/api/v1/farms", json={"name": "Chak 42 farm"}).json()
            fld = c.post(
                f"/api/v1/farms/{farm['id']}/fields",
                json={
                    "name": "North field",
                    "crop": "wheat",
                    "boundary": boundary_lonlat(size=1024, res=0.1),
                },
            ).json()
            c.post(
                f"/api/v1/farms/{farm['id']}/fields", json={"name": "Canal field", "crop": "cotton"}
            )
        srv.farm_id, srv.field_id = farm["id"], fld["id"]
        srv.cli("user", "assign", "worker@example.org", str(farm["id"]))
        yield srv
    finally:
        stop_serve(proc)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


def offsite_guard(page, origin: str, offsite: list[str]) -> None:
    """Fail any request that leaves the Khet server: the pages must work offline."""

    def handle(route):
        url = route.request.url
        if url.startswith(origin) or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            offsite.append(url)
            route.abort()

    page.route("**/*", handle)
