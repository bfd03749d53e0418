"""Losses as the registration engine uses them: names, the Adam solver's loss functions and the
final per-pair loss reported in :class:`~alignimate.registration.result.RegistrationResult`."""

from __future__ import annotations

import torch

from alignimate.core.losses import get_loss, zncc

from .levels import Level, normalised_blur, smooth
from .robust import agreement, sample_weights
from .sampling import sample_moving
from .solvers import LossFn

__all__ = [
    "LOSS_NAMES",
    "ROBUST_LOSSES",
    "SIMILARITY_LOSSES",
    "candidate_scores",
    "detail_level",
    "final_loss",
    "loss_function",
    "robust_weights",
]

# The final weights' gain, bias and scale are estimated on about this many samples of a pair (a
# regular subset of the full grid); the weights are then of every pixel.
_FIT_SAMPLES = 1 << 14

LOSS_NAMES = ("zncc", "mse", "l1", "charbonnier", "ssim", "local_zncc")
# Losses defined as ``1 - similarity``: a pair with nothing to compare reports 1 (no similarity).
SIMILARITY_LOSSES = ("zncc", "ssim", "local_zncc")
# Losses the robust re-weighting applies to (:mod:`.robust`).
ROBUST_LOSSES = ("zncc", "mse")


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
    return values.reshape(batch, -1, *size), weight, fixed.image.expand(batch, -1, -1, -1)


def robust_weights(
    warped: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, loss: str
) -> torch.Tensor:
    """Per-pixel robust weights ``(B, 1, h, w)`` of a registered pair (:mod:`.robust`, at the finest
    Tukey constant): ``warped``/``target`` ``(B, C, h, w)``, ``weight (B, 1, h, w)`` the overlap. A
    pixel's residual is the largest over its channels. The photometric model and the scale come
    from a regular subset of about ``_FIT_SAMPLES`` pixels."""
    batch, channels = warped.shape[:2]
    w = weight.expand(-1, channels, -1, -1).reshape(batch, -1)
    v, t = warped.reshape(batch, -1), target.reshape(batch, -1)
    stride = max(1, v.shape[1] // _FIT_SAMPLES)
    robust = sample_weights(v, t, w, photometric=loss == "zncc", fit_stride=stride)
    per_channel = robust.reshape(batch, channels, *warped.shape[-2:])
    return per_channel.amin(dim=1, keepdim=True) * (weight > 0)


def candidate_scores(
    moving: Level, fixed: Level, model: torch.Tensor, perspective: bool = True
) -> torch.Tensor:
    """Score ``(B,)`` of how well the frame models ``(B, 3, 3)`` align ``moving`` on ``fixed``: the
    ZNCC over the overlap, scaled down when the overlap covers less than half of the fixed image (a
    sliver can correlate by chance).

    Deliberately not the robust ZNCC: re-weighting by the residuals selects, for a wrong candidate
    too, the pixels that happen to agree, which inflates its score. Pass the :func:`detail_level`
    of both to compare the images' fine structure only (as the engine does for doubtful pairs)."""
    warped, weight, target = _warp_onto_fixed(moving, fixed, model, perspective)
    fixed_weight = torch.ones_like(weight) if fixed.mask is None else fixed.mask.expand_as(weight)
    overlap = weight.flatten(1).sum(dim=1) / fixed_weight.flatten(1).sum(dim=1).clamp(min=1e-12)
    score = zncc(warped, target, weight) * (2.0 * overlap).clamp(max=1.0)
    return torch.where(overlap > 0, score, torch.full_like(score, -2.0))


def detail_level(level: Level) -> Level:
    """The level's band-pass detail: its image minus a ``[1, 4, 6, 4, 1] / 16`` blur of itself (by
    normalised convolution where masked), on the same geometry.

    Why candidates are compared on detail: a smooth photo (the moon, a sky) still correlates with
    itself shifted by several pixels, so a refined wrong candidate can score as well as the right one,
    and an occluder's variance lowers the right one's plain ZNCC further. The detail decorrelates
    within a pixel or two of the true alignment and an occluder's detail correlates with nothing, so
    the right candidate keeps the only clear peak."""
    def blur(images: torch.Tensor) -> torch.Tensor:
        return smooth(smooth(images))

    blurred, _ = normalised_blur(blur, level.image, level.mask)
    return level.with_images(level.image - blurred, level.mask)


def final_loss(
    name: str,
    moving: Level,
    fixed: Level,
    model: torch.Tensor,
    perspective: bool = True,
    robust: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Loss ``(B,)`` of the moving image warped by ``model`` against the fixed image at full
    resolution, over the pixels valid in both, and with ``robust`` (for :data:`ROBUST_LOSSES`) the
    per-pixel robust weights ``(B, 1, h, w)`` and the agreeing fraction of the overlap ``(B,)``
    (:func:`~.robust.agreement`); the loss is then taken over the robustly weighted pixels.
    Always finite: a pair without overlap gets 1 for the similarity losses and, for the others, the
    loss of a flat image at the fixed image's mean (what a moving image with no information would
    score)."""
    batch = model.shape[0]
    warped, weight, target = _warp_onto_fixed(moving, fixed, model, perspective)
    fn = get_loss(name)
    weights = agreeing = None
    if robust and name in ROBUST_LOSSES:
        weights = robust_weights(warped, target, weight, name)
        agreeing = agreement(weights.flatten(1), weight.flatten(1))
        weight = weight * weights
    value = fn(warped, target, weight)
    if name in SIMILARITY_LOSSES:
        value = value.clamp(min=0.0)  # 1 - similarity, which rounding can push a hair below 0
        empty = torch.ones_like(value)
    else:
        fixed_weight = torch.ones_like(target) if fixed.mask is None else fixed.mask.expand(batch, -1, -1, -1)
        mean = (target * fixed_weight).sum(dim=(1, 2, 3)) / fixed_weight.sum(dim=(1, 2, 3)).clamp(min=1e-12)
        empty = fn(mean.reshape(-1, 1, 1, 1).expand_as(target), target, fixed_weight)
    has_overlap = weight.flatten(1).sum(dim=1) > 0
    value = torch.nan_to_num(torch.where(has_overlap, value, empty), nan=1.0, posinf=1e6, neginf=0.0)
    return value, weights, agreeing
