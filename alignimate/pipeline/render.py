"""Warping a full-resolution photo into an output frame, with a chosen background.

Backgrounds fill the part of the frame the photo does not cover: ``black``, ``white``, ``blur`` (a
heavily blurred, edge-extended copy of the photo itself, so borders look like out-of-focus
continuation) or ``transparent`` (an alpha channel; written as PNG).

Affine warps of uint8 photos on the CPU with a black, white or transparent background (every frame of
``register`` with the similarity, rigid or affine models) are made by OpenCV's ``warpAffine``
(:mod:`alignimate.io.opencv`): bilinear in floating point, SIMD, on the interleaved pixels, with no
float copy of the photo at all. The background is then filled where the sample falls outside the
photo, exactly as below.

Everything else (homographies, the blurred background, other devices, no usable OpenCV) takes the
warp of :func:`alignimate.core.warp_perspective` (bilinear, zeros outside the photo), run tile by
tile: each output tile converts to float only the band of the photo its samples can touch, so a
12 MP frame never exists as a float image and a tile's working set (a few MB) stays cache-friendly.
Tiles the photo covers completely (all of them with the common crop) take a lean path: no coverage
mask, no background, the rounding offset folded into the source, and a numpy-built sampling grid fed
straight to ``grid_sample``. A pure integer translation (the reference photo) is a plain copy. Both
paths equal warping the whole float photo at once and rounding, up to float rounding (at most one
grey level, on a tiny share of the values: docs/benchmarks.md, design measurements and end to end).

torch (and :mod:`alignimate.core`, which is torch) is imported only when a frame takes the tiled
path or the photo is given as torch planes: the OpenCV path, the copies and the matrix helpers here
work without it, so a job that only makes such frames never pays for importing torch.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from alignimate.io import read_image
from alignimate.io.opencv import opencv

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKGROUNDS",
    "linear_scale",
    "read_for_scale",
    "region_for_frame",
    "render_frame",
    "resize_matrix",
    "translation",
]

BACKGROUNDS = ("black", "white", "blur", "transparent")
# The blurred background is made at 1/BLUR_FACTOR of the output size (a blur this strong loses
# nothing at low resolution, and a 12 MP frame would otherwise cost a very large filter), with a
# Gaussian sigma of its long side / BLUR_DIVISOR. The cut-out's blurred fill uses the same two.
BLUR_FACTOR = 8
BLUR_DIVISOR = 40.0
# Output tile (h, w): large enough that per-tile Python overhead is small, small enough that a tile's
# float band, sampling grid and result (about 5 MB together) stay cache-friendly. Chosen by timing
# other tile sizes on 12 MP frames, none faster (docs/benchmarks.md, design measurements).
_TILE_HW = (128, 1024)
# Extra source pixels kept around a tile's band: float32 sample coordinates may land a hair outside
# the exact band, and a tap there must still read the photo, not the zero padding.
_BAND_MARGIN = 1
# Photos and frames with a side longer than this take the torch path: parts of OpenCV's warp code
# have used 16-bit signed pixel coordinates, and larger sides are not tested there.
_OPENCV_MAX_SIDE = 32767
# Slack (pixels) on the columns whose sample lies inside the photo: a sample exactly on the photo's
# edge counts as inside, whichever way float rounding tips the computed bound.
_EDGE_SLACK = 1e-9


def translation(dx: float, dy: float) -> np.ndarray:
    """3x3 pixel translation matrix."""
    m = np.eye(3)
    m[0, 2], m[1, 2] = dx, dy
    return m


def linear_scale(matrix: np.ndarray) -> float:
    """Linear scale of a (near-)similarity 3x3 matrix: the square root of its 2x2 part's |determinant|."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:2, :2]))))


def resize_matrix(src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """3x3 float64 pixel matrix from an image of size ``src=(h, w)`` to the same image resized to ``dst``:
    ``x' = (x + 0.5) * w' / w - 0.5`` and likewise for ``y`` (pixel centres, docs/conventions.md).

    The values of :func:`alignimate.core.scale_matrix_for_resize` in float64, to the last bit (the
    same arithmetic), computed without torch: ``apply`` needs it for every photo, torch or not. The
    sizes come from decoded images here, so they are not checked again."""
    (h, w), (h2, w2) = src, dst
    sx, sy = w2 / w, h2 / h
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=np.float64)


def read_for_scale(
    path: Path, size_hw: Sequence[int], scale: float, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` (a photo of ``size_hw``) just large enough for a warp that scales it by
    ``scale``: ``margin`` times that resolution, never more than the original (JPEG decodes at 1/2,
    1/4, 1/8 scale almost for free). Returns the ``(h, w, 3)`` uint8 image and ``small_H_photo``
    ``(3, 3)``, the pixel matrix from the photo to the decoded copy."""
    long_side = max(size_hw)
    wanted = min(long_side, max(16, math.ceil(long_side * scale * margin)))
    image = read_image(path, max_side=wanted if wanted < long_side else None)
    return image, resize_matrix(tuple(size_hw), tuple(image.shape[:2]))


def region_for_frame(
    image: np.ndarray, frame_H_image: np.ndarray, out_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` ``(H, W, C)`` that a frame of ``out_size=(h, w)`` shows (plus a 2 px
    margin for the bilinear taps), and ``frame_H_region``: a face fills a small part of a large photo,
    and only that part needs converting to float for the warp."""
    h, w = image.shape[:2]
    oh, ow = out_size
    corners = np.array([[-0.5, -0.5], [ow - 0.5, -0.5], [-0.5, oh - 0.5], [ow - 0.5, oh - 0.5]])
    mapped = np.c_[corners, np.ones(4)] @ np.linalg.inv(frame_H_image).T
    inside = mapped[:, :2] / mapped[:, 2:3]
    x0 = int(np.clip(np.floor(inside[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(inside[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(inside[:, 0].max()) + 3, x0 + 1, w))
    y1 = int(np.clip(np.ceil(inside[:, 1].max()) + 3, y0 + 1, h))
    return image[y0:y1, x0:x1], frame_H_image @ translation(x0, y0)


def render_frame(
    image: np.ndarray | torch.Tensor,
    frame_H_photo: np.ndarray,
    out_size: tuple[int, int],
    *,
    background: str = "black",
    device: torch.device | str = "cpu",
) -> np.ndarray | torch.Tensor:
    """Warp ``image`` with the pixel matrix ``frame_H_photo`` ``(3, 3)`` (maps photo pixels to frame
    pixels, docs/conventions.md) into a frame of ``out_size=(h, w)``.

    ``image`` is a uint8 photo, either a numpy ``(H, W, 3)`` array or ``(3, H, W)`` torch planes (CPU;
    any strides, as :func:`alignimate.io.planes.read_image_planes` returns them); the frame comes
    back in the same layout: ``(h, w, C)`` numpy or ``(C, h, w)`` CPU planes, with C = 3, or 4 for
    ``background="transparent"`` (alpha 255 where the photo covers the frame, 0 elsewhere).
    Bilinear, rounded to the nearest grey level; memory is bounded by one output frame plus one
    tile's working set (with OpenCV: plus a contiguous copy of a strided photo, and a 3-channel frame
    for a transparent one). Thread-safe: several frames may render at once on different threads (see
    :mod:`alignimate.pipeline.frame_writer`).
    """
    _check_arguments(image, frame_H_photo, out_size, background)
    photo = _Photo(image)
    matrix = np.asarray(frame_H_photo, dtype=np.float64)
    if matrix[2, 2] != 0:
        matrix = matrix / matrix[2, 2]  # an affine matrix then has the bottom row [0, 0, 1]
    size = (int(out_size[0]), int(out_size[1]))
    shift = _integer_shift(matrix)
    if shift is not None:
        shifted = _render_shift(photo.pixels, shift, size, background)
        if shifted is not None:
            return photo.finished(shifted)
    if _device_type(device) == "cpu":
        warped = _render_affine_opencv(photo.pixels, matrix, size, background)
        if warped is not None:
            return photo.finished(warped)
    import torch

    frame = _Frame(photo.pixels, matrix, size, background, torch.device(device))
    out = np.empty((*size, 4 if background == "transparent" else 3), np.uint8)
    with torch.inference_mode():
        for y0, y1, x0, x1 in _tiles(size):
            frame.render_tile(y0, y1, x0, x1, out[y0:y1, x0:x1])
    return photo.finished(out)


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------


def _check_arguments(
    image: np.ndarray | torch.Tensor, frame_H_photo: np.ndarray, out_size: tuple[int, int], background: str
) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if _is_tensor(image):
        import torch

        if image.dtype != torch.uint8:
            raise TypeError(f"image must be uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[0] != 3 or 0 in image.shape:
            raise ValueError(f"image planes must have shape (3, H, W), got {tuple(image.shape)}")
        if image.device.type != "cpu":
            raise ValueError(f"image planes must be on the CPU, got {image.device}")
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    elif image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    elif image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    matrix = np.asarray(frame_H_photo, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"frame_H_photo must be a finite (3, 3) matrix, got shape {matrix.shape}")
    if np.linalg.matrix_rank(matrix) < 3:
        raise ValueError("frame_H_photo must be invertible")
    if len(out_size) != 2 or any(isinstance(v, bool) or int(v) != v or v <= 0 for v in out_size):
        raise ValueError(f"out_size must be (h, w) positive ints, got {out_size!r}")


# ------------------------------------------------------------------------------------------------
# the photo, in either layout
# ------------------------------------------------------------------------------------------------


class _Photo:
    """The uint8 photo to warp, given as numpy ``(H, W, 3)`` or torch planes ``(3, H, W)``; frames are
    returned in the same layout.

    Internally both are handled as an ``(H, W, 3)`` numpy view (no copy): torch planes from
    :func:`alignimate.io.planes.read_image_planes` are interleaved in memory (the JPEG decoder's
    layout), and frames are made interleaved too, because the renderer's band conversions and its
    rounding store are fastest on interleaved pixels (a planar store costs more: docs/benchmarks.md,
    design measurements)."""

    def __init__(self, pixels: np.ndarray | torch.Tensor) -> None:
        self.planar = _is_tensor(pixels)
        self.pixels: np.ndarray = pixels.permute(1, 2, 0).numpy() if self.planar else pixels

    def finished(self, frame: np.ndarray) -> np.ndarray | torch.Tensor:
        """``frame`` in the photo's layout (planes are a view of the same memory)."""
        if not self.planar:
            return frame
        import torch

        return torch.from_numpy(frame).permute(2, 0, 1)


