"""Arguments `khet analyze`, `khet zones` and `khet prescription` can check before the long work:
each mistake gets one line on stderr and exit code 2, and what was stored before is untouched.

Every test runs the real command (khet.cli.main) on a small generated GeoTIFF or on the MicaSense
crop in tests/fixtures analysed as `make demo` does."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

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
    out = tmp_path / "out"
    code, _, err = _khet(
        capsys, "analyze", field_tif, "-o", out, "--tile-size", "32", "--overlap", "16", "--json"
    )
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["tiling"]["tile_size"] == 32 and s["tiling"]["overlap"] == 16
    assert np.isclose(s["area_total_ha"], 256 * 256 * 0.05**2 / 1e4, rtol=0.01)


def test_tile_size_a_model_cannot_take_is_refused(tmp_path, capsys):
    """The shipped drone model's graph takes 256 px tiles only: another --tile-size in the
    accepted range is refused by name, not an ONNX Runtime shape error mid-analysis."""
    from khet.vision.bundle import shipped_bundles_dir

    uav = shipped_bundles_dir() / "khet-rgb-uav.onnx"
    tif = write_geotiff(tmp_path / "f.tif", field_rgb(512, 512), res=0.003)
    out = tmp_path / "out"
    code, _, err = _khet(capsys, "analyze", tif, "-o", out, "--model", uav, "--tile-size", "64")
    _refused(code, err, "takes tiles of 256 px only", "--tile-size 256")
    assert not out.exists()
    code, _, err = _khet(capsys, "analyze", tif, "-o", out, "--model", uav, "--tile-size", "256")
    assert code == 0, err


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
    title = "Plot 7 — " + "n" * (2000 - len("Plot 7 — "))
    out = tmp_path / "out"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", out, "--title", title)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["title"] == title
    assert (out / "preview.png").stat().st_size > 0


# -- 3. field boundary ---------------------------------------------------------------------------


def _lonlat(*pixels: tuple[float, float]) -> list[list[float]]:
    """Pixel (column, row) positions of the generated field as [lon, lat] points."""
    from rasterio.warp import transform

    from tests.vision.rasters import ORIGIN, UTM43N

    xs = [ORIGIN[0] + c * 0.05 for c, _ in pixels]
    ys = [ORIGIN[1] - r * 0.05 for _, r in pixels]
    lon, lat = transform(UTM43N, "EPSG:4326", xs, ys)
    return [[a, b] for a, b in zip(lon, lat, strict=True)]


def _polygon(*pixels: tuple[float, float]) -> dict:
    ring = _lonlat(*pixels)
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _feature(geometry) -> dict:
    return {"type": "Feature", "properties": {"name": "plot 7"}, "geometry": geometry}


WEST_HALF = ((0, 0), (128, 0), (128, 256), (0, 256))


def _not_a_field() -> list[tuple[str, object, tuple[str, ...]]]:
    centre = _lonlat((128, 128))[0]
    return [
        ("list", [1, 2, 3], ("GeoJSON object", "not a list")),
        ("point", {"type": "Point", "coordinates": centre}, ("no polygon", "Point")),
        (
            "line",
            _feature({"type": "LineString", "coordinates": _lonlat((0, 0), (256, 256))}),
            ("no polygon", "LineString"),
        ),
        ("null", _feature(None), ("no polygon", "without geometry")),
        ("empty", {"type": "FeatureCollection", "features": []}, ("no polygon", "no features")),
        (
            "bowtie",  # two corners swapped: the outline crosses itself in the middle
            _feature(_polygon((0, 0), (256, 256), (256, 0), (0, 256))),
            ("crosses itself", "redraw"),
        ),
        (
            "utm",
            {
                "type": "Polygon",
                "coordinates": [
                    [[350000, 3500000], [350010, 3500000], [350010, 3499990], [350000, 3500000]]
                ],
            },
            ("not a longitude/latitude", "EPSG:4326"),
        ),  # fmt: skip
        ("flat", _polygon((0, 0), (128, 128), (256, 256)), ("too small for a field",)),
        ("tiny", _polygon((0, 0), (40, 0), (40, 40), (0, 40)), ("encloses 4 m²", "at least 10")),
        ("text", "not json {", ("not GeoJSON",)),
        (
            "named_utm",  # degrees by their numbers, but the file says they are UTM metres
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32643"}},
                "features": [_feature(_polygon((0, 0), (128, 0), (128, 256), (0, 256)))],
            },
            ("urn:ogc:def:crs:EPSG::32643", "not longitude/latitude", "EPSG:4326"),
        ),
        (
            "antimeridian",  # 100 m either side of 180°: read as a ring around the globe
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [179.9995, 0],
                        [-179.9995, 0],
                        [-179.9995, 0.001],
                        [179.9995, 0.001],
                        [179.9995, 0],
                    ]
                ],
            },
            ("180° meridian", "360° of longitude"),
        ),  # fmt: skip
    ]


def test_boundary_without_a_field_polygon_is_refused(tmp_path, field_tif, earlier, capsys):
    before = _snapshot(earlier)
    for name, data, words in _not_a_field():
        path = _write(tmp_path / f"{name}.geojson", data)
        code, _, err = _khet(capsys, "analyze", field_tif, "-o", earlier, "--boundary", path)
        _refused(code, err, *words, path.name)
        fresh = tmp_path / f"out-{name}"
        code, _, err = _khet(capsys, "analyze", field_tif, "-o", fresh, "--boundary", path)
        _refused(code, err, *words)
        assert not fresh.exists(), name
    assert _snapshot(earlier) == before
    missing = tmp_path / "missing.geojson"
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", earlier, "--boundary", missing)
    _refused(code, err, "Cannot read the boundary file", "missing.geojson")
    assert _snapshot(earlier) == before


def _area(out: Path) -> float:
    return json.loads((out / "summary.json").read_text())["area_total_ha"]


def test_boundary_polygons_are_found_in_collections_and_repaired(tmp_path, field_tif, capsys):
    whole = 256 * 256 * 0.05**2 / 1e4
    # A FeatureCollection with a gate marker (a Point) beside the field: the polygon counts.
    fc = {
        "type": "FeatureCollection",
        "features": [
            _feature({"type": "Point", "coordinates": _lonlat((10, 10))[0]}),
            _feature(_polygon(*WEST_HALF)),
        ],
    }
    out = tmp_path / "fc"
    code, _, err = _khet(
        capsys, "analyze", field_tif, "-o", out, "--boundary", _write(tmp_path / "fc.json", fc)
    )
    assert code == 0, err
    assert _area(out) == pytest.approx(whole / 2, rel=0.05)
    # Two features (west and east halves) are one field: all of it, not the first feature only.
    east = ((128, 0), (256, 0), (256, 256), (128, 256))
    both = {"type": "FeatureCollection", "features": [_feature(_polygon(*WEST_HALF)),
                                                      _feature(_polygon(*east))]}  # fmt: skip
    out = tmp_path / "both"
    code, _, err = _khet(
        capsys, "analyze", field_tif, "-o", out, "--boundary", _write(tmp_path / "b.json", both)
    )
    assert code == 0, err
    assert _area(out) == pytest.approx(whole, rel=0.02)
    # An outline that touches itself at one corner (a pinched field, drawn in one ring) is
    # invalid to GEOS but encloses a clear area: repaired, said on stderr, and clipped to it.
    pinched = _polygon((0, 0), (256, 0), (128, 128), (256, 256), (0, 256), (128, 128))
    out = tmp_path / "pinched"
    path = _write(tmp_path / "pinched.json", _feature(pinched))
    code, _, err = _khet(capsys, "analyze", field_tif, "-o", out, "--boundary", path)
    assert code == 0, err
    assert "boundary was repaired" in err and "Traceback" not in err
    # The same two triangles drawn as a valid MultiPolygon give the same map.
    top, bottom = _polygon((0, 0), (256, 0), (128, 128)), _polygon((128, 128), (256, 256), (0, 256))
    two = {"type": "MultiPolygon", "coordinates": [top["coordinates"], bottom["coordinates"]]}
    drawn = tmp_path / "two"
    code, _, err = _khet(
        capsys, "analyze", field_tif, "-o", drawn, "--boundary", _write(tmp_path / "t.json", two)
    )
    assert code == 0 and "repaired" not in err, err
    assert _area(out) == _area(drawn) and 0.4 * whole < _area(out) < 0.6 * whole
    with rasterio.open(out / "classes.tif") as a, rasterio.open(drawn / "classes.tif") as b:
        assert (a.read(1) == b.read(1)).all()


@pytest.fixture(scope="module")
def mica_map(tmp_path_factory) -> Path:
    """The MicaSense crop analysed as `make demo` does (with its panel capture)."""
    out = tmp_path_factory.mktemp("mica") / "map"
    assert main(["analyze", str(CROP), "--panel", str(PANEL), "-o", str(out)]) == 0
    return out


@pytest.fixture
def mica(mica_map, tmp_path) -> Path:
    """A fresh copy of the analysed crop for each test (zones are written into the folder)."""
    dst = tmp_path / "map"
    shutil.copytree(mica_map, dst)
    return dst


def test_zones_and_spot_refuse_a_boundary_without_a_field(mica, tmp_path, capsys):
    code, _, err = _khet(capsys, "zones", mica, "-n", "3")
    assert code == 0, err
    code, _, err = _khet(capsys, "prescription", "spot", mica)
    assert code == 0, err
    before = _snapshot(mica)
    lon, lat = -119.43526, 36.57608  # the capture's GPS position
    d = 0.0001
    bowtie = [[lon - d, lat - d], [lon + d, lat + d], [lon + d, lat - d], [lon - d, lat + d]]
    for name, data, words in [
        ("point", {"type": "Point", "coordinates": [lon, lat]}, ("no polygon", "Point")),
        ("list", [1, 2, 3], ("GeoJSON object",)),
        ("null", _feature(None), ("no polygon",)),
        (
            "bowtie",
            _feature({"type": "Polygon", "coordinates": [[*bowtie, bowtie[0]]]}),
            ("crosses itself",),
        ),
    ]:
        path = _write(tmp_path / f"{name}.geojson", data)
        for command in (("zones", mica, "-n", "3"), ("prescription", "spot", mica)):
            code, _, err = _khet(capsys, *command, "--boundary", path)
            _refused(code, err, *words, path.name)
    assert _snapshot(mica) == before
    # A real polygon around the capture still clips both.
    square = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]]
    path = _write(
        tmp_path / "ok.geojson",
        _feature({"type": "Polygon", "coordinates": [[*square, square[0]]]}),
    )
    code, _, err = _khet(capsys, "zones", mica, "-n", "2", "--boundary", path)
    assert code == 0, err


# -- 4. minimum zone area ------------------------------------------------------------------------


def _field_m2(folder: Path) -> float:
    return json.loads((folder / "summary.json").read_text())["area_total_ha"] * 1e4


def _m2_in(text: str, after: str) -> float:
    m = re.search(re.escape(after) + r" \(([\d,]+) m²\)", text)
    assert m, text
    return float(m.group(1).replace(",", ""))


def test_minimum_zone_larger_than_the_field_is_refused(mica, capsys, monkeypatch):
    code, _, err = _khet(capsys, "zones", mica, "-n", "3")
    assert code == 0, err
    before = _snapshot(mica)
    field = _field_m2(mica)  # 563 m² of analysed cells

    from khet.vision import prescription

    def no_clustering(*args, **kwargs):
        raise AssertionError("clustered before checking the minimum zone area")

    with monkeypatch.context() as m:
        m.setattr(prescription, "_cluster", no_clustering)
        # Was `ValueError: size must be smaller than size of image` from the sieve.
        code, _, err = _khet(capsys, "zones", mica, "--min-zone-ha", "1000")
        _refused(code, err, "minimum zone area (1,000.00 ha)", "larger than the whole mapped field")
        assert _m2_in(err, "mapped field") == pytest.approx(field, rel=0.01)
        # More than half the field: two zones cannot both be that large (the sieve left two
        # zones of 305 and 258 m² for a minimum of 500 m²).
        code, _, err = _khet(capsys, "zones", mica, "-n", "2", "--min-zone-ha", "0.05")
        _refused(code, err, "(500 m²)", "more than half the mapped field", "give at most")
    assert _snapshot(mica) == before
    # The largest minimum it names, in the flag's own hectares (it named square metres for a
    # flag in hectares), is accepted as typed.
    found = re.search(r"give at most ([\d.]+) ha \(([\d,]+) m²", err)
    assert found, err
    most = found.group(1)
    assert float(most) * 1e4 == pytest.approx(float(found.group(2).replace(",", "")), abs=1)
    code, out, err = _khet(capsys, "zones", mica, "--min-zone-ha", most, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["method"]["min_zone_ha"] == pytest.approx(float(most))
    assert sum(z["area_ha"] for z in res["zones"]) == pytest.approx(field / 1e4, rel=0.005)


# -- 5. the field a spot-spray map is compared with ----------------------------------------------


def test_spot_spray_field_is_the_analysed_area(mica, capsys):
    summary = json.loads((mica / "summary.json").read_text())
    with rasterio.open(mica / "classes.tif") as src:
        classes = src.read(1)
    assert (classes == 255).mean() > 0.05  # the band-alignment margins hold no data
    field_ha = summary["area_total_ha"]  # 563 m²; the image's whole extent is 610 m²
    code, out, err = _khet(capsys, "prescription", "spot", mica, "--rate", "80", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["field_ha"] == pytest.approx(field_ha, rel=0.002)
    assert res["blanket_total"] == pytest.approx(80 * res["field_ha"], abs=1e-3)
    assert 0 < res["sprayed_ha"] <= res["field_ha"]
    assert res["sprayed_share"] == pytest.approx(res["sprayed_ha"] / res["field_ha"], abs=1e-4)
    # The same area as the zones'.
    code, out, err = _khet(capsys, "zones", mica, "-n", "3", "--json")
    assert code == 0, err
    assert sum(z["area_ha"] for z in json.loads(out)["zones"]) == pytest.approx(
        res["field_ha"], rel=0.002
    )
    # The line a person reads says the map's area.
    code, out, err = _khet(capsys, "prescription", "spot", mica)
    assert code == 0, err
    assert f"of {field_ha * 1e4:.0f} m² (" in out, out
    # Spraying every plant with a wide margin still sprays no more than the analysed field.
    code, out, err = _khet(
        capsys, "prescription", "spot", mica, "--target", "vegetation", "--margin", "5", "--json"
    )
    assert code == 0, err
    every = json.loads(out)
    assert every["field_ha"] == pytest.approx(res["field_ha"], rel=1e-6)
    assert res["sprayed_ha"] < every["sprayed_ha"] <= every["field_ha"] * 1.0001


def test_sigterm_ends_an_analysis_like_ctrl_c(tmp_path):
    """`kill` (a service manager stopping the run) left the working folders and a stack dump;
    now it ends as Ctrl-C does: 'interrupted', exit 130, nothing half-written left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    big = write_geotiff(tmp_path / "big.tif", np.tile(field_rgb(256, 256), (1, 16, 16)))
    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, "-m", "khet.cli", "analyze", str(big), "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KHET_THREADS": "1"},
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(".khet-partial-*")) and time.monotonic() < deadline:
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        time.sleep(0.05)
    assert list(out.glob(".khet-partial-*")), "the analysis never started writing"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "khet: interrupted" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_a_first_band_to_ignore_is_named_with_a_dash(tmp_path, capsys, use_test_models):
    """`--bands -,red,green,blue`: argparse took "-,red,..." for an option and said "expected one
    argument"; the dash that names a band to ignore now works first too."""
    rgb = field_rgb(128, 128)
    path = write_geotiff(tmp_path / "x.tif", np.concatenate([rgb[:1] * 0, rgb]))
    code, out, err = _khet(
        capsys, "analyze", path, "--bands", "-,red,green,blue", "-o", tmp_path / "o"
    )
    assert code == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["input"]["bands"] == ["red", "green", "blue"]


def test_zones_of_a_map_whose_index_maps_were_not_kept_say_so(mica, capsys):
    """A device's flight sent without --with-imagery has no index maps: the message said "its
    bands are red, green, blue", as if the bands were at fault."""
    shutil.rmtree(mica / "indices")
    code, _, err = _khet(capsys, "zones", mica, "-n", "3")
    assert code == 2
    assert "were not kept with its results" in err and "--with-imagery" in err, err
