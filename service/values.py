"""Reading a summary that may hold anything.

Summaries come from this server's worker and from field devices (and from older versions of
both). Whatever a device sent, the pages, the report, the PDF and the tiles read it through
these: a value of the wrong type is "no value", never a 500.
"""

from __future__ import annotations

import math
import re
from typing import overload

_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@overload
def num(value: object) -> float | None: ...
@overload
def num(value: object, default: float) -> float: ...
@overload
def num(value: object, default: None) -> float | None: ...
def num(value: object, default: float | None = None) -> float | None:
    """A finite number, or `default` (strings, booleans, lists, NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    v = float(value)
    return v if math.isfinite(v) else default


def color(value: object, default: str = "#888888") -> str:
    """`#rrggbb` only: a colour goes into a style attribute, where anything else could do more
    than colour ("red;background-image:url(...)" made the browser fetch a URL)."""
    return value if isinstance(value, str) and _HEX_COLOR.match(value) else default


def dicts(value: object) -> list[dict]:
    """The dict items of a list; nothing for anything else."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def mapping(value: object) -> dict:
    """The value if it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    """The value if it is a string, else None."""
    return value if isinstance(value, str) else None
