"""Consistent colour across a series: per-frame corrections that take out exposure and white-balance
flicker and keep slow real changes (a tan, the seasons).

Each frame's colours are first mapped onto the reference frame's over the area they share: ``A_k``,
either a per-channel gain and offset fitted by least squares over corresponding pixels (``"gain"``)
or per-channel histogram matching (``"histogram"``). The maps are then smoothed over the frame index
into ``S_k``, a Gaussian-weighted local linear fit (``sigma`` in frames), which follows what changes
slowly and averages the flicker away; a linear drift passes through it unchanged, at the ends of the
series too. Frame ``k`` is corrected by ``C_k = S_k^-1 o A_k``: taken to the reference's colours,
then back by the slow part alone. Without smoothing (``sigma=None``) every frame is matched to the
reference outright, ``C_k = A_k``, and slow changes go with the flicker.

The maps are estimated on the aligned frames at low resolution (the shared area must line up, and a
few tens of thousands of pixels are plenty); a correction is a 256-entry lookup per channel, applied
to the full-resolution uint8 frame by indexing alone (:meth:`ColorCorrection.apply`).

Nothing here knows how a job runs: lists in, lists out. A job that streams its frames calls
:func:`measure_color_maps` chunk by chunk (holding only the reference frame) and
:func:`corrections_from_maps` once every map is known; :func:`estimate_color_corrections` does both.
A frame that is missing (``None``) or shares too little with the reference gets no map, takes no
part in the smoothing and is left as it is (:meth:`ColorCorrection.identity`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignimate.core.color_match import (
    DEFAULT_CLIP_MARGIN,
    apply_lut_uint8,
    fit_gain_offset,
    gain_offset_lut,
    histogram_lut,
    invert_lut,
)
from alignimate.settings import MATCH_COLORS

__all__ = [
    "MATCH_COLORS",
    "ColorCorrection",
    "ColorMap",
    "ColorMatchSettings",
    "corrections_from_maps",
    "estimate_color_corrections",
    "measure_color_maps",
]

_LEVELS = 256
# A frame sharing fewer pixels than this with the reference gets no map: a histogram or a gain fit
# from a handful of pixels would be noise.
_MIN_SHARED_PIXELS = 64
# Frames handed to the core ops at once by measure_color_maps.
_CHUNK = 16
# Gaussian weights are cut at this many sigmas (beyond, they are below 3e-4 of the centre's).
_TRUNCATE = 4.0
# The local linear fit needs neighbours spread along the index; with less spread than this (in
# frames, as a weighted standard deviation) the weighted mean is used instead.
_MIN_INDEX_SPREAD = 0.5
# A smoothed gain below this is taken as no estimate (the reference map's own gain is 1).
_MIN_GAIN = 1e-3

Frame = np.ndarray | torch.Tensor
Mask = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class ColorMatchSettings:
    """How to match colours across a series.

    ``method``: ``"none"``, ``"gain"`` (per-channel gain and offset) or ``"histogram"``.
    ``reference``: index of the reference frame in the sequence.
    ``sigma``: the smoothing over the frame index, in frames: changes slower than a few ``sigma``
    are kept, faster ones removed; ``None`` matches every frame to the reference outright.
    ``clip_margin``: for ``"gain"``, values within this of 0 or 1 count as clipped and are left out
    of the fit (:func:`alignimate.core.color_match.fit_gain_offset`).
    """

    method: str = "gain"
    reference: int = 0
    sigma: float | None = 3.0
    clip_margin: float = DEFAULT_CLIP_MARGIN

    def __post_init__(self) -> None:
        if self.method not in MATCH_COLORS:
            raise ValueError(f"method must be one of {', '.join(MATCH_COLORS)}, got {self.method!r}")
        if isinstance(self.reference, bool) or not isinstance(self.reference, int) or self.reference < 0:
            raise ValueError(f"reference must be a frame index (int >= 0), got {self.reference!r}")
        if self.sigma is not None and not (isinstance(self.sigma, int | float) and 0 < self.sigma < math.inf):
            raise ValueError(f"sigma must be a positive number of frames or None, got {self.sigma!r}")
        if not 0.0 <= self.clip_margin < 0.5:
            raise ValueError(f"clip_margin must be in [0, 0.5), got {self.clip_margin!r}")


@dataclass(frozen=True)
class ColorMap:
    """How one frame's colours map onto the reference's over the shared area, before smoothing.

    ``method`` ``"gain"``: ``params`` is ``(3, 2)``, each channel's ``(gain, offset)`` on values in
    ``[0, 1]``. ``"histogram"``: ``params`` is a ``(3, 256)`` LUT of values in ``[0, 1]`` (entry
    ``i`` is the output for grey level ``i``)."""

    method: str
    params: np.ndarray


@dataclass(frozen=True)
class ColorCorrection:
    """One frame's colour correction: ``lut`` ``(3, 256)`` uint8, the new value of each grey level of
    R, G and B. ``gain`` and ``offset`` (on values in ``[0, 1]``) are kept for a ``"gain"`` correction,
    for reports; the LUT is what is applied."""

    lut: np.ndarray
    gain: tuple[float, float, float] | None = None
    offset: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        given = np.asarray(self.lut)
        if given.shape != (3, _LEVELS):
            raise ValueError(f"lut must have shape (3, {_LEVELS}), got {given.shape}")
        if given.dtype != np.uint8 and not np.all((given >= 0) & (given <= 255) & (given == np.round(given))):
            raise ValueError("lut must hold grey levels: whole numbers from 0 to 255")
        lut = np.array(given, dtype=np.uint8, copy=True)
        lut.flags.writeable = False
        object.__setattr__(self, "lut", lut)

    @classmethod
    def identity(cls) -> ColorCorrection:
        """The correction that changes nothing."""
        return cls(np.tile(np.arange(_LEVELS, dtype=np.uint8), (3, 1)))

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.lut, np.tile(np.arange(_LEVELS, dtype=np.uint8), (3, 1))))

    def apply(self, frame: Frame) -> Frame:
        """The corrected copy of a uint8 frame, in the frame's layout: a numpy ``(H, W, C)`` array or
        CPU torch planes ``(C, H, W)`` (as :func:`alignimate.pipeline.render.render_frame` makes
        them), ``C`` = 3 (RGB) or 4 (RGBA; alpha is kept). The frame itself is not modified."""
        planar = isinstance(frame, torch.Tensor)
        if planar:
            if frame.dtype != torch.uint8 or frame.dim() != 3 or frame.shape[0] not in (3, 4):
                raise ValueError(
                    f"frame planes must be uint8 (3|4, H, W), got {frame.dtype} {tuple(frame.shape)}"
                )
            planes = frame
        else:
            if not isinstance(frame, np.ndarray):
                raise TypeError(f"frame must be a numpy array or torch planes, got {type(frame).__name__}")
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
                raise ValueError(f"frame must be a uint8 (H, W, 3|4) array, got {frame.dtype} {frame.shape}")
            # torch cannot wrap a read-only array (e.g. np.asarray of a PIL image) without a warning;
            # the frames render_frame makes are writable, so only such inputs pay for a copy.
            planes = torch.from_numpy(frame if frame.flags.writeable else frame.copy()).permute(2, 0, 1)
        table = self.lut
        if planes.shape[0] == 4:
            table = np.concatenate([table, np.arange(_LEVELS, dtype=np.uint8)[None]])
        out = apply_lut_uint8(planes.unsqueeze(0), torch.from_numpy(table.copy()).unsqueeze(0))[0]
        return out if planar else out.permute(1, 2, 0).numpy()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for run records); :meth:`from_json` reads it back."""
        out: dict[str, Any] = {"lut": self.lut.tolist()}
        if self.gain is not None and self.offset is not None:
            out["gain"] = [round(v, 6) for v in self.gain]
            out["offset"] = [round(v, 6) for v in self.offset]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColorCorrection:
        """The correction :meth:`to_json` wrote; ``ValueError`` when ``data`` is not one."""
        try:
            lut = np.asarray(data["lut"])
            if lut.shape != (3, _LEVELS) or not np.all((lut >= 0) & (lut <= 255) & (lut == np.round(lut))):
                raise ValueError
            gain, offset = data.get("gain"), data.get("offset")
            if (gain is None) != (offset is None):
                raise ValueError
            if gain is not None:
                gain = tuple(float(v) for v in gain)
                offset = tuple(float(v) for v in offset)
                if len(gain) != 3 or len(offset) != 3:
                    raise ValueError
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                "not a colour correction: expected {'lut': 3 x 256 grey levels[, 'gain', 'offset']}"
            ) from err
        return cls(lut.astype(np.uint8), gain, offset)


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------