def _is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor; never imports torch (no tensor exists before it is imported).

    Another thread may be importing torch meanwhile (a frame on the tiled path): its half-made module
    may lack ``Tensor`` yet, and ``value`` is then no tensor (one would come from a finished import)."""
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return tensor is not None and isinstance(value, tensor)


def _device_type(device: torch.device | str) -> str:
    """``"cpu"``, ``"cuda"``, ... of a device or its name (``"cuda:1"``), without importing torch."""
    return device.split(":", 1)[0] if isinstance(device, str) else device.type


# ------------------------------------------------------------------------------------------------
# integer translations: a copy
# ------------------------------------------------------------------------------------------------


def _integer_shift(matrix: np.ndarray) -> tuple[int, int] | None:
    """``(tx, ty)`` if ``matrix`` is exactly a translation by whole pixels, else ``None``."""
    if matrix[2, 2] == 0:
        return None
    m = matrix / matrix[2, 2]
    if m[2, 0] != 0 or m[2, 1] != 0 or not np.array_equal(m[:2, :2], np.eye(2)):
        return None
    tx, ty = m[0, 2], m[1, 2]
    if tx != round(tx) or ty != round(ty):
        return None
    return int(tx), int(ty)


def _render_shift(
    image: np.ndarray, shift: tuple[int, int], size: tuple[int, int], background: str
) -> np.ndarray | None:
    """``out[y, x] = image[y - ty, x - tx]`` with the background elsewhere; ``None`` when the blurred
    background would show (that needs the general path)."""
    tx, ty = shift
    (h, w), (H, W) = size, image.shape[:2]
    top, bottom = min(max(ty, 0), h), max(min(H + ty, h), 0)
    left, right = min(max(tx, 0), w), max(min(W + tx, w), 0)
    covered = (top, bottom, left, right) == (0, h, 0, w)
    if background == "blur" and not covered:
        return None
    channels = 4 if background == "transparent" else 3
    out = np.full((h, w, channels), 255 if background == "white" else 0, np.uint8)
    if top < bottom and left < right:
        out[top:bottom, left:right, :3] = image[top - ty : bottom - ty, left - tx : right - tx]
        if channels == 4:
            out[top:bottom, left:right, 3] = 255
    return out


# ------------------------------------------------------------------------------------------------
# affine warps of uint8 photos: OpenCV
# ------------------------------------------------------------------------------------------------


def _render_affine_opencv(
    image: np.ndarray, frame_H_photo: np.ndarray, size: tuple[int, int], background: str
) -> np.ndarray | None:
    """The frame of an affine ``frame_H_photo`` by OpenCV's ``warpAffine``, or ``None`` where that path
    does not apply (no usable OpenCV, a homography, the blurred background, a side over
    ``_OPENCV_MAX_SIDE``): the same values as the tiled warp below, up to float rounding."""
    cv2 = opencv()
    if cv2 is None or background == "blur" or frame_H_photo[2, 0] != 0 or frame_H_photo[2, 1] != 0:
        return None
    (h, w), (H, W) = size, image.shape[:2]
    if max(h, w, H, W) > _OPENCV_MAX_SIDE:
        return None
    photo_H_frame = np.linalg.inv(frame_H_photo)
    photo_H_frame /= photo_H_frame[2, 2]
    pixels = image if image.flags.c_contiguous else np.ascontiguousarray(image)
    # Zeros outside the photo, as grid_sample's padding: taps outside read 0, so the samples of the
    # photo's outermost half pixel darken towards its edge whatever the background.
    frame = cv2.warpAffine(
        pixels,
        photo_H_frame[:2],
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    if background == "black":
        return frame
    starts, stops = _inside_columns(photo_H_frame, (H, W), size)
    partial = np.flatnonzero((starts > 0) | (stops < w))
    if background == "white":
        for y in partial:
            frame[y, : starts[y]] = 255
            frame[y, stops[y] :] = 255
        return frame
    with_alpha = cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA)  # alpha 255
    for y in partial:
        with_alpha[y, : starts[y], 3] = 0
        with_alpha[y, stops[y] :, 3] = 0
    return with_alpha


def _inside_columns(
    photo_H_frame: np.ndarray, photo_size: tuple[int, int], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame row, ``starts[y]:stops[y]``: the columns whose sample lies inside the photo's area
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (edges included), for an affine ``photo_H_frame``; ``(h,)``
    int arrays, an empty row as ``w:w``. Inside is an interval per row: each photo coordinate is linear
    along a frame row."""
    (H, W), (h, w) = photo_size, size
    rows = np.arange(h, dtype=np.float64)
    low, high = np.full(h, -np.inf), np.full(h, np.inf)
    for k, length in ((0, W), (1, H)):
        slope = photo_H_frame[k, 0]
        offset = photo_H_frame[k, 1] * rows + photo_H_frame[k, 2]  # the coordinate at column 0
        if slope == 0:
            outside = (offset < -0.5) | (offset > length - 0.5)
            low[outside], high[outside] = np.inf, -np.inf
            continue
        first, last = (-0.5 - offset) / slope, (length - 0.5 - offset) / slope
        low = np.maximum(low, np.minimum(first, last))
        high = np.minimum(high, np.maximum(first, last))
    starts = np.clip(np.ceil(low - _EDGE_SLACK), 0, w)
    stops = np.clip(np.floor(high + _EDGE_SLACK) + 1, 0, w)
    empty = starts >= stops
    starts[empty], stops[empty] = w, w
    return starts.astype(np.int64), stops.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# general warps: tile by tile
