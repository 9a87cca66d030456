"""`khet edge run` and `watch`: each capture analyzed exactly once, across crashes and bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from khet.edge.journal import MAX_CRASHES, Journal
from khet.edge.runner import EdgeOptions, EdgeRunner, discover, fingerprint
from rasterio.enums import ColorInterp

from khet.cli import main
from khet.errors import KhetError
from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
#: What every map sends: its own layers, a few kB (index maps and preview: with --with-imagery).
RESULTS = {
    "summary.json",
    "zones.geojson",
    "classes.tif",
    "vigour.tif",
    "confidence.tif",
    "cover.tif",
}


def _done(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/summary.json"))


def test_run_folder_of_captures(card, tmp_path, edge_env, capsys):
    out = tmp_path / "out"
    rc = main(["edge", "run", str(card), "-o", str(out), "--threads", "1", "--field", "7"])
    assert rc == 2  # the broken file failed; the others still ran
    assert _done(out) == ["DCIM__100__ortho_b", "DCIM__101__IMG_0001", "ortho_a"]
    err = capsys.readouterr()
    assert "broken: failed: broken.tif cannot be opened" in err.out
    with Journal(out) as j:
        status = {c.name: c.status for c in j.captures()}
        assert status == {
            "broken": "failed",
            "DCIM__100__ortho_b": "done",
            "DCIM__101__IMG_0001": "done",
            "ortho_a": "done",
        }
        pending = j.pending()
    assert [p["capture"] for p in pending] == [
        "DCIM__100__ortho_b",
        "DCIM__101__IMG_0001",
        "ortho_a",
    ]
    for p in pending:
        assert p["field"] == "7"
        roles = {f["role"] for f in p["files"]}
        made = {
            f.relative_to(out / p["capture"]).as_posix() for f in (out / p["capture"]).rglob("*.*")
        }
        assert roles == RESULTS & made and {"summary.json", "classes.tif"} <= roles, roles
        assert "preview.png" in made and any(m.startswith("indices/") for m in made)  # not sent
        # The result's identity comes from the capture (its inputs' sha256), as its stamp says.
        stamped = json.loads((out / p["capture"] / ".khet-edge.json").read_text())
        assert p["client_id"] == stamped["client_id"]
        assert all(len(i["sha256"]) == 64 for i in stamped["inputs"])
    # The multispectral capture used the red+NIR bundle, the RGB ones the RGB bundle.
    mica = json.loads((out / "DCIM__101__IMG_0001" / "summary.json").read_text())
    assert mica["model"]["name"] == "test-rednir"

    # A second run analyzes nothing again (not even the broken file).
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    assert main(["edge", "run", str(card), "-o", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps
    assert "skipped (already done)" in capsys.readouterr().out


def test_run_one_file_and_band_files(tmp_path, edge_env, card):
    out = tmp_path / "out"
    assert main(["edge", "run", str(card / "ortho_a.tif"), "-o", str(out)]) == 0
    bands = sorted((card / "DCIM" / "101").glob("IMG_0001_*.tif"))
    assert main(["edge", "run", *map(str, bands), "-o", str(out)]) == 0
    assert _done(out) == ["IMG_0001", "ortho_a"]
    assert not list(out.rglob(".khet-partial-*"))


def test_missing_input_is_one_line(tmp_path, edge_env, capsys):
    assert main(["edge", "run", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist.")


_CRASH = """
import os, sys
from pathlib import Path
from khet.edge.runner import EdgeOptions, EdgeRunner, discover, fingerprint
from rasterio.enums import ColorInterp
import khet.edge.outbox as outbox
mode, out, src = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
runner = EdgeRunner(EdgeOptions(out=out, batch_size=4, threads=1))
cap = next(iter(discover([src], exclude=out).values()))
def die(*a, **k):
    os._exit(9)  # power cut: no cleanup of any kind
def half(done, total):
    if done >= total // 2:
        die()
if mode == "after-summary":
    outbox.stage = die
