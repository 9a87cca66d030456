"""The label rule and the tile geometry the pipeline relies on."""

from __future__ import annotations

import numpy as np
import pytest
from khet.datasets.tiles import (
    CROP,
    IGNORE,
    PLANT_MIN,
    SOIL,
    WEED,
    cut_tiles,
    grid_shape,
    label_cell,
    label_rule_text,
)


def _cell(n_crop: int, n_weed: int, size: int = 10, n_ignore: int = 0) -> np.ndarray:
    flat = np.full(size * size, SOIL, dtype=np.uint8)
    flat[:n_crop] = CROP
    flat[n_crop : n_crop + n_weed] = WEED
    if n_ignore:
        flat[-n_ignore:] = IGNORE
    return flat.reshape(size, size)


def test_soil_below_threshold():
    assert label_cell(_cell(0, 0)) == SOIL
    assert label_cell(_cell(2, 2), plant_min=0.05) == SOIL  # 4 % plant


def test_plant_at_threshold_takes_majority():
    assert label_cell(_cell(3, 2), plant_min=0.05) == CROP  # 5 %: plant, crop majority
    assert label_cell(_cell(1, 4), plant_min=0.05) == WEED
    assert label_cell(_cell(30, 31)) == WEED


def test_tie_goes_to_weed():
    assert label_cell(_cell(5, 5)) == WEED


def test_threshold_counts_only_labeled_pixels():
    # 4 plant pixels of 50 labeled = 8 % -> plant, although 4 % of the whole cell.
    assert label_cell(_cell(4, 0, n_ignore=50), plant_min=0.05, min_valid=0.5) == CROP
    # Under half labeled: dropped.
    assert label_cell(_cell(4, 0, n_ignore=51), min_valid=0.5) is None


def test_default_threshold_and_text():
    assert PLANT_MIN == 0.05
    text = label_rule_text()
    assert "5%" in text and "central" in text and "majority" in text


def test_tiles_are_centred_on_cells_with_zero_padding():
    h, w, tile, overlap = 40, 56, 24, 8
    stride = tile - overlap
    image = np.arange(h * w, dtype=np.int64).reshape(h, w) % 251 + 1  # never 0
    image = image.astype(np.uint8)[:, :, None]
    mask = np.zeros((h, w), np.uint8)
    mask[16:32, 16:32] = CROP  # exactly cell (1, 1)
    ts = cut_tiles(image, mask, tile, overlap, image_id="a", min_valid=0.5)
    rows, cols = grid_shape(h, w, stride)
    assert (rows, cols) == (3, 4)
    # The last row and column cover half a cell (50 %): kept; the corner (25 %) is dropped.
    assert len(ts) == rows * cols - 1
    assert [2, 3] not in ts.cells.tolist()
    assert ts.tiles.shape == (len(ts), 1, tile, tile) and ts.tiles.dtype == np.uint8
    k = {tuple(c): i for i, c in enumerate(ts.cells.tolist())}
    assert ts.labels[k[(1, 1)]] == CROP
    assert ts.labels[k[(0, 0)]] == SOIL and ts.labels[k[(1, 2)]] == SOIL
    # Tile of cell (1, 1) starts overlap/2 before the cell.
    half = overlap // 2
    np.testing.assert_array_equal(
        ts.tiles[k[(1, 1)], 0], image[16 - half : 16 - half + tile, 16 - half : 16 - half + tile, 0]
    )
    # Tile of cell (0, 0) is zero padded on the top and left.
    t00 = ts.tiles[k[(0, 0)], 0]
    assert (t00[:half] == 0).all() and (t00[:, :half] == 0).all() and (t00[half:, half:] > 0).all()
    assert ts.plant_fraction[k[(1, 1)]] == pytest.approx(1.0)


def test_partial_edge_cells_below_min_valid_are_dropped():
    image = np.ones((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    ts = cut_tiles(image, mask, 24, 8)  # stride 16: last cells cover 4/16 rows -> dropped
    assert len(ts) == 1


def test_bad_overlap_rejected():
    with pytest.raises(ValueError):
        cut_tiles(np.zeros((8, 8, 1), np.uint8), np.zeros((8, 8), np.uint8), 8, 3)


def test_training_tiles_are_the_windows_the_pipeline_classifies(tmp_path):
    """Train/serve skew, checked: the pipeline's StripReader reads, for every cell, exactly the
    pixels that `cut_tiles` gives the model in training (same window, same zero padding)."""
    from khet.vision.grid import Grid
    from khet.vision.labelling import Buffers, _tiles
    from khet.vision.scene import open_scene

    from tests.vision.rasters import field_rgb, write_geotiff

    img = field_rgb(200, 250)  # not a multiple of the stride: partial cells at the edges
    path = write_geotiff(tmp_path / "f.tif", img)
    mask = np.zeros(img.shape[1:], np.uint8)
    ts = cut_tiles(np.moveaxis(img, 0, -1), mask, 64, 16, min_valid=0.0)
    grid = Grid(250, 200, 64, 16)
    with open_scene(path) as scene:
        seen = {}
        for r in range(grid.window_rows):
            data, _ = scene.read(grid.strip(r, 0, grid.window_cols), ["red", "green", "blue"])
            batch = _tiles(data, grid, grid.window_cols, Buffers())
            for c in range(grid.window_cols):
                seen[(r, c)] = batch[c]
    assert len(ts) == grid.window_rows * grid.window_cols
    for (r, c), tile in zip(map(tuple, ts.cells), ts.tiles, strict=True):
        assert np.array_equal(tile, seen[(r, c)]), (r, c)
