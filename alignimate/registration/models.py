"""Motion models in the registration frame (see :mod:`alignimate.registration.frames`).

A model is a group of 3x3 frame maps with a small parameter vector ``p (B, P)`` for an
*increment* near the identity. The solvers compose increments onto the current map, so every
model only needs the increment's matrix and its Jacobian at ``p = 0``:

- ``translation`` (tx, ty);
- ``rigid`` (angle in radians, tx, ty);
- ``similarity`` (angle, log_scale, tx, ty);
- ``affine`` (6: ``I + delta`` on the top two rows);
- ``homography`` (8: ``I + delta``, bottom-right entry fixed to 1).

Translations are in frame units (the image half-size) and the other parameters move the image
corners by about their own value, so one step size and one tolerance fit every model and size.
"""

from __future__ import annotations

import torch

__all__ = ["MODELS", "MODEL_NAMES", "MotionModel", "get_model"]


def _identity(batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).repeat(batch, 1, 1)


class MotionModel:
    """Base class: ``name``, ``num_params`` and ``rank`` (position in the order of freedom)."""

    name: str = ""
    num_params: int = 0
    rank: int = 0

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Jacobian of the increment at the identity for frame points ``u, v (..., N)``: returns
        ``(d u'/d p, d v'/d p)``, each ``(..., P, N)``."""
        raise NotImplementedError

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        """Exact increment matrices ``(B, 3, 3)`` for parameters ``p (B, P)``; ``p = 0`` gives
        the identity."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"MotionModel({self.name!r})"


class Translation(MotionModel):
    name, num_params, rank = "translation", 2, 0

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        return torch.stack([one, zero], -2), torch.stack([zero, one], -2)

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        m = _identity(p.shape[0], p)
        m[:, :2, 2] = p
        return m


class Rigid(MotionModel):
    name, num_params, rank = "rigid", 3, 1

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        return torch.stack([-v, one, zero], -2), torch.stack([u, zero, one], -2)

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        return _rotation_scale_shift(p[:, 0], torch.zeros_like(p[:, 0]), p[:, 1:3])


class Similarity(MotionModel):
    name, num_params, rank = "similarity", 4, 2

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        return torch.stack([-v, u, one, zero], -2), torch.stack([u, v, zero, one], -2)

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        return _rotation_scale_shift(p[:, 0], p[:, 1], p[:, 2:4])


class Affine(MotionModel):
    name, num_params, rank = "affine", 6, 3

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        return torch.stack([u, v, one, zero, zero, zero], -2), torch.stack([zero, zero, zero, u, v, one], -2)

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        m = _identity(p.shape[0], p)
        m[:, :2, :] += p.reshape(-1, 2, 3)
        return m


class Homography(MotionModel):
    name, num_params, rank = "homography", 8, 4

    def jacobian(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        ju = torch.stack([u, v, one, zero, zero, zero, -u * u, -u * v], -2)
        jv = torch.stack([zero, zero, zero, u, v, one, -u * v, -v * v], -2)
        return ju, jv

    def increment(self, p: torch.Tensor) -> torch.Tensor:
        m = _identity(p.shape[0], p)
        m.view(-1, 9)[:, :8] += p
        return m


def _rotation_scale_shift(angle: torch.Tensor, log_scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # Rotation by +angle turns the u axis towards +v; this is internal, only matrices leave.
    scale = torch.exp(log_scale)
    c, s = scale * torch.cos(angle), scale * torch.sin(angle)
    m = _identity(angle.shape[0], angle)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    m[:, :2, 2] = shift
    return m


MODELS: dict[str, MotionModel] = {
    m.name: m for m in (Translation(), Rigid(), Similarity(), Affine(), Homography())
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def get_model(name: str) -> MotionModel:
    """The motion model called ``name`` (one of :data:`MODEL_NAMES`)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    return MODELS[name]
