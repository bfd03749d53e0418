"""Finding and reading photos robustly.

Every reader returns upright ``(H, W, 3)`` uint8 RGB arrays (EXIF orientation applied) or raises
`PhotoError` with a short human reason; no Pillow exception escapes. Files are opened read-only.

Pixel limit (decompression-bomb guard): an image with more pixels than ``max_pixels`` is
reported as ``PhotoError(reason="image too large (...)")`` before its pixels are decoded. By default
the limit is Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89.5 MP unless changed). Pillow checks its
own process-wide limit inside ``Image.open``, so a ``max_pixels`` above it also raises
``Image.MAX_IMAGE_PIXELS`` to that value (only ever raised, never lowered). Pillow may still print
its ``DecompressionBombWarning`` for an image that is then rejected here; a CLI can silence it with
``warnings.simplefilter("ignore", Image.DecompressionBombWarning)``.

Which folder entries are photos (`scan_folder`, `find_images`). Nothing is dropped silently: an
entry is either ignored by one of these rules or reported with a reason.

- Ignored: entries whose name starts with "." (hidden files and folders, which include
  alignimate's temporary files); files whose suffix is not in `SUPPORTED_SUFFIXES`; the
  ``exclude`` folder and everything in it; without ``recursive``, sub-folders and symbolic links
  to folders, unless named like a photo.
- Usable: regular files with a photo suffix, and symbolic links to such files.
- Reported as unusable: entries with a photo suffix that are not regular files ("is a folder, not
  a file" (without ``recursive``, which scans real folders whatever their name), "broken symbolic
  link", "symbolic link loop", "not a regular file (FIFO)", "... (socket)", "... (device)"); a
  folder that cannot be listed ("cannot list folder (permission denied)": the folder itself, or
  with ``recursive`` a sub-folder); with ``recursive``, symbolic links to folders, which are not
  followed ("symbolic link to a folder (not followed)").

Scanning only calls ``stat``, never ``open``: opening a FIFO blocks until something writes to it,
and opening a device can have side effects. The readers check the same way before opening a file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features
from PIL.ExifTags import Base

from alignimate.io.ordering import exif_datetime, natural_key
from alignimate.sizes import fit_size

__all__ = [
    "HEIF_MISSING_REASON",
    "HEIF_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "PhotoError",
    "PhotoInfo",
    "UnusableEntry",
    "find_images",
    "heif_available",
    "probe_image",
    "read_image",
    "read_images_parallel",
    "scan_folder",
]

# HEIC/HEIF (what iPhones shoot) is read through the optional pillow-heif package. Such files are
# always listed, so that without the package they are reported with the fix instead of ignored.
HEIF_SUFFIXES: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".j2k"}
    | ({".avif"} if features.check("avif") else set())
    | HEIF_SUFFIXES
)
"""Lower-case suffixes `scan_folder` and `find_images` pick up (compared case-insensitively)."""
HEIF_MISSING_REASON = (
    "HEIC/HEIF photo: reading it needs the optional pillow-heif package (pip install pillow-heif)"
)
_HEIF_STATE: dict[str, bool] = {}
_HEIF_LOCK = threading.Lock()

# Orientations 5-8 swap width and height.
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_PILLOW_LIMIT_LOCK = threading.Lock()


class PhotoError(Exception):
    """A photo that cannot be used: ``path`` and a short human ``reason`` ("truncated file")."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(path, reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class PhotoInfo:
    """What the header says: ``size_hw`` is the upright size (after EXIF orientation) in pixels,
    ``datetime`` the EXIF capture time (or ``None``), ``orientation`` the EXIF tag (1-8, 1 if none),
    ``format`` Pillow's format name ("JPEG", "PNG", ...)."""

    path: Path
    size_hw: tuple[int, int]
    datetime: datetime | None
    orientation: int
    format: str | None


# --------------------------------------------------------------------------------------------
# Discovery


class UnusableEntry(NamedTuple):
    """A folder entry that looks like a photo (or a sub-folder to scan) but cannot be used."""

    path: Path
    reason: str


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _has_photo_suffix(name: str) -> bool:
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES


def _not_regular_reason(mode: int) -> str:
    """Why an existing entry that is neither a folder nor a regular file cannot be a photo."""
    if stat.S_ISFIFO(mode):
        return "not a regular file (FIFO)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file (device)"
    return "not a regular file"


