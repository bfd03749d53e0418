"""The detector interface shared by every source of semantic information (models and user files).

A detector takes a batch of photos and returns, per photo, a list of :class:`Instance` (possibly
empty: a photo where nothing was found is a result, never an error). All coordinates are pixel
coordinates of the *original* photo as it was passed in, in the convention of docs/conventions.md
(``(0, 0)`` is the centre of the top-left pixel). Detectors that work on a reduced copy map their
results back with :func:`map_instance_to_original`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from alignimate.core.resize import fit_size

__all__ = [
    "Detector",
    "ImageBatch",
    "Instance",
    "as_uint8_hwc",
    "detect_each",
    "map_instance_to_original",
    "resize_uint8",
    "select_keypoints",
]

ImageBatch = Sequence[np.ndarray] | torch.Tensor


@dataclass
class Instance:
    """One detected object (a face, a person) in one photo.

    box: ``(4,)`` float32 ``(x0, y0, x1, y1)`` in original pixel coordinates.
    score: detection confidence in ``[0, 1]``.
    mask: ``(h_m, w_m)`` float32 soft mask in ``[0, 1]`` covering the *whole* photo, usually at the
        detector's working resolution (a 12 MP mask per person would be 48 MB); resize it to use it.
    keypoints: ``(K, 2)`` float32 ``(x, y)`` in original pixel coordinates.
    keypoint_scores: ``(K,)`` float32 confidence in ``[0, 1]`` of each keypoint.
    keypoint_names: the ``K`` names, e.g. COCO names or :data:`alignimate.detect.faces.FACE_LANDMARKS`.
    embedding: ``(D,)`` float32 L2-normalised descriptor (faces), filled in by
        :mod:`alignimate.detect.identity`.
    image_size: ``(H, W)`` of the photo the coordinates refer to.
    label: what the instance is ("face", "person", ...).
    """

    box: np.ndarray
    score: float
    mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    keypoint_names: tuple[str, ...] | None = None
    embedding: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    label: str = "object"

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for a degenerate box)."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


@runtime_checkable
class Detector(Protocol):
    """Anything that turns photos into instances.

    ``name`` and ``settings()`` identify the model and every option that changes its output; the
    detection cache keys entries on them (see :mod:`alignimate.detect.cache`).
    """

    name: str

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable options that change the output."""
        ...

    def detect(self, images: ImageBatch) -> list[list[Instance]]:
        """Detect the instances in a batch of photos.

        Args:
            images: list of ``(H, W, 3)`` uint8 RGB arrays (sizes may differ) or a ``(B, 3, H, W)``
                tensor (uint8, or float in ``[0, 1]``).

        Returns:
            one list of instances per photo, in original pixel coordinates (docs/conventions.md).
        """
        ...


def as_uint8_hwc(images: ImageBatch, name: str = "images") -> list[np.ndarray]:
    """Normalise a batch of photos to a list of contiguous ``(H, W, 3)`` uint8 RGB arrays.

    Args:
        images: a sequence of numpy arrays ``(H, W)`` (grey), ``(H, W, 3)`` (RGB) or ``(H, W, 4)``
            (RGBA, alpha dropped), uint8 or float in ``[0, 1]``; or a tensor ``(B, C, H, W)`` /
            ``(C, H, W)`` with ``C`` in 1, 3, 4 of uint8 or float in ``[0, 1]``.
        name: what the error messages call the argument.
    """
    if isinstance(images, torch.Tensor):
        t = images.detach()
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4:
            raise ValueError(f"{name} tensor must have shape (B, C, H, W), got {tuple(images.shape)}")
        arrays = [a for a in t.permute(0, 2, 3, 1).cpu().numpy()]
    elif isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a list of (H, W, 3) arrays or a (B, C, H, W) tensor, got one array")
    elif isinstance(images, Sequence):
        arrays = list(images)
    else:
        raise TypeError(f"{name} must be a list of arrays or a tensor, got {type(images).__name__}")
    return [_to_uint8_rgb(a, f"{name}[{i}]") for i, a in enumerate(arrays)]


