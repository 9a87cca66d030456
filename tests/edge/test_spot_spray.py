"""`khet edge run --spot-spray`: a spot-spray map made offline on a field device, with only the
core dependencies importable, beside each capture's map."""

from __future__ import annotations

import json
import os
import shutil

from khet.edge.journal import Journal
from khet.vision import prescription as rx

from tests.edge.conftest import MICASENSE
from tests.edge.test_imports import _khet
from tests.vision.rasters import field_rgb, write_geotiff


def test_spot_spray_offline_with_core_dependencies_only(tmp_path, use_test_models):
    card = tmp_path / "card"
    card.mkdir()
    write_geotiff(card / "ortho.tif", field_rgb(256, 320, seed=1))  # a georeferenced tile
    # A capture with no panel: its height above ground, so its place on the ground, is unknown.
    shutil.copytree(MICASENSE, card / "101", ignore=shutil.ignore_patterns("LICENSE"))
    out = tmp_path / "out"
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    args = ("edge", "run", str(card), "-o", str(out), "--threads", "1", "--spot-spray")
    r = _khet(*args, "--spray-rate", "5000", env=env)
    assert r.returncode == 2 and "--spray-rate must be 0 to 2000" in r.stderr
    assert not list(out.glob("*/summary.json"))  # refused before anything was analysed

    r = _khet(*args, "--spray-margin", "0.3", "--spray-target", "vegetation", env=env)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout  # no torch, FastAPI, SQLAlchemy ... on the device
    assert "ortho: spot spray" in r.stdout and "saving" in r.stdout
    assert (
        "101__IMG_0001: no spot-spray map: This map has no georeference and no ground" in r.stdout
    )
    assert len(list(out.glob("*/summary.json"))) == 2  # both maps are done either way
    dest = out / "ortho"
    spot = json.loads((dest / rx.files("spot")["json"]).read_text())
    assert spot["margin_m"] == 0.3 and 0 < spot["sprayed_share"] < 1
    shp = rx.read_shapefile_zip(dest / rx.files("spot")["shapefile"])
    td = rx.read_taskdata_zip(dest / rx.files("spot")["taskdata"])
    assert shp[1][0] == td["zones"][1][0] or abs(shp[1][0] - td["zones"][1][0]) < 1e-6
    assert abs(shp[1][0] - spot["sprayed_ha"]) <= 0.005 * spot["sprayed_ha"]
    # The device sends the map, not the spray files (the service makes its own from it).
    with Journal(out) as j:
        roles = [f["role"] for p in j.pending() for f in p["files"]]
    assert roles and not any(r.startswith("management/") for r in roles)
