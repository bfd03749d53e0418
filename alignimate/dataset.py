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

import os
from collections.abc import Callable, Sequence
from typing import Any

from alignimate.errors import UsageError
from alignimate.limits import DEFAULT_MAX_PIXELS

__all__ = ["faces", "read_manifest"]


def faces(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    size: int = 512,
    template: str = "ffhq",
    landmarks: int = 5,
    main_face: bool = False,
    frontal: bool = True,
    max_yaw: float = 0.35,
    max_roll: float = 30.0,
    max_pitch: float = 0.3,
    min_face: int = 64,
    identity: str | os.PathLike[str] | None = None,
    max_distance: float | None = None,
    embed: bool = False,
    image_format: str = "jpg",
    quality: int = 95,
    background: str = "black",
    shard_size: int = 1000,
    detect_size: int = 960,
    max_pixels: int | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    retries: int = 2,
    device: str = "cpu",
    ray_actors: int | None = None,
    ray_actor_cpus: float = 0.75,
    video_every: int = 1,
    sample_fps: float = 0.0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Any:
    """One aligned square crop per face of every photo under ``src`` (recursively), and a Parquet
    manifest, in ``dst``; rerunning adds only the photos whose content is not in the manifest yet.
    ``src`` may be a video file: its frames (every ``video_every``-th, or ``sample_fps`` per second
    when above 0) are written into ``dst`` and processed like photos.

    Args:
        size: crop side, pixels. template: ``ffhq`` | ``arcface`` | ``eyes`` (as ``alignimate faces``)
            | ``ffhq-quad`` (the FFHQ recipe's own square per face). landmarks: 5 (MTCNN's) | 68
            (dlib's 68-point model, opt-in: its training data forbids commercial use; with ``ffhq``
            the exact FFHQ recipe).
        main_face: keep only the largest face of each photo (default: every face that passes).
        frontal, max_yaw, max_roll, max_pitch: the frontal filter (:mod:`alignimate.detect.frontal`;
            ``max_roll`` in degrees). min_face: smallest face kept, longer side of its box in pixels.
        identity: a photo of the person to keep (its largest face); max_distance: the largest cosine
            distance to it (default: the embedder's calibrated one). embed: store every face's
            embedding in the manifest.
        image_format, quality, background: crop files (``jpg`` | ``png``; ``black`` | ``white`` |
            ``blur``). shard_size: photos per crop folder. detect_size: long side of MTCNN's copy.
        max_pixels: decompression budget (default about 89 MP).
        engine: ``local`` | ``ray``; address: a Ray cluster (``ray://...`` or ``auto``). workers,
            batch_size, retries, device, ray_actors, ray_actor_cpus, progress, log: see
            :func:`alignimate.pipeline.dataset_faces.make_face_dataset`.

    Returns:
        :class:`~alignimate.pipeline.dataset_faces.DatasetResult`. Raises
        :class:`~alignimate.errors.UsageError` for a bad request.
    """
    from alignimate.detect.frontal import FrontalThresholds
    from alignimate.pipeline.dataset_faces import DatasetSettings, make_face_dataset

    try:
        thresholds = (
            FrontalThresholds(max_yaw=max_yaw, max_roll_deg=max_roll, max_pitch=max_pitch)
            if frontal
            else None
        )
    except ValueError as err:
        raise UsageError(f"frontal filter: {err}") from None
    settings = DatasetSettings(
        size=size,
        template=template,
        main_face=main_face,
        frontal=thresholds,
        min_face=min_face,
        max_distance=max_distance,
        embed=embed,
        image_format=image_format,
        quality=quality,
        background=background,
        detect_size=detect_size,
        decode_side=2 * detect_size,
        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        shard_size=shard_size,
        landmarks=landmarks,
    )
    return make_face_dataset(
        src,
        dst,
        settings=settings,
        identity=identity,
        engine=engine,
        address=address,
        workers=workers,
        batch_size=batch_size,
        retries=retries,
        device=device,
        ray_actors=ray_actors,
        ray_actor_cpus=ray_actor_cpus,
        video_every=video_every,
        sample_fps=sample_fps,
        progress=progress,
        log=log,
    )


def read_manifest(dst: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Any:
    """The manifest of the dataset in ``dst`` as a ``pyarrow.Table`` (all part files; the columns are
    listed in docs/scale.md and :data:`alignimate.pipeline.dataset_stages.MANIFEST_COLUMNS`)."""
    from alignimate.pipeline.dataset_faces import read_manifest as read

    return read(dst, columns)
