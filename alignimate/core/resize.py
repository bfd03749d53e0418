"""Resizing with the pixel-centre convention and antialiasing.

Geometry (docs/conventions.md): resizing ``(h, w) -> (h', w')`` maps pixel ``x`` to
``x' = (x + 0.5) * w' / w - 0.5`` (and ``y`` likewise): image edges map to image edges, as in ``cv2.resize``
and ``F.interpolate(align_corners=False)``. The matching matrix is
:func:`alignimate.core.transforms.scale_matrix_for_resize`. Sizes are ``(h, w)``, height first.

Downscaling with ``antialias=True`` (default) low-pass filters first, so fine detail does not alias:
bilinear uses a triangle filter as wide as the scale (PyTorch's/PIL's antialiased resampling) and bicubic
the Keys cubic stretched likewise. ``cv2.resize`` does *not* antialias its ``INTER_LINEAR``; use
``antialias=False`` to reproduce it, or ``mode="area"`` for ``INTER_AREA``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.checks import check_image_batch, check_positive_int

__all__ = ["RESIZE_MODES", "fit_size", "rescale", "resize", "resize_to_fit", "scaled_size"]

RESIZE_MODES: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")


def _check_size(size: tuple[int, int], name: str = "size") -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a pair of positive ints (h, w), got {size!r}")
    return int(size[0]), int(size[1])


def resize(
    images: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: str = "bilinear",
    antialias: bool = True,
    align: str = "centers",
) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``(B, C, h, w)``.

    Args:
        images: ``(B, C, H, W)`` float.
        size: ``(h, w)``.
        mode: ``"bilinear"``, ``"bicubic"`` (Keys ``a = -0.75`` like OpenCV; may overshoot the input range),
            ``"nearest"`` (centre-aligned: source pixel ``floor((x' + 0.5) * w / w')``, PyTorch's
            ``"nearest-exact"``; not differentiable w.r.t. positions) or ``"area"`` (average over the
            source pixels each output pixel covers: ``cv2.INTER_AREA`` for integer factors; for other factors
            the bins are rounded to whole pixels, PyTorch's adaptive average pooling; enlarging both sides
            falls back to bilinear; OpenCV also interpolates there).
        antialias: low-pass filter when downscaling (``"bilinear"``/``"bicubic"`` only; ``"area"`` is
            inherently antialiased). Upscaling is unaffected.
        align: ``"centers"`` (default, the convention above) or ``"corners"``
            (``x' = x * (w' - 1) / (w - 1)``, ``align_corners=True``; only for interoperability).

    Returns:
        ``(B, C, h, w)``; the input itself when the size is unchanged (same convention, so identity).
    """
    check_image_batch(images)
    h, w = _check_size(size)
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if align not in ("centers", "corners"):
        raise ValueError(f"align must be 'centers' or 'corners', got {align!r}")
    if (h, w) == tuple(images.shape[-2:]):
        return images
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(
            images, size=(h, w), mode=mode, align_corners=align == "corners", antialias=bool(antialias)
        )
    if align == "corners":
        raise ValueError(f"align='corners' needs mode 'bilinear' or 'bicubic', got mode={mode!r}")
    if mode == "nearest":
        return F.interpolate(images, size=(h, w), mode="nearest-exact")
    if h >= images.shape[-2] and w >= images.shape[-1]:
        # Enlarging, "area" averages nothing: like cv2.INTER_AREA, fall back to bilinear.
        return F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(images, (h, w))


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def fit_size(size: tuple[int, int], max_side: int, *, allow_upscale: bool = False) -> tuple[int, int]:
    """The ``(h, w)`` :func:`resize_to_fit` produces: the longer side becomes ``max_side`` and the shorter
    one ``round(short * max_side / long)`` (half up, at least 1). A size that already fits is returned
    unchanged unless ``allow_upscale``."""
    h, w = _check_size(size)
    check_positive_int(max_side, "max_side")
    longer = max(h, w)
    if longer <= max_side and not allow_upscale:
        return h, w
    if h >= w:
        return max_side, max(1, _round_half_up(w * max_side / h))
    return max(1, _round_half_up(h * max_side / w)), max_side


def resize_to_fit(
    images: torch.Tensor,
    max_side: int,
    *,
    mode: str = "bilinear",
    antialias: bool = True,
    allow_upscale: bool = False,
) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` keeping the aspect ratio so the longer side is ``max_side``
    (size rule: :func:`fit_size`; the exact pixel map is ``scale_matrix_for_resize((H, W), new_size)``)."""
    check_image_batch(images)
    new_size = fit_size(tuple(images.shape[-2:]), max_side, allow_upscale=allow_upscale)
    return resize(images, new_size, mode=mode, antialias=antialias)


def scaled_size(size: tuple[int, int], factor: float | tuple[float, float]) -> tuple[int, int]:
    """``(round(h * fy), round(w * fx))`` (half up, at least 1) for ``factor`` ``f`` or ``(fy, fx)``."""
    h, w = _check_size(size)
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        fy = fx = float(factor)
    elif isinstance(factor, (tuple, list)) and len(factor) == 2:
        fy, fx = float(factor[0]), float(factor[1])
    else:
        raise TypeError(f"factor must be a float or a pair (fy, fx), got {factor!r}")
    if not (fy > 0 and fx > 0) or math.isinf(fy) or math.isinf(fx):
        raise ValueError(f"factor must be positive and finite, got {factor!r}")
    return max(1, _round_half_up(h * fy)), max(1, _round_half_up(w * fx))


def rescale(
    images: torch.Tensor,
    factor: float | tuple[float, float],
    *,
    mode: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` by ``factor`` (or ``(fy, fx)``) to :func:`scaled_size`. The size is rounded,
    so the exact scale is ``new / old`` per axis (use ``scale_matrix_for_resize`` for the pixel map)."""
    check_image_batch(images)
    return resize(images, scaled_size(tuple(images.shape[-2:]), factor), mode=mode, antialias=antialias)
