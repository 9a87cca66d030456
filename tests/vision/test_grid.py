"""Per-cell counts and means of a strip, against a plain loop over the cells."""

import math

import numpy as np
import pytest
from khet.vision.grid import block_sums, cell_counts
from khet.vision.labelling import _cell_mean


def _cell(a, valid, i, j, cell):
    """Cell (i, j) of `a` and its validity, cut out directly."""
    rows, cols = slice(i * cell, (i + 1) * cell), slice(j * cell, (j + 1) * cell)
    block = a[rows, cols]
    return block, np.ones(block.shape, bool) if valid is None else valid[rows, cols]


@pytest.mark.parametrize("cell", [4, 32])
@pytest.mark.parametrize("masked", [False, True])
def test_cell_counts_and_means_are_those_of_each_cell(cell, masked):
    rng = np.random.default_rng(cell)
    h, w = 3 * cell + cell // 2, 5 * cell + 3  # sides that are not whole cells
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    valid = rng.random((h, w)) > 0.3 if masked else None
    counts = cell_counts(labels, valid, cell, 3)
    assert counts.shape == (math.ceil(h / cell), math.ceil(w / cell), 3)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            block, ok = _cell(labels, valid, i, j, cell)
            assert counts[i, j].tolist() == [int((ok & (block == k)).sum()) for k in range(3)]

    probs = rng.random((h, w)).astype(np.float32)
    means = _cell_mean(probs, valid, cell)
    assert means.shape == (h // cell, w // cell)  # whole cells only
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            block, ok = _cell(probs, valid, i, j, cell)
            want = block[ok].mean() if ok.any() else 0.0
            assert means[i, j] == pytest.approx(want, abs=1e-5)


def test_block_sums_of_a_large_cell_do_not_overflow():
    ones = np.ones((512, 1024), bool)
    assert block_sums(ones, 512, np.int32).tolist() == [[512 * 512, 512 * 512]]
