"""Finding the photos of a run, reading their headers, and putting them in order.

A photo whose header cannot be read is not an error of the run: it becomes a :class:`Skipped`
entry with the file and the reason, and the other photos go on. So does every folder entry that
looks like a photo but cannot be one (a folder named ``x.jpg``, a broken symbolic link, a FIFO, a
sub-folder that cannot be listed, ...; see `alignimate.io.scan_folder` for the rules), so that
each entry of the input folder is either ignored by a documented rule or reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alignimate.io import PhotoError, natural_key, probe_image, scan_folder, sort_photos

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
    """``path`` relative to ``folder`` in POSIX form, the key that identifies a photo in transforms.json.

    Only the folders are resolved, not ``path`` itself: a symbolic link keeps its own name (two links
    to one file stay two names), and a broken or looping link still has one.
    """
    try:
        return (path.parent.resolve() / path.name).relative_to(folder.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        # Outside the folder, or a folder on the way cannot be resolved (Python 3.11 raises
        # RuntimeError for a symbolic link loop).
        return path.name


def discover_photos(
    folder: Path,
    *,
    recursive: bool = False,
    sort: str = "date",
    exclude: Path | None = None,
    max_pixels: int | None = None,
) -> tuple[list[Photo], list[Skipped]]:
    """Photos in ``folder`` in the requested order, and the entries that cannot be used.

    Args:
        folder: the input folder (``ValueError`` when it is not a folder).
        recursive: look in sub-folders too.
        sort: ``"date"`` orders by EXIF DateTimeOriginal, undated photos after the dated ones in
            natural name order; ``"name"`` uses natural name order only (``ValueError`` otherwise).
        exclude: a folder to leave out (the output folder when it lies inside the input folder).
        max_pixels: photos with more pixels are skipped unread (default: Pillow's limit).

    Returns:
        ``(photos, skipped)``. The skipped entries, in natural path order, are the photos whose
        header cannot be read and the entries `alignimate.io.scan_folder` reports as unusable
        (folders named like photos, broken links, FIFOs, folders that cannot be listed, ...), each
        with its reason; an unusable entry never raises.
    """
    if sort not in ("date", "name"):
        raise ValueError(f"sort must be 'date' or 'name', got {sort!r}")
    paths, unusable = scan_folder(folder, recursive=recursive, exclude=exclude)
    photos: list[Photo] = []
    skipped = [Skipped(entry.path, relative_name(entry.path, folder), entry.reason) for entry in unusable]
    for path in paths:
        name = relative_name(path, folder)
        try:
            info = probe_image(path, max_pixels=max_pixels)
        except PhotoError as err:
            skipped.append(Skipped(path, name, err.reason))
            continue
        photos.append(Photo(path, name, info.size_hw, info.datetime))
    # One list in folder order, whichever step found the problem, so report.csv reads like `ls`.
    skipped.sort(key=lambda item: natural_key(item.path))
    dates = {p.path: p.datetime for p in photos}
    order = sort_photos([p.path for p in photos], by=sort, dates=dates)
    by_path = {p.path: p for p in photos}
    return [by_path[p] for p in order], skipped
