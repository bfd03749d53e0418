"""``--background person``: the subject cut out of each frame and everything else filled.

A cut-out frame is the plain frame (the photo warped by ``frame_H_photo``) where the photo's subject
mask says "subject", and the fill elsewhere: ``black``, ``white``, ``blur`` (a heavy blur of the
frame's own background) or ``transparent`` (an alpha channel; the job writes PNG frames).

The mask is a :class:`SubjectMask`: a soft ``(h_m, w_m)`` mask in ``[0, 1]`` covering the whole photo
at its own resolution (the user's PNG in ``masks:DIR`` mode, the person Mask R-CNN found while
registering in ``body`` mode). It reaches the frame by the photo's own matrix,
``frame_H_mask = frame_H_photo @ photo_H_mask`` with ``photo_H_mask`` the resize matrix between the
two resolutions (:func:`~alignimate.pipeline.render.resize_matrix`), warped bilinearly (so its edge
stays smooth). The part of the frame the photo does not cover gets the fill as well: the mask is
multiplied by the photo's extent there. Conventions: docs/conventions.md.

The edge is feathered: the warped mask is blurred by a Gaussian of :data:`FEATHER_SIGMA` pixels at
output resolution. Why 2 px: a hard edge shows the staircase of a binary user mask and the few-pixel
uncertainty of a detector's mask (Mask R-CNN predicts 28 x 28 per person and sees a copy of about
800 px), which also jitters from frame to frame; a wide feather instead leaves a halo of the old
background around the subject. With sigma 2 px the 10 %-90 % ramp is about 5 px (2.56 sigma) plus
the mask's own ramp: invisible at frame size, and narrower than any detector's error.

The frame is composited in bands of rows: only one band is ever held as floats, so a 12 MP frame
costs little more memory than the frame itself.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.core import gaussian_blur2d, warp_perspective
from alignimate.pipeline.render import BLUR_DIVISOR, BLUR_FACTOR, resize_matrix, translation

__all__ = [
    "FEATHER_SIGMA",
    "PERSON_FILLS",
    "Cutout",
    "SubjectMask",
    "cut_out",
    "cutout_signature",
    "frame_mask",
    "render_background",
]

PERSON_FILLS = ("black", "white", "blur", "transparent")
# Gaussian sigma of the feathered edge, output pixels (module docstring).
FEATHER_SIGMA = 2.0
# Output rows composited at once: a band's floats (mask, frame, fill) stay a few MB at 4000 px wide.
_BAND_ROWS = 256
# The blurred fill is made like render.py's blurred background (BLUR_FACTOR, BLUR_DIVISOR), so the
# two blurs look alike; _BAND_ROWS is a multiple of BLUR_FACTOR.
# Where less than this share of the blur's reach is background (deep inside the subject), the fill is
# the plain blur: the background-only average would divide by almost nothing there, and the subject
# covers the spot anyway.
_MIN_BACKGROUND_SHARE = 1e-3
# The render_frame background under each fill: blur extends the photo past its edges, so the blurred
# fill has content there too; a transparent frame's colour under alpha 0 does not matter.
_UNDER = {"black": "black", "white": "white", "blur": "blur", "transparent": "black"}

Frame = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class SubjectMask:
    """Where a photo's subject is: ``load()`` returns a ``(h_m, w_m)`` float32 mask in ``[0, 1]`` that
    covers the whole photo of ``photo_size_hw`` at the mask's own resolution, or raises
    :class:`~alignimate.io.PhotoError` naming the file and why it cannot be used. ``load`` may run on
    any thread. ``digest``: what identifies the mask for a frame's signature (None: nothing beyond the
    photo itself)."""

    photo_size_hw: tuple[int, int]
    load: Callable[[], np.ndarray]
    digest: str | None = None

    @classmethod
    def packed(cls, mask: np.ndarray, photo_size_hw: tuple[int, int]) -> SubjectMask:
        """A mask held in memory compressed, for keeping every photo's mask until its frame is written.

        8 bits, zlib: a person mask is mostly flat, so it shrinks many times over.

        Args:
            mask: ``(h, w)`` in ``[0, 1]``, covering the whole photo at its own resolution.
            photo_size_hw: the photo's ``(H, W)``.
        """
        levels = np.clip(np.asarray(mask, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        shape = levels.shape
        data = zlib.compress(levels.tobytes(), 1)

        def load() -> np.ndarray:
            raw = np.frombuffer(zlib.decompress(data), np.uint8).reshape(shape)
            return raw.astype(np.float32) / 255.0

        return cls((int(photo_size_hw[0]), int(photo_size_hw[1])), load)

    def photo_H_mask(self, mask_hw: tuple[int, int]) -> np.ndarray:
        """``(3, 3)`` pixel matrix from a mask of ``mask_hw`` to the photo."""
        return resize_matrix(mask_hw, self.photo_size_hw)


@dataclass(frozen=True)
class Cutout:
    """What a frame job does after the warp (:class:`~alignimate.pipeline.frame_writer.FrameJob`):
    keep ``mask``'s subject, put ``fill`` (:data:`PERSON_FILLS`) elsewhere, edge feathered by a
    Gaussian of ``feather`` output pixels."""

    mask: SubjectMask
    fill: str
    feather: float = FEATHER_SIGMA

    def __post_init__(self) -> None:
        if self.fill not in PERSON_FILLS:
            raise ValueError(f"fill must be one of {', '.join(PERSON_FILLS)}, got {self.fill!r}")
        if not (math.isfinite(self.feather) and self.feather >= 0):
            raise ValueError(f"feather must be a finite sigma >= 0, got {self.feather!r}")

    def apply(self, frame: Frame, frame_H_photo: np.ndarray) -> Frame:
        """The cut-out copy of a frame.

        Args:
            frame: the photo warped into the frame (layouts: :func:`cut_out`).
            frame_H_photo: ``(3, 3)`` pixel matrix that made it (docs/conventions.md).

        Returns:
            the copy. Raises :class:`~alignimate.io.PhotoError` when the mask cannot be loaded.
        """
        mask = self.mask.load()
        frame_H_mask = np.asarray(frame_H_photo, dtype=np.float64) @ self.mask.photo_H_mask(mask.shape)
        return cut_out(frame, mask, frame_H_mask, self.fill, feather=self.feather)


def cutout_signature(fill: str, digest: str | None, feather: float = FEATHER_SIGMA) -> dict[str, Any]:
    """What changes a cut-out frame besides its warp, for the frame's signature.

    A resumed run rewrites a frame whose cut-out changed.

    Args:
        fill: what replaces the background (:data:`PERSON_FILLS`).
        digest: what identifies the mask beyond the photo (:attr:`SubjectMask.digest`).
        feather: the edge's Gaussian sigma, output pixels.
    """
    return {"fill": fill, "feather": feather, "mask": digest}


def render_background(fill: str) -> str:
    """The ``render_frame`` background to warp the photo with before cutting out with ``fill``."""
    if fill not in PERSON_FILLS:
        raise ValueError(f"fill must be one of {', '.join(PERSON_FILLS)}, got {fill!r}")
    return _UNDER[fill]


def frame_mask(
    mask: np.ndarray,
    frame_H_mask: np.ndarray,
    out_size: tuple[int, int],
    feather: float = FEATHER_SIGMA,
) -> np.ndarray:
    """The mask as it lies on the frame: ``(h, w)`` float32 in ``[0, 1]``.

    Args:
        mask: ``(h_m, w_m)`` soft mask in ``[0, 1]``.
        frame_H_mask: ``(3, 3)`` pixel matrix from the mask to the frame (docs/conventions.md).
        out_size: ``(h, w)`` of the frame.
        feather: sigma of the Gaussian edge, frame pixels (0: the bilinear warp alone).
    """
    h, w = int(out_size[0]), int(out_size[1])
    source = _mask_tensor(mask)
    out = np.empty((h, w), np.float32)
    with torch.inference_mode():
        for y0 in range(0, h, _BAND_ROWS):
            y1 = min(y0 + _BAND_ROWS, h)
            out[y0:y1] = _mask_band(source, frame_H_mask, y0, y1, w, feather).numpy()
    return out


def cut_out(
    frame: Frame,
    mask: np.ndarray,
    frame_H_mask: np.ndarray,
    fill: str,
    *,
    feather: float = FEATHER_SIGMA,
) -> Frame:
    """``frame`` where the mask is, ``fill`` elsewhere, blended by the feathered mask ``m``:
    ``m * frame + (1 - m) * fill``, rounded; for ``transparent`` the colours stay and alpha is
    ``m * 255``.

    Args:
        frame: uint8, a numpy ``(h, w, C)`` array or CPU torch planes ``(C, h, w)`` (as
            :func:`~alignimate.pipeline.render.render_frame` makes them); C = 3, or 4 where alpha is
            the photo's coverage, which then multiplies the mask.
        mask: ``(h_m, w_m)`` soft mask in ``[0, 1]`` of the subject.
        frame_H_mask: ``(3, 3)`` pixel matrix from the mask to the frame.
        fill: one of :data:`PERSON_FILLS`.
        feather: sigma of the Gaussian edge, frame pixels.

    Returns:
        A new frame in ``frame``'s layout, with 4 channels for ``transparent`` and 3 otherwise.
    """
    if fill not in PERSON_FILLS:
        raise ValueError(f"fill must be one of {', '.join(PERSON_FILLS)}, got {fill!r}")
    planar = isinstance(frame, torch.Tensor)
    pixels = frame.permute(1, 2, 0).numpy() if planar else np.asarray(frame)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"frame must be uint8 with 3 or 4 channels, got {pixels.dtype} {pixels.shape}")
    h, w = pixels.shape[:2]
    out = np.empty((h, w, 4 if fill == "transparent" else 3), np.uint8)
    source = _mask_tensor(mask)
    with torch.inference_mode():
        # The fill's own weights use the unfeathered mask: the feather's fringe is still the subject.
        small_fill = _blurred_background(pixels, source, frame_H_mask, 0.0) if fill == "blur" else None
        for y0, y1, m in _mask_bands(pixels, source, frame_H_mask, feather):
            _compose_band(pixels[y0:y1, :, :3], m, fill, small_fill, (y0, y1), (h, w), out[y0:y1])
    return torch.from_numpy(out).permute(2, 0, 1) if planar else out


def _mask_tensor(mask: np.ndarray) -> torch.Tensor:
    values = np.asarray(mask, dtype=np.float32)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"mask must be a non-empty (h, w) array, got shape {values.shape}")
    return torch.from_numpy(np.ascontiguousarray(values))[None, None]


def _mask_band(
    source: torch.Tensor,
    frame_H_mask: np.ndarray,
    y0: int,
    y1: int,
    w: int,
    feather: float,
) -> torch.Tensor:
    """Frame rows ``y0:y1`` of the feathered mask, ``(y1 - y0, w)`` float32 in ``[0, 1]``."""
    # The band is warped with a margin of the Gaussian's radius on every side (past the frame's edges
    # too, where the mask goes on), so the blur of the kept part never reads padding.
    r = math.ceil(3 * feather) if feather > 0 else 0
    size = (y1 - y0 + 2 * r, w + 2 * r)
    band_H_mask = translation(r, r - y0) @ np.asarray(frame_H_mask, dtype=np.float64)
    matrix = torch.as_tensor(band_H_mask, dtype=torch.float32)[None]
    # Past the photo's edge the subject goes on unseen (edge-extended), so a subject the photo cuts
    # off is not feathered away along that edge; the photo's own extent then cuts it as sharply as
    # the warp of the photo does.
    warped, inside = warp_perspective(
        source, matrix, size, padding_mode="border", return_mask=True, exact_integer_shifts=False
    )
    if r > 0:
        warped = gaussian_blur2d(warped, None, float(feather), border_type="replicate")
    kept = (slice(r, r + y1 - y0), slice(r, r + w))
    return (warped[0, 0][kept] * inside[0, 0][kept]).clamp_(0.0, 1.0)


def _mask_bands(
    pixels: np.ndarray, source: torch.Tensor, frame_H_mask: np.ndarray, feather: float
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(y0, y1, m)`` for every band of frame rows: the feathered mask there, times the photo's
    coverage where the frame has an alpha channel."""
    h, w = pixels.shape[:2]
    for y0 in range(0, h, _BAND_ROWS):
        y1 = min(y0 + _BAND_ROWS, h)
        m = _mask_band(source, frame_H_mask, y0, y1, w, feather)
        if pixels.shape[2] == 4:
            m = m * torch.from_numpy(pixels[y0:y1, :, 3].astype(np.float32) / 255.0)
        yield y0, y1, m


