"""Tests for alignimate.core.fit: agreement with scikit-image / numpy, exact recovery, weights,
degenerate inputs, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import transform as sktf

from alignimate.core.fit import (
    estimate_affine,
    estimate_homography,
    estimate_rigid,
    estimate_similarity,
    estimate_translation,
)
from alignimate.core.transforms import (
    affine_matrix,
    homography_from_params,
    similarity_matrix,
    transform_points,
    translation_matrix,
)

ESTIMATORS = [estimate_translation, estimate_rigid, estimate_similarity, estimate_affine, estimate_homography]


def skimage_fit(cls: type, src: np.ndarray, dst: np.ndarray, **kwargs: object) -> np.ndarray:
    """Run scikit-image's estimator through whichever API the installed version has."""
    if hasattr(cls, "from_estimate"):
        tf = cls.from_estimate(src, dst, **kwargs)
        assert tf, f"scikit-image failed: {tf}"
    else:  # scikit-image < 0.26
        tf = cls()
        assert tf.estimate(src, dst, **kwargs)
    return tf.params


def noisy_correspondences(
    matrix: torch.Tensor, n: int, seed: int, noise: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixel points in a 640x480 frame, mapped by matrix, plus Gaussian noise (float64)."""
    g = torch.Generator().manual_seed(seed)
    batch = matrix.shape[0]
    src = torch.rand(batch, n, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [640.0, 480.0], dtype=torch.float64
    )
    dst = transform_points(matrix.double(), src) + noise * torch.randn(
        batch, n, 2, generator=g, dtype=torch.float64
    )
    return src, dst


def _similarity() -> torch.Tensor:
    return similarity_matrix(
        torch.tensor([0.4], dtype=torch.float64), 0.2, 30.0, -12.0, center=(320.0, 240.0)
    )


def _affine() -> torch.Tensor:
    return affine_matrix(torch.tensor([[1.1, 0.15, 20.0, -0.08, 0.92, 35.0]], dtype=torch.float64))


def _homography() -> torch.Tensor:
    return homography_from_params(
        torch.tensor([[0.08, 0.05, 15.0, -0.04, 0.1, -8.0, 2e-4, -1e-4]], dtype=torch.float64)
    )


# ----------------------------------------------------------------------------------------------
# agreement with reference implementations on noisy points
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_matches_skimage(seed: int) -> None:
    src, dst = noisy_correspondences(_similarity(), 30, seed)
    ref = skimage_fit(sktf.SimilarityTransform, src[0].numpy(), dst[0].numpy())
    np.testing.assert_allclose(estimate_similarity(src, dst)[0].numpy(), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_rigid_matches_skimage_euclidean(seed: int) -> None:
    src, dst = noisy_correspondences(_similarity(), 25, seed, noise=2.0)
    ref = skimage_fit(sktf.EuclideanTransform, src[0].numpy(), dst[0].numpy())
    np.testing.assert_allclose(estimate_rigid(src, dst)[0].numpy(), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_affine_is_ordinary_least_squares_and_close_to_skimage(seed: int) -> None:
    src, dst = noisy_correspondences(_affine(), 40, seed)
    ours = estimate_affine(src, dst)[0].numpy()
    # Ordinary least squares, solved independently with numpy.
    design = np.hstack([src[0].numpy(), np.ones((40, 1))])
    solution, *_ = np.linalg.lstsq(design, dst[0].numpy(), rcond=None)
    np.testing.assert_allclose(ours[:2], solution.T, rtol=1e-9, atol=1e-9)
    # scikit-image solves the affine case with the (unit-norm) DLT instead of ordinary least squares,
    # so on noisy points (0.5 px) the mapped points differ slightly (measured < 3e-3 px).
    ref = torch.from_numpy(skimage_fit(sktf.AffineTransform, src[0].numpy(), dst[0].numpy()))
    gap = (transform_points(torch.from_numpy(ours)[None], src) - transform_points(ref[None], src)).abs().max()
    assert gap < 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_homography_matches_skimage_projective(seed: int) -> None:
    src, dst = noisy_correspondences(_homography(), 30, seed)
    ref = skimage_fit(sktf.ProjectiveTransform, src[0].numpy(), dst[0].numpy())
    np.testing.assert_allclose(estimate_homography(src, dst)[0].numpy(), ref, rtol=1e-7, atol=1e-9)


def test_weighted_homography_matches_skimage_weighted_dlt() -> None:
    # scikit-image normalises with unweighted statistics and we with weighted ones; on noisy points that
    # changes the algebraic optimum slightly (measured 7e-5 px here), far below the effect of the weights
    # themselves (0.2 px between the weighted and unweighted fits).
    src, dst = noisy_correspondences(_homography(), 24, 4)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 24, generator=g, dtype=torch.float64) + 0.1
    ref = torch.from_numpy(
        skimage_fit(sktf.ProjectiveTransform, src[0].numpy(), dst[0].numpy(), weights=w[0].numpy())
    )
    ref_points = transform_points(ref.unsqueeze(0), src)
    weighted_gap = (transform_points(estimate_homography(src, dst, w), src) - ref_points).abs().max()
    unweighted_gap = (transform_points(estimate_homography(src, dst), src) - ref_points).abs().max()
    assert weighted_gap < 1e-3
    assert unweighted_gap > 50 * weighted_gap


def test_translation_is_weighted_mean_offset() -> None:
    src = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [5.0, 2.0]]])
    dst = src + torch.tensor([[[1.0, 2.0], [3.0, 2.0], [100.0, 100.0]]])
    m = estimate_translation(src, dst, torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(m, translation_matrix(2.0, 2.0))


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_zero_weight_removes_a_point_and_integer_weights_duplicate_points(estimator) -> None:
    src, dst = noisy_correspondences(_homography(), 10, 5, noise=1.0)
    outlier_dst = dst.clone()
    outlier_dst[:, 3] += 500.0
    w = torch.ones(1, 10, dtype=torch.float64)
    w[:, 3] = 0.0
    keep = [i for i in range(10) if i != 3]
    torch.testing.assert_close(estimator(src, outlier_dst, w), estimator(src[:, keep], dst[:, keep]))

    w = torch.ones(1, 10, dtype=torch.float64)
    w[:, :4] = 3.0
    dup = [*range(10), *range(4), *range(4)]
    torch.testing.assert_close(estimator(src, dst, w), estimator(src[:, dup], dst[:, dup]))
    torch.testing.assert_close(estimator(src, dst, 7.0 * w), estimator(src, dst, w))  # only ratios matter


# ----------------------------------------------------------------------------------------------
# batching, broadcasting, dtypes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_batch_equals_loop_and_template_broadcasts(estimator) -> None:
    g = torch.Generator().manual_seed(0)
    src = 100.0 * torch.rand(4, 9, 2, generator=g, dtype=torch.float64)
    dst = src + 5.0 * torch.randn(4, 9, 2, generator=g, dtype=torch.float64)
    w = torch.rand(4, 9, generator=g, dtype=torch.float64)
    batched = estimator(src, dst, w)
    assert batched.shape == (4, 3, 3)
    for b in range(4):
        torch.testing.assert_close(
            batched[b : b + 1], estimator(src[b : b + 1], dst[b : b + 1], w[b : b + 1])
        )
    template = estimator(src[:1], dst)
    for b in range(4):
        torch.testing.assert_close(template[b : b + 1], estimator(src[:1], dst[b : b + 1]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_float32_pixel_coordinates_are_accurate(estimator) -> None:
    src, dst = noisy_correspondences(_similarity(), 50, 9, noise=0.0)
    ours = estimator(src.float(), dst.float())
    assert ours.dtype == torch.float32
    ref = estimator(src, dst)
    residual_32 = (transform_points(ours.double(), src) - transform_points(ref, src)).abs().max()
    assert residual_32 < 1e-2  # pixels, on a 640x480 frame


# ----------------------------------------------------------------------------------------------
# degenerate inputs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_all_zero_weights_give_identity(estimator) -> None:
    src, dst = noisy_correspondences(_affine(), 6, 0)
    out = estimator(src, dst, torch.zeros(1, 6, dtype=torch.float64))
    torch.testing.assert_close(out, torch.eye(3, dtype=torch.float64).unsqueeze(0))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_single_point_gives_the_translation(estimator) -> None:
    src = torch.tensor([[[10.0, 20.0]]], dtype=torch.float64)
    dst = torch.tensor([[[13.0, 16.0]]], dtype=torch.float64)
    torch.testing.assert_close(estimator(src, dst), translation_matrix(3.0, -4.0).double())


def test_collinear_points_fall_back_to_the_similarity_least_squares_fit() -> None:
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    src = torch.stack([10 + 50 * t, 5 + 20 * t], dim=-1).unsqueeze(0)
    dst = transform_points(_affine(), src) + 0.01 * torch.sin(13 * t).unsqueeze(-1)
    affine = estimate_affine(src, dst)
    homography = estimate_homography(src, dst)
    assert torch.isfinite(affine).all() and torch.isfinite(homography).all()
    torch.testing.assert_close(affine, estimate_similarity(src, dst))
    torch.testing.assert_close(homography, affine)


def test_three_points_homography_falls_back_to_exact_affine() -> None:
    src = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 7.0]]], dtype=torch.float64)
    dst = transform_points(_affine(), src)
    H = estimate_homography(src, dst)
    torch.testing.assert_close(H, _affine())


def test_no_homography_exists_falls_back_to_affine() -> None:
    # Three collinear source points whose images are not collinear: no homography maps them.
    src = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 5.0]]], dtype=torch.float64)
    dst = 2.0 * src + 1.0
    dst[0, 1] += torch.tensor([0.3, -0.2], dtype=torch.float64)
    torch.testing.assert_close(estimate_homography(src, dst), estimate_affine(src, dst))


def test_degenerate_batch_element_does_not_affect_the_others() -> None:
    src, dst = noisy_correspondences(_homography().expand(3, -1, -1), 8, 1)
    w = torch.ones(3, 8, dtype=torch.float64)
    w[1] = 0.0
    out = estimate_homography(src, dst, w)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(out[2:], estimate_homography(src[2:], dst[2:]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_empty_batch_against_a_template(estimator) -> None:
    # A photo without faces gives (0, N, 2) detections; a (1, N, 2) template must not turn that into 1.
    assert estimator(torch.zeros(0, 5, 2), torch.rand(1, 5, 2)).shape == (0, 3, 3)


def test_bad_arguments_raise() -> None:
    p = torch.zeros(2, 5, 2)
    with pytest.raises(ValueError, match="src_points"):
        estimate_similarity(torch.zeros(2, 5, 3), p)
    with pytest.raises(ValueError, match="number of points"):
        estimate_affine(p, torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="batch"):
        estimate_rigid(p, torch.zeros(3, 5, 2))
    with pytest.raises(ValueError, match="weights"):
        estimate_homography(p, p, torch.ones(2, 4))
    with pytest.raises(ValueError, match="at least one point"):
        estimate_translation(torch.zeros(1, 0, 2), torch.zeros(1, 0, 2))
    with pytest.raises(TypeError, match="weights"):
        estimate_similarity(p, p, [1.0] * 5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", [estimate_similarity, estimate_affine, estimate_rigid])
def test_gradcheck_wrt_points_and_weights(estimator) -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.randn(2, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    dst = (src.detach() * 1.3 + 0.2 * torch.randn(2, 6, 2, generator=g, dtype=torch.float64)).requires_grad_(
        True
    )
    w = (0.5 + torch.rand(2, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(estimator, (src, dst, w))


def test_gradcheck_homography_wrt_points() -> None:
    g = torch.Generator().manual_seed(1)
    src = torch.randn(1, 6, 2, generator=g, dtype=torch.float64)
    dst = (src + 0.1 * torch.randn(1, 6, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: estimate_homography(src, d), (dst,), fast_mode=True)


# ----------------------------------------------------------------------------------------------
# exact recovery (properties)
# ----------------------------------------------------------------------------------------------

_angle = st.floats(-3.1, 3.1)
_log_scale = st.floats(-1.0, 1.0)
_shift = st.floats(-200.0, 200.0)
_coef = st.floats(-0.4, 0.4)
_persp = st.floats(-5e-4, 5e-4)
_seed = st.integers(0, 2**31 - 1)


def _points(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, n, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [640.0, 480.0], dtype=torch.float64
    )


@settings(max_examples=50, deadline=None)
@given(_angle, _log_scale, _shift, _shift, _seed)
def test_similarity_and_rigid_recovered_exactly(
    angle: float, log_s: float, tx: float, ty: float, seed: int
) -> None:
    m = similarity_matrix(torch.tensor([angle], dtype=torch.float64), log_s, tx, ty, center=(320.0, 240.0))
    src = _points(seed, 5)
    torch.testing.assert_close(estimate_similarity(src, transform_points(m, src)), m, atol=1e-8, rtol=1e-9)
    rigid = similarity_matrix(torch.tensor([angle], dtype=torch.float64), 0.0, tx, ty)
    torch.testing.assert_close(estimate_rigid(src, transform_points(rigid, src)), rigid, atol=1e-8, rtol=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.tuples(_coef, _coef, _shift, _coef, _coef, _shift), _seed)
def test_affine_recovered_exactly(params: tuple[float, ...], seed: int) -> None:
    p = torch.tensor([params], dtype=torch.float64) + torch.tensor(
        [[1.0, 0, 0, 0, 1.0, 0]], dtype=torch.float64
    )
    m = affine_matrix(p)
    src = _points(seed, 6)
    torch.testing.assert_close(estimate_affine(src, transform_points(m, src)), m, atol=1e-8, rtol=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.tuples(_coef, _coef, _shift, _coef, _coef, _shift, _persp, _persp), _seed, st.integers(4, 12))
def test_homography_recovered_exactly(params: tuple[float, ...], seed: int, n: int) -> None:
    m = homography_from_params(torch.tensor([params], dtype=torch.float64))
    src = _points(seed, n)
    dst = transform_points(m, src)
    est = estimate_homography(src, dst)
    # Compare mappings (the matrix itself can be ill-conditioned for strong perspective).
    torch.testing.assert_close(transform_points(est, src), dst, atol=1e-6, rtol=0)
    torch.testing.assert_close(est, m, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    src, dst = noisy_correspondences(_homography().expand(3, -1, -1), 20, 2)
    for estimator in ESTIMATORS:
        torch.testing.assert_close(estimator(src.cuda(), dst.cuda()).cpu(), estimator(src, dst))
