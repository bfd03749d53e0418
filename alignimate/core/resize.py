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

import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.checks import check_image_batch
from alignimate.sizes import check_size_hw, fit_size, scaled_size

__all__ = ["RESIZE_MODES", "fit_size", "rescale", "resize", "resize_to_fit", "scaled_size"]

RESIZE_MODES: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")


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
    h, w = check_size_hw(size)
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
