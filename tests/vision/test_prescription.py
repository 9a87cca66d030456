"""Management zones and prescriptions on real maps: the MicaSense capture (a crop of it in
tests/fixtures, the whole capture from shared data) and a real labelled drone tile block
(uav_potato) turned into a GeoTIFF. Every export is read back here with independent readers
(pyogrio for the Shapefile, the isoxml package for the TaskData)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from khet.vision import prescription as rx
from khet.vision.maps import hectares
from khet.vision.pipeline import analyze
from shapely.geometry import shape

from khet.errors import InputError
from tests.vision.rasters import field_rgb, write_geotiff

CROP = Path("tests/fixtures/micasense_crop")
PANEL = Path("tests/fixtures/micasense_panel_crop")


@pytest.fixture(scope="module")
def mica_map(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mica") / "map"
    analyze(str(CROP), out, calibration=_panel())
    return out


def _panel():
    from khet.vision import radiometry

    return radiometry.Options(panel=(PANEL,))


@pytest.fixture
def mica(mica_map, tmp_path) -> Path:
    """A fresh copy of the analysed crop for each test (zones are written into the folder)."""
    dst = tmp_path / "map"
    shutil.copytree(mica_map, dst)
    return dst


def _areas(geoms) -> np.ndarray:
    return hectares(np.array(list(geoms), dtype=object), "EPSG:4326")


def _read_shapefile(zip_path: Path, tmp: Path):
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(z.namelist())
        z.extractall(tmp)
    shp = next(tmp.glob("*.shp"))
    meta, _, geoms, data = pyogrio.raw.read(shp)
    return names, meta, shapely.from_wkb(geoms), dict(zip(meta["fields"], data, strict=True))


def _read_taskdata(zip_path: Path):
    from isoxml.converter.shapely_geom import ShapelyConverterV4
    from isoxml.util.isoxml_io import isoxml_from_path

    with zipfile.ZipFile(zip_path) as z, tempfile.TemporaryDirectory() as tmp:
        assert z.namelist() == ["TASKDATA/TASKDATA.XML"]  # unzipped onto a terminal's USB stick
        z.extractall(tmp)
        td, _ = isoxml_from_path(Path(tmp) / "TASKDATA")
    conv = ShapelyConverterV4()
    task = td.tasks[0]
    zones = {}
    for tz in task.treatment_zones:
        geom = shapely.MultiPolygon([conv.to_shapely_polygon(p) for p in tz.polygons])
        pdv = tz.process_data_variables[0]
        zones[tz.code] = (geom, pdv.process_data_ddi, pdv.process_data_value)
    return td, task, zones


def test_zones_on_the_micasense_crop(mica):
    res = rx.make_zones(mica, n_zones=3)
    assert [z["zone"] for z in res["zones"]] == [1, 2, 3]
    means = [z["index_mean"] for z in res["zones"]]
    assert means == sorted(means) and means[-1] - means[0] > 0.3  # zone 1 is the weakest
    assert res["index"] == "ndvi" and res["method"]["name"] == "kmeans"
    assert res["placement"] == "approximate" and "GPS" in res["placement_note"]
    # GeoJSON in EPSG:4326 near the camera's GPS position, areas as stated.
    fc = json.loads((mica / rx.ZONES_GEOJSON).read_text())
    geoms = [shape(f["geometry"]) for f in fc["features"]]
    c = shapely.union_all(geoms).centroid
    assert abs(c.x - -119.43526) < 0.0005 and abs(c.y - 36.57608) < 0.0005
    stated = [z["area_ha"] for z in res["zones"]]
    assert np.allclose(_areas(geoms), stated, rtol=0.005)
    assert abs(sum(stated) - res["area_ha"]) < 1e-5
    # Spatially coherent: every patch at least the minimum zone area (sieve), few patches.
    min_ha = res["method"]["min_zone_ha"]
    for g in geoms:
        parts = _areas(g.geoms)
        assert len(parts) <= 12
        assert parts.min() >= min_ha * 0.5  # a patch cut by the image edge may lose a part cell
    for z in res["zones"]:
        assert 0 <= z["weed_share"] <= 1 and z["index_std"] >= 0
    with rasterio.open(mica / rx.ZONES_TIF) as src:
        assert src.crs is not None and src.crs.to_epsg() // 100 == 326  # a UTM zone
        values = set(np.unique(src.read(1)).tolist())
        assert values == {1, 2, 3, 255}
        assert src.colormap(1)[1][:3] == (215, 48, 31)


def test_zone_count_chosen_by_the_stated_criterion(mica):
    res = rx.make_zones(mica)
    ev = res["method"]["explained_variance"]
    k = len(res["zones"])
    assert 2 <= k <= 7
    assert ev[str(k)] >= rx.EXPLAINED_TARGET
    assert all(v < rx.EXPLAINED_TARGET for kk, v in ev.items() if int(kk) < k)
    assert "80%" in res["method"]["zone_count"]


def test_natural_breaks_and_two_flights(mica, mica_map, tmp_path):
    res = rx.make_zones(mica, n_zones=2, method="natural-breaks")
    assert res["method"]["library"].startswith("mapclassify")
    second = tmp_path / "second"
    shutil.copytree(mica_map, second)
    both = rx.make_zones([mica, second], n_zones=3, min_zone_ha=0.0005)
    assert len(both["sources"]) == 2 and "2 flights" in both["method"]["features"]
    assert len(both["zones"]) == 3


def test_zones_of_flights_of_other_fields_or_one_flight_twice_are_refused(mica, tmp_path):
    """A flight that does not overlap the first is another field (it gave 'too few analysed
    cells'); a folder given twice is one flight, not two."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    analyze(write_geotiff(tmp_path / "f.tif", field_rgb(256, 256)), here)  # UTM 43N
    moved = write_geotiff(tmp_path / "g.tif", field_rgb(256, 256))
    with rasterio.open(moved, "r+") as ds:
        ds.transform = ds.transform * rasterio.Affine.translation(0, 2000)  # 100 m south
    analyze(moved, elsewhere)
    with pytest.raises(InputError, match="elsewhere does not overlap"):
        rx.make_zones([here, elsewhere], index="vari")
    with pytest.raises(InputError, match="given twice"):
        rx.make_zones([mica, mica / "."])


def test_variable_rate_exports_read_back(mica, tmp_path):
    zones = rx.make_zones(mica, n_zones=3)
    res = rx.variable_rate(mica, rates=[150, 120, 90], unit="kg/ha", product="Urea N")
    areas = [z["area_ha"] for z in zones["zones"]]
    assert [z["rate"] for z in res["zones"]] == [150, 120, 90]
    assert res["total"] == pytest.approx(
        sum(r * a for r, a in zip([150, 120, 90], areas, strict=True)), 1e-3
    )
    assert res["unit"] == "kg/ha" and res["total_unit"] == "kg"
    # Shapefile: all sidecars, EPSG:4326, one feature per zone, same areas and rates.
    names, meta, geoms, cols = _read_shapefile(mica / res["files"]["shapefile"], tmp_path)
    assert {Path(n).suffix for n in names} >= {".shp", ".shx", ".dbf", ".prj"}
    assert "4326" in str(meta["crs"])
    assert list(cols["ZONE"]) == [1, 2, 3] and list(cols["RATE"]) == [150, 120, 90]
    assert set(cols["UNIT"]) == {"kg/ha"} and set(cols["PRODUCT"]) == {"Urea N"}
    assert np.allclose(_areas(geoms), areas, rtol=0.005)
    shp_total = float((_areas(geoms) * cols["RATE"]).sum())
    assert shp_total == pytest.approx(res["total"], rel=0.005)
    # TaskData, read with the isoxml package: DDI 6 (mass per area, mg/m2), same polygons.
    td, task, tz = _read_taskdata(mica / res["files"]["taskdata"])
    assert td.products[0].designator == "Urea N"
    assert task.default_treatment_zone_code == 0 and tz[0][2] == 0
    for z, a, rate in zip([1, 2, 3], areas, [150, 120, 90], strict=True):
        geom, ddi, value = tz[z]
        assert ddi == bytes.fromhex("0006") and value == rate * 100  # 1 kg/ha = 100 mg/m2
        assert float(_areas([geom])[0]) == pytest.approx(a, rel=0.005)


def test_base_rate_with_vigour_percentage(mica):
    rx.make_zones(mica, n_zones=3)
    res = rx.variable_rate(mica, base_rate=100, adjust_pct=-20)
    assert [z["rate"] for z in res["zones"]] == [120, 100, 80]  # the weak zone gets more
    assert "-20%" in res["how"]


def test_spot_spray_on_the_micasense_crop(mica, tmp_path):
    res = rx.spot_spray(mica, margin_m=0.5, min_patch_m2=0.5, rate=80, unit="L/ha")
    assert any("No field boundary" in w for w in res["warnings"])  # the saving is of the map
    assert 0 < res["sprayed_share"] < 0.5
    assert res["saving_share"] == pytest.approx(1 - res["sprayed_share"], abs=1e-4)
    assert res["total"] == pytest.approx(80 * res["sprayed_ha"], rel=1e-3)
    assert res["blanket_total"] == pytest.approx(80 * res["field_ha"], rel=1e-3)
    _, meta, geoms, cols = _read_shapefile(mica / res["files"]["shapefile"], tmp_path)
    assert float(_areas(geoms).sum()) == pytest.approx(res["sprayed_ha"], rel=0.005)
    assert list(cols["RATE"]) == [80]
    _, _, tz = _read_taskdata(mica / res["files"]["taskdata"])
    geom, ddi, value = tz[1]
    assert ddi == bytes.fromhex("0001") and value == 8000  # 80 L/ha = 8000 mm3/m2
    assert float(_areas([geom])[0]) == pytest.approx(res["sprayed_ha"], rel=0.005)
    # A larger margin sprays more; a large minimum patch sprays less.
    wider = rx.spot_spray(mica, margin_m=1.5, min_patch_m2=0.5)
    fewer = rx.spot_spray(mica, margin_m=0.5, min_patch_m2=5)
    assert wider["sprayed_share"] > res["sprayed_share"] > fewer["sprayed_share"]


def test_real_capture_zones_follow_the_vigour_pattern(shared_data, tmp_path):
    """The whole MicaSense capture: a dense vineyard on the left, a dirt road, an orchard on
    the right whose upper part has green cover between the trees. The top zone must hold the
    vineyard, the bottom zone the road."""
    cap = shared_data / "micasense_rededge"
    out = tmp_path / "full"
    from khet.vision import radiometry

    analyze(str(cap / "flight"), out, calibration=radiometry.Options(panel=(cap / "panel",)))
    res = rx.make_zones(out, n_zones=3)
    with rasterio.open(out / rx.ZONES_TIF) as src:
        z = src.read(1)
    h, w = z.shape
    vineyard = z[:, : int(w * 0.35)]
    road = z[:, int(w * 0.47) : int(w * 0.52)]
    top = len(res["zones"])
    assert (vineyard[vineyard != 255] == top).mean() > 0.9
    assert (road[road != 255] == 1).mean() > 0.9
    spot = rx.spot_spray(out)
    assert 0.05 < spot["sprayed_share"] < 0.5


def _potato_geotiff(shared_data: Path, out: Path, x0: int = 3, y0: int = 3, n: int = 3):
    """n x n neighbouring uav_potato tiles (named tile_<column>_<row>) as one GeoTIFF at 3 mm in
    UTM 43N, with the labelled weed mask on the same grid."""
    from affine import Affine
    from khet.datasets import labelme
    from rasterio.enums import ColorInterp

    root = shared_data / "uav_potato"
    img = np.zeros((3, 640 * n, 640 * n), np.uint8)
    weed = np.zeros((640 * n, 640 * n), bool)
    cmap = {"potato": "crop", "weed": "weed"}
    for i in range(n):
        for j in range(n):
            name = f"tile_{x0 + i}_{y0 + j}"
            tile = labelme.read_image(root / "images" / f"{name}.jpg")
            lab = labelme.read_labels(root / "labels" / f"{name}.json", tile.shape[:2], cmap)
            ys, xs = slice(j * 640, (j + 1) * 640), slice(i * 640, (i + 1) * 640)
            img[:, ys, xs] = np.moveaxis(tile, -1, 0)
            weed[ys, xs] = lab == labelme.CLASS_NAMES.index("weed")
    t = Affine(0.003, 0, 350000, 0, -0.003, 3500000)
    profile = dict(driver="GTiff", width=640 * n, height=640 * n, count=3, dtype="uint8")
    with rasterio.open(out, "w", crs="EPSG:32643", transform=t, **profile) as dst:
        dst.write(img)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return t, weed


def test_labelled_drone_tiles_as_geotiff(shared_data, tmp_path):
    """A georeferenced map (no approximate placement): zones, a rate map and a spray map whose
    polygons cover the labelled weeds."""
    t, weed = _potato_geotiff(shared_data, tmp_path / "potato.tif")
    out = tmp_path / "map"
    analyze(str(tmp_path / "potato.tif"), out)
    zones = rx.make_zones(out, n_zones=2)
    assert zones["placement"] == "georeference" and len(zones["zones"]) == 2
    rate = rx.variable_rate(out, rates=[40, 60], unit="kg/ha")
    _, _, tz = _read_taskdata(out / rate["files"]["taskdata"])
    assert sum(float(_areas([g])[0]) for c, (g, _, _) in tz.items() if c) == pytest.approx(
        rate["area_ha"], rel=0.005
    )
    # At 3 mm the shipped drone model (khet-rgb-uav) tells weeds from potatoes: a spray map of
    # its weed cells covers the labelled weeds for about half the area that spraying every
    # plant takes (measured: 19 % against 38 %, 94 % of labelled weed pixels covered).
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "model" and s["model"]["name"] == "khet-rgb-uav"
    weeds = rx.spot_spray(out, margin_m=0.1, min_patch_m2=0.0)
    plants = rx.spot_spray(out, target="vegetation", margin_m=0.1, min_patch_m2=0.0)
    assert _covered(out / weeds["files"]["geojson"], weed, t) > 0.85
    assert _covered(out / plants["files"]["geojson"], weed, t) > 0.95
    assert 0 < weeds["sprayed_share"] < 0.7 * plants["sprayed_share"]
    # Single weeds smaller than the default minimum patch (0.5 m²) are not sprayed, and the
    # map says so rather than spraying nothing silently.
    default = rx.spot_spray(out)
    if default["sprayed_share"] == 0:
        assert any("minimum patch" in w for w in default["warnings"])


def _covered(geojson: Path, mask: np.ndarray, transform) -> float:
    """Share of the mask's pixels inside the spray polygons."""
    from rasterio import features
    from rasterio.warp import transform_geom

    fc = json.loads(geojson.read_text())
    sprayed = shapely.union_all([shape(f["geometry"]) for f in fc["features"]])
    local = transform_geom("EPSG:4326", "EPSG:32643", shapely.geometry.mapping(sprayed))
    inside = features.geometry_mask([local], mask.shape, transform, invert=True)
    return float((inside & mask).sum() / mask.sum())


def test_bad_input_leaves_nothing_half_written(mica, tmp_path):
    with pytest.raises(InputError, match="2 to 7"):
        rx.make_zones(mica, n_zones=8)
    with pytest.raises(InputError, match="no management zones"):
        rx.variable_rate(mica, rates=[1, 2])
    assert not (mica / rx.OUT_DIR).exists()
    rx.make_zones(mica, n_zones=2)
    before = {p.name: p.read_bytes() for p in (mica / rx.OUT_DIR).iterdir()}
    for kwargs, msg in [
        ({"rates": [-1, 5]}, "zero or more"),
        ({"rates": [5]}, "Give 2 rates"),
        ({"rates": [50000, 5]}, "more than 2000"),
        ({"rates": [float("nan"), 5]}, "zero or more"),
        ({"base_rate": 100, "adjust_pct": 500}, "between -100 and 100"),
        ({"rates": [1, 2], "unit": "bags/acre"}, "Unknown rate unit"),
        ({"rates": [1, 2], "base_rate": 3}, "either"),
        ({"rates": [1, 2], "product": ""}, "Name the product"),
    ]:
        with pytest.raises(InputError, match=msg):
            rx.variable_rate(mica, **kwargs)
    with pytest.raises(InputError, match="no ndre2"):
        rx.make_zones(mica, index="ndre2")
    with pytest.raises(InputError, match="margin"):
        rx.spot_spray(mica, margin_m=-1)
    far = {"type": "Polygon", "coordinates": [[[10, 10], [10.01, 10], [10.01, 10.01], [10, 10]]]}
    with pytest.raises(InputError, match="does not overlap"):
        rx.make_zones(mica, boundary=far)
    after = {p.name: p.read_bytes() for p in (mica / rx.OUT_DIR).iterdir()}
    assert after == before
    # A flight whose index maps are gone (a device's sent without them); a folder with no map.
    shutil.rmtree(mica / "indices")
    with pytest.raises(InputError, match="vegetation index maps were not kept"):
        rx.make_zones(mica)
    with pytest.raises(InputError, match="no finished field map"):
        rx.make_zones(tmp_path)
    with pytest.raises(InputError, match="missing does not exist: give the folder"):
        rx.make_zones(tmp_path / "missing")
    with pytest.raises(InputError, match="is a file, not a folder"):
        rx.make_zones(mica / "summary.json")


def test_boundary_clips_zones_and_spray(mica):
    full = rx.make_zones(mica, n_zones=2)
    fc = json.loads((mica / rx.ZONES_GEOJSON).read_text())
    c = shapely.union_all([shape(f["geometry"]) for f in fc["features"]])
    minx, miny, maxx, maxy = c.bounds
    half = shapely.box(minx, miny, (minx + maxx) / 2, maxy)
    clipped = rx.make_zones(mica, n_zones=2, boundary=shapely.geometry.mapping(half))
    assert clipped["area_ha"] < 0.6 * full["area_ha"]
    fc = json.loads((mica / rx.ZONES_GEOJSON).read_text())
    u = shapely.union_all([shape(f["geometry"]) for f in fc["features"]])
    assert u.difference(half.buffer(1e-7)).area < 1e-12
    spot = rx.spot_spray(mica, boundary=shapely.geometry.mapping(half))
    assert spot["field_from"].startswith("the field boundary")
    assert not any("No field boundary" in w for w in spot["warnings"])
    assert spot["field_ha"] < 0.6 * full["area_ha"] / 0.9


def test_cli(mica):
    def khet(*args):
        return subprocess.run(
            [sys.executable, "-m", "khet.cli", *args], capture_output=True, text=True, timeout=120
        )

    r = khet("zones", str(mica), "-n", "3")
    assert r.returncode == 0, r.stderr
    assert "3 zones" in r.stdout and "approximately" in r.stderr
    r = khet("prescription", "rate", str(mica), "--rates", "150,120,90", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_unit"] == "kg"
    r = khet("prescription", "spot", str(mica), "--margin", "1")
    assert r.returncode == 0 and "saving" in r.stdout
    for bad, msg in [
        (("zones", str(mica), "-n", "1"), "2 to 7"),
        (("prescription", "rate", str(mica), "--rates", "1,x,3"), "numbers separated"),
        (("prescription", "rate", str(mica), "--base-rate", "-3"), "zero or more"),
        (("prescription", "spot", str(mica), "--rate", "1e9"), "more than"),
    ]:
        r = khet(*bad)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_large_maps_are_zoned_on_coarser_cells(mica, monkeypatch):
    fine = rx.make_zones(mica, n_zones=2, min_zone_ha=0)
    monkeypatch.setattr(rx, "MAX_ZONE_CELLS", 400)  # the crop has 2610 cells
    coarse = rx.make_zones(mica, n_zones=2, min_zone_ha=0)
    assert coarse["method"]["map_cells_per_zone_cell"] == 9
    assert any("cells of 3 x 3 map cells" in w for w in coarse["warnings"])
    assert coarse["area_ha"] == pytest.approx(fine["area_ha"], rel=0.1)  # edge blocks
    means = [z["index_mean"] for z in coarse["zones"]]
    assert means == sorted(means) and means[1] - means[0] > 0.3
    assert all(0 <= z["weed_share"] <= 1 for z in coarse["zones"])
    with rasterio.open(mica / rx.ZONES_TIF) as src:
        assert src.shape == (15, 20)  # 45 x 58 map cells in blocks of 3


def test_rates_a_terminal_cannot_carry_are_refused_before_anything_is_written(mica):
    """TaskData carries a rate in whole mg/m² (0.01 kg/ha). 0.125 kg/ha (a herbicide's 125 g)
    was written, then refused by the read-back check as an export error, and 1e-9 reached the
    terminal as 0 beside a Shapefile saying 1e-09: now both are refused first, with the two
    rates it can carry; a base rate's zones are rounded to that step."""
    rx.make_zones(mica, n_zones=3)
    with pytest.raises(InputError, match=r"0.125 kg/ha is finer .* give 0.12 or 0.13"):
        rx.variable_rate(mica, rates=[0.125, 1, 1])
    with pytest.raises(InputError, match="give 0 or 0.01"):
        rx.variable_rate(mica, rates=[1e-9, 150, 90])
    with pytest.raises(InputError, match="spray rate of 0.025 L/ha is finer"):
        rx.spot_spray(mica, rate=0.025)
    assert not (mica / rx.OUT_DIR / "rate.json").exists()
    res = rx.variable_rate(mica, rates=[0.03, 0.05, 0.04], product="Metsulfuron")
    td, task, tz = _read_taskdata(mica / res["files"]["taskdata"])
    assert [tz[z][2] for z in (1, 2, 3)] == [3, 5, 4]  # mg/m²
    assert res["total"] == pytest.approx(sum(z["product"] for z in res["zones"]), rel=1e-3)
    res = rx.variable_rate(mica, base_rate=0.33, adjust_pct=10)
    assert [z["rate"] for z in res["zones"]] == [0.3, 0.33, 0.36]


def test_maps_that_cannot_be_zoned_together_or_at_all_say_why(mica, mica_map, tmp_path):
    """A damaged map file, a second capture far away, a georeferenced map beside a GPS-placed
    one, a field whose index does not vary: one line each, no traceback, nothing written."""
    damaged = tmp_path / "damaged"
    shutil.copytree(mica_map, damaged)
    (damaged / "classes.tif").unlink()
    with pytest.raises(InputError, match=r"cannot be read \(classes.tif: No such file"):
        rx.make_zones(damaged, n_zones=2)
    far = tmp_path / "far"
    shutil.copytree(mica_map, far)
    s = json.loads((far / "summary.json").read_text())
    s["location"]["lat"] += 0.01  # a capture 1.1 km north
    (far / "summary.json").write_text(json.dumps(s))
    with pytest.raises(InputError, match=r"far was taken 1,1\d\d m from map \(camera GPS\)"):
        rx.make_zones([mica, far], n_zones=2)
    geo = tmp_path / "geo"
    analyze(write_geotiff(tmp_path / "f.tif", field_rgb(256, 256)), geo)
    with pytest.raises(InputError, match="is placed by camera GPS and .* is not"):
        rx.make_zones([mica, geo], n_zones=2)
    with pytest.raises(InputError, match="nowhere does not exist"):
        rx.make_zones([mica, tmp_path / "nowhere"], n_zones=2)
    flat = tmp_path / "flat"
    analyze(write_geotiff(tmp_path / "flat.tif", np.full((3, 256, 256), 90, np.uint8)), flat)
    with pytest.raises(InputError, match="hardly varies over this field"):
        rx.make_zones(flat, n_zones=3)
    assert not (mica / rx.OUT_DIR).exists() and not (flat / rx.OUT_DIR).exists()
    assert rx.make_zones(mica, n_zones=2, index="NDVI")["index"] == "ndvi"  # as typed


def test_small_amounts_are_written_as_amounts():
    from khet.vision.units import fmt_amount, fmt_rate

    assert [fmt_amount(v) for v in (0.0022, 0.5, 1.234, 1500)] == [
        "0.0022",
        "0.5",
        "1.23",
        "1500.00",
    ]
    assert [fmt_rate(v) for v in (0.03, 1.5, 150.0, 120.004)] == ["0.03", "1.5", "150", "120"]


def test_a_map_that_cannot_be_placed_says_what_it_lacks(tmp_path):
    from PIL import Image

    from tests.vision.rasters import write_jpeg_with_gps

    Image.fromarray(field_rgb(128, 160).transpose(1, 2, 0)).save(tmp_path / "plain.png")
    analyze(tmp_path / "plain.png", tmp_path / "plain", gsd=0.01)
    with pytest.raises(InputError, match="no georeference and no camera GPS position"):
        rx.make_zones(tmp_path / "plain", n_zones=2)
    analyze(write_jpeg_with_gps(tmp_path / "gps.jpg", field_rgb(128, 160)), tmp_path / "gps")
    with pytest.raises(InputError, match="no ground sample distance.*again with --gsd"):
        rx.make_zones(tmp_path / "gps", n_zones=2)
