"""Ground sample distance: known, said where it came from, used everywhere, never guessed."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from khet.vision.scene import open_scene
from PIL import Image

from khet.errors import InputError
from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]


def _jpeg_with_xmp(path: Path, xmp: str, *, focal: float, fpx: float | None, model: str) -> Path:
    """A drone-style JPEG: EXIF focal length (and focal-plane resolution) plus an XMP packet."""
    im = Image.fromarray(np.moveaxis(field_rgb(240, 320), 0, -1))
    exif = Image.Exif()
    exif[0x0110] = model
    sub = {0x920A: focal}
    if fpx:
        sub.update({0xA20E: fpx, 0xA20F: fpx, 0xA210: 3})  # pixels per cm
    exif.get_ifd(0x8769).update(sub)
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=92)
    data = buf.getvalue()
    packet = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode()
    app1 = b"\xff\xe1" + struct.pack(">H", len(packet) + 2) + packet
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


def test_projected_crs_gives_the_pixel_size(tmp_path):
    p = write_geotiff(tmp_path / "a.tif", field_rgb(), res=0.03)
    with open_scene(p) as s:
        assert s.gsd.source == "crs" and s.gsd.metres == pytest.approx(0.03)


def test_web_mercator_pixels_are_measured_on_the_ground(tmp_path):
    """EPSG:3857 stretches distances by about 1 / cos(latitude): at 60 N its 6 mm pixels cover
    3 mm of ground (on the WGS84 ellipsoid the factor is 1.997, not 2), which is the GSD a model
    must read at; the detail says so."""
    import rasterio
    from affine import Affine

    y60 = 6378137 * np.log(np.tan(np.pi / 4 + np.radians(60) / 2))
    p = tmp_path / "merc.tif"
    profile = dict(driver="GTiff", width=320, height=256, count=3, dtype="uint8")
    t = Affine(0.006, 0, 8_200_000, 0, -0.006, y60)
    with rasterio.open(p, "w", crs="EPSG:3857", transform=t, **profile) as d:
        d.write(field_rgb())
    with open_scene(p) as s:
        assert s.gsd.source == "crs" and s.gsd.metres == pytest.approx(0.006 / 1.9967, rel=1e-3)
        assert "on the ground" in s.gsd.detail and "scale factor there is 1.997" in s.gsd.detail
    with open_scene(p, gsd=0.003) as s:  # the true GSD, stated, agrees with the file
        assert s.gsd.metres == pytest.approx(0.003, rel=0.01)


def test_feet_are_converted(tmp_path):
    # NAD83 / Texas Central (ftUS), near Austin: 0.1 ft pixels are 3.048 cm (the projection's
    # scale factor there is 1 to within 0.01 %, so the pixel size is kept exactly).
    import rasterio
    from affine import Affine

    p = tmp_path / "ft.tif"
    profile = dict(driver="GTiff", width=320, height=256, count=3, dtype="uint8")
    t = Affine(0.1, 0, 3_115_180, 0, -0.1, 10_071_477)
    with rasterio.open(p, "w", crs="EPSG:2277", transform=t, **profile) as d:
        d.write(field_rgb())
    with open_scene(p) as s:
        assert s.gsd.metres == pytest.approx(0.1 * 1200 / 3937, rel=1e-4)


def test_geographic_crs_converted_at_the_centre(tmp_path):
    import rasterio
    from affine import Affine

    p = tmp_path / "geo.tif"
    deg = 1e-6
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(deg, 0, 74.3, 0, -deg, 31.5),
    ) as d:
        d.write(field_rgb(64, 64))
    with open_scene(p) as s:
        assert s.gsd.source == "crs-geographic"
        # 1e-6 degree: 11.1 cm north-south, 9.5 cm east-west at 31.5 N.
        assert s.gsd.metres == pytest.approx((0.1109 + 0.0949) / 2, rel=0.01)


def test_sensefly_frame_from_height_focal_length_and_pixel_pitch(shared_data):
    frame = shared_data / "seneca_flight" / "images" / "IMG_0446.jpg"
    with open_scene(frame) as s:
        assert s.gsd.source == "camera"
        # 66.1 m x 6.2 um / 4.3 mm = 9.5 cm (the README: about 11 cm for these 4x frames).
        assert s.gsd.metres == pytest.approx(0.0953, rel=0.01)
        assert "senseFly" in s.gsd.detail


def test_dji_frame_uses_relative_altitude_and_camera_table(tmp_path):
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        'drone-dji:RelativeAltitude="+40.00"/></rdf:RDF></x:xmpmeta>'
    )
    p = _jpeg_with_xmp(tmp_path / "DJI_0042.JPG", xmp, focal=8.8, fpx=None, model="FC6310")
    with open_scene(p) as s:
        assert s.gsd.source == "camera"
        assert s.gsd.metres == pytest.approx(40 * (13.2 / 5472) / 8.8, rel=1e-3)  # 1.1 cm
        assert "FC6310" in s.gsd.detail


def test_unknown_is_said_with_the_reason(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(np.moveaxis(field_rgb(64, 64), 0, -1)).save(p)
    with open_scene(p) as s:
        assert s.gsd.metres is None and s.gsd.source == "unknown"
        assert "height above ground" in s.gsd.detail


def test_stated_gsd_and_bad_values(tmp_path, capsys):
    """A GSD stated for an image without coordinates is used; bad values are refused."""
    p = tmp_path / "photo.png"
    Image.fromarray(np.moveaxis(field_rgb(64, 64), 0, -1)).save(p)
    with open_scene(p, gsd=0.012) as s:
        assert s.gsd.source == "user" and s.gsd.metres == 0.012
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "khet.cli", "analyze", str(p), "-o", str(out), "--gsd", "-3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "metres per pixel" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    for typo in (1e-7, 1000.0, float("nan")):  # a microscope's, past a weather satellite's
        with pytest.raises(InputError, match=r"from 1e-05 up to \(not including\) 1000"):
            open_scene(p, gsd=typo)
    with open_scene(p, gsd=1e-5) as s:  # the smallest accepted
        assert s.gsd.metres == 1e-5


def test_a_georeferenced_image_keeps_its_own_gsd(tmp_path, capsys, use_test_models):
    """Its coordinates measure its areas, so a stated GSD cannot change it: one that agrees is
    set aside with a warning; one that does not is refused (exit 2, nothing written), where it
    used to win and the summary said 999 m per pixel beside areas measured at 3 cm."""
    from khet.cli import main

    p = write_geotiff(tmp_path / "a.tif", field_rgb(), res=0.03)
    with open_scene(p, gsd=0.03) as s:
        assert s.gsd.source == "crs" and s.warnings == []
    with open_scene(p, gsd=0.025) as s:  # rounded
        assert s.gsd.source == "crs" and s.gsd.metres == pytest.approx(0.03)
        assert any("--gsd 0.025 set aside" in w and "3.0 cm" in w for w in s.warnings)
    out = tmp_path / "out"
    assert main(["analyze", str(p), "-o", str(out), "--gsd", "999"]) == 2
    err = capsys.readouterr().err
    assert "georeferenced at 3.0 cm per pixel" in err and "999" in err and "Leave out --gsd" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_gsd_in_summary_and_frame_areas_in_approximate_hectares(tmp_path, use_test_models):
    from khet.vision.pipeline import analyze

    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        'drone-dji:RelativeAltitude="10.0"/></rdf:RDF></x:xmpmeta>'
    )
    p = _jpeg_with_xmp(tmp_path / "DJI_0001.JPG", xmp, focal=10.0, fpx=500.0, model="X")
    # 10 m x (10 mm / 500 px per cm = 0.02 mm) / 10 mm = 2 cm per pixel.
    summary = analyze(p, tmp_path / "out")
    assert summary["gsd"]["metres"] == pytest.approx(0.02)
    assert summary["area_unit"] == "ha" and summary["area_basis"].startswith("ground sample")
    # 320 x 240 px of 2 cm: 0.003072 ha.
    assert summary["area_total_ha"] == pytest.approx(320 * 240 * 0.02**2 / 1e4, rel=0.02)
    assert any("approximate" in w for w in summary["warnings"])
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["layers"]["classes"]["method"] in ("model", "rows", "index")


def test_a_pixel_size_beyond_what_khet_maps_is_said_as_such(tmp_path):
    """A 1 km pixel (a climate grid, or a wrong georeference) is not an unknown CRS unit."""
    p = write_geotiff(tmp_path / "coarse.tif", field_rgb(), res=1000.0)
    with open_scene(p) as s:
        assert s.gsd.metres is None and s.gsd.source == "unknown"
        assert "1000 m, is outside what Khet maps" in s.gsd.detail
