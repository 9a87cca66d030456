"""Training: real labeled tiles -> a TileClassifier, with a seed, class balancing, early stopping.

``run`` is what ``khet train`` calls: prepare tiles (split by image), train with early stopping on
the validation images, export fp32 ONNX, build a static INT8 candidate, evaluate both on the
held-out test images, ship the better one to ``<out>/<name>.onnx`` and write the model card.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from khet.datasets.tiles import CLASS_COLORS, CLASS_NAMES, MIN_VALID, PLANT_MIN, TileSet

from khet.errors import InputError

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class TrainConfig:
    dataset: str  # "cwfid", "carrot_weed" or "geotiff"
    data: Path
    arch: str = "mobilenet_v3_small"
    tile_size: int = 128
    overlap: int = 32
    scale: float | None = None  # image resampling before tiling; None = the dataset's default
    plant_min: float = PLANT_MIN
    epochs: int = 20
    patience: int = 5
    epoch_tiles: int = 2048  # tiles drawn (class-balanced, with replacement) per epoch
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # "sqrt": sampler draws ~ 1/sqrt(class count) (partial rebalancing); "full": that plus a
    # 1/sqrt loss weight, i.e. inverse frequency. Full balancing over-predicts the rare classes.
    balance: str = "sqrt"
    seed: int = 0
    threads: int = 2
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # only where the dataset has no official split
    max_images: int | None = None  # reduced runs (tests): first N images per side
    bands: tuple[str, ...] | None = None  # geotiff only
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """Tiles per side plus what the card needs to say about them."""

    train: TileSet
    val: TileSet
    test: TileSet
    split: dict[str, list[str]]
    bands: tuple[str, ...]
    name: str
    scale: float
    gsd_m: float | None
    licence: str
    split_note: str
    baseline: Callable[[list[str]], dict[str, Any]] | None = None
    baseline_name: str = ""
    crops: tuple[str, ...] = ()  # what the "crop" class is, where the dataset says


# --- data ------------------------------------------------------------------------------------


def prepare(cfg: TrainConfig, log: Log = _stderr) -> Prepared:
    """Tiles and splits of a training run, loaded and checked before any training."""
    from khet.datasets import registry, splits

    data = Path(cfg.data)
    if not data.is_dir():
        raise InputError(f"Data folder {data} does not exist.")
    spec = registry.PUBLISHED.get(cfg.dataset)
    scale = cfg.scale if cfg.scale is not None else (spec.default_scale if spec else 1.0)
    rule = {"plant_min": cfg.plant_min}
    stride = cfg.tile_size - cfg.overlap
    t0 = time.perf_counter()
    if spec is not None:
        from khet.models.evaluate import BASELINE_INDEX, index_baseline

        ids = spec.ids(data)
        if cfg.max_images:
            ids = ids[: spec.images_per_side * cfg.max_images]
        log(f"reading {spec.title}: {len(ids)} images at scale {scale}")
        alltiles = spec.tiles(data, ids, cfg.tile_size, cfg.overlap, scale, cfg.plant_min)
        fr = {
            "train": 1 - cfg.val_fraction - cfg.test_fraction,
            "val": cfg.val_fraction,
            "test": cfg.test_fraction,
        }
        # Photos taken one after another (a robot along its rows, a phone along a strip) share
        # plants with their neighbours: the sides are runs of consecutive images.
        present = set(alltiles.image_ids.tolist())
        split = splits.contiguous_blocks([i for i in ids if i in present], fr, gap=1)
        train, val, test = (alltiles.select_images(split[k]) for k in ("train", "val", "test"))

        def baseline(side: list[str], spec: registry.Published = spec) -> dict[str, Any]:
            pairs = spec.pairs(data, side, scale)
            return index_baseline(pairs, BASELINE_INDEX[spec.index], stride, cfg.plant_min)

        prep = Prepared(
            train,
            val,
            test,
            split,
            spec.bands,
            spec.bundle,
            scale,
            spec.gsd_m / scale,
            spec.licence,
            spec.split_note.format(fr=fr),
            baseline,
            spec.index,
            spec.crops,
        )
    elif cfg.dataset == "geotiff":
        from khet.datasets import geotiff

        if not cfg.bands:
            raise InputError("Name the bands of your GeoTIFFs with --bands, e.g. red,green,blue.")
        pairs = geotiff.find_pairs(data)
        if len(pairs) < 3:
            raise InputError(
                f"{data} needs at least 3 labeled images (image.tif with image.labels.tif or "
                "image.geojson beside it) to split into train, validation and test."
            )
        alltiles = TileSet.concat(
            [
                geotiff.load_tiles(img, lab, cfg.tile_size, cfg.overlap, cfg.bands, **rule)
                for img, lab in pairs
            ]
        )
        strata = splits.image_strata(alltiles)
        fr = {
            "train": 1 - cfg.val_fraction - cfg.test_fraction,
            "val": cfg.val_fraction,
            "test": cfg.test_fraction,
        }
        split = splits.split_images(sorted(strata), fr, cfg.seed, strata)
        train, val, test = (alltiles.select_images(split[k]) for k in ("train", "val", "test"))
        gsd = geotiff.pixel_size_m(pairs[0][0])
        prep = Prepared(
            train,
            val,
            test,
            split,
            tuple(cfg.bands),
            f"khet-{'-'.join(cfg.bands)}-custom",
            1.0,
            gsd,
            f"User data from {data}.",
            f"Images split {fr} by image with seed {cfg.seed}.",
        )
    else:
        raise InputError(f"Unknown dataset {cfg.dataset!r}: use cwfid, carrot_weed or geotiff.")
    splits.assert_disjoint(prep.split)
    for side in ("train", "val", "test"):
        ts: TileSet = getattr(prep, side)
        if len(ts) == 0:
            raise InputError(f"No {side} tiles: too few labeled images.")
        log(
            f"  {side}: {len(prep.split[side])} images, {len(ts)} tiles, "
            + ", ".join(f"{n} {c}" for n, c in zip(CLASS_NAMES, ts.class_counts(), strict=True))
        )
    log(f"  tiles ready in {time.perf_counter() - t0:.0f}s")
    return prep


# --- training --------------------------------------------------------------------------------


def _band_stats(tiles: np.ndarray, seed: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(tiles), size=min(len(tiles), 1000), replace=False)
    x = tiles[np.sort(idx)].astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3)) + 1e-3
    return [float(v) for v in mean], [float(v) for v in std]


def predict_torch(model: Any, tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class probabilities of NCHW tiles from a torch model, in batches."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(tiles), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(tiles[i : i + batch]))).numpy())
    return np.concatenate(out)


def recalibrate_bn(
    model: Any, tiles: np.ndarray, n: int = 1024, batch: int = 128, seed: int = 0
) -> None:
    """Recompute BatchNorm running statistics on un-augmented training tiles.

    Running averages lag far behind the weights early in a short from-scratch run, and eval-mode
    outputs then collapse to one class; exact statistics over real tiles fix that and match what
    the model sees at inference.
    """
    import torch

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(tiles), size=min(n, len(tiles)), replace=False))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            model.logits(torch.from_numpy(tiles[idx[i : i + batch]]))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


def _augment_batch(x: Any, tf: Any, groups: int) -> Any:
    """Augment a batch in ``groups`` chunks (each chunk shares random parameters): per-tile v2
    calls cost more than the training step on 2 cores, per-chunk calls keep variety cheap."""
    import torch

    return torch.cat([tf(c) for c in x.chunk(groups)])


def train_model(cfg: TrainConfig, prep: Prepared, log: Log = _stderr) -> tuple[Any, dict[str, Any]]:
    """Train with class-rebalanced sampling; keep the best epoch on the validation images.

    Subnormal floats are flushed to zero during training only (they make CPU kernels ~10x
    slower late in training) and restored afterwards, so the caller's process is unchanged.
    """
    import torch

    try:
        return _train_model(cfg, prep, log)
    finally:
        torch.set_flush_denormal(False)


def _train_model(cfg: TrainConfig, prep: Prepared, log: Log) -> tuple[Any, dict[str, Any]]:
    import torch
    from khet.models.augment import train_transform
    from khet.models.evaluate import scores
    from khet.models.nets import TileClassifier

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    # Subnormal floats appear as weights settle and make CPU kernels 10x slower; flush them.
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    n_cls = len(CLASS_NAMES)
    mean, std = _band_stats(prep.train.tiles, cfg.seed)
    model = TileClassifier(cfg.arch, len(prep.bands), n_cls, mean, std)
    counts = np.maximum(prep.train.class_counts(n_cls), 1).astype(np.float64)
    # The sampler draws ~ 1/sqrt(count); with balance="full" the loss adds another 1/sqrt(count).
    inv_sqrt = counts**-0.5
    sample_w = torch.from_numpy(inv_sqrt[prep.train.labels])
    loss_w = (
        torch.tensor(inv_sqrt / inv_sqrt.mean(), dtype=torch.float32)
        if cfg.balance == "full"
        else None
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=loss_w, label_smoothing=0.05)
    tiles = torch.from_numpy(prep.train.tiles)
    labels = torch.from_numpy(prep.train.labels)
    tf = train_transform()
    epoch_tiles = min(cfg.epoch_tiles, max(len(labels), cfg.batch_size))
    steps = -(-epoch_tiles // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, history = -1.0, None, 0, []
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        idx = torch.multinomial(sample_w, epoch_tiles, replacement=True, generator=gen)
        total, n = 0.0, 0
        for b in idx.split(cfg.batch_size):
            x = _augment_batch(tiles[b], tf, groups=8)
            loss = loss_fn(model.logits(x), labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
            n += len(b)
        recalibrate_bn(model, prep.train.tiles, seed=cfg.seed + epoch)
        pred = predict_torch(model, prep.val.tiles).argmax(1)
        val = scores(prep.val.labels, pred)
        improved = val["macro_f1"] > best
        if improved:
            best, best_epoch = val["macro_f1"], epoch
            best_state = copy.deepcopy(model.state_dict())
        history.append(
            {"epoch": epoch, "loss": round(total / n, 4), "val_macro_f1": val["macro_f1"]}
        )
        log(
            f"epoch {epoch:2d}/{cfg.epochs}  loss {total / n:.3f}  val macro-F1 "
            f"{val['macro_f1']:.3f}{'  *best' if improved else ''}  "
            f"[{time.perf_counter() - t0:.0f}s]"
        )
        if epoch - best_epoch >= cfg.patience:
            log(f"early stop: no val improvement for {cfg.patience} epochs")
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    info = {
        "best_epoch": best_epoch,
        "best_val_macro_f1": best,
        "epochs_run": len(history),
        "seconds": round(time.perf_counter() - t0, 1),
        "history": history,
        "mean": mean,
        "std": std,
    }
    return model, info


# --- the whole command -----------------------------------------------------------------------


def bundle_metadata(cfg: TrainConfig, prep: Prepared, info: dict[str, Any]) -> dict[str, str]:
    """The metadata a tile-classifier bundle carries (classes, bands, GSD, data, metrics)."""
    from khet.datasets.tiles import label_rule_text
    from khet.vision.bundle import BundleInfo, ClassInfo

    bands = ",".join(prep.bands)
    scale_note = (
        f" Images were resampled by {prep.scale} before tiling." if prep.scale != 1.0 else ""
    )
    gsd_range = (prep.gsd_m / 1.5, prep.gsd_m * 1.5) if prep.gsd_m else None
    where = (
        f"Validated only for imagery of {gsd_range[0] * 1000:.2f}-{gsd_range[1] * 1000:.2f} mm "
        "per pixel (its training GSD, an estimate, within a factor of 1.5): Khet does not use "
        "it on drone imagery."
        if gsd_range
        else "Its ground sample distance is not known: treat it as unvalidated."
    )
    desc = (
        f"Classifies {cfg.tile_size} px tiles of top-down {bands} imagery into soil, crop and "
        f"weed ({cfg.arch}, trained from scratch on {prep.licence.split(' (')[0]}).{scale_note} "
        f"{where}"
    )
    bi = BundleInfo(
        name=prep.name,
        version="1.0.0",
        classes=tuple(ClassInfo(n, c) for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)),
        bands=prep.bands,
        tile_size=cfg.tile_size,
        overlap=cfg.overlap,
        gsd_m=prep.gsd_m,
        gsd_range_m=gsd_range,
        kind="tiles",
        crops=prep.crops,
        label_rule=label_rule_text(cfg.plant_min, MIN_VALID),
        training_data=prep.licence + " " + prep.split_note,
        description=desc,
        precision="fp32",
        metrics={},
    )
    meta = bi.to_metadata()
    train_cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    train_cfg.pop("data", None)
    meta["khet_split"] = json.dumps(prep.split)
    meta["khet_train"] = json.dumps(
        {
            **train_cfg,
            "scale": prep.scale,
            "best_epoch": info.get("best_epoch"),
            "best_val_macro_f1": info.get("best_val_macro_f1"),
            "train_seconds": info.get("seconds"),
        }
    )
    return meta


def run(cfg: TrainConfig, out_dir: Path, work_dir: Path | None = None, log: Log = _stderr) -> Path:
    """Train, export, quantize, evaluate, choose fp32 or int8, write bundle + card."""
    from khet.models import evaluate as ev
    from khet.models.export import export_onnx

    out_dir = Path(out_dir)
    prep = prepare(cfg, log)
    model, info = train_model(cfg, prep, log)
    log(f"best epoch {info['best_epoch']} (val macro-F1 {info['best_val_macro_f1']:.3f})")
    work = Path(work_dir) if work_dir else Path("out") / "train"
    work.mkdir(parents=True, exist_ok=True)
    meta = bundle_metadata(cfg, prep, info)
    save_checkpoint(work / f"{prep.name}.pt", model, cfg, prep, meta)
    fp32 = export_onnx(model, work / f"{prep.name}.fp32.onnx", meta)
    log(f"exported {fp32}")
    report = ev.evaluate_and_choose(fp32, prep, cfg, info, out_dir, work, log)
    return report


def calibration_tiles(prep: Prepared, seed: int, n: int = 512) -> np.ndarray:
    """Real training tiles (natural class mix) for static INT8 calibration."""
    rng = np.random.default_rng(seed)
    return prep.train.tiles[np.sort(rng.choice(len(prep.train), min(n, len(prep.train)), False))]


def save_checkpoint(
    path: Path, model: Any, cfg: TrainConfig, prep: Prepared, meta: dict[str, str]
) -> Path:
    """Weights + everything `khet export` needs to rebuild the bundle (incl. calibration tiles)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": cfg.arch,
            "bands": len(prep.bands),
            "classes": len(CLASS_NAMES),
            "state_dict": model.state_dict(),
            "metadata": meta,
            "calibration": calibration_tiles(prep, cfg.seed),
        },
        path,
    )
    return path
