"""The registration engine's centred, aspect-preserving parameter frame.

Every image gets its own frame, built from its full-resolution size ``(h, w)``::

    u = (x - (w - 1) / 2) / s,    v = (y - (h - 1) / 2) / s,    s = max(h, w) / 2

so the image centre is the origin, the longer side spans ``[-1, 1]`` and both axes share one
scale (a similarity in the frame is a similarity in pixels, also for non-square images). The
engine's model ``T`` maps *fixed*-frame points to *moving*-frame points (the direction in which
the moving image is sampled); the pixel matrix handed back is
``fixed_H_moving = inverse(F_m^-1 @ T @ F_f)``. A downscaled copy of an image (resized with the
pixel-centre convention of docs/conventions.md) has the same frame, so the same ``T`` holds at
every pyramid level and at any working resolution.
"""

from __future__ import annotations

import torch

from alignimate.core.coords import scale_offset_matrix

__all__ = [
    "frame_from_pixels",
    "frame_size",
    "matrix_from_model",
    "model_from_matrix",
    "pixels_from_frame",
]


def frame_size(size: tuple[int, int]) -> tuple[float, float]:
    """Half-extent ``(half_w, half_h)`` of an image of ``size=(h, w)`` in its own frame units
    (the longer side is 1)."""
    h, w = size
    s = max(h, w) / 2.0
    return w / (2.0 * s), h / (2.0 * s)


def frame_from_pixels(
    size: tuple[int, int], *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Matrix ``(3, 3)`` mapping pixel coordinates of an image of ``size=(h, w)`` to its frame."""
    h, w = size
    s = max(h, w) / 2.0
    centre = (-(w - 1.0) / (2.0 * s), -(h - 1.0) / (2.0 * s))
    return scale_offset_matrix((1.0 / s, 1.0 / s), centre, dtype=dtype, device=device)


def pixels_from_frame(
    size: tuple[int, int], *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Inverse of :func:`frame_from_pixels`: frame -> pixel coordinates, ``(3, 3)``."""
    h, w = size
    s = max(h, w) / 2.0
    return scale_offset_matrix((s, s), ((w - 1.0) / 2.0, (h - 1.0) / 2.0), dtype=dtype, device=device)


def matrix_from_model(
    model: torch.Tensor, moving_size: tuple[int, int], fixed_size: tuple[int, int]
) -> torch.Tensor:
    """Pixel ``fixed_H_moving (B, 3, 3)`` from frame models ``T (B, 3, 3)`` (fixed frame -> moving
    frame), for images of ``moving_size`` and ``fixed_size`` ``(h, w)``. Computed in float64."""
    t = model.to(torch.float64)
    f_f = frame_from_pixels(fixed_size, device=t.device)
    m_from_f = pixels_from_frame(moving_size, device=t.device)
    moving_H_fixed = m_from_f @ t @ f_f
    fixed_H_moving = torch.linalg.inv(moving_H_fixed)
    return fixed_H_moving / fixed_H_moving[:, 2:3, 2:3]


def model_from_matrix(
    fixed_H_moving: torch.Tensor, moving_size: tuple[int, int], fixed_size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`matrix_from_model`: frame models ``T (B, 3, 3)`` (float64) from pixel
    ``fixed_H_moving (B, 3, 3)`` matrices."""
    m = fixed_H_moving.to(torch.float64)
    f_m = frame_from_pixels(moving_size, device=m.device)
    f_from_p = pixels_from_frame(fixed_size, device=m.device)
    t = f_m @ torch.linalg.inv(m) @ f_from_p
    return t / t[:, 2:3, 2:3]
