"""End-to-end accuracy and behaviour of ``register`` on ground-truth cases built from sample photos.

Ground truth comes from tests/registration/registration_cases.py: the moving view is rendered by
OpenCV through a known ``fixed_H_moving``; errors are mean corner distances in fixed pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from registration_cases import PHOTOS, corner_error, make_case, random_matrix, to_tensor

from alignimate.registration import RegistrationResult, register


def _errors(result: RegistrationResult, cases: list, moving_size: tuple[int, int]) -> np.ndarray:
    return np.array(
        [
            corner_error(result.matrix[i].double().numpy(), c.fixed_H_moving, moving_size)
            for i, c in enumerate(cases)
        ]
    )


def _batch(cases: list) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor([c.moving for c in cases]), to_tensor([c.fixed for c in cases])


def _corners(matrix: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    pts = np.array([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], dtype=np.float64)
    return np.stack([cv2.perspectiveTransform(pts, m.double().numpy())[0] for m in matrix])


@pytest.fixture(scope="module")
def similarity_256() -> tuple[list, RegistrationResult]:
    rng = np.random.default_rng(11)
    cases = [make_case(rng, name, (256, 256)) for name in PHOTOS]
    return cases, register(*_batch(cases), "similarity")


def test_similarity_on_photos_is_subpixel(similarity_256) -> None:
    cases, result = similarity_256
    errors = _errors(result, cases, (256, 256))
    # Rotation up to 15 degrees, scale 0.85-1.15, shift up to 10 %, gain/bias and noise, no init.
    assert np.median(errors) < 0.1, errors
    assert errors.max() < 2.0, errors
    assert result.converged.all()
    assert torch.isfinite(result.loss).all()


def test_result_fields(similarity_256) -> None:
    cases, result = similarity_256
    b = len(cases)
    assert result.matrix.shape == (b, 3, 3) and result.matrix.dtype == torch.float32
    assert not result.matrix.requires_grad
    assert result.loss.shape == (b,) and result.converged.dtype == torch.bool
    assert result.iterations.shape == (b,) and (result.iterations > 0).all()
    assert result.moving_size == (256, 256) and result.fixed_size == (256, 256)


def test_homography_with_perspective_jitter() -> None:
    rng = np.random.default_rng(5)
    cases = [make_case(rng, name, (192, 192), homography=True) for name in PHOTOS[:8]]
    errors = _errors(register(*_batch(cases), "homography"), cases, (192, 192))
    assert np.median(errors) < 0.2, errors
    assert errors.max() < 2.0, errors


@pytest.mark.parametrize("model", ["translation", "rigid", "affine"])
def test_other_models(model: str) -> None:
    rng = np.random.default_rng(7)
    cases = []
    for name in PHOTOS[:4]:
        m = random_matrix(rng, (128, 128))
        if model == "translation":
            m[:2, :2] = np.eye(2)
        elif model == "rigid":
            m[:2, :2] /= np.sqrt(abs(np.linalg.det(m[:2, :2])))
        else:
            m[:2, :2] = m[:2, :2] @ np.array([[1.06, 0.05], [-0.04, 0.95]])
        cases.append(make_case(rng, name, (128, 128), matrix=m))
    result = register(*_batch(cases), model)
    errors = _errors(result, cases, (128, 128))
    assert errors.max() < 0.5, errors
    if model == "rigid":
        linear = result.matrix[:, :2, :2].double()
        assert torch.allclose(
            torch.linalg.det(linear), torch.ones(len(cases), dtype=torch.float64), atol=1e-5
        )


def test_batch_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    cases = [make_case(rng, name, (128, 128)) for name in ("astronaut", "coffee", "camera")]
    moving, fixed = _batch(cases)
    together = register(moving, fixed, "similarity")
    for i in range(len(cases)):
        alone = register(moving[i : i + 1], fixed[i : i + 1], "similarity")
        diff = np.abs(
            _corners(alone.matrix, (128, 128)) - _corners(together.matrix[i : i + 1], (128, 128))
        ).max()
        assert diff < 1e-3
        assert alone.iterations[0] == together.iterations[i]
        assert alone.converged[0] == together.converged[i]


def test_shared_fixed_image_broadcasts() -> None:
    rng = np.random.default_rng(4)
    base = make_case(rng, "astronaut", (128, 128))
    cases = [base] + [
        make_case(rng, "astronaut", (128, 128), matrix=random_matrix(rng, (128, 128))) for _ in range(2)
    ]
    # Give every case the first case's fixed view: the same photo crop, so the truth still holds.
    moving = to_tensor([c.moving for c in cases])
    fixed = to_tensor([base.fixed])
    result = register(moving, fixed, "similarity")
    assert result.matrix.shape == (3, 3, 3)
    assert _errors(result, cases, (128, 128)).max() < 0.5


def test_identity_input_returns_identity() -> None:
    image = to_tensor(
        [make_case(np.random.default_rng(0), "camera", (128, 128), photometric=False, noise=0).fixed]
    )
    result = register(image, image, "homography")
    assert corner_error(result.matrix[0].double().numpy(), np.eye(3), (128, 128)) < 1e-3
    assert result.converged.all()
    assert result.loss[0] < 1e-5


def test_non_square_images() -> None:
    rng = np.random.default_rng(8)
    cases = [make_case(rng, name, (96, 160)) for name in PHOTOS[:4]]
    result = register(*_batch(cases), "similarity")
    assert _errors(result, cases, (96, 160)).max() < 0.5
    # A similarity in the frame is a similarity in pixels, also for non-square images.
    linear = result.matrix[:, :2, :2].double()
    assert torch.allclose(linear[:, 0, 0], linear[:, 1, 1], atol=1e-5)
    assert torch.allclose(linear[:, 0, 1], -linear[:, 1, 0], atol=1e-5)


def test_mismatched_sizes_give_the_same_matrix_up_to_the_scale() -> None:
    rng = np.random.default_rng(9)
    names = PHOTOS[:3]
    matrices = [random_matrix(rng, (128, 128)) for _ in names]
    same = [
        make_case(np.random.default_rng(1), n, (128, 128), matrix=m)
        for n, m in zip(names, matrices, strict=True)
    ]
    double = [
        make_case(np.random.default_rng(1), n, (128, 128), (256, 256), matrix=m)
        for n, m in zip(names, matrices, strict=True)
    ]
    r_same = register(*_batch(same), "similarity")
    r_double = register(*_batch(double), "similarity")
    assert r_double.moving_size == (256, 256) and r_double.fixed_size == (128, 128)
    assert _errors(r_same, same, (128, 128)).max() < 0.3
    assert _errors(r_double, double, (256, 256)).max() < 0.3
    # Rescaled to the 128 px moving image, the 256 px result is the 128 px one.
    rescaled = r_double.matrix_for((128, 128), (128, 128))
    diff = np.abs(_corners(rescaled, (128, 128)) - _corners(r_same.matrix, (128, 128))).max()
    assert diff < 0.3


def test_same_answer_at_any_working_resolution() -> None:
    rng = np.random.default_rng(12)
    cases = [make_case(rng, name, (256, 256)) for name in PHOTOS[:4]]
    moving, fixed = _batch(cases)
    full = register(moving, fixed, "similarity")
    half = register(
        torch.nn.functional.interpolate(moving, size=(128, 128), mode="area"),
        torch.nn.functional.interpolate(fixed, size=(128, 128), mode="area"),
        "similarity",
    )
    upscaled = half.matrix_for((256, 256), (256, 256))
    diff = np.abs(_corners(upscaled, (256, 256)) - _corners(full.matrix, (256, 256))).max()
    assert diff < 0.5


def test_no_overlap_is_not_converged_and_finite() -> None:
    rng = np.random.default_rng(2)
    case = make_case(rng, "astronaut", (64, 64))
    moving, fixed = _batch([case])
    far = torch.tensor([[[1.0, 0.0, 500.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    for loss in ("zncc", "mse"):
        result = register(moving, fixed, "translation", init=far, loss=loss)
        assert not result.converged[0]
        assert torch.isfinite(result.loss).all()
        assert torch.isfinite(result.matrix).all()
    assert result.loss[0] > 0


def test_init_is_honoured() -> None:
    rng = np.random.default_rng(6)
    case = make_case(rng, "coffee", (128, 128))
    moving, fixed = _batch([case])
    truth = torch.tensor(case.fixed_H_moving, dtype=torch.float32)[None]
    # With no iterations the (projected) init comes back unchanged.
    offset = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]])
    start = offset @ truth
    result = register(moving, fixed, "similarity", init=start, max_iterations=0)
    assert corner_error(result.matrix[0].double().numpy(), start[0].double().numpy(), (128, 128)) < 1e-3
    # From a close init the refinement reaches the truth.
    refined = register(moving, fixed, "similarity", init=start)
    assert corner_error(refined.matrix[0].double().numpy(), case.fixed_H_moving, (128, 128)) < 0.3


def test_deterministic_on_cpu() -> None:
    rng = np.random.default_rng(13)
    cases = [make_case(rng, name, (96, 96), homography=True) for name in PHOTOS[:3]]
    moving, fixed = _batch(cases)
    a = register(moving, fixed, "homography")
    b = register(moving, fixed, "homography")
    assert torch.equal(a.matrix, b.matrix)
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(a.iterations, b.iterations)


def test_masks_ignore_occluded_pixels() -> None:
    rng = np.random.default_rng(14)
    case = make_case(rng, "astronaut", (128, 128), photometric=False)
    moving, fixed = _batch([case])
    # Paint a bright occluder over a quarter of the moving image; masking it keeps the result exact.
    occluded = moving.clone()
    occluded[..., 10:74, 10:74] = 1.0
    mask = torch.ones(1, 1, 128, 128)
    mask[..., 6:78, 6:78] = 0.0
    result = register(occluded, fixed, "similarity", moving_mask=mask, loss="mse")
    assert corner_error(result.matrix[0].double().numpy(), case.fixed_H_moving, (128, 128)) < 0.3
    fixed_mask = torch.zeros(1, 1, 128, 128, dtype=torch.bool)
    fixed_mask[..., :, 64:] = True
    half = register(moving, fixed, "similarity", fixed_mask=fixed_mask)
    assert corner_error(half.matrix[0].double().numpy(), case.fixed_H_moving, (128, 128)) < 0.5


@pytest.mark.parametrize("loss", ["mse", "l1", "charbonnier"])
def test_intensity_losses(loss: str) -> None:
    rng = np.random.default_rng(15)
    cases = [make_case(rng, name, (96, 96), photometric=False) for name in PHOTOS[:3]]
    result = register(*_batch(cases), "similarity", loss=loss)
    assert _errors(result, cases, (96, 96)).max() < 0.5


@pytest.mark.parametrize(("loss", "solver"), [("ssim", None), ("zncc", "adam")])
def test_adam_solver(loss: str, solver: str | None) -> None:
    rng = np.random.default_rng(16)
    cases = [make_case(rng, name, (64, 64), photometric=False) for name in ("astronaut", "coffee")]
    result = register(*_batch(cases), "similarity", loss=loss, solver=solver)
    assert _errors(result, cases, (64, 64)).max() < 0.5
    assert torch.isfinite(result.loss).all()


def test_grey_option_registers_the_luma() -> None:
    rng = np.random.default_rng(17)
    case = make_case(rng, "coffee", (96, 96))
    moving, fixed = _batch([case])
    colour = register(moving, fixed, grey=True)
    grey_moving = 0.299 * moving[:, :1] + 0.587 * moving[:, 1:2] + 0.114 * moving[:, 2:3]
    grey_fixed = 0.299 * fixed[:, :1] + 0.587 * fixed[:, 1:2] + 0.114 * fixed[:, 2:3]
    grey = register(grey_moving, grey_fixed)
    assert np.abs(_corners(colour.matrix, (96, 96)) - _corners(grey.matrix, (96, 96))).max() < 1e-3


def test_float64_input() -> None:
    rng = np.random.default_rng(18)
    cases = [make_case(rng, "camera", (64, 64))]
    moving, fixed = _batch(cases)
    result = register(moving.double(), fixed.double())
    assert result.matrix.dtype == torch.float64
    assert _errors(result, cases, (64, 64)).max() < 0.5


def test_warp_at_full_resolution_matches_opencv() -> None:
    rng = np.random.default_rng(19)
    case = make_case(rng, "astronaut", (256, 256), noise=0.0, photometric=False)
    moving, fixed = _batch([case])
    small = register(
        torch.nn.functional.interpolate(moving, size=(128, 128), mode="area"),
        torch.nn.functional.interpolate(fixed, size=(128, 128), mode="area"),
    )
    assert small.moving_size == (128, 128)
    warped = small.warp(moving)  # full resolution, default size = fixed size scaled likewise
    assert warped.shape == (1, 3, 256, 256)
    matrix = small.matrix_for((256, 256), (256, 256))
    assert corner_error(matrix[0].double().numpy(), case.fixed_H_moving, (256, 256)) < 0.5
    reference = cv2.warpPerspective(
        case.moving, matrix[0].double().numpy(), (256, 256), flags=cv2.INTER_LINEAR
    )
    ours = warped[0].permute(1, 2, 0).numpy()
    inside = (
        cv2.warpPerspective(np.ones((256, 256), np.float32), matrix[0].double().numpy(), (256, 256)) > 0.999
    )
    inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert inside.mean() > 0.5
    # OpenCV interpolates with 5-bit fixed-point weights; agreement to about 1/64 of the range.
    assert np.abs(ours - reference)[inside].max() < 0.02
    # And the aligned image matches the fixed view where both are defined.
    assert np.abs(ours - case.fixed)[inside].mean() < 0.02


def test_warp_rejects_other_aspect_ratios(similarity_256) -> None:
    _, result = similarity_256
    with pytest.raises(ValueError, match="aspect ratio"):
        result.warp(torch.zeros(1, 1, 100, 300))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "projective"}, ValueError),
        ({"loss": "ncc"}, ValueError),
        ({"loss": "ssim", "solver": "gauss_newton"}, ValueError),
        ({"solver": "lbfgs"}, ValueError),
        ({"tolerance": 0}, ValueError),
        ({"levels": 0}, ValueError),
        ({"max_iterations": -1}, ValueError),
        ({"init": torch.eye(3)}, ValueError),
        ({"moving_mask": torch.ones(1, 1, 8, 8)}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict, error: type) -> None:
    moving = torch.rand(2, 1, 32, 32)
    with pytest.raises(error):
        register(moving, moving, **kwargs)


def test_bad_images() -> None:
    with pytest.raises(ValueError, match="fixed"):
        register(torch.rand(2, 1, 32, 32), torch.rand(3, 1, 32, 32))
    with pytest.raises(TypeError, match="moving"):
        register(torch.zeros(1, 1, 32, 32, dtype=torch.uint8), torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="moving"):
        register(torch.rand(1, 32, 32), torch.rand(1, 1, 32, 32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(20)
    cases = [make_case(rng, name, (128, 128)) for name in PHOTOS[:4]]
    moving, fixed = _batch(cases)
    cpu = register(moving, fixed)
    gpu = register(moving.cuda(), fixed.cuda())
    assert gpu.matrix.device.type == "cuda"
    assert np.abs(_corners(cpu.matrix, (128, 128)) - _corners(gpu.matrix.cpu(), (128, 128))).max() < 0.05
    on_device = register(moving, fixed, device="cuda")
    assert on_device.matrix.device.type == "cpu"
