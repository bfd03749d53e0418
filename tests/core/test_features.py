"""Tests for alignimate.core.features: repeatability and end-to-end matching under a known similarity,
rotation invariance, batch = loop, gradients, the matcher against a brute-force reference, degenerate
inputs, and a sanity comparison with OpenCV's SIFT."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F  # noqa: N812

from alignimate.core.features import (
    DESCRIPTOR_SIZE,
    Keypoints,
    describe_keypoints,
    detect_and_describe,
    detect_keypoints,
    keypoint_orientations,
    match_descriptors,
    matched_points,
)
from alignimate.core.transforms import similarity_matrix, transform_points
from alignimate.core.warp import warp_perspective

SIZE = 256
# 20 degrees counter-clockwise, 1.2x larger, shifted: the known transform of the image pairs.
TRUE_H = similarity_matrix(math.radians(20.0), math.log(1.2), 10.0, -6.0, center=(127.5, 127.5))


@functools.cache
def _photo(name: str) -> torch.Tensor:
    """A scikit-image photo as grey ``(1, 1, 256, 256)`` float32 in [0, 1] (area-resized)."""
    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        image = image[..., :3].mean(-1)
    tensor = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
    return F.interpolate(tensor, size=(SIZE, SIZE), mode="area")


def photo(name: str) -> torch.Tensor:
    return _photo(name).clone()


def warped_pair(names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.cat([photo(n) for n in names])
    return images, warp_perspective(images, TRUE_H, (SIZE, SIZE))


def pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact point distances (cdist's default matmul formula loses ~0.1 px on 256 px coordinates)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def inside(points: torch.Tensor, margin: float) -> torch.Tensor:
    return ((points >= margin) & (points <= SIZE - 1 - margin)).all(-1)


def full_pipeline(images: torch.Tensor, **options) -> tuple[Keypoints, torch.Tensor, torch.Tensor]:
    keypoints = detect_keypoints(images, **options)
    orientations = keypoint_orientations(images, keypoints)
    return keypoints, orientations, describe_keypoints(images, keypoints, orientations)


def correct_matches(names: tuple[str, ...], **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair: number of matches and number within 3 px of the true transform."""
    images, warped = warped_pair(names)
    kp1, _, d1 = full_pipeline(images, **options)
    kp2, _, d2 = full_pipeline(warped, **options)
    matches, match_valid = match_descriptors(d1, d2, kp1.valid, kp2.valid)
    src, dst, _ = matched_points(kp1, kp2, matches, match_valid)
    error = (transform_points(TRUE_H, src) - dst).norm(dim=-1)
    return match_valid.sum(1), ((error < 3.0) & match_valid).sum(1)


# ----------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_keypoints_repeat_under_a_known_similarity(name: str) -> None:
    images, warped = warped_pair((name,))
    kp1, kp2 = detect_keypoints(images), detect_keypoints(warped)
    assert kp1.valid.sum() >= 80 and kp2.valid.sum() >= 80
    mapped = transform_points(TRUE_H, kp1.points)
    # Only keypoints whose counterpart can exist: well inside the warped image.
    usable = kp1.valid & inside(mapped, 12.0)
    distance = pairwise(mapped, kp2.points).masked_fill(~kp2.valid.unsqueeze(1), math.inf)
    nearest, index = distance.min(dim=2)
    repeated = usable & (nearest < 2.0)
    assert repeated.sum() / usable.sum() >= 0.6
    # Repeated keypoints are found at the scale the transform predicts (1.2x).
    ratio = kp2.scales.gather(1, index)[repeated] / kp1.scales[repeated]
    assert 1.1 < ratio.median() < 1.3


def test_keypoint_output_format() -> None:
    keypoints = detect_keypoints(photo("astronaut"), max_keypoints=300)
    assert keypoints.points.shape == (1, 300, 2) and keypoints.valid.shape == (1, 300)
    assert keypoints.points.dtype == torch.float32 and keypoints.valid.dtype == torch.bool
    count = int(keypoints.valid.sum())
    assert 0 < count <= 300
    # Sorted by response, valid slots first; padded slots zeroed.
    assert torch.all(keypoints.responses[0, :-1] >= keypoints.responses[0, 1:])
    assert keypoints.valid[0, :count].all() and not keypoints.valid[0, count:].any()
    assert torch.all(keypoints.responses[0, :count] >= 0.01)
    assert torch.all(keypoints.points[0, count:] == 0) and torch.all(keypoints.scales[0, count:] == 0)
    # Inside the border margin, with scales from sigma up to the last octave.
    assert inside(keypoints.points[0, :count], 8.0 - 0.5).all()
    assert keypoints.scales[0, :count].min() >= 1.6 * 2 ** (0.5 / 3) and keypoints.scales.max() < 1.6 * 16


