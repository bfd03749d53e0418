"""Who is "the person": face embeddings and a robust choice of one face per photo.

Embeddings are computed on *landmark-aligned* crops (a similarity fit of the 5 MTCNN landmarks to
the ArcFace template, so roll and scale are undone before description). Two embedders:

- :class:`FacenetEmbedder`: facenet-pytorch's InceptionResnetV1 with VGGFace2 weights, resolved by
  :mod:`alignimate.detect.weights` (never downloaded implicitly);
- :class:`LBPEmbedder`: uniform local-binary-pattern histograms of the grey crop on a 4x4 grid,
  computed with torch. No weights needed; weaker, but enough to tell the main person from a
  bystander in most series. :func:`make_face_embedder` falls back to it, with a log warning, when
  the VGGFace2 weights are missing.

:func:`select_identity` picks one face per photo: ``"auto"`` (the person present in most photos:
mean embedding, nearest face per photo, re-mean over the accepted faces, repeat), ``"largest"``,
or a reference embedding. A photo whose nearest face is farther than a distance threshold is
dropped (the person is absent there) instead of being filled with a bystander.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.color import rgb_to_grayscale
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
    "FaceEmbedder",
    "FacenetEmbedder",
    "IdentitySelection",
    "LBPEmbedder",
    "aligned_face_crops",
    "embed_faces",
    "face_crop_matrices",
    "lbp_histograms",
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


def _template(size: int, face_scale: float) -> torch.Tensor:
    t = torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64) * (size / 112.0)
    centre = torch.tensor([(size - 1) / 2.0, (size - 1) / 2.0], dtype=torch.float64)
    # face_scale < 1 zooms out (more context around the face), > 1 zooms in.
    return centre + (t - centre) * face_scale


def face_crop_matrices(landmarks: torch.Tensor, size: int, face_scale: float = 1.0) -> torch.Tensor:
    """``crop_H_image`` ``(N, 3, 3)``: the least-squares similarity taking the 5 landmarks
    ``(N, 5, 2)`` (MTCNN order, image pixels) onto the ArcFace template scaled to a ``size`` square
    crop (and by ``face_scale`` about its centre). Conventions: docs/conventions.md."""
    if landmarks.dim() != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must have shape (N, 5, 2), got {tuple(landmarks.shape)}")
    template = _template(size, face_scale).to(landmarks).unsqueeze(0)
    return estimate_similarity(landmarks, template)


def aligned_face_crops(
    image: np.ndarray, landmarks: np.ndarray, size: int, face_scale: float = 1.0
) -> torch.Tensor:
    """Aligned RGB face crops ``(N, 3, size, size)`` float in ``[0, 1]`` from one photo ``(H, W, 3)``
    uint8 and its faces' landmarks ``(N, 5, 2)``.

    Only the region around each face is converted to float, and a face much larger than the crop is
    first shrunk with an antialiased resize, so a 12 MP photo costs no more than a small one and the
    crop does not alias.
    """
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64)).reshape(-1, 5, 2)
    if lm.shape[0] == 0:
        return torch.zeros(0, 3, size, size)
    crop_H_image = face_crop_matrices(lm, size, face_scale)
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
    embeddings ``(N, D)``. ``default_max_distance`` is the cosine distance above which two faces are
    taken to be different people (None: no calibrated value, use an adaptive threshold)."""

    name: str
    crop_size: int
    face_scale: float
    default_max_distance: float | None

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """crops ``(N, 3, S, S)`` -> ``(N, D)`` unit vectors."""
        ...


class FacenetEmbedder:
    """InceptionResnetV1 (VGGFace2) embeddings, 512-D. ``weights``: explicit file, else the cache
    (:func:`alignimate.detect.weights.model_path`); raises :class:`WeightsNotFound` when missing.

    default_max_distance 0.5 (cosine) is a Euclidean distance of 1.0 between unit embeddings, in the
    range usually used to verify FaceNet pairs."""

    name = "facenet-vggface2"
    crop_size = 160
    # FaceNet was trained on loose MTCNN-box crops; ArcFace framing zoomed by 1.25 gives a similar
    # inter-ocular distance (~0.39 of the crop width).
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


def _uniform_lbp_table() -> torch.Tensor:
    """Map of the 256 8-bit LBP codes to 59 bins: one per uniform pattern (at most 2 bit transitions
    around the circle), bin 58 for all others."""
    table = torch.full((256,), 58, dtype=torch.long)
    label = 0
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        if transitions <= 2:
            table[code] = label
            label += 1
    return table


