"""Opening imagery: band naming, georeference, masks, captures, EXIF."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from khet.vision import align
from khet.vision.scene import NO_GEOREF_PIXELS, group_captures, open_scene
from rasterio.windows import Window

from khet.errors import BandError, InputError
from tests.vision.rasters import field_rgb, write_geotiff, write_jpeg_with_gps

FIXTURE = "tests/fixtures/micasense_crop"


def test_rgb_geotiff_named_by_colorinterp_and_georeferenced(tmp_path):
    p = write_geotiff(tmp_path / "f.tif", field_rgb())
    with open_scene(p) as s:
        assert s.bands == ("red", "green", "blue")
        assert s.georef == "crs" and s.crs.to_epsg() == 32643
        assert (s.width, s.height) == (320, 256)
        data, valid = s.read(Window(-10, -10, 40, 40), ["green"])
        assert data.shape == (1, 40, 40) and not valid[:10].any() and valid[10:, 10:].all()
        assert (data[0, :10] == 0).all()


def test_band_descriptions_name_multispectral_bands(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (4, 64, 64), dtype=np.uint16)
    p = write_geotiff(tmp_path / "ms.tif", data, descriptions=["Red", "Green", "Blue", "NIR"])
    with open_scene(p) as s:
        assert s.bands == ("red", "green", "blue", "nir") and s.dtype == "uint16"


def test_user_band_names_override_and_are_checked(tmp_path):
    p = write_geotiff(tmp_path / "f.tif", field_rgb())
    with open_scene(p, bands=["nir", "red", "-"]) as s:
        assert s.bands == ("nir", "red")
    with pytest.raises(BandError, match="3 band"):
        open_scene(p, bands=["red", "nir"])
    with pytest.raises(BandError, match="twice"):
        open_scene(p, bands=["red", "red", "nir"])


def test_nodata_and_internal_mask_make_pixels_invalid(tmp_path):
    data = field_rgb()
    data[:, :, :100] = 0
    p = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    with open_scene(p) as s:
        _, valid = s.read(Window(0, 0, 320, 256), ["red"])
        assert not valid[:, :100].any() and valid[:, 100:].mean() > 0.99
    mask = np.ones((256, 320), bool)
    mask[200:] = False
    p2 = write_geotiff(tmp_path / "mask.tif", field_rgb(), mask=mask)
    with open_scene(p2) as s:
        _, valid = s.read(Window(0, 0, 320, 256), ["red"])
        assert valid[:200].all() and not valid[200:].any()


def test_alpha_band_is_a_mask_not_a_band(tmp_path):
    from rasterio.enums import ColorInterp

    rgb = field_rgb()
    alpha = np.full((1, 256, 320), 255, np.uint8)
    alpha[0, :50] = 0
    p = write_geotiff(
        tmp_path / "a.tif",
        np.concatenate([rgb, alpha]),
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )
    with open_scene(p) as s:
        assert s.bands == ("red", "green", "blue")
        _, valid = s.read(Window(0, 0, 320, 256), ["red"])
        assert not valid[:50].any() and valid[50:].all()


def test_jpeg_frame_reads_gps_from_exif(tmp_path):
    p = write_jpeg_with_gps(tmp_path / "DJI_0001.JPG", field_rgb())
    with open_scene(p) as s:
        assert s.georef == "exif-gps" and s.kind == "frame"
        assert s.camera.latitude == pytest.approx(31.5204, abs=1e-4)
        assert s.camera.longitude == pytest.approx(74.3587, abs=1e-4)
        assert s.bands == ("red", "green", "blue")
        assert any("GPS" in w for w in s.warnings)


def test_multifile_capture_is_named_from_xmp_and_coregistered():
    with open_scene(FIXTURE) as s:
        assert s.kind == "capture"
        assert s.bands == ("blue", "green", "red", "nir", "rededge")
        shifts = {a["band"]: a["shift_px"] for a in s.alignment}
        assert max(shifts.values()) > 5  # the lenses really are misaligned...
        data, valid = s.read(Window(0, 0, s.width, s.height), ["green", "nir"])
        # ...and after co-registration the residual shift between bands is sub-pixel.
        residual = align.estimate(data[0], data[1])
        assert residual.shift_px < 0.5
        assert valid.mean() > 0.9
        assert s.camera.has_gps


def test_real_flight_capture_ndvi_is_plausible(shared_data):
    from khet.vision import indices as vi
    from khet.vision.radiometry import Options

    # Raw numbers (calibration off), as the data README measured them; reflectance-based NDVI
    # is checked in test_radiometry.py.
    raw = Options(method="none")
    with open_scene(shared_data / "micasense_rededge" / "flight", calibration=raw) as s:
        data, valid = s.read(Window(0, 0, s.width, s.height), ["nir", "red"])
        ndvi = vi.compute([vi.BY_NAME["ndvi"]], data, ["nir", "red"], valid)[0]
        v = ndvi[np.isfinite(ndvi)]
        # The data README: typical NDVI about 0.2, from about -0.3 to 0.6 (here: minus black level).
        assert 0.1 < float(np.mean(v)) < 0.45
        assert np.percentile(v, 2) < -0.1 and np.percentile(v, 98) > 0.5


def test_group_captures_splits_a_folder(tmp_path):
    names = [f"IMG_0001_{i}.tif" for i in range(1, 6)] + [f"IMG_0002_{i}.tif" for i in range(1, 6)]
    files = [tmp_path / n for n in names] + [tmp_path / "DJI_0003.JPG"]
    groups = group_captures(files)
    assert len(groups) == 3
    assert [f.name for f in groups[str(tmp_path / "IMG_0002")]][0] == "IMG_0002_1.tif"


def test_folder_with_two_captures_is_refused(tmp_path):
    import shutil

    for prefix in ("IMG_0001", "IMG_0002"):
        for i in range(1, 6):
            shutil.copy(f"{FIXTURE}/IMG_0001_{i}.tif", tmp_path / f"{prefix}_{i}.tif")
    with pytest.raises(InputError, match="2 captures"):
        open_scene(tmp_path)


def test_fourth_band_described_as_nir_is_not_taken_for_alpha(tmp_path):
    """GDAL calls the 4th band of an 8-bit GeoTIFF written without PHOTOMETRIC 'alpha'."""
    import rasterio
    from affine import Affine

    data = np.random.default_rng(0).integers(1, 255, (4, 64, 64), dtype=np.uint8)
    p = tmp_path / "rgbn.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="uint8",
        crs="EPSG:32643",
        transform=Affine(0.05, 0, 350000, 0, -0.05, 3500000),
    ) as d:
        d.write(data)
        for i, n in enumerate(["red", "green", "blue", "nir"], 1):
            d.set_band_description(i, n)
    with rasterio.open(p) as d:
        assert d.colorinterp[3].name == "alpha"
    with open_scene(p) as s:
        assert s.bands == ("red", "green", "blue", "nir")
        got, valid = s.read(Window(0, 0, 64, 64), ["nir"])
        assert valid.all() and (got[0] == data[3]).all()


def test_read_into_a_reused_buffer_pads_the_edges(tmp_path):
    """The pipeline reads every strip into the same buffer: what a read leaves there must be
    the image, zeros past its edges, and nothing of the strip before."""
    data = field_rgb()  # 3 x 256 x 320, no mask, no nodata
    p = write_geotiff(tmp_path / "f.tif", data)
    with open_scene(p) as s:
        buf = np.full((3, 64, 80), 99, np.uint8)
        got, valid = s.read(Window(10, 20, 80, 64), ["red", "green", "blue"], out=buf)
        assert got is buf and (got == data[:, 20:84, 10:90]).all()
        assert valid.all() and not valid.flags.writeable  # the shared "all valid" mask
        got, valid = s.read(Window(280, 230, 80, 64), ["red", "green", "blue"], out=buf)
        assert (got[:, :26, :40] == data[:, 230:, 280:]).all()
        assert not got[:, 26:].any() and not got[:, :, 40:].any()  # padding, not the last strip
        assert valid[:26, :40].all() and not valid[26:].any() and not valid[:, 40:].any()
        with pytest.raises(ValueError):
            s.read(Window(0, 0, 10, 10), ["red"], out=buf)


def test_gdal_settings_are_gdal_config_not_environment(tmp_path, monkeypatch):
    """Opening imagery bounds GDAL's block cache through rasterio's GDAL configuration, for
    every thread, without writing environment variables that child processes would inherit."""
    import os

    from rasterio.env import get_gdal_config, set_gdal_config

    from khet.settings import Settings

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    try:
        p = write_geotiff(tmp_path / "f.tif", field_rgb())
        with open_scene(p, settings=Settings(data_dir=tmp_path, gdal_cache_mb=96)):
            assert get_gdal_config("GDAL_CACHEMAX") == 96 * 1024 * 1024
            assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") == "EMPTY_DIR"
        assert "GDAL_CACHEMAX" not in os.environ
    finally:
        set_gdal_config("GDAL_CACHEMAX", before)


def test_big_raster_without_overviews_is_sampled_not_decoded_whole(tmp_path, monkeypatch):
    """A whole-scene rule (the vegetation threshold) is fitted on a lattice of full-resolution
    patches, one per block, when the file has no overviews and is big; the rule it gives matches
    the one from the decimated whole scene."""
    import rasterio
    from khet.vision import indices as vi
    from khet.vision import scene as scene_mod

    data = np.concatenate([field_rgb(768, 1024, seed=k) for k in range(2)], axis=2)  # 768 x 2048
    data[:, :, :300] = 0  # a strip of nodata in the west
    p = write_geotiff(tmp_path / "big.tif", data, nodata=0)
    monkeypatch.setattr(scene_mod, "SAMPLE_ALL_PX", 1000)  # "big": anything over 1000 px
    with open_scene(p) as s:
        bh, bw = s.dataset.block_shapes[0]
        d, v = s.sample(list(s.bands))
        k = scene_mod.SAMPLE_PATCHES
        ph, pw = min(scene_mod.SAMPLE_PATCH, bh, 768 // k), min(scene_mod.SAMPLE_PATCH, bw)
        assert d.shape == (3, k * ph, k * pw) and v.shape == (k * ph, k * pw)
        # Each patch is the scene's own pixels at the start of a block.
        for i in range(k):
            for j in range(k):
                y = min(int((i + 0.5) * 768 / k) // bh * bh, 768 - ph)
                x = min(int((j + 0.5) * 2048 / k) // bw * bw, 2048 - pw)
                patch = d[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw]
                assert np.array_equal(patch, data[:, y : y + ph, x : x + pw])
                assert np.array_equal(
                    v[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw],
                    (data[:, y : y + ph, x : x + pw] != 0).any(axis=0),
                )
        sampled = vi.Vegetation.fit(d, v, s.bands)
        whole = vi.Vegetation.fit(*s.overview(list(s.bands)), s.bands)
        assert sampled is not None and whole is not None
        assert abs(sampled.threshold - whole.threshold) < 0.03
    # A file in strips of a row or a few would give slivers: the decimated whole scene instead.
    striped = write_geotiff(tmp_path / "striped.tif", data, nodata=0, tiled=False)
    with open_scene(striped) as s:
        assert min(s.dataset.block_shapes[0]) < 16
        d, v = s.sample(list(s.bands))
        od, ov = s.overview(list(s.bands))
        assert np.array_equal(d, od) and np.array_equal(v, ov)
    # With overviews, GDAL reads them: the decimated whole scene, as before.
    with rasterio.open(p, "r+") as ds:
        ds.build_overviews([2, 4])
    with open_scene(p) as s:
        d, v = s.sample(list(s.bands))
        od, ov = s.overview(list(s.bands))
        assert np.array_equal(d, od) and np.array_equal(v, ov)


def test_jpeg_orthomosaic_without_overviews_is_shrunk_by_scaled_decoding(tmp_path):
    """A JPEG-in-TIFF orthomosaic without overviews, read at a model's coarser GSD by 2, 4 or
    8, goes through libjpeg's scaled decoding (GDAL's implicit JPEG overviews); the pixels match
    the decoded pixels averaged. Other factors, and files with overviews, average."""
    import rasterio
    from rasterio.enums import Resampling

    from khet.settings import apply_gdal_env

    apply_gdal_env()
    data = np.concatenate([field_rgb(512, 1024, seed=k) for k in range(2)], axis=1)  # 1024^2
    p = tmp_path / "ortho-jpeg.tif"
    profile = dict(
        driver="GTiff", width=1024, height=1024, count=3, dtype="uint8", crs="EPSG:32643",
        transform=rasterio.transform.from_origin(350000, 3500000, 0.003, 0.003), tiled=True,
        blockxsize=256, blockysize=256, compress="JPEG", photometric="YCBCR", jpeg_quality=90,
    )  # fmt: skip
    with rasterio.open(p, "w", **profile) as dst:
        dst.write(data)
    with open_scene(p) as s:
        assert s._resampling(0.5) == s._resampling(0.25) == Resampling.nearest
        assert s._resampling(1 / 3) == s._resampling(0.6) == Resampling.average
        scaled, valid = s.read(Window(0, 0, 512, 512), ["red", "green", "blue"], zoom=0.5)
        assert scaled.shape == (3, 512, 512) and valid.all()
        full, _ = s.read(Window(0, 0, 1024, 1024), ["red", "green", "blue"])
    # Close to averaging the decoded pixels (0.7 here), not every other pixel (1.9: what a
    # nearest-neighbour read without the scaled decoding would give).
    averaged = full.reshape(3, 512, 2, 512, 2).mean(axis=(2, 4))
    assert np.abs(scaled - averaged).mean() < 1.2
    with rasterio.open(p, "r+") as ds:
        ds.build_overviews([2, 4])
    with open_scene(p) as s:
        assert s._resampling(0.5) == Resampling.average


def test_bands_that_ignore_every_band_are_refused(tmp_path):
    """`--bands -,-,-` leaves nothing to read: a BandError (exit 2), not a read of no bands."""
    p = write_geotiff(tmp_path / "f.tif", field_rgb())
    with pytest.raises(BandError, match="ignores every band"):
        open_scene(p, bands=["-", "-", "-"])
    with pytest.raises(BandError, match="ignores every band"):
        open_scene(FIXTURE, bands=["-"] * 5)
    with open_scene(p, bands=["-", "green", "-"]) as s:  # one named band is enough to open
        assert s.bands == ("green",)


def test_capture_missing_a_band_file_says_so(tmp_path):
    """IMG_0001_1, _2, _3, _5 without _4 (a file not copied): analysed with the bands it has,
    and the summary says which file is missing instead of silently mapping without it."""
    src = Path(FIXTURE)
    for f in src.glob("IMG_0001_*.tif"):
        if not f.stem.endswith("_4"):
            shutil.copy(f, tmp_path / f.name)
    with open_scene(tmp_path) as s:
        assert len(s.bands) == 4
        lacks = [w for w in s.warnings if "lacks band file" in w]
        assert lacks and "IMG_0001_4" in lacks[0], s.warnings
    with open_scene(src) as s:
        assert not [w for w in s.warnings if "lacks band file" in w]


def test_stated_gsd_on_a_frame_without_georeference_gives_no_pixel_area_warning(tmp_path):
    """With the GSD known, a frame without georeference has approximate hectares: the warning
    that areas are in pixels would contradict it."""
    p = tmp_path / "f.png"
    cv2.imwrite(str(p), np.moveaxis(field_rgb(), 0, -1)[:, :, ::-1])
    with open_scene(p) as s:
        assert NO_GEOREF_PIXELS in s.warnings and s.gsd.metres is None
    with open_scene(p, gsd=0.01) as s:
        assert NO_GEOREF_PIXELS not in s.warnings and s.gsd.metres == pytest.approx(0.01)


def test_several_whole_images_are_not_taken_for_band_files(tmp_path):
    a = write_geotiff(tmp_path / "a.tif", field_rgb())
    b = write_geotiff(tmp_path / "b.tif", field_rgb(seed=2))
    with pytest.raises(InputError, match="not the band files of one capture") as e:
        open_scene([a, b])
    assert "Analyze one image at a time" in str(e.value)


def test_band_files_of_two_captures_are_refused(tmp_path):
    """A band file of another capture (a panel's rededge beside a flight's four) was stacked
    and co-registered as if it were the same scene; MicaSense's CaptureId tells them apart."""
    crop = Path("tests/fixtures/micasense_crop")
    for f in sorted(crop.glob("IMG_0001_*.tif")):
        shutil.copy(f, tmp_path / f.name)
    odd = tmp_path / "IMG_0001_5.tif"
    data = odd.read_bytes()
    assert b"g2R43Qr5m7EeTFGbkh1W" in data  # this capture's id (XMP and its EXIF copy)
    odd.write_bytes(data.replace(b"g2R43Qr5m7EeTFGbkh1W", b"5v25BtsZg3BQBhVH7Iaz"))
    with pytest.raises(InputError, match=r"IMG_0001_5.tif is from another capture than"):
        open_scene(tmp_path)


def test_a_band_file_left_out_of_a_capture_is_said(tmp_path):
    """Four of five band files named, the fifth beside them: the map loses rededge and NDRE,
    and now says why."""
    crop = Path("tests/fixtures/micasense_crop")
    files = sorted(crop.glob("IMG_0001_*.tif"))[:4]
    with open_scene(files) as s:
        assert "rededge" not in s.bands
        assert any(
            "IMG_0001_5.tif beside the capture's files was not given" in w for w in s.warnings
        )
