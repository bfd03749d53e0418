"""The real MTCNN (its weights ship with facenet-pytorch) on the sample faces and the astronaut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignimate.detect.faces import FACE_LANDMARKS, FaceDetector

SAMPLE_FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"
ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _load(name: str) -> np.ndarray:
    return np.asarray(Image.open(SAMPLE_FACES / name).convert("RGB"))


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((SAMPLE_FACES / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    # The sample faces are 80-130 px wide; a larger smallest face keeps MTCNN's pyramid (and the test) short.
    return FaceDetector(min_face_size=48)


def _landmark_error(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(found - expected, axis=1).max())


def test_sample_faces_batch_of_mixed_sizes_with_a_no_face_photo(detector: FaceDetector, truth: dict) -> None:
    frames = [f for f in truth["frames"] if f["expected"] == "kept"][2:5]
    names = [f["file"] for f in frames] + ["no_face_01.jpg"]
    images = [_load(n) for n in names]
    assert len({im.shape for im in images}) == len(images)  # every size differs
    results = detector.detect(images)
    assert results[-1] == []  # no face: reported as an empty list, not an error
    for frame, faces, image in zip(frames, results, images, strict=False):
        assert len(faces) == 1, frame["file"]
        face = faces[0]
        assert face.label == "face" and face.score > 0.99
        assert face.keypoint_names == FACE_LANDMARKS
        assert face.image_size == image.shape[:2]
        expected = np.array([frame["landmarks"][k] for k in ORDER])
        # Hand-measured truth is good to 1-2 px and MTCNN to a few px (sample_data/README.md).
        assert _landmark_error(face.keypoints, expected) < 6.0, frame["file"]
        x0, y0, x1, y1 = face.box
        assert x0 < expected[:, 0].min() and x1 > expected[:, 0].max()
        assert y0 < expected[:, 1].min() and y1 > expected[:, 1].max()


def test_reduced_working_resolution_maps_back_to_the_original(detector: FaceDetector, truth: dict) -> None:
    # The astronaut 1.5x larger on a 900x1200 canvas; truth mapped with the pixel-centre convention.
    import skimage.data

    scale, x0, y0 = 1.5, 400, 100
    big = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((768, 768), Image.Resampling.BICUBIC))
    canvas = np.full((900, 1200, 3), 90, np.uint8)
    canvas[y0 : y0 + 768, x0 : x0 + 768] = big
    src = np.array([truth["landmarks_source"][k] for k in ORDER])
    expected = (src + 0.5) * scale - 0.5 + np.array([x0, y0])
    eye_distance = float(np.linalg.norm(expected[1] - expected[0]))

    full = FaceDetector(working_size=None, min_face_size=60).detect([canvas])[0]  # face ~130 px wide
    # 1/3 of the size: the face is ~43 px wide there. Without refinement this tests the mapping alone.
    small = FaceDetector(working_size=400, refine=False).detect([canvas])[0]
    assert len(full) == 1 and len(small) == 1
    assert small[0].image_size == (900, 1200)
    assert _landmark_error(full[0].keypoints, expected) < 0.06 * eye_distance
    assert _landmark_error(small[0].keypoints, expected) < 0.12 * eye_distance
    assert _landmark_error(small[0].keypoints, full[0].keypoints) < 0.12 * eye_distance
    # Boxes agree to a fraction of the face size.
    size = float(full[0].box[2] - full[0].box[0])
    assert np.abs(small[0].box - full[0].box).max() < 0.12 * size


def test_tensor_input_gives_the_same_faces(detector: FaceDetector) -> None:
    image = _load("face_05.jpg")
    from_list = detector.detect([image])[0]
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0
    from_tensor = detector.detect(tensor)[0]
    assert len(from_list) == len(from_tensor) == 1
    np.testing.assert_allclose(from_list[0].keypoints, from_tensor[0].keypoints, atol=1e-3)


def test_blank_and_tiny_photos_are_not_fatal(detector: FaceDetector) -> None:
    out = detector.detect([np.zeros((40, 30, 3), np.uint8), np.full((8, 8), 200, np.uint8)])
    assert out == [[], []]


def test_settings_and_bad_arguments() -> None:
    d = FaceDetector(working_size=640, min_score=0.95)
    assert d.settings()["working_size"] == 640 and d.settings()["min_score"] == 0.95
    with pytest.raises(ValueError, match="working_size"):
        FaceDetector(working_size=8)
    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(min_face_size=4)
    with pytest.raises(ValueError, match="thresholds"):
        FaceDetector(thresholds=(0.5, 0.5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="images"):
        FaceDetector().detect(np.zeros((10, 10, 3), np.uint8))


def test_refinement_recovers_landmarks_of_small_faces(truth: dict) -> None:
    # The astronaut at its own size (face ~90 px) on a 1200x1600 canvas, detected at 480 px: the
    # face is ~27 px there, too small for accurate landmarks; the full-resolution crop fixes them.
    import skimage.data

    x0, y0 = 700, 400
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    canvas[y0 : y0 + 512, x0 : x0 + 512] = skimage.data.astronaut()
    expected = np.array([truth["landmarks_source"][k] for k in ORDER]) + np.array([x0, y0])
    eye_distance = float(np.linalg.norm(expected[1] - expected[0]))
    coarse = FaceDetector(working_size=480, refine=False).detect([canvas])[0]
    refined = FaceDetector(working_size=480).detect([canvas])[0]
    assert len(coarse) == 1 and len(refined) == 1
    coarse_error = _landmark_error(coarse[0].keypoints, expected) / eye_distance
    refined_error = _landmark_error(refined[0].keypoints, expected) / eye_distance
    assert refined_error < 0.08
    assert refined_error < coarse_error
