"""Where the aligned frames are valid, and the crop every kept frame covers.

The common area is computed from the transforms, never by looking for black pixels (which fails on
dark photos). Conventions: docs/conventions.md (pixel centres, ``dst_H_src`` matrices).

A canvas point ``p = (x, y, 1)`` is covered by a photo of size ``(H, W)`` when its source position
``(u', v', w') = src_H_out @ p`` has ``w' > 0`` and ``0 <= u'/w' <= W - 1``, ``0 <= v'/w' <= H - 1``
(pixel centres only, so bilinear sampling reads real pixels). For ``w' > 0`` these are the half-planes
``u' >= 0``, ``(W - 1) w' - u' >= 0``, ``v' >= 0``, ``(H - 1) w' - v' >= 0``, linear in ``(x, y)``;
``w' >= 0`` joins them (``w' = 0`` would force ``u' = v' = 0``, i.e. ``p = 0``, so it is never met).
The area every photo covers is therefore convex, and on each canvas row it is one interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # The crop itself is NumPy: a job that registers nothing (one photo, a resumed run) crops without
    # importing torch. Only coverage_mask and torch arguments need it.
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


def _covered_points(src_H_out: np.ndarray, sizes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which canvas points ``(N, 3)`` (homogeneous pixels) every photo covers.

    ``src_H_out`` ``(B, 3, 3)`` maps the canvas into each photo, ``sizes`` ``(B, 2)`` are ``(h, w)``.
    NumPy, not torch: on a few points torch's thread pool costs more than the arithmetic."""
    mapped = src_H_out @ points.T  # (B, 3, N)
    # A point behind the camera (w <= 0) of a homography is not covered.
    denom = mapped[:, 2]
    x = mapped[:, 0] / np.maximum(denom, 1e-12)
    y = mapped[:, 1] / np.maximum(denom, 1e-12)
    # Pixel centres from 0 to size - 1: there bilinear sampling uses only real pixels.
    inside = (x >= 0) & (y >= 0) & (x <= sizes[:, 1:2] - 1) & (y <= sizes[:, 0:1] - 1) & (denom > 1e-12)
    return inside.all(axis=0)


def coverage_mask(
    out_H_src: torch.Tensor, src_sizes: list[tuple[int, int]], canvas: tuple[int, int], step: float
) -> torch.Tensor:
    """Boolean ``(h', w')`` mask of canvas sample points that every source image covers.

    Args:
        out_H_src: ``(B, 3, 3)`` pixel matrices that map each source photo's pixels into the canvas
            (docs/conventions.md).
        src_sizes: photo ``i``'s ``(h, w)``.
        canvas: the canvas ``(h, w)``.
        step: the canvas is sampled every ``step`` pixels (sample ``(i, j)`` sits at pixel
            ``(j * step, i * step)``).
    """
    import torch

    h, w = canvas
    rows = int(np.floor((h - 1) / step)) + 1
    cols = int(np.floor((w - 1) / step)) + 1
    ys = torch.arange(rows, dtype=torch.float64) * step
    xs = torch.arange(cols, dtype=torch.float64) * step
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3).numpy()
    src_H_out = np.linalg.inv(out_H_src.detach().to("cpu", torch.float64).numpy())
    covered = _covered_points(src_H_out, np.array(src_sizes, dtype=np.float64), points)
    return torch.from_numpy(covered.reshape(rows, cols))


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


def _corners_covered(src_H_out: np.ndarray, sizes: np.ndarray, box: list[int]) -> bool:
    top, left, bottom, right = box
    corners = np.array(
        [[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]], dtype=np.float64
    )
    return bool(_covered_points(src_H_out, sizes, corners).all())


def _refine_to_pixels(
    src_H_out: np.ndarray, sizes: np.ndarray, box: list[int], canvas: tuple[int, int], reach: int
) -> list[int] | None:
    """Move the edges of ``box`` (top, left, bottom, right; inclusive pixels) to whole-pixel precision.

    The area every photo covers is an intersection of convex quadrilaterals, hence convex, so a box
    lies inside it exactly when its four corners do: shrink until they do, then grow each side while
    they still do (at most ``reach`` pixels). ``src_H_out`` ``(B, 3, 3)``, ``sizes`` ``(B, 2)``."""
    box = list(box)
    while not _corners_covered(src_H_out, sizes, box):
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
            if not _corners_covered(src_H_out, sizes, trial):
                break
            box = trial
    return box


