"""Detections -> the ``(B, K, H, W)`` keypoint heatmaps that ``register`` aligns on.

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

__all__ = ["DEFAULT_CONFIDENCE_RAMP", "confidence_weights", "resized_mask", "semantic_heatmaps"]

# Keypoint confidences (in [0, 1]) below the first value get weight 0, above the second weight 1,
# linear in between. 0.5 is a Keypoint R-CNN logit of 0 (its "unsure" point), 0.9 a logit of 2.2.
DEFAULT_CONFIDENCE_RAMP: tuple[float, float] = (0.5, 0.9)


def confidence_weights(
    scores: torch.Tensor, ramp: tuple[float, float] = DEFAULT_CONFIDENCE_RAMP
) -> torch.Tensor:
    """Down-weight unreliable keypoints: ``clamp((scores - low) / (high - low), 0, 1)``, any shape.

    ``ramp=(low, high)`` with ``0 <= low < high``. Pass ``ramp=(-1, 0)`` to trust every keypoint.
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
    """A soft ``(h_m, w_m)`` mask as a ``(1, h, w)`` tensor of ``size``, in ``[0, 1]`` (bilinear,
    antialiased when shrinking; pixel-centre aligned, docs/conventions.md)."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None].to(dtype)
    if tuple(m.shape[-2:]) == tuple(size):
        return m[0]
    shrinking = m.shape[-2] > size[0] or m.shape[-1] > size[1]
    r = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return r[0].clamp(0.0, 1.0)


def semantic_heatmaps(
    instances_per_image: Sequence[Instance | None],
    size: tuple[int, int],
    keypoint_names: Sequence[str],
    sigma_frac: float = 0.04,
    *,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    use_mask: bool = True,
    confidence_ramp: tuple[float, float] = DEFAULT_CONFIDENCE_RAMP,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Heatmaps ``(B, K, h, w)`` for the chosen instance of each photo (None: a photo where nothing
    was found, all channels 0).

    size: ``(h, w)`` of the heatmaps, i.e. of the photos as ``register`` sees them; each photo is
        taken to be resized to it as a whole, so a keypoint ``x`` maps to ``(x + 0.5) * w / W - 0.5``.
    keypoint_names: the ``K`` channels, by name (e.g. COCO names or the 5 face landmarks); a name an
        instance does not have gives a zero channel.
    sigma_frac: Gaussian sigma as a fraction of ``max(h, w)`` (0.04 as in alignimation).
    image_sizes: ``(H, W)`` of each original photo; defaults to each instance's ``image_size``.
    use_mask: multiply by the instance's soft mask (resized to ``size``) where it has one.
    confidence_ramp: see :func:`confidence_weights`; each channel is scaled by its keypoint's weight.
    """
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (h, w) with positive entries, got {size}")
    if len(keypoint_names) == 0:
        raise ValueError("keypoint_names must list at least one keypoint name")
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be positive, got {sigma_frac}")
    if image_sizes is not None and len(image_sizes) != len(instances_per_image):
        raise ValueError(f"image_sizes has {len(image_sizes)} entries for {len(instances_per_image)} images")
    h, w = int(size[0]), int(size[1])
    k = len(keypoint_names)
    dev = torch.device(device) if device is not None else None
    points = torch.zeros(len(instances_per_image), k, 2, dtype=torch.float64)
    scores = torch.zeros(len(instances_per_image), k, dtype=torch.float64)
    for b, inst in enumerate(instances_per_image):
        if inst is None:
            continue
        src = image_sizes[b] if image_sizes is not None else inst.image_size
        if src is None:
            raise ValueError(f"instances_per_image[{b}] has no image_size; pass image_sizes")
        pts, sc = select_keypoints(inst, keypoint_names)
        to_out = scale_matrix_for_resize(tuple(src), (h, w), dtype=torch.float64)
        points[b] = transform_points(to_out, torch.as_tensor(pts, dtype=torch.float64)[None])[0]
        scores[b] = torch.as_tensor(sc, dtype=torch.float64)
    weights = confidence_weights(scores, confidence_ramp).to(dtype=dtype, device=dev)
    sigma = sigma_frac * max(h, w)
    maps = keypoint_heatmaps(points.to(dtype=dtype, device=dev), size=(h, w), sigma=sigma, weights=weights)
    if not use_mask or all(inst is None or inst.mask is None for inst in instances_per_image):
        return maps
    ones = torch.ones(1, h, w, dtype=dtype, device=dev)
    masks = torch.stack(
        [
            ones if inst is None or inst.mask is None else resized_mask(inst.mask, (h, w), dtype, dev)
            for inst in instances_per_image
        ]
    )
    return maps * masks
