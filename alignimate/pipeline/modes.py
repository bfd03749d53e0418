"""The names of ``register``'s modes and the parsing of ``--mode keypoints:FILE`` / ``masks:DIR``,
without importing the semantic sources (torch and the detectors): ``align_folder`` resolves its
settings before anything heavy is imported (:mod:`alignimate.pipeline.readahead`)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SEMANTIC_MODES", "parse_mode"]

SEMANTIC_MODES = ("body", "faces", "keypoints", "masks")


def parse_mode(mode: str, source: str | os.PathLike[str] | None) -> tuple[str, Path | None]:
    """Split ``"keypoints:FILE"`` / ``"masks:DIR"`` into the mode and its source.

    Args:
        mode: a mode of :data:`SEMANTIC_MODES`, with ``:SOURCE`` for the file modes.
        source: the source given separately (the ``source`` setting), or None.

    Returns:
        ``(mode, source)``; the source is None for the modes without one. Raises ``ValueError`` when
        a file mode has no source or two different ones.
    """
    name, _, inline = str(mode).partition(":")
    if inline and source is not None and Path(inline) != Path(source):
        raise ValueError(f"mode {mode!r} names a source and source={str(source)!r} names another")
    where = Path(inline) if inline else (Path(source) if source is not None else None)
    if name in ("keypoints", "masks") and where is None:
        what = "a keypoint file (JSON or CSV)" if name == "keypoints" else "a folder of mask PNGs"
        raise ValueError(f"--mode {name} needs {what}: --mode {name}:PATH or --source PATH")
    if name not in ("keypoints", "masks") and where is not None:
        raise ValueError(f"--source is only used by --mode keypoints and --mode masks, not {name}")
    return name, where
