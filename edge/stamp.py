"""A finished result folder's stamp: what the journal would say, kept beside the results.

`OUT/<capture>/.khet-edge.json` is written (to a temporary name, fsync'd, renamed, the folder
fsync'd) after the results are on disk and before the journal says done. It names the capture's
input files with their sha256, the identity of its result (`client_id`) and the sha256 of each
result file. A folder whose stamp is there and whose result files still have those checksums is
finished, whatever the journal says; one without it, or with a file that differs, is not.

The result's identity is derived from the capture itself (its input files' sha256, the models'
sha256 and the options that change the map), never from the results (the summary holds timings):
a capture analyzed again after the journal was lost gets the same `client_id`, so the service
answers with the flight it already has instead of making a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from khet.vision.bundle import file_sha256
from khet.vision.outputs import fsync_dir, fsync_file  # noqa: F401 (used by the runner)

NAME = ".khet-edge.json"
FORMAT = 1


def input_hashes(files: list[Path]) -> list[dict[str, Any]]:
    """Name, size and sha256 of each input file, in the capture's order."""
    return [{"path": str(f), "size": f.stat().st_size, "sha256": file_sha256(f)} for f in files]


def client_id(inputs: list[dict[str, Any]], models: list[str], options: dict[str, Any]) -> str:
    """The identity of a capture's result: the same inputs, models and options give the same id."""
    doc = {
        "inputs": sorted(i["sha256"] for i in inputs),
        "models": sorted(models),
        "options": options,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"khet-edge-result-v1\n" + text.encode()).hexdigest()


def write(folder: Path, data: dict[str, Any]) -> None:
    """Write the stamp durably: temporary file, fsync, rename, fsync of the folder."""
    tmp = folder / f".{NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, **data}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / NAME)
    fsync_dir(folder)


def remove(folder: Path) -> None:
    """Withdraw a folder's stamp before its results are replaced."""
    p = folder / NAME
    if p.exists():
        p.unlink()
        fsync_dir(folder)


def read(folder: Path) -> dict[str, Any] | None:
    """The stamp of a finished folder, or None when there is none or a result file differs."""
    try:
        data = json.loads((folder / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        return None
    for rel, sha in results.items():
        p = folder / rel
        try:
            if not p.is_file() or file_sha256(p) != sha:
                return None
        except OSError:
            return None
    return data
