"""Ground-truth registration cases built from scikit-image's sample photographs.

A case is a fixed view (a crop of a photo) and a moving view of the same photo under a random
``fixed_H_moving`` (rotation, scale, shift and optionally perspective jitter), with a brightness /
contrast change and noise. Both views are full of content (the photo is larger than the views;
reflected borders only where a view would leave it). Used by the tests and by
``benchmarks/registration.py``; needs cv2 and skimage (test/benchmark dependencies only).

The harder conditions of issue #13 (occluders, exactly-zero areas, partial overlap) follow the
original builders at the end of the file: :func:`make_condition_cases` and the ``make_*_case``
functions it calls; tests/registration/test_cases_conditions.py checks them.
"""

from __future__ import annotations

import math
import zlib
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


# --------------------------------------------------------------------------- harder conditions
# Robustness cases (issue #13): occluders in the fixed view, exactly-zero (empty) areas in the fixed
# view, and partial overlap. Same content as a Case (and the same geometry conventions), plus masks
# that describe the condition: they are for analysis and for the benchmark's "mask" runs, a method
# under test gets none of them unless a run says so.

CONDITIONS = ("clean", "occluded", "occluded-both", "empty", "partial")
# Occluded fraction of the fixed view for "occluded" (and of the moving view for "occluded-both").
OCCLUDED_RANGE = (0.10, 0.25)
MOVING_OCCLUDED_RANGE = (0.05, 0.10)
# Exactly-zero fraction of the fixed view for "empty".
EMPTY_RANGE = (0.10, 0.30)
# Fraction of the fixed view covered by the moving image for "partial".
OVERLAP_RANGE = (0.50, 0.90)
OCCLUDER_SHAPES = ("rectangle", "ellipse", "blob", "figure")


@dataclass
class ConditionCase(Case):
    condition: str = "clean"
    variant: str = ""  # "bands" / "warp" for empty cases
    fixed_valid: np.ndarray | None = None  # (h, w) bool, True where the fixed view holds content
    fixed_occluder: np.ndarray | None = None  # (h, w) bool, True on foreign objects in the fixed view
    moving_occluder: np.ndarray | None = None  # same for the moving view
    overlap: float = 1.0  # fraction of the fixed view the moving image covers under the truth

    @property
    def occluded_fraction(self) -> float:
        return 0.0 if self.fixed_occluder is None else float(self.fixed_occluder.mean())

    @property
    def empty_fraction(self) -> float:
        return 0.0 if self.fixed_valid is None else float(1.0 - self.fixed_valid.mean())


def footprint(
    fixed_H_moving: np.ndarray, moving_size: tuple[int, int], fixed_size: tuple[int, int]
) -> np.ndarray:
    """``(h, w)`` bool mask of the fixed pixels that the moving image covers under ``fixed_H_moving``
    (nearest-pixel rendering of the moving frame)."""
    h, w = fixed_size
    ones = np.ones(moving_size, np.uint8)
    return (
        cv2.warpPerspective(
            ones, np.asarray(fixed_H_moving, np.float64), (w, h), flags=cv2.INTER_NEAREST, borderValue=0
        )
        > 0
    )


def overlap_fraction(
    fixed_H_moving: np.ndarray, moving_size: tuple[int, int], fixed_size: tuple[int, int]
) -> float:
    """Fraction of the fixed view's pixels covered by the moving image under ``fixed_H_moving``."""
    return float(footprint(fixed_H_moving, moving_size, fixed_size).mean())