_LBP_TABLE = _uniform_lbp_table()
# Neighbours on the 3x3 ring, in circular order (needed for the uniformity test above).
_RING = ((-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0))


def lbp_histograms(grey: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """Uniform LBP (8 neighbours, radius 1) histograms of ``grey`` ``(N, 1, S, S)`` on a ``grid x grid``
    cell layout, each cell normalised to sum 1: ``(N, grid * grid * 59)``."""
    n, _, h, w = grey.shape
    if h % grid or w % grid:
        raise ValueError(f"crop size {(h, w)} must be divisible by grid={grid}")
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    centre = padded[:, :, 1:-1, 1:-1]
    codes = torch.zeros_like(centre, dtype=torch.long)
    for k, (dx, dy) in enumerate(_RING):
        neighbour = padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        codes |= (neighbour >= centre).long() << k
    bins = _LBP_TABLE.to(codes.device)[codes[:, 0]]  # (N, H, W)
    one_hot = F.one_hot(bins, 59).float()  # (N, H, W, 59)
    cells = one_hot.reshape(n, grid, h // grid, grid, w // grid, 59).sum(dim=(2, 4))
    return (cells / ((h // grid) * (w // grid))).reshape(n, -1)


class LBPEmbedder:
    """Uniform-LBP histograms of the aligned grey crop (64 px, 4x4 cells of 16 px), square-rooted
    (Hellinger) and L2-normalised: ``(N, 944)``. No weights. It has no calibrated distance
    threshold, so :func:`select_identity` uses its adaptive one."""

    name = "lbp"
    crop_size = 64
    # Tight on the inner face: hair and background change more between photos than the face does.
    face_scale = 1.3
    default_max_distance: float | None = None

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """crops ``(N, 3, 64, 64)`` in ``[0, 1]`` -> ``(N, 944)`` unit vectors."""
        if crops.shape[0] == 0:
            return torch.zeros(0, 16 * 59)
        grey = rgb_to_grayscale(crops.float())
        return F.normalize(torch.sqrt(lbp_histograms(grey, grid=4)), dim=1)


def make_face_embedder(
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
) -> FaceEmbedder:
    """:class:`FacenetEmbedder` when its weights resolve; otherwise (and only when no explicit
    ``weights`` file was given) :class:`LBPEmbedder`, saying so through ``log`` (default: a warning
    in the Python log), so a caller that was asked to be quiet can stay quiet."""
    try:
        return FacenetEmbedder(weights, device)
    except WeightsNotFound as err:
        if weights is not None:
            raise
        message = (
            f"face identity: {err}. Using LBP-histogram descriptors instead (no download needed, less "
            "reliable with bystanders)."
        )
        if log is None:
            logger.warning("%s", message)
        else:
            log(message)
        return LBPEmbedder()


def embed_faces(
    image: np.ndarray, faces: Sequence[Instance], embedder: FaceEmbedder, batch_size: int = 32
) -> np.ndarray:
    """Embeddings ``(N, D)`` float32 of the ``faces`` of one photo ``(H, W, 3)`` uint8 (each needs its 5
    landmarks); also stored in each instance's ``embedding``. No faces give a ``(0, D)`` array."""
    landmarks = [f.keypoints for f in faces]
    if any(lm is None or np.asarray(lm).shape != (5, 2) for lm in landmarks):
        raise ValueError("every face needs 5 landmarks (keypoints of shape (5, 2)) to be embedded")
    crops = aligned_face_crops(
        image, np.array(landmarks).reshape(-1, 5, 2), embedder.crop_size, embedder.face_scale
    )
    parts = [embedder.embed(crops[i : i + batch_size]) for i in range(0, crops.shape[0], batch_size)]
    emb = torch.cat(parts).numpy().astype(np.float32) if parts else embedder.embed(crops).numpy()
    for f, e in zip(faces, emb, strict=True):
        f.embedding = e
    return emb


def reference_embedding(image: np.ndarray, detector: Detector, embedder: FaceEmbedder) -> np.ndarray:
    """Embedding ``(D,)`` of the largest face in a reference photo ``(H, W, 3)`` uint8 (``--identity
    PHOTO``), to pass to :func:`select_identity`. Raises ``ValueError`` when the photo has no face."""
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
        there was no face or the mode does not use distances ("largest").
    reasons: why a photo has no chosen face (None when it has one).
    centre: the person's unit embedding ``(D,)`` (None for "largest"). max_distance: the threshold used.
    """

    chosen: list[int | None]
    distances: list[float | None]
    reasons: list[str | None]
    centre: np.ndarray | None
    max_distance: float | None


def _embeddings(faces_per_photo: Sequence[Sequence[Instance]]) -> list[np.ndarray]:
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


def _adaptive_threshold(d: np.ndarray, mad_factor: float) -> float:
    """``median + mad_factor * 1.4826 * MAD`` of the nearest-face distances, but at least twice the
    median: with a tight cluster the MAD alone would reject ordinary variation."""
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    return max(med + mad_factor * 1.4826 * mad, 2.0 * med)


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
    mad_factor: float = 4.0,
) -> IdentitySelection:
    """One face per photo for the same person.

    faces_per_photo: the faces of each photo (with ``embedding`` set, except for ``"largest"``).
    identity: ``"auto"`` the person present in most photos; ``"largest"`` the largest face, no
        identity check; or a reference embedding ``(D,)`` (e.g. of the largest face in a reference photo).
    max_distance: cosine distance above which the nearest face is not the person (photo dropped);
        None uses an adaptive threshold from the distances of the nearest faces
        (``max(median + mad_factor * 1.4826 * MAD, 2 * median)``).
    iterations: most re-mean rounds for ``"auto"``.
    """
    n = len(faces_per_photo)
    if isinstance(identity, str) and identity == "largest":
        chosen = [
            max(range(len(faces)), key=lambda j, faces=faces: faces[j].area) if faces else None
            for faces in faces_per_photo
        ]
        reasons = [None if c is not None else "no face" for c in chosen]
        return IdentitySelection(chosen, [None] * n, reasons, None, None)
    if max_distance is not None and max_distance <= 0:
        raise ValueError(f"max_distance must be positive or None, got {max_distance}")
    embs = _embeddings(faces_per_photo)
    if not any(e.shape[0] for e in embs):
        return IdentitySelection([None] * n, [None] * n, ["no face"] * n, None, max_distance)
    if isinstance(identity, str):
        if identity != "auto":
            raise ValueError(f"identity must be 'auto', 'largest' or a reference embedding, got {identity!r}")
        return _select_auto(embs, max_distance, iterations, mad_factor)
    ref = np.asarray(identity, dtype=np.float64).reshape(-1)
    dim = next(e.shape[1] for e in embs if e.shape[0])
    if ref.shape[0] != dim:
        raise ValueError(f"identity embedding has {ref.shape[0]} values, the faces' embeddings have {dim}")
    centre = _unit(ref)
    picks, dists = _nearest(embs, centre)
    threshold = max_distance or _adaptive_threshold(np.array([d for d in dists if d is not None]), mad_factor)
    return _finish(picks, dists, centre, threshold)


def _select_auto(
    embs: list[np.ndarray], max_distance: float | None, iterations: int, mad_factor: float
) -> IdentitySelection:
    # Each photo votes with total weight 1, so a crowd in one photo cannot outvote the series.
    centre = _unit(sum(e.mean(axis=0) for e in embs if e.shape[0]))
    previous = None
    for _ in range(max(1, iterations)):
        picks, dists = _nearest(embs, centre)
        threshold = max_distance or _adaptive_threshold(
            np.array([d for d in dists if d is not None]), mad_factor
        )
        accepted = tuple(
            j if d is not None and d <= threshold else None for j, d in zip(picks, dists, strict=True)
        )
        inliers = [e[j] for e, j in zip(embs, accepted, strict=True) if j is not None]
        if accepted == previous or not inliers:
            break
        previous = accepted
        centre = _unit(np.mean(inliers, axis=0))
    else:
        # Out of rounds: report the picks of the final centre, not of the one before it.
        picks, dists = _nearest(embs, centre)
        threshold = max_distance or _adaptive_threshold(
            np.array([d for d in dists if d is not None]), mad_factor
        )
    return _finish(picks, dists, centre, threshold)


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
            reasons.append(f"person absent: nearest face at distance {d:.3f} > {threshold:.3f}")
        else:
            chosen.append(j)
            reasons.append(None)
    return IdentitySelection(chosen, dists, reasons, centre.astype(np.float32), float(threshold))
