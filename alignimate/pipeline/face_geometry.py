"""Face geometry of ``alignimate faces``: pure numpy functions, no I/O and no run state.

What it holds:

- the templates, where the 5 landmarks of a face go on the square output canvas
  (:func:`face_template`, :data:`TEMPLATES`), and the FFHQ crop quad of a face (:func:`ffhq_quad`);
- the least-squares similarity between two point sets and the mapping of points by a matrix;
- temporal smoothing of a series of similarities (:func:`similarity_parameters`,
  :func:`smooth_similarities`);
- the part of a photo that a square frame shows (the only pixels a frame's warp needs).

Conventions (docs/conventions.md): a point is a pixel ``(x, y)``, ``(0, 0)`` the centre of the
top-left pixel, so a ``W x H`` image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``; a matrix
``dst_H_src`` ``(3, 3)`` maps source points to destination points; angles are in radians,
counter-clockwise on screen. Unlike the batched torch functions of :mod:`alignimate.core`, point sets
here are single ``(N, 2)`` float64 arrays and a series of matrices is ``(N, 3, 3)``. The 5 face
landmarks are in MTCNN order: left eye, right eye, nose, left and right mouth corner, "left" being the
viewer's left.

Templates (canvas ``S x S``; fractions of ``S`` are measured from the canvas *edge*, so a point at
fraction ``f`` is the pixel coordinate ``f * S - 0.5``):

- ``"arcface"``: the ArcFace/InsightFace 112 x 112 template
  (:data:`~alignimate.detect.identity.ARCFACE_TEMPLATE_112`) scaled to ``S`` edge to edge. A tight
  crop: the eyes are 0.31 S apart and the face fills the canvas.
- ``"eyes"`` (default): the timelapse convention of fixed eye targets, left eye at (0.35 S, 0.40 S)
  and right eye at (0.65 S, 0.40 S); nose and mouth corners are placed with the ArcFace proportions
  (the ArcFace template moved by the similarity that takes its eyes onto the targets), so the fit
  uses all 5 points. Eyes 0.30 S apart, mouth at about 0.75 S: head and some hair in the frame.
- ``"ffhq"``: FFHQ-like framing. The FFHQ quad construction (NVlabs ffhq-dataset) applied to the
  ArcFace template as an average face: ``x = eye_to_eye - R90(eye_to_mouth)``, scaled to
  ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``, ``y = R90(x)``, centre ``eye_avg + 0.1
  eye_to_mouth``; the quad ``c -+ x -+ y`` becomes the canvas. For the average face the eye-to-mouth
  term wins, so the eyes are 0.24 S apart at height 0.47 S and the mouth at 0.75 S: the whole head
  with context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from alignimate.core import estimate_similarity, scale_matrix_for_resize
from alignimate.detect.identity import ARCFACE_TEMPLATE_112

__all__ = [
    "EYE_WEIGHT",
    "MAX_EYES_FIT_MISS",
    "TEMPLATES",
    "face_region",
    "face_template",
    "ffhq_quad",
    "ffhq_quad_fit",
    "fit_to_template",
    "similarity_parameters",
    "smooth_similarities",
]

TEMPLATES = ("eyes", "arcface", "ffhq")


# ------------------------------------------------------------------------------------------------
# points and similarities
# ------------------------------------------------------------------------------------------------


def _arcface_points() -> np.ndarray:
    return np.array(ARCFACE_TEMPLATE_112, dtype=np.float64)


def _similarity_np(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst_H_src`` (3, 3) between two (N, 2) point sets."""
    return estimate_similarity(torch.from_numpy(src)[None], torch.from_numpy(dst)[None])[0].numpy()


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The points ``(N, 2)`` mapped by the affine part of ``matrix`` ``(3, 3)``."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _r90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


# ------------------------------------------------------------------------------------------------
# templates
# ------------------------------------------------------------------------------------------------


