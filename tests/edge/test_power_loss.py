"""A real power cut, simulated: results on a loop-mounted ext4 whose unsynced writes are lost.

The output folder lives on an ext4 filesystem in a file, mounted through a loop device with a long
journal commit interval and delayed allocation (the defaults that lose data: a rename can reach
the disk before the renamed file's bytes). Copying the backing file while the filesystem is still
mounted gives exactly what a disk would hold if the power went at that moment: what was synced,
not what sat in the page cache. The copy is mounted (ext4 replays its journal) and checked: every
folder that looks finished, and every capture the journal says is done, must be complete.

Needs root and loop devices; where there are none the test says so and is skipped, and
`test_outputs_are_synced_before_they_are_named` (below) checks the order of the calls instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from khet.edge import stamp
from khet.edge.journal import Journal

from khet.cli import main
from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]


def _sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def _can_loop_mount() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a loop device"
    for tool in ("losetup", "mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    try:
        _sh("losetup", "-f")
    except (subprocess.CalledProcessError, OSError):
        return "no free loop device"
    return None


@contextmanager
def _mounted(image: Path, where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    loop = _sh("losetup", "-f", "--show", str(image))
    try:
        _sh("mount", "-o", options, loop, str(where))
        try:
            yield where
        finally:
            _sh("umount", str(where))
    finally:
        _sh("losetup", "-d", loop)


def _power_cut(image: Path, tmp_path: Path, n: int, pid: int | None = None) -> Path:
    """What the disk holds now: the backing file, copied while the filesystem is mounted.

    The runner is stopped while the copy is made (and only once it is out of any system call,
    an fsync included), so the copy is one moment of the disk, not blocks read before and
    after a write: a torn copy shows a renamed file with the bytes it had before its fsync,
    which no power cut does. Nothing is synced by this: unsynced writes stay in the cache."""
    snap = tmp_path / f"cut{n}.img"
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)
        for _ in range(2000):
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t", "Z"):
                    break
            time.sleep(0.005)
    try:
        shutil.copyfile(image, snap)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    return snap


def _check_after_cut(snap: Path, where: Path) -> tuple[int, int]:
    """Mount the cut disk; every finished-looking folder and every done capture is complete.
    Returns (folders that look finished, captures the journal says are done)."""
    with _mounted(snap, where, "rw") as m:
        out = m / "out"
        looks_done = [p.parent for p in out.glob("*/summary.json")]
        for folder in looks_done:
            json.loads((folder / "summary.json").read_text())  # whole, not empty
            for f in folder.rglob("*"):
                if f.is_file():
                    assert f.stat().st_size > 0, f"{f} is empty after the power cut"
            if (folder / stamp.NAME).exists():  # stamped: every result as it was made
                assert stamp.read(folder) is not None, f"{folder.name} stamped, not complete"
        done = 0
        if (out / ".khet-edge" / "state.sqlite").exists():
            with Journal(out) as j:
                for rec in j.captures("done"):
                    assert stamp.read(out / rec.name) is not None, f"{rec.name} done, incomplete"
                    done += 1
        # And the device carries on: what was lost is analyzed again, the rest is not.
        assert main(["edge", "run", str(m / "card"), "-o", str(out), "--threads", "1"]) == 0
        assert len(list(out.glob("*/summary.json"))) == 3
        return len(looks_done), done


def test_power_cut_never_leaves_empty_finished_files(tmp_path, use_test_models):
    why = _can_loop_mount()
    if why:
        pytest.skip(f"simulated power loss {why}; see test_outputs_are_synced_before_named")
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    _sh("mkfs.ext4", "-q", "-F", str(image))
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    with _mounted(image, tmp_path / "sd", "commit=600,noauto_da_alloc") as sd:
        card = sd / "card"
        card.mkdir()
        for i in range(3):
            write_geotiff(card / f"plot{i}.tif", field_rgb(128, 160, seed=i))
        _sh("sync")  # the card itself was written long ago
        p = subprocess.Popen(
            [sys.executable, "-m", "khet.cli", "edge", "run", str(card), "-o", str(sd / "out"),
             "--threads", "1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        cuts = []
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:  # cut while it works
            if list((sd / "out").glob("*/summary.json")) and len(cuts) < 3:
                cuts.append(_power_cut(image, tmp_path, len(cuts), p.pid))
            time.sleep(0.05)
        log = p.communicate()[0]
        assert p.returncode == 0, log
        cuts.append(_power_cut(image, tmp_path, len(cuts)))  # and once it has finished
    # Each cut disk is mounted where the card was (as after a reboot) and checked.
    results = [_check_after_cut(c, tmp_path / "sd") for c in cuts]
    assert results[-1] == (3, 3), results  # finished work survives a cut after the run


def test_outputs_are_synced_before_they_are_named(tmp_path, use_test_models, monkeypatch):
    """Everywhere: each output's bytes are fsync'd before its rename, its folder before the
    summary's rename, and the stamp before the journal says done."""
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "plot.tif", field_rgb(96, 96))
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b) -> None:
        events.append(("rename", f"{a} -> {b}"))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert main(["edge", "run", str(src), "-o", str(tmp_path / "out"), "--threads", "1"]) == 0
    monkeypatch.undo()
    out = (tmp_path / "out" / "plot").resolve()
    renames = [(i, e[1]) for i, e in enumerate(events) if e[0] == "rename"]
    for i, what in renames:
        src_path, dest = what.split(" -> ")
        if Path(dest).parent != out:
            continue
        synced = [j for j, e in enumerate(events[:i]) if e == ("fsync", src_path)]
        assert synced, f"{Path(dest).name} renamed into place before its bytes were synced"
    summary = next(i for i, w in renames if w.endswith(f"{out}/summary.json"))
    assert ("fsync", str(out)) in events[:summary], "folder not synced before the summary"
    stamped = next(i for i, w in renames if w.endswith(f"{out}/.khet-edge.json"))
    assert ("fsync", str(out)) in events[stamped:], "the stamp's name not synced"
