"""Grey-level morphology: the maximum (dilation) and minimum (erosion) over a square window.
Batched ``(B, C, H, W)``, any dtype with an order (``bool`` included), device-agnostic.

Each is separable (a row pass, then a column pass) and built from in-place element-wise maxima of
shifted views of the image, so one pass costs ``size - 1`` element-wise operations and no padded
copy. On the CPU PyTorch's ``max_pool2d`` with stride 1 is many times slower for small windows
(docs/benchmarks.md).

Borders: a window reaching outside the image takes the maximum (minimum) of its pixels inside it,
as ``scipy.ndimage.maximum_filter`` with ``mode="nearest"`` does (replicating the edge pixel changes
nothing, the edge pixel being in every such window).
"""

from __future__ import annotations

import torch

__all__ = ["max_filter2d", "min_filter2d"]


def max_filter2d(images: torch.Tensor, size: int) -> torch.Tensor:
    """Maximum of every ``size x size`` window centred on each pixel (``size`` odd), ``(B, C, H, W)``
    in and out; for ``bool`` images, whether any pixel of the window is set."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {got}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int, got {size!r}")
    half = size // 2
    out = images
    for dim in (-1, -2):
        n = out.shape[dim]
        acc = out.clone()
        for shift in range(1, min(half, n - 1) + 1):
            ahead = acc.narrow(dim, 0, n - shift)
            torch.maximum(ahead, out.narrow(dim, shift, n - shift), out=ahead)
            behind = acc.narrow(dim, shift, n - shift)
            torch.maximum(behind, out.narrow(dim, 0, n - shift), out=behind)
        out = acc
    return out


def min_filter2d(images: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum of every ``size x size`` window centred on each pixel (``size`` odd), ``(B, C, H, W)``
    in and out; for ``bool`` images, whether every pixel of the window is set."""
    if images.dtype == torch.bool:
        return ~max_filter2d(~images, size)
    return -max_filter2d(-images, size)
