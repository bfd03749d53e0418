"""Gaussian image pyramids: :func:`pyrdown`, :func:`pyrup`, :func:`build_pyramid` and the pixel map between
levels, :func:`pyramid_level_matrix`. Batched ``(B, C, H, W)``, differentiable.

Two decimation conventions (``mode``), both giving OpenCV's level sizes ``((H + 1) // 2, (W + 1) // 2)``:

``"opencv"`` -- exactly ``cv2.pyrDown``: blur with the 5-tap binomial ``[1, 4, 6, 4, 1] / 16`` and keep the
    even pixels. Level-1 pixel ``x`` is level-0 pixel ``2 x``, i.e. ``x_1 = x_0 / 2``: a scale about the
    centre of the top-left *pixel*, so the image content drifts by a quarter pixel per level relative to
    a plain resize, and the image edges do not map to each other.

``"centered"`` (default) -- blur with the 6-tap binomial ``[1, 5, 10, 10, 5, 1] / 32`` (= the 5-tap
    binomial followed by a 2x2 box average) and keep every second output: level-1 pixel ``x`` is centred on
    level-0 position ``2 x + 0.5``, i.e. ``x_1 = (x_0 + 0.5) / 2 - 0.5``. This is the pixel-centre
    convention of docs/conventions.md, the map ``F.interpolate(align_corners=False)`` and ``cv2.resize``
    use: a pure scale about the image's top-left *edge*.

Why "centered" is the default: registration moves matrices between levels, and with "centered" that move
is the same edge-to-edge scale as for any resize, exact at every level for even and odd sizes alike (an
odd level gains half a pixel of border on its far side; the map does not depend on the size). With
"opencv" a matrix estimated on a coarse level and moved with a plain ``1/2`` scale about the edges would be
off by ``(2^k - 1) / 2^(k+1)`` pixels at level ``k``. The 6-tap kernel also suppresses aliasing slightly
better (variance 5/4 instead of 1 level-0 px^2).

:func:`pyramid_level_matrix` gives ``level_k_H_level_0`` for either mode; :func:`build_pyramid` and it
share the default.
"""

from __future__ import annotations

import functools

import torch

from alignimate.core.checks import check_image_batch, check_positive_int
from alignimate.core.filters import _canonical_border, _const, _pad_axis, _separable_shared

__all__ = ["PYRAMID_MODES", "build_pyramid", "pyramid_depth", "pyramid_level_matrix", "pyrdown", "pyrup"]

PYRAMID_MODES: tuple[str, ...] = ("centered", "opencv")

_OPENCV_TAPS = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)
_CENTERED_TAPS = (1 / 32, 5 / 32, 10 / 32, 10 / 32, 5 / 32, 1 / 32)


def _check_mode(mode: str) -> None:
    if mode not in PYRAMID_MODES:
        raise ValueError(f"mode must be one of {PYRAMID_MODES}, got {mode!r}")


