"""The inference path runs on ONNX Runtime alone: vision, edge and service never import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"torch", "torchvision"}


@pytest.mark.parametrize("folder", ["vision", "edge", "service"])
def test_no_torch_import_in_source(folder):
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{path} imports {n}"


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_vision_never_imports_upper_layers():
    for path in (ROOT / "vision").rglob("*.py"):
        for n in _imports(path):
            assert not n.startswith(
                ("khet.models", "khet.service", "khet.edge", "khet.datasets")
            ), f"{path} imports {n}"


def test_datasets_need_neither_models_nor_torch():
    """Loading labelled data is below training: a device or a labelling tool can use it."""
    for path in (ROOT / "datasets").rglob("*.py"):
        for n in _imports(path):
            assert not n.startswith("khet.models"), f"{path} imports {n}"
            assert n.split(".")[0] not in FORBIDDEN, f"{path} imports {n}"


def test_analyze_runs_without_torch_loaded(tmp_path, use_test_models):
    """Run a real analysis in a fresh interpreter and check torch never got imported."""
    code = (
        "import sys\n"
        "from khet.cli import main\n"
        "rc = main(['analyze', 'tests/fixtures/micasense_crop', '-o', "
        f"{str(tmp_path / 'out')!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "print('LOADED', loaded)\n"
        "sys.exit(rc)\n"
    )
    import os

    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout
