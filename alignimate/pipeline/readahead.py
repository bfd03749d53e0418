"""Working copies read ahead on a background thread, while the job itself is still starting.

A fresh ``register`` process spends its first seconds on one core importing torch (docs/benchmarks.md,
end to end), while the other core has nothing to do. :class:`ReadAhead` gives it the first photos'
working copies to decode meanwhile. This only pays because the reads need the GIL for short steps
only and never the import lock (:func:`alignimate.io.planes.read_image_pixels` decodes JPEGs in
OpenCV, outside the GIL, and imports nothing that imports torch): Pillow's decoder, which takes the
GIL back for every chunk of the file, or a first import of the torch core, would mostly wait for the
import instead of running beside it.

The reading stays bounded (:data:`READ_AHEAD_BYTES` of working copies at most) and never reads a photo
twice: the job takes each copy at most once, and a photo it asks for before the thread has started on
it is simply left to the job to read (:meth:`ReadAhead.take` returns ``None``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from alignimate.io import PhotoError

__all__ = ["READ_AHEAD_BYTES", "ReadAhead"]

READ_AHEAD_BYTES = 64 << 20
"""Most bytes of working copies read ahead (a 512 px luma copy is a quarter of a MB)."""


class ReadAhead:
    """Read ``read(path)`` for ``paths``, in order, on one background thread, until :meth:`close`.

    ``max_side``, ``channels``: the working copies' long side and channels, which bound how many are
    read (:data:`READ_AHEAD_BYTES`). Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, paths: Sequence[Path], read: Callable[[Path], np.ndarray], max_side: int, channels: int = 3
    ) -> None:
        count = max(1, READ_AHEAD_BYTES // (channels * max_side * max_side))
        self._read = read
        self._queue: deque[Path] = deque(paths[:count])
        self._waiting = set(self._queue)  # queued and not taken
        self._done: dict[Path, np.ndarray | PhotoError] = {}
        self._reading: Path | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="alignimate-read-ahead", daemon=True)
        self._thread.start()

    def _next(self) -> Path | None:
        with self._changed:
            while self._queue and not self._closed:
                path = self._queue.popleft()
                if path in self._waiting:
                    self._waiting.discard(path)
                    self._reading = path
                    return path
            return None

    def _work(self) -> None:
        while (path := self._next()) is not None:
            result: np.ndarray | PhotoError | None
            try:
                result = self._read(path)
            except PhotoError as error:
                result = error
            except Exception:
                result = None  # the job reads it again and meets the error where it can report it
            with self._changed:
                self._reading = None
                if result is not None and not self._closed:
                    self._done[path] = result
                self._changed.notify_all()

    def take(self, path: Path) -> np.ndarray | None:
        """The working copy of ``path`` if it was read ahead (waiting for a read in progress), else
        ``None``: the caller reads it, and this reader will not. Raises the read's
        :class:`~alignimate.io.PhotoError`."""
        with self._changed:
            if path in self._waiting:
                self._waiting.discard(path)
                return None
            while self._reading == path:
                self._changed.wait()
            result = self._done.pop(path, None)
        if isinstance(result, PhotoError):
            raise result
        return result

    def drop(self, paths: Iterable[Path]) -> None:
        """``paths`` are not needed after all: not read if not started, forgotten if read."""
        with self._changed:
            for path in paths:
                self._waiting.discard(path)
                self._done.pop(path, None)

    def close(self) -> None:
        """Stop reading (after the read in progress) and drop every copy not taken."""
        with self._changed:
            self._closed = True
            self._done.clear()
            self._waiting.clear()
        self._thread.join()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
