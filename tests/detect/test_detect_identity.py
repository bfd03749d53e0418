from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignimate.core.transforms import transform_points
from alignimate.detect.base import Instance
from alignimate.detect.faces import FACE_LANDMARKS
from alignimate.detect.identity import (
    ARCFACE_TEMPLATE_112,
    FacenetEmbedder,
    LBPEmbedder,
    aligned_face_crops,
    embed_faces,
    face_crop_matrices,
    lbp_histograms,
    make_face_embedder,
    reference_embedding,
    select_identity,
)
from alignimate.detect.weights import WeightsNotFound, model_info

SAMPLE_FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"
ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


# -- synthetic embeddings --------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _face(embedding: np.ndarray, side: float = 50.0) -> Instance:
    return Instance(
        box=np.array([0, 0, side, side], np.float32), score=0.99, embedding=embedding, label="face"
    )


def _series(seed: int = 0, dim: int = 128, n: int = 30):
    """70 % of photos show the main person (plus bystanders), the rest bystanders only or nobody.
    Returns faces per photo and, per photo, the index of the main person's face (None when absent)."""
    rng = np.random.default_rng(seed)
    main = _unit(rng.normal(size=dim))
    bystanders = [_unit(rng.normal(size=dim)) for _ in range(3)]

    def sample(centre: np.ndarray) -> np.ndarray:
        return _unit(centre + 0.6 * rng.normal(size=dim) / np.sqrt(dim)).astype(np.float32)

    photos, truth = [], []
    for i in range(n):
        faces = []
        # Bystander 0 is in half the photos: frequent, but less often than the main person.
        if i % 2 == 0:
            faces.append(_face(sample(bystanders[0]), side=80))  # and larger than the main person
        if i % 5 == 1:
            faces.append(_face(sample(bystanders[1 + i % 2])))
        present = i < int(0.7 * n)
        if present:
            faces.append(_face(sample(main)))
        absent_kind = i - int(0.7 * n)
        if not present and absent_kind >= 6:
            faces = []  # photos with no face at all
        order = rng.permutation(len(faces))
        faces = [faces[j] for j in order]
        photos.append(faces)
        truth.append(int(np.argsort(order)[len(faces) - 1]) if present else None)
    return photos, truth, main, bystanders


@pytest.mark.parametrize("max_distance", [0.3, None])
def test_auto_identity_finds_the_main_person_and_drops_absent_photos(max_distance: float | None) -> None:
    photos, truth, main, _ = _series()
    sel = select_identity(photos, "auto", max_distance=max_distance)
    assert sel.chosen == truth
    assert float(np.dot(sel.centre, main)) > 0.98
    for chosen, faces, reason in zip(sel.chosen, photos, sel.reasons, strict=True):
        if chosen is not None:
            assert reason is None
        elif faces:
            assert reason is not None and reason.startswith("person absent")
        else:
            assert reason == "no face"
    assert sum(c is None for c in sel.chosen) == 9


def test_reference_embedding_selects_that_person() -> None:
    photos, _, _, bystanders = _series(seed=1)
    sel = select_identity(photos, bystanders[0], max_distance=0.3)
    for i, (faces, chosen) in enumerate(zip(photos, sel.chosen, strict=True)):
        if i % 2 == 0 and faces:
            assert chosen is not None and np.dot(faces[chosen].embedding, bystanders[0]) > 0.7
        else:
            assert chosen is None
    with pytest.raises(ValueError, match="128"):
        select_identity(photos, np.ones(5))


def test_largest_needs_no_embeddings() -> None:
    photos = [[_face(None, 10), _face(None, 30), _face(None, 20)], []]  # type: ignore[arg-type]
    sel = select_identity(photos, "largest")
    assert sel.chosen == [1, None] and sel.reasons == [None, "no face"] and sel.centre is None


def test_bad_identity_arguments() -> None:
    photos, _, _, _ = _series()
    with pytest.raises(ValueError, match="identity must be"):
        select_identity(photos, "biggest")
    with pytest.raises(ValueError, match="without an embedding"):
        select_identity([[_face(None)]], "auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_distance"):
        select_identity(photos, "auto", max_distance=0)
    empty = select_identity([[], []], "auto")
    assert empty.chosen == [None, None] and empty.reasons == ["no face", "no face"]