def test_max_keypoints_keeps_the_strongest() -> None:
    many = detect_keypoints(photo("chelsea"), max_keypoints=512)
    few = detect_keypoints(photo("chelsea"), max_keypoints=20)
    assert few.valid.all()
    torch.testing.assert_close(few.responses, many.responses[:, :20])
    torch.testing.assert_close(few.points, many.points[:, :20])


def test_colour_input_is_reduced_to_its_channel_mean() -> None:
    rgb = torch.from_numpy(skimage.data.astronaut().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    rgb = F.interpolate(rgb, size=(SIZE, SIZE), mode="area")
    from_rgb = detect_keypoints(rgb)
    from_grey = detect_keypoints(rgb.mean(1, keepdim=True))
    torch.testing.assert_close(from_rgb.points, from_grey.points)
    orientations = keypoint_orientations(rgb, from_rgb)
    torch.testing.assert_close(
        describe_keypoints(rgb, from_rgb, orientations),
        describe_keypoints(rgb.mean(1, keepdim=True), from_rgb, orientations),
    )


def test_upsampled_octave_finds_smaller_keypoints() -> None:
    plain = detect_keypoints(photo("coffee"))
    upsampled = detect_keypoints(photo("coffee"), upsample=True)
    assert upsampled.valid.sum() > 1.5 * plain.valid.sum()
    assert upsampled.scales[upsampled.valid].min() < 1.6


# ----------------------------------------------------------------------------------------------------
# Orientation and description
# ----------------------------------------------------------------------------------------------------


def single_keypoints(
    points: list[tuple[float, float]], scales: list[float], dtype=torch.float32
) -> Keypoints:
    n = len(points)
    return Keypoints(
        torch.tensor([points], dtype=dtype),
        torch.tensor([scales], dtype=dtype),
        torch.ones(1, n, dtype=dtype),
        torch.ones(1, n, dtype=torch.bool),
    )


@pytest.mark.parametrize("angle", [0.0, 0.5, 1.5, 3.0, -2.0, math.pi])
def test_orientation_follows_the_conventions(angle: float) -> None:
    # A ramp getting brighter along (cos a, -sin a): counter-clockwise on screen by a from +x.
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    ramp = 0.5 + 0.01 * ((xs - 32) * math.cos(angle) - (ys - 32) * math.sin(angle))
    keypoints = single_keypoints([(32.0, 32.0), (30.5, 33.25)], [2.0, 5.0])
    found = keypoint_orientations(ramp[None, None], keypoints)
    difference = torch.remainder(found - angle + math.pi, 2 * math.pi) - math.pi
    assert difference.abs().max() < 0.02
    assert found.abs().max() <= math.pi + 1e-6


def _rot90_points(points: torch.Tensor, width: int) -> torch.Tensor:
    """Where ``torch.rot90(image, 1, dims=(-2, -1))`` (counter-clockwise on screen) moves pixel (x, y)."""
    return torch.stack([points[..., 1], width - 1 - points[..., 0]], dim=-1)


def test_descriptor_is_invariant_to_an_exact_rotation() -> None:
    image = photo("astronaut")
    rotated = torch.rot90(image, 1, dims=(-2, -1))
    kp1 = detect_keypoints(image)
    kp2 = Keypoints(_rot90_points(kp1.points, SIZE), kp1.scales, kp1.responses, kp1.valid)
    o1, o2 = keypoint_orientations(image, kp1), keypoint_orientations(rotated, kp2)
    valid = kp1.valid[0]
    # The image turned by +90 degrees, so did every keypoint's orientation.
    turn = torch.remainder(o2 - o1 - math.pi / 2 + math.pi, 2 * math.pi) - math.pi
    assert (turn[0, valid].abs() < 0.05).float().mean() >= 0.9
    d1, d2 = describe_keypoints(image, kp1, o1), describe_keypoints(rotated, kp2, o2)
    cosine = (d1 * d2).sum(-1)[0, valid]
    assert (cosine > 0.9).float().mean() >= 0.9
    # Given exactly the turned orientation, the descriptor is the same up to rounding.
    exact = describe_keypoints(rotated, kp2, o1 + math.pi / 2)
    assert (d1 * exact).sum(-1)[0, valid].min() > 0.99


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_detection_is_equivariant_to_an_exact_rotation(dtype: torch.dtype) -> None:
    image = photo("camera").to(dtype)
    kp1 = detect_keypoints(image)
    kp2 = detect_keypoints(torch.rot90(image, 1, dims=(-2, -1)))
    assert kp1.valid.sum() == kp2.valid.sum()
    expected = _rot90_points(kp1.points, SIZE)[kp1.valid]
    distance, index = pairwise(expected, kp2.points[kp2.valid]).min(dim=1)
    if dtype == torch.float64:
        # Every step (blurs, centred decimation, NMS, fit) commutes with rot90: equal up to rounding.
        assert distance.max() < 1e-6
        torch.testing.assert_close(kp2.scales[kp2.valid][index], kp1.scales[kp1.valid])
    else:
        # float32 rounding differs between the row and column passes of the blurs.
        assert (distance < 1e-3).float().mean() >= 0.95


def test_descriptor_format_and_invalid_slots() -> None:
    image = photo("coffee")
    keypoints, orientations, descriptors = full_pipeline(image)
    assert descriptors.shape == (1, 512, DESCRIPTOR_SIZE) and descriptors.dtype == torch.float32
    valid = keypoints.valid[0]
    norms = descriptors[0].norm(dim=-1)
    torch.testing.assert_close(norms[valid], torch.ones_like(norms[valid]))
    assert torch.all(descriptors[0, ~valid] == 0) and torch.all(orientations[0, ~valid] == 0)
    assert descriptors.min() >= 0 and descriptors.max() <= 0.5  # clipped at 0.2 before renormalising
    same = detect_and_describe(image)
    torch.testing.assert_close(same[1], orientations)
    torch.testing.assert_close(same[2], descriptors)


def test_descriptor_gradcheck() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 32, 32, generator=generator, dtype=torch.float64)
    # One keypoint read from octave 0 of the pyramid, one from octave 1.
    keypoints = single_keypoints([(14.3, 15.6), (17.2, 13.9)], [1.9, 3.6], dtype=torch.float64)
    orientations = torch.tensor([[0.4, -2.1]], dtype=torch.float64)
    image.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: describe_keypoints(x, keypoints, orientations), (image,), eps=1e-6, atol=1e-6
    )


