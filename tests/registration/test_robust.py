"""Registration that holds on real photo series (issue #13): occluders, empty areas, masks done right,
several channels, and the robust weights the result reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from registration_cases import corner_error, make_case, make_condition_cases, to_tensor

from alignimate.registration import register
from alignimate.registration.levels import build_levels
from alignimate.registration.robust import (
    MIN_SCALE,
    agreement,
    photometric_fit,
    reject_near_outlier_blobs,
    robust_scale,
    sample_weights,
    tukey_weights,
)
from alignimate.registration.scoring import detail_level

MODELS = ("translation", "rigid", "similarity", "affine", "homography")


def _errors(result, cases) -> np.ndarray:
    size = cases[0].moving.shape[:2]
    return np.array(
        [corner_error(result.matrix[i].double().numpy(), c.fixed_H_moving, size) for i, c in enumerate(cases)]
    )


def _occlude(image: np.ndarray, rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreign rectangles of smooth random colour over about ``fraction`` of the image."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    out = image.copy()
    while mask.mean() < fraction:
        rh, rw = rng.integers(h // 8, h // 4), rng.integers(w // 8, w // 4)
        y, x = rng.integers(0, h - rh), rng.integers(0, w - rw)
        patch = rng.random((rh // 8 + 1, rw // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:rh, :rw]
        out[y : y + rh, x : x + rw] = patch if image.ndim == 3 else patch.mean(axis=2)
        mask[y : y + rh, x : x + rw] = True
    return out.astype(np.float32), mask


def _near_truth(cases, rng: np.random.Generator, pixels: float = 3.0) -> torch.Tensor:
    """Initial matrices a few pixels off the truth (the dense refinement's part of the problem)."""
    inits = []
    for c in cases:
        jitter = np.eye(3)
        jitter[:2, 2] = rng.uniform(-pixels, pixels, 2)
        inits.append(jitter @ c.fixed_H_moving)
    return torch.tensor(np.stack(inits), dtype=torch.float32)


@pytest.mark.parametrize("model", MODELS)
def test_occluders_get_no_say(model: str) -> None:
    rng = np.random.default_rng(3)
    names = ("astronaut", "coffee", "camera", "chelsea")
    cases = [
        make_case(rng, n, (128, 128), homography=model == "homography", matrix=_motion_of(model, rng))
        for n in names
    ]
    for c in cases:
        c.fixed, _ = _occlude(c.fixed, rng, 0.2)
    moving, fixed = to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])
    init = _near_truth(cases, rng)
    robust = register(moving, fixed, model, init=init, grey=True)
    plain = register(moving, fixed, model, init=init, grey=True, robust=False)
    robust_errors, plain_errors = _errors(robust, cases), _errors(plain, cases)
    assert np.median(robust_errors) < 0.35, robust_errors
    assert np.median(robust_errors) < 0.5 * np.median(plain_errors), (robust_errors, plain_errors)


def _motion_of(model: str, rng: np.random.Generator) -> np.ndarray | None:
    """A random motion the ``model`` can express (None: make_case's own similarity or homography)."""
    if model not in ("translation", "rigid"):
        return None
    angle = 0.0 if model == "translation" else rng.uniform(-0.2, 0.2)
    c, s = np.cos(angle), np.sin(angle)
    centre = 63.5
    matrix = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    matrix[:2, 2] = centre - matrix[:2, :2] @ [centre, centre] + rng.uniform(-8, 8, 2)
    return matrix


def test_weights_mark_the_occluder_and_agreement_counts_the_rest() -> None:
    rng = np.random.default_rng(4)
    case = make_case(rng, "astronaut", (128, 128))
    case.fixed, occluded = _occlude(case.fixed, rng, 0.2)
    result = register(*_pair(case), "similarity", init=_near_truth([case], rng), grey=True)
    weights = result.weights[0, 0].numpy()
    assert weights.shape == (128, 128)
    assert weights[occluded].mean() < 0.2
    assert weights[~occluded].mean() > 0.7
    assert 0.6 < float(result.agreement[0]) < 0.9  # about the unoccluded share of the overlap


def _pair(case) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor([case.moving]), to_tensor([case.fixed])


