"""Tests for alignimate.core.warp: exactness, OpenCV parity, masks, broadcasting, gradients."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from alignimate.core.transforms import (
    compose,
    homography_from_params,
    invert,
    similarity_matrix,
    transform_points,
    translation_matrix,
)
from alignimate.core.warp import center_crop, crop, pad_to, warp_affine, warp_grid, warp_perspective

CV2_BORDERS = {
    "zeros": cv2.BORDER_CONSTANT,
    "border": cv2.BORDER_REPLICATE,
    "reflection": cv2.BORDER_REFLECT,
}
# OpenCV 4.x quantises warp coordinates to 1/32 px (INTER_BITS=5) even for float images; OpenCV 5
# interpolates float images at full precision: what remains is float32 rounding of the sampling
# coordinates (~1e-5 px here), times the image gradient, which is largest (~1/px) at the edge of the
# warped footprint under zero padding; measured up to 2.8e-5. The 4.x bound is the 1/64 px worst-case
# quantisation times that gradient.
CV2_MAJOR = int(cv2.__version__.split(".")[0])
BILINEAR_BOUND = 5e-5 if CV2_MAJOR >= 5 else 2e-2


def smooth_images(
    batch: int, channels: int, h: int, w: int, seed: int = 0, dtype=torch.float32
) -> torch.Tensor:
    """Random smooth images in [0, 1]: bicubic upsampling (by about 8) of coarse noise in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    coarse = 0.1 + 0.8 * torch.rand(batch, channels, h // 8 + 2, w // 8 + 2, generator=g, dtype=torch.float64)
    fine = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return fine.to(dtype)


def to_cv(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> contiguous (H, W, C) array."""
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def from_cv(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1)


def test_smooth_image_helper_is_smooth() -> None:
    img = smooth_images(1, 1, 40, 50)
    assert img.min() >= 0 and img.max() <= 1
    assert (img[..., 1:] - img[..., :-1]).abs().max() < 0.25


# ----------------------------------------------------------------------------------------------
# exactness
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection", "constant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_warp_is_exact(mode: str, padding_mode: str, dtype: torch.dtype) -> None:
    img = torch.rand(3, 2, 9, 14, dtype=dtype)
    fill = 0.5 if padding_mode == "constant" else 0.0
    eye = torch.eye(3, dtype=dtype).unsqueeze(0)
    out, mask = warp_perspective(
        img, eye, (9, 14), mode=mode, padding_mode=padding_mode, fill_value=fill, return_mask=True
    )
    assert torch.equal(out, img)
    assert torch.equal(mask, torch.ones(3, 1, 9, 14, dtype=dtype))
    assert torch.equal(warp_affine(img, eye[:, :2], (9, 14), mode=mode, padding_mode=padding_mode), img)


def test_shift_right_by_one_pixel_literal() -> None:
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    m = translation_matrix(1.0, 0.0)
    expected_inside = img[..., :-1]
    for padding_mode, first_column in [
        ("zeros", torch.zeros(1, 1, 3)),
        ("constant", torch.full((1, 1, 3), 7.0)),
        ("border", img[..., 0]),
        ("reflection", img[..., 0]),  # pixel -1 mirrors to pixel 0 (BORDER_REFLECT)
    ]:
        out = warp_affine(
            img, m, (3, 4), padding_mode=padding_mode, fill_value=7.0 if padding_mode == "constant" else 0.0
        )
        assert torch.equal(out[..., 1:], expected_inside)
        assert torch.equal(out[..., 0], first_column)


def test_shift_down_by_two_literal_with_mask() -> None:
    img = torch.arange(20.0).reshape(1, 1, 5, 4)
    out, mask = warp_perspective(img, translation_matrix(0.0, 2.0), (5, 4), return_mask=True)
    assert torch.equal(out[..., 2:, :], img[..., :3, :])
    assert torch.equal(out[..., :2, :], torch.zeros(1, 1, 2, 4))
    assert torch.equal(mask[..., :2, :], torch.zeros(1, 1, 2, 4))
    assert torch.equal(mask[..., 2:, :], torch.ones(1, 1, 3, 4))


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize(("tx", "ty"), [(3, -2), (-17, 9), (40, 31), (-25, -60)])
def test_integer_shift_is_exact_and_matches_cv2(padding_mode: str, tx: int, ty: int) -> None:
    # Shifts beyond the image exercise repeated reflections of the border.
    img = torch.rand(1, 3, 11, 16)
    out = warp_affine(img, translation_matrix(float(tx), float(ty)), (13, 15), padding_mode=padding_mode)
    m = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])
    ref = cv2.warpAffine(
        to_cv(img[0]), m, (15, 13), flags=cv2.INTER_LINEAR, borderMode=CV2_BORDERS[padding_mode]
    )
    assert torch.equal(out[0], from_cv(ref))


def test_integer_shifts_differ_per_batch_element_and_equal_a_loop() -> None:
    img = torch.rand(3, 2, 10, 12)
    tx, ty = torch.tensor([1.0, -3.0, 0.0]), torch.tensor([2.0, 0.0, -5.0])
    for padding_mode in ("zeros", "border", "reflection", "constant"):
        kw = {"padding_mode": padding_mode, "fill_value": [0.25, 0.75] if padding_mode == "constant" else 0.0}
        out, mask = warp_perspective(img, translation_matrix(tx, ty), (8, 13), return_mask=True, **kw)
        for b in range(3):
            single, single_mask = warp_perspective(
                img[b : b + 1], translation_matrix(tx[b], ty[b]), (8, 13), return_mask=True, **kw
            )
            assert torch.equal(out[b : b + 1], single)
            assert torch.equal(mask[b : b + 1], single_mask)


def test_shared_integer_shift_with_per_channel_fill_matches_cv2() -> None:
    img = torch.rand(2, 3, 9, 11)
    fill = (0.1, 0.6, 0.9)
    out, mask = warp_affine(
        img,
        translation_matrix(-4.0, 3.0),
        (12, 8),
        padding_mode="constant",
        fill_value=fill,
        return_mask=True,
    )
    m = np.array([[1.0, 0.0, -4.0], [0.0, 1.0, 3.0]])
    for b in range(2):
        ref = cv2.warpAffine(
            to_cv(img[b]),
            m,
            (8, 12),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill,
        )
        assert torch.equal(out[b], from_cv(ref))
    # Destination rows 3..11 and columns 0..6 come from the source.
    expected_mask = torch.zeros(2, 1, 12, 8)
    expected_mask[..., 3:12, 0:7] = 1.0
    assert torch.equal(mask, expected_mask)


def test_integer_shift_fast_path_is_differentiable_wrt_images() -> None:
    img = torch.rand(1, 1, 5, 6, requires_grad=True)
    warp_perspective(img, translation_matrix(1.0, 0.0), (5, 6)).sum().backward()
    expected = torch.ones(1, 1, 5, 6)
    expected[..., -1] = 0.0  # the last column is shifted out of the output
    assert torch.equal(img.grad, expected)


def test_integer_shift_of_one_image_by_many_matrices() -> None:
    img = torch.rand(1, 2, 6, 7)
    m = translation_matrix(torch.tensor([0.0, 1.0, 2.0]), 0.0)
    out = warp_perspective(img, m, (6, 7))
    assert out.shape == (3, 2, 6, 7)
    assert torch.equal(out[0], img[0])
    assert torch.equal(out[2, :, :, 2:], img[0, :, :, :-2])


def test_integer_shift_matrix_requiring_grad_uses_sampling_and_is_close() -> None:
    img = torch.rand(2, 1, 8, 9, dtype=torch.float64)
    m = translation_matrix(torch.tensor([2.0, -1.0], dtype=torch.float64), 1.0)
    exact = warp_perspective(img, m, (8, 9))
    m.requires_grad_(True)
    sampled = warp_perspective(img, m, (8, 9))
    torch.testing.assert_close(sampled, exact, atol=1e-12, rtol=0)
    sampled.sum().backward()
    assert m.grad is not None and torch.isfinite(m.grad).all()
    no_fast_path = warp_perspective(img, m.detach(), (8, 9), exact_integer_shifts=False)
    torch.testing.assert_close(no_fast_path, exact, atol=1e-12, rtol=0)


def test_projectively_scaled_identity_is_exact() -> None:
    img = torch.rand(1, 1, 5, 6)
    assert torch.equal(warp_perspective(img, 2.5 * torch.eye(3).unsqueeze(0), (5, 6)), img)


# ----------------------------------------------------------------------------------------------
# OpenCV parity
# ----------------------------------------------------------------------------------------------

_SRC_SIZE = (45, 62)
_DST_SIZE = (51, 40)


def _test_matrices() -> dict[str, torch.Tensor]:
    sim = similarity_matrix(0.35, math.log(1.15), -3.3, 4.7, center=(30.0, 22.0))
    zoom_out = similarity_matrix(-0.8, math.log(0.35), 10.0, 12.0, center=(30.0, 22.0))
    persp = compose(
        homography_from_params(torch.tensor([[0.05, -0.08, 2.0, 0.04, -0.03, -1.5, 2e-3, -1.5e-3]])), sim
    )
    return {"similarity": sim, "zoom_out": zoom_out, "perspective": persp}


def _max_diff_vs_cv2(kind: str, padding_mode: str, op: str) -> float:
    img = smooth_images(1, 3, *_SRC_SIZE, seed=7)
    m = _test_matrices()[kind]
    flags, border = cv2.INTER_LINEAR, CV2_BORDERS[padding_mode]
    dsize_cv = (_DST_SIZE[1], _DST_SIZE[0])
    if op == "affine":
        ours = warp_affine(img, m[:, :2], _DST_SIZE, padding_mode=padding_mode)
        ref = cv2.warpAffine(
            to_cv(img[0]), m[0, :2].double().numpy(), dsize_cv, flags=flags, borderMode=border
        )
    else:
        ours = warp_perspective(img, m, _DST_SIZE, padding_mode=padding_mode)
        ref = cv2.warpPerspective(
            to_cv(img[0]), m[0].double().numpy(), dsize_cv, flags=flags, borderMode=border
        )
    return float((ours[0] - from_cv(ref)).abs().max())


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("kind", ["similarity", "zoom_out"])
def test_warp_affine_matches_cv2(kind: str, padding_mode: str) -> None:
    diff = _max_diff_vs_cv2(kind, padding_mode, "affine")
    print(f"warp_affine vs cv2.warpAffine [{kind}, {padding_mode}]: max |diff| = {diff:.2e}")
    assert diff < BILINEAR_BOUND


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("kind", ["similarity", "zoom_out", "perspective"])
def test_warp_perspective_matches_cv2(kind: str, padding_mode: str) -> None:
    diff = _max_diff_vs_cv2(kind, padding_mode, "perspective")
    print(f"warp_perspective vs cv2.warpPerspective [{kind}, {padding_mode}]: max |diff| = {diff:.2e}")
    assert diff < BILINEAR_BOUND


def test_constant_fill_per_channel_matches_cv2_border_value() -> None:
    img = smooth_images(1, 3, *_SRC_SIZE, seed=3)
    m = _test_matrices()["zoom_out"]
    fill = (0.2, 0.9, 0.5)
    ours = warp_affine(img, m, _DST_SIZE, padding_mode="constant", fill_value=fill)
    ref = cv2.warpAffine(
        to_cv(img[0]),
        m[0, :2].double().numpy(),
        (_DST_SIZE[1], _DST_SIZE[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    diff = float((ours[0] - from_cv(ref)).abs().max())
    print(f"warp_affine constant fill vs cv2 borderValue: max |diff| = {diff:.2e}")
    assert diff < BILINEAR_BOUND


def test_bicubic_matches_cv2_inter_cubic() -> None:
    img = smooth_images(1, 3, *_SRC_SIZE, seed=5)
    m = _test_matrices()["perspective"]
    ours = warp_perspective(img, m, _DST_SIZE, mode="bicubic", padding_mode="border")
    ref = cv2.warpPerspective(
        to_cv(img[0]),
        m[0].double().numpy(),
        (_DST_SIZE[1], _DST_SIZE[0]),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    diff = float((ours[0] - from_cv(ref)).abs().max())
    print(f"warp_perspective bicubic vs cv2 INTER_CUBIC: max |diff| = {diff:.2e}")
    assert diff < (5e-5 if CV2_MAJOR >= 5 else 1e-2)


# ----------------------------------------------------------------------------------------------
# mask, round trip, grid
# ----------------------------------------------------------------------------------------------


def test_mask_matches_source_coordinates_of_pixel_centres() -> None:
    m = _test_matrices()["perspective"].double()
    h, w = _DST_SIZE
    H, W = _SRC_SIZE
    _, mask = warp_perspective(torch.rand(1, 1, H, W, dtype=torch.float64), m, (h, w), return_mask=True)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    dst = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2)
    src = transform_points(torch.linalg.inv(m), dst).reshape(h, w, 2)
    expected = (
        (src[..., 0] >= -0.5) & (src[..., 0] <= W - 0.5) & (src[..., 1] >= -0.5) & (src[..., 1] <= H - 0.5)
    )
    near_edge = (
        torch.minimum(
            torch.minimum((src[..., 0] + 0.5).abs(), (src[..., 0] - W + 0.5).abs()),
            torch.minimum((src[..., 1] + 0.5).abs(), (src[..., 1] - H + 0.5).abs()),
        )
        < 1e-9
    )
    assert 0 < expected.sum() < h * w  # the test matrix leaves part of the output outside
    assert torch.equal(mask[0, 0].bool()[~near_edge], expected[~near_edge])


def _ramp(batch: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([0.01 * xs + 0.02 * ys, 1.0 - 0.015 * xs + 0.005 * ys]).expand(batch, -1, -1, -1)


def _interior(m: torch.Tensor, size: tuple[int, int], margin: float) -> torch.Tensor:
    """Destination pixels (B, 1, h, w) whose source point under m lies at least margin inside the image."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=m.dtype), torch.arange(w, dtype=m.dtype), indexing="ij")
    dst = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(m.shape[0], -1, -1)
    src = transform_points(invert(m), dst).reshape(-1, h, w, 2)
    ok = (src[..., 0] >= margin) & (src[..., 0] <= w - 1 - margin)
    ok &= (src[..., 1] >= margin) & (src[..., 1] <= h - 1 - margin)
    return ok.unsqueeze(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_then_inverse_warp_round_trip(dtype: torch.dtype) -> None:
    size = (48, 64)
    m = compose(
        homography_from_params(
            torch.tensor([[0.03, -0.02, 1.5, 0.02, 0.04, -2.0, 5e-4, -3e-4]], dtype=dtype)
        ),
        similarity_matrix(torch.tensor([0.2], dtype=dtype), 0.05, 0.7, -1.3, center=(32.0, 24.0)),
    )
    # Round-trip pixels whose second-pass taps (weight > 10 eps) all lie where the first pass sampled
    # with every tap inside the source: bilinearly warping that 0/1 region gives 1 (to rounding) there.
    first_pass_inside = _interior(m, size, 0.0).to(dtype)
    valid = warp_perspective(first_pass_inside, invert(m), size) > 1 - 10 * torch.finfo(dtype).eps
    valid = valid.expand(-1, 2, -1, -1)
    assert valid.float().mean() > 0.5

    # Bilinear interpolation reproduces an affine function of (x, y) exactly, and an affine warp keeps
    # it affine, so an affine round trip is exact up to rounding.
    affine = m / m[:, 2:, 2:]
    affine[:, 2, :2] = 0.0
    affine_valid = warp_perspective(_interior(affine, size, 0.0).to(dtype), invert(affine), size)
    affine_valid = (affine_valid > 1 - 10 * torch.finfo(dtype).eps).expand(-1, 2, -1, -1)
    assert affine_valid.float().mean() > 0.5
    ramp = _ramp(1, *size, dtype)
    back = warp_affine(warp_affine(ramp, affine, size), invert(affine), size)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (back - ramp)[affine_valid].abs().max() < tol

    # Smooth random images: bilinear interpolation errs by at most (|f_xx| + |f_yy|) / 8 per pass; the
    # warp's Jacobian (< 1.2 here) scales the second derivatives seen by the second pass.
    img = smooth_images(1, 2, *size, seed=11, dtype=dtype)
    f_xx = (img[..., 2:] - 2 * img[..., 1:-1] + img[..., :-2]).abs().max()
    f_yy = (img[..., 2:, :] - 2 * img[..., 1:-1, :] + img[..., :-2, :]).abs().max()
    bound = (1 + 1.2**2) * (f_xx + f_yy) / 8
    back = warp_perspective(warp_perspective(img, m, size), invert(m), size)
    err = (back - img)[valid].abs().max()
    print(f"round trip on smooth images: max |diff| = {err:.2e} (bound {bound:.2e})")
    assert err < bound


def test_warp_grid_matches_point_map_and_is_on_matrix_device() -> None:
    m = _test_matrices()["perspective"].double()
    grid = warp_grid(m, _SRC_SIZE, _DST_SIZE)
    assert grid.shape == (1, *_DST_SIZE, 2)
    assert grid.dtype == torch.float64 and grid.device == m.device
    h, w = _DST_SIZE
    H, W = _SRC_SIZE
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    src = transform_points(torch.linalg.inv(m), torch.stack([xs, ys], dim=-1).reshape(1, -1, 2))
    expected = torch.stack([(2 * src[..., 0] + 1) / W - 1, (2 * src[..., 1] + 1) / H - 1], dim=-1)
    torch.testing.assert_close(grid.reshape(1, -1, 2), expected, atol=1e-10, rtol=0)
    img = smooth_images(1, 1, *_SRC_SIZE, dtype=torch.float64)
    direct = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(direct, warp_perspective(img, m, _DST_SIZE))


# ----------------------------------------------------------------------------------------------
# batching, dtypes, broadcasting
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_mode", ["zeros", "reflection", "constant"])
def test_batch_equals_loop_and_one_matrix_broadcasts(padding_mode: str) -> None:
    img = smooth_images(4, 3, 20, 26)
    angles = torch.tensor([0.1, -0.3, 0.7, 2.0])
    m = similarity_matrix(angles, torch.tensor([0.0, 0.1, -0.2, 0.3]), 1.3, -0.4, center=(12.0, 9.0))
    kw = {"padding_mode": padding_mode, "fill_value": 0.3 if padding_mode == "constant" else 0.0}
    out, mask = warp_perspective(img, m, (18, 22), return_mask=True, **kw)
    for b in range(4):
        single, single_mask = warp_perspective(img[b : b + 1], m[b : b + 1], (18, 22), return_mask=True, **kw)
        torch.testing.assert_close(out[b : b + 1], single, atol=1e-6, rtol=0)
        assert torch.equal(mask[b : b + 1], single_mask)
    shared, shared_mask = warp_perspective(img, m[1:2], (18, 22), return_mask=True, **kw)
    assert shared_mask.shape == (4, 1, 18, 22)
    looped = torch.cat([warp_perspective(img[b : b + 1], m[1:2], (18, 22), **kw) for b in range(4)])
    torch.testing.assert_close(shared, looped, atol=1e-6, rtol=0)
    many = warp_affine(img[:1], m[:, :2], (18, 22), **kw)
    torch.testing.assert_close(many[2:3], warp_affine(img[:1], m[2:3], (18, 22), **kw), atol=1e-6, rtol=0)


def test_empty_batch() -> None:
    empty = torch.zeros(0, 3, 8, 8)
    assert warp_perspective(empty, torch.eye(3).unsqueeze(0), (4, 5)).shape == (0, 3, 4, 5)
    out, mask = warp_affine(empty, similarity_matrix(0.1, 0.0, 0.5, 0.0), (4, 5), return_mask=True)
    assert out.shape == (0, 3, 4, 5) and mask.shape == (0, 1, 4, 5)


def test_dtypes_follow_images() -> None:
    m = similarity_matrix(0.2, 0.0, 0.5, 0.5)
    for dtype in (torch.float32, torch.float64):
        img = torch.rand(1, 1, 8, 8, dtype=dtype)
        out, mask = warp_perspective(img, m.to(torch.float64), (8, 8), return_mask=True)
        assert out.dtype == dtype and mask.dtype == dtype
    f32 = warp_perspective(torch.ones(1, 1, 8, 8), m.double(), (8, 8))
    f64 = warp_perspective(torch.ones(1, 1, 8, 8, dtype=torch.float64), m.float(), (8, 8))
    torch.testing.assert_close(f32.double(), f64, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------


def _gradcheck_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(2, 2, 10, 12, generator=g, dtype=torch.float64, requires_grad=True)
    m = similarity_matrix(
        torch.tensor([0.13, -0.21], dtype=torch.float64), 0.07, 0.31, -0.42, center=(5.5, 4.5)
    )
    return img, m


def test_gradcheck_warp_perspective_images_and_matrix() -> None:
    img, m = _gradcheck_inputs(0)
    m = (m + torch.tensor([[0, 0, 0], [0, 0, 0], [1e-3, -2e-3, 0]], dtype=torch.float64)).requires_grad_(True)
    for padding_mode in ("zeros", "border"):
        assert torch.autograd.gradcheck(
            lambda x, h, p=padding_mode: warp_perspective(x, h, (9, 11), padding_mode=p),
            (img, m),
            fast_mode=True,
        )


def test_gradcheck_warp_affine_images_and_matrix() -> None:
    img, m = _gradcheck_inputs(1)
    a = m[:, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, h: warp_affine(x, h, (11, 10), padding_mode="reflection", fill_value=0.0),
        (img, a),
        fast_mode=True,
    )
    assert torch.autograd.gradcheck(
        lambda x, h: warp_affine(x, h, (11, 10), padding_mode="constant", fill_value=0.4),
        (img, a),
        fast_mode=True,
    )


def test_gradcheck_bicubic_and_shared_matrix() -> None:
    img, m = _gradcheck_inputs(2)
    shared = m[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, h: warp_perspective(x, h, (9, 9), mode="bicubic"), (img, shared), fast_mode=True
    )


# ----------------------------------------------------------------------------------------------
# crop helpers
# ----------------------------------------------------------------------------------------------


def test_crop_inside_is_slicing_and_outside_is_filled() -> None:
    img = torch.rand(2, 3, 10, 12)
    assert torch.equal(crop(img, 2, 3, 4, 5), img[:, :, 2:6, 3:8])
    out = crop(img, -2, 9, 5, 6, fill_value=0.5)
    assert out.shape == (2, 3, 5, 6)
    assert torch.equal(out[:, :, 2:, :3], img[:, :, 0:3, 9:12])
    assert torch.equal(out[:, :, :2], torch.full((2, 3, 2, 6), 0.5))
    assert torch.equal(out[:, :, :, 3:], torch.full((2, 3, 5, 3), 0.5))
    # Same as warping by the translation that moves the box's corner to the origin.
    warped = warp_affine(img, translation_matrix(-9.0, 2.0), (5, 6), padding_mode="constant", fill_value=0.5)
    assert torch.equal(out, warped)
    assert torch.equal(crop(img, 20, 20, 2, 2), torch.zeros(2, 3, 2, 2))


def test_center_crop_and_pad_to() -> None:
    img = torch.rand(1, 1, 7, 8)
    assert torch.equal(center_crop(img, (3, 4)), img[:, :, 2:5, 2:6])
    padded = pad_to(img, (10, 11), fill_value=1.0)
    assert padded.shape == (1, 1, 10, 11)
    assert torch.equal(padded[:, :, 1:8, 1:9], img)
    assert torch.equal(center_crop(padded, (7, 8)), img)
    with pytest.raises(ValueError, match="smaller"):
        pad_to(img, (5, 20))
    with pytest.raises(TypeError, match="top"):
        crop(img, 1.5, 0, 2, 2)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# errors and devices
# ----------------------------------------------------------------------------------------------


def test_bad_arguments_raise() -> None:
    img = torch.rand(2, 1, 5, 5)
    eye = torch.eye(3).unsqueeze(0)
    with pytest.raises(ValueError, match="mode"):
        warp_perspective(img, eye, (5, 5), mode="area")
    with pytest.raises(ValueError, match="padding_mode"):
        warp_perspective(img, eye, (5, 5), padding_mode="wrap")
    with pytest.raises(ValueError, match="dsize"):
        warp_perspective(img, eye, (5, 0))
    with pytest.raises(ValueError, match="batch"):
        warp_perspective(img, eye.expand(3, 3, 3), (5, 5))
    with pytest.raises(ValueError, match="dst_H_src"):
        warp_perspective(img, torch.eye(4).unsqueeze(0), (5, 5))
    with pytest.raises(ValueError, match="fill_value"):
        warp_perspective(img, eye, (5, 5), padding_mode="constant", fill_value=[0.0, 1.0])
    with pytest.raises(ValueError, match="fill_value"):
        warp_perspective(img, eye, (5, 5), padding_mode="zeros", fill_value=1.0)
    with pytest.raises(ValueError, match="images"):
        warp_affine(img[0], eye, (5, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    img = smooth_images(3, 2, 30, 40)
    m = _test_matrices()["perspective"]
    cpu, cpu_mask = warp_perspective(img, m, (25, 35), padding_mode="reflection", return_mask=True)
    gpu, gpu_mask = warp_perspective(
        img.cuda(), m.cuda(), (25, 35), padding_mode="reflection", return_mask=True
    )
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    assert torch.equal(gpu_mask.cpu(), cpu_mask)
    assert warp_grid(m.cuda(), (30, 40), (25, 35)).device.type == "cuda"
    shifted = warp_perspective(img.cuda(), translation_matrix(2.0, -1.0).cuda(), (30, 40))
    assert torch.equal(shifted.cpu(), warp_perspective(img, translation_matrix(2.0, -1.0), (30, 40)))
