"""Tests for alignimate.core.consensus: accuracy against OpenCV's RANSAC estimators on synthetic
correspondences with 50 % outliers, batch = loop, per-problem valid masks, degenerate inputs, dtypes,
determinism, the hypothesis-count formula and the sampler."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignimate.core import consensus as ransac_module
from alignimate.core.consensus import (
    RansacResult,
    estimate_affine_ransac,
    estimate_homography_ransac,
    estimate_rigid_ransac,
    estimate_similarity_ransac,
    estimate_translation_ransac,
    ransac,
    ransac_iterations,
)
from alignimate.core.fit import estimate_affine, estimate_homography
from alignimate.core.transforms import homography_from_points, transform_points

MODELS = ["translation", "rigid", "similarity", "affine", "homography"]
SAMPLE_SIZE = {"translation": 1, "rigid": 2, "similarity": 2, "affine": 3, "homography": 4}
SIZE = 256.0
CORNERS = torch.tensor([[[0.0, 0.0], [SIZE, 0.0], [SIZE, SIZE], [0.0, SIZE]]], dtype=torch.float64)


def true_matrices(model: str, batch: int, g: torch.Generator) -> torch.Tensor:
    """``(B, 3, 3)`` float64 ground truth about the image centre: rotation up to 30 degrees, scale
    0.7-1.4, shift up to 20 px; affine adds up to 15 % shear/anisotropy, homography moves the mapped
    corners by up to 20 px more."""

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    angle = (2 * uniform(batch) - 1) * math.radians(30)
    scale = 0.7 + 0.7 * uniform(batch)
    shift = (2 * uniform(batch, 2) - 1) * 20
    if model == "translation":
        angle, scale = angle * 0, scale * 0 + 1
    elif model == "rigid":
        scale = scale * 0 + 1
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack([c, s, -s, c], dim=-1).reshape(batch, 2, 2)
    if model in ("affine", "homography"):
        linear = linear @ (torch.eye(2, dtype=torch.float64) + (2 * uniform(batch, 2, 2) - 1) * 0.15)
    centre = torch.full((2,), (SIZE - 1) / 2, dtype=torch.float64)
    m = torch.eye(3, dtype=torch.float64).repeat(batch, 1, 1)
    m[:, :2, :2] = linear
    m[:, :2, 2] = centre - linear @ centre + shift
    if model == "homography":
        moved = transform_points(m, CORNERS) + (2 * uniform(batch, 4, 2) - 1) * 20
        m = homography_from_points(CORNERS.expand(batch, -1, -1), moved)
    return m


def make_problems(
    model: str, batch: int, n: int, seed: int, outlier_ratio: float = 0.5, sigma: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``src, dst`` ``(B, N, 2)`` float64, the true matrices ``(B, 3, 3)`` and the inlier labels
    ``(B, N)``: src uniform in the 256x256 image, inliers = true map + N(0, sigma^2) noise, outliers
    uniform in the image."""
    g = torch.Generator().manual_seed(seed)
    truth = true_matrices(model, batch, g)
    src = torch.rand(batch, n, 2, generator=g, dtype=torch.float64) * SIZE
    dst = transform_points(truth, src) + sigma * torch.randn(batch, n, 2, generator=g, dtype=torch.float64)
    outlier = torch.rand(batch, n, generator=g, dtype=torch.float64) < outlier_ratio
    junk = torch.rand(batch, n, 2, generator=g, dtype=torch.float64) * SIZE
    return src, torch.where(outlier[..., None], junk, dst), truth, ~outlier


