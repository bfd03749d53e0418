"""Pixel <-> normalised coordinate maps for ``grid_sample`` (``align_corners=False``).

Conventions: docs/conventions.md. Pixel ``(0, 0)`` is the centre of the top-left pixel; the
normalised coordinate ``-1`` is the left edge and ``+1`` the right edge of the image, so pixel
centre ``x`` maps to ``(2x + 1) / W - 1``.
"""

from __future__ import annotations

import torch


def scale_offset_matrix(
    scale: tuple[float, float],
    offset: tuple[float, float],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Matrix ``(3, 3)`` of the per-axis map ``x' = sx * x + ox``, ``y' = sy * y + oy`` for
    ``scale=(sx, sy)`` and ``offset=(ox, oy)``: the form of every change between pixel and
    normalised or frame coordinates."""
    (sx, sy), (ox, oy) = scale, offset
    m = torch.tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    # Built in float64 and cast once, so float64 callers keep full precision.
    return m.to(dtype=dtype, device=device)


def normalize_pixel_matrix(
    size: tuple[int, int], *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Matrix ``(3, 3)`` mapping pixel coordinates of an image of ``size=(h, w)`` to ``grid_sample``'s
    normalised coordinates (``align_corners=False``)."""
    h, w = size
    return scale_offset_matrix((2.0 / w, 2.0 / h), (1.0 / w - 1.0, 1.0 / h - 1.0), dtype=dtype, device=device)


def denormalize_pixel_matrix(
    size: tuple[int, int], *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Inverse of :func:`normalize_pixel_matrix`: normalised -> pixel coordinates, ``(3, 3)``."""
    h, w = size
    return scale_offset_matrix(
        (w / 2.0, h / 2.0), ((w - 1.0) / 2.0, (h - 1.0) / 2.0), dtype=dtype, device=device
    )


def pixel_grid(
    size: tuple[int, int], *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates of an image of ``size=(h, w)``, shape ``(h * w, 3)``,
    row-major (x varies fastest), each row ``(x, y, 1)``."""
    h, w = size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device),
        torch.arange(w, dtype=dtype, device=device),
        indexing="ij",
    )
    ones = torch.ones_like(xs)
    return torch.stack([xs, ys, ones], dim=-1).reshape(-1, 3)
