"""OpenCV (``cv2``) for the full-resolution frame path: JPEG decoding and encoding
(:mod:`alignimate.io.planes`) and affine warps of uint8 photos (:mod:`alignimate.pipeline.render`).

It is imported on first use, never by ``import alignimate`` or the CLI's ``--help``. Only OpenCV 5 or
later is used: from version 5 on, ``warpAffine`` computes sample positions and bilinear weights in
floating point, so its frames equal an exact bilinear warp up to rounding; the 4.x series quantises
positions to 1/32 pixel, which moves edges by visibly more (docs/benchmarks.md, end to end). Without a
usable OpenCV every caller falls back to its own path (Pillow, torch), with the same pixels.
"""

from __future__ import annotations

import re
from functools import cache
from types import ModuleType

__all__ = ["MIN_OPENCV", "opencv", "opencv_version"]

MIN_OPENCV = (5, 0)


def opencv_version(text: str) -> tuple[int, int]:
    """``(major, minor)`` of an OpenCV version string such as ``"5.1.0"`` or ``"5.0.0-pre"``;
    ``(0, 0)`` when it cannot be read."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@cache
def opencv() -> ModuleType | None:
    """The ``cv2`` module when it imports and is at least :data:`MIN_OPENCV`, else ``None``."""
    try:
        import cv2
    except ImportError:  # also a cv2 whose shared libraries are missing (e.g. a non-headless build)
        return None
    if opencv_version(getattr(cv2, "__version__", "")) < MIN_OPENCV:
        return None
    return cv2