def test_descriptor_gradient_is_finite_on_flat_areas() -> None:
    image = torch.full((1, 1, 48, 48), 0.5)
    image[..., 32:38, 32:38] = 0.8  # texture under the second window only (the first one reads < 20 px)
    image.requires_grad_(True)
    keypoints = single_keypoints([(10.0, 10.0), (30.0, 30.0), (2.0, 45.0)], [2.0, 2.0, 4.0])
    descriptors = describe_keypoints(image, keypoints, torch.zeros(1, 3))
    assert descriptors[0, 0].abs().max() < 1e-3  # flat window: (numerically) zero descriptor
    (descriptors * torch.randn_like(descriptors)).sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------
# End to end, batching
# ----------------------------------------------------------------------------------------------------


def test_end_to_end_matches_agree_with_the_true_transform() -> None:
    count, correct = correct_matches(("astronaut", "camera", "chelsea"))
    assert torch.all(count >= 30), count
    assert torch.all(correct >= 0.8 * count), (correct, count)


def test_same_ballpark_as_opencv_sift() -> None:
    # OpenCV also searches an upsampled octave; compare like with like.
    _, correct = correct_matches(("astronaut",), upsample=True)
    images, warped = warped_pair(("astronaut",))
    sift = cv2.SIFT_create()
    as_uint8 = [np.round(t[0, 0].numpy() * 255).astype(np.uint8) for t in (images, warped)]
    (kp1, d1), (kp2, d2) = (sift.detectAndCompute(a, None) for a in as_uint8)
    pairs = [p for p in cv2.BFMatcher().knnMatch(d1, d2, k=2) if len(p) == 2]
    good = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    src = torch.tensor([[kp1[m.queryIdx].pt for m in good]], dtype=torch.float32)
    dst = torch.tensor([[kp2[m.trainIdx].pt for m in good]], dtype=torch.float32)
    opencv_correct = int(((transform_points(TRUE_H, src) - dst).norm(dim=-1) < 3).sum())
    assert opencv_correct > 100
    assert int(correct[0]) >= 0.5 * opencv_correct


