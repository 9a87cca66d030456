"""The field map: what analyze() writes, checked the way QGIS and a farmer would read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from khet.vision import indices as vi
from khet.vision.maps import vigour_grid
from khet.vision.pipeline import Grid, _index_step, analyze
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, mapping, shape

from khet.cli import main
from tests.vision.rasters import ORIGIN, field_rgb, write_geotiff, write_jpeg_with_gps

pytestmark = pytest.mark.usefixtures("use_test_models")


@pytest.fixture
def field_tif(tmp_path):
    data = field_rgb(256, 320)
    data[:, 200:, :64] = 0  # a nodata corner, as orthomosaic edges have
    return write_geotiff(tmp_path / "field.tif", data, nodata=0)


def test_georeferenced_field_map(tmp_path, field_tif):
    out = tmp_path / "out"
    seen = []
    s = analyze(field_tif, out, progress=lambda d, t: seen.append((d, t)))
    # classes.tif: a valid COG in the input's CRS on the grid of cells, colour map, nodata.
    assert cog_validate(str(out / "classes.tif"))[0]
    with rasterio.open(field_tif) as src, rasterio.open(out / "classes.tif") as c:
        assert c.crs == src.crs
        assert c.transform.a == pytest.approx(src.transform.a * 32)
        assert (c.transform.c, c.transform.f) == pytest.approx(ORIGIN)
        assert (c.width, c.height) == (10, 8)
        assert c.nodata == 255
        cmap = c.colormap(1)
        assert cmap[1][:3] == (0x2E, 0x9E, 0x44)
        grid = c.read(1)
        assert (grid[7, 0:2] == 255).all()  # the nodata corner is nodata on the map
        assert set(np.unique(grid)) <= {0, 1, 2, 255}
    with rasterio.open(out / "confidence.tif") as c:
        conf = c.read(1)
        assert c.nodata == 255 and (conf[grid != 255] <= 100).all()
        assert (conf[grid == 255] == 255).all()
        assert conf[grid != 255].min() >= 33  # the top of 3 probabilities is at least 1/3
    # indices: float32 COGs with nodata, values in range, NaN where the image has none.
    for name in ("vari", "exg", "gli"):
        path = out / "indices" / f"{name}.tif"
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as d:
            assert d.dtypes[0] == "float32" and d.nodata == vi.NODATA
            assert d.descriptions == (vi.BY_NAME[name].title,)
            assert d.tags(1)["formula"] == vi.BY_NAME[name].formula
            assert d.crs == c.crs
            a = d.read(1, masked=True)
            assert a.mask[240, 10] and not a.mask[10, 10]
            lo, hi = vi.BY_NAME[name].value_range
            assert lo <= a.min() and a.max() <= hi
    # zones: EPSG:4326 polygons with hectares that add up to the analysed area.
    zones = json.loads((out / "zones.geojson").read_text())
    assert zones["type"] == "FeatureCollection" and zones["features"]
    lon, lat = zones["features"][0]["geometry"]["coordinates"][0][0]
    assert 70 < lon < 76 and 30 < lat < 33  # Punjab
    total_ha = sum(f["properties"]["area_ha"] for f in zones["features"])
    valid_px = 256 * 320 - 56 * 64
    assert total_ha == pytest.approx(valid_px * 0.05**2 / 1e4, rel=0.05)
    assert s["area_total_ha"] == pytest.approx(total_ha, rel=1e-3)
    # Valid polygons, inside the image, exterior rings counter-clockwise (RFC 7946), whether or
    # not they were cut at the image's edge.
    polys = [shape(f["geometry"]) for f in zones["features"]]
    assert all(p.is_valid and p.geom_type == "Polygon" for p in polys)
    assert all(p.exterior.is_ccw and not any(r.is_ccw for r in p.interiors) for p in polys)
    # summary: hectares and shares per class, indices, model, input facts; progress reached the end.
    assert s["area_unit"] == "ha"
    assert sum(c["share"] for c in s["classes"]) == pytest.approx(1.0, abs=1e-3)
    assert s["model"]["name"] == "test-rgb"
    assert set(s["indices"]) == {"vari", "exg", "gli"}
    assert s["vigour"]["index"] == "vari"
    assert s["tiling"]["cells_skipped"] >= 2
    assert s["location"]["based_on"] == "georeferenced image"
    assert seen[-1] == (80, 80) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["classes"] == s["classes"]
    assert not list(out.glob(".khet-partial-*"))


def test_classes_follow_the_pixels(tmp_path):
    """Green rows are crop, brown soil is soil: the map says what the tiles show."""
    data = field_rgb(256, 256)
    p = write_geotiff(tmp_path / "f.tif", data)
    analyze(p, tmp_path / "out", tile_size=32, overlap=0)
    with rasterio.open(tmp_path / "out" / "classes.tif") as c:
        grid = c.read(1)
    # Rows of 32 px alternate crop (even) and soil (odd); the weed patch is in the NE corner.
    assert (grid[2::2, :] == 1).mean() > 0.9
    assert (grid[1::2, :6] == 0).mean() > 0.9


def test_boundary_clips_the_map(tmp_path, field_tif):
    # The western half of the image as a boundary polygon in EPSG:4326.
    half = box(ORIGIN[0], ORIGIN[1] - 256 * 0.05, ORIGIN[0] + 160 * 0.05, ORIGIN[1])
    geom = transform_geom("EPSG:32643", "EPSG:4326", mapping(half))
    s = analyze(field_tif, tmp_path / "out", clip=geom)
    with rasterio.open(tmp_path / "out" / "classes.tif") as c:
        grid = c.read(1)
    assert (grid[:, 5:] == 255).all() and (grid[:6, :5] != 255).all()
    assert s["area_total_ha"] == pytest.approx(
        160 * 256 * 0.05**2 / 1e4 - 56 * 64 * 0.05**2 / 1e4, rel=0.06
    )


def test_multispectral_capture_uses_the_red_nir_model_and_all_indices(tmp_path):
    s = analyze("tests/fixtures/micasense_crop", tmp_path / "out")
    assert s["model"]["bands"] == ["red", "nir"]
    assert set(s["indices"]) == {"ndvi", "ndre", "gndvi", "vari", "exg", "gli"}
    assert s["vigour"]["index"] == "ndvi"
    # The fixture keeps the camera's metadata: indices from reflectance (light sensor).
    assert s["radiometry"]["calibrated"] is True and s["radiometry"]["method"] == "dls"
    assert s["area_unit"] == "px" and s["location"]["based_on"].startswith("camera GPS")
    assert any("No georeference" in w for w in s["warnings"])
    with rasterio.open(tmp_path / "out" / "indices" / "ndvi.tif") as d:
        assert d.crs is None and d.width == 576
    zones = json.loads((tmp_path / "out" / "zones.geojson").read_text())
    assert zones["khet:coordinates"].startswith("image pixels")
    assert sum(f["properties"]["area_px"] for f in zones["features"]) == pytest.approx(
        s["area_total_px"], rel=1e-6
    )


def test_jpeg_frame(tmp_path):
    p = write_jpeg_with_gps(tmp_path / "DJI_0001.JPG", field_rgb(200, 300))
    s = analyze(p, tmp_path / "out")
    assert s["input"]["kind"] == "frame" and s["location"]["lat"] == pytest.approx(
        31.5204, abs=1e-3
    )
    from PIL import Image

    with Image.open(tmp_path / "out" / "preview.png") as im:
        assert im.width > 300 and im.height >= 200


def test_rerun_replaces_outputs_and_a_failed_run_keeps_the_old_ones(tmp_path, field_tif, capsys):
    out = tmp_path / "out"
    analyze(field_tif, out)
    before = (out / "summary.json").read_text()
    bad = tmp_path / "bad.tif"
    bad.write_text("nope")
    assert main(["analyze", str(bad), "-o", str(out)]) == 2
    assert (out / "summary.json").read_text() == before  # nothing already stored is lost


def test_cli_one_line_and_json(tmp_path, field_tif, capsys):
    assert main(["analyze", str(field_tif), "-o", str(tmp_path / "o1")]) == 0
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "m² (" in line and "crop" in line
    assert main(["analyze", str(field_tif), "-o", str(tmp_path / "o2"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["area_unit"] == "ha"
    # Every output the summary lists is there; a single image has no mosaic to list.
    assert "ortho" not in data["outputs"]
    for key, rel in data["outputs"].items():
        paths = rel.values() if isinstance(rel, dict) else [rel]
        assert all((tmp_path / "o2" / p).is_file() for p in paths), key


def test_one_line_areas_and_gsd_in_the_units_people_use():
    """A frame's 0.0004 ha is square metres, not '0.00 ha'; a GSD of metres is not '99900 cm'."""
    from khet.vision.cli import one_line

    def summary(ha: float, gsd: float) -> dict:
        return {
            "area_unit": "ha",
            "classes": [{"name": "weed", "area_ha": ha, "share": 0.5}],
            "vigour": {"levels": [], "index": None},
            "warnings": [],
            "method": "index",
            "gsd": {"metres": gsd},
        }

    assert "weed 3.7 m² (50%)" in one_line(summary(0.00037, 0.003), Path("o"))
    assert "at 3.0 mm/px" in one_line(summary(0.00037, 0.003), Path("o"))
    assert "weed 563 m² (50%)" in one_line(summary(0.0563, 0.049), Path("o"))
    assert "at 4.9 cm/px" in one_line(summary(0.0563, 0.049), Path("o"))
    assert "weed 1,234.50 ha (50%)" in one_line(summary(1234.5, 2.5), Path("o"))
    assert "at 2.50 m/px" in one_line(summary(1234.5, 2.5), Path("o"))