def pyrdown(images: torch.Tensor, border_type: str = "reflect", mode: str = "centered") -> torch.Tensor:
    """Blur and halve: ``(B, C, H, W) -> (B, C, (H + 1) // 2, (W + 1) // 2)``.

    Args:
        images: ``(B, C, H, W)`` float.
        border_type: see :mod:`alignimate.core.filters` (default ``"reflect"`` = ``BORDER_REFLECT_101``).
        mode: ``"centered"`` (default): ``x_1 = (x_0 + 0.5) / 2 - 0.5``, 6-tap binomial;
            ``"opencv"``: equal to ``cv2.pyrDown`` (``x_1 = x_0 / 2``), 5-tap binomial. See the module
            docstring.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    _check_mode(mode)
    b, c, h, w = images.shape
    if images.numel() == 0:
        return images.new_zeros(b, c, (h + 1) // 2, (w + 1) // 2)
    taps = _CENTERED_TAPS if mode == "centered" else _OPENCV_TAPS
    k = _const(taps, images)
    pads = (2, 3, 2, 3) if mode == "centered" else (2, 2, 2, 2)
    out = _separable_shared(images.reshape(b * c, h, w), k, k, border, pads, stride=2)
    return out.view(b, c, (h + 1) // 2, (w + 1) // 2)


def _upsample_axis(x: torch.Tensor, dim: int, size: int, border: str, mode: str) -> torch.Tensor:
    """Double ``x (N, H, W)`` along ``dim`` (``-1`` or ``-2``) to ``size`` (``2 n`` or ``2 n - 1``)."""
    n = x.shape[dim]
    if mode == "opencv" and border == "reflect":
        # cv2.pyrUp reflects (BORDER_REFLECT_101) at the near border but replicates at the far one.
        xp = _pad_axis(_pad_axis(x, dim, 1, 0, "reflect"), dim, 0, 1, "replicate")
    else:
        xp = _pad_axis(x, dim, 1, 1, border)
    prev, cur, nxt = (xp.narrow(dim, i, n) for i in range(3))
    if mode == "opencv":
        # Zero insertion then the 5-tap kernel x 2 per axis: even outputs see 3 taps, odd ones 2.
        even = (prev + nxt).mul_(0.125).add_(cur, alpha=0.75)
        odd = (cur + nxt).mul_(0.5)
    else:
        # 2 x the adjoint of the centred 6-tap decimation: outputs at level-1 positions m -/+ 1/4.
        even = (prev * 5.0 + nxt).mul_(1.0 / 16.0).add_(cur, alpha=10.0 / 16.0)
        odd = (nxt * 5.0 + prev).mul_(1.0 / 16.0).add_(cur, alpha=10.0 / 16.0)
    out = torch.stack([even, odd], dim=dim)  # (..., n, 2, ...) interleaves even/odd
    shape = list(x.shape)
    shape[dim] = 2 * n
    return out.reshape(shape).narrow(dim, 0, size)


def pyrup(
    images: torch.Tensor,
    border_type: str = "reflect",
    mode: str = "centered",
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Upsample by 2 with the pyramid's interpolation kernel: ``(B, C, h, w) -> (B, C, H, W)``.

    Args:
        images: ``(B, C, h, w)`` float.
        border_type: see :mod:`alignimate.core.filters`.
        mode: ``"centered"`` (default): inverse geometry of ``pyrdown(mode="centered")``, output pixel ``x_0``
            samples level-1 position ``(x_0 + 0.5) / 2 - 0.5`` with the 3-tap polyphase filters
            ``[5, 10, 1] / 16`` and ``[1, 10, 5] / 16`` (twice the adjoint of the decimation).
            ``"opencv"``: ``cv2.pyrUp`` (zero insertion, ``[1, 4, 6, 4, 1] / 8``); with ``"reflect"`` it
            reproduces OpenCV exactly, which reflects at the top/left border but replicates at the far one.
        size: output ``(H, W)`` with ``H`` in ``{2 h - 1, 2 h}`` (likewise ``W``), to undo a
            :func:`pyrdown` of an odd size; default ``(2 h, 2 w)``.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    _check_mode(mode)
    b, c, h, w = images.shape
    if size is None:
        size = (2 * h, 2 * w)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or size[0] not in (2 * h - 1, 2 * h)
        or size[1] not in (2 * w - 1, 2 * w)
    ):
        raise ValueError(
            f"size must be (H, W) with H in (2h-1, 2h) and W in (2w-1, 2w) for h, w={h, w}, got {size}"
        )
    if images.numel() == 0:
        return images.new_zeros(b, c, size[0], size[1])
    planes = images.reshape(b * c, h, w)
    out = _upsample_axis(planes, -2, size[0], border, mode)
    out = _upsample_axis(out, -1, size[1], border, mode)
    return out.reshape(b, c, size[0], size[1])


@functools.lru_cache(maxsize=64)
def _level_matrix_cpu(level: int, mode: str) -> torch.Tensor:
    s = 0.5**level
    offset = 0.5 * s - 0.5 if mode == "centered" else 0.0
    return torch.tensor([[s, 0.0, offset], [0.0, s, offset], [0.0, 0.0, 1.0]], dtype=torch.float64)


def pyramid_level_matrix(
    level: int,
    mode: str = "centered",
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``level_H_base (3, 3)``: maps level-0 pixel coordinates to level-``level`` pixel coordinates of a
    pyramid made by repeated :func:`pyrdown` with the same ``mode``.

    ``"centered"``: ``x_k = (x_0 + 0.5) / 2^k - 0.5``, i.e.
    ``[[s, 0, s/2 - 1/2], [0, s, s/2 - 1/2], [0, 0, 1]]`` with ``s = 2^-k``.
    ``"opencv"``: ``x_k = x_0 / 2^k``, i.e. ``diag(s, s, 1)``. Exact for every image size.
    Move a matrix between levels with ``Lk @ M @ inverse(Lk)`` (``dst_H_src`` at level ``k`` from level 0).
    """
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be a non-negative int, got {level!r}")
    _check_mode(mode)
    return _level_matrix_cpu(level, mode).to(dtype=dtype, device=device)


def pyramid_depth(size: tuple[int, int], min_size: int = 16) -> int:
    """Number of levels :func:`build_pyramid` makes for ``size=(h, w)`` (at least 1): halve while the next
    level's shorter side, ``(s + 1) // 2``, stays ``>= min_size``."""
    check_positive_int(min_size, "min_size")
    shorter = min(size)
    depth = 1
    while shorter > 1 and (shorter + 1) // 2 >= min_size:
        shorter = (shorter + 1) // 2
        depth += 1
    return depth


def build_pyramid(
    images: torch.Tensor,
    levels: int | None = None,
    min_size: int = 16,
    *,
    mode: str = "centered",
    border_type: str = "reflect",
) -> list[torch.Tensor]:
    """Gaussian pyramid, finest first: ``[images, pyrdown(images), pyrdown(pyrdown(images)), ...]``.

    Args:
        images: ``(B, C, H, W)`` float; it is level 0 (returned as is, not copied).
        levels: number of levels including level 0 (>= 1); ``None``: :func:`pyramid_depth` of the size, i.e.
            stop before the shorter side would drop below ``min_size`` (a smaller image gives one level).
        min_size: smallest shorter side of an automatic level.
        mode, border_type: as :func:`pyrdown`. Level ``k`` maps to level 0 by
            ``inverse(pyramid_level_matrix(k, mode))``.

    Returns:
        list of ``(B, C, H_k, W_k)`` with ``H_{k+1} = (H_k + 1) // 2``.
    """
    check_image_batch(images)
    _check_mode(mode)
    if levels is None:
        levels = pyramid_depth(tuple(images.shape[-2:]), min_size)
    elif isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int or None, got {levels!r}")
    pyramid = [images]
    for _ in range(levels - 1):
        pyramid.append(pyrdown(pyramid[-1], border_type=border_type, mode=mode))
    return pyramid
