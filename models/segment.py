"""Segmentation models for drone imagery: train on polygon-labeled images, evaluate honestly.

A drone map is wanted from about 3 mm to 1.5 cm per pixel (a low flight to a survey flight), so
one model serves a range of ground sample distances (GSD): it takes its input at one GSD
(`model_gsd`, the pipeline resamples every image to it while reading) and is trained on images
*degraded* to every GSD of the range and then resampled to `model_gsd` exactly as the pipeline
does (shrunk by averaging, enlarged bilinearly). What a farmer's coarser image looks like is what
the model learned from.

Evaluation runs the exported ONNX bundle through the pipeline's own reading (vision's Scene,
Grid and Bundle) on held-out images degraded 1x, 2x, 4x (and 5x), and scores the prediction
against the labels at the labels' own resolution:

- pixel precision / recall / F1 per class, with 95 % intervals from an image-level bootstrap
  (images resampled with replacement: neighbouring pixels are not independent samples);
- object precision / recall per class at IoU >= 0.5 between connected components, the measure
  closest to a detector's mask precision / recall (YOLO-seg's, say);
- weed cover per image (share of the image's area) against the labels: mean absolute error.

torch is imported inside the training functions only; evaluation needs ONNX Runtime alone.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from khet.datasets import labelme
from khet.datasets.tiles import CLASS_COLORS, CLASS_NAMES, CROP, WEED
from khet.models.evaluate import crop_line

from khet.errors import InputError

Log = Callable[[str], None]
FACTORS = (1, 2, 4, 5)  # test degradations of the native GSD
# Hand-drawn polygons and a plant's true edge disagree by a pixel or two: errors within this
# distance of a labelled outline are counted apart (the strict scores still count them).
OUTLINE_BAND_M = 0.01
# Set for the drone model on uav_potato at 1x (issue 10), beside the authors' YOLOv8n-seg.
GOAL_MACRO_F1, GOAL_WEED_F1 = 0.85, 0.80
_GRID_NAME = re.compile(r"^(?P<stem>.*?)_(?P<row>\d+)_(?P<col>\d+)$")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class SegConfig:
    data: Path
    class_map: dict[str, str]
    native_gsd: float  # metres per pixel of the labeled images (stated by the user)
    model_gsd: float = 0.006
    degrade: tuple[float, float] = (1.0, 4.5)  # native GSD x this range is learned
    arch: str = "lraspp_fine_mobilenet_v3_small"
    crop: int = 192  # training crop, pixels at model_gsd
    tile_size: int = 256
    overlap: int = 32
    epochs: int = 40
    crops_per_epoch: int = 480
    batch_size: int = 16
    lr: float = 3e-3
    class_weights: tuple[float, float, float] = (1.0, 1.5, 2.5)  # soil, crop, weed
    dice_weight: float = 0.0  # soft Dice of crop and weed added to the cross-entropy
    seed: int = 0
    threads: int = 2
    name: str = "khet-rgb-uav"
    version: str = "1.0.0"
    licence: str = ""
    max_images: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- data ------------------------------------------------------------------------------------------
@dataclass
class Labeled:
    stem: str
    image: np.ndarray  # H x W x 3 uint8 RGB
    mask: np.ndarray  # H x W class indices


def split_images(
    data: Path, items: Sequence[labelme.LabeledImage], seed: int = 0
) -> tuple[dict[str, list[str]], str]:
    """train / val (early stopping) / test stems, and the rule in words for the card.

    With a `splits.csv` (columns tile, split) its "val" images are the held-out test set, as the
    authors of a dataset reported them. Early-stopping images come from the training side: for
    tiles named `..._ROW_COL` (cut from one orthomosaic), the last grid row of training tiles,
    so that no training tile touches a test tile across a row boundary more than the authors'
    split already does; otherwise every tenth image in a seeded order."""
    stems = [i.stem for i in items]
    csv = Path(data) / "splits.csv"
    given: dict[str, str] = {}
    if csv.is_file():
        for line in csv.read_text().splitlines()[1:]:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0] in stems:
                given[parts[0]] = parts[1].lower()
    if given:
        test = sorted(s for s in stems if given.get(s) in ("val", "test"))
        train = sorted(s for s in stems if given.get(s) == "train")
        how = f"the dataset's own splits.csv: its {len(test)} 'val' images are the test set"
    else:
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(stems))
        n_test = max(1, len(order) // 5)
        test, train = sorted(order[:n_test]), sorted(order[n_test:])
        how = f"a seeded random fifth of the images (seed {seed}) is the test set"
    rows = {s: _GRID_NAME.match(s) for s in train}
    if train and all(rows.values()):
        last = max(int(m.group("row")) for m in rows.values() if m)
        val = sorted(s for s in train if int(rows[s].group("row")) == last)  # type: ignore[union-attr]
        how += f"; early stopping on the last grid row of training tiles (row {last})"
    else:
        val = sorted(train[:: max(1, len(train) // max(1, len(train) // 10))][: len(train) // 10])
        how += "; early stopping on every tenth training image"
    train = [s for s in train if s not in val]
    if not train or not val or not test:
        raise InputError(f"{data} needs more labeled images to train, stop early and test.")
    return {"train": train, "val": val, "test": test}, how


def load(data: Path, class_map: Mapping[str, str], stems: Sequence[str]) -> list[Labeled]:
    """The labeled images named by `stems`, with their masks in Khet's classes."""
    items = {i.stem: i for i in labelme.find_images(data)}
    out = []
    for s in stems:
        img, mask = labelme.load(items[s], class_map)
        out.append(Labeled(s, img, mask))
    return out


