"""A flight's frames in, one georeferenced orthomosaic out: `mosaic()`.

    frames ──► read once (bands named, captures co-registered) ──► poses (vision/sfm.py)
           ──► ground, exposure, seams, block by block (vision/ortho.py) ──► COG in local UTM

`khet mosaic` calls `mosaic()`; `analyze()` calls `analyze_flight()` when it is given a flight
(a folder or list of two or more captures), which mosaics into the output's staging folder and
analyses the mosaic like any orthomosaic, so the field map, zones in hectares, report and
comparison all work on it. The mosaic is kept as `ortho.tif` beside the map.

Working files (each frame decoded once to disk, the SfM images and database) live in a hidden
folder next to the output and are removed when the run ends, whether it succeeded or not. The
COG is written under a temporary name and renamed into place: a failed run leaves nothing.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from khet.vision import ortho, products, sfm
from khet.vision.flight import (
    Flight,
    footprint_m,
    nearest_distances,
    read_flight,
    utm_crs,
    utm_positions,
)
from khet.vision.outputs import (
    cog_from,
    missing_folders,
    open_scratch_raster,
    remove_empty,
    staging,
    write_json,
)
from khet.vision.scene import is_all_valid, open_scene
from khet.vision.summary import Summary
from rasterio.windows import Window

from khet.errors import DamagedError, InputError, KhetError
from khet.settings import Settings, get_settings

StageFn = Callable[[str, float], None]  # (what is happening, overall fraction 0..1)
ORTHO = products.ORTHO.path
SFM_MAX_SIZE = 1600  # frames are matched at most this large (longest side, px)
THUMB_SIZE = 256  # thumbnails for exposure balancing
# Share of the run each phase takes (measured on the Seneca flight on 2 cores), for progress.
_PHASES = {"read": 0.06, "features": 0.3, "match": 0.22, "place": 0.22, "draw": 0.17, "cog": 0.03}


class _Progress:
    """Turns each phase's (text, done, total) into the run's overall fraction."""

    def __init__(self, stage: StageFn | None) -> None:
        self.stage = stage
        self.base = 0.0
        self.phase = 0.0

    def start(self, name: str) -> None:
        self.base += self.phase
        self.phase = _PHASES[name]

    def __call__(self, text: str, done: int = 0, total: int = 0) -> None:
        if self.stage is not None:
            frac = self.base + self.phase * (done / total if total else 0.0)
            self.stage(text, min(frac, 1.0))


def mosaic(
    inputs: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    settings: Settings | None = None,
    stage: StageFn | None = None,
) -> dict[str, Any]:
    """Mosaic a flight into a COG at `out_path`; returns what was done (placement, quality).

    `resolution` is the pixel size in metres (default: the frames' own ground sample distance).
    Raises `KhetError` subclasses for anything the user can fix; writes nothing then.
    """
    settings = settings or get_settings()
    out_path = Path(out_path)
    flight = read_flight(inputs)
    sfm.load_pycolmap()  # say it is missing now, not after reading every frame
    if resolution is not None and not (0.001 <= resolution <= 10):
        raise KhetError("--resolution is the pixel size in metres, between 0.001 and 10.")
    made = missing_folders(out_path.parent)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".khet-mosaic-", dir=out_path.parent))
    except OSError as e:
        remove_empty(made)
        raise KhetError(f"Cannot write to {out_path.parent} ({e.strerror or e}).") from e
    part = out_path.with_name(f".{out_path.name}.part-{os.getpid()}")
    try:
        summary = _mosaic(flight, out_path, part, work, bands, resolution, settings, stage)
        os.replace(part, out_path)
        made = []  # the mosaic is in them now
        return summary
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        remove_empty(made)  # a failed mosaic leaves no folder it made


def _mosaic(
    flight: Flight,
    out_path: Path,
    part: Path,
    work: Path,
    bands: Sequence[str] | None,
    resolution: float | None,
    settings: Settings,
    stage: StageFn | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    progress = _Progress(stage)
    frames = flight.frames
    crs = utm_crs(frames)
    utm = utm_positions(frames, crs)
    origin = np.array([round(float(utm[:, 0].mean())), round(float(utm[:, 1].mean())), 0.0])
    priors = utm - origin

    progress.start("read")
    store = _FrameStore(work)
    images: list[sfm.SfmImage] = []
    readable: list[int] = []
    for i, fr in enumerate(frames):
        progress(f"reading frame {i + 1} of {len(frames)}", i, len(frames))
        try:
            images.append(store.add(len(readable), fr, bands, priors[i], settings))
        except DamagedError as e:  # a frame cut short on the card: left out, and said
            flight.left_out[fr.name] = e.message.removeprefix(f"{fr.name} ").rstrip(".")
            continue
        readable.append(i)
    if len(readable) < len(frames):
        frames = flight.frames = [frames[i] for i in readable]
        priors = priors[readable]
        if len(frames) < 2:
            why = "; ".join(f"{k}: {v}" for k, v in flight.left_out.items())
            raise InputError(
                "A mosaic needs at least two overlapping frames, and fewer than two of the "
                f"frames could be read ({why})."
            )

    # Without a recorded height, a footprint of three frame spacings (at least 100 m).
    footprint = footprint_m(frames) or max(100.0, 3 * float(np.median(nearest_distances(frames))))
    attitudes = [f.attitude for f in frames]
    phases = {"finding": "features", "found": "features", "matching": "match", "placing": "place"}
    current = {"phase": ""}

    def sfm_stage(text: str, done: int, total: int) -> None:
        name = phases[text.split(" ", 1)[0]]
        if name != current["phase"]:
            current["phase"] = name
            progress.start(name)
        progress(text, done, total)

    solved = sfm.solve(
        images,
        attitudes,
        footprint_m=footprint * 1.1,
        workspace=work,
        threads=settings.threads,
        stage=sfm_stage,
    )
    poses = solved.poses
    heights = priors[:, 2]
    ground = ortho.fit_ground(
        solved.points, cell_m=max(footprint / 4, 5.0), fallback_z=float(np.median(heights)) - 50
    )
    sizes = [(im.full_width, im.full_height) for im in images]
    feet: list[ortho.Footprint | None] = [
        ortho.footprint(p, ground, *sizes[i]) if p is not None else None
        for i, p in enumerate(poses)
    ]
    gsd = resolution or _native_gsd(poses, ground)
    flats = ortho.flat_fields(
        [t if p is not None else None for t, p in zip(store.thumbs, poses, strict=True)],
        [f.facts.yaw_deg for f in frames],
    )
    even = [t / f if f is not None else t for t, f in zip(store.thumbs, flats, strict=True)]
    gains = ortho.exposure_gains(poses, even, feet, ground, footprint / 48, sizes)
    grid = ortho.output_grid(feet, gsd)
    if grid.width * grid.height > settings.max_pixels:
        raise InputError(
            f"The mosaic would be {grid.width} x {grid.height} pixels, more than the "
            f"{settings.max_pixels:,} Khet accepts (KHET_MAX_PIXELS); choose a coarser "
            "--resolution."
        )
    transform = Affine(gsd, 0, origin[0] + grid.x0, 0, -gsd, origin[1] + grid.y1)
    progress.start("draw")
    stats = ortho.BlockStats(np.zeros(len(frames), np.int64))
    scratch_path = work / "mosaic.tif"
    scratch = open_scratch_raster(
        scratch_path,
        width=grid.width,
        height=grid.height,
        count=store.count,
        dtype=store.dtype,
        transform=transform,
        crs=crs,
        nodata=None,
    )
    try:
        for i, name in enumerate(store.band_names, start=1):
            scratch.set_band_description(i, name)
        blocks = grid.blocks()
        for k, blk in enumerate(blocks):
            progress(f"drawing the mosaic: block {k + 1} of {len(blocks)}", k, len(blocks))
            res = ortho.render_block(
                grid, blk, poses, feet, sizes, gains, ground, store.read, store.count,
                np.dtype(store.dtype), stats, flats,
            )  # fmt: skip
            win = Window(blk[1], blk[0], blk[3], blk[2])
            if res is None:
                scratch.write_mask(np.zeros((blk[2], blk[3]), np.uint8), window=win)
                continue
            data, ok = res
            scratch.write(data, window=win)
            scratch.write_mask((ok * 255).astype(np.uint8), window=win)
    finally:
        scratch.close()
    if stats.covered == 0:
        raise InputError("No frame could be projected onto the ground; check the frames' GPS.")
    progress.start("cog")
    progress("writing the mosaic", 0, 1)
    with rasterio.open(scratch_path) as src:
        cog_from(src, part, resampling="average", nodata=None)
    seams = seam_misalignment(solved, images, poses, ground, stats, gsd)
    progress("mosaic written", 1, 1)
    return _summary(
        flight, frames, solved, priors, origin, ground, grid, gsd, crs, gains, stats, seams,
        store, time.perf_counter() - started, out_path, flats,
    )  # fmt: skip


def flat_range(flats) -> list[float] | None:
    """The flat field's darkest and brightest share of its mean (None: not applied)."""
    f = next((f for f in flats if f is not None), None)
    return None if f is None else [round(float(f.min()), 3), round(float(f.max()), 3)]


def _native_gsd(poses: Sequence[sfm.Pose | None], ground: ortho.Ground) -> float:
    """The frames' own ground pixel size (median over placed frames), to 3 significant digits."""
    vals = []
    for p in poses:
        if p is None:
            continue
        c = p.center
        h = float(c[2] - ground.z(np.array([c[0]]), np.array([c[1]]))[0])
        if h > 0:
            vals.append(h / float(p.camera.mean_focal_length()))
    if not vals:
        raise InputError("The frames' heights above ground could not be worked out.")
    g = float(np.median(vals))
    digits = 2 - int(math.floor(math.log10(g)))
    return round(g, digits)


class _FrameStore:
    """Each frame decoded once (through `open_scene`) to a raw file that blocks read windows of,
    with an 8-bit SfM image and a thumbnail made in the same pass."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "frames"
        self.sfm_dir = work / "images"
        self.dir.mkdir()
        self.sfm_dir.mkdir()
        self.thumbs: list[np.ndarray] = []
        self.masked: set[int] = set()
        self.band_names: tuple[str, ...] = ()
        self.dtype = ""
        self.count = 0

    def add(self, i: int, frame, bands, prior: np.ndarray, settings: Settings) -> sfm.SfmImage:
        with open_scene(frame.files, bands=bands, settings=settings) as scene:
            names, dtype = scene.bands, scene.dtype
            if not self.band_names:
                self.band_names, self.dtype, self.count = names, dtype, len(names)
            elif (names, dtype) != (self.band_names, self.dtype):
                raise InputError(
                    f"Frame {frame.name} has bands {', '.join(names)} ({dtype}), unlike the "
                    f"first frame's {', '.join(self.band_names)} ({self.dtype})."
                )
            data, valid = scene.read(Window(0, 0, scene.width, scene.height), names)
            gray = _gray(scene, data, names)
        np.save(self.dir / f"{i}.npy", data)
        if not is_all_valid(valid) and not valid.all():
            np.save(self.dir / f"{i}.mask.npy", valid)
            self.masked.add(i)
        h, w = gray.shape
        s = min(1.0, SFM_MAX_SIZE / max(h, w))
        small = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        path = self.sfm_dir / f"frame{i:05d}.png"
        if not cv2.imwrite(str(path), small, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise KhetError(f"Cannot write working files next to the output ({path.parent}).")
        t = min(1.0, THUMB_SIZE / max(h, w))
        tw, th = max(2, round(w * t)), max(2, round(h * t))
        thumb = np.stack(
            [cv2.resize(b.astype(np.float32), (tw, th), interpolation=cv2.INTER_AREA) for b in data]
        )
        if i in self.masked:
            vt = cv2.resize(valid.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
            thumb[:, vt == 0] = np.nan
        self.thumbs.append(thumb)
        f = frame.facts
        focal = (
            f.focal_length_mm / f.pixel_pitch_mm * s
            if f.focal_length_mm and f.pixel_pitch_mm
            else None
        )
        return sfm.SfmImage(path, small.shape[1], small.shape[0], w, h, focal, prior)

    def read(self, i: int, win: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        r0, c0, h, w = win
        arr = np.load(self.dir / f"{i}.npy", mmap_mode="r")
        data = np.array(arr[:, r0 : r0 + h, c0 : c0 + w])
        del arr
        valid = None
        if i in self.masked:
            m = np.load(self.dir / f"{i}.mask.npy", mmap_mode="r")
            valid = np.array(m[r0 : r0 + h, c0 : c0 + w])
        return data, valid


def _gray(scene, data: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The 8-bit image features are found in: the visible bands' mean, or one band."""
    if scene.dtype == "uint8" and len(names) >= 3:
        return data[:3].mean(axis=0).astype(np.uint8)
    ref = next((n for n in ("green", "red", "nir") if n in names), names[0])
    k = list(names).index(ref)
    return scene.to_uint8(data[k : k + 1], [ref])[0]


# -- quality -------------------------------------------------------------------------------------
def seam_misalignment(
    solved: sfm.SfmResult,
    images: Sequence[sfm.SfmImage],
    poses: Sequence[sfm.Pose | None],
    ground: ortho.Ground,
    stats: ortho.BlockStats,
    gsd: float,
) -> dict[str, Any]:
    """How far apart (mosaic pixels) the two frames on either side of a seam put the same
    feature: every feature both frames of a seam see (a sparse point of the model) is projected
    onto the ground from each frame. Relief the ground model smooths over shows here too."""
    gaps: list[np.ndarray] = []
    for a, b in sorted(stats.seams):
        oa, ob = solved.observations.get(a), solved.observations.get(b)
        pose_a, pose_b = poses[a], poses[b]
        if not oa or not ob or pose_a is None or pose_b is None:
            continue
        common = oa.keys() & ob.keys()
        if len(common) < 3:
            continue
        ka = np.array([oa[k] for k in common])
        kb = np.array([ob[k] for k in common])
        pa = _to_ground(pose_a, images[a], ka, ground)
        pb = _to_ground(pose_b, images[b], kb, ground)
        gaps.append(np.hypot(*(pa - pb).T) / gsd)
    if not gaps:
        return {"pairs": 0}
    g = np.concatenate(gaps)
    return {
        "pairs": len(gaps),
        "features": int(len(g)),
        "median_px": round(float(np.median(g)), 2),
        "p90_px": round(float(np.percentile(g, 90)), 2),
    }


def _to_ground(pose: sfm.Pose, image: sfm.SfmImage, kp: np.ndarray, ground) -> np.ndarray:
    """Ground x, y of keypoints found on the SfM image (COLMAP's pixel-corner coordinates)."""
    s = image.full_width / image.width
    px = kp.astype(np.float64) * s - 0.5
    return ground.intersect(pose.center, pose.rays(px))[:, :2]


def _summary(
    flight, frames, solved, priors, origin, ground, grid, gsd, crs, gains, stats, seams, store,
    seconds, out_path, flats,
) -> dict[str, Any]:  # fmt: skip
    placed = [p for p in solved.poses if p is not None]
    sfm_placed = [i for i, p in enumerate(solved.poses) if p is not None and p.how == "sfm"]
    resid = np.array([np.linalg.norm(solved.poses[i].center - priors[i]) for i in sfm_placed])
    horiz = np.array([np.hypot(*(solved.poses[i].center - priors[i])[:2]) for i in sfm_placed])
    detail = []
    for i, fr in enumerate(frames):
        p = solved.poses[i]
        d: dict[str, Any] = {"name": fr.name}
        if p is None:
            d.update(how="left out", reason=solved.reasons.get(i, ""))
        else:
            d.update(p.describe())
            d["gps_residual_m"] = round(float(np.linalg.norm(p.center - priors[i])), 2)
            d["gain"] = [round(float(g), 3) for g in gains[i]]
            d["pixels"] = int(stats.pixels[i])
        detail.append(d)
    for name, why in flight.left_out.items():
        detail.append({"name": name, "how": "left out", "reason": why})
    total = len(frames) + len(flight.left_out)
    used = gains[[i for i, p in enumerate(solved.poses) if p is not None]]
    return {
        "output": str(out_path),
        "crs": crs,
        "pixel_size_m": gsd,
        "width": grid.width,
        "height": grid.height,
        "bands": list(store.band_names),
        "frames": total,
        "placed_by_sfm": len(sfm_placed),
        "placed_by_gps_attitude": len(placed) - len(sfm_placed),
        "left_out": total - len(placed),
        "share_placed": round(len(placed) / total, 4),
        "reprojection_error_px": round(solved.reprojection_error_px, 3),
        "georeference_residual_m": {
            "median": round(float(np.median(resid)), 2),
            "p90": round(float(np.percentile(resid, 90)), 2),
            "horizontal_median": round(float(np.median(horiz)), 2),
        },
        "models": solved.models,
        # Poses, camera centres and the ground plane are in metres east, north and up of this
        # point of the CRS (heights: above the take-off point where the drone records it).
        "local_origin": [float(origin[0]), float(origin[1]), 0.0],
        "attitude_check": solved.attitude_check,
        "ground": ground.describe(),
        "exposure_gain_range": [round(float(used.min()), 3), round(float(used.max()), 3)],
        "flat_field": flat_range(flats),
        "seams": seams,
        "camera": frames[0].facts.as_dict(),
        "covered_ha": round(stats.covered * gsd * gsd / 10_000, 3),
        "seconds": round(seconds, 1),
        "frame_details": detail,
    }


def save_preview(cog: Path, dest: Path, size: int = 1600) -> None:
    """A downscaled PNG of a mosaic's first three bands (white where no frame sees the ground),
    from the COG's overviews: to look at beside the frames."""
    from PIL import Image

    with rasterio.open(cog) as ds:
        k = max(ds.width, ds.height) / size
        shape = (max(1, round(ds.height / k)), max(1, round(ds.width / k)))
        idx = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
        rgb = ds.read(idx, out_shape=(3, *shape))
        mask = ds.dataset_mask(out_shape=shape)
    if rgb.dtype != np.uint8:  # 16-bit bands: 2-98% stretch
        lo, hi = np.percentile(rgb[:, mask > 0], (2, 98)) if (mask > 0).any() else (0, 1)
        rgb = np.clip((rgb - lo) * 255.0 / max(hi - lo, 1), 0, 255).astype(np.uint8)
    img = np.transpose(rgb, (1, 2, 0)).copy()
    img[mask == 0] = 255
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(dest)


# -- a flight through the field-map pipeline -----------------------------------------------------
def left_out_warning(info: dict[str, Any]) -> str:
    """One line saying how many frames the mosaic left out and the commonest reasons."""
    reasons = Counter(
        d.get("reason") or "not placed" for d in info["frame_details"] if d["how"] == "left out"
    )
    why = "; ".join(f"{n} {r}" for r, n in reasons.most_common(3))
    return (
        f"{info['left_out']} of the flight's {info['frames']} frames were left out of the mosaic "
        f"({why}): the map covers only the ground of the frames placed."
    )


def analyze_flight(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    analyze: Callable[..., dict[str, Any]],
    *,
    bands: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stage: Callable[[str], None] | None = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Mosaic a flight, then analyse the mosaic with `analyze` (the pipeline's own function).

    Everything is written into one staging folder (the mosaic as `ortho.tif`, the map beside
    it) and renamed into `out_dir` when both steps succeeded, `summary.json` last.
    """
    settings = settings or get_settings()
    total = 1000
    share = 0.85  # of the progress bar for the mosaic; the rest for the map

    def mosaic_stage(text: str, frac: float) -> None:
        if stage:
            stage(text)
        if progress:
            progress(int(frac * share * total), total)

    def map_progress(done: int, n: int) -> None:
        if progress:
            progress(int((share + (1 - share) * (done / n if n else 1)) * total), total)

    with staging(Path(out_dir)) as st:
        ortho_path = st.file(ORTHO)
        info = mosaic(inputs, ortho_path, bands=bands, settings=settings, stage=mosaic_stage)
        if stage:
            stage("analysing the mosaic")
        sub = st.path / ".map"
        summary = analyze(ortho_path, sub, progress=map_progress, settings=settings, **kwargs)
        for p in sorted(sub.iterdir()):
            os.replace(p, st.path / p.name)
        sub.rmdir()
        info["output"] = ORTHO
        summary["mosaic"] = info
        summary.setdefault("outputs", {})[products.ORTHO.key] = ORTHO
        if info["left_out"]:
            # The map covers the frames placed: a farmer reading the area must know the rest.
            summary.setdefault("warnings", []).append(left_out_warning(info))
        summary.setdefault("input", {})
        if isinstance(summary["input"], dict):
            summary["input"]["sources"] = [ORTHO]
            summary["input"]["camera"] = info["camera"]  # when and with what it was flown
        # Checked against the one definition of summary.json, as the pipeline's own is.
        summary = Summary.model_validate(summary).to_json()
        write_json(st.file(products.SUMMARY.path), summary)
        st.commit(replaces=products.REPLACED_BY_A_MAP)
    return summary
