"""The units figures are recorded in (``vmvc_unit``) and how a figure is shown: seconds
as µs/ms/s, bytes as B/KiB/MiB/GiB, a tool's own unit as it is."""

from __future__ import annotations

import math

SECONDS = "s"
BYTES = "bytes"


def pyperf_unit(unit: str) -> str:
    """pyperf's name for *unit* (its CLI formats values by it)."""
    return {SECONDS: "second", BYTES: "byte"}.get(unit, "integer")


def scale_of(value: float, unit: str) -> tuple[float, str]:
    """The factor to multiply *value* by and the unit to show it in."""
    if unit == SECONDS:
        if abs(value) < 1e-3:
            return 1e6, "µs"
        return (1e3, "ms") if abs(value) < 1 else (1.0, "s")
    if unit == BYTES:
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return 1 / size, name
        return 1.0, "B"
    return 1.0, unit


def format_value(value: float | None, unit: str, digits: int = 3) -> str:
    """A figure in a readable unit, seconds and bytes with *digits* significant digits (a
    tool's figure with 4, or whole above 1000); an en dash when it was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if unit == BYTES and abs(value) < 2**10:
        return f"{value:.0f} B"
    if unit not in (SECONDS, BYTES) and abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    if unit not in (SECONDS, BYTES):
        return f"{value:.4g} {unit}"
    factor, shown = scale_of(value, unit)
    return f"{value * factor:.{digits}g} {shown}"


def format_ratio(ratio: float) -> str:
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.3g}"
