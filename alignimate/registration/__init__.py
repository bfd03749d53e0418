"""Batched multiscale image registration (translation to homography) with a wide capture range.

``register`` aligns moving images onto fixed ones by inverse-compositional Gauss-Newton (or Adam)
over a coarse-to-fine pyramid, after a global phase-correlation initialisation; ``register_points``
is the closed-form keypoint path. Both return a :class:`RegistrationResult` with OpenCV-ready
pixel matrices ``fixed_H_moving`` (docs/conventions.md).
"""

from __future__ import annotations

from .engine import register
from .points import register_points
from .result import RegistrationResult

__all__ = ["RegistrationResult", "register", "register_points"]
