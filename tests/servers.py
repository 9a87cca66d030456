"""Waiting for a real `khet serve` process, shared by the tests and benchmarks that start one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


class ServerDidNotStart(RuntimeError):
    pass


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path | None = None,
                       timeout: float = 60) -> None:
    """Poll `url`/healthz until it answers 200; raise with the log's tail if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise ServerDidNotStart(f"khet serve did not start:\n{tail}")
        time.sleep(0.2)
