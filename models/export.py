"""ONNX export of a trained TileClassifier, bundle metadata, and static INT8 quantization.

A bundle is one self-contained .onnx file (no external data): input ``tiles`` uint8 NCHW with a
dynamic batch axis, output ``probs``; the uint8 -> float cast and normalisation are in the graph.
A segmentation bundle also outputs each pixel's ``classes`` and ``maxprob`` (see vision/bundle.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from khet.vision.bundle import CLASSES_NAME, INPUT_NAME, MAXPROB_NAME, OUTPUT_NAME

from khet.errors import ModelError, OutputError

OPSET = 17


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600; bundles and cards are meant to be shared
    return Path(name)


def set_metadata(model_proto: object, meta: Mapping[str, str]) -> None:
    """Replace the keys of ``meta`` in an ``onnx.ModelProto``'s metadata_props."""
    props = model_proto.metadata_props  # type: ignore[attr-defined]
    keep = [(p.key, p.value) for p in props if p.key not in meta]
    del props[:]
    for k, v in [*keep, *meta.items()]:
        entry = props.add()
        entry.key, entry.value = str(k), str(v)


def save_model(model_proto: object, path: Path) -> Path:
    """Write one .onnx file (no external data) atomically."""
    import onnx

    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        onnx.save_model(model_proto, str(tmp), save_as_external_data=False)  # type: ignore[arg-type]
        os.replace(tmp, path)
        record_in_manifest(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path} ({e.strerror}).") from e
    return path


def record_in_manifest(path: Path) -> None:
    """Keep `manifest.json` beside the bundles: the checksums a field device verifies against."""
    import json

    from khet.vision.bundle import file_sha256, read_metadata

    manifest = path.parent / "manifest.json"
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    bundles = data.setdefault("bundles", {})
    meta = read_metadata(path)
    # Name and version too: a device checks a copy of this bundle against it wherever it sits.
    bundles[path.name] = {
        "sha256": file_sha256(path),
        "name": meta.get("name"),
        "version": meta.get("version"),
    }
    for name in list(bundles):  # forget bundles that are gone
        if not (path.parent / name).is_file():
            del bundles[name]
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, manifest)


def update_metadata(path: Path, meta: Mapping[str, str]) -> None:
    """Set metadata properties of an ONNX file in place."""
    import onnx

    m = onnx.load_model(str(path))
    set_metadata(m, meta)
    save_model(m, path)


def read_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata properties; ModelError when it is not an ONNX model."""
    import onnx

    try:
        m = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path} is not an ONNX model ({e}).") from e
    return {p.key: p.value for p in m.metadata_props}


def add_class_outputs(model_proto: Any) -> None:
    """Give a segmentation graph (``probs`` N x classes x H x W) two more outputs: each pixel's
    likeliest class as uint8 (``classes``; ties to the lower class) and its probability
    (``maxprob``), both N x H x W. Idempotent."""
    from onnx import TensorProto, helper

    g = model_proto.graph
    if {o.name for o in g.output} >= {CLASSES_NAME, MAXPROB_NAME}:
        return
    opset = max(o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx"))
    g.node.extend(
        [
            helper.make_node("ArgMax", [OUTPUT_NAME], ["khet_argmax"], axis=1, keepdims=0),
            helper.make_node("Cast", ["khet_argmax"], [CLASSES_NAME], to=TensorProto.UINT8),
        ]
    )
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        g.initializer.append(helper.make_tensor("khet_class_axis", TensorProto.INT64, [1], [1]))
        g.node.append(
            helper.make_node(
                "ReduceMax", [OUTPUT_NAME, "khet_class_axis"], [MAXPROB_NAME], keepdims=0
            )
        )
    else:
        g.node.append(
            helper.make_node("ReduceMax", [OUTPUT_NAME], [MAXPROB_NAME], axes=[1], keepdims=0)
        )
    dims = ["n", "height", "width"]
    g.output.extend(
        [
            helper.make_tensor_value_info(CLASSES_NAME, TensorProto.UINT8, dims),
            helper.make_tensor_value_info(MAXPROB_NAME, TensorProto.FLOAT, dims),
        ]
    )


def export_onnx(model: Any, path: Path, meta: Mapping[str, str]) -> Path:
    """Export a ``TileClassifier`` or ``Segmenter`` (eval mode, CPU) to a single-file ONNX
    bundle. (`Any`: torch is imported only here, so `models` imports without it.)"""
    import onnx
    import torch

    model = model.eval()
    bands = int(model.scale.shape[1])
    size = int(meta["tile_size"])
    example = torch.zeros((2, bands, size, size), dtype=torch.uint8)
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}},
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load_model(str(tmp))
        if meta.get("kind") == "segmentation":
            add_class_outputs(proto)
        onnx.checker.check_model(proto)
        set_metadata(proto, meta)
        save_model(proto, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class _TileReader:
    """Feeds calibration tiles to onnxruntime.quantization in small batches."""

    def __init__(self, tiles: np.ndarray, batch: int = 32) -> None:
        self._batches = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {INPUT_NAME: np.ascontiguousarray(b)}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_int8(fp32_path: Path, int8_path: Path, calibration_tiles: np.ndarray) -> Path:
    """Static INT8 (QDQ, per-channel weights) calibrated on real training tiles."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_metadata(fp32_path)
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "pre.onnx"
        out = Path(d) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _TileReader(calibration_tiles),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        proto = onnx.load_model(str(out))
        set_metadata(proto, {**meta, "precision": "int8"})
        save_model(proto, int8_path)
    return int8_path
