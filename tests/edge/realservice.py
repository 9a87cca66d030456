"""A real `khet serve` process for the edge tests: its own data folder, a user, a token, a field.

The service runs as in production (its own process or processes, SQLite in a temporary
KHET_DATA_DIR or the test PostgreSQL), set up with `khet user add` / `khet token create`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port, run_khet, start_serve, stop_serve


@dataclass
class Served:
    url: str
    token: str
    field: str
    proc: subprocess.Popen
    log: Path
    env: dict

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def flights(self) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/fields/{self.field}/flights", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()


@contextmanager
def serve(
    tmp_path: Path, models: Path, database_url: str | None = None, processes: int = 1
) -> Iterator[Served]:
    """A running service with a farmer, a device token and one field."""
    env = {
        **os.environ,
        "KHET_DATA_DIR": str(tmp_path / "server-data"),
        "KHET_MODELS_DIR": str(models),
        "KHET_QUEUE_NAME": f"khet-edge-{os.getpid()}-{tmp_path.name}",
    }
    env.pop("KHET_DATABASE_URL", None)
    if database_url:
        env["KHET_DATABASE_URL"] = database_url
    run_khet(env, "user", "add", "farmer@example.org", "--password", "correct-horse-9")
    token = run_khet(env, "token", "create", "farmer@example.org", "--name", "box").splitlines()[-1]
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(env, port, log, processes=processes, worker=False)
    url = f"http://127.0.0.1:{port}"
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
        served = Served(url, token, str(fld.json()["id"]), proc, log, env)
        yield served
    finally:
        stop_serve(served.proc if "served" in locals() else proc)
