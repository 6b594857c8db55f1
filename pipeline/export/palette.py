"""A deterministic colour per identity, shared by the video writer and the plots."""

from __future__ import annotations

import colorsys

__all__ = ["UNKNOWN_BGR", "color_bgr", "color_rgb01"]

UNKNOWN_BGR = (160, 160, 160)
"""Grey used for ids < 1 (``global_id = -1`` means "not associated")."""

_GOLDEN = 0.618033988749895


def color_bgr(identity: int) -> tuple[int, int, int]:
    """Stable BGR colour (0-255 ints) for an id; consecutive ids get distant hues.

    Hues step by the golden ratio, and saturation/value cycle over three levels so
    ids that land on similar hues still differ. The same id gets the same colour in
    every run, camera, video and plot.
    """
    if identity < 1:
        return UNKNOWN_BGR
    hue = (identity * _GOLDEN) % 1.0
    saturation = (0.95, 0.75, 0.6)[identity % 3]
    value = (0.95, 0.8, 1.0)[(identity // 3) % 3]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(blue * 255), round(green * 255), round(red * 255))


def color_rgb01(identity: int) -> tuple[float, float, float]:
    """The same colour as ``color_bgr`` as matplotlib RGB floats in [0, 1]."""
    blue, green, red = color_bgr(identity)
    return (red / 255.0, green / 255.0, blue / 255.0)