def _blurred_background(
    pixels: np.ndarray, source: torch.Tensor, frame_H_mask: np.ndarray, feather: float
) -> torch.Tensor:
    """The blurred fill at 1/BLUR_FACTOR of the frame size, ``(1, 3, hs, ws)`` in grey levels.

    A normalised convolution: the background's colours, weighted by ``1 - m``, are summed over
    blocks of BLUR_FACTOR x BLUR_FACTOR frame pixels and blurred, then divided by the blurred
    weights, so the subject's colours never bleed into the fill (no halo); where almost no background
    is within reach (deep inside the subject, which covers the spot anyway) the plain blur is used.
    Summing blocks at full resolution, rather than shrinking the frame first, keeps a block that
    straddles the edge from mixing the subject's colours in."""
    h, w = pixels.shape[:2]
    f = BLUR_FACTOR
    hs, ws = -(-h // f), -(-w // f)
    # Channels: the weighted colours (3), the weights, the plain colours (3), the pixel count.
    sums = torch.zeros((8, hs, ws))
    for y0, y1, m in _mask_bands(pixels, source, frame_H_mask, feather):
        colours = torch.from_numpy(pixels[y0:y1, :, :3].astype(np.float32)).permute(2, 0, 1)
        weight = (1.0 - m)[None]
        planes = torch.cat([colours * weight, weight, colours, torch.ones_like(weight)])
        padded = F.pad(planes, (0, ws * f - w, 0, -(-(y1 - y0) // f) * f - (y1 - y0)))
        blocks = padded.reshape(8, -1, f, ws, f).sum(dim=(2, 4))
        sums[:, y0 // f : y0 // f + blocks.shape[1]] += blocks
    # _BAND_ROWS is a multiple of BLUR_FACTOR, so bands never share a block row.
    sigma = max(hs, ws) / BLUR_DIVISOR
    blurred = gaussian_blur2d(sums[None], None, sigma, border_type="replicate")[0]
    share = blurred[3:4] / blurred[7:8]
    background = blurred[0:3] / blurred[3:4].clamp_min(1e-12)
    plain = blurred[4:7] / blurred[7:8]
    return torch.where(share > _MIN_BACKGROUND_SHARE, background, plain)[None]


def _compose_band(
    rgb: np.ndarray,
    m: torch.Tensor,
    fill: str,
    small_fill: torch.Tensor | None,
    rows: tuple[int, int],
    size: tuple[int, int],
    out: np.ndarray,
) -> None:
    """Write one band of the cut-out frame into ``out`` ``(y1 - y0, w, C)`` uint8."""
    y0, y1 = rows
    weight = m[..., None]
    if fill == "transparent":
        out[..., :3] = rgb
        np.copyto(out[..., 3], (m * 255.0 + 0.5).numpy(), casting="unsafe")
        return
    values = torch.from_numpy(rgb.astype(np.float32)) * weight
    if fill == "white":
        values += (1.0 - weight) * 255.0
    elif fill == "blur":
        assert small_fill is not None
        # Block centres: small pixel i covers frame pixels f i .. f i + f - 1.
        f = BLUR_FACTOR
        band_H_small = translation(0, -y0) @ np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1.0]])
        matrix = torch.as_tensor(band_H_small, dtype=torch.float32)[None]
        background = warp_perspective(
            small_fill, matrix, (y1 - y0, size[1]), padding_mode="border", exact_integer_shifts=False
        )[0].permute(1, 2, 0)
        values += (1.0 - weight) * background
    # The +0.5 makes the truncating cast round.
    np.copyto(out, values.clamp_(0.0, 255.0).add_(0.5).numpy(), casting="unsafe")
