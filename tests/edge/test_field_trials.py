"""The edge runner as a field device lives: races, power cuts, lost journals, bad links.

Each test runs real processes: a real `khet serve` (tests/edge/realservice.py), `khet edge`
in its own process where a cut must be a real `kill -9`, and a TCP proxy that drops the link.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from khet.edge.journal import Journal

from khet.cli import main
from tests.edge.realservice import serve
from tests.service.conftest import POSTGRES_URL, reset_postgres
from tests.vision.rasters import field_rgb, write_geotiff

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _card(tmp_path: Path, n: int = 2, size: int = 128) -> Path:
    src = tmp_path / "card"
    src.mkdir()
    for i in range(n):
        write_geotiff(src / f"plot{i + 1}.tif", field_rgb(size, size + 32, seed=10 + i))
    return src


def _at_once(n: int, fn) -> list:
    """`fn(i)` in `n` threads released together; their answers in order."""
    gate = threading.Barrier(n)
    answers: list = [None] * n

    def go(i: int) -> None:
        gate.wait()
        try:
            answers[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            answers[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_concurrent_flight_and_upload_requests_never_500(tmp_path, use_test_models, database):
    """Item 5: requests racing to create the same upload or flight get the existing one."""
    url = None
    if database == "postgres":
        reset_postgres(POSTGRES_URL)
        url = POSTGRES_URL
    src = _card(tmp_path, n=1)
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out), "--bands", "red,green,blue"]) == 0
    with Journal(out) as j:
        (item,) = j.pending()
    with serve(tmp_path, use_test_models, url, processes=2) as s:
        ids: dict[str, str] = {}
        for f in item["files"]:
            data = (out / f["path"]).read_bytes()
            body = {"filename": Path(f["path"]).name, "size": len(data), "sha256": f["sha256"]}

            def post(_i: int, body=body) -> httpx.Response:
                return httpx.post(f"{s.url}/api/v1/uploads", json=body, headers=s.auth, timeout=30)

            answers = _at_once(6, post)
            codes = sorted(a.status_code for a in answers)
            assert codes in ([200] * 5 + [201], [200] * 6), [a.text for a in answers]
            got = {a.json()["id"] for a in answers}
            assert len(got) == 1, f"one file stored as {len(got)} uploads"
            uid = got.pop()
            r = httpx.put(
                f"{s.url}/api/v1/uploads/{uid}",
                content=data,
                headers={**s.auth, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
            )
            assert r.status_code == 200 and r.json()["complete"], r.text
            ids[f["role"]] = uid
        for n in range(3):  # three flights, each asked for by six requests at once
            flight = {"uploads": [], "results": ids, "client_id": f"{item['client_id']}-{n}"}

            def create(_i: int, flight=flight) -> httpx.Response:
                return httpx.post(
                    f"{s.url}/api/v1/fields/{s.field}/flights",
                    json=flight,
                    headers=s.auth,
                    timeout=60,
                )

            answers = _at_once(6, create)
            codes = [a.status_code if isinstance(a, httpx.Response) else a for a in answers]
            assert all(c in (200, 201) for c in codes), [
                a.text for a in answers if isinstance(a, httpx.Response)
            ]
            assert len({a.json()["id"] for a in answers}) == 1
            assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
        assert len(s.flights()) == 3
        assert "Traceback" not in s.log.read_text()


def _edge(env: dict, *args: str, timeout: float = 120) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "khet.cli", "edge", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_three_syncs_at_once(tmp_path, use_test_models):
    """Item 5: three `khet edge sync` processes at once: one flight per capture, one upload per
    file on the server, every sync ends well."""
    src = _card(tmp_path, n=3)
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out), "--with-imagery"]) == 0
    with Journal(out) as j:
        files = {f["sha256"] for p in j.pending() for f in p["files"]}
    with serve(tmp_path, use_test_models) as s:
        args = ("sync", "-o", str(out), "--server", s.url, "--token", s.token, "--field", s.field)
        procs = [_edge(s.env, *args, "--chunk-kb", "4") for _ in range(3)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outs
        assert len(s.flights()) == 3
        stored = list((tmp_path / "server-data" / "uploads").rglob("*"))
        assert len([p for p in stored if p.is_file()]) == len(files)
        assert " 500 " not in s.log.read_text()
