"""The fast full-resolution path: photos decoded and frames encoded without extra copies, as
interleaved ``(H, W, C)`` uint8 numpy arrays ("pixels") or, for torch code, ``(C, H, W)`` uint8
torch tensors ("planes") that are views of the same memory.

Writing aligned frames decodes every photo at full resolution and encodes every frame. Through
Pillow and numpy each of these costs a full extra copy of the image (Pillow keeps RGB as 4 bytes
per pixel, so ``np.asarray`` re-packs the whole image, and ``Image.fromarray`` copies it back),
which on a 12 MP photo is as long as the decode itself. Here JPEGs are decoded and encoded by
OpenCV's libjpeg-turbo (:mod:`alignimate.io.opencv`), straight from and into interleaved pixels,
which the renderer (:mod:`alignimate.pipeline.render`) reads and writes without a copy.

The numpy functions (:func:`read_image_pixels`, :func:`save_image_pixels`) are the implementation;
the planes functions wrap them. Only the planes functions import torch (when called), so a job that
does no torch computation (``apply`` of affine frames on the CPU) never pays for importing it.

Results are the same as the Pillow path, pixel for pixel: both run libjpeg-turbo with the same
settings (accurate integer IDCT, smooth chroma upsampling; quality-scaled tables and 4:2:0 chroma
when encoding), and the tests compare the two on baseline, progressive, grey, 4:4:4/4:2:2,
restart-marker and all eight EXIF orientations. Everything else (other formats, CMYK JPEGs, files
libjpeg refuses, no usable OpenCV) goes through :func:`alignimate.io.read_image` /
:func:`alignimate.io.save_image`'s Pillow code, which also gives the human reason when a photo cannot
be read.

OpenCV rather than torchvision's codecs (the same libjpeg-turbo): importing torchvision costs seconds
at the start of every run (docs/benchmarks.md, end to end), and its codecs are deprecated.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from alignimate.io.images import (
    PhotoError,
    _check_positive,
    _effective_limit,
    _open,
    _orientation,
    _reason_for,
    _request_draft,
    read_image,
    shrink_to_fit,
)
from alignimate.io.opencv import opencv
from alignimate.io.writing import IMAGE_FORMATS, atomic_write, check_uint8_image, save_image

if TYPE_CHECKING:
    import torch

__all__ = [
    "fast_jpeg_available",
    "read_image_pixels",
    "read_image_planes",
    "save_image_pixels",
    "save_image_planes",
]

# Pillow modes of JPEGs that libjpeg-turbo turns into RGB exactly as Pillow does (CMYK and YCCK
# JPEGs are converted differently by the two; they take the Pillow path).
_FAST_JPEG_MODES = frozenset({"RGB", "L"})
# OpenCV's flags for libjpeg's DCT scaling (1/2, 1/4, 1/8), by scale; alone they give the luma,
# combined with IMREAD_COLOR_RGB they give RGB.
_REDUCED_FLAGS = {
    2: "IMREAD_REDUCED_GRAYSCALE_2",
    4: "IMREAD_REDUCED_GRAYSCALE_4",
    8: "IMREAD_REDUCED_GRAYSCALE_8",
}
# Per thread, the BGR copy of the last frame encoded (OpenCV encodes BGR): reusing it spares the page
# faults of a fresh full-resolution buffer on every frame.
_SCRATCH = threading.local()


def _jpeg_codec() -> ModuleType | None:
    """OpenCV when it can decode and encode JPEGs here, else ``None``."""
    return opencv()


def fast_jpeg_available() -> bool:
    """Whether JPEGs are decoded and encoded through OpenCV's libjpeg-turbo (else through Pillow)."""
    return _jpeg_codec() is not None


