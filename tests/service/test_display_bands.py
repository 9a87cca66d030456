"""The imagery tiles show an image in the bands its preview does (vision/maps.display_bands):
decided once, on the analysis side."""

from __future__ import annotations

import numpy as np
import pytest
from khet.service.flights import imagery_info
from khet.vision.maps import display_bands
from khet.vision.scene import open_scene

from tests.vision.rasters import write_geotiff


@pytest.mark.parametrize(
    "bands, shown",
    [
        (["red", "green", "blue"], ["red", "green", "blue"]),
        (["blue", "green", "red", "nir", "rededge"], ["red", "green", "blue"]),
        (["green", "red", "nir"], ["nir", "red", "green"]),
        (["nir", "green", "blue"], ["nir", "green", "blue"]),  # a near-infrared camera's own
        (["nir", "red"], ["nir", "red", "red"]),
    ],
)
def test_tiles_and_preview_show_the_same_bands(tmp_path, bands, shown):
    assert display_bands(bands) == shown
    data = np.random.default_rng(0).integers(0, 255, (len(bands), 64, 64), dtype=np.uint8)
    path = write_geotiff(tmp_path / "x.tif", data)
    with open_scene(path, bands=bands) as scene:
        info = imagery_info(scene)
    assert info["tileable"] and info["bands"] == shown
    assert info["indexes"] == [bands.index(b) + 1 for b in shown]
