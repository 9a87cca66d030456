"""`khet train`, `khet export`, `khet evaluate`.

torch is imported inside the handlers only, so `khet --help` works without the train extra.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from khet.datasets.registry import PUBLISHED

from khet.errors import InputError, KhetError, ModelError

# The published datasets by name, then a user's own GeoTIFFs and polygon-labelled folders.
_DATASETS = (*PUBLISHED, "geotiff", "labelme")
UAV_POTATO_LICENCE = (
    "uav_potato (Lu et al., 'Weed instance segmentation from UAV orthomosaic images based on "
    "deep learning', Smart Agricultural Technology 2025; paglab/UAV-weed-detection-paper): 150 "
    "RGB tiles of a UAV orthomosaic of potato trials flown at 10 m, about 3 mm per pixel (an "
    "estimate; the source does not state it). MIT licence."
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as e:
        raise KhetError(
            "Training needs the train extra: pip install 'khet[train]' (torch, torchvision, onnx)."
        ) from e


def _config(args: argparse.Namespace):  # -> TrainConfig
    from khet.models.train import TrainConfig

    bands = tuple(b.strip() for b in args.bands.split(",")) if args.bands else None
    return TrainConfig(
        dataset=args.dataset,
        data=Path(args.data),
        arch=args.arch,
        tile_size=args.tile_size,
        overlap=args.overlap,
        scale=args.scale,
        plant_min=args.plant_min,
        epochs=args.epochs,
        patience=args.patience,
        epoch_tiles=args.epoch_tiles,
        batch_size=args.batch_size,
        lr=args.lr,
        balance=args.balance,
        seed=args.seed,
        threads=args.threads,
        max_images=args.max_images,
        bands=bands,
        extra={"command": "khet " + " ".join(shlex.quote(a) for a in sys.argv[1:])},
    )


def _check_geometry(args: argparse.Namespace) -> None:
    stride = args.tile_size - args.overlap
    if args.tile_size > 224 or stride <= 0 or stride % 16 or args.overlap % 2:
        raise InputError(
            "Tile size must be <= 224 and tile size minus overlap (the stride) a positive "
            "multiple of 16, with an even overlap (e.g. --tile-size 128 --overlap 32)."
        )


def _class_weights(text: str) -> tuple[float, float, float]:
    """`--class-weights soil,crop,weed`: three positive numbers (argparse exits 2 otherwise)."""
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError:
        w = ()
    if len(w) != 3 or not all(0 < x < 1000 for x in w):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give three positive weights for soil,crop,weed, e.g. 1,1.5,2.5"
        )
    return (w[0], w[1], w[2])


def _dice_weight(text: str) -> float:
    """`--dice-weight`: a number from 0 to 100 (argparse exits 2 otherwise)."""
    try:
        w = float(text)
    except ValueError:
        w = -1.0
    if not 0 <= w <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: give a weight from 0 (none) to 100")
    return w


def _seg_config(args: argparse.Namespace):  # -> SegConfig
    from khet.datasets.labelme import parse_class_map
    from khet.models.segment import SegConfig

    if not args.classes:
        raise InputError(
            "Say which labels are crop and weed with --classes, "
            "e.g. --classes potato=crop,weed=weed."
        )
    if not args.gsd or args.gsd <= 0:
        raise InputError(
            "Say the ground sample distance of the labeled images with --gsd (metres per pixel, "
            "e.g. 0.003): the model learns which resolutions it holds for from it."
        )
    data = Path(args.data)
    licence = UAV_POTATO_LICENCE if data.name == "uav_potato" else ""
    return SegConfig(
        data=data,
        class_map=parse_class_map(args.classes),
        native_gsd=args.gsd,
        model_gsd=args.model_gsd,
        arch=args.seg_arch,
        epochs=args.epochs,
        crops_per_epoch=args.epoch_tiles,
        seed=args.seed,
        threads=args.threads,
        max_images=args.max_images,
        name=args.name or "khet-rgb-uav",
        version=args.bundle_version,
        licence=licence,
        extra={"command": "khet " + " ".join(shlex.quote(a) for a in sys.argv[1:])},
        # The loss's weights only where stated: SegConfig's defaults are the one copy of them.
        **{
            k: v
            for k, v in (("class_weights", args.class_weights), ("dice_weight", args.dice_weight))
            if v is not None
        },
    )


def _train(args: argparse.Namespace) -> int:
    _need_torch()
    if args.dataset == "labelme":
        from khet.models.segment import train as train_segmenter

        path = train_segmenter(_seg_config(args), Path(args.output), _log)
        _log(f"bundle: {path}\ncard:   {path.with_suffix('.md')}")
        return 0
    _check_geometry(args)
    from khet.models.train import run

    path = run(
        _config(args), Path(args.output), Path(args.work_dir) if args.work_dir else None, _log
    )
    _log(f"bundle: {path}\ncard:   {path.with_suffix('.md')}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Re-export a training checkpoint (`khet train` writes <work-dir>/<name>.pt) to an ONNX
    bundle, and optionally its static INT8 variant calibrated on the checkpoint's real tiles."""
    _need_torch()
    import torch
    from khet.models.export import export_onnx, quantize_int8
    from khet.models.nets import TileClassifier

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise InputError(f"Checkpoint {ckpt} does not exist.")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    meta = state["metadata"]
    model = TileClassifier(state["arch"], state["bands"], state["classes"])
    model.load_state_dict(state["state_dict"])
    out = Path(args.output)
    export_onnx(model, out, meta)
    _log(f"wrote {out}")
    if args.int8:
        q = quantize_int8(out, out.with_name(out.stem + ".int8.onnx"), state["calibration"])
        _log(f"wrote {q}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from khet.models.evaluate import evaluate_bundle

    model = Path(args.model)
    if not model.is_file():
        raise ModelError(f"Model file {model} does not exist.")
    if args.dataset == "labelme":
        return _evaluate_segmenter(args, model)
    evaluate_bundle(
        model,
        args.dataset,
        Path(args.data),
        Path(args.card) if args.card else None,
        args.threads,
        _log,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `khet train`, `khet export` and `khet evaluate` to the parser."""
    p = subparsers.add_parser(
        "train",
        help="train a model on labeled real data, export and evaluate it",
        description="Train on labeled images (split by image), export an ONNX bundle and write "
        "its model card. cwfid, carrot_weed and geotiff train a tile classifier (fp32 and "
        "static INT8 compared); labelme (a folder of images with LabelMe/AnyLabeling polygon "
        "JSON) trains a per-pixel segmentation network for drone imagery over a range of "
        "ground sample distances.",
    )
    p.add_argument("--dataset", choices=_DATASETS, required=True)
    p.add_argument("--data", required=True, help="dataset folder, e.g. ../shared/data/cwfid")
    p.add_argument("-o", "--output", default="models/bundles", help="folder for bundle + card")
    p.add_argument("--work-dir", help="folder for candidates (default out/train)")
    p.add_argument(
        "--arch",
        default="mobilenet_v3_small",
        choices=("mobilenet_v3_small", "efficientnet_b0", "resnet18"),
    )
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resample images before tiling (default: 0.5 carrot_weed, else 1)",
    )
    p.add_argument(
        "--plant-min", type=float, default=0.05, help="plant share of a cell below which it is soil"
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument(
        "--epoch-tiles", type=int, default=2048, help="tiles (labelme: crops) drawn per epoch"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--balance",
        choices=("sqrt", "full"),
        default="sqrt",
        help="class rebalancing: sampler ~1/sqrt(count), or that plus a loss weight",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-images", type=int, default=None, help="reduced run: N images per side")
    p.add_argument("--bands", help="geotiff: band names in order, e.g. red,green,blue")
    p.add_argument(
        "--classes", help="labelme: which label is which class, e.g. potato=crop,weed=weed"
    )
    p.add_argument(
        "--gsd", type=float, help="labelme: ground sample distance of the images, metres per pixel"
    )
    p.add_argument(
        "--model-gsd",
        type=float,
        default=0.006,
        help="labelme: the GSD the model reads imagery at (default 0.006)",
    )
    p.add_argument(
        "--seg-arch",
        default="lraspp_fine_mobilenet_v3_small",
        choices=(  # models/nets.py SEG_ARCHITECTURES (not imported: it needs torch)
            "lraspp_mobilenet_v3_small",
            "lraspp_mobilenet_v3_large",
            "lraspp_fine_mobilenet_v3_small",
        ),
        help="labelme: segmentation architecture",
    )
    p.add_argument(
        "--class-weights",
        type=_class_weights,
        help="labelme: cross-entropy weights of soil,crop,weed (default 1,1.5,2.5)",
    )
    p.add_argument(
        "--dice-weight",
        type=_dice_weight,
        help="labelme: weight of a soft Dice loss of crop and weed added to the cross-entropy "
        "(default 0: none)",
    )
    p.add_argument("--name", help="labelme: bundle name (default khet-rgb-uav)")
    p.add_argument(
        "--bundle-version",
        default="1.0.0",
        help="labelme: the bundle's version, which devices and summaries report (default 1.0.0)",
    )
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "export", help="export a training checkpoint (out/train/<name>.pt) to an ONNX bundle"
    )
    e.add_argument("checkpoint")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--int8", action="store_true", help="also write a static INT8 variant")
    e.set_defaults(func=_export)

    v = subparsers.add_parser(
        "evaluate", help="score a bundle on its held-out test images and write its model card"
    )
    v.add_argument("model", help="bundle .onnx")
    v.add_argument("--dataset", choices=_DATASETS, required=True)
    v.add_argument("--data", required=True)
    v.add_argument("--card", help="card path (default: beside the bundle, .md)")
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--classes", help="labelme: label=class pairs, e.g. potato=crop,weed=weed")
    v.add_argument("--gsd", type=float, help="labelme: metres per pixel of the labeled images")
    v.set_defaults(func=_evaluate)


def _evaluate_segmenter(args: argparse.Namespace, model: Path) -> int:
    """Score a segmentation bundle on a labelme folder's test images (its splits.csv) at each
    test GSD, and rewrite its card."""
    from khet.datasets import labelme
    from khet.models import segment
    from khet.vision.bundle import Bundle

    if not args.classes or not args.gsd:
        raise InputError("A labelme evaluation needs --classes and --gsd, as for training.")
    cmap = labelme.parse_class_map(args.classes)
    items = labelme.find_images(Path(args.data))
    split, how = segment.split_images(Path(args.data), items)
    bundle = Bundle(model, threads=args.threads)
    report = segment.evaluate(
        bundle, segment.load(Path(args.data), cmap, split["test"]), args.gsd, log=_log
    )
    facts = segment.training_facts(model)
    report.update(facts)
    report.update(split=split, split_rule=how)
    # The configuration it was trained with; what this evaluation states goes over it.
    cfg = segment.config_of(
        facts.get("config"),
        data=Path(args.data),
        class_map=cmap,
        native_gsd=args.gsd,
        model_gsd=bundle.info.gsd_m or 0.006,
        tile_size=bundle.info.tile_size,
        overlap=bundle.info.overlap,
        name=bundle.info.name,
        version=bundle.info.version,
        licence=bundle.info.training_data,
    )
    segment.finish(model, cfg, report)
    _log(f"card: {model.with_suffix('.md')}")
    return 0
