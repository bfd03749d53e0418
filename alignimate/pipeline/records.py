"""``transforms.json`` and ``report.csv``: what a run did to every photo, in a form other runs reuse.

``transforms.json`` (written atomically, also as a checkpoint while a run is in progress)::

    {
      "format": "alignimate-transforms", "version": 1, "alignimate": "0.1.0",
      "command": "register", "input": "/abs/input/folder", "settings": {...},
      "reference": "ref.jpg",            # name (relative to input) of the reference photo
      "canvas": [h, w],                  # reference photo's full-resolution size
      "crop": {"top": 0, "left": 0, "height": h, "width": w} | null,
      "output_size": [h, w],             # size of every written frame
      "photos": [PhotoRecord, ...]       # in animation order
    }

Each photo record holds ``matrix``: the 3x3 pixel matrix ``canvas_H_photo`` (full-resolution photo
pixels to reference-canvas pixels, docs/conventions.md); the written frame is that warp followed by
the crop, i.e. ``frame_H_photo = translate(-left, -top) @ canvas_H_photo``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from alignimate import __version__
from alignimate.io import write_csv, write_json
from alignimate.limits import MAX_FRAME_PIXELS, MAX_FRAME_SIDE, MAX_PHOTOS, MAX_PIXELS_RANGE, size_problem
from alignimate.pipeline.outputs import CHECKPOINT_NAME, OutputFolder, is_frame_name_of, plain_name_problem

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "CHECKPOINT_NAME",
    "REPORT_COLUMNS",
    "REPORT_NAME",
    "STATUSES",
    "TRANSFORMS_NAME",
    "Checkpoint",
    "PhotoRecord",
    "RunRecord",
    "TransformsFileError",
    "load_previous",
    "matrix_problem",
    "read_transforms",
    "write_report",
    "write_transforms",
]

FORMAT = "alignimate-transforms"
TRANSFORMS_NAME = "transforms.json"
REPORT_NAME = "report.csv"
REPORT_COLUMNS = (
    "index",
    "name",
    "status",
    "reason",
    "loss",
    "converged",
    "output",
    "datetime",
    "identity_distance",
)


class TransformsFileError(ValueError):
    """A transforms.json that cannot be used; the message names the file and the reason."""


@dataclass
class PhotoRecord:
    """One photo's outcome. ``status`` is ``"reference"``, ``"aligned"`` or ``"skipped"``."""

    name: str
    source: str
    status: str
    reason: str = ""
    size: list[int] | None = None
    datetime: str | None = None
    matrix: list[list[float]] | None = None
    loss: float | None = None
    converged: bool | None = None
    iterations: int | None = None
    output: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.status in ("reference", "aligned") and self.matrix is not None


@dataclass
class RunRecord:
    """A whole run, as stored in transforms.json."""

    command: str
    input: str
    settings: dict[str, Any]
    reference: str | None = None
    canvas: list[int] | None = None
    crop: dict[str, int] | None = None
    output_size: list[int] | None = None
    photos: list[PhotoRecord] = field(default_factory=list)

    def by_name(self) -> dict[str, PhotoRecord]:
        """Records by photo name (the first entry where a name repeats)."""
        return {p.name: p for p in reversed(self.photos)}


def write_transforms(path: Path, run: RunRecord) -> None:
    """Write ``run`` to ``path`` atomically."""
    data = {"format": FORMAT, "version": 1, "alignimate": __version__, **asdict(run)}
    write_json(path, data)


CHECKPOINT_INTERVAL_S = 2.0
"""Seconds between two checkpoint writes while a run makes progress."""


