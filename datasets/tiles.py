"""Cut an image and its per-pixel class mask into labeled tiles, the way the pipeline sees them.

The pipeline classifies an image on the grid of vision/grid.py: cells of ``stride = tile_size -
overlap``, each classified from the ``tile_size`` window centred on it (``overlap / 2`` pixels of
context on each side, zero padded at the image edges). Training tiles are cut on the same `Grid`
object (a test checks that the pipeline reads the very same windows), and labeled only by the
mask pixels of the central ``stride x stride`` cell, so the label describes exactly the ground
the pipeline will paint with the prediction.

The label rule (``label_cell``):
  * pixels marked ``IGNORE`` (unlabeled, outside the image) do not count;
  * a cell with less than ``min_valid`` of its area labeled is dropped;
  * ``soil`` if plant (crop + weed) pixels are less than ``plant_min`` of the labeled pixels;
  * otherwise ``crop`` or ``weed``, whichever has more pixels in the cell (a tie goes to weed,
    the class a farmer must act on).

This module is NumPy only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from khet.vision.grid import MIN_VALID, PLANT_MIN, Grid

CLASS_NAMES: tuple[str, ...] = ("soil", "crop", "weed")
CLASS_COLORS: tuple[str, ...] = ("#8b6b4a", "#2e9e44", "#e0452b")
SOIL, CROP, WEED = 0, 1, 2
IGNORE = 255

__all__ = ["MIN_VALID", "PLANT_MIN"]  # the label rule's thresholds, defined in vision/grid.py


def label_rule_text(plant_min: float = PLANT_MIN, min_valid: float = MIN_VALID) -> str:
    """The rule in words, for bundle metadata and the model card."""
    return (
        "Each tile is labeled by the mask pixels of its central stride x stride cell only "
        "(stride = tile_size - overlap; the overlap/2 border is context). "
        f"soil if crop+weed pixels < {plant_min:.0%} of the cell's labeled pixels, else the "
        "majority of crop vs weed pixels (tie -> weed). "
        f"Cells with < {min_valid:.0%} labeled pixels are not used."
    )


def label_cell(
    cell: np.ndarray, plant_min: float = PLANT_MIN, min_valid: float = MIN_VALID
) -> int | None:
    """The class of one cell of a class mask (SOIL/CROP/WEED/IGNORE values), or None to drop it."""
    counts = np.bincount(cell.ravel(), minlength=256)
    crop, weed = int(counts[CROP]), int(counts[WEED])
    valid = int(counts[SOIL]) + crop + weed
    if valid == 0 or valid < min_valid * cell.size:
        return None
    if crop + weed < plant_min * valid:
        return SOIL
    return CROP if crop > weed else WEED


@dataclass
class TileSet:
    """Labeled tiles of one or more images; arrays are aligned on the first axis."""

    tiles: np.ndarray  # N x bands x tile x tile, uint8
    labels: np.ndarray  # N, int64 class index
    image_ids: np.ndarray  # N, str: the image each tile came from (for splits)
    plant_fraction: np.ndarray  # N, float32: crop+weed share of the central cell
    cells: np.ndarray  # N x 2, int32: (row, col) of the cell in its image's grid
    bands: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)

    def subset(self, index: np.ndarray) -> TileSet:
        return TileSet(
            self.tiles[index],
            self.labels[index],
            self.image_ids[index],
            self.plant_fraction[index],
            self.cells[index],
            self.bands,
        )

    def select_images(self, ids: list[str] | set[str]) -> TileSet:
        return self.subset(np.isin(self.image_ids, list(ids)))

    @staticmethod
    def concat(parts: list[TileSet]) -> TileSet:
        if not parts:
            raise ValueError("no tiles")
        return TileSet(
            np.concatenate([p.tiles for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.image_ids for p in parts]),
            np.concatenate([p.plant_fraction for p in parts]),
            np.concatenate([p.cells for p in parts]),
            parts[0].bands,
        )


def grid_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Cells covering the image (the last row/column may be partial)."""
    g = Grid(width, height, stride, 0)
    return g.rows, g.cols


def cut_tiles(
    image: np.ndarray,
    mask: np.ndarray,
    tile_size: int,
    overlap: int,
    image_id: str = "",
    bands: tuple[str, ...] = (),
    plant_min: float = PLANT_MIN,
    min_valid: float = MIN_VALID,
) -> TileSet:
    """Tiles of ``image`` (H x W x bands, uint8) labeled by ``mask`` (H x W class indices).

    Cell (r, c) is the pipeline's window (r, c): `Grid.window` gives where it is read, in image
    pixels (starting ``overlap / 2`` before the cell, padded with zeros past the edges).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    if overlap % 2 or overlap < 0 or overlap >= tile_size:
        raise ValueError("overlap must be even, >= 0 and < tile_size")
    h, w = mask.shape
    grid = Grid(w, h, tile_size, overlap)
    stride, half = grid.stride, grid.margin
    rows, cols = grid.window_rows, grid.window_cols
    ph, pw = rows * stride + overlap, cols * stride + overlap
    padded = np.zeros((ph, pw, image.shape[2]), dtype=np.uint8)
    padded[half : half + h, half : half + w] = image
    pmask = np.full((rows * stride, cols * stride), IGNORE, dtype=np.uint8)
    pmask[:h, :w] = mask
    tiles, labels, fracs, cells = [], [], [], []
    for r in range(rows):
        for c in range(cols):
            cell = pmask[r * stride : (r + 1) * stride, c * stride : (c + 1) * stride]
            label = label_cell(cell, plant_min, min_valid)
            if label is None:
                continue
            counts = np.bincount(cell.ravel(), minlength=256)
            valid = counts[SOIL] + counts[CROP] + counts[WEED]
            fracs.append((counts[CROP] + counts[WEED]) / valid)
            win = grid.window(r, c)  # in image pixels; the padded array starts `half` earlier
            y0, x0 = int(win.row_off) + half, int(win.col_off) + half
            tile = padded[y0 : y0 + tile_size, x0 : x0 + tile_size]
            tiles.append(np.ascontiguousarray(tile.transpose(2, 0, 1)))
            labels.append(label)
            cells.append((r, c))
    n = len(labels)
    nb = image.shape[2]
    return TileSet(
        np.stack(tiles) if n else np.zeros((0, nb, tile_size, tile_size), np.uint8),
        np.asarray(labels, dtype=np.int64),
        np.asarray([image_id] * n, dtype=object).astype(str),
        np.asarray(fracs, dtype=np.float32),
        np.asarray(cells, dtype=np.int32).reshape(n, 2),
        bands,
    )
