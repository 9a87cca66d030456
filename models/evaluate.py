"""Metrics, the vegetation-index baseline, and the model card.

Everything here is NumPy/OpenCV/ONNX Runtime: a bundle is evaluated exactly as the pipeline runs
it (uint8 tiles in, probabilities out), never through torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from khet.datasets import registry
from khet.datasets.tiles import CLASS_NAMES, SOIL, TileSet, label_cell


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(CLASS_NAMES)) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def scores(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] = CLASS_NAMES
) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro-F1 and the confusion matrix."""
    cm = confusion(y_true, y_pred, len(names))
    per: dict[str, dict[str, float]] = {}
    f1s = []
    for k, name in enumerate(names):
        tp = cm[k, k]
        p = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        r = tp / cm[k, :].sum() if cm[k, :].sum() else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per[name] = {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(cm[k, :].sum()),
        }
        f1s.append(f)
    return {
        "per_class": per,
        "macro_f1": round(float(np.mean(f1s)), 4),
        "confusion": cm.tolist(),
        "n_tiles": int(cm.sum()),
    }


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    names: Sequence[str] = CLASS_NAMES,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """95 % intervals of precision, recall, F1 per class and of macro-F1, from `n` resamples of
    whole images (`groups`) with replacement: tiles of one image are not independent samples,
    so resampling tiles would give intervals far too narrow."""
    ids = sorted(set(np.asarray(groups).tolist()))
    k = len(names)
    per = np.stack([confusion(y_true[groups == i], y_pred[groups == i], k) for i in ids])
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        cm = per[rng.integers(0, len(ids), len(ids))].sum(axis=0)
        f1s = []
        for c, name in enumerate(names):
            tp = cm[c, c]
            p = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
            r = tp / cm[c].sum() if cm[c].sum() else 0.0
            f = 2 * p * r / (p + r) if p + r else 0.0
            f1s.append(f)
            for key, v in (("precision", p), ("recall", r), ("f1", f)):
                draws.setdefault(f"{name}.{key}", []).append(float(v))
        draws.setdefault("macro_f1", []).append(float(np.mean(f1s)))
    return {
        key: [round(float(x), 4) for x in np.percentile(v, [2.5, 97.5])] for key, v in draws.items()
    } | {"images": len(ids), "resamples": n}


def soil_vs_plant(y: np.ndarray) -> np.ndarray:
    """Collapse crop and weed into one class, 'plant' (1)."""
    return (np.asarray(y) != SOIL).astype(int)


# --- vegetation-index baseline ---------------------------------------------------------------


def exg(rgb: np.ndarray) -> np.ndarray:
    """Excess green 2g - r - b on chromatic coordinates (robust to brightness)."""
    x = rgb.astype(np.float32)
    s = x.sum(axis=2) + 1e-6
    r, g, b = x[..., 0] / s, x[..., 1] / s, x[..., 2] / s
    return 2 * g - r - b


def ndvi(red_nir: np.ndarray) -> np.ndarray:
    """NDVI of tiles whose last axis is (red, nir), as float32."""
    red = red_nir[..., 0].astype(np.float32)
    nir = red_nir[..., 1].astype(np.float32)
    return (nir - red) / (nir + red + 1e-6)


