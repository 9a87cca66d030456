"""Tiny model bundles built in code, so vision tests run without torch or trained models.

The graph is honest arithmetic on the pixels: it averages each band over the tile and scores the
classes by a fixed linear map, e.g. "plant" when NIR (or green) outweighs red. Good enough to check
that the pipeline routes tiles, classes and metadata correctly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from khet.vision.bundle import BundleInfo, ClassInfo
from onnx import TensorProto, helper, numpy_helper

CLASSES = (ClassInfo("soil", "#8b6b4a"), ClassInfo("crop", "#2e9e44"), ClassInfo("weed", "#e0452b"))


def make_bundle(
    path: Path,
    bands: tuple[str, ...] = ("red", "green", "blue"),
    tile_size: int = 32,
    overlap: int = 0,
    weights: np.ndarray | None = None,
    name: str = "test-bundle",
    dtype: str = "uint8",
) -> Path:
    nb = len(bands)
    if weights is None:
        # Scores: soil = red, crop = the band after red (green or nir), weed = mean of all.
        weights = np.zeros((nb, 3), np.float32)
        weights[bands.index("red") if "red" in bands else 0, 0] = 1.0
        plant = (
            bands.index("nir")
            if "nir" in bands
            else (bands.index("green") if "green" in bands else 0)
        )
        weights[plant, 1] = 1.0
        weights[:, 2] = 0.9 / nb
    w = numpy_helper.from_array((weights * 0.05).astype(np.float32), "W")
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.UINT16
    nodes = [
        helper.make_node("Cast", ["tiles"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    graph = helper.make_graph(
        nodes,
        "khet-test",
        [helper.make_tensor_value_info("tiles", elem, ["N", nb, tile_size, tile_size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    info = BundleInfo(
        name=name,
        version="0.0.1",
        classes=CLASSES,
        bands=tuple(bands),
        tile_size=tile_size,
        overlap=overlap,
        dtype=dtype,
        label_rule="test rule",
        training_data="none (test bundle)",
    )
    for k, v in info.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def make_segmentation_bundle(
    path: Path,
    bands: tuple[str, ...] = ("red", "green", "blue"),
    tile_size: int = 64,
    overlap: int = 16,
    gsd_m: float | None = 0.01,
    gsd_range_m: tuple[float, float] | None = (0.004, 0.03),
    name: str = "test-seg",
    class_outputs: bool = False,
    crops: tuple[str, ...] = (),
) -> Path:
    """A per-pixel bundle: 1 x 1 convolution of the bands then softmax. Soil scores red, crop
    scores green over red and blue (excess green), weed never wins: a plant/soil segmenter."""
    nb = len(bands)
    w = np.zeros((3, nb, 1, 1), np.float32)
    r, g = bands.index("red"), bands.index("green")
    w[0, r], w[1, g], w[1, r] = 0.1, 0.2, -0.1
    if "blue" in bands:
        w[1, bands.index("blue")] = -0.1
    nodes = [
        helper.make_node("Cast", ["tiles"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["f", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "khet-test-seg",
        [
            helper.make_tensor_value_info(
                "tiles", TensorProto.UINT8, ["N", nb, tile_size, tile_size]
            )
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3, tile_size, tile_size])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    info = BundleInfo(
        name=name,
        version="0.0.1",
        classes=CLASSES,
        bands=tuple(bands),
        tile_size=tile_size,
        overlap=overlap,
        gsd_m=gsd_m,
        gsd_range_m=gsd_range_m,
        kind="segmentation",
        crops=crops,
        label_rule="test rule",
        training_data="none (test bundle)",
    )
    for k, v in info.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if class_outputs:  # `classes` and `maxprob` in the graph, as Khet's own exports have
        from khet.models.export import add_class_outputs

        add_class_outputs(model)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path
