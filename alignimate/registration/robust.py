"""Robust weights for dense registration: per-sample weights that give occluders and other
outliers no say (iteratively reweighted least squares with Tukey's biweight).

For a pair, the residual of each sample is what the current alignment and photometric model leave
unexplained (for ``zncc``: the moving value minus the best gain and bias applied to the fixed value;
for ``mse``: the plain difference). Its scale is estimated robustly, per pair, as 1.4826 times the
median absolute residual over the overlap (consistent with the standard deviation for Gaussian
noise, and unaffected by up to half of the samples being outliers). Tukey's biweight then gives
each sample the weight ``(1 - (r / (c * scale))^2)^2`` inside ``|r| < c * scale`` and 0 outside:
samples that cannot be explained by the motion get zero weight instead of pulling the estimate
(Baker & Matthews, "Lucas-Kanade 20 Years On", part 2; see ../shared/research/round2.md).

Where no earlier weights exist (a level's first iteration, the final weights), the gain and bias
start from a robust estimate, not least squares (:func:`robust_photometric_model`): a least-squares
start lets a bright occluder set the gain, after which every residual looks alike and nothing is
rejected.

Outliers come in blobs (an occluder is an object, not scattered pixels), and a blob's blurred rim
leaves residuals part-way between the object's and the background's: small enough for Tukey's
weight to keep, and lying on the occluder's edges, the strongest gradients of the fixed image, so
they pull the alignment towards aligning the occluder's outline with whatever edge the moving
image has there. Per pixel, nothing tells those samples apart; by their place they are obvious.
:func:`reject_near_outlier_blobs` also rejects the samples within reach of a blob of rejected ones
(a 3 x 3 block of samples with weight under :data:`AGREE_WEIGHT`). Thin lines of rejected samples,
as a misaligned edge of the scene leaves, contain no such block and keep their neighbours: the
signal that aligns them stays. Measured on the benchmark's occluded pairs, and its clean, empty and
partly overlapping ones for regressions, in docs/benchmarks.md.

``c = TUKEY_C`` (4.685) keeps 95 % efficiency on Gaussian noise. The scale is re-estimated for every
pair, level and iteration, so it shrinks by itself as the alignment improves. Widening ``c`` on the
coarser levels as well ("annealing") was measured and lost accuracy on occluded pairs (the coarse
levels are where occluders, blurred over more pixels, most need rejecting), so ``c`` is the same on
every level (docs/benchmarks.md).
"""

from __future__ import annotations

import torch

from alignimate.core.morphology import max_filter2d, min_filter2d

__all__ = [
    "MIN_SCALE",
    "TUKEY_C",
    "agreement",
    "photometric_fit",
    "reject_near_outlier_blobs",
    "robust_photometric_model",
    "robust_scale",
    "sample_weights",
    "tukey_weights",
]

TUKEY_C = 4.685
# Residual scales below this (intensity units, images in [0, 1]) are noise-free matches: a tighter
# scale would reject samples for rounding alone.
MIN_SCALE = 2e-3
# Samples the scale's median is taken over (robust_scale): its relative error is about 1/sqrt(n).
_SCALE_SAMPLES = 512
# A sample "agrees" when its weight is at least this (|r| under about 3 robust standard deviations).
AGREE_WEIGHT = 0.5
# reject_near_outlier_blobs: side of the block of rejected samples that makes a blob, and of the
# window around a blob's core inside which samples are rejected too (one sample past the blob).
_BLOB_CORE = 3
_BLOB_REACH = 5


