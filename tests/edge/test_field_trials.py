"""The edge runner as a field device lives: races, power cuts, lost journals, bad links.

Each test runs real processes: a real `khet serve` (tests/edge/realservice.py), `khet edge`
in its own process where a cut must be a real `kill -9`, and a TCP proxy that drops the link.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from khet.edge.journal import MAX_CRASHES, Journal

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


def _status(out: Path) -> dict[str, tuple[str, int]]:
    """The journal's capture states and starts, read as another process would (read-only)."""
    import sqlite3

    db = out / ".khet-edge" / "state.sqlite"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT name, status, attempts FROM captures")
            return {n: (st, a) for n, st, a in rows}
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def _cut_while_running(env: dict, out: Path, src: Path, delay: float) -> bool:
    """Start `khet edge run`, kill -9 it `delay` s after its capture is marked running; True
    when the cut landed during the analysis (the capture still `running`)."""
    before = _status(out)
    p = _edge(env, "run", str(src), "-o", str(out), "--threads", "1", "--batch-size", "4")
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None:  # wait for this run to start a capture (a new start counted)
            now = _status(out)
            if any(st == "running" and a > before.get(n, ("", 0))[1] for n, (st, a) in now.items()):
                break
            assert time.monotonic() < deadline, "the run never started a capture"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        p.kill()  # SIGKILL: nothing runs after it, as in a power cut
        p.communicate()
    return any(st == "running" for st, _ in _status(out).values())


def test_power_cuts_never_give_up_on_a_capture(tmp_path, use_test_models):
    """Item 1: cut more often than the crash limit during one capture, then run again: it is
    analyzed (once), and its map is byte-identical to a clean run's."""
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "field.tif", field_rgb(1536, 1536, seed=3))
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    out = tmp_path / "out"
    rng = random.Random(16)
    cuts = tries = 0
    while cuts < MAX_CRASHES + 2:
        tries += 1
        assert tries < 20, "the analysis kept finishing before the cut"
        cuts += _cut_while_running(env, out, src, rng.uniform(0.0, 0.3))
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "edge", "run", str(src), "-o", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 analyzed, 0 failed" in r.stderr
    assert "interrupted last time" in r.stdout
    with Journal(out) as j:
        (rec,) = j.captures()
        assert rec.status == "done" and rec.crashes == 0 and rec.interruptions == cuts
    clean = tmp_path / "clean"
    assert main(["edge", "run", str(src), "-o", str(clean), "--threads", "1"]) == 0
    for name in ("classes.tif", "zones.geojson", "vigour.tif", "confidence.tif"):
        a, b = out / "field" / name, clean / "field" / name
        assert a.read_bytes() == b.read_bytes(), name
    assert not list(out.rglob(".khet-partial-*"))


