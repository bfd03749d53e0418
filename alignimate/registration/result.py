"""The result of a registration: OpenCV-ready pixel matrices plus per-pair diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignimate.core.checks import check_image_batch
from alignimate.core.transforms import rescale_matrix
from alignimate.core.warp import warp_perspective

__all__ = ["RegistrationResult"]


@dataclass(frozen=True)
class RegistrationResult:
    """Result of :func:`~alignimate.registration.register` or
    :func:`~alignimate.registration.register_points`.

    Attributes:
        matrix: ``(B, 3, 3)`` pixel matrices ``fixed_H_moving`` (docs/conventions.md), detached;
            ``cv2.warpPerspective(moving, M, (W2, H2))`` gives the aligned image.
        loss: ``(B,)`` final value of the registration loss per pair (lower is better; finite).
        converged: ``(B,)`` bool; ``False`` when a pair ran out of iterations before its updates
            fell below the tolerance, or when its overlap with the fixed image collapsed.
        iterations: ``(B,)`` int64, iterations each pair took over all levels.
        moving_size, fixed_size: ``(h, w)`` of the images the matrices refer to (``None`` for point
            registrations given no sizes).
        weights: ``(B, 1, h, w)`` per-pixel robust weights on the fixed image's grid (1: the pixel
            agrees with the alignment, 0: an outlier such as an occluder, or outside the overlap),
            or ``None`` when the registration was not robust.
        agreement: ``(B,)`` fraction of the overlap whose weight is at least 0.5 (the pixels the
            alignment explains), or ``None`` when not robust. A quality figure: a mostly occluded
            pair has a low agreement even when its loss (taken over the agreeing pixels) is good.
    """

    matrix: torch.Tensor
    loss: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    moving_size: tuple[int, int] | None
    fixed_size: tuple[int, int] | None
    weights: torch.Tensor | None = None
    agreement: torch.Tensor | None = None

    def matrix_for(self, moving_size: tuple[int, int], fixed_size: tuple[int, int]) -> torch.Tensor:
        """The matrices ``(B, 3, 3)`` rescaled for resized copies: ``moving_size`` and ``fixed_size``
        ``(h, w)`` are the sizes of the images the new matrices should map between (the content
        must be the same, only resized)."""
        if self.moving_size is None or self.fixed_size is None:
            raise ValueError("this result has no image sizes; pass moving_size/fixed_size to register_points")
        return rescale_matrix(
            self.matrix, self.moving_size, self.fixed_size, tuple(moving_size), tuple(fixed_size)
        )

    def warp(
        self, images: torch.Tensor, dsize: tuple[int, int] | None = None, **warp_options: Any
    ) -> torch.Tensor:
        """Warp ``images (B|1, C, h, w)`` onto the fixed image.

        ``images`` may have any resolution with the aspect ratio of the registered moving images
        (e.g. the full-resolution originals of downscaled copies): the matrices are rescaled.
        ``dsize`` ``(h, w)`` defaults to the fixed size scaled by the same factor. ``warp_options``
        go to :func:`alignimate.core.warp.warp_perspective` (``mode``, ``padding_mode``,
        ``fill_value``, ``return_mask``).
        """
        check_image_batch(images)
        h, w = int(images.shape[-2]), int(images.shape[-1])
        if self.moving_size is None or self.fixed_size is None:
            if dsize is None:
                raise ValueError("dsize is required for a result without image sizes")
            return warp_perspective(images, self.matrix.to(images.dtype), dsize, **warp_options)
        mh, mw = self.moving_size
        # Aspect ratios must agree up to the rounding of a resize (one pixel on either side).
        if abs(h * mw - w * mh) > max(mh, mw, h, w):
            raise ValueError(
                f"images of size {(h, w)} do not have the aspect ratio of the registered moving images "
                f"{(mh, mw)}"
            )
        if dsize is None:
            fh, fw = self.fixed_size
            dsize = (max(1, round(fh * h / mh)), max(1, round(fw * w / mw)))
        matrix = self.matrix_for((h, w), dsize).to(device=images.device, dtype=images.dtype)
        return warp_perspective(images, matrix, dsize, **warp_options)
