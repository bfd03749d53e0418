"""Closed-form, batched, weighted fits of ``dst_H_src`` to point correspondences.

Conventions: docs/conventions.md. Every estimator takes ``src_points`` and ``dst_points``
``(B, N, 2)`` (a batch of 1 on either side broadcasts, e.g. one template against many detections)
and optional ``weights`` ``(B|1, N)``; negative weights count as 0 and only ratios of weights matter.
It returns the ``(B, 3, 3)`` pixel matrix ``dst_H_src`` minimising the weighted squared error
``sum_i w_i |dst_i - H(src_i)|^2`` (algebraic error for the homography).

Degenerate inputs never produce NaN. A fit with too little information falls back to the next
simpler model, which then is one of the least-squares optima: homography -> affine (fewer than 4
effective points, or no invertible solution, e.g. 3 of 4 points collinear) -> similarity (collinear
points) -> translation (coincident points) -> identity (all weights zero). Only a wrong shape (or no
points at all) raises ``ValueError``. The fallbacks are chosen per batch element with ``torch.where``;
nothing synchronises with the device except, possibly, ``torch.linalg.svd`` in the homography fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alignimate.core.checks import check_points
from alignimate.core.transforms import (
    _affine_from_entries,
    _broadcast_point_sets,
    _invert_normalizing_transform,
    _normalizing_transform,
    _safe_denominator,
    compose,
)

__all__ = [
    "FITS",
    "MIN_POINTS",
    "estimate_affine",
    "estimate_homography",
    "estimate_rigid",
    "estimate_similarity",
    "estimate_translation",
    "point_rms",
]


def estimate_translation(
    src_points: torch.Tensor, dst_points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Translation ``(B, 3, 3)``: the weighted mean of ``dst - src``. Conventions: docs/conventions.md."""
    src, dst, w = _prepare(src_points, dst_points, weights)
    t = _weighted_mean(dst - src, w)
    one, zero = torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
    return _affine_from_entries(one, zero, t[:, 0], zero, one, t[:, 1])


def estimate_rigid(
    src_points: torch.Tensor, dst_points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation + translation (no scale, no reflection) ``(B, 3, 3)``, weighted Kabsch in closed form.

    In 2-D the optimal angle is ``atan2(sum w a x b, sum w a . b)`` of the centred points, so no SVD is
    needed and the result is smooth in the points. Without a defined angle (coincident points) the
    rotation is the identity. Conventions: docs/conventions.md.
    """
    src, dst, w = _prepare(src_points, dst_points, weights)
    mu_src, mu_dst, dot, cross, _ = _centred_moments(src, dst, w)
    norm_sq = dot**2 + cross**2
    defined = norm_sq > _relative_tolerance(src, dst, w) ** 2
    norm = torch.sqrt(torch.where(defined, norm_sq, torch.ones_like(norm_sq)))
    cos = torch.where(defined, dot / norm, torch.ones_like(dot))
    sin = torch.where(defined, cross / norm, torch.zeros_like(cross))
    return _from_linear(cos, -sin, sin, cos, mu_src, mu_dst)


def estimate_similarity(
    src_points: torch.Tensor, dst_points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation + isotropic scale + translation (4 DOF, no reflection) ``(B, 3, 3)``: weighted Umeyama.

    In 2-D, Umeyama's solution without reflection has the closed form ``s R = [[p, -q], [q, p]]`` with
    ``p = sum w a . b / sum w |a|^2``, ``q = sum w a x b / sum w |a|^2`` (``a``, ``b`` the centred src
    and dst points), which is smooth in the points (no SVD). Coincident source points give a pure
    translation. Conventions: docs/conventions.md.
    """
    src, dst, w = _prepare(src_points, dst_points, weights)
    return _similarity(src, dst, w)


def estimate_affine(
    src_points: torch.Tensor, dst_points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Affine map (6 DOF) ``(B, 3, 3)`` by weighted linear least squares (normal equations on centred
    points). Collinear or coincident source points fall back to :func:`estimate_similarity`, which
    attains the affine least-squares optimum there. Conventions: docs/conventions.md.
    """
    src, dst, w = _prepare(src_points, dst_points, weights)
    return _affine(src, dst, w)


def estimate_homography(
    src_points: torch.Tensor, dst_points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Homography (8 DOF) ``(B, 3, 3)`` with ``H[2, 2] == 1``: weighted DLT on Hartley-normalised points
    (weighted centroid at the origin, RMS distance sqrt(2)), solved by SVD.

    Minimises the algebraic error; with uniform weights it equals scikit-image's
    ``ProjectiveTransform`` estimate. Needs 4 points in general position; otherwise (rank-deficient
    system, or a singular solution such as for 3 collinear source points) it falls back to
    :func:`estimate_affine`. ``torch.linalg.svd`` may synchronise with the
    device, and its gradient is undefined in degenerate configurations. Conventions:
    docs/conventions.md.
    """
    src, dst, w = _prepare(src_points, dst_points, weights)
    src_T = _normalizing_transform(src, w)
    dst_T = _normalizing_transform(dst, w)
    s = _apply(src_T, src)
    d = _apply(dst_T, dst)
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y, -u], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y, -v], dim=-1)
    root_w = torch.sqrt(w).unsqueeze(-1)
    system = torch.cat([rows_u * root_w, rows_v * root_w], dim=1)  # (B, 2N, 9)
    if system.shape[1] < 9:
        # The null vector is the last right-singular vector only when there are at least 9 rows.
        system = torch.cat([system, system.new_zeros(system.shape[0], 9 - system.shape[1], 9)], dim=1)
    _, singular, vh = torch.linalg.svd(system, full_matrices=False)
    normalized = vh[:, -1, :].reshape(-1, 3, 3)
    H = compose(_invert_normalizing_transform(dst_T), normalized, src_T)
    H = H / _safe_denominator(H[:, 2:, 2:])
    eps = torch.finfo(system.dtype).eps
    # A one-dimensional null space (a unique homography) needs a gap above the smallest singular value.
    well_posed = singular[:, -2] > 1e3 * eps * singular[:, 0]
    # The unit-norm solution must also be invertible: a (numerically) singular one is what the DLT
    # returns when no homography exists, e.g. 3 collinear source points with non-collinear images.
    well_posed &= torch.linalg.det(normalized).abs() > 1e3 * eps
    well_posed &= torch.isfinite(H).flatten(1).all(dim=1)
    fallback = _affine(src, dst, w)
    return torch.where(well_posed[:, None, None], H, fallback)


