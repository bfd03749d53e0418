"""Size arithmetic without torch: the working-size rule, shared by the torch core
(:mod:`alignimate.core.resize`) and by the I/O that reads working copies before torch is imported
(:mod:`alignimate.io`). Sizes are ``(h, w)``, height first (docs/conventions.md)."""

from __future__ import annotations

import math

__all__ = ["check_size_hw", "fit_size", "scaled_size"]


def check_size_hw(size: object, name: str = "size") -> tuple[int, int]:
    """``size`` as ``(h, w)`` ints; a ``ValueError`` naming ``name`` unless it is a pair of positive ints."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a pair of positive ints (h, w), got {size!r}")
    return int(size[0]), int(size[1])


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def fit_size(size: tuple[int, int], max_side: int, *, allow_upscale: bool = False) -> tuple[int, int]:
    """The ``(h, w)`` that fits in ``max_side``: the longer side becomes ``max_side`` and the shorter
    one ``round(short * max_side / long)`` (half up, at least 1). A size that already fits is returned
    unchanged unless ``allow_upscale``."""
    h, w = check_size_hw(size)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    longer = max(h, w)
    if longer <= max_side and not allow_upscale:
        return h, w
    if h >= w:
        return max_side, max(1, _round_half_up(w * max_side / h))
    return max(1, _round_half_up(h * max_side / w)), max_side


def scaled_size(size: tuple[int, int], factor: float | tuple[float, float]) -> tuple[int, int]:
    """``(round(h * fy), round(w * fx))`` (half up, at least 1) for ``factor`` ``f`` or ``(fy, fx)``."""
    h, w = check_size_hw(size)
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        fy = fx = float(factor)
    elif isinstance(factor, (tuple, list)) and len(factor) == 2:
        fy, fx = float(factor[0]), float(factor[1])
    else:
        raise TypeError(f"factor must be a float or a pair (fy, fx), got {factor!r}")
    if not (fy > 0 and fx > 0) or math.isinf(fy) or math.isinf(fx):
        raise ValueError(f"factor must be positive and finite, got {factor!r}")
    return max(1, _round_half_up(h * fy)), max(1, _round_half_up(w * fx))
