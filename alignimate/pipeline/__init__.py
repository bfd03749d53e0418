"""The jobs behind the CLI, as plain functions a notebook can call: ``align_folder``,
``apply_transforms``, ``animate``. They take paths and options and return results; they raise
:class:`UsageError` for a bad request and never stop for one bad photo.

Each job is imported on first use, so that a job imports only what it needs (``apply`` of affine
frames on the CPU never imports torch, which the other jobs do)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alignimate.errors import UsageError
from alignimate.lazy import lazy_exports

if TYPE_CHECKING:
    from alignimate.pipeline.apply import apply_transforms
    from alignimate.pipeline.frames_to_animation import animate, frame_list
    from alignimate.pipeline.register_folder import align_folder
    from alignimate.pipeline.run import AlignResult

_LAZY = {
    "AlignResult": "alignimate.pipeline.run",
    "align_folder": "alignimate.pipeline.register_folder",
    "animate": "alignimate.pipeline.frames_to_animation",
    "apply_transforms": "alignimate.pipeline.apply",
    "frame_list": "alignimate.pipeline.frames_to_animation",
}

__all__ = ["AlignResult", "UsageError", "align_folder", "animate", "apply_transforms", "frame_list"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
