"""Gaussian keypoint heatmaps, one channel per keypoint, differentiable w.r.t. the keypoints and sigma.

Pixel convention (docs/conventions.md): the heatmap value at pixel ``(i, j)`` is evaluated at the pixel
centre ``(x, y) = (j, i)``, so a keypoint at integer ``(x, y)`` puts the peak value exactly on that pixel.
Each map is the outer product of a 1-D Gaussian in ``y`` and one in ``x`` (``exp(-d^2 / 2 sigma^2)`` is
separable), so the only ``(h, w)``-sized tensor per keypoint is the output itself.
"""

from __future__ import annotations

import torch

from alignimate.core.checks import check_points

__all__ = ["HEATMAP_NORMALIZATIONS", "keypoint_heatmaps"]

HEATMAP_NORMALIZATIONS: tuple[str, ...] = ("peak", "sum")


def _per_keypoint(
    value: float | torch.Tensor, batch: int, count: int, name: str, like: torch.Tensor
) -> torch.Tensor:
    """Float or tensor ``()``, ``(B,)`` or ``(B, K)`` (``B`` may be 1) -> ``(B, K)`` in ``like``'s dtype."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        value = value.to(dtype=like.dtype, device=like.device)
        if value.dim() == 0:
            return value.expand(batch, count)
        if value.dim() == 1 and value.shape[0] in (1, batch):
            return value.unsqueeze(1).expand(batch, count)
        if value.dim() == 2 and value.shape[0] in (1, batch) and value.shape[1] in (1, count):
            return value.expand(batch, count)
        raise ValueError(
            f"{name} must have shape (), (B,) or (B, K) with B={batch}, K={count}, got {tuple(value.shape)}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return like.new_full((batch, count), float(value))


def keypoint_heatmaps(
    keypoints: torch.Tensor,
    size: tuple[int, int],
    sigma: float | torch.Tensor,
    weights: torch.Tensor | None = None,
    normalize: str = "peak",
) -> torch.Tensor:
    """Render one Gaussian heatmap per keypoint.

    Args:
        keypoints: ``(B, K, 2)`` pixel ``(x, y)`` (docs/conventions.md). A keypoint with a NaN/inf coordinate
            gives an all-zero map (and zero gradient), never NaN.
        size: ``(h, w)`` of the maps.
        sigma: standard deviation in pixels: a positive float, or a tensor ``()``, ``(B,)`` or ``(B, K)``
            (differentiable; not checked for positivity, which would need a host sync).
        weights: optional ``(B, K)`` (or ``(B,)``/``()``) factors, e.g. visibility or confidence; 0 gives an
            all-zero map.
        normalize: ``"peak"``: ``w * exp(-d^2 / (2 sigma^2))``, value ``w`` at the keypoint itself (so exactly
            ``w`` on the pixel of an integer keypoint); ``"sum"``: each map is divided by its sum over the
            image, so it sums to ``w`` (a discrete density; a keypoint far outside the image can underflow to
            an all-zero map rather than NaN).

    Returns:
        ``(B, K, h, w)`` in the keypoints' dtype and device.
    """
    check_points(keypoints, "keypoints")
    if not keypoints.is_floating_point():
        raise TypeError(f"keypoints must be a floating-point tensor, got {keypoints.dtype}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive ints (h, w), got {size!r}")
    if normalize not in HEATMAP_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {HEATMAP_NORMALIZATIONS}, got {normalize!r}")
    if not isinstance(sigma, torch.Tensor) and not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    b, k, _ = keypoints.shape
    h, w = size
    s = _per_keypoint(sigma, b, k, "sigma", keypoints)
    wt = None if weights is None else _per_keypoint(weights, b, k, "weights", keypoints)

    # Non-finite keypoints are replaced by 0 before any arithmetic so that neither the value nor the gradient
    # can become NaN; their maps are then zeroed through the weight.
    finite = torch.isfinite(keypoints).all(dim=-1)  # (B, K)
    safe = torch.where(finite.unsqueeze(-1), keypoints, torch.zeros_like(keypoints))
    gain = finite.to(keypoints.dtype) if wt is None else torch.where(finite, wt, torch.zeros_like(wt))

    inv_two_var = 0.5 / (s * s)  # (B, K)
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device)
    gx = torch.exp(-((xs - safe[..., 0:1]) ** 2) * inv_two_var.unsqueeze(-1))  # (B, K, w)
    gy = torch.exp(-((ys - safe[..., 1:2]) ** 2) * inv_two_var.unsqueeze(-1))  # (B, K, h)
    if normalize == "sum":
        # Separable, so the 2-D sum is the product of the 1-D sums; tiny floor avoids 0/0 far off-image.
        tiny = torch.finfo(keypoints.dtype).tiny
        gx = gx / gx.sum(dim=-1, keepdim=True).clamp_min(tiny)
        gy = gy / gy.sum(dim=-1, keepdim=True).clamp_min(tiny)
    gy = gy * gain.unsqueeze(-1)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)
