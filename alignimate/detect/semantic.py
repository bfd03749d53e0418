"""Detections -> the ``(K, h, w)`` keypoint heatmaps that ``register`` aligns on (the semantic modes,
:mod:`alignimate.pipeline.semantic_sources`).

One channel per chosen keypoint: a Gaussian from :func:`alignimate.core.heatmaps.keypoint_heatmaps`
around the keypoint, weighted by how much the keypoint can be trusted, times the person's soft mask
where there is one (so the heatmap does not spill onto the background or a bystander).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.heatmaps import keypoint_heatmaps
from alignimate.core.transforms import scale_matrix_for_resize, transform_points
from alignimate.detect.base import Instance, select_keypoints

__all__ = [
    "DEFAULT_CONFIDENCE_RAMP",
    "confidence_weights",
    "heatmap_image",
    "keypoints_at",
    "resized_mask",
]

# Keypoint confidences (in [0, 1]) below the first value get weight 0, above the second weight 1,
# linear in between. 0.5 is a Keypoint R-CNN logit of 0 (its "unsure" point), 0.9 a logit of 2.2.
DEFAULT_CONFIDENCE_RAMP: tuple[float, float] = (0.5, 0.9)


def confidence_weights(
    scores: torch.Tensor, ramp: tuple[float, float] = DEFAULT_CONFIDENCE_RAMP
) -> torch.Tensor:
    """Down-weight unreliable keypoints: ``clamp((scores - low) / (high - low), 0, 1)``.

    Args:
        scores: keypoint scores, any shape.
        ramp: ``(low, high)`` with ``0 <= low < high``; ``(-1, 0)`` trusts every keypoint.

    Returns:
        weights of ``scores``' shape.
    """
    low, high = ramp
    if not high > low:
        raise ValueError(f"ramp must be (low, high) with high > low, got {ramp}")
    return ((scores - low) / (high - low)).clamp(0.0, 1.0)


def resized_mask(
    mask: np.ndarray,
    size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """A soft mask resized to ``size`` (bilinear, antialiased when shrinking).

    Args:
        mask: ``(h_m, w_m)`` in ``[0, 1]``.
        size: the ``(h, w)`` wanted.
        dtype, device: of the result.

    Returns:
        ``(1, h, w)`` in ``[0, 1]``, pixel-centre aligned with the mask (docs/conventions.md).
    """
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None].to(dtype)
    if tuple(m.shape[-2:]) == tuple(size):
        return m[0]
    shrinking = m.shape[-2] > size[0] or m.shape[-1] > size[1]
    r = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return r[0].clamp(0.0, 1.0)


def keypoints_at(
    inst: Instance, names: Sequence[str], photo_size: Sequence[int], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of an instance where they lie on a resized copy of its photo.

    Args:
        inst: found on the photo.
        names: the keypoints wanted (``K``); a name the instance does not have scores 0.
        photo_size: the photo's ``(H, W)``.
        size: the copy's ``(h, w)``.

    Returns:
        ``(points, scores)``: ``(K, 2)`` float64 pixels of the copy (pixel-centre convention,
        docs/conventions.md) and ``(K,)``.
    """
    pts, scores = select_keypoints(inst, names)
    resized_H_photo = scale_matrix_for_resize(tuple(photo_size), tuple(size), dtype=torch.float64)
    out = transform_points(resized_H_photo, torch.as_tensor(pts, dtype=torch.float64)[None])[0]
    return out.numpy(), np.asarray(scores, dtype=np.float64)


def heatmap_image(
    points: np.ndarray,
    weights: np.ndarray,
    size: tuple[int, int],
    sigma: float,
    mask: np.ndarray | None = None,
) -> torch.Tensor:
    """The semantic image of one detection: a Gaussian around each keypoint, times its mask.

    Args:
        points: ``(K, 2)`` pixels of ``size``.
        weights: ``(K,)`` scale of each Gaussian (e.g. :func:`confidence_weights` of the scores).
        size: the image's ``(h, w)``.
        sigma: of the Gaussians, pixels.
        mask: a soft mask (any resolution, resized) multiplied in where there is one, so a heatmap
            does not spill onto the background.

    Returns:
        ``(K, h, w)`` float32.
    """
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (h, w) with positive entries, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    maps = keypoint_heatmaps(
        torch.as_tensor(points, dtype=torch.float32)[None],
        size=tuple(size),
        sigma=sigma,
        weights=torch.as_tensor(weights, dtype=torch.float32)[None],
    )[0]
    return maps if mask is None else maps * resized_mask(mask, tuple(size))
