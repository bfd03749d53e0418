"""``animate``: a folder of aligned frames to an MP4, WebM or GIF.

Frame order comes from the folder's transforms.json when there is one (the order of the run,
e.g. by capture date), else natural file-name order. Frames are loaded one at a time, so memory
does not grow with the number of photos.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from alignimate.io import (
    AnimationInfo,
    LazyFrames,
    PhotoError,
    draw_caption,
    exif_datetime,
    find_images,
    format_caption,
    read_image,
    write_animation,
)
from alignimate.pipeline.records import read_transforms
from alignimate.pipeline.register_folder import TRANSFORMS_NAME, UsageError

__all__ = ["animate", "frame_list"]


def frame_list(frames: Path) -> list[tuple[Path, str, datetime | None]]:
    """``(frame path, photo name, capture time)`` in animation order."""
    if not frames.is_dir():
        raise UsageError(f"{frames}: not a folder")
    transforms = frames / TRANSFORMS_NAME
    if transforms.exists():
        try:
            run = read_transforms(transforms)
        except ValueError as err:
            raise UsageError(str(err)) from None
        items = []
        for record in run.photos:
            if record.output and (frames / record.output).exists():
                when = datetime.fromisoformat(record.datetime) if record.datetime else None
                items.append((frames / record.output, record.name, when))
        return items
    return [(p, p.name, exif_datetime(p)) for p in find_images(frames)]


def animate(
    frames: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    fps: float = 10.0,
    hold_first: float = 0.0,
    hold_last: float = 0.0,
    crossfade: int = 0,
    caption: str = "none",
    caption_format: str | None = None,
    boomerang: bool = False,
    quality: float = 75,
    scale: float = 1.0,
    max_width: int | None = None,
    max_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> AnimationInfo:
    """Write the frames in ``frames`` (a folder written by ``register``/``faces``, or any folder of
    same-size images) as an animation at ``output`` (.mp4, .webm or .gif).

    ``caption``: ``date`` | ``name`` | ``index`` | ``age:YYYY-MM-DD`` | ``none``, with
    ``caption_format`` a strftime format for dates. Returns what was written (frame count, size, fps)."""
    log = log or (lambda _msg: None)
    items = frame_list(Path(frames))
    if not items:
        raise UsageError(f"{frames}: no frames to animate")
    if caption != "none" and not (caption in ("date", "name", "index") or caption.startswith("age:")):
        raise UsageError(f"caption must be date, name, index, age:YYYY-MM-DD or none, got {caption!r}")
    total = len(items)

    def load(index: int) -> np.ndarray:
        path, name, when = items[index]
        try:
            frame = read_image(path)
        except PhotoError as err:
            raise UsageError(f"frame {err.path}: {err.reason}") from None
        text = format_caption(caption, Path(name), index, when, caption_format, total=total)
        return draw_caption(frame, text) if text else frame

    try:
        return write_animation(
            LazyFrames(list(range(total)), load),
            output,
            fps=fps,
            hold_first=hold_first,
            hold_last=hold_last,
            crossfade=crossfade,
            boomerang=boomerang,
            scale=None if scale == 1.0 else scale,
            max_width=max_width,
            max_bytes=max_bytes,
            quality=quality,
        )
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from None
