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
from alignimate.detect.dlib_face import DLIB_CHIP_FRAMING, DlibResnetEmbedder
from alignimate.detect.faces import FACE_LANDMARKS
from alignimate.detect.identity import (
    ARCFACE_TEMPLATE_112,
    FacenetEmbedder,
    aligned_face_crops,
    arcface_framing,
    embed_faces,
    face_crop_matrices,
    framing_of,
    make_face_embedder,
    reference_embedding,
    select_identity,
)
from alignimate.detect.weights import WeightsNotFound, model_info

SAMPLE_FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"
STRANGERS = Path(__file__).resolve().parents[2] / "sample_data" / "strangers"
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


def test_auto_identity_finds_the_main_person_and_drops_absent_photos() -> None:
    photos, truth, main, _ = _series()
    sel = select_identity(photos, "auto", max_distance=0.3)
    assert sel.established and sel.why_not is None and sel.warning is None
    assert sel.chosen == truth
    assert float(np.dot(sel.centre, main)) > 0.98
    for chosen, faces, reason, distance in zip(sel.chosen, photos, sel.reasons, sel.distances, strict=True):
        if chosen is not None:
            assert reason is None and distance is not None and distance <= 0.3
        elif faces:
            assert distance is not None and distance > 0.3
            assert reason == f"not the same person (distance {distance:.3f})"
        else:
            assert reason == "no face"
    assert sum(c is None for c in sel.chosen) == 9


def test_a_descriptor_without_calibrated_distance_never_establishes_identity() -> None:
    photos, _, _, _ = _series()
    sel = select_identity(photos, "auto", max_distance=None)
    assert not sel.established and "calibrated" in (sel.why_not or "")
    # The fallback: the largest face of each photo, and the warning says so and how to do better.
    assert sel.chosen == [max(range(len(f)), key=lambda j, f=f: f[j].area) if f else None for f in photos]
    assert sel.distances == [None] * len(photos) and sel.centre is None
    assert sel.warning is not None and "largest face" in sel.warning and "dlib-bin" in sel.warning


def test_no_descriptor_at_all_falls_back_to_the_largest_face_with_a_warning() -> None:
    photos = [[_face(None, 10), _face(None, 30)], [], [_face(None, 20)]]  # type: ignore[arg-type]
    sel = select_identity(photos, "auto", max_distance=0.1)
    assert not sel.established and sel.why_not == "no face descriptor was available"
    assert sel.chosen == [1, None, 0] and sel.reasons == [None, "no face", None]
    assert "--identity PHOTO" not in (sel.warning or "x")  # a reference photo would not help here


def test_two_people_in_every_photo_is_no_clear_majority() -> None:
    """A couple photographed together: either could be "the person"; auto must not pick one."""
    rng = np.random.default_rng(5)
    a, b = _unit(rng.normal(size=64)), _unit(rng.normal(size=64))

    def near(v: np.ndarray) -> np.ndarray:
        return _unit(v + 0.05 * rng.normal(size=64)).astype(np.float32)

    photos = [[_face(near(a), 40), _face(near(b), 60)] for _ in range(6)]
    sel = select_identity(photos, "auto", max_distance=0.2)
    assert not sel.established
    assert sel.why_not is not None and "no clear majority" in sel.why_not and "6 photos" in sel.why_not
    assert sel.chosen == [1] * 6  # the larger face, as announced
    assert sel.warning is not None and "--identity PHOTO" in sel.warning
    # With b in only 2 of the 6 photos (MAJORITY times fewer at least), a is clearly the person.
    for faces in photos[2:]:
        faces.pop()
    clear = select_identity(photos, "auto", max_distance=0.2)
    assert clear.established and clear.chosen == [0] * 6


def test_a_stranger_cannot_pull_the_centre_towards_themselves() -> None:
    """Each photo is measured against the others only: a stranger just beyond the threshold from
    the person is dropped even though the mean of everyone (stranger included) is within reach."""
    rng = np.random.default_rng(2)
    a, other = _unit(rng.normal(size=32)), _unit(rng.normal(size=32))
    other = _unit(other - (other @ a) * a)  # orthogonal to a
    theta = np.arccos(1.0 - 0.09)  # the stranger is at cosine distance 0.09 from the person
    stranger = (np.cos(theta) * a + np.sin(theta) * other).astype(np.float32)
    photos = [[_face(a.astype(np.float32))] for _ in range(3)] + [[_face(stranger)]]
    mean_of_all = _unit(3 * a + stranger)
    assert 1.0 - stranger @ mean_of_all < 0.07  # a centre that counted the stranger would keep them
    sel = select_identity(photos, "auto", max_distance=0.07)
    assert sel.established and sel.chosen == [0, 0, 0, None]
    assert sel.distances[3] == pytest.approx(0.09, abs=1e-6)
    assert sel.reasons[3] == "not the same person (distance 0.090)"


