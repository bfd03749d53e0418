"""Finding the photos of a run, reading their headers, and putting them in order.

A photo whose header cannot be read is not an error of the run: it becomes a :class:`Skipped`
entry with the file and the reason, and the other photos go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alignimate.io import PhotoError, find_images, probe_image, sort_photos

__all__ = ["Photo", "Skipped", "discover_photos", "relative_name"]


@dataclass(frozen=True)
class Photo:
    """A readable photo: its path, upright size ``(h, w)`` in pixels and EXIF capture time."""

    path: Path
    name: str
    size_hw: tuple[int, int]
    datetime: datetime | None


@dataclass(frozen=True)
class Skipped:
    """A photo left out of the run, with a short human reason."""

    path: Path
    name: str
    reason: str


def relative_name(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` in POSIX form, the key that identifies a photo in transforms.json."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.name


def discover_photos(
    folder: Path,
    *,
    recursive: bool = False,
    sort: str = "date",
    exclude: Path | None = None,
    max_pixels: int | None = None,
) -> tuple[list[Photo], list[Skipped]]:
    """Photos in ``folder`` in the requested order, and the files that cannot be used.

    ``sort="date"`` orders by EXIF DateTimeOriginal, undated photos after the dated ones in natural
    name order; ``sort="name"`` uses natural name order only. ``exclude`` is a folder to leave out
    (the output folder when it lies inside the input folder)."""
    if sort not in ("date", "name"):
        raise ValueError(f"sort must be 'date' or 'name', got {sort!r}")
    paths = find_images(folder, recursive=recursive, exclude=exclude)
    photos: list[Photo] = []
    skipped: list[Skipped] = []
    for path in paths:
        name = relative_name(path, folder)
        try:
            info = probe_image(path, max_pixels=max_pixels)
        except PhotoError as err:
            skipped.append(Skipped(path, name, err.reason))
            continue
        photos.append(Photo(path, name, info.size_hw, info.datetime))
    dates = {p.path: p.datetime for p in photos}
    order = sort_photos([p.path for p in photos], by=sort, dates=dates)
    by_path = {p.path: p for p in photos}
    return [by_path[p] for p in order], skipped
