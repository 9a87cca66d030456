"""From placed frames to one orthomosaic: the ground, the seams, the exposure, block by block.

- **Ground.** Fields are close to flat: a plane fitted (robustly) to the sparse points of
  structure from motion, plus a coarse surface of their median heights where the points show
  relief. Each output pixel's ground point is projected into the frames (backward mapping: no
  holes, no ray tracing per pixel).
- **Seams.** Each ground pixel comes from the frame that sees it most nadir: the one whose
  camera centre is closest on the ground. Where two frames are nearly as close, their pixels are
  blended over a narrow band (`FEATHER_PX` output pixels), so a seam is neither a hard edge nor a
  wide ghost. Frames placed only from GPS and autopilot attitude fill gaps, never cover frames
  that structure from motion placed.
- **Exposure.** A flat field per frame size (vignetting and the sun's hot spot, the median
  over the flight's frames), then one gain per frame and band from the brightness of the ground
  they share (least squares, as OpenCV's stitching gain compensator does, pulled towards 1).
- **Memory.** The mosaic is made in blocks of `BLOCK` pixels, each from the few frames that see
  it, read from disk as needed; nothing holds the whole mosaic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np
from khet.vision.sfm import Pose

_T = TypeVar("_T")


def _known(x: _T | None) -> _T:
    """A per-frame value the caller has already checked is there (a placed frame's pose)."""
    assert x is not None
    return x


BLOCK = 512  # output pixels per block side
COARSE = 16  # projections are computed every COARSE output pixels, interpolated between
FEATHER_PX = 12  # width of the blend across a seam, in output pixels
MAX_OFF_NADIR_DEG = 50.0  # ground seen more obliquely than this is not used from a frame
EDGE_TAPER_PX = 6  # a frame's weight fades over this many of its own pixels at its border
GPS_PENALTY_M = 1.0e4  # frames placed from attitude only fill gaps


# -- the ground ----------------------------------------------------------------------------------
@dataclass
class Ground:
    """The ground height z(x, y): a plane, plus a coarse surface where the sparse points show
    relief."""

    plane: np.ndarray  # a, b, c of z = a x + b y + c
    x0: float = 0.0
    y0: float = 0.0
    cell: float = 1.0
    grid: np.ndarray | None = None  # heights above the plane, rows from y0 northwards
    relief_m: float = 0.0
    points: int = 0
    spread_m: float = 0.0  # robust spread of the points about the surface

    def z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        a, b, c = self.plane
        z = a * x + b * y + c
        if self.grid is not None:
            mx = ((x - self.x0) / self.cell - 0.5).astype(np.float32)
            my = ((y - self.y0) / self.cell - 0.5).astype(np.float32)
            shape = mx.shape
            res = cv2.remap(
                self.grid,
                mx.reshape(-1, 1) if mx.ndim == 1 else mx,
                my.reshape(-1, 1) if my.ndim == 1 else my,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            z = z + res.reshape(shape)
        return z

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, max_off_nadir: float = 89.0):
        """Ground points (N x 3) hit by rays from `origin`; rays more oblique than
        `max_off_nadir` degrees are cut at that angle's horizontal range."""
        a, b, c = self.plane
        d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        down = -d[:, 2]
        ok = down > math.cos(math.radians(max_off_nadir))
        d = np.where(ok[:, None], d, _clamp_dirs(d, max_off_nadir))
        z_off = np.zeros(len(d))
        for _ in range(4 if self.grid is not None else 1):
            denom = d[:, 2] - a * d[:, 0] - b * d[:, 1]
            t = (a * origin[0] + b * origin[1] + c + z_off - origin[2]) / np.minimum(denom, -1e-9)
            p = origin + t[:, None] * d
            if self.grid is None:
                break
            z_off = self.z(p[:, 0], p[:, 1]) - (a * p[:, 0] + b * p[:, 1] + c)
        return p

    def describe(self) -> dict:
        """The ground as the summary records it (enough to rebuild it with `from_dict`)."""
        a, b, _ = self.plane
        d: dict[str, Any] = {
            "kind": "surface" if self.grid is not None else "plane",
            "plane": [float(v) for v in self.plane],
            "slope_percent": round(100 * math.hypot(a, b), 2),
            "relief_m": round(self.relief_m, 2),
            "points": self.points,
            "spread_m": round(self.spread_m, 2),
        }
        if self.grid is not None:
            d["grid"] = {
                "x0": self.x0,
                "y0": self.y0,
                "cell": self.cell,
                "heights": np.round(self.grid, 3).tolist(),
            }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Ground:
        g = cls(np.array(d["plane"], np.float64))
        if d.get("grid"):
            grid = d["grid"]
            g.x0, g.y0, g.cell = grid["x0"], grid["y0"], grid["cell"]
            g.grid = np.array(grid["heights"], np.float32)
        return g


def _clamp_dirs(d: np.ndarray, max_off_nadir: float) -> np.ndarray:
    horiz = np.hypot(d[:, 0], d[:, 1])
    horiz = np.maximum(horiz, 1e-9)
    s, c = math.sin(math.radians(max_off_nadir)), math.cos(math.radians(max_off_nadir))
    return np.column_stack([d[:, 0] / horiz * s, d[:, 1] / horiz * s, np.full(len(d), -c)])


def fit_ground(points: np.ndarray, cell_m: float, fallback_z: float) -> Ground:
    """A robust plane through the sparse points, and a coarse surface if they show relief."""
    if len(points) < 10:
        return Ground(np.array([0.0, 0.0, fallback_z]), points=len(points))
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    keep = np.ones(len(z), bool)
    coef = np.array([0.0, 0.0, float(np.median(z))])
    for _ in range(4):
        A = np.column_stack([x[keep], y[keep], np.ones(int(keep.sum()))])
        coef, *_ = np.linalg.lstsq(A, z[keep], rcond=None)
        r = z - (coef[0] * x + coef[1] * y + coef[2])
        mad = 1.4826 * float(np.median(np.abs(r[keep] - np.median(r[keep]))))
        keep = np.abs(r) <= max(3 * mad, 0.3)
    r = z - (coef[0] * x + coef[1] * y + coef[2])
    x0, y0 = float(x.min()), float(y.min())
    cols = int((x.max() - x0) // cell_m) + 1
    rows = int((y.max() - y0) // cell_m) + 1
    ci = ((x - x0) // cell_m).astype(int)
    ri = ((y - y0) // cell_m).astype(int)
    grid = np.zeros((rows, cols), np.float32)
    have = np.zeros((rows, cols), bool)
    order = np.lexsort((r, ci, ri))
    key = ri[order] * cols + ci[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    for s, e in zip(starts, ends, strict=True):
        if e - s >= 5:
            k = key[s]
            grid.flat[k] = float(r[order][(s + e) // 2])
            have.flat[k] = True
    if have.sum() >= 4:
        grid = _fill_and_smooth(grid, have)
        relief = float(np.percentile(grid[have], 95) - np.percentile(grid[have], 5))
    else:
        relief = 0.0
    spread = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    g = Ground(coef, points=len(points), relief_m=relief, spread_m=spread)
    if relief >= 0.5:  # below that the points show no relief a plane would miss
        g.x0, g.y0, g.cell, g.grid = x0, y0, cell_m, grid
        g.spread_m = 1.4826 * float(np.median(np.abs(z - g.z(x, y))))
    return g


def _fill_and_smooth(grid: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Cells without points take their neighbours' values, then the surface is smoothed."""
    g = np.where(have, grid, 0).astype(np.float32)
    w = have.astype(np.float32)
    out = g.copy()
    filled = have.copy()
    for _ in range(max(grid.shape)):
        if filled.all():
            break
        num = cv2.blur(np.where(filled, out, 0).astype(np.float32), (3, 3))
        den = cv2.blur(filled.astype(np.float32), (3, 3))
        grow = ~filled & (den > 0)
        out[grow] = num[grow] / den[grow]
        filled |= grow
    del w
    return cv2.GaussianBlur(out, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)


# -- where each frame sees the ground ------------------------------------------------------------
@dataclass
class Footprint:
    polygon: np.ndarray  # K x 2 ground outline
    bbox: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


def footprint(pose: Pose, ground: Ground, width: int, height: int, n: int = 8) -> Footprint:
    """The ground outline of a frame (its border's rays, cut at MAX_OFF_NADIR_DEG)."""
    t = np.linspace(0, 1, n + 1)[:-1]
    w, h = width - 1, height - 1
    border = np.concatenate(
        [
            np.column_stack([t * w, np.zeros_like(t)]),
            np.column_stack([np.full_like(t, w), t * h]),
            np.column_stack([w - t * w, np.full_like(t, h)]),
            np.column_stack([np.zeros_like(t), h - t * h]),
        ]
    )
    pts = ground.intersect(pose.center, pose.rays(border), MAX_OFF_NADIR_DEG)[:, :2]
    return Footprint(pts, (*pts.min(axis=0), *pts.max(axis=0)))


# -- exposure ------------------------------------------------------------------------------------
FLAT_MIN_FRAMES = 20  # fewer frames show their content, not the lens's fall-off
FLAT_MIN_RANGE = 1.04  # a flat field varying less than 4% is left out


def flat_fields(
    thumbs: Sequence[np.ndarray | None], headings: Sequence[float | None] | None = None
) -> list[np.ndarray | None]:
    """Each frame's flat field (bands x thumbnail), or None: the lens's vignetting and the
    sun's hot spot, which no single gain per frame can even out and which make each frame's
    outline show in a mosaic of bare soil.

    It is the median, over many frames of the same size, of each thumbnail divided by its own
    median, smoothed: what the ground shows averages out across a flight; what the camera adds
    stays in place in every frame. The hot spot (opposite the sun) sits elsewhere in the frame
    when the aircraft flies the other way, so frames are grouped by heading (four sectors) where
    the autopilot records it, each group with its own flat field.
    """
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(thumbs):
        if t is not None:
            yaw = headings[i] if headings is not None else None
            sector = -1 if yaw is None else int(((yaw + 45.0) % 360.0) // 90.0)
            groups.setdefault((t.shape, sector), []).append(i)
    if headings is not None and any(
        len(m) < FLAT_MIN_FRAMES for (_, sector), m in groups.items() if sector >= 0
    ):  # too few frames in some heading: one flat field per frame size
        return flat_fields(thumbs, None)
    out: list[np.ndarray | None] = [None] * len(thumbs)
    for (shape, _), members in groups.items():
        if len(members) < FLAT_MIN_FRAMES:
            continue
        # Vignetting is smooth: a 64 px wide median is enough, and keeps a long flight's
        # stack of thumbnails small.
        w = min(64, shape[2])
        h = max(2, round(shape[1] * w / shape[2]))
        flat = np.empty((shape[0], h, w), np.float32)
        for b in range(shape[0]):
            stack = np.stack(
                [
                    cv2.resize(_known(thumbs[i])[b], (w, h), interpolation=cv2.INTER_AREA)
                    for i in members
                ]
            ).astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                stack /= np.nanmedian(stack.reshape(len(members), -1), axis=1)[:, None, None]
                med = np.nanmedian(stack, axis=0)
            flat[b] = np.where(np.isfinite(med), med, 1.0)
        flat = np.stack(
            [cv2.GaussianBlur(b, (0, 0), 0.06 * w, borderType=cv2.BORDER_REFLECT) for b in flat]
        )
        flat = np.stack(
            [cv2.resize(b, (shape[2], shape[1]), interpolation=cv2.INTER_LINEAR) for b in flat]
        )
        flat /= flat.mean(axis=(1, 2), keepdims=True)
        lo, hi = np.percentile(flat, (2, 98))
        if hi / max(lo, 1e-6) < FLAT_MIN_RANGE:
            continue
        for i in members:
            out[i] = flat
    return out


def exposure_gains(
    poses: Sequence[Pose | None],
    thumbs: Sequence[np.ndarray | None],
    feet: Sequence[Footprint | None],
    ground: Ground,
    spacing: float,
    sizes: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Gain per frame and band (frames x bands) that evens out brightness where frames overlap.

    Minimises sum over overlapping pairs of N_ij (g_i I_ij - g_j I_ji)^2 / s_n^2 plus
    sum N_i (1 - g_i)^2 / s_g^2, OpenCV's GainCompensator objective, per band. I_ij is frame i's
    mean over the ground it shares with frame j, sampled every `spacing` metres from
    thumbnails of the frames.
    """
    idx = [i for i, p in enumerate(poses) if p is not None]
    nb = next(t.shape[0] for t in thumbs if t is not None)
    gains = np.ones((len(poses), nb), np.float64)
    if len(idx) < 2:
        return gains
    boxes = np.array([_known(feet[i]).bbox for i in idx])
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    cols = int((boxes[:, 2].max() - x0) / spacing) + 1
    samples: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in idx:
        xmin, ymin, xmax, ymax = _known(feet[i]).bbox
        cx = np.arange(int((xmin - x0) / spacing), int((xmax - x0) / spacing) + 1)
        cy = np.arange(int((ymin - y0) / spacing), int((ymax - y0) / spacing) + 1)
        mx, my = np.meshgrid(cx, cy)
        gx, gy = mx.ravel(), my.ravel()
        x = x0 + (gx + 0.5) * spacing
        y = y0 + (gy + 0.5) * spacing
        xyz = np.column_stack([x, y, ground.z(x, y)])
        uv, front = _known(poses[i]).project(xyz)
        w, h = sizes[i]
        th = _known(thumbs[i])
        sx, sy = th.shape[2] / w, th.shape[1] / h
        u = (uv[:, 0] + 0.5) * sx - 0.5
        v = (uv[:, 1] + 0.5) * sy - 0.5
        m = 2
        ok = front & (u >= m) & (v >= m) & (u <= th.shape[2] - 1 - m) & (v <= th.shape[1] - 1 - m)
        if not ok.any():
            continue
        ui, vi = np.round(u[ok]).astype(int), np.round(v[ok]).astype(int)
        vals = th[:, vi, ui].astype(np.float64)  # bands x n
        good = np.isfinite(vals).all(axis=0) & (vals > 0).all(axis=0)
        cell = (gy[ok] * cols + gx[ok])[good]
        samples[i] = (cell, vals[:, good])
    keys = list(samples)
    pos = {k: n for n, k in enumerate(keys)}
    for b in range(nb):
        scale = np.median(np.concatenate([samples[k][1][b] for k in keys]))
        if not scale > 0:
            continue
        rows: list[np.ndarray] = []
        rhs: list[float] = []
        s_n, s_g = 0.03, 0.15
        for a_i, a in enumerate(keys):
            ca, va = samples[a]
            for c_ in keys[a_i + 1 :]:
                if not _boxes_meet(_known(feet[a]).bbox, _known(feet[c_]).bbox):
                    continue
                cb, vb = samples[c_]
                common, ia, ib = np.intersect1d(ca, cb, return_indices=True)
                if len(common) < 20:
                    continue
                ia_mean = va[b, ia].mean() / scale
                ib_mean = vb[b, ib].mean() / scale
                wgt = math.sqrt(len(common)) / s_n
                row = np.zeros(len(keys))
                row[pos[a]], row[pos[c_]] = wgt * ia_mean, -wgt * ib_mean
                rows.append(row)
                rhs.append(0.0)
        if not rows:
            continue
        for k in keys:
            row = np.zeros(len(keys))
            row[pos[k]] = math.sqrt(len(samples[k][0])) / s_g
            rows.append(row)
            rhs.append(math.sqrt(len(samples[k][0])) / s_g)
        sol, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
        for k in keys:
            gains[k, b] = float(np.clip(sol[pos[k]], 0.5, 2.0))
    return gains


def _boxes_meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# -- the output grid and the blocks --------------------------------------------------------------
@dataclass
class OutputGrid:
    x0: float  # west edge
    y1: float  # north edge
    gsd: float
    width: int
    height: int

    def blocks(self) -> list[tuple[int, int, int, int]]:
        return [
            (r, c, min(BLOCK, self.height - r), min(BLOCK, self.width - c))
            for r in range(0, self.height, BLOCK)
            for c in range(0, self.width, BLOCK)
        ]


def output_grid(feet: Sequence[Footprint | None], gsd: float) -> OutputGrid:
    """The orthomosaic's grid: the frames' ground footprints at `gsd`, snapped to it."""
    boxes = np.array([f.bbox for f in feet if f is not None])
    x0 = math.floor(boxes[:, 0].min() / gsd) * gsd
    y0 = math.floor(boxes[:, 1].min() / gsd) * gsd
    x1 = math.ceil(boxes[:, 2].max() / gsd) * gsd
    y1 = math.ceil(boxes[:, 3].max() / gsd) * gsd
    return OutputGrid(x0, y1, gsd, round((x1 - x0) / gsd), round((y1 - y0) / gsd))


@dataclass
class BlockStats:
    """What the blocks tell about the mosaic: pixels per frame and which frames share a seam."""

    pixels: np.ndarray  # per frame, output pixels it won
    seams: set[tuple[int, int]] = field(default_factory=set)
    covered: int = 0


FrameReader = Callable[[int, tuple[int, int, int, int]], tuple[np.ndarray, np.ndarray | None]]


def render_block(
    grid: OutputGrid,
    block: tuple[int, int, int, int],
    poses: Sequence[Pose | None],
    feet: Sequence[Footprint | None],
    sizes: Sequence[tuple[int, int]],
    gains: np.ndarray,
    ground: Ground,
    read: FrameReader,
    bands: int,
    dtype: np.dtype,
    stats: BlockStats,
    flats: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One block of the mosaic (bands x h x w) and its validity, or None where no frame sees it.

    `read(i, (row0, col0, rows, cols))` gives a window of frame i (bands x rows x cols) and its
    validity (None when all valid).
    """
    r0, c0, h, w = block
    bx0 = grid.x0 + c0 * grid.gsd
    by1 = grid.y1 - r0 * grid.gsd
    bbox = (bx0, by1 - h * grid.gsd, bx0 + w * grid.gsd, by1)
    cands = [
        i
        for i, (p, f) in enumerate(zip(poses, feet, strict=True))
        if p is not None and f is not None and _boxes_meet(f.bbox, bbox)
    ]
    if not cands:
        return None
    # Ground points on a coarse lattice over the block (its last row/column on the edge).
    ys = np.unique(np.r_[np.arange(0, h, COARSE), h - 1]).astype(np.float64)
    xs = np.unique(np.r_[np.arange(0, w, COARSE), w - 1]).astype(np.float64)
    gx, gy = np.meshgrid(bx0 + (xs + 0.5) * grid.gsd, by1 - (ys + 0.5) * grid.gsd)
    gz = ground.z(gx, gy)
    xyz = np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])
    big = np.float32(1e9)
    costs, maps = [], []
    for i in cands:
        uv, front = _known(poses[i]).project(xyz)
        c = _known(poses[i]).center
        horiz = np.hypot(xyz[:, 0] - c[0], xyz[:, 1] - c[1])
        oblique = horiz > (c[2] - xyz[:, 2]) * math.tan(math.radians(MAX_OFF_NADIR_DEG))
        cost = horiz + (GPS_PENALTY_M if _known(poses[i]).how == "gps" else 0.0)
        cost = np.where(front & ~oblique, cost, 1e7)
        shape = (len(ys), len(xs))
        mx = _upsample(uv[:, 0].reshape(shape), ys, xs, h, w)
        my = _upsample(uv[:, 1].reshape(shape), ys, xs, h, w)
        cst = _upsample(cost.reshape(shape), ys, xs, h, w)
        fw, fh = sizes[i]
        inside = (mx >= -0.5) & (my >= -0.5) & (mx <= fw - 0.5) & (my <= fh - 0.5) & (cst < 1e6)
        costs.append(np.where(inside, cst, big))
        maps.append((mx, my, inside))
    costs_a = np.stack(costs)
    best = costs_a.min(axis=0)
    seen = best < big
    if not seen.any():
        return None
    winner = np.where(seen, costs_a.argmin(axis=0), -1)
    _tally(stats, winner, cands)
    band = FEATHER_PX * grid.gsd  # cost differences grow twice as fast as distance across a seam
    acc = np.zeros((bands, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for k, i in enumerate(cands):
        wgt = np.clip(1.0 - (costs_a[k] - best) / band, 0.0, 1.0)
        wgt[~maps[k][2]] = 0.0
        if not wgt.any():
            continue
        mx, my, _ = maps[k]
        sel = wgt > 0
        fw, fh = sizes[i]
        xlo = max(0, int(np.floor(mx[sel].min())) - 2)
        xhi = min(fw, int(np.ceil(mx[sel].max())) + 3)
        ylo = max(0, int(np.floor(my[sel].min())) - 2)
        yhi = min(fh, int(np.ceil(my[sel].max())) + 3)
        data, valid = read(i, (ylo, xlo, yhi - ylo, xhi - xlo))
        lx = (mx - xlo).astype(np.float32)
        ly = (my - ylo).astype(np.float32)
        taper = np.minimum.reduce([mx + 0.5, my + 0.5, fw - 0.5 - mx, fh - 0.5 - my])
        wgt *= np.clip(taper / EDGE_TAPER_PX, 0.0, 1.0)
        if valid is not None:
            v = cv2.remap(valid.astype(np.uint8), lx, ly, cv2.INTER_NEAREST, borderValue=0)
            wgt[v == 0] = 0.0
        flat = flats[i] if flats is not None else None
        if flat is not None:  # the flat field at these pixels (it is thumbnail-sized)
            fx = ((mx + 0.5) * (flat.shape[2] / fw) - 0.5).astype(np.float32)
            fy = ((my + 0.5) * (flat.shape[1] / fh) - 0.5).astype(np.float32)
        for b in range(bands):
            src = np.ascontiguousarray(data[b])
            val = cv2.remap(src, lx, ly, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            g = wgt * np.float32(gains[i, b])
            if flat is not None:
                g = g / cv2.remap(
                    flat[b], fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                )
            acc[b] += g * val.astype(np.float32)
        wsum += wgt
    ok = wsum > 1e-6
    if not ok.any():
        return None
    out = acc / np.where(ok, wsum, 1.0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        out = np.clip(np.rint(out), info.min, info.max)
    out[:, ~ok] = 0
    stats.covered += int(ok.sum())
    return out.astype(dtype), ok


def _upsample(coarse: np.ndarray, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of lattice values onto every pixel of an h x w block."""
    # Lattice rows/cols are every COARSE px and the last pixel; map pixel p to its lattice pos.
    py = np.interp(np.arange(h), ys, np.arange(len(ys))).astype(np.float32)
    px = np.interp(np.arange(w), xs, np.arange(len(xs))).astype(np.float32)
    mx, my = np.meshgrid(px, py)
    return cv2.remap(coarse.astype(np.float32), mx, my, cv2.INTER_LINEAR)


def _tally(stats: BlockStats, winner: np.ndarray, cands: list[int]) -> None:
    ids = np.asarray(cands)
    lab = np.where(winner >= 0, ids[np.maximum(winner, 0)], -1)
    counts = np.bincount(lab[lab >= 0].ravel(), minlength=len(stats.pixels))
    stats.pixels += counts[: len(stats.pixels)]
    for a, b in ((lab[:, 1:], lab[:, :-1]), (lab[1:, :], lab[:-1, :])):
        diff = (a != b) & (a >= 0) & (b >= 0)
        if diff.any():
            lo = np.minimum(a[diff], b[diff])
            hi = np.maximum(a[diff], b[diff])
            for p in set(zip(lo.tolist(), hi.tolist(), strict=True)):
                stats.seams.add(p)
