"""Exclusion files: the photos a person chose to leave out, saved by the review page (``review.html``).

The file is small JSON, written by the page (a download, also remembered in the browser) or by
:func:`write_exclusions`::

    {
      "format": "alignimate-exclusions",
      "version": 1,
      "exclude": ["2021/IMG_0001.jpg", "IMG_0042.jpg"],   # photo names, as in transforms.json
      "input": "/abs/input/folder",                      # optional, informational
      "output": "/abs/output/folder",                    # optional, informational
      "saved": "2024-05-01T10:00:00Z"                    # optional, informational
    }

A name is a photo's ``name`` in transforms.json: its path relative to the input folder, with ``/``
between folders. The same photo has the same name in the output of ``register``, of a rerun of
``register``/``faces``, and of ``apply`` from that run's transforms.json, so one file serves them
all. For a folder of frames without a transforms.json, ``animate`` names a frame by its file name.

What a job does with the set (docs/review.md): ``animate --exclude FILE`` leaves those frames out of
the animation; ``apply``, and a rerun of ``register`` or ``faces``, treat an excluded photo as
skipped with the reason :data:`EXCLUDED_REASON` (listed in report.csv, no frame written). Names
that match no photo are ignored.

The file is untrusted input (:func:`read_exclusions`): a size limit, an exact schema (unknown keys
are refused, so a misspelt ``"exlude"`` cannot silently exclude nothing), and one-line errors that
name the file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignimate.errors import UsageError
from alignimate.io import write_json

__all__ = [
    "EXCLUDED_REASON",
    "EXCLUSIONS_FORMAT",
    "EXCLUSIONS_VERSION",
    "MAX_EXCLUSIONS_BYTES",
    "ExclusionsFileError",
    "read_exclusions",
    "write_exclusions",
]

EXCLUSIONS_FORMAT = "alignimate-exclusions"
EXCLUSIONS_VERSION = 1
EXCLUDED_REASON = "excluded by review"
"""The reason recorded for a photo that a job leaves out because an exclusion file names it."""

MAX_EXCLUSIONS_BYTES = 16 << 20
"""Largest exclusion file read: room for about 100,000 long photo names, far beyond a review."""

_MAX_NAME_CHARS = 4096  # the longest photo name transforms.json accepts
_INFO_KEYS = ("input", "output", "saved")


class ExclusionsFileError(UsageError):
    """An exclusion file that cannot be used (exit status 2); the message names the file and why."""


def _read_bounded(path: Path) -> bytes:
    """The bytes of the regular file at ``path``, refusing anything else before reading: a FIFO
    (opened without blocking), a device or a folder, or more than :data:`MAX_EXCLUSIONS_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ExclusionsFileError(f"{path}: exclusion file not found") from None
    except IsADirectoryError:
        raise ExclusionsFileError(f"{path}: is a folder, not an exclusion file") from None
    except OSError as err:
        raise ExclusionsFileError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ExclusionsFileError(f"{path}: is a folder, not an exclusion file")
        if not stat.S_ISREG(info.st_mode):
            raise ExclusionsFileError(f"{path}: not a regular file")
        if info.st_size > MAX_EXCLUSIONS_BYTES:
            raise ExclusionsFileError(f"{path}: larger than {MAX_EXCLUSIONS_BYTES >> 20} MiB")
        chunks, total = [], 0
        # Read to the limit, not to st_size: the file may grow while it is read.
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_EXCLUSIONS_BYTES:
                raise ExclusionsFileError(f"{path}: larger than {MAX_EXCLUSIONS_BYTES >> 20} MiB")
        return b"".join(chunks)
    except OSError as err:
        raise ExclusionsFileError(f"{path}: cannot be read ({err.strerror or err})") from None
    finally:
        os.close(fd)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _name_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is not a text name ({type(value).__name__})"
    if not value:
        return "is empty"
    if len(value) > _MAX_NAME_CHARS:
        return f"is longer than {_MAX_NAME_CHARS} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def read_exclusions(path: str | os.PathLike[str]) -> frozenset[str]:
    """Read an exclusion file (module docstring) as untrusted input.

    Args:
        path: the file, e.g. the ``aligned-exclusions.json`` the review page saved.

    Returns:
        The excluded photo names (empty when the file excludes nothing).

    Raises:
        ExclusionsFileError: (a :class:`~alignimate.errors.UsageError`) with one line naming the
            file and the problem: missing, not a regular file, over :data:`MAX_EXCLUSIONS_BYTES`,
            not UTF-8 JSON, another format or version, an unknown key, or an entry that is not a
            usable name (text, 1 to 4096 characters, no control characters).
    """
    path = Path(path)
    raw = _read_bounded(path)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ExclusionsFileError(f"{path}: not UTF-8 text") from None
    except (ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ExclusionsFileError(f"{path}: not a readable JSON file ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != EXCLUSIONS_FORMAT:
        raise ExclusionsFileError(
            f"{path}: not an alignimate exclusion file (no \"format\": \"{EXCLUSIONS_FORMAT}\"); save one "
            f"from the review page (alignimate review OUT)"
        )
    version = data.get("version")
    if version != EXCLUSIONS_VERSION or isinstance(version, bool):
        raise ExclusionsFileError(
            f"{path}: version {_short(version)} is not supported (this alignimate reads version "
            f"{EXCLUSIONS_VERSION})"
        )
    unknown = sorted(str(k) for k in data if k not in ("format", "version", "exclude", *_INFO_KEYS))
    if unknown:
        raise ExclusionsFileError(
            f"{path}: unknown key {_short(unknown[0])} (known: format, version, exclude, "
            f"{', '.join(_INFO_KEYS)})"
        )
    for key in _INFO_KEYS:
        if key in data and (not isinstance(data[key], str) or len(data[key]) > _MAX_NAME_CHARS):
            raise ExclusionsFileError(f"{path}: {key} must be text of at most {_MAX_NAME_CHARS} characters")
    names = data.get("exclude")
    if not isinstance(names, list):
        raise ExclusionsFileError(f"{path}: exclude must be a list of photo names")
    for index, name in enumerate(names):
        problem = _name_problem(name)
        if problem is not None:
            raise ExclusionsFileError(f"{path}: exclude entry {index} {problem}")
    return frozenset(names)


def write_exclusions(
    path: str | os.PathLike[str],
    names: Iterable[str],
    *,
    input: str | None = None,
    output: str | None = None,
) -> Path:
    """Write an exclusion file (the format the review page saves) atomically.

    Args:
        path: where to write it; an existing file there is replaced.
        names: the photo names to exclude (transforms.json ``name``s), written sorted and once each.
        input, output: the run's input and output folders, recorded for the reader's information.

    Returns:
        ``path``.

    Raises:
        ValueError: a name that :func:`read_exclusions` would refuse.
    """
    ordered = sorted(set(names))
    for name in ordered:
        problem = _name_problem(name)
        if problem is not None:
            raise ValueError(f"names: {_short(name)} {problem}")
    data: dict[str, Any] = {"format": EXCLUSIONS_FORMAT, "version": EXCLUSIONS_VERSION, "exclude": ordered}
    for key, value in (("input", input), ("output", output)):
        if value is not None:
            data[key] = value
    return write_json(path, data)
