"""Per-image losses and similarity metrics for registration and quality checks.

Conventions (docs/conventions.md, "Losses and metrics"):

- Inputs ``a``, ``b`` are floating ``(B, C, H, W)`` images of the same dtype; either may have a
  batch of 1 and is then shared by the batch.
- Every function returns one value per image, shape ``(B,)``, never a batch average.
- ``mask`` (also "weights") is optional, ``(B|1, 1|C, H, W)``, bool or floating, non-negative.
  A pixel's contribution is weighted by it and the result is normalised by the mask's sum over
  ``(C, H, W)`` (a one-channel mask counts once per image channel), so a half-masked image has
  the same scale of loss. Pixels with weight 0 are ignored completely: changing them changes
  nothing, also for the windowed measures (``ssim``, ``local_zncc``), whose local statistics are
  mask-weighted (normalised convolution).
- Empty masks: an image whose mask sums to 0 has nothing to compare. Its losses are 0, its
  similarities ``zncc``/``local_zncc``/``ssim`` are 1 and its ``psnr`` is 0 dB; never NaN.
  :func:`mask_weight_sum` returns the per-image weight so callers can detect this (``== 0``).
- Nothing here synchronises with the device; argument checks look at shapes and Python numbers only.

Losses are "lower is better"; ``zncc``, ``local_zncc``, ``ssim`` and ``psnr`` are similarities
("higher is better"), with ``*_loss = 1 - similarity`` where a loss makes sense.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import ParamSpec

import torch
from torch import nn

from alignimate.core.checks import check_image_batch
from alignimate.core.filters import (
    _canonical_border,
    _filter_valid,
    _filter_valid_rows,
    _valid_row_length,
    filter2d_separable,
    gaussian_kernel1d,
)

__all__ = [
    "LOSS_NAMES",
    "CharbonnierLoss",
    "L1Loss",
    "LocalZNCCLoss",
    "MSELoss",
    "SSIMLoss",
    "ZNCCLoss",
    "charbonnier_loss",
    "get_loss",
    "l1_loss",
    "local_zncc",
    "local_zncc_loss",
    "mask_weight_sum",
    "masked_mean",
    "mse_loss",
    "psnr",
    "ssim",
    "ssim_loss",
    "ssim_map",
    "total_variation",
    "zncc",
    "zncc_loss",
]

LossFn = Callable[..., torch.Tensor]
_P = ParamSpec("_P")

# Floor for normalised-convolution denominators. Only pixels whose whole window lies (almost)
# outside the mask get near it, and those have weight 0; the floor keeps their values and
# gradients finite so that 0 * value stays 0 (also in float32, where 1e-24 is representable).
_WEIGHT_FLOOR = 1e-12


# --------------------------------------------------------------------------- checks and helpers


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    check_image_batch(a, "a")
    check_image_batch(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b must have the same (C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"a and b have batches {a.shape[0]} and {b.shape[0]}; they must be equal or 1")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")


def _check_mask(mask: torch.Tensor | None, like: torch.Tensor, name: str = "mask") -> torch.Tensor | None:
    """Validate ``mask`` against images ``like`` (B, C, H, W) and cast it to their dtype."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    b, c, h, w = like.shape
    if mask.dim() != 4 or mask.shape[2:] != (h, w):
        raise ValueError(f"{name} must have shape (B|1, 1|C, {h}, {w}), got {tuple(mask.shape)}")
    if mask.shape[1] not in (1, c):
        raise ValueError(f"{name} has {mask.shape[1]} channels, expected 1 or {c}")
    if mask.shape[0] != b and 1 not in (mask.shape[0], b):
        raise ValueError(f"{name} has batch {mask.shape[0]}, expected 1 or {b}")
    if not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise TypeError(f"{name} must be bool or floating point, got {mask.dtype}")
    return mask.to(like.dtype)


def _batch_of(*tensors: torch.Tensor | None) -> int:
    return max(t.shape[0] for t in tensors if t is not None)