runner.process(cap, progress=half if mode == "mid" else None)
"""


@pytest.mark.parametrize("mode", ["mid", "after-summary"])
def test_power_loss_resumes_without_duplicates(tmp_path, edge_env, mode):
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "field.tif", field_rgb(256, 320))
    out = tmp_path / "out"
    env = {**os.environ, "KHET_MODELS_DIR": str(edge_env)}
    r = subprocess.run(
        [sys.executable, "-c", _CRASH, mode, str(out), str(src)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 9, r.stderr
    with Journal(out) as j:
        assert [(c.name, c.status) for c in j.captures()] == [("field", "running")]
    if mode == "mid":
        assert list((out / "field").glob(".khet-partial-*")), (
            "a real crash leaves the staging folder"
        )
        assert not (out / "field" / "summary.json").exists()
    else:
        # The outputs are complete on disk, but the journal never said done: not trusted.
        assert (out / "field" / "summary.json").exists()
    before = (out / "field" / "summary.json").stat().st_mtime_ns if mode != "mid" else None

    assert main(["edge", "run", str(src), "-o", str(out)]) == 0
    assert not list(out.rglob(".khet-partial-*"))
    with Journal(out) as j:
        assert [(c.name, c.status) for c in j.captures()] == [("field", "done")]
        assert [p["capture"] for p in j.pending()] == ["field"]
    if before is not None:
        assert (out / "field" / "summary.json").stat().st_mtime_ns != before  # analyzed again
    assert main(["edge", "run", str(src), "-o", str(out)]) == 0  # and then never again
    with Journal(out) as j:
        assert len(j.pending()) == 1


def test_interruptions_never_give_up(tmp_path, edge_env, card):
    """Starts that never finished, with no sign that the capture caused it, are interruptions."""
    out = tmp_path / "out"
    key, cap = next(iter(discover([card / "ortho_a.tif"]).items()))
    with Journal(out) as j:
        for _ in range(MAX_CRASHES + 2):  # five starts cut by power loss or kill
            j.begin(key, "ortho_a", [key], fingerprint(cap.files), None)
    with EdgeRunner(EdgeOptions(out=out), log=lambda m: None) as runner:
        rec = runner.journal.capture(key)
        assert rec.status == "running" and rec.interruptions == 1 and rec.crashes == 0
        assert runner.run([card / "ortho_a.tif"])["done"] == 1


def test_crash_loop_gives_up(tmp_path, edge_env, card):
    """A fatal signal recorded while the capture ran is the capture's failure: three give up."""
    out = tmp_path / "out"
    key, cap = next(iter(discover([card / "ortho_a.tif"]).items()))
    fatal = out / ".khet-edge" / "fatal.log"
    for n in range(MAX_CRASHES):
        with Journal(out) as j:
            mark = fatal.stat().st_size if fatal.exists() else 0
            j.begin(key, "ortho_a", [key], fingerprint(cap.files), None, fatal_mark=mark)
        with open(fatal, "a") as f:
            f.write("Fatal Python error: Segmentation fault\n")
        if n < MAX_CRASHES - 1:
            with EdgeRunner(EdgeOptions(out=out), log=lambda m: None) as runner:
                assert runner.journal.capture(key).crashes == n + 1
    with EdgeRunner(EdgeOptions(out=out), log=lambda m: None) as runner:
        rec = runner.journal.capture(key)
        assert rec.status == "failed" and "crashed 3 times" in rec.message
        assert runner.run([card / "ortho_a.tif"])["skipped"] == 1


def test_memory_ceiling(tmp_path, edge_env, card, capsys):
    out = tmp_path / "out"
    with pytest.raises(KhetError, match="too low"):
        EdgeRunner(EdgeOptions(out=out, max_memory_mb=20))
    assert (
        main(["edge", "run", str(card / "ortho_a.tif"), "-o", str(out), "--max-memory", "5"]) == 2
    )
    assert "--max-memory 5 MB is too low" in capsys.readouterr().err

    with EdgeRunner(
        EdgeOptions(out=out, max_memory_mb=4000, batch_size=1000), log=lambda m: None
    ) as runner:
        # The plan bounds the batch by the memory left, whatever was asked.
        free = 4000 - runner.plan.baseline_mb
        assert 1 <= runner.plan.batch_size <= 1000
        assert runner.plan.gdal_cache_mb <= min(64, free * 0.25 + 1)
        # Over the ceiling mid-analysis: stopped, recorded as failed, nothing half-written.
        runner.plan.max_memory_mb = 1
        counts = runner.run([card / "ortho_a.tif"])
        assert counts["failed"] == 1
        rec = runner.journal.captures()[0]
        assert rec.status == "failed" and "--max-memory" in rec.message
    assert not (out / "ortho_a" / "summary.json").exists()
    assert not list(out.rglob(".khet-partial-*"))


def test_plan_shrinks_batch_with_memory(tmp_path, edge_env):
    from khet.edge import resources

    from khet.settings import get_settings

    base = resources.rss_mb()
    small = resources.plan(
        get_settings(),
        threads=1,
        batch_size=None,
        gdal_cache_mb=None,
        max_memory_mb=int(base + 40),
        tile_size=256,
        bands=5,
    )
    big = resources.plan(
        get_settings(),
        threads=1,
        batch_size=None,
        gdal_cache_mb=None,
        max_memory_mb=int(base + 2000),
        tile_size=256,
        bands=5,
    )
    assert small.batch_size < big.batch_size <= 32
    assert small.gdal_cache_mb < big.gdal_cache_mb <= 64


def test_watch_analyzes_stable_captures_once(tmp_path, edge_env):
    card = tmp_path / "card"
    card.mkdir()
    out = tmp_path / "out"
    polls = {"n": 0}
    log: list[str] = []

    def step() -> bool:
        n = polls["n"] = polls["n"] + 1
        if n == 1:  # the drone starts writing a capture: two of five bands so far
            for b in (1, 2):
                _band(card, b)
        elif n == 2:  # still being written: must not be analyzed yet
            assert _done(out) == []
            for b in (3, 4, 5):
                _band(card, b)
            (card / "junk.tif").write_bytes(b"not an image")
        elif n == 6:
            write_geotiff(card / "late.tif", field_rgb(128, 128))
        return n >= 10

    with EdgeRunner(EdgeOptions(out=out), log=log.append) as runner:
        counts = runner.watch(card, interval=0.05, settle=0.12, stop=step)
    assert counts == {"done": 2, "failed": 1}
    assert _done(out) == ["IMG_0001", "late"]
    summary = json.loads((out / "IMG_0001" / "summary.json").read_text())
    assert len(summary["input"]["sources"]) == 5  # all five bands, not the first two
    assert sum("junk: failed" in m for m in log) == 1  # recorded once, not retried

    # A restart (after a power cut) finds everything done: nothing analyzed twice.
    with EdgeRunner(EdgeOptions(out=out), log=log.append) as runner:
        polls["n"] = 100
        assert runner.watch(card, interval=0.05, settle=0.0, stop=lambda: True) == {
            "done": 0,
            "failed": 0,
        }


def _band(card: Path, b: int) -> None:
    import shutil

    from tests.edge.conftest import MICASENSE

    shutil.copy(MICASENSE / f"IMG_0001_{b}.tif", card / f"IMG_0001_{b}.tif")


def test_one_runner_per_output_folder(tmp_path, edge_env):
    out = tmp_path / "out"
    with EdgeRunner(EdgeOptions(out=out), log=lambda m: None):
        with pytest.raises(KhetError, match="already using"):
            EdgeRunner(EdgeOptions(out=out), log=lambda m: None)
    with EdgeRunner(EdgeOptions(out=out), log=lambda m: None):  # free again once closed
        pass


