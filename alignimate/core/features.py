"""Local features on tensors: DoG keypoints, dominant orientations, SIFT-like descriptors and mutual
nearest-neighbour matching with Lowe's ratio test (Lowe 2004). Batched, fixed-shape outputs, any device,
float32/float64; the descriptors are differentiable w.r.t. the images.

Conventions (docs/conventions.md): images ``(B, C, H, W)`` with values in ``[0, 1]`` (the contrast
threshold assumes that range); colour images are reduced to grey by the channel mean. Keypoints are pixel
``(x, y)`` of the full-resolution image, ``(0, 0)`` the centre of the top-left pixel; a keypoint's *scale*
is the Gaussian sigma, in full-resolution pixels, at which it was found. Orientations are radians,
counter-clockwise on screen: a keypoint with orientation ``theta`` sees its dominant gradient pointing
along ``(cos theta, -sin theta)`` in ``(x, y)`` (y points down).

Fixed shapes. Every image gets exactly ``max_keypoints`` slots, sorted by decreasing response; an image
with fewer keypoints is padded with invalid slots (``valid`` False, point ``(0, 0)``, scale and response 0).
Matching returns one candidate per keypoint of the first set plus a validity mask. Nothing loops over
images or keypoints in Python (only over octaves and orientation bins), and nothing waits for the device
except ``torch.topk``. On the CPU, where reading a value costs nothing, orientation, description and
matching skip the trailing invalid slots (natural photos leave many empty: docs/benchmarks.md, design
measurements).

Scale space. Octave ``o`` is sampled every ``2^o`` full-resolution pixels with a *centred* 2x2 decimation,
so octave pixel ``x_o`` is full-resolution position ``(x_o + 0.5) 2^o - 0.5`` (the ``"centered"`` map of
:func:`alignimate.core.pyramid_level_matrix`). That map commutes with flips and ``torch.rot90``, and so
does every other step: in float64 the keypoints of a rotated image are the rotated keypoints to rounding
(in float32, within 1e-3 pixel for 95% of them). The input is assumed to carry a blur of 0.5 pixel (the
camera's) and, unless ``upsample=True``, is not upsampled first (Lowe's "octave -1"), so the smallest
keypoint scale is ``sigma`` (1.6 pixels by default).

Sampling. Orientation and description read each keypoint's neighbourhood with **one** ``grid_sample`` call
for the whole batch: the Gaussian pyramid (one image per octave, blurred to 1.6 octave pixels) is laid out
side by side in a single *atlas* image; each keypoint reads the coarsest octave whose blur does not exceed
its scale (as SIFT reads the Gaussian image of its scale), with its coordinates clamped to that octave's
pixel centres, which replicates the octave's border and keeps neighbouring tiles apart.

Speed (timings of each step: docs/benchmarks.md, design measurements). Fresh memory is the main cost on
CPU, so full-size temporaries are kept few, and ``torch.where``/masked fills on large tensors (much slower
than arithmetic on CPU) are avoided in the hot paths.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core.checks import check_image_batch, check_positive_int
from alignimate.core.coords import normalize_pixel_matrix
from alignimate.core.filters import gaussian_blur2d

__all__ = [
    "DESCRIPTOR_SIZE",
    "Keypoints",
    "describe_keypoints",
    "detect_and_describe",
    "detect_keypoints",
    "keypoint_orientations",
    "match_descriptors",
    "matched_points",
]

DESCRIPTOR_SIZE = 128
"""Length of a :func:`describe_keypoints` descriptor: 4 x 4 cells x 8 orientation bins."""

# Blur the camera is assumed to leave on the input, in pixels (Lowe 2004, section 3.3).
_INPUT_SIGMA = 0.5
# Blur of every octave image of the sampling atlas, in octave pixels (SIFT's base sigma).
_ATLAS_SIGMA = 1.6
# The atlas keeps halving while the next octave's shorter side stays at least this long.
_ATLAS_MIN_SIZE = 8

# Orientation window (Lowe 2004, section 5): a Gaussian of 1.5 x scale, read over a disc of 3 of those
# sigmas, on a grid of 13 x 13 gradient samples 0.75 scale apart; 36 bins of 10 degrees.
_ORI_SAMPLES = 13
_ORI_STEP = 0.75
_ORI_WINDOW_SIGMA = 1.5
_ORI_BINS = 36

# Descriptor window (Lowe 2004, section 6.1; cells 3 x scale wide as in common SIFT implementations):
# 4 x 4 cells, 4 x 4 gradient samples per cell, 8 orientation bins, Gaussian weight of half the window width.
_CELLS = 4
_SAMPLES_PER_CELL = 4
_CELL_WIDTH = 3.0
_DESC_BINS = 8
_DESC_CLIP = 0.2
# Histograms are sums of gradient magnitudes (per sample step, for [0, 1] images) times weights of up to 1:
# a patch with any visible texture has a length well above 1e-3; float32 noise on a flat patch, ~1e-7.
_DESC_NORM_FLOOR = 1e-5


@dataclass(frozen=True, eq=False)
class Keypoints:
    """Fixed-size, padded keypoints of a batch of images, as returned by :func:`detect_keypoints`.

    Attributes:
        points: ``(B, K, 2)`` pixel ``(x, y)`` at full resolution (docs/conventions.md).
        scales: ``(B, K)`` Gaussian sigma of the keypoint in full-resolution pixels.
        responses: ``(B, K)`` detector strength (absolute DoG value), decreasing along ``K``.
        valid: ``(B, K)`` bool; padded slots are False and hold point ``(0, 0)``, scale 0 and response 0.
    """

    points: torch.Tensor
    scales: torch.Tensor
    responses: torch.Tensor
    valid: torch.Tensor

    def __post_init__(self) -> None:
        if self.points.dim() != 3 or self.points.shape[-1] != 2:
            raise ValueError(f"points must have shape (B, K, 2), got {tuple(self.points.shape)}")
        shape = self.points.shape[:2]
        for name in ("scales", "responses", "valid"):
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}")
        if self.valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor, got {self.valid.dtype}")


# ----------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------


def detect_keypoints(
    images: torch.Tensor,
    max_keypoints: int = 512,
    *,
    n_octaves: int = 4,
    scales_per_octave: int = 3,
    sigma: float = 1.6,
    threshold: float = 0.01,
    edge_ratio: float = 10.0,
    border: int = 8,
    upsample: bool = False,
) -> Keypoints:
    """Scale-invariant keypoints: extrema of a difference-of-Gaussians (DoG) scale space, as in SIFT.

    Why DoG rather than multi-scale Harris: the registration engine matches photos whose scales differ, so
    each keypoint needs a *characteristic scale* for its descriptor window. A DoG extremum is a maximum in
    scale as well as in space, so it comes with that scale (and it is refined to a fraction of a scale step);
    Harris corners computed at several scales carry no such choice (Harris-Laplace needs a second, Laplacian
    operator for it). DoG is also the cheaper of the two here: one Gaussian blur per scale, which the scale
    space needs anyway, plus a subtraction, against gradients and three blurred gradient products per scale
    for Harris. Its weakness, strong responses along edges, is removed by Lowe's Hessian test below.

    Per octave (the first at full resolution, each next one halved by a centred 2x2 average of the layer
    at twice the base scale): ``scales_per_octave + 3`` Gaussian images (sigma ``sigma * 2^(i / s)`` in
    octave pixels), their differences, and candidates where ``|DoG|`` is the maximum of its 3x3x3
    neighbourhood (separable max filters; a point next to a stronger extremum of the other sign is
    suppressed too) in the middle ``s`` DoG layers. The best ``max_keypoints`` candidates of each octave
    are refined by one Newton step of a quadratic fit in ``(x, y, scale)`` (offsets clamped to half a
    sample), kept when the refined ``|DoG| >= threshold`` and the spatial Hessian passes
    ``tr^2 / det < (r + 1)^2 / r`` with ``r = edge_ratio``, and the best ``max_keypoints`` of all octaves
    are returned, by decreasing response. Not differentiable (runs under ``torch.no_grad``).

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``; ``C > 1`` is reduced to grey by the channel mean.
        max_keypoints: ``K``, the fixed number of slots per image.
        n_octaves: octaves to search (fewer when the image is too small: an octave's shorter side must
            leave at least 3 pixels inside the border margin).
        scales_per_octave: DoG layers searched per octave (``s``).
        sigma: base scale of the scale space in octave pixels (Lowe's 1.6); the smallest keypoint scale.
            Smaller values find more, less distinctive keypoints (more matches, a lower share of them
            correct on fine texture; docs/benchmarks.md, design measurements).
        threshold: minimum refined ``|DoG|`` (for ``[0, 1]`` images; OpenCV's SIFT uses 0.04 / 3 = 0.013).
        edge_ratio: maximum ratio of principal curvatures (Lowe's ``r``).
        border: keypoints lie at least this many full-resolution pixels (and at least 1 octave pixel) from
            the image edge. Descriptor windows of large keypoints can still reach past the edge; there the
            image is extended by replicating its border.
        upsample: also search an octave at twice the resolution (Lowe's "octave -1", as OpenCV's SIFT does;
            the input is upsampled bilinearly and assumed to carry 1 pixel of blur there), with scales from
            ``sigma / 2``. For small images: on 256 px photos it finds several times as many keypoints
            and correct matches, at several times the detection time (docs/benchmarks.md, design
            measurements).

    Returns:
        :class:`Keypoints`: ``points (B, K, 2)``, ``scales``, ``responses`` and ``valid``, each ``(B, K)``.
    """
    check_image_batch(images)
    check_positive_int(max_keypoints, "max_keypoints")
    check_positive_int(n_octaves, "n_octaves")
    check_positive_int(scales_per_octave, "scales_per_octave")
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative int, got {border!r}")
    for name, value in (("sigma", sigma), ("threshold", threshold), ("edge_ratio", edge_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if sigma <= _INPUT_SIGMA:
        raise ValueError(f"sigma must exceed the assumed input blur {_INPUT_SIGMA}, got {sigma!r}")
    with torch.no_grad():
        return _detect(
            _grey(images),
            max_keypoints,
            n_octaves,
            scales_per_octave,
            sigma,
            threshold,
            edge_ratio,
            border,
            upsample,
        )


def _detect(
    grey: torch.Tensor,
    k: int,
    n_octaves: int,
    s: int,
    sigma: float,
    threshold: float,
    edge_ratio: float,
    border: int,
    upsample: bool = False,
) -> Keypoints:
    batch = grey.shape[0]
    sigmas = [sigma * 2.0 ** (i / s) for i in range(s + 3)]
    first = 0
    input_sigma = _INPUT_SIGMA
    if upsample:
        grey = F.interpolate(grey, scale_factor=2.0, mode="bilinear", align_corners=False)
        first, input_sigma = -1, 2 * _INPUT_SIGMA
    current = gaussian_blur2d(grey, None, math.sqrt(sigma**2 - input_sigma**2))
    base_sigma = sigma
    found: list[tuple[torch.Tensor, ...]] = []
    for octave in range(first, n_octaves):
        h, w = current.shape[-2:]
        margin = max(1, math.ceil(border / 2.0**octave))
        if min(h, w) < 2 * margin + 3:
            break
        # The differences are written straight into one tensor: concatenating the Gaussian layers first
        # would cost an extra copy of the octave (fresh memory is the dominant cost on CPU).
        dog = current.new_empty(batch, s + 2, h, w)
        previous, previous_sigma = current, base_sigma
        for i in range(1, s + 3):
            blurred = gaussian_blur2d(previous, None, math.sqrt(sigmas[i] ** 2 - previous_sigma**2))
            torch.sub(blurred, previous, out=dog[:, i - 1 : i])
            if i == s:
                # Next octave from the layer at twice the base scale; the centred 2x2 average adds 1/4 px^2.
                current = F.avg_pool2d(blurred[..., : h - h % 2, : w - w % 2], 2)
            previous, previous_sigma = blurred, sigmas[i]
        base_sigma = math.sqrt(sigmas[s] ** 2 + 0.25) / 2.0
        found.append(_octave_keypoints(dog, k, octave, margin, s, sigma, threshold, edge_ratio))
    if not found:
        zeros = grey.new_zeros(batch, k)
        return Keypoints(grey.new_zeros(batch, k, 2), zeros, zeros.clone(), zeros.bool())
    points, scales, responses = (torch.cat(parts, dim=1) for parts in zip(*found, strict=True))
    if responses.shape[1] < k:
        pad = k - responses.shape[1]
        points = F.pad(points, (0, 0, 0, pad))
        scales, responses = F.pad(scales, (0, pad)), F.pad(responses, (0, pad))
    # Invalid candidates carry response 0, valid ones >= threshold > 0.
    responses, order = torch.topk(responses, k, dim=1)
    valid = responses > 0
    points = torch.gather(points, 1, order.unsqueeze(-1).expand(-1, -1, 2))
    scales = torch.gather(scales, 1, order)
    return Keypoints(points * valid.unsqueeze(-1), scales * valid, responses, valid)


# Flat offsets (layer, row, column) of the 19 DoG samples used by the quadratic fit: the centre, its six
# face neighbours and the twelve edge neighbours needed for the mixed second derivatives.
_FIT_OFFSETS = (
    (0, 0, 0),
    (0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0),
    (0, 1, 1), (0, 1, -1), (0, -1, 1), (0, -1, -1),
    (1, 0, 1), (1, 0, -1), (-1, 0, 1), (-1, 0, -1),
    (1, 1, 0), (1, -1, 0), (-1, 1, 0), (-1, -1, 0),
)  # fmt: skip


def _max3(a: torch.Tensor, dim: int) -> torch.Tensor:
    """Maximum over 3 consecutive entries along ``dim`` (the valid part: the size shrinks by 2)."""
    n = a.shape[dim] - 2
    return torch.maximum(torch.maximum(a.narrow(dim, 0, n), a.narrow(dim, 1, n)), a.narrow(dim, 2, n))


def _octave_keypoints(
    dog: torch.Tensor,
    k: int,
    octave: int,
    margin: int,
    s: int,
    sigma: float,
    threshold: float,
    edge_ratio: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best ``k`` refined DoG extrema of one octave: full-resolution points ``(B, k', 2)``, scales and
    responses ``(B, k')`` (``k' = min(k, candidates)``; response 0 marks a rejected candidate)."""
    h, w = dog.shape[-2:]
    strength = dog.abs()
    # Only the window that can hold candidates (margin inside the edges) and its 1-pixel ring are filtered;
    # a separable 3x3x3 maximum, as max_pool3d is much slower on the CPU (docs/benchmarks.md, design
    # measurements).
    window = strength[..., margin - 1 : h - margin + 1, margin - 1 : w - margin + 1]
    peak = _max3(_max3(_max3(window, 1), 2), 3)
    centre = window[:, 1:-1, 1:-1, 1:-1]
    # Before refinement, half the final threshold (as OpenCV's SIFT does): the fit moves the value a little.
    score = torch.where((centre >= peak) & (centre > 0.5 * threshold), centre, torch.zeros_like(centre))
    hh, ww = score.shape[-2:]
    score, flat = torch.topk(score.flatten(1), min(k, score.shape[1:].numel()), dim=1)
    layer = flat // (hh * ww) + 1
    y = (flat // ww) % hh + margin
    x = flat % ww + margin

    offsets = _constant(
        tuple(dl * h * w + dy * w + dx for dl, dy, dx in _FIT_OFFSETS), torch.long, dog.device
    )
    centre_index = layer * (h * w) + y * w + x
    index = (centre_index.unsqueeze(-1) + offsets).flatten(1)
    v = torch.gather(dog.flatten(1), 1, index).unflatten(1, (-1, len(_FIT_OFFSETS))).unbind(-1)
    c = v[0]
    grad = torch.stack([v[1] - v[2], v[3] - v[4], v[5] - v[6]], dim=-1) * 0.5
    dxx, dyy, dss = v[1] + v[2] - 2 * c, v[3] + v[4] - 2 * c, v[5] + v[6] - 2 * c
    dxy = (v[7] - v[8] - v[9] + v[10]) * 0.25
    dxs = (v[11] - v[12] - v[13] + v[14]) * 0.25
    dys = (v[15] - v[16] - v[17] + v[18]) * 0.25
    step = _newton_step(dxx, dyy, dss, dxy, dxs, dys, grad)
    value = c + 0.5 * (grad * step).sum(-1)

    trace, det = dxx + dyy, dxx * dyy - dxy * dxy
    not_edge = (det > 0) & (trace * trace * edge_ratio < (edge_ratio + 1) ** 2 * det)
    keep = (score > 0) & (value.abs() >= threshold) & not_edge
    factor = 2.0**octave
    xy = torch.stack([x, y], dim=-1).to(dog.dtype) + step[..., :2]
    points = (xy + 0.5) * factor - 0.5
    scales = sigma * factor * torch.exp2((layer.to(dog.dtype) + step[..., 2]) / s)
    responses = torch.where(keep, value.abs(), torch.zeros_like(value))
    return points, scales, responses


def _newton_step(
    dxx: torch.Tensor,
    dyy: torch.Tensor,
    dss: torch.Tensor,
    dxy: torch.Tensor,
    dxs: torch.Tensor,
    dys: torch.Tensor,
    grad: torch.Tensor,
) -> torch.Tensor:
    """``-Hessian^-1 grad`` for symmetric 3x3 Hessians given by their entries, by the adjugate (no solver,
    so no device sync on singular systems); a near-singular Hessian gives 0, the step is clamped to
    ``[-0.5, 0.5]`` per axis (the discrete extremum is the nearest sample)."""
    a00, a01, a02 = dyy * dss - dys * dys, dxs * dys - dxy * dss, dxy * dys - dxs * dyy
    a11, a12 = dxx * dss - dxs * dxs, dxy * dxs - dxx * dys
    a22 = dxx * dyy - dxy * dxy
    det = dxx * a00 + dxy * a01 + dxs * a02
    adjugate = torch.stack(
        [
            torch.stack([a00, a01, a02], -1),
            torch.stack([a01, a11, a12], -1),
            torch.stack([a02, a12, a22], -1),
        ],
        dim=-2,
    )
    scale = torch.stack([dxx.abs(), dyy.abs(), dss.abs()], -1).amax(-1).clamp_min(1e-30) ** 3
    singular = det.abs() <= 1e-9 * scale
    safe_det = torch.where(singular, torch.ones_like(det), det)
    step = -(adjugate @ grad.unsqueeze(-1)).squeeze(-1) / safe_det.unsqueeze(-1)
    step = torch.where(singular.unsqueeze(-1) | ~torch.isfinite(step), torch.zeros_like(step), step)
    return step.clamp(-0.5, 0.5)


# ----------------------------------------------------------------------------------------------------
# Sampling atlas
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Atlas:
    """The Gaussian pyramid (octave ``o`` blurred to ``_ATLAS_SIGMA`` octave pixels) laid out left to right
    in one image ``(B, 1, H, W_atlas)``, with each tile's column offset and size."""

    image: torch.Tensor
    offsets: torch.Tensor  # (O,) first column of each tile
    widths: torch.Tensor  # (O,)
    heights: torch.Tensor  # (O,)

    @property
    def octaves(self) -> int:
        return self.offsets.shape[0]


def _build_atlas(grey: torch.Tensor) -> _Atlas:
    tile = gaussian_blur2d(grey, None, math.sqrt(_ATLAS_SIGMA**2 - _INPUT_SIGMA**2))
    tiles = [tile]
    while min(tiles[-1].shape[-2:]) // 2 >= _ATLAS_MIN_SIZE:
        h, w = tiles[-1].shape[-2:]
        # Blur to 2 x _ATLAS_SIGMA minus the 1/4 px^2 that the centred 2x2 average adds, then average.
        blurred = gaussian_blur2d(tiles[-1], None, math.sqrt(3 * _ATLAS_SIGMA**2 - 0.25))
        tiles.append(F.avg_pool2d(blurred[..., : h - h % 2, : w - w % 2], 2))
    height = grey.shape[-2]
    image = torch.cat([F.pad(t, (0, 0, 0, height - t.shape[-2])) for t in tiles], dim=-1)
    widths = [t.shape[-1] for t in tiles]
    offsets = [sum(widths[:i]) for i in range(len(widths))]
    heights = [t.shape[-2] for t in tiles]
    long = functools.partial(_constant, dtype=torch.long, device=grey.device)
    return _Atlas(image, long(tuple(offsets)), long(tuple(widths)), long(tuple(heights)))


def _sample_patches(
    atlas: _Atlas, keypoints: Keypoints, orientations: torch.Tensor | None, grid: torch.Tensor
) -> torch.Tensor:
    """Sample every keypoint's neighbourhood with one ``grid_sample`` call.

    ``grid (P, 3)`` holds homogeneous sample offsets ``(u, v, 1)`` in units of the keypoint scale, in the
    keypoint's frame: ``u`` along the orientation ``(cos, -sin)``, ``v`` along ``(sin, cos)`` (90 degrees
    clockwise on screen from ``u``, as y is from x in an image). Returns ``(B, K, P)``, differentiable
    w.r.t. the atlas image only.
    """
    image = atlas.image
    with torch.no_grad():
        sampling = _sampling_grid(atlas, keypoints, orientations, grid)
    sampled = F.grid_sample(image, sampling, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.squeeze(1)


def _sampling_grid(
    atlas: _Atlas, keypoints: Keypoints, orientations: torch.Tensor | None, grid: torch.Tensor
) -> torch.Tensor:
    """The ``grid_sample`` grid ``(B, K, P, 2)`` of :func:`_sample_patches`: one ``(2, 3)`` map per keypoint
    from ``(u, v, 1)`` to normalised atlas coordinates, applied by one matmul, then clamped to the pixel
    centres of the keypoint's octave tile (which replicates the tile's border)."""
    image = atlas.image
    dtype = image.dtype
    points = keypoints.points.to(dtype)
    scales = keypoints.scales.to(dtype)
    # The coarsest octave whose blur (_ATLAS_SIGMA octave pixels) does not exceed the keypoint's scale, as in
    # SIFT: samples 0.75 scale apart then fall 1.2 to 2.4 octave pixels apart (choosing the nearest octave
    # on a log axis instead blurs too much and loses matches on fine texture: docs/benchmarks.md, design
    # measurements).
    octave = torch.floor(torch.log2(scales.clamp_min(1e-6) / _ATLAS_SIGMA)).clamp(0, atlas.octaves - 1).long()
    factor = torch.exp2(octave.to(dtype))
    # Pixel -> normalised coordinates of the atlas (docs/conventions.md), as x' = ax x + bx, y' = ay y + by.
    norm = _normalizer(tuple(image.shape[-2:]), dtype, image.device)
    ax, bx, ay, by = norm[0, 0], norm[0, 2], norm[1, 1], norm[1, 2]
    tile_x = atlas.offsets[octave].to(dtype)
    # Full-resolution pixel x -> octave pixel (x + 0.5) / factor - 0.5 (centred decimation) -> atlas column.
    centre_x = ax * (tile_x + (points[..., 0] + 0.5) / factor - 0.5) + bx
    centre_y = ay * ((points[..., 1] + 0.5) / factor - 0.5) + by
    cos = torch.ones_like(scales) if orientations is None else torch.cos(orientations.to(dtype))
    sin = torch.zeros_like(scales) if orientations is None else torch.sin(orientations.to(dtype))
    step = scales / factor  # one scale unit in octave pixels
    # Full-resolution offset (dx, dy) = u (cos, -sin) + v (sin, cos), in octave pixels times the scale.
    row_x = torch.stack([ax * step * cos, ax * step * sin, centre_x], dim=-1)
    row_y = torch.stack([-ay * step * sin, ay * step * cos, centre_y], dim=-1)
    maps = torch.stack([row_x, row_y], dim=-2)  # (B, K, 2, 3)
    # One plain matmul (a broadcast batched matmul would copy the grid once per keypoint); the grid then
    # reaches grid_sample as a transposed view, which it reads at no extra cost.
    batch, count = scales.shape
    sampling = (maps.reshape(-1, 3) @ grid.to(dtype).t()).view(batch, count, 2, grid.shape[0])
    low = torch.stack([ax * tile_x + bx, torch.zeros_like(tile_x) + by], dim=-1)
    high = torch.stack(
        [ax * (tile_x + atlas.widths[octave] - 1) + bx, ay * (atlas.heights[octave] - 1).to(dtype) + by],
        dim=-1,
    )
    sampling.clamp_(min=low.unsqueeze(-1), max=high.unsqueeze(-1))
    return sampling.transpose(-1, -2)


@functools.lru_cache(maxsize=16)
def _square_grid(count: int, step: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(count^2, 3)`` homogeneous offsets ``(u, v, 1)``: a centred ``count x count`` grid ``step`` apart,
    row-major in ``v``. Cached: never modify in place."""
    t = (torch.arange(count, dtype=torch.float64) - (count - 1) / 2.0) * step
    v, u = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3).to(dtype=dtype, device=device)


def _patch_gradients(samples: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences inside a ``(count + 2)^2`` patch ``(..., (count + 2)^2)`` -> ``(gu, gv)`` of the
    inner ``count x count`` samples, each ``(..., count^2)`` (in units per sample step)."""
    patch = samples.unflatten(-1, (count + 2, count + 2))
    gu = (patch[..., 1:-1, 2:] - patch[..., 1:-1, :-2]) * 0.5
    gv = (patch[..., 2:, 1:-1] - patch[..., :-2, 1:-1]) * 0.5
    return gu.flatten(-2), gv.flatten(-2)


def _polar(gu: torch.Tensor, gv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude and on-screen counter-clockwise angle ``atan2(-gv, gu)`` in ``[-pi, pi]`` of gradients.

    A tiny offset on ``gu`` (``16 sqrt(tiny)`` of the dtype, whose square is still a normal number) keeps
    the norm and ``atan2`` differentiable with finite derivatives where the gradient is exactly zero (flat
    or border-replicated areas), where they would be 0/0; ``torch.where`` guards cost far more on CPU
    (docs/benchmarks.md, design measurements).
    """
    gu = gu + 16.0 * math.sqrt(torch.finfo(gu.dtype).tiny)
    return torch.hypot(gu, gv), torch.atan2(-gv, gu)


def _orientation_histogram(angle: torch.Tensor, weight: torch.Tensor, bins: int) -> torch.Tensor:
    """Circular histogram ``(N, bins)`` of ``angle`` ``(N, P)`` in ``[-pi, pi]``, bin ``b`` centred on
    ``-pi + 2 pi b / bins``, each sample's ``weight`` split linearly between its two nearest bins."""
    position = (angle + math.pi) * (bins / (2 * math.pi))  # [0, bins]
    lower = torch.floor(position)
    frac = position - lower
    index = lower.long().clamp_(0, bins)  # the clamp only guards against rounding at -pi
    # Two spare bins take position ``bins`` (= bin 0) and its upper neighbour; they are folded back below.
    out = weight.new_zeros(weight.shape[0], bins + 2)
    out.scatter_add_(1, index, weight * (1 - frac)).scatter_add_(1, index + 1, weight * frac)
    return torch.cat([out[:, :2] + out[:, bins:], out[:, 2:bins]], dim=1)


def _check_keypoints(images: torch.Tensor, keypoints: Keypoints) -> None:
    if not isinstance(keypoints, Keypoints):
        raise TypeError(f"keypoints must be Keypoints, got {type(keypoints).__name__}")
    if keypoints.points.shape[0] != images.shape[0]:
        raise ValueError(f"keypoints have batch {keypoints.points.shape[0]}, images have {images.shape[0]}")


# ----------------------------------------------------------------------------------------------------
# Orientation
# ----------------------------------------------------------------------------------------------------


def keypoint_orientations(images: torch.Tensor, keypoints: Keypoints) -> torch.Tensor:
    """Dominant gradient orientation of each keypoint, in radians in ``[-pi, pi]`` (docs/conventions.md:
    counter-clockwise on screen; 0 = gradient pointing along +x, i.e. brighter to the right).

    A 36-bin histogram of gradient orientations over a window of ``13 x 13`` gradient samples 0.75 scale
    apart (read from the pyramid octave of the keypoint's scale, see the module docstring), weighted by
    gradient magnitude and a Gaussian of 1.5 x scale cut at 3 of its sigmas, linearly interpolated between
    bins and smoothed circularly with ``[1, 4, 6, 4, 1] / 16``; its highest bin is refined by a parabola
    through the bin and its neighbours (Lowe 2004, section 5). One orientation per keypoint: SIFT adds a
    keypoint for every secondary peak over 80% of the highest, for which fixed-size outputs have no room.
    Not differentiable (an arg-max); invalid keypoints get 0.

    Args:
        images: ``(B, C, H, W)`` float, the images the keypoints were detected in.
        keypoints: :class:`Keypoints` with ``K`` slots.

    Returns:
        ``(B, K)`` angles in the images' dtype.
    """
    check_image_batch(images)
    _check_keypoints(images, keypoints)
    with torch.no_grad():
        return _orientations(_build_atlas(_grey(images)), keypoints)


def _orientations(atlas: _Atlas, keypoints: Keypoints) -> torch.Tensor:
    active = _active_slots(keypoints.valid)
    if active < keypoints.valid.shape[1]:
        return _pad_slots(_orientations(atlas, _first_slots(keypoints, active)), keypoints.valid.shape[1])
    image = atlas.image
    grid = _square_grid(_ORI_SAMPLES + 2, _ORI_STEP, image.dtype, image.device)
    samples = _sample_patches(atlas, keypoints, None, grid)  # (B, K, P)
    batch, count = samples.shape[:2]
    gu, gv = _patch_gradients(samples.flatten(0, 1), _ORI_SAMPLES)
    magnitude, angle = _polar(gu, gv)
    weight = magnitude * _orientation_window(image.dtype, image.device)
    histogram = _orientation_histogram(angle, weight, _ORI_BINS)
    # Circular [1, 4, 6, 4, 1] / 16 smoothing.
    rolled = [torch.roll(histogram, shift, dims=1) for shift in (-2, -1, 1, 2)]
    histogram = (rolled[0] + rolled[3] + 4 * (rolled[1] + rolled[2]) + 6 * histogram) / 16
    peak = histogram.argmax(dim=1, keepdim=True)
    left = torch.gather(histogram, 1, (peak - 1).remainder(_ORI_BINS)).squeeze(1)
    right = torch.gather(histogram, 1, (peak + 1).remainder(_ORI_BINS)).squeeze(1)
    middle = torch.gather(histogram, 1, peak).squeeze(1)
    # Vertex of the parabola through the three bins; a flat top (no curvature) keeps the bin centre.
    curvature = left - 2 * middle + right
    safe = torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
    shift = torch.where(curvature < 0, 0.5 * (left - right) / safe, torch.zeros_like(curvature))
    # Bin 0 is centred on -pi: the angle is -pi + (peak + shift) * bin width, wrapped into (-pi, pi].
    angle = (peak.squeeze(1).to(image.dtype) + shift) * (2 * math.pi / _ORI_BINS)
    angle = math.pi - torch.remainder(-angle, 2 * math.pi)
    return angle.view(batch, count) * keypoints.valid


@functools.lru_cache(maxsize=16)
def _orientation_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Gaussian weights ``(P,)`` of the inner orientation samples, zero outside the disc of 3 sigmas."""
    offsets = _square_grid(_ORI_SAMPLES, _ORI_STEP, torch.float64, torch.device("cpu"))
    radius2 = offsets[:, :2].square().sum(-1)
    sigma2 = _ORI_WINDOW_SIGMA**2
    weight = torch.exp(-radius2 / (2 * sigma2)) * (radius2 <= 9 * sigma2)
    return weight.to(dtype=dtype, device=device)


# ----------------------------------------------------------------------------------------------------
# Description
# ----------------------------------------------------------------------------------------------------


def describe_keypoints(
    images: torch.Tensor, keypoints: Keypoints, orientations: torch.Tensor
) -> torch.Tensor:
    """SIFT-like descriptors ``(B, K, 128)``, differentiable w.r.t. ``images``.

    Each keypoint's window, rotated by its orientation and ``4 x 3 = 12`` scales wide, is sampled on a
    ``16 x 16`` grid (one ``grid_sample`` call for the batch, from the pyramid octave of the scale);
    gradients are central differences between samples, expressed in the keypoint's frame. Each gradient
    adds its magnitude, times a Gaussian of half the window width, to a ``4 x 4`` grid of cells x 8
    orientation bins with trilinear interpolation (bilinear between the nearest cell centres, linear
    between the two nearest orientation bins). The 128 values (row-major cells, then bins) are normalised
    to unit length, clipped at 0.2 and renormalised (Lowe 2004, section 6.1). Invalid keypoints give zero
    descriptors; so do, nearly, flat patches: a histogram shorter than 1e-5 (float32 rounding noise, where
    a visibly textured patch gives more than 1e-3) is scaled by 1e5 rather than blown up to unit length.

    The descriptor is continuous and piecewise smooth in the image (no arg-max; the orientation bins
    are piecewise linear in the gradient angle), so ``torch.autograd`` gives its gradient w.r.t.
    ``images``; ``keypoints`` and ``orientations`` are treated as constants.

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]`` (grey by channel mean).
        keypoints: :class:`Keypoints` with ``K`` slots.
        orientations: ``(B, K)`` radians, e.g. from :func:`keypoint_orientations`.

    Returns:
        ``(B, K, 128)`` in the images' dtype; rows of unit length (shorter for flat patches, zero for
        invalid slots).
    """
    check_image_batch(images)
    _check_keypoints(images, keypoints)
    if orientations.shape != keypoints.valid.shape:
        raise ValueError(
            f"orientations must have shape {tuple(keypoints.valid.shape)}, got {tuple(orientations.shape)}"
        )
    return _describe(_build_atlas(_grey(images)), keypoints, orientations.detach())


def _describe(atlas: _Atlas, keypoints: Keypoints, orientations: torch.Tensor) -> torch.Tensor:
    active = _active_slots(keypoints.valid)
    if active < keypoints.valid.shape[1]:
        described = _describe(atlas, _first_slots(keypoints, active), orientations[:, :active])
        return _pad_slots(described, keypoints.valid.shape[1])
    image = atlas.image
    side = _CELLS * _SAMPLES_PER_CELL
    grid = _square_grid(side + 2, _CELL_WIDTH / _SAMPLES_PER_CELL, image.dtype, image.device)
    samples = _sample_patches(atlas, keypoints, orientations, grid)  # (B, K, P)
    batch, count = samples.shape[:2]
    gu, gv = _patch_gradients(samples.flatten(0, 1), side)
    magnitude, angle = _polar(gu, gv)
    spatial, window = _descriptor_weights(image.dtype, image.device)
    weight = magnitude * window
    # Orientation bin b is centred on -pi + b pi / 4; position 8 is bin 0 again, folded back below. One
    # (N, 256) pass and matmul per bin: a dense (N, 256, 8) one-hot tensor or a scatter costs more on CPU.
    position = (angle + math.pi) * (_DESC_BINS / (2 * math.pi))  # [0, 8]
    per_bin = [((1 - (position - b).abs()).clamp_min(0) * weight) @ spatial for b in range(_DESC_BINS + 1)]
    histogram = torch.stack(per_bin, dim=-1)  # (N, 16 cells, 9)
    histogram = torch.cat([histogram[..., :1] + histogram[..., -1:], histogram[..., 1:-1]], dim=-1)
    descriptor = histogram.reshape(batch, count, DESCRIPTOR_SIZE)
    descriptor = _clip_normalize(descriptor)
    return descriptor * keypoints.valid.unsqueeze(-1).to(descriptor.dtype)


@functools.lru_cache(maxsize=16)
def _descriptor_weights(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial binning ``(256, 16)`` of the ``16 x 16`` samples (row-major in ``v``) into the ``4 x 4``
    cells (row-major), bilinear between cell centres, and the samples' Gaussian window ``(256,)`` (sigma:
    half the window width). Cached: never modify in place."""
    side = _CELLS * _SAMPLES_PER_CELL
    # Sample i's position in cell units, cell centres at 0 .. _CELLS - 1.
    position = (torch.arange(side, dtype=torch.float64) + 0.5) / _SAMPLES_PER_CELL - 0.5
    along = (1 - (position.unsqueeze(1) - torch.arange(_CELLS, dtype=torch.float64)).abs()).clamp_min(0)
    spatial = torch.einsum("ic,jd->ijcd", along, along).reshape(side * side, _CELLS * _CELLS)
    centred = position - (_CELLS - 1) / 2.0
    sigma = _CELLS / 2.0  # half the window width, in cells
    gauss = torch.exp(-centred.square() / (2 * sigma**2))
    window = (gauss.unsqueeze(1) * gauss.unsqueeze(0)).reshape(-1)
    return spatial.to(dtype=dtype, device=device), window.to(dtype=dtype, device=device)


def _clip_normalize(histogram: torch.Tensor) -> torch.Tensor:
    """Lowe's normalisation of ``(..., 128)`` histograms: unit length, entries clipped at 0.2, unit length
    again. Histograms shorter than ``_DESC_NORM_FLOOR`` are scaled by ``1 / _DESC_NORM_FLOOR`` instead of
    being blown up to unit length, so that (numerically) flat patches, whose float32 rounding noise alone
    would otherwise make a random unit descriptor, stay near zero; the result is continuous throughout."""
    unit = histogram / torch.linalg.vector_norm(histogram, dim=-1, keepdim=True).clamp_min(_DESC_NORM_FLOOR)
    clipped = unit.clamp_max(_DESC_CLIP)
    # Renormalise to the length ``unit`` had (1 unless the floor applied); clipping cannot empty a vector.
    length = torch.linalg.vector_norm(unit, dim=-1, keepdim=True)
    clipped_length = torch.linalg.vector_norm(clipped, dim=-1, keepdim=True)
    return clipped * (length / clipped_length.clamp_min(torch.finfo(histogram.dtype).tiny))


def detect_and_describe(
    images: torch.Tensor, max_keypoints: int = 512, **detector_options: Any
) -> tuple[Keypoints, torch.Tensor, torch.Tensor]:
    """:func:`detect_keypoints`, :func:`keypoint_orientations` and :func:`describe_keypoints` in one call,
    which builds the sampling pyramid once for both (same results as the three calls).

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``.
        max_keypoints: ``K``.
        **detector_options: keyword arguments of :func:`detect_keypoints`.

    Returns:
        ``keypoints`` (:class:`Keypoints`, ``K`` slots), ``orientations (B, K)`` and
        ``descriptors (B, K, 128)`` (differentiable w.r.t. ``images``).
    """
    keypoints = detect_keypoints(images, max_keypoints, **detector_options)
    atlas = _build_atlas(_grey(images))
    with torch.no_grad():
        orientations = _orientations(_detached(atlas), keypoints)
    return keypoints, orientations, _describe(atlas, keypoints, orientations)


def _detached(atlas: _Atlas) -> _Atlas:
    return _Atlas(atlas.image.detach(), atlas.offsets, atlas.widths, atlas.heights)


# ----------------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------------


def match_descriptors(
    desc1: torch.Tensor,
    desc2: torch.Tensor,
    valid1: torch.Tensor | None = None,
    valid2: torch.Tensor | None = None,
    ratio: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours (Euclidean, ``torch.cdist``) that pass Lowe's ratio test.

    Keypoint ``i`` of the first set matches ``j = argmin_j' |d1_i - d2_j'|`` when ``i`` is in turn the
    nearest neighbour of ``j`` among the first set, and the distance to ``j`` is below ``ratio`` times the
    distance to the second-nearest valid descriptor of the second set (no second one: the test passes).
    Invalid descriptors take part in neither direction.

    Args:
        desc1: ``(B, K1, D)`` float.
        desc2: ``(B, K2, D)`` float, same dtype.
        valid1, valid2: ``(B, K1)`` / ``(B, K2)`` bool, default all True.
        ratio: in ``(0, 1]``; 1 only rejects ties between the two nearest.

    Returns:
        ``matches (B, K1, 2)`` long ``[i, j]`` (row ``i`` of the output is keypoint ``i``), and
        ``match_valid (B, K1)`` bool.
    """
    if desc1.dim() != 3 or desc2.dim() != 3 or desc1.shape[::2] != desc2.shape[::2]:
        raise ValueError(
            f"desc1 and desc2 must have shapes (B, K1, D) and (B, K2, D), got {tuple(desc1.shape)} and "
            f"{tuple(desc2.shape)}"
        )
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    batch, k1, k2 = desc1.shape[0], desc1.shape[1], desc2.shape[1]
    valid1 = _valid_mask(valid1, (batch, k1), desc1.device, "valid1")
    valid2 = _valid_mask(valid2, (batch, k2), desc2.device, "valid2")
    rows = torch.arange(k1, device=desc1.device).expand(batch, k1)
    if k1 == 0 or k2 == 0:
        return torch.stack([rows, torch.zeros_like(rows)], dim=-1), torch.zeros_like(valid1)
    active1, active2 = _active_slots(valid1), _active_slots(valid2)
    with torch.no_grad():
        best, match_valid = _mutual_ratio_matches(
            desc1[:, :active1], desc2[:, :active2], valid1[:, :active1], valid2[:, :active2], ratio
        )
    best, match_valid = _pad_slots(best, k1), _pad_slots(match_valid, k1)
    return torch.stack([rows, best], dim=-1), match_valid


def _mutual_ratio_matches(
    desc1: torch.Tensor, desc2: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor, ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest column ``(B, K1)`` of every row and whether it is a valid, mutual, ratio-passing match."""
    distance = torch.cdist(desc1, desc2)
    # Invalid rows and columns are moved to infinity by adding broadcast penalties (a masked fill of the
    # whole matrix is much slower on CPU: docs/benchmarks.md, design measurements).
    penalty1 = torch.where(valid1, 0.0, math.inf).to(distance.dtype).unsqueeze(2)
    penalty2 = torch.where(valid2, 0.0, math.inf).to(distance.dtype).unsqueeze(1)
    distance = distance + penalty1 + penalty2
    if distance.shape[2] == 1:
        distance = F.pad(distance, (0, 1), value=math.inf)
    nearest, index = torch.topk(distance, 2, dim=2, largest=False)
    best = index[..., 0]
    backward = distance.argmin(dim=1)  # (B, K2 [+1]): the nearest row of every column
    rows = torch.arange(desc1.shape[1], device=desc1.device)
    mutual = torch.gather(backward, 1, best) == rows
    passes = nearest[..., 0] < ratio * nearest[..., 1]
    return best, valid1 & torch.isfinite(nearest[..., 0]) & mutual & passes


def _valid_mask(
    mask: torch.Tensor | None, shape: tuple[int, int], device: torch.device, name: str
) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
    return mask.to(torch.bool)


def matched_points(
    keypoints1: Keypoints, keypoints2: Keypoints, matches: torch.Tensor, match_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Correspondences ready for the weighted fits of :mod:`alignimate.core.fit` (e.g. inside RANSAC).

    Args:
        keypoints1, keypoints2: the keypoints whose descriptors were matched (first / second set).
        matches: ``(B, M, 2)`` long ``[i, j]`` from :func:`match_descriptors`.
        match_valid: ``(B, M)`` bool.

    Returns:
        ``src_points (B, M, 2)`` (from ``keypoints1``), ``dst_points (B, M, 2)`` (from ``keypoints2``) and
        ``weights (B, M)``: 1.0 for valid matches, 0.0 otherwise (the points of invalid rows are arbitrary
        keypoints and must be ignored), in the points' dtype.
    """
    if matches.dim() != 3 or matches.shape[-1] != 2 or matches.shape[:2] != match_valid.shape:
        raise ValueError(
            f"matches must be (B, M, 2) and match_valid (B, M), got {tuple(matches.shape)} and "
            f"{tuple(match_valid.shape)}"
        )
    src = torch.gather(keypoints1.points, 1, matches[..., :1].expand(-1, -1, 2))
    dst = torch.gather(keypoints2.points, 1, matches[..., 1:].expand(-1, -1, 2))
    return src, dst, match_valid.to(src.dtype)


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _active_slots(valid: torch.Tensor) -> int:
    """How many leading slots orientation, description and matching must compute: all of them on an
    accelerator (counting would synchronise with it); on the CPU, where reading a value is free, those up
    to the last valid one, at least 1 (so that descriptors stay connected to the autograd graph). Detected
    keypoints are sorted valid first, and natural images leave many slots empty (docs/benchmarks.md,
    design measurements)."""
    count = valid.shape[1]
    if valid.device.type != "cpu" or valid.numel() == 0:
        return count
    last = int((valid * torch.arange(1, count + 1)).amax())
    return max(last, 1)


def _first_slots(keypoints: Keypoints, count: int) -> Keypoints:
    return Keypoints(
        keypoints.points[:, :count],
        keypoints.scales[:, :count],
        keypoints.responses[:, :count],
        keypoints.valid[:, :count],
    )


def _pad_slots(x: torch.Tensor, count: int) -> torch.Tensor:
    """Zero-pad dimension 1 of ``(B, k, ...)`` to ``count``."""
    pad = [0, 0] * (x.dim() - 2) + [0, count - x.shape[1]]
    return F.pad(x, pad)


# Small constants are cached per device: building them from Python values on an accelerator would be a
# blocking host-to-device copy on every call.
@functools.lru_cache(maxsize=128)
def _constant(values: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached: never modify in place."""
    return torch.tensor(values, dtype=dtype).to(device)


@functools.lru_cache(maxsize=32)
def _normalizer(size: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached :func:`alignimate.core.coords.normalize_pixel_matrix`: never modify in place."""
    return normalize_pixel_matrix(size, dtype=dtype, device=device)


def _grey(images: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 1 else images.mean(dim=1, keepdim=True)
