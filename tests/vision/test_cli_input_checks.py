"""Arguments `khet analyze`, `khet zones` and `khet prescription` can check before the long work:
each mistake gets one line on stderr and exit code 2, and what was stored before is untouched.

Every test runs the real command (khet.cli.main) on a small generated GeoTIFF or on the MicaSense
crop in tests/fixtures analysed as `make demo` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from khet.cli import main
from tests.vision.rasters import field_rgb, write_geotiff

CROP = Path("tests/fixtures/micasense_crop")
PANEL = Path("tests/fixtures/micasense_panel_crop")


def _khet(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("khet: ") and "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def field_tif(tmp_path, use_test_models) -> Path:
    """A 256 x 256 RGB GeoTIFF at 5 cm (the tiny test-rgb model, 32 px tiles, maps it)."""
    return write_geotiff(tmp_path / "field.tif", field_rgb(256, 256))


@pytest.fixture
def earlier(tmp_path, field_tif, capsys) -> Path:
    """An output folder holding an earlier analysis, which a refused run must leave as it was."""
    out = tmp_path / "earlier"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", out)
    assert code == 0, err
    return out


# -- 1. tile size and overlap --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--tile-size", "100000"),  # was a 27.9 GiB MemoryError traceback
        ("--tile-size", "0"),  # was silently replaced by the model's tile size
        ("--tile-size", "-32"),
        ("--tile-size", "8"),
        ("--tile-size", "33"),
        ("--tile-size", "2048"),
    ],
)
def test_tile_size_out_of_range_is_refused_up_front(tmp_path, field_tif, earlier, capsys, args):
    before = _snapshot(earlier)
    code, out, err = _khet(capsys, "analyze", field_tif, "-o", earlier, *args)
    _refused(code, err, "tile size", "16 to 1024", args[1])
    assert out == ""
    assert _snapshot(earlier) == before
    fresh = tmp_path / "fresh"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", fresh, *args)
    _refused(code, err, "16 to 1024")
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--overlap", "-2"), ("overlap", "0 to 1022")),
        (("--overlap", "3"), ("overlap", "even")),
        (("--overlap", "100000"), ("overlap", "0 to 1022")),
        (("--tile-size", "32", "--overlap", "32"), ("overlap", "0 to 30", "smaller than the tile")),
    ],
)
def test_overlap_out_of_range_is_refused_up_front(tmp_path, field_tif, capsys, args, words):
    out = tmp_path / "out"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", out, *args)
    _refused(code, err, *words)
    assert not out.exists()


def test_tile_size_in_range_is_used(tmp_path, field_tif, capsys):
    """The accepted range is honoured, not only the refusals: the test model's own 32 px tiles
    with an overlap (the stride, 16 px, is then the map's cell)."""
    import json

    out = tmp_path / "out"
    code, _, err = _khet(
        capsys, "analyze", field_tif, "-o", out, "--tile-size", "32", "--overlap", "16", "--json"
    )
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["tiling"]["tile_size"] == 32 and s["tiling"]["overlap"] == 16
    assert np.isclose(s["area_total_ha"], 256 * 256 * 0.05**2 / 1e4, rtol=0.01)


# -- 2. title ------------------------------------------------------------------------------------


def test_too_long_title_is_refused_before_the_analysis(tmp_path, field_tif, earlier, capsys):
    before = _snapshot(earlier)
    code, out, err = _khet(capsys, "analyze", field_tif, "-o", earlier, "--title", "x" * 3000)
    _refused(code, err, "title", "3,000 characters", "at most 2,000")
    assert out == "" and _snapshot(earlier) == before
    # Refused before the imagery is even opened: a missing input is not what it reports.
    missing = tmp_path / "not-there.tif"
    code, _, err = _khet(capsys, "analyze", missing, "-o", tmp_path / "o2", "--title", "y" * 2001)
    _refused(code, err, "2,001 characters")
    assert not (tmp_path / "o2").exists()


def test_title_at_the_limit_is_kept(tmp_path, field_tif, capsys):
    import json

    title = "Plot 7 — " + "n" * (2000 - len("Plot 7 — "))
    out = tmp_path / "out"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", out, "--title", title)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["title"] == title
    assert (out / "preview.png").stat().st_size > 0
