"""A field device installs the core dependencies only: no torch, no FastAPI, no SQLAlchemy.

`khet edge run` and `khet edge sync` run in a fresh interpreter where those packages cannot be
imported at all (as if not installed), and must still succeed without loading them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.edge.fakeservice import FakeService
from tests.vision.rasters import field_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
ABSENT = (
    "torch",
    "torchvision",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "huey",
    "redis",
    "psycopg",
    "jinja2",
    "weasyprint",
    "rio_tiler",
    "onnx",
)

_RUN = f"""
import sys
for name in {ABSENT!r}:
    sys.modules[name] = None  # `import name` now fails as if it were not installed
from khet.cli import main
rc = main(sys.argv[1:])
loaded = sorted({{m.split('.')[0] for m, v in sys.modules.items() if v is not None}}
                & set({ABSENT!r}))
print("LOADED", loaded)
sys.exit(rc)
"""


def _khet(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_edge_runs_and_syncs_with_core_dependencies_only(tmp_path, use_test_models):
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "field.tif", field_rgb(128, 160))
    out = tmp_path / "out"
    env = {**os.environ, "KHET_MODELS_DIR": str(use_test_models)}
    r = _khet(
        "edge",
        "run",
        str(src),
        "-o",
        str(out),
        "--field",
        "1",
        "--threads",
        "1",
        "--max-memory",
        "1024",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout
    assert (out / "field" / "summary.json").exists()

    fake = FakeService()
    try:
        r = _khet("edge", "sync", "-o", str(out), "--server", fake.url, "--token", "t0ken", env=env)
    finally:
        fake.close()
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout
    assert len(fake.flights) == 1