def _stat_error_reason(path: Path, exc: OSError) -> str:
    """A short reason for a failed ``os.stat`` (which follows symbolic links) of ``path``."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        # The link itself is there but what it points to is not.
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read ({exc.strerror or type(exc).__name__})"


def _listing_error_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "cannot list folder (permission denied)"
    if isinstance(exc, FileNotFoundError):
        return "cannot list folder (folder not found)"
    return f"cannot list folder ({exc.strerror or type(exc).__name__})"


def _list_folder(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; raises ``OSError`` when it cannot be listed."""
    with os.scandir(folder) as entries:
        return list(entries)


def scan_folder(
    folder: str | os.PathLike[str], recursive: bool = False, exclude: str | os.PathLike[str] | None = None
) -> tuple[list[Path], list[UnusableEntry]]:
    """The photo files of ``folder`` and the entries that look like photos but cannot be used.

    Args:
        folder: the folder to scan; ``ValueError`` when it is not a folder.
        recursive: scan sub-folders too.
        exclude: a folder left out with everything in it (e.g. an output folder inside the input
            folder).

    Returns:
        ``(photos, unusable)``: ``photos`` are the regular files (or symbolic links to regular
        files) whose suffix is in `SUPPORTED_SUFFIXES`, compared case-insensitively; ``unusable``
        are `UnusableEntry` ``(path, reason)`` pairs. Both lists are in natural path order.

    Rules (nothing else is left out):

    - Ignored without a word: entries whose name starts with "." (hidden files and folders, which
      include alignimate's temporary files), files whose suffix is not a photo suffix, the
      ``exclude`` folder (e.g. an output folder inside the input folder) with everything in it, and,
      without ``recursive``, sub-folders and symbolic links to folders unless named like a photo.
    - Unusable, with a reason, an entry with a photo suffix that is:
      a folder or a symbolic link to one, without ``recursive`` ("is a folder, not a file"; with
      ``recursive`` a real folder is scanned whatever its name); a broken symbolic link ("broken
      symbolic link"); a symbolic link loop ("symbolic link loop"); a FIFO, socket or device ("not a
      regular file (FIFO)", "not a regular file (socket)", "not a regular file (device)"); or that
      cannot be examined ("permission denied").
    - Unusable, with a reason, whatever the name: a folder that cannot be listed ("cannot list
      folder (permission denied)"): ``folder`` itself, or with ``recursive`` a sub-folder; and with
      ``recursive``, a symbolic link to a folder ("symbolic link to a folder (not followed)"), since
      following links could visit a folder twice or loop forever.

    Files are never opened, only examined with ``stat``: opening a FIFO blocks until something
    writes to it and opening a device can have side effects. Raises ``ValueError`` when ``folder``
    is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a folder")
    excluded = Path(exclude).resolve() if exclude is not None else None

    def is_excluded(path: Path) -> bool:
        return excluded is not None and path.resolve() == excluded

    photos: list[Path] = []
    unusable: list[UnusableEntry] = []
    pending = [] if is_excluded(root) else [root]
    while pending:
        here = pending.pop()
        try:
            entries = _list_folder(here)
        except OSError as exc:
            unusable.append(UnusableEntry(here, _listing_error_reason(exc)))
            continue
        for entry in entries:
            name = entry.name
            if _is_hidden(name):
                continue
            path = here / name
            photo_name = _has_photo_suffix(name)
            try:
                # Both answer from the directory listing on most systems, without a stat call.
                is_link = entry.is_symlink()
                is_real_dir = not is_link and entry.is_dir(follow_symlinks=False)
            except OSError:
                is_link, is_real_dir = False, False  # let the stat below find out and say why
            if is_real_dir:
                if is_excluded(path):
                    continue
                if recursive:
                    pending.append(path)
                elif photo_name:
                    unusable.append(UnusableEntry(path, "is a folder, not a file"))
                continue
            if not photo_name and not (is_link and recursive):
                continue  # not a photo and cannot be a folder to report: no need to stat it
            try:
                # Follows a symbolic link, so the mode is that of what it points to. lstat for a
                # plain entry: it is not a link, and DirEntry caches the answer.
                mode = os.stat(path).st_mode if is_link else entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                if photo_name:
                    unusable.append(UnusableEntry(path, _stat_error_reason(path, exc)))
                continue
            if stat.S_ISDIR(mode):
                # A symbolic link to a folder (a real folder was handled above).
                if is_excluded(path):
                    continue
                if recursive:
                    unusable.append(UnusableEntry(path, "symbolic link to a folder (not followed)"))
                elif photo_name:
                    unusable.append(UnusableEntry(path, "is a folder, not a file"))
            elif not photo_name:
                continue
            elif stat.S_ISREG(mode):
                photos.append(path)
            else:
                unusable.append(UnusableEntry(path, _not_regular_reason(mode)))
    photos.sort(key=natural_key)
    unusable.sort(key=lambda item: natural_key(item.path))
    return photos, unusable


def find_images(
    folder: str | os.PathLike[str], recursive: bool = False, exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Photo files in ``folder`` by suffix (`SUPPORTED_SUFFIXES`), in natural path order.

    The usable half of `scan_folder` (see there for the rules and the arguments): hidden files and
    folders are skipped, ``exclude`` is a folder whose contents are skipped, symbolic links to
    folders are not followed, and files are not opened. Use `scan_folder` to also learn which
    photo-like entries cannot be used and why.
    """
    photos, _unusable = scan_folder(folder, recursive=recursive, exclude=exclude)
    return photos


