"""Per-level solvers: batched inverse-compositional Gauss-Newton, and Adam as the fallback.

Both refine frame models ``T (B, 3, 3)`` (fixed frame -> moving frame, see
:mod:`alignimate.registration.frames`) on one pyramid level, with fresh state per level and
per-pair convergence: a pair whose update moves the fixed image's corners by less than
``tolerance`` level pixels stops while the others continue. There is no host synchronisation
inside the loop except one check every ``check_every(device)`` iterations, which ends the level when
every pair has stopped and otherwise continues on the pairs still moving only (so a batch costs the sum
of its pairs' iterations, not the slowest pair's count times the batch).

Gauss-Newton (inverse compositional, Baker & Matthews 2004): the model ``I_m(T x) ~ a I_f(dT x) + b``
is linearised on the *fixed* image, so the steepest-descent images ``G = grad I_f . d(dT)/dp`` are
computed once per level. Each iteration samples the moving image once at the fixed samples
(:mod:`.sampling`), solves a small damped ``(P+2, P+2)`` system per pair with
``torch.linalg.solve_ex`` and updates ``T <- T @ dT(dp)^-1``. The motion block ``G^T W G`` depends
on the iteration only through the overlap weights, so it is refreshed every ``_REFRESH_EVERY``
iterations; the photometric rows and the right-hand side are fresh every iteration, which keeps
the fixed point exact. Steps are capped at ``_MAX_STEP_PIXELS`` of corner motion.

- ``zncc``: the gain ``a`` and bias ``b`` are solved jointly with ``dp`` (a weighted regression of
  the warped moving image on ``[G, I_f, 1]``); minimising over ``a, b`` maximises the correlation
  coefficient, as OpenCV's ECC does.
- ``mse``: ``a = 1, b = 0``; ``l1`` and ``charbonnier``: the same with iteratively re-weighted
  least squares (the motion block is then recomputed every iteration).
- ``robust`` (with ``zncc`` and ``mse``): every iteration re-weights the samples with Tukey's
  biweight of their residual under the current alignment (:mod:`.robust`), so occluders and other
  outliers get zero weight, and so do the samples on the rim of a blob of outliers
  (:func:`~.robust.reject_near_outlier_blobs`); the motion block is then recomputed every
  iteration too.

Several channels: each channel's samples are separate rows of the same system (one motion, and for
``zncc`` one gain and bias for all channels), so the loss is summed over the channels.

Adam: plain gradient descent through the differentiable bilinear warp with any per-image loss,
on the increment's parameters; slower and less precise, kept for ``ssim`` and ``local_zncc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from .levels import Level
from .models import MotionModel
from .robust import reject_near_outlier_blobs, sample_weights
from .sampling import FixedSamples, corner_points, products, sample_moving, tile_channels

__all__ = [
    "CHECK_EVERY",
    "GN_LOSSES",
    "LevelState",
    "LossFn",
    "adam_level",
    "check_every",
    "gauss_newton_level",
]

# Iterations between the (host-synchronising) checks of which pairs still move, on an accelerator.
# On the CPU a check costs nothing and drops converged pairs from the work sooner (check_every).
CHECK_EVERY = 5
_CPU_CHECK_EVERY = 2
# Steady steps (``accelerate``): a pair whose step keeps its direction (cosine of the corner motions
# above _STEADY_COSINE) and shrinks by a ratio within _STEADY_RATIOS converges linearly; its step is
# lengthened to the sum of the geometric series, at most _MAX_BOOST times, and only while the step
# is under _BOOST_BELOW_PIXELS level pixels, so a boost never moves a pair by more than a pixel.
# Used on the finest level only (the engine's choice; docs/benchmarks.md, issue #13).
_STEADY_COSINE = 0.95
_STEADY_RATIOS = (0.5, 0.95)
_MAX_BOOST = 4.0
_BOOST_BELOW_PIXELS = 0.25
# Iterations between refreshes of the motion block of the normal equations, where the weights do
# not change every iteration (plain least squares).
_REFRESH_EVERY = 5
# Losses the Gauss-Newton solver expresses exactly (the rest need the Adam solver).
GN_LOSSES = ("zncc", "mse", "l1", "charbonnier")
# Largest corner motion of one update, in level pixels: keeps a bad linearisation from throwing a
# pair out of the image while letting a good one cross a coarse level in a few steps.
_MAX_STEP_PIXELS = 4.0
# Levenberg damping added to the diagonal (relative) and a tiny ridge (absolute, scaled by the
# trace) so featureless or non-overlapping pairs give finite, zero-ish steps instead of NaN.
_DAMPING = 1e-4
_RIDGE = 1e-9
# IRLS weights: Charbonnier's scale is alignimate.core.losses.charbonnier_loss's default; the L1
# floor keeps exact matches from getting infinite weight.
_CHARBONNIER_EPS = 1e-2
_L1_EPS = 1e-3
# A fitted gain below this (the contrast all but gone, or reversed) means the pair does not correlate
# here: take no step rather than divide by it.
_MIN_GAIN = 0.1


@dataclass
class LevelState:
    """Per-pair state carried between levels: ``model (B, 3, 3)``, ``iterations (B,)`` int64,
    ``converged (B,)`` bool (at the last level run) and ``overlap (B,)`` (fraction of the fixed
    image's valid samples that the moving image covers)."""

    model: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    overlap: torch.Tensor

    def rows(self, index: torch.Tensor | slice) -> LevelState:
        """The state of the pairs ``index``."""
        return LevelState(*(getattr(self, f.name)[index] for f in fields(self)))

    def with_rows(self, index: torch.Tensor, other: LevelState) -> LevelState:
        """A copy whose pairs ``index`` hold ``other``'s state (``other`` has one pair per index)."""
        merged = LevelState(*(getattr(self, f.name).clone() for f in fields(self)))
        for f in fields(self):
            getattr(merged, f.name)[index] = getattr(other, f.name)
        return merged

    @staticmethod
    def cat(states: Sequence[LevelState]) -> LevelState:
        """The states of consecutive chunks of pairs, as one."""
        return LevelState(*(torch.cat([getattr(s, f.name) for s in states]) for f in fields(LevelState)))


def check_every(device: torch.device) -> int:
    """Iterations between the checks of which pairs still move, on ``device``."""
    return _CPU_CHECK_EVERY if device.type == "cpu" else CHECK_EVERY


def _corner_motion(increment: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Largest displacement ``(B,)`` (frame units) of ``corners (4, 3)`` under ``increment (B, 3, 3)``."""
    moved = corners @ increment.transpose(1, 2)  # (B, 4, 3)
    moved = moved[..., :2] / moved[..., 2:].clamp(min=1e-6)
    return (moved - corners[:, :2]).norm(dim=-1).amax(dim=-1)


def _corner_jacobian(model: MotionModel, corners: torch.Tensor) -> torch.Tensor:
    """``(P, 4, 2)``: how the increment's parameters move the four corners (at the identity)."""
    ju, jv = model.jacobian(corners[:, 0], corners[:, 1])  # (P, 4) each
    return torch.stack([ju, jv], dim=-1)


def _steepest_descent(fixed: FixedSamples, model: MotionModel) -> torch.Tensor:
    """``G (Bf, P, C * M)``: the fixed image's frame gradient times the increment's Jacobian."""
    ju, jv = model.jacobian(fixed.coords[:, 0], fixed.coords[:, 1])  # (Bf, P, M) each
    if fixed.channels > 1:
        ju, jv = ju.repeat(1, 1, fixed.channels), jv.repeat(1, 1, fixed.channels)
    return fixed.grad_u.unsqueeze(1) * ju + fixed.grad_v.unsqueeze(1) * jv


def _solve(hessian: torch.Tensor, rhs: torch.Tensor, p: int) -> torch.Tensor:
    """Damped solve of ``(B, K, K) x = (B, K)``: Levenberg damping on the motion block and a tiny
    ridge keep featureless or empty pairs finite (their step is ~0)."""
    diag = torch.diagonal(hessian, dim1=-2, dim2=-1)
    extra = diag * _DAMPING
    extra[:, p:] = 0.0
    extra += _RIDGE * diag.sum(dim=-1, keepdim=True) + 1e-30
    damped = hessian.clone()
    torch.diagonal(damped, dim1=-2, dim2=-1).add_(extra)
    solution, _ = torch.linalg.solve_ex(damped, rhs.unsqueeze(-1))
    return torch.nan_to_num(solution[..., 0], nan=0.0, posinf=0.0, neginf=0.0)


def gauss_newton_level(
    moving: Level,
    fixed: FixedSamples,
    model: MotionModel,
    state: LevelState,
    *,
    loss: str,
    iterations: int,
    tolerance: float,
    min_overlap: float,
    accelerate: bool = False,
    robust_c: float | None = None,
) -> LevelState:
    """Refine ``state.model`` on one level with inverse-compositional Gauss-Newton (see module
    docstring). ``moving`` holds the chunk's level images, ``fixed`` its fixed samples (batch 1
    when shared). ``robust_c``: Tukey's constant for robust re-weighting (``zncc``, ``mse``), or
    ``None`` for plain least squares. ``accelerate``: lengthen the steps of pairs that converge
    slowly and steadily (:func:`_steady_boost`).

    Every :func:`check_every` iterations the pairs still moving are counted (one host sync) and the
    work continues on those pairs only, so the cost follows each pair's own iteration count.
    """
    dtype, device = fixed.intensity.dtype, fixed.intensity.device
    p = model.num_params
    perspective = model.name == "homography"
    photometric = loss == "zncc"
    robust = loss in ("l1", "charbonnier")
    tukey = robust_c is not None and loss in ("zncc", "mse")
    channels = fixed.channels
    steepest = _steepest_descent(fixed, model)  # (Bf, P, M)
    # Corner motion of a step, linearised: (B, P) @ (P, 8) -> per-corner displacements.
    corner_jacobian = _corner_jacobian(model, fixed.corners).reshape(p, 8)
    max_step = _MAX_STEP_PIXELS / fixed.pixels_per_unit
    boost_below = _BOOST_BELOW_PIXELS / fixed.pixels_per_unit if accelerate else 0.0
    tol = tolerance / fixed.pixels_per_unit

    # Full-batch results, and the working set (the pairs still moving) with its own tensors.
    model_out = state.model.to(dtype).clone()
    count_out = state.iterations.clone()
    converged_out = torch.zeros_like(state.converged)
    overlap_out = state.overlap.to(dtype).clone()
    ids = torch.arange(model_out.shape[0], device=device)
    work = _Working(moving, fixed, steepest, photometric)
    t, count, converged, overlap = model_out, count_out, converged_out, overlap_out
    active = torch.ones_like(converged)
    motion_hessian = torch.zeros(t.shape[0], p, p, dtype=dtype, device=device)
    kept: torch.Tensor | None = None  # the robust weights of the previous iteration
    previous_corners: torch.Tensor | None = None  # the previous step's corner motion, and its size
    previous_motion: torch.Tensor | None = None
    previous_boost = torch.ones_like(t[:, 0, 0])
    every = check_every(device)
    for it in range(iterations):
        values, inside, moving_mask = sample_moving(work.moving, t, work.coords, perspective)
        weight = inside.to(dtype)
        if work.fixed_weight is not None:
            weight = weight * work.fixed_weight
        if moving_mask is not None:
            weight = weight * moving_mask
        overlap = weight.sum(dim=1) / work.fixed_area
        weight = tile_channels(weight, channels)
        if photometric:
            target = values
        else:
            target = values - work.intensity
            if loss == "l1":
                weight = weight / target.abs().clamp(min=_L1_EPS)
            elif loss == "charbonnier":
                weight = weight / torch.sqrt(target * target + _CHARBONNIER_EPS**2)
        if tukey:
            kept = sample_weights(
                values, work.intensity, weight, photometric=photometric, previous=kept, c=robust_c
            )
            kept = reject_near_outlier_blobs(kept, work.grid)
            weight = weight * kept
        # The motion block of the normal equations changes only through the weights (the overlap at
        # the borders), so it is refreshed every few iterations; everything else is fresh each time,
        # which keeps the fixed point exact.
        refresh = robust or tukey or it % _REFRESH_EVERY == 0
        if photometric:
            if refresh:
                # The whole regression system [G, I_f, 1] W [G, I_f, 1]^T and its right-hand side
                # in two products (fewer passes over the samples than building its blocks apart).
                weighted = work.features * weight.unsqueeze(1)  # (B, P + 2, M)
                hessian = products(weighted, work.features)
                motion_hessian = hessian[:, :p, :p]
                # As a row vector times a matrix: the same product as ``weighted @ values``, but a
                # batched matrix-vector product takes a slow path on the CPU (docs/benchmarks.md,
                # issue #13 section).
                rhs = torch.bmm(values.unsqueeze(1), weighted.transpose(1, 2))[:, 0]
            else:
                rows = torch.stack([weight * values, weight * work.intensity, weight], dim=1)  # (B, 3, M)
                sums = products(rows, work.features)  # (B, 3, P + 2)
                hessian = torch.cat(
                    [torch.cat([motion_hessian, sums[:, 1:3, :p].transpose(1, 2)], dim=2), sums[:, 1:3]], 1
                )
                rhs = sums[:, 0]
            solution = _solve(hessian, rhs, p)
            # The regression gives gain * step; a gain near 0 means "no correlation": take no step.
            gain = solution[:, p : p + 1]
            motion_part = solution[:, :p]
            step = torch.where(
                gain > _MIN_GAIN, motion_part / gain.clamp(min=_MIN_GAIN), torch.zeros_like(motion_part)
            )
        else:
            if refresh:
                motion_hessian = products(work.steepest * weight.unsqueeze(1), work.steepest)
            rhs = products((weight * target).unsqueeze(1), work.steepest)[:, 0]
            step = _solve(motion_hessian, rhs, p)
        corners = step @ corner_jacobian
        motion = corners.view(-1, 4, 2).norm(dim=-1).amax(dim=-1)
        # A step after a boosted one measures the boost's own error: it never ends a pair's run.
        settled = previous_boost <= 1.0
        boost = _steady_boost(corners, motion, previous_corners, previous_motion, boost_below)
        previous_corners, previous_motion, previous_boost = corners, motion, boost
        enough_overlap = overlap >= min_overlap
        moving_pairs = active & enough_overlap
        scale = torch.minimum(boost, max_step / motion.clamp(min=1e-12)) * moving_pairs
        inverse_increment, _ = torch.linalg.inv_ex(model.increment(step * scale.unsqueeze(-1)))
        updated = t @ inverse_increment
        t = updated / updated[:, 2:3, 2:3]
        count = count + moving_pairs
        done = moving_pairs & (motion < tol) & settled
        converged = converged | done
        active = active & ~done & enough_overlap
        last = it + 1 == iterations
        if (it + 1) % every == 0 or last:
            outputs = (model_out, count_out, converged_out, overlap_out)
            for out, value in zip(outputs, (t, count, converged, overlap), strict=True):
                out.index_copy_(0, ids, value)
            if last:
                break
            keep = active.nonzero()[:, 0]  # the documented host sync
            if keep.numel() == 0:
                break
            if keep.numel() < ids.numel():
                ids, t, count, converged = ids[keep], t[keep], count[keep], converged[keep]
                overlap, active, motion_hessian = overlap[keep], active[keep], motion_hessian[keep]
                kept = None if kept is None else kept[keep]
                previous_corners, previous_motion = previous_corners[keep], previous_motion[keep]
                previous_boost = previous_boost[keep]
                work = work.subset(keep)
    converged_out = converged_out & (overlap_out >= min_overlap)
    return LevelState(model_out, count_out, converged_out, overlap_out)


def _steady_boost(
    corners: torch.Tensor,
    motion: torch.Tensor,
    previous_corners: torch.Tensor | None,
    previous_motion: torch.Tensor | None,
    below: float,
) -> torch.Tensor:
    """Step multiplier ``(B,)``: 1, or ``1 / (1 - r)`` (at most ``_MAX_BOOST``) for a pair whose
    steps shrink steadily, each one ``r`` times the last in the same direction (corner motions
    ``(B, 8)`` within ``_STEADY_COSINE``, ``r`` in ``_STEADY_RATIOS``) while its ``motion (B,)`` is
    under ``below`` (frame units): such a pair converges linearly, and the rest of the geometric
    series is ``r / (1 - r)`` of this step."""
    ones = torch.ones_like(motion)
    if previous_corners is None or previous_motion is None:
        return ones
    norms = corners.norm(dim=-1) * previous_corners.norm(dim=-1)
    cosine = (corners * previous_corners).sum(dim=-1) / norms.clamp(min=1e-30)
    ratio = motion / previous_motion.clamp(min=1e-30)
    low, high = _STEADY_RATIOS
    steady = (cosine > _STEADY_COSINE) & (ratio > low) & (ratio < high) & (motion < below)
    return torch.where(steady, (1.0 / (1.0 - ratio.clamp(max=high))).clamp(max=_MAX_BOOST), ones)


class _Working:
    """The per-pair tensors of the pairs still being solved (shared fixed samples stay shared)."""

    def __init__(self, moving: Level, fixed: FixedSamples, steepest: torch.Tensor, photometric: bool) -> None:
        self.moving = moving
        self.coords = fixed.coords
        self.grid = fixed.grid
        self.intensity = fixed.intensity
        has_mask = fixed.weight is not None
        self.fixed_weight = fixed.weight if has_mask else None
        area = (
            fixed.weight.sum(dim=1) if has_mask else fixed.intensity.new_full((1,), fixed.intensity.shape[1])
        )
        self.fixed_area = area.clamp(min=1.0)
        self.steepest: torch.Tensor | None = steepest
        self.features = None
        if photometric:
            ones = torch.ones_like(fixed.intensity).unsqueeze(1)
            self.features = torch.cat([steepest, fixed.intensity.unsqueeze(1), ones], dim=1)
            self.steepest = None  # inside the features now; not copied again when pairs drop out

    def subset(self, keep: torch.Tensor) -> _Working:
        new = object.__new__(_Working)
        new.moving = self.moving.rows(keep)
        new.grid = self.grid
        for name in ("coords", "intensity", "fixed_weight", "fixed_area", "steepest", "features"):
            value = getattr(self, name)
            # Batch-1 tensors are shared by every pair and stay as they are.
            setattr(new, name, value[keep] if value is not None and value.shape[0] > 1 else value)
        return new


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def adam_level(
    moving: Level,
    fixed: Level,
    model: MotionModel,
    state: LevelState,
    *,
    loss_fn: LossFn,
    iterations: int,
    tolerance: float,
    min_overlap: float,
    learning_rate: float = 0.5,
) -> LevelState:
    """Refine ``state.model`` on one level by Adam on the increment's parameters, through the
    differentiable warp and any per-image loss ``loss_fn(warped, fixed, mask) -> (B,)``.

    ``learning_rate`` is in level pixels of corner motion per step (converted to frame units, so it
    needs no tuning per image size) and decays linearly to 1 % over the level's budget, so the
    steps of a settled pair fall below ``tolerance`` towards the end of the budget. Work is not
    compacted (see :func:`gauss_newton_level`): this is the slow fallback.
    """
    uv = fixed.frame_coords().T.unsqueeze(0)
    coords = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=1)
    size = fixed.size
    batch = state.model.shape[0]
    dtype, device = fixed.image.dtype, fixed.image.device
    perspective = model.name == "homography"
    fixed_weight = torch.ones_like(fixed.image[:, :1]) if fixed.mask is None else fixed.mask
    fixed_area = fixed_weight.flatten(1).sum(dim=1).clamp(min=1.0)
    corners = corner_points(fixed)
    tol = tolerance / fixed.pixels_per_unit
    base_lr = learning_rate / fixed.pixels_per_unit

    t0 = state.model.to(dtype)
    params = torch.zeros(batch, model.num_params, dtype=dtype, device=device)
    first = torch.zeros_like(params)
    second = torch.zeros_like(params)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    converged = torch.zeros(batch, dtype=torch.bool, device=device)
    count = state.iterations.clone()
    overlap = state.overlap.to(dtype)
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    target = fixed.image.expand(batch, -1, -1, -1)
    for it in range(iterations):
        params.requires_grad_(True)
        values, inside, moving_mask = sample_moving(moving, t0 @ model.increment(params), coords, perspective)
        weight = inside.to(dtype).reshape(batch, 1, *size) * fixed_weight
        if moving_mask is not None:
            weight = weight * moving_mask.reshape(batch, 1, *size)
        value = loss_fn(values.reshape(batch, -1, *size), target, weight)
        (grad,) = torch.autograd.grad(value.sum(), params)
        params = params.detach()
        grad = torch.nan_to_num(grad)
        overlap = weight.detach().flatten(1).sum(dim=1) / fixed_area
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad * grad
        lr = base_lr * (1.0 - 0.99 * it / max(iterations - 1, 1))
        direction = (first / (1 - beta1 ** (it + 1))) / (torch.sqrt(second / (1 - beta2 ** (it + 1))) + eps)
        enough_overlap = overlap >= min_overlap
        moving_pairs = active & enough_overlap
        previous = model.increment(params)
        params = torch.where(moving_pairs[:, None], params - lr * direction, params)
        motion = _corner_motion(torch.linalg.inv_ex(previous)[0] @ model.increment(params), corners)
        count = count + moving_pairs.to(count.dtype)
        done = moving_pairs & (motion < tol)
        converged = converged | done
        active = active & ~done & enough_overlap
        if (it + 1) % check_every(device) == 0 and not bool(active.any()):
            break
    t = (t0 @ model.increment(params)).detach()
    t = t / t[:, 2:3, 2:3]
    converged = converged & (overlap >= min_overlap)
    return LevelState(t, count, converged, overlap)
