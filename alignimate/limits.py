"""Budgets for sizes and counts: the bounds every value from a flag, a config file or a
transforms.json is checked against before any work starts (docs/configuration.md lists them).

They exist so that a typo or a hostile file gives a clear refusal instead of a run that allocates
until the kernel kills it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_ANIMATION_SIDE",
    "MAX_FRAME_PIXELS",
    "MAX_FRAME_SIDE",
    "MAX_PHOTOS",
    "MAX_PIXELS_RANGE",
    "size_problem",
]

MAX_FRAME_SIDE = 65_500
"""Largest side of a frame, canvas or crop, pixels (JPEG stores at most 65,535)."""

MAX_FRAME_PIXELS = 1 << 28
"""Largest frame, canvas or crop, pixels (268 MP: 805 MB as 8-bit RGB)."""

DEFAULT_MAX_PIXELS = 89_478_485
"""Decompression budget: photos with more pixels are skipped unread (Pillow's own default)."""

MAX_PIXELS_RANGE = (10_000, 1 << 30)
"""What ``--max-pixels`` / ``max_pixels`` may be set to."""

MAX_ANIMATION_SIDE = 8192
"""Largest side of an animation frame (after ``scale``), pixels."""

MAX_PHOTOS = 10_000_000
"""Largest number of photo entries read from a transforms.json."""


def size_problem(
    h: int, w: int, max_side: int = MAX_FRAME_SIDE, max_pixels: int = MAX_FRAME_PIXELS
) -> str | None:
    """Why ``h x w`` is outside a pixel budget, or None when it is within.

    Args:
        h, w: the size, pixels.
        max_side, max_pixels: the budget (default: a frame's).
    """
    if 0 < h <= max_side and 0 < w <= max_side and h * w <= max_pixels:
        return None
    return f"{h}x{w} is outside the pixel budget (sides 1 to {max_side}, at most {max_pixels} pixels)"
