"""Colour matching between images: per-channel gain and offset, and histogram matching, as lookups.

Both estimate, per image and channel, a non-decreasing map from a *source* image's values onto a
*target* image's, counting only the pixels a mask selects (the area the two images share). Both maps
can be written as a lookup table, which is how they are applied cheaply to full-resolution frames.

Conventions (docs/conventions.md): images are floating ``(B, C, H, W)`` with values in ``[0, 1]``;
masks are ``(B|1, 1, H, W)`` nonnegative weights (bool or float; 0 = not counted, negative counts
as 0, only ratios matter), ``None`` counts every pixel. A batch of 1 broadcasts.

A **LUT** is a ``(B, C, L)`` tensor: entry ``i`` of channel ``c`` is the output value for the input
value ``i / (L - 1)``, and between entries the map is linear. With ``L = 256`` the entries sit on
the uint8 grey levels, so :func:`apply_lut_uint8` applies a LUT to uint8 frames by indexing alone.
"""

from __future__ import annotations

import numpy as np
import torch

from alignimate.core.checks import check_image_batch, check_positive_int
from alignimate.core.color import to_uint8

__all__ = [
    "apply_gain_offset",
    "apply_lut",
    "apply_lut_uint8",
    "color_histograms",
    "compose_luts",
    "fit_gain_offset",
    "gain_offset_lut",
    "histogram_lut",
    "invert_lut",
    "match_histogram_counts",
]

# Channel values within this distance of 0 or 1 are taken as clipped by default: the sensor or the
# encoder cut them off, so they no longer follow the linear relation a gain fit assumes.
DEFAULT_CLIP_MARGIN = 2.0 / 255.0
# A source channel whose weighted variance is below this is flat: its gain is undefined, and the fit
# falls back to gain 1 with the offset matching the means.
_MIN_VARIANCE = 1e-8
# Rows of a uint8 frame handled per step by apply_lut_uint8 on the CPU: the index conversion numpy
# makes internally then stays small enough to live in the cache.
_LUT_ROWS = 64


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------


def _check_pair(source: torch.Tensor, target: torch.Tensor) -> None:
    check_image_batch(source, "source")
    check_image_batch(target, "target")
    if source.shape[1:] != target.shape[1:]:
        raise ValueError(
            "source and target must have the same (C, H, W), got "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    if target.shape[0] not in (1, source.shape[0]) and source.shape[0] != 1:
        raise ValueError(f"target has batch {target.shape[0]}, expected 1 or {source.shape[0]}")


def _weights(mask: torch.Tensor | None, images: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """``(B|1, 1, H, W)`` nonnegative weights of ``images``' dtype (ones when ``mask`` is ``None``)."""
    if mask is None:
        return images.new_ones(1, 1, *images.shape[-2:])
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"{name} must have shape (B, 1, {images.shape[-2]}, {images.shape[-1]}), got {tuple(mask.shape)}"
        )
    if mask.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"{name} has batch {mask.shape[0]}, expected 1 or {images.shape[0]}")
    return mask.to(images.dtype).clamp_min(0)


def _check_lut(lut: torch.Tensor, name: str = "lut") -> None:
    if not isinstance(lut, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(lut).__name__}")
    if lut.dim() != 3 or lut.shape[-1] < 2:
        raise ValueError(f"{name} must have shape (B, C, L) with L >= 2, got {tuple(lut.shape)}")
    if not lut.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {lut.dtype}")


# ------------------------------------------------------------------------------------------------
# gain and offset
# ------------------------------------------------------------------------------------------------