# -- aligned crops and descriptors -------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray]]:
    truth = json.loads((SAMPLE_FACES / "ground_truth.json").read_text())
    out = []
    for f in truth["frames"]:
        if f["expected"] == "kept":
            image = np.asarray(Image.open(SAMPLE_FACES / f["file"]).convert("RGB"))
            out.append((image, np.array([f["landmarks"][k] for k in ORDER])))
    return out[:6]


def test_crop_matrix_takes_landmarks_onto_the_template() -> None:
    template = np.array(ARCFACE_TEMPLATE_112) * (160 / 112)
    angle, scale = 0.3, 2.5
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rot.T * scale + np.array([300.0, 200.0])
    m = face_crop_matrices(torch.as_tensor(landmarks)[None], 160)
    back = transform_points(m, torch.as_tensor(landmarks)[None])[0].numpy()
    np.testing.assert_allclose(back, template, atol=1e-6)


def test_aligned_crops_undo_rotation_and_scale(frames) -> None:
    crops = torch.cat([aligned_face_crops(im, lm[None], 64, 1.3) for im, lm in frames])
    assert crops.shape == (len(frames), 3, 64, 64) and crops.min() >= 0 and crops.max() <= 1

    # Frames differ by up to 20 deg, 1.5x in scale, lighting and background. Standardised grey
    # centres of the crops agree; landmarks shifted by 3 px (a wrong alignment) agree much less.
    def standardised(c: torch.Tensor) -> torch.Tensor:
        g = c.mean(dim=1)[:, 8:56, 8:56]
        return (g - g.mean(dim=(1, 2), keepdim=True)) / g.std(dim=(1, 2), keepdim=True)

    z = standardised(crops)
    aligned_diff = max(float((z[i] - z[0]).abs().mean()) for i in range(1, len(frames)))
    im, lm = frames[1]
    wrong = standardised(aligned_face_crops(im, (lm + np.array([3.0, 0.0]))[None], 64, 1.3))[0]
    assert aligned_diff < 0.1
    assert aligned_diff < 0.5 * float((wrong - z[0]).abs().mean())


def test_big_photo_crop_equals_small_photo_crop(frames) -> None:
    image, lm = frames[0]
    h, w = image.shape[:2]
    big = np.asarray(Image.fromarray(image).resize((w * 5, h * 5), Image.Resampling.BICUBIC))
    big_lm = (lm + 0.5) * 5 - 0.5
    small_crop = aligned_face_crops(image, lm[None], 64, 1.3)
    big_crop = aligned_face_crops(big, big_lm[None], 64, 1.3)  # takes the antialiased pre-shrink path
    assert float((small_crop - big_crop).abs().mean()) < 0.02


def _naive_uniform_lbp(grey: np.ndarray) -> np.ndarray:
    """Per-pixel uniform-LBP bin by direct loops, with replicated borders (independent reference)."""
    ring = [(-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0)]
    uniform = [
        c for c in range(256) if sum(((c >> k) & 1) != ((c >> ((k + 1) % 8)) & 1) for k in range(8)) <= 2
    ]
    label = {c: i for i, c in enumerate(uniform)}
    h, w = grey.shape
    out = np.zeros((h, w), int)
    for y in range(h):
        for x in range(w):
            code = 0
            for k, (dx, dy) in enumerate(ring):
                yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                code |= int(grey[yy, xx] >= grey[y, x]) << k
            out[y, x] = label.get(code, 58)
    return out


def test_lbp_histograms_match_a_direct_implementation() -> None:
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 4, size=(16, 16)).astype(np.float32)  # many ties, the tricky case
    bins = _naive_uniform_lbp(grey)
    expected = np.zeros((2, 2, 59))
    for cy in range(2):
        for cx in range(2):
            cell = bins[cy * 8 : cy * 8 + 8, cx * 8 : cx * 8 + 8]
            expected[cy, cx] = np.bincount(cell.ravel(), minlength=59) / 64
    got = lbp_histograms(torch.as_tensor(grey)[None, None], grid=2)
    np.testing.assert_allclose(got[0].numpy(), expected.reshape(-1), atol=1e-7)
    with pytest.raises(ValueError, match="divisible"):
        lbp_histograms(torch.zeros(1, 1, 10, 10), grid=4)


