"""Real-data folders for dataset tests: missing data fails the test, never skips it."""

from __future__ import annotations

from pathlib import Path

import pytest


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
