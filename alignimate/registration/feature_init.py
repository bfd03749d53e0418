"""Feature-based global candidates: keypoints, descriptors and RANSAC (:mod:`alignimate.core.features`,
:mod:`alignimate.core.consensus`) give each pair one more starting point for the engine.

Phase correlation (:mod:`.init`) looks at the whole image at once, so a large occluder, a busy
foreground or a partial overlap can pull all of its candidates away. Matched keypoints are local:
as long as enough of the scene is visible, RANSAC finds the motion of that part and ignores the rest.
The candidate it gives competes with the phase-correlation ones on the robust score
(:func:`~.scoring.candidate_scores`), so it is used only where it explains the images better.

Keypoints come from the finest level of each image (its working resolution, lightly smoothed);
those that fall outside an image's mask are dropped. A pair with too few consistent matches gets the
identity, which the phase-correlation candidates already cover.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from alignimate.core.consensus import ransac
from alignimate.core.features import Keypoints, detect_and_describe, match_descriptors, matched_points
from alignimate.core.fit import MIN_POINTS

from .frames import model_from_matrix
from .levels import Level

__all__ = ["MAX_KEYPOINTS", "feature_candidates"]

# Keypoints per image: the strongest are enough for RANSAC; 512 found no more pairs than 256 on the
# benchmark's occluded and partial cases, at more cost (docs/benchmarks.md, issue #13 section).
MAX_KEYPOINTS = 256
# RANSAC's inlier threshold as a fraction of the fixed image's longer side (at least 2 pixels):
# keypoints are good to about a pixel at any working size.
_THRESHOLD_FRACTION = 0.008
_MIN_THRESHOLD = 2.0
# The fewest inliers that make a candidate: the model's minimal sample plus this margin (a
# candidate only competes with the others on the judges' score, so a false one costs little). A
# zoomed-in, occluded view of a plain scene may keep only a few dozen keypoints and a handful of
# matches (docs/benchmarks.md, issue #13 section, second seed).
_INLIER_MARGIN = 2
# DoG contrast threshold for [0, 1] images: lower than SIFT's usual 0.01, so that faint, low-contrast
# scenes (a clock face, cells, a sky) keep enough keypoints beside a high-contrast occluder; the
# keypoints are still taken strongest first, and RANSAC discards the noise.
_DOG_THRESHOLD = 0.003
_SEED = 13


def _describe(level: Level, batch: int) -> tuple[Keypoints, torch.Tensor]:
    """Keypoints (their ``valid`` also requiring the mask) and descriptors of a level, expanded to
    ``batch`` when the level is shared by the batch."""
    keypoints, _, descriptors = detect_and_describe(level.image, MAX_KEYPOINTS, threshold=_DOG_THRESHOLD)
    valid = keypoints.valid
    if level.mask is not None:
        h, w = level.size
        x = keypoints.points[..., 0].round().long().clamp(0, w - 1)
        y = keypoints.points[..., 1].round().long().clamp(0, h - 1)
        inside = level.mask[:, 0].flatten(1).gather(1, y * w + x) > 0.5
        valid = valid & inside
    keypoints = replace(keypoints, valid=valid)
    if keypoints.points.shape[0] == 1 < batch:
        keypoints = Keypoints(*(t.expand(batch, *t.shape[1:]) for t in _fields(keypoints)))
        descriptors = descriptors.expand(batch, -1, -1)
    return keypoints, descriptors


def _fields(keypoints: Keypoints) -> tuple[torch.Tensor, ...]:
    return keypoints.points, keypoints.scales, keypoints.responses, keypoints.valid


def feature_candidates(
    moving: Level, fixed: Level, model: str, moving_size: tuple[int, int], fixed_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One candidate frame model ``T (B, 3, 3)`` per pair (fixed frame -> moving frame) from matched
    keypoints of the finest levels ``moving`` and ``fixed`` (``fixed`` may have batch 1) and a RANSAC
    fit of ``model``, and ``found (B,)``: whether at least the model's minimal sample plus
    ``_INLIER_MARGIN`` matches agree (where not, the candidate is the identity and should not be
    used)."""
    batch = moving.image.shape[0]
    with torch.no_grad():
        kp_m, desc_m = _describe(moving, batch)
        kp_f, desc_f = _describe(fixed, batch)
        matches, match_valid = match_descriptors(desc_m, desc_f, kp_m.valid, kp_f.valid)
        src, dst, weights = matched_points(kp_m, kp_f, matches, match_valid)
        threshold = max(_MIN_THRESHOLD, _THRESHOLD_FRACTION * max(fixed_size))
        # A fixed seed: the same inputs give the same candidates (register is deterministic on the CPU).
        generator = torch.Generator(device=src.device).manual_seed(_SEED)
        fit = ransac(src, dst, model, valid=weights > 0, threshold=threshold, generator=generator)
    found = fit.inlier_count >= MIN_POINTS[model] + _INLIER_MARGIN
    identity = torch.eye(3, dtype=fit.matrix.dtype, device=fit.matrix.device).expand_as(fit.matrix)
    fixed_H_moving = torch.where(found[:, None, None], fit.matrix, identity)
    return model_from_matrix(fixed_H_moving, moving_size, fixed_size), found
