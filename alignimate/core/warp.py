"""Batched perspective / affine warps on ``grid_sample``, plus crop and pad helpers.

Conventions: docs/conventions.md. Warps take the pixel matrix ``dst_H_src`` (the matrix
``cv2.warpPerspective`` takes) and the destination size ``(h, w)``, and sample the source at
``src_H_dst @ p_dst`` for every destination pixel centre. ``grid_sample`` is always called with
``align_corners=False``.

Padding modes and their OpenCV equivalents (for ``bilinear``/``nearest`` and, tap by tap, ``bicubic``):

============== ======================================= ===================================
padding_mode   outside the source                      OpenCV ``borderMode``
============== ======================================= ===================================
``zeros``      0                                       ``BORDER_CONSTANT``, value 0
``constant``   ``fill_value`` (scalar or per channel)  ``BORDER_CONSTANT``, ``borderValue``
``border``     nearest edge pixel                      ``BORDER_REPLICATE``
``reflection`` mirrored about the image *edges*         ``BORDER_REFLECT`` (``fedcba|abcdef``),
                                                       not ``BORDER_REFLECT_101``
============== ======================================= ===================================

``grid_sample``'s ``reflection`` with ``align_corners=False`` reflects coordinates about
``-0.5`` and ``W - 0.5`` (the image edges), so edge pixels are repeated: OpenCV's ``BORDER_REFLECT``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypedDict, Unpack

import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.checks import check_image_batch, check_matrices
from alignimate.core.coords import normalize_pixel_matrix
from alignimate.core.transforms import _broadcast_batch, _check_size, _safe_denominator, invert, to_3x3

__all__ = [
    "WarpOptions",
    "center_crop",
    "crop",
    "pad_to",
    "warp_affine",
    "warp_grid",
    "warp_perspective",
]

_MODES = ("bilinear", "nearest", "bicubic")
_PADDING_MODES = ("zeros", "border", "reflection", "constant")

FillValue = float | Sequence[float] | torch.Tensor


class WarpOptions(TypedDict, total=False):
    """The keyword options of :func:`warp_perspective`, which :func:`warp_affine` passes on (their
    defaults and meaning are :func:`warp_perspective`'s)."""

    mode: str
    padding_mode: str
    fill_value: FillValue
    return_mask: bool
    exact_integer_shifts: bool


def warp_perspective(
    images: torch.Tensor,
    dst_H_src: torch.Tensor,
    dsize: tuple[int, int],
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    fill_value: FillValue = 0.0,
    return_mask: bool = False,
    exact_integer_shifts: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Warp ``images`` ``(B, C, H, W)`` by the pixel matrices ``dst_H_src`` ``(B|1, 3, 3)`` (``(B|1, 2, 3)``
    accepted) into ``dsize=(h, w)``; same result as ``cv2.warpPerspective(img, M, (w, h))``.

    A batch of 1 on either side broadcasts (one matrix for all images, or one image warped by many
    matrices). ``mode``: ``"bilinear"``, ``"nearest"`` or ``"bicubic"`` (OpenCV's cubic, a = -0.75).
    ``padding_mode``: ``"zeros"``, ``"border"``, ``"reflection"`` or ``"constant"`` (module docstring
    lists the OpenCV equivalents); ``fill_value`` (scalar or one value per channel) is only used by
    ``"constant"``. Differentiable with respect to ``images`` and ``dst_H_src`` (bilinear/bicubic).

    Exactness: when ``dst_H_src`` does not require grad and ``exact_integer_shifts`` is true, a pure
    integer translation (identity included) is detected with one device-to-host copy of the matrix and
    done by indexing, so the result equals the shifted input exactly, padded per ``padding_mode``.
    Pass ``exact_integer_shifts=False`` inside loops to avoid that host sync.

    Returns ``warped`` ``(B, C, h, w)``, or ``(warped, mask)`` with ``return_mask=True``: ``mask``
    ``(B, 1, h, w)`` is 1.0 where the sampling point lies inside the source image area
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` and 0.0 elsewhere (computed from the grid, no extra sampling).
    Conventions: docs/conventions.md.
    """
    check_matrices(dst_H_src, None, "dst_H_src", rows=(2, 3))
    affine = dst_H_src.shape[1] == 2
    return _warp(
        images,
        to_3x3(dst_H_src),
        dsize,
        affine=affine,
        mode=mode,
        padding_mode=padding_mode,
        fill_value=fill_value,
        return_mask=return_mask,
        exact_integer_shifts=exact_integer_shifts,
    )


def warp_affine(
    images: torch.Tensor, dst_A_src: torch.Tensor, dsize: tuple[int, int], **options: Unpack[WarpOptions]
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Affine warp of ``images`` ``(B, C, H, W)`` by ``dst_A_src`` ``(B|1, 2, 3)`` or ``(B|1, 3, 3)`` (only
    the top two rows are used) into ``dsize=(h, w)``; same result as ``cv2.warpAffine(img, M, (w, h))``.

    Keyword options (:class:`WarpOptions`, with their defaults) and return value as
    :func:`warp_perspective`; skips the perspective division. Conventions: docs/conventions.md.
    """
    check_matrices(dst_A_src, None, "dst_A_src", rows=(2, 3))
    return warp_perspective(images, dst_A_src[:, :2, :], dsize, **options)


def warp_grid(dst_H_src: torch.Tensor, src_size: tuple[int, int], dsize: tuple[int, int]) -> torch.Tensor:
    """Normalised sampling grid ``(B, h, w, 2)`` for ``F.grid_sample(..., align_corners=False)`` that
    warps an image of ``src_size=(H, W)`` by ``dst_H_src`` ``(B, 3, 3)`` (or ``(B, 2, 3)``) into
    ``dsize=(h, w)``.

    Built on the matrix's device and dtype in one vectorised pass over the output (no per-call pixel
    grid, no host sync). A grid value in ``[-1, 1]`` means the sampling point is inside the source
    image. Conventions: docs/conventions.md.
    """
    check_matrices(dst_H_src, None, "dst_H_src", rows=(2, 3))
    matrix = dst_H_src if dst_H_src.is_floating_point() else dst_H_src.to(torch.get_default_dtype())
    return _sampling_grid(
        to_3x3(matrix),
        _check_size(src_size, "src_size"),
        _check_size(dsize, "dsize"),
        dst_H_src.shape[1] == 2,
    )


def crop(
    images: torch.Tensor, top: int, left: int, h: int, w: int, *, fill_value: float = 0.0
) -> torch.Tensor:
    """Crop ``images`` ``(B, C, H, W)`` to rows ``top:top+h`` and columns ``left:left+w``; parts of the
    box outside the image are filled with ``fill_value``. Returns ``(B, C, h, w)``.

    Equivalent to a warp by ``translation_matrix(-left, -top)`` into ``(h, w)``.
    Conventions: docs/conventions.md.
    """
    check_image_batch(images)
    for name, value in (("top", top), ("left", left), ("h", h), ("w", w)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if h <= 0 or w <= 0:
        raise ValueError(f"crop size must be positive, got h={h}, w={w}")
    H, W = images.shape[-2:]
    y0, y1 = max(top, 0), min(top + h, H)
    x0, x1 = max(left, 0), min(left + w, W)
    if (y0, y1, x0, x1) == (top, top + h, left, left + w):
        return images[:, :, y0:y1, x0:x1]
    out = images.new_full((*images.shape[:2], h, w), fill_value)
    if y0 < y1 and x0 < x1:
        out[:, :, y0 - top : y1 - top, x0 - left : x1 - left] = images[:, :, y0:y1, x0:x1]
    return out


def center_crop(images: torch.Tensor, size: tuple[int, int], *, fill_value: float = 0.0) -> torch.Tensor:
    """Crop (or pad with ``fill_value``, where ``size`` is larger) ``images`` ``(B, C, H, W)`` to
    ``size=(h, w)`` about the centre. An odd difference puts the extra removed or added row/column at the
    bottom/right: the box starts at ``(H - h) // 2`` when cropping and at ``-((h - H) // 2)`` when
    padding. Conventions: docs/conventions.md.
    """
    check_image_batch(images)
    h, w = _check_size(size, "size")
    H, W = images.shape[-2:]
    return crop(images, _centered_start(H, h), _centered_start(W, w), h, w, fill_value=fill_value)


def _centered_start(size: int, new_size: int) -> int:
    """Start of a centred window of ``new_size`` in ``size``; the odd pixel goes to the end."""
    return (size - new_size) // 2 if size >= new_size else -((new_size - size) // 2)


def pad_to(images: torch.Tensor, size: tuple[int, int], *, fill_value: float = 0.0) -> torch.Tensor:
    """Pad ``images`` ``(B, C, H, W)`` symmetrically with ``fill_value`` to ``size=(h, w)``, which must not
    be smaller than the image; an odd excess goes to the bottom/right. Conventions: docs/conventions.md.
    """
    check_image_batch(images)
    h, w = _check_size(size, "size")
    H, W = images.shape[-2:]
    if h < H or w < W:
        raise ValueError(f"size {(h, w)} is smaller than the images {(H, W)}; use center_crop to crop")
    return center_crop(images, (h, w), fill_value=fill_value)


# ----------------------------------------------------------------------------------------------
# implementation
# ----------------------------------------------------------------------------------------------


def _warp(
    images: torch.Tensor,
    dst_H_src: torch.Tensor,
    dsize: tuple[int, int],
    *,
    affine: bool,
    mode: str,
    padding_mode: str,
    fill_value: FillValue,
    return_mask: bool,
    exact_integer_shifts: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    check_image_batch(images)
    batch, mbatch = images.shape[0], dst_H_src.shape[0]
    if batch != mbatch and 1 not in (batch, mbatch):
        raise ValueError(f"matrix has batch {mbatch}, expected 1 or {batch} (the images' batch)")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    dsize = _check_size(dsize, "dsize")
    fill = _fill_tensor(fill_value, images, padding_mode)

    if exact_integer_shifts and not dst_H_src.requires_grad:
        shifts = _integer_shifts(dst_H_src)
        if shifts is not None:
            return _shift(images, shifts, dsize, padding_mode, fill, return_mask)

    # Grid in at least float32 and at least the matrix's precision, then in the images' dtype for
    # grid_sample (which needs equal dtypes).
    grid_dtype = torch.promote_types(torch.promote_types(dst_H_src.dtype, images.dtype), torch.float32)
    grid = _sampling_grid(dst_H_src.to(grid_dtype), tuple(images.shape[-2:]), dsize, affine)
    grid = grid.to(images.dtype)

    source = images if fill is None else images - fill
    gs_padding = "zeros" if padding_mode == "constant" else padding_mode
    out_batch = _broadcast_batch(batch, mbatch)
    # A batch of 1 on either side is broadcast with stride-0 views; grid_sample reads them as they are
    # (folding the batch into channels instead is several times slower on CPU: docs/benchmarks.md,
    # design measurements).
    warped = F.grid_sample(
        source.expand(out_batch, -1, -1, -1),
        grid.expand(out_batch, -1, -1, -1),
        mode=mode,
        padding_mode=gs_padding,
        align_corners=False,
    )
    if fill is not None:
        warped = warped + fill
    if not return_mask:
        return warped
    inside = (grid.abs() <= 1.0).all(dim=-1).unsqueeze(1)  # (matrix batch, 1, h, w)
    return warped, inside.to(images.dtype).expand(out_batch, -1, -1, -1).contiguous()


def _sampling_grid(
    dst_H_src: torch.Tensor, src_size: tuple[int, int], dsize: tuple[int, int], affine: bool
) -> torch.Tensor:
    """Normalised source coordinates ``(B, h, w, 2)`` of every destination pixel centre."""
    dtype, device = dst_H_src.dtype, dst_H_src.device
    src_norm_H_dst = _normalize_rows(invert(dst_H_src), src_size)
    xs = torch.arange(dsize[1], dtype=dtype, device=device)
    ys = torch.arange(dsize[0], dtype=dtype, device=device)
    numerators = _map_pixel_centres(src_norm_H_dst[:, :2], xs, ys)
    if affine:
        return numerators
    # The denominator is built as its own contiguous tensor: strided views of a (.., 3) tensor make
    # the elementwise ops below several times slower on CPU.
    return numerators / _safe_denominator(_map_pixel_centres(src_norm_H_dst[:, 2:], xs, ys))


def _map_pixel_centres(rows: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``rows @ [x, y, 1]`` for every pixel centre, ``(B, h, w, k)`` from ``rows`` ``(B, k, 3)``.

    Written in its separable form, a per-column term plus a per-row term added with broadcasting: the
    same result as a matmul against a ``(h * w, 3)`` pixel grid, but no grid is allocated and the
    output is written in a single pass (several times faster than the matmul on CPU:
    docs/benchmarks.md, design measurements)."""
    per_column = xs[None, None, :, None] * rows[:, None, None, :, 0]  # (B, 1, w, k)
    per_row = ys[None, :, None, None] * rows[:, None, None, :, 1] + rows[:, None, None, :, 2]  # (B, h, 1, k)
    return per_row + per_column


def _normalize_rows(src_H_dst: torch.Tensor, src_size: tuple[int, int]) -> torch.Tensor:
    """``normalize_pixel_matrix(src_size) @ src_H_dst`` with the normalisation's entries applied as Python
    scalars: building the normalisation on the device would cost a host-to-device copy per call."""
    sx, ox, sy, oy = _normalization_coefficients(src_size)
    row_x = sx * src_H_dst[:, 0] + ox * src_H_dst[:, 2]
    row_y = sy * src_H_dst[:, 1] + oy * src_H_dst[:, 2]
    return torch.stack([row_x, row_y, src_H_dst[:, 2]], dim=1)


@functools.lru_cache(maxsize=64)
def _normalization_coefficients(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Scale and offset of x and y in :func:`normalize_pixel_matrix` (CPU, cached Python floats)."""
    n = normalize_pixel_matrix(size, dtype=torch.float64)
    return float(n[0, 0]), float(n[0, 2]), float(n[1, 1]), float(n[1, 2])


def _fill_tensor(
    fill_value: FillValue, images: torch.Tensor, padding_mode: str
) -> float | torch.Tensor | None:
    """Fill for ``padding_mode="constant"``: a Python float when it is one value for all channels (no
    host-to-device copy), else a ``(1, C, 1, 1)`` tensor; ``None`` when no fill is needed."""
    if padding_mode != "constant":
        if not isinstance(fill_value, torch.Tensor) and any(float(v) != 0.0 for v in _as_list(fill_value)):
            raise ValueError(f"fill_value is only used with padding_mode='constant', got {padding_mode!r}")
        return None
    channels = images.shape[1]
    if not isinstance(fill_value, torch.Tensor):
        values = _as_list(fill_value)
        if len(values) not in (1, channels):
            raise ValueError(f"fill_value must be a scalar or have {channels} values, got {len(values)}")
        if len(values) == 1 or len(set(values)) == 1:
            return values[0]
        fill_value = torch.tensor(values)
    fill = fill_value.to(dtype=images.dtype, device=images.device).reshape(-1)
    if fill.numel() not in (1, channels):
        raise ValueError(f"fill_value must be a scalar or have {channels} values, got {fill.numel()}")
    return fill.reshape(1, -1, 1, 1)


def _as_list(fill_value: float | Sequence[float]) -> list[float]:
    if isinstance(fill_value, (int, float)):
        return [float(fill_value)]
    return [float(v) for v in fill_value]


def _integer_shifts(dst_H_src: torch.Tensor) -> torch.Tensor | None:
    """``(B, 2)`` int64 CPU shifts ``(tx, ty)`` if every matrix is a pure integer translation (up to the
    homogeneous scale), else ``None``. One device-to-host copy."""
    m = dst_H_src.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(m).all() or (m[:, 2, 2] == 0).any():
        return None
    m = m / m[:, 2:, 2:]
    eye = torch.eye(2, dtype=m.dtype)
    if (m[:, 2, :2] != 0).any() or (m[:, :2, :2] != eye).any():
        return None
    t = m[:, :2, 2]
    if (t != torch.round(t)).any():
        return None
    return t.to(torch.int64)


def _shift(
    images: torch.Tensor,
    shifts: torch.Tensor,
    dsize: tuple[int, int],
    padding_mode: str,
    fill: float | torch.Tensor | None,
    return_mask: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exact integer translation ``out[y, x] = images[y - ty, x - tx]``, padded per mode; ``shifts``
    ``(Bm, 2)`` int64 on the CPU."""
    if shifts.shape[0] == 1:
        tx, ty = (int(v) for v in shifts[0])
        if padding_mode in ("zeros", "constant"):
            out, inside = _paste_shifted(images, tx, ty, dsize, fill)
        else:
            out, inside = _gather_shifted(images, shifts, dsize, padding_mode)
    else:
        out, inside = _gather_shifted(images, shifts, dsize, padding_mode)
        if padding_mode in ("zeros", "constant"):
            out = torch.where(inside, out, 0.0 if fill is None else fill)
    if not return_mask:
        return out
    return out, inside.to(images.dtype).expand(out.shape[0], -1, -1, -1).contiguous()


def _paste_shifted(
    images: torch.Tensor, tx: int, ty: int, dsize: tuple[int, int], fill: float | torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One shift for the whole batch with constant padding: copy the overlapping block into a filled
    canvas (a single pass over the output). Returns the images and the ``(1, 1, h, w)`` inside mask."""
    H, W = images.shape[-2:]
    h, w = dsize
    top, bottom = min(max(ty, 0), h), max(min(H + ty, h), 0)
    left, right = min(max(tx, 0), w), max(min(W + tx, w), 0)
    inside = torch.zeros(1, 1, h, w, dtype=torch.bool, device=images.device)
    inside[..., top:bottom, left:right] = True
    block = images[:, :, top - ty : bottom - ty, left - tx : right - tx]
    if (top, bottom, left, right) == (0, h, 0, w):
        return block.clone(), inside
    out = images.new_empty(*images.shape[:2], h, w)
    if isinstance(fill, torch.Tensor):
        out.copy_(fill.expand_as(out))
    else:
        out.fill_(0.0 if fill is None else fill)
    if top < bottom and left < right:
        out[:, :, top:bottom, left:right] = block
    return out, inside


def _gather_shifted(
    images: torch.Tensor, shifts: torch.Tensor, dsize: tuple[int, int], padding_mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifts per batch element (or border/reflection padding) by one advanced-indexing gather; indices
    outside the source are clamped (masked later for constant padding) or mirrored."""
    H, W = images.shape[-2:]
    h, w = dsize
    device = images.device
    shifts = shifts.to(device)
    rows = torch.arange(h, device=device).unsqueeze(0) - shifts[:, 1:2]  # (Bm, h)
    cols = torch.arange(w, device=device).unsqueeze(0) - shifts[:, 0:1]  # (Bm, w)
    row_index, col_index = _border_index(rows, H, padding_mode), _border_index(cols, W, padding_mode)
    out_batch = _broadcast_batch(images.shape[0], shifts.shape[0])
    # A batch of 1 on either side broadcasts: index 0 (or a broadcast index) there.
    batch_index = (
        torch.arange(out_batch, device=device) if images.shape[0] > 1 else torch.zeros_like(rows[:, 0])
    )
    channel_index = torch.arange(images.shape[1], device=device)
    out = images[
        batch_index[:, None, None, None].expand(out_batch, 1, 1, 1),
        channel_index[None, :, None, None],
        row_index[:, None, :, None],
        col_index[:, None, None, :],
    ]  # (B, C, h, w) in a single gather
    inside = ((rows >= 0) & (rows < H)).unsqueeze(2) & ((cols >= 0) & (cols < W)).unsqueeze(1)
    return out, inside.unsqueeze(1)


def _border_index(index: torch.Tensor, size: int, padding_mode: str) -> torch.Tensor:
    """Map integer source indices to valid ones: clamp (border, and zeros/constant whose outside is
    masked afterwards) or mirror about the edges (reflection = OpenCV BORDER_REFLECT)."""
    if padding_mode == "reflection":
        period = torch.remainder(index, 2 * size)
        return torch.where(period >= size, 2 * size - 1 - period, period)
    return index.clamp(0, size - 1)