def _expand_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x.expand(batch, *x.shape[1:])


def _weighted_sums(values: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum(w * v), sum(w))`` per image over ``(C, H, W)``, broadcasting ``w`` to ``v``."""
    if weights is None:
        count = values.shape[1] * values.shape[2] * values.shape[3]  # also for an empty batch
        return values.sum(dim=(1, 2, 3)), values.new_full((values.shape[0],), float(count))
    # The product's shape is the broadcast one (torch.broadcast_shapes imports sympy on its first call,
    # a cost in every run's start-up: docs/benchmarks.md, end to end).
    weighted = values * weights
    total = weighted.sum(dim=(1, 2, 3))
    weight = weights.expand(weighted.shape).sum(dim=(1, 2, 3))
    return total, weight


def _safe(denominator: torch.Tensor) -> torch.Tensor:
    # A zero weight sum goes with a zero weighted total, so dividing by 1 gives 0 there.
    return torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` (B, C, H, W) per image, weighted by ``mask`` (B|1, 1|C, H, W) -> ``(B,)``.

    Normalised by the mask's sum over (C, H, W); an image whose mask sums to 0 gives 0.
    """
    check_image_batch(values, "values")
    weights = _check_mask(mask, values)
    total, weight = _weighted_sums(values, weights)
    return total / _safe(weight)


