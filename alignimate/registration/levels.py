"""Grey, frame-aware image pyramids for the registration engine.

Each level is a grey image ``(B, 1, h, w)`` together with ``frame_H_pixel (3, 3)``, the map from
that level's pixels to the image's frame (see :mod:`alignimate.registration.frames`). The frame is
always that of the full-resolution image, so the same frame model ``T`` is valid at every level,
whatever the decimation does at odd sizes.

Levels come from :func:`alignimate.core.pyramid.pyrdown` in its ``"centered"`` mode, and each
level's frame map is built from :func:`~alignimate.core.pyramid.pyramid_level_matrix`, so nothing
here depends on how the decimation treats odd sizes. The finest level is lightly smoothed
(``[1, 2, 1] / 4``): it halves the pixel noise in the fixed image's gradients, as the 5x5 blur of
OpenCV's ECC does, which made convergence steadier on noisy photos at no cost in accuracy.

Masked images use normalised convolution (Knutsson & Westin): every blur, the smoothing and each
pyramid step, is ``blur(image * mask) / blur(mask)`` with the mask blurred alongside, so pixels
outside the mask contribute nothing to the values inside it, and a level's mask is the fraction of
valid pixels under each of its pixels (a confidence in ``[0, 1]``). Pixels whose confidence is below
``MIN_CONFIDENCE`` are outside the level's mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from alignimate.core.color import rgb_to_grayscale
from alignimate.core.coords import normalize_pixel_matrix
from alignimate.core.filters import filter2d_separable
from alignimate.core.pyramid import pyramid_level_matrix, pyrdown

from .frames import frame_from_pixels

__all__ = ["Level", "build_levels", "grey", "level_count", "normalised_blur", "smooth"]

# The coarsest level keeps at least this many pixels on its shorter side: below ~24 px there is
# too little structure left for a reliable gradient step.
MIN_LEVEL_SIZE = 24
_SMOOTH_FINEST = True
# A level pixel counts as valid when at least this fraction of what it was averaged from is valid:
# below it the normalised value rests on a few pixels at the edge of the mask.
MIN_CONFIDENCE = 0.5


@dataclass
class Level:
    """One pyramid level: ``image (B, 1, h, w)`` (grey), optional ``mask (B, 1, h, w)`` and
    ``frame_H_pixel (3, 3)``, a float64 CPU tensor (level pixels -> the full-resolution image's
    frame; kept on the CPU so reading it never synchronises with the device)."""

    image: torch.Tensor
    mask: torch.Tensor | None
    frame_H_pixel: torch.Tensor  # noqa: N815 (matrix naming convention, docs/conventions.md)
    _norm_H_frame: torch.Tensor | None = field(default=None, repr=False)  # noqa: N815
    _source: torch.Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    @property
    def pixels_per_unit(self) -> float:
        """Level pixels per frame unit."""
        return 1.0 / float(self.frame_H_pixel[0, 0])

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half width and half height of the level's image area in frame units."""
        h, w = self.size
        return 0.5 * w / self.pixels_per_unit, 0.5 * h / self.pixels_per_unit

    def norm_H_frame(self) -> torch.Tensor:
        """``(3, 3)`` map from the frame to ``grid_sample``'s normalised coordinates, in the image's
        dtype and device (computed once)."""
        if self._norm_H_frame is None:
            n = normalize_pixel_matrix(self.size, dtype=torch.float64)
            m = n @ torch.linalg.inv(self.frame_H_pixel)
            self._norm_H_frame = m.to(dtype=self.image.dtype, device=self.image.device)
        return self._norm_H_frame

    def sampling_source(self) -> torch.Tensor:
        """What interpolation reads, computed once: the image ``(B, C, h, w)``, or with a mask the
        premultiplied image and the mask, ``(B, C + 1, h, w)`` (normalised interpolation samples
        both; the solvers sample a level every iteration, and rebuilding it each time was a large
        share of the finest level's cost: docs/benchmarks.md, issue #13 section)."""
        if self._source is None:
            image = self.image
            self._source = image if self.mask is None else torch.cat([image * self.mask, self.mask], dim=1)
        return self._source

    def rows(self, index: torch.Tensor | slice) -> Level:
        """The images ``index`` of the batch (with their sampling source, if built)."""
        mask = None if self.mask is None else self.mask[index]
        source = None if self._source is None else self._source[index]
        return Level(self.image[index], mask, self.frame_H_pixel, self._norm_H_frame, source)

    def with_images(self, image: torch.Tensor, mask: torch.Tensor | None) -> Level:
        """The same level geometry for other images (a subset of the batch, say)."""
        return Level(image, mask, self.frame_H_pixel, self._norm_H_frame)

    def frame_coords(self) -> torch.Tensor:
        """Frame coordinates ``(h * w, 2)`` of the level's pixel centres (row-major), in the image dtype."""
        h, w = self.size
        dtype, device = self.image.dtype, self.image.device
        (a, _, c), (_, e, f) = self.frame_H_pixel[:2].tolist()
        xs = torch.arange(w, dtype=dtype, device=device) * a + c
        ys = torch.arange(h, dtype=dtype, device=device) * e + f
        v, u = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def grey(images: torch.Tensor) -> torch.Tensor:
    """Grey ``(B, 1, H, W)`` of ``(B, C, H, W)`` images: BT.601 luma for RGB(A), the channel mean
    otherwise."""
    if images.shape[1] in (3, 4):
        return rgb_to_grayscale(images)
    if images.shape[1] == 1:
        return images
    return images.mean(dim=1, keepdim=True)


