"""From a strip of pixels to the classes of its map cells, one way per method (see plan.py).

Each labeller takes a `Strip` (a row of windows read at the working GSD) and returns the cells
under the strip's kept centre: their class, the model's confidence where a model made them, and
the share of each class's pixels (cover) where a class was given per pixel. A tile classifier
gives one class per window (its cell); the others give a class per pixel, turned into cells by the
label rule in grid.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from khet.vision import indices as vi
from khet.vision import rows as rows_
from khet.vision.bundle import Bundle
from khet.vision.grid import MIN_VALID, NODATA, Grid, block_sums, cell_class, cell_counts
from khet.vision.plan import Plan

NONE = 255  # "no value" in the confidence and cover rasters


@dataclass
class Strip:
    """`n` windows of window row `r` from window column `c0`, read at the working GSD."""

    r: int
    c0: int
    n: int
    data: np.ndarray  # read bands x tile x (n * stride + overlap), the scene's dtype
    core_valid: np.ndarray | None  # stride x n * stride: valid, in the image and the field
    positions: dict[str, int]  # band name -> index in `data`


@dataclass
class Cells:
    """The cells under one strip: per_window x (n * per_window)."""

    classes: np.ndarray
    confidence: np.ndarray | None = None  # percent, NONE where no model ran
    cover: np.ndarray | None = None  # ... x classes, percent of valid pixels per class
    windows: int = 0  # windows run through the model


def core(grid: Grid, a: np.ndarray) -> np.ndarray:
    """The kept centre of a strip's array (bands x tile x width, or tile x width)."""
    m, s = grid.margin, grid.stride
    return a[..., m : m + s, m : m + a.shape[-1] - grid.overlap]


def _bands(strip: Strip, names) -> np.ndarray:
    pos = [strip.positions[b] for b in names]
    if pos == list(range(pos[0], pos[0] + len(pos))):
        return strip.data[pos[0] : pos[0] + len(pos)]
    return strip.data[pos]


class Labeller:
    """The cells of a strip; subclasses say how."""

    def __init__(self, plan: Plan, grid: Grid) -> None:
        self.plan, self.grid = plan, grid
        names = plan.class_names
        self.soil = names.index("soil") if "soil" in names else 0
        self.weed = names.index("weed") if "weed" in names else None
        self.n_cls = len(names)

    def label(self, strip: Strip, buffers: Buffers) -> Cells:
        raise NotImplementedError

    def _from_pixels(
        self, labels: np.ndarray, valid: np.ndarray | None, maxprob: np.ndarray | None = None
    ) -> Cells:
        """Cells from per-pixel classes of a strip's centre (stride x n * stride)."""
        g = self.grid
        counts = cell_counts(labels, valid, g.cell, self.n_cls)
        classes = cell_class(counts, self.soil, self.weed, g.cell * g.cell)
        total = counts.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            cover = np.where(total > 0, np.rint(counts * 100.0 / total), NONE).astype(np.uint8)
        cover[classes == NODATA] = NONE
        conf = None
        if maxprob is not None:
            conf = _cell_mean(maxprob, valid, g.cell)
            conf = np.where(classes == NODATA, NONE, np.rint(conf * 100)).astype(np.uint8)
        return Cells(classes, conf, cover)


class TileClassifier(Labeller):
    """A bundle of kind "tiles": one class per window; the window is the cell."""

    def __init__(self, plan: Plan, grid: Grid, to_model: Callable) -> None:
        super().__init__(plan, grid)
        assert plan.bundle is not None
        self.bundle: Bundle = plan.bundle
        self.to_model = to_model

    def label(self, strip: Strip, buffers: Buffers) -> Cells:
        g, n = self.grid, strip.n
        share = _window_share(strip.core_valid, g, n)
        keep = np.flatnonzero(share >= MIN_VALID)
        classes = np.full((1, n), NODATA, np.uint8)
        conf = np.full((1, n), NONE, np.uint8)
        if keep.size:
            tiles = _tiles(self.to_model(_bands(strip, self.bundle.info.bands)), g, n, buffers)
            p = self.bundle.predict(tiles if keep.size == n else tiles[keep])
            classes[0, keep] = p.argmax(axis=1).astype(np.uint8)
            conf[0, keep] = np.clip(np.rint(p.max(axis=1) * 100), 0, 100).astype(np.uint8)
        return Cells(classes, conf, None, int(keep.size))


