"""Atomic file writing: every output appears under its final name complete or not at all.

A writer works on a hidden temporary file in the destination folder (same file system, so the
final ``os.replace`` is atomic) and the file is renamed only when writing succeeded. An
interrupted run therefore leaves at most a hidden ``.name.tmp-XXXX.ext`` file behind, never a
half-written ``name.ext``; `alignimate.io.images.find_images` skips hidden files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_FORMATS",
    "AtomicFile",
    "atomic_write",
    "check_uint8_image",
    "save_image",
    "temporary_path_for",
    "write_csv",
    "write_json",
]

# Output suffix -> Pillow format name.
IMAGE_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def temporary_path_for(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix: ``dir/.stem.tmp-1a2b3c4d.ext``.

    The suffix is kept so that writers which infer the format from it (Pillow, ffmpeg) still work.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")


class AtomicFile:
    """Write ``path`` through a temporary file: write to ``.tmp``, then `commit` or `discard`.

    The temporary file is not created here, so the writer creates it with the usual permissions.
    Use `atomic_write` unless the write spans several calls (e.g. a streaming video writer).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"path: folder {self.path.parent} does not exist")
        self.tmp = temporary_path_for(self.path)
        self.done = False

    def commit(self) -> None:
        """Rename the finished temporary file onto ``path`` (replacing an existing file)."""
        if self.done:
            raise RuntimeError(f"{self.path} was already committed or discarded")
        if not self.tmp.exists():
            raise FileNotFoundError(f"the writer did not create {self.tmp}")
        os.replace(self.tmp, self.path)
        self.done = True

    def discard(self) -> None:
        """Remove the temporary file, leaving ``path`` untouched. Safe to call more than once."""
        self.done = True
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; it is renamed onto ``path`` only if the block succeeds.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed, an existing
    file at ``path`` is left as it was, and the exception propagates.

    Example::

        with atomic_write("out/a.png") as tmp:
            Image.fromarray(rgb).save(tmp)
    """
    target = AtomicFile(path)
    try:
        yield target.tmp
    except BaseException:
        target.discard()
        raise
    try:
        target.commit()
    except BaseException:
        target.discard()
        raise


def check_uint8_image(array: np.ndarray, name: str = "array") -> None:
    """Raise unless ``array`` is a non-empty uint8 numpy image: ``(H, W)`` grey, ``(H, W, 1)``,
    ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (what the writers here accept)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape:
        raise ValueError(f"{name} must have shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")


def save_image(
    path: str | os.PathLike[str], array: np.ndarray, *, quality: int = 95, exif: bytes | None = None
) -> Path:
    """Save an image atomically; the format follows the suffix (.jpg/.jpeg/.png/.webp/.tif/.tiff).

    Args:
        path: the file to write.
        array: ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, uint8. JPEG has no alpha
            channel, so RGBA to .jpg raises ``ValueError`` (composite first, or use
            .png/.webp/.tiff).
        quality: 1-100, for JPEG and WebP.
        exif: a raw EXIF block to embed (for example to keep the capture date); its orientation tag
            must be 1, since pixels are stored upright.

    Returns:
        ``path``, as a ``Path``.
    """
    path = Path(path)
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"path: unsupported image suffix {path.suffix!r}; use one of {sorted(IMAGE_FORMATS)}"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    check_uint8_image(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if fmt == "JPEG" and array.ndim == 3 and array.shape[2] == 4:
        raise ValueError("array: JPEG cannot store an alpha channel; save RGBA as .png, .webp or .tiff")
    image = Image.fromarray(np.ascontiguousarray(array))
    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    if exif is not None:
        options["exif"] = exif
    with atomic_write(path) as tmp:
        image.save(tmp, format=fmt, **options)
    return path


def _json_ready(obj: Any) -> Any:
    """Plain JSON types: numpy values become Python ones, non-finite floats become ``null``."""
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_ready(obj.item())
    if isinstance(obj, float):
        # NaN/Infinity are not JSON; a diverged loss is recorded as null.
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as UTF-8 JSON atomically.

    numpy arrays and scalars, ``Path`` and ``datetime`` values are converted; NaN and infinities
    become ``null`` so the file stays standard JSON.
    """
    path = Path(path)
    text = json.dumps(_json_ready(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    with atomic_write(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def write_csv(
    path: str | os.PathLike[str],
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    header: Sequence[str],
) -> Path:
    """Write a CSV file (UTF-8, header row first) atomically.

    Args:
        path: the file to write.
        rows: each a sequence in ``header`` order or a mapping keyed by the header names (missing
            keys are written empty). ``None`` is written as an empty cell.
        header: the column names.

    Returns:
        ``path``, as a ``Path``.
    """
    path = Path(path)
    header = list(header)
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            cells = [row.get(k) for k in header] if isinstance(row, Mapping) else list(row)
            if len(cells) != len(header):
                raise ValueError(f"rows: a row has {len(cells)} cells, the header has {len(header)}")
            writer.writerow("" if c is None else c for c in cells)
    return path
