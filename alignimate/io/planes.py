"""Photos as ``(C, H, W)`` uint8 torch tensors ("planes"): the fast full-resolution path.

Writing aligned frames decodes every photo at full resolution and encodes every frame. Through
Pillow and numpy each of these costs a full extra copy of the image (Pillow keeps RGB as 4 bytes
per pixel, so ``np.asarray`` re-packs the whole image, and ``Image.fromarray`` copies it back),
which on a 12 MP photo is as long as the decode itself. Here JPEGs are decoded and encoded by
OpenCV's libjpeg-turbo (:mod:`alignimate.io.opencv`), straight from and into interleaved pixels,
which the renderer (:mod:`alignimate.pipeline.render`) reads and writes without a copy; planes are
views of that memory.

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

import numpy as np
import torch

from alignimate.io.images import PhotoError, _effective_limit, _open, _orientation, _reason_for, read_image
from alignimate.io.opencv import opencv
from alignimate.io.writing import IMAGE_FORMATS, atomic_write, save_image

__all__ = ["fast_jpeg_available", "read_image_planes", "save_image_planes"]

# Pillow modes of JPEGs that libjpeg-turbo turns into RGB exactly as Pillow does (CMYK and YCCK
# JPEGs are converted differently by the two; they take the Pillow path).
_FAST_JPEG_MODES = frozenset({"RGB", "L"})
# Per thread, the BGR copy of the last frame encoded (OpenCV encodes BGR): reusing it spares the page
# faults of a fresh full-resolution buffer on every frame.
_SCRATCH = threading.local()


def _jpeg_codec() -> ModuleType | None:
    """OpenCV when it can decode and encode JPEGs here, else ``None``."""
    return opencv()


def fast_jpeg_available() -> bool:
    """Whether JPEGs are decoded and encoded through OpenCV's libjpeg-turbo (else through Pillow)."""
    return _jpeg_codec() is not None


def _upright(planes: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply EXIF ``orientation`` (1-8) to ``(C, H, W)`` planes, as ``PIL.ImageOps.exif_transpose`` does.

    The turns and flips are made on the interleaved ``(H, W, C)`` view and copied once into
    interleaved memory, the layout the renderer reads fastest."""
    pixels = planes.permute(1, 2, 0)
    rows, cols = 0, 1
    if orientation == 2:
        pixels = pixels.flip(cols)
    elif orientation == 3:
        pixels = pixels.flip(rows, cols)
    elif orientation == 4:
        pixels = pixels.flip(rows)
    elif orientation == 5:  # mirrored along the main diagonal
        pixels = pixels.transpose(rows, cols)
    elif orientation == 6:  # stored turned 90 degrees anticlockwise: turn it clockwise
        pixels = pixels.transpose(rows, cols).flip(cols)
    elif orientation == 7:  # mirrored along the anti-diagonal
        pixels = pixels.transpose(rows, cols).flip(rows, cols)
    elif orientation == 8:
        pixels = pixels.transpose(rows, cols).flip(rows)
    return pixels.contiguous().permute(2, 0, 1)


def _decode_jpeg(path: Path) -> torch.Tensor | None:
    """``(3, H, W)`` planes of a JPEG as stored (no orientation; interleaved in memory), or ``None``
    when libjpeg refuses it (truncated, corrupt) or there is no codec."""
    cv2 = _jpeg_codec()
    if cv2 is None:
        return None
    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3:
        # Pillow reads it again and either says why or decodes what it can.
        return None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def read_image_planes(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """Decode a photo upright at full resolution as ``(3, H, W)`` uint8 RGB planes (CPU).

    The same pixels as ``read_image(path)`` transposed to channels first (EXIF orientation applied,
    any mode converted, transparency composited onto black); the result may be a non-contiguous
    view. ``max_pixels`` as :func:`alignimate.io.read_image`. Raises
    :class:`~alignimate.io.PhotoError` for every unreadable photo.
    """
    path = Path(path)
    limit = _effective_limit(max_pixels)
    try:
        with _open(path, limit) as image:
            fast = image.format == "JPEG" and image.mode in _FAST_JPEG_MODES
            orientation = _orientation(image)
    except PhotoError:
        raise
    except Exception as exc:
        raise PhotoError(path, _reason_for(exc, limit)) from exc
    if fast:
        planes = _decode_jpeg(path)
        if planes is not None:
            return _upright(planes, orientation)
    pixels = read_image(path, max_pixels=max_pixels)
    # Pillow's arrays are read-only views of its buffer; a tensor must own writable memory.
    return torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy()).permute(2, 0, 1)


def save_image_planes(
    path: str | os.PathLike[str], planes: torch.Tensor, *, quality: int = 95, exif: bytes | None = None
) -> Path:
    """Save ``(C, H, W)`` uint8 planes (C = 1 grey, 3 RGB, 4 RGBA) atomically, like
    :func:`alignimate.io.save_image` (same formats, options and errors, same JPEG bytes)."""
    path = Path(path)
    if not isinstance(planes, torch.Tensor) or planes.dtype != torch.uint8:
        raise TypeError(f"planes must be a uint8 torch tensor, got {getattr(planes, 'dtype', type(planes))}")
    if planes.ndim != 3 or planes.shape[0] not in (1, 3, 4):
        raise ValueError(f"planes must have shape (C, H, W) with C in 1, 3, 4, got {tuple(planes.shape)}")
    planes = planes.cpu()
    cv2 = _jpeg_codec()
    simple_jpeg = IMAGE_FORMATS.get(path.suffix.lower()) == "JPEG" and exif is None and planes.shape[0] != 4
    if cv2 is None or not simple_jpeg or not 1 <= quality <= 100:
        # Everything else (and the argument errors) is save_image's.
        return save_image(path, planes.permute(1, 2, 0).numpy(), quality=quality, exif=exif)
    pixels = planes.permute(1, 2, 0).numpy()  # interleaved frames (the renderer's): a view, no copy
    image = pixels[..., 0] if planes.shape[0] == 1 else _as_bgr(cv2, pixels)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return save_image(path, pixels, quality=quality)
    with atomic_write(path) as tmp:
        data.tofile(tmp)
    return path


def _as_bgr(cv2: ModuleType, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` with its channels reversed, in this thread's reused buffer."""
    scratch = getattr(_SCRATCH, "bgr", None)
    if scratch is None or scratch.shape != rgb.shape:
        scratch = _SCRATCH.bgr = np.empty(rgb.shape, np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR, dst=scratch)
