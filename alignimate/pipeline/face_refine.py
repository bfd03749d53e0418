"""Step 8 of ``alignimate faces`` (``refine="heatmaps"``): the closed-form face similarities refined by
registering landmark heatmaps.

Each photo's 5 landmarks become Gaussian heatmaps (:func:`~alignimate.core.keypoint_heatmaps`) on a
small square of the photo around the face; they are registered by
:func:`~alignimate.registration.register` (similarity, MSE, batched), starting from the closed-form
matrix, onto the heatmaps of the series' reference face: the per-point median of the closed-form
aligned landmarks, i.e. the template as this person's face fills it (onto the bare template the
overlap objective is pulled away from the least-squares fit by the subject's own proportions). The
Gaussian-overlap (MSE) objective is robust: a landmark that moved against the others (an open mouth)
pulls less than in the least-squares fit. Whether a refinement is used is the caller's decision.

Conventions (docs/conventions.md): points are pixel ``(x, y)``, a matrix ``dst_H_src`` maps source
points to destination points; ``canvas`` is the square ``size x size`` output canvas.
"""

from __future__ import annotations

import numpy as np
import torch

from alignimate.core import invert, keypoint_heatmaps, scale_matrix_for_resize, transform_points
from alignimate.registration import RegistrationResult, register

__all__ = ["refine_with_heatmaps"]

# Working canvas side, Gaussian sigma as a fraction of it.
_REFINE_SIZE = 128
_REFINE_SIGMA_FRAC = 0.03
# Gauss-Newton iterations per pyramid level, and the convergence tolerance in pixels of each level
# (0.05 px of the 128 px canvas is 0.3 px of a 768 px frame).
_REFINE_ITERATIONS = 60
_REFINE_TOLERANCE = 0.05


def refine_with_heatmaps(
    landmarks: torch.Tensor, matrices: torch.Tensor, size: int, device: torch.device
) -> tuple[np.ndarray, torch.Tensor, RegistrationResult]:
    """Register each photo's landmark heatmaps onto those of the series' reference face.

    Args:
        landmarks: ``(N, 5, 2)`` float64, each photo's landmarks in its own pixels.
        matrices: ``(N, 3, 3)`` float64, the closed-form ``canvas_H_photo`` of each photo.
        size: side of the square canvas, pixels.
        device: where the registration runs.

    Returns:
        ``(reference, refined, result)``: the reference face ``(5, 2)`` on the canvas, the refined
        ``canvas_H_photo`` ``(N, 3, 3)`` float64 on the CPU, and the registration's result (its
        ``converged``, ``loss`` and ``iterations`` per photo).
    """
    r = _REFINE_SIZE
    sigma = _REFINE_SIGMA_FRAC * r
    reference = np.median(transform_points(matrices, landmarks).numpy(), axis=0)
    fixed_H_canvas = scale_matrix_for_resize((size, size), (r, r), dtype=torch.float64)
    fixed_points = transform_points(fixed_H_canvas, torch.from_numpy(reference)[None])
    fixed = keypoint_heatmaps(fixed_points.float(), (r, r), sigma)
    moving_H_photo = _refine_frames(landmarks, matrices, size, r)
    moving = keypoint_heatmaps(transform_points(moving_H_photo, landmarks).float(), (r, r), sigma)
    init = fixed_H_canvas @ matrices @ invert(moving_H_photo)
    result = register(
        moving,
        fixed,
        "similarity",
        init=init.float(),
        loss="mse",
        max_iterations=_REFINE_ITERATIONS,
        tolerance=_REFINE_TOLERANCE,
        device=device,
        # Heatmaps are 0 almost everywhere: content, not empty borders (see pipeline.semantic_sources).
        robust=False,
        ignore_empty=False,
    )
    refined = invert(fixed_H_canvas) @ result.matrix.double().cpu() @ moving_H_photo
    return reference, refined, result


def _refine_frames(landmarks: torch.Tensor, matrices: torch.Tensor, size: int, r: int) -> torch.Tensor:
    """``moving_H_photo`` (N, 3, 3): a square of the photo around the landmarks, as large as the canvas
    is at the face's scale, resized to ``r`` px, so the face has its canvas size in both heatmaps."""
    scale = torch.sqrt(torch.det(matrices[:, :2, :2]).abs())
    k = r / (size / scale)
    centre = landmarks.mean(dim=1)
    out = torch.zeros_like(matrices)
    out[:, 0, 0], out[:, 1, 1], out[:, 2, 2] = k, k, 1.0
    out[:, 0, 2] = (r - 1) / 2 - k * centre[:, 0]
    out[:, 1, 2] = (r - 1) / 2 - k * centre[:, 1]
    return out
