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
    # 1/3 of the size: the face is ~43 px wide there. Without refinement (nor aligned landmarks, which
    # work on the full-resolution photo) this tests the mapping alone.
    small = FaceDetector(working_size=400, refine=False, align_landmarks=False).detect([canvas])[0]
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
    assert d.settings()["align_landmarks"] is True
    assert FaceDetector(align_landmarks=False).settings()["align_landmarks"] is False
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
    # Aligned landmarks off in both: they are measured on the full-resolution photo and would hide
    # what the crop refinement does.
    coarse = FaceDetector(working_size=480, refine=False, align_landmarks=False).detect([canvas])[0]
    refined = FaceDetector(working_size=480, align_landmarks=False).detect([canvas])[0]
    assert len(coarse) == 1 and len(refined) == 1
    coarse_error = _landmark_error(coarse[0].keypoints, expected) / eye_distance
    refined_error = _landmark_error(refined[0].keypoints, expected) / eye_distance
    assert refined_error < 0.08
    assert refined_error < coarse_error


def _astronaut_renderings(truth: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The astronaut under similarities of different scale (face 0.6x to 2.5x), roll and sub-pixel
    position, each with ``frame_H_source``."""
    import cv2
    import skimage.data

    source = skimage.data.astronaut()
    centre = np.array([truth["landmarks_source"][k] for k in ORDER]).mean(axis=0)
    out = []
    for scale, degrees, (cx, cy) in [
        (0.6, 0.0, (160.3, 170.7)),
        (1.0, 12.0, (300.5, 240.25)),
        (1.4, -17.0, (330.8, 300.1)),
        (1.9, 5.0, (420.4, 380.6)),
        (2.5, -8.0, (500.2, 420.9)),
    ]:
        a = np.deg2rad(degrees)
        linear = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        matrix[:2, 2] = np.array([cx, cy]) - linear @ centre
        size = (int(2 * cx), int(2 * cy))
        frame = cv2.warpAffine(
            source, matrix[:2], size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
        out.append((frame, matrix))
    return out


def test_aligned_landmarks_are_the_same_at_every_scale_and_roll(truth: dict) -> None:
    """One face at five scales and rolls: its landmarks, mapped back to the face's own pixels, scatter
    less with the aligned landmarks than with MTCNN's, and lie near the hand-measured truth."""
    renderings = _astronaut_renderings(truth)
    images = [image for image, _ in renderings]
    expected = np.array([truth["landmarks_source"][k] for k in ORDER])
    eye_distance = float(np.linalg.norm(expected[1] - expected[0]))
    scatter = {}
    for align in (False, True):
        found = FaceDetector(min_face_size=30, align_landmarks=align).detect(images)
        back = []
        for faces, (_, matrix) in zip(found, renderings, strict=True):
            assert len(faces) == 1
            inverse = np.linalg.inv(matrix)
            back.append(faces[0].keypoints.astype(np.float64) @ inverse[:2, :2].T + inverse[:2, 2])
        points = np.stack(back)
        # Worst distance of an eye to that eye's mean position, in eye distances.
        scatter[align] = float(np.linalg.norm(points[:, :2] - points[:, :2].mean(axis=0), axis=2).max())
        scatter[align] /= eye_distance
        if align:
            assert np.linalg.norm(points - expected, axis=2).max() < 0.1 * eye_distance
    print(f"eye scatter over scales and rolls (eye distances): {scatter}")
    assert scatter[True] < 0.02
    assert scatter[True] < 0.5 * scatter[False]


def test_aligned_landmarks_of_a_mirrored_photo_are_mirrored(detector: FaceDetector) -> None:
    image = _load("face_03.jpg")
    mirror = np.ascontiguousarray(image[:, ::-1])
    (face,), (flipped,) = detector.detect([image, mirror])
    back = flipped.keypoints[[1, 0, 2, 4, 3]].astype(np.float64)
    back[:, 0] = image.shape[1] - 1 - back[:, 0]
    eye_distance = float(np.linalg.norm(face.keypoints[1] - face.keypoints[0]))
    assert np.linalg.norm(back - face.keypoints, axis=1).max() < 0.02 * eye_distance


def test_aligned_landmarks_keep_mtcnn_s_where_the_crop_shows_no_face(detector: FaceDetector) -> None:
    from alignimate.detect.faces import align_landmarks

    image = _load("face_03.jpg")
    face = FaceDetector(min_face_size=48, align_landmarks=False).detect([image])[0][0]
    # The same landmarks moved onto the blank top-left corner: ONet sees no face there.
    moved = face.keypoints.astype(np.float64) - face.keypoints.min(axis=0) + 2.0
    blank = image.copy()
    blank[: int(moved[:, 1].max()) + 60, : int(moved[:, 0].max()) + 60] = 128
    points, probability = align_landmarks(
        detector._mtcnn.onet, [image, blank], np.stack([face.keypoints, moved])
    )
    assert points.shape == (2, 5, 2)
    assert probability[0] > 0.99 and probability[1] < detector.thresholds[2]
    assert align_landmarks(detector._mtcnn.onet, [], np.zeros((0, 5, 2)))[0].shape == (0, 5, 2)