def _to_uint8_rgb(a: Any, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must have shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} is empty, shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must be uint8 or float in [0, 1], got {a.dtype}")
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def resize_uint8(image: np.ndarray, long_side: int | None) -> np.ndarray:
    """The working copy of an image, by an antialiased bilinear resize.

    Args:
        image: ``(H, W, 3)`` uint8.
        long_side: the copy's longer side is at most this many pixels (size:
            :func:`alignimate.core.resize.fit_size`, never enlarged); None: no limit.

    Returns:
        the copy, or the input itself when it already fits. The image edges map to the image edges
        (pixel-centre convention, docs/conventions.md).
    """
    from PIL import Image

    if long_side is None:
        return image
    h, w = image.shape[:2]
    out_h, out_w = fit_size((h, w), long_side)
    if (out_h, out_w) == (h, w):
        return image
    # Pillow widens the bilinear kernel when shrinking (an antialiasing filter, like
    # F.interpolate(antialias=True)) and works on uint8 directly, which is faster on 12 MP photos
    # (docs/benchmarks.md, design measurements).
    return np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.Resampling.BILINEAR))


def _points_to_original(points: np.ndarray, sx: float, sy: float) -> np.ndarray:
    # Pixel centres: x_orig + 0.5 = (x_work + 0.5) / sx (docs/conventions.md).
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] + 0.5) / sx - 0.5
    out[..., 1] = (out[..., 1] + 0.5) / sy - 0.5
    return out


def map_instance_to_original(
    inst: Instance, work_size: tuple[int, int], original_size: tuple[int, int]
) -> Instance:
    """Map an instance found on a resized copy of a photo back to the photo.

    Args:
        inst: found on the copy.
        work_size: the copy's ``(h, w)``.
        original_size: the photo's ``(H, W)``.

    Returns:
        the instance with box and keypoints rescaled per axis (pixel-centre convention,
        docs/conventions.md); the mask is left at the working resolution (it covers the whole photo
        either way).
    """
    sx = work_size[1] / original_size[1]
    sy = work_size[0] / original_size[0]
    box = _points_to_original(np.asarray(inst.box, dtype=np.float32).reshape(2, 2), sx, sy).reshape(4)
    kps = None if inst.keypoints is None else _points_to_original(inst.keypoints, sx, sy)
    return replace(inst, box=box, keypoints=kps, image_size=(int(original_size[0]), int(original_size[1])))


def select_keypoints(inst: Instance, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of an instance picked by name.

    Args:
        inst: the instance.
        names: the keypoints wanted, in order (not empty: ``ValueError``). A name the instance does
            not have (or an instance without keypoints) gives the point ``(0, 0)`` with score 0, so
            it carries no weight downstream.

    Returns:
        ``(points, scores)``: ``(len(names), 2)`` and ``(len(names),)``.
    """
    if len(names) == 0:
        raise ValueError("names must list at least one keypoint name")
    points = np.zeros((len(names), 2), dtype=np.float32)
    scores = np.zeros((len(names),), dtype=np.float32)
    if inst.keypoints is None or inst.keypoint_names is None:
        return points, scores
    index = {n: i for i, n in enumerate(inst.keypoint_names)}
    kp_scores = (
        inst.keypoint_scores
        if inst.keypoint_scores is not None
        else np.ones(len(inst.keypoint_names), dtype=np.float32)
    )
    for j, n in enumerate(names):
        i = index.get(n)
        if i is not None:
            points[j] = inst.keypoints[i]
            scores[j] = kp_scores[i]
    return points, scores


def detect_each(detector: Detector, images: Sequence[np.ndarray]) -> list[list[Instance] | None]:
    """``detector.detect(images)``, but a photo that makes the detector fail gives None instead of
    losing the batch: on an error the photos are retried one at a time."""
    if not images:
        return []
    try:
        return list(detector.detect(list(images)))
    except Exception:
        out: list[list[Instance] | None] = []
        for image in images:
            try:
                out.append(detector.detect([image])[0])
            except Exception:
                out.append(None)
        return out
