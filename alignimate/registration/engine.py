"""``register``: batched, multiscale registration of moving images onto fixed ones.

Pipeline (all batched, on one device, no learning rate to tune):

1. masks: the given ones, times the images' empty areas (``ignore_empty``: blocks of exact zeros);
   optional grey conversion; frame-aware pyramids (:mod:`.levels`) by normalised convolution, as
   deep as keeps the fixed image's shorter side >= 24 px; the finest level is lightly smoothed
   ([1, 2, 1] / 4, as ECC blurs).
2. without ``init``: global candidates from phase correlation on a 64 px canvas, and no motion
   (:mod:`.init`); each candidate is refined for a few iterations on the ~32 px level. A pair whose
   best candidate correlates well keeps that one. The others (occluders, partial overlap) are
   *doubtful*: their candidates are judged on the images' band-pass detail at the ~128 px level (a
   wrong candidate of a smooth photo still correlates, its detail does not), and those still unsure
   also get candidates from matched keypoints and RANSAC (:mod:`.feature_init`), the fit itself and
   the fit refined, kept where the judge prefers them. A pair that keeps the keypoint fit itself
   skips the levels above the judging one (they could only blur it). Coarser levels are skipped for
   all pairs (they could only lose the estimate). With ``init``: it is projected onto the model and
   the whole pyramid is used.
3. coarse to fine, one solver run per level (:mod:`.solvers`) with a fresh state, the level's own
   iteration budget and per-pair convergence; levels above the finest stop at the looser
   ``_COARSE_TOLERANCE``. Affine maps and homographies start as a similarity on the coarsest level
   and homographies continue as affine on the next one. With ``robust`` every iteration re-weights
   the samples by Tukey's biweight of their residual (:mod:`.robust`), so occluders get no say.
   A doubtful pair whose refinement carried it more than ``_HOLD_PIXELS`` away from its starting
   candidate keeps the start where the judge scores the start better: the robust refinement of a
   smooth photo can still be pulled away by a high-contrast occluder.
4. pixel matrices ``fixed_H_moving`` from the frame models (:mod:`.frames`), and the final loss on
   the finest level (robust: over the agreeing pixels, with the per-pixel weights and the agreeing
   fraction).

Solver choice: inverse-compositional Gauss-Newton is the default. In benchmarks/registration.py it
was much faster than the Adam solver and more precise, with equal or better success (figures:
docs/benchmarks.md, design measurements), and it needs no step size. Adam remains for the losses
Gauss-Newton cannot express (``ssim``, ``local_zncc``).

On the CPU, chunks of pairs go through the pipeline together (about a million pixels at full
resolution, 16 pairs per solver run) so their arrays stay in cache; on other devices the whole
batch runs at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from alignimate.core.checks import check_image_batch, check_matrices
from alignimate.core.fit import FITS
from alignimate.core.morphology import max_filter2d
from alignimate.core.transforms import transform_points

from .feature_init import feature_candidates
from .frames import matrix_from_model, model_from_matrix
from .init import CANVAS, CanvasView, global_candidates
from .levels import Level, build_levels, level_count
from .levels import grey as grey_image
from .models import MODELS, MotionModel, get_model
from .result import RegistrationResult
from .robust import TUKEY_C
from .sampling import corner_points, sample_fixed
from .scoring import LOSS_NAMES, ROBUST_LOSSES, candidate_scores, detail_level, final_loss, loss_function
from .solvers import GN_LOSSES, LevelState, adam_level, gauss_newton_level

__all__ = ["DEFAULT_ITERATIONS", "SOLVERS", "register"]

SOLVERS = ("gauss_newton", "adam")
# Iteration budget per level, finest last; coarser levels than listed reuse the first entry.
# Gauss-Newton converges in a handful of steps per level once the initialisation is close.
DEFAULT_ITERATIONS = {"gauss_newton": (30,), "adam": (100, 60, 40)}
# Pixels per chunk on the CPU: whole pipeline (16 pairs of 512 x 384, the CLI's working size) and per
# solver run (16 pairs of 16384 samples). Chunks keep the arrays in the cache; many small chunks cost
# Python time per iteration instead (a smaller pipeline chunk was slower at 512 x 384 and no faster
# at 256 x 256: docs/benchmarks.md, design measurements).
_CPU_BATCH_PIXELS = 1 << 22
_CPU_CHUNK_PIXELS = 1 << 18
# Levels above the finest only need to land well inside the next level's basin.
_COARSE_TOLERANCE = 0.05
# Iterations for refining each initial candidate before choosing one.
_CANDIDATE_ITERATIONS = 10
# Pairs whose best phase-correlation candidate scores below this (overlap-scaled ZNCC after the
# candidate refinement; clean pairs score above it, occluded and partly overlapping ones mostly
# below) also try a feature-based candidate.
_FEATURE_GATE = 0.9
# Of those, the pairs whose chosen candidate's detail score (see _Judges) is below this get the
# feature candidates: above it the chosen candidate was right on every benchmark case (the highest
# that needed them scored about 0.6), so the keypoints, the costliest step of such a pair, would
# only confirm it.
_DETAIL_GATE = 0.7
# A doubtful pair's refinement may move it this many finest-level pixels (largest corner motion)
# from its starting candidate before the judge compares the two.
_HOLD_PIXELS = 2.0
# Fixed-image samples per pair and motion parameter on the finest level (see .sampling): a
# similarity (4 parameters) gets 8192, the best pixel of each 3 x 3 block at 256 x 256; a
# homography 16384, of each 2 x 2 block. Its 8 parameters need them: with half as many its worst
# corner errors grew, while a similarity's did not and took less time (docs/benchmarks.md, issue
# #13 section).
_SAMPLES_PER_PARAMETER = 1 << 11
# Levels above the finest only need to land inside the next level's basin: fewer samples do
# (same accuracy on the benchmark cases, in less time: docs/benchmarks.md, design measurements).
_MAX_COARSE_PIXELS = 1 << 12
# Side of the smallest block of exact zeros that ``ignore_empty`` treats as an empty area, and the
# least share of an image such blocks must cover to be masked.
_EMPTY_BLOCK = 5
_MIN_EMPTY_FRACTION = 0.01


def register(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    model: str = "similarity",
    *,
    moving_mask: torch.Tensor | None = None,
    fixed_mask: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    loss: str = "zncc",
    levels: int | None = None,
    max_iterations: int | Sequence[int] | None = None,
    tolerance: float = 0.01,
    device: torch.device | str | None = None,
    solver: str | None = None,
    min_overlap: float = 0.1,
    robust: bool = True,
    grey: bool = False,
    ignore_empty: bool = True,
    features: bool = True,
) -> RegistrationResult:
    """Register each moving image onto its fixed image; returns pixel ``fixed_H_moving`` matrices.

    Args:
        moving: ``(B, C, H, W)`` floating images; every channel counts (the loss is summed over
            the channels, e.g. one heatmap per keypoint) unless ``grey``.
        fixed: ``(B, C', H2, W2)`` or ``(1, C', H2, W2)`` (one reference for the whole batch).
            Sizes and aspect ratios may differ from ``moving``.
        model: ``"translation"``, ``"rigid"``, ``"similarity"``, ``"affine"`` or ``"homography"``.
        moving_mask, fixed_mask: optional ``(B|1, 1, H, W)`` / ``(B|1, 1, H2, W2)`` weights in
            ``[0, 1]`` (bool accepted); only pixels valid in both (and inside both images) count.
        init: optional ``(B|1, 3, 3)`` pixel ``fixed_H_moving`` to start from (e.g. from a keypoint
            fit); it is projected onto ``model``. Without it a global phase-correlation
            initialisation gives a wide capture range.
        loss: ``"zncc"`` (default; invariant to brightness and contrast: use it for photographs),
            ``"mse"`` (use it for keypoint heatmaps and other images whose values already agree),
            ``"l1"``, ``"charbonnier"`` (robust to outliers), ``"ssim"``, ``"local_zncc"`` (these
            two need the Adam solver).
        levels: pyramid depth; default: as many halvings as keep the fixed image's shorter side
            >= 24 px. Without ``init`` the levels coarser than ~32 px are not used.
        max_iterations: budget per level, an int for every level or a sequence (coarse to fine; a
            shorter sequence is padded at the coarse end with its first value). Default
            :data:`DEFAULT_ITERATIONS`. 0 returns the (projected) ``init``, or the chosen global
            candidate.
        tolerance: a pair has converged when an update moves the fixed image's corners by less than
            this many pixels of the finest level (coarser levels stop at 0.05 level pixels).
        device: where to compute (default: ``moving``'s device); results come back on ``moving``'s.
        solver: ``"gauss_newton"`` (the default where the loss allows it) or ``"adam"`` (any loss;
            the default for ``ssim`` and ``local_zncc``).
        min_overlap: a pair whose moving image covers less than this fraction of the fixed image's
            valid pixels stops moving and is reported as not converged.
        robust: re-weight every sample by Tukey's biweight of its residual (:mod:`.robust`), so
            occluders and other outliers do not pull the estimate (``zncc`` and ``mse``; the other
            losses are unchanged). The result then reports the per-pixel weights and the agreeing
            fraction of the overlap.
        grey: convert RGB(A) images to grey (BT.601 luma; other channel counts: their mean) before
            registering; what photographs want, and three times less work than their channels.
        features: without ``init``, also try a candidate from matched keypoints and RANSAC
            (:mod:`.feature_init`), which holds where occluders or a partial overlap mislead phase
            correlation. It is tried for the pairs whose best phase-correlation candidate
            correlates poorly and is not clearly confirmed by the images' detail, and kept where
            the detail judges it better (see the module docstring, step 2).
        ignore_empty: treat areas of exactly constant zero (blocks of at least 5 x 5 pixels whose
            channels are all exactly 0, covering at least 1 % of the image: the black borders of an
            earlier warp or a scan) as outside the mask, in both images. Real content is almost
            never exactly 0 over a whole block, and where it is (clipped shadows) it has no
            gradient to register on anyway.

    Returns:
        :class:`~alignimate.registration.result.RegistrationResult`; ``loss`` is the chosen loss
        on the grey, lightly smoothed finest level, over the pixels valid in both images.

    Host synchronisation: none inside the solvers' iterations except one check every
    ``solvers.check_every`` iterations (5 on an accelerator, 2 on the CPU), which also drops
    converged pairs from the work.
    Deterministic on the CPU. Conventions: docs/conventions.md; the parameter frame is described
    in :mod:`alignimate.registration.frames`.
    """
    check_image_batch(moving, "moving")
    check_image_batch(fixed, "fixed")
    motion = get_model(model)
    solver = _choose_solver(solver, loss)
    batch = moving.shape[0]
    if fixed.shape[0] not in (1, batch):
        raise ValueError(f"fixed must have batch 1 or {batch} (moving's batch), got {fixed.shape[0]}")
    if not grey and moving.shape[1] != fixed.shape[1]:
        raise ValueError(
            f"moving and fixed must have the same channels, got {moving.shape[1]} and {fixed.shape[1]} "
            f"(pass grey=True to compare RGB with grey)"
        )
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if not (isinstance(min_overlap, (int, float)) and 0 <= min_overlap < 1):
        raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap!r}")
    work_device = torch.device(device) if device is not None else moving.device
    dtype = torch.float64 if moving.dtype == torch.float64 else torch.float32
    moving_size = (int(moving.shape[-2]), int(moving.shape[-1]))
    fixed_size = (int(fixed.shape[-2]), int(fixed.shape[-1]))
    m_mask = _prepare_mask(moving_mask, "moving_mask", batch, moving_size, work_device, dtype)
    f_mask = _prepare_mask(fixed_mask, "fixed_mask", fixed.shape[0], fixed_size, work_device, dtype)
    if ignore_empty:
        m_mask = _without_empty(moving, m_mask, work_device, dtype)
        f_mask = _without_empty(fixed, f_mask, work_device, dtype)
    if init is not None:
        check_matrices(init, batch, "init")
        init = init.to(device=work_device).expand(batch, 3, 3)
    n_levels = _level_count(levels, fixed_size)
    settings = _Settings(
        motion=motion,
        schedule=_model_schedule(motion, n_levels),
        budgets=_budgets(max_iterations, solver, n_levels),
        options={
            "solver": solver,
            "loss": loss,
            "tolerance": float(tolerance),
            "min_overlap": float(min_overlap),
            "robust": bool(robust) and loss in ROBUST_LOSSES and solver == "gauss_newton",
        },
        features=bool(features),
        moving_size=moving_size,
        fixed_size=fixed_size,
    )

    def channels(images: torch.Tensor) -> torch.Tensor:
        return (grey_image(images) if grey else images).to(device=work_device, dtype=dtype)

    def fixed_pyramid(images: torch.Tensor, mask: torch.Tensor | None) -> list[Level]:
        return build_levels(channels(images), mask, n_levels)

    shared_fixed = fixed_pyramid(fixed, f_mask) if fixed.shape[0] == 1 else None
    # On the CPU, whole chunks of pairs go through the pipeline together so their arrays stay in cache.
    chunk = batch
    if work_device.type == "cpu":
        chunk = max(1, min(batch, _CPU_BATCH_PIXELS // (moving_size[0] * moving_size[1])))
    pieces = []
    for start in range(0, batch, chunk):
        part = slice(start, min(start + chunk, batch))
        fixed_levels = shared_fixed or fixed_pyramid(fixed[part], None if f_mask is None else f_mask[part])
        moving_levels = _moving_pyramid(
            channels(moving[part]), None if m_mask is None else m_mask[part], moving_size, fixed_levels
        )
        pieces.append(
            _register_chunk(moving_levels, fixed_levels, None if init is None else init[part], settings)
        )
    state = LevelState.cat([p[0] for p in pieces])
    value = torch.cat([p[1] for p in pieces])
    matrix = matrix_from_model(state.model, moving_size, fixed_size)
    out = moving.device
    weights = agreeing = None
    if settings.options["robust"]:
        weights = torch.cat([p[2] for p in pieces]).to(device=out, dtype=moving.dtype)
        agreeing = torch.cat([p[3] for p in pieces]).to(device=out, dtype=moving.dtype)
    return RegistrationResult(
        matrix=matrix.to(device=out, dtype=moving.dtype).detach(),
        loss=value.to(device=out, dtype=moving.dtype).detach(),
        converged=state.converged.to(out),
        iterations=state.iterations.to(out),
        moving_size=moving_size,
        fixed_size=fixed_size,
        weights=weights,
        agreement=agreeing,
    )


def _without_empty(
    images: torch.Tensor, mask: torch.Tensor | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor | None:
    """``mask`` with the images' empty areas (``register``'s ``ignore_empty``) removed; ``None``
    when there is neither a mask nor an empty area (a host sync or two, to keep the fast unmasked
    path)."""
    # Reductions over bool tensors are many times slower on the CPU than over their bytes, hence the
    # float test first and the uint8 views below.
    largest = images.abs().amax(dim=1, keepdim=True)
    if bool(largest.amin() > 0):  # most photographs: no zero pixel, no block to look for
        return mask
    nonzero = (largest != 0).to(device=device)
    # A zero pixel is empty when some block of _EMPTY_BLOCK x _EMPTY_BLOCK zeros contains it: find
    # the blocks (no non-zero pixel in the window around their centre), then grow them back to their
    # full extent.
    blocks = ~max_filter2d(nonzero, _EMPTY_BLOCK)
    empty = max_filter2d(blocks, _EMPTY_BLOCK) & ~nonzero
    # A few clipped-black blocks (under _MIN_EMPTY_FRACTION of the image) bias nothing measurable,
    # and leaving them keeps the faster unmasked path.
    count = empty.view(torch.uint8).sum(dim=(1, 2, 3), keepdim=True, dtype=torch.int32)
    enough = count.float() / empty[0].numel() >= _MIN_EMPTY_FRACTION
    if not bool(enough.any()):
        return mask
    empty = empty & enough
    keep = (~empty).to(dtype)
    return keep if mask is None else mask * keep


@dataclass
class _Settings:
    """What every chunk of a ``register`` call shares."""

    motion: MotionModel
    schedule: list[MotionModel]
    budgets: list[int]
    options: dict
    moving_size: tuple[int, int]
    fixed_size: tuple[int, int]
    features: bool


def _register_chunk(
    moving_levels: list[Level], fixed_levels: list[Level], init: torch.Tensor | None, settings: _Settings
) -> tuple[LevelState, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Initialise (or start from ``init``) and refine coarse to fine; returns the final state, the
    loss, and (robust) the per-pixel weights and the agreeing fraction."""
    options, schedule, budgets = settings.options, settings.schedule, settings.budgets
    coarse_options = {**options, "tolerance": max(options["tolerance"], _COARSE_TOLERANCE)}
    n_levels = len(fixed_levels)
    fine_start = start = None
    if init is None:
        start = _global_start(moving_levels, fixed_levels, settings, coarse_options)
        state, fine_start, first, judge = start.state, start.fine_start, start.first, start.judge
    else:
        first = judge = n_levels
        model = model_from_matrix(init, settings.moving_size, settings.fixed_size)
        state = _fresh_state(_project(model, settings.motion).to(moving_levels[0].image.dtype))
    for level in reversed(range(first)):
        # Only the finest level lengthens steady steps: on coarser ones it changes the path into the
        # finest level's start, which cost clean pairs accuracy (docs/benchmarks.md, issue #13).
        level_options = (
            {**options, "accelerate": True}
            if level == 0
            else {**coarse_options, "max_pixels": _MAX_COARSE_PIXELS}
        )
        run = functools.partial(
            _run_level, motion=schedule[level], iterations=budgets[level], **level_options
        )
        if level > judge and fine_start is not None:
            # Pairs that start from a keypoint fit are already finer than these levels can tell.
            state = _run_on(~fine_start, run, moving_levels[level], fixed_levels[level], state)
        else:
            state = run(moving_levels[level], fixed_levels[level], state=state)
    if start is not None and start.judges is not None:
        state = _held_starts(state, start, fixed_levels[0])
    perspective = settings.motion.name == "homography"
    value, weights, agreeing = final_loss(
        options["loss"], moving_levels[0], fixed_levels[0], state.model, perspective, options["robust"]
    )
    return state, value, weights, agreeing


