"""Make `import torchvision` work on the CPU torch wheel used here.

torchvision's `_meta_registrations` registers fake kernels for `torchvision::nms` and
`torchvision::qnms` at import time; when torchvision's compiled ops library does not match the
installed torch, those operators do not exist and the import raises. Defining the two op schemas
first (only when missing) lets torchvision import; Khet never calls NMS. Import this module before
torchvision anywhere in `models/`.
"""

from __future__ import annotations

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_LIB: torch.library.Library | None = None


def _has_op(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def ensure_torchvision_ops() -> None:
    """Define the missing torchvision op schemas (idempotent)."""
    global _LIB
    missing = [n for n in _SCHEMAS if not _has_op(n)]
    if not missing:
        return
    if _LIB is None:
        _LIB = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901
    for name in missing:
        _LIB.define(_SCHEMAS[name])


ensure_torchvision_ops()
