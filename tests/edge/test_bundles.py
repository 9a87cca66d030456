"""The device runs only checked bundles: checksum (manifest), format version, precision."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from khet.edge import bundles
from khet.edge.journal import Journal
from khet.vision.bundle import file_sha256

from khet.cli import main
from tests.bundles import make_bundle
from tests.vision.rasters import field_rgb, write_geotiff


def _retag(path, **meta) -> None:
    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    props.update({k: str(v) for k, v in meta.items()})
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, path)


@pytest.fixture
def models(tmp_path, monkeypatch):
    d = tmp_path / "models"
    make_bundle(d / "rgb.onnx", name="rgb")
    monkeypatch.setenv("KHET_MODELS_DIR", str(d))
    from khet.settings import get_settings

    get_settings.cache_clear()
    return d


@pytest.fixture
def image(tmp_path):
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "f.tif", field_rgb(96, 96))
    return src


def _run(image, tmp_path, *extra) -> int:
    return main(["edge", "run", str(image), "-o", str(tmp_path / "out"), *extra])


def test_manifest_checksum(models, image, tmp_path, capsys):
    good = file_sha256(models / "rgb.onnx")
    (models / "manifest.json").write_text(json.dumps({"rgb.onnx": {"sha256": good}}))
    assert _run(image, tmp_path) == 0
    assert "by manifest" in capsys.readouterr().err
    (models / "manifest.json").write_text(json.dumps({"rgb.onnx": "0" * 64}))
    assert _run(image, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("khet: Model rgb.onnx is damaged or not the expected file")
    assert len(err.strip().splitlines()) == 1


def test_sidecar_checksum_and_explicit(models, image, tmp_path, capsys):
    (models / "rgb.onnx.sha256").write_text("f" * 64 + "  rgb.onnx\n")
    assert _run(image, tmp_path) == 2
    assert "damaged or not the expected file" in capsys.readouterr().err
    good = file_sha256(models / "rgb.onnx")
    assert _run(image, tmp_path, "--model", "rgb", "--model-sha256", good.upper()) == 0
    assert _run(image, tmp_path, "--model", "rgb", "--model-sha256", "abc") == 2
    assert "64 hexadecimal" in capsys.readouterr().err


def test_trust_on_first_use(models, image, tmp_path, capsys):
    assert _run(image, tmp_path) == 0
    assert "by first use" in capsys.readouterr().err
    with Journal(tmp_path / "out") as j:
        assert j.trusted_sha256("rgb.onnx") == file_sha256(models / "rgb.onnx")
    make_bundle(models / "rgb.onnx", name="rgb", weights=None, tile_size=16)  # swapped file
    assert _run(image, tmp_path) == 2
    assert "first use says" in capsys.readouterr().err


def test_format_version_checked(models, image, tmp_path, capsys):
    _retag(models / "rgb.onnx", khet_format="9")
    assert _run(image, tmp_path) == 2
    assert "has bundle format 9; this Khet reads format 1 or 2" in capsys.readouterr().err


def test_runs_the_verified_copy(models, image, tmp_path):
    out = tmp_path / "out"
    assert _run(image, tmp_path) == 0
    summary = json.loads((out / "f" / "summary.json").read_text())
    assert summary["model"]["sha256"] == file_sha256(models / "rgb.onnx")
    assert (out / ".khet-edge" / "models" / "rgb.onnx").exists()


@pytest.mark.parametrize(
    ("f1_fp32", "f1_int8", "want"),
    [
        (0.80, 0.795, "int8"),  # within a point: smaller and faster wins
        (0.80, 0.75, "fp32"),  # INT8 lost too much
        (None, 0.80, "fp32"),  # nothing to compare: the safe choice
    ],
)
def test_precision_from_card(models, image, tmp_path, f1_fp32, f1_int8, want):
    shutil.copy(models / "rgb.onnx", models / "rgb-int8.onnx")
    _retag(models / "rgb.onnx", metrics=json.dumps({"macro_f1": f1_fp32} if f1_fp32 else {}))
    _retag(
        models / "rgb-int8.onnx",
        precision="int8",
        name="rgb-int8",
        metrics=json.dumps({"macro_f1": f1_int8}),
    )
    with Journal(tmp_path / "out") as j:
        chosen = bundles.select(None, tmp_path / "priv", j)
    assert [c.info.precision for c in chosen] == [want]
    assert [p.name for p in (tmp_path / "priv").glob("*.onnx")] == [chosen[0].path.name]
    with Journal(tmp_path / "out") as j:
        forced = bundles.select(None, tmp_path / "priv", j, precision="fp32")
    assert forced[0].info.precision == "fp32"
    assert _run(image, tmp_path) == 0
    summary = json.loads((tmp_path / "out" / "f" / "summary.json").read_text())
    assert summary["model"]["precision"] == want


def test_no_bundles(tmp_path, monkeypatch, image, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("KHET_MODELS_DIR", str(tmp_path / "empty"))
    from khet.settings import get_settings

    get_settings.cache_clear()
    assert _run(image, tmp_path) == 2
    assert "No model bundles found" in capsys.readouterr().err


def test_shipped_bundles_for_other_imagery_all_run(tmp_path, monkeypatch, shared_data):
    """The shipped RGB models for close-range photos and for drone imagery are both kept (they
    hold at different ground sample distances); a drone tile is mapped by the drone model, as
    `khet analyze` maps it, not by the close-range one or by the index alone."""
    import cv2
    from khet.models.segment import _write_geotiff
    from khet.vision.bundle import shipped_bundles_dir

    from khet.settings import get_settings

    monkeypatch.setenv("KHET_MODELS_DIR", str(shipped_bundles_dir()))
    get_settings.cache_clear()
    with Journal(tmp_path / "out") as j:
        chosen = bundles.select(None, tmp_path / "priv", j)
    names = sorted(c.info.name for c in chosen)
    assert names == ["khet-rednir-cwfid", "khet-rgb-carrotweed", "khet-rgb-uav"]
    card = tmp_path / "card"
    card.mkdir()
    rgb = cv2.cvtColor(
        cv2.imread(str(shared_data / "uav_potato" / "images" / "tile_13_2.jpg")), cv2.COLOR_BGR2RGB
    )
    _write_geotiff(card / "potato.tif", rgb, 0.003)  # 3 mm per pixel, a projected CRS
    assert _run(card, tmp_path, "--threads", "1") == 0
    summary = json.loads((tmp_path / "out" / "potato" / "summary.json").read_text())
    assert summary["method"] == "model" and summary["model"]["name"] == "khet-rgb-uav"
