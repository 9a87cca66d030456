"""The grid a field map is made on, shared by inference and training.

The scene is analysed at a *working* ground sample distance (a model's own GSD, or the scene's):
the working image is the scene resampled by `zoom` working pixels per scene pixel. On it:

- the map is a grid of square **cells** of `cell` working pixels (one pixel of classes.tif);
- a model runs on **windows** of `tile` pixels whose central `stride = tile - overlap` pixels are
  kept (the `overlap / 2` border on each side is context; edges are padded with zeros). Window
  (r, c) covers the cells of rows `r * stride .. (r + 1) * stride`; `cell` divides `stride`.

A tile classifier gives one class per window, so its cell is the stride; a segmentation network
or a rule gives a class per pixel, aggregated into cells by the label rule below (the same rule
that labels training tiles, so a map and a model card mean the same thing by "weed").

The label rule (`cell_class`):
  * pixels outside the image, nodata or outside the field boundary do not count, and a cell with
    less than `MIN_VALID` of its area valid is no data;
  * soil if plant pixels are less than `PLANT_MIN` of the valid pixels;
  * otherwise the plant class with the most pixels (a tie between crop and weed goes to weed, the
    class a farmer must act on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

#: Plant share of a cell below which the cell is soil: 5 % of a cell is a seedling leaf or two at
#: millimetre GSD, more than mask-edge noise.
PLANT_MIN = 0.05
#: Share of a cell that must hold valid pixels (inside the image, the field, the data mask).
MIN_VALID = 0.5
NODATA = 255


@dataclass(frozen=True)
class Grid:
    """Cells and windows over a working image of `width` x `height` pixels."""

    width: int
    height: int
    tile: int
    overlap: int
    cell: int = 0  # 0: one cell per window (a tile classifier)

    def __post_init__(self) -> None:
        if self.cell == 0:
            object.__setattr__(self, "cell", self.stride)
        if self.stride <= 0 or self.overlap % 2 or self.stride % self.cell:
            raise ValueError(
                f"tile {self.tile}, overlap {self.overlap}, cell {self.cell}: the overlap must be "
                "even and smaller than the tile, and the cell must divide the stride"
            )

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def margin(self) -> int:
        return self.overlap // 2

    @property
    def per_window(self) -> int:
        """Cells along one side of a window's kept centre."""
        return self.stride // self.cell

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.cell)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.cell)

    @property
    def window_rows(self) -> int:
        return math.ceil(self.height / self.stride)

    @property
    def window_cols(self) -> int:
        return math.ceil(self.width / self.stride)

    def strip(self, r: int, c0: int, n: int) -> Window:
        """The working-pixel window read for windows (r, c0) .. (r, c0 + n - 1): `n` windows of
        `tile` pixels, `stride` apart, side by side."""
        s, m = self.stride, self.margin
        return Window(c0 * s - m, r * s - m, n * s + self.overlap, self.tile)

    def window(self, r: int, c: int) -> Window:
        return self.strip(r, c, 1)


def cell_counts(
    labels: np.ndarray, valid: np.ndarray | None, cell: int, classes: int
) -> np.ndarray:
    """Pixels of each class per cell: (h / cell) x (w / cell) x classes, int32, from an h x w
    label block (h and w are padded up to whole cells; pixels not `valid` do not count)."""
    h, w = labels.shape
    hc, wc = math.ceil(h / cell), math.ceil(w / cell)
    lab = np.full((hc * cell, wc * cell), classes, np.uint8)
    lab[:h, :w] = np.where(valid, labels, classes) if valid is not None else labels
    out = np.empty((hc, wc, classes), np.int32)
    for k in range(classes):
        out[..., k] = block_sums(lab == k, cell, np.int32)
    return out


def block_sums(a: np.ndarray, cell: int, dtype=None) -> np.ndarray:
    """Sums over the `cell` x `cell` blocks of a 2-D array whose sides are whole cells.

    Rows of a block first (a reduction along contiguous memory), then columns: four to five
    times faster than one `sum(axis=(1, 3))` over the blocks' strided view, which per strip of
    windows was a tenth of the labelling work beside the model."""
    hc, wc = a.shape[0] // cell, a.shape[1] // cell
    rows = np.add.reduce(a.reshape(hc, cell, wc * cell), axis=1, dtype=dtype)
    return rows.reshape(hc, wc, cell).sum(axis=2, dtype=dtype)


def cell_class(counts: np.ndarray, soil: int, weed: int | None, cell_pixels: int) -> np.ndarray:
    """The label rule on per-cell class counts (... x classes): class index, NODATA where less
    than MIN_VALID of the cell is valid."""
    valid = counts.sum(axis=-1)
    plant = counts.copy()
    plant[..., soil] = 0
    plant_total = plant.sum(axis=-1)
    best = _argmax_prefer(plant, weed)
    out = np.where(plant_total < PLANT_MIN * np.maximum(valid, 1), soil, best).astype(np.uint8)
    out[valid < MIN_VALID * cell_pixels] = NODATA
    return out


def _argmax_prefer(counts: np.ndarray, prefer: int | None) -> np.ndarray:
    """argmax over the last axis, ties going to `prefer` (else to the first maximum)."""
    best = counts.argmax(axis=-1)
    if prefer is None:
        return best
    top = counts.max(axis=-1)
    return np.where(counts[..., prefer] == top, prefer, best)
