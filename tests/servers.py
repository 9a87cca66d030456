"""Waiting for a real `khet serve` process, shared by the tests and benchmarks that start one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


class ServerDidNotStart(RuntimeError):
    pass


def wait_until_serving(
    url: str, proc: subprocess.Popen, log: Path | None = None, timeout: float = 60
) -> None:
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


ROOT = Path(__file__).resolve().parents[1]


def run_khet(env: dict, *args: str, timeout: float = 120) -> str:
    """`khet ARGS` in a fresh process with `env`; its output (the test fails if it fails)."""
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def wait_for(pred: Callable[[], object], timeout: float, what: str, log: Path | None = None):
    """`pred()`'s first true value, polled; fails the test with the log's tail after `timeout`."""
    import pytest

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out waiting for {what}\n{tail}")
