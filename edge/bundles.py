"""Which model bundles a field device runs, checked before use.

Checksum, in this order of trust:
1. `--model-sha256 HEX` given by the person setting up the device;
2. the manifest shipped beside the bundles: `manifest.json` (`{"file.onnx": "hex"}` or
   `{"file.onnx": {"sha256": "hex"}}`; the package installs `bundles/*.json`) or a sibling
   `file.onnx.sha256` in `sha256sum` format;
3. otherwise trust on first use: the checksum seen the first time is recorded in the edge state
   (`OUT/.khet-edge/state.sqlite`) and every later run must match it.

A bundle that passes is copied into the state folder and the copy is what runs, so the bytes that
were checked are the bytes that are used. Its format version is checked when it is opened
(`BundleInfo.from_metadata` raises `ModelError` for another format).

Precision: where the same band set ships as fp32 and INT8, the INT8 bundle is used when its card
(the `metrics` metadata) shows a macro F1 at most `MAX_F1_DROP` below the fp32 bundle's: it is
smaller and faster on a CPU. Without metrics to compare, fp32 is the safe choice. `--precision`
overrides this.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from khet.vision.bundle import Bundle, BundleInfo, file_sha256, list_bundles

from khet.errors import ModelError

MAX_F1_DROP = 0.01
MANIFEST = "manifest.json"
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Verified:
    """A bundle whose checksum and format were checked; `path` is the private copy."""

    path: Path
    source: Path
    sha256: str
    checked_by: str  # "--model-sha256", "manifest", "first use"
    info: BundleInfo


def expected_sha256(path: Path) -> str | None:
    """The checksum shipped for `path` (manifest.json or a .sha256 sibling), if any."""
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"The model manifest {manifest} cannot be read ({e}).") from e
        entry = data.get("bundles", data).get(path.name) if isinstance(data, dict) else None
        if isinstance(entry, dict):
            entry = entry.get("sha256")
        if isinstance(entry, str):
            return entry.strip().lower()
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        text = side.read_text().split()
        if text:
            return text[0].strip().lower()
    return None


def verify(path: Path, private_dir: Path, journal, model_sha256: str | None = None) -> Verified:
    """Copy `path` into `private_dir`, check the copy's checksum and format; `ModelError` if not."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    if model_sha256 is not None:
        want, how = model_sha256.strip().lower(), "--model-sha256"
        if not _HEX.match(want):
            raise ModelError("--model-sha256 must be 64 hexadecimal characters (sha256sum output).")
    else:
        want, how = expected_sha256(path), "manifest"
        if want is None:
            want, how = journal.trusted_sha256(path.name), "first use"
    private_dir.mkdir(parents=True, exist_ok=True)
    tmp = private_dir / f".{path.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(path, tmp)
        got = file_sha256(tmp)
        if want is not None and got != want:
            raise ModelError(
                f"Model {path.name} is damaged or not the expected file: its checksum is "
                f"{got[:12]}…, the {how} says {want[:12]}…. Copy the model again."
            )
        dest = private_dir / path.name
        os.replace(tmp, dest)
    except OSError as e:
        raise ModelError(f"Cannot check model {path.name} ({e}).") from e
    finally:
        tmp.unlink(missing_ok=True)
    info = Bundle(dest, threads=1).info  # raises ModelError for another format version
    if want is None:
        journal.trust(path.name, got)
        how = "first use"
    return Verified(dest, path, got, how, info)


def _f1(info: BundleInfo) -> float | None:
    v = info.metrics.get("macro_f1")
    return float(v) if isinstance(v, (int, float)) else None


def prefer(candidates: list[Verified], precision: str = "auto") -> Verified:
    """One bundle among those for the same band set: see the module note."""
    if precision != "auto":
        fits = [c for c in candidates if c.info.precision == precision]
        if not fits:
            have = ", ".join(sorted({c.info.precision for c in candidates}))
            raise ModelError(
                f"No {precision} model for bands {','.join(candidates[0].info.bands)} "
                f"(there is {have})."
            )
        return sorted(fits, key=lambda c: c.info.name)[0]
    by_prec: dict[str, list[Verified]] = {}
    for c in sorted(candidates, key=lambda c: (-(_f1(c.info) or -1.0), c.info.name)):
        by_prec.setdefault(c.info.precision, []).append(c)
    fp32, int8 = by_prec.get("fp32"), by_prec.get("int8")
    if fp32 and int8:
        f_fp, f_i8 = _f1(fp32[0].info), _f1(int8[0].info)
        if f_fp is not None and f_i8 is not None and f_i8 >= f_fp - MAX_F1_DROP:
            return int8[0]
        return fp32[0]
    return (fp32 or int8 or next(iter(by_prec.values())))[0]


def select(
    models_dir: Path | None,
    private_dir: Path,
    journal,
    *,
    model: str | None = None,
    model_sha256: str | None = None,
    precision: str = "auto",
) -> list[Verified]:
    """The verified bundles to run: the one named, or the preferred one per band set."""
    if model is not None:
        p = Path(model)
        if not p.suffix:
            named = [b for b in list_bundles(models_dir) if b.stem == model]
            if not named:
                raise ModelError(f"No model named {model!r}.")
            p = named[0]
        chosen = [verify(p, private_dir, journal, model_sha256)]
    else:
        chosen = _choose_all(models_dir, private_dir, journal, model_sha256, precision)
    # Only the chosen bundles stay in the private folder, so the pipeline sees no others.
    keep = {c.path.name for c in chosen}
    for p in private_dir.glob("*.onnx"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
    return chosen


def _choose_all(
    models_dir: Path | None, private_dir: Path, journal, model_sha256: str | None, precision: str
) -> list[Verified]:
    paths = list_bundles(models_dir)
    if not paths:
        raise ModelError("No model bundles found. Copy them to the device and set KHET_MODELS_DIR.")
    if model_sha256 is not None and len(paths) > 1:
        raise ModelError("--model-sha256 checks one model: name it with --model.")
    verified = [verify(p, private_dir, journal, model_sha256) for p in paths]
    groups: dict[tuple[str, ...], list[Verified]] = {}
    for v in verified:
        groups.setdefault(tuple(v.info.bands), []).append(v)
    return [prefer(g, precision) for g in groups.values()]
