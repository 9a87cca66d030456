"""Edge runner speed and memory: tiles/s and peak memory on one core and on two, fp32 vs INT8.

    .venv/bin/python bench/edge_speed.py                 # speed on a 4096 px mosaic + memory on 16384 px
    .venv/bin/python bench/edge_speed.py --big 0         # speed only
    .venv/bin/python bench/edge_speed.py --model khet-rgb-uav   # a shipped bundle (name or path)

Every figure comes from one run of this script and ratios are computed within it. Each
configuration runs `EdgeRunner` (the same code as `khet edge run`) in a fresh process pinned to
N cores (`sched_setaffinity`) with `--threads N`; peak memory is that process's VmHWM.

The imagery is real: CWFID field photographs (../shared/data/cwfid) tiled into a georeferenced,
tiled GeoTIFF orthomosaic, its pixels the size the model takes (a shipped bundle's `gsd_m`, so
the runner uses it and reads without resampling; 1 cm for the stand-in) and its bands the ones
the model takes (CWFID's channels are red, near-infrared, red). Without a shipped bundle the
model is a stand-in CNN of realistic cost (4 stride-2 convolutions, 32 to 256 channels, about
60 MMAC per 128 px tile; random weights, so only speed and memory mean anything), and its INT8
copy is made with `onnxruntime.quantization.quantize_static` calibrated on real tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CWFID = Path(os.environ.get("KHET_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cwfid"
TILE = 128  # the stand-in's tile
STANDIN_GSD = 0.01
#: Where each band a model may take comes from in a CWFID photograph (channel 0 = 2 = red,
#: 1 = near-infrared); the RGB bands take the photograph's channels as they are.
CWFID_CHANNEL = {"red": 0, "green": 1, "blue": 2, "nir": 1}


def real_images() -> list[np.ndarray]:
    import cv2

    files = sorted((CWFID / "images").glob("*.png"))
    if not files:
        sys.exit(f"CWFID images not found in {CWFID}: set KHET_SHARED_DATA")
    out = []
    for f in files[:12]:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert bgr is not None, f
        out.append(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)))  # RGB, CHW
    return out


def write_mosaic(
    path: Path,
    size: int,
    images: list[np.ndarray],
    gsd: float = STANDIN_GSD,
    bands: tuple[str, ...] = ("red", "green", "blue"),
) -> Path:
    """A size x size GeoTIFF (tiled 512, deflate) of `gsd` metres per pixel made of real field
    photographs, with `bands` (named in the band descriptions)."""
    import rasterio
    from affine import Affine

    rgb = tuple(bands) == ("red", "green", "blue")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(bands),
        "dtype": "uint8",
        "crs": "EPSG:32643",
        "transform": Affine(gsd, 0, 350000.0, 0, -gsd, 3500000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
        **({"photometric": "RGB"} if rgb else {}),
    }
    channels = [CWFID_CHANNEL[b] for b in bands]
    strip = 960  # CWFID photographs are 1296 x 966: 960 px squares of them
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(bands, 1):
            dst.set_band_description(i, band)
        k = 0
        for r0 in range(0, size, strip):
            h = min(strip, size - r0)
            row = np.empty((len(bands), h, size), np.uint8)
            for c0 in range(0, size, 960):
                img = images[k % len(images)]
                k += 1
                w = min(960, size - c0)
                row[:, :, c0 : c0 + w] = img[channels, :h, :w]
            dst.write(row, window=((r0, r0 + h), (0, size)))
    return path


def resolve_bundle(model: str) -> Path:
    """A bundle's path from its path or its name (a shipped bundle, or one in KHET_MODELS_DIR)."""
    from khet.vision.bundle import bundle_path

    p = bundle_path(model)
    if p is None or not p.is_file():
        sys.exit(f"no model bundle {model!r}: give its path or name, or set KHET_MODELS_DIR")
    return p


def bundle_info(path: Path):
    """The bundle's metadata (tile size, bands, GSD), read without a session."""
    from khet.vision.bundle import Bundle

    return Bundle(path).info