def mask_weight_sum(images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Total weight that ``mask`` gives images shaped like ``images`` (B, C, H, W) -> ``(B,)``.

    This is the denominator every function here normalises by (``C * H * W`` without a mask);
    ``== 0`` flags images whose losses/metrics were set to their "empty mask" values.
    """
    check_image_batch(images)
    weights = _check_mask(mask, images)
    batch = _batch_of(images, weights)
    if weights is None:
        return images.new_full((batch,), float(images[0].numel()))
    return weights.expand(batch, *images.shape[1:]).sum(dim=(1, 2, 3))


def _one_minus(similarity: Callable[_P, torch.Tensor], doc: str) -> Callable[_P, torch.Tensor]:
    """The loss ``1 - similarity(...)`` under the name ``<similarity>_loss``, taking the similarity's
    parameters (``inspect.signature`` follows ``__wrapped__``, so :func:`get_loss` checks options
    against them)."""

    @functools.wraps(similarity)
    def loss(*args: _P.args, **kwargs: _P.kwargs) -> torch.Tensor:
        return 1.0 - similarity(*args, **kwargs)

    loss.__name__ = loss.__qualname__ = f"{similarity.__name__}_loss"
    loss.__doc__ = doc
    return loss


def _check_positive(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be positive and finite, got {value}")


# --------------------------------------------------------------------------- pixel losses


def l1_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference per image -> ``(B,)``. a, b (B|1, C, H, W); mask see module doc."""
    _check_pair(a, b)
    return masked_mean((a - b).abs(), mask)


def mse_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference per image -> ``(B,)``. a, b (B|1, C, H, W); mask see module doc."""
    _check_pair(a, b)
    return masked_mean((a - b).square(), mask)


def charbonnier_loss(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 0.01
) -> torch.Tensor:
    """Charbonnier (pseudo-Huber) loss per image -> ``(B,)``: ``mean(scale * (sqrt((d/scale)^2 + 1) - 1))``.

    ``d = a - b``. For ``|d| >> scale`` each term is about ``|d| - scale`` (L1-like, robust to
    outliers); for ``|d| << scale`` it is about ``d^2 / (2 scale)`` (L2-like, smooth at 0).
    ``scale`` is in image units (0.01 is 2.55 grey levels of an 8-bit image in [0, 1]).
    """
    _check_pair(a, b)
    _check_positive(scale, "scale")
    x2 = ((a - b) / scale).square()
    # sqrt(x2 + 1) - 1 rewritten without the cancellation that loses small differences.
    per_pixel = scale * x2 / (torch.sqrt(x2 + 1.0) + 1.0)
    return masked_mean(per_pixel, mask)


# --------------------------------------------------------------------------- ZNCC


def zncc(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Global zero-normalised cross-correlation per image -> ``(B,)`` in ``[-1, 1]``.

    All channels and pixels under ``mask`` form one sample each for ``a`` and ``b``;
    ``zncc = (cov + eps) / sqrt((var_a + eps) * (var_b + eps))`` with mask-weighted (population)
    moments. Invariant to brightness and contrast changes ``b -> s * b + t`` (``s > 0``).
    ``eps`` > 0 regularises: identical images give exactly 1, two flat images count as
    identical (1) and a flat image against a textured one is about ``sqrt(eps / var)`` ~ 0.
    """
    _check_pair(a, b)
    _check_positive(eps, "eps")
    weights = _check_mask(mask, a)
    batch = _batch_of(a, b, weights)
    a, b = _expand_batch(a, batch), _expand_batch(b, batch)

    weight = _weighted_sums(a, weights)[1]
    safe_weight = _safe(weight)

    def weighted_mean(x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=(1, 2, 3)) if weights is None else (x * weights).sum(dim=(1, 2, 3))
        return (total / safe_weight).view(-1, 1, 1, 1)

    # Centre first (two passes) rather than E[ab] - E[a]E[b]: no cancellation in float32.
    da = a - weighted_mean(a)
    db = b - weighted_mean(b)
    var_a = weighted_mean(da.square()).flatten()
    var_b = weighted_mean(db.square()).flatten()
    cov = weighted_mean(da * db).flatten()
    value = (cov + eps) / (torch.sqrt(var_a + eps) * torch.sqrt(var_b + eps))
    # eps / (sqrt(eps) * sqrt(eps)) is 1 only up to rounding; make the empty-mask value exact.
    return torch.where(weight > 0, value, torch.ones_like(value))


zncc_loss = _one_minus(
    zncc, "``1 - zncc(a, b, mask, eps)`` -> ``(B,)`` in ``[0, 2]``; 0 for a perfect (affine) match."
)


def _gaussian_window(
    window_size: int | None, sigma: float | None, like: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """The shared 1-D Gaussian kernel (K,) and its size K; sigma defaults to (K - 1) / 6 (+-3 sigma)."""
    if window_size is None and sigma is None:
        raise ValueError("give window_size, sigma or both")
    if window_size is not None and (
        not isinstance(window_size, int)
        or isinstance(window_size, bool)
        or window_size < 1
        or window_size % 2 == 0
    ):
        raise ValueError(f"window_size must be a positive odd int, got {window_size!r}")
    if sigma is None and window_size is not None:
        # A one-tap window is the identity whatever sigma is.
        sigma = (window_size - 1) / 6.0 if window_size > 1 else 1.0
    _check_positive(sigma, "sigma")
    kernel = gaussian_kernel1d(sigma, window_size, dtype=like.dtype, device=like.device)
    return kernel, int(kernel.shape[0])


def _local_moments(
    a: torch.Tensor,
    b: torch.Tensor,
    weights: torch.Tensor | None,
    kernel: torch.Tensor,
    border_type: str = "reflect",
    valid: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window-weighted local means, variances and covariance of a, b (B, C, H, W), each (B, C, H, W),
    or with ``valid`` only where the window lies inside the image, (B, C, H - K + 1, W - K + 1).

    With ``weights`` each window's statistics are weighted by them as well (normalised
    convolution), so zero-weight pixels take no part in any window.
    """
    channels = a.shape[1]

    def window_sums(stacked: torch.Tensor) -> torch.Tensor:
        # All moments in one filtering call: one pass of the filter's setup and memory traffic.
        if valid:
            return _filter_valid(stacked, kernel)
        return filter2d_separable(stacked, kernel, kernel, border_type)

    if weights is None:
        stacked = torch.cat([a, b, a * a, b * b, a * b], dim=1)
        mu_a, mu_b, e_aa, e_bb, e_ab = window_sums(stacked).split(channels, dim=1)
    else:
        weights = _expand_batch(weights, a.shape[0])
        wa, wb = weights * a, weights * b
        stacked = torch.cat([wa, wb, wa * a, wb * b, wa * b, weights], dim=1)
        *sums, window_weight = window_sums(stacked).split([channels] * 5 + [weights.shape[1]], dim=1)
        norm = window_weight.clamp_min(_WEIGHT_FLOOR)
        mu_a, mu_b, e_aa, e_bb, e_ab = (s / norm for s in sums)
    # Rounding can push E[x^2] - E[x]^2 a hair below 0 in flat windows.
    var_a = (e_aa - mu_a.square()).clamp_min(0.0)
    var_b = (e_bb - mu_b.square()).clamp_min(0.0)
    cov = e_ab - mu_a * mu_b
    return mu_a, mu_b, var_a, var_b, cov


# Bytes of stacked moments (5 or 6 per channel) per chunk of images and per thread on the CPU: the filtering
# and the element-wise SSIM arithmetic of a chunk stay in the CPU caches instead of streaming whole-batch
# temporaries through memory (much faster for batches of 256x256 RGB images: docs/benchmarks.md, design
# measurements).
_CHUNK_BYTES = 4 << 20


def _image_chunks(like: torch.Tensor, planes_per_channel: int) -> range:
    """Start indices of the chunks of images (batch ``like.shape[0]``) that SSIM processes at once; one chunk
    on GPUs, whose parallelism wants the whole batch. An empty batch still gets one (empty) chunk."""
    batch, channels, height, width = like.shape
    if like.device.type != "cpu":
        return range(0, max(batch, 1), max(batch, 1))
    per_image = planes_per_channel * channels * height * width * like.element_size()
    budget = _CHUNK_BYTES * max(1, torch.get_num_threads())
    return range(0, max(batch, 1), max(1, budget // max(per_image, 1)))


def _batch_slice(x: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Images ``start:stop`` of ``x``, or ``x`` itself where its batch of 1 is shared."""
    if x is None or x.shape[0] == 1:
        return x
    return x[start:stop]


def _prepare_windowed(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    _check_pair(a, b)
    weights = _check_mask(mask, a)
    batch = _batch_of(a, b, weights)
    return _expand_batch(a, batch), _expand_batch(b, batch), weights


def local_zncc(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int | None = 9,
    sigma: float | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Mean local (windowed) ZNCC per image -> ``(B,)``, about ``[-1, 1]``.

    Local means/variances/covariance use a Gaussian window of ``window_size`` taps and ``sigma``
    (default ``(window_size - 1) / 6``; with ``window_size=None`` the filter's default size for
    ``sigma``), image borders reflected. Each pixel's ``(cov + eps) / sqrt((var_a + eps)(var_b + eps))``
    is averaged under ``mask``, whose weights also weight every window. Per channel, then averaged.
    ``eps`` is a variance floor: windows with a std well below ``sqrt(eps)`` (0.01 by default,
    about 2.5 grey levels) count as flat; two flat windows match (1), flat against textured ~ 0.
    """
    a, b, weights = _prepare_windowed(a, b, mask)
    _check_positive(eps, "eps")
    kernel, _ = _gaussian_window(window_size, sigma, a)
    _, _, var_a, var_b, cov = _local_moments(a, b, weights, kernel)
    corr = (cov + eps) / (torch.sqrt(var_a + eps) * torch.sqrt(var_b + eps))
    # 1 - mean(1 - corr): identical to mean(corr), but an empty mask gives 1 (loss 0).
    return 1.0 - masked_mean(1.0 - corr, weights)


local_zncc_loss = _one_minus(local_zncc, "``1 - local_zncc(...)`` -> ``(B,)``; 0 for identical images.")


# --------------------------------------------------------------------------- SSIM


def _ssim_constants(data_range: float, k1: float, k2: float) -> tuple[float, float]:
    _check_positive(data_range, "data_range")
    _check_positive(k1, "k1")
    _check_positive(k2, "k2")
    return (k1 * data_range) ** 2, (k2 * data_range) ** 2


def _ssim_from_moments(
    moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], c1: float, c2: float
) -> torch.Tensor:
    """The SSIM map from :func:`_local_moments`'s local statistics."""
    mu_a, mu_b, var_a, var_b, cov = moments
    luminance = (2.0 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1)
    structure = (2.0 * cov + c2) / (var_a + var_b + c2)
    return luminance * structure


def _ssim_means_inference(
    a: torch.Tensor, b: torch.Tensor, kernel: torch.Tensor, c1: float, c2: float
) -> torch.Tensor:
    """Mean SSIM over the valid (cropped) map per image, without mask or autograd: ``(B,)``.

    The same arithmetic as :func:`_local_moments` and :func:`_ssim_from_moments`, in the same order (so the
    same values), but the moments are written straight into one buffer of filter-ready rows and the map is
    formed in place: few passes over memory that all stay in the CPU caches.
    """
    batch, channels, height, width = a.shape
    length = _valid_row_length(width, kernel.shape[0], a)
    stacked = a.new_empty(batch, 5, channels, height, length)
    image = stacked[..., :width]
    image[:, 0] = a
    image[:, 1] = b
    torch.mul(a, a, out=image[:, 2])
    torch.mul(b, b, out=image[:, 3])
    torch.mul(a, b, out=image[:, 4])
    stacked[..., width:] = 0.0  # read by the filter, feeds no kept output
    sums = _filter_valid_rows(stacked.view(-1, height, length), kernel, width)
    mu_a, mu_b, e_aa, e_bb, e_ab = sums.view(batch, 5, channels, *sums.shape[-2:]).unbind(1)
    mu_aa, mu_bb, mu_ab = mu_a.square(), mu_b.square(), mu_a * mu_b
    var_a = e_aa.sub_(mu_aa).clamp_min_(0.0)
    var_b = e_bb.sub_(mu_bb).clamp_min_(0.0)
    cov = e_ab.sub_(mu_ab)
    luminance = mu_ab.mul_(2.0).add_(c1).div_(mu_aa.add_(mu_bb).add_(c1))
    structure = cov.mul_(2.0).add_(c2).div_(var_a.add_(var_b).add_(c2))
    one_minus_map = luminance.mul_(structure).neg_().add_(1.0)
    return 1.0 - masked_mean(one_minus_map)


def ssim_map(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    border_type: str = "reflect",
) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004) -> ``(B, C, H, W)``, channels independent.

    Gaussian window of ``window_size`` taps and ``sigma``, population (co)variances,
    ``C1 = (k1 * data_range)^2``, ``C2 = (k2 * data_range)^2``. ``border_type`` fills the
    windows past the image (see ``alignimate.core.filters``; default ``"reflect"``, ``dcb|abcd``);
    ``"symmetric"`` (``cba|abcd``) is scipy's "reflect" and reproduces skimage's full SSIM map,
    borders included. :func:`ssim` crops the border by default. With ``mask`` the local
    statistics are mask-weighted; map values at zero-weight pixels are finite but meaningless.
    """
    a, b, weights = _prepare_windowed(a, b, mask)
    c1, c2 = _ssim_constants(data_range, k1, k2)
    kernel, _ = _gaussian_window(window_size, sigma, a)
    return _ssim_from_moments(_local_moments(a, b, weights, kernel, border_type), c1, c2)


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    crop_border: bool = True,
    border_type: str = "reflect",
) -> torch.Tensor:
    """Mean SSIM per image -> ``(B,)`` (1 for identical images), averaged over channels and pixels.

    With ``crop_border`` (default) the ``(window_size - 1) // 2`` pixels along each edge, whose
    windows reach past the image, are left out of the average, as ``skimage.metrics.
    structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)`` does (its window is 11 taps for sigma 1.5: radius ``int(3.5 sigma + 0.5)``);
    the defaults reproduce it to float rounding, and ``border_type`` then does not matter.
    Without cropping the borders, filled as ``border_type`` says (see :func:`ssim_map`), are
    averaged too. The image must be larger than ``window_size - 1`` in H and W when cropping.
    """
    if not isinstance(crop_border, bool):
        raise TypeError(f"crop_border must be a bool, got {type(crop_border).__name__}")
    a, b, weights = _prepare_windowed(a, b, mask)
    c1, c2 = _ssim_constants(data_range, k1, k2)
    kernel, _ = _gaussian_window(window_size, sigma, a)
    _canonical_border(border_type)  # checked even where the cropped border makes it irrelevant
    pad = (window_size - 1) // 2
    height, width = a.shape[-2:]
    if crop_border and (height <= 2 * pad or width <= 2 * pad):
        raise ValueError(
            f"images of size {(height, width)} are too small to crop {pad} border pixels "
            f"(window_size={window_size}); use smaller windows or crop_border=False"
        )
    mean_weights = weights
    if crop_border and weights is not None:
        mean_weights = weights[..., pad : height - pad, pad : width - pad]
    chunks = _image_chunks(a, 5 if mask is None else 6)
    needs_graph = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    inference = mask is None and crop_border and not needs_graph
    means = []
    for start in chunks:
        stop = start + chunks.step
        if inference and a.shape[0] > 0:
            means.append(_ssim_means_inference(a[start:stop], b[start:stop], kernel, c1, c2))
            continue
        # Cropped, only the windows inside the image count: no border to fill, no map to cut.
        moments = _local_moments(
            a[start:stop], b[start:stop], _batch_slice(weights, start, stop), kernel, border_type, crop_border
        )
        values = _ssim_from_moments(moments, c1, c2)
        # 1 - mean(1 - map): identical to mean(map), but an empty mask gives 1 (loss 0).
        means.append(1.0 - masked_mean(1.0 - values, _batch_slice(mean_weights, start, stop)))
    return torch.cat(means)


ssim_loss = _one_minus(ssim, "``1 - ssim(...)`` -> ``(B,)`` in ``[0, 2]``; 0 for identical images.")


# --------------------------------------------------------------------------- PSNR, TV


def psnr(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image -> ``(B,)``: ``10 log10(data_range^2 / mse)``.

    The MSE is per image (as ``skimage.metrics.peak_signal_noise_ratio`` on each image), never
    pooled over the batch. Identical images give ``+inf`` (their gradient is undefined); an
    empty mask gives 0 dB. Never NaN for finite inputs.
    """
    _check_pair(a, b)
    _check_positive(data_range, "data_range")
    weights = _check_mask(mask, a)
    total, weight = _weighted_sums((a - b).square(), weights)
    empty = weight <= 0
    mse = total / _safe(weight)
    # The empty branch must not see log10(0): its infinite gradient would turn 0 * inf into NaN.
    safe_mse = torch.where(empty, torch.ones_like(mse), mse)
    value = 20.0 * math.log10(data_range) - 10.0 * torch.log10(safe_mse)
    return torch.where(empty, torch.zeros_like(value), value)


def total_variation(images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Anisotropic L1 total variation per image -> ``(B,)``: ``mean|dx| + mean|dy|``.

    ``dx``/``dy`` are differences of horizontally/vertically adjacent pixels, each averaged over
    its own ``C * H * (W - 1)`` / ``C * (H - 1) * W`` entries, so a constant image gives 0 and the
    value does not grow with the image size. With ``mask`` a difference is weighted by the product
    of its two pixels' weights (for a binary mask: both pixels inside).
    """
    check_image_batch(images)
    weights = _check_mask(mask, images)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs()
    if weights is None:
        wx = wy = None
    else:
        wx = weights[..., :, 1:] * weights[..., :, :-1]
        wy = weights[..., 1:, :] * weights[..., :-1, :]
    return _mean_or_zero(dx, wx) + _mean_or_zero(dy, wy)


def _mean_or_zero(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if values.numel() == 0:
        # A one-pixel-wide image has no differences along that axis.
        batch = values.shape[0] if weights is None else max(values.shape[0], weights.shape[0])
        return values.new_zeros(batch)
    total, weight = _weighted_sums(values, weights)
    return total / _safe(weight)


# --------------------------------------------------------------------------- modules and registry


class _BoundLoss(nn.Module):
    """A loss function with its options bound: ``forward(a, b, mask=None) -> (B,)``. Each option is
    an attribute of the module, read at every call."""

    def __init__(self, loss: LossFn, **options: object) -> None:
        super().__init__()
        self._loss, self._option_names = loss, tuple(options)
        for name, value in options.items():
            setattr(self, name, value)

    def forward(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._loss(a, b, mask, **{name: getattr(self, name) for name in self._option_names})


class L1Loss(_BoundLoss):
    """Module form of :func:`l1_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(self) -> None:
        super().__init__(l1_loss)


class MSELoss(_BoundLoss):
    """Module form of :func:`mse_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(self) -> None:
        super().__init__(mse_loss)


class CharbonnierLoss(_BoundLoss):
    """Module form of :func:`charbonnier_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(self, scale: float = 0.01) -> None:
        _check_positive(scale, "scale")
        super().__init__(charbonnier_loss, scale=scale)


class ZNCCLoss(_BoundLoss):
    """Module form of :func:`zncc_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(self, eps: float = 1e-8) -> None:
        _check_positive(eps, "eps")
        super().__init__(zncc_loss, eps=eps)


class LocalZNCCLoss(_BoundLoss):
    """Module form of :func:`local_zncc_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(self, window_size: int | None = 9, sigma: float | None = None, eps: float = 1e-4) -> None:
        _check_positive(eps, "eps")
        super().__init__(local_zncc_loss, window_size=window_size, sigma=sigma, eps=eps)


class SSIMLoss(_BoundLoss):
    """Module form of :func:`ssim_loss`: ``forward(a, b, mask=None) -> (B,)``."""

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
        k1: float = 0.01,
        k2: float = 0.03,
        crop_border: bool = True,
        border_type: str = "reflect",
    ) -> None:
        _ssim_constants(data_range, k1, k2)
        super().__init__(
            ssim_loss,
            window_size=window_size,
            sigma=sigma,
            data_range=data_range,
            k1=k1,
            k2=k2,
            crop_border=crop_border,
            border_type=border_type,
        )


_LOSSES: dict[str, LossFn] = {
    "mse": mse_loss,
    "l1": l1_loss,
    "charbonnier": charbonnier_loss,
    "zncc": zncc_loss,
    "local_zncc": local_zncc_loss,
    "ssim": ssim_loss,
}

LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)


def get_loss(name: str, **options: object) -> LossFn:
    """The loss called ``name`` as ``fn(a, b, mask=None) -> (B,)`` (lower is better).

    name: one of ``LOSS_NAMES`` ("mse", "l1", "charbonnier", "zncc", "local_zncc", "ssim").
    options: keyword arguments bound into the loss, e.g. ``get_loss("charbonnier", scale=0.05)``.
    Unknown names raise ValueError listing the valid ones; unknown options raise TypeError.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    fn = _LOSSES.get(name)
    if fn is None:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    if not options:
        return fn
    parameters = inspect.signature(fn).parameters
    for key in options:
        if key in ("a", "b", "mask") or key not in parameters:
            allowed = [p for p in parameters if p not in ("a", "b", "mask")]
            raise TypeError(f"loss {name!r} has no option {key!r}; options: {', '.join(allowed)}")
    return functools.partial(fn, **options)