def _frame_tensor(frame: Frame, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``((3, h, w) float64 in [0, 1], alpha (1, h, w) weights or None)`` of a frame."""
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"frame {index} must be an (h, w, 3|4) array, got shape {frame.shape}")
        planes = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    elif isinstance(frame, torch.Tensor):
        if frame.dim() != 3 or frame.shape[0] not in (3, 4):
            raise ValueError(f"frame {index} must be (3|4, h, w) planes, got shape {tuple(frame.shape)}")
        planes = frame.detach().cpu()
    else:
        raise TypeError(f"frame {index} must be a numpy array or a torch tensor, got {type(frame).__name__}")
    if planes.dtype == torch.uint8:
        values = planes.to(torch.float64) / 255.0
    elif planes.is_floating_point():
        values = planes.to(torch.float64)
    else:
        raise TypeError(f"frame {index} must be uint8 or floating point in [0, 1], got {planes.dtype}")
    alpha = values[3:4] if values.shape[0] == 4 else None
    return values[:3], alpha


def _mask_tensor(mask: Mask | None, size: tuple[int, int], index: int) -> torch.Tensor | None:
    """``(1, h, w)`` float64 weights of a mask (bool or nonnegative numbers), or ``None`` for all."""
    if mask is None:
        return None
    m = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"mask {index} must be a numpy array or a torch tensor, got {type(mask).__name__}")
    m = m.detach().cpu().to(torch.float64)
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != size:
        raise ValueError(f"mask {index} must have the frame's shape {size}, got {tuple(m.shape)}")
    return m.clamp_min(0).unsqueeze(0)


def _masks_for(masks: Mask | Sequence[Mask | None] | None, count: int) -> list[Mask | None]:
    """One mask (or ``None``) per frame from a shared mask or a per-frame sequence."""
    if masks is None or isinstance(masks, np.ndarray | torch.Tensor):
        return [masks] * count
    listed = list(masks)
    if len(listed) != count:
        raise ValueError(f"masks must be one mask or one per frame ({count}), got {len(listed)}")
    return listed


def _weighted(weight: torch.Tensor, *factors: torch.Tensor | None) -> torch.Tensor:
    """``weight`` times each factor that is given (an alpha channel, a mask), in order."""
    for factor in factors:
        if factor is not None:
            weight = weight * factor
    return weight


def measure_color_maps(
    frames: Sequence[Frame | None],
    masks: Mask | Sequence[Mask | None] | None,
    reference: Frame,
    reference_mask: Mask | None = None,
    *,
    method: str = "gain",
    clip_margin: float = DEFAULT_CLIP_MARGIN,
) -> list[ColorMap | None]:
    """Map each frame's colours onto the reference's over the area both share (before smoothing).

    Args:
        frames: aligned frames at low resolution, all of the reference's size: uint8 or floating
            (values in ``[0, 1]``) numpy ``(h, w, 3|4)`` arrays or torch ``(3|4, h, w)`` planes, RGB;
            ``None`` for a frame that is missing. An alpha channel counts as part of the mask.
        masks: the shared area: one ``(h, w)`` mask for every frame, one per frame (``None`` entries
            count every pixel), or ``None``; bool or nonnegative weights (for faces, the face region
            in the template frame; for scenes, where the frame covers the canvas).
        reference: the reference frame, as a frame above.
        reference_mask: the reference's own mask, multiplied into every frame's.
        method: ``"gain"`` or ``"histogram"``.
        clip_margin: for ``"gain"``, see :func:`alignimate.core.color_match.fit_gain_offset`.

    Returns:
        one :class:`ColorMap` per frame, or ``None`` where the frame is missing or shares fewer
        than a few dozen pixels with the reference.
    """
    if method not in ("gain", "histogram"):
        raise ValueError(f"method must be 'gain' or 'histogram', got {method!r}")
    ref, ref_alpha = _frame_tensor(reference, -1)
    size = (ref.shape[1], ref.shape[2])
    ref_weight = _weighted(
        torch.ones(1, *size, dtype=torch.float64), ref_alpha, _mask_tensor(reference_mask, size, -1)
    )
    per_frame = _masks_for(masks, len(frames))
    maps: list[ColorMap | None] = [None] * len(frames)
    present = [i for i, frame in enumerate(frames) if frame is not None]
    for start in range(0, len(present), _CHUNK):
        usable: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (index, image, weight)
        for i in present[start : start + _CHUNK]:
            image, alpha = _frame_tensor(frames[i], i)  # type: ignore[arg-type]
            if (image.shape[1], image.shape[2]) != size:
                raise ValueError(f"frame {i} has size {tuple(image.shape[1:])}, the reference {size}")
            weight = _weighted(ref_weight, alpha, _mask_tensor(per_frame[i], size, i))
            if float((weight > 0).sum()) >= _MIN_SHARED_PIXELS:
                usable.append((i, image, weight))
        if not usable:
            continue
        indices, images, weights = zip(*usable, strict=True)
        batch, mask = torch.stack(images), torch.stack(weights)
        if method == "gain":
            gain, offset = fit_gain_offset(batch, ref.unsqueeze(0), mask, clip_margin=clip_margin)
            params = torch.stack([gain, offset], dim=-1).numpy()
        else:
            target = ref.unsqueeze(0).expand(len(indices), -1, -1, -1)
            params = histogram_lut(batch, target, mask, mask, levels=_LEVELS).numpy()
        for row, i in enumerate(indices):
            maps[i] = ColorMap(method, params[row].copy())
    return maps


# ------------------------------------------------------------------------------------------------
# smoothing over time
# ------------------------------------------------------------------------------------------------


def _smooth_over_index(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local linear fit of ``values`` ``(N, P)`` over the index, evaluated at every
    index, using only rows where ``valid`` ``(N,)``; the weighted mean where the neighbours are too
    few or too bunched for a line. Rows with no valid neighbour come back as NaN."""
    n = values.shape[0]
    radius = min(n - 1, math.ceil(_TRUNCATE * sigma))
    data = np.where(valid[:, None], values, 0.0)
    flags = valid.astype(np.float64)
    s0, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n)
    t0, t1 = np.zeros_like(data), np.zeros_like(data)
    for d in range(-radius, radius + 1):
        w = math.exp(-0.5 * (d / sigma) ** 2)
        lo, hi = max(0, -d), min(n, n - d)  # k in [lo, hi) has a neighbour k + d inside the series
        if lo >= hi:
            continue
        wf = w * flags[lo + d : hi + d]
        s0[lo:hi] += wf
        s1[lo:hi] += wf * d
        s2[lo:hi] += wf * d * d
        t0[lo:hi] += wf[:, None] * data[lo + d : hi + d]
        t1[lo:hi] += (wf * d)[:, None] * data[lo + d : hi + d]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = t0 / s0[:, None]
        spread_sq = s2 / s0 - (s1 / s0) ** 2
        det = s0 * s2 - s1 * s1
        line = (s2[:, None] * t0 - s1[:, None] * t1) / det[:, None]
    use_line = (s0 > 0) & (spread_sq > _MIN_INDEX_SPREAD**2)
    return np.where(use_line[:, None], line, mean)


