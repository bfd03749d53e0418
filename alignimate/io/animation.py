"""Streaming animation writers: MP4 (H.264), WebM (VP9) and GIF.

Frames are ``(H, W, 3)`` uint8 RGB arrays (``(H, W)`` grey and ``(H, W, 4)`` RGBA are accepted;
RGBA is composited onto black). Frames are written one at a time, so memory does not grow with
the number of frames. Output goes to a hidden temporary file that is renamed onto ``out_path``
only when the whole animation was written: on failure nothing is left at ``out_path``.

Output size: ``size`` (h, w) if given, else the first frame's size times ``scale``, reduced to
``max_width`` if wider. Every frame is fitted into that size keeping its aspect ratio
(letterboxed with black, never stretched); differences of at most one pixel from rounding are
absorbed by cropping (a frame one pixel larger) or resizing, rather than by a one-pixel bar.
MP4 and WebM need even dimensions with yuv420p: an odd height or width is reduced by one pixel
(the last row/column is cropped), and ffmpeg is told not to resize further (``macro_block_size=1``),
so the size in `AnimationInfo` is exactly the size in the file.

``quality`` (0-100, higher is better) maps linearly to the encoder's constant-quality setting:
MP4 ``crf = round(40 - 0.23 * quality)`` (75 -> 23, x264's default; 100 -> 17), WebM
``crf = round(50 - 0.25 * quality)`` (75 -> 31; 100 -> 25). GIF ignores it: use ``max_width``
or ``max_bytes`` to limit its size.

GIF: one global 256-colour palette built from a sample of frames (median cut), Floyd-Steinberg
dithering, frames stored as the rectangle that changed since the previous frame, ``loop=0``
plays forever. GIF delays are whole centiseconds; they are spread so the total duration is
exact (30 fps gives 3, 3, 4, 3, 3, 4, ... cs). Browsers slow delays under 2 cs down, so GIF fps
is limited to 50.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypeVar

import imageio_ffmpeg
import numpy as np
from PIL import GifImagePlugin, Image

from alignimate.io.writing import AtomicFile, check_uint8_image, temporary_path_for

__all__ = [
    "ANIMATION_SUFFIXES",
    "AnimationInfo",
    "AnimationWriter",
    "LazyFrames",
    "check_fps",
    "count_output_frames",
    "write_animation",
]

ANIMATION_SUFFIXES = (".mp4", ".webm", ".gif")
_VIDEO_CODECS = {".mp4": "libx264", ".webm": "libvpx-vp9"}
_GIF_MAX_FPS = 50.0
_PALETTE_SAMPLE_FRAMES = 8
_PALETTE_SAMPLE_SIDE = 160
_MAX_SHRINK_ATTEMPTS = 5

T = TypeVar("T")
FrameSource = Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]] | Iterable[np.ndarray]


@dataclass(frozen=True)
class AnimationInfo:
    """What was written: frame count, ``size_hw`` (h, w) in the file, fps, duration, file size."""

    path: Path
    n_frames: int
    size_hw: tuple[int, int]
    fps: float
    duration_s: float
    n_bytes: int


class LazyFrames(Sequence[np.ndarray]):
    """A sequence that loads each frame when it is accessed: ``LazyFrames(paths, read_image)``.

    Lets `write_animation` play a series backwards (``boomerang``) or re-encode it (``max_bytes``)
    while holding only the list of items in memory, never all frames.
    """

    def __init__(self, items: Sequence[T], load: Callable[[T], np.ndarray]) -> None:
        self._items = items
        self._load = load

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return LazyFrames(self._items[index], self._load)
        return self._load(self._items[index])


# --------------------------------------------------------------------------------------------
# Argument checks and frame fitting


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"out_path must end in one of {ANIMATION_SUFFIXES}, got {path.name!r}")
    return suffix


def check_fps(fps: float, suffix: str) -> float:
    """Check a frame rate for an output format (the ``fps`` option's range: alignimate.config).

    Args:
        fps: frames per second.
        suffix: the output's suffix (``.mp4``, ``.webm``, ``.gif``).

    Returns:
        ``fps`` as a float; ``ValueError`` naming the limit: positive, and at most 50 for a GIF.
    """
    return _check_fps(fps, suffix)


def _check_fps(fps: float, suffix: str) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if suffix == ".gif" and fps > _GIF_MAX_FPS:
        raise ValueError(
            f"fps must be at most {_GIF_MAX_FPS:g} for GIF (browsers slow faster GIFs), got {fps}"
        )
    return float(fps)


def _check_size_options(
    size: tuple[int, int] | None, scale: float | None, max_width: int | None, quality: float
) -> None:
    if size is not None and scale is not None:
        raise ValueError("give size or scale, not both")
    if size is not None and (len(size) != 2 or any(not isinstance(v, int) or v <= 0 for v in size)):
        raise ValueError(f"size must be (h, w) positive ints, got {size!r}")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if max_width is not None and (not isinstance(max_width, int) or max_width <= 0):
        raise ValueError(f"max_width must be a positive int, got {max_width!r}")
    if not 0 <= quality <= 100:
        raise ValueError(f"quality must be in [0, 100], got {quality!r}")


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 view or copy of a grey, RGB or RGBA (composited on black) frame."""
    check_uint8_image(frame, "a frame")
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    if frame.shape[2] == 4:
        alpha = frame[:, :, 3:4].astype(np.uint16)
        return ((frame[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return frame


def _output_size(
    first_hw: tuple[int, int],
    *,
    size: tuple[int, int] | None,
    scale: float | None,
    max_width: int | None,
    shrink: float,
    even: bool,
) -> tuple[int, int]:
    h, w = (float(v) for v in (size if size is not None else first_hw))
    if scale is not None:
        h, w = h * scale, w * scale
    if max_width is not None and w > max_width:
        h, w = h * max_width / w, float(max_width)
    h, w = max(1, round(h * shrink)), max(1, round(w * shrink))
    if even:
        h, w = max(2, h - h % 2), max(2, w - w % 2)
    return h, w


def _resize(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((size_hw[1], size_hw[0]), Image.Resampling.LANCZOS))


def _fit(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Fit an RGB frame into ``size_hw`` keeping its aspect ratio (black letterbox)."""
    th, tw = size_hw
    fh, fw = frame.shape[:2]
    if (fh, fw) == (th, tw):
        return frame
    if 0 <= fh - th <= 1 and 0 <= fw - tw <= 1:
        return frame[:th, :tw]  # the odd row/column dropped for even video sizes
    ratio = min(th / fh, tw / fw)
    nh, nw = min(th, max(1, round(fh * ratio))), min(tw, max(1, round(fw * ratio)))
    if th - nh <= 1 and tw - nw <= 1:
        return _resize(frame, size_hw)  # aspect differs by rounding only
    canvas = np.zeros((th, tw, 3), np.uint8)
    top, left = (th - nh) // 2, (tw - nw) // 2
    canvas[top : top + nh, left : left + nw] = _resize(frame, (nh, nw))
    return canvas


def _blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    a32 = a.astype(np.float32)
    return np.rint(a32 + (b.astype(np.float32) - a32) * t).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Sinks: one per container


class _FfmpegSink:
    """Pipes raw RGB frames to ffmpeg (imageio-ffmpeg's binary)."""

    def __init__(self, path: Path, size_hw: tuple[int, int], fps: float, suffix: str, quality: float) -> None:
        if suffix == ".mp4":
            params = ["-crf", str(round(40 - 0.23 * quality)), "-preset", "medium", "-movflags", "+faststart"]
        else:
            params = ["-crf", str(round(50 - 0.25 * quality)), "-b:v", "0", "-deadline", "good"]
            params += ["-cpu-used", "4", "-row-mt", "1"]
        self._path = path
        self._writer = imageio_ffmpeg.write_frames(
            str(path),
            (size_hw[1], size_hw[0]),
            fps=fps,
            codec=_VIDEO_CODECS[suffix],
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=1,  # sizes are made even here; never let ffmpeg rescale
            ffmpeg_log_level="error",
            output_params=params,
        )
        self._writer.send(None)

    def write(self, frame: np.ndarray) -> None:
        self._writer.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._writer.close()
        if not self._path.exists() or self._path.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg did not write {self._path}; see its messages above")

    def abort(self) -> None:
        self._writer.close()


def _global_palette(samples: Sequence[np.ndarray]) -> Image.Image:
    """A 256-colour palette image (mode "P") covering the colours of all sample frames."""
    tiles = []
    for frame in samples:
        image = Image.fromarray(np.ascontiguousarray(frame))
        image.thumbnail((_PALETTE_SAMPLE_SIDE, _PALETTE_SAMPLE_SIDE), Image.Resampling.BOX)
        tiles.append(np.asarray(image))
    width = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), mode="edge") for t in tiles]
    mosaic = Image.fromarray(np.concatenate(padded, axis=0))
    quantized = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    colours = bytes(quantized.getpalette("RGB") or [])[: 256 * 3].ljust(256 * 3, b"\0")
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours, "RGB")
    return palette


def _gif_delays_cs(fps: float) -> Iterator[int]:
    """Per-frame delays in centiseconds whose running sum tracks ``k * 100 / fps`` exactly."""
    k = 0
    while True:
        yield round((k + 1) * 100 / fps) - round(k * 100 / fps)
        k += 1


def _changed_box(previous: np.ndarray | None, current: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of the pixels that changed; 1x1 when none did."""
    if previous is None:
        return (0, 0, current.shape[1], current.shape[0])
    changed = previous != current
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if rows.size == 0:
        return (0, 0, 1, 1)  # an unchanged frame still needs an entry for its delay
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


class _GifSink:
    """Writes a GIF frame by frame with one global palette (Pillow encodes each frame's pixels)."""

    def __init__(self, path: Path, size_hw: tuple[int, int], fps: float, loop: int | None) -> None:
        self._size_hw = size_hw
        self._loop = loop
        self._delays = _gif_delays_cs(fps)
        self._file: BinaryIO | None = None
        self._palette: Image.Image | None = None
        self._previous: np.ndarray | None = None
        self._path = path
        self.total_cs = 0

    def start(self, samples: Sequence[np.ndarray]) -> None:
        """Build the palette from ``samples`` and write the header."""
        self._palette = _global_palette(samples)
        self._file = self._path.open("wb")
        h, w = self._size_hw
        # Logical screen: global colour table present (0x80), 8-bit colour (0x70), 256 entries (0x07).
        self._file.write(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0))
        self._file.write(bytes(self._palette.getpalette("RGB") or []).ljust(768, b"\0")[:768])
        if self._loop is not None:
            self._file.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", self._loop) + b"\0")

    @property
    def started(self) -> bool:
        return self._file is not None

    def write(self, frame: np.ndarray) -> None:
        assert self._file is not None and self._palette is not None
        indexed = Image.fromarray(np.ascontiguousarray(frame)).quantize(
            palette=self._palette, dither=Image.Dither.FLOYDSTEINBERG
        )
        indices = np.asarray(indexed)
        box = _changed_box(self._previous, indices)
        delay = next(self._delays)
        self.total_cs += delay
        for chunk in GifImagePlugin.getdata(indexed.crop(box), offset=box[:2], duration=delay * 10):
            self._file.write(chunk)
        self._previous = indices

    def close(self) -> None:
        assert self._file is not None
        self._file.write(b";")
        self._file.close()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()


# --------------------------------------------------------------------------------------------
# Writer


class AnimationWriter:
    """Streaming writer: ``append`` frames one at a time, then ``close`` (or use ``with``).

    The output size is fixed by the first frame (see the module docstring); later frames of
    another size are letterboxed into it. ``palette_sample`` (GIF only): frames to build the
    palette from; without it the first 8 frames are buffered and used. Leaving a ``with`` block
    by an exception discards the output; otherwise the file is renamed onto ``out_path``.
    ``shrink`` in (0, 1] scales the output size further (`write_animation` uses it for ``max_bytes``).
    """

    def __init__(
        self,
        out_path: str | os.PathLike[str],
        *,
        fps: float = 10.0,
        size: tuple[int, int] | None = None,
        scale: float | None = None,
        max_width: int | None = None,
        quality: float = 75,
        loop: int | None = 0,
        palette_sample: Sequence[np.ndarray] | None = None,
        shrink: float = 1.0,
    ) -> None:
        self.out_path = Path(out_path)
        self._suffix = _check_suffix(self.out_path)
        self.fps = _check_fps(fps, self._suffix)
        _check_size_options(size, scale, max_width, quality)
        if loop is not None and not (isinstance(loop, int) and 0 <= loop <= 65535):
            raise ValueError(f"loop must be None or an int in [0, 65535], got {loop!r}")
        if not 0 < shrink <= 1:
            raise ValueError(f"shrink must be in (0, 1], got {shrink!r}")
        self._options = {"size": size, "scale": scale, "max_width": max_width, "shrink": shrink}
        self._quality = quality
        self._loop = loop
        self._palette_sample = list(palette_sample) if palette_sample is not None else None
        self._target = AtomicFile(self.out_path)
        self._sink: _FfmpegSink | _GifSink | None = None
        self._pending: list[np.ndarray] = []  # GIF frames waiting for the palette
        self.size_hw: tuple[int, int] | None = None
        self.n_frames = 0
        self._closed = False

    # -- context manager
    def __enter__(self) -> AnimationWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    # -- frames
    def fit(self, frame: np.ndarray) -> np.ndarray:
        """The frame as it will be written: RGB, fitted to the output size (fixed by the first call)."""
        rgb = _as_rgb(frame)
        if self.size_hw is None:
            even = self._suffix in _VIDEO_CODECS
            self.size_hw = _output_size(rgb.shape[:2], even=even, **self._options)
        return _fit(rgb, self.size_hw)

    def append(self, frame: np.ndarray) -> None:
        """Write one frame ``(H, W, 3)`` uint8 (grey and RGBA accepted)."""
        if self._closed:
            raise RuntimeError("append after close")
        fitted = self.fit(frame)
        sink = self._open_sink()
        if isinstance(sink, _GifSink) and not sink.started:
            self._pending.append(fitted.copy())
            if len(self._pending) >= _PALETTE_SAMPLE_FRAMES or self._palette_sample is not None:
                self._start_gif(sink)
        else:
            sink.write(fitted)
        self.n_frames += 1

    def _open_sink(self) -> _FfmpegSink | _GifSink:
        if self._sink is None:
            assert self.size_hw is not None
            if self._suffix == ".gif":
                self._sink = _GifSink(self._target.tmp, self.size_hw, self.fps, self._loop)
            else:
                self._sink = _FfmpegSink(
                    self._target.tmp, self.size_hw, self.fps, self._suffix, self._quality
                )
        return self._sink

    def _start_gif(self, sink: _GifSink) -> None:
        samples = self._palette_sample if self._palette_sample else self._pending
        sink.start(samples)
        for pending in self._pending:
            sink.write(pending)
        self._pending.clear()

    # -- finishing
    def close(self) -> AnimationInfo:
        """Finish the file and rename it onto ``out_path``. Raises ``ValueError`` if no frames."""
        if self._closed:
            raise RuntimeError("close called twice")
        if self._sink is None:
            self.abort()
            raise ValueError("frames is empty: nothing to write")
        try:
            if isinstance(self._sink, _GifSink) and not self._sink.started:
                self._start_gif(self._sink)
            self._sink.close()
            self._target.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.info

    def abort(self) -> None:
        """Stop and remove the temporary file; ``out_path`` is left as it was."""
        self._closed = True
        try:
            if self._sink is not None:
                self._sink.abort()
        finally:
            self._target.discard()

    @property
    def info(self) -> AnimationInfo:
        assert self.size_hw is not None
        duration = self._sink.total_cs / 100 if isinstance(self._sink, _GifSink) else self.n_frames / self.fps
        n_bytes = self.out_path.stat().st_size if self._closed and self.out_path.exists() else 0
        return AnimationInfo(self.out_path, self.n_frames, self.size_hw, self.fps, duration, n_bytes)


# --------------------------------------------------------------------------------------------
# Timeline: holds, crossfades, boomerang


def _hold_frames(seconds: float, fps: float, name: str) -> int:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{name} must be a non-negative number of seconds, got {seconds!r}")
    return round(seconds * fps)


def count_output_frames(
    n_photos: int,
    *,
    fps: float = 10.0,
    hold_first: float = 0.0,
    hold_last: float = 0.0,
    crossfade: int = 0,
    boomerang: bool = False,
) -> int:
    """Number of frames `write_animation` writes for ``n_photos`` input frames (0 for none).

    Args:
        n_photos: input frames.
        fps, hold_first, hold_last, crossfade, boomerang: as `write_animation`.

    Returns:
        ``shown + (shown - 1) * crossfade + round(hold_first * fps) + round(hold_last * fps)`` where
        ``shown`` is ``n_photos``, or ``2 * n_photos - 2`` with ``boomerang`` (for ``n_photos >= 2``).
    """
    if n_photos <= 0:
        return 0
    shown = 2 * n_photos - 2 if boomerang and n_photos >= 2 else n_photos
    holds = _hold_frames(hold_first, fps, "hold_first") + _hold_frames(hold_last, fps, "hold_last")
    return shown + (shown - 1) * crossfade + holds


def _forward_with_holds(
    frames: Iterable[np.ndarray], first: int, last: int
) -> Iterator[tuple[np.ndarray, int]]:
    """``(frame, extra repeats)``: the first frame repeats ``first`` times, the last ``last`` times."""
    iterator = iter(frames)
    previous = next(iterator, None)
    if previous is None:
        return
    index = 0
    for frame in iterator:
        yield previous, first if index == 0 else 0
        previous, index = frame, index + 1
    yield previous, (first if index == 0 else 0) + last


def _boomerang_with_holds(
    frames: Sequence[np.ndarray], first: int, last: int
) -> Iterator[tuple[np.ndarray, int]]:
    """0, 1, ..., n-1, n-2, ..., 1: a loop that does not show the end photos twice in a row.

    ``first`` extra repeats of photo 0 at the start, ``last`` extra repeats of photo n-1 at the turn.
    """
    n = len(frames)
    order = [*range(n), *range(n - 2, 0, -1)]
    for position, index in enumerate(order):
        repeats = (first if position == 0 else 0) + (last if position == n - 1 else 0)
        yield frames[index], repeats


def _frame_factory(
    frames: FrameSource,
) -> tuple[Callable[[], Iterable[np.ndarray]], Sequence[np.ndarray] | None, bool]:
    """(fresh-iterable factory, the sequence if random access works, whether re-iterable)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(f"frames as one array must be (N, H, W) or (N, H, W, C), got {frames.shape}")
        frames = list(frames)  # views, no copy
    if isinstance(frames, Sequence):
        sequence = frames
        return (lambda: sequence), sequence, True
    if callable(frames):
        return frames, None, True
    if isinstance(frames, Iterable):
        once = iter(frames)
        return (lambda: once), None, False
    raise TypeError(f"frames must be a sequence, an iterable or a callable, got {type(frames).__name__}")


def _palette_sample(sequence: Sequence[np.ndarray] | None) -> list[np.ndarray] | None:
    if sequence is None or len(sequence) == 0:
        return None
    n = len(sequence)
    picks = sorted(
        {round(i * (n - 1) / max(1, _PALETTE_SAMPLE_FRAMES - 1)) for i in range(_PALETTE_SAMPLE_FRAMES)}
    )
    return [_as_rgb(sequence[i]) for i in picks]


def _write_once(
    factory: Callable[[], Iterable[np.ndarray]],
    sequence: Sequence[np.ndarray] | None,
    out_path: Path,
    *,
    fps: float,
    hold_first: float,
    hold_last: float,
    crossfade: int,
    boomerang: bool,
    writer_options: dict,
) -> AnimationInfo:
    first, last = _hold_frames(hold_first, fps, "hold_first"), _hold_frames(hold_last, fps, "hold_last")
    sample = _palette_sample(sequence) if out_path.suffix.lower() == ".gif" else None
    with AnimationWriter(out_path, fps=fps, palette_sample=sample, **writer_options) as writer:
        if boomerang:
            assert sequence is not None
            photos = _boomerang_with_holds(sequence, first, last)
        else:
            photos = _forward_with_holds(factory(), first, last)
        previous: np.ndarray | None = None
        for photo, repeats in photos:
            fitted = writer.fit(photo)
            if previous is not None:
                for step in range(1, crossfade + 1):
                    writer.append(_blend(previous, fitted, step / (crossfade + 1)))
            for _ in range(1 + repeats):
                writer.append(fitted)
            previous = fitted
        return writer.close()


def write_animation(
    frames: FrameSource,
    out_path: str | os.PathLike[str],
    *,
    fps: float = 10.0,
    hold_first: float = 0.0,
    hold_last: float = 0.0,
    crossfade: int = 0,
    boomerang: bool = False,
    size: tuple[int, int] | None = None,
    scale: float | None = None,
    max_width: int | None = None,
    max_bytes: int | None = None,
    quality: float = 75,
    loop: int | None = 0,
) -> AnimationInfo:
    """Write frames as .mp4 (H.264), .webm (VP9) or .gif, chosen by ``out_path``'s suffix.

    Sizes, ``quality`` and GIF details: see the module docstring. See `count_output_frames` for the
    number of frames.

    Args:
        frames: ``(H, W, 3)`` uint8 arrays as a sequence (e.g. `LazyFrames`, loaded on access), a
            callable returning a fresh iterable, or a one-pass iterable.
        out_path: the animation file; written under a temporary name, renamed when complete.
        fps: frames per second (at most 50 for a GIF).
        hold_first, hold_last: seconds the first/last photo stays on screen in addition to its own
            frame.
        crossfade: blended frames inserted between consecutive photos.
        boomerang: play forward then backward (0..n-1, n-2..1); ``hold_last`` applies at the turn.
            Needs a sequence.
        size: the output ``(h, w)``; default: the first frame's size times ``scale``.
        scale: see ``size``.
        max_width: reduce the output size to at most this wide.
        max_bytes: GIF only: re-encode at a smaller size until the file fits (at most 5 tries;
            warns if it still does not). Needs a sequence or a callable (the GIF may be encoded
            again, smaller).
        quality: 0-100, higher is better (MP4 and WebM).
        loop: GIF only: the NETSCAPE loop count (0: forever; None: no loop block, so it plays once).

    Returns:
        `AnimationInfo` of the written file.
    """
    out = Path(out_path)
    suffix = _check_suffix(out)
    fps = _check_fps(fps, suffix)
    _check_size_options(size, scale, max_width, quality)
    _hold_frames(hold_first, fps, "hold_first")
    _hold_frames(hold_last, fps, "hold_last")
    if isinstance(crossfade, bool) or not isinstance(crossfade, int) or crossfade < 0:
        raise ValueError(f"crossfade must be a non-negative int (frames), got {crossfade!r}")
    factory, sequence, reiterable = _frame_factory(frames)
    if boomerang and sequence is None:
        raise TypeError("frames must be a sequence (e.g. LazyFrames) when boomerang=True")
    if max_bytes is not None:
        if suffix != ".gif":
            raise ValueError("max_bytes is only supported for .gif")
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        if not reiterable:
            raise TypeError("frames must be a sequence or a callable when max_bytes is set")
    if not out.parent.is_dir():
        raise ValueError(f"out_path: folder {out.parent} does not exist")

    def encode(path: Path, shrink: float) -> AnimationInfo:
        options = {"size": size, "scale": scale, "max_width": max_width, "quality": quality, "loop": loop}
        return _write_once(
            factory,
            sequence,
            path,
            fps=fps,
            hold_first=hold_first,
            hold_last=hold_last,
            crossfade=crossfade,
            boomerang=boomerang,
            writer_options={**options, "shrink": shrink},
        )

    if max_bytes is None:
        return encode(out, 1.0)
    return _write_capped(encode, out, max_bytes)


def _write_capped(encode: Callable[[Path, float], AnimationInfo], out: Path, max_bytes: int) -> AnimationInfo:
    """Encode (``encode(path, shrink)``) to a hidden trial file, shrinking until it fits ``max_bytes``;
    then rename it."""
    shrink = 1.0
    for attempt in range(_MAX_SHRINK_ATTEMPTS):
        trial = temporary_path_for(out)
        try:
            info = encode(trial, shrink)
        except BaseException:
            trial.unlink(missing_ok=True)
            raise
        if info.n_bytes <= max_bytes or attempt == _MAX_SHRINK_ATTEMPTS - 1:
            os.replace(trial, out)
            break
        trial.unlink()
        # File size grows roughly with the pixel count, so scale the sides by sqrt of the excess.
        shrink *= min(0.9, max(0.3, 0.95 * math.sqrt(max_bytes / info.n_bytes)))
    if info.n_bytes > max_bytes:
        warnings.warn(
            f"{out.name} is {info.n_bytes} bytes, over max_bytes={max_bytes}, "
            f"after {_MAX_SHRINK_ATTEMPTS} tries",
            stacklevel=3,
        )
    return replace(info, path=out)