def test_one_line_gives_weed_pressure_beside_the_cell_areas():
    """A weed cell is any cell whose plants are mostly weed, so weed cells overstate the weeds:
    the line also says the share of the area the weeds themselves cover (summary.json's cover)."""
    from khet.vision.cli import one_line

    summary = {
        "area_unit": "ha",
        "classes": [
            {"name": "soil", "area_ha": 0.0002, "share": 0.58},
            {"name": "weed", "area_ha": 0.0001, "share": 0.29},
        ],
        "cover": {"vegetation": 0.104, "crop": 0.0499, "weed": 0.0545, "method": "model"},
        "vigour": {"levels": [], "index": None},
        "warnings": [],
        "method": "model",
        "model": {"name": "khet-rgb-uav"},
        "gsd": {"metres": 0.003},
    }
    line = one_line(summary, Path("o"))
    assert "weed 1.0 m² (29%); weeds cover 5.5% of the area" in line
    del summary["cover"]  # an index-only map has no weed to cover
    assert "weeds cover" not in one_line(summary, Path("o"))


def test_index_step_divides_stride_and_caps_size():
    g = Grid(32768, 32768, 128, 32)
    k = _index_step(g, 4096)
    assert g.stride % k == 0 and 32768 / k <= 4096
    assert _index_step(Grid(1280, 960, 128, 32), 4096) == 1


