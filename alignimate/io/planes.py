"""Photos as ``(C, H, W)`` uint8 torch tensors ("planes"): the fast full-resolution path.

Writing aligned frames decodes every photo at full resolution and encodes every frame. Through
Pillow and numpy each of these costs a full extra copy of the image (Pillow keeps RGB as 4 bytes
per pixel, so ``np.asarray`` re-packs the whole image, and ``Image.fromarray`` copies it back),
which on a 12 MP photo is as long as the decode itself. Here JPEGs are decoded and encoded by the
libjpeg-turbo bindings that ship with torchvision, straight from and into channel planes, which the
tiled renderer (:mod:`alignimate.pipeline.render`) reads as cheaply as interleaved pixels.

Results are the same as the Pillow path, pixel for pixel: both run libjpeg-turbo with the same
settings (accurate integer IDCT, smooth chroma upsampling; quality-scaled tables and 4:2:0 chroma
when encoding), and the tests compare the two on baseline, progressive, grey, 4:4:4/4:2:2,
restart-marker and all eight EXIF orientations. Everything else (other formats, CMYK JPEGs, files
libjpeg refuses, a torchvision without these functions) goes through
:func:`alignimate.io.read_image` / :func:`alignimate.io.save_image`'s Pillow code, which also
gives the human reason when a photo cannot be read.

torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; the one warning it
repeats on every call is silenced here (its exact message only), and the Pillow path takes over
if a later torchvision drops them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignimate.io.images import PhotoError, _effective_limit, _open, _orientation, _reason_for, read_image
from alignimate.io.writing import IMAGE_FORMATS, atomic_write, save_image

__all__ = ["fast_jpeg_available", "read_image_planes", "save_image_planes"]

_TORCHVISION_CODEC_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
# Pillow modes of JPEGs that libjpeg-turbo turns into RGB exactly as Pillow does (CMYK and YCCK
# JPEGs are converted differently by the two; they take the Pillow path).
_FAST_JPEG_MODES = frozenset({"RGB", "L"})


@cache
def _jpeg_codec() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], Any] | None:
    """``(decode_jpeg, encode_jpeg, ImageReadMode.RGB)`` from torchvision, or ``None`` without them."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
    except ImportError:
        return None
    warnings.filterwarnings("ignore", message=_TORCHVISION_CODEC_DEPRECATION, category=DeprecationWarning)
    return decode_jpeg, encode_jpeg, ImageReadMode.RGB


def fast_jpeg_available() -> bool:
    """Whether JPEGs are decoded and encoded through torchvision's libjpeg-turbo bindings."""
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
    """``(3, H, W)`` planes of a JPEG as stored (no orientation), or ``None`` when libjpeg refuses it."""
    codec = _jpeg_codec()
    if codec is None:
        return None
    decode, _, rgb = codec
    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    try:
        return decode(data, mode=rgb)
    except RuntimeError:
        # Truncated or corrupt: Pillow reads it again and either says why or decodes what it can.
        return None


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
    codec = _jpeg_codec()
    simple_jpeg = IMAGE_FORMATS.get(path.suffix.lower()) == "JPEG" and exif is None and planes.shape[0] != 4
    if codec is None or not simple_jpeg or not 1 <= quality <= 100:
        # Everything else (and the argument errors) is save_image's.
        return save_image(path, planes.permute(1, 2, 0).numpy(), quality=quality, exif=exif)
    encode = codec[1]
    # Planes interleaved in memory (what the renderer makes) are encoded without any copy.
    data = encode(planes, quality=quality)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.numpy().tobytes())
    return path