def corrections_from_maps(
    maps: Sequence[ColorMap | None], settings: ColorMatchSettings
) -> list[ColorCorrection]:
    """Per-frame corrections from the maps of :func:`measure_color_maps`, smoothed over the index.

    Args:
        maps: one per frame, in order; None where a frame has no map (it gets the identity).
        settings: ``method`` must be the maps' method (or ``"none"``: all identities); ``sigma``
            the smoothing.

    Returns:
        one :class:`ColorCorrection` per frame, in order.
    """
    n = len(maps)
    if settings.method == "none" or n == 0:
        return [ColorCorrection.identity() for _ in range(n)]
    for i, m in enumerate(maps):
        if m is not None and m.method != settings.method:
            raise ValueError(f"map {i} was measured with {m.method!r}, the settings say {settings.method!r}")
    valid = np.array([m is not None for m in maps])
    if not valid.any():
        return [ColorCorrection.identity() for _ in range(n)]
    shape = next(m.params.shape for m in maps if m is not None)
    raw = np.stack([m.params if m is not None else np.zeros(shape) for m in maps]).astype(np.float64)
    flat = raw.reshape(n, -1)
    if settings.sigma is None:
        slow = None
    else:
        slow = _smooth_over_index(flat, valid, float(settings.sigma)).reshape(raw.shape)
    if settings.method == "gain":
        return _gain_corrections(raw, slow, valid)
    return _histogram_corrections(raw, slow, valid)