def corner_error(matrix: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean distance between the image corners mapped by ``matrix`` and by ``truth``."""
    return (
        (transform_points(matrix.double(), CORNERS) - transform_points(truth, CORNERS)).norm(dim=-1).mean(-1)
    )


def recall_precision(found: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hits = (found & labels).sum(dim=1).double()
    return hits / labels.sum(dim=1).clamp(min=1), hits / found.sum(dim=1).clamp(min=1)


def opencv_fit(model: str, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's RANSAC estimate (3x3) and inlier mask for one problem, threshold 3 px."""
    src, dst = src.astype(np.float32), dst.astype(np.float32)
    if model == "similarity":
        m, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3)
    elif model == "affine":
        m, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3)
    else:
        m, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3)
    if m.shape[0] == 2:
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    return m, mask.ravel().astype(bool)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_finds_inliers_and_matches_opencv(model: str) -> None:
    src, dst, truth, labels = make_problems(model, 20, 200, seed=SAMPLE_SIZE[model])
    result = ransac(src.float(), dst.float(), model, generator=torch.Generator().manual_seed(0))
    recall, precision = recall_precision(result.inliers, labels)
    assert recall.min() >= 0.95 and precision.min() >= 0.95, (recall.min(), precision.min())
    ours = corner_error(result.matrix, truth)

    cv_error, cv_recall = [], []
    for b in range(src.shape[0]):
        m, mask = opencv_fit(model, src[b].numpy(), dst[b].numpy())
        cv_error.append(corner_error(torch.from_numpy(m)[None], truth[b : b + 1]).item())
        cv_recall.append(recall_precision(torch.from_numpy(mask)[None], labels[b : b + 1])[0].item())
    # At least about as many true inliers as OpenCV, and corners about as accurate.
    assert recall.mean().item() >= np.mean(cv_recall) - 0.01
    assert ours.median().item() <= 1.5 * np.median(cv_error) + 0.1, (ours.median(), np.median(cv_error))
    assert ours.max().item() < 1.0  # a few tenths of a pixel with sigma = 0.5 px and ~100 inliers


@pytest.mark.parametrize("model", ["translation", "rigid"])
def test_simple_models_recover_truth(model: str) -> None:
    src, dst, truth, labels = make_problems(model, 8, 150, seed=11)
    result = ransac(src, dst, model, generator=torch.Generator().manual_seed(1))
    recall, precision = recall_precision(result.inliers, labels)
    assert recall.min() >= 0.95 and precision.min() >= 0.95
    assert corner_error(result.matrix, truth).max() < 0.5


def test_result_fields_are_consistent() -> None:
    src, dst, _, _ = make_problems("affine", 4, 100, seed=5)
    threshold = 2.0
    result = estimate_affine_ransac(src, dst, threshold=threshold, generator=torch.Generator().manual_seed(2))
    assert isinstance(result, RansacResult)
    assert result.matrix.shape == (4, 3, 3) and result.inliers.shape == (4, 100)
    assert result.inlier_count.dtype == torch.int64
    torch.testing.assert_close(result.inlier_count, result.inliers.sum(dim=1))
    err2 = ((transform_points(result.matrix, src) - dst) ** 2).sum(dim=-1)
    torch.testing.assert_close(result.inliers, err2 <= threshold**2)
    torch.testing.assert_close(result.score, err2.clamp(max=threshold**2).mean(dim=1))
    with pytest.raises(AttributeError):
        result.score = result.score  # type: ignore[misc]  # frozen


