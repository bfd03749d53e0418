"""Tests for alignimate.core.transforms: literal conventions, OpenCV parity, algebra, gradients."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given, settings
from hypothesis import strategies as st

from alignimate.core.transforms import (
    affine_matrix,
    compose,
    homography_from_params,
    homography_from_points,
    invert,
    rotation_matrix,
    scale_matrix,
    scale_matrix_for_resize,
    similarity_matrix,
    to_3x3,
    transform_points,
    translation_matrix,
)


def _pts(*xy: tuple[float, float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor([list(xy)], dtype=dtype)


# ----------------------------------------------------------------------------------------------
# conventions pinned to literals
# ----------------------------------------------------------------------------------------------


def test_translation_moves_points_by_tx_ty() -> None:
    m = translation_matrix(1.0, 2.0)
    assert m.shape == (1, 3, 3)
    out = transform_points(m, _pts((0.0, 0.0), (5.0, -1.0), dtype=m.dtype))
    assert torch.equal(out, _pts((1.0, 2.0), (6.0, 1.0), dtype=m.dtype))


def test_rotation_by_plus_quarter_turn_is_counter_clockwise_on_screen() -> None:
    # y points down: a point right of the centre goes to above the centre (smaller y) when turning
    # counter-clockwise as seen on screen.
    m = rotation_matrix(torch.tensor([math.pi / 2], dtype=torch.float64), (2.0, 2.0))
    out = transform_points(m, _pts((3.0, 2.0), (2.0, 1.0), (2.0, 2.0)))
    torch.testing.assert_close(out, _pts((2.0, 1.0), (1.0, 2.0), (2.0, 2.0)), atol=1e-12, rtol=0)


def test_scale_matrix_keeps_centre_fixed() -> None:
    m = scale_matrix(torch.tensor([2.0]), torch.tensor([3.0]), center=(1.0, 1.0)).double()
    out = transform_points(m, _pts((1.0, 1.0), (2.0, 2.0)))
    torch.testing.assert_close(out, _pts((1.0, 1.0), (3.0, 4.0)))
    iso = scale_matrix(2.0)
    torch.testing.assert_close(iso, torch.diag(torch.tensor([2.0, 2.0, 1.0])).unsqueeze(0))


def test_similarity_is_rotation_scale_about_centre_then_translation() -> None:
    angle, log_s, c = torch.tensor([0.4]), torch.tensor([0.3]), torch.tensor([[5.0, -2.0]])
    expected = compose(
        translation_matrix(1.5, -2.5),
        translation_matrix(c[:, 0], c[:, 1]),
        rotation_matrix(angle, (0.0, 0.0)),
        scale_matrix(torch.exp(log_s)),
        translation_matrix(-c[:, 0], -c[:, 1]),
    )
    torch.testing.assert_close(similarity_matrix(angle, log_s, 1.5, -2.5, center=c), expected)


def test_affine_matrix_layout_is_top_two_rows() -> None:
    p = torch.arange(1.0, 7.0).unsqueeze(0)
    expected = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 0.0, 1.0]]])
    assert torch.equal(affine_matrix(p), expected)


def test_homography_from_params_is_identity_plus_params() -> None:
    assert torch.equal(homography_from_params(torch.zeros(2, 8)), torch.eye(3).expand(2, 3, 3))
    p = torch.arange(1.0, 9.0).unsqueeze(0)
    expected = torch.tensor([[[2.0, 2.0, 3.0], [4.0, 6.0, 6.0], [7.0, 8.0, 1.0]]])
    assert torch.equal(homography_from_params(p), expected)


def test_scale_matrix_for_resize_maps_edges_to_edges() -> None:
    m = scale_matrix_for_resize((10, 20), (5, 60), dtype=torch.float64)
    # Left/top edges (-0.5) stay put, right/bottom edges (w - 0.5) go to the new edges.
    corners = _pts((-0.5, -0.5), (19.5, 9.5), (0.0, 0.0))
    out = transform_points(m, corners)
    torch.testing.assert_close(out, _pts((-0.5, -0.5), (59.5, 4.5), (0.5 * 3 - 0.5, 0.5 * 0.5 - 0.5)))


@pytest.mark.parametrize(("src", "dst"), [((12, 16), (24, 40)), ((20, 30), (13, 11))])
def test_scale_matrix_for_resize_matches_interpolate_and_cv2_resize(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    # F.interpolate(align_corners=False) and cv2.resize(INTER_LINEAR) both sample source pixel
    # (x + 0.5) * w / w' - 0.5 for destination pixel x, i.e. the inverse of our matrix.
    from alignimate.core.warp import warp_affine

    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 2, *src, generator=g, dtype=torch.float64)
    m = scale_matrix_for_resize(src, dst, dtype=torch.float64)
    warped = warp_affine(img, m, dst, padding_mode="border")
    interp = F.interpolate(img, size=dst, mode="bilinear", align_corners=False)
    torch.testing.assert_close(warped, interp, atol=1e-12, rtol=0)
    ref = cv2.resize(img[0].permute(1, 2, 0).numpy(), (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    assert np.abs(warped[0].permute(1, 2, 0).numpy() - ref).max() < 1e-6


# ----------------------------------------------------------------------------------------------
# OpenCV parity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [-170.0, -33.0, 0.0, 12.5, 90.0, 181.0])
@pytest.mark.parametrize("center", [(0.0, 0.0), (31.5, 17.0), (-4.0, 100.0)])
def test_rotation_matrix_matches_cv2(degrees: float, center: tuple[float, float]) -> None:
    ref = cv2.getRotationMatrix2D(center, degrees, 1.0)
    ours = rotation_matrix(torch.tensor([math.radians(degrees)], dtype=torch.float64), center)
    np.testing.assert_allclose(ours[0, :2].numpy(), ref, atol=1e-12)
    assert torch.equal(ours[0, 2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(("degrees", "scale"), [(-60.0, 0.5), (15.0, 1.3), (200.0, 2.0)])
def test_similarity_matrix_matches_cv2(degrees: float, scale: float) -> None:
    center = (40.0, 25.5)
    ref = cv2.getRotationMatrix2D(center, degrees, scale)
    ref[:, 2] += (3.0, -7.0)
    angle = torch.tensor([math.radians(degrees)], dtype=torch.float64)
    ours = similarity_matrix(angle, math.log(scale), 3.0, -7.0, center=center)
    np.testing.assert_allclose(ours[0, :2].numpy(), ref, atol=1e-12)


def test_homography_from_points_matches_cv2_and_maps_points_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.tensor([[[0.0, 0.0], [99.0, 0.0], [99.0, 59.0], [0.0, 59.0]]], dtype=torch.float64)
    src = src.repeat(3, 1, 1)
    dst = src + 8.0 * torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    H = homography_from_points(src, dst)
    torch.testing.assert_close(transform_points(H, src), dst, atol=1e-9, rtol=0)
    for b in range(3):
        ref = cv2.getPerspectiveTransform(
            src[b].numpy().astype(np.float32), dst[b].numpy().astype(np.float32)
        )
        np.testing.assert_allclose(H[b].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_homography_from_points_float32_is_accurate_on_pixel_coordinates() -> None:
    src = torch.tensor([[[10.0, 12.0], [1910.0, 30.0], [1890.0, 1070.0], [5.0, 1060.0]]])
    H_true = homography_from_params(torch.tensor([[0.05, -0.02, 12.0, 0.03, -0.04, -7.0, 2e-5, -1e-5]]))
    dst = transform_points(H_true, src)
    H = homography_from_points(src, dst)
    assert H.dtype == torch.float32
    assert (transform_points(H, src) - dst).abs().max() < 2e-3


# ----------------------------------------------------------------------------------------------
# algebra, shapes, dtypes
# ----------------------------------------------------------------------------------------------


def test_compose_order_and_broadcast() -> None:
    a = translation_matrix(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    b = scale_matrix(2.0)  # batch 1 broadcasts
    c_H_a = compose(a, b)  # scale first, then translate
    p = _pts((1.0, 1.0), dtype=torch.float32).expand(2, -1, -1)
    torch.testing.assert_close(transform_points(c_H_a, p), torch.tensor([[[3.0, 2.0]], [[4.0, 2.0]]]))
    torch.testing.assert_close(transform_points(compose(b, a), p), torch.tensor([[[4.0, 2.0]], [[6.0, 2.0]]]))
    with pytest.raises(ValueError, match="batch"):
        compose(torch.eye(3).expand(2, 3, 3), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError):
        compose()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_invert_matches_linalg_inv(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    m = torch.eye(3, dtype=dtype) + 0.3 * torch.randn(16, 3, 3, generator=g, dtype=dtype)
    inv = invert(m)
    assert inv.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(inv, torch.linalg.inv(m), atol=tol, rtol=tol)
    torch.testing.assert_close(inv @ m, torch.eye(3, dtype=dtype).expand(16, 3, 3), atol=tol, rtol=tol)


def test_affine_2x3_accepted_by_invert_transform_points_and_to_3x3() -> None:
    a = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 4.0, -1.0]]])
    full = to_3x3(a)
    assert torch.equal(full, torch.tensor([[[2.0, 0.0, 1.0], [0.0, 4.0, -1.0], [0.0, 0.0, 1.0]]]))
    assert to_3x3(full) is full
    p = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    assert torch.equal(transform_points(a, p), transform_points(full, p))
    torch.testing.assert_close(invert(a), torch.linalg.inv(full))


def test_transform_points_projective_and_points_at_infinity() -> None:
    H = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]]], dtype=torch.float64)
    p = torch.tensor([[[2.0, 4.0], [-2.0, 1.0]]], dtype=torch.float64)
    out = transform_points(H, p)
    torch.testing.assert_close(out[:, 0], torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    assert torch.isfinite(out).all()  # the second point maps to infinity: finite but huge
    assert out[0, 1].abs().max() > 1e10


def test_matrix_batch_broadcasts_against_points() -> None:
    m = translation_matrix(torch.tensor([1.0, 2.0, 3.0]), 0.0)
    p = torch.zeros(1, 5, 2)
    assert transform_points(m, p).shape == (3, 5, 2)
    assert transform_points(m[:1], torch.zeros(4, 5, 2)).shape == (4, 5, 2)
    with pytest.raises(ValueError):
        transform_points(m, torch.zeros(2, 5, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_builders_follow_input_dtype_and_batch(dtype: torch.dtype) -> None:
    angle = torch.linspace(-1, 1, 4, dtype=dtype)
    for m in (
        translation_matrix(angle, 1.0),
        rotation_matrix(angle, torch.zeros(4, 2, dtype=dtype)),
        scale_matrix(angle.exp(), center=(1.0, 2.0)),
        similarity_matrix(angle, 0.0, 0.0, angle),
        affine_matrix(torch.zeros(4, 6, dtype=dtype)),
        homography_from_params(torch.zeros(4, 8, dtype=dtype)),
    ):
        assert m.shape == (4, 3, 3)
        assert m.dtype == dtype
    assert translation_matrix(1.0, 2.0).dtype == torch.get_default_dtype()
    # A tensor centre decides dtype (and device) when the other arguments are Python floats.
    assert rotation_matrix(0.3, torch.tensor([[1.0, 2.0]], dtype=dtype)).dtype == dtype
    assert similarity_matrix(0.3, 0.0, 1.0, 1.0, center=torch.zeros(3, 2, dtype=dtype)).shape == (3, 3, 3)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="center"):
        rotation_matrix(0.1, torch.zeros(3))
    with pytest.raises(ValueError, match="batch"):
        translation_matrix(torch.zeros(2), torch.zeros(3))
    with pytest.raises(TypeError, match="tx"):
        translation_matrix("1", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="params"):
        affine_matrix(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="points"):
        homography_from_points(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="matrix"):
        transform_points(torch.zeros(1, 4, 4), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="src_size"):
        scale_matrix_for_resize((0, 4), (4, 4))


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------


def test_gradcheck_similarity_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(4)]
    center = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, s, x, y, c: similarity_matrix(a, s, x, y, center=c), (*args, center)
    )


def test_gradcheck_transform_points_and_invert() -> None:
    g = torch.Generator().manual_seed(0)
    H = torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(2, 3, 3, dtype=torch.float64, generator=g)
    H.requires_grad_(True)
    p = torch.randn(2, 5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(transform_points, (H, p))
    assert torch.autograd.gradcheck(invert, (H,))
    a = torch.randn(2, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(transform_points, (a, p))


def test_gradcheck_homography_from_points() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    dst = (src + 0.1 * torch.randn(1, 4, 2, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: homography_from_points(src, d), (dst,))


# ----------------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------------

_coef = st.floats(-0.3, 0.3)
_shift = st.floats(-20.0, 20.0)
_persp = st.floats(-1e-3, 1e-3)


@st.composite
def homographies(draw: st.DrawFn) -> torch.Tensor:
    params = [draw(_coef), draw(_coef), draw(_shift), draw(_coef), draw(_coef), draw(_shift)]
    params += [draw(_persp), draw(_persp)]
    return homography_from_params(torch.tensor([params], dtype=torch.float64))


@settings(max_examples=50, deadline=None)
@given(homographies(), homographies())
def test_inverse_of_composition_reverses_order(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(invert(compose(a, b)), compose(invert(b), invert(a)), atol=1e-10, rtol=1e-9)


@settings(max_examples=50, deadline=None)
@given(homographies(), st.integers(0, 2**31 - 1))
def test_transform_points_round_trip(H: torch.Tensor, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = 100.0 * torch.rand(1, 8, 2, generator=g, dtype=torch.float64)
    back = transform_points(invert(H), transform_points(H, p))
    torch.testing.assert_close(back, p, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------------------------
# device
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_builders_and_point_maps_match_cpu() -> None:
    angle = torch.tensor([0.3, -1.2])
    m_cpu = similarity_matrix(angle, 0.1, 2.0, 3.0, center=(4.0, 5.0))
    m_gpu = similarity_matrix(angle.cuda(), 0.1, 2.0, 3.0, center=(4.0, 5.0))
    assert m_gpu.device.type == "cuda"
    torch.testing.assert_close(m_gpu.cpu(), m_cpu)
    p = torch.rand(2, 6, 2)
    torch.testing.assert_close(
        transform_points(invert(m_gpu), p.cuda()).cpu(), transform_points(invert(m_cpu), p)
    )


def test_rescale_matrix_maps_the_same_content_between_resized_copies() -> None:
    from alignimate.core.transforms import rescale_matrix

    torch.manual_seed(0)
    fixed_H_moving = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1) + 0.01 * torch.randn(
        2, 3, 3, dtype=torch.float64
    )
    small_m, small_f, big_m, big_f = (30, 40), (24, 32), (300, 400), (240, 320)
    big = rescale_matrix(fixed_H_moving, small_m, small_f, big_m, big_f)
    # A moving point at full size, mapped by the big matrix, equals: down to the working copy, map,
    # up to the fixed full size.
    pts = torch.tensor([[[10.0, 20.0], [399.0, 299.0], [150.5, 75.25]]], dtype=torch.float64).repeat(2, 1, 1)
    down = scale_matrix_for_resize(big_m, small_m, dtype=torch.float64)
    up = scale_matrix_for_resize(small_f, big_f, dtype=torch.float64)
    expected = transform_points(up, transform_points(fixed_H_moving, transform_points(down, pts)))
    torch.testing.assert_close(transform_points(big, pts), expected, rtol=0, atol=1e-9)
    # And back again gives the original.
    torch.testing.assert_close(
        rescale_matrix(big, big_m, big_f, small_m, small_f), fixed_H_moving, rtol=0, atol=1e-12
    )
