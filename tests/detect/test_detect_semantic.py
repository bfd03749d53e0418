from __future__ import annotations

import numpy as np
import pytest
import torch

from alignimate.detect.base import Instance
from alignimate.detect.persons import COCO_KEYPOINT_NAMES, DEFAULT_BODY_KEYPOINTS
from alignimate.detect.semantic import confidence_weights, heatmap_image, keypoints_at


def _person(points: dict[str, tuple[float, float, float]], size: tuple[int, int], mask=None) -> Instance:
    kps = np.zeros((17, 2), np.float32)
    scores = np.zeros(17, np.float32)
    for name, (x, y, s) in points.items():
        i = COCO_KEYPOINT_NAMES.index(name)
        kps[i] = (x, y)
        scores[i] = s
    return Instance(
        box=np.array([0, 0, size[1], size[0]], np.float32),
        score=0.99,
        mask=mask,
        keypoints=kps,
        keypoint_scores=scores,
        keypoint_names=COCO_KEYPOINT_NAMES,
        image_size=size,
        label="person",
    )


def _argmax_xy(channel: torch.Tensor) -> tuple[int, int]:
    i = int(torch.argmax(channel))
    return i % channel.shape[1], i // channel.shape[1]


def test_peaks_sit_on_the_rescaled_keypoints() -> None:
    # A 400x600 photo drawn at 100x150: scale 1/4, pixel-centre mapping x' = (x + 0.5) / 4 - 0.5.
    p = _person(
        {
            "left_ear": (201.5, 41.5, 1.0),
            "left_shoulder": (241.5, 121.5, 0.95),
            "left_hip": (361.5, 321.5, 0.99),
        },
        (400, 600),
    )
    points, scores = keypoints_at(p, DEFAULT_BODY_KEYPOINTS, (400, 600), (100, 150))
    np.testing.assert_allclose(points, [[50, 10], [60, 30], [90, 80]], atol=1e-9)
    np.testing.assert_allclose(scores, [1.0, 0.95, 0.99], atol=1e-6)
    maps = heatmap_image(points, np.ones(3), (100, 150), sigma=6.0)
    assert maps.shape == (3, 100, 150) and maps.dtype == torch.float32
    assert [_argmax_xy(maps[k]) for k in range(3)] == [(50, 10), (60, 30), (90, 80)]
    # One sigma away the peak-normalised Gaussian is exp(-1/2).
    assert float(maps[0, 10, 56] / maps[0, 10, 50]) == pytest.approx(np.exp(-0.5), rel=1e-5)
    assert float(maps[0, 10, 50]) == pytest.approx(1.0)


def test_low_confidence_is_down_weighted_and_unknown_names_score_zero() -> None:
    p = _person(
        {"left_ear": (10, 10, 0.3), "left_shoulder": (20, 20, 0.7), "left_hip": (30, 30, 0.95)}, (64, 64)
    )
    points, scores = keypoints_at(p, DEFAULT_BODY_KEYPOINTS, (64, 64), (64, 64))
    weights = confidence_weights(torch.as_tensor(scores)).numpy()
    peaks = heatmap_image(points, weights, (64, 64), sigma=2.5).amax(dim=(-1, -2))
    assert peaks.tolist() == pytest.approx([0.0, 0.5, 1.0])  # ramp (0.5, 0.9)
    # A name the instance does not have scores 0, so its channel is 0, not an error.
    _, only = keypoints_at(p, ["left_hip", "tail"], (64, 64), (64, 64))
    assert only.tolist() == pytest.approx([0.95, 0.0])


def test_mask_multiplies_the_heatmaps() -> None:
    mask = np.zeros((32, 32), np.float32)  # covers the whole 64x64 photo at half resolution
    mask[:, :16] = 1.0  # left half of the photo is the person
    p = _person({"left_ear": (20, 30, 1.0), "left_hip": (44, 30, 1.0)}, (64, 64), mask=mask)
    points, _ = keypoints_at(p, ["left_ear", "left_hip"], (64, 64), (64, 64))
    plain = heatmap_image(points, np.ones(2), (64, 64), sigma=2.56)
    masked = heatmap_image(points, np.ones(2), (64, 64), sigma=2.56, mask=p.mask)
    assert float(plain[1].max()) == pytest.approx(1.0)
    assert float(masked[1, :, 40:].max()) == 0.0  # outside the mask: nothing
    torch.testing.assert_close(masked[0, :, :28], plain[0, :, :28])  # inside: unchanged


def test_face_landmarks_keep_their_order() -> None:
    from alignimate.detect.faces import FACE_LANDMARKS

    face = Instance(
        box=np.zeros(4, np.float32),
        score=1.0,
        keypoints=np.array([[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]], np.float32),
        keypoint_scores=np.ones(5, np.float32),
        keypoint_names=FACE_LANDMARKS,
    )
    points, _ = keypoints_at(face, FACE_LANDMARKS, (32, 32), (32, 32))
    maps = heatmap_image(points, np.ones(5), (32, 32), sigma=1.5)
    assert [_argmax_xy(maps[k]) for k in range(5)] == [(10, 10), (20, 10), (15, 15), (11, 20), (19, 20)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sigma"):
        heatmap_image(np.zeros((1, 2)), np.ones(1), (8, 8), sigma=0)
    with pytest.raises(ValueError, match="size"):
        heatmap_image(np.zeros((1, 2)), np.ones(1), (0, 8), sigma=1)
    with pytest.raises(ValueError, match="ramp"):
        confidence_weights(torch.zeros(2), (0.5, 0.5))
