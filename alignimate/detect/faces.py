"""Faces with 5 landmarks from facenet-pytorch's MTCNN (its weights ship in the wheel: works offline).

Photos are shrunk to a working copy whose long side is ``working_size`` pixels before detection
(a full 12 MP photo takes seconds on one CPU core: docs/benchmarks.md, design measurements), boxes
and landmarks are mapped back to the original photo, and each face is then re-detected on a small
full-resolution crop around it (``refine``), which restores full-resolution landmark accuracy for
small faces. Photos of equal working size are batched together (MTCNN needs equal sizes within a
batch).

Last, the landmarks are re-estimated on *aligned* crops (``align_landmarks``): MTCNN's final network
(ONet) run again on the face warped upright to a fixed scale and position in its 48 px input, and on
the mirror image of that crop, the two estimates averaged (left and right swapped back). MTCNN's own
crops are axis-aligned boxes cut at whole pixels, at whatever size and roll the face has, and its
landmark errors change with all three; on aligned crops the network sees every face, large or
small, turned or not, the same way, so the same face gets the same landmarks in a photo and in an
aligned frame made from it (docs/benchmarks.md, "Eyes held").
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.fit import estimate_similarity
from alignimate.core.warp import warp_affine
from alignimate.detect.base import (
    ImageBatch,
    Instance,
    as_uint8_hwc,
    map_instance_to_original,
    resize_uint8,
)
from alignimate.detect.identity import ARCFACE_TEMPLATE_112

__all__ = ["DEFAULT_FACE_WORKING_SIZE", "FACE_LANDMARKS", "FaceDetector", "align_landmarks"]

# MTCNN's landmark order. "left" is the image left in an upright photo (the subject's right eye).
FACE_LANDMARKS: tuple[str, ...] = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")

# Long side of the working copy. With refinement, 960 px finds every sample face, large or small, in
# a fraction of the time a full-resolution detection takes, with landmarks as accurate as there;
# smaller working sizes miss small faces (docs/benchmarks.md, design measurements). 960 px finds
# faces down to about 2 % of the photo's long side (MTCNN's 20 px smallest face).
DEFAULT_FACE_WORKING_SIZE = 960

# Refinement crops: _REFINE_CROP px square, the face box a half of it.
_REFINE_CROP = 256

# Aligned landmark crops. ONet's input side, in pixels.
_ONET_SIZE = 48
# The aligned crop in the units of the ArcFace template (ARCFACE_TEMPLATE_112, the face's 5 points on
# 112 x 112): a square of this side about this centre, which frames an upright face about as MTCNN's
# own boxes do. The centre lies on the template's axis of symmetry, so the mirror image of a crop is
# the crop of the mirrored face.
_ALIGNED_CENTRE = (56.0, 66.0)
_ALIGNED_SIDE = 100.0
# ONet passes: the first crop is placed by MTCNN's landmarks, each later one by the previous pass's.
_ALIGN_PASSES = 2
# Supersampling limit of an aligned crop: a face larger than this many photo pixels per crop pixel is
# first reduced by whole-pixel averaging.
_MAX_SUPERSAMPLE = 8
# Mirror image of a landmark set: the eyes and the mouth corners change sides.
_MIRROR_ORDER = (1, 0, 2, 4, 3)


def _face_crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A ``_REFINE_CROP`` square crop of ``image`` centred on ``box`` and twice its size, and the frame
    ``(left, top, scale)`` that maps crop pixels back: ``x = left + (u + 0.5) / scale - 0.5``."""
    from PIL import Image

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(2, round(2.0 * max(x1 - x0, y1 - y0)))
    left = round(0.5 * (x0 + x1) - side / 2)
    top = round(0.5 * (y0 + y1) - side / 2)
    # Pillow fills the part of the crop outside the photo with black.
    region = Image.fromarray(image).crop((left, top, left + side, top + side))
    crop = np.asarray(region.resize((_REFINE_CROP, _REFINE_CROP), Image.Resampling.BILINEAR))
    return crop, (float(left), float(top), _REFINE_CROP / side)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _best_match(
    coarse: Instance,
    frame: tuple[float, float, float],
    boxes: np.ndarray | None,
    probs: np.ndarray | None,
    points: np.ndarray | None,
    min_iou: float = 0.3,
) -> Instance | None:
    """The crop detection overlapping ``coarse`` most (IoU >= ``min_iou``), in photo coordinates."""
    if boxes is None or probs is None or points is None:
        return None
    left, top, scale = frame

    def to_photo(p: np.ndarray) -> np.ndarray:
        q = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        return (q + 0.5) / scale - 0.5 + np.array([left, top])

    best, best_iou = None, min_iou
    for box, score, lm in zip(boxes, probs, points, strict=True):
        photo_box = to_photo(box).reshape(4)
        iou = _iou(photo_box, np.asarray(coarse.box, dtype=np.float64))
        if iou >= best_iou:
            best_iou = iou
            best = replace(
                coarse,
                box=photo_box.astype(np.float32),
                score=float(score),
                keypoints=to_photo(lm).astype(np.float32),
                keypoint_scores=np.full(len(FACE_LANDMARKS), float(score), dtype=np.float32),
            )
    return best


