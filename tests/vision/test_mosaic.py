"""Mosaicking a real flight (24 frames of the Seneca survey), and refusing flights that cannot be.

The geometry checks do not trust the mosaic's own matches: features are found and matched
between neighbouring frames here with OpenCV's SIFT and a RANSAC homography, then put on the
ground through each frame's reported pose. A misplaced frame puts its half of every match
somewhere else; a check with one frame moved 3 m shows the tolerance would catch it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from PIL import Image

from khet.cli import main
from tests.flights import (
    BAND_SHIFTS,
    SENECA_8,
    SENECA_24,
    multispectral_flight,
    pose_from_summary,
    seneca_frames,
    seneca_images,
)

ARTEFACTS = Path(os.environ.get("KHET_SCREENSHOTS", "/tmp/khet-screenshots"))
# A feature seen in two frames lands at the same ground point within this (metres): about
# 5 mosaic pixels at the flight's 10 cm; GPS alone places frames 2-7 m apart from the truth.
SAME_POINT_MEDIAN_M = 0.5
SAME_POINT_P90_M = 1.5


def _mosaic_cli(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["mosaic", *map(str, args), "--json"])
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if code == 0 else None), cap.err


@pytest.fixture(scope="module")
def seneca24_summary(shared_data, tmp_path_factory) -> tuple[Path, dict]:
    from khet.vision.mosaic import mosaic, save_preview

    base = tmp_path_factory.mktemp("seneca24")
    frames = seneca_frames(shared_data, base / "card", SENECA_24)
    out = base / "ortho.tif"
    summary = mosaic(frames, out)
    save_preview(out, ARTEFACTS / "mosaic-seneca-24.png", 1200)
    return out, summary


def test_mosaic_is_a_georeferenced_cog_of_the_flight(seneca24_summary):
    from rio_cogeo.cogeo import cog_validate

    out, s = seneca24_summary
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32617  # the local UTM zone (Ohio, 83 deg W)
        assert ds.res[0] == pytest.approx(s["pixel_size_m"]) and 0.08 < ds.res[0] < 0.13
        assert ds.descriptions == ("red", "green", "blue")
        assert ds.overviews(1)
        # At a quarter of the resolution: coarser, the mask overview's edge cells (valid where
        # any pixel is) add several per cent on a ragged mosaic outline.
        mask = ds.dataset_mask(out_shape=(ds.height // 4, ds.width // 4))
    covered = (mask > 0).mean() * s["width"] * s["height"] * s["pixel_size_m"] ** 2 / 1e4
    assert covered == pytest.approx(s["covered_ha"], rel=0.05)
    assert 2.0 < s["covered_ha"] < 4.5  # 24 frames of about 0.4 ha each, overlapping
    assert s["share_placed"] >= 0.9
    assert s["placed_by_sfm"] >= 21
    assert s["reprojection_error_px"] < 1.0
    assert s["georeference_residual_m"]["median"] < 5.0
    assert s["seams"]["pairs"] >= 10 and s["seams"]["median_px"] < 3.0
    names = {d["name"] for d in s["frame_details"]}
    assert names == {f"{n}.jpg" for n in SENECA_24}
    for d in s["frame_details"]:
        if d["how"] == "left out":
            assert d["reason"]  # every frame not in the mosaic says why


def _sift_matches(a: np.ndarray, b: np.ndarray, n: int = 300):
    """Matched keypoints (x, y; 0 at the first pixel's centre) of two frames, inliers of a
    RANSAC homography: the ground is close to a plane, so true matches fit one."""
    sift = cv2.SIFT_create(nfeatures=4000)  # type: ignore[attr-defined]
    ka, da = sift.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kb, db = sift.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    if da is None or db is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m for m, o in (p for p in pairs if len(p) == 2) if m.distance < 0.75 * o.distance]
    if len(good) < 12:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pa = np.array([ka[m.queryIdx].pt for m in good], np.float64)
    pb = np.array([kb[m.trainIdx].pt for m in good], np.float64)
    _, inl = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    keep = inl.ravel().astype(bool)
    return pa[keep][:n], pb[keep][:n]


def _neighbour_pairs(summary: dict, max_m: float = 45.0) -> list[tuple[dict, dict]]:
    placed = [d for d in summary["frame_details"] if d["how"] == "sfm"]
    pairs = []
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            if np.hypot(*np.subtract(a["center"][:2], b["center"][:2])) < max_m:
                pairs.append((a, b))
    return pairs


def _ground_gaps(summary, shared_data, shift_m: float = 0.0) -> np.ndarray:
    from khet.vision.ortho import Ground

    ground = Ground.from_dict(summary["ground"])
    gaps = []
    for a, b in _neighbour_pairs(summary)[:12]:
        ia = np.asarray(Image.open(seneca_images(shared_data) / a["name"]).convert("RGB"))
        ib = np.asarray(Image.open(seneca_images(shared_data) / b["name"]).convert("RGB"))
        pa, pb = _sift_matches(ia, ib)
        if len(pa) < 20:
            continue
        pose_a, pose_b = pose_from_summary(a), pose_from_summary(b)
        if shift_m:  # the same frame, placed 3 m further east
            pose_b.translation = pose_b.translation - pose_b.rotation @ np.array([shift_m, 0, 0])
        ga = ground.intersect(pose_a.center, pose_a.rays(pa))[:, :2]
        gb = ground.intersect(pose_b.center, pose_b.rays(pb))[:, :2]
        gaps.append(np.hypot(*(ga - gb).T))
    assert len(gaps) >= 6, "too few neighbouring frame pairs with matches to check"
    return np.concatenate(gaps)


def test_a_feature_seen_in_two_frames_lands_on_one_ground_point(seneca24_summary, shared_data):
    _, s = seneca24_summary
    gaps = _ground_gaps(s, shared_data)
    assert np.median(gaps) < SAME_POINT_MEDIAN_M, np.percentile(gaps, [50, 90])
    assert np.percentile(gaps, 90) < SAME_POINT_P90_M, np.percentile(gaps, [50, 90])
    # The check is sharp enough to see one frame misplaced by 3 m.
    moved = _ground_gaps(s, shared_data, shift_m=3.0)
    assert np.median(moved) > 2.0


def test_the_mosaic_shows_what_each_frame_shows_at_the_same_place(seneca24_summary, shared_data):
    """Patches of the mosaic equal each frame's own view of that ground (normalised cross
    correlation), at features spread over the frames: the pixels were put where the poses say."""
    from khet.vision.ortho import Ground

    out, s = seneca24_summary
    ground = Ground.from_dict(s["ground"])
    e0, n0, _ = s["local_origin"]
    half, scores = 24, []
    with rasterio.open(out) as ds:
        t = ds.transform
        for a, _b in _neighbour_pairs(s)[:8]:
            img = np.asarray(Image.open(seneca_images(shared_data) / a["name"]).convert("L"))
            pose = pose_from_summary(a)
            ys, xs = np.mgrid[100 : img.shape[0] - 100 : 90, 100 : img.shape[1] - 100 : 120]
            centres = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
            pts = ground.intersect(pose.center, pose.rays(centres))
            for x, y, _z in pts:
                col = int((x + e0 - t.c) / t.a)
                row = int((y + n0 - t.f) / t.e)
                if not (half <= col < ds.width - half and half <= row < ds.height - half):
                    continue
                win = ((row - half, row + half), (col - half, col + half))
                mos = ds.read(window=win).mean(axis=0).astype(np.float32)
                if (ds.read_masks(1, window=win) == 0).any():
                    continue
                # The frame's view of the same ground pixels.
                rr, cc = np.mgrid[row - half : row + half, col - half : col + half] + 0.5
                gx = t.c + cc * t.a - e0
                gy = t.f + rr * t.e - n0
                xyz = np.column_stack([gx.ravel(), gy.ravel(), ground.z(gx.ravel(), gy.ravel())])
                uv, _ = pose.project(xyz)
                mx = uv[:, 0].reshape(gx.shape).astype(np.float32)
                my = uv[:, 1].reshape(gx.shape).astype(np.float32)
                frame = cv2.remap(img, mx, my, cv2.INTER_LINEAR).astype(np.float32)
                if frame.std() < 2 or mos.std() < 2:
                    continue  # no texture to compare
                scores.append(float(cv2.matchTemplate(mos, frame, cv2.TM_CCOEFF_NORMED)[0, 0]))
    assert len(scores) >= 40
    assert np.median(scores) > 0.8, np.percentile(scores, [10, 50])


def test_the_seneca_flight_named_near_infrared_maps_its_verges_not_rows(seneca24_summary, tmp_path):
    """The flight's camera records near-infrared in place of red. Read as it comes (red, green,
    blue) its grass looks red-purple and the map says so; named nir,green,blue, GNDVI finds the
    grass verges along the roads. Those verges, two or three strips of grass either side of a
    road, are not crop rows: nothing is painted crop or weed."""
    from khet.vision.pipeline import analyze

    ortho, _ = seneca24_summary
    rgb = analyze(ortho, tmp_path / "rgb")
    assert [w for w in rgb["warnings"] if "near-infrared" in w]
    ngb = analyze(ortho, tmp_path / "ngb", bands=["nir", "green", "blue"])
    assert ngb["method"] == "index", ngb.get("rows")
    assert [c["name"] for c in ngb["classes"]] == ["soil", "vegetation"]
    veg = next(c["share"] for c in ngb["classes"] if c["name"] == "vegetation")
    assert 0.1 < veg < 0.5
    assert not [w for w in ngb["warnings"] if "near-infrared" in w]


def test_analyze_a_flight_folder_mosaics_it_first(shared_data, tmp_path, capsys, use_test_models):
    frames = seneca_frames(shared_data, tmp_path / "card", SENECA_8)
    (frames / "notes.jpg").write_text("not a picture")  # a file on the card that is no frame
    out = tmp_path / "map"
    assert main(["analyze", str(frames), "-o", str(out), "--crop", "maize"]) == 0
    assert "ha" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["mosaic"]["frames"] == 9 and s["mosaic"]["placed_by_sfm"] >= 7
    assert s["crop"] == "maize"  # the field's crop reaches the mosaic's map
    # What the mosaic left out is a warning of the map, not only a detail of the mosaic.
    left = s["mosaic"]["left_out"]
    said = [w for w in s["warnings"] if "frames were left out of the mosaic" in w]
    assert left >= 1 and said and said[0].startswith(f"{left} of the flight's 9 frames")
    assert "1 not readable as an image" in said[0]
    assert s["outputs"]["ortho"] == "ortho.tif" and (out / "ortho.tif").is_file()
    assert s["area_unit"] == "ha" and 0.8 < s["area_total_ha"] < 2.5
    assert s["input"]["sources"] == ["ortho.tif"] and s["input"]["crs"] == "EPSG:32617"
    assert s["input"]["camera"]["taken_at"].startswith("2013:06:04")
    with rasterio.open(out / "ortho.tif") as o, rasterio.open(out / "classes.tif") as c:
        assert c.crs == o.crs
        assert c.bounds.left == pytest.approx(o.bounds.left, abs=1.0)
    assert not list(out.glob(".khet-*")) and not list(tmp_path.glob(".khet-*"))


def test_multispectral_flight_mosaics_every_band_on_one_geometry(shared_data, tmp_path):
    """Captures of one file per band, each band shifted as separate lenses are: after the
    per-capture co-registration every band of the mosaic lines up with the others."""
    from khet.vision.mosaic import mosaic

    card = multispectral_flight(shared_data, tmp_path / "card", SENECA_8)
    out = tmp_path / "ms.tif"
    s = mosaic(card, out, bands=["nir", "green", "blue"])
    assert s["frames"] == 8 and s["placed_by_sfm"] >= 7
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("nir", "green", "blue") and ds.dtypes[0] == "uint16"
        data = ds.read(out_shape=(3, ds.height // 2, ds.width // 2)).astype(np.float32)
        valid = ds.dataset_mask(out_shape=(ds.height // 2, ds.width // 2)) > 0

    # Bands differ in brightness; their edges must coincide: correlate gradient magnitudes,
    # and compare with the band moved by the lens shift it had before alignment.
    def grad(b: np.ndarray) -> np.ndarray:
        return cv2.magnitude(cv2.Sobel(b, cv2.CV_32F, 1, 0), cv2.Sobel(b, cv2.CV_32F, 0, 1))

    ref = grad(data[0])[valid]
    for k in (1, 2):
        r = np.corrcoef(ref, grad(data[k])[valid])[0, 1]
        dx, dy = BAND_SHIFTS[k]
        moved = np.roll(data[k], (round(dy / 2), round(dx / 2)), axis=(0, 1))
        r_moved = np.corrcoef(ref, grad(moved)[valid])[0, 1]
        assert r > 0.8 and r > r_moved + 0.1, (k, r, r_moved)


@pytest.mark.parametrize(
    "case, words",
    [
        ("single", ("at least two",)),
        ("no_gps", ("no gps",)),
        ("mixed", ("different cameras",)),
        ("apart", ("no two frames overlap",)),
        ("two", ("at least 3 frames", "1 pair(s)")),  # two overlapping frames cannot be placed
        ("sizes", ("different pixel sizes", "2 at 900 x 675", "2 at 810 x 607")),  # no majority
    ],
)
def test_bad_flights_are_refused_clearly(shared_data, tmp_path, capsys, case, words):
    card = tmp_path / "card"
    card.mkdir()
    src = [seneca_images(shared_data) / f"{n}.jpg" for n in SENECA_8[:4]]
    for i, f in enumerate({"single": src[:1], "two": src[:2]}.get(case, src)):
        with Image.open(f) as im:
            exif = im.getexif()
            if case == "no_gps":
                del exif[0x8825]
            if case == "mixed" and i % 2:
                exif[272] = "Another Camera 1"
            if case == "apart":  # the frames 1 km apart from each other
                gps = exif.get_ifd(0x8825)
                gps[2] = (41.0, float(i), 0.0)
            if case == "sizes" and i % 2:
                im = im.resize((810, 607))
            im.save(card / f.name, exif=exif, quality=90)
    out = tmp_path / "out" / "ortho.tif"
    code = main(["mosaic", str(card), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("khet: ") and "Traceback" not in err
    for w in words:
        assert w in err.lower(), err
    assert not (tmp_path / "out").exists()  # nothing half-written, not even the folder it made


def test_without_pycolmap_the_mosaic_says_what_to_install(
    shared_data, tmp_path, capsys, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "pycolmap", None)  # as if not installed
    frames = seneca_frames(shared_data, tmp_path / "card", SENECA_8[:3])
    code = main(["mosaic", str(frames), "-o", str(tmp_path / "out" / "ortho.tif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'khet[mosaic]'" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_frame_structure_from_motion_missed_is_placed_from_gps_and_attitude(
    seneca24_summary, shared_data, monkeypatch
):
    """Take one placed frame away and place it from its GPS and the autopilot's attitude: the
    centre of its view lands near where structure from motion put it, and the error the check
    predicts (from the other frames) is about what it turns out to be."""
    from khet.vision import sfm
    from khet.vision.flight import read_flight, utm_positions

    _, s = seneca24_summary
    details = [d for d in s["frame_details"] if d["how"] == "sfm"]
    flight = read_flight([seneca_images(shared_data) / d["name"] for d in details])
    priors = utm_positions(flight.frames, s["crs"]) - np.array(s["local_origin"])
    poses = [pose_from_summary(d) for d in details]
    k = len(poses) // 2
    truth = poses[k]
    poses[k] = None
    images = [
        sfm.SfmImage(Path(d["name"]), 900, 675, 900, 675, None, priors[i])
        for i, d in enumerate(details)
    ]
    attitudes = [(f.facts.yaw_deg, f.facts.pitch_deg, f.facts.roll_deg) for f in flight.frames]
    result = sfm.SfmResult(poses, {k: "test"}, np.zeros((0, 3)), 0.0, 1)
    ground = s["ground"]["plane"][2]
    monkeypatch.setattr(sfm, "ATTITUDE_MAX_ERROR_M", 50.0)  # place it whatever the check says
    sfm._place_from_attitude(result, images, attitudes, ground)
    placed = result.poses[k]
    assert placed is not None and placed.how == "gps" and k not in result.reasons
    error = sfm._ground_error(truth, placed.rotation, placed.center, ground)
    check = result.attitude_check
    assert check["frames_checked"] == len(poses) - 1
    assert error < 15.0 and error < 3 * check["p90_ground_error_m"], (error, check)


def test_a_frame_of_another_size_and_a_file_that_is_no_image_are_left_out(shared_data, tmp_path):
    """Seneca's own folder holds one frame at 810 x 607 among 900 x 675 ones (a resized copy),
    and a card can hold a file that is not an image: both are left out and listed with the
    reason; the rest of the flight is mosaicked (before, the odd frame broke the placement and
    the junk file made the flight look like two cameras)."""
    from khet.vision.mosaic import mosaic

    card = tmp_path / "card"
    card.mkdir()
    names = SENECA_8
    for i, n in enumerate(names):
        with Image.open(seneca_images(shared_data) / f"{n}.jpg") as im:
            exif = im.getexif()
            if i == 3:
                im = im.resize((810, 607))
            im.save(card / f"{n}.jpg", exif=exif, quality=90)
    (card / "notes.jpg").write_text("not a picture")
    s = mosaic(card, tmp_path / "o.tif")
    details = {d["name"]: d for d in s["frame_details"]}
    odd = details[f"{names[3]}.jpg"]
    assert (
        odd["how"] == "left out"
        and "810 x 607 pixels, unlike the flight's 900 x 675" in (odd["reason"])
    )
    assert details["notes.jpg"]["reason"] == "not readable as an image"
    assert s["frames"] == 9 and s["placed_by_sfm"] >= 6


def test_sigterm_ends_a_mosaic_like_ctrl_c(shared_data, tmp_path):
    """COLMAP's logging took SIGTERM for a crash: a stack dump, the 45 MB working folder left
    beside the output. Now `kill` ends it as Ctrl-C does: 'interrupted', exit 130, nothing left."""
    import signal
    import subprocess
    import sys
    import time

    frames = seneca_frames(shared_data, tmp_path / "card", SENECA_8)
    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, "-m", "khet.cli", "mosaic", str(frames), "-o", str(out / "ortho.tif")],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".khet-mosaic-*")) and time.monotonic() < deadline:
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        time.sleep(0.05)
    time.sleep(1.0)  # into feature extraction
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "khet: interrupted" in err, err
    assert "Traceback" not in err and "@ " not in err, err  # no stack dump
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_a_cut_short_frame_and_one_without_exif_are_left_out_not_the_flight(
    shared_data, tmp_path, capsys
):
    """A frame cut short on the card refused the whole flight with GDAL's advice to its own
    users; a frame whose EXIF an editor stripped was taken for a second camera, refusing it
    too. Each is now left out and listed, as unreadable and GPS-less frames are."""
    frames = seneca_frames(shared_data, tmp_path / "card", SENECA_8)
    names = sorted(p.name for p in frames.glob("*.jpg"))
    cut, bare = frames / names[0], frames / names[-1]
    # The card's frames are links to the shared data: each is replaced, never written through.
    head = cut.read_bytes()[:60000]
    cut.unlink()
    cut.write_bytes(head)
    with Image.open(bare) as im:
        im.convert("RGB").save(tmp_path / "bare.jpg", quality=95)  # no EXIF at all
    bare.unlink()
    (tmp_path / "bare.jpg").replace(bare)
    out = tmp_path / "ortho.tif"
    assert main(["mosaic", str(frames), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    why = {d["name"]: d.get("reason", "") for d in summary["frame_details"]}
    assert "damaged or truncated" in why[cut.name] and "GDAL_" not in why[cut.name], why
    assert why[bare.name] == "no camera information in the file (EXIF)", why
    assert summary["placed_by_sfm"] >= 5
    with rasterio.open(out) as ds:
        assert ds.crs is not None
