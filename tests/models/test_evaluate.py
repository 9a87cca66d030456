"""Metrics, the index + Otsu baseline and the card, on numbers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from khet.datasets.tiles import CROP, SOIL, WEED
from khet.models import evaluate as ev


def test_scores_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 2, 2])
    s = ev.scores(y, p)
    assert s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s["per_class"]["soil"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    assert s["per_class"]["crop"]["f1"] == pytest.approx(0.5)
    assert s["per_class"]["weed"]["f1"] == pytest.approx(0.6667, abs=1e-4)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-4)


def test_absent_class_scores_zero_not_nan():
    s = ev.scores(np.array([0, 0]), np.array([0, 0]))
    assert s["per_class"]["weed"]["f1"] == 0.0 and np.isfinite(s["macro_f1"])


def test_index_baseline_finds_green_plants():
    rng = np.random.default_rng(0)
    img = rng.integers(90, 110, (64, 64, 3)).astype(np.uint8)  # brownish soil
    img[..., 0] += 20
    mask = np.full((64, 64), SOIL, np.uint8)
    mask[:32, :32] = CROP
    mask[32:, 32:] = WEED
    img[mask != SOIL] = (40, 180, 40)
    s = ev.index_baseline([(img, mask)], ev.exg, stride=16, plant_min=0.05)
    assert s["macro_f1"] == 1.0 and s["n_tiles"] == 16


def test_ndvi_sign():
    x = np.array([[[50, 200], [200, 50]]], np.uint8)
    v = ev.ndvi(x)
    assert v[0, 0] > 0.5 and v[0, 1] < -0.5


def test_card_has_required_sections():
    meta = {
        "name": "khet-x",
        "version": "1.0.0",
        "bands": "red,nir",
        "tile_size": "128",
        "overlap": "32",
        "precision": "fp32",
        "label_rule": "rule",
        "training_data": "data",
        "description": "desc",
        "classes": json.dumps([{"name": n, "color": "#000000"} for n in ("soil", "crop", "weed")]),
    }
    s = ev.scores(np.array([0, 1, 2, 0]), np.array([0, 1, 2, 1]))
    s["soil_vs_plant"] = ev.scores(np.array([0, 1]), np.array([0, 1]), ("soil", "plant"))
    base = ev.scores(np.array([0, 1]), np.array([0, 0]), ("soil", "plant"))
    card = ev.model_card(
        meta,
        {
            "test": s,
            "baseline": base,
            "baseline_name": "NDVI",
            "gsd_note": "0.2 mm",
            "limits": ["close range"],
            "quantization": {
                "fp32": {"macro_f1": 0.9, "tiles_per_s": 100, "mb": 6},
                "int8": {"macro_f1": 0.89, "tiles_per_s": 80, "mb": 2},
                "decision": "fp32 shipped",
            },
        },
    )
    for needle in (
        "precision",
        "recall",
        "Confusion matrix",
        "macro",
        "NDVI + Otsu",
        "non-commercial research only",
        "Ground sample distance",
        "Known limits",
        "fp32 shipped",
        "| int8 |",
    ):
        assert needle in card, needle