def _aligned_crop_matrices(points: np.ndarray) -> np.ndarray:
    """``crop_H_photo`` ``(N, 3, 3)`` float64: the similarity that takes each face's landmarks
    ``(N, 5, 2)`` (photo pixels) by their least-squares fit onto the ArcFace template, then the aligned
    box (:data:`_ALIGNED_CENTRE`, :data:`_ALIGNED_SIDE`) onto a ``_ONET_SIZE`` px crop (pixel
    centres, docs/conventions.md)."""
    template = torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64)
    src = torch.from_numpy(np.asarray(points, dtype=np.float64))
    arcface_H_photo = estimate_similarity(src, template[None].expand(src.shape[0], -1, -1)).numpy()
    k = _ONET_SIZE / _ALIGNED_SIDE
    left = _ALIGNED_CENTRE[0] - _ALIGNED_SIDE / 2
    top = _ALIGNED_CENTRE[1] - _ALIGNED_SIDE / 2
    crop_H_arcface = np.array([[k, 0.0, -k * left - 0.5], [0.0, k, -k * top - 0.5], [0.0, 0.0, 1.0]])
    return crop_H_arcface @ arcface_H_photo


def _aligned_crop(image: np.ndarray, crop_H_photo: np.ndarray) -> torch.Tensor:
    """The ``(3, _ONET_SIZE, _ONET_SIZE)`` float32 crop (grey levels 0-255) of ``image`` ``(H, W, 3)``
    uint8 by the similarity ``crop_H_photo``, antialiased: each crop pixel is the mean of a grid of
    bilinear samples about one photo pixel apart (after whole-pixel averaging of the photo where the
    face is very large). Outside the photo is black, as in MTCNN's own crops."""
    h, w = image.shape[:2]
    photo_H_crop = np.linalg.inv(crop_H_photo)
    edge = _ONET_SIZE - 0.5
    corners = np.array([[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]])
    footprint = corners @ photo_H_crop[:2, :2].T + photo_H_crop[:2, 2]
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in footprint.min(axis=0))
    x1, y1 = min(w, int(np.ceil(footprint[:, 0].max())) + 3), min(h, int(np.ceil(footprint[:, 1].max())) + 3)
    if x1 <= x0 or y1 <= y0:
        return torch.zeros(3, _ONET_SIZE, _ONET_SIZE)
    region = torch.from_numpy(np.array(image[y0:y1, x0:x1], dtype=np.float32)).permute(2, 0, 1)[None]
    per_crop_pixel = 1.0 / math.sqrt(abs(float(np.linalg.det(crop_H_photo[:2, :2]))))
    reduce = max(1, math.ceil(per_crop_pixel / _MAX_SUPERSAMPLE))
    if reduce > 1 and min(region.shape[-2:]) >= reduce:
        region = F.avg_pool2d(region, reduce)
    else:
        reduce = 1
    # Pixel j of the reduced region averages photo pixels reduce * j ... reduce * j + reduce - 1.
    offset = (reduce - 1) / 2
    photo_H_region = np.array([[reduce, 0.0, x0 + offset], [0.0, reduce, y0 + offset], [0.0, 0.0, 1.0]])
    k = int(min(_MAX_SUPERSAMPLE, max(1, math.ceil(per_crop_pixel / reduce))))
    # Crop pixel u is the mean of the k x k fine pixels k u ... k u + k - 1 (centre k u + (k - 1) / 2).
    fine_H_crop = np.array([[k, 0.0, (k - 1) / 2], [0.0, k, (k - 1) / 2], [0.0, 0.0, 1.0]])
    fine_H_region = fine_H_crop @ crop_H_photo @ photo_H_region
    fine = warp_affine(region, torch.from_numpy(fine_H_region).float()[None], (k * _ONET_SIZE,) * 2)
    assert isinstance(fine, torch.Tensor)
    return (F.avg_pool2d(fine, k) if k > 1 else fine)[0]


