"""Architectures: first conv sized to the bands, probabilities out, uint8 in."""

from __future__ import annotations

import pytest
import torch
from khet.models.nets import ARCHITECTURES, TileClassifier


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("bands", [2, 3])
def test_uint8_in_probabilities_out(arch, bands):
    torch.manual_seed(0)
    m = TileClassifier(arch, bands, 3).eval()
    x = torch.randint(0, 256, (2, bands, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        p = m(x)
    assert p.shape == (2, 3)
    torch.testing.assert_close(p.sum(1), torch.ones(2))


def test_normalisation_is_inside_the_model():
    m = TileClassifier("mobilenet_v3_small", 2, 3, mean=[0.2, 0.4], std=[0.1, 0.2])
    x = torch.full((1, 2, 1, 1), 51, dtype=torch.uint8)  # 0.2 in [0, 1]
    y = x.float() * m.scale + m.shift
    torch.testing.assert_close(y.flatten(), torch.tensor([0.0, (0.2 - 0.4) / 0.2]))


def test_unknown_architecture():
    with pytest.raises(ValueError):
        TileClassifier("vgg", 3, 3)
