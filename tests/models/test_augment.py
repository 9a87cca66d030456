"""Augmentation keeps dtype, shape and band count; rotations and flips are exact."""

from __future__ import annotations

import torch
from khet.models.augment import BandJitter, RandomRot90, train_transform


def test_train_transform_any_band_count():
    torch.manual_seed(0)
    tf = train_transform()
    for bands in (2, 3, 5):
        x = torch.randint(0, 256, (bands, 32, 32), dtype=torch.uint8)
        y = tf(x)
        assert y.shape == x.shape and y.dtype == torch.uint8
        yb = tf(torch.stack([x, x]))
        assert yb.shape == (2, bands, 32, 32)


def test_rot90_is_exact_and_covers_all_turns():
    torch.manual_seed(0)
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    seen = set()
    for _ in range(40):
        y = RandomRot90()(x)
        k = next(k for k in range(4) if torch.equal(y, torch.rot90(x, k, (-2, -1))))
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_band_jitter_limits():
    torch.manual_seed(0)
    x = torch.full((2, 8, 8), 100, dtype=torch.uint8)
    y = BandJitter(brightness=0.2, contrast=0.2)(x)
    assert 79 <= int(y.float().mean()) <= 121
    assert BandJitter(0.0, 0.0)(x).equal(x)
