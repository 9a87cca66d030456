"""The hostile-input suite: a real `khet serve` (two web processes and its worker, SQLite and the
on-disk queue, as a field office runs it) gets what an attacker and a clumsy user sent it
(issue 12), and more of the same kind, from two farmers, an assigned and an unassigned
extension worker, and the anonymous.

Asserted at the end, over every request:
- no answer is a 5xx, and none takes longer than REQUEST_TIMEOUT (no hang);
- no process of the server goes over its memory ceiling (sampled every 50 ms): each web
  process WEB_CEILING_MB, the worker WORKER_CEILING_MB;
- nothing of farmer A is reachable by the others (identical 404s), and nothing of A's is
  changed or lost (flights, results and stored files hashed before and after);
- the whole suite stays within SUITE_BUDGET_S.
The figures it measured are printed (run with -s to see them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import morecantile
import psutil
import pytest

from tests.bundles import make_bundle
from tests.servers import free_port, run_khet, spawn_serve, wait_for, wait_until_serving
from tests.service.rasters import (
    bounds_lonlat,
    make_geotiff,
    make_png_bomb,
    make_sparse_geotiff,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sugar cane 42"
WEB_CEILING_MB = 400
WORKER_CEILING_MB = 600
REQUEST_TIMEOUT = 30.0
SUITE_BUDGET_S = 240


class Sampler(threading.Thread):
    """Peak RSS of every process of the server's tree, sampled every 50 ms."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    cmd = " ".join(p.cmdline())
                    rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                kind = (
                    "worker"
                    if "worker" in cmd
                    else "web"
                    if "spawn_main" in cmd
                    else "serve"
                    if "serve" in cmd
                    else "other"
                )
                key = f"{kind}:{p.pid}"
                self.peak[key] = max(self.peak.get(key, 0.0), rss)


