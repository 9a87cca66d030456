"""Numbers for people: one rule for the CLI's lines, messages, the preview's legend and the report.

Hectares from a tenth of one; square metres below (a drone frame's 0.0004 ha is "3.7 m²", not
"0.00 ha"). A positive area is never written as 0. A column of areas reads in one unit, chosen by
its largest value (`area_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Below this many hectares (1,000 m²) an area is written in square metres.
M2_BELOW_HA = 0.1


def area_scale(values: Iterable[float | None]) -> float | None:
    """The value that chooses the unit of a column of areas: its largest (None: no values)."""
    nums = [v for v in values if v is not None and math.isfinite(v)]
    return max((abs(v) for v in nums), default=None)


def in_square_metres(scale: float | None) -> bool:
    """Whether `fmt_area` writes areas of this scale (`area_scale`) in square metres."""
    return scale is not None and scale < M2_BELOW_HA


def fmt_area(ha: float, scale: float | None = None, down: bool = False) -> str:
    """`ha` hectares for people: "2.50 ha", "0.065 ha" (in a column of hectares), "563 m²",
    "3.7 m²", "<0.1 m²". `scale` (`area_scale` of a column) chooses the unit, else `ha` itself;
    `down` rounds down (a limit that must not be exceeded)."""
    cut = math.floor if down else round
    if in_square_metres(ha if scale is None else scale):
        m2 = ha * 1e4
        if m2 == 0:
            return "0 m²"
        if m2 < 0.1:
            return "<0.1 m²"
        if m2 < 10:
            return f"{cut(m2 * 10) / 10:.1f} m²"
        return f"{cut(m2):,.0f} m²"
    if ha == 0:
        return "0 ha"
    if ha < 0.001:
        return "<0.001 ha"
    if ha < M2_BELOW_HA:
        return f"{cut(ha * 1000) / 1000:.3f} ha"
    return f"{cut(ha * 100) / 100:,.2f} ha"


def fmt_amount(value: float) -> str:
    """A quantity of product (kg, L): two decimals, or three significant digits below 1 (a
    herbicide at 30 g/ha on a small field is a few grams, not 0.00)."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def fmt_rate(value: float) -> str:
    """A rate as it was typed: to its 0.01 step (a TaskData's), no trailing zeros (0.03, 1.5,
    150)."""
    return f"{round(value, 2):g}"
