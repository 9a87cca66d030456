"""The edge runner as a field device lives, measured once: power cuts, a lost journal, killed
syncs, a killed server, syncs at once, and a link that drops every few kB.

    python bench/edge_field_trials.py [--cuts 17] [--captures 6] [--drop-every 3000]

Real processes throughout: `khet edge run` killed with SIGKILL at random moments during analysis,
`khet edge sync` killed mid-upload, a real `khet serve` (SQLite) killed mid-sync and started
again, three syncs at once, the journal deleted after a sync, and a TCP proxy that drops each
connection after --drop-every client bytes. Prints the figures the README's edge section gives.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bundles import make_bundle  # noqa: E402
from tests.edge.fakeservice import DropProxy  # noqa: E402
from tests.servers import (  # noqa: E402
    free_port,
    run_khet,  # noqa: E402
    start_serve,
    stop_serve,
)
from tests.vision.rasters import field_rgb, write_geotiff  # noqa: E402

PRODUCTS = ("classes.tif", "zones.geojson", "vigour.tif", "confidence.tif")


def khet(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "khet.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def states(out: Path) -> dict[str, tuple[str, int]]:
    db = out / ".khet-edge" / "state.sqlite"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return {
                n: (s, a) for n, s, a in con.execute("SELECT name, status, attempts FROM captures")
            }
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def analyses(text: str, out: Path) -> list[str]:
    """The captures a run's output says it finished (one line each, printed once done)."""
    return [ln.split(":", 1)[0].rsplit("/", 1)[-1] for ln in text.splitlines()
            if ln.startswith(str(out) + "/") and ": soil" in ln]  # fmt: skip