def _gain_corrections(raw: np.ndarray, slow: np.ndarray | None, valid: np.ndarray) -> list[ColorCorrection]:
    """``C_k = S_k^-1 o A_k`` for affine maps: gain ``g / s_g``, offset ``(o - s_o) / s_g``."""
    gain, offset = raw[..., 0], raw[..., 1]
    if slow is not None:
        s_gain, s_offset = slow[..., 0], slow[..., 1]
        usable = np.isfinite(s_gain) & np.isfinite(s_offset) & (s_gain > _MIN_GAIN)
        s_gain = np.where(usable, s_gain, 1.0)
        s_offset = np.where(usable, s_offset, 0.0)
        gain, offset = gain / s_gain, (offset - s_offset) / s_gain
    luts = gain_offset_lut(torch.from_numpy(gain), torch.from_numpy(offset), _LEVELS).numpy()
    out = []
    for k in range(raw.shape[0]):
        if not valid[k]:
            out.append(ColorCorrection.identity())
            continue
        lut = np.clip(np.round(luts[k] * 255.0), 0, 255).astype(np.uint8)
        out.append(ColorCorrection(lut, tuple(map(float, gain[k])), tuple(map(float, offset[k]))))
    return out


def _histogram_corrections(
    raw: np.ndarray, slow: np.ndarray | None, valid: np.ndarray
) -> list[ColorCorrection]:
    """``C_k = S_k^-1 o A_k`` for LUT maps, inverted exactly at ``A_k``'s values."""
    if slow is None:
        luts = raw
    else:
        # A local linear fit of non-decreasing curves need not be one (its weights can be negative at
        # the ends of the series): clamp to [0, 1] and make it non-decreasing before inverting.
        slow = np.maximum.accumulate(np.clip(np.nan_to_num(slow, nan=0.0), 0.0, 1.0), axis=-1)
        luts = invert_lut(torch.from_numpy(slow), torch.from_numpy(raw)).numpy()
    out = []
    for k in range(raw.shape[0]):
        if not valid[k]:
            out.append(ColorCorrection.identity())
            continue
        out.append(ColorCorrection(np.clip(np.round(luts[k] * 255.0), 0, 255).astype(np.uint8)))
    return out


