"""One rule for areas shown to people (CLI lines, messages, the preview's legend, the report)."""

from khet.vision.units import area_scale, fmt_area, in_square_metres


def test_small_areas_are_square_metres_and_never_zero():
    assert fmt_area(0.0041) == "41 m²"  # a weed patch the legend once showed as "0.00 ha"
    assert fmt_area(0.00037) == "3.7 m²"
    assert fmt_area(0.0563) == "563 m²"
    assert fmt_area(1e-9) == "<0.1 m²"
    assert fmt_area(0.0) == "0 m²"
    assert fmt_area(2.5) == "2.50 ha"
    assert fmt_area(1234.5) == "1,234.50 ha"


def test_a_column_reads_in_one_unit():
    legend = {"soil": 0.05, "crop": 0.0012, "weed": 0.0041}
    scale = area_scale(legend.values())
    assert in_square_metres(scale)
    assert [fmt_area(a, scale) for a in legend.values()] == ["500 m²", "12 m²", "41 m²"]
    field = [3.2, 0.04, 0.0002, 0.0]
    scale = area_scale(field)
    assert [fmt_area(a, scale) for a in field] == ["3.20 ha", "0.040 ha", "<0.001 ha", "0 ha"]
    assert area_scale([None, float("nan")]) is None and not in_square_metres(None)


def test_limits_round_down():
    """A most-allowed area is rounded down, so the figure given is one that is accepted."""
    assert fmt_area(0.02819, down=True) == "281 m²"
    assert fmt_area(0.000289, down=True) == "2.8 m²"
    assert fmt_area(1.239, down=True) == "1.23 ha"