def _choose_solver(solver: str | None, loss: str) -> str:
    if not isinstance(loss, str) or loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; got {loss!r}")
    if solver is None:
        return "gauss_newton" if loss in GN_LOSSES else "adam"
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)} or None; got {solver!r}")
    if solver == "gauss_newton" and loss not in GN_LOSSES:
        raise ValueError(f"loss={loss!r} needs solver='adam' (Gauss-Newton supports {', '.join(GN_LOSSES)})")
    return solver


def _prepare_mask(
    mask: torch.Tensor | None,
    name: str,
    batch: int,
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or tuple(mask.shape[-2:]) != size
        or mask.shape[0] not in (1, batch)
    ):
        raise ValueError(
            f"{name} must have shape ({batch} or 1, 1, {size[0]}, {size[1]}), got {tuple(mask.shape)}"
        )
    return mask.to(device=device, dtype=dtype).expand(batch, -1, -1, -1)


def _level_count(levels: int | None, fixed_size: tuple[int, int]) -> int:
    if levels is None:
        return level_count(fixed_size)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int or None, got {levels!r}")
    return levels


def _moving_pyramid(
    images: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int], fixed_levels: list[Level]
) -> list[Level]:
    """Moving levels matched to the fixed ones: for each fixed level the moving level whose pixels
    per frame unit are closest (a moving image twice the fixed size starts one level coarser)."""
    ratio = max(size) / (fixed_levels[0].pixels_per_unit * 2.0)
    extra = max(0, round(math.log2(ratio)))
    own = build_levels(images, mask, len(fixed_levels) + extra)
    return [
        min(own, key=lambda m, t=level.pixels_per_unit: abs(math.log2(m.pixels_per_unit / t)))
        for level in fixed_levels
    ]