def estimate_color_corrections(
    frames: Sequence[Frame | None],
    masks: Mask | Sequence[Mask | None] | None = None,
    settings: ColorMatchSettings | None = None,
) -> list[ColorCorrection]:
    """Per-frame colour corrections for an ordered series of aligned frames.

    Args:
        frames, masks: as :func:`measure_color_maps` takes them.
        settings: how to match (default :class:`ColorMatchSettings`'s defaults); the reference
            frame is ``frames[settings.reference]``.

    Returns:
        one :class:`ColorCorrection` per frame, in order (the identity for ``method="none"``, for a
        missing frame and for one that shares too little with the reference).
    """
    settings = settings or ColorMatchSettings()
    frames = list(frames)
    if settings.method == "none":
        return [ColorCorrection.identity() for _ in frames]
    if not frames:
        return []
    if settings.reference >= len(frames) or frames[settings.reference] is None:
        raise ValueError(f"reference frame {settings.reference} is not among the {len(frames)} frames")
    per_frame = _masks_for(masks, len(frames))
    # A shared mask is already in every frame's; only a per-frame one adds the reference's own.
    shared = masks is None or isinstance(masks, np.ndarray | torch.Tensor)
    maps = measure_color_maps(
        frames,
        per_frame,
        frames[settings.reference],  # type: ignore[arg-type]
        None if shared else per_frame[settings.reference],
        method=settings.method,
        clip_margin=settings.clip_margin,
    )
    return corrections_from_maps(maps, settings)
