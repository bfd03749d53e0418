"""Builders for batched 3x3 pixel matrices and the maps between points that they define.

Conventions: docs/conventions.md. Every matrix is a ``(B, 3, 3)`` pixel matrix ``dst_H_src`` that
maps source pixel coordinates ``(x, y)`` (``(0, 0)`` = centre of the top-left pixel) to destination
pixel coordinates. Angles are radians, positive = counter-clockwise on screen (y points down), the
sense of ``cv2.getRotationMatrix2D``. Outputs follow the dtype and device of the tensor inputs and
are differentiable with respect to them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from alignimate.core.checks import check_matrices, check_points

__all__ = [
    "affine_matrix",
    "compose",
    "homography_from_params",
    "homography_from_points",
    "invert",
    "rescale_matrix",
    "rotation_matrix",
    "scale_matrix",
    "scale_matrix_for_resize",
    "similarity_matrix",
    "to_3x3",
    "transform_points",
    "translation_matrix",
]

Scalar = float | int | torch.Tensor
CenterLike = torch.Tensor | Sequence[float]

# Homogeneous coordinates whose last component is smaller than this (in absolute value) are divided
# by +-_HOMOGENEOUS_EPS instead: the point lies (numerically) at infinity, and a finite, very distant
# result is more useful downstream than inf/NaN.
_HOMOGENEOUS_EPS = 1e-12


# ----------------------------------------------------------------------------------------------
# argument handling
# ----------------------------------------------------------------------------------------------


def _common_dtype_device(values: Sequence[object]) -> tuple[torch.dtype, torch.device | None]:
    """Floating dtype (promoted over tensor inputs, else the default dtype) and device of the first
    tensor among ``values``."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    floating = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = functools.reduce(torch.promote_types, floating) if floating else torch.get_default_dtype()
    device = tensors[0].device if tensors else None
    return dtype, device


def _as_batch_vectors(values: dict[str, Scalar], center: object = None) -> list[torch.Tensor]:
    """Turn scalars / ``(B,)`` tensors into ``(B,)`` tensors of one floating dtype, broadcast together.
    A tensor ``center`` takes part in choosing the dtype and device."""
    dtype, device = _common_dtype_device([*values.values(), center])
    out = []
    for name, v in values.items():
        if isinstance(v, torch.Tensor):
            if v.dim() > 1:
                raise ValueError(f"{name} must be a scalar or a (B,) tensor, got shape {tuple(v.shape)}")
            t = v.to(dtype=dtype).reshape(-1)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            # torch.full launches a fill kernel; torch.tensor(..., device=cuda) would copy from the host
            # and synchronise the stream.
            t = torch.full((1,), float(v), dtype=dtype, device=device)
        else:
            raise TypeError(f"{name} must be a float or a torch.Tensor, got {type(v).__name__}")
        out.append(t)
    try:
        return list(torch.broadcast_tensors(*out))
    except RuntimeError as err:
        shapes = {name: tuple(t.shape) for name, t in zip(values, out, strict=True)}
        raise ValueError(f"batch sizes do not match: {shapes}") from err