# ----------------------------------------------------------------------------------------------
# implementation
# ----------------------------------------------------------------------------------------------


def _prepare(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate, broadcast, and normalise weights to sum 1 (all-zero weights stay zero)."""
    check_points(src, "src_points")
    check_points(dst, "dst_points")
    if src.shape[1] == 0:
        raise ValueError("src_points and dst_points need at least one point")
    src, dst = _broadcast_point_sets(src, dst)
    if not src.is_floating_point():
        src, dst = src.to(torch.get_default_dtype()), dst.to(torch.get_default_dtype())
    batch, n = src.shape[:2]
    if weights is None:
        return src, dst, torch.full_like(src[..., 0], 1.0 / n)
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() != 2 or weights.shape[1] != n or weights.shape[0] not in (1, batch):
        raise ValueError(f"weights must have shape ({batch}, {n}) or (1, {n}), got {tuple(weights.shape)}")
    w = weights.to(src.dtype).clamp(min=0.0).expand(batch, n)
    total = w.sum(dim=1, keepdim=True)
    return src, dst, w / total.clamp(min=torch.finfo(src.dtype).tiny)


def _weighted_mean(points: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w.unsqueeze(-1) * points).sum(dim=1)


def _apply(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply an affine ``(B, 3, 3)`` matrix to ``(B, N, 2)`` points."""
    return torch.matmul(points, matrix[:, :2, :2].transpose(1, 2)) + matrix[:, :2, 2].unsqueeze(1)


def _centred_moments(
    src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted centroids and the second moments of the centred points ``a`` (src) and ``b`` (dst):
    ``sum w a . b``, ``sum w a x b`` and ``sum w |a|^2``."""
    mu_src, mu_dst = _weighted_mean(src, w), _weighted_mean(dst, w)
    a = src - mu_src.unsqueeze(1)
    b = dst - mu_dst.unsqueeze(1)
    dot = (w * (a * b).sum(dim=-1)).sum(dim=1)
    cross = (w * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])).sum(dim=1)
    var = (w * (a**2).sum(dim=-1)).sum(dim=1)
    return mu_src, mu_dst, dot, cross, var


def _relative_tolerance(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(B,)`` squared-length threshold below which a centred second moment (``sum w a . b`` and
    friends) counts as zero: ``(10 eps)^2`` times the product of the uncentred RMS magnitudes of both
    point sets. Centring coordinates of magnitude ``M`` leaves rounding errors of about ``eps * M``, so
    spreads below ``10 eps * M`` carry no information."""
    eps = torch.finfo(src.dtype).eps
    rms_src = torch.sqrt((w * (src**2).sum(dim=-1)).sum(dim=1))
    rms_dst = torch.sqrt((w * (dst**2).sum(dim=-1)).sum(dim=1))
    return (10.0 * eps) ** 2 * (1.0 + rms_src) * (1.0 + rms_dst)


def _from_linear(
    a: torch.Tensor,
    b: torch.Tensor,
    d: torch.Tensor,
    e: torch.Tensor,
    mu_src: torch.Tensor,
    mu_dst: torch.Tensor,
) -> torch.Tensor:
    """Matrix with linear part ``[[a, b], [d, e]]`` that maps ``mu_src`` onto ``mu_dst``."""
    tx = mu_dst[:, 0] - a * mu_src[:, 0] - b * mu_src[:, 1]
    ty = mu_dst[:, 1] - d * mu_src[:, 0] - e * mu_src[:, 1]
    return _affine_from_entries(a, b, tx, d, e, ty)


def _similarity(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    mu_src, mu_dst, dot, cross, var = _centred_moments(src, dst, w)
    tol = _relative_tolerance(src, src, w)
    spread = var > tol
    safe_var = torch.where(spread, var, torch.ones_like(var))
    p = torch.where(spread, dot / safe_var, torch.ones_like(dot))
    q = torch.where(spread, cross / safe_var, torch.zeros_like(cross))
    return _from_linear(p, -q, q, p, mu_src, mu_dst)


def _affine(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    mu_src, mu_dst = _weighted_mean(src, w), _weighted_mean(dst, w)
    a = src - mu_src.unsqueeze(1)
    b = dst - mu_dst.unsqueeze(1)
    wa = w.unsqueeze(-1) * a
    cov_aa = wa.transpose(1, 2) @ a  # (B, 2, 2): sum w a a^T
    cov_ba = b.transpose(1, 2) @ wa  # (B, 2, 2): sum w b a^T
    s00, s01, s11 = cov_aa[:, 0, 0], cov_aa[:, 0, 1], cov_aa[:, 1, 1]
    det = s00 * s11 - s01 * s01
    trace = s00 + s11
    # det / (trace / 2)^2 ~ 4 * smallest / largest eigenvalue: collinear (or coincident) points.
    eps = torch.finfo(src.dtype).eps
    solvable = det > 100.0 * eps * trace**2
    safe_det = torch.where(solvable, det, torch.ones_like(det))
    inv_aa = torch.stack([s11, -s01, -s01, s00], dim=-1).reshape(-1, 2, 2) / safe_det[:, None, None]
    linear = cov_ba @ inv_aa
    fitted = _from_linear(linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 0], linear[:, 1, 1], mu_src, mu_dst)
    return torch.where(solvable[:, None, None], fitted, _similarity(src, dst, w))


# ----------------------------------------------------------------------------------------------
# the models by name
# ----------------------------------------------------------------------------------------------

# A weighted least-squares fit: (src (B, N, 2), dst (B, N, 2), weights (B, N) or None) -> (B, 3, 3).
Fit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]

# The weighted least-squares fit of each motion model, by name.
FITS: dict[str, Fit] = {
    "translation": estimate_translation,
    "rigid": estimate_rigid,
    "similarity": estimate_similarity,
    "affine": estimate_affine,
    "homography": estimate_homography,
}

# The fewest point correspondences that determine each model (also RANSAC's minimal sample).
MIN_POINTS: dict[str, int] = {"translation": 1, "rigid": 2, "similarity": 2, "affine": 3, "homography": 4}


def point_rms(
    mapped: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted RMS distance ``(B,)`` between point sets ``mapped`` and ``target`` ``(B, N, 2)``;
    ``weights`` ``(B, N)`` (negative ones count as 0; default: all 1). A set whose weights are all 0
    gives NaN."""
    squared = (mapped - target.to(mapped.dtype)).square().sum(dim=-1)
    w = (
        torch.ones_like(squared)
        if weights is None
        else weights.to(squared.dtype).clamp(min=0).expand_as(squared)
    )
    total = w.sum(dim=1)
    return torch.sqrt((w * squared).sum(dim=1) / torch.where(total > 0, total, torch.nan))
