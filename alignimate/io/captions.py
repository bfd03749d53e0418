"""Captions on frames: the text (date, name, index, age) and drawing it legibly.

Text is drawn with Pillow's built-in font (``ImageFont.load_default(size=...)``, a scalable
FreeType font in Pillow >= 10.1), white with a black outline, so it reads on light and dark photos.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["CAPTION_POSITIONS", "draw_caption", "format_age", "format_caption"]

CAPTION_POSITIONS = ("top-left", "top", "top-right", "bottom-left", "bottom", "bottom-right")
_DEFAULT_DATE_FORMAT = "%Y-%m-%d"


# --------------------------------------------------------------------------------------------
# Text


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _whole_months(start: date, end: date) -> int:
    """Calendar months from ``start`` to ``end`` (``end >= start``), counting only completed ones."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    return months - 1 if end.day < start.day else months


def format_age(born: date, when: date) -> str:
    """Age in the unit people use: days under a week, weeks under 3 months, months under 2
    years, then years and months ("2 years 3 months", "3 years"). Before ``born``: "-" prefix."""
    if when < born:
        return "-" + format_age(when, born)
    days = (when - born).days
    months = _whole_months(born, when)
    if days < 7:
        return _plural(days, "day")
    if months < 3:
        return _plural(days // 7, "week")
    if months < 24:
        return _plural(months, "month")
    years, rest = divmod(months, 12)
    return _plural(years, "year") + (f" {_plural(rest, 'month')}" if rest else "")


def _as_date(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value


def format_caption(
    kind: str,
    path: str | os.PathLike[str] | None = None,
    index: int | None = None,
    when: datetime | None = None,
    fmt: str | None = None,
    *,
    total: int | None = None,
) -> str:
    """The caption text for one photo; ``""`` means no caption.

    Args:
        kind: what the caption says:

            - ``"none"``: always ``""``.
            - ``"date"``: ``when`` formatted with ``strftime(fmt)`` (default ``"%Y-%m-%d"``); ``""``
              if undated.
            - ``"name"``: the file name without suffix; ``fmt`` is a ``str.format`` template with
              ``{name}``.
            - ``"index"``: ``index`` shown 1-based; ``fmt`` is a template with ``{index}`` and
              ``{total}`` (default ``"{index}"``, e.g. ``"{index}/{total}"``).
            - ``"age:YYYY-MM-DD"``: time since that date (`format_age`); ``fmt`` is a template with
              ``{age}`` (e.g. ``"{age} old"``); ``""`` if undated.
        path: the photo's file (for ``"name"``).
        index: the photo's 0-based position (for ``"index"``).
        when: the photo's capture time (for ``"date"`` and ``"age:..."``).
        fmt: the format, as above (None: the kind's default).
        total: the number of photos (``{total}`` for ``"index"``).
    """
    if kind == "none":
        return ""
    if kind == "date":
        return "" if when is None else when.strftime(fmt or _DEFAULT_DATE_FORMAT)
    if kind == "name":
        if path is None:
            raise ValueError("path is needed for kind='name'")
        return (fmt or "{name}").format(name=Path(path).stem)
    if kind == "index":
        if index is None:
            raise ValueError("index is needed for kind='index'")
        return (fmt or "{index}").format(index=index + 1, total="" if total is None else total)
    if kind.startswith("age:"):
        try:
            born = date.fromisoformat(kind[4:])
        except ValueError as exc:
            raise ValueError(f"kind 'age:' needs a date as YYYY-MM-DD, got {kind[4:]!r}") from exc
        if when is None:
            return ""
        return (fmt or "{age}").format(age=format_age(born, _as_date(when)))
    raise ValueError(f"kind must be 'date', 'name', 'index', 'none' or 'age:YYYY-MM-DD', got {kind!r}")


# --------------------------------------------------------------------------------------------
# Drawing


def _text_origin(
    position: str, frame_wh: tuple[int, int], box: tuple[int, int, int, int], margin: int
) -> tuple[int, int]:
    """Where to draw so the text's bounding ``box`` (relative to the origin) sits at ``position``."""
    width, height = frame_wh
    left, top, right, bottom = box
    vertical, _, horizontal = position.partition("-")
    if not horizontal:  # "top" / "bottom": centred
        horizontal = "centre"
    if horizontal == "left":
        x = margin - left
    elif horizontal == "right":
        x = width - margin - right
    else:
        x = (width - (right - left)) // 2 - left
    y = margin - top if vertical == "top" else height - margin - bottom
    return x, y


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Loading parses the embedded font; a series draws thousands of captions at one size.
    return ImageFont.load_default(size=size_px)


def draw_caption(
    frame: np.ndarray,
    text: str,
    position: str = "bottom-left",
    size_frac: float = 0.05,
    *,
    color: tuple[int, int, int] = (255, 255, 255),
    outline: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Return a copy of a frame with a caption drawn on it.

    The margin to the frame edge is half the text size.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB (not modified).
        text: the caption; multi-line text (``"\\n"``) is allowed.
        position: one of `CAPTION_POSITIONS`.
        size_frac: text height as a fraction of the frame's shorter side.
        color: the text's RGB colour.
        outline: the RGB colour of an outline about a twelfth of the text size wide.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frame must be an (H, W, 3) uint8 array, got {getattr(frame, 'shape', type(frame))}"
        )
    if position not in CAPTION_POSITIONS:
        raise ValueError(f"position must be one of {CAPTION_POSITIONS}, got {position!r}")
    if not 0 < size_frac <= 1:
        raise ValueError(f"size_frac must be in (0, 1], got {size_frac!r}")
    image = Image.fromarray(np.ascontiguousarray(frame))
    if not text:
        return np.array(image)
    font_px = max(6, round(size_frac * min(frame.shape[:2])))
    stroke = max(1, round(font_px / 12))
    font = _font(font_px)
    draw = ImageDraw.Draw(image)
    box = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke)
    origin = _text_origin(position, image.size, tuple(int(v) for v in box), margin=max(2, font_px // 2))
    draw.multiline_text(origin, text, font=font, fill=color, stroke_width=stroke, stroke_fill=outline)
    return np.asarray(image).copy()
