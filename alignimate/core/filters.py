"""Linear image filters: Gaussian and box blurs, generic 2-D and separable filtering, Sobel/difference
derivatives and the Laplacian. Batched ``(B, C, H, W)``, differentiable, device-agnostic.

Conventions (see docs/conventions.md):

* **Correlation**, like ``cv2.filter2D``:
  ``out[y, x] = sum_ij k[i, j] * in[y + i - kH // 2, x + j - kW // 2]``. The anchor of an even-sized
  kernel is ``k // 2`` (OpenCV's default anchor). The output has the input's size.
* Sizes and per-axis pairs are **height first**: ``kernel_size=(kH, kW)`` and ``sigma=(sigma_y, sigma_x)``.
  (OpenCV's ``GaussianBlur`` takes ``ksize=(w, h)`` and ``sigmaX`` first.)
* ``border_type`` and the OpenCV border it reproduces:

  ===================  ==========================  ===================
  ``border_type``      OpenCV                      pattern
  ===================  ==========================  ===================
  ``"reflect"``        ``BORDER_REFLECT_101``      ``dcb|abcd|cba``
                       (OpenCV's default; torch
                       ``F.pad(mode="reflect")``)
  ``"replicate"``      ``BORDER_REPLICATE``        ``aaa|abcd|ddd``
  ``"constant"``       ``BORDER_CONSTANT`` (0)     ``000|abcd|000``
  ``"zeros"``          same as ``"constant"``
  ``"symmetric"``      ``BORDER_REFLECT``          ``cba|abcd|dcb``
  ``"reflect_edge"``   same as ``"symmetric"``
  ``"circular"``       ``BORDER_WRAP``             ``bcd|abcd|abc``
  ===================  ==========================  ===================

  Reflections wider than the image repeat the way OpenCV's ``borderInterpolate`` does, so tiny images
  (even 1 pixel) work with any kernel.

Speed. A single-channel ``conv2d`` on ``(B*C, 1, H, W)`` takes PyTorch's slow im2col path on CPU
(docs/benchmarks.md), and slicing-and-adding taps costs one memory pass per tap. For float32 on CPU
(oneDNN) a separable filter with one kernel for the batch works on chunks of ``(H, W)`` planes (about 6 MB
per thread), so that each chunk's padded copy and both passes stay in the CPU caches and the allocator
recycles their memory (fresh pages for whole-batch temporaries cost more than the filtering itself). Per
chunk: one border padding, with the rows padded to whole blocks of 8 pixels; the **horizontal** pass as a
*polyphase* convolution: every row seen as a channels-last image whose 8 channels are the 8 phases of a
block of 8 pixels, filtered by a dense 8 -> 8 convolution over 2-3 blocks (oneDNN's direct convolution, no
layout reorders, output memory already in rows; it runs over the padded rows too, as a row filter commutes
with row padding); the **vertical** pass as a depthwise convolution of the same memory seen as channels-last
``(N, 8, Hp, W/8)`` images, the image columns being the channels, whose output memory is again the rows of
the result. Neither pass copies or reorders; the padding is the only copy. Strides (``pyrdown``) use a
depthwise horizontal pass instead. Per-image kernels use grouped depthwise convolutions. float64 and CUDA use
plain single-channel convolutions (cuDNN is fast there; oneDNN has no float64). 3x3 derivatives (Sobel,
differences, Laplacian) are a few slice additions, which beat any convolution at that size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.checks import check_image_batch

__all__ = [
    "BORDER_TYPES",
    "box_blur",
    "filter2d",
    "filter2d_separable",
    "gaussian_blur2d",
    "gaussian_kernel1d",
    "gaussian_kernel_size",
    "laplacian",
    "sobel",
    "spatial_gradient",
]

# Public name -> canonical name used internally.
_BORDER_ALIASES = {
    "reflect": "reflect",
    "replicate": "replicate",
    "constant": "constant",
    "zeros": "constant",
    "symmetric": "symmetric",
    "reflect_edge": "symmetric",
    "circular": "circular",
}
BORDER_TYPES: tuple[str, ...] = tuple(_BORDER_ALIASES)
"""Accepted ``border_type`` values (see the module docstring for their OpenCV names)."""


# ----------------------------------------------------------------------------------------------------
# Argument handling
# ----------------------------------------------------------------------------------------------------


def _canonical_border(border_type: str) -> str:
    if not isinstance(border_type, str) or border_type not in _BORDER_ALIASES:
        raise ValueError(f"border_type must be one of {BORDER_TYPES}, got {border_type!r}")
    return _BORDER_ALIASES[border_type]


def _pair(value: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    """``k`` or ``(kH, kW)`` -> ``(kH, kW)`` of positive ints (``None`` passes through)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints (kH, kW), got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


# ----------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------