@pytest.mark.parametrize("loss", ["deleted", "truncated", "damaged"])
def test_lost_journal_duplicates_nothing(tmp_path, use_test_models, loss):
    """Item 2: the journal lost after work and a sync: nothing analyzed again, no second
    flight, and the runner says it rebuilt the journal."""
    src = _card(tmp_path, n=3)
    out = tmp_path / "out"
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    with serve(tmp_path, use_test_models) as s:
        sync = ("sync", "-o", str(out), "--server", s.url, "--token", s.token, "--field", s.field)
        assert main(["edge", "run", str(src), "-o", str(out)]) == 0
        assert main(["edge", *sync]) == 0
        assert len(s.flights()) == 3
        stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
        db = out / ".khet-edge" / "state.sqlite"
        if loss == "deleted":
            db.unlink()
        elif loss == "truncated":
            db.write_bytes(b"")
        else:
            db.write_bytes(b"\x00garbage" * 512)
        r = subprocess.run(
            [sys.executable, "-m", "khet.cli", "edge", "run", str(src), "-o", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        said = r.stdout + r.stderr
        assert "rebuilt it from 3 finished result folder(s)" in said, said
        assert "0 analyzed, 0 failed, 3 skipped" in r.stderr
        assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps
        before = s.log.read_text().count("PUT /api/v1/uploads")
        assert main(["edge", *sync]) == 0
        assert len(s.flights()) == 3, "a lost journal made second flights"
        assert s.log.read_text().count("PUT /api/v1/uploads") == before, "bytes sent again"


def _flip(src: Path, dest: Path, at: float = 0.6) -> None:
    data = bytearray(src.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))


def test_damaged_bundle_refused_wherever_it_sits(tmp_path):
    """Item 3: a shipped bundle copied elsewhere with one byte flipped, under its own name or
    another, is refused with the checksum message; an intact copy is verified by the shipped
    manifest; a bundle no manifest knows runs, said to be unverified."""
    from khet.vision.bundle import shipped_bundles_dir

    from tests.bundles import make_bundle

    shipped = shipped_bundles_dir() / "khet-rgb-carrotweed.onnx"
    src = _card(tmp_path, n=1, size=96)
    env = {k: v for k, v in os.environ.items() if k != "KHET_MODELS_DIR"}

    def run(model: Path, out: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "khet.cli", "edge", "run", str(src), "-o",
             str(tmp_path / out), "--model", str(model)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    for i, (name, at) in enumerate(
        [("khet-rgb-carrotweed.onnx", 0.6), ("my-model.onnx", 0.6), ("my-model.onnx", 0.0001)]
    ):
        bad = tmp_path / f"usb{i}" / name
        _flip(shipped, bad, at)
        r = run(bad, f"out{i}")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "is damaged or not the expected file" in r.stderr or (
            at < 0.01 and "cannot be read: it is damaged" in r.stderr
        ), r.stderr
        assert "onnxruntime" not in r.stderr.lower() and "Traceback" not in r.stderr
        assert not (tmp_path / f"out{i}" / "plot1").exists()
    good = tmp_path / "usb-good" / "khet-rgb-carrotweed.onnx"
    good.parent.mkdir()
    shutil.copy(shipped, good)
    r = run(good, "out-good")  # accepted; the capture (5 cm/px) is outside its validated GSD
    assert "khet-rgb-carrotweed 1.0.1 (fp32, sha256 a26c70ba8143… by manifest)" in r.stderr
    assert "UNVERIFIED" not in r.stderr and "damaged" not in r.stdout + r.stderr
    own = tmp_path / "usb-own" / "own.onnx"
    make_bundle(own, name="own-fields")
    r = run(own, "out-own")
    assert r.returncode == 0, r.stderr
    assert "own-fields 0.0.1 (fp32, sha256" in r.stderr and "UNVERIFIED" in r.stderr


def test_link_that_drops_every_few_kilobytes_still_finishes(tmp_path, use_test_models):
    """Item 6: with the default 1 MB chunk, a link that drops every 3,000 bytes: each byte that
    crossed is kept, one `khet edge sync` finishes, and little is sent twice."""
    from tests.edge.fakeservice import DropProxy

    src = _card(tmp_path, n=2, size=64)
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out), "--with-imagery"]) == 0
    with Journal(out) as j:
        local = {p["client_id"]: p for p in j.pending()}
        # Each distinct file once: the server keeps one upload of a file, however many use it.
        need = sum({f["sha256"]: f["size"] for p in j.pending() for f in p["files"]}.values())
    with serve(tmp_path, use_test_models) as s:
        proxy = DropProxy(int(s.url.rsplit(":", 1)[1]), every=3000)
        try:
            r = subprocess.run(
                [sys.executable, "-m", "khet.cli", "edge", "sync", "-o", str(out), "--server",
                 proxy.url, "--token", s.token, "--field", s.field],
                cwd=ROOT, env=s.env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            proxy.close()
        assert r.returncode == 0, r.stdout + r.stderr
        assert proxy.drops > need // 3000 // 2, "the link did not drop as often as meant"
        flights = s.flights()
        assert len(flights) == 2
        for fl in flights:
            for f in local[fl["client_id"]]["files"]:
                if f["role"] == "imagery":
                    continue
                got = httpx.get(
                    f"{s.url}/api/v1/flights/{fl['id']}/results/{f['role']}", headers=s.auth
                )
                assert hashlib.sha256(got.content).hexdigest() == f["sha256"]
        # Every file byte that crossed the link counts (0 resent when measured; a loaded
        # machine may let a retry ask for the offset before the dropped request was kept).
        assert "link dropped" in r.stdout
        resent = proxy.put_body - need
        assert 0 <= resent < need // 4, (proxy.put_body, need)


_HUNGRY_WRITER = """
import sys
import numpy as np
import khet.vision.maps as maps
write = maps.write_field_map
def hungry(*a, **k):  # the output stage takes `MB` more, after the last strip was checked
    hog = np.ones(int(sys.argv[1]) << 20, np.uint8)
    try:
        return write(*a, **k)
    finally:
        del hog
maps.write_field_map = hungry
from khet.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_max_memory_holds_while_writing_outputs(tmp_path, use_test_models):
    """Item 4: a capture whose output stage goes over --max-memory is failed and leaves
    nothing, not recorded done with a warning."""
    src = _card(tmp_path, n=1, size=96)
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}

    def run(out: Path, hog_mb: int) -> subprocess.CompletedProcess:
        args = ["edge", "run", str(src), "-o", str(out), "--max-memory", "450"]
        return subprocess.run(
            [sys.executable, "-c", _HUNGRY_WRITER, str(hog_mb), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ok = run(tmp_path / "fits", 0)  # the ceiling itself is sane for this capture
    assert ok.returncode == 0, ok.stdout + ok.stderr
    out = tmp_path / "over"
    r = run(out, 400)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--max-memory while writing the outputs" in r.stdout
    assert not (out / "plot1" / "summary.json").exists()
    assert not [p for p in (out / "plot1").iterdir() if not p.name.startswith(".")]
    with Journal(out) as j:
        (rec,) = j.captures()
        assert rec.status == "failed" and "--max-memory" in rec.message
        assert j.pending() == []


_SEGFAULT = """
import ctypes, sys
import khet.vision.pipeline as pipeline
def crash(*a, **k):
    ctypes.string_at(0)  # a crash in native code, as a broken library would
pipeline.analyze = crash
from khet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_capture_that_crashes_the_process_fails_after_three(tmp_path, use_test_models):
    """Item 1, the other side: crashes the capture causes (a real SIGSEGV, recorded by
    faulthandler) are counted, and after three it is failed with the reason; a plain run then
    skips it, and --retry-failed tries again."""
    src = _card(tmp_path, n=1, size=64)
    out = tmp_path / "out"
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    args = ["edge", "run", str(src), "-o", str(out)]
    for _ in range(MAX_CRASHES):
        r = subprocess.run([sys.executable, "-c", _SEGFAULT, *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode < 0, r.stdout + r.stderr  # killed by the signal
    assert "Segmentation fault" in (out / ".khet-edge" / "fatal.log").read_text()
    r = subprocess.run([sys.executable, "-m", "khet.cli", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and "crashed 3 times" in r.stdout, r.stdout + r.stderr
    assert "0 analyzed, 0 failed, 1 skipped" in r.stderr
    with Journal(out) as j:
        (rec,) = j.captures()
        assert rec.status == "failed" and rec.crashes == MAX_CRASHES
    assert main([*args, "--retry-failed"]) == 0
