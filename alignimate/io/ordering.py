"""Photo ordering: EXIF capture dates and natural file-name order ("img2" before "img10")."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from PIL import Image
from PIL.ExifTags import IFD, Base

__all__ = ["exif_datetime", "natural_key", "parse_exif_datetime", "sort_photos"]

_DIGITS = re.compile(r"(\d+)")
# "YYYY:MM:DD HH:MM:SS" is the standard; some software writes "-" or "/" in the date or a "T".
_EXIF_DATETIME = re.compile(
    r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
)


def parse_exif_datetime(text: str | bytes | None, subsec: str | bytes | None = None) -> datetime | None:
    """Parse an EXIF date such as ``"2021:07:04 15:30:00"``; ``None`` if missing or invalid.

    Args:
        text: the EXIF DateTime value.
        subsec: the EXIF SubSecTime string (``"123"`` means 0.123 seconds); it orders burst shots
            taken within the same second.

    Returns:
        a naive ``datetime`` (the camera's local time), so all photos compare.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    match = _EXIF_DATETIME.match(text.replace("\x00", ""))
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or _clean_subsec(subsec)
    microsecond = int(fraction.ljust(6, "0")[:6]) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, microsecond)
    except ValueError:  # "0000:00:00 00:00:00" and other placeholders
        return None


def _clean_subsec(subsec: str | bytes | None) -> str:
    if subsec is None:
        return ""
    if isinstance(subsec, bytes):
        subsec = subsec.decode("ascii", errors="replace")
    digits = subsec.replace("\x00", "").strip()
    return digits if digits.isdigit() else ""


def _datetime_from_image(image: Image.Image) -> datetime | None:
    exif = image.getexif()
    exif_ifd = exif.get_ifd(IFD.Exif)
    original = parse_exif_datetime(exif_ifd.get(Base.DateTimeOriginal), exif_ifd.get(Base.SubsecTimeOriginal))
    if original is not None:
        return original
    return parse_exif_datetime(exif.get(Base.DateTime), exif_ifd.get(Base.SubsecTime))


def exif_datetime(source: str | os.PathLike[str] | Image.Image) -> datetime | None:
    """Capture time of a photo: EXIF DateTimeOriginal (36867, Exif IFD), else DateTime (306).

    ``source`` is a path or an open Pillow image. Returns a naive ``datetime`` (camera local time)
    or ``None`` when the photo has no usable date or cannot be read; it never raises for a bad file.
    Only the header is read, not the pixels.
    """
    try:
        if isinstance(source, Image.Image):
            return _datetime_from_image(source)
        with Image.open(source) as image:
            return _datetime_from_image(image)
    except Exception:
        # A photo without a readable date is ordered by name instead; read errors are
        # reported by the reader, not here.
        return None


def natural_key(name: str | os.PathLike[str]) -> tuple:
    """Sort key that orders digit runs by value: ``"img2" < "img10"``, case-insensitive.

    Works on names and on whole paths (``str(path)``). Ties ("img01" vs "img1", "A" vs "a") are
    broken deterministically by the original text.
    """
    text = os.fspath(name)
    parts = _DIGITS.split(text.casefold())
    # Even positions are text, odd positions digit runs, so equal positions always compare alike.
    key = tuple((int(p), p) if i % 2 else p for i, p in enumerate(parts))
    return (key, text)


def sort_photos(
    paths: Iterable[str | os.PathLike[str]],
    by: str = "date",
    *,
    dates: Mapping[Path, datetime | None] | None = None,
) -> list[Path]:
    """Order photos.

    Args:
        paths: the photos.
        by: ``"name"``: natural order of the full path (`natural_key`). ``"date"``: photos with an
            EXIF date first, by date (equal dates by natural name), then the photos without a date,
            by natural name.
        dates: already-read dates (e.g. from `alignimate.io.images.probe_image`) keyed by ``Path``;
            missing ones are read here.

    Returns:
        a new list of ``Path``.
    """
    paths = [Path(p) for p in paths]
    if by == "name":
        return sorted(paths, key=natural_key)
    if by != "date":
        raise ValueError(f"by must be 'date' or 'name', got {by!r}")
    known = dates or {}
    taken = {p: known[p] if p in known else exif_datetime(p) for p in paths}
    dated = [p for p in paths if taken[p] is not None]
    undated = [p for p in paths if taken[p] is None]
    dated.sort(key=lambda p: (taken[p], natural_key(p)))
    undated.sort(key=natural_key)
    return dated + undated
