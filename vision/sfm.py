"""Camera poses of a flight's frames by structure from motion, with pycolmap (COLMAP, BSD).

    SfM images ──► SIFT features ──► matches between GPS neighbours ──► incremental mapping
                                                                  (GPS positions as priors)
Nothing here is home-made photogrammetry: COLMAP finds the features, verifies the matches and
solves the poses. What Khet adds is what a flight knows and COLMAP cannot guess:

- Only frames that GPS puts within one footprint of each other are matched (a few dozen pairs
  per frame instead of every pair of a few hundred frames).
- Each frame's GPS position (easting, northing, height) in the flight's UTM zone is a pose
  prior, so the mapper solves in metres in UTM directly and the long strips of a survey do not
  bend. The residual between solved and GPS positions is reported.
- Frames the mapper could not place are placed from the GPS position and the autopilot's
  attitude, once that attitude has been checked against the placed frames; where it disagrees
  they are left out, and the reason is kept.

pycolmap is imported only here, and only when a flight is mosaicked: it is an optional
dependency (`pip install khet[mosaic]`), since it has no wheels for some field devices (ARM).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from khet.errors import InputError, KhetError

Stage = Callable[[str, int, int], None]  # (what is happening, done, total)

MAX_NEIGHBOURS = 20  # matched neighbours per frame, nearest first
EXTRACT_CHUNK = 8  # frames per feature-extraction call (progress between calls)
MATCH_CHUNK = 150  # pairs per matching call
ATTITUDE_MAX_ERROR_M = 5.0  # autopilot-attitude placement is used when it is this good


# Frames a model must hold: two positions leave the roll about their baseline free.
MIN_MODEL = 3


def load_pycolmap():
    """The pycolmap module; a KhetError that says how to install it when missing."""
    try:
        import pycolmap
    except ImportError:
        raise KhetError(
            "Mosaicking a flight needs pycolmap, which is not installed: "
            "pip install 'khet[mosaic]'."
        ) from None
    # COLMAP's progress lines and its own errors ("Failed to create any sparse model") are not
    # for a farmer: what failed is said in Khet's words below.
    pycolmap.logging.minloglevel = 3
    return pycolmap


@dataclass
class SfmImage:
    """One frame as structure from motion sees it: an 8-bit image at a reduced size."""

    path: Path
    width: int  # of the SfM image
    height: int
    full_width: int  # of the frame itself
    full_height: int
    focal_px: float | None  # prior, at the SfM image's size
    prior: np.ndarray  # (3,) easting, northing, height relative to the flight's origin


@dataclass
class Pose:
    """Where a frame's camera was: world (local UTM, metres) to camera, and its intrinsics."""

    rotation: np.ndarray  # 3x3, camera from world
    translation: np.ndarray  # (3,)
    camera: Any  # pycolmap.Camera at the frame's full size
    how: str  # "sfm" (structure from motion) or "gps" (GPS position and autopilot attitude)

    @property
    def center(self) -> np.ndarray:
        return -self.rotation.T @ self.translation

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x, y with 0 at the first pixel's centre) of world points (N x 3),
        and which points are in front of the camera."""
        cam = xyz @ self.rotation.T + self.translation
        front = cam[:, 2] > 1e-6
        cam = np.where(front[:, None], cam, np.array([0.0, 0.0, 1.0]))
        uv = self.camera.img_from_cam(np.ascontiguousarray(cam), check_cheirality=False)
        return np.asarray(uv) - 0.5, front

    def rays(self, xy_px: np.ndarray) -> np.ndarray:
        """World directions (N x 3) of pixels given with 0 at the first pixel's centre."""
        n = np.asarray(self.camera.cam_from_img(np.ascontiguousarray(xy_px + 0.5, np.float64)))
        d = np.column_stack([n, np.ones(len(n))])
        return d @ self.rotation  # R^T d for each row

    def describe(self) -> dict:
        return {
            "how": self.how,
            "center": [round(float(v), 3) for v in self.center],
            "cam_from_world": [round(float(v), 8) for v in self.rotation.ravel()]
            + [round(float(v), 4) for v in self.translation],
            "camera": {
                "model": self.camera.model_name,
                "width": int(self.camera.width),
                "height": int(self.camera.height),
                "params": [float(v) for v in self.camera.params],
            },
        }


