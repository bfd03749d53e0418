"""Step 2 of ``alignimate faces``: the faces of every photo, with their 5 landmarks and embeddings.

Both are cached per photo by content hash (:class:`~alignimate.detect.cache.DetectionCache`), the
embeddings under the key of the detector that found the faces: a rerun reads only the photos the
cache cannot answer, and runs the detector only on those whose faces are missing (a photo whose
faces are cached but whose embeddings are not is read again for the embeddings alone). Also the
embedding of the ``--identity`` photo's largest face, cached the same way.

The photos are the run's own items (:class:`FaceItem`): this module sets their ``faces`` and the
``sha256`` of their record, and hands the photos it cannot use back through a ``drop`` callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from alignimate.detect.base import Detector, Instance, detect_each
from alignimate.detect.cache import DetectionCache
from alignimate.detect.identity import FaceEmbedder, embed_faces
from alignimate.errors import UsageError
from alignimate.io import PhotoError, read_image, read_images_parallel
from alignimate.pipeline.photos import Photo
from alignimate.pipeline.records import PhotoRecord

__all__ = ["FaceItem", "detect_faces"]

# Photos per face-detector call.
_DETECT_BATCH = 8


class FaceItem(Protocol):
    """A photo of the run as :func:`detect_faces` sees it: it reads ``photo.path``, ``record.status``
    and ``record.extra``, and sets ``faces``."""

    photo: Photo
    record: PhotoRecord
    faces: list[Instance]


T = TypeVar("T", bound=FaceItem)


@dataclass
class _Job(Generic[T]):
    """A photo the cache could not fully answer: ``detect`` when its faces are missing too."""

    item: T
    det_key: str
    emb_key: str | None = None
    detect: bool = True


def detect_faces(
    items: Sequence[T],
    detector: Detector,
    embedder: FaceEmbedder | None,
    cache: DetectionCache,
    drop: Callable[[T, str], None],
    bar: Callable[[Iterable[Any], int, str], Iterable[Any]],
) -> tuple[int, int]:
    """Faces (and their embeddings, unless ``embedder`` is None) of every photo, from the cache where
    it has them; the photos missing from it are read and run through the detector in batches.

    Args:
        items: the photos; each one's ``faces`` is set (with each face's ``embedding`` where there is
            an embedder), and its ``record.extra["sha256"]`` (known ones are not hashed again).
        detector, embedder: the face detector and the face embedder.
        cache: the detection cache (a disabled one answers nothing and stores nothing).
        drop: called with a photo and the reason when the photo cannot be read or makes the detector
            fail.
        bar: ``bar(iterable, total, description)``, a progress bar around the photos read.

    Returns:
        ``(detected, cached)``: how many photos went through the detector, and how many had their
        faces in the cache.
    """
    det_settings = detector.settings()
    emb_model = None if embedder is None else f"{embedder.name}@{detector.name}"
    emb_settings = (
        None
        if embedder is None
        else {"detector": det_settings, "crop": embedder.crop_size, "face_scale": embedder.face_scale}
    )
    cached = 0
    todo: list[_Job[T]] = []
    for item in items:
        try:
            digest = item.record.extra.get("sha256") or cache.photo_hash(item.photo.path)
        except OSError as err:  # gone or unreadable since it was found: this photo only
            drop(item, f"cannot be read ({err.strerror or type(err).__name__})")
            continue
        item.record.extra["sha256"] = digest
        job = _Job(item, cache.key(digest, detector.name, det_settings))
        if emb_model is not None:
            job.emb_key = cache.key(digest, emb_model, emb_settings)
        faces = cache.load_instances(detector.name, job.det_key)
        if faces is None:
            todo.append(job)
            continue
        cached += 1
        item.faces = faces
        job.detect = False
        if emb_model is None or not faces:
            continue
        embeddings = cache.load_array(emb_model, job.emb_key or "")
        if embeddings is None or len(embeddings) != len(faces):
            todo.append(job)  # detections known, embeddings missing
            continue
        for face, e in zip(faces, embeddings, strict=True):
            face.embedding = np.asarray(e, dtype=np.float32)
    detected = 0
    if todo:
        detected = _detect_missing(todo, detector, embedder, emb_model, cache, drop, bar)
    return detected, cached


def _detect_missing(
    todo: list[_Job[T]],
    detector: Detector,
    embedder: FaceEmbedder | None,
    emb_model: str | None,
    cache: DetectionCache,
    drop: Callable[[T, str], None],
    bar: Callable[[Iterable[Any], int, str], Iterable[Any]],
) -> int:
    """Reads the photos of ``todo`` and completes them batch by batch; returns how many were detected."""
    detected = 0
    batch: list[tuple[_Job[T], np.ndarray]] = []
    reads = read_images_parallel([job.item.photo.path for job in todo])
    for job, (_, image) in bar(zip(todo, reads, strict=True), len(todo), "detecting faces"):
        if isinstance(image, PhotoError):
            drop(job.item, image.reason)
            continue
        batch.append((job, image))
        if len(batch) == _DETECT_BATCH:
            detected += _detect_batch(batch, detector, embedder, emb_model, cache, drop)
            batch = []
    if batch:
        detected += _detect_batch(batch, detector, embedder, emb_model, cache, drop)
    return detected


def _detect_batch(
    batch: list[tuple[_Job[T], np.ndarray]],
    detector: Detector,
    embedder: FaceEmbedder | None,
    emb_model: str | None,
    cache: DetectionCache,
    drop: Callable[[T, str], None],
) -> int:
    detected = 0
    needs = [(job, image) for job, image in batch if job.detect]
    found = detect_each(detector, [image for _, image in needs])
    for (job, _), faces in zip(needs, found, strict=True):
        if faces is None:
            drop(job.item, "face detection failed on this photo")
            continue
        cache.save_instances(detector.name, job.det_key, faces)
        job.item.faces = faces
        detected += 1
    if embedder is None or emb_model is None:
        return detected
    for job, image in batch:
        if job.item.faces and job.item.record.status != "skipped":
            embeddings = embed_faces(image, job.item.faces, embedder)
            cache.save_array(emb_model, job.emb_key or "", embeddings)
    return detected


def _reference_embedding(
    path: Path, detector: Detector, embedder: FaceEmbedder, cache: DetectionCache
) -> np.ndarray:
    """Embedding of the largest face of the ``--identity`` photo (cached like the others)."""
    try:
        image = read_image(path)
    except PhotoError as err:
        raise UsageError(f"identity photo {err.path}: {err.reason}") from None
    key = cache.key(cache.photo_hash(path), f"{embedder.name}@reference", {"detector": detector.settings()})
    cached = cache.load_array(f"{embedder.name}@reference", key)
    if cached is not None:
        return np.asarray(cached, dtype=np.float32)
    faces = detector.detect([image])[0]
    if not faces:
        raise UsageError(f"identity photo {path}: no face found in it")
    largest = max(faces, key=lambda f: f.area)
    embedding = embed_faces(image, [largest], embedder)[0]
    cache.save_array(f"{embedder.name}@reference", key, embedding)
    return embedding