class Checkpoint:
    """The checkpoint file of a run in progress: the whole run, rewritten as photos get done.

    Each write holds every photo's record, so writing after every photo would make a long run
    quadratic (what one write costs: docs/benchmarks.md, design measurements). :meth:`update`
    therefore writes at most every ``interval_s`` seconds and otherwise keeps the newest state
    pending; the run calls :meth:`flush` when it stops for any reason (an error, Ctrl-C), so a
    resumed run redoes nothing that was finished. Only a hard kill loses the pending state: at most
    ``interval_s`` seconds of work, redone on the next run.
    """

    def __init__(self, path: Path, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._pending: Callable[[], RunRecord] | None = None
        self._written_at = -math.inf

    def update(self, run: Callable[[], RunRecord]) -> None:
        """Record progress: ``run()`` builds the current state (called when it is written)."""
        self._pending = run
        if time.monotonic() - self._written_at >= self.interval_s:
            self.flush()

    def flush(self, *, quietly: bool = False) -> None:
        """Write the pending state now (nothing when there is none).

        Args:
            quietly: ignore an I/O error (a full disk, while the run stops because of it), so it
                cannot hide the error that stopped the run; the next run then redoes the unrecorded
                work.
        """
        if self._pending is not None:
            try:
                write_transforms(self.path, self._pending())
            except OSError:
                if not quietly:
                    raise
                return
            self._pending = None
            self._written_at = time.monotonic()

    def remove(self) -> None:
        """The run finished: forget the pending state and delete the file."""
        self._pending = None
        self.path.unlink(missing_ok=True)


_MAX_TRANSFORMS_BYTES = 1 << 30
STATUSES = ("reference", "aligned", "skipped", "pending")
COMMANDS = ("register", "faces", "apply")
# A well-conditioned photo-to-canvas matrix: how far the photo may be magnified or shrunk, how
# anisotropic the warp may be at the photo's corners, and how far from the canvas a corner may land.
_SCALE_RANGE = (1e-4, 1e4)
_MAX_ANISOTROPY = 1e3
_MAX_MAPPED_COORDINATE = 1e7


def read_transforms(path: Path) -> RunRecord:
    """Read a transforms.json (or checkpoint), checking everything in it as untrusted input.

    Raises :class:`TransformsFileError`, naming the file and the problem, when the file as a whole
    cannot be used (not JSON, not ours, a canvas, crop or output size that is not a positive
    integer size within the budget of :mod:`alignimate.limits`). A bad photo entry (unknown status,
    a matrix that is not 3x3, finite and well conditioned, an output that is not a plain file name
    or is used twice, wrong types) does not fail the file: it is read as ``skipped`` with the
    reason, so the other photos can still be written."""
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_TRANSFORMS_BYTES:
            raise TransformsFileError(f"{path}: larger than {_MAX_TRANSFORMS_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_non_finite)
    except FileNotFoundError:
        raise TransformsFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        if isinstance(err, TransformsFileError):
            raise
        raise TransformsFileError(f"{path}: not a readable JSON file ({_short(err)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TransformsFileError(f"{path}: not an alignimate transforms.json (no 'format': '{FORMAT}')")
    try:
        _check_tree(data)
        return _run_from_json(data)
    except _BadValueError as err:
        raise TransformsFileError(f"{path}: {err}") from None


class _BadValueError(ValueError):
    """A value of a transforms.json that cannot be used."""


_MAX_DEPTH = 32
_MAX_INT = 1 << 63  # nanosecond file times are about 2**61


def _check_tree(data: Any) -> None:
    """Values that JSON can hold but no run writes, refused for the whole file: nesting deeper than
    ``_MAX_DEPTH`` (it could not be written back), text that is not valid Unicode (lone surrogates
    from ``\\ud800`` escapes), integers beyond ``_MAX_INT`` (they overflow floats)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _BadValueError(f"nested more than {_MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((k, depth + 1) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _BadValueError("holds text that is not valid Unicode") from None
        elif _is_int(value) and abs(value) > _MAX_INT:
            raise _BadValueError("holds an integer beyond 64 bits")


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _non_finite(name: str) -> float:
    # Python's json reads NaN and Infinity, which are not JSON; keep them as floats so that the
    # checks below reject them where they matter.
    return float(name.lower().replace("infinity", "inf"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _size(value: Any, what: str, max_side: int, max_pixels: int) -> list[int]:
    """``[h, w]``: two positive ints, each side and the area within the budget."""
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise _BadValueError(f"{what} must be [height, width] in whole pixels, got {_short_repr(value)}")
    h, w = value
    problem = size_problem(h, w, max_side, max_pixels)
    if problem is not None:
        raise _BadValueError(f"{what} {problem}")
    return [h, w]


def _frame_size(value: Any, what: str) -> list[int]:
    return _size(value, what, MAX_FRAME_SIDE, MAX_FRAME_PIXELS)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _crop(value: Any, canvas: list[int] | None) -> dict[str, int] | None:
    if value is None:
        return None
    keys = ("top", "left", "height", "width")
    if not (isinstance(value, dict) and set(value) == set(keys) and all(_is_int(value[k]) for k in keys)):
        raise _BadValueError(
            f"crop must be {{top, left, height, width}} in whole pixels, got {_short_repr(value)}"
        )
    if canvas is None:
        raise _BadValueError("crop given without a canvas")
    top, left, height, width = (value[k] for k in keys)
    _frame_size([height, width], "crop")
    if top < 0 or left < 0 or top + height > canvas[0] or left + width > canvas[1]:
        raise _BadValueError(f"crop {value} does not lie inside the canvas {canvas[0]}x{canvas[1]}")
    return {k: value[k] for k in keys}


def _run_from_json(data: dict[str, Any]) -> RunRecord:
    command, folder, settings = data.get("command"), data.get("input"), data.get("settings")
    if command not in COMMANDS:
        raise _BadValueError(f"command must be one of {', '.join(COMMANDS)}, got {_short_repr(command)}")
    if not isinstance(folder, str):
        raise _BadValueError("input must be the input folder's path")
    if not isinstance(settings, dict):
        raise _BadValueError("settings must be an object")
    reference = data.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise _BadValueError("reference must be a photo name or null")
    canvas = None if data.get("canvas") is None else _frame_size(data["canvas"], "canvas")
    crop = _crop(data.get("crop"), canvas)
    output_size = None if data.get("output_size") is None else _frame_size(data["output_size"], "output_size")
    if output_size is not None:
        expected = [crop["height"], crop["width"]] if crop else canvas
        if output_size != expected:
            what = "crop" if crop else "canvas"
            raise _BadValueError(f"output_size {output_size} does not match the {what} {expected}")
    photos = data.get("photos")
    if not isinstance(photos, list):
        raise _BadValueError("photos must be a list")
    if len(photos) > MAX_PHOTOS:
        raise _BadValueError(f"more than {MAX_PHOTOS} photos")
    records = [_photo_from_json(i, entry) for i, entry in enumerate(photos)]
    _skip_repeats(records)
    return RunRecord(
        command=command,
        input=folder,
        settings=settings,
        reference=reference,
        canvas=canvas,
        crop=crop,
        output_size=output_size,
        photos=records,
    )


_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "reason": (str,),
    "datetime": (str,),
    "loss": (int, float),
    "converged": (bool,),
    "iterations": (int,),
    "output": (str,),
    "extra": (dict,),
}


def _photo_from_json(index: int, entry: Any) -> PhotoRecord:
    """One photo entry; any problem makes it a skipped record with the reason."""
    if not isinstance(entry, dict):
        return _bad_entry(f"entry {index}", "", f"photo entry {index} is not an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "\0" in name or len(name) > 4096:
        return _bad_entry(f"entry {index}", "", f"photo entry {index} has no usable name")
    source = entry.get("source") if isinstance(entry.get("source"), str) else ""
    try:
        record = _checked_record(name, entry)
    except _BadValueError as err:
        return _bad_entry(name, source, str(err))
    return record


def _checked_record(name: str, entry: dict[str, Any]) -> PhotoRecord:
    status = entry.get("status")
    if status not in STATUSES:
        raise _BadValueError(f"unknown status {_short_repr(status)} (known: {', '.join(STATUSES)})")
    values: dict[str, Any] = {}
    for key, types in _OPTIONAL_TYPES.items():
        value = entry.get(key)
        bad_bool = isinstance(value, bool) and bool not in types
        if value is not None and (bad_bool or not isinstance(value, types)):
            raise _BadValueError(f"{key} has the wrong type ({type(value).__name__})")
        values[key] = value
    if values["loss"] is not None and not math.isfinite(values["loss"]):
        values["loss"] = None
    if values["datetime"] is not None:
        try:
            datetime.fromisoformat(values["datetime"])
        except ValueError:
            raise _BadValueError(f"datetime {_short_repr(values['datetime'])} is not an ISO date") from None
    if values["output"] is not None:
        problem = plain_name_problem(values["output"])
        if problem is not None:
            raise _BadValueError(f"output {problem}; only plain file names in the output folder are written")
    size = None if entry.get("size") is None else _size(entry["size"], "size", 1 << 20, MAX_PIXELS_RANGE[1])
    matrix = entry.get("matrix")
    if matrix is not None:
        if size is None:
            raise _BadValueError("a matrix without the photo's size")
        problem = matrix_problem(matrix, size)
        if problem is not None:
            raise _BadValueError(f"matrix {problem}")
    elif status in ("reference", "aligned"):
        raise _BadValueError(f"status {status} without a matrix")
    return PhotoRecord(
        name=name,
        source=values["source"] or "",
        status=status,
        reason=values["reason"] or "",
        size=size,
        datetime=values["datetime"],
        matrix=None if matrix is None else [[float(v) for v in row] for row in matrix],
        loss=values["loss"],
        converged=values["converged"],
        iterations=values["iterations"],
        output=values["output"],
        extra=values["extra"] or {},
    )


def _bad_entry(name: str, source: str, problem: str) -> PhotoRecord:
    reason = f"bad entry in transforms.json: {problem}"
    return PhotoRecord(name=name, source=source, status="skipped", reason=reason)


def _skip_repeats(records: list[PhotoRecord]) -> None:
    """A second entry for the same photo, or a second photo writing the same output, is skipped."""
    names: set[str] = set()
    outputs: dict[str, str] = {}
    for record in records:
        if record.name in names:
            _mark_bad(record, f"a second entry for photo {record.name!r}")
        names.add(record.name)
        if record.output is None:
            continue
        key = record.output.casefold()  # one file on case-insensitive file systems
        if key in outputs:
            _mark_bad(record, f"output {record.output!r} is also the output of photo {outputs[key]!r}")
        else:
            outputs[key] = record.name


def _mark_bad(record: PhotoRecord, problem: str) -> None:
    record.status, record.matrix, record.output = "skipped", None, None
    record.reason = f"bad entry in transforms.json: {problem}"


def matrix_problem(matrix: Any, size_hw: Sequence[int]) -> str | None:
    """Why ``matrix`` is not a usable photo-to-canvas matrix for a photo of ``size_hw``, or None.

    Usable: 3x3 finite numbers; the photo stays on one side of the horizon (every corner maps to a
    positive or every corner to a negative homogeneous w); at each corner the local scale lies in
    ``_SCALE_RANGE`` and the anisotropy is at most ``_MAX_ANISOTROPY``; corners land within
    ``_MAX_MAPPED_COORDINATE`` pixels of the canvas origin."""
    if not (
        isinstance(matrix, list)
        and len(matrix) == 3
        and all(isinstance(row, list) and len(row) == 3 and all(_is_number(v) for v in row) for row in matrix)
    ):
        return "must be 3x3 numbers"
    m = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(m).all():
        return "holds a value that is not finite"
    h, w = size_hw
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]])
    mapped = corners @ m.T
    weights = mapped[:, 2]
    tiny = 1e-12 * np.abs(m).max()
    if not ((weights > tiny).all() or (weights < -tiny).all()):
        return "maps part of the photo through infinity (singular or folded)"
    points = mapped[:, :2] / weights[:, None]
    if np.abs(points).max() > _MAX_MAPPED_COORDINATE:
        return "maps the photo too far from the canvas"
    for (x, y, _), wt in zip(corners, weights, strict=True):
        # Jacobian of the projective map at (x, y): (A - p b^T) / w with p the mapped point.
        p = (m[:2] @ [x, y, 1]) / wt
        jacobian = (m[:2, :2] - np.outer(p, m[2, :2])) / wt
        singular = np.linalg.svd(jacobian, compute_uv=False)
        if singular[1] <= 0 or not _SCALE_RANGE[0] <= math.sqrt(singular[0] * singular[1]) <= _SCALE_RANGE[1]:
            return "is singular or scales the photo beyond 1e-4 to 1e4"
        if singular[0] / singular[1] > _MAX_ANISOTROPY:
            return "is ill-conditioned (stretches one direction over 1000 times more than the other)"
    return None


def load_previous(folder: OutputFolder, command: str) -> RunRecord | None:
    """The earlier run of a command recorded in an output folder, to resume from.

    Only files alignimate owns there are read. A recorded frame is reused only for a usable photo,
    when it is one of alignimate's files and a name alignimate gives that photo's frames
    (:func:`~alignimate.pipeline.outputs.is_frame_name_of`): otherwise the photo loses it and is
    written again under a name alignimate claims, so a hand-edited record cannot pass one photo's
    frame, or a report, off as another photo's frame.

    Args:
        folder: the open output folder.
        command: the job (``register``, ``faces``, ...); another command's record is not used.

    Returns:
        the record (its checkpoint first, then its transforms.json), or None.
    """
    for name in (CHECKPOINT_NAME, TRANSFORMS_NAME):
        if name != CHECKPOINT_NAME and not folder.owns(name):
            continue
        path = folder.path / name
        if not path.is_file():
            continue
        try:
            run = read_transforms(path)
        except TransformsFileError:
            return None
        if run.command != command:
            return None
        for record in run.photos:
            output = record.output
            reusable = (
                output is not None
                and record.usable
                and folder.owns(output)
                and output not in (TRANSFORMS_NAME, REPORT_NAME)
                and is_frame_name_of(record.name, output)
            )
            if not reusable:
                record.output = None
                record.extra.pop("frame", None)
        return run
    return None


def _number(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def write_report(path: Path, run: RunRecord) -> None:
    """Write report.csv: one row per photo, kept and skipped, with the reason."""
    rows = [
        {
            "index": i,
            "name": p.name,
            "status": p.status,
            "reason": p.reason,
            "loss": "" if p.loss is None else f"{p.loss:.6g}",
            "converged": "" if p.converged is None else str(p.converged).lower(),
            "output": p.output or "",
            "datetime": p.datetime or "",
            # faces: the face's distance to the person (kept) or the nearest face's (dropped).
            "identity_distance": _number(p.extra.get("identity_distance")),
        }
        for i, p in enumerate(run.photos)
    ]
    write_csv(path, rows, REPORT_COLUMNS)