# Pixel slack for the analytic row bounds: far above float64 rounding at canvas scale, far below a pixel.
# Bounds are taken with this slack in favour of coverage, then the box is checked point by point.
_SLACK = 1e-6


@dataclass(frozen=True)
class _HalfPlanes:
    """Coverage constraints ``a x + b y + c >= 0`` of all photos, split by how they bound a row.

    ``lower``/``upper`` ``(K, 2)`` hold the slope and intercept of ``x >= m y + q`` / ``x <= m y + q``;
    constraints with ``a == 0`` do not depend on ``x`` and only bound the rows (``row_range``)."""

    lower: np.ndarray
    upper: np.ndarray
    row_range: tuple[int, int]


def _half_planes(src_H_out: np.ndarray, sizes: np.ndarray, canvas: tuple[int, int]) -> _HalfPlanes:
    """Constraints of the area every photo covers; ``src_H_out`` ``(B, 3, 3)``, ``sizes`` ``(B, 2)``."""
    u, v, w = src_H_out[:, 0], src_H_out[:, 1], src_H_out[:, 2]  # each (B, 3): coefficients of x, y, 1
    h_max = (sizes[:, 0:1] - 1.0) * w
    w_max = (sizes[:, 1:2] - 1.0) * w
    planes = np.concatenate([u, w_max - u, v, h_max - v, w], axis=0)
    a, b, c = planes[:, 0], planes[:, 1], planes[:, 2]
    # Where a x changes the value by no more than rounding across the canvas, the constraint only bounds
    # the rows (and dividing by such an a could overflow).
    flat = np.abs(a) * max(canvas[1] - 1, 1) <= 1e-13 * (np.abs(b) * max(canvas[0] - 1, 1) + np.abs(c))
    lower, upper = (a > 0) & ~flat, (a < 0) & ~flat
    # a x + b y + c >= 0  <=>  x >= -(b y + c) / a for a > 0, x <= -(b y + c) / a for a < 0.
    lines = np.stack([-b / np.where(flat, 1.0, a), -c / np.where(flat, 1.0, a)], axis=1)
    return _HalfPlanes(lines[lower], lines[upper], _flat_row_range(b[flat], c[flat], canvas[0]))


def _flat_row_range(b: np.ndarray, c: np.ndarray, height: int) -> tuple[int, int]:
    """Rows ``(first, last)`` of the canvas meeting every ``b y + c >= 0``; ``first > last`` if none."""
    if np.any((b == 0) & (c < 0)):
        return 0, -1
    rising, falling = b > 0, b < 0
    first = np.ceil(np.max(-c[rising] / b[rising], initial=0.0) - _SLACK)
    last = np.floor(np.min(-c[falling] / b[falling], initial=height - 1.0) + _SLACK)
    # Clipped as floats: a tiny b can put a bound at +-inf.
    return int(np.clip(first, 0, height)), int(np.clip(last, -1, height - 1))


