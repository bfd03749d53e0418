"""A per-photo cache of detections and embeddings, so a rerun only processes new or changed photos.

An entry is keyed by the sha256 of the photo's bytes (so renaming or touching a file keeps its
entry, and editing it invalidates it), the model name and the model's settings. Entries are small
compressed ``.npz`` files under ``$ALIGNIMATE_CACHE`` (default ``~/.cache/alignimate``), written
to a temporary file beside them and moved into place, so a reader never sees half an entry.

The cache is a convenience, never a reason for a run to fail, and everything read back from it is
untrusted input (another program, a full disk or a hand edit may have left anything there):

* An entry that cannot be read, is not a regular file, is larger than 64 MiB, is not an npz
  archive of plain numeric arrays (``np.load`` runs with ``allow_pickle=False``), or whose contents
  are not what :meth:`DetectionCache.save_instances` / :meth:`~DetectionCache.save_array` write
  (shapes, dtypes, finite values, well-formed metadata) is a miss: it is counted in ``corrupt``, the
  caller recomputes it, and the new entry atomically replaces the bad one. Nothing is deleted.
* A cache that cannot be written (its path is a file, a read-only folder, a full disk, ...) is
  used read-only for the rest of the run.

Either problem is reported once per :class:`DetectionCache` through its ``warn`` callback (by
default a :class:`CacheWarning`), so a run with thousands of photos gets a line or two, not one per
photo. The cache only ever creates or replaces files below its root, and never follows a link
below the root when writing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from alignimate.detect.base import Detector, Instance
from alignimate.detect.weights import file_sha256

__all__ = ["CacheWarning", "DetectionCache", "default_cache_dir", "detect_cached"]

_FORMAT_VERSION = 1

_Entry = TypeVar("_Entry")

# An entry file larger than this is treated as corrupt without being read, and none is written:
# real entries (a few masks at the detector's working size, compressed) are far smaller.
_MAX_ENTRY_BYTES = 64 << 20

# Deflate packs an all-zero array ~1000:1, so the file size alone does not bound the memory a
# hostile archive needs once unpacked; the sizes its members declare must be bounded too.
_MAX_UNPACKED_BYTES = 512 << 20
# Generous for any photo (int32 is what image libraries index with), small enough that a huge
# number from a hand-edited entry cannot reach an allocation later.
_MAX_IMAGE_SIDE = 2**31 - 1
# Never block on a FIFO or adopt a terminal when something that is not a file sits where an entry
# belongs; the flags that do not exist on this platform are simply left out.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
)


class CacheWarning(UserWarning):
    """A problem with the detection cache; the run goes on without it or recomputes the entry."""


def _warn_default(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=2)


class _BadEntryError(ValueError):
    """An entry exists but is not one this cache wrote; the message says why, for the warning."""


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

    ``hits``, ``misses`` and ``corrupt`` count lookups since construction (a corrupt entry counts as
    a miss too). With ``enabled=False`` every lookup misses and nothing is written (``--no-cache``).

    ``warn(message)`` receives the one-line reports of cache problems (at most one about writing and
    one about bad entries per cache object); None issues them as :class:`CacheWarning`. No method
    raises because of what is, or is not, on disk; only :meth:`photo_hash` raises, for the photo.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        enabled: bool = True,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._warn: Callable[[str], None] = warn if warn is not None else _warn_default
        self._writable = True
        self._warned_corrupt = False
        self._hash_memo: dict[tuple[str, int, int], str] = {}

    def stats(self) -> dict[str, int]:
        """``{"hits": ..., "misses": ..., "corrupt": ...}``."""
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}

    def photo_hash(self, path: str | os.PathLike[str]) -> str:
        """sha256 of the file's bytes, streamed; remembered for this run per (path, size, mtime).

        Raises ``OSError`` when the photo cannot be read: that is the photo's problem, for the caller.
        """
        st = os.stat(path)
        memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if memo_key not in self._hash_memo:
            self._hash_memo[memo_key] = file_sha256(path)
        return self._hash_memo[memo_key]

    @staticmethod
    def key(photo_hash: str, model: str, settings: dict[str, Any] | None = None) -> str:
        """Entry key of one photo under one model and its settings.

        Args:
            photo_hash: :meth:`photo_hash` of the photo.
            model: the model's name (also the entry's folder: pass the same to load and save).
            settings: what else changes the result (any JSON-serialisable dict: working size,
                thresholds, ...).

        Returns:
            a sha256 hex digest.
        """
        payload = json.dumps(
            {"v": _FORMAT_VERSION, "photo": photo_hash, "model": model, "settings": settings or {}},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, kind: str, model: str, key: str) -> Path:
        # Keys from key() are hex and pass unchanged; sanitising any other string keeps its entry a
        # single file name, so no key can point above its folder.
        key = _safe_name(key)
        return self.root / kind / _safe_name(model) / key[:2] / f"{key}.npz"

    # -- detections -------------------------------------------------------------------------
    def load_instances(self, model: str, key: str) -> list[Instance] | None:
        """Cached instances for ``key`` or None (a miss: absent, disabled, or corrupt)."""
        return self._load("detections", model, key, _decode_instances)

    def save_instances(self, model: str, key: str, instances: Sequence[Instance]) -> None:
        """Store ``instances`` (possibly empty: "nothing found" is worth caching too)."""
        if self.enabled and self._writable:
            self._write(self._path("detections", model, key), _encode_instances(instances))

    # -- arrays (embeddings) ----------------------------------------------------------------
    def load_array(self, model: str, key: str) -> np.ndarray | None:
        """Cached array for ``key`` or None (a miss). A hit is a finite numeric array of at least one
        dimension, in native byte order."""
        return self._load("arrays", model, key, _decode_array)

    def save_array(self, model: str, key: str, array: np.ndarray) -> None:
        """Store one array (e.g. the ``(N, D)`` embeddings of a photo's faces)."""
        if self.enabled and self._writable:
            self._write(self._path("arrays", model, key), {"array": np.asarray(array)})

    # -- storage ----------------------------------------------------------------------------
    def _load(
        self, kind: str, model: str, key: str, decode: Callable[[dict[str, np.ndarray]], _Entry]
    ) -> _Entry | None:
        """The decoded entry, or None after counting a miss (disabled, absent, unreadable, or not
        what ``decode`` accepts)."""
        path = self._path(kind, model, key)
        if not self.enabled:
            self.misses += 1
            return None
        try:
            data = _read_npz(path)
            if data is None:
                self.misses += 1
                return None
            entry = decode(data)
        except _BadEntryError as err:
            self._bad_entry(path, str(err))
            return None
        self.hits += 1
        return entry

    def _bad_entry(self, path: Path, reason: str) -> None:
        # Not deleted: the recomputed entry replaces it atomically, and where the cache cannot be
        # written the bad entry merely stays a miss.
        self.corrupt += 1
        self.misses += 1
        if not self._warned_corrupt:
            self._warned_corrupt = True
            self._warn(
                f"warning: unreadable detection cache entry {path} ({reason}); "
                "it and any other bad entries in the cache are recomputed and replaced."
            )

    def _write(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        # Reading refuses what unpacks past this, so writing it would only make a permanent miss.
        if sum(a.nbytes + 1024 for a in arrays.values()) > _MAX_UNPACKED_BYTES:
            return
        try:
            self._make_folders(path.parent)
            _write_atomic(path, arrays)
        except OSError as err:
            self._writable = False  # one warning per run, not one failed write per photo
            reason = err.strerror or str(err) or type(err).__name__
            if err.filename is not None and Path(os.fsdecode(err.filename)) != self.root:
                reason = f"{reason}: {os.fsdecode(err.filename)}"
            self._warn(
                f"warning: detection cache {self.root} cannot be written ({reason}); continuing without "
                "saving detections. Set $ALIGNIMATE_CACHE to a writable folder or pass --no-cache."
            )

    def _make_folders(self, folder: Path) -> None:
        """Create ``folder`` below the root, refusing any existing link or file on the way, so that
        a link planted in the cache cannot make it write elsewhere."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(self.root))
        # The root itself may be a link (a cache moved to another disk) and its parents are the
        # user's: those are followed and created like ``mkdir -p``.
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            try:
                os.mkdir(current)
            except OSError as err:
                # An existing folder is fine whatever mkdir said (EEXIST, or EROFS/EACCES where
                # the system checks those first): reading a read-only cache goes on.
                try:
                    mode = os.lstat(current).st_mode
                except OSError:
                    raise err from None
                if not stat.S_ISDIR(mode):
                    raise NotADirectoryError(
                        errno.ENOTDIR, "a file or link where a cache folder belongs", str(current)
                    ) from None


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the archive beside ``path`` and move it into place; the temporary file never outlives
    a failure. A folder squatting on ``path`` leaves that one entry unwritten (it was reported when
    read) rather than costing the whole run its cache."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    installed = False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        if os.stat(tmp).st_size > _MAX_ENTRY_BYTES:
            return  # reading would refuse it
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            return
        installed = True
    finally:
        if not installed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of the archive at ``path``; None when there is no entry, :class:`_BadEntryError` when
    there is one that is not a readable npz archive of plain arrays."""
    try:
        # stat before open: opening a device or FIFO can have effects (or block) of its own.
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # also a link to nothing: absent, and the next save replaces the link
    except OSError as err:
        raise _BadEntryError(f"cannot be examined: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _BadEntryError("not a regular file")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _BadEntryError(f"cannot be opened: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)  # again, on what was opened: the path may have changed since
        if not stat.S_ISREG(st.st_mode):
            raise _BadEntryError("not a regular file")
        if st.st_size > _MAX_ENTRY_BYTES:
            raise _BadEntryError(f"larger than {_MAX_ENTRY_BYTES >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return _read_members(f)
    finally:
        os.close(fd)


def _read_members(f: IO[bytes]) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(f, allow_pickle=False)
    except Exception as err:  # bad magic, pickle refused, truncated header, I/O error: all "corrupt"
        raise _BadEntryError(f"not an npz archive: {type(err).__name__}") from None
    if isinstance(loaded, np.ndarray):
        raise _BadEntryError("a single .npy array, not an npz archive")
    try:
        with loaded as npz:
            unpacked = sum(info.file_size for info in npz.zip.infolist())
            if unpacked > _MAX_UNPACKED_BYTES:
                raise _BadEntryError(f"unpacks to {unpacked / 2**20:.1f} MiB")
            data: dict[str, np.ndarray] = {}
            for name in npz.files:
                value = npz[name]
                if not isinstance(value, np.ndarray):  # a zip member that is not .npy comes as bytes
                    raise _BadEntryError(f"member {name!r} is not an array")
                data[name] = value
            return data
    except _BadEntryError:
        raise
    # zipfile and numpy raise a zoo of types on hostile archives (BadZipFile, zlib.error, EOFError,
    # ValueError for object arrays, NotImplementedError for odd compression, RuntimeError for
    # encryption, MemoryError for absurd shapes); every one means the same thing here.
    except Exception as err:
        raise _BadEntryError(f"damaged npz archive: {type(err).__name__}") from None


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
    """The instances of an entry, or :class:`_BadEntryError` for anything ``_encode_instances`` would
    not have written: downstream code trusts an Instance's shapes and finiteness."""
    text = data.get("meta")
    if text is None or text.ndim != 0 or text.dtype.kind != "U":
        raise _BadEntryError("no meta text")
    try:
        meta = json.loads(str(text))
    # RecursionError: deeply nested brackets; ValueError: bad JSON or an int too long to convert.
    except (ValueError, RecursionError) as err:
        raise _BadEntryError(f"meta is not valid JSON: {type(err).__name__}") from None
    if not isinstance(meta, list):
        raise _BadEntryError("meta is not a list")
    return [_decode_instance(data, i, m) for i, m in enumerate(meta)]


def _decode_instance(data: dict[str, np.ndarray], i: int, m: object) -> Instance:
    where = f"instance {i}"
    if not isinstance(m, dict):
        raise _BadEntryError(f"{where}: meta is not an object")
    missing = {"box", "score", "label", "keypoint_names", "image_size"} - m.keys()
    if missing:
        raise _BadEntryError(f"{where}: meta lacks {', '.join(sorted(missing))}")
    box = _finite_float32(np.asarray(_numbers(m["box"], f"{where}: box"), dtype=np.float64), f"{where}: box")
    if box.shape != (4,):
        raise _BadEntryError(f"{where}: box is not 4 numbers")
    (score,) = _numbers([m["score"]], f"{where}: score")
    if not math.isfinite(score):
        raise _BadEntryError(f"{where}: score is not finite")
    label = m["label"]
    if not isinstance(label, str):
        raise _BadEntryError(f"{where}: label is not text")
    names = m["keypoint_names"]
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise _BadEntryError(f"{where}: keypoint names are not a list of text")
    size = m["image_size"]
    if size is not None and not (
        isinstance(size, list)
        and len(size) == 2
        and all(type(v) is int and 1 <= v <= _MAX_IMAGE_SIDE for v in size)  # bool is an int too
    ):
        raise _BadEntryError(f"{where}: image size is not 2 positive integers")

    mask = _optional_array(data, f"mask_{i}", 2, f"{where}: mask")
    if mask is not None and mask.size == 0:
        raise _BadEntryError(f"{where}: mask is empty")
    keypoints = _optional_array(data, f"keypoints_{i}", 2, f"{where}: keypoints")
    keypoint_scores = _optional_array(data, f"keypoint_scores_{i}", 1, f"{where}: keypoint scores")
    embedding = _optional_array(data, f"embedding_{i}", 1, f"{where}: embedding")
    if keypoints is not None:
        k = keypoints.shape[0]
        if keypoints.shape[1] != 2:
            raise _BadEntryError(f"{where}: keypoints are not (K, 2)")
        if keypoint_scores is not None and keypoint_scores.shape != (k,):
            raise _BadEntryError(f"{where}: keypoint scores do not match the {k} keypoints")
        if names is not None and len(names) != k:
            raise _BadEntryError(f"{where}: keypoint names do not match the {k} keypoints")
    elif keypoint_scores is not None:
        raise _BadEntryError(f"{where}: keypoint scores without keypoints")
    return Instance(
        box=box,
        score=score,
        mask=mask,
        keypoints=keypoints,
        keypoint_scores=keypoint_scores,
        keypoint_names=None if names is None else tuple(names),
        embedding=embedding,
        image_size=None if size is None else (size[0], size[1]),
        label=label,
    )


def _numbers(values: object, what: str) -> list[float]:
    """JSON numbers as floats (bools, strings, nested lists and overflowing ints refused)."""
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise _BadEntryError(f"{what} is not a list of numbers")
    try:
        return [float(v) for v in values]
    except OverflowError:
        raise _BadEntryError(f"{what} is out of range") from None


def _optional_array(data: dict[str, np.ndarray], name: str, ndim: int, what: str) -> np.ndarray | None:
    value = data.get(name)
    if value is None:
        return None
    if value.dtype.kind not in "biuf" or value.ndim != ndim:
        raise _BadEntryError(f"{what} is not a {ndim}-D numeric array")
    return _finite_float32(value, what)


def _finite_float32(value: np.ndarray, what: str) -> np.ndarray:
    # Values beyond float32's range become inf here and are refused with the NaNs.
    with np.errstate(over="ignore", invalid="ignore"):
        out = value.astype(np.float32)
    if not np.isfinite(out).all():
        raise _BadEntryError(f"{what} has values that are not finite (or too large)")
    return out


def _decode_array(data: dict[str, np.ndarray]) -> np.ndarray:
    array = data.get("array")
    if array is None:
        raise _BadEntryError("no array in it")
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        # 0-D is refused as well: callers take len() of what they get back.
        raise _BadEntryError(f"array is not numeric of at least 1 dimension ({array.dtype}, {array.ndim}-D)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _BadEntryError("array has values that are not finite")
    # torch.from_numpy and friends refuse a byte-swapped array; one written elsewhere may be.
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def detect_cached(
    detector: Detector,
    paths: Sequence[str | os.PathLike[str]],
    load_image: Callable[[Path], np.ndarray],
    cache: DetectionCache,
    *,
    batch_size: int = 8,
) -> list[list[Instance]]:
    """Detections for every photo, running the detector only on photos without a cache entry.

    Args:
        detector: the detector; its name and settings are part of the cache key.
        paths: the photos.
        load_image: ``load_image(path) -> (H, W, 3) uint8`` RGB, for the photos not in the cache.
        cache: the detection cache (a disabled one caches nothing).
        batch_size: photos handed to the detector at once.

    Returns:
        one list of instances per path, in order; an empty list means nothing was found in that
        photo. A photo that cannot be read raises (``OSError`` from hashing it, or whatever
        ``load_image`` raises); problems with the cache itself never do.
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
