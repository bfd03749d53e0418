"""A per-photo cache of detections and embeddings, so a rerun only processes new or changed photos.

An entry is keyed by the sha256 of the photo's bytes (so renaming or touching a file keeps its
entry, and editing it invalidates it), the model name and the model's settings. Entries are small
compressed ``.npz`` files under ``$ALIGNIMATE_CACHE`` (default ``~/.cache/alignimate``), written
atomically; an entry that cannot be read is deleted and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignimate.detect.base import Detector, Instance
from alignimate.detect.weights import file_sha256

__all__ = ["DetectionCache", "default_cache_dir", "detect_cached"]

_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$ALIGNIMATE_CACHE`` if set, else ``~/.cache/alignimate`` (``$XDG_CACHE_HOME`` honoured)."""
    env = os.getenv("ALIGNIMATE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.getenv("XDG_CACHE_HOME", "~/.cache")).expanduser() / "alignimate"


def _safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model) or "model"


class DetectionCache:
    """Detections (lists of :class:`Instance`) and arrays (embeddings) stored per photo.

    ``hits``, ``misses`` and ``corrupt`` count lookups since construction. With ``enabled=False``
    every lookup misses and nothing is written (``--no-cache``).
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, enabled: bool = True) -> None:
        self.root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._hash_memo: dict[tuple[str, int, int], str] = {}

    def stats(self) -> dict[str, int]:
        """``{"hits": ..., "misses": ..., "corrupt": ...}``."""
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}

    def photo_hash(self, path: str | os.PathLike[str]) -> str:
        """sha256 of the file's bytes, streamed; remembered for this run per (path, size, mtime)."""
        st = os.stat(path)
        memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if memo_key not in self._hash_memo:
            self._hash_memo[memo_key] = file_sha256(path)
        return self._hash_memo[memo_key]

    @staticmethod
    def key(photo_hash: str, model: str, settings: dict[str, Any] | None = None) -> str:
        """Entry key of one photo under one model and its settings (any JSON-serialisable dict)."""
        payload = json.dumps(
            {"v": _FORMAT_VERSION, "photo": photo_hash, "model": model, "settings": settings or {}},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, kind: str, model: str, key: str) -> Path:
        return self.root / kind / _safe_name(model) / key[:2] / f"{key}.npz"

    # -- detections -------------------------------------------------------------------------
    def load_instances(self, model: str, key: str) -> list[Instance] | None:
        """Cached instances for ``key`` or None (a miss); a corrupt entry is removed and misses."""
        data = self._read(self._path("detections", model, key))
        if data is None:
            return None
        try:
            return _decode_instances(data)
        except (KeyError, ValueError, TypeError):
            self.hits -= 1  # it was readable but not ours after all
            self._drop_corrupt(self._path("detections", model, key))
            return None

    def save_instances(self, model: str, key: str, instances: Sequence[Instance]) -> None:
        """Store ``instances`` (possibly empty: "nothing found" is worth caching too)."""
        if self.enabled:
            self._write(self._path("detections", model, key), _encode_instances(instances))

    # -- arrays (embeddings) ----------------------------------------------------------------
    def load_array(self, model: str, key: str) -> np.ndarray | None:
        """Cached array for ``key`` or None."""
        data = self._read(self._path("arrays", model, key))
        if data is None:
            return None
        if "array" not in data:
            self.hits -= 1
            self._drop_corrupt(self._path("arrays", model, key))
            return None
        return data["array"]

    def save_array(self, model: str, key: str, array: np.ndarray) -> None:
        """Store one array (e.g. the ``(N, D)`` embeddings of a photo's faces)."""
        if self.enabled:
            self._write(self._path("arrays", model, key), {"array": np.asarray(array)})

    # -- storage ----------------------------------------------------------------------------
    def _read(self, path: Path) -> dict[str, np.ndarray] | None:
        if not self.enabled or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except Exception:  # truncated zip, bad header, unreadable file: all mean "recompute"
            self._drop_corrupt(path)
            return None
        self.hits += 1
        return data

    def _drop_corrupt(self, path: Path) -> None:
        self.corrupt += 1
        self.misses += 1
        with contextlib.suppress(OSError):
            path.unlink()

    def _write(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _encode_instances(instances: Sequence[Instance]) -> dict[str, np.ndarray]:
    meta = []
    arrays: dict[str, np.ndarray] = {}
    for i, inst in enumerate(instances):
        meta.append(
            {
                "box": [float(v) for v in np.asarray(inst.box).reshape(4)],
                "score": float(inst.score),
                "label": inst.label,
                "keypoint_names": list(inst.keypoint_names) if inst.keypoint_names is not None else None,
                "image_size": [int(v) for v in inst.image_size] if inst.image_size is not None else None,
            }
        )
        # float16 halves the size of masks; a soft mask needs no more than 3 significant digits.
        optional = {
            "mask": None if inst.mask is None else np.asarray(inst.mask, dtype=np.float16),
            "keypoints": None if inst.keypoints is None else np.asarray(inst.keypoints, dtype=np.float32),
            "keypoint_scores": None
            if inst.keypoint_scores is None
            else np.asarray(inst.keypoint_scores, dtype=np.float32),
            "embedding": None if inst.embedding is None else np.asarray(inst.embedding, dtype=np.float32),
        }
        for field, value in optional.items():
            if value is not None:
                arrays[f"{field}_{i}"] = value
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def _decode_instances(data: dict[str, np.ndarray]) -> list[Instance]:
    meta = json.loads(str(data["meta"]))
    out = []
    for i, m in enumerate(meta):
        mask = data.get(f"mask_{i}")
        names = m["keypoint_names"]
        size = m["image_size"]
        out.append(
            Instance(
                box=np.asarray(m["box"], dtype=np.float32),
                score=float(m["score"]),
                mask=None if mask is None else mask.astype(np.float32),
                keypoints=data.get(f"keypoints_{i}"),
                keypoint_scores=data.get(f"keypoint_scores_{i}"),
                keypoint_names=None if names is None else tuple(names),
                embedding=data.get(f"embedding_{i}"),
                image_size=None if size is None else (int(size[0]), int(size[1])),
                label=str(m["label"]),
            )
        )
    return out


def detect_cached(
    detector: Detector,
    paths: Sequence[str | os.PathLike[str]],
    load_image: Callable[[Path], np.ndarray],
    cache: DetectionCache,
    *,
    batch_size: int = 8,
) -> list[list[Instance]]:
    """Detections for every photo in ``paths``, running ``detector`` only on photos without a cache
    entry (loaded with ``load_image(path) -> (H, W, 3) uint8``), ``batch_size`` at a time.

    Returns one list per path, in order; an empty list means nothing was found in that photo.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    settings = detector.settings()
    keys = [cache.key(cache.photo_hash(p), detector.name, settings) for p in paths]
    results: list[list[Instance] | None] = [cache.load_instances(detector.name, k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        found = detector.detect([load_image(Path(paths[i])) for i in chunk])
        for i, instances in zip(chunk, found, strict=True):
            cache.save_instances(detector.name, keys[i], instances)
            results[i] = instances
    return [r if r is not None else [] for r in results]
