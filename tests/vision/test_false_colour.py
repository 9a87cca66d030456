"""A camera that records near-infrared in place of red (the Seneca flight's NIR-modified Canon):
read as red, green and blue its plants look red-purple and count as soil, which Khet says; named
as near-infrared, green and blue, its plants are found by GNDVI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from khet.vision.pipeline import analyze

from khet.cli import main


def _frame(shared_data):
    return shared_data / "seneca_flight" / "images" / "IMG_0471.jpg"


def _share(summary: dict, name: str) -> float:
    return next((c["share"] for c in summary["classes"] if c["name"] == name), 0.0)


def test_a_near_infrared_frame_read_as_rgb_says_so(tmp_path, shared_data, capsys):
    """Grass verges either side of a road, red in this camera's false colour: read as RGB the
    map finds almost no plants, and the summary, the legend and the terminal say why."""
    code = main(["analyze", str(_frame(shared_data)), "-o", str(tmp_path / "rgb")])
    assert code == 0
    err = capsys.readouterr().err
    s = json.loads((tmp_path / "rgb" / "summary.json").read_text())
    assert _share(s, "vegetation") < 0.01
    said = [w for w in s["warnings"] if "near-infrared" in w]
    assert len(said) == 1 and "--bands nir,green,blue" in said[0]
    assert "near-infrared" in err  # the note is printed, not only written
    assert s["input"]["looks_near_infrared"] > 0.15
    # Zones and rates made on such a map carry the caution.
    from khet.vision.prescription import open_map

    grid = open_map(tmp_path / "rgb")
    assert [w for w in grid.warnings if "near-infrared camera's pictures" in w]


def test_named_near_infrared_bands_find_the_plants(tmp_path, shared_data):
    s = analyze(_frame(shared_data), tmp_path / "ngb", bands=["nir", "green", "blue"])
    assert s["method"] == "index"
    assert not [w for w in s["warnings"] if "near-infrared" in w]
    assert 0.15 < _share(s, "vegetation") < 0.4  # the verges, about a quarter of the frame
    assert "GNDVI" in s["layers"]["classes"]["detail"]
    with rasterio.open(tmp_path / "ngb" / "classes.tif") as ds:
        c = ds.read(1)
    names = [x["name"] for x in s["classes"]]
    # Against the frame's own GNDVI per map cell: plainly green-reflecting cells (the verges)
    # are vegetation, plainly bare ones (the fields, the road) soil.
    nir, green = (cv2.imread(str(_frame(shared_data))).astype(np.float32)[:, :, k] for k in (2, 1))
    gndvi = (nir - green) / np.maximum(nir + green, 1)
    cell = cv2.resize(gndvi, c.shape[::-1], interpolation=cv2.INTER_AREA)
    assert (c[cell > 0.3] == names.index("vegetation")).mean() > 0.9
    assert (c[cell < 0.05] == names.index("soil")).mean() > 0.95
    assert (cell > 0.3).sum() > 500 and (cell < 0.05).sum() > 2000


def test_true_colour_drone_tiles_do_not_look_near_infrared(tmp_path, shared_data):
    """uav_potato's RGB tiles (green plants on brown soil) get no such warning."""
    from khet.vision import indices as vi

    for path in sorted((shared_data / "uav_potato" / "images").glob("*.jpg"))[::10]:
        rgb = np.moveaxis(cv2.imread(str(path))[:, :, ::-1], -1, 0)
        assert vi.colour_shares(rgb, None, ("red", "green", "blue"))[0] < vi.RED_PURPLE_SHARE
    frame = np.moveaxis(cv2.imread(str(_frame(shared_data)))[:, :, ::-1], -1, 0)
    assert vi.colour_shares(frame, None, ("red", "green", "blue"))[0] > 0.15
    # With near-infrared named, the question does not arise.
    assert vi.colour_shares(frame, None, ("nir", "green", "blue"))[0] == 0.0


def test_bands_named_in_the_wrong_order_say_so(tmp_path, shared_data):
    """Red and near-infrared swapped (a 5-band capture) or a near-infrared camera named
    red,green,nir: plants read darker in "near-infrared" than in "red" and count as soil. The
    summary, the warnings and zones made on the map say the bands are probably misordered;
    named in the camera's order, nothing is said."""
    from khet.vision import radiometry
    from khet.vision.prescription import open_map

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    capture = fixtures / "micasense_crop"
    panel = radiometry.Options(panel=(fixtures / "micasense_panel_crop",))
    swapped = ["blue", "green", "nir", "red", "rededge"]
    s = analyze(capture, tmp_path / "swapped", bands=swapped, calibration=panel)
    assert s["input"]["looks_misordered"] > 0.9
    said = [w for w in s["warnings"] if "wrong order" in w]
    assert len(said) == 1 and "blue,green,nir,red,rededge" in said[0]
    assert _share(s, "soil") > 0.99  # what the note explains
    grid = open_map(tmp_path / "swapped")
    assert [w for w in grid.warnings if "wrong order" in w]

    s = analyze(capture, tmp_path / "right", calibration=panel)
    assert "looks_misordered" not in s["input"]
    assert not [w for w in s["warnings"] if "wrong order" in w]

    s = analyze(_frame(shared_data), tmp_path / "ngb", bands=["red", "green", "nir"])
    assert s["input"]["looks_misordered"] > 0.1
    assert [w for w in s["warnings"] if "wrong order" in w]


