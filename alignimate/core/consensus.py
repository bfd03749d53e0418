"""Batched robust fits of ``dst_H_src`` to point correspondences with outliers (RANSAC / MSAC with
local optimisation).

Conventions: docs/conventions.md. Points are ``(B, N, 2)`` pixel ``(x, y)``; the result maps source
pixels to destination pixels. The whole batch and all hypotheses are processed together with tensor
ops (no Python loop over batch elements): per chunk of hypotheses (sized to bound the memory), the
minimal samples ``(B, H, s)`` of every problem are drawn at once, fitted in one call of a
closed-form fit and scored against every point at once.

Algorithm, per batch element:

1. Draw minimal samples of ``s`` distinct *valid* points (``s`` = 1 translation, 2 rigid /
   similarity, 3 affine, 4 homography) and fit one hypothesis to each (the exact 4-point solve for
   homographies, falling back to an affine fit for degenerate samples; the closed-form fits, with
   their own fallbacks, otherwise). The number of hypotheses is either given, or adaptive: samples
   are drawn in chunks until, for every problem, the count that :func:`ransac_iterations` asks for
   at the inlier ratio of its best hypothesis so far has been reached, but never more than the
   count for ``min_inlier_ratio`` (at most 1000). Clean data thus stops after a few dozen
   hypotheses while hard problems in the same batch still get their full budget.
2. Reject hypotheses that are not finite or whose determinant is outside ``[1e-6, 1e6]`` (a
   degenerate sample, e.g. collinear points, that collapses or explodes the image).
3. Score the others with the MSAC cost ``sum_i min(e_i^2, t^2)`` over the valid points, where
   ``e_i = |dst_i - H(src_i)|`` is the reprojection error in the destination image and ``t`` the
   threshold. Unlike plain inlier counting it prefers, among hypotheses with the same inliers, the
   one that fits them best. Keep the hypothesis with the lowest cost.
4. Local optimisation (LO-RANSAC, Chum et al. 2003): a few weighted least-squares refits on the
   inliers of the best model, with a threshold that shrinks from ``2 t`` to ``t`` (a minimal-sample
   model is least accurate far from its sample, so a wider first threshold recovers the inliers
   there). A refit replaces the model only if its cost is lower.
5. A final least-squares refit on the inliers, kept if its cost is not higher.

Randomness comes only from ``torch.rand`` with the given ``generator``, so a seeded generator gives
identical results on repeated calls (on the same device and with the same shapes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from alignimate.core.checks import check_points
from alignimate.core.fit import FITS, MIN_POINTS, Fit, estimate_affine
from alignimate.core.transforms import _broadcast_point_sets, _safe_denominator, homography_from_points

__all__ = [
    "RansacResult",
    "estimate_affine_ransac",
    "estimate_homography_ransac",
    "estimate_rigid_ransac",
    "estimate_similarity_ransac",
    "estimate_translation_ransac",
    "ransac",
    "ransac_iterations",
]

Model = Literal["translation", "rigid", "similarity", "affine", "homography"]

# Cap of the adaptive number of hypotheses: enough to draw one all-inlier sample with probability
# `confidence` when at least this fraction of the points are inliers, but never more than
# DEFAULT_MAX_ITERATIONS. With 0.25 and confidence 0.999 that is 25 (translation), 108 (rigid,
# similarity), 439 (affine) and 1000 for a homography (the formula asks for 1765 there).
DEFAULT_MIN_INLIER_RATIO = 0.25
DEFAULT_MAX_ITERATIONS = 1000

# Hypotheses whose |det| (with H[2, 2] == 1, the area scale at the pixel (0, 0)) lies outside
# [1 / _DET_LIMIT, _DET_LIMIT] squash the image to (nearly) a line or blow it up a million-fold:
# what a degenerate minimal sample gives, never a plausible photo alignment.
_DET_LIMIT = 1e6

# Hypotheses are scored in chunks of at most this many (hypothesis, point) pairs per chunk, which
# bounds the temporary memory to a few tens of MB whatever B, N and the number of hypotheses.
_CHUNK_PAIRS = 1 << 21
# With the adaptive count, at most this many hypotheses per problem and chunk: the stopping test runs
# after every chunk, so smaller chunks stop closer to the needed count (at the price of one
# device synchronisation per chunk).
_ADAPTIVE_CHUNK = 32

# Local optimisation: number of refits and the threshold multiplier of the first one (it shrinks
# linearly to 1 for the last).
_LO_ITERATIONS = 4
_LO_FIRST_MULTIPLIER = 2.0


@dataclass(frozen=True)
class RansacResult:
    """Result of :func:`ransac` for a batch of ``B`` problems with ``N`` correspondences each.

    Attributes:
        matrix: ``(B, 3, 3)`` ``dst_H_src`` (the identity where no model was found).
        inliers: ``(B, N)`` bool, the valid points whose reprojection error under ``matrix`` is at
            most the threshold.
        inlier_count: ``(B,)`` int64, ``inliers.sum(dim=1)``.
        score: ``(B,)`` mean truncated squared reprojection error ``mean_i min(e_i^2, t^2)`` over the
            valid points, in pixels squared, in ``[0, t^2]``; lower is better. ``inf`` where no model
            was found (fewer valid points than the minimal sample, or only degenerate samples).
    """

    matrix: torch.Tensor
    inliers: torch.Tensor
    inlier_count: torch.Tensor
    score: torch.Tensor


def ransac_iterations(
    sample_size: int,
    inlier_ratio: float,
    confidence: float = 0.999,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> int:
    """Number of random minimal samples needed to draw at least one all-inlier sample with
    probability ``confidence``: ``ceil(log(1 - confidence) / log(1 - inlier_ratio ** sample_size))``,
    clamped to ``[1, max_iterations]``.

    Args:
        sample_size: points per minimal sample ``s`` (>= 1).
        inlier_ratio: fraction ``w`` of inliers, in ``[0, 1]``; 0 gives ``max_iterations``.
        confidence: probability ``p`` in ``(0, 1)``.
        max_iterations: upper bound (>= 1).

    Returns:
        The number of hypotheses, an int in ``[1, max_iterations]``.
    """
    if sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    if not 0.0 <= inlier_ratio <= 1.0:
        raise ValueError(f"inlier_ratio must be in [0, 1], got {inlier_ratio}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    all_inlier = inlier_ratio**sample_size
    if all_inlier >= 1.0:
        return 1
    if all_inlier <= 0.0:
        return max_iterations
    # log1p keeps precision when all_inlier is tiny (1 - all_inlier rounds towards 1).
    needed = math.log1p(-confidence) / math.log1p(-all_inlier)
    return int(min(max(math.ceil(needed), 1), max_iterations))


def ransac(
    src_points: torch.Tensor,
    dst_points: torch.Tensor,
    model: Model = "similarity",
    *,
    valid: torch.Tensor | None = None,
    threshold: float = 3.0,
    iterations: int | None = None,
    confidence: float = 0.999,
    min_inlier_ratio: float = DEFAULT_MIN_INLIER_RATIO,
    local_optimization: bool = True,
    generator: torch.Generator | None = None,
) -> RansacResult:
    """Robustly fit ``dst_H_src`` to correspondences that contain outliers, for a batch of problems.

    See the module docstring for the algorithm. Conventions: docs/conventions.md.

    Args:
        src_points: ``(B, N, 2)`` source pixel coordinates (batch 1 broadcasts against ``dst_points``).
        dst_points: ``(B, N, 2)`` destination pixel coordinates of the same points.
        model: ``"translation"``, ``"rigid"``, ``"similarity"``, ``"affine"`` or ``"homography"``.
        valid: optional ``(B, N)`` or ``(1, N)`` bool mask of the points that take part, so problems
            with different numbers of correspondences can share a padded batch. Points with a
            non-finite coordinate are never valid; the values of invalid points do not matter.
        threshold: inlier threshold ``t`` on the reprojection error ``|dst - H(src)|`` in
            destination pixels (> 0).
        iterations: number of random hypotheses per problem, all of them drawn. ``None``
            (default): adaptive (see the module docstring), at least enough for ``confidence`` at the
            inlier ratio found and at most :func:`ransac_iterations` of the model's sample size,
            ``min_inlier_ratio`` and ``confidence`` (at most 1000).
        confidence: probability of drawing at least one all-inlier sample, for the adaptive count.
        min_inlier_ratio: the smallest inlier fraction the adaptive count is sized for (its cap).
        local_optimization: run the LO step (weighted least-squares refits on the inliers of the
            best hypothesis); without it only the final refit is done.
        generator: ``torch.Generator`` on the points' device for the random samples (reproducible
            results); ``None`` uses torch's global generator.

    Returns:
        :class:`RansacResult` with ``matrix`` ``(B, 3, 3)``, ``inliers`` ``(B, N)``, ``inlier_count``
        ``(B,)`` and ``score`` ``(B,)``. A problem with fewer valid points than the minimal sample (or
        whose every sample was degenerate) gets the identity, no inliers and score ``inf``. Never NaN.

    Raises:
        ValueError: wrong shapes, unknown ``model``, a non-positive ``threshold``/``iterations``, or
            ``confidence``/``min_inlier_ratio`` out of range.
    """
    if model not in MIN_POINTS:
        raise ValueError(f"model must be one of {sorted(MIN_POINTS)}, got {model!r}")
    check_points(src_points, "src_points")
    check_points(dst_points, "dst_points")
    src, dst = _broadcast_point_sets(src_points, dst_points)
    batch, n = src.shape[:2]
    if not threshold > 0.0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    sample_size = MIN_POINTS[model]
    cap = ransac_iterations(sample_size, min_inlier_ratio, confidence)  # also validates both
    adaptive = iterations is None
    if iterations is None:
        iterations = cap
    elif iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    valid = _prepare_valid(valid, src, dst)
    # Invalid points may hold anything (NaN padding); zero them so that a zero weight really removes
    # them from the weighted sums of the fits (0 * NaN would be NaN).
    src = torch.where(valid.unsqueeze(-1), src, torch.zeros_like(src)).contiguous()
    dst = torch.where(valid.unsqueeze(-1), dst, torch.zeros_like(dst)).contiguous()
    num_valid = valid.sum(dim=1)
    solvable = num_valid >= sample_size
    identity = torch.eye(3, dtype=src.dtype, device=src.device).expand(batch, 3, 3).contiguous()
    if batch == 0 or n < sample_size:
        return _result(identity, src, dst, valid, solvable, threshold)

    t2 = float(threshold) ** 2
    best_matrix, best_cost = _sample_and_score(
        src,
        dst,
        valid,
        num_valid,
        model,
        sample_size,
        iterations,
        t2,
        generator,
        confidence=confidence if adaptive else None,
    )
    best_cost = torch.where(solvable, best_cost, torch.full_like(best_cost, math.inf))
    best_matrix = torch.where(torch.isfinite(best_cost)[:, None, None], best_matrix, identity)

    fit = FITS[model]
    found = torch.isfinite(best_cost)
    if local_optimization:
        for step in range(_LO_ITERATIONS):
            fraction = step / max(_LO_ITERATIONS - 1, 1)
            multiplier = _LO_FIRST_MULTIPLIER + (1.0 - _LO_FIRST_MULTIPLIER) * fraction
            best_matrix, best_cost = _refit_if_better(
                fit, src, dst, valid, found, best_matrix, best_cost, t2, multiplier**2 * t2, strict=True
            )
    # Final refit on the inliers; ties go to the least-squares model (it uses all inliers, not s).
    best_matrix, best_cost = _refit_if_better(
        fit, src, dst, valid, found, best_matrix, best_cost, t2, t2, strict=False
    )
    return _result(best_matrix, src, dst, valid, found, threshold)


def _ransac_for(model: Model) -> Callable[..., RansacResult]:
    """:func:`ransac` with ``model`` fixed, as the public ``estimate_<model>_ransac`` function."""

    def estimate(src_points: torch.Tensor, dst_points: torch.Tensor, **kwargs: Any) -> RansacResult:
        return ransac(src_points, dst_points, model, **kwargs)

    estimate.__name__ = estimate.__qualname__ = f"estimate_{model}_ransac"
    estimate.__doc__ = (
        f':func:`ransac` with ``model="{model}"``: points ``(B, N, 2)`` -> :class:`RansacResult` with '
        "``matrix`` ``(B, 3, 3)``. Keyword arguments are passed on. Conventions: docs/conventions.md."
    )
    return estimate


estimate_translation_ransac = _ransac_for("translation")
estimate_rigid_ransac = _ransac_for("rigid")
estimate_similarity_ransac = _ransac_for("similarity")
estimate_affine_ransac = _ransac_for("affine")
estimate_homography_ransac = _ransac_for("homography")


# ----------------------------------------------------------------------------------------------
# implementation
# ----------------------------------------------------------------------------------------------


def _prepare_valid(valid: torch.Tensor | None, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` bool mask: the given one (broadcast from ``(1, N)``) and finite coordinates."""
    batch, n = src.shape[:2]
    finite = torch.isfinite(src).all(dim=-1) & torch.isfinite(dst).all(dim=-1)
    if valid is None:
        return finite
    if not isinstance(valid, torch.Tensor):
        raise TypeError(f"valid must be a torch.Tensor, got {type(valid).__name__}")
    if valid.dim() != 2 or valid.shape[1] != n or valid.shape[0] not in (1, batch):
        raise ValueError(f"valid must have shape ({batch}, {n}) or (1, {n}), got {tuple(valid.shape)}")
    return valid.to(device=src.device, dtype=torch.bool).expand(batch, n) & finite