def _coarsest_level(levels: list[Level], side: int) -> int:
    """Index of the coarsest level whose longer side is at least ``side`` pixels (0, the finest,
    if none is)."""
    index = 0
    for i, level in enumerate(levels):
        if max(level.size) >= side:
            index = i
    return index


def _first_level_after_init(levels: list[Level]) -> int:
    """Index of the coarsest level whose longer side is still at least half the canvas (whose
    pixels are at most twice the canvas's)."""
    return _coarsest_level(levels, CANVAS // 2)


def _canvas_view(levels: list[Level]) -> CanvasView:
    """The coarsest level whose longer side is at least twice the canvas (the finest if none is),
    as the canvas's view."""
    chosen = levels[_coarsest_level(levels, 2 * CANVAS)]
    # Phase correlation works on one channel: the images' grey (luma for RGB, else the mean).
    return CanvasView(grey_image(chosen.image), chosen.norm_H_frame(), chosen.half_extent, chosen.mask)


def _fresh_state(model: torch.Tensor) -> LevelState:
    batch, device = model.shape[0], model.device
    return LevelState(
        model=model,
        iterations=torch.zeros(batch, dtype=torch.int64, device=device),
        converged=torch.zeros(batch, dtype=torch.bool, device=device),
        overlap=torch.ones(batch, dtype=model.dtype, device=device),
    )


def _repeat_level(level: Level, times: int) -> Level:
    if times == 1:
        return level
    mask = None if level.mask is None else level.mask.repeat_interleave(times, dim=0)
    return level.with_images(level.image.repeat_interleave(times, dim=0), mask)


@dataclass
class _Start:
    """Where the pairs of a chunk start (:func:`_global_start`): ``state``, which pairs start from a
    keypoint fit (``fine_start (B,)`` bool), the ``first`` level to refine on, the ``judge`` level,
    and the ``doubtful`` pairs' indices ``(D,)`` with their ``judges`` (``None`` where none is)."""

    state: LevelState
    fine_start: torch.Tensor
    first: int
    judge: int
    doubtful: torch.Tensor
    judges: _Judges | None


def _global_start(
    moving_levels: list[Level], fixed_levels: list[Level], settings: _Settings, coarse_options: dict
) -> _Start:
    """The starting state of every pair without ``init``: phase-correlation candidates refined on
    the first level, the best kept; for the doubtful pairs, judged on detail and joined by keypoint
    candidates.

    A pair whose best candidate correlates at ``_FEATURE_GATE`` or more keeps the best-correlating
    one: clean pairs pay nothing more. For the others (occluders, partial overlap) plain correlation
    is a poor judge; they are judged on detail (:class:`_Judges`) at a finer level, where a
    wrong candidate of a smooth photo no longer correlates."""
    # The global initialisation is accurate to a pixel or two of its canvas, so the levels much
    # coarser than the canvas could only lose it (aliased fine textures): start below them.
    first = _first_level_after_init(fixed_levels)
    judge = _judging_level(fixed_levels, first)
    candidates = global_candidates(
        _canvas_view(moving_levels), _canvas_view(fixed_levels), min(settings.motion.rank, 2), CANVAS
    )
    refine = functools.partial(
        _refine_candidates,
        motion=settings.schedule[first],
        iterations=min(settings.budgets[first], _CANDIDATE_ITERATIONS),
        options=coarse_options,
    )
    refined, choice = refine(candidates, moving_levels[first], fixed_levels[first])
    batch, k = choice.shape
    fine_start = torch.zeros(batch, dtype=torch.bool, device=choice.device)
    doubtful = (choice.amax(dim=1) < _FEATURE_GATE).nonzero()[:, 0]  # the one host sync
    judges = None
    if doubtful.numel() > 0:
        judges = _Judges.of(
            _take_level(moving_levels[judge], doubtful),
            _take_level(fixed_levels[judge], doubtful),
            settings.motion.name == "homography",
        )
        rows = (doubtful.unsqueeze(1) * k + torch.arange(k, device=doubtful.device)).reshape(-1)
        choice = choice.clone()
        choice[doubtful] = judges.scores(refined.model[rows], repeat=k).view(-1, k)
    best_scores, best = choice.max(dim=1)
    state = refined.rows(torch.arange(batch, device=best.device) * k + best)
    if settings.features and judges is not None:
        unsure = (best_scores[doubtful] < _DETAIL_GATE).nonzero()[:, 0]
        if unsure.numel() > 0:
            levels = (moving_levels, fixed_levels)
            state, fine_start = _with_feature_candidates(
                state, best_scores[doubtful[unsure]], doubtful[unsure], judges.subset(unsure), levels,
                settings, refine, first,
            )
    return _Start(state, fine_start, first, judge, doubtful, judges)


def _held_starts(state: LevelState, start: _Start, finest: Level) -> LevelState:
    """``state`` with the doubtful pairs that the refinement carried more than ``_HOLD_PIXELS`` from
    their start put back at the start, where the judge scores the start better (one host sync)."""
    corners = corner_points(finest)[:, :2].unsqueeze(0)  # (1, 4, 2) frame points of the fixed image
    ends = [m[start.doubtful] for m in (start.state.model, state.model)]
    mapped = [transform_points(m, corners) for m in ends]
    moved = (mapped[0] - mapped[1]).norm(dim=-1).amax(dim=-1) * finest.pixels_per_unit
    far = (moved > _HOLD_PIXELS).nonzero()[:, 0]
    if far.numel() == 0:
        return state
    judges = start.judges.subset(far)
    back = judges.scores(ends[0][far]) > judges.scores(ends[1][far])
    rows = start.doubtful[far[back]]
    return state.with_rows(rows, dataclasses.replace(state.rows(rows), model=ends[0][far[back]]))


@dataclass
class _Judges:
    """Judge of candidate alignments for some pairs: :func:`~.scoring.candidate_scores` of the images'
    detail (:func:`~.scoring.detail_level`) on the judging level (:func:`_judging_level`)."""

    moving: Level  # the detail of the pairs' moving images
    fixed: Level
    perspective: bool

    @classmethod
    def of(cls, moving: Level, fixed: Level, perspective: bool) -> _Judges:
        """The judge of the pairs of the judging levels ``moving`` and ``fixed``."""
        return cls(detail_level(moving), detail_level(fixed), perspective)

    def subset(self, index: torch.Tensor) -> _Judges:
        """The judge of the pairs ``index`` of this one's."""
        return _Judges(_take_level(self.moving, index), _take_level(self.fixed, index), self.perspective)

    def scores(self, model: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        """Scores ``(N,)`` of frame models ``(N, 3, 3)``, ``repeat`` consecutive ones per pair."""
        moving = _repeat_level(self.moving, repeat)
        fixed = self.fixed if self.fixed.image.shape[0] == 1 else _repeat_level(self.fixed, repeat)
        return candidate_scores(moving, fixed, model, self.perspective)


def _judging_level(levels: list[Level], first: int) -> int:
    """Index of the level the candidates are judged on: the coarsest whose longer side is at least
    twice the canvas (fine enough for the detail to tell a pixel of the canvas), but not coarser
    than the level they are refined on."""
    return min(_coarsest_level(levels, 2 * CANVAS), first)


def _refine_candidates(
    candidates: torch.Tensor,
    moving: Level,
    fixed: Level,
    *,
    motion: MotionModel,
    iterations: int,
    options: dict,
) -> tuple[LevelState, torch.Tensor]:
    """Refine every candidate ``(B, K, 3, 3)`` on one level; returns the ``B * K`` refined states
    (pair-major) and their plain :func:`~.scoring.candidate_scores` ``(B, K)``."""
    batch, k = candidates.shape[:2]
    flat = _project(candidates.reshape(batch * k, 3, 3), motion).to(moving.image.dtype)
    moving_k = _repeat_level(moving, k)
    fixed_k = fixed if fixed.image.shape[0] == 1 else _repeat_level(fixed, k)
    state = _run_level(moving_k, fixed_k, motion, _fresh_state(flat), iterations=iterations, **options)
    plain = candidate_scores(moving_k, fixed_k, state.model, motion.name == "homography")
    return state, plain.view(batch, k)


def _with_feature_candidates(
    state: LevelState,
    scores: torch.Tensor,
    doubtful: torch.Tensor,
    judges: _Judges,
    levels: tuple[list[Level], list[Level]],
    settings: _Settings,
    refine: Callable[..., tuple[LevelState, torch.Tensor]],
    first: int,
) -> tuple[LevelState, torch.Tensor]:
    """Give the ``doubtful`` pairs two feature-based candidates (:mod:`.feature_init`): the keypoint
    fit itself and the fit refined like the others; keep the one the ``judges`` score best where it
    beats the chosen candidate's ``scores`` (``(D,)``, the doubtful pairs'). Returns the state and
    which pairs now start from the keypoint fit itself (``(B,)`` bool): it is finer than the levels
    above the judging level can tell, so those levels are skipped for them."""
    fine_start = torch.zeros_like(state.converged)
    moving_levels, fixed_levels = levels
    model, found = feature_candidates(
        _take_level(moving_levels[0], doubtful),
        _take_level(fixed_levels[0], doubtful),
        settings.motion.name,
        settings.moving_size,
        settings.fixed_size,
    )
    model = model.to(state.model.dtype)
    on_first = [_take_level(side[first], doubtful) for side in (moving_levels, fixed_levels)]
    refined, _ = refine(model.unsqueeze(1), *on_first)
    refined_scores = judges.scores(refined.model)
    raw_scores = judges.scores(model)
    use_raw = found & (raw_scores >= refined_scores) & (raw_scores > scores)
    use_refined = found & ~use_raw & (refined_scores > scores)
    merged = state.with_rows(doubtful[use_refined], refined.rows(use_refined))
    merged.model[doubtful[use_raw]] = model[use_raw]
    fine_start[doubtful[use_raw]] = True
    return merged, fine_start


def _run_on(
    pairs: torch.Tensor, run: Callable[..., LevelState], moving: Level, fixed: Level, state: LevelState
) -> LevelState:
    """``run(moving, fixed, state=...)`` on the pairs where ``pairs (B,)`` is set only; the others keep
    their state (one host sync)."""
    index = pairs.nonzero()[:, 0]
    if index.numel() == pairs.numel():
        return run(moving, fixed, state=state)
    if index.numel() == 0:
        return state
    part = run(_take_level(moving, index), _take_level(fixed, index), state=state.rows(index))
    return state.with_rows(index, part)


def _take_level(level: Level, index: torch.Tensor | slice) -> Level:
    """The pairs ``index`` of a level (a level shared by the batch stays as it is)."""
    if level.image.shape[0] == 1:
        return level
    return level.rows(index)


def _project(model: torch.Tensor, motion: MotionModel) -> torch.Tensor:
    """Closest map of the ``motion`` family to frame models ``(B, 3, 3)``, by a least-squares fit on
    a grid of frame points (exact when the model already belongs to the family)."""
    t = torch.linspace(-0.75, 0.75, 5, dtype=torch.float64, device=model.device)
    v, u = torch.meshgrid(t, t, indexing="ij")
    points = torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1).unsqueeze(0)
    m = model.to(torch.float64)
    homogeneous = torch.cat(
        [points.expand(m.shape[0], -1, -1), torch.ones_like(points[..., :1]).expand(m.shape[0], -1, -1)], -1
    )
    mapped = homogeneous @ m.transpose(1, 2)
    mapped = mapped[..., :2] / mapped[..., 2:]
    return FITS[motion.name](points.expand_as(mapped), mapped)


def _budgets(max_iterations: int | Sequence[int] | None, solver: str, n_levels: int) -> list[int]:
    """Iteration budget per level index (0 = finest)."""
    if max_iterations is None:
        coarse_to_fine = list(DEFAULT_ITERATIONS[solver])
    elif isinstance(max_iterations, int) and not isinstance(max_iterations, bool):
        coarse_to_fine = [max_iterations]
    else:
        coarse_to_fine = list(max_iterations)
    if not coarse_to_fine or any(
        isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in coarse_to_fine
    ):
        raise ValueError(
            f"max_iterations must be a non-negative int or a sequence of them, got {max_iterations!r}"
        )
    coarse_to_fine = coarse_to_fine[-n_levels:]
    coarse_to_fine = [coarse_to_fine[0]] * (n_levels - len(coarse_to_fine)) + coarse_to_fine
    return coarse_to_fine[::-1]


def _model_schedule(motion: MotionModel, n_levels: int) -> list[MotionModel]:
    """Model per level index (0 = finest): affine and homography start as a similarity on the
    coarsest level (and homography as affine on the next), where too few pixels pin down the
    extra degrees of freedom."""
    order = [MODELS["similarity"], MODELS["affine"]]
    schedule = [motion] * n_levels
    if motion.rank >= 3 and n_levels >= 3:
        ramp = [m for m in order if m.rank < motion.rank]
        for i, m in enumerate(ramp):
            schedule[n_levels - 1 - i] = m
    return schedule


def _run_level(
    moving: Level,
    fixed: Level,
    motion: MotionModel,
    state: LevelState,
    *,
    solver: str,
    loss: str,
    iterations: int,
    tolerance: float,
    min_overlap: float,
    robust: bool,
    max_pixels: int | None = None,
    accelerate: bool = False,
) -> LevelState:
    """Run ``solver`` on one level for every pair, in chunks on the CPU; returns the new state.
    ``max_pixels``: the most fixed samples per pair (default: ``_SAMPLES_PER_PARAMETER`` per
    parameter of ``motion``); ``accelerate``: as :func:`~.solvers.gauss_newton_level`."""
    if iterations == 0:
        return state
    if max_pixels is None:
        max_pixels = _SAMPLES_PER_PARAMETER * motion.num_params
    batch = state.model.shape[0]
    chunk = batch
    if fixed.image.device.type == "cpu":
        chunk = max(1, min(batch, _CPU_CHUNK_PIXELS // min(fixed.size[0] * fixed.size[1], max_pixels)))
    shared = fixed.image.shape[0] == 1
    shared_samples = sample_fixed(fixed, max_pixels) if shared and solver == "gauss_newton" else None
    pieces = []
    for start in range(0, batch, chunk):
        part = slice(start, min(start + chunk, batch))
        sub = state.rows(part)
        m_level = _take_level(moving, part)
        f_level = _take_level(fixed, part)
        if solver == "gauss_newton":
            samples = shared_samples if shared_samples is not None else sample_fixed(f_level, max_pixels)
            result = gauss_newton_level(
                m_level,
                samples,
                motion,
                sub,
                loss=loss,
                iterations=iterations,
                tolerance=tolerance,
                min_overlap=min_overlap,
                robust_c=TUKEY_C if robust else None,
                accelerate=accelerate,
            )
        else:
            result = adam_level(
                m_level,
                f_level,
                motion,
                sub,
                loss_fn=loss_function(loss),
                iterations=iterations,
                tolerance=tolerance,
                min_overlap=min_overlap,
            )
        pieces.append(result)
    return LevelState.cat(pieces)