class Segmenter(Labeller):
    """A bundle of kind "segmentation": a class per pixel, aggregated into cells."""

    def __init__(self, plan: Plan, grid: Grid, to_model: Callable) -> None:
        super().__init__(plan, grid)
        assert plan.bundle is not None
        self.bundle: Bundle = plan.bundle
        self.to_model = to_model

    def label(self, strip: Strip, buffers: Buffers) -> Cells:
        g, n, s, m = self.grid, strip.n, self.grid.stride, self.grid.margin
        share = _window_share(strip.core_valid, g, n)
        keep = np.flatnonzero(share > 0)
        labels = buffers.get("labels", (s, n * s), np.uint8)
        maxprob = buffers.get("maxprob", (s, n * s), np.float32)
        labels[...] = self.soil
        maxprob[...] = 0
        if keep.size:
            tiles = _tiles(self.to_model(_bands(strip, self.bundle.info.bands)), g, n, buffers)
            lab, prob = self.bundle.predict_classes(tiles if keep.size == n else tiles[keep])
            for j, k in enumerate(keep):
                labels[:, k * s : (k + 1) * s] = lab[j, m : m + s, m : m + s]
                maxprob[:, k * s : (k + 1) * s] = prob[j, m : m + s, m : m + s]
        valid = strip.core_valid
        if keep.size < n:  # windows without a valid pixel: no data
            skipped = np.ones(n, bool)
            skipped[keep] = False
            run = np.repeat(~skipped, s)[None, :]
            valid = run if valid is None else valid & run
        out = self._from_pixels(labels, valid, maxprob)
        out.windows = int(keep.size)
        return out


class RowsRule(Labeller):
    """Vegetation on a crop row is crop, between rows weed, in a part without rows vegetation."""

    def __init__(self, plan: Plan, grid: Grid) -> None:
        super().__init__(plan, grid)
        assert plan.vegetation is not None and plan.rows is not None
        self.veg: vi.Vegetation = plan.vegetation
        self.rows: rows_.Rows = plan.rows

    def label(self, strip: Strip, buffers: Buffers) -> Cells:
        g, s = self.grid, self.grid.stride
        veg = self.veg
        data = core(g, _bands(strip, veg.bands))
        plants = veg.plants(data, strip.core_valid)
        where = self.rows.label(strip.r * s, strip.c0 * s, *plants.shape)
        names = self.plan.class_names
        labels = np.full(plants.shape, self.soil, np.uint8)
        labels[plants & (where == rows_.ON)] = names.index("crop")
        labels[plants & (where == rows_.OFF)] = names.index("weed")
        labels[plants & (where == rows_.UNKNOWN)] = names.index("vegetation")
        return self._from_pixels(labels, strip.core_valid)


class IndexRule(Labeller):
    """Vegetation or soil, from the vegetation index alone."""

    def __init__(self, plan: Plan, grid: Grid) -> None:
        super().__init__(plan, grid)
        assert plan.vegetation is not None
        self.veg: vi.Vegetation = plan.vegetation

    def label(self, strip: Strip, buffers: Buffers) -> Cells:
        veg = self.veg
        data = core(self.grid, _bands(strip, veg.bands))
        plants = veg.plants(data, strip.core_valid)
        labels = np.where(plants, self.plan.class_names.index("vegetation"), self.soil)
        return self._from_pixels(labels.astype(np.uint8), strip.core_valid)


def labeller_for(plan: Plan, grid: Grid, to_model: Callable | None) -> Labeller:
    """The labeller of a plan: a model, the crop-row rule or the index rule."""
    if plan.method == "model":
        assert to_model is not None
        return (Segmenter if plan.segmentation else TileClassifier)(plan, grid, to_model)
    return RowsRule(plan, grid) if plan.method == "rows" else IndexRule(plan, grid)


class Buffers:
    """A worker's arrays, kept from strip to strip (the shorter last strip of each row has its
    own).

    A new multi-MB array per strip (hundreds of strips per orthomosaic) costs page faults, and
    unmapping it interrupts the other core, which is running the model: measured on 2 cores,
    reading took 3.7 s of a 8 s run with fresh arrays and 1.7 s with these. Memory stays flat
    because nothing is freed and reallocated."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype).str)
        a = self.arrays.get(key)
        if a is None:
            a = self.arrays[key] = np.empty(shape, dtype)
        return a


def _tiles(model_data: np.ndarray, grid: Grid, n: int, buffers: Buffers) -> np.ndarray:
    """The strip's n windows of `tile` pixels, `stride` apart, as a batch (N x C x T x T)."""
    s, t = grid.stride, grid.tile
    return np.stack(
        [model_data[:, :, k * s : k * s + t] for k in range(n)],
        out=buffers.get("tiles", (n, model_data.shape[0], t, t), model_data.dtype),
    )


def _window_share(valid: np.ndarray | None, grid: Grid, n: int) -> np.ndarray:
    """Share of valid pixels in each window's kept centre."""
    if valid is None:
        return np.ones(n)
    s = grid.stride
    return valid.reshape(s, n, s).sum(axis=(0, 2), dtype=np.int32) / float(s * s)


def _cell_mean(values: np.ndarray, valid: np.ndarray | None, cell: int) -> np.ndarray:
    h, w = values.shape
    hc, wc = h // cell, w // cell
    v = values[: hc * cell, : wc * cell]
    if valid is None:
        return block_sums(v, cell) / (cell * cell)
    ok = valid[: hc * cell, : wc * cell]
    num = block_sums(np.where(ok, v, 0), cell)
    den = block_sums(ok, cell, np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), 0.0)