def _upright(cv2: ModuleType, pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` (1-8) to ``(H, W, C)`` pixels, as ``PIL.ImageOps.exif_transpose`` does.

    OpenCV's flips and rotations write the result once, contiguous (several times faster than a
    strided copy of a flipped or transposed view)."""
    if orientation == 2:
        return cv2.flip(pixels, 1)  # columns reversed
    if orientation == 3:
        return cv2.flip(pixels, -1)  # rows and columns reversed
    if orientation == 4:
        return cv2.flip(pixels, 0)  # rows reversed
    if orientation == 5:  # mirrored along the main diagonal
        return cv2.transpose(pixels)
    if orientation == 6:  # stored turned 90 degrees anticlockwise: turn it clockwise
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:  # mirrored along the anti-diagonal
        return cv2.flip(cv2.transpose(pixels), -1)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _decode_jpeg(path: Path, scale: int = 1, grey: bool = False) -> np.ndarray | None:
    """``(H, W, 3)`` RGB pixels of a JPEG as stored (no orientation), or its ``(H, W)`` luma with
    ``grey``, decoded at ``1 / scale`` of its size (1, 2, 4 or 8: libjpeg's DCT scaling, as Pillow's
    draft mode), or ``None`` when libjpeg refuses it (truncated, corrupt) or there is no codec."""
    cv2 = _jpeg_codec()
    if cv2 is None or (scale != 1 and scale not in _REDUCED_FLAGS):
        return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR_RGB)
    if scale != 1:
        flags |= getattr(cv2, _REDUCED_FLAGS[scale])
    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flags)
    if pixels is None or pixels.ndim != (2 if grey else 3) or (not grey and pixels.shape[2] != 3):
        # Pillow reads it again and either says why or decodes what it can.
        return None
    return pixels


def read_image_pixels(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    grey: bool = False,
) -> np.ndarray:
    """Decode a photo upright as ``(H, W, 3)`` uint8 RGB pixels (``(H, W, 1)`` luma with ``grey``), at
    full resolution or, with ``max_side``, reduced to fit it (a working copy).

    The same pixels as ``read_image(path, max_side=max_side, grey=grey)`` (EXIF orientation applied,
    any mode converted, transparency composited onto black; a reduced JPEG decoded at the same 1/2,
    1/4 or 1/8 scale and resized with the same Lanczos), decoded by OpenCV where that gives the same
    pixels. Its decoder holds no lock Python needs, so a thread reading working copies runs beside one
    importing modules (:mod:`alignimate.pipeline.readahead`). The array may be read-only (Pillow's).
    ``max_side`` and ``max_pixels`` as :func:`alignimate.io.read_image`. Raises
    :class:`~alignimate.io.PhotoError` for every unreadable photo.
    """
    path = Path(path)
    _check_positive("max_side", max_side)
    limit = _effective_limit(max_pixels)
    try:
        with _open(path, limit) as image:
            fast = image.format == "JPEG" and image.mode in _FAST_JPEG_MODES
            orientation = _orientation(image)
            scale = _request_draft(image, max_side, grey) if fast else 1
    except PhotoError:
        raise
    except Exception as exc:
        raise PhotoError(path, _reason_for(exc, limit)) from exc
    if fast:
        pixels = _decode_jpeg(path, scale, grey)
        cv2 = _jpeg_codec()
        if pixels is not None and cv2 is not None:
            upright = _upright(cv2, pixels, orientation)
            if max_side is not None:
                upright = np.asarray(shrink_to_fit(Image.fromarray(upright), max_side))
            return upright[:, :, None] if grey else upright
    return read_image(path, max_side=max_side, max_pixels=max_pixels, grey=grey)


def read_image_planes(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """Decode a photo upright at full resolution as ``(3, H, W)`` uint8 RGB planes (CPU).

    :func:`read_image_pixels` transposed to channels first: a view of interleaved memory, so the
    result is not contiguous. ``max_pixels`` and errors as there.
    """
    import torch

    pixels = read_image_pixels(path, max_pixels=max_pixels)
    # Pillow's arrays are read-only views of its buffer; a tensor must own writable memory.
    return torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy()).permute(2, 0, 1)


def save_image_pixels(
    path: str | os.PathLike[str], pixels: np.ndarray, *, quality: int = 95, exif: bytes | None = None
) -> Path:
    """Save uint8 ``pixels`` (``(H, W)`` or ``(H, W, 1)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA;
    any strides) atomically, like :func:`alignimate.io.save_image` (same formats, options and errors,
    same JPEG bytes), JPEGs through OpenCV."""
    path = Path(path)
    check_uint8_image(pixels, "pixels")
    cv2 = _jpeg_codec()
    grey = pixels.ndim == 2 or pixels.shape[2] == 1
    jpeg = IMAGE_FORMATS.get(path.suffix.lower()) == "JPEG"
    simple_jpeg = jpeg and exif is None and (grey or pixels.shape[2] == 3)
    if cv2 is None or not simple_jpeg or not 1 <= quality <= 100:
        # Everything else (and the argument errors) is save_image's.
        return save_image(path, pixels, quality=quality, exif=exif)
    image = (pixels if pixels.ndim == 2 else pixels[..., 0]) if grey else _as_bgr(cv2, pixels)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return save_image(path, pixels, quality=quality)
    with atomic_write(path) as tmp:
        data.tofile(tmp)
    return path


def save_image_planes(
    path: str | os.PathLike[str], planes: torch.Tensor, *, quality: int = 95, exif: bytes | None = None
) -> Path:
    """Save ``(C, H, W)`` uint8 planes (C = 1 grey, 3 RGB, 4 RGBA) atomically: :func:`save_image_pixels`
    of their channels-last view (no copy for the renderer's interleaved frames)."""
    import torch

    if not isinstance(planes, torch.Tensor) or planes.dtype != torch.uint8:
        raise TypeError(f"planes must be a uint8 torch tensor, got {getattr(planes, 'dtype', type(planes))}")
    if planes.ndim != 3 or planes.shape[0] not in (1, 3, 4):
        raise ValueError(f"planes must have shape (C, H, W) with C in 1, 3, 4, got {tuple(planes.shape)}")
    return save_image_pixels(path, planes.cpu().permute(1, 2, 0).numpy(), quality=quality, exif=exif)


def _as_bgr(cv2: ModuleType, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` with its channels reversed, in this thread's reused buffer."""
    scratch = getattr(_SCRATCH, "bgr", None)
    if scratch is None or scratch.shape != rgb.shape:
        scratch = _SCRATCH.bgr = np.empty(rgb.shape, np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR, dst=scratch)
