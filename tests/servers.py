"""A real `khet serve` process: starting, waiting for and stopping it, shared by the tests and
benchmarks that run one."""

from __future__ import annotations

import os
import signal
import socket
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


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_serve(
    env: dict, port: int, log: Path, *, processes: int | None = 2, worker: bool = True
) -> subprocess.Popen:
    """`khet serve` on 127.0.0.1:`port` (`processes` web processes, None: its own default; with
    or without its job worker), its output appended to `log`, in its own process group so that
    everything it starts goes with it (`stop_serve`). Does not wait for it."""
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if processes is not None:
        args += ["--processes", str(processes)]
    fh = open(log, "ab")  # noqa: SIM115 - the child holds it; closed here once it is started
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "khet.cli", *args, *([] if worker else ["--no-worker"])],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        fh.close()


def start_serve(
    env: dict,
    port: int,
    log: Path,
    *,
    processes: int | None = 2,
    worker: bool = True,
    timeout: float = 90,
) -> subprocess.Popen:
    """`spawn_serve`, then wait until it answers (`ServerDidNotStart` with the log's tail)."""
    proc = spawn_serve(env, port, log, processes=processes, worker=worker)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", proc, log, timeout=timeout)
    except ServerDidNotStart:
        stop_serve(proc, hard=True)
        raise
    return proc


def stop_serve(proc: subprocess.Popen, hard: bool = False) -> None:
    """Stop the service, its web processes and its worker (`hard`: SIGKILL to the whole group,
    a crash)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Anything of the group still alive (a web process that outlived its parent).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