def test_vigour_rule_is_relative_to_the_field():
    classes = np.ones((4, 4), np.uint8)
    classes[0, 0] = 0
    idx = np.full((4, 4, 1), 0.6, np.float32)
    idx[3, 3] = 0.2
    idx[3, 2] = 0.9
    grid, params = vigour_grid(classes, idx, crop_id=1, index_pos=0)
    assert grid[0, 0] == 255 and grid[3, 3] == 0 and grid[3, 2] == 2 and grid[1, 1] == 1
    assert params["median"] == pytest.approx(0.6)


def test_index_formulas():
    red, green, blue, nir = (np.array([v], np.float32) for v in (0.1, 0.3, 0.05, 0.5))
    assert vi.BY_NAME["ndvi"].compute(nir, red)[0] == pytest.approx(0.4 / 0.6)
    assert vi.BY_NAME["vari"].compute(red, green, blue)[0] == pytest.approx(0.2 / 0.35)
    assert vi.BY_NAME["exg"].compute(red, green, blue)[0] == pytest.approx(0.45 / 0.45)
    assert [i.name for i in vi.available(["red", "green", "blue"])] == ["vari", "exg", "gli"]


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_hectares_are_true_ground_area_in_any_crs(tmp_path, crs):
    """A 16 m x 12.8 m field in Punjab measures 0.02048 ha whatever CRS the orthomosaic uses."""
    from rasterio.warp import calculate_default_transform, reproject

    src = write_geotiff(tmp_path / "utm.tif", field_rgb(256, 320))
    with rasterio.open(src) as s:
        t, w, h = calculate_default_transform(s.crs, crs, s.width, s.height, *s.bounds)
        profile = {**s.profile, "crs": crs, "transform": t, "width": w, "height": h, "nodata": 0}
        dst_path = tmp_path / "other.tif"
        with rasterio.open(dst_path, "w", **profile) as d:
            for b in range(1, 4):
                reproject(rasterio.band(s, b), rasterio.band(d, b))
    summary = analyze(dst_path, tmp_path / "out")
    assert summary["area_unit"] == "ha"
    assert summary["area_total_ha"] == pytest.approx(320 * 256 * 0.05**2 / 1e4, rel=0.08)
    # The ground sample distance is the ground's, not the map's: Web Mercator's pixels here
    # (30 N) are 15 % larger than the 5 cm they cover, which a model reading at its own GSD
    # would take at the wrong scale.
    # (In degrees, the mean of a pixel's two ground sides, which differ.)
    assert summary["gsd"]["metres"] == pytest.approx(0.05, rel=0.05)


