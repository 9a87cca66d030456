"""Fixtures for the edge runner: a folder of captures as an SD card would hold them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
MICASENSE = ROOT / "tests" / "fixtures" / "micasense_crop"


@pytest.fixture
def card(tmp_path) -> Path:
    """Two orthomosaic tiles (one in a sub-folder), a 5-band MicaSense capture, a broken file."""
    d = tmp_path / "card"
    (d / "DCIM" / "100").mkdir(parents=True)
    write_geotiff(d / "ortho_a.tif", field_rgb(256, 320, seed=1))
    write_geotiff(d / "DCIM" / "100" / "ortho_b.tif", field_rgb(192, 256, seed=2))
    shutil.copytree(MICASENSE, d / "DCIM" / "101", ignore=shutil.ignore_patterns("LICENSE"))
    (d / "broken.tif").write_bytes(b"II*\x00not really a tiff")
    return d


@pytest.fixture
def edge_env(use_test_models, monkeypatch) -> Path:
    """Tiny bundles, and a settings cache that sees them."""
    return use_test_models