def test_an_unexpected_error_fails_that_capture_only(tmp_path, edge_env, card, monkeypatch):
    """A fault that is not a message for the user (a bug, a library failing on odd data) fails
    the capture it happened on, with its name and a trace in errors.log; the card's other
    captures are analyzed, and the next run does not try it again."""
    import khet.vision.pipeline as pipeline

    real = pipeline.analyze

    def faulty(inputs, out_dir, **kw):
        if Path(out_dir).name == "ortho_a":
            raise ZeroDivisionError("division by zero")
        return real(inputs, out_dir, **kw)

    monkeypatch.setattr(pipeline, "analyze", faulty)
    out = tmp_path / "out"
    logs: list[str] = []
    with EdgeRunner(EdgeOptions(out=out), log=logs.append) as runner:
        counts = runner.run([card / "ortho_a.tif", card / "DCIM" / "100" / "ortho_b.tif"])
        rec = runner.journal.capture(next(iter(discover([card / "ortho_a.tif"]))))
    assert counts == {"done": 1, "failed": 1, "skipped": 0}
    assert rec is not None and rec.status == "failed"
    assert "Unexpected error (ZeroDivisionError: division by zero)" in rec.message
    trace = (out / ".khet-edge" / "errors.log").read_text()
    assert "--- ortho_a" in trace and "Traceback" in trace and "ZeroDivisionError" in trace
    assert not (out / "ortho_a").exists()
    assert (out / "ortho_b" / "summary.json").is_file()
    with EdgeRunner(EdgeOptions(out=out), log=logs.append) as runner:
        assert runner.run([card / "ortho_a.tif"])["skipped"] == 1


def test_a_done_capture_whose_files_changed_is_analysed_again(tmp_path, edge_env, capsys):
    """A photo replaced under the same name was 'skipped (already done)' for good; now the
    changed files are analysed again. Unchanged files stay done."""
    card = tmp_path / "card"
    card.mkdir()
    photo = write_geotiff(card / "plot.tif", field_rgb(128, 160, seed=1))
    out = tmp_path / "out"
    assert main(["edge", "run", str(card), "-o", str(out)]) == 0
    before = json.loads((out / "plot" / "summary.json").read_text())["input"]
    assert main(["edge", "run", str(card), "-o", str(out)]) == 0
    assert "skipped (already done)" in capsys.readouterr().out
    write_geotiff(photo, field_rgb(160, 192, seed=2))  # another photo, the same name
    assert main(["edge", "run", str(card), "-o", str(out)]) == 0
    assert "1 analyzed" in capsys.readouterr().err
    after = json.loads((out / "plot" / "summary.json").read_text())["input"]
    assert (before["width"], after["width"]) == (160, 192)


def test_a_failed_capture_is_tried_again_with_the_options_its_error_asked_for(
    tmp_path, edge_env, capsys
):
    """The error says 'name the bands with --bands'; a run that does was 'skipped (failed
    before)' unless --retry-failed. Options that change the map make it a new try."""
    card = tmp_path / "card"
    card.mkdir()
    data = field_rgb(128, 160)
    write_geotiff(card / "grey.tif", data, colorinterp=[ColorInterp.undefined] * 3)
    out = tmp_path / "out"
    assert main(["edge", "run", str(card), "-o", str(out), "--bands", "red,foo,blue"]) == 2
    assert main(["edge", "run", str(card), "-o", str(out), "--bands", "red,foo,blue"]) == 0
    assert "skipped (failed before" in capsys.readouterr().out
    assert main(["edge", "run", str(card), "-o", str(out), "--bands", "red,green,blue"]) == 0
    assert "1 analyzed" in capsys.readouterr().err


def test_bad_runner_options_are_one_line(tmp_path, edge_env, card, capsys):
    out = str(tmp_path / "out")
    for argv, msg in [
        (["watch", str(card), "-o", out, "--once", "--settle", "-1"], "give 0 or more seconds"),
        (["watch", str(card), "-o", out, "--settle", "nan"], "give 0 or more seconds"),
        (["watch", str(card), "-o", out, "--interval", "0"], "give more than 0 seconds"),
        (["watch", str(card), "-o", out, "--sync-every", "nan"], "give more than 0 seconds"),
        (["watch", str(tmp_path / "nocard"), "-o", out, "--once"], "nocard does not exist"),
        (["watch", str(card), "-o", out, "--server", "notaurl", "--token", "t"], "web address"),
        (["run", str(card), "-o", out, "--bands", ",,"], "leaves a band without a name"),
        (["run", str(card), "-o", out, "--gsd", "0"], "--gsd 0.0 does not work"),
        (["run", str(card), "-o", out, "--gsd", "nan"], "--gsd nan does not work"),
        (
            ["run", str(card), "-o", out, "--spot-spray", "--spray-rate", "0.025"],
            "finer than a terminal's TaskData carries",
        ),
    ]:
        try:
            code = main(["edge", *argv])
        except SystemExit as e:  # argparse's own refusals
            code = int(e.code or 0)
        err = capsys.readouterr().err
        assert code == 2 and msg in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "out" / "ortho_a").exists()  # nothing analysed