def gaussian_kernel_size(sigma: float) -> int:
    """Odd kernel size used when only ``sigma`` is given: ``2 * ceil(3 * sigma) + 1`` (covers +-3 sigma,
    99.7% of the mass). OpenCV's ``GaussianBlur(ksize=(0, 0))`` uses a wider ``+-4 sigma`` for float
    images, so pass an explicit size to reproduce OpenCV exactly."""
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0 or math.isinf(sigma):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    return 2 * math.ceil(3.0 * sigma) + 1


@functools.lru_cache(maxsize=256)
def _cached_gaussian(sigma: float, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Built in float64 and cast once so float64 callers keep full precision; cached, so never modify in place.
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    k = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (k / k.sum()).to(dtype=dtype, device=device)


def _gaussian_from_tensor(sigma: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """Differentiable kernels ``(*sigma.shape, size)`` for a tensor of sigmas."""
    x = torch.arange(size, dtype=dtype, device=sigma.device) - (size - 1) / 2.0
    s = sigma.to(dtype).unsqueeze(-1)
    k = torch.exp(-(x * x) / (2.0 * s * s))
    return k / k.sum(dim=-1, keepdim=True)


def gaussian_kernel1d(
    sigma: float | torch.Tensor,
    kernel_size: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sampled Gaussian ``exp(-x^2 / (2 sigma^2))`` at ``x = i - (kernel_size - 1) / 2``, normalised to sum 1.

    For an explicit odd ``kernel_size`` this equals ``cv2.getGaussianKernel(kernel_size, sigma)`` (for
    ``sigma > 0``; OpenCV samples even sizes differently, we sample them at half-integer offsets). With
    ``kernel_size=None`` the size is :func:`gaussian_kernel_size` (``2 * ceil(3 sigma) + 1``).

    Args:
        sigma: a positive float -> kernel ``(K,)``; a tensor ``()`` -> ``(K,)``; a tensor ``(B,)`` ->
            ``(B, K)``, one kernel per image, differentiable w.r.t. ``sigma``. A tensor is not checked for
            positivity (no host sync). With a tensor and ``kernel_size=None`` the size follows
            ``sigma.max()``, which reads the value from the device: pass ``kernel_size`` inside loops.
        kernel_size: positive int (odd for a centred kernel) or ``None``.
        dtype, device: of the result; a tensor ``sigma`` keeps its own device and uses ``dtype``.
    """
    if kernel_size is not None and (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)):
        raise TypeError(f"kernel_size must be an int or None, got {kernel_size!r}")
    if kernel_size is not None and kernel_size < 1:
        raise ValueError(f"kernel_size must be positive, got {kernel_size}")
    if isinstance(sigma, torch.Tensor):
        if sigma.dim() > 1:
            raise ValueError(f"sigma must be a float, a () or a (B,) tensor, got shape {tuple(sigma.shape)}")
        if not sigma.is_floating_point():
            sigma = sigma.to(dtype)
        if kernel_size is None:
            kernel_size = gaussian_kernel_size(float(sigma.detach().max()))  # documented host sync
        return _gaussian_from_tensor(sigma, kernel_size, dtype)
    if kernel_size is None:
        kernel_size = gaussian_kernel_size(sigma)
    elif not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number or a tensor, got {sigma!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _cached_gaussian(float(sigma), kernel_size, dtype, dev).clone()


@functools.lru_cache(maxsize=64)
def _cached_constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype=dtype, device=device)


def _const(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return _cached_constant(values, like.dtype, like.device)


# ----------------------------------------------------------------------------------------------------
# Borders
# ----------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _border_index_cpu(n: int, before: int, after: int, border: str) -> torch.Tensor:
    """Source index of each padded position, OpenCV ``borderInterpolate`` semantics (any pad width)."""
    p = torch.arange(-before, n + after)
    if border == "replicate":
        return p.clamp(0, n - 1)
    if border == "circular":
        return p.remainder(n)
    if border == "symmetric":
        q = p.remainder(2 * n)
        return torch.where(q < n, q, 2 * n - 1 - q)
    if n == 1:  # reflect-101 of a single pixel is that pixel
        return torch.zeros_like(p)
    q = p.remainder(2 * (n - 1))
    return torch.where(q < n, q, 2 * (n - 1) - q)


@functools.lru_cache(maxsize=256)
def _border_index(n: int, before: int, after: int, border: str, device: torch.device) -> torch.Tensor:
    return _border_index_cpu(n, before, after, border).to(device)


def _pad_axis(x: torch.Tensor, dim: int, before: int, after: int, border: str) -> torch.Tensor:
    """Pad dimension ``dim`` (``-1`` or ``-2``) of ``x`` by ``before``/``after`` pixels; returns a contiguous
    tensor."""
    if before == 0 and after == 0:
        return x.contiguous()
    n = x.shape[dim]
    pads = (before, after) if dim == -1 else (0, 0, before, after)
    if border == "constant":
        return F.pad(x, pads, mode="constant", value=0.0)
    if _fits_f_pad(border, max(before, after), n):
        return F.pad(x, pads, mode=border)
    return x.index_select(dim, _border_index(n, before, after, border, x.device))


def _fits_f_pad(border: str, widest: int, n: int) -> bool:
    """Whether ``F.pad`` implements ``border`` for a pad of ``widest`` pixels on an axis of ``n``."""
    if border in ("constant", "replicate"):
        return True
    if border == "reflect":
        return widest < n
    if border == "circular":
        return widest <= n
    return False  # "symmetric" has no F.pad mode


def _pad2d(x: torch.Tensor, pads: tuple[int, int, int, int], border: str) -> torch.Tensor:
    """Pad ``(..., H, W)`` by ``(left, right, top, bottom)``."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    if border == "constant":
        return F.pad(x, pads, mode="constant", value=0.0)
    if _fits_f_pad(border, max(left, right), w) and _fits_f_pad(border, max(top, bottom), h):
        return F.pad(x, pads, mode=border)
    return _pad_axis(_pad_axis(x, -2, top, bottom, border), -1, left, right, border)


# ----------------------------------------------------------------------------------------------------
# Separable filtering engine on (N, H, W) stacks
# ----------------------------------------------------------------------------------------------------

# Input bytes per chunk of planes and per thread on the oneDNN path (see the module docstring): a batch of 8
# RGB 256x256 images is one chunk. Smaller chunks pay the fixed, serial cost of each call (its size:
# docs/benchmarks.md, design measurements) too often and copy their results once more; larger ones spill
# out of the caches.
_CHUNK_BYTES = 6 << 20

# Phases of the horizontal polyphase pass: 8 float32 lanes, one AVX2 register.
_PHASES = 8


def _centred_pads(size: int) -> tuple[int, int]:
    """Pads ``(before, after)`` for a kernel of ``size`` taps anchored at ``size // 2`` (OpenCV's anchor)."""
    return size // 2, size - 1 - size // 2


def _use_channels_trick(x: torch.Tensor) -> bool:
    """oneDNN's channels-last kernels (CPU, float32) make the layout tricks below the fastest path."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _polyphase_blocks(size: int) -> int:
    """Blocks of ``_PHASES`` input pixels read by ``_PHASES`` consecutive outputs of a ``size``-tap filter."""
    return -(-(_PHASES + size - 1) // _PHASES)


@functools.lru_cache(maxsize=64)
def _polyphase_index_cpu(size: int) -> torch.Tensor:
    """``(P, P, 1, blocks)`` index into ``[0, k_0, ..., k_{K-1}]`` (``P = _PHASES``): output phase ``o`` reads
    input phase ``i`` of block ``j`` with tap ``P j + i - o``, or the leading 0 where that is no tap."""
    phase_out = torch.arange(_PHASES).view(-1, 1, 1, 1)
    phase_in = torch.arange(_PHASES).view(1, -1, 1, 1)
    block = torch.arange(_polyphase_blocks(size)).view(1, 1, 1, -1)
    tap = _PHASES * block + phase_in - phase_out
    return torch.where((tap >= 0) & (tap < size), tap + 1, 0)


@functools.lru_cache(maxsize=64)
def _polyphase_index(size: int, device: torch.device) -> torch.Tensor:
    return _polyphase_index_cpu(size).to(device)


def _polyphase_weight(k: torch.Tensor) -> torch.Tensor:
    """The dense ``(P, P, 1, blocks)`` convolution weight of :func:`_rows_polyphase` (differentiable)."""
    return torch.cat([k.new_zeros(1), k])[_polyphase_index(k.shape[0], k.device)]


def _rows_polyphase(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every row of contiguous ``x (N, H, Wq)`` (``Wq`` a multiple of ``_PHASES``) with
    a kernel given as its :func:`_polyphase_weight`, computed for ``_PHASES * (Wq / _PHASES - blocks + 1)``
    columns (at least ``Wq - K + 1``; any beyond read the end of the row): contiguous ``(N, H, W')``."""
    n, h, wq = x.shape
    # Each row seen as a channels-last image of Wq / P pixels with P channels (its P phases), filtered by a
    # dense P -> P convolution spanning `blocks` pixels: oneDNN's direct convolution, no layout reorders, and
    # its output memory is already the rows of the result.
    as_phases = x.view(1, n * h, wq // _PHASES, _PHASES).permute(0, 3, 1, 2)
    out = F.conv2d(as_phases, weight)  # (1, P, N*H, W'/P), channels-last
    return out.permute(0, 2, 3, 1).reshape(n, h, -1)


def _rows_depthwise(x: torch.Tensor, k: torch.Tensor, stride: int) -> torch.Tensor:
    """Valid correlation of every row of ``x (N, H, Wp)`` with ``k (K,)``, keeping every ``stride``-th
    column: contiguous ``(N, H, W')``."""
    n = x.shape[0]
    weight = k.view(1, 1, 1, -1).expand(n, 1, 1, k.shape[0])
    return F.conv2d(x.unsqueeze(0), weight, stride=(1, stride), groups=n)[0].contiguous()


def _columns_weight(k: torch.Tensor, width: int) -> torch.Tensor:
    """The depthwise ``(C, 1, K, 1)`` weight of :func:`_columns_as_channels` for rows ``width`` wide."""
    channels = _PHASES if width % _PHASES == 0 else width
    return k.view(1, 1, -1, 1).expand(channels, 1, k.shape[0], 1).contiguous()


def _columns_as_channels(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Valid correlation of every column of contiguous ``x (N, Hp, W)`` with a kernel given as its
    :func:`_columns_weight`, keeping every ``stride``-th row: contiguous ``(N, H', W)``."""
    n, hp, w = x.shape
    channels = weight.shape[0]
    # The same memory seen as channels-last images (N, C, Hp, W/C): the columns are the channels of W/C
    # pixels per row (C = 8 lanes where W allows, else all W columns as channels; a size-1 pixel dim keeps
    # stride W so that PyTorch still sees channels-last), filtered down the rows by a depthwise convolution
    # without any copy, and the output memory is again N images of rows.
    as_channels = x.view(n, hp, w // channels, channels).permute(0, 3, 1, 2)
    out = F.conv2d(as_channels, weight, stride=(stride, 1), groups=channels)  # channels-last
    return out.permute(0, 2, 3, 1).reshape(n, -1, w)  # a view when the output is channels-last, as expected


def _planes_per_chunk(planes: int, plane_bytes: int) -> int:
    """Planes per chunk: about ``_CHUNK_BYTES`` per thread (each thread filters its share of a chunk in its
    own cache), balanced so that the last chunk is not a small remainder."""
    budget = _CHUNK_BYTES * max(1, torch.get_num_threads())
    chunks = -(-planes // max(1, budget // max(1, plane_bytes)))
    return max(1, -(-planes // max(1, chunks)))


class _SeparablePlan:
    """Sizes, paddings and weights of one oneDNN-path separable filtering of ``(N, H, W)`` planes, shared by
    all chunks of planes."""

    def __init__(
        self,
        size: tuple[int, int],
        kx: torch.Tensor,
        ky: torch.Tensor,
        border: str,
        pads: tuple[int, int, int, int],
        stride: int,
    ) -> None:
        h, w = size
        left, right, top, bottom = pads
        self.h_out = (h + top + bottom - ky.shape[0]) // stride + 1
        self.w_out = (w + left + right - kx.shape[0]) // stride + 1
        self.border, self.stride, self.kx = border, stride, kx
        if stride == 1:
            # Rows padded to whole blocks of phases; the extra columns only feed outputs that are cut off.
            blocks = -(-self.w_out // _PHASES) + _polyphase_blocks(kx.shape[0]) - 1
            right = _PHASES * blocks - w - left
            self.rows_weight: torch.Tensor | None = _polyphase_weight(kx)
            rows_width = _PHASES * (blocks - _polyphase_blocks(kx.shape[0]) + 1)
        else:
            self.rows_weight = None
            rows_width = self.w_out
        self.pads = (left, right, top, bottom)
        self.columns_weight = _columns_weight(ky, rows_width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Filter the chunk ``x (n, H, W)``: ``(n, H', W')``, a view of contiguous rows."""
        # The horizontal pass first (as OpenCV), over the padded rows too: a row filter commutes with the row
        # padding, so its output is already the vertically padded input of the column pass, whose output is
        # the result, rows in place. (Nested calls free each temporary as soon as it has been read.)
        padded = _pad2d(x, self.pads, self.border)
        if self.rows_weight is not None:
            rows = _rows_polyphase(padded, self.rows_weight)
        else:
            rows = _rows_depthwise(padded, self.kx, self.stride)
        del padded
        return _columns_as_channels(rows, self.columns_weight, self.stride)[..., : self.w_out]


def _separable_shared(
    x: torch.Tensor,
    kx: torch.Tensor,
    ky: torch.Tensor,
    border: str,
    pads: tuple[int, int, int, int] | None = None,
    stride: int = 1,
) -> torch.Tensor:
    """Correlate ``x (N, H, W)`` with ``kx (Kx,)`` along rows and ``ky (Ky,)`` along columns after padding by
    ``pads=(left, right, top, bottom)`` (default: centred; zeros give the valid part), keeping every
    ``stride``-th row and column. Returns a contiguous ``(N, H', W')``."""
    if pads is None:
        pads = (*_centred_pads(kx.shape[0]), *_centred_pads(ky.shape[0]))
    if not _use_channels_trick(x):
        return _separable_planes(x, kx, ky, border, pads, stride)
    n, h, w = x.shape
    plan = _SeparablePlan((h, w), kx, ky, border, pads, stride)
    per_chunk = _planes_per_chunk(n, h * w * x.element_size())
    if n <= per_chunk:
        return plan(x).contiguous()  # already contiguous unless the rows were padded past whole blocks
    starts = range(0, n, per_chunk)
    if torch.is_grad_enabled() and (x.requires_grad or kx.requires_grad or ky.requires_grad):
        # Each chunk's graph stays alive anyway, and cat has the cheapest backward.
        return torch.cat([plan(x[i : i + per_chunk]) for i in starts])
    # The result is allocated before the chunks' scratch, which then lies above it and is freed first: the
    # allocator keeps reusing the same memory instead of returning it to the system after every call.
    out = x.new_empty(n, plan.h_out, plan.w_out)
    for i in starts:
        out[i : i + per_chunk] = plan(x[i : i + per_chunk])
    return out


def _separable_planes(
    x: torch.Tensor,
    kx: torch.Tensor,
    ky: torch.Tensor,
    border: str,
    pads: tuple[int, int, int, int],
    stride: int,
) -> torch.Tensor:
    """Plain single-channel convolutions on ``(N, 1, H, W)``: the path for CUDA (cuDNN) and float64 CPU
    (which oneDNN does not cover)."""
    padded = _pad2d(x, pads, border).unsqueeze(1)
    out = F.conv2d(padded, ky.view(1, 1, -1, 1), stride=(stride, 1))
    out = F.conv2d(out, kx.view(1, 1, 1, -1), stride=(1, stride))
    return out.squeeze(1)


def _separable_grouped(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str) -> torch.Tensor:
    """Per-plane kernels: ``x (N, H, W)``, ``kx (N, Kx)``, ``ky (N, Ky)`` -> ``(N, H, W)``, centred."""
    n = x.shape[0]
    sx, sy = kx.shape[1], ky.shape[1]
    padded = _pad2d(x, (*_centred_pads(sx), *_centred_pads(sy)), border).unsqueeze(0)
    out = F.conv2d(padded, kx.view(n, 1, 1, sx), groups=n)
    return F.conv2d(out, ky.view(n, 1, sy, 1), groups=n)[0]


def _grouped_kernels(k: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """``(K,)`` or ``(1|B, K)`` kernels -> ``(B*C, K)`` rows, one per ``(image, channel)`` plane."""
    if k.dim() == 1:
        k = k.unsqueeze(0)
    return k.expand(batch, -1).repeat_interleave(channels, dim=0)


def _as_kernel_rows(k: torch.Tensor, batch: int, name: str, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if k.dim() not in (1, 2) or k.shape[-1] < 1 or (k.dim() == 2 and k.shape[0] not in (1, batch)):
        raise ValueError(f"{name} must have shape (K,), (1, K) or (B={batch}, K), got {tuple(k.shape)}")
    return k.to(dtype=like.dtype, device=like.device)


def filter2d_separable(
    images: torch.Tensor, kernel_x: torch.Tensor, kernel_y: torch.Tensor, border_type: str = "reflect"
) -> torch.Tensor:
    """Separable correlation: rows with ``kernel_x`` (along x/width) and columns with ``kernel_y``.

    Equals ``cv2.sepFilter2D(img, -1, kernel_x, kernel_y, borderType=...)`` per channel.

    Args:
        images: ``(B, C, H, W)`` float.
        kernel_x, kernel_y: ``(K,)`` shared by the batch, or ``(B, K)`` one per image (``(1, K)`` is shared).
            Odd sizes are centred; an even size has its anchor at ``K // 2``. Differentiable w.r.t. both.
        border_type: see the module docstring (default ``"reflect"`` = OpenCV's ``BORDER_REFLECT_101``).

    Returns:
        ``(B, C, H, W)``, same dtype and device.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    b, c, h, w = images.shape
    kx = _as_kernel_rows(kernel_x, b, "kernel_x", images)
    ky = _as_kernel_rows(kernel_y, b, "kernel_y", images)
    if images.numel() == 0:
        return images.clone()
    planes = images.reshape(b * c, h, w)
    shared = (kx.dim() == 1 or kx.shape[0] == 1) and (ky.dim() == 1 or ky.shape[0] == 1)
    if shared:
        out = _separable_shared(planes, kx.reshape(-1), ky.reshape(-1), border)
    else:
        out = _separable_grouped(planes, _grouped_kernels(kx, b, c), _grouped_kernels(ky, b, c), border)
    return out.view(b, c, h, w)


def _valid_row_length(width: int, size: int, like: torch.Tensor) -> int:
    """Row length to give :func:`_filter_valid_rows` for images ``width`` wide and a ``size``-tap kernel. The
    oneDNN path filters rows in whole blocks of phases: rows that long (a few columns past the image) need no
    padded copy."""
    if not _use_channels_trick(like):
        return width
    blocks = -(-(width - size + 1) // _PHASES) + _polyphase_blocks(size) - 1
    return _PHASES * blocks


def _filter_valid_rows(x: torch.Tensor, kernel: torch.Tensor, width: int) -> torch.Tensor:
    """The valid part of the separable correlation of ``x[..., :width]`` with ``kernel (K,)`` along both axes:
    only the outputs whose window lies inside, a possibly strided ``(N, H - K + 1, width - K + 1)``.

    ``x (N, H, L)`` is contiguous with ``L = _valid_row_length(width, K, x)``; the columns past ``width`` only
    feed outputs that are discarded, so they just have to be finite.
    """
    w_out = width - kernel.shape[0] + 1
    if not _use_channels_trick(x):
        return _separable_planes(x[..., :width], kernel, kernel, "constant", (0, 0, 0, 0), 1)
    rows = _rows_polyphase(x, _polyphase_weight(kernel))
    return _columns_as_channels(rows, _columns_weight(kernel, rows.shape[-1]), 1)[..., :w_out]


def _filter_valid(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The valid part of the separable correlation of ``images (B, C, H, W)`` with ``kernel (K,)`` along both
    axes: only the outputs whose window lies inside the image, ``(B, C, H - K + 1, W - K + 1)`` (no border
    handling, for measures that leave out the border anyway)."""
    b, c, h, w = images.shape
    size = kernel.shape[0]
    if images.numel() == 0:
        return images.new_zeros(b, c, max(h - size + 1, 0), max(w - size + 1, 0))
    out = _separable_shared(images.reshape(b * c, h, w), kernel, kernel, "reflect", pads=(0, 0, 0, 0))
    return out.view(b, c, h - size + 1, w - size + 1)


def filter2d(images: torch.Tensor, kernel: torch.Tensor, border_type: str = "reflect") -> torch.Tensor:
    """2-D correlation with a full kernel, like ``cv2.filter2D`` (anchor at the kernel centre, ``k // 2``).

    Args:
        images: ``(B, C, H, W)`` float.
        kernel: ``(kH, kW)`` shared by the batch or ``(B, kH, kW)`` one per image (``(1, kH, kW)`` is shared).
            Differentiable. Prefer :func:`filter2d_separable` for separable kernels.
        border_type: see the module docstring.

    Returns:
        ``(B, C, H, W)``.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    b, c, h, w = images.shape
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"kernel must be a torch.Tensor, got {type(kernel).__name__}")
    if (
        kernel.dim() not in (2, 3)
        or (kernel.dim() == 3 and kernel.shape[0] not in (1, b))
        or kernel.numel() == 0
    ):
        raise ValueError(f"kernel must have shape (kH, kW) or (B={b}, kH, kW), got {tuple(kernel.shape)}")
    kernel = kernel.to(dtype=images.dtype, device=images.device)
    if images.numel() == 0:
        return images.clone()
    kh, kw = kernel.shape[-2:]
    n = b * c
    padded = _pad2d(images.reshape(n, h, w), (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2), border)
    if kernel.dim() == 2 or kernel.shape[0] == 1:
        weight = kernel.reshape(1, 1, kh, kw).expand(n, 1, kh, kw)
    else:
        weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(padded.unsqueeze(0), weight, groups=n).view(b, c, h, w)


# ----------------------------------------------------------------------------------------------------
# Blurs
# ----------------------------------------------------------------------------------------------------


def _split_sigma(
    sigma: float | Sequence[float] | torch.Tensor, batch: int
) -> tuple[float, float] | tuple[torch.Tensor, torch.Tensor]:
    """-> ``(sigma_y, sigma_x)`` as floats, or as tensors of shape ``()`` or ``(B,)``."""
    if isinstance(sigma, torch.Tensor):
        if not sigma.is_floating_point():
            raise TypeError(f"sigma must be a floating-point tensor, got {sigma.dtype}")
        if sigma.dim() == 0:
            return sigma, sigma
        if sigma.dim() == 1 and sigma.shape[0] in (1, batch):
            return sigma, sigma
        if sigma.dim() == 2 and sigma.shape[0] in (1, batch) and sigma.shape[1] == 2:
            return sigma[:, 0], sigma[:, 1]
        raise ValueError(
            f"sigma tensor must have shape (), (B,) or (B, 2) with B=1 or {batch}, got {tuple(sigma.shape)}"
        )
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        pair = (float(sigma), float(sigma))
    elif isinstance(sigma, Sequence) and len(sigma) == 2 and all(isinstance(s, (int, float)) for s in sigma):
        pair = (float(sigma[0]), float(sigma[1]))
    else:
        raise TypeError(f"sigma must be a float, a pair (sigma_y, sigma_x) or a tensor, got {sigma!r}")
    if not (pair[0] > 0 and pair[1] > 0) or math.isinf(pair[0]) or math.isinf(pair[1]):
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    return pair


def _axis_kernel(sigma: float | torch.Tensor, size: int | None, like: torch.Tensor) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        if size is None:
            size = gaussian_kernel_size(float(sigma.detach().max()))  # documented host sync
        return _gaussian_from_tensor(sigma.to(like.device), size, like.dtype)
    if size is None:
        size = gaussian_kernel_size(sigma)
    return _cached_gaussian(sigma, size, like.dtype, like.device)


def gaussian_blur2d(
    images: torch.Tensor,
    kernel_size: int | tuple[int, int] | None,
    sigma: float | tuple[float, float] | torch.Tensor,
    border_type: str = "reflect",
) -> torch.Tensor:
    """Gaussian blur, separable, equal to ``cv2.GaussianBlur`` with the same explicit size and sigmas.

    Args:
        images: ``(B, C, H, W)`` float.
        kernel_size: ``k`` or ``(kH, kW)`` (height first; OpenCV's ``ksize`` is ``(w, h)``), or ``None``
            to use ``2 * ceil(3 sigma) + 1`` per axis (for a tensor sigma this reads ``sigma.max()``: a
            host sync).
        sigma: ``s`` or ``(sigma_y, sigma_x)`` as Python floats (fast path, kernels cached); or a tensor:
            ``()`` shared, ``(B,)`` isotropic per image, ``(B, 2)`` per image ``(sigma_y, sigma_x)``.
            Tensor sigmas are differentiable and not checked for positivity (no host sync).
        border_type: see the module docstring (default = OpenCV's ``BORDER_REFLECT_101``).

    Returns:
        ``(B, C, H, W)``.
    """
    check_image_batch(images)
    sizes = _pair(kernel_size, "kernel_size")
    sigma_y, sigma_x = _split_sigma(sigma, images.shape[0])
    ky = _axis_kernel(sigma_y, None if sizes is None else sizes[0], images)
    kx = _axis_kernel(sigma_x, None if sizes is None else sizes[1], images)
    return filter2d_separable(images, kx, ky, border_type)


def box_blur(
    images: torch.Tensor, kernel_size: int | tuple[int, int], border_type: str = "reflect"
) -> torch.Tensor:
    """Mean over a ``(kH, kW)`` window (``k`` for a square), equal to ``cv2.blur``/``cv2.boxFilter`` with
    ``normalize=True`` (even sizes anchored at ``k // 2`` like OpenCV). ``images (B, C, H, W)``."""
    check_image_batch(images)
    sizes = _pair(kernel_size, "kernel_size")
    assert sizes is not None
    ky = _const((1.0 / sizes[0],) * sizes[0], images)
    kx = _const((1.0 / sizes[1],) * sizes[1], images)
    return filter2d_separable(images, kx, ky, border_type)


# ----------------------------------------------------------------------------------------------------
# Derivatives
# ----------------------------------------------------------------------------------------------------


def _smooth3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a + 2 b + c`` (the Sobel smoothing taps)."""
    out = a + c
    return out.add_(b, alpha=2.0)  # add's backward needs no values, so in place is autograd-safe


def _pad1(images: torch.Tensor, border: str) -> torch.Tensor:
    b, c, h, w = images.shape
    planes = images.reshape(b * c, h, w)
    if planes.numel() == 0:  # F.pad rejects empty batches
        return planes.new_zeros(b * c, h + 2, w + 2)
    return _pad2d(planes, (1, 1, 1, 1), border)


def _first_derivatives(xp: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled OpenCV-kernel responses ``(gx, gy)`` from a 1-pixel padded ``(N, H+2, W+2)`` stack."""
    if mode == "sobel":
        sv = _smooth3(xp[:, :-2], xp[:, 1:-1], xp[:, 2:])  # (N, H, W+2)
        sh = _smooth3(xp[..., :-2], xp[..., 1:-1], xp[..., 2:])  # (N, H+2, W)
        return sv[..., 2:] - sv[..., :-2], sh[:, 2:] - sh[:, :-2]
    core_rows = xp[:, 1:-1]
    core_cols = xp[..., 1:-1]
    return core_rows[..., 2:] - core_rows[..., :-2], core_cols[:, 2:] - core_cols[:, :-2]


def _second_derivatives(xp: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unscaled ``(dxx, dxy, dyy)`` responses (OpenCV ``Sobel`` ksize=3 kernels for ``"sobel"``)."""
    if mode == "sobel":
        rows = _smooth3(xp[:, :-2], xp[:, 1:-1], xp[:, 2:])  # smoothed along y
        cols = _smooth3(xp[..., :-2], xp[..., 1:-1], xp[..., 2:])  # smoothed along x
    else:
        rows, cols = xp[:, 1:-1], xp[..., 1:-1]
    dxx = rows[..., :-2] + rows[..., 2:] - 2.0 * rows[..., 1:-1]
    dyy = cols[:, :-2] + cols[:, 2:] - 2.0 * cols[:, 1:-1]
    dy = xp[:, 2:] - xp[:, :-2]  # (N, H, W+2)
    dxy = dy[..., 2:] - dy[..., :-2]
    return dxx, dxy, dyy


_MODES = ("sobel", "diff")


def spatial_gradient(
    images: torch.Tensor,
    mode: str = "sobel",
    order: int = 1,
    normalized: bool = True,
    border_type: str = "reflect",
) -> torch.Tensor:
    """First or second image derivatives with 3x3 Sobel or central-difference kernels.

    Args:
        images: ``(B, C, H, W)`` float.
        mode: ``"sobel"`` (OpenCV ``Sobel`` ksize=3 kernels: derivative along one axis, ``[1, 2, 1]``
            smoothing along the other) or ``"diff"`` (``[-1, 0, 1]`` and ``[1, -2, 1]``, no smoothing).
        order: 1 -> ``(B, C, 2, H, W)`` with ``[d/dx, d/dy]``; 2 -> ``(B, C, 3, H, W)`` with
            ``[d2/dx2, d2/dxdy, d2/dy2]``.
        normalized: ``True`` gives true per-pixel derivatives (Sobel/8, difference/2, second-order Sobel and
            cross terms /4); ``False`` gives the raw OpenCV kernel responses (``cv2.Sobel`` with ``scale=1``).
        border_type: default ``"reflect"`` = ``BORDER_REFLECT_101``, the default of ``cv2.Sobel``, so
            results match OpenCV everywhere including the border (where the derivative across the edge is
            then 0).

    Returns:
        ``(B, C, 2, H, W)`` or ``(B, C, 3, H, W)``.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    b, c, h, w = images.shape
    xp = _pad1(images, border)
    if order == 1:
        gx, gy = _first_derivatives(xp, mode)
        scale = (0.125 if mode == "sobel" else 0.5) if normalized else 1.0
        out = torch.stack([gx, gy], dim=1)
    else:
        dxx, dxy, dyy = _second_derivatives(xp, mode)
        if normalized:
            smooth = 0.25 if mode == "sobel" else 1.0
            dxx, dxy, dyy = dxx * smooth, dxy * 0.25, dyy * smooth
        scale = 1.0
        out = torch.stack([dxx, dxy, dyy], dim=1)
    if scale != 1.0:
        out = out * scale
    return out.view(b, c, -1, h, w)


def sobel(
    images: torch.Tensor, normalized: bool = True, eps: float = 1e-6, border_type: str = "reflect"
) -> torch.Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2 + eps)``, ``(B, C, H, W) -> (B, C, H, W)``.

    ``gx, gy`` are :func:`spatial_gradient`'s (``normalized=True``: per-pixel derivatives, i.e.
    ``cv2.Sobel``/8). ``eps`` keeps the gradient finite on flat regions (where the output is
    ``sqrt(eps)``); ``eps=0`` gives the exact magnitude. Border: ``BORDER_REFLECT_101`` by default, as
    ``cv2.Sobel``.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    if not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    b, c, h, w = images.shape
    gx, gy = _first_derivatives(_pad1(images, border), "sobel")
    # square() saves only its input, so the in-place accumulation below is autograd-safe.
    sq = gx.square().addcmul_(gy, gy)
    if normalized:
        sq.mul_(1.0 / 64.0)
    return sq.add_(eps).sqrt_().view(b, c, h, w)


def laplacian(
    images: torch.Tensor, normalized: bool = True, border_type: str = "reflect", kernel_size: int = 1
) -> torch.Tensor:
    """Discrete Laplacian ``d2/dx2 + d2/dy2``, equal to ``cv2.Laplacian(img, -1, ksize=kernel_size)``.

    Args:
        images: ``(B, C, H, W)`` float.
        normalized: ``kernel_size=1`` (4-neighbour ``[[0,1,0],[1,-4,1],[0,1,0]]``) is already in
            per-pixel units. For ``kernel_size=3`` (OpenCV's ``[[2,0,2],[0,-8,0],[2,0,2]]``) ``True``
            divides by 4 so the result is in per-pixel units; ``False`` returns OpenCV's raw values.
        border_type: default ``"reflect"`` = OpenCV's default ``BORDER_REFLECT_101``.
        kernel_size: 1 or 3, as OpenCV's ``ksize``.
    """
    check_image_batch(images)
    border = _canonical_border(border_type)
    if kernel_size not in (1, 3):
        raise ValueError(f"kernel_size must be 1 or 3, got {kernel_size!r}")
    b, c, h, w = images.shape
    xp = _pad1(images, border)
    centre = xp[:, 1:-1, 1:-1]
    if kernel_size == 1:
        out = xp[:, :-2, 1:-1] + xp[:, 2:, 1:-1]
        out = out.add_(xp[:, 1:-1, :-2]).add_(xp[:, 1:-1, 2:]).sub_(centre, alpha=4.0)
    else:
        out = xp[:, :-2, :-2] + xp[:, :-2, 2:]
        out = out.add_(xp[:, 2:, :-2]).add_(xp[:, 2:, 2:]).sub_(centre, alpha=4.0)
        out = out.mul_(0.5 if normalized else 2.0)
    return out.view(b, c, h, w)
