"""``contact_sheet``: one image that shows what a run did to every photo, in timeline order.

Each photo is a square tile. A kept photo shows its aligned frame with its name; a dropped photo
shows its original (letterboxed, so nothing is cut off) inside a red border, with its name and the
reason it was dropped. A photo that cannot even be read is a grey tile with its reason.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from alignimate.io import PhotoError, draw_caption, read_image, save_image
from alignimate.pipeline.records import PhotoRecord

__all__ = ["DROPPED_COLOUR", "contact_sheet", "letterbox"]

DROPPED_COLOUR = (220, 30, 30)
_BACKGROUND = (40, 40, 40)
_GAP = 4
# Text height as a fraction of the tile side; at 160 px that is a 12 px font, about 24 characters a line.
_TEXT_FRAC = 0.075
_MAX_REASON_LINES = 4


def letterbox(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` ``(H, W, 3)`` uint8 scaled (antialiased, aspect kept) to fit a black ``side`` x ``side``
    square and centred in it; returns ``(side, side, 3)`` uint8."""
    if side < 1:
        raise ValueError(f"side must be a positive number of pixels, got {side}")
    h, w = image.shape[:2]
    factor = side / max(h, w)
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(image[..., :3])).resize((new_w, new_h), Image.LANCZOS)
    )
    tile = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    tile[top : top + new_h, left : left + new_w] = resized
    return tile


def _wrap(text: str, side: int, lines: int) -> str:
    font_px = max(6, round(_TEXT_FRAC * side))
    width = max(8, int(side / (0.55 * font_px)))
    wrapped = textwrap.wrap(text, width=width) or [""]
    if len(wrapped) > lines:
        wrapped = [
            *wrapped[: lines - 1],
            textwrap.shorten(" ".join(wrapped[lines - 1 :]), width, placeholder="…"),
        ]
    return "\n".join(wrapped)


def _short_name(name: str, side: int) -> str:
    return _wrap(Path(name).name, side, 1)


def _kept_tile(record: PhotoRecord, frames_dir: Path, side: int) -> np.ndarray | None:
    if not record.output:
        return None
    try:
        frame = read_image(frames_dir / record.output, max_side=2 * side)
    except PhotoError:
        return None
    tile = letterbox(frame, side)
    return draw_caption(tile, _short_name(record.name, side), "top-left", _TEXT_FRAC)


def _dropped_tile(record: PhotoRecord, side: int) -> np.ndarray:
    try:
        tile = letterbox(read_image(record.source, max_side=2 * side), side)
    except (PhotoError, OSError, ValueError):
        tile = np.full((side, side, 3), 90, dtype=np.uint8)
    border = max(2, side // 40)
    tile[:border], tile[-border:], tile[:, :border], tile[:, -border:] = (DROPPED_COLOUR,) * 4
    tile = draw_caption(tile, _short_name(record.name, side), "top-left", _TEXT_FRAC)
    reason = _wrap(record.reason or "dropped", side, _MAX_REASON_LINES)
    return draw_caption(tile, reason, "bottom-left", _TEXT_FRAC, color=(255, 220, 220))


def contact_sheet(
    records: Sequence[PhotoRecord],
    frames_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    thumb: int = 160,
    columns: int | None = None,
) -> Path:
    """Write a grid of square tiles, one per record in order, to ``out_path`` (atomically).

    Args:
        records: the run's photos (:class:`~alignimate.pipeline.records.PhotoRecord`); a usable
            record with an ``output`` shows that frame from ``frames_dir``, any other record its
            original ``source`` with a red border and its ``reason``.
        frames_dir: the folder of the frames.
        out_path: the image to write.
        thumb: the tiles' side, pixels.
        columns: tiles per row (default: about square, ``ceil(sqrt(n))``).

    Returns:
        ``out_path``.
    """
    if isinstance(thumb, bool) or not isinstance(thumb, int) or thumb < 32:
        raise ValueError(f"thumb must be an int of at least 32 pixels, got {thumb!r}")
    if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int) or columns < 1):
        raise ValueError(f"columns must be a positive int or None, got {columns!r}")
    frames_dir = Path(frames_dir)
    tiles = []
    for record in records:
        tile = _kept_tile(record, frames_dir, thumb) if record.usable else None
        tiles.append(tile if tile is not None else _dropped_tile(record, thumb))
    if not tiles:
        tiles = [
            draw_caption(np.full((thumb, thumb, 3), 90, dtype=np.uint8), "no photos", "top-left", _TEXT_FRAC)
        ]
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    step = thumb + _GAP
    sheet = np.empty((rows * step + _GAP, cols * step + _GAP, 3), dtype=np.uint8)
    sheet[:] = _BACKGROUND
    for i, tile in enumerate(tiles):
        top, left = _GAP + (i // cols) * step, _GAP + (i % cols) * step
        sheet[top : top + thumb, left : left + thumb] = tile
    return save_image(out_path, sheet, quality=90)
