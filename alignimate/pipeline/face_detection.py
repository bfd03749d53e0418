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

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from alignimate.detect.base import Detector, Instance, detect_each
from alignimate.detect.cache import DetectionCache
from alignimate.detect.identity import FaceEmbedder, embed_faces, framing_of
from alignimate.errors import UsageError
from alignimate.io import PhotoError, read_image_pixels
from alignimate.pipeline.photos import Photo
from alignimate.pipeline.records import PhotoRecord
from alignimate.pipeline.stages import (
    Batch,
    Row,
    RowStage,
    Skip,
    Stage,
    Step,
    batch_rows,
    rows_batch,
    run_steps,
)

__all__ = ["DetectAndEmbed", "FaceItem", "LookUpFaces", "detect_faces"]

# Photos per face-detector call.
_DETECT_BATCH = 8


class FaceItem(Protocol):
    """A photo of the run as :func:`detect_faces` sees it: it reads ``photo.path``, ``record.status``
    and ``record.extra``, and sets ``faces``."""

    photo: Photo
    record: PhotoRecord
    faces: list[Instance]


T = TypeVar("T", bound=FaceItem)


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

    Two stages run on the local executor (:mod:`alignimate.pipeline.stages`): :class:`LookUpFaces`
    and the photo reads on two threads, then :class:`DetectAndEmbed` on one (the detector's own
    threads do the work), so reading the next photos overlaps with detection.

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
    found = run_steps(
        ({"item": item} for item in items),
        [
            Step([LookUpFaces(detector, embedder, cache)], workers=2, window=3),
            Step([DetectAndEmbed(detector, embedder, cache)], batch_size=_DETECT_BATCH),
        ],
    )
    detected = cached = 0
    for row in bar((row for batch in found for row in batch_rows(batch)), len(items), "detecting faces"):
        item = row["item"]
        if row.get("sha256") is not None:
            item.record.extra["sha256"] = row["sha256"]
        if row.get("status") == "skipped":
            drop(item, row["reason"])
            continue
        item.faces = row["faces"]
        cached += bool(row["cached"])
        detected += bool(row["detected"])
    return detected, cached


class LookUpFaces(RowStage):
    """``item`` -> ``sha256``, the cache keys, and ``faces`` (with embeddings) when the cache has them
    all (``cached``); otherwise ``image``, the photo read for :class:`DetectAndEmbed`, with
    ``detect`` saying whether its faces (not only their embeddings) are missing. A photo that cannot
    be read is skipped with the reason."""

    num_cpus = 0.5

    def __init__(self, detector: Detector, embedder: FaceEmbedder | None, cache: DetectionCache) -> None:
        self.cache = cache
        self.det_name, self.det_settings = detector.name, detector.settings()
        self.emb_model = None if embedder is None else f"{embedder.name}@{detector.name}"
        self.emb_settings = (
            None
            if embedder is None
            else {
                "detector": self.det_settings,
                "crop": embedder.crop_size,
                "face_scale": embedder.face_scale,
                # Where the crop puts the landmarks: a new framing gives new embeddings.
                "framing": dataclasses.asdict(framing_of(embedder)),
            }
        )

    def process(self, row: Row) -> Row:
        item = row["item"]
        try:
            digest = item.record.extra.get("sha256") or self.cache.photo_hash(item.photo.path)
        except OSError as err:  # gone or unreadable since it was found: this photo only
            raise Skip(f"cannot be read ({err.strerror or type(err).__name__})") from None
        out: Row = {"sha256": digest, "det_key": self.cache.key(digest, self.det_name, self.det_settings)}
        out["emb_key"] = (
            None if self.emb_model is None else self.cache.key(digest, self.emb_model, self.emb_settings)
        )
        faces = self.cache.load_instances(self.det_name, out["det_key"])
        if faces is not None and self._embeddings_known(faces, out["emb_key"]):
            return {**out, "faces": faces, "cached": True, "detected": False}
        try:
            image = read_image_pixels(item.photo.path)
        except PhotoError as err:
            return {**out, "status": "skipped", "reason": err.reason}
        return {**out, "faces": faces, "image": image, "detect": faces is None, "cached": faces is not None}

    def _embeddings_known(self, faces: list[Instance], emb_key: str | None) -> bool:
        """True when no embedding is wanted, or the cache has one per face (then set on the faces)."""
        if self.emb_model is None or not faces:
            return True
        embeddings = self.cache.load_array(self.emb_model, emb_key or "")
        if embeddings is None or len(embeddings) != len(faces):
            return False
        for face, e in zip(faces, embeddings, strict=True):
            face.embedding = np.asarray(e, dtype=np.float32)
        return True


class DetectAndEmbed(Stage):
    """Rows with an ``image`` (from :class:`LookUpFaces`): detect the faces of those that need it
    (one detector call per batch), embed them, store both in the cache, drop the image. A photo that
    makes the detector fail is skipped with the reason."""

    def __init__(self, detector: Detector, embedder: FaceEmbedder | None, cache: DetectionCache) -> None:
        self.detector, self.embedder, self.cache = detector, embedder, cache
        self.emb_model = None if embedder is None else f"{embedder.name}@{detector.name}"

    def __call__(self, batch: Batch) -> Batch:
        rows = batch_rows(batch)
        pending = [
            i for i, row in enumerate(rows) if row.get("status") != "skipped" and row.get("image") is not None
        ]
        needs = [i for i in pending if rows[i]["detect"]]
        found = detect_each(self.detector, [rows[i]["image"] for i in needs])
        for i, faces in zip(needs, found, strict=True):
            if faces is None:
                rows[i] = {**rows[i], "status": "skipped", "reason": "face detection failed on this photo"}
                continue
            self.cache.save_instances(self.detector.name, rows[i]["det_key"], faces)
            rows[i] = {**rows[i], "faces": faces, "detected": True}
        for i in pending:
            row = rows[i]
            if self.embedder is not None and row.get("status") != "skipped" and row["faces"]:
                embeddings = embed_faces(row["image"], row["faces"], self.embedder)
                self.cache.save_array(self.emb_model or "", row["emb_key"] or "", embeddings)
        return rows_batch([{**row, "image": None, "detected": bool(row.get("detected"))} for row in rows])


def _reference_embedding(
    path: Path, detector: Detector, embedder: FaceEmbedder, cache: DetectionCache
) -> np.ndarray:
    """Embedding of the largest face of the ``--identity`` photo (cached like the others)."""
    try:
        image = read_image_pixels(path)
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