def _onet_landmarks(onet: torch.nn.Module, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """ONet on crops ``(M, 3, 48, 48)`` (grey levels 0-255): landmarks ``(M, 5, 2)`` float64 in crop
    pixels and the face probability ``(M,)``."""
    device = next(onet.parameters()).device
    points, probs = [], []
    for start in range(0, crops.shape[0], 256):
        batch = (crops[start : start + 256].to(device) - 127.5) * 0.0078125
        with torch.inference_mode():
            _, landmarks, prob = onet(batch)
        points.append(landmarks.double().cpu().numpy())
        probs.append(prob[:, 1].double().cpu().numpy())
    flat = np.concatenate(points)
    # ONet gives x then y of the 5 points as fractions of its input, measured from the crop's edge.
    return np.stack([flat[:, :5], flat[:, 5:]], axis=2) * _ONET_SIZE - 0.5, np.concatenate(probs)


def align_landmarks(
    onet: torch.nn.Module, images: list[np.ndarray], points: np.ndarray, passes: int = _ALIGN_PASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks re-estimated by MTCNN's ONet on aligned crops and their mirror images.

    Each pass warps every face upright to a fixed place and scale in a 48 px crop (placed by the
    previous landmarks, :func:`_aligned_crop_matrices`), runs ONet on the crops and their mirror images
    in one batch, maps both estimates back to the photo (the mirror's left and right swapped) and
    averages them.

    Args:
        onet: facenet-pytorch's ONet (``MTCNN().onet``).
        images: ``(H, W, 3)`` uint8 photo of each face (the same photo may appear several times).
        points: ``(N, 5, 2)`` landmarks in MTCNN order, photo pixels (docs/conventions.md), one face
            per entry of ``images``.
        passes: how many times to re-estimate (each pass places its crop by the last estimate).

    Returns:
        ``(landmarks (N, 5, 2) float64, probability (N,))``: the new landmarks in photo pixels, and the
        mean face probability ONet gives the last pass's crops (low where the crop shows no face,
        i.e. the starting landmarks were wrong).
    """
    current = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    n = current.shape[0]
    probability = np.zeros(n)
    if n == 0:
        return current, probability
    mirror = list(_MIRROR_ORDER)
    for _ in range(passes):
        crop_H_photo = _aligned_crop_matrices(current)
        crops = torch.stack([_aligned_crop(im, m) for im, m in zip(images, crop_H_photo, strict=True)])
        found, prob = _onet_landmarks(onet, torch.cat([crops, crops.flip(-1)]))
        mirrored = found[n:][:, mirror]
        mirrored[..., 0] = (_ONET_SIZE - 1) - mirrored[..., 0]
        in_crop = 0.5 * (found[:n] + mirrored)
        photo_H_crop = np.linalg.inv(crop_H_photo)
        current = np.einsum("nij,nkj->nki", photo_H_crop[:, :2, :2], in_crop) + photo_H_crop[:, None, :2, 2]
        probability = 0.5 * (prob[:n] + prob[n:])
    return current, probability


class FaceDetector:
    """All faces in each photo, each an :class:`Instance` with label ``"face"``, its box, score and
    the 5 landmarks :data:`FACE_LANDMARKS` (each landmark's score is the face's score).

    working_size: long side in pixels of the copy MTCNN runs on (None: full resolution).
    min_face_size: smallest face MTCNN searches for, in *working* pixels (MTCNN's own default, 20).
    thresholds, factor: MTCNN's three stage thresholds and image-pyramid factor (its defaults).
    min_score: faces with a lower final probability are dropped (0.9: MTCNN's weak detections at
        0.7-0.9 are mostly textures, not faces).
    batch_size: photos per MTCNN call. device: where MTCNN runs (default CPU).
    refine: when a photo was reduced, re-detect each face on a full-resolution crop around it
        (``_REFINE_CROP`` px, the face about half of it) and keep that box and those landmarks: the
        small working copy finds faces, the crop places the landmarks.
    align_landmarks: re-estimate each face's landmarks on aligned crops and their mirror images
        (:func:`align_landmarks`; the module docstring says why). A face whose aligned crops ONet
        does not take for a face (probability under the last stage threshold) keeps MTCNN's
        landmarks.
    """

    name = "mtcnn"

    def __init__(
        self,
        working_size: int | None = DEFAULT_FACE_WORKING_SIZE,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_score: float = 0.9,
        batch_size: int = 8,
        refine: bool = True,
        align_landmarks: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        from facenet_pytorch import MTCNN

        if working_size is not None and working_size < 32:
            raise ValueError(f"working_size must be >= 32 pixels or None, got {working_size}")
        if min_face_size < 12:
            raise ValueError(
                f"min_face_size must be >= 12 pixels (MTCNN's smallest window), got {min_face_size}"
            )
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must have 3 values, got {thresholds}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.working_size = working_size
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.min_score = float(min_score)
        self.batch_size = batch_size
        self.refine = refine
        self.align_landmarks = align_landmarks
        dev = torch.device(device) if device is not None else None
        self._mtcnn = MTCNN(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=list(self.thresholds),
            factor=self.factor,
            select_largest=False,
            device=dev,
        ).eval()
        # Second pass on full-resolution crops where the face is about half of _REFINE_CROP wide, so
        # the smallest face worth searching for there is a fraction of that.
        self._refiner = MTCNN(
            keep_all=True,
            min_face_size=_REFINE_CROP // 6,
            thresholds=list(self.thresholds),
            factor=self.factor,
            select_largest=False,
            device=dev,
        ).eval()

    def settings(self) -> dict[str, Any]:
        """Every option that changes the detections (used as part of the cache key)."""
        return {
            "working_size": self.working_size,
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
            "min_score": self.min_score,
            "refine": self.refine,
            "align_landmarks": self.align_landmarks,
        }

    def detect(self, images: ImageBatch) -> list[list[Instance]]:
        """Faces per photo, sorted by decreasing score; a photo without faces gives ``[]``.

        Arguments and coordinates as :meth:`~alignimate.detect.base.Detector.detect`; each face's
        keypoints are its 5 landmarks (MTCNN order)."""
        originals = as_uint8_hwc(images)
        work = [resize_uint8(a, self.working_size) for a in originals]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, w in enumerate(work):
            groups[(w.shape[0], w.shape[1])].append(i)
        results: list[list[Instance]] = [[] for _ in originals]
        for size, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                found = self._detect_batch(np.stack([work[i] for i in chunk]))
                for i, faces in zip(chunk, found, strict=True):
                    orig_size = (originals[i].shape[0], originals[i].shape[1])
                    results[i] = [map_instance_to_original(f, size, orig_size) for f in faces]
        if self.refine:
            reduced = [i for i, (o, w) in enumerate(zip(originals, work, strict=True)) if o.shape != w.shape]
            self._refine([originals[i] for i in reduced], [results[i] for i in reduced])
        if self.align_landmarks:
            self._align(originals, results)
        return results

    def _align(self, originals: list[np.ndarray], faces_per_image: list[list[Instance]]) -> None:
        """Replace every face's landmarks by :func:`align_landmarks`' on the full-resolution photo,
        where ONet takes the aligned crops for a face (a face it does not keeps MTCNN's)."""
        where = [
            (i, j)
            for i, faces in enumerate(faces_per_image)
            for j, face in enumerate(faces)
            if face.keypoints is not None and np.isfinite(face.keypoints).all()
        ]
        if not where:
            return
        points = np.stack([faces_per_image[i][j].keypoints for i, j in where]).astype(np.float64)
        aligned, probability = align_landmarks(self._mtcnn.onet, [originals[i] for i, _ in where], points)
        for (i, j), new, prob in zip(where, aligned, probability, strict=True):
            if prob >= self.thresholds[2] and np.isfinite(new).all():
                faces_per_image[i][j] = replace(faces_per_image[i][j], keypoints=new.astype(np.float32))

    def _refine(self, originals: list[np.ndarray], faces_per_image: list[list[Instance]]) -> None:
        """Re-detect every face on a full-resolution crop around it and keep the re-detection that
        overlaps it most: landmarks found on a reduced copy are off by several percent of the eye
        distance when the face there is only 20-40 px wide, and refinement brings that error down
        (docs/benchmarks.md, design measurements)."""
        jobs = [
            (img, faces, j)
            for img, faces in zip(originals, faces_per_image, strict=True)
            for j in range(len(faces))
        ]
        for start in range(0, len(jobs), 4 * self.batch_size):
            chunk = jobs[start : start + 4 * self.batch_size]
            crops, frames = zip(*(_face_crop(img, faces[j].box) for img, faces, j in chunk), strict=True)
            with torch.inference_mode():
                boxes, probs, points = self._refiner.detect(np.stack(crops), landmarks=True)
            for (_, faces, j), frame, b, p, pts in zip(chunk, frames, boxes, probs, points, strict=True):
                better = _best_match(faces[j], frame, b, p, pts)
                if better is not None:
                    faces[j] = better
        for faces in faces_per_image:
            faces.sort(key=lambda f: -f.score)

    def _detect_batch(self, batch: np.ndarray) -> list[list[Instance]]:
        size = (int(batch.shape[1]), int(batch.shape[2]))
        if min(size) < self.min_face_size:
            # Smaller than the smallest face searched for: MTCNN would build an empty pyramid and fail.
            return [[] for _ in range(batch.shape[0])]
        with torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
        out = []
        for b, p, pts in zip(boxes, probs, points, strict=True):
            faces = []
            if b is not None:
                for box, score, lm in zip(b, p, pts, strict=True):
                    if score is None or float(score) < self.min_score:
                        continue
                    faces.append(
                        Instance(
                            box=np.asarray(box, dtype=np.float32),
                            score=float(score),
                            keypoints=np.asarray(lm, dtype=np.float32),
                            keypoint_scores=np.full(len(FACE_LANDMARKS), float(score), dtype=np.float32),
                            keypoint_names=FACE_LANDMARKS,
                            image_size=size,
                            label="face",
                        )
                    )
            faces.sort(key=lambda f: -f.score)
            out.append(faces)
        return out