def degrade(image: np.ndarray, factor: float) -> np.ndarray:
    """The image as a camera `factor` times further away would see it (pixel averaging)."""
    if factor == 1:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """To (width, height) the way the pipeline reads: averaging to shrink, bilinear to enlarge."""
    h, w = image.shape[:2]
    shrink = size[0] <= w and size[1] <= h
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Sampler:
    """Random training crops at `model_gsd` from images degraded to a random GSD of the range."""

    def __init__(self, cfg: SegConfig, images: list[Labeled], seed: int) -> None:
        self.cfg, self.images = cfg, images
        self.rng = np.random.default_rng(seed)
        self.where = {c: [np.argwhere(im.mask == c) for im in images] for c in (CROP, WEED)}

    def crop(self) -> tuple[np.ndarray, np.ndarray]:
        cfg, rng = self.cfg, self.rng
        k = int(rng.integers(len(self.images)))
        im = self.images[k]
        h, w = im.mask.shape
        d = math.exp(rng.uniform(math.log(cfg.degrade[0]), math.log(cfg.degrade[1])))
        native = cfg.native_gsd * math.exp(rng.uniform(-0.2, 0.2))  # the stated GSD is an estimate
        span = min(int(round(cfg.crop * cfg.model_gsd / native)), h, w)
        u = rng.random()
        pool = None
        if u < 0.3 and len(self.where[WEED][k]):
            pool = self.where[WEED][k]
        elif u < 0.5 and len(self.where[CROP][k]):
            pool = self.where[CROP][k]
        if pool is not None:  # rare classes are centred in a crop more often than by chance
            cy, cx = pool[rng.integers(len(pool))]
            jitter = rng.integers(-span // 4, span // 4 + 1, 2)
            y0 = int(np.clip(cy - span // 2 + jitter[0], 0, h - span))
            x0 = int(np.clip(cx - span // 2 + jitter[1], 0, w - span))
        else:
            y0, x0 = (int(v) for v in rng.integers(0, [h - span + 1, w - span + 1]))
        img = degrade(im.image[y0 : y0 + span, x0 : x0 + span], d)
        if rng.random() < 0.5:  # orthomosaics are often stored as JPEG at their own resolution
            quality = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))]
            _, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), quality)
            img = np.asarray(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))[..., ::-1]
        img = resample(img, (cfg.crop, cfg.crop))
        onehot = np.stack(
            [(im.mask[y0 : y0 + span, x0 : x0 + span] == c).astype(np.float32) for c in range(3)],
            -1,
        )
        soft = cv2.resize(onehot, (cfg.crop, cfg.crop), interpolation=cv2.INTER_AREA)
        turns = int(rng.integers(4))
        img, soft = np.rot90(img, turns), np.rot90(soft, turns)
        if rng.random() < 0.5:
            img, soft = img[:, ::-1], soft[:, ::-1]
        x = img.astype(np.float32) * rng.uniform(0.85, 1.15, 3)  # white balance
        mean = x.mean()
        x = (mean + (x - mean) * rng.uniform(0.75, 1.25)) * rng.uniform(0.75, 1.25)
        x = np.clip(x, 0, 255).astype(np.uint8)
        if rng.random() < 0.4:
            # No data along one side, as the pipeline pads an image's edges and an
            # orthomosaic's outside with zeros: those pixels carry no label (no loss), and the
            # model learns that black beside a plant says nothing about it.
            width = int(cfg.crop * rng.uniform(0.05, 0.5))
            side = int(rng.integers(4))
            sl = [
                (slice(0, width), slice(None)),
                (slice(cfg.crop - width, None), slice(None)),
                (slice(None), slice(0, width)),
                (slice(None), slice(cfg.crop - width, None)),
            ][side]
            x[sl] = 0
            soft = np.array(soft)
            soft[sl] = 0.0
        return (
            np.ascontiguousarray(x.transpose(2, 0, 1)),
            np.ascontiguousarray(soft.transpose(2, 0, 1)),
        )


