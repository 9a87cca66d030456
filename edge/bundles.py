"""Which model bundles a field device runs, checked before use.

Checksum, in this order of trust:
1. `--model-sha256 HEX` given by the person setting up the device;
2. every manifest Khet knows: the one beside the bundle, the one in the models folder
   (KHET_MODELS_DIR) and the one shipped with Khet (`models/bundles/manifest.json`), as
   `{"bundles": {"file.onnx": {"sha256", "name", "version"}}}` (or the older
   `{"file.onnx": "hex"}`), or a sibling `file.onnx.sha256` in `sha256sum` format. A bundle is
   checked against every entry that claims it, wherever the bundle sits: an entry of its file
   name, or of the name and version in its metadata (an entry that states another name or
   version for the file name does not claim it: that is another bundle). A bundle that matches
   no entry byte for byte while one claims it is refused with the checksum message, before its
   bytes are parsed, so a damaged copy never reaches ONNX Runtime;
3. otherwise the bundle is UNVERIFIED (no manifest knows it, e.g. one trained on the device's
   own fields): the checksum seen the first time is recorded in the edge state
   (`OUT/.khet-edge/state.sqlite`), every later run must match it, and the runner says so.

A bundle that passes is copied into the state folder and the copy is what runs, so the bytes that
were checked are the bytes that are used. Its format version is checked when it is opened
(`BundleInfo.from_metadata` raises `ModelError` for another format).

Precision: where the same band set and GSD range ship as fp32 and INT8, the INT8 bundle is used
when its card (the `metrics` metadata) shows a macro F1 at most `MAX_F1_DROP` below the fp32
bundle's: it is smaller and faster on a CPU. Without metrics to compare, fp32 is the safe choice.
`--precision` overrides this.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from khet.vision.bundle import (
    Bundle,
    BundleInfo,
    bundle_path,
    default_models_dir,
    file_sha256,
    list_bundles,
    read_metadata,
    shipped_bundles_dir,
)

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
    manifest: Path | None = None  # the manifest that vouched for it

    @property
    def verified(self) -> bool:
        """Checked against a checksum someone stated (not only against its own first use)."""
        return self.checked_by != "first use"


@dataclass(frozen=True)
class Entry:
    """One bundle a manifest knows."""

    manifest: Path
    file: str
    sha256: str
    name: str | None = None
    version: str | None = None

    def claims(self, file: str, meta: dict[str, str] | None) -> bool:
        """Does this entry speak for a bundle named `file` with metadata `meta` (None: the
        metadata cannot be read, the file is damaged)?"""
        if meta is not None and self.name and self.version:
            if (meta.get("name"), meta.get("version")) == (self.name, self.version):
                return True
            return False  # the manifest's bundle of that file name is another one
        return self.file == file


def manifests(path: Path, models_dir: Path | None = None) -> list[Path]:
    """The manifests that may know `path`: beside it, in the models folder, shipped."""
    seen: list[Path] = []
    for d in (path.parent, models_dir or default_models_dir(), shipped_bundles_dir()):
        m = (Path(d) / MANIFEST).resolve()
        if m not in seen and m.is_file():
            seen.append(m)
    return seen


def _entries(manifest: Path) -> list[Entry]:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"The model manifest {manifest} cannot be read ({e}).") from e
    table = data.get("bundles", data) if isinstance(data, dict) else {}
    out = []
    for file, entry in (table or {}).items():
        if isinstance(entry, str):
            entry = {"sha256": entry}
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            out.append(
                Entry(
                    manifest,
                    str(file),
                    entry["sha256"].strip().lower(),
                    entry.get("name"),
                    entry.get("version"),
                )
            )
    return out


def known_entries(path: Path, models_dir: Path | None = None) -> list[Entry]:
    """Every manifest entry that might speak for `path` (see the module note)."""
    entries = [e for m in manifests(path, models_dir) for e in _entries(m)]
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        text = side.read_text().split()
        if text:
            entries.insert(0, Entry(side, path.name, text[0].strip().lower()))
    return entries


def expected_sha256(path: Path, models_dir: Path | None = None) -> str | None:
    """The checksum a manifest states for `path` by its file name, if any."""
    for e in known_entries(Path(path), models_dir):
        if e.file == Path(path).name:
            return e.sha256
    return None


def verify(
    path: Path,
    private_dir: Path,
    journal,
    model_sha256: str | None = None,
    models_dir: Path | None = None,
) -> Verified:
    """Copy `path` into `private_dir`, check the copy's checksum and format; `ModelError` if not."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    if model_sha256 is not None:
        model_sha256 = model_sha256.strip().lower()
        if not _HEX.match(model_sha256):
            raise ModelError("--model-sha256 must be 64 hexadecimal characters (sha256sum output).")
    private_dir.mkdir(parents=True, exist_ok=True)
    tmp = private_dir / f".{path.name}.{os.getpid()}.tmp"
    manifest = None
    try:
        shutil.copyfile(path, tmp)
        got = file_sha256(tmp)
        want: str | None
        if model_sha256 is not None:
            want, how = model_sha256, "--model-sha256"
        else:
            want, how, manifest = _expected(path, tmp, got, journal, models_dir)
        if want is not None and got != want:
            where = f" ({manifest})" if manifest else ""
            raise ModelError(
                f"Model {path.name} is damaged or not the expected file: its checksum is "
                f"{got[:12]}…, the {how}{where} says {want[:12]}…. Copy the model again."
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
    return Verified(dest, path, got, how, info, manifest)


def _expected(
    path: Path, copy: Path, got: str, journal, models_dir: Path | None
) -> tuple[str | None, str, Path | None]:
    """What `copy` (of `path`, sha256 `got`) must match: (sha256, who says so, manifest)."""
    entries = known_entries(path, models_dir)
    for e in entries:
        if e.sha256 == got:  # byte for byte a bundle a manifest knows
            return got, "manifest", e.manifest
    try:
        meta: dict[str, str] | None = read_metadata(copy)
    except ModelError:
        meta = None  # damaged past reading: any entry of its file name speaks for it
    claims = [e for e in entries if e.claims(path.name, meta)]
    if claims:
        e = claims[0]
        return e.sha256, "manifest", e.manifest
    if meta is None:
        raise ModelError(
            f"Model {path.name} cannot be read: it is damaged or not an ONNX bundle, and no "
            "manifest knows it. Copy the model again."
        )
    return journal.trusted_sha256(path.name), "first use", None


def _f1(info: BundleInfo) -> float | None:
    v = info.metrics.get("macro_f1")
    return float(v) if isinstance(v, (int, float)) else None


def prefer(candidates: list[Verified], precision: str = "auto") -> Verified:
    """One bundle among those for the same band set and GSD range: see the module note."""
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
    """The verified bundles to run: the one named, or the preferred one per band set and GSD
    range."""
    if model is not None:
        p = bundle_path(model, models_dir)
        if p is None:
            raise ModelError(f"No model named {model!r}.")
        chosen = [verify(p, private_dir, journal, model_sha256, models_dir)]
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
    verified = [verify(p, private_dir, journal, model_sha256, models_dir) for p in paths]
    # Alternatives are bundles of the same bands for the same imagery (fp32 and INT8 of one
    # model); bundles validated for other ground sample distances (close-range photos, drone
    # imagery) are kept side by side, and the pipeline picks per image, as `khet analyze` does.
    groups: dict[tuple, list[Verified]] = {}
    for v in verified:
        groups.setdefault((tuple(v.info.bands), v.info.validated_range), []).append(v)
    return [prefer(g, precision) for g in groups.values()]