def test_reference_embedding_selects_that_person() -> None:
    photos, _, _, bystanders = _series(seed=1)
    sel = select_identity(photos, bystanders[0], max_distance=0.3)
    for i, (faces, chosen) in enumerate(zip(photos, sel.chosen, strict=True)):
        if i % 2 == 0 and faces:
            assert chosen is not None and np.dot(faces[chosen].embedding, bystanders[0]) > 0.7
        else:
            assert chosen is None
    with pytest.raises(ValueError, match="128"):
        select_identity(photos, np.ones(5), max_distance=0.3)


def test_largest_needs_no_embeddings() -> None:
    photos = [[_face(None, 10), _face(None, 30), _face(None, 20)], []]  # type: ignore[arg-type]
    sel = select_identity(photos, "largest")
    assert sel.chosen == [1, None] and sel.reasons == [None, "no face"] and sel.centre is None


def test_bad_identity_arguments() -> None:
    photos, _, _, _ = _series()
    with pytest.raises(ValueError, match="identity must be"):
        select_identity(photos, "biggest")
    some_without = [[_face(_unit(np.ones(4)).astype(np.float32))], [_face(None)]]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without an embedding"):
        select_identity(some_without, "auto", max_distance=0.1)
    with pytest.raises(ValueError, match="max_distance"):
        select_identity(photos, "auto", max_distance=0)
    empty = select_identity([[], []], "auto", max_distance=0.1)
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


def test_framing_places_the_landmarks_where_the_embedder_wants_them() -> None:
    # Landmarks shaped exactly like the framing, turned, scaled and moved: whatever the weights, the
    # fit must land every point on its framing point.
    points = np.array(DLIB_CHIP_FRAMING.points)
    angle, scale = -0.4, 3.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (points - 75) @ rot.T * scale + np.array([500.0, 300.0])
    m = face_crop_matrices(torch.as_tensor(landmarks)[None], 150, framing=DLIB_CHIP_FRAMING)
    back = transform_points(m, torch.as_tensor(landmarks)[None])[0].numpy()
    np.testing.assert_allclose(back, points, atol=1e-6)

    # Without a framing of its own, an embedder gets the ArcFace template of its crop size and scale.
    class Plain:
        name, crop_size, face_scale, default_max_distance = "plain", 64, 1.3, 0.1

    assert framing_of(Plain()) == arcface_framing(64, 1.3)  # type: ignore[arg-type]
    assert framing_of(DlibResnetEmbedder.__new__(DlibResnetEmbedder)) is DLIB_CHIP_FRAMING
    np.testing.assert_allclose(
        face_crop_matrices(torch.as_tensor(landmarks)[None], 64, 1.3),
        face_crop_matrices(torch.as_tensor(landmarks)[None], 64, framing=arcface_framing(64, 1.3)),
    )


NO_DLIB = "dlib is not installed: dlib-bin has wheels for Linux x86-64 and Windows x64 only"


@pytest.fixture(scope="module")
def dlib_embedder() -> DlibResnetEmbedder:
    pytest.importorskip("dlib", reason=NO_DLIB)
    return DlibResnetEmbedder()


def _stranger_faces(detector) -> list[tuple[str, np.ndarray, Instance]]:
    out = []
    for name in ("biden_01.jpg", "obama_01.jpg", "hopper_01.jpg"):
        image = np.asarray(Image.open(STRANGERS / name).convert("RGB"))
        faces = detector.detect([image])[0]
        out.append((name, image, max(faces, key=lambda f: f.area)))
    return out


