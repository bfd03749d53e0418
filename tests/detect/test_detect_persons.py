"""Mask R-CNN and Keypoint R-CNN with randomly initialised weights, saved to a temporary file and
loaded through the real loading path (explicit file, then a fake TORCH_HOME hub cache). The
"person" logit of each box classifier is raised before saving so the random models do report
persons; nothing here downloads anything (weights_backbone=None, sockets disabled)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignimate.detect import weights as weights_module
from alignimate.detect.base import Instance
from alignimate.detect.persons import (
    COCO_KEYPOINT_NAMES,
    DEFAULT_BODY_KEYPOINTS,
    MainPersonWeights,
    PersonDetector,
    _merge,
    build_keypoint_rcnn,
    choose_main_instance,
)

WORK = 128


@pytest.fixture(scope="module")
def saved_weights(random_rcnn_weights: dict[str, Path]) -> dict[str, Path]:
    return random_rcnn_weights


@pytest.fixture(scope="module")
def detector(saved_weights: dict[str, Path]) -> PersonDetector:
    return PersonDetector(
        working_size=WORK,
        min_score=0.3,
        max_persons=3,
        proposals=50,
        mask_weights=saved_weights["maskrcnn"],
        keypoint_weights=saved_weights["keypointrcnn"],
    )


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    a = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    b = (rng.random((200, 150, 3)) * 255).astype(np.uint8)  # larger than WORK: gets reduced
    return [a, b]


def test_explicit_weight_files_are_what_the_models_hold(
    detector: PersonDetector, saved_weights: dict[str, Path]
) -> None:
    for model, name in ((detector._mask_model, "maskrcnn"), (detector._kp_model, "keypointrcnn")):
        saved = torch.load(saved_weights[name], weights_only=True)
        held = model.state_dict()
        assert set(saved) == set(held)
        for key in ("roi_heads.box_predictor.cls_score.bias", "backbone.body.conv1.weight"):
            assert torch.equal(saved[key], held[key])


def test_hub_cache_in_torch_home_is_found(
    saved_weights: dict[str, Path], empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(weights_module.WeightsNotFound, match="keypointrcnn"):
        build_keypoint_rcnn(working_size=WORK, proposals=50)
    info = weights_module.model_info("keypointrcnn")
    cached = empty_torch_home / "hub" / "checkpoints" / info.file_name
    cached.parent.mkdir(parents=True)
    cached.symlink_to(saved_weights["keypointrcnn"])
    model = build_keypoint_rcnn(working_size=WORK, proposals=50)
    saved = torch.load(saved_weights["keypointrcnn"], weights_only=True)
    assert torch.equal(
        model.state_dict()["roi_heads.keypoint_predictor.kps_score_lowres.weight"],
        saved["roi_heads.keypoint_predictor.kps_score_lowres.weight"],
    )


def test_detections_are_persons_in_original_coordinates(detector: PersonDetector) -> None:
    images = _images()
    results = detector.detect(images)
    assert len(results) == 2
    for image, persons in zip(images, results, strict=True):
        h, w = image.shape[:2]
        assert persons, "the biased random model reports persons"
        scale = min(1.0, WORK / max(h, w))
        work = (round(h * scale), round(w * scale))
        scores = [p.score for p in persons]
        assert scores == sorted(scores, reverse=True)
        for p in persons:
            assert p.label == "person" and p.image_size == (h, w) and 0.3 <= p.score <= 1.0
            assert -0.5 <= p.box[0] <= p.box[2] <= w - 0.5 + 1e-3
            assert -0.5 <= p.box[1] <= p.box[3] <= h - 0.5 + 1e-3
            if p.mask is not None:
                assert p.mask.shape == work and p.mask.min() >= 0.0 and p.mask.max() <= 1.0
            if p.keypoints is not None:
                assert p.keypoints.shape == (17, 2) and p.keypoint_names == COCO_KEYPOINT_NAMES
                assert p.keypoint_scores is not None and np.all(
                    (p.keypoint_scores >= 0) & (p.keypoint_scores <= 1)
                )
        assert all(p.mask is not None or p.keypoints is not None for p in persons)
    found = [p for persons in results for p in persons]
    assert any(p.mask is not None for p in found) and any(p.keypoints is not None for p in found)


def test_mapping_back_matches_the_model_on_the_reduced_copy(detector: PersonDetector) -> None:
    image = _images()[1]  # 200x150 -> 128x96
    persons = detector.detect([image])[0]
    work = np.asarray(Image.fromarray(image).resize((96, 128), Image.Resampling.BILINEAR))
    with torch.inference_mode():
        out = detector._kp_model([torch.from_numpy(work.copy()).permute(2, 0, 1).float() / 255.0])[0]
    keep = out["scores"] >= 0.3
    # Pixel-centre convention: x_orig = (x_work + 0.5) * 150 / 96 - 0.5.
    sx, sy = 150 / 96, 200 / 128
    # torchvision's continuous coordinates put pixel i's centre at i + 0.5, so x_work = x_tv - 0.5.
    expected = out["keypoints"][keep, :, :2].numpy().copy() - 0.5
    expected[..., 0] = (expected[..., 0] + 0.5) * sx - 0.5
    expected[..., 1] = (expected[..., 1] + 0.5) * sy - 0.5
    found = np.array([p.keypoints for p in persons if p.keypoints is not None])
    assert found.shape == expected.shape
    # Same set of skeletons (merging may reorder them).
    for e in expected:
        assert min(np.abs(found - e).max() for found in found) < 1e-3


def test_no_person_is_an_empty_list(detector: PersonDetector) -> None:
    bias_m = detector._mask_model.roi_heads.box_predictor.cls_score.bias
    bias_k = detector._kp_model.roi_heads.box_predictor.cls_score.bias
    with torch.no_grad():
        bias_m[1] -= 40.0
        bias_k[1] -= 40.0
    try:
        assert detector.detect(_images()) == [[], []]
    finally:
        with torch.no_grad():
            bias_m[1] += 40.0
            bias_k[1] += 40.0


def test_settings_and_bad_arguments(detector: PersonDetector) -> None:
    assert detector.settings() == {
        "masks": True,
        "keypoints": True,
        "working_size": WORK,
        "min_score": 0.3,
        "match_iou": 0.5,
        "max_persons": 3,
        "proposals": 50,
    }
    with pytest.raises(ValueError, match="masks and keypoints"):
        PersonDetector(masks=False, keypoints=False)
    with pytest.raises(ValueError, match="working_size"):
        PersonDetector(working_size=8)


def _inst(box: list[float], score: float, **kw: object) -> Instance:
    return Instance(box=np.array(box, np.float32), score=score, label="person", **kw)  # type: ignore[arg-type]


def test_main_person_by_score_size_and_centrality() -> None:
    size = (400, 600)
    big_corner = _inst([0, 0, 200, 300], 0.9)
    small_centre = _inst([280, 180, 320, 220], 0.9)
    weak_centre_big = _inst([140, 50, 440, 350], 0.55)
    people = [big_corner, small_centre, weak_centre_big]
    assert choose_main_instance(people, size) == 2  # big and central outweighs a lower score
    assert choose_main_instance(people, size, MainPersonWeights(score=10, size=1, centrality=0)) == 0
    assert choose_main_instance(people, size, MainPersonWeights(score=0, size=0, centrality=1)) == 1
    assert choose_main_instance(people, size, min_score=0.6) == 0
    assert choose_main_instance([], size) is None
    assert choose_main_instance(people, size, min_score=0.95) is None


def test_keypoint_detections_attach_to_the_overlapping_mask() -> None:
    masks = [
        _inst([0, 0, 10, 10], 0.9, mask=np.ones((4, 4))),
        _inst([50, 50, 60, 70], 0.8, mask=np.ones((4, 4))),
    ]
    kps = np.zeros((17, 2), np.float32)
    kp_dets = [
        _inst(
            [51, 50, 60, 69],
            0.95,
            keypoints=kps,
            keypoint_scores=np.ones(17),
            keypoint_names=COCO_KEYPOINT_NAMES,
        ),
        _inst(
            [200, 200, 210, 210],
            0.7,
            keypoints=kps,
            keypoint_scores=np.ones(17),
            keypoint_names=COCO_KEYPOINT_NAMES,
        ),
    ]
    merged = _merge(masks, kp_dets, match_iou=0.5)
    assert len(merged) == 3
    assert merged[0].keypoints is None
    assert (
        merged[1].keypoints is not None
        and merged[1].mask is not None
        and merged[1].score == pytest.approx(0.95)
    )
    assert merged[2].mask is None and merged[2].keypoints is not None
    assert set(DEFAULT_BODY_KEYPOINTS) <= set(COCO_KEYPOINT_NAMES)
    assert math.isclose(merged[1].box[0], 50.0)