def otsu_plant_mask(index: np.ndarray) -> np.ndarray:
    """Plant pixels: index above the image's Otsu threshold."""
    lo, hi = np.percentile(index, [0.5, 99.5])
    u8 = np.clip((index - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    _, m = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return m.astype(bool)


#: The plain vegetation indices a published dataset's baseline names (datasets/registry.py).
BASELINE_INDEX: dict[str, Callable[[np.ndarray], np.ndarray]] = {"NDVI": ndvi, "ExG": exg}


def index_baseline(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    index: Callable[[np.ndarray], np.ndarray],
    stride: int,
    plant_min: float,
    min_valid: float = 0.5,
) -> dict[str, Any]:
    """Soil vs plant per cell from a vegetation index + per-image Otsu threshold.

    Each cell's true label comes from the mask by the tile label rule; the baseline's label comes
    from the same rule applied to the thresholded index (plant share >= plant_min -> plant).
    It cannot tell crop from weed, so it is scored on soil vs plant only.
    """
    yt, yp = [], []
    for image, mask in pairs:
        plant = otsu_plant_mask(index(image))
        h, w = mask.shape
        for r in range(0, h, stride):
            for c in range(0, w, stride):
                cell = mask[r : r + stride, c : c + stride]
                if cell.size < min_valid * stride * stride:
                    continue
                t = label_cell(cell, plant_min, 0.0)
                if t is None:
                    continue
                frac = plant[r : r + stride, c : c + stride].mean()
                yt.append(int(t != SOIL))
                yp.append(int(frac >= plant_min))
    return scores(np.array(yt), np.array(yp), ("soil", "plant"))


# --- running a bundle ------------------------------------------------------------------------


def onnx_session(path: Path, threads: int = 2) -> Any:
    """An ONNX Runtime CPU session on a bundle, with `threads` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_predict(session: Any, tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class probabilities of NCHW tiles from an ONNX session, in batches."""
    out = [
        session.run(["probs"], {"tiles": np.ascontiguousarray(tiles[i : i + batch])})[0]
        for i in range(0, len(tiles), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


def tiles_per_second(
    session: Any, tiles: np.ndarray, batch: int = 64, seconds: float = 3.0
) -> float:
    """Steady-state throughput on real tiles (after one warm-up batch)."""
    x = np.ascontiguousarray(tiles[:batch])
    if len(x) < batch:
        x = np.resize(x, (batch, *x.shape[1:]))
    session.run(["probs"], {"tiles": x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(["probs"], {"tiles": x})
        n += batch
    return n / (time.perf_counter() - t0)


def evaluate_tiles(path: Path, tiles: TileSet, threads: int = 2) -> dict[str, Any]:
    """Scores of a bundle on labeled tiles (3 classes, and soil vs plant)."""
    sess = onnx_session(path, threads)
    pred = onnx_predict(sess, tiles.tiles).argmax(1)
    out = scores(tiles.labels, pred)
    out["ci95"] = bootstrap_intervals(tiles.labels, pred, tiles.image_ids)
    out["soil_vs_plant"] = scores(
        soil_vs_plant(tiles.labels), soil_vs_plant(pred), ("soil", "plant")
    )
    return out


# --- the model card --------------------------------------------------------------------------


def _table(s: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Per-class scores, each with its 95 % image-bootstrap interval when there is one."""
    ci = s.get("ci95") or {}

    def fig(v: float, key: str) -> str:
        lo_hi = ci.get(key)
        return f"{v:.3f} [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if lo_hi else f"{v:.3f}"

    lines = ["| class | precision | recall | F1 | tiles |", "|---|---:|---:|---:|---:|"]
    for n in names:
        c = s["per_class"][n]
        lines.append(
            f"| {n} | {fig(c['precision'], f'{n}.precision')} | {fig(c['recall'], f'{n}.recall')} "
            f"| {fig(c['f1'], f'{n}.f1')} | {c['support']} |"
        )
    lines.append(f"| **macro** | | | **{fig(s['macro_f1'], 'macro_f1')}** | {s['n_tiles']} |")
    if ci:
        lines += [
            "",
            f"In brackets: 95 % intervals from {ci['resamples']} bootstrap resamples of the "
            f"{ci['images']} test images (whole images, since tiles of one image are not "
            "independent).",
        ]
    return lines


def _cm(s: dict[str, Any], names: Sequence[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n, row in zip(names, s["confusion"], strict=True):
        lines.append(f"| {n} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def crop_line(crops: str) -> str:
    """The card's line on what the "crop" class is (`crops` from the bundle's metadata)."""
    if not crops:
        return (
            "- Crop: not stated. Khet uses the model on any field; say which crop its labels "
            "are (`khet train --classes potato=crop,...`) so it is kept off other crops."
        )
    return (
        f"- Crop: {crops.replace(',', ', ')}. The crop class means this crop only: on a field "
        "whose stated crop is another, Khet does not use the model (a field that states no "
        "crop gets the map with a warning)."
    )


def model_card(meta: dict[str, str], report: dict[str, Any]) -> str:
    """Markdown for models/bundles/<name>.md from bundle metadata and an evaluation report."""
    names = [c["name"] for c in json.loads(meta["classes"])]
    test = report["test"]
    L: list[str] = [f"# Model card: {meta['name']} {meta['version']}", ""]
    L += [meta.get("description", ""), ""]
    L += ["## The bundle", ""]
    L += [
        f"- File: `{meta['name']}.onnx` ({report.get('file_mb', 0):.1f} MB), precision "
        f"**{meta.get('precision', 'fp32')}**, ONNX input `tiles` uint8 N x "
        f"{len(meta['bands'].split(','))} x {meta['tile_size']} x {meta['tile_size']} "
        "(dynamic batch), output `probs` (softmax); normalisation is inside the graph.",
        f"- Bands, in order: `{meta['bands']}`. Classes: "
        + ", ".join(f"{c['name']} `{c['color']}`" for c in json.loads(meta["classes"]))
        + ".",
        f"- Tile size {meta['tile_size']} px, overlap {meta['overlap']} px (stride "
        f"{int(meta['tile_size']) - int(meta['overlap'])} px).",
        f"- Label rule: {meta.get('label_rule', '')}",
        crop_line(meta.get("crops", "")),
        f"- Architecture: {report.get('arch', '?')}, trained from scratch (no pretrained weights).",
        "",
    ]
    L += ["## Test results (held-out images)", ""]
    L += [report.get("test_note", ""), ""]
    L += _table(test, names) + [""]
    L += ["Confusion matrix (tiles):", ""] + _cm(test, names) + [""]
    base = report.get("baseline")
    if base:
        sp = test["soil_vs_plant"]
        L += ["### Baseline: vegetation index + Otsu (soil vs plant only)", ""]
        L += [
            f"{report.get('baseline_name', 'index')} per pixel, Otsu threshold per image, cell = "
            "plant if its plant share reaches the label rule's threshold. The index cannot tell "
            "crop from weed, so both are scored on soil vs plant, on the same test cells.",
            "",
            "| soil vs plant | soil F1 | plant F1 | macro-F1 |",
            "|---|---:|---:|---:|",
            f"| {report.get('baseline_name', 'index')} + Otsu | "
            f"{base['per_class']['soil']['f1']:.3f} | {base['per_class']['plant']['f1']:.3f} | "
            f"{base['macro_f1']:.3f} |",
            f"| this model | {sp['per_class']['soil']['f1']:.3f} | "
            f"{sp['per_class']['plant']['f1']:.3f} | {sp['macro_f1']:.3f} |",
            "",
        ]
    q = report.get("quantization")
    if q:
        L += ["## fp32 vs static INT8 (ONNX Runtime, CPU)", ""]
        L += [
            "| precision | macro-F1 (test) | tiles/s (batch 64) | size MB |",
            "|---|---:|---:|---:|",
        ]
        for k in ("fp32", "int8"):
            if k in q:
                v = q[k]
                L.append(f"| {k} | {v['macro_f1']:.3f} | {v['tiles_per_s']:.0f} | {v['mb']:.1f} |")
        L += ["", q.get("decision", ""), ""]
    tr = report.get("training", {})
    if tr:
        L += ["## Training", ""]
        L += [f"- {k}: {v}" for k, v in tr.items()]
        L += [""]
    L += ["## Training data and licence", ""]
    L += [meta.get("training_data", ""), ""]
    L += [
        "**Licence: the labeled training data is for non-commercial research only**; this model "
        "is derived from it and inherits that restriction. Do not use it commercially.",
        "",
    ]
    L += ["## Ground sample distance", ""]
    L += [report.get("gsd_note", ""), ""]
    L += ["## Known limits", ""]
    L += [f"- {x}" for x in report.get("limits", [])]
    L += ["", "## Reproduce", "", "```", report.get("command", ""), "```", ""]
    return "\n".join(L)


# --- evaluating a bundle file on its held-out images -----------------------------------------

_GSD_NOTE = (
    "The training images are close-range: about {mm:.1f} mm per pixel as the model sees them "
    "(an estimate from the camera setups; the data files do not state it). Typical drone "
    "flights are 1-5 cm per pixel, 10-100 times coarser: a {tile} px tile here covers about "
    "{cm:.0f} cm of ground, in a drone orthomosaic it would cover metres. The bundle states the "
    "range it holds for ({lo:.2f}-{hi:.2f} mm per pixel: its training GSD within a factor of "
    "1.5), and Khet reads an image at the model's GSD inside that range and never uses the model "
    "outside it (drone imagery gets the drone model, the crop-row method or the vegetation "
    "index instead)."
)

_LIMITS = [
    "Trained on one crop (carrot seedlings, early true-leaf stage) and the weeds of one or two "
    "fields; other crops, growth stages, soils and residue are unseen.",
    "Close-range imagery (mm per pixel); not validated on drone orthomosaics (cm per pixel). "
    "Plants that span a few pixels at drone GSD will look nothing like the training tiles.",
    "Per-tile labels, not per-plant: a cell is soil below the label rule's plant share, so "
    "single small seedlings can be mapped as soil.",
    "Crop vs weed in mixed cells follows the pixel majority; boundaries between rows of crop and "
    "weed patches are uncertain.",
    "Small test sets (tens of images, thousands of tiles from few fields): the metrics have "
    "wide uncertainty and will be lower on new fields.",
    "No class for shadows, stones, water, residue or anything else: everything is soil, crop or "
    "weed.",
]


def load_test_tiles(dataset: str, data: Path, meta: dict[str, str]) -> tuple[TileSet, Any, str]:
    """The held-out test tiles a bundle was not trained on, from the split in its metadata."""
    from khet.errors import InputError

    split = json.loads(meta.get("khet_split", "{}"))
    cfg = json.loads(meta.get("khet_train", "{}"))
    ids = split.get("test")
    if not ids:
        raise InputError("This bundle does not record its test images (no khet_split metadata).")
    tile, overlap = int(meta["tile_size"]), int(meta["overlap"])
    plant_min = float(cfg.get("plant_min", 0.05))
    stride = tile - overlap
    data = Path(data)
    spec = registry.PUBLISHED.get(dataset)
    if spec is not None:
        scale = float(cfg.get("scale", 1.0))
        tiles = spec.tiles(data, ids, tile, overlap, scale, plant_min)

        def base() -> dict[str, Any]:
            pairs = spec.pairs(data, ids, scale)
            return index_baseline(pairs, BASELINE_INDEX[spec.index], stride, plant_min)

        return tiles, base, spec.index
    if dataset == "geotiff":
        from khet.datasets import geotiff

        bands = tuple(meta["bands"].split(","))
        pairs = [p for p in geotiff.find_pairs(data) if p[0].stem in set(ids)]
        if not pairs:
            raise InputError(f"None of the bundle's test images ({', '.join(ids)}) are in {data}.")
        tiles = TileSet.concat(
            [
                geotiff.load_tiles(i, lab, tile, overlap, bands, plant_min=plant_min)
                for i, lab in pairs
            ]
        )
        if {"red", "nir"} <= set(bands):
            index, name = (lambda a: ndvi(a[..., [bands.index("red"), bands.index("nir")]])), "NDVI"
        elif {"red", "green", "blue"} <= set(bands):
            order = [bands.index(b) for b in ("red", "green", "blue")]
            index, name = (lambda a: exg(a[..., order])), "ExG"
        else:
            return tiles, None, ""

        def base_g() -> dict[str, Any]:
            out = []
            for img, lab in pairs:
                arr, profile = geotiff.read_image(img, len(bands))
                mask = (
                    geotiff.rasterize_geojson(lab, profile)
                    if lab.suffix in (".geojson", ".json")
                    else geotiff.read_label_raster(lab, profile)
                )
                out.append((arr, mask))
            return index_baseline(out, index, stride, plant_min)

        return tiles, base_g, name
    raise InputError(f"khet evaluate knows cwfid, carrot_weed and geotiff, not {dataset!r}.")


def evaluate_bundle(
    bundle: Path,
    dataset: str,
    data: Path,
    card: Path | None = None,
    threads: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score a bundle on its test images, store the metrics in it, write its model card."""
    from khet.models.export import read_metadata, update_metadata

    bundle = Path(bundle)
    meta = read_metadata(bundle)
    if "khet_format" not in meta:
        from khet.errors import ModelError

        raise ModelError(f"{bundle.name} is not a Khet model bundle.")
    log(f"evaluating {bundle.name} on its held-out test images")
    tiles, base, base_name = load_test_tiles(dataset, data, meta)
    test = evaluate_tiles(bundle, tiles, threads)
    log(f"  test macro-F1 {test['macro_f1']:.3f} on {test['n_tiles']} tiles")
    baseline = base() if base else None
    if baseline:
        log(f"  {base_name}+Otsu soil-vs-plant macro-F1 {baseline['macro_f1']:.3f}")
    cfg = json.loads(meta.get("khet_train", "{}"))
    q = json.loads(meta.get("khet_quantization", "{}"))
    metrics = {
        "macro_f1": test["macro_f1"],
        "per_class": test["per_class"],
        "confusion": test["confusion"],
        "n_tiles": test["n_tiles"],
        "soil_vs_plant_macro_f1": test["soil_vs_plant"]["macro_f1"],
        "baseline": (
            {"name": f"{base_name}+Otsu", "soil_vs_plant_macro_f1": baseline["macro_f1"]}
            if baseline
            else None
        ),
        "test_images": len(json.loads(meta["khet_split"])["test"]),
    }
    update_metadata(bundle, {"metrics": json.dumps(metrics)})
    meta = read_metadata(bundle)
    gsd = float(meta.get("gsd_m") or 0.0)
    tile = int(meta["tile_size"])
    split = json.loads(meta["khet_split"])
    report = {
        "test": test,
        "baseline": baseline,
        "baseline_name": base_name,
        "arch": cfg.get("arch"),
        "file_mb": bundle.stat().st_size / 1e6,
        "quantization": q,
        "test_note": (
            f"{len(split['test'])} test images never seen in training or early stopping "
            f"({test['n_tiles']} tiles): {', '.join(split['test'])}."
        ),
        "training": {
            "images": f"{len(split['train'])} train, {len(split['val'])} validation (early "
            f"stopping), {len(split['test'])} test",
            "recipe": (
                f"{cfg.get('arch')} from scratch, AdamW lr {cfg.get('lr')} one-cycle, batch "
                f"{cfg.get('batch_size')}, {cfg.get('epoch_tiles')} class-balanced tiles per "
                f"epoch (sampler ~ 1/sqrt(count)"
                + (", loss weight ~ 1/sqrt(count)" if cfg.get("balance") == "full" else "")
                + "), label "
                "smoothing 0.05, augmentation: flips, 90-degree rotations, scale jitter "
                "0.8-1.25, brightness/contrast +-25 %"
            ),
            "early stopping": (
                f"best validation macro-F1 {cfg.get('best_val_macro_f1')} at epoch "
                f"{cfg.get('best_epoch')} (max {cfg.get('epochs')}, patience "
                f"{cfg.get('patience')})"
            ),
            "seed": cfg.get("seed"),
            "training time": f"{cfg.get('train_seconds')} s on {cfg.get('threads')} CPU threads",
            "image scale": cfg.get("scale"),
        },
        "gsd_note": _GSD_NOTE.format(
            mm=gsd * 1000, tile=tile, cm=gsd * tile * 100, lo=gsd / 1.5 * 1000, hi=gsd * 1.5 * 1000
        ),
        "limits": _LIMITS,
        "command": (cfg.get("extra") or {}).get("command", ""),
    }
    card = Path(card) if card else bundle.with_suffix(".md")
    from khet.models.export import _tmp_beside

    tmp = _tmp_beside(card)
    tmp.write_text(model_card(meta, report))
    tmp.replace(card)
    log(f"  wrote {card}")
    return report


def evaluate_and_choose(
    fp32: Path,
    prep: Any,
    cfg: Any,
    info: dict[str, Any],
    out_dir: Path,
    work: Path,
    log: Callable[[str], None] = print,
) -> Path:
    """Build the INT8 candidate, compare with fp32 on validation images (accuracy) and on this
    CPU (speed), ship the better one as ``out_dir/<name>.onnx``, then evaluate it on test."""
    import shutil

    from khet.models.export import quantize_int8, update_metadata

    # The same real training tiles as train.calibration_tiles (seeded, natural class mix).
    rng = np.random.default_rng(cfg.seed)
    n = min(512, len(prep.train))
    calib = prep.train.tiles[np.sort(rng.choice(len(prep.train), n, False))]
    int8 = quantize_int8(fp32, work / f"{prep.name}.int8.onnx", calib)
    q: dict[str, Any] = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        sess = onnx_session(path, cfg.threads)
        val_pred = onnx_predict(sess, prep.val.tiles).argmax(1)
        test_pred = onnx_predict(sess, prep.test.tiles).argmax(1)
        speed = tiles_per_second(sess, prep.test.tiles)
        q[name] = {
            "val_macro_f1": scores(prep.val.labels, val_pred)["macro_f1"],
            "macro_f1": scores(prep.test.labels, test_pred)["macro_f1"],
            "tiles_per_s": round(speed, 1),
            "mb": round(path.stat().st_size / 1e6, 2),
        }
        log(f"  {name}: val macro-F1 {q[name]['val_macro_f1']:.3f}, {speed:.0f} tiles/s")
    f, i = q["fp32"], q["int8"]
    use_int8 = (
        i["val_macro_f1"] >= f["val_macro_f1"] - 0.01 and i["tiles_per_s"] > 1.1 * f["tiles_per_s"]
    )
    chosen = "int8" if use_int8 else "fp32"
    why = (
        "INT8 is shipped: it keeps validation macro-F1 within 0.01 of fp32 and runs "
        f"{i['tiles_per_s'] / f['tiles_per_s']:.2f}x as fast on this CPU."
        if use_int8
        else "fp32 is shipped: static INT8 "
        + (
            f"runs at {i['tiles_per_s'] / f['tiles_per_s']:.2f}x the fp32 speed on this CPU "
            "(measured; probably because mobilenet_v3_small is mostly small depthwise "
            "convolutions, hard-swish and squeeze-excitation, where ONNX Runtime's "
            "quantize/dequantize steps cost more than the int8 arithmetic saves)"
            if i["tiles_per_s"] <= 1.1 * f["tiles_per_s"]
            else f"loses {f['val_macro_f1'] - i['val_macro_f1']:.3f} validation macro-F1"
        )
        + ", so its only gain would be file size."
    )
    q["decision"] = (
        why + " Decided on validation accuracy and measured speed (batch 64, "
        f"{cfg.threads} threads, ONNX Runtime CPU); test macro-F1 of both is shown for information."
    )
    q["shipped"] = chosen
    log(f"  shipping {chosen}")
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{prep.name}.onnx"
    tmp = work / f"{prep.name}.ship.onnx"
    shutil.copyfile(int8 if use_int8 else fp32, tmp)
    update_metadata(tmp, {"khet_quantization": json.dumps(q), "precision": chosen})
    tmp.replace(final)
    evaluate_bundle(final, cfg.dataset, cfg.data, threads=cfg.threads, log=log)
    return final
