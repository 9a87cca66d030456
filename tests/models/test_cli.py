"""The train/export/evaluate commands: registered, lazy about torch, one-line user errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from khet.cli import build_parser, main


def test_commands_registered():
    parser = build_parser()
    args = parser.parse_args(["train", "--dataset", "cwfid", "--data", "x"])
    assert args.func.__name__ == "_train" and args.tile_size == 128 and args.overlap == 32
    assert parser.parse_args(["evaluate", "m.onnx", "--dataset", "cwfid", "--data", "x"]).func
    assert parser.parse_args(["export", "c.pt", "-o", "m.onnx"]).func


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom khet.cli import build_parser\nbuild_parser().format_help()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_data_folder_is_a_user_error(tmp_path, capsys):
    rc = main(
        ["train", "--dataset", "cwfid", "--data", str(tmp_path / "nope"), "-o", str(tmp_path)]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("khet: ") and len(err.splitlines()) == 1


def test_bad_tile_geometry_is_a_user_error(tmp_path, capsys):
    rc = main(["train", "--dataset", "cwfid", "--data", str(tmp_path), "--overlap", "20"])
    assert rc == 2 and "multiple of 16" in capsys.readouterr().err


def test_evaluate_missing_model(tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path / "m.onnx"), "--dataset", "cwfid", "--data", str(tmp_path)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("weights", ["1,2", "1,x,2", "1,0,2"])
def test_bad_class_weights_are_a_usage_error(tmp_path, capsys, weights):
    with pytest.raises(SystemExit) as e:  # argparse: usage errors exit 2
        main(["train", "--dataset", "labelme", "--data", str(tmp_path), "--class-weights", weights])
    assert e.value.code == 2
    assert "three positive weights for soil,crop,weed" in capsys.readouterr().err


@pytest.mark.parametrize("weight", ["-1", "x", "nan"])
def test_bad_dice_weight_is_a_usage_error(tmp_path, capsys, weight):
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "labelme", "--data", str(tmp_path), "--dice-weight", weight])
    assert e.value.code == 2 and "from 0 (none) to 100" in capsys.readouterr().err
