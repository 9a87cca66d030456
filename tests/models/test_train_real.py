"""Reduced training on real CWFID tiles, then ONNX export checked against torch.

A few epochs on a subset of the official train images: the loss must fall and the model must
beat chance by a wide margin on held-out images. The same trained model is exported and run in
ONNX Runtime on real tiles: probabilities agree with torch to 1e-4, with the same argmax.
The full training is `khet train`, not a test.
"""

from __future__ import annotations

import numpy as np
import pytest
from khet.datasets.tiles import SOIL
from khet.models.evaluate import onnx_predict, onnx_session, scores, soil_vs_plant
from khet.models.export import export_onnx, read_metadata
from khet.models.train import (
    TrainConfig,
    bundle_metadata,
    predict_torch,
    prepare,
    save_checkpoint,
    train_model,
)
from khet.vision.bundle import INPUT_NAME, OUTPUT_NAME, BundleInfo

from khet.cli import main


@pytest.fixture(scope="module")
def trained(cwfid_root):
    cfg = TrainConfig(
        dataset="cwfid",
        data=cwfid_root,
        max_images=8,
        epochs=4,
        patience=4,
        epoch_tiles=768,
        batch_size=64,
        lr=3e-3,
        seed=0,
        val_fraction=0.25,
    )
    prep = prepare(cfg, log=lambda m: None)
    model, info = train_model(cfg, prep, log=lambda m: None)
    return cfg, prep, model, info


def test_loss_falls_and_beats_chance(trained):
    cfg, prep, model, info = trained
    losses = [h["loss"] for h in info["history"]]
    assert losses[-1] < losses[0] - 0.1, losses
    pred = predict_torch(model, prep.test.tiles).argmax(1)
    s = scores(prep.test.labels, pred)
    sp = scores(soil_vs_plant(prep.test.labels), soil_vs_plant(pred), ("soil", "plant"))
    # Chance (always soil) gives soil-vs-plant macro-F1 ~0.43 and 3-class ~0.29.
    assert sp["macro_f1"] > 0.75, sp
    assert s["macro_f1"] > 0.5, s
    assert (pred != SOIL).any()


def test_onnx_matches_torch_on_real_tiles(trained, tmp_path):
    cfg, prep, model, info = trained
    meta = bundle_metadata(cfg, prep, info)
    path = export_onnx(model, tmp_path / "b.onnx", meta)
    assert not list(tmp_path.glob("*.data"))  # one file, no external data
    tiles = prep.test.tiles[:96]
    ref = predict_torch(model, tiles)
    sess = onnx_session(path)
    (inp,) = sess.get_inputs()
    assert inp.name == INPUT_NAME and inp.type == "tensor(uint8)"
    assert sess.get_outputs()[0].name == OUTPUT_NAME
    for batch in (1, 7, 96):  # dynamic batch axis
        got = onnx_predict(sess, tiles[:batch], batch=batch)
        assert got.shape == (batch, 3)
        assert np.abs(got - ref[:batch]).max() < 1e-4
        assert (got.argmax(1) == ref[:batch].argmax(1)).all()
    info_back = BundleInfo.from_metadata(read_metadata(path))
    assert info_back.bands == ("red", "nir") and info_back.class_names == ["soil", "crop", "weed"]
    assert [c.color for c in info_back.classes] == ["#8b6b4a", "#2e9e44", "#e0452b"]
    assert info_back.tile_size == 128 and info_back.overlap == 32
    assert "central" in info_back.label_rule


def test_export_command_rebuilds_bundle_and_int8(trained, tmp_path):
    cfg, prep, model, info = trained
    meta = bundle_metadata(cfg, prep, info)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, cfg, prep, meta)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--int8"]) == 0
    tiles = prep.test.tiles[:64]
    ref = predict_torch(model, tiles)
    assert np.abs(onnx_predict(onnx_session(out), tiles) - ref).max() < 1e-4
    q = out.with_name("m.int8.onnx")
    qmeta = read_metadata(q)
    assert qmeta["precision"] == "int8" and qmeta["bands"] == "red,nir"
    qp = onnx_predict(onnx_session(q), tiles)
    assert (qp.argmax(1) == ref.argmax(1)).mean() > 0.8
