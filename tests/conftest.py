"""Fixtures every test folder shares.

Real data lives in ../shared/data (or $KHET_SHARED_DATA). A test that needs it gets the
`shared_data` fixture, which fails, never skips, when the data is missing: CI must not go green
by silently leaving out the real-data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bundles import make_bundle

ROOT = Path(__file__).resolve().parent.parent


def _shared_data() -> Path:
    return Path(os.environ.get("KHET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data()
    if not (path / "micasense_rededge").is_dir():
        pytest.fail(
            f"Real field data not found at {path}: set KHET_SHARED_DATA or provide ../shared/data"
        )
    return path


@pytest.fixture(scope="session")
def cwfid_root(shared_data: Path) -> Path:
    root = shared_data / "cwfid"
    if not (root / "train_test_split.yaml").is_file():
        pytest.fail(f"CWFID not found at {root}")
    return root


@pytest.fixture(scope="session")
def carrot_weed_root(shared_data: Path) -> Path:
    root = shared_data / "carrot_weed"
    if not (root / "masks").is_dir():
        pytest.fail(f"Carrot-Weed not found at {root}")
    return root


@pytest.fixture(scope="session")
def test_models(tmp_path_factory) -> Path:
    """A folder with tiny RGB and red+NIR bundles (built in code, no torch)."""
    d = tmp_path_factory.mktemp("models")
    make_bundle(
        d / "test-rgb.onnx",
        bands=("red", "green", "blue"),
        tile_size=32,
        overlap=0,
        name="test-rgb",
    )
    make_bundle(
        d / "test-rednir.onnx", bands=("red", "nir"), tile_size=32, overlap=0, name="test-rednir"
    )
    return d


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path, request):
    """Each test gets its own data folder; settings are re-read from the environment."""
    from khet.settings import get_settings

    monkeypatch.setenv("KHET_DATA_DIR", str(tmp_path / "khet-data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def use_test_models(monkeypatch, test_models) -> Path:
    """Point the pipeline at the tiny bundles instead of the shipped ones."""
    from khet.settings import get_settings

    monkeypatch.setenv("KHET_MODELS_DIR", str(test_models))
    get_settings.cache_clear()
    return test_models


@pytest.fixture(autouse=True)
def _restore_float_state():
    """Training flushes subnormal floats (process-wide CPU state); later tests must not inherit
    it (hypothesis, used by schemathesis, refuses to run without subnormals)."""
    yield
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
