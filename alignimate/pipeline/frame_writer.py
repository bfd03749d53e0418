"""Writing many warped frames: the one frame-writing path of every job (``register``, ``apply``,
``faces``).

:class:`WarpFrame` is the stage that reads a photo and warps it
(:func:`alignimate.pipeline.render.render_frame`); :func:`write_frames` runs it on the local executor
(:func:`alignimate.pipeline.stages.run_stages`, one frame per batch) and saves the finished frames in
the calling thread, one at a time, in job order. Decoding, warping and JPEG encoding all run outside
the GIL (Pillow, numpy, torch), so on a machine with ``n`` cores about ``n`` frames are in progress at
once, while memory stays bounded: at most ``workers + 2`` frames are held at once (``workers + 1``
jobs submitted, each a decoded photo and then a finished frame, plus the one being saved), never the
whole series.

Because only the calling thread saves, and in order, a consumer that records each yielded outcome
(a checkpoint) knows exactly which frames exist: an interruption (Ctrl-C, an error while saving)
leaves every earlier frame written and recorded and no later frame written. Saves are atomic when
``save`` is (the default :func:`save_frame` is).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignimate.io import PhotoError, read_image_planes, save_image, save_image_planes
from alignimate.pipeline.render import BACKGROUNDS, read_for_scale, region_for_frame, render_frame
from alignimate.pipeline.stages import Row, RowStage, run_stages

if TYPE_CHECKING:
    # Types only: both modules import torch, which frames without a correction or cut-out never need.
    import torch

    from alignimate.pipeline.colors import ColorCorrection
    from alignimate.pipeline.cutout import Cutout

__all__ = ["FrameJob", "FrameOutcome", "WarpFrame", "default_workers", "save_frame", "write_frames"]

# More workers than this gains nothing measurable and each holds two full-resolution images.
_MAX_DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class FrameJob:
    """One frame to write: read ``source``, warp it by ``frame_H_photo`` (3x3 pixel matrix from the
    photo to the frame, docs/conventions.md) and save it at ``target``. ``key`` is the caller's own
    label (e.g. the photo's name), handed back in the outcome.

    ``size_hw`` and ``read_margin`` (both or neither): the photo's size, and that the frame needs only
    ``read_margin`` times the resolution the warp keeps, so the photo is decoded at reduced size and
    only the part the frame shows is warped (a face timeline's frame shows a small part of a large
    photo). Without them the photo is read whole, at full resolution.

    ``correction``: a colour correction applied to the finished frame
    (:class:`~alignimate.pipeline.colors.ColorCorrection`, ``--match-colors``).

    ``cutout``: the subject kept and the rest filled (:class:`~alignimate.pipeline.cutout.Cutout`,
    ``--background person``), after the colour correction, so that a solid fill stays exactly the
    fill (a correction's lookup table may move black or white)."""

    source: Path
    frame_H_photo: np.ndarray  # noqa: N815 (matrix naming convention, docs/conventions.md)
    target: Path
    key: Any = None
    size_hw: tuple[int, int] | None = None
    read_margin: float | None = None
    correction: ColorCorrection | None = None
    cutout: Cutout | None = None


@dataclass(frozen=True)
class FrameOutcome:
    """What happened to a job: ``error`` is ``None`` when the frame was written, else the reason the
    photo could not be read (the other frames are not affected)."""

    job: FrameJob
    error: PhotoError | None = None

    @property
    def written(self) -> bool:
        return self.error is None


def save_frame(path: Path, frame: np.ndarray | torch.Tensor) -> None:
    """Save a frame as :func:`~alignimate.pipeline.render.render_frame` made it: ``(C, h, w)`` planes
    or an ``(h, w, C)`` numpy array (atomic, format from the suffix)."""
    if isinstance(frame, np.ndarray):
        save_image(path, frame)
    else:
        save_image_planes(path, frame)


def default_workers() -> int:
    """Worker threads used when none are asked for: one per CPU core, at most 4."""
    return max(1, min(_MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def write_frames(
    jobs: Iterable[FrameJob],
    out_size: tuple[int, int],
    *,
    background: str = "black",
    device: torch.device | str = "cpu",
    workers: int | None = None,
    read: Callable[[Path], np.ndarray | torch.Tensor] = read_image_planes,
    save: Callable[[Path, Any], object] = save_frame,
) -> Iterator[FrameOutcome]:
    """Read, warp (``out_size=(h, w)``, ``background``, ``device`` as in
    :func:`~alignimate.pipeline.render.render_frame`) and save every job; yields one
    :class:`FrameOutcome` per job, in job order, right after its frame was saved.

    ``read(path)`` returns a uint8 photo, ``(3, H, W)`` planes (the default, the fast path) or an
    ``(H, W, 3)`` array, or raises :class:`~alignimate.io.PhotoError` (reported in the outcome);
    ``save(path, frame)`` writes a frame, which has the photo's layout. ``workers`` read and warp in
    parallel (default :func:`default_workers`); saving happens in the calling thread. Any other
    exception (from ``read``, the warp or ``save``) stops the run and propagates; stopping early
    (an exception, or closing the generator) cancels the jobs not started and saves nothing more.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    count = default_workers() if workers is None else workers
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    stage = WarpFrame((int(out_size[0]), int(out_size[1])), background, device, read)
    for batch in run_stages(({"job": job} for job in jobs), [stage], batch_size=1, workers=count):
        job, frame = batch["job"][0], batch.get("frame", [None])[0]
        if frame is None:
            yield FrameOutcome(job, batch["error"][0])
            continue
        save(job.target, frame)
        del frame, batch  # a full-resolution frame: do not keep it while waiting for the next one
        yield FrameOutcome(job)


class WarpFrame(RowStage):
    """The stage that makes a frame: row ``{"job": FrameJob}`` -> ``{"frame": ...}``, the warped photo
    in the layout ``read`` gives (:func:`~alignimate.pipeline.render.render_frame`), or the row
    skipped with the reason the photo (or its subject mask) could not be read (and the
    :class:`~alignimate.io.PhotoError` in ``error``)."""

    def __init__(
        self,
        out_size: tuple[int, int],
        background: str = "black",
        device: torch.device | str = "cpu",
        read: Callable[[Path], np.ndarray | torch.Tensor] = read_image_planes,
    ) -> None:
        self.out_size, self.background, self.device, self.read = out_size, background, device, read

    def process(self, row: Row) -> Row:
        job: FrameJob = row["job"]
        try:
            frame = self._warp(job)
            if job.correction is not None:
                frame = job.correction.apply(frame)
            if job.cutout is not None:
                frame = job.cutout.apply(frame, job.frame_H_photo)
        except PhotoError as err:  # the photo, or its subject mask
            return {"status": "skipped", "reason": err.reason, "error": err}
        return {"frame": frame}

    def _warp(self, job: FrameJob) -> np.ndarray | torch.Tensor:
        if job.read_margin is None or job.size_hw is None:
            photo, frame_H_photo = self.read(job.source), job.frame_H_photo
        else:
            frame_H_photo = np.asarray(job.frame_H_photo, dtype=np.float64)
            scale = float(np.sqrt(abs(np.linalg.det(frame_H_photo[:2, :2]))))
            small, small_H_photo = read_for_scale(job.source, job.size_hw, scale, job.read_margin)
            photo, frame_H_photo = region_for_frame(
                small, frame_H_photo @ np.linalg.inv(small_H_photo), self.out_size
            )
        return render_frame(
            photo, frame_H_photo, self.out_size, background=self.background, device=self.device
        )
