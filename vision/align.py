"""Co-registration of band images taken through separate lenses (MicaSense-style captures).

Each lens sees the ground from a slightly different place, so bands are shifted by up to ~20 px
and a little rotated/scaled. We estimate, per band, an affine warp onto a reference band:
phase correlation of gradient images gives the shift, then OpenCV's ECC refines a full affine
on gradient images (bands differ in brightness, edges agree). Gradients, not raw values, because
a plant is bright in NIR and dark in red: raw intensities anti-correlate across bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Alignment:
    warp: np.ndarray  # 2x3 affine, maps reference pixel -> band pixel (cv2.WARP_INVERSE_MAP)
    score: float  # ECC correlation coefficient on gradients (1 = perfect)

    @property
    def shift_px(self) -> float:
        return float(np.hypot(self.warp[0, 2], self.warp[1, 2]))


def _gradient(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    lo, hi = np.percentile(f, (1, 99))
    f = np.clip((f - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
    f = cv2.GaussianBlur(f, (0, 0), 1.5)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def estimate(reference: np.ndarray, band: np.ndarray, max_iter: int = 100) -> Alignment:
    """Affine warp that brings `band` onto `reference` (both 2-D, same shape)."""
    gr, gb = _gradient(reference), _gradient(band)
    win = cv2.createHanningWindow(gr.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(gr, gb, win)
    warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, max_iter, 1e-5)
    # Refine at half resolution first (fast, wide basin), then at full resolution.
    score = 0.0
    for scale in (0.5, 1.0):
        r = cv2.resize(gr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = cv2.resize(gb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        w = warp.copy()
        w[:, 2] *= scale
        try:
            # OpenCV takes None for "no mask"; its type stubs do not say so.
            score, w = cv2.findTransformECC(r, b, w, cv2.MOTION_AFFINE, criteria, None, 5)  # type: ignore[call-overload]
            warp = w.copy()
            warp[:, 2] /= scale
        except cv2.error:
            break  # keep the best estimate so far (phase correlation at worst)
    return Alignment(warp=warp, score=float(score))


def apply(
    band: np.ndarray, alignment: Alignment, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The band resampled onto the reference grid, and where it has real pixels."""
    h, w = shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(band, alignment.warp, (w, h), flags=flags, borderValue=0)
    ones = np.full(band.shape, 255, np.uint8)
    valid = cv2.warpAffine(
        ones, alignment.warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return out, valid > 0


def coregister(
    bands: list[np.ndarray], reference: int
) -> tuple[list[np.ndarray], np.ndarray, list[Alignment]]:
    """All bands on the reference band's grid, the pixels every band covers, and each warp."""
    ref = bands[reference]
    shape = ref.shape
    out: list[np.ndarray] = []
    valid = np.ones(shape, bool)
    aligns: list[Alignment] = []
    for i, b in enumerate(bands):
        if i == reference:
            out.append(b)
            aligns.append(Alignment(np.eye(2, 3, dtype=np.float32), 1.0))
            continue
        a = estimate(ref, b)
        warped, v = apply(b, a, shape)
        out.append(warped)
        valid &= v
        aligns.append(a)
    return out, valid, aligns
