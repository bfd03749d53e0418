"""Losses as the registration engine uses them: names, the Adam solver's loss functions and the
final per-pair loss reported in :class:`~alignimate.registration.result.RegistrationResult`."""

from __future__ import annotations

import torch

from alignimate.core.losses import get_loss, zncc

from .images import Level
from .sampling import sample_moving
from .solvers import LossFn

__all__ = ["LOSS_NAMES", "SIMILARITY_LOSSES", "candidate_scores", "final_loss", "loss_function"]

LOSS_NAMES = ("zncc", "mse", "l1", "charbonnier", "ssim", "local_zncc")
# Losses defined as ``1 - similarity``: a pair with nothing to compare reports 1 (no similarity).
SIMILARITY_LOSSES = ("zncc", "ssim", "local_zncc")


def loss_function(name: str) -> LossFn:
    """``fn(warped, fixed, mask) -> (B,)`` for the Adam solver (see :mod:`alignimate.core.losses`)."""
    return get_loss(name)


def _warp_onto_fixed(
    moving: Level, fixed: Level, model: torch.Tensor, perspective: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``warped (B, 1, h, w)``, ``weight (B, 1, h, w)`` (inside both images and masks) and the
    fixed image expanded to ``(B, 1, h, w)``, on the fixed level's full grid. ``perspective``:
    the models are homographies (the others skip the perspective division)."""
    batch = model.shape[0]
    size = fixed.size
    uv = fixed.frame_coords().T.unsqueeze(0)
    coords = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=1)
    values, inside, moving_mask = sample_moving(moving, model, coords, perspective)
    weight = inside.to(values.dtype)
    if moving_mask is not None:
        weight = weight * moving_mask
    weight = weight.reshape(batch, 1, *size)
    if fixed.mask is not None:
        weight = weight * fixed.mask
    return values.reshape(batch, 1, *size), weight, fixed.image.expand(batch, -1, -1, -1)


def candidate_scores(
    moving: Level, fixed: Level, model: torch.Tensor, perspective: bool = True
) -> torch.Tensor:
    """Score ``(B,)`` for choosing among initial candidates: the ZNCC over the overlap, scaled down
    when the overlap covers less than half of the fixed image (a sliver can correlate by chance)."""
    warped, weight, target = _warp_onto_fixed(moving, fixed, model, perspective)
    fixed_weight = torch.ones_like(target) if fixed.mask is None else fixed.mask.expand_as(target)
    overlap = weight.flatten(1).sum(dim=1) / fixed_weight.flatten(1).sum(dim=1).clamp(min=1e-12)
    score = zncc(warped, target, weight) * (2.0 * overlap).clamp(max=1.0)
    return torch.where(overlap > 0, score, torch.full_like(score, -2.0))


def final_loss(
    name: str, moving: Level, fixed: Level, model: torch.Tensor, perspective: bool = True
) -> torch.Tensor:
    """Loss ``(B,)`` of the moving image warped by ``model`` against the fixed image at full
    resolution, over the pixels valid in both. Always finite: a pair without overlap gets 1 for
    the similarity losses and, for the others, the loss of a flat image at the fixed image's mean
    (what a moving image with no information would score)."""
    batch = model.shape[0]
    warped, weight, target = _warp_onto_fixed(moving, fixed, model, perspective)
    fn = get_loss(name)
    value = fn(warped, target, weight)
    if name in SIMILARITY_LOSSES:
        value = value.clamp(min=0.0)  # 1 - similarity, which rounding can push a hair below 0
        empty = torch.ones_like(value)
    else:
        fixed_weight = torch.ones_like(target) if fixed.mask is None else fixed.mask.expand(batch, -1, -1, -1)
        mean = (target * fixed_weight).sum(dim=(1, 2, 3)) / fixed_weight.sum(dim=(1, 2, 3)).clamp(min=1e-12)
        empty = fn(mean.reshape(-1, 1, 1, 1).expand_as(target), target, fixed_weight)
    has_overlap = weight.flatten(1).sum(dim=1) > 0
    return torch.nan_to_num(torch.where(has_overlap, value, empty), nan=1.0, posinf=1e6, neginf=0.0)