def test_wrappers_equal_ransac() -> None:
    src, dst, _, _ = make_problems("homography", 2, 60, seed=6)
    wrappers = {
        "translation": estimate_translation_ransac,
        "rigid": estimate_rigid_ransac,
        "similarity": estimate_similarity_ransac,
        "affine": estimate_affine_ransac,
        "homography": estimate_homography_ransac,
    }
    for model, wrapper in wrappers.items():
        a = wrapper(src, dst, iterations=50, generator=torch.Generator().manual_seed(3))
        b = ransac(src, dst, model, iterations=50, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(a.matrix, b.matrix, rtol=0, atol=0)


# --------------------------------------------------------------------------- batching and masks


@pytest.mark.parametrize("model", ["similarity", "homography"])
def test_batch_equals_loop(model: str) -> None:
    # Different random samples in the two runs, so the comparison is on the converged result:
    # enough hypotheses find an all-inlier sample in both, and the final least-squares refit on the
    # same inlier set gives the same matrix.
    src, dst, _, _ = make_problems(model, 6, 150, seed=21)
    batched = ransac(src, dst, model, iterations=300, generator=torch.Generator().manual_seed(0))
    for b in range(src.shape[0]):
        single = ransac(
            src[b : b + 1],
            dst[b : b + 1],
            model,
            iterations=300,
            generator=torch.Generator().manual_seed(b + 1),
        )
        assert torch.equal(single.inliers[0], batched.inliers[b])
        torch.testing.assert_close(single.matrix[0], batched.matrix[b], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(single.score[0], batched.score[b], rtol=1e-6, atol=1e-9)


def test_per_element_valid_counts() -> None:
    src, dst, truth, labels = make_problems("similarity", 3, 200, seed=8, outlier_ratio=0.3)
    counts = [200, 90, 25]
    valid = torch.arange(200)[None, :] < torch.tensor(counts)[:, None]
    # Padding that would dominate the fit if it counted: perfect inliers of another transform, and NaN.
    other = torch.tensor([[0.5, 0.0, 10.0], [0.0, 0.5, 10.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    dst = torch.where(valid[..., None], dst, transform_points(other[None], src))
    src[2, 150:] = float("nan")
    result = ransac(src, dst, "similarity", valid=valid, generator=torch.Generator().manual_seed(4))
    assert not (result.inliers & ~valid).any()
    assert torch.isfinite(result.matrix).all() and torch.isfinite(result.score).all()
    recall, precision = recall_precision(result.inliers, labels & valid)
    assert recall.min() >= 0.95 and precision.min() >= 0.95
    assert corner_error(result.matrix, truth).max() < 1.5
    # Each problem alone, cut to its valid points, finds the same inliers.
    for b, count in enumerate(counts):
        alone = ransac(src[b : b + 1, :count], dst[b : b + 1, :count], "similarity")
        assert torch.equal(alone.inliers[0], result.inliers[b, :count])
        torch.testing.assert_close(alone.matrix[0], result.matrix[b], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(alone.score[0], result.score[b], rtol=1e-9, atol=1e-12)


def test_valid_mask_broadcasts_and_non_finite_points_are_invalid() -> None:
    src, dst, _, _ = make_problems("affine", 2, 80, seed=9)
    valid = torch.ones(1, 80, dtype=torch.bool)
    valid[0, :10] = False
    dst[1, 20] = float("inf")
    result = ransac(src, dst, "affine", valid=valid, generator=torch.Generator().manual_seed(0))
    assert not result.inliers[:, :10].any() and not result.inliers[1, 20]
    assert torch.isfinite(result.matrix).all()


def test_batch_of_one_broadcasts() -> None:
    src, dst, _, _ = make_problems("similarity", 3, 60, seed=10)
    a = ransac(src[:1], dst, "similarity", iterations=200, generator=torch.Generator().manual_seed(0))
    b = ransac(
        src[:1].expand(3, -1, -1),
        dst,
        "similarity",
        iterations=200,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(a.matrix, b.matrix, rtol=0, atol=0)


@pytest.mark.parametrize("model", MODELS)
def test_too_few_points(model: str) -> None:
    s = SAMPLE_SIZE[model]
    src, dst, _, _ = make_problems("similarity", 3, 30, seed=12, outlier_ratio=0.0)
    valid = torch.ones(3, 30, dtype=torch.bool)
    valid[1, s - 1 :] = False  # one point short of a minimal sample
    valid[2] = False
    result = ransac(src, dst, model, valid=valid, generator=torch.Generator().manual_seed(0))
    eye = torch.eye(3, dtype=torch.float64)
    for b in (1, 2):
        torch.testing.assert_close(result.matrix[b], eye)
        assert result.inlier_count[b] == 0 and not result.inliers[b].any()
        assert result.score[b] == math.inf
    assert torch.isfinite(result.score[0])
    # Fewer points than a sample in the whole tensor, and an empty batch.
    few = ransac(src[:, : s - 1], dst[:, : s - 1], model) if s > 1 else None
    if few is not None:
        assert (few.score == math.inf).all() and (few.inlier_count == 0).all()
    empty = ransac(src[:0], dst[:0], model)
    assert empty.matrix.shape == (0, 3, 3) and empty.score.shape == (0,)


# --------------------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("model", MODELS)
def test_all_outliers(model: str) -> None:
    g = torch.Generator().manual_seed(13)
    src = torch.rand(4, 200, 2, generator=g) * SIZE
    dst = torch.rand(4, 200, 2, generator=g) * SIZE
    result = ransac(src, dst, model, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.matrix).all()
    assert (result.inlier_count <= 20).all()  # chance agreements only
    assert ((result.score > 0.8 * 9.0) & (result.score <= 9.0)).all()


@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_collinear_and_coincident_points(model: str) -> None:
    x = torch.linspace(0.0, 255.0, 40)
    line = torch.stack([x, 0.5 * x + 3.0], dim=-1)
    src = torch.stack([line, torch.full_like(line, 7.0)])  # a line, and one point repeated
    dst = 1.1 * src + torch.tensor([3.0, -2.0])
    result = ransac(src, dst, model, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.matrix).all() and torch.isfinite(result.score).all()
    assert (result.inlier_count == 40).all()
    torch.testing.assert_close(transform_points(result.matrix, src), dst, rtol=0, atol=1e-3)


def test_float64_and_float32() -> None:
    src, dst, truth, _ = make_problems("homography", 4, 150, seed=14)
    r64 = ransac(src, dst, "homography", generator=torch.Generator().manual_seed(0))
    r32 = ransac(src.float(), dst.float(), "homography", generator=torch.Generator().manual_seed(0))
    assert r64.matrix.dtype == torch.float64 and r64.score.dtype == torch.float64
    assert r32.matrix.dtype == torch.float32
    assert torch.equal(r64.inliers, r32.inliers)
    assert corner_error(r64.matrix, truth).max() < 1.0
    torch.testing.assert_close(r32.matrix.double(), r64.matrix, rtol=1e-3, atol=1e-3)


def test_integer_points_use_default_dtype() -> None:
    src = torch.randint(0, 256, (2, 40, 2), generator=torch.Generator().manual_seed(15))
    result = ransac(src, src + 5, "affine")
    assert result.matrix.dtype == torch.get_default_dtype()
    assert (result.inlier_count == 40).all()


def test_deterministic_with_generator() -> None:
    src, dst, _, _ = make_problems("affine", 5, 120, seed=16)
    runs = [
        ransac(src, dst, "affine", iterations=40, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].matrix, runs[1].matrix) and torch.equal(runs[0].inliers, runs[1].inliers)
    torch.manual_seed(3)
    a = ransac(src, dst, "affine", iterations=40)
    torch.manual_seed(3)
    b = ransac(src, dst, "affine", iterations=40)
    assert torch.equal(a.matrix, b.matrix)


def test_chunking_does_not_change_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst, _, labels = make_problems("affine", 4, 100, seed=17)
    monkeypatch.setattr(ransac_module, "_CHUNK_PAIRS", 1)  # one hypothesis per chunk
    result = ransac(src, dst, "affine", iterations=200, generator=torch.Generator().manual_seed(0))
    recall, precision = recall_precision(result.inliers, labels)
    assert recall.min() >= 0.95 and precision.min() >= 0.95


def test_local_optimization_and_final_refit() -> None:
    src, dst, truth, _ = make_problems("homography", 12, 200, seed=18)
    # Few hypotheses, so the best one is rough: the LO refits must improve on it.
    lo = ransac(src, dst, "homography", iterations=30, generator=torch.Generator().manual_seed(0))
    plain = ransac(
        src,
        dst,
        "homography",
        iterations=30,
        local_optimization=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert lo.score.mean() < plain.score.mean()
    assert corner_error(lo.matrix, truth).median() <= corner_error(plain.matrix, truth).median()
    # Without LO the final least-squares refit still averages the noise of ~100 inliers away; a
    # 4-point hypothesis alone is off by a pixel or more at the corners.
    plain = ransac(
        src, dst, "homography", local_optimization=False, generator=torch.Generator().manual_seed(0)
    )
    assert corner_error(plain.matrix, truth).median() < 0.4
    # With LO the result is a fixed point: the weighted fit on its own inliers gives it back.
    lo = ransac(src, dst, "homography", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        estimate_homography(src, dst, lo.inliers.double()), lo.matrix, rtol=1e-9, atol=1e-9
    )


def test_refit_is_kept_only_if_it_lowers_the_cost() -> None:
    src, dst, truth, _ = make_problems("affine", 3, 200, seed=22)
    valid = torch.ones(3, 200, dtype=torch.bool)
    found = torch.ones(3, dtype=torch.bool)
    t2 = 9.0

    def cost_of(m: torch.Tensor) -> torch.Tensor:
        return ransac_module._msac_cost(ransac_module._squared_errors(m[:, None], src, dst, True), valid, t2)[
            :, 0
        ]

    # Selecting every point (half of them outliers) gives a refit far worse than the truth: rejected.
    kept, kept_cost = ransac_module._refit_if_better(
        estimate_affine, src, dst, valid, found, truth, cost_of(truth), t2, 1e12, strict=True
    )
    assert torch.equal(kept, truth) and torch.equal(kept_cost, cost_of(truth))
    # Refitting a slightly wrong model on its inliers improves it: accepted.
    rough = truth.clone()
    rough[:, 0, 2] += 1.0
    better, better_cost = ransac_module._refit_if_better(
        estimate_affine, src, dst, valid, found, rough, cost_of(rough), t2, t2, strict=True
    )
    assert (better_cost < cost_of(rough)).all()
    assert corner_error(better, truth).max() < corner_error(rough, truth).min()
    # Problems without a model are left alone.
    same, _ = ransac_module._refit_if_better(
        estimate_affine, src, dst, valid, ~found, rough, cost_of(rough), t2, t2, strict=True
    )
    assert torch.equal(same, rough)


def test_implausible_hypotheses_are_rejected() -> None:
    eye = torch.eye(3, dtype=torch.float64)
    matrices = torch.stack([eye, eye * 1e-4, eye * 1e3, eye, eye, eye])
    matrices[1, 2, 2] = 1.0  # det 1e-8: the image squashed to a point
    matrices[2, 2, 2] = 1.0  # det 1e6 (on the limit: kept)
    matrices[3, 0, 0] = float("nan")
    matrices[4, 1, 2] = float("inf")
    matrices[5, 1] = matrices[5, 0]  # singular: everything on a line
    assert ransac_module._plausible(matrices).tolist() == [True, False, True, False, False, False]
    # All destinations at one point: every hypothesis collapses the image, so there is no model.
    src = torch.rand(2, 50, 2, generator=torch.Generator().manual_seed(23)) * SIZE
    dst = torch.full_like(src, 100.0)
    for model in ("similarity", "affine", "homography"):
        result = ransac(src, dst, model, generator=torch.Generator().manual_seed(0))
        assert (result.score == math.inf).all() and (result.inlier_count == 0).all()
        torch.testing.assert_close(result.matrix, eye.float().expand(2, 3, 3))


def test_rejects_bad_arguments() -> None:
    p = torch.rand(1, 10, 2)
    with pytest.raises(ValueError, match="model"):
        ransac(p, p, "projective")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        ransac(p, p, threshold=0.0)
    with pytest.raises(ValueError, match="iterations"):
        ransac(p, p, iterations=0)
    with pytest.raises(ValueError, match="src_points"):
        ransac(p[0], p)
    with pytest.raises(ValueError, match="same number"):
        ransac(p, p[:, :5])
    with pytest.raises(ValueError, match="valid"):
        ransac(p, p, valid=torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="confidence"):
        ransac(p, p, confidence=1.0)


# --------------------------------------------------------------------------- hypothesis count


def test_iteration_formula_values() -> None:
    # The worked example of ../shared/research/round2.md: s = 4, w = 0.3, p = 0.99 -> about 567.
    assert ransac_iterations(4, 0.3, 0.99, max_iterations=10_000) == 567
    assert ransac_iterations(2, 0.25, 0.999) == math.ceil(math.log(0.001) / math.log(1 - 0.25**2)) == 108
    assert ransac_iterations(3, 0.25, 0.999) == 439
    assert ransac_iterations(4, 0.25, 0.999) == 1000  # the formula asks for 1765; capped
    assert ransac_iterations(4, 0.0, 0.999) == 1000
    assert ransac_iterations(2, 1.0, 0.999) == 1


@settings(max_examples=200, deadline=None)
@given(
    s=st.integers(1, 5),
    w=st.floats(0.05, 0.99),
    p=st.floats(0.5, 0.9999),
)
def test_iteration_formula_is_the_smallest_sufficient_count(s: int, w: float, p: float) -> None:
    k = ransac_iterations(s, w, p, max_iterations=10**9)
    miss = 1.0 - w**s  # probability that one sample holds an outlier
    assert 1.0 - miss**k >= p - 1e-12
    assert k == 1 or 1.0 - miss ** (k - 1) < p + 1e-12


def count_hypotheses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the sampler to record the number of hypotheses drawn per call of ``ransac``."""
    drawn: list[int] = []
    real = ransac_module._sample_indices

    def spy(order: torch.Tensor, num_valid: torch.Tensor, count: int, *args: object) -> torch.Tensor:
        drawn.append(count)
        return real(order, num_valid, count, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ransac_module, "_sample_indices", spy)
    return drawn


@pytest.mark.parametrize("model", MODELS)
def test_hypothesis_counts(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SAMPLE_SIZE[model]
    drawn = count_hypotheses(monkeypatch)
    # An explicit count is drawn in full.
    src, dst, _, _ = make_problems("similarity", 2, 40, seed=19)
    ransac(src, dst, model, iterations=77)
    assert sum(drawn) == 77
    # Pure noise: the adaptive count runs up to its cap, the formula at min_inlier_ratio.
    g = torch.Generator().manual_seed(24)
    noise_src, noise_dst = (
        torch.rand(2, 100, 2, generator=g) * SIZE,
        torch.rand(2, 100, 2, generator=g) * SIZE,
    )
    for confidence, ratio in ((0.999, 0.25), (0.9, 0.5)):
        drawn.clear()
        ransac(noise_src, noise_dst, model, confidence=confidence, min_inlier_ratio=ratio)
        assert sum(drawn) == ransac_iterations(s, ratio, confidence)
    assert ransac_iterations(s, 0.25, 0.999) == min(1000, math.ceil(math.log(0.001) / math.log(1 - 0.25**s)))


@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_adaptive_count_stops_when_confident(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SAMPLE_SIZE[model]
    drawn = count_hypotheses(monkeypatch)
    src, dst, _, _ = make_problems(model, 8, 300, seed=25, outlier_ratio=0.5)
    result = ransac(src, dst, model, generator=torch.Generator().manual_seed(0))
    ratio = (result.inlier_count / 300).min().item()  # about 0.5
    # Enough hypotheses for the worst problem's inlier ratio (with some slack: the ratio was measured
    # on the sampled hypothesis, before the refits), and no more than one chunk beyond that.
    assert sum(drawn) >= ransac_iterations(s, ratio + 0.03, 0.999)
    assert sum(drawn) <= ransac_iterations(s, ratio - 0.05, 0.999) + ransac_module._ADAPTIVE_CHUNK
    assert sum(drawn) < ransac_iterations(s, 0.25, 0.999) or s == 1


def test_vectorised_count_matches_ransac_iterations() -> None:
    ratios = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    for s in range(1, 5):
        needed = ransac_module._needed_iterations(ratios, s, 0.99)
        for w, k in zip(ratios.tolist(), needed.tolist(), strict=True):
            assert min(k, 10**9) == ransac_iterations(s, w, 0.99, max_iterations=10**9) or k == 0


# --------------------------------------------------------------------------- sampler


def test_sampler_draws_distinct_valid_points_uniformly() -> None:
    n = 12
    valid = torch.zeros(3, n, dtype=torch.bool)
    valid[0] = True
    valid[1, ::2] = True  # 6 valid points
    valid[2, [3, 7, 8, 11]] = True  # exactly 4 valid points
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)
    count = 20_000
    idx = ransac_module._sample_indices(order, valid.sum(dim=1), count, 4, torch.Generator().manual_seed(0))
    assert idx.shape == (3, count, 4)
    assert valid.gather(1, idx.reshape(3, -1)).all()
    ordered, _ = idx.sort(dim=-1)
    assert (ordered[..., 1:] != ordered[..., :-1]).all()  # distinct within each sample
    for b in range(3):
        counts = torch.bincount(idx[b].flatten(), minlength=n)[valid[b]].double()
        expected = count * 4 / valid[b].sum().item()
        assert ((counts - expected).abs() <= 5 * math.sqrt(expected)).all(), counts
    # All 4-subsets of 6 points are equally likely (15 of them).
    subsets = torch.unique(ordered[1], dim=0, return_counts=True)[1].double()
    assert subsets.numel() == 15 and ((subsets - count / 15).abs() <= 5 * math.sqrt(count / 15)).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda() -> None:
    src, dst, truth, labels = make_problems("homography", 8, 300, seed=20)
    result = ransac(
        src.float().cuda(), dst.float().cuda(), "homography", generator=torch.Generator("cuda").manual_seed(0)
    )
    assert result.matrix.device.type == "cuda"
    recall, precision = recall_precision(result.inliers.cpu(), labels)
    assert recall.min() >= 0.95 and precision.min() >= 0.95
    assert corner_error(result.matrix.cpu(), truth).max() < 1.0
