"""``register_points``: closed-form registration from point correspondences."""

from __future__ import annotations

import torch

from alignimate.core.checks import check_points
from alignimate.core.fit import FITS, point_rms
from alignimate.core.transforms import transform_points

from .models import get_model
from .result import RegistrationResult

__all__ = ["register_points"]


def register_points(
    moving_points: torch.Tensor,
    fixed_points: torch.Tensor,
    model: str = "similarity",
    weights: torch.Tensor | None = None,
    *,
    moving_size: tuple[int, int] | None = None,
    fixed_size: tuple[int, int] | None = None,
) -> RegistrationResult:
    """Fit ``fixed_H_moving`` to corresponding points in closed form (weighted least squares).

    Args:
        moving_points: ``(B|1, N, 2)`` pixel ``(x, y)`` points in the moving images.
        fixed_points: ``(B|1, N, 2)`` the corresponding points in the fixed image(s).
        model: ``"translation"``, ``"rigid"``, ``"similarity"``, ``"affine"`` or ``"homography"``.
        weights: optional ``(B|1, N)`` non-negative weights (e.g. detection confidences).
        moving_size, fixed_size: optional ``(h, w)`` of the images the points belong to, so that
            :meth:`RegistrationResult.warp` can rescale the matrices for other resolutions.

    Returns:
        :class:`RegistrationResult` whose ``loss`` is the weighted RMS residual in fixed pixels,
        ``converged`` is true where the fit and its residual are finite, ``iterations`` is 0.
        Conventions: docs/conventions.md.
    """
    check_points(moving_points, "moving_points")
    check_points(fixed_points, "fixed_points")
    motion = get_model(model)
    if weights is not None:
        if not isinstance(weights, torch.Tensor):
            raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
        if weights.dim() != 2 or weights.shape[1] != moving_points.shape[1]:
            raise ValueError(
                f"weights must have shape (B, {moving_points.shape[1]}), got {tuple(weights.shape)}"
            )
    matrix = FITS[motion.name](moving_points, fixed_points, weights)
    mapped = transform_points(matrix, moving_points.to(matrix.dtype))
    rms = point_rms(mapped, fixed_points, weights)
    finite = torch.isfinite(matrix).flatten(1).all(dim=1) & torch.isfinite(rms)
    return RegistrationResult(
        matrix=matrix.detach(),
        loss=torch.nan_to_num(rms, nan=0.0, posinf=torch.finfo(rms.dtype).max).detach(),
        converged=finite,
        iterations=torch.zeros(matrix.shape[0], dtype=torch.int64, device=matrix.device),
        moving_size=None if moving_size is None else (int(moving_size[0]), int(moving_size[1])),
        fixed_size=None if fixed_size is None else (int(fixed_size[0]), int(fixed_size[1])),
    )