# -- predicting through the pipeline's reading ---------------------------------------------------
def predict(bundle: Any, image: np.ndarray, gsd: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel classes and their probability for an RGB image of `gsd` metres per pixel, read
    and tiled exactly as `analyze()` reads a scene (the same Scene, Grid and resampling), then
    brought back to the image's own pixels (nearest)."""
    from khet.vision.grid import Grid
    from khet.vision.scene import open_scene

    from khet.settings import get_settings

    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "image.tif"
        _write_geotiff(path, image, gsd)
        with open_scene(
            path, bands=["red", "green", "blue"], settings=get_settings(), gsd=gsd
        ) as scene:
            info = bundle.info
            zoom = gsd / info.gsd_m
            wz, hz = scene.working_size(zoom)
            grid = Grid(wz, hz, info.tile_size, info.overlap, 0)
            s, m = grid.stride, grid.margin
            labels = np.zeros((grid.window_rows * s, grid.window_cols * s), np.uint8)
            prob = np.zeros(labels.shape, np.float32)
            for r in range(grid.window_rows):
                data, _ = scene.read(
                    grid.strip(r, 0, grid.window_cols), ["red", "green", "blue"], zoom=zoom
                )
                tiles = np.stack(
                    [data[:, :, k * s : k * s + grid.tile] for k in range(grid.window_cols)]
                )
                lab, mp = bundle.predict_classes(tiles)
                for k in range(grid.window_cols):
                    labels[r * s : (r + 1) * s, k * s : (k + 1) * s] = lab[k, m : m + s, m : m + s]
                    prob[r * s : (r + 1) * s, k * s : (k + 1) * s] = mp[k, m : m + s, m : m + s]
    labels, prob = labels[:hz, :wz], prob[:hz, :wz]
    ys = np.minimum(((np.arange(h) + 0.5) * hz / h).astype(int), hz - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * wz / w).astype(int), wz - 1)
    return labels[np.ix_(ys, xs)], prob[np.ix_(ys, xs)]


def _write_geotiff(path: Path, image: np.ndarray, gsd: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    h, w = image.shape[:2]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=3,
        dtype="uint8",
        crs="EPSG:32617",
        transform=from_origin(500000, 4500000, gsd, gsd),
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as ds:
        ds.write(image.transpose(2, 0, 1))
        for i, n in enumerate(("red", "green", "blue"), start=1):
            ds.set_band_description(i, n)


# -- scores --------------------------------------------------------------------------------------
def pixel_scores(conf: np.ndarray) -> dict[str, Any]:
    """Per-class precision, recall, F1 and macro-F1 from a 3 x 3 confusion (true x predicted)."""
    out: dict[str, Any] = {}
    f1s = []
    for c, n in enumerate(CLASS_NAMES):
        tp = float(conf[c, c])
        p = tp / max(float(conf[:, c].sum()), 1.0)
        r = tp / max(float(conf[c].sum()), 1.0)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[n] = {"precision": p, "recall": r, "f1": f1, "pixels": int(conf[c].sum())}
        f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s))
    return out


def objects(mask: np.ndarray, cls: int, min_px: int = 4) -> list[tuple[int, int, np.ndarray]]:
    """Connected components (8-connected) of one class, as boolean masks of their bounding box
    with the box's offset: (y0, x0, mask)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(
        (mask == cls).astype(np.uint8), connectivity=8
    )
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area >= min_px:
            out.append((int(y), int(x), lab[y : y + h, x : x + w] == i))
    return out


def object_matches(truth: np.ndarray, pred: np.ndarray, cls: int) -> tuple[int, int, int]:
    """(true objects, predicted objects, matched pairs at IoU >= 0.5) of one class."""
    t_objs, p_objs = objects(truth, cls), objects(pred, cls)
    used: set[int] = set()
    matched = 0
    for ty, tx, tm in t_objs:
        best, best_j = 0.0, -1
        for j, (py, px, pm) in enumerate(p_objs):
            if j in used:
                continue
            y0, x0 = max(ty, py), max(tx, px)
            y1 = min(ty + tm.shape[0], py + pm.shape[0])
            x1 = min(tx + tm.shape[1], px + pm.shape[1])
            if y1 <= y0 or x1 <= x0:
                continue
            inter = int(
                (
                    tm[y0 - ty : y1 - ty, x0 - tx : x1 - tx]
                    & pm[y0 - py : y1 - py, x0 - px : x1 - px]
                ).sum()
            )
            union = int(tm.sum()) + int(pm.sum()) - inter
            iou = inter / union if union else 0.0
            if iou > best:
                best, best_j = iou, j
        if best >= 0.5:
            used.add(best_j)
            matched += 1
    return len(t_objs), len(p_objs), matched


def near_outlines(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels within `px` pixels of a labelled outline (where the label mask changes class)."""
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, k) != cv2.erode(m, k)


