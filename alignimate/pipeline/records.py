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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignimate import __version__
from alignimate.io import write_csv, write_json

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "REPORT_COLUMNS",
    "Checkpoint",
    "PhotoRecord",
    "RunRecord",
    "TransformsFileError",
    "read_transforms",
    "write_report",
    "write_transforms",
]

FORMAT = "alignimate-transforms"
REPORT_COLUMNS = ("index", "name", "status", "reason", "loss", "converged", "output", "datetime")


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
        return {p.name: p for p in self.photos}


def write_transforms(path: Path, run: RunRecord) -> None:
    """Write ``run`` to ``path`` atomically."""
    data = {"format": FORMAT, "version": 1, "alignimate": __version__, **asdict(run)}
    write_json(path, data)


CHECKPOINT_INTERVAL_S = 2.0
"""Seconds between two checkpoint writes while a run makes progress."""


class Checkpoint:
    """The checkpoint file of a run in progress: the whole run, rewritten as photos get done.

    Each write holds every photo's record, so writing after every photo would make a long run
    quadratic (measured: 18 ms to write a 100-photo run, i.e. about 3 minutes of writes over a run of
    1000). :meth:`update` therefore writes at most every ``interval_s`` seconds and otherwise keeps
    the newest state pending; the run calls :meth:`flush` when it stops for any reason (an error,
    Ctrl-C), so a resumed run redoes nothing that was finished. Only a hard kill loses the pending
    state: at most ``interval_s`` seconds of work, redone on the next run.
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

    def flush(self) -> None:
        """Write the pending state now (nothing when there is none)."""
        if self._pending is not None:
            write_transforms(self.path, self._pending())
            self._pending = None
            self._written_at = time.monotonic()

    def remove(self) -> None:
        """The run finished: forget the pending state and delete the file."""
        self._pending = None
        self.path.unlink(missing_ok=True)


def read_transforms(path: Path) -> RunRecord:
    """Read a transforms.json; raises :class:`TransformsFileError` naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TransformsFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TransformsFileError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TransformsFileError(f"{path}: not an alignimate transforms.json (no 'format': '{FORMAT}')")
    try:
        photos = [PhotoRecord(**p) for p in data["photos"]]
        return RunRecord(
            command=data["command"],
            input=data["input"],
            settings=data["settings"],
            reference=data.get("reference"),
            canvas=data.get("canvas"),
            crop=data.get("crop"),
            output_size=data.get("output_size"),
            photos=photos,
        )
    except (KeyError, TypeError) as err:
        raise TransformsFileError(f"{path}: malformed transforms.json ({err})") from None


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
        }
        for i, p in enumerate(run.photos)
    ]
    write_csv(path, rows, REPORT_COLUMNS)