def test_batch_mixing_clean_and_occluded_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(5)
    cases = [make_case(rng, n, (96, 96)) for n in ("coffee", "camera", "clock")]
    cases[1].fixed, _ = _occlude(cases[1].fixed, rng, 0.2)
    moving, fixed = to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])
    together = register(moving, fixed, "similarity", grey=True)
    assert torch.equal(together.matrix, register(moving, fixed, "similarity", grey=True).matrix)
    for i in range(3):
        alone = register(moving[i : i + 1], fixed[i : i + 1], "similarity", grey=True)
        # An occluded pair may start from a RANSAC fit, whose hypotheses (their number adapts to the
        # chunk of pairs drawn together) depend on the batch; the refinement then lands on the same
        # alignment to within its stopping tolerance (0.01 px of corner motion), not to the bit.
        moved = _corner_shift(together.matrix[i], alone.matrix[0], cases[i].moving.shape[:2])
        assert moved < 0.01
        assert torch.allclose(together.agreement[i], alone.agreement[0], atol=1e-3)


def _corner_shift(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]) -> float:
    """Largest distance between the moving image's corners mapped by ``a`` and by ``b``."""
    h, w = size
    corners = torch.tensor([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=a.dtype)
    pa, pb = corners @ a.T, corners @ b.T
    return float((pa[:, :2] / pa[:, 2:] - pb[:, :2] / pb[:, 2:]).norm(dim=1).max())


def _with_empty_border(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    valid = np.ones((h, w), bool)
    valid[: rng.integers(h // 8, h // 4)] = False
    valid[:, w - rng.integers(w // 8, w // 4) :] = False
    out = image.copy()
    out[~valid] = 0.0
    return out, valid


@pytest.mark.parametrize("model", MODELS)
def test_empty_areas_are_ignored_without_being_told(model: str) -> None:
    rng = np.random.default_rng(6)
    cases = [
        make_case(rng, n, (128, 128), homography=model == "homography", matrix=_motion_of(model, rng))
        for n in ("coffee", "astronaut")
    ]
    for c in cases:
        c.fixed, _ = _with_empty_border(c.fixed, rng)
    moving, fixed = to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])
    result = register(moving, fixed, model, grey=True)
    assert np.median(_errors(result, cases)) < 0.1
    # The robust weights reject much of an empty border by themselves (its rim is a blob of
    # outliers); without them the empty areas must be recognised as such.
    plain = register(moving, fixed, model, grey=True, robust=False)
    leaking = register(moving, fixed, model, grey=True, robust=False, ignore_empty=False)
    assert np.median(_errors(plain, cases)) < 0.1
    assert np.median(_errors(leaking, cases)) > 2 * np.median(_errors(plain, cases))


def test_masked_pixels_do_not_leak_into_the_result() -> None:
    rng = np.random.default_rng(7)
    case = make_case(rng, "astronaut", (128, 128))
    moving, fixed = _pair(case)
    mask = torch.ones(1, 1, 128, 128)
    mask[..., 40:80, 30:90] = 0
    a, b = fixed.clone(), fixed.clone()
    a[..., 40:80, 30:90] = 0.0
    b[..., 40:80, 30:90] = torch.rand(1, 3, 40, 60)
    first = register(moving, a, "similarity", fixed_mask=mask, grey=True, ignore_empty=False)
    second = register(moving, b, "similarity", fixed_mask=mask, grey=True, ignore_empty=False)
    assert torch.allclose(first.matrix, second.matrix, atol=1e-5)
    assert corner_error(first.matrix[0].double().numpy(), case.fixed_H_moving, (128, 128)) < 0.3


def _blobs(points: list[tuple[float, float]], size: int = 96, sigma: float = 5.0) -> torch.Tensor:
    """One channel per point: a Gaussian blob, ``(1, K, size, size)``."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    maps = [torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in points]
    return torch.stack(maps)[None].float()


def test_every_channel_counts_and_matches_only_its_partner() -> None:
    # Two keypoints; summed into one channel the pair is symmetric and a 180-degree turn fits too.
    fixed = _blobs([(30.0, 48.0), (66.0, 48.0)])
    moving = _blobs([(34.0, 50.0), (70.0, 50.0)])  # the same points shifted by (4, 2)
    result = register(moving, fixed, "rigid", loss="mse", robust=False, ignore_empty=False)
    shift = result.matrix[0, :2, 2].numpy()
    assert np.allclose(shift, [-4.0, -2.0], atol=0.2), result.matrix
    # Swapped channels: channel-wise matching must turn the pair round, not keep it.
    swapped = register(moving.flip(1), fixed, "rigid", loss="mse", robust=False, ignore_empty=False)
    assert swapped.matrix[0, 0, 0] < -0.9, swapped.matrix


def test_robust_parts_against_references() -> None:
    rng = np.random.default_rng(8)
    residual = torch.tensor(rng.normal(0, 0.05, (3, 4000)))
    weight = torch.ones_like(residual)
    weight[1, :1000] = 0.0
    scale = robust_scale(residual, weight)
    assert torch.allclose(scale, torch.full((3,), 0.05, dtype=torch.float64), rtol=0.1)
    assert robust_scale(torch.zeros(1, 10), torch.ones(1, 10)).item() == pytest.approx(MIN_SCALE)
    assert robust_scale(torch.ones(1, 10), torch.zeros(1, 10)).item() == pytest.approx(MIN_SCALE)
    w = tukey_weights(torch.tensor([[0.0, 1.0, 4.685, 10.0]]), torch.tensor([1.0]))
    assert torch.allclose(w, torch.tensor([[1.0, (1 - 1 / 4.685**2) ** 2, 0.0, 0.0]]))
    values = torch.tensor(rng.random((2, 50)))
    reference = 0.7 * values + 0.1
    gain, bias = photometric_fit(reference, values, torch.ones_like(values))
    assert torch.allclose(gain, torch.tensor([0.7, 0.7], dtype=torch.float64))
    assert torch.allclose(bias, torch.tensor([0.1, 0.1], dtype=torch.float64))
    robust = torch.tensor([[1.0, 0.6, 0.2, 0.0]])
    assert agreement(robust, torch.ones_like(robust)).item() == 0.5


def test_robust_weights_are_differentiable() -> None:
    residual = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.5, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r, s: tukey_weights(r, s), (residual, scale))
    values = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    reference = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v, r: photometric_fit(v, r, weight), (values, reference))


def _partial_overlap_cases(count: int) -> list:
    """Similarities that shift the moving view by 30-45 % of the width: half the scene is shared."""
    import cv2
    from registration_cases import PHOTOS

    rng = np.random.default_rng(21)
    cases = []
    for i in range(count):
        angle, scale = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
        matrix = np.eye(3)
        matrix[:2] = cv2.getRotationMatrix2D((127.5, 127.5), angle, scale)
        matrix[0, 2] += rng.uniform(0.3, 0.45) * rng.choice([-1, 1]) * 256
        matrix[1, 2] += rng.uniform(-0.1, 0.1) * 256
        cases.append(make_case(rng, PHOTOS[i % len(PHOTOS)], (256, 256), matrix=matrix))
    return cases


def test_feature_candidates_hold_where_phase_correlation_is_misled() -> None:
    cases = _partial_overlap_cases(16)
    moving, fixed = to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])
    with_features = _errors(register(moving, fixed, "similarity", grey=True), cases)
    without = _errors(register(moving, fixed, "similarity", grey=True, features=False), cases)
    assert (with_features < 2).mean() >= 0.8, with_features
    assert (with_features < 2).sum() > (without < 2).sum(), (with_features, without)
    # Where both succeed the features change nothing: the dense refinement decides the precision.
    both = (with_features < 2) & (without < 2)
    assert np.abs(with_features[both] - without[both]).max() < 0.05


def test_feature_candidate_is_close_to_the_truth() -> None:
    from alignimate.registration.feature_init import feature_candidates
    from alignimate.registration.frames import matrix_from_model
    from alignimate.registration.levels import build_levels

    rng = np.random.default_rng(22)
    cases = [make_case(rng, name, (256, 256), homography=True) for name in ("astronaut", "coffee")]
    moving, fixed = to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])
    levels = build_levels(moving, None, 1)[0], build_levels(fixed, None, 1)[0]
    model, found = feature_candidates(*levels, "homography", (256, 256), (256, 256))
    assert found.all()
    matrices = matrix_from_model(model, (256, 256), (256, 256)).numpy()
    errors = [corner_error(m, c.fixed_H_moving, (256, 256)) for m, c in zip(matrices, cases, strict=True)]
    assert max(errors) < 1.5, errors


def test_robust_start_rejects_a_bright_occluder_that_least_squares_would_keep() -> None:
    # A fifth of the samples is a flat bright occluder: a least-squares gain and bias bend towards it,
    # every residual then looks alike and Tukey keeps everything; the robust start does not.
    gen = torch.Generator().manual_seed(3)
    reference = torch.rand(1, 4000, generator=gen, dtype=torch.float64)
    values = 0.8 * reference + 0.1 + 0.01 * torch.randn(1, 4000, generator=gen, dtype=torch.float64)
    occluded = torch.zeros(1, 4000, dtype=torch.bool)
    occluded[:, ::5] = True
    values = torch.where(occluded, torch.ones_like(values), values)
    weight = torch.ones_like(values)

    gain, bias = photometric_fit(values, reference, weight)
    residual = values - gain[:, None] * reference - bias[:, None]
    least_squares = tukey_weights(residual, robust_scale(residual, weight))
    assert float(least_squares[occluded].mean()) > 0.3  # the failure being guarded against

    robust = sample_weights(values, reference, weight, photometric=True)  # no previous weights: robust start
    assert float(robust[occluded].mean()) < 0.05
    assert float(robust[~occluded].mean()) > 0.85


def test_final_weights_fitted_on_a_subset_agree_with_the_full_fit() -> None:
    # The final per-pixel weights take their gain, bias and scale from every fourth sample: the
    # same occluder is rejected and the weights of the rest barely move.
    gen = torch.Generator().manual_seed(5)
    reference = torch.rand(2, 8192, generator=gen, dtype=torch.float64)
    values = 1.2 * reference - 0.05 + 0.02 * torch.randn(2, 8192, generator=gen, dtype=torch.float64)
    occluded = torch.zeros(2, 8192, dtype=torch.bool)
    occluded[:, 1000:2600] = True
    values = torch.where(occluded, torch.full_like(values, 1.6), values)
    weight = torch.ones_like(values)
    full = sample_weights(values, reference, weight, photometric=True)
    subset = sample_weights(values, reference, weight, photometric=True, fit_stride=4)
    assert float(subset[occluded].mean()) < 0.05
    assert float((subset - full).abs().mean()) < 0.02
    assert torch.equal(agreement(subset, weight) > 0.75, agreement(full, weight) > 0.75)


def test_detail_level_removes_smooth_content_and_ignores_masked_pixels() -> None:
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    ramp = (0.01 * x + 0.02 * y + 0.1).reshape(1, 1, 32, 40).double()
    level = build_levels(ramp, None, 1)[0]
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    assert detail_level(level).image[inner].abs().max() < 1e-6  # a plane has no detail
    # Garbage outside the mask must not leak into the detail inside it.
    mask = torch.ones_like(ramp)
    mask[..., :, 20:] = 0
    garbage = torch.where(mask > 0, ramp, torch.rand(ramp.shape, dtype=torch.float64))
    masked = detail_level(build_levels(garbage, mask, 1)[0])
    assert masked.image[..., 3:-3, 3:15].abs().max() < 1e-6  # garbage is up to 1


def test_unmoved_candidate_and_held_start_keep_low_contrast_occluded_pairs() -> None:
    # Benchmark pairs (256 px, seed 0) lost before the "no motion" candidate (a blurred clock face
    # under occluders, where phase correlation has no clear peak: 20, 56, 68) and before doubtful
    # pairs could keep their start (a rocket whose keypoint fit, 0.4 px off, the refinement pulled
    # 12 px away: 75).
    cases = make_condition_cases("occluded", (256, 256), 76, 0)
    chosen = [cases[i] for i in (20, 56, 68, 75)]
    result = register(
        to_tensor([c.moving for c in chosen]), to_tensor([c.fixed for c in chosen]), "similarity", grey=True
    )
    assert (_errors(result, chosen) < 2.0).all(), _errors(result, chosen)


def test_low_texture_photos_hold_under_occluders() -> None:
    # Benchmark pairs (tests/registration/registration_cases.py, 256 px, seed 0) that the engine lost
    # before the robust start and the detail judge: a rocket against a smooth sky, the moon, the
    # Hubble deep field and bricks, each with 10-25 % of the fixed view covered.
    cases = make_condition_cases("occluded", (256, 256), 48, 0)
    chosen = [cases[i] for i in (3, 15, 30, 45, 47)]
    result = register(
        to_tensor([c.moving for c in chosen]), to_tensor([c.fixed for c in chosen]), "similarity", grey=True
    )
    assert (_errors(result, chosen) < 2.0).all()


def test_samples_near_a_blob_of_outliers_are_rejected_and_thin_lines_are_not() -> None:
    weights = torch.ones(2, 2, 12, 12)  # pairs x channels x grid
    weights[0, 0, 4:8, 4:8] = 0.0  # an occluder: a blob
    weights[0, 1, :, 6] = 0.1  # a misaligned edge: a line one sample wide
    weights[1, 0, 0:3, 9:12] = 0.2  # a blob in a corner (the filters' borders)
    weights[1, 1] = torch.linspace(0.5, 1.0, 144).view(12, 12)  # all agreeing
    out = reject_near_outlier_blobs(weights.reshape(2, -1), (12, 12)).view(2, 2, 12, 12)
    rejected = torch.zeros(12, 12, dtype=torch.bool)
    rejected[3:9, 3:9] = True  # the blob's core (5:7) and two samples around it
    assert (out[0, 0][rejected] == 0).all() and (out[0, 0][~rejected] == 1).all()
    assert torch.equal(out[0, 1], weights[0, 1])
    corner = torch.zeros(12, 12, dtype=torch.bool)
    corner[0:4, 8:12] = True  # core (1, 10) only, reaching two samples: rows 0-3, columns 8-11
    assert (out[1, 0][corner] == 0).all() and (out[1, 0][~corner] == 1).all()
    assert torch.equal(out[1, 1], weights[1, 1])
    alone = [reject_near_outlier_blobs(w.reshape(1, -1), (12, 12)) for w in weights]
    assert torch.equal(torch.cat(alone), out.reshape(2, -1))


def test_rims_of_occluders_do_not_pull_homographies() -> None:
    # Benchmark pairs (256 px, seed 0, homography) that ended 2.6-2.7 px off while every sample on
    # an occluder's blurred rim that Tukey's weight kept pulled on the estimate (0.07 and 0.39 px
    # now; both over 2 px with reject_near_outlier_blobs replaced by the identity, checked).
    cases = make_condition_cases("occluded", (256, 256), 21, 0, homography=True)
    chosen = [cases[i] for i in (15, 20)]
    result = register(
        to_tensor([c.moving for c in chosen]), to_tensor([c.fixed for c in chosen]), "homography", grey=True
    )
    assert (_errors(result, chosen) < 1.0).all(), _errors(result, chosen)


def test_few_matches_still_make_a_feature_candidate() -> None:
    # The benchmark's second seed, occluded pair 111: a zoomed-in, rotated, partly occluded view of the
    # rocket keeps few keypoints and a handful of right matches, and phase correlation's rotation
    # estimate is far off (docs/benchmarks.md, issue #13, second seed). Four agreeing matches must
    # make a similarity candidate.
    from alignimate.registration.feature_init import feature_candidates
    from alignimate.registration.frames import matrix_from_model
    from alignimate.registration.levels import grey

    case = make_condition_cases("occluded", (256, 256), 112, seed=1)[111]
    moving, fixed = to_tensor([case.moving]), to_tensor([case.fixed])
    levels = build_levels(grey(moving), None, 1)[0], build_levels(grey(fixed), None, 1)[0]
    model, found = feature_candidates(*levels, "similarity", (256, 256), (256, 256))
    assert bool(found[0])
    candidate = matrix_from_model(model.double(), (256, 256), (256, 256))[0].numpy()
    assert corner_error(candidate, case.fixed_H_moving, (256, 256)) < 2.0
    result = register(moving, fixed, "similarity", grey=True)
    assert corner_error(result.matrix[0].double().numpy(), case.fixed_H_moving, (256, 256)) < 2.0