@dataclass
class SfmResult:
    poses: list[Pose | None]
    reasons: dict[int, str]  # frame index -> why it has no pose
    points: np.ndarray  # N x 3 well-observed sparse points (world)
    reprojection_error_px: float  # mean over all observations, at the SfM image size
    models: int
    # Per frame, the sparse points it sees: point id -> keypoint x, y (SfM image, pixel corners).
    # Two frames that see the same point matched a feature, verified by the whole model.
    observations: dict[int, dict[int, tuple[float, float]]] = field(default_factory=dict)
    attitude_check: dict | None = None


def solve(
    images: list[SfmImage],
    attitudes: list[tuple[float, float, float] | None],
    footprint_m: float,
    workspace: Path,
    *,
    threads: int = 0,
    stage: Stage | None = None,
    seed: int = 1,
) -> SfmResult:
    """Poses of `images` (in the frame of their priors), placing unplaced ones from attitude."""
    pc = load_pycolmap()
    say = stage or (lambda *_: None)
    nthreads = threads if threads > 0 else -1
    db = workspace / "database.db"
    db.unlink(missing_ok=True)
    names = [im.path.name for im in images]
    _extract(pc, db, images, nthreads, say)
    with pc.Database.open(db) as d:
        ids = {im.name: im.image_id for im in d.read_all_images()}
        for i, name in enumerate(names):
            iid = ids[name]
            image = d.read_image(iid)
            prior = pc.PosePrior(
                position=images[i].prior.astype(np.float64),
                coordinate_system=pc.PosePriorCoordinateSystem.CARTESIAN,
                corr_data_id=image.data_id,
            )
            d.write_pose_prior(prior)
    pairs = neighbour_pairs(np.array([im.prior for im in images]), footprint_m)
    if not pairs:
        raise InputError(
            "No two frames overlap: by their GPS positions none is within a frame's footprint "
            "of another. A mosaic needs a survey flown with overlap (typically 60-80%)."
        )
    _match(pc, db, [(names[i], names[j]) for i, j in pairs], workspace, nthreads, say)
    recs = _map(pc, db, workspace, len(images), nthreads, seed, say)
    image_index = {ids[n]: i for i, n in enumerate(names)}
    poses: list[Pose | None] = [None] * len(images)
    owner: list[int] = [0] * len(images)  # size of the model that placed each frame
    points, errors, weights = [], [], []
    observations: dict[int, dict[int, tuple[float, float]]] = {}
    for model, rec in enumerate(recs):
        size = rec.num_reg_images()
        for iid in rec.reg_image_ids():
            i = image_index[iid]
            if poses[i] is not None and owner[i] >= size:
                continue
            im = rec.image(iid)
            m = im.cam_from_world().matrix()
            cam = _camera_like(rec.cameras[im.camera_id], images[i])
            poses[i] = Pose(m[:, :3].copy(), m[:, 3].copy(), cam, "sfm")
            owner[i] = size
            base = model << 32  # point ids are per model
            observations[i] = {
                base + p.point3D_id: (float(p.xy[0]), float(p.xy[1]))
                for p in im.points2D
                if p.has_point3D()
            }
        pts = [p.xyz for p in rec.points3D.values() if p.track.length() >= 3 and p.error <= 2.0]
        if pts:
            points.append(np.array(pts))
        n_obs = rec.compute_num_observations()
        if n_obs:
            errors.append(rec.compute_mean_reprojection_error())
            weights.append(n_obs)
    if not any(p is not None for p in poses):
        raise InputError(
            f"None of the {len(images)} frames could be placed: a mosaic needs at least "
            f"{MIN_MODEL} frames that overlap one another and match (their GPS positions then fix "
            f"its orientation), and {len(pairs)} pair(s) of these frames lie close enough to "
            "overlap but did not give such a group. Give more frames of the flight, flown with "
            "overlap (typically 60-80%); frames of water, snow or bare uniform soil show too "
            "little texture to be matched."
        )
    reasons = {
        i: "not matched to enough neighbouring frames to be placed"
        for i, p in enumerate(poses)
        if p is None
    }
    result = SfmResult(
        poses=poses,
        reasons=reasons,
        points=np.concatenate(points) if points else np.zeros((0, 3)),
        reprojection_error_px=float(np.average(errors, weights=weights)) if errors else math.nan,
        models=len(recs),
        observations=observations,
    )
    if reasons:
        ground = float(np.median(result.points[:, 2])) if len(result.points) else None
        _place_from_attitude(result, images, attitudes, ground)
    return result