def test_batch_equals_loop() -> None:
    # float64 is computed exactly alike per image; float32 blurs round differently for different batch
    # sizes (by ~1e-7, see test_batch_equals_loop_float32).
    names = ("astronaut", "camera", "coffee")
    images, warped = (x.double() for x in warped_pair(names))
    kp1, o1, d1 = full_pipeline(images)
    kp2, _, d2 = full_pipeline(warped)
    matches, match_valid = match_descriptors(d1, d2, kp1.valid, kp2.valid)
    for i in range(len(names)):
        one1, one_o1, one_d1 = full_pipeline(images[i : i + 1])
        one2, _, one_d2 = full_pipeline(warped[i : i + 1])
        assert torch.equal(one1.valid, kp1.valid[i : i + 1])
        torch.testing.assert_close(one1.points, kp1.points[i : i + 1])
        torch.testing.assert_close(one1.scales, kp1.scales[i : i + 1])
        torch.testing.assert_close(one1.responses, kp1.responses[i : i + 1])
        torch.testing.assert_close(one_o1, o1[i : i + 1])
        torch.testing.assert_close(one_d1, d1[i : i + 1])
        one_matches, one_valid = match_descriptors(one_d1, one_d2, one1.valid, one2.valid)
        assert torch.equal(one_valid, match_valid[i : i + 1])
        assert torch.equal(one_matches[one_valid], matches[i : i + 1][one_valid])


def test_batch_equals_loop_float32() -> None:
    names = ("astronaut", "camera", "coffee")
    images, warped = warped_pair(names)
    kp1, _, d1 = full_pipeline(images)
    kp2, _, d2 = full_pipeline(warped)
    _, match_valid = match_descriptors(d1, d2, kp1.valid, kp2.valid)
    for i in range(len(names)):
        one1, _, one_d1 = full_pipeline(images[i : i + 1])
        one2, _, one_d2 = full_pipeline(warped[i : i + 1])
        assert torch.equal(one1.valid, kp1.valid[i : i + 1])
        # The same keypoints (near-equal responses may swap places) with the same descriptors.
        valid = one1.valid[0]
        distance, index = pairwise(one1.points[0, valid], kp1.points[i, valid]).min(dim=1)
        assert distance.max() < 1e-3
        assert (one_d1[0, valid] * d1[i, index]).sum(-1).min() > 0.999
        _, one_valid = match_descriptors(one_d1, one_d2, one1.valid, one2.valid)
        assert abs(int(one_valid.sum()) - int(match_valid[i].sum())) <= 2


def test_float64_gives_the_same_keypoints() -> None:
    image = photo("chelsea")
    kp32 = detect_keypoints(image)
    kp64, o64, d64 = full_pipeline(image.double())
    assert kp64.points.dtype == o64.dtype == d64.dtype == torch.float64
    assert abs(int(kp64.valid.sum()) - int(kp32.valid.sum())) <= 3
    distance, _ = pairwise(kp32.points[kp32.valid].double(), kp64.points[kp64.valid]).min(dim=1)
    assert (distance < 1e-3).float().mean() >= 0.97


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    images, warped = warped_pair(("astronaut", "camera"))
    _, correct_cpu = correct_matches(("astronaut", "camera"))
    kp1, _, d1 = full_pipeline(images.cuda())
    kp2, _, d2 = full_pipeline(warped.cuda())
    assert kp1.points.is_cuda and d1.is_cuda
    matches, match_valid = match_descriptors(d1, d2, kp1.valid, kp2.valid)
    src, dst, _ = matched_points(kp1, kp2, matches, match_valid)
    error = (transform_points(TRUE_H.cuda(), src) - dst).norm(dim=-1)
    correct = ((error < 3) & match_valid).sum(1).cpu()
    assert torch.all(correct >= 0.9 * correct_cpu)


# ----------------------------------------------------------------------------------------------------
# Degenerate inputs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(256, 256), (40, 70), (8, 8), (1, 1)])
def test_constant_and_tiny_images_give_no_keypoints(size: tuple[int, int]) -> None:
    images = torch.full((2, 3, *size), 0.4)
    keypoints, orientations, descriptors = full_pipeline(images, max_keypoints=16)
    assert keypoints.points.shape == (2, 16, 2) and descriptors.shape == (2, 16, DESCRIPTOR_SIZE)
    assert not keypoints.valid.any()
    for value in (keypoints.points, keypoints.scales, keypoints.responses, orientations, descriptors):
        assert torch.isfinite(value).all() and torch.all(value == 0)
    matches, match_valid = match_descriptors(descriptors, descriptors, keypoints.valid, keypoints.valid)
    assert matches.shape == (2, 16, 2) and not match_valid.any()


