"""Files whose pixels are fine but whose metadata is broken are analysed (the broken part is not
used); a failed analysis leaves no folder it made behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from khet.vision.exif import read_camera_facts

from khet.cli import main
from tests.vision.rasters import field_rgb, write_geotiff, write_jpeg_with_gps


@pytest.fixture(autouse=True)
def _models(use_test_models):
    return use_test_models


def test_jpeg_with_malformed_xmp_is_analysed(tmp_path, capsys):
    """GDAL reports an XMP packet that does not parse as an error on the first call after the
    open; the picture is read all the same."""
    from PIL import Image

    src = write_jpeg_with_gps(tmp_path / "ok.jpg", field_rgb(160, 200, seed=3))
    bad = tmp_path / "bad.jpg"
    with Image.open(src) as im:
        im.save(bad, quality=92, exif=im.getexif().tobytes(), xmp=b"<x:xmpmeta><rdf:RDF><unclosed")
    assert main(["analyze", str(bad), "-o", str(tmp_path / "out")]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert main(["analyze", str(src), "-o", str(tmp_path / "clean")]) == 0
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    # The same map as the picture it was saved from (saved again: a JPEG's pixels move a little).
    assert [(c["name"], c["cells"]) for c in s["classes"]] == [
        (c["name"], c["cells"]) for c in clean["classes"]
    ]
    assert "Traceback" not in capsys.readouterr().err


def test_gps_off_the_globe_is_no_position(tmp_path, capsys):
    """A latitude of 95 degrees (a broken receiver or tag) is treated as no GPS, not a position
    that fails the summary after the whole analysis."""
    img = write_jpeg_with_gps(tmp_path / "f.jpg", field_rgb(160, 200, seed=4), lat=95.0)
    facts = read_camera_facts(img)
    assert facts.latitude is None and facts.longitude is None
    good = read_camera_facts(write_jpeg_with_gps(tmp_path / "g.jpg", field_rgb(64, 64), lat=31.5))
    assert good.latitude == pytest.approx(31.5, abs=1e-4)
    assert main(["analyze", str(img), "-o", str(tmp_path / "out")]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s.get("location") is None
    assert main(["analyze", str(tmp_path / "g.jpg"), "-o", str(tmp_path / "out2")]) == 0
    s = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert s["location"]["lat"] == pytest.approx(31.5, abs=1e-4)


def test_failed_analysis_leaves_no_new_folder(tmp_path, capsys):
    nd = write_geotiff(tmp_path / "nd.tif", np.zeros((3, 128, 128), np.uint8), nodata=0)
    out = tmp_path / "new" / "out"
    assert main(["analyze", str(nd), "-o", str(out)]) == 2
    assert "no usable pixels" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folders it made are gone again
    # A folder that was there before stays, with what it held.
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert main(["analyze", str(nd), "-o", str(keep)]) == 2
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]
