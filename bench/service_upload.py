"""Server memory during a large upload: the chunked API and the multipart form both stream.

    python bench/service_upload.py [--mb 2048] [--chunk-mb 8]

Starts a real `khet serve`, sends --mb megabytes through PUT /api/v1/uploads/{id} in chunks and
then the same amount as one multipart request, sampling the server's RSS (/proc) every 0.1 s.
The body is generated on the fly, so the client's memory stays flat too.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.service_common import rss_mb, start_server  # noqa: E402


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.samples: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(rss_mb(self.pid))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=2048, help="upload size in MB")
    ap.add_argument("--chunk-mb", type=int, default=8)
    args = ap.parse_args()
    size = args.mb * 1024 * 1024
    chunk = args.chunk_mb * 1024 * 1024
    block = (b"II*\x00" + bytes(range(256)) * 4096)[:chunk]  # TIFF magic, then filler

    def body(n: int):
        sent = 0
        while sent < n:
            part = block[: min(chunk, n - sent)]
            sent += len(part)
            yield part

    digest = hashlib.sha256()
    for part in body(size):
        digest.update(part)

    work = Path(tempfile.mkdtemp(prefix="khet-bench-upload-"))
    proc, base, token = start_server(work / "data", {"KHET_MAX_UPLOAD_MB": str(args.mb + 64)})
    h = {"Authorization": f"Bearer {token}"}
    try:
        c = httpx.Client(base_url=base, headers=h, timeout=600)
        farm = c.post("/api/v1/farms", json={"name": "bench"}).json()["id"]
        field = c.post(f"/api/v1/farms/{farm}/fields", json={"name": "f"}).json()["id"]
        before = rss_mb(proc.pid)

        sampler = Sampler(proc.pid)
        sampler.start()
        t0 = time.time()
        up = c.post(
            "/api/v1/uploads",
            json={"filename": "big.tif", "size": size, "sha256": digest.hexdigest()},
        ).json()
        offset = 0
        for part in body(size):
            r = c.put(
                f"/api/v1/uploads/{up['id']}",
                content=part,
                headers={"Content-Range": f"bytes {offset}-{offset + len(part) - 1}/{size}"},
            )
            r.raise_for_status()
            offset = r.json()["offset"]
        assert r.json()["complete"], r.text
        dt = time.time() - t0
        sampler.stop.set()
        sampler.join()
        print(
            f"chunked: {args.mb} MB in {dt:.1f} s ({args.mb / dt:.0f} MB/s), chunks of "
            f"{args.chunk_mb} MB; server RSS before {before:.0f} MB, peak {max(sampler.samples):.0f} MB, "
            f"after {rss_mb(proc.pid):.0f} MB"
        )

        before = rss_mb(proc.pid)
        sampler = Sampler(proc.pid)
        sampler.start()
        t0 = time.time()
        boundary = "khetbenchboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="big.tif"\r\nContent-Type: image/tiff\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def form():
            yield head
            yield from body(size)
            yield tail

        r = c.post(
            f"/api/v1/fields/{field}/flights/upload",
            content=form(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        dt = time.time() - t0
        sampler.stop.set()
        sampler.join()
        print(
            f"multipart: {args.mb} MB in {dt:.1f} s ({args.mb / dt:.0f} MB/s), answer "
            f"{r.status_code} ({r.json().get('error', 'created')}: the filler is not a real image); "
            f"server RSS before {before:.0f} MB, peak {max(sampler.samples):.0f} MB, "
            f"after {rss_mb(proc.pid):.0f} MB"
        )
    finally:
        proc.terminate()
        proc.wait(30)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