def _extract(pc, db: Path, images: list[SfmImage], threads: int, say: Stage) -> None:
    """SIFT features, frames of one size and focal length sharing one camera."""
    opts = pc.FeatureExtractionOptions()
    opts.num_threads = threads
    opts.use_gpu = False
    opts.sift.max_num_features = 4096
    # No upsampled first octave: 4x faster on survey frames, and features at the frame's own
    # scale match as well across neighbours (measured on the Seneca flight).
    opts.sift.first_octave = 0
    opts.sift.peak_threshold = 0.003  # low-contrast fields need a lower peak threshold
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        f = round(im.focal_px, 1) if im.focal_px else None
        groups.setdefault((im.width, im.height, f), []).append(i)
    done = 0
    for (w, h, f), members in groups.items():
        camera_id = -1
        for k in range(0, len(members), EXTRACT_CHUNK):
            chunk = members[k : k + EXTRACT_CHUNK]
            reader = pc.ImageReaderOptions()
            reader.camera_model = "SIMPLE_RADIAL"
            if camera_id >= 0:
                reader.existing_camera_id = camera_id
            elif f:
                reader.camera_params = f"{f},{w / 2},{h / 2},0"
            say(f"finding features in frame {done + 1} of {len(images)}", done, len(images))
            pc.extract_features(
                db,
                images[0].path.parent,
                image_names=[images[i].path.name for i in chunk],
                camera_mode=pc.CameraMode.SINGLE,
                reader_options=reader,
                extraction_options=opts,
                device=pc.Device.cpu,
            )
            done += len(chunk)
            if camera_id < 0:
                with pc.Database.open(db) as d:
                    camera_id = d.read_image_with_name(images[chunk[0]].path.name).camera_id
    say(f"found features in {len(images)} frames", len(images), len(images))


def neighbour_pairs(priors: np.ndarray, footprint_m: float) -> list[tuple[int, int]]:
    """Frame pairs whose GPS positions are within one footprint: the pairs worth matching."""
    xy = priors[:, :2]
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    pairs: set[tuple[int, int]] = set()
    for i in range(len(xy)):
        order = np.argsort(d[i])
        near = [j for j in order[1 : MAX_NEIGHBOURS + 1] if d[i, j] <= footprint_m]
        pairs.update((min(i, int(j)), max(i, int(j))) for j in near)
    return sorted(pairs)


def _match(pc, db: Path, pairs: list[tuple[str, str]], workspace: Path, threads, say) -> None:
    opts = pc.FeatureMatchingOptions()
    opts.num_threads = threads
    opts.use_gpu = False
    for k in range(0, len(pairs), MATCH_CHUNK):
        say(f"matching frame pairs {k + 1} of {len(pairs)}", k, len(pairs))
        path = workspace / "pairs.txt"
        path.write_text("".join(f"{a} {b}\n" for a, b in pairs[k : k + MATCH_CHUNK]))
        pairing = pc.ImportedPairingOptions()
        pairing.match_list_path = str(path)
        pc.match_image_pairs(
            db, matching_options=opts, pairing_options=pairing, device=pc.Device.cpu
        )


