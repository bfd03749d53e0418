"""Ground-truth registration cases built from scikit-image's sample photographs.

A case is a fixed view (a crop of a photo) and a moving view of the same photo under a random
``fixed_H_moving`` (rotation, scale, shift and optionally perspective jitter), with a brightness /
contrast change and noise. Both views are full of content (the photo is larger than the views;
reflected borders only where a view would leave it). Used by the tests and by
``benchmarks/registration.py``; needs cv2 and skimage (test/benchmark dependencies only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import skimage.data

PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "rocket",
    "chelsea",
    "coins",
    "moon",
    "immunohistochemistry",
    "clock",
    "brick",
    "cell",
    "hubble_deep_field",
)


@dataclass
class Case:
    moving: np.ndarray  # (h, w) or (h, w, 3) float32 in [0, 1]
    fixed: np.ndarray
    fixed_H_moving: np.ndarray  # noqa: N815 (matrix naming convention); (3, 3) float64 ground truth
    photo: str


_CACHE: dict[str, np.ndarray] = {}


def photo(name: str) -> np.ndarray:
    """The photo as float32 ``[0, 1]``, grey or RGB."""
    if name not in _CACHE:
        image = getattr(skimage.data, name)()
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        _CACHE[name] = image.astype(np.float32) / 255.0
    return _CACHE[name]


def random_matrix(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    max_angle_deg: float = 15.0,
    scale_range: tuple[float, float] = (0.85, 1.15),
    max_shift: float = 0.10,
    perspective: float = 0.0,
) -> np.ndarray:
    """Random pixel ``fixed_H_moving (3, 3)`` for images of ``size=(h, w)``: a similarity about the
    centre (angle, scale, shift as a fraction of the size) followed by moving each corner by up to
    ``perspective`` times the size."""
    h, w = size
    angle = math.radians(rng.uniform(-max_angle_deg, max_angle_deg))
    scale = rng.uniform(*scale_range)
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D(centre, math.degrees(angle), scale)
    m[0, 2] += rng.uniform(-max_shift, max_shift) * w
    m[1, 2] += rng.uniform(-max_shift, max_shift) * h
    if perspective > 0:
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
        mapped = cv2.perspectiveTransform(corners[None], m)[0]
        jitter = rng.uniform(-perspective, perspective, size=(4, 2)) * np.array([w, h])
        m = cv2.getPerspectiveTransform(corners.astype(np.float32), (mapped + jitter).astype(np.float32))
    return m / m[2, 2]


def make_case(
    rng: np.random.Generator,
    name: str,
    fixed_size: tuple[int, int],
    moving_size: tuple[int, int] | None = None,
    *,
    homography: bool = False,
    photometric: bool = True,
    noise: float = 0.02,
    grey: bool = False,
    matrix: np.ndarray | None = None,
) -> Case:
    """One case. ``moving_size`` may differ from ``fixed_size`` (its content is the moving view
    rescaled); ``matrix`` overrides the random ``fixed_H_moving`` (given for ``fixed_size`` views)."""
    source = photo(name)
    if grey and source.ndim == 3:
        source = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
    fh, fw = fixed_size
    sh, sw = source.shape[:2]
    # The fixed view covers 55% of the photo's shorter side (centred), leaving room for the moving
    # view's rotation, zoom-out and shift inside the photo.
    side = 0.55 * min(sh, sw)
    zoom = side / max(fh, fw)
    src_H_fixed = np.array(
        [
            [zoom, 0, (sw - 1) / 2 - zoom * (fw - 1) / 2],
            [0, zoom, (sh - 1) / 2 - zoom * (fh - 1) / 2],
            [0, 0, 1],
        ]
    )
    if matrix is None:
        matrix = random_matrix(rng, fixed_size, perspective=0.05 if homography else 0.0)
    # The moving view is a view of size fixed_size through fixed_H_moving, then resized to moving_size.
    src_H_moving = src_H_fixed @ matrix
    fixed = _render(source, src_H_fixed, fixed_size)
    moving = _render(source, src_H_moving, fixed_size)
    truth = matrix.copy()
    if moving_size is not None and tuple(moving_size) != tuple(fixed_size):
        mh, mw = moving_size
        moving = cv2.resize(moving, (mw, mh), interpolation=cv2.INTER_AREA if mw < fw else cv2.INTER_LINEAR)
        sx, sy = mw / fw, mh / fh
        resized_H_view = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        truth = matrix @ np.linalg.inv(resized_H_view)
    if photometric:
        gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-0.1, 0.1)
        moving = moving * gain + bias
    if noise > 0:
        moving = moving + rng.normal(0, noise, moving.shape)
        fixed = fixed + rng.normal(0, noise, fixed.shape)
    return Case(_clip(moving), _clip(fixed), truth / truth[2, 2], name)


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 1).astype(np.float32)


def _render(source: np.ndarray, src_H_view: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    # Anti-alias when the view samples the photo more coarsely than its pixels.
    zoom = math.sqrt(abs(np.linalg.det(src_H_view[:2, :2])))
    blurred = cv2.GaussianBlur(source, (0, 0), 0.5 * zoom) if zoom > 1.2 else source
    return cv2.warpPerspective(
        blurred,
        src_H_view,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


def corner_error(estimate: np.ndarray, truth: np.ndarray, moving_size: tuple[int, int]) -> float:
    """Mean distance (fixed pixels) between the moving image's corners mapped by both matrices."""
    h, w = moving_size
    corners = np.array([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], dtype=np.float64)
    a = cv2.perspectiveTransform(corners, np.asarray(estimate, dtype=np.float64))[0]
    b = cv2.perspectiveTransform(corners, np.asarray(truth, dtype=np.float64))[0]
    return float(np.linalg.norm(a - b, axis=1).mean())


def to_tensor(images: list[np.ndarray]):
    """Stack ``(h, w)`` / ``(h, w, 3)`` arrays into a ``(B, C, h, w)`` float32 tensor (grey arrays are
    repeated to 3 channels when the list mixes both)."""
    import torch

    channels = max(1 if a.ndim == 2 else a.shape[2] for a in images)
    arrays = [np.repeat(a[..., None], channels, axis=2) if a.ndim == 2 else a for a in images]
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