def test_lbp_identity_on_sample_faces_with_distractors(frames) -> None:
    """Each photo holds the astronaut and a 'bystander' (the same landmarks placed on another photo);
    two photos hold only the bystander. The LBP fallback must keep the astronaut and drop those two."""
    import skimage.data

    embedder = LBPEmbedder()
    others = [skimage.data.chelsea(), skimage.data.coffee(), np.stack([skimage.data.camera()] * 3, -1)]
    absent = {4, 5}
    photos, astronaut = [], []
    for i, (image, lm) in enumerate(frames):
        other_lm = lm - lm.mean(axis=0) + np.array([200.0, 150.0])
        stranger = Instance(np.zeros(4, np.float32), 0.99, keypoints=other_lm, keypoint_names=FACE_LANDMARKS)
        embed_faces(others[i % 3], [stranger], embedder)
        faces = [stranger]
        if i not in absent:
            face = Instance(np.zeros(4, np.float32), 0.99, keypoints=lm, keypoint_names=FACE_LANDMARKS)
            embed_faces(image, [face], embedder)
            faces.insert(i % 2, face)
        photos.append(faces)
        astronaut.append(None if i in absent else i % 2)
    sel = select_identity(photos, "auto")
    assert sel.chosen == astronaut


def test_reference_photo_through_the_real_detector(frames) -> None:
    from alignimate.detect.faces import FaceDetector

    detector = FaceDetector(min_face_size=48)
    embedder = LBPEmbedder()
    ref = reference_embedding(frames[0][0], detector, embedder)
    assert ref.shape == (944,)
    coffee = np.asarray(Image.open(SAMPLE_FACES / "no_face_01.jpg").convert("RGB"))
    with pytest.raises(ValueError, match="no face"):
        reference_embedding(coffee, detector, embedder)
    photos = []
    for image, lm in frames[1:4]:
        face = Instance(np.zeros(4, np.float32), 0.99, keypoints=lm, keypoint_names=FACE_LANDMARKS)
        embed_faces(image, [face], embedder)
        photos.append([face])
    sel = select_identity(photos, ref, max_distance=0.15)
    assert sel.chosen == [0, 0, 0]


def test_embed_faces_with_no_faces_and_bad_faces(frames) -> None:
    image, _ = frames[0]
    assert embed_faces(image, [], LBPEmbedder()).shape == (0, 944)
    with pytest.raises(ValueError, match="5 landmarks"):
        embed_faces(image, [Instance(np.zeros(4, np.float32), 1.0)], LBPEmbedder())


# -- FaceNet weights through the real loading path ---------------------------------------------------


@pytest.fixture(scope="module")
def facenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    # Same layout as the published file: embedding layers plus the 8631-class VGGFace2 head.
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631).eval()
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(model.state_dict(), path)
    return path


def test_facenet_embedder_from_explicit_file(facenet_file: Path, frames) -> None:
    embedder = FacenetEmbedder(facenet_file)
    saved = torch.load(facenet_file, weights_only=True)
    assert torch.equal(embedder.model.state_dict()["last_linear.weight"], saved["last_linear.weight"])
    image, lm = frames[0]
    faces = [Instance(np.zeros(4, np.float32), 0.99, keypoints=lm, keypoint_names=FACE_LANDMARKS)]
    emb = embed_faces(image, faces, embedder)
    assert emb.shape == (1, 512) and np.linalg.norm(emb[0]) == pytest.approx(1.0, abs=1e-5)
    assert faces[0].embedding is not None


def test_facenet_from_torch_home_else_lbp_fallback_with_a_log_line(
    facenet_file: Path, empty_torch_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="alignimate.detect.identity"):
        fallback = make_face_embedder()
    assert isinstance(fallback, LBPEmbedder)
    assert "facenet-vggface2" in caplog.text and "LBP" in caplog.text
    # A caller's own log (the CLI's, silent under --quiet/--json) replaces the Python log.
    caplog.clear()
    said: list[str] = []
    with caplog.at_level(logging.WARNING, logger="alignimate.detect.identity"):
        assert isinstance(make_face_embedder(log=said.append), LBPEmbedder)
    assert caplog.text == "" and len(said) == 1 and "LBP" in said[0]
    with pytest.raises(WeightsNotFound):
        make_face_embedder(empty_torch_home / "missing.pt")  # an explicit file must exist
    cached = empty_torch_home / "checkpoints" / model_info("facenet-vggface2").file_name
    cached.parent.mkdir(parents=True)
    cached.symlink_to(facenet_file)
    assert isinstance(make_face_embedder(), FacenetEmbedder)