def power_cuts(
    env: dict, card: Path, out: Path, cuts: int, rng: random.Random, capture_s: float
) -> dict:
    """SIGKILL `edge run` at random moments: anywhere within one and a half captures' time
    (`capture_s`, measured on a clean run) after a capture starts, until `cuts` landed."""
    finished: list[str] = []
    landed = tries = 0
    while landed < cuts and tries < cuts * 4:
        tries += 1
        before = states(out)
        if before and all(s == "done" for s, _ in before.values()) and len(before) >= 6:
            break
        p = khet(env, "edge", "run", str(card), "-o", str(out), "--threads", "1")
        end = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < end:
            now = states(out)
            if any(s == "running" and a > before.get(n, ("", 0))[1] for n, (s, a) in now.items()):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5 * capture_s))  # anywhere in a capture, or the next
        p.send_signal(signal.SIGKILL)
        text = p.communicate()[0]
        finished += analyses(text, out)
        landed += any(s == "running" for s, _ in states(out).values())
    r = subprocess.run([sys.executable, "-m", "khet.cli", "edge", "run", str(card), "-o", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    finished += analyses(r.stdout, out)
    counts = {n: finished.count(n) for n in set(finished)}
    return {"cuts": landed, "rc": r.returncode, "analyses": counts, "tail": r.stderr.strip()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuts", type=int, default=17)
    ap.add_argument("--captures", type=int, default=6)
    ap.add_argument("--drop-every", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="khet-field-trials-"))
    models = work / "models"
    make_bundle(models / "test-rgb.onnx", tile_size=32, name="test-rgb")
    card = work / "card"
    card.mkdir()
    for i in range(args.captures):
        write_geotiff(card / f"plot{i + 1}.tif", field_rgb(1024, 1024, seed=40 + i))
    env = {**os.environ, "KHET_MODELS_DIR": str(models), "KHET_DATA_DIR": str(work / "server")}
    env.pop("KHET_DATABASE_URL", None)
    out, clean = work / "out", work / "clean"

    # 1. Power cuts during analysis, timed by a clean run's seconds per capture.
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "khet.cli", "edge", "run", str(card), "-o", str(clean),
                    "--threads", "1"], cwd=ROOT, env=env, capture_output=True, check=True)  # fmt: skip
    capture_s = (time.monotonic() - t0) / args.captures
    cut = power_cuts(env, card, out, args.cuts, rng, capture_s)
    differ = [f"{c.name}/{p}" for c in clean.iterdir() if c.is_dir() and not c.name.startswith(".")
              for p in PRODUCTS if (c / p).read_bytes() != (out / c.name / p).read_bytes()]  # fmt: skip
    dup_analyses = sum(n - 1 for n in cut["analyses"].values())

    # 2. Sync: killed mid-upload, server killed mid-sync, three at once, journal lost.
    run_khet(env, "user", "add", "farmer@example.org", "--password", "correct-horse-9")
    token = run_khet(env, "token", "create", "farmer@example.org", "--name", "box").splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "serve.log"
    server = start_serve(env, port, log, processes=1, worker=False)
    auth = {"Authorization": f"Bearer {token}"}
    farm = httpx.post(f"{url}/api/v1/farms", json={"name": "Chak 42"}, headers=auth).json()
    field = str(httpx.post(f"{url}/api/v1/farms/{farm['id']}/fields", json={"name": "N"},
                           headers=auth).json()["id"])  # fmt: skip
    shutil.copytree(out, work / "out-drops")  # the same results, for the dropping link later
    sync = ["edge", "sync", "-o", str(out), "--server", url, "--token", token, "--field", field,
            "--chunk-kb", "16"]  # fmt: skip
    killed_syncs = 0
    for delay in (0.3, 0.5, 0.8):  # sync killed mid-upload
        p = khet(env, *sync)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed_syncs += 1
        p.communicate()
    p = khet(env, *sync)  # server killed mid-sync, then started again
    time.sleep(0.4)
    stop_serve(server, hard=True)
    p.communicate()
    server = start_serve(env, port, log, processes=1, worker=False)
    syncs = [khet(env, *sync) for _ in range(3)]  # three at once
    rcs = [s.wait() for s in syncs]
    for s in syncs:
        s.communicate()
    (out / ".khet-edge" / "state.sqlite").unlink()  # the journal lost after a sync
    r = subprocess.run([sys.executable, "-m", "khet.cli", "edge", "run", str(card), "-o", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    rebuilt = "rebuilt it from" in r.stdout + r.stderr
    reanalysed = len(analyses(r.stdout, out))
    last = subprocess.run([sys.executable, "-m", "khet.cli", *sync], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    flights = httpx.get(f"{url}/api/v1/fields/{field}/flights", headers=auth).json()
    lost = 0
    by_name = {}
    for c in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stamp = json.loads((c / ".khet-edge.json").read_text())
        by_name[c.name] = stamp["client_id"]
        match = [f for f in flights if f["client_id"] == stamp["client_id"]]
        if not match:
            lost += 1
            continue
        for res in ("summary.json", "zones.geojson", "classes.tif"):
            got = httpx.get(f"{url}/api/v1/flights/{match[0]['id']}/results/{res}", headers=auth)
            if (
                hashlib.sha256(got.content).hexdigest()
                != hashlib.sha256((c / res).read_bytes()).hexdigest()
            ):
                lost += 1
                break
    stored = [p for p in (work / "server" / "uploads").rglob("*") if p.is_file()]
    with sqlite3.connect(work / "out-drops" / ".khet-edge" / "state.sqlite") as con:
        distinct = len({r[0] for r in con.execute("SELECT sha256 FROM outbox_files")})
    errors = log.read_text().count('" 500 ')

    # 3. A link that drops every --drop-every bytes, default 1 MB chunks: another device's
    # account (so nothing is on the server yet), its own field.
    run_khet(env, "user", "add", "second@example.org", "--password", "correct-horse-9")
    token2 = run_khet(env, "token", "create", "second@example.org").splitlines()[-1]
    auth2 = {"Authorization": f"Bearer {token2}"}
    farm2 = httpx.post(f"{url}/api/v1/farms", json={"name": "Chak 43"}, headers=auth2).json()
    fld2 = str(httpx.post(f"{url}/api/v1/farms/{farm2['id']}/fields", json={"name": "S"},
                          headers=auth2).json()["id"])  # fmt: skip
    drops_out = work / "out-drops"
    with sqlite3.connect(drops_out / ".khet-edge" / "state.sqlite") as con:
        files = dict(con.execute("SELECT sha256, size FROM outbox_files"))
    need = sum(files.values())  # each distinct file once: the server keeps one copy of a file
    proxy = DropProxy(port, every=args.drop_every)
    t0 = time.monotonic()
    d = subprocess.run([sys.executable, "-m", "khet.cli", "edge", "sync", "-o", str(drops_out),
                        "--server", proxy.url, "--token", token2, "--field", fld2],
                       cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - t0
    proxy.close()
    sent2 = len(httpx.get(f"{url}/api/v1/fields/{fld2}/flights", headers=auth2).json())
    stop_serve(server)

    print(
        f"power cuts during analysis (SIGKILL at random moments, {capture_s:.1f} s a capture): "
        f"{cut['cuts']} landed; "
        f"final run rc {cut['rc']} ({cut['tail'].splitlines()[-1]})"
    )
    print(
        f"  analyses completed per capture: {sorted(cut['analyses'].values())}; "
        f"duplicated analyses {dup_analyses}; maps differing from a clean run: {len(differ)}"
    )
    print(
        f"sync: {killed_syncs} syncs killed mid-upload, server killed mid-sync once, 3 syncs at "
        f"once (rc {rcs}), journal deleted then run again (rebuilt said: {rebuilt}, "
        f"re-analysed {reanalysed}), last sync rc {last.returncode}"
    )
    print(
        f"  flights on the server: {len(flights)} for {len(by_name)} captures "
        f"(duplicates {len(flights) - len(by_name)}); lost or damaged results {lost}; "
        f"uploads stored {len(stored)} for {distinct} distinct files; HTTP 500 answers {errors}"
    )
    print(
        f"link dropping every {args.drop_every} bytes, 1 MB chunks: rc {d.returncode}, "
        f"{sent2} of {len(by_name)} flights in {seconds:.1f} s, {proxy.drops} drops; "
        f"{need:,} bytes needed, {proxy.put_body:,} upload bytes crossed the link "
        f"({proxy.put_body - need:,} resent, {(proxy.put_body - need) / need:.1%})"
    )
    print(d.stdout.strip().splitlines()[-1] if d.stdout.strip() else d.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