def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad ``(4, 2)`` (top-left, bottom-left, bottom-right, top-right, y down) of a face
    given by its 5 landmarks ``(5, 2)`` in MTCNN order (see the module docstring)."""
    eye_left, eye_right, _, mouth_left, mouth_right = points
    eye_avg = 0.5 * (eye_left + eye_right)
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = 0.5 * (mouth_left + mouth_right) - eye_avg
    x = eye_to_eye - _r90(eye_to_mouth)
    x = x / np.linalg.norm(x) * max(2.0 * np.linalg.norm(eye_to_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    y = _r90(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_quad_fit(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The NVlabs recipe's crop itself: each face's own FFHQ quad onto the canvas, with no template fit.

    Args:
        landmarks: ``(N, 5, 2)`` photo pixels, MTCNN order (:func:`ffhq_quad` of each gives its quad).
        size: the side of the square canvas; the quad goes onto its edges.

    Returns:
        ``canvas_H_photo`` similarities ``(N, 3, 3)`` (pixel matrices, docs/conventions.md). The
        quad is a square, so the least-squares similarity maps it exactly.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    edges = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
    quads = np.stack([ffhq_quad(lm) for lm in points])
    target = torch.from_numpy(edges)[None].expand(len(quads), -1, -1)
    return estimate_similarity(torch.from_numpy(quads), target).numpy()


def face_template(kind: str, size: int) -> np.ndarray:
    """Template points ``(5, 2)`` float64 (pixel ``(x, y)``, MTCNN order) on a ``size`` x ``size`` canvas.

    Args:
        kind: ``"eyes"``, ``"arcface"`` or ``"ffhq"`` (module docstring).
        size: the side of the square canvas, pixels. Conventions: docs/conventions.md.
    """
    if kind not in TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(TEMPLATES)}, got {kind!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int of at least 16 pixels, got {size!r}")
    arcface = _arcface_points()
    if kind == "arcface":
        resize = scale_matrix_for_resize((112, 112), (size, size), dtype=torch.float64)[0].numpy()
        return _apply(resize, arcface)
    if kind == "eyes":
        eyes = np.array([[0.35 * size - 0.5, 0.40 * size - 0.5], [0.65 * size - 0.5, 0.40 * size - 0.5]])
        return _apply(_similarity_np(arcface[:2], eyes), arcface)
    quad = ffhq_quad(arcface)
    edges = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
    return _apply(_similarity_np(quad, edges), arcface)


# ------------------------------------------------------------------------------------------------
# the fit of a face to its template
# ------------------------------------------------------------------------------------------------

# The "eyes" fit weighs each eye this many times more than a nose or mouth landmark: the eyes all but
# land on their template points, and the other three still steady the angle and the scale, which two
# points alone leave to the eye landmarks' own scatter. With the detector's aligned landmarks
# (detect.faces.align_landmarks) that scatter is small, so the eyes can weigh more: the fit then
# leaves them nearer their template points, and a mouth that moves with the expression pulls them
# less (measured: docs/benchmarks.md, "Eyes held").
EYE_WEIGHT = 100.0
# The "eyes" fit falls back to the five-point fit when, once the eyes are placed, a nose or mouth
# landmark lands further than this many template eye distances from its template point: real faces
# stay far inside (their proportions differ from the template's by a fraction of that), so a larger
# miss means an eye landmark is wrong (an eye hidden by hair or glasses, a detector slip).
MAX_EYES_FIT_MISS = 0.5


def fit_to_template(
    landmarks: np.ndarray, template: np.ndarray, *, hold_eyes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The similarities that take each face's 5 landmarks onto the template.

    Args:
        landmarks: ``(N, 5, 2)`` photo pixels, MTCNN order (eyes, nose, mouth corners).
        template: ``(5, 2)`` canvas pixels (:func:`face_template`).
        hold_eyes: False: the least-squares similarity of all five points (each point's error spread
            over all of them). True: the weighted least-squares similarity with each eye weighing
            :data:`EYE_WEIGHT` times a nose or mouth landmark, so the eyes all but land on the
            template's eyes and stay there from frame to frame, while the nose and mouth sit where
            the person's proportions put them. It is used only where it is plausible (no other
            landmark further than :data:`MAX_EYES_FIT_MISS` eye distances from its template point);
            elsewhere the five-point fit is kept.

    Returns:
        ``(template_H_photo, held)``: ``(N, 3, 3)`` pixel matrices (docs/conventions.md) and ``(N,)``
        booleans, whether the eyes were held.
    """
    points = torch.from_numpy(np.asarray(landmarks, dtype=np.float64))
    target = torch.from_numpy(np.asarray(template, dtype=np.float64))[None].expand(points.shape[0], -1, -1)
    five = estimate_similarity(points, target).numpy()
    if not hold_eyes:
        return five, np.zeros(points.shape[0], dtype=bool)
    weights = torch.tensor([EYE_WEIGHT, EYE_WEIGHT, 1.0, 1.0, 1.0], dtype=torch.float64)
    eyes = estimate_similarity(points, target, weights[None].expand(points.shape[0], -1)).numpy()
    mapped = np.einsum("nij,nkj->nki", eyes[:, :2, :2], points.numpy()) + eyes[:, None, :2, 2]
    eye_distance = np.linalg.norm(template[1] - template[0])
    miss = np.linalg.norm(mapped[:, 2:] - template[2:], axis=2).max(axis=1) / eye_distance
    held = np.isfinite(miss) & (miss <= MAX_EYES_FIT_MISS)
    return np.where(held[:, None, None], eyes, five), held


# ------------------------------------------------------------------------------------------------
# temporal smoothing
# ------------------------------------------------------------------------------------------------