def test_zone_areas_add_up_to_the_map(tmp_path):
    """Every zone, a single cell of a few square centimetres too, has its area; together they
    make the mapped area (zones read 0 ha when rounded to 0.1 m²)."""
    analyze(write_geotiff(tmp_path / "f.tif", field_rgb(), res=0.003), tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    areas = [
        f["properties"]["area_ha"]
        for f in json.loads((tmp_path / "out" / "zones.geojson").read_text())["features"]
    ]
    assert min(areas) > 0
    assert sum(areas) == pytest.approx(summary["area_total_ha"], abs=1e-6)  # its 6 decimals


def test_zones_written_a_few_polygons_at_a_time_are_the_same_zones(tmp_path, monkeypatch):
    """The zones file is written as its polygons are made, ZONE_CHUNK at a time (memory bounded
    by that, not by the field): written 2 at a time, every zone and area is there once, and the
    summary's areas are the same."""
    from khet.vision import maps

    tif = write_geotiff(tmp_path / "f.tif", field_rgb(), res=0.003)
    whole = analyze(tif, tmp_path / "whole")
    monkeypatch.setattr(maps, "ZONE_CHUNK", 2)
    bits = analyze(tif, tmp_path / "bits")

    def zones(out: str) -> list[str]:
        fc = json.loads((tmp_path / out / "zones.geojson").read_text())
        return sorted(json.dumps(f, sort_keys=True) for f in fc["features"])

    assert len(zones("whole")) > 2 * 3 and zones("bits") == zones("whole")
    assert bits["classes"] == whole["classes"] and bits["vigour"] == whole["vigour"]


def test_map_coordinates_without_a_crs_are_mapped_in_pixels(tmp_path):
    """A GeoTIFF whose CRS was lost (a geotransform of unknown units): mapped in image pixels,
    with its zones and areas, and told why. Its zones were all cut away before, every area 0."""
    tif = write_geotiff(tmp_path / "nocrs.tif", field_rgb(), crs=None)
    summary = analyze(tif, tmp_path / "out")
    assert summary["area_unit"] == "px"
    assert sum(c["share"] for c in summary["classes"]) == pytest.approx(1.0, abs=0.01)
    assert sum(c["area_px"] for c in summary["classes"]) == pytest.approx(256 * 320, rel=0.01)
    assert any("no coordinate reference system" in w for w in summary["warnings"])
    zones = json.loads((tmp_path / "out" / "zones.geojson").read_text())
    assert zones["features"] and zones["khet:coordinates"] == "image pixels (no georeference)"
    with rasterio.open(tmp_path / "out" / "classes.tif") as ds:
        assert ds.crs is None and ds.transform.c == 0 and ds.transform.f == 0


@pytest.mark.parametrize("crs", [None, "EPSG:32643"])
def test_zones_end_at_the_image_edge_where_the_last_cells_reach_past_it(tmp_path, crs):
    """250 x 245 px in cells of 32: the last column and row of cells reach 6 and 11 px past the
    image. Its zones are cut at its edge, exactly: they cover the image and nothing beyond."""
    tif = write_geotiff(tmp_path / "f.tif", field_rgb(245, 250), crs=crs)
    s = analyze(tif, tmp_path / "out", tile_size=32, overlap=0)
    fc = json.loads((tmp_path / "out" / "zones.geojson").read_text())
    polys = [shape(f["geometry"]) for f in fc["features"]]
    assert all(p.is_valid and p.geom_type == "Polygon" for p in polys)
    union = shapely.union_all(polys)
    if crs is None:
        assert sum(f["properties"]["area_px"] for f in fc["features"]) == 250 * 245
        assert union.equals(box(0, 0, 250, 245))
    else:
        with rasterio.open(tif) as src:
            image = shapely.Polygon(
                transform_geom(src.crs, "EPSG:4326", mapping(box(*src.bounds)))["coordinates"][0]
            )
        # The same extent, to the 1e-7 degrees (about 1 cm) the zones' coordinates are rounded
        # to; uncut, they would reach 30 and 55 cm (3e-6 and 5e-6 degrees) past it.
        assert union.bounds == pytest.approx(image.bounds, abs=2e-7)
        assert union.symmetric_difference(image).area < 0.005 * image.area
        assert s["area_total_ha"] == pytest.approx(250 * 245 * 0.05**2 / 1e4, rel=1e-3)


def test_zones_traced_in_bands_of_rows_are_the_zones_traced_whole(tmp_path, monkeypatch):
    """Zones are traced a band of cell rows at a time (memory), each band's those that end in
    it: with bands of two rows, the file holds the same zones, areas and summary as traced in
    one go, none lost, cut or twice."""
    from khet.vision import maps

    # Patches of soil, crop (of two greens: vigour levels) and weed, cell by cell, in blobs of
    # 2 to 5 cells: zones with holes and ragged outlines that cross many bands.
    rng = np.random.default_rng(3)
    kind = np.kron(rng.integers(0, 4, (10, 10)), np.ones((3, 4), int))[:30, :40]
    kind[rng.random(kind.shape) < 0.15] = rng.integers(0, 4)
    colours = np.array([[150, 110, 80], [60, 170, 60], [40, 120, 40], [170, 90, 120]], np.uint8)
    data = np.kron(colours[kind].transpose(2, 0, 1), np.ones((1, 32, 32), np.uint8))
    data[:, 600:, :200] = 0  # a nodata corner
    tif = write_geotiff(tmp_path / "f.tif", data, nodata=0, crs=None)  # zones in pixels
    found = {}
    for band in (10_000, 2):
        monkeypatch.setattr(maps, "ZONE_BAND", band)
        s = analyze(tif, tmp_path / f"out-{band}", tile_size=32, overlap=0)
        fc = json.loads((tmp_path / f"out-{band}" / "zones.geojson").read_text())
        zones = sorted(
            (json.dumps(f["properties"], sort_keys=True), shape(f["geometry"]).normalize().wkt)
            for f in fc["features"]
        )
        found[band] = (zones, s["zones"], s["classes"])
    whole, banded = found[10_000], found[2]
    assert len(whole[0]) > 20 and banded[0] == whole[0]
    assert banded[1:] == whole[1:]
    # Zones crossed the bands' edges: some are taller than two rows of 32 px cells.
    tall = [w for _, w in whole[0] if np.ptp(shapely.from_wkt(w).bounds[1::2]) > 64]
    assert len(tall) > 10


def test_a_new_map_replaces_the_earlier_one_in_its_folder(tmp_path):
    """Files an earlier map left that the new one does not write (a model map's confidence, an
    index it had, zones and prescriptions made from it, a flight's mosaic) go; the user's own
    files stay."""
    out = tmp_path / "out"
    stale = ["indices/ndvi.tif", "ortho.tif", "management/rate.json", "management/zones.tif"]
    own = ["notes.txt", "indices/README.txt", "management/my-plan.pdf"]
    for name in [*stale, *own, "classes.tif", "confidence.tif", "cover.tif"]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("earlier")
    summary = analyze(write_geotiff(tmp_path / "f.tif", field_rgb()), out)
    for name in stale:
        assert not (out / name).exists(), name
    # What is left of Khet's is exactly what the new summary lists.
    listed = {"summary.json"} | {
        v for o in summary["outputs"].values() for v in (o.values() if isinstance(o, dict) else [o])
    }
    left = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert left - set(own) == listed
    for name in own:
        assert (out / name).read_text() == "earlier", name
    with rasterio.open(out / "classes.tif") as ds:  # replaced by the new map's
        assert ds.count == 1


def test_preview_from_the_reduced_index_bands_matches_the_full_resolution_one(tmp_path):
    """On big images the preview is shrunk from the index maps' reduced bands rather than from
    the full-resolution pixels: the picture must be the same."""
    from PIL import Image

    from khet.settings import Settings

    data = field_rgb(1536, 2304)  # a preview of 1024 px: 2.25 times smaller
    data[:, 1200:, :300] = 0
    tif = write_geotiff(tmp_path / "big.tif", data, nodata=0)
    previews = []
    for cap in (4096, 256):  # step 1 (preview from full resolution), then step 16
        out = tmp_path / f"out-{cap}"
        s = analyze(tif, out, settings=Settings(index_max_size=cap))
        previews.append(np.asarray(Image.open(out / "preview.png").convert("RGB"), np.int16))
    assert s["index_resolution_step"] > 1
    full, reduced = previews
    assert full.shape == reduced.shape
    assert np.abs(full - reduced).max() <= 3