class Client:
    """httpx with every answer recorded: status, time, what was asked."""

    def __init__(self, url: str, log: list, name: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.c = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT, headers=headers)
        self.log, self.name = log, name

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        t0 = time.monotonic()
        try:
            r = self.c.request(method, path, **kw)
        except httpx.TimeoutException:
            self.log.append((self.name, method, path, "timeout", time.monotonic() - t0))
            raise
        self.log.append((self.name, method, path, r.status_code, time.monotonic() - t0))
        return r

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)

    def upload(self, path: Path, name: str | None = None) -> str:
        data = path.read_bytes()
        up = self.post(
            "/api/v1/uploads",
            json={
                "filename": name or path.name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        ).json()
        offset = up["offset"]
        while offset < len(data):
            part = data[offset : offset + (4 << 20)]
            r = self.request(
                "PUT",
                f"/api/v1/uploads/{up['id']}",
                content=part,
                headers={"Content-Range": f"bytes {offset}-{offset + len(part) - 1}/{len(data)}"},
            )
            offset = r.json()["offset"]
        return up["id"]


def _snapshot(a: Client, data: Path, farm: int) -> dict:
    """Everything of farmer A's: what the API says and the bytes on disk."""
    out = {"farms": a.get("/api/v1/farms").json()}
    for fm in out["farms"]:
        fields = a.get(f"/api/v1/farms/{fm['id']}/fields").json()
        out[f"fields {fm['id']}"] = fields
        for fd in fields:
            flights = a.get(f"/api/v1/fields/{fd['id']}/flights").json()
            out[f"flights {fd['id']}"] = [
                {k: f[k] for k in ("id", "status", "inputs", "results", "client_id")}
                for f in flights
            ]
            for f in flights:
                out[f"summary {f['id']}"] = a.get(f"/api/v1/flights/{f['id']}").json()["summary"]
    files = sorted(p for p in (data / "farms" / str(farm)).rglob("*") if p.is_file())
    out["files"] = {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }
    return out


@pytest.mark.slow
def test_hostile_inputs(tmp_path):  # noqa: C901 - one scripted attack on a live server, step by step
    started = time.monotonic()
    models = tmp_path / "models"
    models.mkdir()
    make_bundle(models / "test-rgb.onnx", bands=("red", "green", "blue"), name="test-rgb")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("KHET_DATABASE_URL", "KHET_REDIS_URL")}
    env.update(
        KHET_DATA_DIR=str(data),
        KHET_MODELS_DIR=str(models),
        KHET_QUEUE_NAME=f"hostile-{os.getpid()}",
        KHET_HEARTBEAT_SECONDS="0.5",
        KHET_STALE_SECONDS="4",
        KHET_MAX_DECODED_MB="256",
        PYTHONUNBUFFERED="1",
    )
    emails = {
        "a": ("a@example.org", "farmer"),
        "b": ("b@example.org", "farmer"),
        "ext_in": ("in@example.org", "extension"),
        "ext_out": ("out@example.org", "extension"),
        "c": ("c@example.org", "farmer"),
    }
    tokens = {}
    for key, (email, role) in emails.items():
        run_khet(env, "user", "add", email, "--role", role, "--password", PASSWORD)
        tokens[key] = run_khet(env, "token", "create", email)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    serve = spawn_serve(env, port, log_path, processes=2, worker=True)
    log: list = []
    sampler = None
    try:
        wait_until_serving(url, serve, log_path)
        sampler = Sampler(serve.pid)
        sampler.start()
        who = {k: Client(url, log, k, tokens[k]) for k in tokens}
        anon = Client(url, log, "anon")
        a, b = who["a"], who["b"]

        # Farmer A's farm, field and analysed flight: what nobody else may reach or change.
        farm = a.post("/api/v1/farms", json={"name": "A farm"}).json()["id"]
        w, s, e, n = bounds_lonlat(size=256)
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        field = a.post(
            f"/api/v1/farms/{farm}/fields",
            json={"name": "A field", "boundary": {"type": "Polygon", "coordinates": [ring]}},
        ).json()["id"]
        image = make_geotiff(tmp_path / "a.tif", size=256, bands=("red", "green", "blue"))
        up = a.upload(image)
        flight = a.post(f"/api/v1/fields/{field}/flights", json={"uploads": [up]}).json()["id"]
        wait_for(lambda: a.get(f"/api/v1/flights/{flight}").json()["status"] == "done", 90,
              "A's flight")  # fmt: skip
        wait_for(lambda: a.get("/readyz").status_code == 200, 30, "ready")
        run_khet(env, "user", "assign", "in@example.org", str(farm))
        time.sleep(2)  # the imagery web copy
        before = _snapshot(a, data, farm)

        # --- cross-tenant reach: B, the unassigned worker and the anonymous get 404/401 ----
        t = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, 20)
        reads = [
            f"/api/v1/farms/{farm}",
            f"/api/v1/farms/{farm}/fields",
            f"/api/v1/fields/{field}",
            f"/api/v1/fields/{field}/flights",
            f"/api/v1/flights/{flight}",
            f"/api/v1/flights/{flight}/results/summary.json",
            f"/api/v1/flights/{flight}/results/classes.tif",
            f"/api/v1/flights/{flight}/tilejson.json?layer=classes",
            f"/api/v1/flights/{flight}/tiles/classes/{t.z}/{t.x}/{t.y}",
            f"/api/v1/flights/{flight}/tiles/imagery/{t.z}/{t.x}/{t.y}.png",
            f"/api/v1/flights/{flight}/point?lon={(w + e) / 2}&lat={(s + n) / 2}",
            f"/api/v1/uploads/{up}",
        ]
        for key in ("b", "ext_out"):
            bodies = set()
            for path in reads:
                r = who[key].get(path)
                assert r.status_code == 404, (key, path, r.status_code)
                bodies.add(r.json()["error"])
            assert bodies == {"not_found"}
            for method, path in (
                ("DELETE", f"/api/v1/flights/{flight}"),
                ("POST", f"/api/v1/flights/{flight}/retry"),
                ("PATCH", f"/api/v1/fields/{field}"),
                ("DELETE", f"/api/v1/fields/{field}"),
                ("DELETE", f"/api/v1/farms/{farm}"),
                ("POST", f"/api/v1/fields/{field}/flights"),
            ):
                r = who[key].request(method, path, json={"name": "x", "uploads": [up]})
                assert r.status_code in (404, 422), (key, method, path, r.status_code)
        assert who["ext_in"].get(f"/api/v1/flights/{flight}").status_code == 200
        for path in reads:
            assert anon.get(path).status_code == 401, path

        # --- odd ids, paths, cookies --------------------------------------------------------
        for path in (
            "/flights/18446744073709551616",
            "/fields/99999999999999999999999/compare",
            f"/api/v1/flights/{2**63}",
            "/api/v1/flights/-1",
            f"/api/v1/flights/{flight}/results/..%2f..%2fsecret_key",
            f"/api/v1/flights/{flight}/results/../../../khet.db",
            f"/api/v1/flights/{flight}/results/indices/..%2F..%2Finput%2Fa.tif",
            f"/api/v1/flights/{flight}/tiles/..%2fclasses/0/0/0",
            f"/api/v1/flights/{flight}/tiles/classes/31/0/0",
            "/static/khet/..%2f..%2fdb.py",
        ):
            b.get(path)
        odd_ids = ["0", "-1", str(2**31), str(2**63), str(2**64), "abc", "1e3", "%00", "1.5"]
        templates = [
            "/api/v1/farms/{}", "/api/v1/farms/{}/fields", "/api/v1/fields/{}",
            "/api/v1/fields/{}/flights", "/api/v1/flights/{}", "/api/v1/flights/{}/retry",
            "/api/v1/flights/{}/results/summary.json", "/api/v1/flights/{}/tilejson.json",
            "/api/v1/flights/{}/tiles/classes/0/0/0", "/api/v1/flights/{}/point?lon=0&lat=0",
            "/api/v1/uploads/{}", "/api/v1/sessions/{}", "/api/v1/tokens/{}", "/api/v1/users/{}",
            "/fields/{}", "/fields/{}/upload", "/fields/{}/compare?a={}&b={}", "/flights/{}",
            "/flights/{}/report", "/flights/{}/report.pdf", "/flights/{}/retry",
            "/account/tokens/{}/revoke",
        ]  # fmt: skip
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda job: b.request(job[0], job[1]),
                    [
                        (method, tpl.replace("{}", i))
                        for tpl in templates
                        for i in odd_ids
                        for method in ("GET", "POST", "DELETE")
                    ],
                )
            )
        for cookie in ("a.b.\u00e9", "\u202e", "x" * 4000, "1.9999999999.deadbeef", "%00"):
            for path in ("/", "/login", "/api/v1/me", f"/flights/{flight}"):
                anon.get(path, headers={"Cookie": f"khet_session={cookie}".encode()})

        # --- bodies: too big, too many vertices, all at once -------------------------------
        big = b'{"email": "' + b"a" * (30 << 20) + b'"}'
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda body: (
                        anon.post(
                            "/api/v1/session",
                            content=body,
                            headers={"Content-Type": "application/json"},
                        ).status_code
                    ),
                    [big] * 3,
                )
            )
        assert results == [413] * 3, results
        assert (
            anon.post(
                "/login",
                content=b"email=" + b"a" * (8 << 20),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ).status_code
            == 413
        )
        b_farm = b.post("/api/v1/farms", json={"name": "B farm"}).json()["id"]
        k = 15_000
        angles = [2 * math.pi * i / k for i in range(k)]
        circle = [[75.85 + 0.001 * math.cos(t), 30.9 + 0.001 * math.sin(t)] for t in angles]
        circle.append(circle[0])
        r = b.post(
            f"/api/v1/farms/{b_farm}/fields",
            json={"name": "Round", "boundary": {"type": "Polygon", "coordinates": [circle]}},
        )
        assert r.status_code == 422, r.text
        b_field = b.post(f"/api/v1/farms/{b_farm}/fields", json={"name": "B field"}).json()["id"]
        for name in ("\u202eexe.txt", "a\u2066b", "x\x00y", "", " " * 300):
            assert b.post("/api/v1/farms", json={"name": name}).status_code == 422

        # --- imagery that would take a server down -----------------------------------------
        bombs = [
            make_png_bomb(tmp_path / "bomb.png", 18000, 18000),
            make_sparse_geotiff(tmp_path / "sparse.tif", 100_000),
        ]
        with ThreadPoolExecutor(4) as pool:

            def send_bomb(path: Path) -> int:
                with path.open("rb") as f:
                    return b.post(
                        f"/api/v1/fields/{b_field}/flights/upload",
                        files={"files": (path.name, f, "application/octet-stream")},
                    ).status_code

            codes = list(pool.map(send_bomb, [bombs[0]] * 4 + [bombs[1]] * 2))
        assert codes == [422] * 6, codes
        sparse_up = b.upload(bombs[1])
        r = b.post(f"/api/v1/fields/{b_field}/flights", json={"uploads": [sparse_up]})
        assert r.status_code == 422 and "KHET_MAX_PIXELS" in r.json()["detail"]

        # --- results from a "device" -------------------------------------------------------
        huge_classes = b.upload(make_sparse_geotiff(tmp_path / "edge" / "classes.tif", 30000))
        odd = tmp_path / "odd"
        odd.mkdir()
        for i, summary in enumerate(
            [
                '{"classes": [{"name": "weed", "share": "abc"}], "indices": [1, 2]}',
                '{"classes": [{"name": "weed", "share": NaN}]}',
                "[1, 2, 3]",
                '{"classes": [{"color": "red;background-image:url(//evil.example/x)"}]}',
                "{not json",
            ]
        ):
            (odd / f"{i}").mkdir()
            (odd / f"{i}" / "summary.json").write_text(summary)
        t0 = time.monotonic()
        r = b.post(
            f"/api/v1/fields/{b_field}/flights",
            json={"results": {"summary.json": b.upload(odd / "0" / "summary.json"),
                              "classes.tif": huge_classes}},
        )  # fmt: skip
        assert r.status_code == 422 and time.monotonic() - t0 < 5, r.text
        odd_flights: list[int] = []
        for i in range(5):
            r = b.post(
                f"/api/v1/fields/{b_field}/flights",
                json={"results": {"summary.json": b.upload(odd / f"{i}" / "summary.json")},
                      "client_id": f"odd-{i}"},
            )  # fmt: skip
            assert r.status_code == 422, r.text  # checked against the typed summary
        b.post("/login", data={"email": "b@example.org", "password": PASSWORD},
               follow_redirects=False)  # fmt: skip
        for path in ["/", f"/fields/{b_field}"] + [
            p for f in odd_flights for p in (f"/flights/{f}", f"/flights/{f}/report",
                                             f"/flights/{f}/report.pdf")
        ]:  # fmt: skip
            r = b.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert "evil.example" not in r.text

        # --- another site posts with B's cookie --------------------------------------------
        browser = Client(url, log, "b-browser")
        r = browser.post("/login", data={"email": "b@example.org", "password": PASSWORD},
                         follow_redirects=False)  # fmt: skip
        assert r.status_code == 303
        evil = {"Origin": "http://evil.example"}
        r = browser.post("/settings/visit", data={"weed": "1"}, headers=evil)
        assert r.status_code == 403
        with image.open("rb") as f:
            r = browser.post(f"/api/v1/fields/{b_field}/flights/upload", headers=evil,
                             files={"files": ("x.tif", f, "image/tiff")})  # fmt: skip
        assert r.status_code == 403
        r = anon.post("/login", data={"email": "b@example.org", "password": PASSWORD},
                      headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        assert r.status_code == 403

        # --- guessing C's password: 429 before the tenth guess is through -------------------
        codes = Counter(
            anon.post("/api/v1/session",
                      json={"email": "c@example.org", "password": f"guess {i}"}).status_code
            for i in range(14)
        )  # fmt: skip
        assert codes == {401: 10, 429: 4}, codes
        r = anon.post("/api/v1/session", json={"email": "c@example.org", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0

        # --- work killed and deleted mid-way ------------------------------------------------
        b_img = make_geotiff(tmp_path / "b.tif", size=1024, bands=("red", "green", "blue"))
        b_up = b.upload(b_img)
        doomed = b.post(f"/api/v1/fields/{b_field}/flights", json={"uploads": [b_up]}).json()
        wait_for(lambda: b.get(f"/api/v1/flights/{doomed['id']}").json()["status"] == "running", 60,
              "B's job to start")  # fmt: skip
        assert b.request("DELETE", f"/api/v1/flights/{doomed['id']}").status_code == 204
        kept = b.post(f"/api/v1/fields/{b_field}/flights", json={"uploads": [b_up]}).json()
        assert kept["id"] > doomed["id"] and kept["job"]["id"] > doomed["job"]["id"]
        wait_for(lambda: b.get(f"/api/v1/flights/{kept['id']}").json()["status"] == "running", 60,
              "B's second job to start")  # fmt: skip
        worker = next(
            p for p in psutil.Process(serve.pid).children() if "worker" in " ".join(p.cmdline())
        )
        worker.send_signal(signal.SIGKILL)
        wait_for(lambda: b.get(f"/api/v1/flights/{kept['id']}").json()["status"] == "done", 120,
              "B's flight after its worker was killed")  # fmt: skip
        flight_dirs = list((data / "farms").glob(f"*/fields/*/flights/{doomed['id']}"))
        assert flight_dirs == [], "the deleted flight's folder came back"

        # --- A's map at every zoom, and the Host header -------------------------------------
        for layer in ("imagery", "classes", "vigour", "vari"):
            for z in range(0, 4):
                a.get(f"/api/v1/flights/{flight}/tiles/{layer}/{z}/{2**z // 2}/{2**z // 2 - 1}")
        tj = a.get(f"/api/v1/flights/{flight}/tilejson.json", headers={"Host": "evil.example"})
        assert "evil.example" not in tj.text

        after = _snapshot(a, data, farm)
        assert after == before, "farmer A's data changed"
        r = a.get("/readyz")
        assert r.status_code == 200, r.text
    finally:
        if sampler is not None:
            sampler.stop.set()
        serve.terminate()
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        for p in psutil.process_iter(["environ"]):
            try:
                if (p.info["environ"] or {}).get("KHET_DATA_DIR") == str(data):
                    p.kill()
            except psutil.Error:
                pass

    elapsed = time.monotonic() - started
    errors = [x for x in log if x[3] == "timeout" or x[3] >= 500]
    slowest = max(log, key=lambda x: x[4])
    peaks = sampler.peak if sampler else {}
    web = max((v for k, v in peaks.items() if k.startswith("web")), default=0.0)
    work = max((v for k, v in peaks.items() if k.startswith("worker")), default=0.0)
    print(
        f"\nhostile suite: {len(log)} requests in {elapsed:.0f} s, statuses "
        f"{dict(sorted(Counter(x[3] for x in log).items(), key=str))}; slowest "
        f"{slowest[4]:.1f} s ({slowest[1]} {slowest[2][:60]}); peak RSS web {web:.0f} MB "
        f"(ceiling {WEB_CEILING_MB}), worker {work:.0f} MB (ceiling {WORKER_CEILING_MB})"
    )
    assert not errors, errors
    assert web <= WEB_CEILING_MB and work <= WORKER_CEILING_MB, peaks
    assert elapsed < SUITE_BUDGET_S, elapsed
    (tmp_path / "figures.json").write_text(json.dumps({"peaks": peaks, "elapsed": elapsed}))