def _centres(sizes: Sequence[Sequence[int]]) -> np.ndarray:
    return np.array([[(w - 1) / 2.0, (h - 1) / 2.0] for h, w in sizes], dtype=np.float64)


def similarity_parameters(matrices: np.ndarray, sizes: Sequence[Sequence[int]]) -> np.ndarray:
    """The parameters of a sequence of similarities, in a form that can be averaged over frames.

    Args:
        matrices: ``canvas_H_photo`` similarities ``(N, 3, 3)``, in sequence order.
        sizes: ``(h, w)`` of each photo.

    Returns:
        ``(N, 4)`` ``(log_scale, angle, tx, ty)``: ``angle`` in radians, counter-clockwise on screen
        (linear part ``s [[cos, sin], [-sin, cos]]``, docs/conventions.md), unwrapped along the
        sequence; ``(tx, ty)`` is where the centre of photo ``i`` lands on the canvas, so the
        translation does not depend on the angle.
    """
    m = np.asarray(matrices, dtype=np.float64)
    a, b = m[:, 0, 0], m[:, 0, 1]
    angle = np.unwrap(np.arctan2(b, a))
    log_scale = np.log(np.hypot(a, b))
    centres = _centres(sizes)
    t = np.einsum("nij,nj->ni", m[:, :2, :2], centres) + m[:, :2, 2]
    return np.column_stack([log_scale, angle, t])


def _matrices_from_parameters(params: np.ndarray, sizes: Sequence[Sequence[int]]) -> np.ndarray:
    """Similarities ``(N, 3, 3)`` from parameters ``(N, 4)``: the inverse of :func:`similarity_parameters`."""
    scale = np.exp(params[:, 0])
    cos, sin = scale * np.cos(params[:, 1]), scale * np.sin(params[:, 1])
    linear = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], axis=1)
    out = np.tile(np.eye(3), (len(params), 1, 1))
    out[:, :2, :2] = linear
    out[:, :2, 2] = params[:, 2:] - np.einsum("nij,nj->ni", linear, _centres(sizes))
    return out


def smooth_similarities(matrices: np.ndarray, sizes: Sequence[Sequence[int]], sigma: float) -> np.ndarray:
    """Gaussian smoothing over the frame index of similarities ``canvas_H_photo`` ``(N, 3, 3)``.

    Each of ``(log_scale, angle, tx, ty)`` (:func:`similarity_parameters`) is replaced by its Gaussian-
    weighted mean over the frames within ``3 sigma`` (the weights are renormalised at the ends of the
    sequence, so the first and last frames are not pulled towards zero).

    Meant for series with a common framing (a webcam or tripod photo-a-day, frames of a video), where
    the matrices differ by head movement and landmark jitter; across freely framed photos it averages
    unrelated framings and moves faces off their template position.

    Args:
        matrices: ``(N, 3, 3)`` in sequence order (pixel matrices, docs/conventions.md).
        sizes: ``(h, w)`` of each photo.
        sigma: in frames; 0 returns the matrices unchanged.

    Returns:
        the smoothed ``(N, 3, 3)`` similarities.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (3, 3):
        raise ValueError(f"matrices must have shape (N, 3, 3), got {m.shape}")
    if len(sizes) != len(m):
        raise ValueError(f"sizes has {len(sizes)} entries for {len(m)} matrices")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 frames, got {sigma}")
    if sigma == 0 or len(m) < 2:
        return m.copy()
    params = similarity_parameters(m, sizes)
    index = np.arange(len(m), dtype=np.float64)
    distance = index[:, None] - index[None, :]
    weights = np.exp(-0.5 * (distance / sigma) ** 2) * (np.abs(distance) <= math.ceil(3 * sigma))
    weights /= weights.sum(axis=1, keepdims=True)
    return _matrices_from_parameters(weights @ params, sizes)


# ------------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------------


def face_region(template: np.ndarray, size: int) -> np.ndarray:
    """Where the face is on a face timeline's canvas, the area its colour is matched on.

    The face is what all frames share (``--match-colors``); the background and the clothes change.

    Args:
        template: its 5 points, canvas pixels (:func:`face_template`).
        size: the side of the square canvas.

    Returns:
        ``(size, size)`` float32 weights: 1 inside an ellipse around the eyes, nose and mouth (half a
        face wide, from the brows to the chin), 0 outside.
    """
    points = np.asarray(template, dtype=np.float64)
    eyes = float(np.linalg.norm(points[1] - points[0]))
    centre = points.mean(axis=0)
    ys, xs = np.mgrid[0:size, 0:size]
    inside = ((xs - centre[0]) / (1.0 * eyes)) ** 2 + ((ys - centre[1]) / (1.3 * eyes)) ** 2 <= 1.0
    return inside.astype(np.float32)
