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
    src_H_out = torch.linalg.inv(out_H_src.to(torch.float64))
    mapped = torch.einsum("bij,nj->bni", src_H_out, points)
    # A point behind the camera (w <= 0) of a homography is not covered.
    denom = mapped[..., 2]
    ok = denom > 1e-12
    x = mapped[..., 0] / denom.clamp_min(1e-12)
    y = mapped[..., 1] / denom.clamp_min(1e-12)
    sizes = torch.tensor(src_sizes, dtype=torch.float64)
    # The image covers [-0.5, size - 0.5]; stay half a pixel inside so bilinear sampling is fully valid.
    inside = (x >= 0) & (y >= 0) & (x <= sizes[:, 1:2] - 1) & (y <= sizes[:, 0:1] - 1) & ok
    return inside.all(dim=0).reshape(rows, cols)


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


def common_crop(
    out_H_src: torch.Tensor,
    src_sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    *,
    resolution: int = 400,
    even: bool = True,
) -> CropBox | None:
    """The largest axis-aligned box of the canvas that every photo covers after warping.

    The coverage is sampled on a grid about ``resolution`` points across the long side, and the box is
    shrunk to sample points that are covered, so every pixel inside it is valid in every frame (up to
    the sampling step at the box edge, which is shrunk by one step for safety). ``even=True`` rounds
    the size down to even numbers, as H.264 needs. Returns ``None`` when the photos share no area."""
    h, w = canvas
    step = max(1.0, max(h, w) / resolution)
    mask = coverage_mask(out_H_src, src_sizes, canvas, step).numpy()
    # Erode by one sample so the region between the last covered sample and the next is safe too.
    eroded = mask.copy()
    eroded[1:, :] &= mask[:-1, :]
    eroded[:-1, :] &= mask[1:, :]
    eroded[:, 1:] &= mask[:, :-1]
    eroded[:, :-1] &= mask[:, 1:]
    rect = largest_rectangle(eroded)
    if rect is None:
        return None
    r0, c0, nr, nc = rect
    top = int(np.ceil(r0 * step))
    left = int(np.ceil(c0 * step))
    bottom = int(np.floor((r0 + nr - 1) * step))
    right = int(np.floor((c0 + nc - 1) * step))
    height, width = bottom - top + 1, right - left + 1
    if even:
        height -= height % 2
        width -= width % 2
    if height < 2 or width < 2:
        return None
    return CropBox(top, left, height, width)