def _map(pc, db: Path, workspace: Path, n: int, threads, seed: int, say: Stage) -> list:
    """Incremental mapping with the GPS priors; the models, largest first."""
    opts = pc.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = seed
    opts.use_prior_position = True
    opts.use_robust_loss_on_prior_position = True  # a GPS glitch must not bend the strip
    opts.extract_colors = False
    opts.min_model_size = max(MIN_MODEL, min(10, n // 3))
    placed = {"n": 0}

    def next_image() -> None:
        placed["n"] += 1
        say(f"placing frame {min(placed['n'], n)} of {n}", min(placed["n"], n), n)

    say(f"placing frame 1 of {n}", 0, n)
    out = workspace / "sparse"
    out.mkdir(exist_ok=True)
    recs = pc.incremental_mapping(
        db, workspace, out, options=opts, initial_image_pair_callback=None,
        next_image_callback=next_image,
    )  # fmt: skip
    return sorted(recs.values(), key=lambda r: -r.num_reg_images())


# -- frames structure from motion could not place ------------------------------------------------
_ENU_FROM_NED = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def world_from_body(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The aircraft's attitude (yaw from north, clockwise; pitch; roll) as an ENU rotation."""
    return _ENU_FROM_NED @ _rot(2, yaw) @ _rot(1, pitch) @ _rot(0, roll)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _place_from_attitude(
    result: SfmResult,
    images: list[SfmImage],
    attitudes: list[tuple[float, float, float] | None],
    ground: float | None,
) -> None:
    """Place unplaced frames from GPS and autopilot attitude, if that attitude is good enough.

    The camera's mounting in the aircraft is not recorded, so it is estimated from the frames
    structure from motion placed (the rotation that best maps each attitude onto its solved
    orientation), together with the sign convention of pitch and roll that fits best. The
    ground error this placement would have had on the placed frames (how far the centre of the
    frame's view lands from where structure from motion puts it) decides whether it is used.
    """
    att = {i: a for i, a in enumerate(attitudes) if a is not None}
    poses = {i: p for i, p in enumerate(result.poses) if p is not None}
    placed = [i for i in poses if i in att]
    todo = [i for i in result.reasons if i in att]
    if not todo:
        for i in result.reasons:
            result.reasons[i] += "; its file records no camera attitude to place it by"
        return
    if len(placed) < 5 or ground is None:
        for i in todo:
            result.reasons[i] += "; too few placed frames to check the autopilot's attitude"
        return
    best = None
    for sp in (1, -1):
        for sr in (1, -1):
            body = {
                i: world_from_body(att[i][0], sp * att[i][1], sr * att[i][2]) for i in placed + todo
            }
            mount = _nearest_rotation(np.sum([poses[i].rotation @ body[i] for i in placed], axis=0))
            errs = []
            for i in placed:
                pose = poses[i]
                r = mount @ body[i].T
                errs.append(_ground_error(pose, r, images[i].prior, ground))
            err = float(np.median(errs))
            if best is None or err < best[0]:
                best = (err, sp, sr, mount, body, errs)
    assert best is not None  # the loop above ran
    err, sp, sr, mount, body, errs = best
    result.attitude_check = {
        "median_ground_error_m": round(err, 2),
        "p90_ground_error_m": round(float(np.percentile(errs, 90)), 2),
        "frames_checked": len(placed),
        "used": err <= ATTITUDE_MAX_ERROR_M,
    }
    template = next(p for p in result.poses if p is not None)
    for i in todo:
        if err > ATTITUDE_MAX_ERROR_M:
            result.reasons[i] += (
                f"; placing it by GPS and autopilot attitude would be off by about {err:.0f} m"
            )
            continue
        r = mount @ body[i].T
        cam = _camera_like(template.camera, images[i])
        center = images[i].prior
        result.poses[i] = Pose(r, -r @ center, cam, "gps")
        del result.reasons[i]


def _camera_like(camera, image: SfmImage):
    """A copy of an SfM camera at the frame's full size (features were found on a smaller copy)."""
    import pycolmap

    cam = pycolmap.Camera.create_from_model_name(
        0, camera.model_name, 1.0, int(camera.width), int(camera.height)
    )
    cam.params = [float(v) for v in camera.params]
    if (cam.width, cam.height) != (image.full_width, image.full_height):
        cam.rescale(int(image.full_width), int(image.full_height))
    return cam


def _ground_error(pose: Pose, rotation: np.ndarray, prior: np.ndarray, ground: float) -> float:
    """How far apart (metres) the centre of view of the solved pose and that of an attitude-based
    pose at the GPS position land on flat ground at height `ground`."""
    pts = []
    for r, c in ((pose.rotation, pose.center), (rotation, prior)):
        d = np.array([0.0, 0.0, 1.0]) @ r  # the optical axis in the world
        if d[2] >= -1e-3:
            return math.inf
        t = (ground - c[2]) / d[2]
        pts.append(c[:2] + t * d[:2])
    return float(np.hypot(*(pts[0] - pts[1])))
