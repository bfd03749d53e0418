"""``faces --landmarks 68``: each kept face's five points from dlib's 68-point model (the FFHQ
recipe's eye centres, nose and mouth corners, :func:`~alignimate.detect.dlib_face.five_from_68`),
cached by photo content and face box like the detections.

The model runs inside the face's box on a copy of the photo decoded with that box at least
:data:`LANDMARKS68_FACE_SIDE` pixels (the points mapped back to photo pixels), read and predicted on
the local executor (:mod:`alignimate.pipeline.stages`) so the next photo decodes while one is
predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from alignimate.detect.base import Instance
from alignimate.detect.cache import DetectionCache
from alignimate.errors import UsageError
from alignimate.pipeline.photos import Photo
from alignimate.pipeline.records import PhotoRecord
from alignimate.pipeline.render import read_for_scale
from alignimate.pipeline.stages import Row, RowStage, batch_rows, run_stages

__all__ = ["LANDMARKS68_FACE_SIDE", "landmarks68_of", "load_landmarks68_model"]

# The 68-point model runs on a copy of the photo in which the face's box is at least this many pixels
# (or the photo itself, when smaller): the model returns whole pixels of the copy, and on this side
# that rounding is a small fraction of the eye distance, while a large photo is still decoded cheaply
# (JPEG draft) for one face.
LANDMARKS68_FACE_SIDE = 400
_CACHE_MODEL = "dlib-landmarks-68-five"


class _FaceItem(Protocol):
    photo: Photo
    record: PhotoRecord
    face: Instance | None


def load_landmarks68_model() -> Any:
    """dlib's 68-point landmark model, loaded once for the run; a UsageError naming what to install
    when it is missing."""
    from alignimate.detect.dlib_face import DlibLandmarks68
    from alignimate.detect.weights import WeightsNotFound

    try:
        return DlibLandmarks68()
    except WeightsNotFound as err:
        raise UsageError(f"--landmarks 68 needs dlib's 68-point landmark model: {err}") from None


def _cache_key(item: _FaceItem, cache: DetectionCache) -> str | None:
    """A face's key: the photo's content and the face's box (which the detector's own cache key ties
    to the detector and its settings); None without a content hash."""
    digest = item.record.extra.get("sha256")
    if not digest or item.face is None:
        return None
    box = np.round(np.asarray(item.face.box, dtype=np.float64), 3).tolist()
    return cache.key(digest, _CACHE_MODEL, {"box": box, "face_side": LANDMARKS68_FACE_SIDE})


class _Predict(RowStage):
    """``item`` -> ``points``: the five points of its face, photo pixels ``(5, 2)``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def process(self, row: Row) -> Row:
        from alignimate.detect.dlib_face import predict_five_from_68

        item = row["item"]
        box = np.asarray(item.face.box, dtype=np.float64)
        side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
        scale = min(1.0, LANDMARKS68_FACE_SIDE / side)
        image, small_H_photo = read_for_scale(item.photo.path, item.photo.size_hw, scale, margin=1.0)
        return {"points": predict_five_from_68(self.model, image, box, small_H_photo)}


def landmarks68_of(
    items: Sequence[_FaceItem],
    model: Any,
    cache: DetectionCache,
    drop: Callable[[Any, str], None],
    bar: Callable[[Iterable[Any], int, str], Iterable[Any]],
) -> dict[int, np.ndarray]:
    """The five points of each item's face from dlib's 68-point model, cached.

    Args:
        items: photos with a chosen face (its box is where the model looks).
        model: :func:`load_landmarks68_model`'s.
        cache: the detection cache; points found are stored there, by photo and box.
        drop: ``drop(item, reason)`` for an item whose photo cannot be read; it is left out.
        bar: ``bar(iterable, total, description)``: a progress bar around the predictions.

    Returns:
        ``(5, 2)`` photo pixels, MTCNN order, by ``id(item)``.
    """
    keys = {id(item): _cache_key(item, cache) for item in items}
    found: dict[int, np.ndarray] = {}
    for item in items:
        key = keys[id(item)]
        cached = None if key is None else cache.load_array(_CACHE_MODEL, key)
        if cached is not None and cached.shape == (5, 2):
            found[id(item)] = np.asarray(cached, dtype=np.float64)
    missing = [{"item": item} for item in items if id(item) not in found]
    # One worker: dlib's predictor is used from one thread; reads overlap through the window.
    done = run_stages(missing, [_Predict(model)], batch_size=1, workers=1, window=2)
    for row in bar((row for batch in done for row in batch_rows(batch)), len(missing), "68 landmarks"):
        item = row["item"]
        if row.get("status") == "skipped":
            drop(item, row["reason"])
            continue
        found[id(item)] = row["points"]
        if keys[id(item)] is not None:
            cache.save_array(_CACHE_MODEL, keys[id(item)], row["points"])
    return found
