"""Argument checks for batched tensors, used by the core and by the layers above it (the engine,
the pipeline). They raise ``TypeError``/``ValueError`` with the argument's name and the shape that
was expected, and never synchronise with the device. Shapes: docs/conventions.md."""

from __future__ import annotations

import torch

__all__ = ["check_image_batch", "check_matrices", "check_points", "check_positive_int"]


def check_image_batch(x: torch.Tensor, name: str = "images") -> None:
    """Raise unless ``x`` is a floating ``(B, C, H, W)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_matrices(
    m: torch.Tensor, batch: int | None, name: str = "matrix", rows: tuple[int, ...] = (3,)
) -> None:
    """Raise unless ``m`` is ``(B, r, 3)`` with ``r`` in ``rows`` and ``B`` equal to ``batch`` or 1."""
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(m).__name__}")
    shapes = " or ".join(f"(B, {r}, 3)" for r in rows)
    if m.dim() != 3 or m.shape[1] not in rows or m.shape[2] != 3:
        raise ValueError(f"{name} must have shape {shapes}, got {tuple(m.shape)}")
    if batch is not None and m.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch {m.shape[0]}, expected 1 or {batch}")


def check_points(p: torch.Tensor, name: str = "points") -> None:
    """Raise unless ``p`` is a ``(B, N, 2)`` tensor."""
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(p).__name__}")
    if p.dim() != 3 or p.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (B, N, 2), got {tuple(p.shape)}")


def check_positive_int(value: object, name: str) -> None:
    """Raise unless ``value`` is an int of at least 1 (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
