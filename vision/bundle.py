"""Model bundles: one self-describing `.onnx` file.

Everything a caller needs to run a model travels in the ONNX `metadata_props` (string key/values),
so a bundle can be copied to a field device alone. The graph takes raw `uint8` NCHW tiles named
`tiles` and returns class probabilities `probs`: N x classes for a tile classifier (`kind`
"tiles"), N x classes x tile x tile for a segmentation network (`kind` "segmentation");
normalisation is inside the graph.

Keys (all strings; JSON where noted):
  khet_format     "2" ("1": written before `kind` and `gsd_range_m`; still read)
  kind            "tiles" (one class per tile) or "segmentation" (a class per pixel)
  name, version   e.g. "khet-rgb-carrotweed", "1.0.0"
  classes         JSON list of {"name": ..., "color": "#rrggbb"}
  bands           comma-separated band names in input order, e.g. "red,green,blue" or "red,nir"
  dtype           input dtype, "uint8"
  tile_size       pixels per side of one input tile
  overlap         pixels of context shared by neighbouring tiles (stride = tile_size - overlap)
  gsd_m           ground sample distance the model takes its input at, metres per pixel: the
                  pipeline resamples imagery to it while reading
  gsd_range_m     "min,max": the imagery GSDs the model was validated for; outside them the
                  pipeline does not use it (empty: not stated, run at the input's own GSD)
  crops           comma-separated crops its "crop" class learned, e.g. "potato" (empty: not
                  stated); the pipeline does not use it on a field of another stated crop
  label_rule      how mask pixels became tile labels (so others can evaluate on their data)
  training_data   where the training data came from, and its licence
  metrics         JSON of test metrics (per-class precision/recall/F1, macro_f1)
  description     one paragraph for the model card and the report
  precision       "fp32" or "int8"
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from khet.errors import ModelError

FORMAT_VERSION = "2"
READS_FORMATS = ("1", "2")
KINDS = ("tiles", "segmentation")
SPIN = "0"
INPUT_NAME = "tiles"
OUTPUT_NAME = "probs"
# A segmentation bundle may also give each pixel's class (uint8) and that class's probability
# (float32), N x H x W, computed in the graph: Khet's exports do. The pipeline asks for these
# instead of the N x classes x H x W probabilities (an argmax in NumPy over the class axis, and
# the copy of all the probabilities, cost a tenth of the model's time).
CLASSES_NAME = "classes"
MAXPROB_NAME = "maxprob"


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: str  # "#rrggbb"

    def rgb(self) -> tuple[int, int, int]:
        c = self.color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@dataclass(frozen=True)
class BundleInfo:
    """The metadata of a bundle; `models` writes it, `vision` reads it."""

    name: str
    version: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...]
    tile_size: int
    overlap: int = 0
    dtype: str = "uint8"
    gsd_m: float | None = None
    gsd_range_m: tuple[float, float] | None = None
    kind: str = "tiles"
    crops: tuple[str, ...] = ()
    label_rule: str = ""
    training_data: str = ""
    description: str = ""
    precision: str = "fp32"
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_metadata(self) -> dict[str, str]:
        d = asdict(self)
        special = {"classes", "bands", "metrics", "gsd_m", "gsd_range_m", "crops"}
        out = {k: str(v) for k, v in d.items() if k not in special}
        out["khet_format"] = FORMAT_VERSION
        out["classes"] = json.dumps([asdict(c) for c in self.classes])
        out["bands"] = ",".join(self.bands)
        out["metrics"] = json.dumps(self.metrics)
        if self.gsd_m is not None:
            out["gsd_m"] = repr(self.gsd_m)
        if self.gsd_range_m is not None:
            out["gsd_range_m"] = ",".join(repr(v) for v in self.gsd_range_m)
        if self.crops:
            out["crops"] = ",".join(self.crops)
        return out

    @property
    def validated_range(self) -> tuple[float, float] | None:
        """The imagery GSDs the model holds for: its stated range; for a bundle that states
        only the GSD it was trained at (format 1), that GSD within a factor of 1.5."""
        if self.gsd_range_m is not None:
            return self.gsd_range_m
        if self.gsd_m is not None:
            return self.gsd_m / 1.5, self.gsd_m * 1.5
        return None

    def validated_at(self, gsd_m: float | None) -> bool | None:
        """Whether imagery of `gsd_m` lies in the validated range (None: the model states no
        GSD at all, or the imagery's GSD is unknown)."""
        rng = self.validated_range
        if rng is None or gsd_m is None:
            return None
        return rng[0] <= gsd_m <= rng[1]

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "bundle") -> BundleInfo:
        fmt = meta.get("khet_format")
        if fmt is None:
            raise ModelError(f"{source} is not a Khet model bundle (no khet_format metadata).")
        if fmt not in READS_FORMATS:
            raise ModelError(
                f"{source} has bundle format {fmt}; this Khet reads format "
                f"{' or '.join(READS_FORMATS)}. Update Khet or use a matching model."
            )
        try:
            classes = tuple(ClassInfo(**c) for c in json.loads(meta["classes"]))
            return cls(
                name=meta["name"],
                version=meta["version"],
                classes=classes,
                bands=tuple(b.strip() for b in meta["bands"].split(",") if b.strip()),
                tile_size=int(meta["tile_size"]),
                overlap=int(meta.get("overlap", "0")),
                dtype=meta.get("dtype", "uint8"),
                gsd_m=float(meta["gsd_m"]) if meta.get("gsd_m") else None,
                gsd_range_m=_range(meta.get("gsd_range_m")),
                kind=_kind(meta.get("kind", "tiles")),
                crops=tuple(c.strip() for c in meta.get("crops", "").split(",") if c.strip()),
                label_rule=meta.get("label_rule", ""),
                training_data=meta.get("training_data", ""),
                description=meta.get("description", ""),
                precision=meta.get("precision", "fp32"),
                metrics=json.loads(meta.get("metrics") or "{}"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ModelError(f"{source} has incomplete bundle metadata ({e}).") from e


def _range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    lo, hi = (float(v) for v in text.split(","))
    if not (0 < lo <= hi):
        raise ValueError(f"gsd_range_m {text!r} is not min,max")
    return lo, hi


def _kind(text: str) -> str:
    if text not in KINDS:
        raise ValueError(f"kind {text!r} is not one of {', '.join(KINDS)}")
    return text


def read_metadata(path: Path) -> dict[str, str]:
    """A bundle's `metadata_props` without building an inference session.

    Choosing a bundle reads the metadata of every bundle in the folder; an ONNX Runtime session
    per bundle would load and optimise every graph for nothing. An ONNX file is a protobuf
    `ModelProto`, whose field 14 holds the metadata entries (key = 1, value = 2): the walk below
    reads the top-level fields and skips the rest (the graph) by its length.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ModelError(f"Cannot read model file {Path(path).name} ({e}).") from e
    meta: dict[str, str] = {}
    try:
        for field_no, value in _fields(data):
            if field_no == 14 and isinstance(value, bytes):
                entry = dict(_fields(value))
                k, v = entry.get(1), entry.get(2, b"")
                if isinstance(k, bytes) and isinstance(v, bytes):
                    meta[k.decode("utf-8")] = v.decode("utf-8")
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ModelError(f"{Path(path).name} is not an ONNX model (damaged or truncated).") from e
    return meta


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, value) of a protobuf message's top-level fields: ints for varints and
    fixed-width values, bytes for length-delimited ones."""
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        field_no, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = int.from_bytes(data[i : i + 8], "little"), i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > n:
                raise ValueError("truncated")
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = int.from_bytes(data[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > n:
            raise ValueError("truncated")
        yield field_no, value


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in chunks, not whole into memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Bundle:
    """A bundle: its metadata at once, its ONNX Runtime session when first needed.

    Choosing among the bundles of a folder reads only their metadata; the session (loading and
    optimising the graph) is made for the bundle that runs, once, under a lock, since the
    pipeline's workers call `predict` from several threads."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise ModelError(f"Model file {self.path} does not exist.")
        self.info = BundleInfo.from_metadata(read_metadata(self.path), source=self.path.name)
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> Bundle:
        """Make the inference session now (a damaged graph fails here, with a clear message)."""
        with self._lock:
            if self._session is None:
                self._session = self._make_session()
        return self

    def _make_session(self) -> Any:
        import onnxruntime as ort

        try:
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # ORT's threads spin while waiting for work, taking the CPU the pipeline's reader
            # thread needs; on a 2-core machine that cost more than it saved.
            opts.add_session_config_entry("session.intra_op.allow_spinning", SPIN)
            return ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own types; all mean "not a usable model"
            raise ModelError(f"{self.path.name} is not a usable ONNX model ({e}).") from e

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of tiles (N x bands x tile x tile, the bundle dtype):
        N x classes, or N x classes x tile x tile for a segmentation bundle."""
        if self._session is None:
            self.load()
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: tiles})[0]
        return np.asarray(out, dtype=np.float32)

    @cached_property
    def input_size(self) -> int | None:
        """The tile size the graph takes when it fixes one (its input's last axis), else None."""
        if self._session is None:
            self.load()
        shape = self._session.get_inputs()[0].shape
        side = shape[-1] if shape else None
        return side if isinstance(side, int) and side > 0 else None

    @cached_property
    def outputs(self) -> frozenset[str]:
        """The names of the graph's outputs."""
        if self._session is None:
            self.load()
        return frozenset(o.name for o in self._session.get_outputs())

    def predict_classes(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's likeliest class (uint8) and its probability (float32), N x tile x tile,
        for a segmentation bundle: from the graph's `classes` and `maxprob` outputs where it has
        them, else from its probabilities (ties go to the lower class, as NumPy's argmax)."""
        if {CLASSES_NAME, MAXPROB_NAME} <= self.outputs:
            labels, maxprob = self._session.run([CLASSES_NAME, MAXPROB_NAME], {INPUT_NAME: tiles})
            return np.asarray(labels, np.uint8), np.asarray(maxprob, np.float32)
        return classes_of(self.predict(tiles))

    def describe(self) -> dict[str, Any]:
        i = self.info
        return {
            "name": i.name,
            "version": i.version,
            "file": self.path.name,
            "sha256": self.sha256,
            "bands": list(i.bands),
            "classes": i.class_names,
            "tile_size": i.tile_size,
            "precision": i.precision,
            "kind": i.kind,
            "gsd_m": i.gsd_m,
            "gsd_range_m": list(i.gsd_range_m) if i.gsd_range_m else None,
            "crops": list(i.crops),
            "label_rule": i.label_rule,
            "macro_f1": i.metrics.get("macro_f1"),
        }


def classes_of(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's likeliest class (uint8; ties to the lower class) and its probability, from
    N x classes x H x W probabilities: what a graph's `classes` and `maxprob` outputs give."""
    return probs.argmax(axis=1).astype(np.uint8), probs.max(axis=1)


def shipped_bundles_dir() -> Path:
    """Where the bundles shipped with Khet (and their manifest.json) are installed."""
    # vision/ and models/ sit side by side both in the source tree and installed (khet/vision,
    # khet/models), so this finds the shipped bundles without importing khet.models.
    return Path(__file__).resolve().parent.parent / "models" / "bundles"


def default_models_dir() -> Path:
    """The shipped bundles (models/bundles), unless KHET_MODELS_DIR says otherwise."""
    from khet.settings import get_settings

    s = get_settings()
    if s.models_dir:
        return Path(s.models_dir)
    return shipped_bundles_dir()


def list_bundles(models_dir: Path | None = None) -> list[Path]:
    """The model bundles (.onnx) in the models folder, sorted."""
    d = models_dir or default_models_dir()
    return sorted(p for p in d.glob("*.onnx") if p.is_file())


def bundle_path(model: str | Path, models_dir: Path | None = None) -> Path | None:
    """The bundle `model` names: a path (a name with a suffix) as given, else the bundle of that
    name (its file's stem) in the models folder; None when the folder has no such bundle."""
    p = Path(model)
    if p.suffix:
        return p
    return next((b for b in list_bundles(models_dir) if b.stem == str(model)), None)