# --------------------------------------------------------------------------------------------
# Errors


_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


def _pixel_count(n: int) -> str:
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n} pixels"


def _too_large_reason(n_pixels: int | None, limit: int | None) -> str:
    size = _pixel_count(n_pixels) if n_pixels is not None else "too many pixels"
    bound = f" > limit {_pixel_count(limit)}" if limit is not None else ""
    return f"image too large ({size}{bound}); raise --max-pixels to read it if you trust this file"


def _reason_for(exc: BaseException, limit: int | None) -> str:
    """A short human reason for an exception raised while opening or decoding a photo."""
    message = str(exc)
    lowered = message.lower()
    if isinstance(exc, Image.DecompressionBombError):
        match = _BOMB_SIZE.search(message)
        return _too_large_reason(int(match.group(1)) if match else None, limit)
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if isinstance(exc, EOFError) or "truncated" in lowered or "broken data stream" in lowered:
        return "truncated file"
    if isinstance(exc, (SyntaxError, OSError, ValueError)):
        return f"corrupt or unsupported file ({message or type(exc).__name__})"
    return f"cannot read ({type(exc).__name__}: {message})"


# --------------------------------------------------------------------------------------------
# Opening


def _check_positive(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _effective_limit(max_pixels: int | None) -> int | None:
    """The pixel limit to apply (None: none); keeps Pillow's own limit from refusing first."""
    _check_positive("max_pixels", max_pixels)
    if max_pixels is None:
        return Image.MAX_IMAGE_PIXELS
    limit = max_pixels
    with _PILLOW_LIMIT_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < limit:
            Image.MAX_IMAGE_PIXELS = limit
    return limit


def _check_file(path: Path) -> None:
    """Raise `PhotoError` for a missing, non-regular or empty file (before Pillow sees it).

    Only ``os.stat`` is used (it follows symbolic links, as opening would): opening a FIFO blocks
    until something writes to it and opening a device can have side effects, so those are refused
    here, before anything opens them.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise PhotoError(path, _stat_error_reason(path, exc)) from exc
    if stat.S_ISDIR(info.st_mode):
        raise PhotoError(path, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise PhotoError(path, _not_regular_reason(info.st_mode))
    if info.st_size == 0:
        raise PhotoError(path, "empty file (0 bytes)")


def heif_available() -> bool:
    """Whether HEIC/HEIF photos can be read (pillow-heif importable; its Pillow plugin is registered
    on the first call)."""
    with _HEIF_LOCK:
        if "ok" not in _HEIF_STATE:
            try:
                import pillow_heif
            except ImportError:
                _HEIF_STATE["ok"] = False
            else:
                pillow_heif.register_heif_opener()
                _HEIF_STATE["ok"] = True
        return _HEIF_STATE["ok"]


def _open(path: Path, limit: int | None) -> Image.Image:
    """Open (header only) and apply the pixel limit. The caller closes the image."""
    _check_file(path)
    if path.suffix.lower() in HEIF_SUFFIXES and not heif_available():
        raise PhotoError(path, HEIF_MISSING_REASON)
    image = Image.open(path)  # opens the file read-only ("rb")
    width, height = image.size
    if limit is not None and width * height > limit:
        image.close()
        raise PhotoError(path, _too_large_reason(width * height, limit))
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(Base.Orientation, 1))
    except Exception:
        # A damaged EXIF block should not make a readable photo unusable.
        return 1
    return value if 1 <= value <= 8 else 1


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> PhotoInfo:
    """Size, orientation and capture date from the header, without decoding pixels.

    Raises `PhotoError` for unreadable files and for images above the pixel limit. A file whose
    pixel data is damaged may still probe fine; `read_image` finds that out.
    """
    path = Path(path)
    limit = _effective_limit(max_pixels)
    try:
        with _open(path, limit) as image:
            width, height = image.size
            orientation = _orientation(image)
            if orientation in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            taken = exif_datetime(image)  # None when missing or unreadable, never raises
            return PhotoInfo(path, (height, width), taken, orientation, image.format)
    except PhotoError:
        raise
    except Exception as exc:
        raise PhotoError(path, _reason_for(exc, limit)) from exc


# --------------------------------------------------------------------------------------------
# Decoding


def _fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """Pillow's ``(w, h)`` of the copy that fits in ``max_side`` (:func:`alignimate.sizes.fit_size`),
    or None to keep the size."""
    if max_side is None:
        return None
    h, w = fit_size((height, width), max_side)
    return None if (h, w) == (height, width) else (w, h)


def _request_draft(image: Image.Image, max_side: int | None, grey: bool = False) -> int:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while still giving at least the target size;
    returns the scale Pillow chose (1: decoded whole). ``grey``: a colour JPEG is decoded to its
    luma only (libjpeg skips the chroma's IDCT and the colour conversion).

    ``max_side`` bounds the longer side, which is the same before and after EXIF orientation.
    """
    target = _fit_size(*image.size, max_side)
    if target is None and not grey:
        return 1
    width = image.size[0]
    # None for formats other than JPEG; at the full size, only the luma is asked for.
    drafted = image.draft("L" if grey else "RGB", target or image.size)
    return 1 if drafted is None else round(width / drafted[1][2])


def shrink_to_fit(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` (upright) resized to fit ``max_side`` with Lanczos (the last step of every reduced
    read: :func:`read_image` and :func:`alignimate.io.planes.read_image_pixels` give the same pixels);
    the image itself when it fits."""
    target = _fit_size(*image.size, max_side)
    if target is None:
        return image
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _grey_16bit_to_uint8(values: np.ndarray) -> np.ndarray:
    # 65535 / 257 == 255 exactly, so the full 16-bit range maps onto the full 8-bit range.
    return np.clip(np.rint(values.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)


def _grey_float_to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit "RGB", or "RGBA" when the image has transparency.

    16-bit ("I;16*") and 32-bit integer ("I", what Pillow gives for some 16-bit files) grey are
    scaled by 1/257 (65535 -> 255); "I" values outside [0, 65535] are clipped. Float ("F") grey is
    taken to be in [0, 1] and scaled by 255. CMYK uses Pillow's conversion (no ICC profile).
    """
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(_grey_16bit_to_uint8(np.asarray(image))).convert("RGB")
    if mode == "F":
        return Image.fromarray(_grey_float_to_uint8(np.asarray(image))).convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode in ("1", "L", "P", "RGBX", "CMYK", "YCbCr", "HSV"):
        return image.convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"unsupported mode {mode}") from exc


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _check_png_checksums(path: Path) -> None:
    """Pillow does not check the CRCs of PNG image data while decoding, so a damaged PNG can decode
    into garbage without an error; ``verify()`` reads every chunk and checks its CRC (cheap next to
    inflating the data)."""
    with Image.open(path) as image:
        try:
            image.verify()
        except Exception as exc:
            reason = _reason_for(exc, None)
            if reason != "truncated file":
                reason = f"corrupt PNG data ({exc})"
            raise PhotoError(path, reason) from exc


def _decode(path: Path, limit: int | None, max_side: int | None, alpha: bool, grey: bool) -> np.ndarray:
    with _open(path, limit) as image:
        if image.format == "PNG":
            _check_png_checksums(path)
        orientation = _orientation(image)
        _request_draft(image, max_side, grey)
        image.load()
        upright = ImageOps.exif_transpose(image) if orientation != 1 else image
        converted = upright if grey and upright.mode == "L" else _to_8bit(upright)
        if converted.mode == "RGBA" and not alpha:
            converted = Image.fromarray(_composite_on_black(np.asarray(converted)))
        if grey:
            converted = converted.convert("L")
        array = np.asarray(shrink_to_fit(converted, max_side))
    if grey:
        return np.ascontiguousarray(array[:, :, None])
    if alpha and array.shape[2] == 3:
        array = np.concatenate([array, np.full((*array.shape[:2], 1), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(array)


def read_image(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    alpha: bool = False,
    grey: bool = False,
) -> np.ndarray:
    """Decode a photo upright as ``(H, W, 3)`` uint8 RGB (``(H, W, 4)`` RGBA if ``alpha``, ``(H, W,
    1)`` luma if ``grey``).

    EXIF orientation is applied (``ImageOps.exif_transpose``), so ``H, W`` are the upright size. Any
    Pillow mode is converted (grey, palette, CMYK, 16-bit, float; see `_to_8bit`).

    Args:
        path: the photo file.
        max_side: the longer side is reduced to at most this many pixels (never enlarged), keeping
            the aspect ratio; JPEGs are decoded directly at 1/2, 1/4 or 1/8 size (draft mode) and
            then resized with Lanczos.
        max_pixels: pixel limit checked before decoding (default: Pillow's
            ``Image.MAX_IMAGE_PIXELS``; see the module docstring).
        alpha: return RGBA. Otherwise transparent images are composited onto black; with it,
            opaque images get alpha 255.
        grey: return the luma (Pillow's ITU-R 601 conversion of the RGB above; a colour JPEG's own
            luma channel, decoded without its chroma), what registration compares. Not with
            ``alpha``.

    Returns:
        the pixels. Raises `PhotoError` for every unreadable photo; ``ValueError``/``TypeError``
        for bad arguments.
    """
    path = Path(path)
    _check_positive("max_side", max_side)
    if alpha and grey:
        raise ValueError("read_image: alpha and grey cannot both be asked for")
    limit = _effective_limit(max_pixels)
    try:
        return _decode(path, limit, max_side, alpha, grey)
    except PhotoError:
        raise
    except Exception as exc:
        reason = str(exc) if str(exc).startswith("unsupported mode") else _reason_for(exc, limit)
        raise PhotoError(path, reason) from exc


def _read_or_error(
    path: Path, max_side: int | None, max_pixels: int | None, alpha: bool
) -> np.ndarray | PhotoError:
    try:
        return read_image(path, max_side=max_side, max_pixels=max_pixels, alpha=alpha)
    except PhotoError as error:
        return error


def read_images_parallel(
    paths: Iterable[str | os.PathLike[str]],
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    alpha: bool = False,
    workers: int = 2,
    prefetch: int | None = None,
) -> Iterator[tuple[Path, np.ndarray | PhotoError]]:
    """Read photos on a thread pool, yielding ``(path, array or PhotoError)`` in input order.

    Pillow releases the GIL while decoding, so reading the next photos overlaps with whatever the
    caller does with the current one.

    Args:
        paths: the photos.
        max_side, max_pixels, alpha: as `read_image`.
        workers: threads decoding at once.
        prefetch: at most this many photos (default ``2 * workers``) are decoded ahead, so memory
            does not grow with the number of paths.
    """
    _check_positive("workers", workers)
    _check_positive("prefetch", prefetch)
    _check_positive("max_side", max_side)
    _effective_limit(max_pixels)  # validate now rather than once per photo
    window = prefetch if prefetch is not None else 2 * workers
    remaining = (Path(p) for p in paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alignimate-read") as pool:
        pending: deque[tuple[Path, Future[np.ndarray | PhotoError]]] = deque()

        def submit(batch: Iterable[Path]) -> None:
            for p in batch:
                pending.append((p, pool.submit(_read_or_error, p, max_side, max_pixels, alpha)))

        try:
            submit(islice(remaining, window))
            while pending:
                path, future = pending.popleft()
                submit(islice(remaining, 1))
                yield path, future.result()
        finally:
            # The consumer stopped early: do not decode photos nobody will look at.
            for _, future in pending:
                future.cancel()
