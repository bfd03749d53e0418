"""Colour conversions and numpy/PIL <-> tensor helpers.

Images are ``(B, C, H, W)`` tensors, see docs/conventions.md. Channel order is RGB unless a
name says otherwise; these helpers never reorder channels behind the caller's back (arrays from
OpenCV are BGR: pass them through :func:`bgr_to_rgb`). Nothing here reads or writes files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alignimate.core.checks import check_image_batch

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "GRAYSCALE_WEIGHTS",
    "bgr_to_rgb",
    "image_to_tensor",
    "rgb_to_bgr",
    "rgb_to_grayscale",
    "tensor_to_image",
    "tensor_to_pil",
    "to_float",
    "to_uint8",
]

# ITU-R BT.601 luma weights, the ones OpenCV's COLOR_RGB2GRAY uses.
GRAYSCALE_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

# Full-scale value of each integer type we accept; dividing by it maps to [0, 1].
_INTEGER_FULL_SCALE: dict[torch.dtype, float] = {torch.uint8: 255.0, torch.uint16: 65535.0}


def _check_4d(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images with BT.601 weights ``(0.299, 0.587, 0.114)``, as OpenCV's ``RGB2GRAY``.

    images: floating ``(B, C, H, W)`` with ``C`` = 1 (returned unchanged), 3 (RGB) or 4 (RGBA, the
    alpha channel is ignored). Returns ``(B, 1, H, W)`` of the same dtype and device.
    """
    check_image_batch(images)
    channels = images.shape[1]
    if channels == 1:
        return images
    if channels not in (3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels, got {channels}")
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    wr, wg, wb = GRAYSCALE_WEIGHTS
    return wr * r + wg * g + wb * b


def _swap_red_blue(images: torch.Tensor) -> torch.Tensor:
    _check_4d(images)
    channels = images.shape[1]
    if channels not in (3, 4):
        raise ValueError(f"images must have 3 or 4 channels, got {channels}")
    # Alpha (channel 3) stays last: RGBA <-> BGRA.
    order = [2, 1, 0] + ([3] if channels == 4 else [])
    return images[:, order]


def rgb_to_bgr(images: torch.Tensor) -> torch.Tensor:
    """Swap red and blue: ``(B, 3|4, H, W)`` RGB(A) -> BGR(A). Any dtype; returns a new tensor."""
    return _swap_red_blue(images)


def bgr_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Swap blue and red: ``(B, 3|4, H, W)`` BGR(A) -> RGB(A). Any dtype; returns a new tensor."""
    return _swap_red_blue(images)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer images to floating point in ``[0, 1]``: uint8 is divided by 255, uint16 by 65535.

    images: tensor of any shape, uint8, uint16 or floating. Floating input is only cast to
    ``dtype`` (its values are assumed to be in ``[0, 1]`` already and are not rescaled).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    if images.is_floating_point():
        return images.to(dtype)
    full_scale = _INTEGER_FULL_SCALE.get(images.dtype)
    if full_scale is None:
        raise TypeError(f"images must be uint8, uint16 or floating point, got {images.dtype}")
    return images.to(dtype) / full_scale


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floating images in ``[0, 1]`` to uint8: scaled by 255, rounded to nearest (ties to even, as
    OpenCV), clamped to ``[0, 255]``; NaN becomes 0. Any shape; uint8 input is returned unchanged."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point or uint8, got {images.dtype}")
    scaled = torch.nan_to_num(images.detach() * 255.0, nan=0.0)
    return scaled.round().clamp(0.0, 255.0).to(torch.uint8)


def _pil_to_array(img: PILImage.Image) -> np.ndarray:
    """Pixels of a PIL image as a uint8/uint16/float32 ``(H, W[, C])`` array."""
    mode = img.mode
    if mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA", "RGBX", "RGBa", "La"):
        # Palette images keep their transparency as alpha; everything else becomes plain RGB.
        has_alpha = mode in ("PA", "RGBa", "La") or "transparency" in img.info
        target = "RGBA" if has_alpha else "RGB"
        if mode == "1":
            target = "L"
        return np.asarray(img.convert(target))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if mode == "I":
        # 16-bit PNGs often open as 32-bit "I"; accept them when the values fit 16 bits.
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("PIL image of mode 'I' has values outside [0, 65535]; cannot map to [0, 1]")
        return arr.astype(np.uint16)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    raise ValueError(f"unsupported PIL image mode {mode!r}")


def image_to_tensor(
    img: np.ndarray | PILImage.Image,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A numpy image or PIL image as a ``(1, C, H, W)`` floating tensor in ``[0, 1]``.

    img: numpy ``(H, W)`` or ``(H, W, C)`` of uint8 (/255), uint16 (/65535) or floating type
    (values taken as they are), or a ``PIL.Image.Image`` (modes L, LA, RGB, RGBA, I;16, I, F;
    palette and other modes are converted to RGB(A)). Channels keep their order (an OpenCV array
    stays BGR). The result never shares memory with ``img``.
    """
    if isinstance(img, np.ndarray):
        arr = img
    elif _is_pil_image(img):
        arr = _pil_to_array(img)
    else:
        raise TypeError(f"img must be a numpy array or a PIL image, got {type(img).__name__}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"img must have shape (H, W) or (H, W, C), got {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"img must be uint8, uint16 or floating point, got {arr.dtype}")
    # Copy so that the tensor owns its memory even when no dtype conversion happens.
    tensor = torch.from_numpy(np.array(arr, copy=True, order="C"))
    chw = tensor.permute(2, 0, 1).unsqueeze(0)
    return to_float(chw, dtype).contiguous().to(device)


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a runtime dependency
        return False
    return isinstance(obj, Image.Image)


def _single_image_hwc(t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"t must hold a single image (1, C, H, W), got batch {t.shape[0]}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"t must have shape (1, C, H, W) or (C, H, W), got {tuple(t.shape)}")
    return t.detach().permute(1, 2, 0)


def tensor_to_image(
    t: torch.Tensor, *, dtype: type[np.uint8] | type[np.uint16] = np.uint8, squeeze_gray: bool = True
) -> np.ndarray:
    """One image tensor ``(1, C, H, W)`` or ``(C, H, W)`` as a numpy ``(H, W, C)`` array.

    Floating input is taken to be in ``[0, 1]``; it is scaled to ``dtype`` (uint8 or uint16),
    rounded to nearest and clamped (NaN -> 0). uint8 input passes through when ``dtype`` is
    uint8. With ``squeeze_gray`` a one-channel image comes back as ``(H, W)``. Copies to the CPU
    (a host sync; not for use inside optimisation loops).
    """
    hwc = _single_image_hwc(t)
    if dtype is np.uint8:
        out = to_uint8(hwc).cpu().numpy()
    elif dtype is np.uint16:
        if not hwc.is_floating_point():
            hwc = to_float(hwc, torch.float64)
        # float64 keeps every one of the 65536 levels exact through the round trip.
        scaled = torch.nan_to_num(hwc.to(torch.float64) * 65535.0, nan=0.0)
        out = scaled.round().clamp(0.0, 65535.0).cpu().numpy().astype(np.uint16)
    else:
        raise TypeError(f"dtype must be np.uint8 or np.uint16, got {dtype}")
    if squeeze_gray and out.shape[2] == 1:
        out = out[:, :, 0]
    return np.ascontiguousarray(out)


def tensor_to_pil(t: torch.Tensor) -> PILImage.Image:
    """One image tensor ``(1, C, H, W)`` or ``(C, H, W)`` as an 8-bit PIL image: ``C`` = 1 gives
    mode L, 2 LA, 3 RGB, 4 RGBA. Conversion as :func:`tensor_to_image`."""
    from PIL import Image

    arr = tensor_to_image(t, dtype=np.uint8, squeeze_gray=True)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels > 4:
        raise ValueError(f"t must have 1 to 4 channels for a PIL image, got {channels}")
    # Pillow infers L/LA/RGB/RGBA from a uint8 array's shape.
    return Image.fromarray(arr)
