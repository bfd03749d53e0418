"""Where the engine looks: selected fixed-image pixels and the moving image sampled at them.

The solvers compare the images only at a set of fixed-image pixels. On large levels that set is
the pixel with the strongest gradient in each small block (so every part of the image contributes,
not just its sharpest edges): with inverse-compositional Gauss-Newton the Jacobian depends on the
fixed image only, and low-gradient pixels carry little information about the motion, so the sparse
set costs little accuracy and bounds each iteration's cost whatever the image size.

Images may have several channels (e.g. one heatmap per keypoint): every channel is sampled at the
same ``M`` positions, and per-sample values are laid out channel-major, ``(B, C * M)``, so the
solvers see ``C * M`` samples and the loss is summed over the channels.

Masks: a fixed sample's weight is its mask confidence times the lowest confidence of its
neighbours, so no gradient is taken across a mask border; the moving image is sampled by
normalised interpolation (``sample(image * mask) / sample(mask)``), so pixels outside its mask
never leak into the values compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from alignimate.core.morphology import min_filter2d

from .levels import MIN_CONFIDENCE, Level

__all__ = ["FixedSamples", "corner_points", "products", "sample_fixed", "sample_moving", "tile_channels"]


@dataclass
class FixedSamples:
    """Fixed-image samples (``Bf`` is 1 for a shared reference): homogeneous frame coordinates
    ``coords (Bf, 3, M)`` (rows u, v, 1) of the ``M`` positions; ``intensity`` and frame-unit
    gradients ``grad_u``/``grad_v``, each ``(Bf, C * M)`` channel-major; ``weight`` ``(Bf, M)`` (the
    fixed mask's confidence where gradients are valid, ``None`` without a mask); the level's
    ``pixels_per_unit``, ``corners (4, 3)`` (homogeneous frame coordinates of its corner pixels),
    ``channels`` ``C`` and ``grid`` ``(gh, gw)``: the ``M`` positions lie on a regular grid of that
    shape, in row-major order (every pixel, or one per block), so per-sample values can be seen as
    images (:func:`~.robust.reject_near_outlier_blobs`)."""

    coords: torch.Tensor
    intensity: torch.Tensor
    grad_u: torch.Tensor
    grad_v: torch.Tensor
    weight: torch.Tensor | None
    pixels_per_unit: float
    corners: torch.Tensor
    channels: int
    grid: tuple[int, int]


def _gradients(image: torch.Tensor, pixels_per_unit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences ``(B, 1, h, w)`` per frame unit (replicated borders)."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    half = 0.5 * pixels_per_unit
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * half
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * half
    return gx, gy


def _block_maxima(score: torch.Tensor, block: int) -> torch.Tensor:
    """Flat indices ``(B, M)`` of the highest-scoring pixel of every ``block x block`` block of
    ``score (B, 1, h, w)`` (incomplete blocks at the bottom/right edge are left out; of equal
    scores the first in row-major order). Max pooling with indices: an argmax over a permuted copy
    of the blocks cost several times more."""
    _, index = F.max_pool2d(score, kernel_size=block, stride=block, return_indices=True)
    return index.flatten(1)


def sample_fixed(level: Level, max_pixels: int | None) -> FixedSamples:
    """Samples of a fixed level: every pixel, or, when the level has more than ``max_pixels``, the
    pixel with the strongest gradient in each block of ``b x b`` pixels (``b`` the smallest block
    size that gives at most ``max_pixels``): spread evenly over the image, on its edges."""
    image = level.image
    batch, channels = image.shape[:2]
    ppu = level.pixels_per_unit
    gx, gy = _gradients(image, ppu)
    uv = level.frame_coords().T.unsqueeze(0)  # (1, 2, N)
    planes = [t.flatten(2) for t in (image, gx, gy)]  # (B, C, N) each
    mask = None if level.mask is None else _gradient_support(level.mask)
    weight = None if mask is None else mask.flatten(1)
    n = planes[0].shape[2]
    grid = level.size
    if max_pixels is not None and n > max_pixels:
        block = math.ceil(math.sqrt(n / max_pixels))
        energy = (gx * gx + gy * gy).sum(dim=1, keepdim=True)
        index = _block_maxima(energy if mask is None else energy * mask, block)  # (B, M)
        grid = (level.size[0] // block, level.size[1] // block)  # max pooling's output, row-major
        planes = [t.gather(2, index.unsqueeze(1).expand(-1, channels, -1)) for t in planes]
        weight = None if weight is None else weight.gather(1, index)
        uv = uv.expand(index.shape[0], -1, -1).gather(2, index.unsqueeze(1).expand(-1, 2, -1))
    coords = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=1)
    flat = [t.reshape(batch, -1) for t in planes]
    return FixedSamples(coords, flat[0], flat[1], flat[2], weight, ppu, corner_points(level), channels, grid)


def _gradient_support(mask: torch.Tensor) -> torch.Tensor:
    """The mask confidence where a central-difference gradient sees only valid pixels: the lowest
    confidence in each pixel's 3 x 3 neighbourhood."""
    return min_filter2d(mask, 3)


def tile_channels(values: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-position values ``(B, M)`` repeated for every channel: ``(B, C * M)``, channel-major."""
    return values if channels == 1 else values.repeat(1, channels)


def corner_points(level: Level) -> torch.Tensor:
    """Homogeneous frame coordinates ``(4, 3)`` of the level image's corner pixel centres."""
    h, w = level.size
    pixel_corners = torch.tensor(
        [[0.0, 0.0, 1.0], [w - 1.0, 0.0, 1.0], [w - 1.0, h - 1.0, 1.0], [0.0, h - 1.0, 1.0]],
        dtype=torch.float64,
    )
    return (pixel_corners @ level.frame_H_pixel.cpu().T).to(
        dtype=level.image.dtype, device=level.image.device
    )


def products(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left (B, R, M)`` times ``right (Bf, K, M)`` transposed -> ``(B, R, K)``; a shared ``right``
    (``Bf == 1``) becomes one matrix product for the whole batch."""
    batch, r, m = left.shape
    if right.shape[0] == 1:
        return (left.reshape(batch * r, m) @ right[0].T).view(batch, r, -1)
    return torch.bmm(left, right.transpose(1, 2))


def sample_moving(
    level: Level, model: torch.Tensor, coords: torch.Tensor, perspective: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample the moving ``level`` at ``model @ coords``.

    ``model (B, 3, 3)`` maps fixed-frame to moving-frame points, ``coords (B|1, 3, M)`` are
    homogeneous fixed-frame points. Returns ``values (B, M)``, ``inside (B, M)`` (bool: the point
    lies inside the moving image; bilinear with replicated edges) and the sampled moving mask
    ``(B, M)`` or ``None``. ``perspective=False`` (affine models) skips the division.
    """
    batch = model.shape[0]
    rows = 3 if perspective else 2
    m = (level.norm_H_frame() @ model)[:, :rows]  # fixed frame -> moving normalised
    mapped = products(m, coords.transpose(1, 2))  # (B, rows, M)
    if perspective:
        z = mapped[:, 2:3]
        front = z[:, 0] > 1e-6
        xy = mapped[:, :2] / torch.where(z > 1e-6, z, torch.ones_like(z))
    else:
        front, xy = None, mapped
    channels = level.image.shape[1]
    source = level.sampling_source().expand(batch, -1, -1, -1)
    # A transposed view is a valid grid: grid_sample reads it through its strides.
    grid = xy.transpose(1, 2).unsqueeze(1)  # (B, 1, M, 2)
    sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)[
        :, :, 0
    ]
    inside = xy.abs().amax(dim=1) <= 1.0
    if front is not None:
        inside = inside & front
    if level.mask is None:
        return sampled.reshape(batch, -1), inside, None
    confidence = sampled[:, channels]
    values = sampled[:, :channels] / confidence.clamp(min=1e-6).unsqueeze(1)
    confidence = torch.where(confidence >= MIN_CONFIDENCE, confidence, torch.zeros_like(confidence))
    return values.reshape(batch, -1), inside, confidence
