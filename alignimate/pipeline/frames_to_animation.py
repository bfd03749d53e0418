"""A folder of aligned frames to an MP4, WebM or GIF: the service behind ``alignimate animate`` and
the animation of ``alignimate faces``.

Frame order comes from the folder's transforms.json when there is one (the order of the run,
e.g. by capture date), else natural file-name order. Frames are loaded one at a time, so memory
does not grow with the number of photos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from alignimate.errors import UsageError
from alignimate.io import (
    AnimationInfo,
    LazyFrames,
    PhotoError,
    check_fps,
    draw_caption,
    exif_datetime,
    find_images,
    format_caption,
    probe_image,
    read_image_pixels,
    write_animation,
)
from alignimate.limits import MAX_ANIMATION_SIDE
from alignimate.pipeline.exclusions import read_exclusions
from alignimate.pipeline.outputs import check_animation_target
from alignimate.pipeline.records import TRANSFORMS_NAME, read_transforms
from alignimate.settings import AnimateSettings

__all__ = ["animate", "check_animation_options", "frame_list"]


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


def _check_caption(
    caption: str, caption_format: str | None, first: tuple[Path, str, datetime | None]
) -> None:
    """Format the first frame's caption once before any work, so a bad ``caption_format`` (an
    unknown field, a broken strftime pattern) is a usage error, not a failure halfway through."""
    _, name, when = first
    try:
        text = format_caption(caption, Path(name), 0, when or datetime(2000, 1, 1), caption_format, total=1)
    except Exception as err:  # str.format and strftime raise several kinds for a bad pattern
        reason = f"{type(err).__name__}: {err}"
        if caption_format is None:
            raise UsageError(f"--caption {caption!r} cannot be used ({reason})") from None
        raise UsageError(f"--caption-format {caption_format!r} cannot be used ({reason})") from None
    if text is not None and len(text) > 1000:
        raise UsageError(f"--caption-format {caption_format!r} makes captions over 1000 characters long")


def check_animation_options(output: Path, settings: AnimateSettings) -> None:
    """Check animation settings before any work; a :class:`UsageError` names the option.

    Args:
        output: the animation file; its container limits the frame rate.
        settings: checked against their declared ranges.
    """
    settings.check()
    try:
        check_fps(settings.fps, output.suffix.lower())
    except ValueError as err:
        raise UsageError(f"--{err}") from None


def _check_animation_size(first: Path, scale: float, max_width: int | None) -> None:
    """Refuse a ``scale`` that would make frames larger than :data:`MAX_ANIMATION_SIDE` (before any
    frame is encoded), judged on the first frame's header."""
    if max_width is not None and not 16 <= max_width <= MAX_ANIMATION_SIDE:
        raise UsageError(f"--max-width must be between 16 and {MAX_ANIMATION_SIDE}, got {max_width}")
    try:
        height, width = probe_image(first).size_hw
    except PhotoError as err:
        raise UsageError(f"frame {err.path}: {err.reason}") from None
    width_out = min(width * scale, max_width or math.inf)
    height_out = height * width_out / width
    if max(width_out, height_out) > MAX_ANIMATION_SIDE:
        largest = MAX_ANIMATION_SIDE / max(width, height)
        raise UsageError(
            f"--scale {scale:g} makes {width}x{height} frames {round(width_out)}x{round(height_out)}, over "
            f"the {MAX_ANIMATION_SIDE}-pixel limit; use --scale {largest:.2f} or less, or --max-width"
        )


def animate(
    frames: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: AnimateSettings | None = None,
    *,
    max_width: int | None = None,
    max_bytes: int | None = None,
    overwrite: bool = False,
    exclude: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> AnimationInfo:
    """Write a folder of frames as an animation (.mp4, .webm or .gif).

    Args:
        frames: a folder written by ``register``/``faces``, or any folder of same-size images.
        output: the animation file.
        settings: frame rate, holds, crossfade, captions, quality, scale
            (:class:`~alignimate.settings.AnimateSettings`); ``caption``: ``date`` | ``name`` |
            ``index`` | ``age:YYYY-MM-DD`` | ``none``.
        max_width, max_bytes: as :func:`alignimate.io.animation.write_animation`.
        overwrite: replace an existing file at ``output`` (without it, only one the frames folder
            records as made from its frames is replaced).
        exclude: an exclusion file saved by the review page (:mod:`alignimate.pipeline.exclusions`);
            the frames of the photos it names are left out (frames are matched by photo name, or by
            file name in a folder without transforms.json).
        log: where messages go (default: nowhere).
        options: replace fields of ``settings`` by name (``fps=12``).

    Returns:
        what was written (frame count, size, fps). Values are checked against
        :data:`alignimate.config.SCHEMA` first (UsageError naming the value and its range).
    """
    log = log or (lambda _msg: None)
    output = Path(output)
    settings = AnimateSettings.with_options(settings, options)
    check_animation_options(output, settings)
    caption, caption_format = settings.caption, settings.caption_format or None
    fps, quality, scale = settings.fps, settings.quality, settings.scale
    excluded = read_exclusions(exclude) if exclude is not None else frozenset()
    items = frame_list(Path(frames))
    if not items:
        raise UsageError(f"{frames}: no frames to animate")
    if excluded:
        kept = [item for item in items if item[1] not in excluded]
        unmatched = len(excluded - {name for _, name, _ in items})
        log(f"left out {len(items) - len(kept)} frames named in {exclude}")
        if unmatched:
            log(f"{unmatched} names in {exclude} match no frame in {frames}; they are ignored")
        if not kept:
            raise UsageError(f"{frames}: every frame is excluded by {exclude}; nothing to animate")
        items = kept
    if any(output.exists() and os.path.samefile(output, path) for path, _, _ in items):
        raise UsageError(f"{output}: is one of the frames; name a new animation file")
    check_animation_target(output, Path(frames), overwrite=overwrite)
    _check_animation_size(items[0][0], scale, max_width)
    if caption != "none" and not (caption in ("date", "name", "index") or caption.startswith("age:")):
        raise UsageError(f"caption must be date, name, index, age:YYYY-MM-DD or none, got {caption!r}")
    _check_caption(caption, caption_format, items[0])
    total = len(items)

    def load(index: int) -> np.ndarray:
        path, name, when = items[index]
        try:
            frame = read_image_pixels(path)
        except PhotoError as err:
            raise UsageError(f"frame {err.path}: {err.reason}") from None
        text = format_caption(caption, Path(name), index, when, caption_format, total=total)
        return draw_caption(frame, text) if text else frame

    try:
        return write_animation(
            LazyFrames(list(range(total)), load),
            output,
            fps=fps,
            hold_first=settings.hold_first,
            hold_last=settings.hold_last,
            crossfade=settings.crossfade,
            boomerang=settings.boomerang,
            scale=None if scale == 1.0 else scale,
            max_width=max_width,
            max_bytes=max_bytes,
            quality=quality,
        )
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from None
