"""Every kind of bad input gets one clear line on stderr, exit code 2, and no output files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from khet.cli import main
from tests.vision.rasters import field_rgb, write_geotiff, write_jpeg_with_gps


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["analyze", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_clean_failure(code: int, err: str, out: Path, *words: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("khet: ")
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), err
    if out.exists():
        left = [p for p in out.rglob("*")]
        assert left == [], f"outputs left behind: {left}"


@pytest.fixture(autouse=True)
def _models(use_test_models):
    return use_test_models


def test_text_file_named_tif(tmp_path, capsys):
    p = tmp_path / "field.tif"
    p.write_text("this is not an image\n")
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "not an image")


def test_truncated_tiff(tmp_path, capsys):
    full = write_geotiff(tmp_path / "full.tif", field_rgb(512, 512), tiled=True)
    data = full.read_bytes()
    p = tmp_path / "cut.tif"
    p.write_bytes(data[: len(data) // 2])
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "damaged")
    assert "See previous exception" not in err  # GDAL's own reason, not rasterio's wrapper


def test_many_band_tiff_gets_khets_line_only(tmp_path, capsys):
    """Pillow, reading EXIF, logs that it cannot decode 9 samples per pixel: not on stderr."""
    p = write_geotiff(tmp_path / "nine.tif", np.full((9, 64, 64), 100, np.uint8))
    # In a process of its own: pytest's log capture would hide what Python prints there.
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "analyze", str(p), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    _assert_clean_failure(r.returncode, r.stderr.strip(), tmp_path / "out", "--bands")
    assert "samples per pixel" not in r.stderr


def test_truncated_jpeg(tmp_path, capsys):
    full = write_jpeg_with_gps(tmp_path / "full.jpg", field_rgb(512, 512))
    data = full.read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out")
    assert "damaged" in err or "truncated" in err


def _tiff_header(width: int, height: int) -> bytes:
    """A 200-byte baseline TIFF whose header declares width x height 8-bit pixels."""
    import struct

    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 200),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, width * height % (1 << 32)),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        fmt = "<HHIHH" if typ == 3 else "<HHII"
        ifd += (
            struct.pack(fmt, tag, typ, count, value, 0)
            if typ == 3
            else struct.pack(fmt, tag, typ, count, value)
        )
    ifd += struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", 8) + ifd
    return head + b"\x00" * (216 - len(head))


def test_huge_declared_size_is_refused_without_allocating(tmp_path, capsys):
    p = tmp_path / "huge.tif"
    p.write_bytes(_tiff_header(1_000_000, 1_000_000))
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "1000000 x 1000000")


def test_zero_byte_file(tmp_path, capsys):
    p = tmp_path / "empty.tif"
    p.write_bytes(b"")
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "empty")


@pytest.mark.parametrize("size", [1, 3])
def test_image_smaller_than_a_map_cell(tmp_path, capsys, size):
    p = write_geotiff(tmp_path / "tiny.tif", field_rgb(size, size))
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", f"{size} x {size} pixels", "too small")


def test_all_nodata_image(tmp_path, capsys):
    p = write_geotiff(tmp_path / "nd.tif", np.zeros((3, 128, 128), np.uint8), nodata=0)
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "no usable pixels")


def test_float_image_of_nan_is_no_data(tmp_path, capsys):
    """A float raster that marks no data with NaN and declares no nodata value (as reflectance
    and index rasters often do): all NaN is refused as no usable pixels, not mapped as 100% soil
    at full confidence; half NaN is a map of the other half."""
    rng = np.random.default_rng(0)
    bands = ["blue", "green", "red", "nir"]
    data = rng.uniform(0.02, 0.5, (4, 128, 128)).astype(np.float32)
    data[:, :, :64] = np.nan
    half = write_geotiff(tmp_path / "half.tif", data, descriptions=bands)
    code, err = _run(capsys, half, "-o", tmp_path / "half", "--json")
    assert code == 0, err
    assert "RuntimeWarning" not in err, err
    area = json.loads((tmp_path / "half" / "summary.json").read_text())["area_total_ha"]
    assert area == pytest.approx(64 * 128 * 0.05**2 / 1e4, rel=0.02)  # the finite half
    data[:] = np.nan
    none = write_geotiff(tmp_path / "nan.tif", data, descriptions=bands)
    code, err = _run(capsys, none, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "no usable pixels", "NaN")


def test_wrong_band_count_for_model(tmp_path, capsys):
    p = write_geotiff(
        tmp_path / "two.tif", np.full((2, 64, 64), 100, np.uint8), descriptions=["red", "nir"]
    )
    code, err = _run(capsys, p, "-o", tmp_path / "out", "--model", "test-rgb")
    _assert_clean_failure(code, err, tmp_path / "out", "green")


def test_no_model_fits_the_bands(tmp_path, capsys):
    """Two unnamed bands (red and near-infrared, say): naming them with --bands can help."""
    p = write_geotiff(tmp_path / "two.tif", np.full((2, 64, 64), 100, np.uint8))
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "--bands")


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
def test_unsupported_dtype(tmp_path, capsys, dtype):
    p = write_geotiff(tmp_path / f"{dtype}.tif", np.ones((3, 64, 64), dtype))
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", dtype)


def test_unknown_crs(tmp_path, capsys):
    wkt = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    p = write_geotiff(tmp_path / "local.tif", field_rgb(64, 64), crs=wkt)
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "coordinate reference system")


def test_output_folder_not_writable(tmp_path, capsys):
    p = write_geotiff(tmp_path / "f.tif", field_rgb(64, 64))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _run(capsys, p, "-o", blocker / "out")
    assert code == 2 and err.startswith("khet: Cannot write") and len(err.splitlines()) == 1


def test_missing_input(tmp_path, capsys):
    code, err = _run(capsys, tmp_path / "nope.tif", "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "does not exist")


def test_disk_full_mid_write_leaves_no_finished_looking_output(tmp_path, use_test_models):
    """Run the real CLI with a file-size limit: writes fail with EFBIG like a full disk."""
    p = write_geotiff(tmp_path / "big.tif", field_rgb(1024, 1024))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))\n"
        "from khet.cli import main\n"
        f"sys.exit(main(['analyze', {str(p)!r}, '-o', {str(out)!r}]))\n"
    )
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "disk is full" in r.stderr and "Traceback" not in r.stderr
    assert sorted(x.name for x in out.iterdir()) == [
        "keep.txt"
    ]  # nothing half-written, nothing lost


def test_calibration_options_misused(tmp_path, capsys):
    """--panel on a single image, a capture without a panel as the panel, a bad reflectance."""
    crop, panel = Path("tests/fixtures/micasense_crop"), Path("tests/fixtures/micasense_panel_crop")
    out = tmp_path / "out"
    code, err = _run(capsys, crop / "IMG_0001_1.tif", "--panel", panel, "-o", out)
    _assert_clean_failure(code, err, out, "single image")
    code, err = _run(capsys, crop, "--panel", crop, "-o", out)
    _assert_clean_failure(code, err, out, "no reflectance panel found")
    code, err = _run(capsys, crop, "--panel", panel, "--panel-reflectance", "red=7", "-o", out)
    _assert_clean_failure(code, err, out, "between 0 and 1")


def test_greyscale_picture_is_told_what_maps_need(tmp_path, capsys):
    import cv2

    p = tmp_path / "grey.png"
    cv2.imwrite(str(p), field_rgb(64, 64)[1])
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    _assert_clean_failure(code, err, tmp_path / "out", "single band", "red, green and blue")
    assert "--bands" not in err  # naming its one band cannot help


def test_palette_picture_is_mapped_in_its_colours(tmp_path, capsys):
    """An indexed-colour PNG is read as the red, green and blue of its palette."""
    from PIL import Image

    rgb = np.moveaxis(field_rgb(96, 96), 0, -1)
    p = tmp_path / "pal.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p)
    code, err = _run(capsys, p, "-o", tmp_path / "out")
    assert code == 0, err
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["input"]["bands"] == ["red", "green", "blue"]
    # The upload check (what the service runs before accepting the file) sees the same bands.
    from khet.vision.scene import inspect_scene

    assert inspect_scene(p).band_names == ("red", "green", "blue")
