"""Where the aligned frames are valid, and the crop every kept frame covers.

The common area is computed from the transforms, never by looking for black pixels (which fails on
dark photos). Conventions: docs/conventions.md (pixel centres, ``dst_H_src`` matrices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CropBox", "common_crop", "coverage_mask", "largest_rectangle"]


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box of whole pixels in the output canvas: rows ``top:top+height``."""

    top: int
    left: int
    height: int
    width: int

    def as_slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def _covered(out_H_src: torch.Tensor, sizes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: which canvas points ``(N, 3)`` (homogeneous pixels) every source photo covers."""
    mapped = torch.einsum("bij,nj->bni", torch.linalg.inv(out_H_src), points)
    # A point behind the camera (w <= 0) of a homography is not covered.
    denom = mapped[..., 2]
    x = mapped[..., 0] / denom.clamp_min(1e-12)
    y = mapped[..., 1] / denom.clamp_min(1e-12)
    # Pixel centres from 0 to size - 1: there bilinear sampling uses only real pixels.
    inside = (x >= 0) & (y >= 0) & (x <= sizes[:, 1:2] - 1) & (y <= sizes[:, 0:1] - 1) & (denom > 1e-12)
    return inside.all(dim=0)


def coverage_mask(
    out_H_src: torch.Tensor, src_sizes: list[tuple[int, int]], canvas: tuple[int, int], step: float
) -> torch.Tensor:
    """Boolean ``(h', w')`` mask of canvas sample points that every source image covers.

    ``out_H_src`` ``(B, 3, 3)`` maps each source photo's pixels into the output canvas of size
    ``canvas=(h, w)``; ``src_sizes[i]`` is photo ``i``'s ``(h, w)``. The canvas is sampled every
    ``step`` pixels (sample ``(i, j)`` sits at pixel ``(j * step, i * step)``)."""
    h, w = canvas
    rows = int(np.floor((h - 1) / step)) + 1
    cols = int(np.floor((w - 1) / step)) + 1
    ys = torch.arange(rows, dtype=torch.float64) * step
    xs = torch.arange(cols, dtype=torch.float64) * step
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)
    sizes = torch.tensor(src_sizes, dtype=torch.float64)
    return _covered(out_H_src.to(torch.float64), sizes, points).reshape(rows, cols)


def largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest axis-aligned all-True rectangle of a boolean 2-D array as ``(top, left, height, width)``,
    or ``None`` when nothing is True. Histogram-and-stack method, O(rows * cols)."""
    rows, cols = mask.shape
    heights = np.zeros(cols + 1, dtype=np.int64)  # sentinel column of height 0 flushes the stack
    best: tuple[int, int, int, int] | None = None
    best_area = 0
    for r in range(rows):
        heights[:cols] = np.where(mask[r], heights[:cols] + 1, 0)
        stack: list[int] = []
        for c in range(cols + 1):
            while stack and heights[stack[-1]] >= heights[c]:
                height = int(heights[stack.pop()])
                left = stack[-1] + 1 if stack else 0
                area = height * (c - left)
                if area > best_area:
                    best_area, best = area, (r - height + 1, left, height, c - left)
            stack.append(c)
    return best


def _corners_covered(out_H_src: torch.Tensor, sizes: torch.Tensor, box: list[int]) -> bool:
    top, left, bottom, right = box
    corners = torch.tensor(
        [[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]], dtype=torch.float64
    )
    return bool(_covered(out_H_src, sizes, corners).all())


def _refine_to_pixels(
    out_H_src: torch.Tensor, sizes: torch.Tensor, box: list[int], canvas: tuple[int, int], reach: int
) -> list[int] | None:
    """Move the edges of ``box`` (top, left, bottom, right; inclusive pixels) to whole-pixel precision.

    The area every photo covers is an intersection of convex quadrilaterals, hence convex, so a box
    lies inside it exactly when its four corners do: shrink until they do, then grow each side while
    they still do (at most ``reach`` pixels, the sampling step)."""
    box = list(box)
    while not _corners_covered(out_H_src, sizes, box):
        box = [box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1]
        if box[0] > box[2] or box[1] > box[3]:
            return None
    limits = [0, 0, canvas[0] - 1, canvas[1] - 1]
    for side, direction in ((0, -1), (1, -1), (2, 1), (3, 1)):
        for _ in range(reach):
            trial = list(box)
            trial[side] += direction
            if (direction < 0 and trial[side] < limits[side]) or (
                direction > 0 and trial[side] > limits[side]
            ):
                break
            if not _corners_covered(out_H_src, sizes, trial):
                break
            box = trial
    return box


def common_crop(
    out_H_src: torch.Tensor,
    src_sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    *,
    resolution: int = 400,
    even: bool = True,
) -> CropBox | None:
    """The largest axis-aligned box of the canvas that every photo covers after warping.

    The coverage is sampled on a grid about ``resolution`` points across the long side to find the
    largest rectangle, whose edges are then refined to whole pixels (see :func:`_refine_to_pixels`):
    every pixel centre inside the box samples real pixels of every photo. ``even=True`` rounds the
    size down to even numbers, as H.264 needs. Returns ``None`` when the photos share no area."""
    h, w = canvas
    step = max(1.0, max(h, w) / resolution)
    matrices = out_H_src.to(torch.float64)
    sizes = torch.tensor(src_sizes, dtype=torch.float64)
    mask = coverage_mask(matrices, src_sizes, canvas, step).numpy()
    rect = largest_rectangle(mask)
    if rect is None:
        return None
    r0, c0, nr, nc = rect
    box = [
        int(np.ceil(r0 * step)),
        int(np.ceil(c0 * step)),
        int(np.floor((r0 + nr - 1) * step)),
        int(np.floor((c0 + nc - 1) * step)),
    ]
    refined = _refine_to_pixels(matrices, sizes, box, canvas, reach=int(np.ceil(step)) + 1)
    if refined is None:
        return None
    top, left, bottom, right = refined
    height, width = bottom - top + 1, right - left + 1
    if even:
        height -= height % 2
        width -= width % 2
    if height < 2 or width < 2:
        return None
    return CropBox(top, left, height, width)
