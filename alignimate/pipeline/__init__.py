"""The jobs behind the CLI, as plain functions a notebook can call: ``align_folder``,
``apply_transforms``, ``animate``. They take paths and options and return results; they raise
:class:`UsageError` for a bad request and never stop for one bad photo."""

from alignimate.errors import UsageError
from alignimate.pipeline.apply import apply_transforms
from alignimate.pipeline.frames_to_animation import animate, frame_list
from alignimate.pipeline.register_folder import align_folder
from alignimate.pipeline.run import AlignResult

__all__ = ["AlignResult", "UsageError", "align_folder", "animate", "apply_transforms", "frame_list"]