def fit_gain_offset(
    source: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    clip_margin: float = DEFAULT_CLIP_MARGIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``gain`` and ``offset`` with ``gain * source + offset ~ target``, by weighted least
    squares over the pixels ``mask`` selects (the pixels of ``source`` and ``target`` correspond).

    Pixels where ``source`` or ``target`` lies within ``clip_margin`` of 0 or 1 are left out of that
    channel's fit: a clipped value does not follow the linear relation, and counting it would pull
    the gain towards the clipping level (``clip_margin=0`` counts every pixel). A channel with no
    pixel left gets gain 1, offset 0; a flat source channel (no variance) gets gain 1 and the
    offset that matches the means. Differentiable in ``source``, ``target`` and a float ``mask``.

    Args:
        source: ``(B, C, H, W)`` floating, the images to correct.
        target: ``(B|1, C, H, W)``, the images to match.
        mask: ``(B|1, 1, H, W)`` weights of the shared pixels, or ``None`` for all.
        clip_margin: values within this of 0 or 1 count as clipped, in ``[0, 0.5)``.

    Returns:
        ``(gain, offset)``, each ``(B, C)`` of the source's dtype.
    """
    _check_pair(source, target)
    if not 0.0 <= clip_margin < 0.5:
        raise ValueError(f"clip_margin must be in [0, 0.5), got {clip_margin!r}")
    w = _weights(mask, source)
    if clip_margin > 0:
        low, high = clip_margin, 1.0 - clip_margin
        unclipped = (source > low) & (source < high) & (target > low) & (target < high)
        w = w * unclipped.to(source.dtype)
    else:
        w = w.expand(max(source.shape[0], target.shape[0]), source.shape[1], -1, -1)
    total = w.sum(dim=(-2, -1))
    counted = total > 0
    safe_total = torch.where(counted, total, torch.ones_like(total))
    mean_s = (w * source).sum(dim=(-2, -1)) / safe_total
    mean_t = (w * target).sum(dim=(-2, -1)) / safe_total
    ds = source - mean_s[..., None, None]
    dt = target - mean_t[..., None, None]
    var_s = (w * ds * ds).sum(dim=(-2, -1)) / safe_total
    cov = (w * ds * dt).sum(dim=(-2, -1)) / safe_total
    varied = var_s > _MIN_VARIANCE
    gain = torch.where(varied, cov / torch.where(varied, var_s, torch.ones_like(var_s)), torch.ones_like(cov))
    offset = mean_t - gain * mean_s
    gain = torch.where(counted, gain, torch.ones_like(gain))
    offset = torch.where(counted, offset, torch.zeros_like(offset))
    return gain, offset


def apply_gain_offset(
    images: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, *, clamp: bool = True
) -> torch.Tensor:
    """``gain * images + offset`` per channel, clamped to ``[0, 1]`` unless ``clamp=False``.

    Args:
        images: ``(B, C, H, W)`` floating.
        gain, offset: ``(B|1, C)``, as :func:`fit_gain_offset` returns them.

    Returns:
        ``(B, C, H, W)`` of the images' dtype; differentiable (inside ``[0, 1]`` when clamped).
    """
    check_image_batch(images)
    for name, value in (("gain", gain), ("offset", offset)):
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[1] != images.shape[1]:
            raise ValueError(f"{name} must be a (B, {images.shape[1]}) tensor")
    out = gain[..., None, None] * images + offset[..., None, None]
    return out.clamp(0.0, 1.0) if clamp else out


def gain_offset_lut(gain: torch.Tensor, offset: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """The LUT ``(B, C, levels)`` of ``clamp(gain * x + offset, 0, 1)``.

    Args:
        gain, offset: ``(B, C)`` floating (broadcast against each other).
        levels: number of LUT entries ``L`` (256 for uint8 frames).

    Returns:
        ``(B, C, L)`` of the gain's dtype.
    """
    check_positive_int(levels, "levels")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    if not isinstance(gain, torch.Tensor) or not isinstance(offset, torch.Tensor) or gain.dim() != 2:
        raise ValueError("gain and offset must be (B, C) tensors")
    grid = torch.linspace(0.0, 1.0, levels, dtype=gain.dtype, device=gain.device)
    return (gain[..., None] * grid + offset[..., None]).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# histograms
# ------------------------------------------------------------------------------------------------


def color_histograms(
    images: torch.Tensor, mask: torch.Tensor | None = None, *, levels: int = 256
) -> torch.Tensor:
    """Weighted per-channel histograms over ``levels`` equally spaced values of ``[0, 1]``.

    Each value counts in the bin of its nearest level, ``round(x * (L - 1))`` (values outside
    ``[0, 1]`` in the end bins), with its pixel's mask weight. For images that came from uint8 and
    ``L = 256`` the bins are exactly the grey levels.

    Args:
        images: ``(B, C, H, W)`` floating.
        mask: ``(B|1, 1, H, W)`` weights, or ``None`` for all pixels.
        levels: number of bins ``L``.

    Returns:
        ``(B, C, L)`` float64 weighted counts (float64 keeps integer counts exact).
    """
    check_image_batch(images)
    check_positive_int(levels, "levels")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    b, c = images.shape[:2]
    w = _weights(mask, images).to(torch.float64).expand(b, c, -1, -1).reshape(b, c, -1)
    index = (images.detach() * (levels - 1)).round().clamp(0, levels - 1).to(torch.int64).reshape(b, c, -1)
    counts = torch.zeros(b, c, levels, dtype=torch.float64, device=images.device)
    return counts.scatter_add_(2, index, w)


def _last_index_where(flags: torch.Tensor) -> torch.Tensor:
    """For each position ``i`` of the last dim, the largest ``j <= i`` with ``flags[j]``, else -1."""
    positions = torch.arange(flags.shape[-1], device=flags.device).expand_as(flags)
    return torch.where(flags, positions, torch.full_like(positions, -1)).cummax(dim=-1).values


def match_histogram_counts(source_counts: torch.Tensor, target_counts: torch.Tensor) -> torch.Tensor:
    """The histogram-matching LUT that maps a source histogram onto a target histogram, per channel.

    A source level that occurs maps to the target value at the same quantile, exactly as
    scikit-image's ``exposure.match_histograms``: the source's cumulative share up to and including
    that level, interpolated linearly between the target's occurring levels and their cumulative
    shares. Levels that do not occur in the source (the sample was small, or the full-resolution
    frame has values the shared region lacks) are interpolated linearly between their occurring
    neighbours, with 0 mapped to 0 and 1 to 1 at the ends, so the LUT is non-decreasing and defined
    everywhere. A channel with an empty source or target histogram gets the identity.

    Args:
        source_counts, target_counts: ``(B|1, C, L)`` nonnegative weighted counts, as
            :func:`color_histograms` returns them.

    Returns:
        ``(B, C, L)`` float64 LUT with values in ``[0, 1]``.
    """
    for name, counts in (("source_counts", source_counts), ("target_counts", target_counts)):
        if not isinstance(counts, torch.Tensor) or counts.dim() != 3 or counts.shape[-1] < 2:
            raise ValueError(f"{name} must be a (B, C, L) tensor with L >= 2")
    if source_counts.shape[1:] != target_counts.shape[1:]:
        raise ValueError(
            f"source_counts and target_counts must have the same (C, L), got "
            f"{tuple(source_counts.shape)} and {tuple(target_counts.shape)}"
        )
    batch = max(source_counts.shape[0], target_counts.shape[0])
    if min(source_counts.shape[0], target_counts.shape[0]) not in (1, batch):
        raise ValueError(f"batches {source_counts.shape[0]} and {target_counts.shape[0]} do not broadcast")
    sc = source_counts.to(torch.float64).clamp_min(0).expand(batch, -1, -1)
    tc = target_counts.to(torch.float64).clamp_min(0).expand(batch, -1, -1)
    levels = sc.shape[-1]
    grid = torch.arange(levels, dtype=torch.float64, device=sc.device).expand_as(sc)
    s_cum, t_cum = sc.cumsum(-1), tc.cumsum(-1)
    # Totals taken from the cumulative sums themselves, so that both end exactly at 1.
    s_total, t_total = s_cum[..., -1:], t_cum[..., -1:]
    usable = (s_total > 0) & (t_total > 0)
    quantile = s_cum / torch.where(s_total > 0, s_total, torch.ones_like(s_total))
    t_cdf = t_cum / torch.where(t_total > 0, t_total, torch.ones_like(t_total))
    # The first target level whose cumulative share reaches the quantile is an occurring level (the
    # share only grows there); the occurring level before it ends the flat run just below it.
    upper = torch.searchsorted(t_cdf.contiguous(), quantile.contiguous()).clamp(max=levels - 1)
    previous = _last_index_where(tc > 0)
    lower = torch.where(upper > 0, previous.gather(-1, (upper - 1).clamp_min(0)), torch.full_like(upper, -1))
    c_upper = t_cdf.gather(-1, upper)
    c_lower = t_cdf.gather(-1, lower.clamp_min(0))
    span = c_upper - c_lower
    fraction = torch.where(
        span > 0, (quantile - c_lower) / torch.where(span > 0, span, torch.ones_like(span)), 1.0
    )
    matched = torch.where(lower >= 0, lower + fraction * (upper - lower), upper.to(torch.float64))
    # Levels absent from the source: linear between occurring neighbours, ends pinned to 0 and L-1.
    known = sc > 0
    known[..., 0] = True
    known[..., -1] = True
    matched[..., 0] = torch.where(sc[..., 0] > 0, matched[..., 0], 0.0)
    matched[..., -1] = torch.where(sc[..., -1] > 0, matched[..., -1], float(levels - 1))
    left = _last_index_where(known)
    right = (levels - 1) - _last_index_where(known.flip(-1)).flip(-1)
    v_left, v_right = matched.gather(-1, left), matched.gather(-1, right)
    gap = (right - left).to(torch.float64)
    step = torch.where(gap > 0, (grid - left) / torch.where(gap > 0, gap, torch.ones_like(gap)), 0.0)
    lut = (v_left + step * (v_right - v_left)) / (levels - 1)
    identity = grid / (levels - 1)
    return torch.where(usable, lut, identity)


def histogram_lut(
    source: torch.Tensor,
    target: torch.Tensor,
    source_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    *,
    levels: int = 256,
) -> torch.Tensor:
    """Histogram matching per channel as a LUT: the composition of :func:`color_histograms` and
    :func:`match_histogram_counts`. Pixels need not correspond (only the value distributions count),
    so the images may even differ in size.

    Args:
        source: ``(B, C, H, W)`` floating, the images to correct.
        target: ``(B|1, C, H', W')``, the images to match.
        source_mask, target_mask: ``(B|1, 1, H, W)`` / ``(B|1, 1, H', W')`` weights, or ``None``.
        levels: LUT entries ``L`` (256 for uint8 frames: one bin per grey level).

    Returns:
        ``(B, C, L)`` float64 LUT; apply it with :func:`apply_lut` or :func:`apply_lut_uint8`.
    """
    check_image_batch(source, "source")
    check_image_batch(target, "target")
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target must have the same channels, got {source.shape[1]} and {target.shape[1]}"
        )
    return match_histogram_counts(
        color_histograms(source, source_mask, levels=levels),
        color_histograms(target, target_mask, levels=levels),
    )


# ------------------------------------------------------------------------------------------------
# LUTs
# ------------------------------------------------------------------------------------------------


def apply_lut(images: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map every value through its channel's LUT, linearly between entries (inputs clamped to
    ``[0, 1]``). Differentiable in ``images`` (between entries) and in ``lut``.

    Args:
        images: ``(B, C, H, W)`` floating.
        lut: ``(B|1, C, L)`` floating.

    Returns:
        ``(B, C, H, W)`` of the images' dtype.
    """
    check_image_batch(images)
    _check_lut(lut)
    b, c, h, w = images.shape
    if lut.shape[1] != c or lut.shape[0] not in (1, b):
        raise ValueError(f"lut must have shape (1 or {b}, {c}, L), got {tuple(lut.shape)}")
    levels = lut.shape[-1]
    table = lut.to(images.dtype).expand(b, -1, -1)
    position = images.clamp(0.0, 1.0).reshape(b, c, -1) * (levels - 1)
    index = position.detach().floor().clamp(0, levels - 2).to(torch.int64)
    fraction = position - index
    low, high = table.gather(-1, index), table.gather(-1, index + 1)
    return (low + fraction * (high - low)).reshape(b, c, h, w)


def compose_luts(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The LUT of ``outer(inner(x))`` on ``inner``'s grid.

    Args:
        outer: ``(B|1, C, L')`` floating.
        inner: ``(B, C, L)`` floating.

    Returns:
        ``(B, C, L)``.
    """
    _check_lut(outer, "outer")
    _check_lut(inner, "inner")
    if outer.shape[0] not in (1, inner.shape[0]) and inner.shape[0] != 1:
        raise ValueError(f"outer has batch {outer.shape[0]}, expected 1 or {inner.shape[0]}")
    batch = max(outer.shape[0], inner.shape[0])
    return apply_lut(inner.expand(batch, -1, -1).unsqueeze(2), outer).squeeze(2)


def invert_lut(lut: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse of a non-decreasing LUT: for each output value ``y``, the input ``x`` with
    ``lut(x) = y``, exact for the piecewise-linear map the LUT stands for.

    With ``values`` the inverse is evaluated there, so ``invert_lut(outer, inner)`` is the exact LUT
    of ``outer^-1(inner(x))`` (inverting onto the grid first and composing would add the grid's
    interpolation error wherever the LUT is nearly flat). Where the LUT is flat (many inputs give one
    output) the inverse takes the middle of the flat run; values below ``lut(0)`` or above
    ``lut(1)`` map to 0 or 1. Not differentiable.

    Args:
        lut: ``(B, C, L)`` floating, non-decreasing along the last dim.
        values: ``(B|1, C, N)`` floating output values to invert, or ``None`` for the grid
            ``i / (L - 1)`` (then ``N = L`` and the result is the inverse as a LUT).

    Returns:
        ``(B, C, N)`` of the LUT's dtype, non-decreasing in ``values``.
    """
    _check_lut(lut)
    levels = lut.shape[-1]
    table = lut.detach().to(torch.float64).contiguous()
    grid = torch.linspace(0.0, 1.0, levels, dtype=torch.float64, device=lut.device).expand_as(table)
    if values is None:
        query = grid.contiguous()
    else:
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            raise TypeError("values must be a floating-point tensor")
        if values.dim() != 3 or values.shape[1] != lut.shape[1] or values.shape[0] not in (1, lut.shape[0]):
            raise ValueError(
                f"values must have shape (1 or {lut.shape[0]}, {lut.shape[1]}, N), got {tuple(values.shape)}"
            )
        query = values.detach().to(torch.float64).expand(lut.shape[0], -1, -1).contiguous()
    # A flat run has no single inverse; searching from both sides and averaging takes its middle.
    right = _interp_sorted(query, table, grid.contiguous(), side="right")
    left = _interp_sorted(query, table, grid.contiguous(), side="left")
    return ((left + right) / 2).to(lut.dtype)


def _interp_sorted(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, side: str) -> torch.Tensor:
    """Batched ``np.interp(x, xp, fp)`` along the last dim for non-decreasing ``xp``, where a run of
    equal ``xp`` answers with its first (``side="left"``) or last (``"right"``) ``fp``."""
    n = xp.shape[-1]
    if side == "left":  # the segment ends at the first xp >= x
        upper = torch.searchsorted(xp, x, side="left").clamp(1, n - 1)
        below, above = x <= xp[..., :1], x > xp[..., -1:]
    else:  # the segment starts at the last xp <= x
        upper = (torch.searchsorted(xp, x, side="right") - 1).clamp(0, n - 2) + 1
        below, above = x < xp[..., :1], x >= xp[..., -1:]
    lower = upper - 1
    x0, x1 = xp.gather(-1, lower), xp.gather(-1, upper)
    f0, f1 = fp.gather(-1, lower), fp.gather(-1, upper)
    span = x1 - x0
    # Inside the range the segment found has span > 0; outside it the ends answer.
    t = torch.where(span > 0, (x - x0) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    out = f0 + t.clamp(0.0, 1.0) * (f1 - f0)
    out = torch.where(below, fp[..., :1].expand_as(out), out)
    return torch.where(above, fp[..., -1:].expand_as(out), out)


def apply_lut_uint8(images: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map uint8 images through per-channel 256-entry LUTs by indexing alone: the cheap path for
    full-resolution frames.

    Args:
        images: ``(B, C, H, W)`` uint8, any strides (e.g. a view of an interleaved ``(H, W, C)``
            array); left unchanged.
        lut: ``(B|1, C, 256)``, uint8, or floating in ``[0, 1]`` (then rounded to the nearest grey
            level, as :func:`alignimate.core.to_uint8`).

    Returns:
        ``(B, C, H, W)`` uint8 with the same strides as ``images``.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError("images must be a uint8 (B, C, H, W) tensor")
    if not isinstance(lut, torch.Tensor) or lut.dim() != 3 or lut.shape[-1] != 256:
        raise ValueError(f"lut must have shape (B, C, 256), got {tuple(getattr(lut, 'shape', ()))}")
    b, c = images.shape[:2]
    if lut.shape[1] != c or lut.shape[0] not in (1, b):
        raise ValueError(f"lut must have shape (1 or {b}, {c}, 256), got {tuple(lut.shape)}")
    table = (to_uint8(lut) if lut.is_floating_point() else lut).to(images.device)
    if table.dtype != torch.uint8:
        raise TypeError(f"lut must be uint8 or floating point, got {lut.dtype}")
    table = table.expand(b, -1, -1)
    if images.device.type == "cpu":
        # numpy's allocation, in the input's memory order: fresh pages from torch's CPU allocator
        # measured slower to fill for frames of this size.
        order = sorted(range(4), key=lambda d: (-images.stride(d), d))
        base = np.empty([images.shape[d] for d in order], np.uint8)
        out = torch.from_numpy(base).permute([order.index(d) for d in range(4)])
        src, dst, tab = images.numpy(), out.numpy(), table.contiguous().numpy()
        for i in range(b):
            # Rows outermost: an interleaved frame's rows then serve all channels while in cache.
            for y in range(0, images.shape[2], _LUT_ROWS):
                rows = slice(y, y + _LUT_ROWS)
                for ch in range(c):
                    np.take(tab[i, ch], src[i, ch, rows], out=dst[i, ch, rows])
        return out
    out = torch.empty_like(images)
    for i in range(b):
        for ch in range(c):
            out[i, ch] = table[i, ch][images[i, ch].to(torch.int64)]
    return out