def level_count(size: tuple[int, int], min_size: int = MIN_LEVEL_SIZE) -> int:
    """Number of levels (at least 1) so that the coarsest one's shorter side stays ``>= min_size``."""
    shorter = min(size)
    return max(1, math.floor(math.log2(max(shorter, 1) / min_size)) + 1)


def smooth(images: torch.Tensor) -> torch.Tensor:
    """Separable ``[1, 2, 1] / 4`` blur with replicated borders (keeps pixel centres)."""
    taps = images.new_tensor([0.25, 0.5, 0.25])
    return filter2d_separable(images, taps, taps, border_type="replicate")


def normalised_blur(
    blur, images: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``blur`` applied by normalised convolution: values from valid pixels only, and the blurred
    mask as the new confidence (zeroed below ``MIN_CONFIDENCE``)."""
    if mask is None:
        return blur(images), None
    confidence = blur(mask)
    values = blur(images * mask) / confidence.clamp(min=1e-6)
    valid = confidence >= MIN_CONFIDENCE
    return torch.where(valid, values, torch.zeros_like(values)), torch.where(
        valid, confidence, torch.zeros_like(confidence)
    )


def _pyrdown(images: torch.Tensor) -> torch.Tensor:
    return pyrdown(images, border_type="replicate", mode="centered")


def build_levels(images: torch.Tensor, mask: torch.Tensor | None, count: int) -> list[Level]:
    """``count`` levels, finest first, of ``images (B, C, h, w)`` (and their mask ``(B, 1, h, w)``),
    each with its map to the images' frame; masked images by normalised convolution."""
    if _SMOOTH_FINEST:
        images, mask = normalised_blur(smooth, images, mask)
    finest = frame_from_pixels((int(images.shape[-2]), int(images.shape[-1])))
    levels = [Level(images, mask, finest)]
    for k in range(1, count):
        previous = levels[-1]
        image, level_mask = normalised_blur(_pyrdown, previous.image, previous.mask)
        # frame_H_level_k = frame_H_level_0 @ level_0_H_level_k, from the pyramid's own pixel map.
        levels.append(
            Level(image, level_mask, finest @ torch.linalg.inv(pyramid_level_matrix(k, "centered")))
        )
    return levels
