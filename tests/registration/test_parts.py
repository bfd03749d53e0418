"""The registration engine's parts: frames, motion models, pyramids, sampling, phase correlation,
the closed-form point path and the result object."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from registration_cases import make_case, to_tensor

from alignimate.core.warp import warp_perspective
from alignimate.registration import RegistrationResult, register_points
from alignimate.registration.frames import frame_from_pixels, matrix_from_model, model_from_matrix
from alignimate.registration.init import CanvasView, global_candidates, phase_correlation
from alignimate.registration.levels import build_levels, level_count
from alignimate.registration.models import MODEL_NAMES, get_model
from alignimate.registration.sampling import sample_fixed, sample_moving

# --------------------------------------------------------------------------- frames


def test_frame_is_centred_and_aspect_preserving() -> None:
    f = frame_from_pixels((100, 200))
    corners = torch.tensor([[-0.5, -0.5, 1.0], [199.5, 99.5, 1.0], [99.5, 49.5, 1.0]], dtype=torch.float64)
    mapped = corners @ f.T
    assert torch.allclose(mapped[0, :2], torch.tensor([-1.0, -0.5], dtype=torch.float64))
    assert torch.allclose(mapped[1, :2], torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert torch.allclose(mapped[2, :2], torch.zeros(2, dtype=torch.float64))


def test_matrix_and_model_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    model = torch.eye(3, dtype=torch.float64) + 0.05 * torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    model = model / model[:, 2:3, 2:3]
    matrix = matrix_from_model(model, (120, 90), (64, 80))
    assert torch.allclose(model_from_matrix(matrix, (120, 90), (64, 80)), model, atol=1e-12)


def test_frame_model_is_independent_of_resolution() -> None:
    """A model found on half-size copies maps the full-size images the same way."""
    model = torch.tensor([[[0.98, -0.1, 0.05], [0.1, 0.98, -0.02], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    full = matrix_from_model(model, (200, 300), (100, 150))
    half = matrix_from_model(model, (100, 150), (50, 75))
    # Resizing by 1/2 with the pixel-centre convention: x_half = (x + 0.5) / 2 - 0.5.
    s = torch.tensor([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(s @ full @ torch.linalg.inv(s), half[0], atol=1e-12)


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_increment_at_zero_is_identity_and_jacobian_matches(name: str) -> None:
    model = get_model(name)
    zero = torch.zeros(1, model.num_params, dtype=torch.float64)
    assert torch.equal(model.increment(zero)[0], torch.eye(3, dtype=torch.float64))
    u = torch.tensor([0.3, -0.7, 0.9], dtype=torch.float64)
    v = torch.tensor([-0.2, 0.5, 0.8], dtype=torch.float64)
    ju, jv = model.jacobian(u, v)
    points = torch.stack([u, v, torch.ones_like(u)], dim=-1)

    def warp(p: torch.Tensor) -> torch.Tensor:
        mapped = points @ model.increment(p.unsqueeze(0))[0].T
        return mapped[:, :2] / mapped[:, 2:]

    numeric = torch.autograd.functional.jacobian(warp, zero[0])  # (3 points, 2, P)
    assert torch.allclose(numeric[:, 0, :].T, ju, atol=1e-10)
    assert torch.allclose(numeric[:, 1, :].T, jv, atol=1e-10)


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        get_model("perspective")


# --------------------------------------------------------------------------- pyramid and sampling


def test_level_frames_follow_the_pyramid() -> None:
    """A linear ramp of x, decimated, equals each level's pixel centres mapped to level 0 (so the
    frame maps built from the level matrices describe the decimated images)."""
    for w in (64, 65):
        ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, 20, w).contiguous()
        levels = build_levels(ramp, None, 3)
        for level in levels[1:]:
            row = level.image[0, 0, level.size[0] // 2]
            level_0_x = level.frame_coords()[: row.shape[0], 0] * levels[0].pixels_per_unit + (w - 1) / 2
            # Interior pixels only: the replicated border bends the ramp at the edges.
            assert torch.allclose(row[4:-4], level_0_x[4:-4].to(row), atol=1e-9)


def test_levels_share_the_frame() -> None:
    levels = build_levels(torch.rand(1, 1, 64, 96), None, 3)
    assert [lv.size for lv in levels] == [(64, 96), (32, 48), (16, 24)]
    for level in levels:
        # The level's corner pixel centres lie half a level pixel inside the frame's image edge.
        half_w, half_h = level.half_extent
        assert math.isclose(half_w, 1.0) and math.isclose(half_h, 64 / 96)
    assert level_count((256, 256)) == 4 and level_count((10, 10)) == 1


def test_sample_moving_identity_and_selection() -> None:
    image = torch.rand(2, 1, 40, 40)
    levels = build_levels(image, None, 1)
    # Undo the finest level's light smoothing for the comparison: sample the level image itself.
    samples = sample_fixed(levels[0], None)
    values, inside, mask = sample_moving(levels[0], torch.eye(3).expand(2, 3, 3), samples.coords, False)
    assert mask is None and inside.all()
    assert torch.allclose(values, samples.intensity, atol=1e-5)
    sparse = sample_fixed(levels[0], 400)
    assert sparse.intensity.shape == (2, 400)
    # The selected pixels are the strongest-gradient pixel of each 2x2 block.
    energy = sparse.grad_u**2 + sparse.grad_v**2
    full = samples.grad_u**2 + samples.grad_v**2
    block_max = F.max_pool2d(full.view(2, 1, 40, 40), 2).flatten(1)
    assert torch.allclose(energy.sort(dim=1).values, block_max.sort(dim=1).values)


def test_masked_sampling_source_is_built_once_and_follows_row_subsets() -> None:
    image = torch.rand(3, 1, 24, 24)
    mask = (torch.rand(3, 1, 24, 24) > 0.2).float()
    level = build_levels(image, mask, 1)[0]
    source = level.sampling_source()
    assert source.shape == (3, 2, 24, 24) and level.sampling_source() is source
    assert torch.equal(source[:, :1], level.image * level.mask) and torch.equal(source[:, 1:], level.mask)
    part = level.rows(torch.tensor([2, 0]))
    assert torch.equal(part.sampling_source(), source[[2, 0]])
    assert torch.equal(part.image, level.image[[2, 0]])
    coords = sample_fixed(part, None).coords
    eye = torch.eye(3).expand(2, 3, 3)
    fresh = part.with_images(part.image, part.mask)  # no cached source: built again, same samples
    got, expected = sample_moving(part, eye, coords), sample_moving(fresh, eye, coords)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize(("dx", "dy"), [(5.0, -3.0), (-12.25, 7.5)])
def test_phase_correlation_sign_and_subpixel(dx: float, dy: float) -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 2.0)
    # b(x) = a(x - d): b is a shifted right/down by d, so a(x) = b(x + d).
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    shifted = cv2.warpAffine(base, m, (64, 64), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)
    d = phase_correlation(torch.from_numpy(base)[None], torch.from_numpy(shifted)[None])[0]
    assert abs(d[0].item() - dx) < 0.2 and abs(d[1].item() - dy) < 0.2


def test_global_candidates_find_rotation_scale_and_shift() -> None:
    rng = np.random.default_rng(1)
    angle, scale = math.radians(12.0), 1.12
    m = cv2.getRotationMatrix2D((127.5, 127.5), math.degrees(angle), scale)
    m = np.vstack([m, [0, 0, 1]])
    m[0, 2] += 14.0
    m[1, 2] -= 9.0
    case = make_case(rng, "astronaut", (256, 256), matrix=m, noise=0.01)
    moving = build_levels(to_tensor([case.moving]).mean(1, keepdim=True), None, 3)[2]
    fixed = build_levels(to_tensor([case.fixed]).mean(1, keepdim=True), None, 3)[2]
    views = [CanvasView(lv.image, lv.norm_H_frame(), lv.half_extent) for lv in (moving, fixed)]
    candidates = global_candidates(*views, model_rank=2, canvas=64)
    assert candidates.shape == (1, 4, 3, 3)
    assert torch.equal(candidates[0, -1], torch.eye(3))  # no motion at all
    truth = model_from_matrix(torch.tensor(m)[None], (256, 256), (256, 256)).float()
    errors = [(c - truth[0]).abs().max().item() for c in candidates[0]]
    # One candidate is within a few hundredths of a frame unit (a couple of pixels at 256 px).
    assert min(errors) < 0.04
    best = candidates[0, int(np.argmin(errors))]
    # T maps fixed to moving, the inverse of fixed_H_moving: OpenCV's counter-clockwise rotation
    # [[c, s], [-s, c]] inverts to [[c, -s], [s, c]], i.e. +angle in T's own parameterisation.
    assert abs(math.atan2(best[1, 0].item(), best[0, 0].item()) - angle) < math.radians(1.5)
    assert abs(math.hypot(best[0, 0].item(), best[1, 0].item()) - 1 / scale) < 0.02


# --------------------------------------------------------------------------- points and result


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_register_points_recovers_exact_transforms(model: str) -> None:
    g = torch.Generator().manual_seed(3)
    moving = torch.rand(2, 12, 2, generator=g, dtype=torch.float64) * 100
    truth = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    truth[:, :2, 2] = torch.tensor([[5.0, -3.0], [2.0, 7.0]], dtype=torch.float64)
    if model != "translation":
        c, s = math.cos(0.2), math.sin(0.2)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        truth[:, :2, :2] = rot * (1.1 if model != "rigid" else 1.0)
    if model in ("affine", "homography"):
        truth[:, 0, 1] += 0.05
    if model == "homography":
        truth[:, 2, :2] = torch.tensor([1e-4, -2e-4], dtype=torch.float64)
    fixed = cv2.perspectiveTransform(moving.numpy().reshape(-1, 1, 2)[:12], truth[0].numpy()).reshape(
        1, 12, 2
    )
    fixed = np.concatenate(
        [fixed, cv2.perspectiveTransform(moving[1].numpy()[:, None], truth[1].numpy()).reshape(1, 12, 2)]
    )
    result = register_points(
        moving, torch.from_numpy(fixed), model, moving_size=(100, 100), fixed_size=(100, 100)
    )
    assert torch.allclose(result.matrix, truth, atol=1e-6)
    assert (result.loss < 1e-6).all() and result.converged.all()
    assert (result.iterations == 0).all()


def test_register_points_loss_is_weighted_rms() -> None:
    moving = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    fixed = moving + torch.tensor([[[1.0, 0.0], [1.0, 0.0], [4.0, 0.0]]])
    weights = torch.tensor([[1.0, 1.0, 0.0]])
    result = register_points(moving, fixed, "translation", weights)
    assert torch.allclose(result.matrix[0, :2, 2], torch.tensor([1.0, 0.0]))
    assert result.loss[0].item() == pytest.approx(0.0, abs=1e-6)
    unweighted = register_points(moving, fixed, "translation")
    residuals = torch.tensor([1.0, 1.0, 2.0])  # mean shift is 2: errors -1, -1, +2
    assert unweighted.loss[0].item() == pytest.approx(math.sqrt((residuals**2).mean().item()), rel=1e-5)


def test_register_points_bad_arguments() -> None:
    with pytest.raises(ValueError):
        register_points(torch.zeros(1, 4, 3), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError):
        register_points(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), "spline")
    with pytest.raises(ValueError):
        register_points(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), weights=torch.ones(1, 3))


def test_result_rescales_for_resized_images() -> None:
    matrix = torch.tensor([[[0.9, 0.1, 12.0], [-0.1, 0.9, -4.0], [0.0, 0.0, 1.0]]])
    result = RegistrationResult(
        matrix, torch.zeros(1), torch.ones(1, dtype=torch.bool), torch.zeros(1), (60, 80), (50, 70)
    )
    bigger = result.matrix_for((120, 160), (100, 140))
    # A point of the small moving image maps like its twice-as-large twin.
    p = np.array([[[10.0, 20.0]]])
    small = cv2.perspectiveTransform(p, matrix[0].double().numpy())
    big = cv2.perspectiveTransform((p + 0.5) * 2 - 0.5, bigger[0].double().numpy())
    assert np.allclose((small + 0.5) * 2 - 0.5, big, atol=1e-4)
    images = torch.rand(1, 2, 120, 160)
    warped = result.warp(images, padding_mode="border")
    assert warped.shape == (1, 2, 100, 140)
    assert torch.allclose(warped, warp_perspective(images, bigger, (100, 140), padding_mode="border"))


def test_result_without_sizes_needs_dsize() -> None:
    result = register_points(torch.rand(1, 4, 2), torch.rand(1, 4, 2), "translation")
    with pytest.raises(ValueError, match="dsize"):
        result.warp(torch.rand(1, 1, 8, 8))
    assert result.warp(torch.rand(1, 1, 8, 8), (8, 8)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="sizes"):
        result.matrix_for((8, 8), (8, 8))


# --------------------------------------------------------------------------- steady-step boost


def test_steady_boost_lengthens_only_steady_small_steps() -> None:
    from alignimate.registration.solvers import _MAX_BOOST, _steady_boost

    previous = torch.tensor([0.1, 0.0, 0.0, 0.1, -0.1, 0.0, 0.0, -0.1]).repeat(6, 1)
    factor = torch.tensor([0.8, 0.6, -0.8, 0.97, 0.3, 0.8])  # per pair: this step over the last
    current = previous * factor[:, None]
    current[5] *= 10  # the last pair moves too far for a boost
    previous[5] *= 10

    def motion(corners: torch.Tensor) -> torch.Tensor:
        return corners.view(-1, 4, 2).norm(dim=-1).amax(dim=-1)

    boost = _steady_boost(current, motion(current), previous, motion(previous), below=0.5)
    expected = torch.tensor([min(_MAX_BOOST, 1 / (1 - 0.8)), 1 / (1 - 0.6), 1.0, 1.0, 1.0, 1.0])
    assert torch.allclose(boost, expected)
    assert torch.equal(_steady_boost(current, motion(current), None, None, below=0.5), torch.ones(6))


BLUR_SIGMA = 2.5


def _corners_apart(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]) -> float:
    """Largest distance, in pixels, between the image corners mapped by two frame models."""
    h, w = size
    xs, ys = (0.0, w - 1.0), (0.0, h - 1.0)
    corners = torch.tensor([[x, y, 1.0] for y in ys for x in xs], dtype=torch.float64)
    mapped = [corners @ matrix_from_model(m.double(), size, size).transpose(1, 2) for m in (a, b)]
    points = [m[..., :2] / m[..., 2:] for m in mapped]
    return float((points[0] - points[1]).norm(dim=-1).max())


@pytest.mark.parametrize("model", ["similarity", "homography"])
def test_accelerated_finest_level_gets_as_close_in_fewer_iterations(model: str) -> None:
    from alignimate.registration.solvers import LevelState, gauss_newton_level

    rng = np.random.default_rng(3)
    homography = model == "homography"
    cases = [make_case(rng, name, (96, 96), homography=homography) for name in ("camera", "coffee")]
    # A blurred moving view: the fixed image's gradients overstate its slopes, so every step falls
    # short by about the same fraction and the plain solver converges slowly and steadily.
    blurred = [cv2.GaussianBlur(c.moving, (0, 0), BLUR_SIGMA) for c in cases]
    moving, fixed = to_tensor(blurred), to_tensor([c.fixed for c in cases])
    grey = (moving.mean(dim=1, keepdim=True), fixed.mean(dim=1, keepdim=True))
    moving_level, fixed_level = build_levels(grey[0], None, 1)[0], build_levels(grey[1], None, 1)[0]
    samples = sample_fixed(fixed_level, None)
    motion = get_model(model)
    truth = torch.from_numpy(np.stack([c.fixed_H_moving for c in cases]))
    start = model_from_matrix(truth, (96, 96), (96, 96)).float()
    start[:, :2, 2] += torch.tensor([[0.03, -0.02], [-0.02, 0.03]])  # about 1.5 px off
    fresh = (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool), torch.ones(2))

    def solve(accelerate: bool, tolerance: float = 0.01, iterations: int = 60) -> LevelState:
        return gauss_newton_level(
            moving_level, samples, motion, LevelState(start.clone(), *fresh), loss="zncc",
            iterations=iterations, tolerance=tolerance, min_overlap=0.1, accelerate=accelerate,
        )

    limit = solve(False, tolerance=1e-4, iterations=400)  # the plain solver's fixed point, closely
    plain, fast = solve(False), solve(True)
    assert bool(fast.converged.all()) and bool(plain.converged.all())
    assert int(fast.iterations.sum()) < int(plain.iterations.sum())
    off_plain = _corners_apart(plain.model, limit.model, (96, 96))
    off_fast = _corners_apart(fast.model, limit.model, (96, 96))
    assert off_fast <= max(off_plain, 0.01) + 0.005, (off_fast, off_plain)