def standin_bundle(path: Path) -> Path:
    """A small CNN bundle (uint8 NCHW in, probs out, normalisation inside), random weights."""
    import onnx
    from khet.vision.bundle import BundleInfo
    from onnx import TensorProto, helper, numpy_helper

    from tests.bundles import CLASSES

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale")]
    nodes = [
        helper.make_node("Cast", ["tiles"], ["x0"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x0", "scale"], ["x"]),
    ]
    prev, cin = "x", 3
    for i, cout in enumerate((32, 64, 128, 256)):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node(
                "Conv",
                [prev, f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev, cin = f"r{i}", cout
    inits += [
        numpy_helper.from_array((rng.standard_normal((cin, 3)) * 0.1).astype(np.float32), "fc"),
        numpy_helper.from_array(np.zeros(3, np.float32), "fcb"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "standin",
        [helper.make_tensor_value_info("tiles", TensorProto.UINT8, ["N", 3, TILE, TILE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = BundleInfo(
        name="standin-rgb",
        version="0.0.0",
        classes=CLASSES,
        bands=("red", "green", "blue"),
        tile_size=TILE,
        overlap=0,
        description="benchmark stand-in, random weights",
        precision="fp32",
    )
    _set_meta(model, info.to_metadata())
    onnx.save(model, path)
    return path


def _set_meta(model, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v


def quantize(fp32: Path, dest: Path, images: list[np.ndarray]) -> Path:
    """INT8 (QDQ, per-channel weights) calibrated on real tiles of the model's size and bands;
    metadata carried over."""
    import logging

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's pre-processing advice
    info = bundle_info(fp32)
    n, channels = info.tile_size, [CWFID_CHANNEL[b] for b in info.bands]
    tiles = np.stack(
        [
            img[channels, r : r + n, c : c + n]
            for img in images[:4]
            for r in range(0, img.shape[1] - n + 1, max(n, 256))[:2]
            for c in range(0, img.shape[2] - n + 1, max(n, 256))[:3]
        ]
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"tiles": tiles[i : i + 8]} for i in range(0, len(tiles), 8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(fp32),
        str(dest),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    src_meta = {p.key: p.value for p in onnx.load(fp32).metadata_props}
    model = onnx.load(dest)
    src_meta.update(precision="int8", name=src_meta["name"] + "-int8")
    _set_meta(model, src_meta)
    onnx.save(model, dest)
    return dest


_CHILD = r"""
import json, os, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
os.sched_setaffinity(0, set(range(cfg["cores"])))
from khet.edge.resources import peak_rss_mb
from khet.edge.runner import EdgeOptions, EdgeRunner
runner = EdgeRunner(EdgeOptions(out=Path(cfg["out"]), model=cfg["model"], threads=cfg["cores"],
                                max_memory_mb=cfg.get("max_memory")), log=lambda m: None)
t = time.perf_counter()
counts = runner.run([Path(cfg["input"])])
elapsed = time.perf_counter() - t
found = sorted(Path(cfg["out"]).glob("*/summary.json"))
if not found:
    sys.exit(f"the runner made no map ({counts}); its log: {Path(cfg['out']) / 'edge.log'}")
summary = json.loads(found[0].read_text())
print(json.dumps({"counts": counts, "seconds": elapsed, "timing": summary["timing"],
                  "peak_mb": peak_rss_mb(),
                  "batch": runner.plan.batch_size, "gdal_cache_mb": runner.plan.gdal_cache_mb}))
"""


def run_one(
    input_: Path, model: Path, out: Path, cores: int, max_memory: int | None = None
) -> dict:
    cfg = {
        "input": str(input_),
        "model": str(model),
        "out": str(out),
        "cores": cores,
        "max_memory": max_memory,
    }
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cfg)], cwd=ROOT, capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"run failed ({cfg}):\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="mosaic size for the speed runs")
    ap.add_argument("--big", type=int, default=16384, help="mosaic size for memory (0: skip)")
    ap.add_argument("--max-memory", type=int, default=512, help="--max-memory for the big run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per speed configuration")
    ap.add_argument("--model", help="fp32 bundle (name or .onnx path) instead of the stand-in")
    ap.add_argument("--int8", help="its INT8 bundle (default: quantize a copy)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="khet-edge-bench-") as tmp:
        d = Path(tmp)
        images = real_images()
        fp32 = resolve_bundle(args.model) if args.model else standin_bundle(d / "standin-rgb.onnx")
        int8 = resolve_bundle(args.int8) if args.int8 else quantize(fp32, d / "int8.onnx", images)
        model = bundle_info(fp32)
        gsd = model.gsd_m if args.model and model.gsd_m else STANDIN_GSD
        bands = tuple(model.bands)
        small = write_mosaic(d / "mosaic.tif", args.size, images, gsd, bands)
        sizes = {p.name: p.stat().st_size / 2**20 for p in (fp32, int8)}
        print(
            f"bundles: {model.name} fp32 {sizes[fp32.name]:.2f} MB, int8 "
            f"{sizes[int8.name]:.2f} MB; mosaic {args.size} px at {gsd * 100:g} cm, "
            f"{','.join(bands)}; tile {model.tile_size} px; "
            f"cores available {len(os.sched_getaffinity(0))}"
        )
        # Best of --repeat runs, the configurations interleaved: a shared machine is noisy.
        rows: dict[tuple[str, int], tuple[float, float, float]] = {}
        info: dict[tuple[str, int], tuple[int, int]] = {}
        for rep in range(args.repeat):
            for prec, model in (("fp32", fp32), ("int8", int8)):
                for cores in (1, 2):
                    res = run_one(small, model, d / f"out-{prec}-{cores}-{rep}", cores)
                    t = res["timing"]
                    infer = t["tiles"] / max(t["inference_seconds"], 1e-9)
                    old = rows.get((prec, cores), (0.0, 0.0, 0.0))
                    rows[(prec, cores)] = (
                        max(old[0], t["tiles_per_second"]),
                        max(old[1], infer),
                        max(old[2], res["peak_mb"]),
                    )
                    info[(prec, cores)] = (t["tiles"], res["batch"])
        for (prec, cores), (e2e, infer, peak) in rows.items():
            tiles, batch = info[(prec, cores)]
            print(
                f"{prec} {cores} core(s): {e2e:7.1f} tiles/s end to end, {infer:7.1f} tiles/s "
                f"inference, peak {peak:.0f} MB ({tiles} tiles, batch {batch}, "
                f"best of {args.repeat})"
            )
        for prec in ("fp32", "int8"):
            a, b = rows[(prec, 1)], rows[(prec, 2)]
            print(
                f"{prec}: 2 cores / 1 core = {b[0] / a[0]:.2f}x end to end, "
                f"{b[1] / a[1]:.2f}x inference"
            )
        for cores in (1, 2):
            a, b = rows[("fp32", cores)], rows[("int8", cores)]
            print(
                f"{cores} core(s): int8 / fp32 = {b[0] / a[0]:.2f}x end to end, "
                f"{b[1] / a[1]:.2f}x inference, memory {b[2] / a[2]:.2f}x"
            )

        if args.big:
            t0 = time.perf_counter()
            big = write_mosaic(d / "big.tif", args.big, images, gsd, bands)
            print(
                f"big mosaic {args.big}x{args.big} {','.join(bands)} "
                f"({big.stat().st_size / 2**20:.0f} MB deflate on disk, "
                f"{len(bands) * args.big**2 / 2**20:.0f} MB of pixels) written in "
                f"{time.perf_counter() - t0:.0f} s"
            )
            for cores, label, mm in (
                (2, "default settings", None),
                (2, f"--max-memory {args.max_memory}", args.max_memory),
                (1, f"--max-memory {args.max_memory}", args.max_memory),
            ):
                res = run_one(big, int8, d / f"out-big-{cores}-{mm}", cores, max_memory=mm)
                t = res["timing"]
                print(
                    f"big, int8, {cores} core(s), {label}: peak {res['peak_mb']:.0f} MB, "
                    f"{t['tiles']} tiles in {res['seconds']:.0f} s "
                    f"({t['tiles_per_second']:.1f} tiles/s), batch {res['batch']}, "
                    f"GDAL cache {res['gdal_cache_mb']} MB"
                )


if __name__ == "__main__":
    main()
