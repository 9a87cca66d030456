"""`khet serve` as a field office runs it: several web processes behind one port."""

from __future__ import annotations

import statistics
import time

import httpx


def test_small_responses_do_not_wait_for_delayed_acks(server):
    """With several processes uvicorn binds the socket itself and asyncio then leaves Nagle's
    algorithm on: every small response waited 40 ms for the client's delayed ACK (a map view
    asks for dozens of tiles). Khet's protocol class turns TCP_NODELAY on; without it the
    median here is above 40 ms whatever the machine's speed."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.get("/healthz")
        took = []
        for _ in range(15):
            t = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            took.append(time.perf_counter() - t)
    assert statistics.median(took) < 0.025, took