def photometric_fit(
    values: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain and bias ``(B,)`` of the weighted least-squares fit ``values ~ gain * reference + bias``
    for ``values (B, N)``, ``reference (B|1, N)``, ``weight (B, N)``."""
    total = weight.sum(dim=1).clamp(min=1e-12)
    mean_r = (weight * reference).sum(dim=1) / total
    mean_v = (weight * values).sum(dim=1) / total
    centred = reference - mean_r.unsqueeze(1)
    variance = (weight * centred * centred).sum(dim=1)
    covariance = (weight * centred * (values - mean_v.unsqueeze(1))).sum(dim=1)
    gain = covariance / variance.clamp(min=1e-12)
    return gain, mean_v - gain * mean_r


def _strided_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median ``(B,)`` of ``values (B, N)`` over the entries where ``valid`` (the lower of the two
    middle ones for an even count), taken over an evenly strided subset of at most
    ``_SCALE_SAMPLES`` entries (0 for a row with none): sorting every sample every iteration would
    cost more than the rest of the solver, and the estimate barely moves. ``nanmedian`` selects
    rather than sorts (several times faster than a sort here)."""
    step = max(1, values.shape[1] // _SCALE_SAMPLES)
    values, valid = values[:, ::step], valid[:, ::step]
    median = torch.where(valid, values, torch.nan).nanmedian(dim=1).values
    return torch.where(valid.any(dim=1), median, torch.zeros_like(median))


def robust_scale(residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1.4826 x the median ``|residual|`` over the samples with ``weight > 0``, per pair ``(B,)``;
    at least :data:`MIN_SCALE` (and :data:`MIN_SCALE` for a pair with no sample); the median of a
    strided subset (:func:`_strided_median`)."""
    return (1.4826 * _strided_median(residual.abs(), weight > 0)).clamp(min=MIN_SCALE)


def robust_photometric_model(
    values: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor, rounds: int = 3, c: float = TUKEY_C
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gain, bias and residual scale ``(B,)`` each of ``values ~ gain * reference + bias`` without a
    prior estimate, for ``values (B, N)``, ``reference (B|1, N)``, ``weight (B, N)``.

    A least-squares start would let outliers set the gain: a bright occluder over a fifth of the
    image can move it enough that every residual looks alike, the robust scale swells and every
    sample is kept, a fixed point the re-weighting never leaves. So the start is robust: the gain
    matches the spread of the two sides (ratio of their median absolute deviations, signed by their
    covariance) and the bias their medians; ``rounds`` re-weighting rounds then refit both on the
    samples kept."""
    valid = weight > 0
    centre_v = _strided_median(values, valid)
    centre_r = _strided_median(reference.expand_as(values), valid)
    spread_v = _strided_median((values - centre_v.unsqueeze(1)).abs(), valid)
    spread_r = _strided_median((reference - centre_r.unsqueeze(1)).abs().expand_as(values), valid)
    sign_gain, _ = photometric_fit(values, reference, weight)
    gain = torch.where(sign_gain < 0, -1.0, 1.0) * spread_v / spread_r.clamp(min=1e-12)
    bias = centre_v - gain * centre_r
    robust = None
    for i in range(rounds + 1):
        if robust is not None:
            gain, bias = photometric_fit(values, reference, weight * robust)
        residual = _residual(values, reference, gain, bias)
        scale = robust_scale(residual, weight)
        if i < rounds:
            robust = tukey_weights(residual, scale, c)
    return gain, bias, scale


def _residual(
    values: torch.Tensor, reference: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """``values - (gain * reference + bias)`` ``(B, N)``, for per-pair ``gain`` and ``bias`` ``(B,)``."""
    return values - gain.unsqueeze(1) * reference - bias.unsqueeze(1)


def tukey_weights(residual: torch.Tensor, scale: torch.Tensor, c: float = TUKEY_C) -> torch.Tensor:
    """Tukey's biweight ``(B, N)`` of ``residual (B, N)`` at ``c * scale (B,)``."""
    u = residual / (c * scale).unsqueeze(1)
    return (1.0 - u * u).clamp(min=0.0) ** 2


def sample_weights(
    values: torch.Tensor,
    reference: torch.Tensor,
    weight: torch.Tensor,
    *,
    photometric: bool,
    previous: torch.Tensor | None = None,
    c: float = TUKEY_C,
    fit_stride: int = 1,
) -> torch.Tensor:
    """Tukey weights ``(B, N)`` of samples ``values (B, N)`` against ``reference (B|1, N)`` over
    ``weight (B, N)``: of the residual after the best gain and bias (``photometric``, the ``zncc``
    loss) or of the plain difference (``mse``). The gain and bias are fitted on the samples that
    ``previous`` weights kept (the previous solver iteration's), or without them from the robust
    start of :func:`robust_photometric_model`, so outliers do not bend them. ``fit_stride``: the
    gain, bias and scale are estimated on every ``fit_stride``-th sample only (on a dense grid,
    neighbouring pixels add little to three per-pair numbers), the weights are of all."""
    if not photometric:
        residual = values - reference
        return tukey_weights(residual, robust_scale(residual, weight), c)
    if previous is None:
        part = slice(None, None, fit_stride)
        # Contiguous copies: the fit's rounds read them a dozen times, strided reads cost more.
        subset = (values[:, part].contiguous(), reference[:, part].contiguous(), weight[:, part].contiguous())
        gain, bias, scale = robust_photometric_model(*subset, c=c)
        return tukey_weights(_residual(values, reference, gain, bias), scale, c)
    gain, bias = photometric_fit(values, reference, weight * previous)
    residual = _residual(values, reference, gain, bias)
    return tukey_weights(residual, robust_scale(residual, weight), c)


def agreement(robust: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """Fraction ``(B,)`` of the overlap (``overlap`` weights ``(B, N)``) whose robust weight is at
    least :data:`AGREE_WEIGHT`: how much of what the two images share the alignment explains."""
    agreeing = (overlap * (robust >= AGREE_WEIGHT)).sum(dim=1)
    return agreeing / overlap.sum(dim=1).clamp(min=1e-12)


def reject_near_outlier_blobs(weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``weights (B, C * M)`` (Tukey weights of samples on a ``grid (gh, gw)`` of ``M = gh * gw``
    positions, row-major, channel-major) with the samples near a blob of outliers set to 0.

    A blob's core is a ``3 x 3`` block of samples whose weight is under :data:`AGREE_WEIGHT`; every
    sample within a ``5 x 5`` window of a core sample gets weight 0 (module docstring: the rims of
    occluders). Channels are treated apart. Thin runs of low weights (one or two samples wide) have
    no core and change nothing."""
    batch = weights.shape[0]
    planes = weights.reshape(-1, 1, *grid)
    core = min_filter2d(planes < AGREE_WEIGHT, _BLOB_CORE)  # bool: several times cheaper than float
    near = max_filter2d(core, _BLOB_REACH)
    return planes.masked_fill(near, 0.0).reshape(batch, -1)