# ------------------------------------------------------------------------------------------------


def _tiles(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the output tiles, row by row."""
    (h, w), (th, tw) = size, _TILE_HW
    return [(y0, min(y0 + th, h), x0, min(x0 + tw, w)) for y0 in range(0, h, th) for x0 in range(0, w, tw)]


@dataclass
class _Window:
    """The photo rows ``r0:r1`` and columns ``c0:c1`` a tile's bilinear taps can read; ``covered`` when
    every sample of the tile lies inside the photo's pixel centres (no padding, no background)."""

    r0: int
    r1: int
    c0: int
    c1: int
    covered: bool


@dataclass
class _Frame:
    """One warp: the photo, ``frame_H_photo``, the output size and background, shared by its tiles."""

    image: np.ndarray
    frame_H_photo: np.ndarray  # noqa: N815 (matrix naming convention, docs/conventions.md)
    size: tuple[int, int]
    background: str
    device: torch.device
    photo_H_frame: np.ndarray = field(init=False)  # noqa: N815
    affine: bool = field(init=False)
    _blur: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.photo_H_frame = np.linalg.inv(self.frame_H_photo)
        # An affine warp's sampling grid needs no perspective division (several times cheaper).
        self.affine = self.frame_H_photo[2, 0] == 0 and self.frame_H_photo[2, 1] == 0

    # -- one tile ------------------------------------------------------------------------------
    def render_tile(self, y0: int, y1: int, x0: int, x1: int, out: np.ndarray) -> None:
        """Write the finished uint8 pixels of one output tile into ``out`` ``(y1 - y0, x1 - x0, C)``."""
        size = (y1 - y0, x1 - x0)
        window = self.window(y0, y1, x0, x1)
        if window is None:  # no tap reads the photo: background only
            values = self.compose(None, None, y0, x0, size)
        elif window.covered:
            values = self.with_opaque_alpha(self.warp_covered(window, y0, x0, size))
        else:
            warped, inside = self.warp(window, y0, x0, size, offset=0.0, mask=self.background != "black")
            values = self.compose(warped, inside, y0, x0, size)
        _store_rounded(values, out)

    def window(self, y0: int, y1: int, x0: int, x1: int) -> _Window | None:
        """The band of the photo a tile needs; ``None`` when no tap falls inside the photo."""
        H, W = self.image.shape[:2]
        corners = np.array([[x0, x1 - 1, x0, x1 - 1], [y0, y0, y1 - 1, y1 - 1], [1.0, 1.0, 1.0, 1.0]])
        mapped = self.photo_H_frame @ corners
        w = mapped[2]
        # A tile crossed by the horizon (denominators of both signs) maps to an unbounded region.
        if not (np.all(w > 0) or np.all(w < 0)):
            return _Window(0, H, 0, W, covered=False)
        xs, ys = mapped[0] / w, mapped[1] / w
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            return _Window(0, H, 0, W, covered=False)
        # The image of a rectangle under a homography without a horizon in it is the convex hull of
        # its corners' images, so the corners bound every sample; taps are floor(x) and floor(x) + 1.
        c0 = max(0, math.floor(xs.min()) - _BAND_MARGIN)
        c1 = min(W, math.floor(xs.max()) + 2 + _BAND_MARGIN)
        r0 = max(0, math.floor(ys.min()) - _BAND_MARGIN)
        r1 = min(H, math.floor(ys.max()) + 2 + _BAND_MARGIN)
        if c0 >= c1 or r0 >= r1:
            return None
        covered = xs.min() >= 0 and ys.min() >= 0 and xs.max() <= W - 1 and ys.max() <= H - 1
        return _Window(r0, r1, c0, c1, bool(covered))

    def warp(
        self, window: _Window, y0: int, x0: int, size: tuple[int, int], *, offset: float, mask: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(warped (C, h, w) float in grey levels [+ offset], inside (1, h, w) or None)`` of one tile."""
        import torch

        from alignimate.core import warp_perspective

        band = self.band(window, offset)
        tile_H_band = self.tile_H_band(window, y0, x0)
        rows = tile_H_band[:2] if self.affine else tile_H_band
        matrix = torch.as_tensor(rows, dtype=torch.float32, device=self.device).unsqueeze(0)
        # Whole-pixel translations were copied by render_frame already: skip the per-tile check.
        if mask:
            warped, inside = warp_perspective(
                band, matrix, size, return_mask=True, exact_integer_shifts=False
            )
            return warped[0], inside[0]
        return warp_perspective(band, matrix, size, exact_integer_shifts=False)[0], None

    def warp_covered(self, window: _Window, y0: int, x0: int, size: tuple[int, int]) -> torch.Tensor:
        """``(C, h, w)`` warped tile plus 0.5, for a tile whose samples all lie inside the photo.

        The hot path of a frame. On the CPU the sampling grid is built with numpy: several times
        faster than the general grid (docs/benchmarks.md, design measurements; its per-pixel (x, y)
        pairs are written as rows of ``2 w`` values) and free of torch's intra-op threads, which only
        cost time when several frames render at once."""
        import torch
        import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

        from alignimate.core import warp_perspective

        # +0.5 folded into the source is exact (the weights sum to one and no tap is padding), so
        # truncating the result to uint8 rounds it.
        band = self.band(window, 0.5)
        tile_H_band = self.tile_H_band(window, y0, x0)
        if self.device.type != "cpu":
            rows = tile_H_band[:2] if self.affine else tile_H_band
            matrix = torch.as_tensor(rows, dtype=torch.float32, device=self.device).unsqueeze(0)
            return warp_perspective(band, matrix, size, exact_integer_shifts=False)[0]
        band_size = (window.r1 - window.r0, window.c1 - window.c0)
        grid = _inside_grid(band_size, tile_H_band, size, affine=self.affine)
        return F.grid_sample(band, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]

    def tile_H_band(self, window: _Window, y0: int, x0: int) -> np.ndarray:
        """Pixel matrix from a band of the photo to an output tile."""
        return translation(-x0, -y0) @ self.frame_H_photo @ translation(window.c0, window.r0)

    def band(self, window: _Window, offset: float) -> torch.Tensor:
        """The photo's rows/columns of ``window`` as a ``(1, 3, h, w)`` float tensor in grey levels
        (channels-last memory: no transposition of the photo is needed)."""
        import torch

        block = self.image[window.r0 : window.r1, window.c0 : window.c1]
        if self.device.type == "cpu":
            # numpy releases the GIL and needs no copy of a read-only photo to convert it.
            values = torch.from_numpy(np.add(block, np.float32(offset), dtype=np.float32))
        else:
            values = torch.from_numpy(np.array(block)).to(self.device).float().add_(offset)
        return values.permute(2, 0, 1).unsqueeze(0)

    # -- backgrounds -------------------------------------------------------------------------------
    def with_opaque_alpha(self, warped: torch.Tensor) -> torch.Tensor:
        import torch

        if self.background != "transparent":
            return warped
        return torch.cat([warped, warped.new_full((1, *warped.shape[1:]), 255.5)])

    def compose(
        self,
        warped: torch.Tensor | None,
        inside: torch.Tensor | None,
        y0: int,
        x0: int,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Tile values ``warped + (1 - inside) * background`` clamped to [0, 255], plus 0.5 so that
        truncation rounds; ``warped``/``inside`` ``None`` mean 0 (no tap in the photo)."""
        import torch

        if warped is None:
            warped = torch.zeros((3, *size), device=self.device)
            inside = torch.zeros((1, *size), device=self.device)
        if self.background == "black":
            return warped.add_(0.5)
        assert inside is not None
        outside = 1.0 - inside
        if self.background == "transparent":
            return torch.cat([warped, inside * 255.0]).add_(0.5)
        if self.background == "white":
            filled = warped + outside * 255.0
        else:
            filled = warped + outside * self.blurred_tile(y0, x0, size)
        return filled.clamp_(0.0, 255.0).add_(0.5)

    def blurred_tile(self, y0: int, x0: int, size: tuple[int, int]) -> torch.Tensor:
        """``(3, h, w)`` of the blurred background, upsampled (bilinear, edges clamped) from
        :meth:`blurred_small` onto this tile."""
        import torch

        from alignimate.core import warp_perspective

        small = self.blurred_small()
        tile_H_small = translation(-x0, -y0) @ resize_matrix(tuple(small.shape[-2:]), self.size)
        matrix = torch.as_tensor(tile_H_small[:2], dtype=torch.float32, device=self.device).unsqueeze(0)
        return warp_perspective(small, matrix, size, padding_mode="border")[0]

    def blurred_small(self) -> torch.Tensor:
        """The blurred background at 1/BLUR_FACTOR of the output size, ``(1, 3, h, w)`` in grey levels;
        made once per frame, on first use."""
        import torch

        from alignimate.core import gaussian_blur2d, warp_perspective

        if self._blur is None:
            h, w = self.size
            small_out = (max(1, h // BLUR_FACTOR), max(1, w // BLUR_FACTOR))
            ph, pw = self.image.shape[:2]
            small_in = (max(1, ph // BLUR_FACTOR), max(1, pw // BLUR_FACTOR))
            # Pillow's antialiased bilinear reduction, on uint8 and in C (the same filter as
            # alignimate.core.resize), avoids a float copy of the whole photo.
            whole = Image.fromarray(np.ascontiguousarray(self.image))
            reduced = whole.resize(small_in[::-1], Image.Resampling.BILINEAR)
            photo = torch.from_numpy(np.array(reduced, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
            matrix = (
                resize_matrix(self.size, small_out) @ self.frame_H_photo @ resize_matrix(small_in, (ph, pw))
            )
            photo = photo.to(self.device)
            rows = torch.as_tensor(matrix, dtype=torch.float32, device=self.device).unsqueeze(0)
            extended = warp_perspective(photo, rows, small_out, padding_mode="border")
            sigma = max(small_out) / BLUR_DIVISOR
            self._blur = gaussian_blur2d(extended, None, sigma, border_type="replicate")
        return self._blur


def _inside_grid(
    band_size: tuple[int, int], tile_H_band: np.ndarray, size: tuple[int, int], *, affine: bool
) -> torch.Tensor:
    """``grid_sample`` grid ``(1, h, w, 2)`` (align_corners=False) of an output tile of ``size`` in a band
    of ``band_size``: the same values as :func:`alignimate.core.warp_grid`, for tiles without a horizon
    (every denominator away from zero, which :meth:`_Frame.window` guarantees for covered tiles)."""
    import torch

    from alignimate.core import normalize_pixel_matrix

    h, w = size
    band_norm_H_tile = normalize_pixel_matrix(band_size, dtype=torch.float64).numpy() @ np.linalg.inv(
        tile_H_band
    )
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    if affine:
        m = band_norm_H_tile / band_norm_H_tile[2, 2]
        # Each coordinate is an outer sum (per row + per column), written into its half of the
        # interleaved grid: much faster than one sum over (x, y) pairs, whose inner loop is 2 long
        # (docs/benchmarks.md, design measurements).
        grid = np.empty((h, w, 2), np.float32)
        for k in range(2):
            per_row = (ys * m[k, 1] + m[k, 2]).astype(np.float32)
            per_column = (xs * m[k, 0]).astype(np.float32)
            np.add.outer(per_row, per_column, out=grid[..., k])
    else:
        m = band_norm_H_tile.astype(np.float32)
        xs32, ys32 = xs.astype(np.float32), ys.astype(np.float32)
        denominator = np.add.outer(ys32 * m[2, 1] + m[2, 2], xs32 * m[2, 0])
        grid = np.empty((h, w, 2), np.float32)
        for k in range(2):
            numerator = np.add.outer(ys32 * m[k, 1] + m[k, 2], xs32 * m[k, 0])
            np.divide(numerator, denominator, out=grid[..., k])
    return torch.from_numpy(grid).view(1, h, w, 2)


def _store_rounded(values: torch.Tensor, out: np.ndarray) -> None:
    """Store a ``(C, h, w)`` float tile, already offset by 0.5 and inside [0, 256), into ``out``
    ``(h, w, C)`` uint8: the cast truncates, which rounds the offset values."""
    planes = values.cpu().numpy()
    # One contiguous plane at a time into the interleaved output: much faster than one transposing
    # copy of the whole tile (docs/benchmarks.md, design measurements).
    for channel, plane in enumerate(planes):
        np.copyto(out[..., channel], plane, casting="unsafe")