def _as_channels(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.ndim == 2 and image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if like.ndim == 3 and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image


def _shape_mask(rng: np.random.Generator, kind: str, area: float, size: tuple[int, int]) -> np.ndarray:
    """A filled shape of about ``area`` pixels centred anywhere in an image of ``size`` (it may
    leave the image)."""
    h, w = size
    canvas = np.zeros(size, np.uint8)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 180)
    aspect = math.exp(rng.uniform(-1.0, 1.0))
    if kind == "rectangle":
        rw = math.sqrt(area * aspect)
        box = cv2.boxPoints(((cx, cy), (rw, area / rw), angle if rng.random() < 0.5 else 0.0))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    elif kind == "ellipse":
        a = math.sqrt(area / math.pi * aspect)
        b = area / (math.pi * a)
        cv2.ellipse(
            canvas, (round(cx), round(cy)), (max(1, round(a)), max(1, round(b))), angle, 0, 360, 1, -1
        )
    elif kind == "blob":
        theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        radius = np.ones_like(theta)
        for k in (2, 3, 4, 5):
            radius += rng.uniform(0, 0.25) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        radius *= math.sqrt(area / math.pi / np.mean(radius**2))  # polar area = pi * mean(r^2)
        points = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    elif kind == "figure":
        # A person walking through: head, torso and two legs, upright with a slight lean.
        height = math.sqrt(area / 0.21)
        lean = rng.uniform(-0.15, 0.15)
        top = cy - height / 2

        def at(dx: float, dy: float) -> tuple[float, float]:
            return cx + dx * height + lean * dy * height, top + dy * height

        hx, hy = at(0.0, 0.09)
        cv2.circle(canvas, (round(hx), round(hy)), max(1, round(0.085 * height)), 1, -1)
        tx, ty = at(0.0, 0.38)
        torso = (max(1, round(0.15 * height)), max(1, round(0.21 * height)))
        cv2.ellipse(canvas, (round(tx), round(ty)), torso, math.degrees(lean), 0, 360, 1, -1)
        stride = rng.uniform(0.0, 0.12)
        for side in (-1, 1):
            hip, foot = at(0.05 * side, 0.52), at(0.05 * side + stride * side, 1.0)
            cv2.line(
                canvas,
                tuple(round(v) for v in hip),
                tuple(round(v) for v in foot),
                1,
                max(1, round(0.09 * height)),
            )
    else:
        raise ValueError(f"unknown occluder shape {kind!r}")
    return canvas.astype(bool)