def test_a_stated_gsd_reaches_the_analysis(tmp_path, edge_env):
    """Frames that cannot tell their GSD (a photo without flying height) get it from --gsd, as
    `khet analyze` and the service take it."""
    from PIL import Image

    card = tmp_path / "card"
    card.mkdir()
    Image.fromarray(field_rgb(128, 160).transpose(1, 2, 0)).save(card / "frame.png")
    out = tmp_path / "out"
    assert main(["edge", "run", str(card), "-o", str(out), "--gsd", "0.004"]) == 0
    summary = json.loads((out / "frame" / "summary.json").read_text())
    assert summary["gsd"]["metres"] == 0.004 and summary["area_unit"] == "ha"


def test_a_sync_that_keeps_failing_is_logged_once_not_every_try(tmp_path, edge_env, monkeypatch):
    """Out of network range the watcher tries to sync every minute for days: the failure is
    said once (and again only hourly, with how many tries), and its end is said."""
    from khet.edge import runner as runner_mod

    from khet.errors import KhetError

    card = tmp_path / "card"
    card.mkdir()
    tries = {"n": 0}

    def sync() -> None:
        tries["n"] += 1
        if tries["n"] <= 6:
            raise KhetError("Cannot reach the server at http://farm.example (ConnectError)")

    log: list[str] = []
    with EdgeRunner(EdgeOptions(out=tmp_path / "out"), log=log.append) as runner:
        runner.watch(
            card, interval=0.0, settle=0.0, sync=sync, sync_every=0.0, stop=lambda: tries["n"] >= 8
        )
    lines = [m for m in log if m.startswith("sync:")]
    assert lines == [
        "sync: Cannot reach the server at http://farm.example (ConnectError) (will try again)",
        "sync: working again after 6 failed tries",
    ]
    # An hour on, the same failure is said again with its count.
    monkeypatch.setattr(runner_mod._Failing, "REPEAT_S", 0.0)
    failing = runner_mod._Failing(log.append)
    for _ in range(3):
        failing.failed("Cannot reach the server")
    assert log[-1].startswith("sync: still failing, 3 tries since ")


def test_a_field_of_another_crop_than_the_model_learned(tmp_path, monkeypatch, capsys):
    """`--crop` on a device: the only bundle learned potato, the field grows maize, so the map
    is made without it (and says why); naming that bundle for maize is refused before any
    capture is touched; the same capture run for potato is analysed again, with the model."""
    from khet.settings import get_settings
    from tests.bundles import make_segmentation_bundle

    models = tmp_path / "models"
    make_segmentation_bundle(models / "potato-seg.onnx", crops=("potato",), name="potato-seg")
    monkeypatch.setenv("KHET_MODELS_DIR", str(models))
    get_settings.cache_clear()
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "ortho.tif", field_rgb(256, 320, seed=1), res=0.01)
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out), "--crop", "maize"]) == 0
    s = json.loads((out / "ortho" / "summary.json").read_text())
    assert s["method"] != "model" and s["crop"] == "maize"
    assert "model potato-seg learned potato, not maize" in s["layers"]["classes"]["detail"]
    capsys.readouterr()
    named = ["edge", "run", str(src), "-o", str(tmp_path / "o2"), "--crop", "maize"]
    assert main([*named, "--model", "potato-seg"]) == 2
    assert "Model potato-seg learned potato; this field's crop is maize" in capsys.readouterr().err
    assert not list((tmp_path / "o2").glob("*/summary.json"))
    assert main(["edge", "run", str(src), "-o", str(out), "--crop", "potato"]) == 0
    s = json.loads((out / "ortho" / "summary.json").read_text())
    assert s["method"] == "model" and s["crop"] == "potato"
