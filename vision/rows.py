"""Crop rows at survey ground sample distance: on the row is crop, between the rows is weed.

Most field crops, vines and orchards are planted in rows. At 1-10 cm per pixel a single plant is
a few pixels and no model can tell crop from weed by its leaves, but the rows can be seen (and
at 2-10 mm, on a crop no model has learned, they still can: plan.py looks from 2 mm): the
approach of Pérez-Ortiz et al. (2015) and Bah et al. (2018). Khet finds the rows from the
vegetation index, then calls vegetation on a row crop and vegetation between the rows weed.

How the rows are found (in metres, so any GSD works):

1. The scene is read at an analysis GSD of at least 2.5 cm (reading averages pixels, so a finer
   image costs no more than a 2.5 cm one) in blocks of about 40 m: enough for seven orchard rows
   6 m apart.
   An orthomosaic holds several fields, each with its own row direction, so every block is judged
   on its own.
2. A block's vegetation index, minus its mean and tapered by a Hann window, is Fourier transformed
   (zero-padded for a finer frequency grid). Parallel rows are a peak in the power spectrum at the
   rows' spatial frequency, pointing across the rows; spacings from 0.2 m to 6 m are searched. A
   peak whose half or third frequency is also strong is a harmonic of it (narrow rows far apart).
   A grid of trees has peaks in several directions; the strongest few are tried.
3. Each candidate is refined by a fine search over spacing and direction for the highest
   *coherence*: |sum of index x exp(2 pi i u / spacing)| / sum |index|, where u is the distance
   across the rows. Its argument is the block's phase (where the row centres lie); its value is
   0.5-0.65 for clean rows and near 0 for plants without rows. The best candidate is kept when its
   coherence and its peak's prominence over other directions at the same spacing pass fixed
   thresholds, at least MIN_ROWS neighbouring rows carry plants, and plants midway between the
   rows are at most MAX_BETWEEN as frequent as on them (a sward's stripes are not rows), and the
   stripes are of one kind: not every other row much weaker (MIN_ALTERNATE), nor a stripe as
   narrow as a row midway between them (MIDWAY_WIDTH); two kinds taking turns (vines and grass
   alleys, or every other row weak) do not say which is the crop, nor does a grid of plants with
   plants between its rows (trees in grass alleys) say which way the rows run. A
   block without rows is split in two across its longer side and each half tried
   alone (two fields with different rows in one block), down to an eighth of the block.
4. The row band's width comes from the block's vegetation profile across its rows: out from the
   row's centre to the first bare strip, and one analysis pixel more.

A pixel is then on a row, between rows, or where no rows hold: a block without rows, or a ~10 m
sub-block whose own pixels hardly show its block's rows (LOCAL_MIN), or a strip of sward among
the rows (rows whose slots have plants midway as on the row, SWARD_BETWEEN: strip intercropping).
The map says "vegetation" there: crop and weed are not told apart.

What this will not do: follow rows that curve within a block, or tell a weed growing inside the
row from the crop (it is crop here); the summary's method text says both. Nor find an
orchard's rows in grass alleys: only the most coherent candidate is laid out, which there is the
trees' spacing along the row, and such a grid is left as vegetation (LATTICE_BETWEEN). Nor
tell a pasture's cut swaths on sparse stubble from a row crop: the stubble is painted weed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from khet.vision import indices as vi
from khet.vision import memory
from rasterio.windows import Window

ANALYSIS_GSD_M = 0.025
BLOCK_M = 40.0
SPACING_M = (0.2, 6.0)
MIN_COHERENCE = 0.25
SMOOTH_M = 0.08  # leaf texture is noise here: the index is smoothed over ~8 cm first
BACKGROUND_M = 2.0  # and what varies over more than ~20 m (a road, a field's edge) taken out
MIN_PROMINENCE = 3.0  # peak power over the mean power at the same spacing, other directions
MIN_RADIAL = 1.5  # peak power over the power at 0.7 and 1.4 times its frequency, same direction
MIN_VEGETATION = 0.03  # a block with less vegetation says nothing about rows
MIN_FOUND = 0.5  # share of vegetated blocks with rows for a map to use them
# Rows side by side with plants, at least, for a block to have rows: two or three strips of grass
# (the verges either side of a road, seen on the Seneca flight at 5 m "spacing") are not a crop.
# The vineyard capture's blocks show 4 to 15.
MIN_ROWS = 4
# Plants midway between the rows at most half as frequent as on them. A sward (a lawn, a meadow,
# a closed canopy) has faint stripes that the spectrum finds (mowing, wheel tracks), but plants
# everywhere: on the Seneca flight's lawns 0.63-0.96 as many between the "rows" as on them,
# against 0.02-0.14 in the MicaSense vineyard and 0 in uav_potato's young potato rows. Painting
# a sward's stripes crop and weed would be confidently wrong.
MAX_BETWEEN = 0.5
# Two kinds of stripe taking turns are not told apart: a vineyard's vine rows with a grass alley
# midway (the spectrum's strongest peak is then half the vines' spacing, the grass a "row"), or a
# crop whose every other row is weak (twice its spacing is taken, the weak rows painted weed).
# Which kind is the crop, or whether both are, the vegetation index does not say, so such a block
# has no rows and its plants are vegetation. Measured as plants on the even rows against the odd:
# 0.87 in uav_potato, 0.90-0.97 in the MicaSense vineyard and orchard, 0.92-1.0 in drawn row
# crops; 0.55 for drawn vines 2.5 m apart with 1 m grass alleys (rows 1.25 m apart found), 0.36-0.43
# for drawn rows with every other row at 30 % of the plants.
MIN_ALTERNATE = 0.7
# The same seen from twice the spacing: a stripe of plants of its own midway between the rows (a
# trough of at most half its height before it, and at least MIDWAY_MIN of the row's height). As
# narrow as the rows (weak rows: 1.0 their width), it may be a row of the crop: no rows. Weeds or
# grass filling the strip between cultivated bands are wider (2.0 in the heavy-weeds test and a
# drawn vineyard's patchy grass alleys) and stay weed.
MIDWAY_MIN = 0.2
MIDWAY_WIDTH = 1.4
# An orchard's trees stand in a grid: rows across (6 m) and trees along them (5 m) both show in
# the spectrum. In grass alleys the trees' spacing along the row is the most coherent, and taken
# for rows across it, the alley grass was painted crop (62 %); plants between those "rows" were
# 0.46-0.49 as frequent as on them. A block with rows coherent in a second direction (more than
# LATTICE_APART degrees away) and more than LATTICE_BETWEEN plants between its rows has no rows.
# Rows with bare inter-rows stay: the MicaSense vineyard and orchard 0.02-0.14, uav_potato 0, a
# drawn orchard on bare soil 0.
LATTICE_APART = 30.0
LATTICE_BETWEEN = 0.3
# A strip of sward among the rows (strip intercropping: a strip of wheat, clover or grass between
# strips of maize) does not spoil a block's rows, but its plants are everywhere, as frequent
# midway between the rows as on them: painted from the rows, a third of it was weed. Each row's
# slot across the block (on the row and half a spacing either side, the block's whole length)
# with plants midway at least SWARD_BETWEEN as frequent as on the core of its row, in a run of
# at least SWARD_RUN slots, is left as vegetation. Measured per slot: the MicaSense vineyard and
# orchard median 0.03, 90th percentile 0.20, and one slot at 0.99 (a grass margin at a block's
# edge, its neighbours 0.05-0.1: no run); uav_potato at 1-2 cm at most 0.17; drawn heavy weeds
# midway (25 % of the inter-row) 0.42-0.46, still weed; a drawn wheat strip 1.0.
SWARD_BETWEEN = 0.7
SWARD_RUN = 3
SUB_M = 10.0  # rows drift and bend a little: their phase is measured every ~10 m
WIDTH_LEVEL = 0.3  # the row band: plants above 30 % of the way from the profile's low to high
# and one analysis pixel more on each side: a row's edge pixels are part leaf, part soil, and the
# crop's outer leaves fall there (without it, 14-26 % of drawn maize at 3-5 cm was called weed).
EDGE_PX = 1.0
# A sub-block (~10 m) whose own coherence with its block's rows is below this is not painted from
# them. Sub-blocks of real rows measured 0.23-0.68 (the MicaSense vineyard and orchard, uav_potato
# at 1-2 cm); a headland, a grass margin or the next field's rows 0.01-0.04, curving rows 0.11-0.16.
LOCAL_MIN = 0.2
PAD = 1  # no zero padding: the refining search finds the exact spacing, and memory stays small
CANDIDATES = 4
REFINE_SAMPLES = 32768  # pixels scored per trial in the fine search of a block's rows
TOP = 4096  # spectrum peaks looked at for candidates, strongest first

ON, OFF, UNKNOWN = 1, 0, 2
SWARD, SWARD_EDGE = 2, 1  # a row's slot in a strip of sward, and beside one

ReadBlock = Callable[[Window, float], tuple[np.ndarray, np.ndarray]]


@dataclass
class Block:
    """The rows of one block, in analysis pixels."""

    angle: float  # direction across the rows, radians (x right, y down)
    spacing: float  # analysis pixels, centre to centre
    phase: np.ndarray  # radians, per sub-block: row centres where 2 pi u / spacing == phase
    halfwidth: float  # the row band's half width, fraction of the spacing
    coherence: float
    prominence: float
    origin: tuple[int, int] = (0, 0)  # the block's top-left analysis pixel
    sub: tuple[float, float] = (1.0, 1.0)  # sub-block height and width, analysis pixels
    rows_seen: int = 0  # the most rows side by side with plants on them
    between: float = 0.0  # plants between the rows, as a share of those on them
    alternate: float = 1.0  # plants on every other row, as a share of those on the rows between
    midway: float = math.inf  # width of a stripe of plants midway over the rows' width (inf: none)
    # Slots of rows in or beside a strip of sward (SWARD, SWARD_EDGE): `sward[k - slot0]` for the
    # slot k = rint(u / spacing - slot_phase / 2 pi), the block's own phase, not the sub-blocks'.
    slot_phase: float = 0.0
    slot0: int = 0
    sward: np.ndarray | None = None


@dataclass
class Rows:
    """Where the rows of a scene are, in working pixels of the pipeline's grid.

    `owner` maps each unit square (`unit` analysis pixels) of the image to the block whose rows
    hold there (-1: none)."""

    blocks: list[Block]
    owner: np.ndarray
    unit: float  # analysis pixels per owner cell
    zoom: float  # analysis pixels per working pixel
    plants: np.ndarray  # owner cells with plants
    gsd_m: float  # working GSD

    @property
    def found_share(self) -> float:
        """Share of the area with plants where rows were found."""
        return float((self.plants & (self.owner >= 0)).sum()) / max(int(self.plants.sum()), 1)

    def label(self, y0: float, x0: float, h: int, w: int, step: int = 1) -> np.ndarray:
        """ON, OFF or UNKNOWN for each pixel of the h x w block at working pixel (y0, x0)
        (sampled every `step` working pixels)."""
        ya_all = (y0 + (np.arange(h) + 0.5) * step) * self.zoom
        xa_all = (x0 + (np.arange(w) + 0.5) * step) * self.zoom
        oy = np.minimum((ya_all // self.unit).astype(int), self.owner.shape[0] - 1)
        ox = np.minimum((xa_all // self.unit).astype(int), self.owner.shape[1] - 1)
        own = self.owner[np.ix_(oy, ox)]
        out = np.full((h, w), UNKNOWN, np.uint8)
        for k in np.unique(own):
            if k < 0:
                continue
            blk = self.blocks[int(k)]
            sel = own == k
            rsel, csel = sel.any(axis=1), sel.any(axis=0)
            ya, xa = ya_all[rsel], xa_all[csel]
            u = xa[None, :] * math.cos(blk.angle) + ya[:, None] * math.sin(blk.angle)
            sy = np.clip(((ya - blk.origin[0]) // blk.sub[0]).astype(int), 0, None)
            sx = np.clip(((xa - blk.origin[1]) // blk.sub[1]).astype(int), 0, None)
            sy = np.minimum(sy, blk.phase.shape[0] - 1)
            sx = np.minimum(sx, blk.phase.shape[1] - 1)
            t = u / blk.spacing - blk.phase[np.ix_(sy, sx)] / (2 * math.pi)
            t -= np.rint(t)  # distance to the nearest row centre, in spacings
            lab = np.where(np.abs(t) <= blk.halfwidth, ON, OFF).astype(np.uint8)
            lab[np.isnan(t)] = UNKNOWN  # a sub-block where the block's rows do not hold
            if blk.sward is not None:  # strips of sward among the rows
                slot = np.rint(u / blk.spacing - blk.slot_phase / (2 * math.pi)).astype(int)
                slot -= blk.slot0
                inside = (slot >= 0) & (slot < blk.sward.size)
                flag = np.where(inside, blk.sward[np.clip(slot, 0, blk.sward.size - 1)], 0)
                lab[(flag == SWARD) | ((flag == SWARD_EDGE) & (lab == OFF))] = UNKNOWN
            sub = out[np.ix_(rsel, csel)]
            sub[sel[np.ix_(rsel, csel)]] = lab[sel[np.ix_(rsel, csel)]]
            out[np.ix_(rsel, csel)] = sub
        return out

    def describe(self) -> dict[str, float | int]:
        """Median spacing, direction and width of the rows, and how much of the field has them."""
        b = self.blocks
        spacing = float(np.median([x.spacing for x in b])) / self.zoom * self.gsd_m
        width = float(np.median([2 * x.halfwidth * x.spacing for x in b])) / self.zoom
        a = np.array([x.angle for x in b])
        # The rows' own direction (across their normal), clockwise from image up, mod 180: the
        # mean of doubled angles, since 10 and 170 degrees are 20 degrees apart.
        azimuth = np.arctan2(-np.sin(a), -np.cos(a))
        d = np.degrees(np.angle(np.mean(np.exp(2j * azimuth))) / 2) % 180
        return {
            "spacing_m": round(spacing, 3),
            "direction_deg": round(float(d), 1),  # 0: rows run up-down the image
            "row_width_m": round(width * self.gsd_m, 3),
            "fields": len(b),
            "share_with_rows": round(self.found_share, 3),
            "coherence": round(float(np.median([x.coherence for x in b])), 2),
        }


@dataclass
class NoRows:
    reason: str


def find(
    read_block: ReadBlock,
    width: int,
    height: int,
    gsd_m: float,
    veg: vi.Vegetation,
) -> Rows | NoRows:
    """The rows of a working image of `width` x `height` pixels at `gsd_m` metres per pixel.

    `read_block(window, zoom)` returns (the vegetation's bands C x h x w, valid h x w) of the
    working image read at `zoom` (analysis pixels per working pixel), for a window in analysis
    pixels. A block without rows is split in two across its longer side and each half tried on
    its own (two fields with different rows side by side), down to an eighth of the block."""
    ga = max(gsd_m, ANALYSIS_GSD_M)
    zoom = gsd_m / ga
    wa, ha = max(1, round(width * zoom)), max(1, round(height * zoom))
    b = int(max(64, min(2048, round(BLOCK_M / ga))))
    unit = b / 4
    # Blocks of equal size that cover the image (a thin last row of blocks would have too few
    # rows of plants to measure): between 0.75 and 1.5 times the nominal size.
    nby, nbx = max(1, round(ha / b)), max(1, round(wa / b))
    bh, bw = math.ceil(ha / nby), math.ceil(wa / nbx)
    # One frequency grid per attempted size: a half or a quarter of a block is transformed at
    # its own size, not zero-padded to the block's (a scene without rows tries every block in
    # 15 parts, and the transforms were most of the search).
    spectra: dict[int, _Spectrum] = {}
    owner = np.full((math.ceil(ha / unit), math.ceil(wa / unit)), -1, np.int32)
    plant_cells = np.zeros(owner.shape, bool)
    blocks: list[Block] = []

    def units(y0: int, x0: int, h: int, w: int) -> tuple[slice, slice]:
        return (
            slice(int(y0 // unit), math.ceil((y0 + h) / unit)),
            slice(int(x0 // unit), math.ceil((x0 + w) / unit)),
        )

    def attempt(v, ok, plants, y0: int, x0: int, depth: int) -> None:
        h, w = v.shape
        if ok.mean() < 0.25 or plants[ok].mean() < MIN_VEGETATION:
            return
        n = int(max(h, w))
        if n not in spectra:
            spectra[n] = _Spectrum(n, ga)
        sp = spectra[n]
        blk = _block_rows(v, ok, plants, sp, (y0, x0), ga, SUB_M / ga)
        if blk is not None:
            ys, xs = units(y0, x0, h, w)
            owner[ys, xs] = len(blocks)
            blocks.append(blk)
            return
        if depth < 3 and max(h, w) >= b / 2:
            # Halves across the longer side: two fields side by side are told apart first.
            if w >= h:
                parts = ((0, 0, h, w // 2), (0, w // 2, h, w - w // 2))
            else:
                parts = ((0, 0, h // 2, w), (h // 2, 0, h - h // 2, w))
            for dy, dx, sh, sw in parts:
                sl = (slice(dy, dy + sh), slice(dx, dx + sw))
                attempt(v[sl], ok[sl], plants[sl], y0 + dy, x0 + dx, depth + 1)

    for by in range(nby):
        for bx in range(nbx):
            data, valid = read_block(Window(bx * bw, by * bh, bw, bh), zoom)
            v = veg.values(data, valid)
            ok = np.isfinite(v)
            plants = veg.plants(data, valid)
            h, w = v.shape
            for uy in range(math.ceil(h / unit)):
                for ux in range(math.ceil(w / unit)):
                    sl = (
                        slice(int(uy * unit), int((uy + 1) * unit)),
                        slice(int(ux * unit), int((ux + 1) * unit)),
                    )
                    if plants[sl].mean() >= MIN_VEGETATION:
                        gy, gx = int((by * bh) // unit) + uy, int((bx * bw) // unit) + ux
                        if gy < owner.shape[0] and gx < owner.shape[1]:
                            plant_cells[gy, gx] = True
            attempt(v, ok, plants, by * bh, bx * bw, 0)
            del data, valid, v, ok, plants
            memory.release_free_memory()  # a block's tens of MB, not kept by the allocator
    if not plant_cells.any():
        return NoRows("no vegetation to find rows in")
    rows = Rows(blocks, owner, unit, zoom, plant_cells, gsd_m)
    found = rows.found_share
    if found < MIN_FOUND:
        return NoRows(
            f"regular rows in {found:.0%} of the area with plants (at least {MIN_FOUND:.0%} "
            "needed): no row crop, or rows too irregular to follow"
        )
    return rows


class _Spectrum:
    """The frequency grid of one block size, computed once: the annulus of row spacings searched
    (as a mask, its flat indices and their radial frequencies; the full grids are not kept)."""

    def __init__(self, b: int, ga: float) -> None:
        self.n = b * PAD
        self.freq = np.fft.fftfreq(self.n)  # cycles per pixel along either axis
        # The spectrum of real values is symmetric: only its half with fy >= 0 is computed
        # (rows 0 to n // 2 of the full grid, so flat indices are the full grid's).
        fy, fx = self.freq[: self.n // 2 + 1, None], self.freq[None, :]
        rho = np.hypot(fx, fy)
        self.annulus = (rho >= ga / SPACING_M[1]) & (rho <= ga / SPACING_M[0]) & (fy >= 0)
        self.annulus_flat = np.flatnonzero(self.annulus)
        self.annulus_rho = rho.ravel()[self.annulus_flat]
        self.ring_step = 1.0 / self.n


def _block_rows(
    v: np.ndarray,
    ok: np.ndarray,
    plants: np.ndarray,
    sp: _Spectrum,
    origin: tuple[int, int],
    ga: float,
    sub_px: float,
) -> Block | None:
    """The rows of one block of index values (NaN outside the image), or None."""
    h, w = v.shape
    centred = _band_pass(v, ok, SMOOTH_M / ga, BACKGROUND_M / ga)
    power = _power(_hann_windowed(centred), sp.n)
    best: tuple[float, float, float, float] | None = None  # coherence, angle, spacing, prominence
    angles: list[float] = []  # of every candidate coherent enough to be rows
    for kx, ky in _candidates(power, sp):
        prominence = _prominence(power, sp, kx, ky)
        if prominence < MIN_PROMINENCE:
            continue
        coherence, a, s = _refine(centred, origin, math.atan2(ky, kx), 1 / math.hypot(kx, ky))
        if coherence >= MIN_COHERENCE:
            angles.append(a)
        if best is None or coherence > best[0]:
            best = (coherence, a, s, prominence)
    if best is None or best[0] < MIN_COHERENCE:
        return None
    # The winner's phase and row band (full-resolution work, done once per block).
    blk = _layout(centred, ok, plants, origin, best[1], best[2], sub_px)
    blk.prominence = best[3]
    rows = blk.coherence >= MIN_COHERENCE and blk.rows_seen >= MIN_ROWS
    rows = rows and blk.between <= MAX_BETWEEN
    # Two kinds of stripe taking turns: which are the crop's rows is not known (below).
    rows = rows and blk.alternate >= MIN_ALTERNATE and blk.midway > MIDWAY_WIDTH
    # A grid of plants with plants between its "rows": which way the rows run is not known.
    lattice = any(_angle_apart(x, best[1]) > LATTICE_APART for x in angles)
    rows = rows and not (lattice and blk.between > LATTICE_BETWEEN)
    return blk if rows else None


def _angle_apart(a: float, b: float) -> float:
    """The angle between two row directions (radians, modulo a half turn), in degrees."""
    d = math.degrees(a - b) % 180.0
    return min(d, 180.0 - d)


def _hann_windowed(a: np.ndarray) -> np.ndarray:
    """`a` times a 2-D Hann window, applied as its row and column factors (no window of the
    block's size is made or kept: a kept one per block shape held 40 MB)."""
    h, w = a.shape
    out = a * np.hanning(h).astype(np.float32)[:, None]
    out *= np.hanning(w).astype(np.float32)[None, :]
    return out


def _power(a: np.ndarray, n: int) -> np.ndarray:
    """The power spectrum of `a` zero-padded to n x n, its rows 0 to n // 2 (vertical
    frequencies >= 0; the rest mirrors them). NumPy's FFT: OpenCV's DFT was slower for block
    sizes that are not products of small primes. Half the spectrum, in single precision: the
    full one of a 1600 px block took 129 MB at the row search's peak, and this is 2.6 times
    faster."""
    spectrum = np.fft.rfftn(a.astype(np.float32, copy=False), s=(n, n), axes=(1, 0))
    return spectrum.real**2 + spectrum.imag**2


def _band_pass(v: np.ndarray, ok: np.ndarray, fine: float, coarse: float) -> np.ndarray:
    """The index smoothed over `fine` pixels minus its local mean over `coarse` pixels (Gaussian
    sigmas; means over valid pixels only), 0 outside the image."""
    x = np.where(ok, v, 0.0).astype(np.float32)
    w = ok.astype(np.float32)

    def blur(a: np.ndarray, sigma: float) -> np.ndarray:
        if sigma < 0.5:
            return a
        k = int(sigma // 4)
        if k < 2:
            return cv2.GaussianBlur(a, (0, 0), sigma)
        # A wide blur (the background, tens of pixels) on an image shrunk k times, then enlarged
        # back: what varies over metres loses nothing, and a kernel of hundreds of pixels took
        # two fifths of the row search.
        h, w = a.shape
        small = cv2.resize(a, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / k)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    with np.errstate(invalid="ignore", divide="ignore"):
        detail = blur(x, fine) / np.maximum(blur(w, fine), 1e-6)
        background = blur(x, coarse) / np.maximum(blur(w, coarse), 1e-6)
    return np.where(ok, detail - background, 0.0).astype(np.float32)


def _candidates(power: np.ndarray, sp: _Spectrum) -> list[tuple[float, float]]:
    """The strongest peaks of the annulus in distinct directions, each moved to its fundamental."""
    # Only the annulus is sorted (a few percent of the spectrum; sorting all of it took a
    # quarter of the row search), strongest first.
    inside = sp.annulus_flat
    order = inside[np.argsort(power.ravel()[inside], kind="stable")[::-1][:TOP]]
    out: list[tuple[float, float]] = []
    for flat in order:
        i = np.unravel_index(int(flat), power.shape)
        if power[i] <= 0:
            break
        kx, ky = float(sp.freq[i[1]]), float(sp.freq[i[0]])
        a = math.atan2(ky, kx)
        if any(_angle_diff(a, math.atan2(y, x)) < math.radians(15) for x, y in out):
            continue
        for div in (3, 2):  # a harmonic of rows spaced div times further apart
            j = (int(round(ky / div * sp.n)) % sp.n, int(round(kx / div * sp.n)) % sp.n)
            if sp.annulus[j] and power[j] >= 0.3 * power[i]:
                kx, ky = kx / div, ky / div
                break
        if _radial(power, sp, kx, ky) < MIN_RADIAL:
            continue  # a straight edge, not rows: it must not take a candidate's place
        out.append((kx, ky))
        if len(out) == CANDIDATES:
            break
    return out


def _prominence(power: np.ndarray, sp: _Spectrum, kx: float, ky: float) -> float:
    """Power at (kx, ky) over the mean power at the same spatial frequency in all directions:
    rows are one direction; plants scattered at a typical distance are a whole ring."""
    k = math.hypot(kx, ky)
    ring = sp.annulus_flat[np.abs(sp.annulus_rho - k) <= sp.ring_step]
    j = (int(round(ky * sp.n)) % sp.n, int(round(kx * sp.n)) % sp.n)
    mean = float(power.ravel()[ring].mean()) if ring.size else 0.0
    return float(power[j]) / mean if mean > 0 else 0.0


def _radial(power: np.ndarray, sp: _Spectrum, kx: float, ky: float) -> float:
    """Power at (kx, ky) over the larger of the powers at 0.7 and 1.4 times that frequency in the
    same direction: rows are an isolated peak (with harmonics at 2x, 3x); the straight edge of a
    field or a road is a line of power falling steadily with frequency, which this rejects."""

    def at(f: float) -> float:
        return float(power[int(round(ky * f * sp.n)) % sp.n, int(round(kx * f * sp.n)) % sp.n])

    side = max(at(0.7), at(1.4))
    return at(1.0) / side if side > 0 else float("inf")


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + math.pi / 2) % math.pi - math.pi / 2)


def _grid(v: np.ndarray, origin: tuple[int, int], spacing: float):
    """A few samples per row period: their rows, columns, values and image coordinates."""
    step = max(1, int(spacing // 6))
    ys, xs = np.mgrid[0 : v.shape[0] : step, 0 : v.shape[1] : step]
    return ys, xs, v[ys, xs].astype(np.float64), ys + origin[0], xs + origin[1]


def _refine(
    v: np.ndarray, origin: tuple[int, int], angle: float, spacing: float
) -> tuple[float, float, float]:
    """(coherence, direction, spacing): the spacing and direction near (angle, spacing) with the
    highest coherence, by a coarse then a fine search."""
    _, _, vals, gy, gx = _grid(v, origin, spacing)
    # The search (hundreds of trial spacings and directions) scores a fixed random subset of
    # at most REFINE_SAMPLES of these pixels: coherence to about 1/sqrt(REFINE_SAMPLES), and
    # closely spaced rows (every pixel sampled) no longer cost seconds a block.
    pick = np.arange(vals.size)
    if vals.size > REFINE_SAMPLES:
        pick = np.sort(np.random.default_rng(0).choice(vals.size, REFINE_SAMPLES, replace=False))
    s_vals, s_x, s_y = vals.ravel()[pick], gx.ravel()[pick], gy.ravel()[pick]
    s_norm = max(float(np.abs(s_vals).sum()), 1e-12)

    def search(angles: np.ndarray, spacings: np.ndarray, start: tuple) -> tuple:
        best = start
        for a in angles:
            u = 2 * np.pi * (s_x * math.cos(a) + s_y * math.sin(a))
            for s in spacings:
                coef = abs(complex(np.sum(s_vals * np.exp(1j * (u / s))))) / s_norm
                if coef > best[0]:
                    best = (coef, float(a), float(s))
        return best

    c0 = search(
        angle + np.radians(np.linspace(-4, 4, 9)),
        spacing * np.linspace(0.9, 1.1, 21),
        (-1.0, angle, spacing),
    )
    return search(
        c0[1] + np.radians(np.linspace(-0.8, 0.8, 9)), c0[2] * np.linspace(0.99, 1.01, 11), c0
    )


def _layout(
    v: np.ndarray,
    ok: np.ndarray,
    plants: np.ndarray,
    origin: tuple[int, int],
    a: float,
    s: float,
    sub_px: float,
) -> Block:
    """The block's rows at direction `a` and spacing `s`: their coherence over all sampled
    pixels, the phase of each ~10 m sub-block, and the row band's width."""
    ys, xs, vals, gy, gx = _grid(v, origin, s)
    # The phase per sub-block, from the Fourier coefficient of its own pixels.
    u = (gx * math.cos(a) + gy * math.sin(a)) / s
    wave = vals * np.exp(2j * np.pi * u)
    whole = complex(wave.sum())
    coherence = abs(whole) / max(float(np.abs(vals).sum()), 1e-12)
    nsy = max(1, round(v.shape[0] / sub_px))
    nsx = max(1, round(v.shape[1] / sub_px))
    sub = (v.shape[0] / nsy, v.shape[1] / nsx)
    phase = np.full((nsy, nsx), np.angle(whole))
    iy = np.minimum((ys // sub[0]).astype(int), nsy - 1)
    ix = np.minimum((xs // sub[1]).astype(int), nsx - 1)
    sums = np.zeros((nsy, nsx), np.complex128)
    mags = np.zeros((nsy, nsx))
    np.add.at(sums, (iy, ix), wave)
    np.add.at(mags, (iy, ix), np.abs(vals))
    local = np.abs(sums) / np.maximum(mags, 1e-12)
    strong = local >= 0.5 * MIN_COHERENCE
    phase[strong] = np.angle(sums[strong])
    # The plant profile across the rows, folded over the block: the row band is where plants
    # are more frequent than WIDTH_LEVEL of the way from the profile's low to its high (a vine
    # canopy fills most of its row period, a young row crop little of it).
    # Row and column vectors, broadcast: no full-size coordinate grids.
    # Single precision (row numbers up to a few thousand, to 1e-3 of a spacing or better): the
    # block-sized arrays here were the row search's peak in double precision.
    yy, xx = np.arange(v.shape[0])[:, None], np.arange(v.shape[1])[None, :]
    py = np.minimum((yy // sub[0]).astype(int), nsy - 1)
    px = np.minimum((xx // sub[1]).astype(int), nsx - 1)
    f32 = np.float32
    uu = ((xx + origin[1]) * math.cos(a) / s).astype(f32) + (
        (yy + origin[0]) * math.sin(a) / s
    ).astype(f32)
    t = uu - (phase / (2 * np.pi)).astype(f32)[py, px]
    k = np.rint(t)  # which row each pixel is nearest
    # Whether the block has rows is judged over all of it (how many rows side by side, how many
    # plants between them) ...
    seen = _rows_seen(k[ok & plants])
    t -= k
    d = np.abs(t, out=t)
    across = _profile(d, ok, plants)
    between = float(across.min() / across.max()) if across.max() > 0 else 1.0
    # ... but a sub-block whose own pixels hardly show the block's rows (a headland, a grass
    # margin, the next field's other rows, rows curving away) is not painted from them: its
    # phase is NaN, "no rows here", and the row band's width comes from the others.
    weak = local < LOCAL_MIN
    phase[weak] = np.nan
    held = ok & ~weak[py, px]
    prof = _profile(d, held, plants)
    level = prof.min() + WIDTH_LEVEL * (prof.max() - prof.min())
    # The band reaches from the row's centre out past the profile's peak (a twin row peaks off
    # centre) to the first bin below the level: plants further out (weeds midway, beyond a
    # cultivated strip beside the row) must not widen it.
    peak = int(np.argmax(prof))
    below = np.flatnonzero(prof[peak:] < level)
    width = (peak + below[0]) / 20 if below.size else 0.5
    width += EDGE_PX / s
    width = float(np.clip(width, 0.15, 0.4))
    alternate = _alternate(k, held, plants)
    midway = _midway(prof)
    # Only the pixels the sward check looks at (a row's core, midway): a third to half of them.
    slot_phase = float(np.angle(whole))
    sel = held & ((d <= 0.5 * width) | (d >= 0.45))
    slot0, sward = _sward(np.rint(uu[sel] - slot_phase / (2 * np.pi)), d[sel], plants[sel], width)
    return Block(
        a, s, phase, width, coherence, 0.0, origin, sub, seen, between, alternate, midway,
        slot_phase, slot0, sward,
    )  # fmt: skip


def _sward(
    slot: np.ndarray, d: np.ndarray, plants: np.ndarray, width: float
) -> tuple[int, np.ndarray | None]:
    """Which rows' slots are a strip of sward, from each pixel's slot number, distance from its
    row's centre (in spacings) and whether it is a plant: plants midway (the outer tenth of the
    spacing) at least SWARD_BETWEEN as frequent as on the inner half of the row band (`width`),
    in runs of SWARD_RUN or more. Returns the first slot's number and a flag per slot (SWARD,
    SWARD_EDGE beside a run of them, else 0; None when there are none)."""
    if slot.size == 0:
        return 0, None
    k0 = int(slot.min())
    k = slot.astype(np.int64) - k0
    pl = plants.astype(np.float32)
    on, mid = d <= 0.5 * width, d >= 0.45  # the row's core (its edges are part soil)

    def share(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.bincount(k[sel], minlength=int(k.max()) + 1)
        return np.bincount(k[sel], weights=pl[sel], minlength=n.size) / np.maximum(n, 1), n

    on_share, on_n = share(on)
    mid_share, mid_n = share(mid)
    # Slots crossed by at least a quarter of the fullest one's pixels (not a corner's sliver).
    enough = (on_n >= 0.25 * on_n.max()) & (mid_n >= 0.25 * mid_n.max())
    sward = enough & (on_share > 0) & (mid_share >= SWARD_BETWEEN * on_share)
    # Runs shorter than SWARD_RUN slots are one row's weeds, not a strip: keep the slots of
    # every window of SWARD_RUN slots that are all sward.
    run = np.ones(SWARD_RUN, int)
    full = np.convolve(sward.astype(int), run, mode="valid") == SWARD_RUN
    out = np.convolve(full.astype(int), run)[: sward.size] > 0
    if not out.any():
        return k0, None
    # The slot either side of a strip, half sward, half row (a strip's edge rarely falls on a
    # slot's), is not told from a row: its row band stays crop, the rest is vegetation.
    edge = np.convolve(out.astype(int), np.ones(3, int), mode="same") > 0
    return k0, np.where(out, SWARD, np.where(edge, SWARD_EDGE, 0)).astype(np.uint8)


def _profile(d: np.ndarray, where: np.ndarray, plants: np.ndarray) -> np.ndarray:
    """The share of plant pixels at each twentieth of a spacing from the nearest row centre
    (`d`, 0 to 0.5), over the pixels `where`."""
    bins = np.minimum((d[where] * 20).astype(int), 9)
    prof = np.bincount(bins, weights=plants[where].astype(float), minlength=10).astype(float)
    return prof / np.maximum(np.bincount(bins, minlength=10), 1)


def _alternate(k: np.ndarray, where: np.ndarray, plants: np.ndarray) -> float:
    """Plants on the even rows against the odd rows (share of each row's pixels, the fuller
    kind's mean over the other's), over the rows crossing most of the pixels `where`."""
    rows = k[where].astype(np.int64)
    if rows.size == 0:
        return 1.0
    rows -= rows.min()
    pixels = np.bincount(rows)
    share = np.bincount(rows, weights=plants[where].astype(float)) / np.maximum(pixels, 1)
    n = np.arange(pixels.size)
    full = pixels >= 0.5 * pixels.max()
    even = share[full & (n % 2 == 0)]
    odd = share[full & (n % 2 == 1)]
    if even.size == 0 or odd.size == 0:
        return 1.0
    hi = max(even.mean(), odd.mean())
    return float(min(even.mean(), odd.mean()) / hi) if hi > 0 else 1.0


def _midway(prof: np.ndarray) -> float:
    """A stripe of plants of its own midway between the rows (a bump of the profile reaching the
    midpoint, with a trough before it below half its height, at least MIDWAY_MIN of the row's
    height): its width over the row's, both where the profile is above half their height.
    math.inf when there is none."""
    top = float(prof.max())
    if top <= 0:
        return math.inf
    peak = int(np.argmax(prof))
    trough = peak + int(np.argmin(prof[peak:]))
    mid = float(prof[trough:].max())
    if mid < MIDWAY_MIN * top or prof[trough] > 0.5 * mid or prof[-1] < 0.5 * mid:
        return math.inf
    row_w = int((prof[:trough] >= 0.5 * top).sum())
    mid_w = int((prof[trough:] >= 0.5 * mid).sum())
    return mid_w / max(row_w, 1)


def _rows_seen(rows: np.ndarray) -> int:
    """The longest run of neighbouring rows with plants, from each plant pixel's row number: a
    row has plants when it holds at least a fifth as many plant pixels as the fullest row."""
    if rows.size == 0:
        return 0
    counts = np.bincount((rows - rows.min()).astype(np.int64))
    has = counts >= 0.2 * counts.max()
    best = run = 0
    for h in has:
        run = run + 1 if h else 0
        best = max(best, run)
    return best
