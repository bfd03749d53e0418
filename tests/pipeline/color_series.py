"""Aligned colour series with known flicker and drift, built from ``sample_data/``, and what a user
would check on them: the frame-to-frame spread of the shared region's mean colour, and how much of
a slow drift survives. Used by tests/pipeline/test_colors.py and by ``benchmarks/colors.py``.

A series is built in three steps:

1. **Aligned frames.** Every sample frame is warped back onto a common canvas with its ground-truth
   matrix (faces: the 512 x 512 source photo's pixels; scenes: the reference frame's 360 x 480), so
   the shared area lines up as it would after ``faces`` or ``register``.
2. **Flattened.** The sample frames' own lighting (``gain``, ``bias``, ``gamma``, ``colour_cast`` in
   ``ground_truth.json``) is inverted, so every frame shows the same colours up to noise, JPEG and
   clipping: the only colour changes left are the ones added next, and they are known.
3. **Drift and flicker.** A slow drift ``D_k`` (over the series, exposure rises by ``drift_exposure``
   and the white balance warms: red up and blue down by ``drift_warmth``), then per-frame random
   flicker ``N_k``: exposure gain ``exp(U(-0.2, 0.2))``, per-channel white balance ``U(0.93, 1.07)``,
   offset ``U(-0.04, 0.04)``, gamma ``exp(U(-0.15, 0.15))``. Frame ``k`` is ``N_k(D_k(F_k))``,
   rounded to uint8; ``D_k(F_k)``, without flicker, is kept as the ideal.

The shared area: for faces an ellipse around the five landmarks (the face region in the template
frame); for scenes the canvas pixels every frame covers, 2 px in from the edge. The low-resolution
frames and masks the estimate sees are 4 x 4 block means of the full-resolution ones (a mask block
counts when fully inside).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate.core import warp_perspective

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
FACE_CANVAS = (512, 512)
LOW_RES_FACTOR = 4


@dataclass
class ColorSeries:
    """An aligned series: ``frames`` (uint8 ``(h, w, 3)``, full resolution), the ideal frames without
    flicker (float in ``[0, 1]``), the shared ``mask`` ``(h, w)`` bool and their low-resolution
    versions."""

    name: str
    frames: list[np.ndarray]
    ideal: list[np.ndarray]
    mask: np.ndarray
    low_frames: list[np.ndarray]
    low_mask: np.ndarray


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def _warp(
    image: np.ndarray, canvas_H_image: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(warped (h, w, 3), covered (h, w) bool)``: bilinear, covered where the sample lies inside."""
    tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    matrix = torch.from_numpy(np.asarray(canvas_H_image, dtype=np.float64)).unsqueeze(0)
    warped, inside = warp_perspective(tensor, matrix, size, return_mask=True)
    return warped[0].permute(1, 2, 0).numpy(), inside[0, 0].numpy() > 0.5


def _flatten(values: np.ndarray, entry: dict) -> np.ndarray:
    """Undo the sample lighting ``clip(gain * cast * x + bias) ** gamma`` (sample_data/README.md)."""
    lit = np.clip(values, 0.0, 1.0) ** (1.0 / entry["gamma"])
    return np.clip((lit - entry["bias"]) / (entry["gain"] * np.asarray(entry["colour_cast"])), 0.0, 1.0)


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(pixels):
        shrunk = out.copy()
        shrunk[1:] &= out[:-1]
        shrunk[:-1] &= out[1:]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        out = shrunk
    return out


def _face_region(truth: dict) -> np.ndarray:
    """An ellipse over the face in the source photo's pixels: centred on the five landmarks' mean,
    one eye distance wide to each side and 1.35 high (brows to chin)."""
    points = np.array(list(truth["landmarks_source"].values()))
    eyes = points[:2]
    centre = points.mean(axis=0)
    d = float(np.linalg.norm(eyes[1] - eyes[0]))
    ys, xs = np.mgrid[0 : FACE_CANVAS[0], 0 : FACE_CANVAS[1]]
    return ((xs - centre[0]) / d) ** 2 + ((ys - centre[1]) / (1.35 * d)) ** 2 <= 1.0


def aligned_flat_frames(kind: str) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """``(flattened aligned frames, shared mask, aligned frames as shipped)`` of ``faces`` or
    ``scenes``; frames float ``(h, w, 3)`` in ``[0, 1]``."""
    folder = SAMPLES / kind
    truth = json.loads((folder / "ground_truth.json").read_text())
    flat, shipped, covered_all = [], [], None
    if kind == "faces":
        entries = [e for e in truth["frames"] if e["expected"] == "kept"]
        size = FACE_CANVAS
        region = _face_region(truth)
    elif kind == "scenes":
        entries = truth["frames"]
        size = tuple(truth["frame_size"])
        region = np.ones(size, bool)
    else:
        raise ValueError(kind)
    for entry in entries:
        to_frame = entry["frame_H_source"] if kind == "faces" else entry["frame_H_reference"]
        warped, covered = _warp(_read(folder / entry["file"]), np.linalg.inv(to_frame), size)
        shipped.append(warped)
        flat.append(_flatten(warped, entry))
        covered_all = covered if covered_all is None else covered_all & covered
    mask = _erode(covered_all, 2) & region
    return flat, mask, shipped


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    h, w = values.shape[0] // factor, values.shape[1] // factor
    trimmed = values[: h * factor, : w * factor]
    return trimmed.reshape(h, factor, w, factor, *values.shape[2:]).mean(axis=(1, 3))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


