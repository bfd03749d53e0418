"""Warping a full-resolution photo into an output frame, with a chosen background.

Backgrounds fill the part of the frame the photo does not cover: ``black``, ``white``, ``blur`` (a
heavily blurred, edge-extended copy of the photo itself, so borders look like out-of-focus
continuation) or ``transparent`` (an alpha channel; written as PNG).
"""

from __future__ import annotations

import numpy as np
import torch

from alignimate.core import compose, gaussian_blur2d, resize, scale_matrix_for_resize, warp_perspective

__all__ = ["BACKGROUNDS", "render_frame", "resize_matrix", "translation"]

BACKGROUNDS = ("black", "white", "blur", "transparent")
# The blurred background is made at 1/_BLUR_FACTOR of the output size: a blur this strong loses
# nothing at low resolution, and a 12 MP frame would otherwise cost a very large filter.
_BLUR_FACTOR = 8


def translation(dx: float, dy: float) -> np.ndarray:
    """3x3 pixel translation matrix."""
    m = np.eye(3)
    m[0, 2], m[1, 2] = dx, dy
    return m


def resize_matrix(src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """3x3 float64 pixel matrix from an image of size ``src=(h, w)`` to the same image resized to ``dst``."""
    return scale_matrix_for_resize(src, dst, dtype=torch.float64)[0].numpy()


def _to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(image, copy=True)).to(device)  # readers may return read-only arrays
    return tensor.permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)


def _blurred_background(
    photo: torch.Tensor, frame_H_photo: torch.Tensor, out_size: tuple[int, int]
) -> torch.Tensor:
    h, w = out_size
    small_out = (max(1, h // _BLUR_FACTOR), max(1, w // _BLUR_FACTOR))
    ph, pw = photo.shape[-2:]
    small_in = (max(1, ph // _BLUR_FACTOR), max(1, pw // _BLUR_FACTOR))
    small_photo = resize(photo, small_in)
    matrix = compose(
        scale_matrix_for_resize(out_size, small_out, dtype=frame_H_photo.dtype, device=photo.device),
        frame_H_photo,
        scale_matrix_for_resize(small_in, (ph, pw), dtype=frame_H_photo.dtype, device=photo.device),
    )
    extended = warp_perspective(small_photo, matrix.to(photo.dtype), small_out, padding_mode="border")
    sigma = max(small_out) / 40.0
    return resize(gaussian_blur2d(extended, None, sigma, border_type="replicate"), out_size)


def render_frame(
    image: np.ndarray,
    frame_H_photo: np.ndarray,
    out_size: tuple[int, int],
    *,
    background: str = "black",
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Warp ``image`` ``(H, W, 3)`` uint8 with the pixel matrix ``frame_H_photo`` into a frame of
    ``out_size=(h, w)``; returns ``(h, w, 3)`` uint8, or ``(h, w, 4)`` for ``background="transparent"``."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    device = torch.device(device)
    photo = _to_tensor(image, device)
    matrix = torch.as_tensor(frame_H_photo, dtype=torch.float64, device=device)[None]
    with torch.inference_mode():
        warped, mask = warp_perspective(photo, matrix.to(torch.float32), out_size, return_mask=True)
        if background == "white":
            warped = warped + (1.0 - mask)
        elif background == "blur":
            warped = warped + (1.0 - mask) * _blurred_background(photo, matrix, out_size)
        elif background == "transparent":
            warped = torch.cat([warped, mask], dim=1)
        frame = warped[0].clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return frame.permute(1, 2, 0).cpu().numpy()
