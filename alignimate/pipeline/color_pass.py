"""``--match-colors``: the colour corrections of a job's frames, before they are written.

Each frame is first made small (long side :data:`SMALL_SIDE`, decoded at reduced size, with an alpha
channel where the photo covers the frame), through the same warp stage as the real frames
(:class:`~alignimate.pipeline.frame_writer.WarpFrame`); :mod:`alignimate.pipeline.colors` then
estimates each frame's correction against the reference frame over the area they share (the
coverage, times ``region`` where the job knows where the subject is: the face for ``faces``), smoothed
over the sequence. The returned jobs carry their correction, which the frame writer applies to the
full-resolution frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from alignimate.pipeline.colors import (
    MATCH_COLORS,
    ColorCorrection,
    ColorMatchSettings,
    estimate_color_corrections,
)
from alignimate.pipeline.frame_writer import FrameJob, WarpFrame
from alignimate.pipeline.render import resize_matrix
from alignimate.pipeline.stages import batch_rows, run_stages

__all__ = ["MATCH_COLORS", "SMALL_SIDE", "correction_digest", "with_color_corrections"]

# Long side of the frames the corrections are measured on: tens of thousands of pixels are plenty for
# a per-channel gain or histogram, and decoding that small is almost free for JPEG.
SMALL_SIDE = 256


def _small_size(out_size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, SMALL_SIDE / max(out_size))
    return max(1, round(out_size[0] * scale)), max(1, round(out_size[1] * scale))


def with_color_corrections(
    jobs: Sequence[FrameJob],
    out_size: tuple[int, int],
    method: str,
    *,
    reference: int,
    region: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    workers: int = 1,
) -> list[FrameJob]:
    """``jobs`` (every frame of the series, in order; each with ``size_hw``) with their colour
    ``correction`` set (:mod:`alignimate.pipeline.colors`; ``method`` ``"gain"`` or ``"histogram"``).

    Args:
        out_size: ``(h, w)`` of the frames.
        reference: index of the reference frame in ``jobs``.
        region: optional ``(h, w)`` weights on the frame (at ``out_size``) of where the subject is;
            it is resized to the small frames.
    A frame whose photo cannot be read gets no correction (the writer reports the photo)."""
    if method == "none" or not jobs:
        return list(jobs)
    small = _small_size(out_size)
    small_H_frame = resize_matrix(out_size, small)
    small_jobs = [
        dataclasses.replace(
            job, frame_H_photo=small_H_frame @ np.asarray(job.frame_H_photo), read_margin=1.5, correction=None
        )
        for job in jobs
    ]
    stage = WarpFrame(small, "transparent", device)
    frames: list[np.ndarray | None] = []
    for batch in run_stages(({"job": job} for job in small_jobs), [stage], batch_size=1, workers=workers):
        frames.extend(row.get("frame") for row in batch_rows(batch))
    if frames[reference] is None:
        return list(jobs)
    mask = None
    if region is not None:
        region_t = torch.as_tensor(np.asarray(region, dtype=np.float32))[None, None]
        mask = torch.nn.functional.interpolate(region_t, size=small, mode="area")[0, 0].numpy()
    corrections = estimate_color_corrections(
        frames, mask, ColorMatchSettings(method=method, reference=reference)
    )
    return [dataclasses.replace(job, correction=c) for job, c in zip(jobs, corrections, strict=True)]


def correction_digest(correction: ColorCorrection | None) -> str | None:
    """A short digest of a correction's lookup table, for a frame's signature (a resumed run rewrites a
    frame whose correction changed)."""
    if correction is None:
        return None
    return hashlib.sha256(correction.lut.tobytes()).hexdigest()[:16]