def test_empty_batches_and_zero_slots() -> None:
    keypoints, orientations, descriptors = detect_and_describe(torch.rand(0, 1, 64, 64), max_keypoints=8)
    assert keypoints.points.shape == (0, 8, 2) and descriptors.shape == (0, 8, DESCRIPTOR_SIZE)
    images = torch.rand(2, 1, 64, 64)
    none = Keypoints(
        torch.zeros(2, 0, 2), torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool)
    )
    orientations = keypoint_orientations(images, none)
    descriptors = describe_keypoints(images, none, orientations)
    assert orientations.shape == (2, 0) and descriptors.shape == (2, 0, DESCRIPTOR_SIZE)
    matches, match_valid = match_descriptors(descriptors, torch.rand(2, 5, DESCRIPTOR_SIZE))
    assert matches.shape == (2, 0, 2) and match_valid.shape == (2, 0)


def test_argument_checks() -> None:
    image = photo("camera")
    with pytest.raises(ValueError):
        detect_keypoints(image, max_keypoints=0)
    with pytest.raises(ValueError):
        detect_keypoints(image, sigma=0.4)
    with pytest.raises(ValueError):
        detect_keypoints(image[0])
    keypoints = detect_keypoints(image, max_keypoints=8)
    with pytest.raises(ValueError):
        describe_keypoints(image, keypoints, torch.zeros(1, 7))
    with pytest.raises(ValueError):
        keypoint_orientations(torch.cat([image, image]), keypoints)
    with pytest.raises(ValueError):
        Keypoints(
            torch.zeros(1, 4, 2), torch.zeros(1, 3), torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.bool)
        )
    with pytest.raises(ValueError):
        match_descriptors(torch.zeros(1, 4, 8), torch.zeros(1, 4, 9))
    with pytest.raises(ValueError):
        match_descriptors(torch.zeros(1, 4, 8), torch.zeros(1, 4, 8), ratio=1.5)


# ----------------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------------


def brute_force_matches(
    d1: np.ndarray, d2: np.ndarray, v1: np.ndarray, v2: np.ndarray, ratio: float
) -> dict[int, int]:
    """Mutual nearest neighbours passing the ratio test, by explicit loops: {i: j}."""
    result = {}
    for i in range(len(d1)):
        if not v1[i] or not v2.any():
            continue
        dist = {j: float(np.linalg.norm(d1[i] - d2[j])) for j in range(len(d2)) if v2[j]}
        ranked = sorted(dist, key=dist.get)
        j = ranked[0]
        second = dist[ranked[1]] if len(ranked) > 1 else math.inf
        back = {k: float(np.linalg.norm(d1[k] - d2[j])) for k in range(len(d1)) if v1[k]}
        if min(back, key=back.get) == i and dist[j] < ratio * second:
            result[i] = j
    return result


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(30, 25), (12, 1), (1, 9)])
def test_match_descriptors_against_brute_force(seed: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    batch, (k1, k2), dim = 3, shape, 6
    d2 = rng.normal(size=(batch, k2, dim))
    # Half of the first set are noisy copies of the second, so that real matches exist.
    d1 = rng.normal(size=(batch, k1, dim))
    copies = min(k1, k2) // 2 + 1
    d1[:, :copies] = d2[:, :copies] + 0.05 * rng.normal(size=(batch, copies, dim))
    v1, v2 = rng.random((batch, k1)) < 0.8, rng.random((batch, k2)) < 0.8
    v2[2] = False  # no valid candidate at all in the last element
    for ratio in (0.8, 1.0):
        matches, match_valid = match_descriptors(
            torch.from_numpy(d1), torch.from_numpy(d2), torch.from_numpy(v1), torch.from_numpy(v2), ratio
        )
        assert matches.shape == (batch, k1, 2) and matches.dtype == torch.long
        assert torch.equal(matches[..., 0], torch.arange(k1).expand(batch, k1))
        for b in range(batch):
            expected = brute_force_matches(d1[b], d2[b], v1[b], v2[b], ratio)
            found = {int(i): int(matches[b, i, 1]) for i in torch.nonzero(match_valid[b]).flatten()}
            assert found == expected


def test_matched_points_gathers_the_pairs() -> None:
    kp1 = single_keypoints([(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)], [2.0, 2.0, 2.0])
    kp2 = single_keypoints([(10.0, 20.0), (30.0, 40.0)], [2.0, 2.0])
    matches = torch.tensor([[[0, 1], [1, 0], [2, 1]]])
    match_valid = torch.tensor([[True, False, True]])
    src, dst, weights = matched_points(kp1, kp2, matches, match_valid)
    torch.testing.assert_close(src, kp1.points)
    torch.testing.assert_close(dst, torch.tensor([[[30.0, 40.0], [10.0, 20.0], [30.0, 40.0]]]))
    torch.testing.assert_close(weights, torch.tensor([[1.0, 0.0, 1.0]]))