def _center_columns(center: CenterLike | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre ``(B, 2)`` / ``(2,)`` / ``(x, y)`` -> two ``(B,)`` tensors broadcast against ``like``."""
    if center is None:
        zero = torch.zeros_like(like)
        return zero, zero
    if not isinstance(center, torch.Tensor):
        if len(center) != 2:
            raise ValueError(f"center must be (x, y) or a (B, 2) tensor, got {center!r}")
        return torch.full_like(like, float(center[0])), torch.full_like(like, float(center[1]))
    if center.dim() == 1:
        center = center.unsqueeze(0)
    if center.dim() != 2 or center.shape[1] != 2:
        raise ValueError(f"center must have shape (B, 2), got {tuple(center.shape)}")
    center = center.to(dtype=like.dtype)
    try:
        cx, cy, _ = torch.broadcast_tensors(center[:, 0], center[:, 1], like)
    except RuntimeError as err:
        raise ValueError(f"center has batch {center.shape[0]}, expected 1 or {like.shape[0]}") from err
    return cx, cy


def _affine_from_entries(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor, f: torch.Tensor
) -> torch.Tensor:
    """``(B, 3, 3)`` matrix ``[[a, b, c], [d, e, f], [0, 0, 1]]`` from ``(B,)`` entries (differentiable)."""
    zero = torch.zeros_like(a)
    one = torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def _linear_about_center(
    a: torch.Tensor,
    b: torch.Tensor,
    d: torch.Tensor,
    e: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    tx: torch.Tensor | None = None,
    ty: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear map ``L = [[a, b], [d, e]]`` applied about centre ``c``, then shifted by ``t``:
    ``p' = L (p - c) + c + t``."""
    off_x = cx - a * cx - b * cy
    off_y = cy - d * cx - e * cy
    if tx is not None and ty is not None:
        off_x, off_y = off_x + tx, off_y + ty
    return _affine_from_entries(a, b, off_x, d, e, off_y)


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------


def translation_matrix(tx: Scalar, ty: Scalar) -> torch.Tensor:
    """Translation by ``(tx, ty)`` pixels, ``(B, 3, 3)``: content moves right/down for positive values.

    ``tx``, ``ty``: floats or ``(B,)`` tensors. Conventions: docs/conventions.md.
    """
    tx, ty = _as_batch_vectors({"tx": tx, "ty": ty})
    one = torch.ones_like(tx)
    zero = torch.zeros_like(tx)
    return _affine_from_entries(one, zero, tx, zero, one, ty)


def rotation_matrix(angle: Scalar, center: CenterLike) -> torch.Tensor:
    """Rotation by ``angle`` radians about the pixel ``center``, ``(B, 3, 3)``.

    Positive angles turn counter-clockwise on screen, like ``cv2.getRotationMatrix2D`` (which takes
    degrees): the linear part is ``[[cos, sin], [-sin, cos]]``. ``angle``: float or ``(B,)``;
    ``center``: ``(x, y)`` or ``(B|1, 2)``. Conventions: docs/conventions.md.
    """
    (angle,) = _as_batch_vectors({"angle": angle}, center)
    cx, cy = _center_columns(center, angle)
    angle = angle.expand_as(cx)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return _linear_about_center(cos, sin, -sin, cos, cx, cy)


def scale_matrix(sx: Scalar, sy: Scalar | None = None, center: CenterLike | None = None) -> torch.Tensor:
    """Scaling by ``sx`` (and ``sy``; isotropic when ``None``) about ``center`` (default: pixel
    ``(0, 0)``), ``(B, 3, 3)``. Factors are floats or ``(B,)``. Conventions: docs/conventions.md.
    """
    sx, sy = _as_batch_vectors({"sx": sx, "sy": sx if sy is None else sy}, center)
    cx, cy = _center_columns(center, sx)
    sx, sy = sx.expand_as(cx), sy.expand_as(cx)
    zero = torch.zeros_like(sx)
    return _linear_about_center(sx, zero, zero, sy, cx, cy)


def similarity_matrix(
    angle: Scalar, log_scale: Scalar, tx: Scalar, ty: Scalar, center: CenterLike | None = None
) -> torch.Tensor:
    """Similarity ``T(tx, ty) @ [rotation by angle and scaling by exp(log_scale) about center]``.

    ``angle`` in radians (counter-clockwise on screen), ``log_scale`` natural log of the isotropic
    scale, ``(tx, ty)`` pixels; each a float or ``(B,)``. ``center``: ``(x, y)`` or ``(B|1, 2)``,
    default pixel ``(0, 0)``. ``cv2.getRotationMatrix2D(c, deg, s)`` equals
    ``similarity_matrix(radians(deg), log(s), 0, 0, c)``. Returns ``(B, 3, 3)``.
    Conventions: docs/conventions.md.
    """
    angle, log_scale, tx, ty = _as_batch_vectors(
        {"angle": angle, "log_scale": log_scale, "tx": tx, "ty": ty}, center
    )
    cx, cy = _center_columns(center, angle)
    scale = torch.exp(log_scale)
    a = scale * torch.cos(angle)
    b = scale * torch.sin(angle)
    a, b, tx, ty = (v.expand_as(cx) for v in (a, b, tx, ty))
    return _linear_about_center(a, b, -b, a, cx, cy, tx, ty)


def affine_matrix(params: torch.Tensor) -> torch.Tensor:
    """Affine matrix from ``params`` ``(B, 6)`` = the top two rows, row-major
    ``[[p0, p1, p2], [p3, p4, p5], [0, 0, 1]]``. Returns ``(B, 3, 3)``. Conventions: docs/conventions.md.
    """
    _check_param_vector(params, 6, "params")
    bottom = torch.zeros_like(params[:, :3])
    bottom[:, 2] = 1.0
    return torch.cat([params, bottom], dim=1).reshape(-1, 3, 3)


def homography_from_params(params: torch.Tensor) -> torch.Tensor:
    """Homography ``H = I + P`` from ``params`` ``(B, 8)``, where ``P`` holds the 8 parameters in the
    first 8 entries (row-major) and 0 at ``[2, 2]``, so ``H[2, 2] == 1`` and zero parameters give the
    identity. Returns ``(B, 3, 3)``. Conventions: docs/conventions.md.
    """
    _check_param_vector(params, 8, "params")
    eye = torch.eye(3, dtype=params.dtype, device=params.device).reshape(1, 9)
    full = torch.cat([params, torch.zeros_like(params[:, :1])], dim=1)
    return (full + eye).reshape(-1, 3, 3)


def homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Exact homography ``dst_H_src`` ``(B, 3, 3)`` (``H[2, 2] == 1``) mapping the 4 points ``src``
    ``(B, 4, 2)`` onto ``dst`` ``(B, 4, 2)`` (batch 1 broadcasts).

    Solves the 8x8 linear system in Hartley-normalised coordinates (batched ``linalg.solve_ex``, no
    host sync). Degenerate quadrilaterals (3 collinear points) give non-finite entries instead of
    raising. Differentiable. Conventions: docs/conventions.md.
    """
    check_points(src, "src")
    check_points(dst, "dst")
    if src.shape[1] != 4 or dst.shape[1] != 4:
        raise ValueError(f"src and dst must have 4 points each, got {src.shape[1]} and {dst.shape[1]}")
    src, dst = _broadcast_point_sets(src, dst)
    src_T = _normalizing_transform(src)
    dst_T = _normalizing_transform(dst)
    s = transform_points(src_T, src)
    d = transform_points(dst_T, dst)
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    system = torch.cat([rows_u, rows_v], dim=1)  # (B, 8, 8)
    rhs = torch.cat([u, v], dim=1).unsqueeze(-1)  # (B, 8, 1)
    h, _ = torch.linalg.solve_ex(system, rhs)
    normalized = torch.cat([h.squeeze(-1), torch.ones_like(h[:, :1, 0])], dim=1).reshape(-1, 3, 3)
    H = compose(_invert_normalizing_transform(dst_T), normalized, src_T)
    return H / H[:, 2:, 2:]


def scale_matrix_for_resize(
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel matrix ``(1, 3, 3)`` from an image of ``src_size=(h, w)`` to the same content resized to
    ``dst_size=(h', w')``: ``x' = (x + 0.5) * w' / w - 0.5`` (and likewise for ``y``), i.e. image edges
    map to image edges under the pixel-centre convention (as ``cv2.resize`` and
    ``F.interpolate(align_corners=False)``). Conventions: docs/conventions.md.
    """
    h, w = _check_size(src_size, "src_size")
    h2, w2 = _check_size(dst_size, "dst_size")
    sx, sy = w2 / w, h2 / h
    m = torch.tensor(
        [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    # Built in float64 and cast once so float64 callers keep full precision.
    return m.to(dtype=dtype or torch.get_default_dtype(), device=device).unsqueeze(0)


def rescale_matrix(
    fixed_H_moving: torch.Tensor,
    moving_size: tuple[int, int],
    fixed_size: tuple[int, int],
    new_moving_size: tuple[int, int],
    new_fixed_size: tuple[int, int],
) -> torch.Tensor:
    """The same alignment between resized copies: ``fixed_H_moving`` ``(B, 3, 3)`` maps pixels of an
    image of ``moving_size`` to one of ``fixed_size`` (``(h, w)``); the result maps the same content at
    ``new_moving_size`` to ``new_fixed_size`` (e.g. working copies to the full-resolution photos).
    Built from :func:`scale_matrix_for_resize` both ways, without an inverse."""
    kw = {"dtype": fixed_H_moving.dtype, "device": fixed_H_moving.device}
    new_fixed_H_fixed = scale_matrix_for_resize(fixed_size, new_fixed_size, **kw)
    moving_H_new_moving = scale_matrix_for_resize(new_moving_size, moving_size, **kw)
    return new_fixed_H_fixed @ fixed_H_moving @ moving_H_new_moving


# ----------------------------------------------------------------------------------------------
# matrix algebra and point maps
# ----------------------------------------------------------------------------------------------


def to_3x3(matrix: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 3)`` affine -> ``(B, 3, 3)`` by appending ``[0, 0, 1]``; ``(B, 3, 3)`` is returned
    unchanged. Conventions: docs/conventions.md."""
    check_matrices(matrix, None, "matrix", rows=(2, 3))
    if matrix.shape[1] == 3:
        return matrix
    bottom = torch.zeros_like(matrix[:, :1, :])
    bottom[..., 2] = 1.0
    return torch.cat([matrix, bottom], dim=1)


def compose(*matrices: torch.Tensor) -> torch.Tensor:
    """Matrix product in the order given: ``compose(c_H_b, b_H_a) == c_H_b @ b_H_a == c_H_a``.

    Each matrix is ``(B|1, 3, 3)`` or ``(B|1, 2, 3)``; batch 1 broadcasts. Returns ``(B, 3, 3)``.
    Conventions: docs/conventions.md.
    """
    if not matrices:
        raise ValueError("compose needs at least one matrix")
    full = [to_3x3(m) for m in matrices]
    batch = functools.reduce(_broadcast_batch, (m.shape[0] for m in full))
    for i, m in enumerate(full):
        if m.shape[0] not in (1, batch):
            raise ValueError(f"matrices[{i}] has batch {m.shape[0]}, expected 1 or {batch}")
    return functools.reduce(torch.matmul, full)


def invert(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of each ``(B, 3, 3)`` matrix (``(B, 2, 3)`` affine accepted), ``(B, 3, 3)``.

    Closed-form adjugate / determinant: differentiable, batched, no host sync and no cuSOLVER call.
    Singular matrices give non-finite entries. Conventions: docs/conventions.md.
    """
    m = to_3x3(matrix)
    if not m.is_floating_point():
        raise TypeError(f"matrix must be floating-point, got {m.dtype}")
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    # Cofactors of the first column give the determinant; the transpose of the cofactor matrix is
    # the adjugate.
    co_a = e * i - f * h
    co_b = f * g - d * i
    co_c = d * h - e * g
    det = a * co_a + b * co_b + c * co_c
    adj = torch.stack(
        [
            co_a, c * h - b * i, b * f - c * e,
            co_b, a * i - c * g, c * d - a * f,
            co_c, b * g - a * h, a * e - b * d,
        ],
        dim=-1,
    )  # fmt: skip
    return (adj / det.unsqueeze(-1)).reshape(-1, 3, 3)


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map ``points`` ``(B|1, N, 2)`` by ``matrix`` ``(B|1, 3, 3)`` or ``(B|1, 2, 3)``; returns ``(B, N, 2)``.

    Projective matrices divide by the homogeneous coordinate; a coordinate closer to 0 than 1e-12 is
    replaced by +-1e-12 (sign kept) so points at infinity come out finite but far away.
    Conventions: docs/conventions.md.
    """
    check_matrices(matrix, None, "matrix", rows=(2, 3))
    check_points(points, "points")
    if matrix.shape[0] not in (1, points.shape[0]) and points.shape[0] != 1:
        raise ValueError(f"matrix has batch {matrix.shape[0]}, points have batch {points.shape[0]}")
    linear = matrix[:, :2, :2]
    offset = matrix[:, :2, 2].unsqueeze(1)
    mapped = torch.matmul(points, linear.transpose(1, 2)) + offset
    if matrix.shape[1] == 2:
        return mapped
    w = torch.matmul(points, matrix[:, 2:, :2].transpose(1, 2)) + matrix[:, 2:, 2].unsqueeze(1)
    return mapped / _safe_denominator(w)


def _safe_denominator(w: torch.Tensor) -> torch.Tensor:
    """``w`` with magnitudes below eps raised to eps, sign kept (+0 -> +eps, -0 -> -eps).

    Three cheap elementwise ops; the gradient is 1 where ``|w| >= eps`` and 0 elsewhere."""
    return w.abs().clamp_min(_HOMOGENEOUS_EPS).copysign(w)


# ----------------------------------------------------------------------------------------------
# helpers shared with fit.py
# ----------------------------------------------------------------------------------------------


def _normalizing_transform(points: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Hartley normalisation ``(B, 3, 3)``: moves the (weighted) centroid of ``points`` ``(B, N, 2)``
    to the origin and scales so the root-mean-square distance to it is ``sqrt(2)``.

    ``weights`` ``(B, N)`` must already sum to 1 (or be all zero). Coincident points (zero spread)
    get scale 1 instead of a division by zero.
    """
    if weights is None:
        weights = torch.full_like(points[..., 0], 1.0 / points.shape[1])
    centroid = (weights.unsqueeze(-1) * points).sum(dim=1)  # (B, 2)
    sq_dist = ((points - centroid.unsqueeze(1)) ** 2).sum(dim=-1)
    mean_sq = (weights * sq_dist).sum(dim=1)
    tiny = torch.finfo(points.dtype).tiny
    spread = mean_sq > tiny
    scale = torch.where(spread, torch.sqrt(2.0 / torch.where(spread, mean_sq, torch.ones_like(mean_sq))), 1.0)
    zero = torch.zeros_like(scale)
    return _affine_from_entries(scale, zero, -scale * centroid[:, 0], zero, scale, -scale * centroid[:, 1])


def _invert_normalizing_transform(transform: torch.Tensor) -> torch.Tensor:
    """Exact inverse of a :func:`_normalizing_transform` matrix (scale and shift only)."""
    scale = transform[:, 0, 0]
    zero = torch.zeros_like(scale)
    inv = 1.0 / scale
    return _affine_from_entries(inv, zero, -transform[:, 0, 2] * inv, zero, inv, -transform[:, 1, 2] * inv)


def _broadcast_point_sets(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast two ``(B|1, N, 2)`` point sets to a common batch and floating dtype."""
    if src.shape[1] != dst.shape[1]:
        raise ValueError(
            f"src and dst must have the same number of points, got {src.shape[1]} and {dst.shape[1]}"
        )
    if src.shape[0] != dst.shape[0] and 1 not in (src.shape[0], dst.shape[0]):
        raise ValueError(f"src has batch {src.shape[0]}, dst has batch {dst.shape[0]}")
    dtype, _ = _common_dtype_device([src, dst])
    batch = _broadcast_batch(src.shape[0], dst.shape[0])
    src = src.to(dtype).expand(batch, -1, -1)
    dst = dst.to(dtype).expand(batch, -1, -1)
    return src, dst


def _broadcast_batch(a: int, b: int) -> int:
    """Batch size of broadcasting batches ``a`` and ``b`` (1 broadcasts, also against 0)."""
    return b if a == 1 else a


def _check_param_vector(params: torch.Tensor, length: int, name: str) -> None:
    if not isinstance(params, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(params).__name__}")
    if params.dim() != 2 or params.shape[1] != length:
        raise ValueError(f"{name} must have shape (B, {length}), got {tuple(params.shape)}")
    if not params.is_floating_point():
        raise TypeError(f"{name} must be floating-point, got {params.dtype}")


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    """Validate an ``(h, w)`` size of positive ints."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be (h, w), got {size!r}") from err
    if h <= 0 or w <= 0 or (h, w) != tuple(size):
        raise ValueError(f"{name} must be two positive integers (h, w), got {size!r}")
    return h, w