def _sample_indices(
    order: torch.Tensor,
    num_valid: torch.Tensor,
    count: int,
    sample_size: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``(B, count, s)`` indices of ``s`` distinct valid points per hypothesis, uniformly at random.

    ``order`` ``(B, N)`` lists the valid indices first. The k-th draw picks a rank ``r`` uniformly in
    ``[0, n - k)`` among the points not drawn yet and maps it to a rank among all valid points by
    stepping over the earlier draws in ascending order (each earlier draw at or below ``r`` shifts it
    up by one). That is exact sampling without replacement in O(s^2) work per hypothesis, instead
    of random keys for all N points per hypothesis.
    """
    batch, n = order.shape
    # float64 uniforms: floor(u * m) is then uniform for any realistic number of points m.
    uniforms = torch.rand(
        batch, count, sample_size, generator=generator, dtype=torch.float64, device=order.device
    )
    remaining = num_valid.to(torch.float64)[:, None]  # (B, 1)
    drawn: list[torch.Tensor] = []
    for k in range(sample_size):
        rank = torch.floor(uniforms[..., k] * (remaining - k)).long()
        # Problems with fewer than s valid points give ranks out of range here; they are discarded
        # later, the clamp only keeps the gather in bounds.
        rank = rank.clamp(min=0)
        if drawn:
            earlier, _ = torch.sort(torch.stack(drawn, dim=-1), dim=-1)
            for j in range(earlier.shape[-1]):
                rank = rank + (rank >= earlier[..., j]).long()
        drawn.append(rank)
    ranks = torch.stack(drawn, dim=-1).clamp(max=n - 1)  # (B, count, s)
    return order.gather(1, ranks.reshape(batch, -1)).reshape(batch, count, sample_size)


def _fit_minimal(model: str, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Fit ``(M, s, 2)`` minimal samples, ``(M, 3, 3)``.

    Homographies use the exact 8x8 solve of :func:`homography_from_points`, several times faster than
    the SVD of :func:`estimate_homography`'s weighted DLT. Where it gives no usable matrix (3 of the 4
    points collinear, coincident points) the sample falls back to :func:`estimate_affine`, as
    :func:`estimate_homography` itself would, so degenerate data (e.g. all points on a line) still
    yields a model. Every other model uses its closed-form fit, which has its own fallbacks.
    """
    if model != "homography":
        return FITS[model](src, dst, None)
    exact = homography_from_points(src, dst)
    return torch.where(_plausible(exact)[:, None, None], exact, estimate_affine(src, dst))


def _det3(m: torch.Tensor) -> torch.Tensor:
    """Determinant of ``(..., 3, 3)`` matrices by cofactors (cheaper than an LU for tiny matrices)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def _plausible(matrices: torch.Tensor) -> torch.Tensor:
    """``(...)`` bool: finite matrices whose determinant is within ``[1 / _DET_LIMIT, _DET_LIMIT]``."""
    finite = torch.isfinite(matrices).flatten(-2).all(dim=-1)
    det = _det3(torch.where(finite[..., None, None], matrices, torch.zeros_like(matrices))).abs()
    return finite & (det >= 1.0 / _DET_LIMIT) & (det <= _DET_LIMIT)


def _squared_errors(
    matrices: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, projective: bool
) -> torch.Tensor:
    """``(B, H, N)`` squared reprojection errors ``|dst - M(src)|^2`` of ``matrices`` ``(B, H, 3, 3)``
    on the points ``(B, N, 2)``. Non-finite matrices give NaN or inf errors, which the callers treat
    as outliers."""
    # One batched (3, 3) @ (3, N) product per hypothesis: faster on a CPU than nine broadcast
    # multiply-adds over (B, H, N) (docs/benchmarks.md, design measurements).
    homogeneous = torch.cat([src, torch.ones_like(src[..., :1])], dim=-1).transpose(1, 2).unsqueeze(1)
    mapped = torch.matmul(matrices, homogeneous)  # (B, H, 3, N)
    u, v = mapped[:, :, 0], mapped[:, :, 1]
    if projective:
        w = _safe_denominator(mapped[:, :, 2])
        u, v = u / w, v / w
    return (u - dst[:, None, :, 0]) ** 2 + (v - dst[:, None, :, 1]) ** 2


def _msac_cost(err2: torch.Tensor, valid: torch.Tensor, t2: float) -> torch.Tensor:
    """``sum_i min(err2_i, t2)`` over the valid points, ``(B, H)`` from ``(B, H, N)``.

    ``where(err2 <= t2, ...)`` rather than ``minimum``: NaN errors (from a non-finite hypothesis)
    compare false and are truncated to ``t2`` instead of propagating."""
    truncated = torch.where(err2 <= t2, err2, torch.full_like(err2, t2))
    return torch.where(valid.unsqueeze(1), truncated, torch.zeros_like(truncated)).sum(dim=-1)


def _sample_and_score(
    src: torch.Tensor,
    dst: torch.Tensor,
    valid: torch.Tensor,
    num_valid: torch.Tensor,
    model: str,
    sample_size: int,
    iterations: int,
    t2: float,
    generator: torch.Generator | None,
    confidence: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best hypothesis ``(B, 3, 3)`` and its MSAC cost ``(B,)`` (``inf`` if all were rejected) out of
    ``iterations`` per problem, or, with a ``confidence``, out of as many as the adaptive stopping
    rule asks for (at most ``iterations``)."""
    batch, n = src.shape[:2]
    # Valid indices first, in their original order (stable sort of the 0/1 key "invalid").
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)
    chunk = max(1, min(iterations, _CHUNK_PAIRS // max(batch * n, 1)))
    if confidence is not None:
        chunk = min(chunk, _ADAPTIVE_CHUNK)
    best_cost = torch.full((batch,), math.inf, dtype=src.dtype, device=src.device)
    best_matrix = torch.eye(3, dtype=src.dtype, device=src.device).expand(batch, 3, 3).contiguous()
    best_inliers = torch.zeros(batch, dtype=torch.long, device=src.device)
    batch_index = torch.arange(batch, device=src.device)
    for start in range(0, iterations, chunk):
        count = min(chunk, iterations - start)
        index = _sample_indices(order, num_valid, count, sample_size, generator)  # (B, count, s)
        flat = index.reshape(batch, -1, 1).expand(-1, -1, 2)
        sample_src = src.gather(1, flat).reshape(batch * count, sample_size, 2)
        sample_dst = dst.gather(1, flat).reshape(batch * count, sample_size, 2)
        hypotheses = _fit_minimal(model, sample_src, sample_dst).reshape(batch, count, 3, 3)
        plausible = _plausible(hypotheses)
        err2 = _squared_errors(hypotheses, src, dst, projective=model == "homography")
        cost = _msac_cost(err2, valid, t2)
        cost = torch.where(plausible, cost, torch.full_like(cost, math.inf))
        chunk_cost, chunk_best = cost.min(dim=1)  # first minimum: ties go to the earlier hypothesis
        better = chunk_cost < best_cost
        best_cost = torch.where(better, chunk_cost, best_cost)
        best_matrix = torch.where(better[:, None, None], hypotheses[batch_index, chunk_best], best_matrix)
        if confidence is None:
            continue
        chunk_inliers = ((err2[batch_index, chunk_best] <= t2) & valid).sum(dim=1)
        best_inliers = torch.where(better, chunk_inliers, best_inliers)
        ratio = best_inliers.to(torch.float64) / num_valid.clamp(min=1).to(torch.float64)
        needed = _needed_iterations(ratio, sample_size, confidence)
        # One host synchronisation per chunk; problems without enough valid points need nothing.
        if bool(((needed <= start + count) | (num_valid < sample_size)).all()):
            break
    return best_matrix, best_cost


def _needed_iterations(ratio: torch.Tensor, sample_size: int, confidence: float) -> torch.Tensor:
    """:func:`ransac_iterations` without the cap, elementwise on a float64 tensor of inlier ratios
    (``inf`` for ratio 0, 0 for ratio 1)."""
    all_inlier = ratio.clamp(0.0, 1.0) ** sample_size
    # log1p(-1) = -inf gives 0; log1p(-0) = -0 gives +inf (log1p(-confidence) is negative).
    return torch.ceil(math.log1p(-confidence) / torch.log1p(-all_inlier))


def _refit_if_better(
    fit: Fit,
    src: torch.Tensor,
    dst: torch.Tensor,
    valid: torch.Tensor,
    found: torch.Tensor,
    matrix: torch.Tensor,
    cost: torch.Tensor,
    t2: float,
    select_t2: float,
    *,
    strict: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares refit of every problem on the points within ``sqrt(select_t2)`` of ``matrix``;
    the refit replaces ``matrix`` where it is plausible and its MSAC cost at ``t2`` is lower (or,
    with ``strict=False``, not higher). Problems without a model (``found`` false) are left alone."""
    # One model per problem: always dividing by w (exactly 1 for affine models) is cheap here.
    err2 = _squared_errors(matrix[:, None], src, dst, projective=True)[:, 0]
    selected = valid & (err2 <= select_t2)
    refit = fit(src, dst, selected.to(src.dtype))
    new_cost = _msac_cost(_squared_errors(refit[:, None], src, dst, projective=True), valid, t2)[:, 0]
    improves = new_cost < cost if strict else new_cost <= cost
    accept = found & _plausible(refit) & improves
    return (
        torch.where(accept[:, None, None], refit, matrix),
        torch.where(accept, new_cost, cost),
    )


def _result(
    matrix: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    valid: torch.Tensor,
    found: torch.Tensor,
    threshold: float,
) -> RansacResult:
    """Inliers and score of the final ``matrix``; problems without a model get no inliers, score inf."""
    err2 = _squared_errors(matrix[:, None], src, dst, projective=True)[:, 0]
    t2 = float(threshold) ** 2
    inliers = valid & (err2 <= t2) & found[:, None]
    num_valid = valid.sum(dim=1).clamp(min=1).to(src.dtype)
    score = _msac_cost(err2[:, None], valid, t2)[:, 0] / num_valid
    score = torch.where(found, score, torch.full_like(score, math.inf))
    return RansacResult(
        matrix=matrix,
        inliers=inliers,
        inlier_count=inliers.sum(dim=1),
        score=score,
    )
