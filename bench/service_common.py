"""Shared by the service benchmarks: a real `khet serve` process on loopback, a user, a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ServerDidNotStart, free_port, start_serve

ROOT = Path(__file__).resolve().parent.parent


def start_server(
    data_dir: Path,
    env_extra: dict | None = None,
    worker: bool = False,
    processes: int | None = None,
):
    """Start `python -m khet.cli serve` and return (process, base_url, token)."""
    env = {
        **os.environ,
        "KHET_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
        **(env_extra or {}),
    }
    env.pop("KHET_DATABASE_URL", None)
    py = [sys.executable, "-m", "khet.cli"]
    subprocess.run(
        [*py, "user", "add", "bench@example.org", "--password", "bench password"],
        env=env,
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [*py, "token", "create", "bench@example.org"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    try:
        proc = start_serve(
            env, port, data_dir / "serve.log", processes=processes, worker=worker, timeout=20
        )
    except ServerDidNotStart as e:
        raise SystemExit(str(e)) from None
    base = f"http://127.0.0.1:{port}"
    return proc, base, token


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