def test_reference_photo_through_the_real_detector(frames, dlib_embedder: DlibResnetEmbedder) -> None:
    """--identity PHOTO with the real detector and descriptor: a photo of the astronaut picks her
    faces in mixed photos; a photo of a stranger (Grace Hopper) picks only her own face."""
    from alignimate.detect.faces import FaceDetector

    detector = FaceDetector(min_face_size=48)
    ref = reference_embedding(frames[0][0], detector, dlib_embedder)
    assert ref.shape == (128,) and np.linalg.norm(ref) == pytest.approx(1.0, abs=1e-5)
    coffee = np.asarray(Image.open(SAMPLE_FACES / "no_face_01.jpg").convert("RGB"))
    with pytest.raises(ValueError, match="no face"):
        reference_embedding(coffee, detector, dlib_embedder)
    strangers = _stranger_faces(detector)
    photos = []
    for (image, lm), (_, other_image, other) in zip(frames[1:4], strangers, strict=False):
        face = Instance(np.zeros(4, np.float32), 0.99, keypoints=lm, keypoint_names=FACE_LANDMARKS)
        embed_faces(image, [face], dlib_embedder)
        embed_faces(other_image, [other], dlib_embedder)
        photos.append([other, face])  # the stranger first, and larger
    limit = dlib_embedder.default_max_distance
    sel = select_identity(photos, ref, max_distance=limit)
    assert sel.established and sel.chosen == [1, 1, 1]
    hopper = next(image for name, image, _ in strangers if name.startswith("hopper"))
    by_hopper = select_identity(
        photos, reference_embedding(hopper, detector, dlib_embedder), max_distance=limit
    )
    assert by_hopper.chosen == [None, None, 0]  # her own photo, and none of the astronaut's
    assert all(r.startswith("not the same person (distance ") for r in by_hopper.reasons[:2])


def test_embed_faces_with_no_faces_and_bad_faces(frames, dlib_embedder: DlibResnetEmbedder) -> None:
    image, _ = frames[0]
    assert embed_faces(image, [], dlib_embedder).shape == (0, 128)
    with pytest.raises(ValueError, match="5 landmarks"):
        embed_faces(image, [Instance(np.zeros(4, np.float32), 1.0)], dlib_embedder)


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


def test_make_face_embedder_prefers_dlib_then_facenet_then_none(
    facenet_file: Path,
    empty_torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from alignimate.detect import dlib_face

    pytest.importorskip("dlib", reason=NO_DLIB)
    assert isinstance(make_face_embedder(), DlibResnetEmbedder)
    assert isinstance(make_face_embedder(kind="dlib"), DlibResnetEmbedder)
    with pytest.raises(ValueError, match="kind must be"):
        make_face_embedder(kind="lbp")
    # FaceNet on request: an explicit file (a weights file that is not dlib's .dat is FaceNet's), or
    # the cache; offline and missing, today's clear message.
    assert isinstance(make_face_embedder(kind="facenet", weights=facenet_file), FacenetEmbedder)
    assert isinstance(make_face_embedder(facenet_file), FacenetEmbedder)
    with pytest.raises(WeightsNotFound, match=r"facenet-vggface2.*downloads are off"):
        make_face_embedder(kind="facenet")
    with pytest.raises(WeightsNotFound, match="does not exist"):
        make_face_embedder(empty_torch_home / "missing.dat")  # an explicit file must exist

    # Without dlib (as on a platform without its wheel): FaceNet if it can be had, saying why.
    def no_dlib() -> None:
        raise WeightsNotFound("dlib is not installed (test)")

    monkeypatch.setattr(dlib_face, "import_dlib", no_dlib)
    with pytest.raises(WeightsNotFound, match="dlib is not installed"):
        make_face_embedder(kind="dlib")
    said: list[str] = []
    with caplog.at_level(logging.WARNING, logger="alignimate.detect.identity"):
        assert make_face_embedder(log=said.append) is None  # offline, no FaceNet weights either
    assert caplog.text == "" and len(said) == 1
    assert "no face descriptor" in said[0] and "dlib is not installed" in said[0] and "facenet" in said[0]
    cached = empty_torch_home / "checkpoints" / model_info("facenet-vggface2").file_name
    cached.parent.mkdir(parents=True)
    cached.symlink_to(facenet_file)
    with caplog.at_level(logging.WARNING, logger="alignimate.detect.identity"):
        assert isinstance(make_face_embedder(), FacenetEmbedder)
    assert "using FaceNet" in caplog.text and "dlib is not installed" in caplog.text