def _detrended(values: np.ndarray) -> np.ndarray:
    """``values`` ``(N, ...)`` less their least-squares line over the index: flicker with no trend."""
    k = np.arange(len(values), dtype=np.float64)
    flat = values.reshape(len(values), -1)
    slope, intercept = np.polyfit(k, flat, 1)
    return (flat - (k[:, None] * slope + intercept)).reshape(values.shape)


def make_series(
    kind: str,
    seed: int,
    *,
    frames: int = 42,
    drift_exposure: float = 0.25,
    drift_warmth: float = 0.10,
    flicker: bool = True,
) -> ColorSeries:
    """A series of ``frames`` frames of ``kind`` (``faces`` or ``scenes``; the sample frames in turn)
    with the drift and, unless ``flicker=False``, flicker drawn from ``numpy.random.default_rng(seed)``.

    The flicker's parameters (log gain, log white balance, offset, log gamma) have their linear trend
    over the series removed, so that the drift is the series' only trend and what survives of it can
    be measured (:func:`drift_kept`). See the module docstring."""
    flat, mask, _ = aligned_flat_frames(kind)
    rng = np.random.default_rng(seed)
    log_gain = _detrended(rng.uniform(-0.2, 0.2, frames))
    log_balance = _detrended(np.log(rng.uniform(0.93, 1.07, (frames, 3))))
    offset = _detrended(rng.uniform(-0.04, 0.04, frames))
    log_gamma = _detrended(rng.uniform(-0.15, 0.15, frames))
    out, ideal = [], []
    for k in range(frames):
        t = k / (frames - 1) - 0.5  # -0.5 .. 0.5 over the series
        exposure = 1.0 + drift_exposure * t
        warmth = np.array([1.0 + drift_warmth * t, 1.0, 1.0 - drift_warmth * t])
        drifted = np.clip(flat[k % len(flat)] * exposure * warmth, 0.0, 1.0)
        ideal.append(drifted)
        lit = drifted
        if flicker:
            gain = np.exp(log_gain[k] + log_balance[k])
            lit = np.clip(drifted * gain + offset[k], 0.0, 1.0) ** np.exp(log_gamma[k])
        out.append(_to_uint8(lit))
    return _finish(kind, out, ideal, mask)


def shipped_series(kind: str) -> ColorSeries:
    """The aligned sample frames as they ship: their own lighting is the only colour change."""
    _, mask, shipped = aligned_flat_frames(kind)
    return _finish(f"{kind} as shipped", [_to_uint8(v) for v in shipped], shipped, mask)


def _finish(name: str, frames: list[np.ndarray], ideal: list[np.ndarray], mask: np.ndarray) -> ColorSeries:
    low_frames = [_to_uint8(_block_mean(f.astype(np.float64) / 255.0, LOW_RES_FACTOR)) for f in frames]
    low_mask = _block_mean(mask.astype(np.float64), LOW_RES_FACTOR) >= 1.0
    return ColorSeries(name, frames, ideal, mask, low_frames, low_mask)


# ------------------------------------------------------------------------------------------------
# what a user checks
# ------------------------------------------------------------------------------------------------


def mean_colours(frames: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """``(N, 3)`` mean colour of the shared region of each frame, in grey levels (0-255)."""
    scale = 1.0 if frames[0].dtype == np.uint8 else 255.0
    return np.stack([f[mask].astype(np.float64).mean(axis=0) * scale for f in frames])


def frame_to_frame_spread(means: np.ndarray) -> float:
    """RMS change of the mean colour from one frame to the next, in grey levels (over the channels)."""
    return float(np.sqrt(np.mean(np.diff(means, axis=0) ** 2)))


def trend(means: np.ndarray) -> np.ndarray:
    """``(3,)`` change of each channel's mean over the series, from a least-squares line through it."""
    k = np.arange(len(means), dtype=np.float64)
    slope = np.polyfit(k, means, 1)[0]
    return slope * (len(means) - 1)


def drift_kept(means: np.ndarray, ideal_means: np.ndarray) -> float:
    """How much of the ideal series' trend ``means`` keep: the projection of its trend on the ideal's,
    as a fraction (1 = all of it, 0 = none)."""
    got, want = trend(means), trend(ideal_means)
    return float(got @ want / (want @ want))