def _occluder_fill(rng: np.random.Generator, like: np.ndarray, exclude: str, noise: float) -> np.ndarray:
    """Foreign content for an occluder, the size and channels of ``like``: a view of another sample
    photo, a smooth random colour field with texture, or a flat colour."""
    h, w = like.shape[:2]
    kind = rng.choice(["photo", "smooth", "flat"], p=[0.5, 0.3, 0.2])
    if kind == "photo":
        other = str(rng.choice([p for p in PHOTOS if p != exclude]))
        source = photo(other)
        sh, sw = source.shape[:2]
        zoom = rng.uniform(0.3, 1.0) * min(sh, sw) / max(h, w)
        angle = math.radians(rng.uniform(-30, 30))
        c, s = zoom * math.cos(angle), zoom * math.sin(angle)
        centre = (rng.uniform(0.3, 0.7) * (sw - 1), rng.uniform(0.3, 0.7) * (sh - 1))
        src_H_view = np.array(
            [
                [c, -s, centre[0] - c * (w - 1) / 2 + s * (h - 1) / 2],
                [s, c, centre[1] - s * (w - 1) / 2 - c * (h - 1) / 2],
                [0, 0, 1],
            ]
        )
        fill = _as_channels(_render(source, src_H_view, (h, w)), like) * rng.uniform(0.8, 1.2)
    elif kind == "smooth":
        channels = () if like.ndim == 2 else (like.shape[2],)
        k = int(rng.integers(3, 9))
        field = cv2.resize(
            rng.normal(0, 1, (k, k, *channels)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        field = rng.uniform(0.15, 0.85) + rng.uniform(0.05, 0.2) * field
        fill = field + rng.normal(0, rng.uniform(0.02, 0.08), field.shape)
    else:
        colour = rng.uniform(0, 1, () if like.ndim == 2 else (like.shape[2],))
        fill = np.broadcast_to(colour, like.shape)
    if noise > 0:
        fill = fill + rng.normal(0, noise, like.shape)
    return _clip(fill)


def occlude(
    rng: np.random.Generator,
    image: np.ndarray,
    coverage: tuple[float, float] = OCCLUDED_RANGE,
    *,
    exclude: str = "",
    noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint foreign objects (rectangles, ellipses, blobs, walking figures; see
    :data:`OCCLUDER_SHAPES`) over ``image`` until they cover a random fraction in ``coverage`` of
    it; ``exclude`` names the photo the image shows (never used as occluder content). Returns the
    new image and the ``(h, w)`` bool occluder mask."""
    h, w = image.shape[:2]
    lo, hi = coverage
    target = rng.uniform(lo, hi)
    planned = int(rng.integers(2, 6))
    out = image.copy()
    mask = np.zeros((h, w), bool)
    drawn = 0
    for _ in range(80):
        covered = mask.mean()
        if covered >= target:
            break
        area = max(16.0, (target - covered) / max(1, planned - drawn) * h * w * rng.uniform(0.7, 1.3))
        shape = _shape_mask(rng, str(rng.choice(OCCLUDER_SHAPES)), area, (h, w))
        new = mask | shape
        if new.mean() > hi or not (shape & ~mask).any():
            continue
        out[shape] = _occluder_fill(rng, image, exclude, noise)[shape]
        mask, drawn = new, drawn + 1
    for _ in range(80):  # rarely needed: top up with rectangles inside the image, never past target
        covered = mask.mean()
        if covered >= lo:
            break
        area = (target - covered) * h * w
        rw = int(np.clip(round(math.sqrt(area)), 1, w))
        rh = int(np.clip(area // rw, 1, h))
        x, y = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        shape = np.zeros((h, w), bool)
        shape[y : y + rh, x : x + rw] = True
        out[shape] = _occluder_fill(rng, image, exclude, noise)[shape]
        mask |= shape
    return out, mask


def make_occluded_case(
    rng: np.random.Generator,
    name: str,
    fixed_size: tuple[int, int],
    *,
    homography: bool = False,
    coverage: tuple[float, float] = OCCLUDED_RANGE,
    moving_coverage: tuple[float, float] | None = None,
    noise: float = 0.02,
    **options,
) -> ConditionCase:
    """A :func:`make_case` case whose fixed view carries foreign objects over a fraction in
    ``coverage`` of its area (and, with ``moving_coverage``, the moving view too, drawn
    independently). The occluder masks are recorded; ``options`` go to :func:`make_case`."""
    case = make_case(rng, name, fixed_size, homography=homography, noise=noise, **options)
    fixed, fixed_mask = occlude(rng, case.fixed, coverage, exclude=name, noise=noise)
    moving, moving_mask = case.moving, None
    if moving_coverage is not None:
        moving, moving_mask = occlude(rng, case.moving, moving_coverage, exclude=name, noise=noise)
    return ConditionCase(
        moving,
        fixed,
        case.fixed_H_moving,
        name,
        condition="occluded" if moving_coverage is None else "occluded-both",
        fixed_occluder=fixed_mask,
        moving_occluder=moving_mask,
        overlap=overlap_fraction(case.fixed_H_moving, case.moving.shape[:2], fixed_size),
    )


def _band_mask(rng: np.random.Generator, size: tuple[int, int], empty: tuple[float, float]) -> np.ndarray:
    """Valid mask with black bands along 1-3 random sides (a scan, a crop padded to size)."""
    h, w = size
    lo, hi = empty
    for _ in range(100):
        target = rng.uniform(lo, hi)
        sides = rng.choice(4, size=int(rng.integers(1, 4)), replace=False)  # top, bottom, left, right
        shares = rng.dirichlet(np.ones(len(sides))) * target
        factor = 1.0
        for _ in range(8):
            valid = np.ones(size, bool)
            for side, share in zip(sides, shares, strict=True):
                n = max(1, round(share * factor * (h if side < 2 else w)))
                if side == 0:
                    valid[:n] = False
                elif side == 1:
                    valid[h - n :] = False
                elif side == 2:
                    valid[:, :n] = False
                else:
                    valid[:, w - n :] = False
            fraction = 1.0 - valid.mean()
            if lo <= fraction <= hi:
                return valid
            factor *= target / fraction
    raise RuntimeError("could not draw empty bands in the requested range")


def _warp_mask(rng: np.random.Generator, size: tuple[int, int], empty: tuple[float, float]) -> np.ndarray:
    """Valid mask of a view that is itself an earlier warp: the image of the frame under a random
    transform near the identity, black outside."""
    lo, hi = empty
    for _ in range(500):
        m = random_matrix(
            rng,
            size,
            max_angle_deg=12.0,
            scale_range=(0.8, 1.0),
            max_shift=0.08,
            perspective=0.03 if rng.random() < 0.5 else 0.0,
        )
        valid = footprint(m, size, size)
        if lo <= 1.0 - valid.mean() <= hi:
            return valid
    raise RuntimeError("could not draw a warped frame in the requested range")


def make_empty_case(
    rng: np.random.Generator,
    name: str,
    fixed_size: tuple[int, int],
    *,
    homography: bool = False,
    empty: tuple[float, float] = EMPTY_RANGE,
    mode: str | None = None,
    **options,
) -> ConditionCase:
    """A :func:`make_case` case whose fixed view is exactly zero over a fraction in ``empty`` of its
    area: ``mode="bands"`` (black bands on 1-3 sides, like a scan or a padded crop) or ``"warp"``
    (the fixed view is an earlier warp, black outside a rotated/scaled, possibly perspective,
    frame); ``None`` picks one at random. ``fixed_valid`` records where content remains."""
    case = make_case(rng, name, fixed_size, homography=homography, **options)
    if mode is None:
        mode = "bands" if rng.random() < 0.5 else "warp"
    if mode == "bands":
        valid = _band_mask(rng, fixed_size, empty)
    elif mode == "warp":
        valid = _warp_mask(rng, fixed_size, empty)
    else:
        raise ValueError(f"mode must be 'bands', 'warp' or None, got {mode!r}")
    fixed = case.fixed.copy()
    fixed[~valid] = 0.0
    return ConditionCase(
        case.moving,
        fixed,
        case.fixed_H_moving,
        name,
        condition="empty",
        variant=mode,
        fixed_valid=valid,
        overlap=overlap_fraction(case.fixed_H_moving, case.moving.shape[:2], fixed_size),
    )


def make_partial_case(
    rng: np.random.Generator,
    name: str,
    fixed_size: tuple[int, int],
    *,
    homography: bool = False,
    overlap: tuple[float, float] = OVERLAP_RANGE,
    photometric: bool = True,
    noise: float = 0.02,
    grey: bool = False,
) -> ConditionCase:
    """A case whose moving image covers only a random fraction in ``overlap`` of the fixed view:
    the usual rotation / scale (and perspective jitter for homographies) of :func:`random_matrix`,
    then a translation in a random direction as long as that overlap needs (it removes at least
    a tenth of the fixed view beyond what the rotation and scale leave uncovered). Both views are
    placed inside the photo (its zoom is lowered if their union would not fit), so neither shows
    reflected borders. Same photometric change and noise as :func:`make_case`."""
    source = photo(name)
    if grey and source.ndim == 3:
        source = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
    fh, fw = fixed_size
    sh, sw = source.shape[:2]
    base = random_matrix(rng, fixed_size, max_shift=0.0, perspective=0.05 if homography else 0.0)
    lo = overlap[0]
    # The shift always costs at least a tenth of the fixed view (a zoom-out alone can leave 70 %).
    hi = max(lo, min(overlap[1], overlap_fraction(base, fixed_size, fixed_size) - 0.10))
    target = rng.uniform(lo, hi)
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])

    def shifted(t: float) -> np.ndarray:
        shift = np.eye(3)
        shift[:2, 2] = t * direction
        return shift @ base

    near, far = 0.0, 2.0 * max(fh, fw)  # overlap(near) >= target > overlap(far)
    for _ in range(40):
        mid = 0.5 * (near + far)
        if overlap_fraction(shifted(mid), fixed_size, fixed_size) >= target:
            near = mid
        else:
            far = mid
    matrix = shifted(near)
    # Union of both frames in fixed pixels, then the largest zoom up to make_case's that fits it.
    corners = np.array([[[-0.5, -0.5], [fw - 0.5, -0.5], [fw - 0.5, fh - 0.5], [-0.5, fh - 0.5]]])
    mapped = cv2.perspectiveTransform(corners, matrix)[0]
    points = np.concatenate([corners[0], mapped])
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    zoom = min(0.55 * min(sh, sw) / max(fh, fw), 0.98 * sw / (x1 - x0), 0.98 * sh / (y1 - y0))
    src_H_fixed = np.array(
        [
            [zoom, 0, (sw - 1) / 2 - zoom * (x0 + x1) / 2],
            [0, zoom, (sh - 1) / 2 - zoom * (y0 + y1) / 2],
            [0, 0, 1],
        ]
    )
    fixed = _render(source, src_H_fixed, fixed_size)
    moving = _render(source, src_H_fixed @ matrix, fixed_size)
    if photometric:
        gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-0.1, 0.1)
        moving = moving * gain + bias
    if noise > 0:
        moving = moving + rng.normal(0, noise, moving.shape)
        fixed = fixed + rng.normal(0, noise, fixed.shape)
    return ConditionCase(
        _clip(moving),
        _clip(fixed),
        matrix / matrix[2, 2],
        name,
        condition="partial",
        overlap=overlap_fraction(matrix, fixed_size, fixed_size),
    )


def make_condition_case(
    rng: np.random.Generator,
    condition: str,
    name: str,
    fixed_size: tuple[int, int],
    *,
    homography: bool = False,
) -> ConditionCase:
    """One case of ``condition`` (one of :data:`CONDITIONS`) with the default ranges."""
    if condition == "clean":
        case = make_case(rng, name, fixed_size, homography=homography)
        return ConditionCase(
            case.moving,
            case.fixed,
            case.fixed_H_moving,
            name,
            overlap=overlap_fraction(case.fixed_H_moving, case.moving.shape[:2], fixed_size),
        )
    if condition == "occluded":
        return make_occluded_case(rng, name, fixed_size, homography=homography)
    if condition == "occluded-both":
        return make_occluded_case(
            rng, name, fixed_size, homography=homography, moving_coverage=MOVING_OCCLUDED_RANGE
        )
    if condition == "empty":
        return make_empty_case(rng, name, fixed_size, homography=homography)
    if condition == "partial":
        return make_partial_case(rng, name, fixed_size, homography=homography)
    raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}; got {condition!r}")


def make_condition_cases(
    condition: str, fixed_size: tuple[int, int], count: int, seed: int = 0, *, homography: bool = False
) -> list[ConditionCase]:
    """``count`` cases of ``condition`` cycling through :data:`PHOTOS`, deterministic for a seed.
    ``"clean"`` draws exactly the cases of ``make_case`` with ``np.random.default_rng(seed)`` (the
    benchmark's original set); each other condition has its own stream of the seed."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}; got {condition!r}")
    rng = np.random.default_rng(seed if condition == "clean" else [seed, zlib.crc32(condition.encode())])
    return [
        make_condition_case(rng, condition, PHOTOS[i % len(PHOTOS)], fixed_size, homography=homography)
        for i in range(count)
    ]