def _real_bounds(planes: _HalfPlanes, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Covered ``x`` range ``[lo, hi]`` (reals, within the canvas) on each of ``rows`` ``(R,)``."""
    lo = np.max(rows[:, None] * planes.lower[:, 0] + planes.lower[:, 1], axis=1, initial=0.0)
    hi = np.min(rows[:, None] * planes.upper[:, 0] + planes.upper[:, 1], axis=1, initial=width - 1.0)
    return np.minimum(lo, width), np.maximum(hi, -1.0)  # finite even for far-off bounds


def _pixel_bounds(
    planes: _HalfPlanes, rows: np.ndarray, width: int, slack: float
) -> tuple[np.ndarray, np.ndarray]:
    """First and last covered pixel column ``(R,)`` on each of ``rows``; empty rows have ``last < first``."""
    lo, hi = _real_bounds(planes, rows.astype(np.float64), width)
    return np.ceil(lo - slack).astype(np.int64), np.floor(hi + slack).astype(np.int64)


def _row_gap(planes: _HalfPlanes, rows: np.ndarray, width: int) -> np.ndarray:
    """``hi - lo`` per row: concave in the row (``lo`` is a max of lines, ``hi`` a min)."""
    lo, hi = _real_bounds(planes, rows.astype(np.float64), width)
    return hi - lo


def _sample_rows(first: int, last: int, count: int) -> np.ndarray:
    """About ``count`` rows from ``first`` to ``last`` (both included), evenly spaced."""
    rows = np.arange(first, last + 1, max(1, -(-(last - first + 1) // count)))
    return rows if rows[-1] == last else np.append(rows, last)


def _covered_row_span(planes: _HalfPlanes, width: int, resolution: int) -> tuple[int, int] | None:
    """First and last canvas row whose covered interval is not empty (``None`` if none is).

    The row gap is concave, so the rows where it is >= 0 are contiguous; they are bracketed on a
    sample of rows and then located exactly inside the bracketing samples."""
    first, last = planes.row_range
    if first > last:
        return None
    rows = _sample_rows(first, last, resolution)
    ok = _row_gap(planes, rows, width) >= -2 * _SLACK
    if not ok.any():
        # A sliver thinner than the sampling step lies next to the sample where the gap peaks.
        peak = int(np.argmax(_row_gap(planes, rows, width)))
        window = np.arange(rows[max(peak - 1, 0)], rows[min(peak + 1, len(rows) - 1)] + 1)
        inside = window[_row_gap(planes, window, width) >= -2 * _SLACK]
        return (int(inside[0]), int(inside[-1])) if len(inside) else None
    i, j = int(np.argmax(ok)), len(ok) - 1 - int(np.argmax(ok[::-1]))
    above = np.arange(rows[max(i - 1, 0)], rows[i] + 1)
    below = np.arange(rows[j], rows[min(j + 1, len(rows) - 1)] + 1)
    top = above[np.argmax(_row_gap(planes, above, width) >= -2 * _SLACK)]
    below_ok = _row_gap(planes, below, width) >= -2 * _SLACK
    bottom = below[len(below) - 1 - np.argmax(below_ok[::-1])]
    return int(top), int(bottom)


class _RowBounds:
    """First and last covered pixel column of canvas rows, computed on demand and kept."""

    def __init__(self, planes: _HalfPlanes, height: int, width: int, slack: float) -> None:
        self.planes, self.width, self.slack = planes, width, slack
        self.first = np.zeros(height, dtype=np.int64)
        self.last = np.full(height, -1, dtype=np.int64)
        self.known = np.zeros(height, dtype=bool)

    def ensure(self, rows: np.ndarray) -> None:
        missing = np.unique(rows[~self.known[rows]])
        if len(missing):
            self.first[missing], self.last[missing] = _pixel_bounds(
                self.planes, missing, self.width, self.slack
            )
            self.known[missing] = True

    def best_pair(self, tops: np.ndarray, bottoms: np.ndarray, even: bool) -> tuple[int, int, int]:
        """Best ``(area, top, bottom)`` over every pair of candidate rows ``tops`` x ``bottoms``.

        The covered area is convex, so a row's first covered column is a convex function of the row
        and its last a concave one: over rows ``t..b`` both are tightest at ``t`` or at ``b``. The box
        of rows ``t..b`` thus spans exactly ``max(first[t], first[b])`` to ``min(last[t], last[b])``."""
        self.ensure(np.concatenate([tops, bottoms]))
        first = np.maximum(self.first[tops][:, None], self.first[bottoms][None, :])
        last = np.minimum(self.last[tops][:, None], self.last[bottoms][None, :])
        widths = last - first + 1
        heights = bottoms[None, :] - tops[:, None] + 1
        if even:
            widths, heights = widths - widths % 2, heights - heights % 2
        areas = np.where((widths >= 2) & (heights >= 2), widths * heights, 0)
        t, b = np.unravel_index(int(np.argmax(areas)), areas.shape)
        return int(areas[t, b]), int(tops[t]), int(bottoms[b])

    def box(self, top: int, bottom: int) -> list[int]:
        """``[top, left, bottom, right]`` of the widest box spanning rows ``top..bottom``."""
        left = max(self.first[top], self.first[bottom])
        right = min(self.last[top], self.last[bottom])
        return [top, int(left), bottom, int(right)]


def _largest_box(
    planes: _HalfPlanes,
    canvas: tuple[int, int],
    span: tuple[int, int],
    resolution: int,
    even: bool,
    slack: float,
) -> list[int] | None:
    """Largest box ``[top, left, bottom, right]`` (inclusive pixels) inside the covered rows ``span``.

    Every pair of about ``resolution`` sampled rows is tried, then the best pair is moved at whole-row
    precision: all pairs within one sampling step of it, again while that improves the area."""
    first, last = span
    bounds = _RowBounds(planes, canvas[0], canvas[1], slack)
    rows = _sample_rows(first, last, resolution)
    area, top, bottom = bounds.best_pair(rows, rows, even)
    reach = int(rows[1] - rows[0]) if len(rows) > 1 else 1
    while area > 0 and reach > 1:
        tops = np.arange(max(first, top - reach), min(last, top + reach) + 1)
        bottoms = np.arange(max(first, bottom - reach), min(last, bottom + reach) + 1)
        new_area, new_top, new_bottom = bounds.best_pair(tops, bottoms, even)
        if new_area <= area:
            break
        area, top, bottom = new_area, new_top, new_bottom
    return bounds.box(top, bottom) if area > 0 else None


def _matrices_array(out_H_src: torch.Tensor | np.ndarray, batch: int) -> np.ndarray:
    """``out_H_src``, ``(B|1, 3, 3)`` with ``B == batch``, as a float64 array: a torch tensor is checked
    as every core op checks its matrices, a numpy array by the same rules."""
    if not isinstance(out_H_src, np.ndarray):
        from alignimate.core.checks import check_matrices

        check_matrices(out_H_src, batch, "out_H_src")
        return out_H_src.detach().cpu().double().numpy()
    if out_H_src.ndim != 3 or out_H_src.shape[1:] != (3, 3):
        raise ValueError(f"out_H_src must have shape (B, 3, 3), got {out_H_src.shape}")
    if out_H_src.shape[0] not in (1, batch):
        raise ValueError(f"out_H_src has batch {out_H_src.shape[0]}, expected 1 or {batch}")
    return out_H_src.astype(np.float64)


def _check_crop_arguments(
    matrices: np.ndarray, src_sizes: list[tuple[int, int]], canvas: tuple[int, int], resolution: int
) -> None:
    if not np.isfinite(matrices).all():
        raise ValueError("out_H_src must hold finite matrices")
    if len(src_sizes) == 0:
        raise ValueError("src_sizes must list at least one photo size (h, w)")
    if any(len(s) != 2 or min(s) < 1 for s in src_sizes):
        raise ValueError(f"src_sizes must be (h, w) pairs of positive sizes, got {src_sizes!r}")
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"canvas must be a positive (h, w), got {canvas!r}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")


def common_crop(
    out_H_src: torch.Tensor | np.ndarray,
    src_sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    *,
    resolution: int = 400,
    even: bool = True,
) -> CropBox | None:
    """The largest axis-aligned box of the canvas that every photo covers after warping.

    Every pixel centre inside the returned box samples real pixels of every photo (see the module
    docstring). Columns are exact per row.

    Args:
        out_H_src: ``(B|1, 3, 3)`` pixel matrices that map photo ``i``'s pixels into the canvas
            (docs/conventions.md), a torch tensor or a numpy array (no torch needed).
        src_sizes: photo ``i``'s ``(h, w)``.
        canvas: the canvas ``(h, w)``.
        resolution: top and bottom rows are paired among about this many sampled rows, then moved
            row by row around the best pair; when at most this many rows are covered, every pair is
            tried (the exact optimum).
        even: maximise the area after rounding the size down to even numbers, as H.264 needs (the
            box keeps its top-left corner).

    Returns:
        the box, or ``None`` when the photos share no area.
    """
    matrices = _matrices_array(out_H_src, len(src_sizes))
    _check_crop_arguments(matrices, src_sizes, canvas, resolution)
    h, w = (int(canvas[0]), int(canvas[1]))
    matrices = np.broadcast_to(matrices, (len(src_sizes), 3, 3))
    try:
        src_H_out = np.linalg.inv(matrices)
    except np.linalg.LinAlgError as error:
        raise ValueError("out_H_src holds a singular matrix") from error
    sizes = np.array(src_sizes, dtype=np.float64)
    planes = _half_planes(src_H_out, sizes, (h, w))
    span = _covered_row_span(planes, w, resolution)
    if span is None:
        return None
    box = None
    # First with the slack in favour of coverage (exact on pixel-aligned edges), then against it; the
    # corners are checked point by point (enough: the covered area is convex).
    for slack in (_SLACK, -_SLACK):
        box = _largest_box(planes, (h, w), span, resolution, even, slack)
        if box is None or _corners_covered(src_H_out, sizes, box):
            break
    else:
        box = _refine_to_pixels(src_H_out, sizes, box, (h, w), reach=0)
    if box is None:
        return None
    top, left, bottom, right = box
    height, width = bottom - top + 1, right - left + 1
    if even:
        height -= height % 2
        width -= width % 2
    if height < 2 or width < 2:
        return None
    return CropBox(top, left, height, width)