def test_water_beside_plants_is_not_taken_for_misordered_bands():
    """Open water is the one surface darker in near-infrared than in red: a pond beside a
    field (less water than plants) says nothing; a field under water says so, and the note
    names water as the other reason."""
    from khet.vision import indices as vi
    from khet.vision.plan import band_order_note

    def scene(plants: float, water: float) -> np.ndarray:
        n = 1000
        red = np.full(n, 0.1, np.float32)
        nir = np.full(n, 0.14, np.float32)  # soil: NDVI 0.17
        k, w = int(plants * n), int(water * n)
        nir[:k] = 0.4  # plants: NDVI 0.6
        red[k : k + w], nir[k : k + w] = 0.05, 0.02  # water: NDVI -0.43
        return np.stack([red, nir])[:, None, :]

    assert vi.inverted_share(scene(0.4, 0.3), None, ("red", "nir")) == 0.0
    flooded = vi.inverted_share(scene(0.1, 0.7), None, ("red", "nir"))
    assert flooded == pytest.approx(0.7)
    assert "water" in band_order_note(flooded, ("red", "nir"))
    # No near-infrared, no question.
    assert vi.inverted_share(scene(0.1, 0.7), None, ("red", "green")) == 0.0


def test_an_image_stored_blue_green_red_says_so_and_keeps_the_model_off(tmp_path, shared_data):
    """Real drone tiles written with red and blue swapped (as OpenCV's order is): their soil
    reads blue, and khet-rgb-uav painted a tile without potato 14 % crop. The summary, legend and
    terminal say so and no RGB model is used; named blue,green,red, the model maps the tiles as
    it does the true colours; the true colours say nothing."""
    from khet.datasets import labelme
    from khet.models.segment import _write_geotiff
    from khet.vision import indices as vi

    items = {i.stem: i for i in labelme.find_images(shared_data / "uav_potato")}
    rgb = np.hstack(
        [
            labelme.load(items[n], {"potato": "crop", "weed": "weed"})[0]
            for n in ("tile_10_5", "tile_13_5")
        ]
    )
    true, swapped = tmp_path / "true.tif", tmp_path / "bgr.tif"
    _write_geotiff(true, rgb, 0.003)
    _write_geotiff(swapped, rgb[:, :, ::-1].copy(), 0.003)

    s = analyze(swapped, tmp_path / "bgr", crop="potato")
    assert s["input"]["looks_swapped"] > 0.3 and s["method"] != "model"
    said = [w for w in s["warnings"] if "red and blue are swapped" in w]
    assert len(said) == 1 and "--bands blue,green,red" in said[0]
    detail = s["layers"]["classes"]["detail"]
    assert "the image looks stored blue, green, red" in detail, detail

    fixed = analyze(swapped, tmp_path / "named", crop="potato", bands=["blue", "green", "red"])
    right = analyze(true, tmp_path / "true", crop="potato")
    for m in (fixed, right):
        assert m["method"] == "model" and "looks_swapped" not in m["input"]
        assert not [w for w in m["warnings"] if "swapped" in w]
    assert fixed["cover"] == right["cover"]
    # The share on the true colours of every tenth tile, and on the same swapped.
    for path in sorted((shared_data / "uav_potato" / "images").glob("*.jpg"))[::10]:
        bands = np.moveaxis(cv2.imread(str(path))[:, :, ::-1], -1, 0)
        assert vi.colour_shares(bands, None, ("red", "green", "blue"))[1] < 0.01
        assert vi.colour_shares(bands[::-1], None, ("red", "green", "blue"))[1] > vi.SWAPPED_SHARE


def test_a_field_beside_a_pond_keeps_its_true_colours(tmp_path, shared_data):
    """Open water reflecting the sky is blue-highest and red-lowest, as swapped soil is; a third
    of the image under water (a pond, a flooded paddy) is over the swapped share. The plants
    decide: their red is above their blue in true colour. The same image swapped still says so."""
    from khet.datasets import labelme
    from khet.models.segment import _write_geotiff
    from khet.vision import indices as vi
    from khet.vision.pipeline import analyze

    items = {i.stem: i for i in labelme.find_images(shared_data / "uav_potato")}
    rgb = labelme.load(items["tile_13_5"], {"potato": "crop", "weed": "weed"})[0].copy()
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(0)
    pond = np.array([70, 108, 150], np.float32) + rng.normal(0, 6, (h, w // 3, 3))
    rgb[:, : w // 3] = np.clip(pond, 0, 255).astype(np.uint8)  # sky on still water
    bands = np.moveaxis(rgb, -1, 0)
    blue = (bands[2] > bands[1]) & (bands[1] > bands[0])
    assert blue.mean() > vi.SWAPPED_SHARE  # what the soil alone would call swapped
    assert vi.colour_shares(bands, None, ("red", "green", "blue"))[1] == 0.0
    assert vi.colour_shares(bands[::-1], None, ("red", "green", "blue"))[1] > vi.SWAPPED_SHARE

    path = tmp_path / "pond.tif"
    _write_geotiff(path, rgb, 0.003)
    s = analyze(path, tmp_path / "out", crop="potato")
    assert s["method"] == "model" and "looks_swapped" not in s["input"]
    assert not [w for w in s["warnings"] if "swapped" in w]
