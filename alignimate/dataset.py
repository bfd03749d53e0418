"""Dataset jobs from Python, the same as ``alignimate dataset ...`` on the command line::

    from alignimate import dataset

    result = dataset.faces("photos/", "faces_512/")                  # alignimate dataset faces
    result = dataset.faces("photos/", "faces_512/", engine="ray")    # the same stages on Ray Data
    result = dataset.faces("clip.mp4", "clip_faces/", sample_fps=2)  # a video's frames, 2 per second
    table = dataset.read_manifest("faces_512/")                      # a pyarrow.Table

The job and its output folder are described in :mod:`alignimate.pipeline.dataset_faces`; scale
notes (throughput, a plan for millions of photos, running on a cluster) in docs/scale.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from alignimate.settings import DatasetFacesSettings

__all__ = ["faces", "read_manifest"]


def faces(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    settings: DatasetFacesSettings | None = None,
    *,
    identity: str | os.PathLike[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> Any:
    """One aligned square crop per face of every photo under ``src`` (recursively), and a Parquet
    manifest, in ``dst``; rerunning adds only the photos whose content is not in the manifest yet.
    ``src`` may be a video file: its frames (every ``video_every``-th, or ``sample_fps`` per second
    when above 0) are written into ``dst`` and processed like photos.

    Args:
        settings: which faces and what crops (:class:`~alignimate.settings.DatasetFacesSettings`:
            size, template, landmarks, main_face, the frontal filter, min_face, max_distance, embed,
            the crop files, shard_size, detect_size, max_pixels, video sampling); ``options`` naming
            its fields replace them (``size=256``), checked like the flags.
        identity: a photo of the person to keep (its largest face).
        options: also how the job runs: ``engine`` (``local`` | ``ray``), ``address``, ``workers``,
            ``batch_size``, ``retries``, ``device``, ``ray_actors``, ``ray_actor_cpus``
            (:func:`alignimate.pipeline.dataset_faces.make_face_dataset`, which holds their defaults).

    Returns:
        :class:`~alignimate.pipeline.dataset_faces.DatasetResult`. Raises
        :class:`~alignimate.errors.UsageError` for a bad request.
    """
    from alignimate.pipeline.dataset_faces import make_face_dataset, recorded_settings

    fields = {f.name for f in dataclasses.fields(DatasetFacesSettings)}
    chosen = DatasetFacesSettings.with_options(settings, {k: v for k, v in options.items() if k in fields})
    run = {k: v for k, v in options.items() if k not in fields and v is not None}
    return make_face_dataset(
        src,
        dst,
        settings=recorded_settings(chosen),
        identity=identity,
        video_every=chosen.video_every,
        sample_fps=chosen.sample_fps,
        progress=progress,
        log=log,
        **run,
    )


def read_manifest(dst: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Any:
    """The manifest of a dataset as one ``pyarrow.Table``.

    Args:
        dst: the dataset's folder (the ``dst`` of :func:`faces`); all its part files are read.
        columns: the columns to read (default: all; they are listed in docs/scale.md and
            :data:`alignimate.pipeline.dataset_stages.MANIFEST_COLUMNS`).
    """
    from alignimate.pipeline.dataset_faces import read_manifest as read

    return read(dst, columns)