def bootstrap(
    per_image: list[np.ndarray], stat: Callable[[np.ndarray], float], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of `stat(sum of per-image arrays)` over images resampled with replacement."""
    rng = np.random.default_rng(seed)
    arr = np.stack(per_image)
    vals = []
    for _ in range(n):
        pick = rng.integers(0, len(arr), len(arr))
        vals.append(stat(arr[pick].sum(axis=0)))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def _pixel_stat(name: str, key: str) -> Callable[[np.ndarray], float]:
    def stat(conf: np.ndarray) -> float:
        return float(pixel_scores(conf)[name][key])

    return stat


def _macro_f1(conf: np.ndarray) -> float:
    return float(pixel_scores(conf)["macro_f1"])


def _ratio(num: int, den: int) -> Callable[[np.ndarray], float]:
    def stat(a: np.ndarray) -> float:
        return float(a[num]) / max(float(a[den]), 1.0)

    return stat


def _mean_of(n: int) -> Callable[[np.ndarray], float]:
    def stat(a: np.ndarray) -> float:
        return float(a[0]) / n

    return stat


def evaluate(
    bundle: Any,
    images: list[Labeled],
    native_gsd: float,
    factors: Sequence[int] = FACTORS,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Scores of a segmentation bundle on labeled images degraded by each factor."""
    report: dict[str, Any] = {"images": [i.stem for i in images], "native_gsd_m": native_gsd}
    for f in factors:
        t0 = time.perf_counter()
        confs, objs, cover_err, cover_rows = [], [], [], []
        far_confs, outline_counts = [], []
        band_px = max(1, round(OUTLINE_BAND_M / native_gsd))
        for im in images:
            small = degrade(im.image, f)
            pred, _ = predict(bundle, small, native_gsd * f)
            # Back on the labels' own grid (nearest): scored where the farmer's map would be.
            h, w = im.mask.shape
            ys = np.minimum(
                ((np.arange(h) + 0.5) * pred.shape[0] / h).astype(int), pred.shape[0] - 1
            )
            xs = np.minimum(
                ((np.arange(w) + 0.5) * pred.shape[1] / w).astype(int), pred.shape[1] - 1
            )
            pred = pred[np.ix_(ys, xs)]
            conf = np.bincount(im.mask.ravel().astype(np.int64) * 3 + pred.ravel(), minlength=9)
            confs.append(conf.reshape(3, 3))
            band = near_outlines(im.mask, band_px)
            far = ~band
            far_conf = np.bincount(im.mask[far].astype(np.int64) * 3 + pred[far], minlength=9)
            far_confs.append(far_conf.reshape(3, 3))
            wrong = (pred == WEED) != (im.mask == WEED)
            outline_counts.append(
                np.array([wrong.sum(), (wrong & band).sum(), band.sum(), band.size], np.int64)
            )
            objs.append(
                np.array([v for c in (CROP, WEED) for v in object_matches(im.mask, pred, c)])
            )
            truth_w, pred_w = float((im.mask == WEED).mean()), float((pred == WEED).mean())
            cover_err.append(abs(pred_w - truth_w))
            cover_rows.append({"image": im.stem, "label": truth_w, "predicted": pred_w})
        total = np.sum(confs, axis=0)
        s = pixel_scores(total)
        for n in CLASS_NAMES:
            for key in ("f1", "precision", "recall"):
                s[n][f"{key}_ci"] = bootstrap(confs, _pixel_stat(n, key))
        s["macro_f1_ci"] = bootstrap(confs, _macro_f1)
        o = np.sum(objs, axis=0)
        s["objects"] = {}
        for j, n in enumerate(("crop", "weed")):
            t, p, m = (int(v) for v in o[3 * j : 3 * j + 3])
            s["objects"][n] = {
                "labeled": t,
                "predicted": p,
                "matched": m,
                "precision": m / p if p else 0.0,
                "recall": m / t if t else 0.0,
                "precision_ci": bootstrap(objs, _ratio(3 * j + 2, 3 * j + 1)),
                "recall_ci": bootstrap(objs, _ratio(3 * j + 2, 3 * j)),
            }
        errs = [np.array([e]) for e in cover_err]
        n_img = len(errs)
        s["weed_cover"] = {
            "mae": float(np.mean(cover_err)),
            "mae_ci": bootstrap(errs, _mean_of(n_img)),
            "label_mean": float(np.mean([r["label"] for r in cover_rows])),
            "predicted_mean": float(np.mean([r["predicted"] for r in cover_rows])),
            "per_image": cover_rows,
        }
        far_total = np.sum(far_confs, axis=0)
        far_weed = pixel_scores(far_total)["weed"]
        oc = np.sum(outline_counts, axis=0)
        s["weed_outlines"] = {
            "band_m": OUTLINE_BAND_M,
            "errors": int(oc[0]),
            "errors_in_band": int(oc[1]),
            "share_in_band": float(oc[1]) / max(float(oc[0]), 1.0),
            "share_in_band_ci": bootstrap(outline_counts, _ratio(1, 0)),
            "band_share_of_pixels": float(oc[2]) / max(float(oc[3]), 1.0),
            "beyond": {
                **{k: far_weed[k] for k in ("precision", "recall", "f1")},
                "f1_ci": bootstrap(far_confs, _pixel_stat("weed", "f1")),
                # False weed on pixels the labels call soil, of all false weed there.
                "false_on_soil": float(far_total[0, WEED])
                / max(float(far_total[:, WEED].sum() - far_total[WEED, WEED]), 1.0),
            },
        }
        s["gsd_m"] = native_gsd * f
        s["confusion"] = total.tolist()
        report[f"{f}x"] = s
        log(
            f"  {f}x ({native_gsd * f * 1000:.0f} mm): macro-F1 {s['macro_f1']:.3f} "
            f"{_ci(s['macro_f1_ci'])}, weed F1 {s['weed']['f1']:.3f}, "
            f"weed cover MAE {s['weed_cover']['mae']:.4f} ({time.perf_counter() - t0:.0f}s)"
        )
    return report


# -- training ------------------------------------------------------------------------------------
def train(cfg: SegConfig, out_dir: Path, log: Log = _stderr) -> Path:
    """Train, keep the epoch with the best validation macro-F1 (averaged over the degradations),
    export the ONNX bundle and evaluate it on the test images; writes the bundle and its card."""
    import torch
    from khet.models.export import export_onnx
    from khet.models.nets import Segmenter
    from khet.vision.bundle import Bundle

    items = labelme.find_images(cfg.data)
    if cfg.max_images:
        items = items[: cfg.max_images]
    split, how = split_images(cfg.data, items, cfg.seed)
    log(
        f"{len(split['train'])} train, {len(split['val'])} validation, "
        f"{len(split['test'])} test images ({how})"
    )
    train_set = load(cfg.data, cfg.class_map, split["train"])
    val_set = load(cfg.data, cfg.class_map, split["val"])
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)
    try:
        px = np.concatenate([im.image.reshape(-1, 3)[::97] for im in train_set]).astype(np.float32)
        model = Segmenter(cfg.arch, 3, 3, (px / 255).mean(0).tolist(), (px / 255).std(0).tolist())
        sampler = Sampler(cfg, train_set, cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        steps = cfg.epochs * (cfg.crops_per_epoch // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15
        )
        weights = torch.tensor(cfg.class_weights).view(1, 3, 1, 1)
        best, best_state, best_epoch, history = -1.0, None, -1, []
        started = time.perf_counter()
        for epoch in range(cfg.epochs):
            model.train()
            t0, total = time.perf_counter(), 0.0
            for _ in range(cfg.crops_per_epoch // cfg.batch_size):
                xs, ys = zip(*(sampler.crop() for _ in range(cfg.batch_size)), strict=True)
                logp = torch.log_softmax(model.logits(torch.from_numpy(np.stack(xs))), 1)
                y = torch.from_numpy(np.stack(ys))
                loss = -(y * logp * weights).sum(1).mean()
                if cfg.dice_weight:
                    loss = loss + cfg.dice_weight * soft_dice(logp.exp(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            if epoch % 2 == 1 or epoch == cfg.epochs - 1:
                model.eval()  # BatchNorm's running statistics, as the exported model uses
                score = _validate(model, val_set, cfg)
                history.append({"epoch": epoch, "loss": total, "val_macro_f1": score})
                if score > best:
                    best, best_epoch = score, epoch
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                log(
                    f"epoch {epoch}: loss {total:.2f}, validation macro-F1 {score:.3f} "
                    f"({time.perf_counter() - t0:.0f}s)"
                )
        assert best_state is not None
        model.load_state_dict(best_state)
        _recalibrate_bn(model, sampler, cfg.batch_size)
        model.eval()
        train_seconds = time.perf_counter() - started
    finally:
        torch.set_flush_denormal(False)
    meta = bundle_metadata(cfg, {"validation_macro_f1": best, "best_epoch": best_epoch})
    out_dir = Path(out_dir)
    path = export_onnx(model, out_dir / f"{cfg.name}.onnx", meta)
    log(f"exported {path}; evaluating on the test images")
    test_set = load(cfg.data, cfg.class_map, split["test"])
    report = evaluate(Bundle(path, threads=cfg.threads), test_set, cfg.native_gsd, log=log)
    report.update(
        split=split,
        split_rule=how,
        history=history,
        best_epoch=best_epoch,
        train_seconds=train_seconds,
        config=_config_dict(cfg),
    )
    finish(path, cfg, report)
    return path


def soft_dice(probs: Any, target: Any) -> Any:
    """1 - the soft Dice overlap of crop and weed (classes 1 and 2, averaged) over a batch of
    N x C x H x W probabilities and (soft) targets. It scores each class by its overlap, not its
    pixel count, so a weed plant of a few pixels weighs as much as the soil around it."""
    dims = (0, 2, 3)
    inter = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    return (1 - (2 * inter + 1) / (total + 1))[1:].mean()


def _recalibrate_bn(model: Any, sampler: Sampler, batch: int, batches: int = 40) -> None:
    """BatchNorm statistics recomputed exactly (a cumulative mean) over fresh training crops:
    the running averages of a short from-scratch run lag behind its weights."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            xs, _ = zip(*(sampler.crop() for _ in range(batch)), strict=True)
            model.logits(torch.from_numpy(np.stack(xs)))
    for m in bns:
        m.momentum = 0.1
    model.eval()


class _TorchBundle:
    """A model being trained, with the interface of a Bundle, so validation reads and tiles the
    images exactly as the pipeline and the test evaluation do (edge padding included)."""

    def __init__(self, model: Any, cfg: SegConfig) -> None:
        from khet.vision.bundle import BundleInfo, ClassInfo

        self.model = model
        self.info = BundleInfo(
            name=cfg.name,
            version=cfg.version,
            classes=tuple(ClassInfo(n, c) for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)),
            bands=("red", "green", "blue"),
            tile_size=cfg.tile_size,
            overlap=cfg.overlap,
            gsd_m=cfg.model_gsd,
            kind="segmentation",
        )

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(np.ascontiguousarray(tiles))).numpy()

    def predict_classes(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's likeliest class and its probability, as `Bundle.predict_classes`."""
        from khet.vision.bundle import classes_of

        return classes_of(self.predict(tiles))


def _validate(model: Any, images: list[Labeled], cfg: SegConfig) -> float:
    """Mean macro-F1 over 1x, 2x and 4x degradations of the validation images, read and tiled
    by `predict` as the pipeline does."""
    bundle = _TorchBundle(model, cfg)
    scores = []
    for f in (1, 2, 4):
        conf = np.zeros((3, 3), np.int64)
        for im in images:
            small = degrade(im.image, f)
            lab, _ = predict(bundle, small, cfg.native_gsd * f)
            h, w = im.mask.shape
            ys = np.minimum(((np.arange(h) + 0.5) * lab.shape[0] / h).astype(int), lab.shape[0] - 1)
            xs = np.minimum(((np.arange(w) + 0.5) * lab.shape[1] / w).astype(int), lab.shape[1] - 1)
            lab = lab[np.ix_(ys, xs)]
            conf += np.bincount(im.mask.ravel() * 3 + lab.ravel(), minlength=9).reshape(3, 3)
        scores.append(pixel_scores(conf)["macro_f1"])
    return float(np.mean(scores))


def _crops(cfg: SegConfig) -> str:
    """The crops a run learns, comma-separated: the labels mapped to crop (potato=crop)."""
    return ",".join(k for k, v in cfg.class_map.items() if v == "crop")


def bundle_metadata(cfg: SegConfig, extra: Mapping[str, Any]) -> dict[str, str]:
    """The metadata a segmentation bundle carries (classes, bands, GSD range, metrics)."""
    lo, hi = cfg.native_gsd * 0.8, cfg.native_gsd * max(FACTORS)
    return {
        "khet_format": "2",
        "kind": "segmentation",
        "name": cfg.name,
        "version": cfg.version,
        "classes": json.dumps(
            [{"name": n, "color": c} for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)]
        ),
        "bands": "red,green,blue",
        "dtype": "uint8",
        "tile_size": str(cfg.tile_size),
        "overlap": str(cfg.overlap),
        "gsd_m": repr(cfg.model_gsd),
        "gsd_range_m": f"{lo!r},{hi!r}",
        # The labels mapped to crop are the crops it learned (--classes potato=crop: potato).
        "crops": _crops(cfg),
        "label_rule": (
            "A class per pixel (polygons filled; weed over crop over soil where they overlap). "
            "A map cell is soil when plants are under 5 % of its valid pixels, else the plant "
            "class with the most pixels (a tie goes to weed)."
        ),
        "training_data": cfg.licence or f"Polygon-labeled images from {cfg.data}",
        "description": (
            f"Per-pixel soil / crop / weed for RGB drone imagery from {lo * 1000:.1f} mm to "
            f"{hi * 100:.1f} cm per pixel ({cfg.arch}, trained from scratch); read at "
            f"{cfg.model_gsd * 1000:.0f} mm per pixel."
        ),
        "precision": "fp32",
        "metrics": json.dumps(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()}
        ),
    }


def _config_dict(cfg: SegConfig) -> dict[str, Any]:
    d = {k: v for k, v in cfg.__dict__.items() if k != "extra"}
    d["data"] = str(cfg.data)
    return {**d, **cfg.extra}


def config_of(saved: Mapping[str, Any] | None, **given: Any) -> SegConfig:
    """A training configuration as recorded (`_config_dict`, in a report or a bundle's
    metadata), with the `given` fields over it; keys SegConfig does not know go to `extra`."""
    known = {f.name for f in fields(SegConfig)}
    d: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in (saved or {}).items():
        if k in known and k != "extra":
            d[k] = tuple(v) if isinstance(v, list) else v
        elif k not in known:
            extra[k] = v
    d.update(given)
    d["data"] = Path(d["data"])
    return SegConfig(**d, extra={**extra, **given.get("extra", {})})


TRAINING_FACTS = ("best_epoch", "train_seconds", "config")


def training_facts(path: Path) -> dict[str, Any]:
    """How a bundle was trained (best epoch, time, configuration): from the report beside it,
    else from its metadata (where `finish` keeps them, so a shipped bundle re-evaluated without
    its report keeps them on its card)."""
    report = path.with_suffix(".json")
    if report.is_file():
        old = json.loads(report.read_text())
        if all(k in old for k in TRAINING_FACTS):
            return {k: old[k] for k in (*TRAINING_FACTS, "history") if k in old}
    from khet.models.export import read_metadata

    return json.loads(read_metadata(path).get("training") or "{}")


def finish(path: Path, cfg: SegConfig, report: dict[str, Any]) -> None:
    """Write the test metrics into the bundle and the model card beside it."""
    from khet.models.export import update_metadata

    first = report[f"{FACTORS[0]}x"]
    metrics = {
        "macro_f1": round(first["macro_f1"], 4),
        **{f"{n}_f1": round(first[n]["f1"], 4) for n in CLASS_NAMES},
        "by_gsd": {
            k: {
                "gsd_m": v["gsd_m"],
                "macro_f1": round(v["macro_f1"], 4),
                "weed_f1": round(v["weed"]["f1"], 4),
            }
            for k, v in report.items()
            if k.endswith("x") and isinstance(v, dict)
        },
    }
    training = {k: report[k] for k in TRAINING_FACTS if k in report}
    update_metadata(
        path, {"metrics": json.dumps(metrics), "training": json.dumps(training, default=str)}
    )
    path.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    path.with_suffix(".md").write_text(card(path, cfg, report))


def _pct(v: float) -> str:
    return f"{v:.3f}"


def _ci(v: tuple[float, float]) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def card(path: Path, cfg: SegConfig, report: dict[str, Any]) -> str:
    """The model card: what the model is, how sure its figures are, where it must not be used."""
    lines = [
        f"# Model card: {cfg.name} {cfg.version}",
        "",
        f"Per-pixel soil, crop and weed for RGB drone imagery, {cfg.arch} trained from scratch "
        f"(no pretrained weights) on polygon-labeled drone tiles. Every image is read at "
        f"{cfg.model_gsd * 1000:.0f} mm per pixel; it was trained on the tiles degraded to "
        f"{cfg.native_gsd * cfg.degrade[0] * 1000:.0f}-"
        f"{cfg.native_gsd * cfg.degrade[1] * 1000:.0f} mm "
        "per pixel and tested from the tiles' own resolution to 5 times coarser.",
        *(
            [
                "",
                "LR-ASPP alone paints its classes at 1/8 of the input (a "
                f"{cfg.model_gsd * 8 * 100:.1f} cm grid here), too coarse for small weeds: "
                "uav_potato's test labels themselves, averaged to the 4.8 cm grid of a 6 mm "
                "model and brought back, score weed F1 0.64 (bench/seg_output_grid.py). This "
                "network refines its class scores at 1/4 and 1/2 from the backbone's "
                "early layers (`FineLRASPP` in models/nets.py).",
            ]
            if cfg.arch.startswith("lraspp_fine_")
            else []
        ),
        "",
        "## The bundle",
        "",
        f"- File: `{path.name}` ({path.stat().st_size / 1e6:.1f} MB), fp32, kind `segmentation`: "
        f"input `tiles` uint8 N x 3 x {cfg.tile_size} x {cfg.tile_size} (red, green, blue), output "
        "`probs` N x 3 x H x W (softmax over soil, crop, weed), and each pixel's `classes` "
        "(uint8) and `maxprob` N x H x W; normalisation is in the graph.",
        f"- Ground sample distance: input at {cfg.model_gsd * 1000:.0f} mm per pixel (the pipeline "
        "resamples every image to it while reading); validated for imagery of "
        f"{cfg.native_gsd * 0.8 * 1000:.1f} mm to {cfg.native_gsd * max(FACTORS) * 100:.1f} cm per "
        "pixel. Outside that range Khet does not use it.",
        f"- Tiles of {cfg.tile_size} px with {cfg.overlap} px overlap; map cells of 32 px "
        f"({cfg.model_gsd * 32 * 100:.0f} cm).",
        crop_line(_crops(cfg)),
        "",
        "## Test results",
        "",
        f"Test images ({len(report['images'])}, never seen in training or early stopping): "
        f"{report['split_rule']}. Each figure has a 95 % interval from 1000 image-level "
        "bootstrap resamples. Scores are per pixel at the labels' own resolution (a prediction "
        "from a coarser image is brought back to the label grid), so they include the blur of "
        "coarse imagery.",
        "",
        "| test GSD | macro-F1 | soil F1 | crop P / R / F1 | weed P / R / F1 | weed cover MAE |",
        "|---|---|---|---|---|---|",
    ]
    for f in FACTORS:
        s = report.get(f"{f}x")
        if not s:
            continue
        mae_ci = tuple(x * 100 for x in s["weed_cover"]["mae_ci"])
        cells = [
            f"{f}x ({s['gsd_m'] * 1000:.0f} mm)",
            f"{_pct(s['macro_f1'])} {_ci(s['macro_f1_ci'])}",
            _pct(s["soil"]["f1"]),
            *(
                f"{_pct(s[n]['precision'])} / {_pct(s[n]['recall'])} / {_pct(s[n]['f1'])} "
                f"{_ci(s[n]['f1_ci'])}"
                for n in ("crop", "weed")
            ),
            f"{s['weed_cover']['mae'] * 100:.2f} pp {_ci(mae_ci)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    same = [f for f in FACTORS if f * cfg.native_gsd <= cfg.model_gsd + 1e-9]
    if len(same) > 1:
        lines += [
            "",
            f"The {' and '.join(f'{f}x' for f in same)} rows are equal by construction: the model "
            f"reads every image at {cfg.model_gsd * 1000:.0f} mm per pixel, so a "
            f"{cfg.native_gsd * 1000:.0f} mm tile is averaged to "
            f"{cfg.model_gsd * 1000:.0f} mm while it is read, which is what the {same[-1]}x test "
            "tile is.",
        ]
    one = report.get("1x", {})
    potato = bool(cfg.licence)  # the published uav_potato data set, not a user's own
    if one and potato:
        macro, weed = one["macro_f1"], one["weed"]
        met = {True: "met", False: "not met"}
        lines += [
            "",
            f"Against the goal set for this model at 1x (macro-F1 >= {GOAL_MACRO_F1:.2f}, weed F1 "
            f">= {GOAL_WEED_F1:.2f}): macro-F1 is {met[macro >= GOAL_MACRO_F1]} ({_pct(macro)}), "
            f"weed F1 is {met[weed['f1'] >= GOAL_WEED_F1]} ({_pct(weed['f1'])}): about "
            f"{round(weed['precision'] * 10)} in 10 of the pixels it paints weed are weed, and "
            f"it finds about {round(weed['recall'] * 10)} in 10 of the weed pixels. Weed cover "
            "per tile, what a farmer acts on, is within "
            f"{one['weed_cover']['mae'] * 100:.2f} percentage points of the labels on average. "
            "Treat single small weeds as indicative; patches and weed pressure per field or zone "
            "are what this model measures.",
        ]
    if one:
        o = one["objects"]
        lines += [
            "",
            "### Beside the dataset authors' detector" if potato else "### Objects",
            "",
            "Object precision / recall: connected components of a class matched one to one at "
            "IoU >= 0.5 (the nearest thing to a detector's mask precision / recall)."
            + (
                " The authors' YOLOv8n-seg on the same test tiles: potato 0.962 / 0.939, weed "
                "0.838 / 0.746 (their figures, at their confidence threshold; instance masks, "
                "not pixels)."
                if potato
                else ""
            ),
            "",
            "| 1x | objects labeled | precision | recall |",
            "|---|---:|---|---|",
        ]
        for n in ("crop", "weed"):
            lines.append(
                f"| {n} | {o[n]['labeled']} | "
                f"{_pct(o[n]['precision'])} {_ci(o[n]['precision_ci'])} | "
                f"{_pct(o[n]['recall'])} {_ci(o[n]['recall_ci'])} |"
            )
        lines += [
            "",
            "Weed cover (share of each test tile's area): labels "
            f"{one['weed_cover']['label_mean'] * 100:.2f} % "
            f"on average, predicted {one['weed_cover']['predicted_mean'] * 100:.2f} %.",
        ]
        wo = one.get("weed_outlines")
        if wo:
            b = wo["beyond"]
            lines += [
                "",
                "### Where the weed errors are",
                "",
                f"At 1x, {wo['share_in_band'] * 100:.0f} % "
                f"[{wo['share_in_band_ci'][0] * 100:.0f}, {wo['share_in_band_ci'][1] * 100:.0f}] "
                "of the "
                "pixels wrongly painted weed or missed as weed lie within "
                f"{wo['band_m'] * 100:.0f} cm of a labelled outline, a band that holds "
                f"{wo['band_share_of_pixels'] * 100:.1f} % of the test pixels: there a polygon "
                "drawn by hand and the plant's true edge disagree by a pixel or two. Scored "
                "outside that band, weed precision / recall / F1 are "
                f"{_pct(b['precision'])} / {_pct(b['recall'])} / {_pct(b['f1'])} "
                f"{_ci(b['f1_ci'])}; {b['false_on_soil'] * 100:.0f} % of the false weed there "
                "is on pixels the labels call soil. The goal and the table above are for the "
                "strict scores, every pixel counted.",
            ]
    lines += [
        "",
        "## Training",
        "",
        f"- {len(report['split']['train'])} training, {len(report['split']['val'])} early-stopping "
        f"and {len(report['split']['test'])} test images.",
        f"- {cfg.epochs} epochs of {cfg.crops_per_epoch} random {cfg.crop} px crops (40 % centred "
        "on a weed, 20 % on a crop plant), each degraded to a random GSD of the range (pixel "
        "averaging, JPEG half the time) and resampled to the model's GSD; rotations, flips, "
        "white balance, brightness and contrast. AdamW one-cycle, lr "
        f"{cfg.lr}, batch {cfg.batch_size}, class weights soil/crop/weed {cfg.class_weights}"
        + (
            f", plus {cfg.dice_weight:g} x the soft Dice loss of crop and weed."
            if cfg.dice_weight
            else "."
        ),
        f"- Best validation epoch {report.get('best_epoch')}; training took "
        f"{report.get('train_seconds', 0) / 60:.0f} min on {cfg.threads} CPU "
        f"thread{'s' if cfg.threads != 1 else ''}; "
        f"seed {cfg.seed}.",
        "",
        "## Training data and licence",
        "",
        cfg.licence or "User data.",
        "",
        "## Known limits",
        "",
        *(
            [
                "- One crop (potato, early season), one field and one flight: other crops, growth "
                "stages, soils, light and cameras are unseen. Expect lower scores on new fields.",
                f"- The labels' GSD is an estimate ({cfg.native_gsd * 1000:.0f} mm, not stated by "
                "the source); every GSD above scales with it.",
                "- Small weeds are the hardest: a few very small weeds are unlabeled in the data, "
                "and at coarse GSD a seedling is a pixel or two.",
            ]
            if potato
            else [
                f"- Trained on {len(report['split']['train'])} images of the user's own fields: "
                "crops, growth stages, soils, light and cameras unlike them are unseen.",
                f"- The labels' GSD is as stated with --gsd ({cfg.native_gsd * 1000:.1f} mm); "
                "every GSD above scales with it.",
                "- Small weeds are the hardest: at coarse GSD a seedling is a pixel or two.",
            ]
        ),
        "- Per-pixel classes, not plants: touching plants merge into one object.",
        "",
        "## Reproduce",
        "",
        "```",
        cfg.extra.get("command", "khet train --dataset labelme ..."),
        "```",
        "",
    ]
    return "\n".join(lines)
