"""Which method paints crop and weed, at which ground sample distance (vision/plan.py), and the
resampling that puts every image at a model's own GSD."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from khet.vision.pipeline import analyze

from tests.bundles import make_segmentation_bundle
from tests.vision.rasters import write_geotiff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seg_models(tmp_path, monkeypatch) -> Path:
    """Only a segmentation bundle read at 1 cm, validated for 4 mm to 3 cm."""
    from khet.settings import get_settings

    d = tmp_path / "models"
    make_segmentation_bundle(d / "test-seg.onnx", gsd_m=0.01, gsd_range_m=(0.004, 0.03))
    monkeypatch.setenv("KHET_MODELS_DIR", str(d))
    get_settings.cache_clear()
    return d


def plants(h: int, w: int, seed: int = 0, rows_every: int | None = None) -> np.ndarray:
    """Soil with round green plants: in rows `rows_every` px apart, or scattered."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 115, 85)
    n = h * w // 900
    ys = rng.integers(0, h, n)
    if rows_every:
        ys = (rng.integers(0, h // rows_every + 1, n) * rows_every).clip(0, h - 1)
    for y, x in zip(ys, rng.integers(0, w, n), strict=True):
        cv2.circle(img, (int(x), int(y)), int(rng.integers(3, 7)), (50, 160, 55), -1)
    img = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0)


def _classes(out: Path) -> np.ndarray:
    with rasterio.open(out / "classes.tif") as ds:
        return ds.read(1)


def test_the_same_field_at_two_resolutions_gives_the_same_map(tmp_path, seg_models):
    """1x at 5 mm and the same field averaged to 1 cm are both read at the model's 1 cm: the
    maps agree cell for cell. Were the GSD ignored, the 5 mm image would be mapped on twice as
    many, half-size cells of different content."""
    fine = plants(512, 640, seed=3)
    coarse = np.moveaxis(
        cv2.resize(np.moveaxis(fine, 0, -1), (320, 256), interpolation=cv2.INTER_AREA), -1, 0
    )
    a = analyze(write_geotiff(tmp_path / "fine.tif", fine, res=0.005), tmp_path / "a")
    b = analyze(write_geotiff(tmp_path / "coarse.tif", coarse, res=0.01), tmp_path / "b")
    for s in (a, b):
        assert s["method"] == "model" and s["layers"]["classes"]["gsd_m"] == 0.01
    ca, cb = _classes(tmp_path / "a"), _classes(tmp_path / "b")
    # Cells of 16 px (the model's 48 px stride and 32 px map cells share 16) of 1 cm.
    assert ca.shape == cb.shape == (16, 20)
    assert (ca == cb).mean() >= 0.95
    assert 0.2 < (ca == 1).mean() < 0.95  # plants are found at all
    crop = {x["name"]: x["share"] for x in a["classes"]}["crop"]
    assert crop == pytest.approx({x["name"]: x["share"] for x in b["classes"]}["crop"], abs=0.05)
    assert a["cover"]["crop"] == pytest.approx(b["cover"]["crop"], abs=0.01)


def test_classes_from_the_graph_or_from_probabilities_give_the_same_map(tmp_path):
    """A segmentation bundle with `classes` / `maxprob` outputs (Khet's exports) is run for
    those; one with only `probs` (older or hand-made bundles) has them worked out in NumPy. Both
    give the same classes and confidence, and the graph's outputs are the argmax and max."""
    from khet.vision.bundle import Bundle

    img = write_geotiff(tmp_path / "field.tif", plants(256, 320, seed=5), res=0.01)
    maps = {}
    for outputs in (False, True):
        b = make_segmentation_bundle(tmp_path / f"m{outputs}" / "seg.onnx", class_outputs=outputs)
        assert ({"classes", "maxprob"} <= Bundle(b).outputs) is outputs
        s = analyze(img, tmp_path / f"out{outputs}", model=b)
        assert s["method"] == "model"
        with rasterio.open(tmp_path / f"out{outputs}" / "confidence.tif") as ds:
            maps[outputs] = (_classes(tmp_path / f"out{outputs}"), ds.read(1))
    assert np.array_equal(maps[False][0], maps[True][0])
    assert np.array_equal(maps[False][1], maps[True][1])
    x = np.random.default_rng(0).integers(0, 255, (3, 3, 64, 64), dtype=np.uint8)
    p = Bundle(tmp_path / "mFalse" / "seg.onnx").predict(x)
    labels, maxprob = Bundle(tmp_path / "mTrue" / "seg.onnx").predict_classes(x)
    assert labels.dtype == np.uint8 and np.array_equal(labels, p.argmax(axis=1))
    assert np.allclose(maxprob, p.max(axis=1))


def test_a_model_outside_its_range_is_not_used(tmp_path, seg_models):
    p = write_geotiff(tmp_path / "survey.tif", plants(256, 320, seed=1), res=0.05)
    s = analyze(p, tmp_path / "out")
    assert s["method"] in ("rows", "index") and s.get("model") is None
    assert "test-seg is validated for 4.0 mm to 3.0 cm" in s["layers"]["classes"]["detail"]
    assert "confidence.tif" not in s["outputs"].values()
    assert {c["name"] for c in s["classes"]} >= {"soil", "vegetation"}


def test_naming_a_model_outside_its_range_is_an_error(tmp_path, seg_models):
    p = write_geotiff(tmp_path / "survey.tif", plants(256, 320, seed=1), res=0.05)
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "khet.cli",
            "analyze",
            str(p),
            "-o",
            str(out),
            "--model",
            "test-seg",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2, r.stderr
    assert "validated for imagery of 4.0 mm to 3.0 cm" in r.stderr and "5.0 cm" in r.stderr
    assert not out.exists()


def test_unknown_gsd_paints_vegetation_only_and_says_why(tmp_path, seg_models):
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.fromarray(np.moveaxis(plants(256, 320, seed=2), 0, -1)).save(p)
    s = analyze(p, tmp_path / "out")
    assert s["method"] == "index"
    assert "--gsd" in s["layers"]["classes"]["detail"]
    assert [c["name"] for c in s["classes"]] == ["soil", "vegetation"]


def test_rows_found_in_a_row_crop_and_not_in_scattered_plants(tmp_path, seg_models):
    # 4 cm (beyond the test model's 3 cm): rows 0.96 m apart (24 px), and the same plants
    # scattered.
    rows = analyze(
        write_geotiff(tmp_path / "rows.tif", plants(640, 640, 4, rows_every=24), res=0.04),
        tmp_path / "r",
    )
    assert rows["method"] == "rows", rows["layers"]["classes"]["detail"]
    assert rows["rows"]["spacing_m"] == pytest.approx(0.96, rel=0.05)
    assert rows["cover"]["crop"] > 3 * rows["cover"]["weed"]
    scattered = analyze(
        write_geotiff(tmp_path / "b.tif", plants(640, 640, 5), res=0.04), tmp_path / "s"
    )
    assert scattered["method"] == "index"
    assert "no crop rows were found" in scattered["layers"]["classes"]["detail"]


def test_vineyard_rows_are_crop_and_the_road_is_soil(tmp_path, shared_data, seg_models):
    """The MicaSense capture at about 4.9 cm per pixel (71 m above ground): vine rows on the
    left, a farm road down the middle, orchard rows on the right."""
    s = analyze(shared_data / "micasense_rededge" / "flight", tmp_path / "m", gsd=0.049)
    assert s["method"] == "rows", s["layers"]["classes"]["detail"]
    assert s["rows"]["share_with_rows"] >= 0.8
    c = _classes(tmp_path / "m")
    names = [x["name"] for x in s["classes"]]
    cols = c.shape[1]
    vines = c[:, : int(cols * 0.40)]
    road = c[:, int(cols * 0.50) : int(cols * 0.53)]
    assert (vines == names.index("crop")).mean() >= 0.6
    assert (vines == names.index("weed")).mean() <= 0.2
    assert (road == names.index("soil")).mean() >= 0.9


def test_make_demo_map_is_right(tmp_path):
    """What `make demo` shows: the calibrated MicaSense crop, its height above ground from the
    panel capture (about 4.9 cm per pixel), vine rows found and painted crop, the farm road
    soil, and no learned close-range model used on it."""
    fixtures = ROOT / "tests" / "fixtures"
    out = tmp_path / "demo"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "khet.cli",
            "analyze",
            str(fixtures / "micasense_crop"),
            "--panel",
            str(fixtures / "micasense_panel_crop"),
            "-o",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    import json

    s = json.loads(r.stdout)
    assert s["method"] == "rows" and s.get("model") is None
    assert s["gsd"]["metres"] == pytest.approx(0.0486, rel=0.02)
    c = _classes(out)
    names = [x["name"] for x in s["classes"]]
    cols = c.shape[1]
    vines, road = c[:, : int(cols * 0.28)], c[:, int(cols * 0.36) : int(cols * 0.50)]
    assert (vines == names.index("crop")).mean() >= 0.6
    assert (road == names.index("soil")).mean() >= 0.9


def _strips(h: int, w: int, every: int, n: int, seed: int = 6) -> np.ndarray:
    """Soil with `n` bands of grass `every` px apart, each half that wide: the verges either side
    of a road, or a field margin; not a crop in rows."""
    img = np.moveaxis(plants(h, w, seed), 0, -1).copy()
    for k in range(n):
        y0 = h // 2 - (n * every) // 2 + k * every
        img[y0 : y0 + every // 2] = (50, 160, 55)
    rng = np.random.default_rng(seed)
    img = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0)


def test_two_or_three_strips_of_grass_are_not_crop_rows(tmp_path, seg_models):
    """Three grass strips 2 m apart (at 4 cm per pixel) are periodic enough for the spectrum,
    but three strips are a verge or a margin, not a crop: no rows, nothing painted weed. Eight
    such strips are rows."""
    few = analyze(
        write_geotiff(tmp_path / "few.tif", _strips(1024, 1024, 50, 3), res=0.04), tmp_path / "f"
    )
    assert few["method"] == "index", few.get("rows")
    assert "weed" not in [c["name"] for c in few["classes"]]
    many = analyze(
        write_geotiff(tmp_path / "many.tif", _strips(1024, 1024, 50, 8), res=0.04), tmp_path / "m"
    )
    assert many["method"] == "rows", many["layers"]["classes"]["detail"]
    assert many["rows"]["spacing_m"] == pytest.approx(2.0, rel=0.05)


def test_rows_seen_counts_neighbouring_rows_with_plants():
    from khet.vision.rows import _rows_seen

    assert _rows_seen(np.array([], np.float64)) == 0
    # Rows 0-3 full, row 4 empty (a road), rows 5-6 full: the longest run is 4.
    rows = np.repeat([0, 1, 2, 3, 5, 6], 100).astype(np.float64)
    assert _rows_seen(rows) == 4
    # A row with under a fifth of the fullest row's plants breaks the run.
    rows = np.concatenate([np.repeat([0, 1, 3, 4], 100), np.repeat([2], 10)]).astype(np.float64)
    assert _rows_seen(rows) == 2


def test_a_mown_lawn_is_not_crop_rows(tmp_path, seg_models):
    """Grass everywhere, in mowing stripes of two greens 1 m apart: periodic, but plants
    between the stripes as much as on them. Painting its stripes crop and weed would be wrong."""
    img = np.empty((1024, 1024, 3), np.uint8)
    stripe = (np.arange(1024) // 12) % 2 == 0  # 12 px of 4 cm: 0.48 m stripes, 0.96 m period
    img[stripe] = (60, 170, 55)
    img[~stripe] = (75, 140, 60)
    rng = np.random.default_rng(7)
    img = np.clip(img.astype(int) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    s = analyze(
        write_geotiff(tmp_path / "lawn.tif", np.moveaxis(img, -1, 0), res=0.04), tmp_path / "l"
    )
    assert s["method"] == "index", s.get("rows")
    assert [c["name"] for c in s["classes"]] == ["soil", "vegetation"]


def _row_field(h: int, w: int, every: int, vertical: bool, seed: int, weeds: float = 0.0):
    """Soil with crop rows `every` px apart (6 px wide bands of leaf) and, when `weeds` > 0,
    weeds in a strip midway between the rows covering that share of the strip, with bare soil
    beside each row (as after inter-row cultivation). Returns (bands, crop mask, weed mask)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 115, 85)
    across = np.arange(w if vertical else h)
    d = np.abs((across % every) - every / 2)  # distance from the row centre, px
    crop1 = d <= 3
    mid = d >= every / 2 - 5
    crop = np.broadcast_to(crop1[None, :] if vertical else crop1[:, None], (h, w))
    strip = np.broadcast_to(mid[None, :] if vertical else mid[:, None], (h, w))
    weed = strip & (rng.random((h, w)) < weeds)
    weed = cv2.dilate(weed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & strip
    img[crop] = (50, 160, 55)
    img[weed] = (70, 150, 50)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0), crop, weed


def test_heavy_weeds_between_the_rows_are_weed_not_a_wider_row(tmp_path, seg_models):
    """The row band was sized to the furthest part of the profile with plants: once weeds
    midway were dense, the band took them in and the weed share fell as weeds rose (drawn 25 %,
    mapped 10 %). It now stops at the bare soil beside the row. Rows 1 m apart at 4 cm."""
    img, _, weed = _row_field(1024, 1024, 25, vertical=False, seed=8, weeds=0.06)
    s = analyze(write_geotiff(tmp_path / "w.tif", img, res=0.04), tmp_path / "w")
    assert s["method"] == "rows", s["layers"]["classes"]["detail"]
    assert s["rows"]["spacing_m"] == pytest.approx(1.0, rel=0.05)
    assert s["cover"]["weed"] == pytest.approx(weed.mean(), rel=0.25), (s["cover"], weed.mean())


def test_a_field_with_other_rows_in_the_same_block_is_not_painted_weed(tmp_path, seg_models):
    """Two fields in one 48 m block at 4 cm: rows across the left 40 %, along the right 60 %.
    The block's rows are those of the right field; the left field's plants were painted in
    stripes of crop and weed by them. Where a block's rows do not hold (~10 m at a time) its
    plants are now left as vegetation: hardly any of the left field's crop is called weed."""
    left, _, _ = _row_field(1200, 480, 25, vertical=False, seed=9)
    right, _, _ = _row_field(1200, 720, 25, vertical=True, seed=10)
    img = np.concatenate([left, right], axis=2)
    s = analyze(write_geotiff(tmp_path / "two.tif", img, res=0.04), tmp_path / "t")
    assert s["method"] == "rows", s["layers"]["classes"]["detail"]
    c = _classes(tmp_path / "t")
    names = [x["name"] for x in s["classes"]]
    left_cells = c[:, : int(c.shape[1] * 0.35)]
    plants = left_cells[(left_cells != names.index("soil")) & (left_cells != 255)]
    assert plants.size > 100
    assert (plants == names.index("weed")).mean() < 0.1, np.unique(plants, return_counts=True)
    right_cells = c[:, int(c.shape[1] * 0.45) :]
    assert (right_cells == names.index("crop")).mean() > 0.1  # the right field keeps its rows


def _vineyard(h: int, w: int, gsd: float, seed: int, grass: bool) -> np.ndarray:
    """Vine rows 2.5 m apart (canopy ~0.6 m, ragged, with gaps), bare strips beside them and,
    with `grass`, a grass alley 1 m wide down the middle of each inter-row (~2/3 cover)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 115, 85)
    per = 2.5 / gsd
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx / per
    d = np.abs(t - np.rint(t)) * per  # px from the nearest vine row
    half = 0.3 / gsd * (1 + 0.3 * np.sin(yy * gsd / 0.35 + np.rint(t) * 1.7))
    vine = (d <= half) & (rng.random((h, w)) > 0.12)
    if grass:
        alley = d >= per / 2 - 0.5 / gsd
        g = cv2.dilate((rng.random((h, w)) < 0.55).astype(np.uint8), np.ones((2, 2), np.uint8))
        img[alley & g.astype(bool) & ~vine] = (85, 150, 60)
    img[vine] = (50, 160, 55)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0)


def test_vines_with_grass_alleys_are_not_painted_in_stripes_at_half_their_spacing(
    tmp_path, seg_models
):
    """A grass alley midway between vine rows makes half the vines' spacing the spectrum's
    strongest peak: the grass was taken for a row and painted crop (98 % of it). Vines and
    grass taking turns do not say which is the crop: rows at their own spacing, or none
    (vegetation), never stripes 1.25 m apart. With bare alleys the vines' rows are found."""
    _in_grass_and_on_bare_soil(tmp_path, _vineyard, 0.04, 2.5, seeds=(1, 2))


def test_every_other_row_weak_is_not_painted_weed(tmp_path, seg_models):
    """Rows 1 m apart, every other one with 30 % of the leaf: twice the spacing was taken and
    the weak rows, midway, painted weed (28 % of the crop). Strong and weak rows taking turns
    do not say which is the crop: no drawn crop is painted weed."""
    img, crop, _ = _row_field(1600, 1600, 25, vertical=True, seed=11)
    rng = np.random.default_rng(12)
    weak = (np.arange(1600) // 25 % 2 == 1)[None, :] & crop & (rng.random(crop.shape) > 0.3)
    soil = np.array([150, 115, 85])[:, None]
    img[:, weak] = np.clip(soil + rng.integers(-8, 9, (3, int(weak.sum()))), 0, 255)
    s = analyze(write_geotiff(tmp_path / "a.tif", img, res=0.04), tmp_path / "a")
    assert s["cover"].get("weed", 0.0) < 0.01, (s["method"], s.get("rows"), s["cover"])


def _orchard(h: int, w: int, gsd: float, seed: int, grass: bool) -> np.ndarray:
    """Trees 5 m apart in rows 6 m apart (crowns ~3 m, ragged), bare strips beside the trees
    and, with `grass`, a grass alley 2.5 m wide midway between the rows (~2/3 cover)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 115, 85)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t, tv = xx * gsd / 6.0, yy * gsd / 5.0
    du, dv = (t - np.rint(t)) * 6.0, (tv - np.rint(tv)) * 5.0  # metres from the nearest tree
    radius = 1.5 * (0.85 + 0.3 * ((np.rint(t) * 131 + np.rint(tv) * 17) % 997 * 0.618 % 1))
    tree = (np.hypot(du, dv) <= radius + rng.normal(0, 0.08, (h, w))) & (rng.random((h, w)) > 0.08)
    if grass:
        alley = np.abs(du) >= 3.0 - 1.25
        g = cv2.dilate((rng.random((h, w)) < 0.6).astype(np.uint8), np.ones((2, 2), np.uint8))
        img[alley & g.astype(bool) & ~tree] = (85, 150, 60)
    img[tree] = (50, 160, 55)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0)


def test_an_orchard_in_grass_alleys_is_not_painted_across_its_rows(tmp_path, seg_models):
    """Trees in a grid in grass alleys: the trees' spacing along the row (5 m) was taken for
    rows across it and the alley grass painted crop (62 %). A grid with plants between its
    "rows" does not say which way the rows run: rows 6 m apart or none, never 5 m. On bare soil
    the orchard's rows are found."""
    _in_grass_and_on_bare_soil(tmp_path, _orchard, 0.05, 6.0)


def _strip_intercrop(h: int, w: int, gsd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Strip intercropping: strips 4.5 m wide taking turns, maize rows 0.75 m apart (0.3 m of
    leaf) and a closed sward (wheat: leaf nearly everywhere), rows running up the image.
    Returns (bands, maize mask)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 115, 85)
    x = np.arange(w) * gsd
    wheat = (x // 4.5).astype(int) % 2 == 1
    maize1 = ~wheat & (np.abs((x % 0.75) - 0.375) <= 0.15)
    maize = np.broadcast_to(maize1[None, :], (h, w)) & (rng.random((h, w)) > 0.1)
    sward = np.broadcast_to(wheat[None, :], (h, w)) & (rng.random((h, w)) > 0.3)
    img[maize | sward] = (50, 160, 55)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    return np.moveaxis(img, -1, 0), maize


def test_a_strip_of_sward_between_strips_of_row_crop_is_not_painted_weed(tmp_path, seg_models):
    """Strips of wheat (a closed sward) between strips of maize rows: the maize's rows hold
    for the block, and the wheat was painted from them, crop on the rows and weed between (31 %
    of the plants weed; none drawn). Rows whose slot has plants midway as often as on the row,
    several side by side, are a strip of sward: vegetation. The maize keeps its rows."""
    img, maize = _strip_intercrop(1600, 1600, 0.04, 5)
    s = analyze(write_geotiff(tmp_path / "s.tif", img, res=0.04), tmp_path / "s")
    assert s["method"] == "rows" and s["rows"]["spacing_m"] == pytest.approx(0.75, rel=0.05)
    assert s["cover"].get("weed", 0.0) < 0.01, s["cover"]
    assert s["cover"]["crop"] == pytest.approx(maize.mean(), rel=0.2), (s["cover"], maize.mean())
    c = _classes(tmp_path / "s")
    names = [x["name"] for x in s["classes"]]
    per_m = c.shape[1] / (1600 * 0.04)  # map cells per metre
    wheat_cells = c[:, int(4.5 * per_m) + 2 : int(9.0 * per_m) - 2]  # the first wheat strip
    assert (wheat_cells == names.index("vegetation")).mean() > 0.9


def test_sward_slots_are_runs_of_rows_with_plants_midway():
    """Rows' slots with plants midway as on the row: three side by side are a strip of sward
    (and the slot either side its edge); a single one is one row's weeds, not a strip."""
    from khet.vision.rows import SWARD, SWARD_EDGE, _sward

    slot = np.repeat(np.arange(3, 13), 100).astype(np.float64)  # slots 3 to 12
    d = np.tile(np.linspace(0, 0.5, 100), 10)
    plants = d <= 0.1
    for k in (4, 7, 8, 9):  # one alone, and a run of three
        plants |= (slot == k) & (d >= 0.45)
    k0, flags = _sward(slot, d, plants, 0.3)
    assert k0 == 3 and flags is not None
    assert flags.tolist() == [0, 0, 0, SWARD_EDGE, SWARD, SWARD, SWARD, SWARD_EDGE, 0, 0]
    k0, flags = _sward(slot, d, d <= 0.1, 0.3)
    assert flags is None


def _in_grass_and_on_bare_soil(
    tmp_path, draw, gsd: float, spacing: float, seeds: tuple[int, int] = (3, 4)
) -> None:
    """`draw(h, w, gsd, seed, grass)` with grass alleys: rows `spacing` apart or none, nothing
    else; without: rows `spacing` apart (drawn with `seeds`, in grass and bare)."""
    img = draw(1600, 1600, gsd, seeds[0], True)
    s = analyze(write_geotiff(tmp_path / "g.tif", img, res=gsd), tmp_path / "g")
    if s["method"] == "rows":
        assert s["rows"]["spacing_m"] == pytest.approx(spacing, rel=0.05)
    else:
        assert "no crop rows were found" in s["layers"]["classes"]["detail"]
    img = draw(1600, 1600, gsd, seeds[1], False)
    s = analyze(write_geotiff(tmp_path / "b.tif", img, res=gsd), tmp_path / "b")
    assert s["method"] == "rows" and s["rows"]["spacing_m"] == pytest.approx(spacing, rel=0.05)


def test_a_crop_the_model_did_not_learn_gets_its_rows_at_drone_gsd(tmp_path, monkeypatch):
    """A model that learned potato, on a field stated to grow maize at 5 mm per pixel (inside
    the model's range): the model is passed over and the maize rows, 0.75 m apart, make the
    map. Rows were looked for only from 1 cm, so this field was vegetation only before; on
    potato (as the field states it in Urdu) the model makes the map."""
    from khet.settings import get_settings

    d = tmp_path / "models"
    make_segmentation_bundle(d / "potato-seg.onnx", crops=("potato",), name="potato-seg")
    monkeypatch.setenv("KHET_MODELS_DIR", str(d))
    get_settings.cache_clear()
    img, crop, _ = _row_field(2048, 2048, 150, vertical=True, seed=3)
    src = write_geotiff(tmp_path / "maize.tif", img, res=0.005)
    s = analyze(src, tmp_path / "maize", crop="Maize")
    detail = s["layers"]["classes"]["detail"]
    assert s["method"] == "rows", detail
    assert "model potato-seg learned potato, not Maize" in detail
    assert s["rows"]["spacing_m"] == pytest.approx(0.75, rel=0.05)
    assert s["cover"]["crop"] == pytest.approx(crop.mean(), rel=0.3) and s["cover"]["weed"] < 0.01
    mine = analyze(src, tmp_path / "potato", crop="آلو")
    assert mine["method"] == "model" and mine["model"]["name"] == "potato-seg"
    assert "for potato (the field's crop)" in mine["layers"]["classes"]["detail"]
