"""Video files as a source of photos: probing a video and streaming its frames, through the ffmpeg
that `imageio-ffmpeg` ships.

Frames are ``(H, W, 3)`` uint8 RGB arrays, upright: ffmpeg applies the rotation a phone records in
the file, as `alignimate.io.read_image` applies EXIF orientation. A frame's index is its position
among the decoded frames (0-based, in presentation order) and its time is its presentation time in
seconds after the first frame, taken from the file's timestamps, so variable-frame-rate phone videos
get their real times. Decoding passes every frame through unchanged (no frame rate conversion, which
would duplicate or drop frames), so index ``i`` of `iter_video_frames` is the ``i``-th entry of
`VideoInfo.frame_times`.

Failures are `alignimate.io.PhotoError` ``(path, reason)`` with a short reason ("no video stream",
"not a readable video (moov atom not found)"); no ffmpeg or subprocess error escapes. Files are
only read: ffmpeg gets the path through its ``file:`` protocol with every other protocol refused, so
a playlist disguised as a video cannot make it open anything else.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from alignimate.io.images import SUPPORTED_SUFFIXES, PhotoError, _check_file

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoFrame",
    "VideoInfo",
    "is_video_file",
    "iter_video_frames",
    "probe_video",
    "sample_indices",
]

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".mov", ".m4v", ".webm", ".avi", ".mkv"})
"""Lower-case suffixes taken for videos without looking inside (compared case-insensitively)."""

# Demuxers that ffmpeg also offers for things that are not videos: still images (ffmpeg reads a
# JPEG as a one-frame "video"), animations the photo readers handle, and playlists that point at
# other files.
_STILL_DEMUXERS = frozenset({"image2", "gif", "apng", "webp", "tiff", "bmp"})
_PLAYLIST_DEMUXERS = frozenset({"hls", "concat", "dash", "ffconcat"})
# A probe reads the whole file (demuxing only, no decoding), which is quick; this only stops a file
# that makes ffmpeg hang.
_PROBE_TIMEOUT_S = 600.0
_NO_PTS = -(2**63)
_DISCARD_FLAG = 0x4  # AV_PKT_FLAG_DISCARD: a packet before the start of an edit list, never shown

_log_filter_installed = False


@dataclass(frozen=True)
class VideoInfo:
    """What a probe of a video finds.

    ``size_hw``: upright frame size ``(h, w)`` in pixels (after the recorded rotation).
    ``frame_count``: number of frames. ``frame_times``: presentation time of each frame in seconds
    after the first one (non-decreasing, ``frame_times[0] == 0``). ``fps``: the average frame rate
    over those times. ``duration``: seconds. ``rotation``: degrees of the recorded display rotation (0 when
    none). ``codec``: ffmpeg's codec name ("h264"). ``created``: the recording's start time as a
    naive local time (QuickTime ``com.apple.quicktime.creationdate`` as recorded, else the
    container's UTC ``creation_time`` converted to this machine's time zone), or ``None``.
    """

    path: Path
    size_hw: tuple[int, int]
    frame_count: int
    frame_times: tuple[float, ...]
    fps: float
    duration: float
    rotation: int
    codec: str
    created: datetime | None


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: ``index`` among the video's frames (0-based), ``time`` in seconds after the
    first frame, ``image`` an ``(H, W, 3)`` uint8 RGB array (read-only)."""

    index: int
    time: float
    image: np.ndarray


# --------------------------------------------------------------------------------------------
# Running ffmpeg


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_url(path: Path) -> str:
    # "file:" stops ffmpeg from reading a name such as "pipe:0" or "http://..." as another protocol.
    return "file:" + str(path.resolve())


_INPUT_OPTIONS = ["-nostdin", "-hide_banner", "-protocol_whitelist", "file"]


def _ffmpeg_problem(text: str) -> str:
    """The most telling error line of ffmpeg's log, without its ``[in#0 @ 0x...]`` prefix."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    generic = ("error opening input", "error opening output", "error parsing options", "to ignore this")
    for line in lines:
        lowered = line.lower()
        if any(g in lowered for g in generic):
            continue
        if any(w in lowered for w in ("not found", "invalid", "error", "unsupported", "failed", "could not")):
            return line[:200]
    return (lines[-1] if lines else "ffmpeg gave no reason")[:200]


def _probe_error_reason(stderr: str) -> str:
    if "matches no streams" in stderr:
        return "no video stream"
    problem = _ffmpeg_problem(stderr)
    if "moov atom not found" in problem:
        return "not a readable video (moov atom not found: not a video, or cut short)"
    if "Invalid data found" in problem:
        return "not a readable video (unrecognised format)"
    return f"not a readable video ({problem})"


# --------------------------------------------------------------------------------------------
# Probing


def _input_section(stderr: str) -> str:
    """The part of ffmpeg's log that describes the input file (before the output is described)."""
    start = stderr.find("Input #0")
    end = stderr.find("Output #0", start)
    return stderr[start : end if end >= 0 else len(stderr)]


def _parse_duration(section: str) -> float:
    match = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", section)
    if match is None:
        return 0.0
    hours, minutes, seconds = match.groups()
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def _parse_rate(text: str, unit: str) -> float:
    match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", text)
    if match is None:
        return 0.0
    return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)


def _parse_rotation(stream_block: str) -> int:
    match = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", stream_block, re.IGNORECASE)
    if match is None:
        match = re.search(r"^\s*rotate\s*:\s*(-?\d+)", stream_block, re.MULTILINE)
    return round(float(match.group(1))) if match else 0


def _parse_created(section: str) -> datetime | None:
    """The recording start as naive local time (see `VideoInfo.created`), or None."""
    apple = re.search(r"com\.apple\.quicktime\.creationdate\s*:\s*(\S+)", section)
    if apple is not None:
        when = _parse_iso(apple.group(1))
        if when is not None:
            return when.replace(tzinfo=None)  # the phone's own wall-clock time, like EXIF dates
    plain = re.search(r"^\s*creation_time\s*:\s*(\S+)", section, re.MULTILINE)
    if plain is None:
        return None
    when = _parse_iso(plain.group(1))
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone()  # MP4 stores UTC; photos' EXIF dates are local time
    return when.replace(tzinfo=None)


def _parse_iso(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Encoders that do not know the time write the container's epoch (1904 or 1970).
    return when if when.year >= 1980 else None


def _parse_packet_times(listing: str) -> list[float] | None:
    """Presentation times (seconds after the first, sorted) of the shown video packets in an ffmpeg
    ``framecrc`` listing, or None when the packets carry no usable timestamps.

    A container without presentation times (AVI) has its packets' decoding times used instead."""
    time_base: Fraction | None = None
    shown: list[tuple[int, int]] = []
    for line in listing.splitlines():
        if line.startswith("#tb 0:"):
            num, _, den = line.split(":", 1)[1].strip().partition("/")
            time_base = Fraction(int(num), int(den))
            continue
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or fields[0] != "0":
            continue
        flags = int(fields[6][4:], 16) if len(fields) > 6 and fields[6].startswith("F=0x") else 0
        if not flags & _DISCARD_FLAG:
            shown.append((int(fields[2]), int(fields[1])))  # (pts, dts)
    if time_base is None:
        return None
    stamps = [pts for pts, _ in shown]
    if _NO_PTS in stamps:
        stamps = [dts for _, dts in shown]
        if _NO_PTS in stamps:
            return None
    if not stamps:
        return []
    stamps.sort()
    first = stamps[0]
    return [float((s - first) * time_base) for s in stamps]


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, frame times, frame rate, duration, size, rotation and recording time of a video.

    Reads the whole file once without decoding pictures (ffmpeg copies the video stream's packets
    to learn their timestamps), so it is quick even for long videos.

    Raises `PhotoError` for a missing, empty or non-regular file, for a file ffmpeg cannot read,
    for one without a video stream, and for still images and playlists.
    """
    path = Path(path)
    _check_file(path)
    command = [
        _ffmpeg(), *_INPUT_OPTIONS, "-i", _ffmpeg_url(path),
        "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise PhotoError(path, f"probing the video took more than {_PROBE_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise PhotoError(path, f"cannot run ffmpeg ({exc.strerror or exc})") from exc
    stderr = done.stderr.decode("utf-8", errors="replace")
    section = _input_section(stderr)
    if done.returncode != 0 or "Input #0" not in stderr:
        raise PhotoError(path, _probe_error_reason(stderr))
    demuxer = re.match(r"Input #0, ([^,]+)", section)
    name = demuxer.group(1).strip() if demuxer else ""
    if name in _STILL_DEMUXERS or name.endswith("_pipe"):
        raise PhotoError(path, "a still image, not a video")
    if name in _PLAYLIST_DEMUXERS:
        raise PhotoError(path, "a playlist, not a video file")
    stream = re.search(r"^\s*Stream #0:\d+\S*: Video: (.*)$", section, re.MULTILINE)
    if stream is None:
        raise PhotoError(path, "no video stream")
    description = stream.group(1)
    size = re.search(r"(?:^|[ ,])(\d{1,6})x(\d{1,6})(?=[ ,\[]|$)", description)
    if size is None or int(size.group(1)) == 0 or int(size.group(2)) == 0:
        raise PhotoError(path, "video stream without a frame size")
    width, height = int(size.group(1)), int(size.group(2))
    # The lines after the stream's own line (its metadata and side data) hold the rotation.
    stream_block = section[stream.end() :].split("Stream #", 1)[0]
    rotation = _parse_rotation(stream_block)
    if round(rotation / 90) % 2:
        width, height = height, width
    times = _parse_packet_times(done.stdout.decode("ascii", errors="replace"))
    # tbr is ffmpeg's guess of the rate frames are spaced at; "fps" is an average some containers
    # (AVI) state wrongly.
    nominal = _parse_rate(description, "tbr") or _parse_rate(description, "fps")
    if times is None:
        if nominal <= 0:
            raise PhotoError(path, "video without timestamps or frame rate")
        times = [i / nominal for i in range(done.stdout.count(b"\n0,"))]
    if not times:
        raise PhotoError(path, "video without frames")
    if len(times) > 1 and times[-1] > 0:
        fps = (len(times) - 1) / times[-1]  # the average over the frames themselves
    else:
        fps = nominal if nominal > 0 else 1.0
    duration = _parse_duration(section) or times[-1] + 1.0 / fps
    codec = description.split()[0].rstrip(",") if description.split() else ""
    return VideoInfo(
        path=path,
        size_hw=(height, width),
        frame_count=len(times),
        frame_times=tuple(times),
        fps=fps,
        duration=duration,
        rotation=rotation,
        codec=codec,
        created=_parse_created(section),
    )


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is to be read as a video: by suffix (`VIDEO_SUFFIXES`), and for a file whose
    suffix is neither a video's nor a photo's (`.3gp`, `.mts`, no suffix, ...) by probing it.

    Never raises: a file named like a video that turns out unreadable is still a video here, and
    `probe_video` then says what is wrong with it. A photo suffix is never a video."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix in SUPPORTED_SUFFIXES:
        return False
    try:
        return probe_video(path).frame_count > 1
    except PhotoError:
        return False


# --------------------------------------------------------------------------------------------
# Sampling


def _check_sampling(every: int | None, sample_fps: float | None) -> None:
    if every is not None and sample_fps is not None:
        raise ValueError("give every or sample_fps, not both")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a whole number of frames, at least 1, got {every!r}")
    if sample_fps is not None:
        if isinstance(sample_fps, bool) or not isinstance(sample_fps, (int, float)):
            raise ValueError(f"sample_fps must be a number, got {sample_fps!r}")
        if not (math.isfinite(sample_fps) and sample_fps > 0):
            raise ValueError(f"sample_fps must be a positive number of frames per second, got {sample_fps!r}")


def sample_indices(
    frame_times: Sequence[float], every: int | None = None, sample_fps: float | None = None
) -> list[int]:
    """Indices of the frames to keep, increasing.

    Args:
        frame_times: seconds after the first frame, non-decreasing (`VideoInfo.frame_times`).
        every: keep frames 0, N, 2N, ...
        sample_fps: for each sample time ``k / F`` (k = 0, 1, ... up to the last frame's time) keep
            the frame whose time is nearest (the earlier one on a tie), each frame at most once, so a
            rate above the video's keeps every frame. Neither option: every frame.

    Returns:
        the indices. Raises ``ValueError`` for both options at once, ``every < 1`` or a
        ``sample_fps`` that is not a positive finite number.
    """
    _check_sampling(every, sample_fps)
    count = len(frame_times)
    if sample_fps is None:
        return list(range(0, count, every or 1))
    if count == 0:
        return []
    last = frame_times[-1]
    chosen: list[int] = []
    # A small allowance, so a last frame at exactly k/F is not lost to rounding.
    for k in range(math.floor(last * sample_fps + 1e-6) + 1):
        target = k / sample_fps
        right = bisect.bisect_left(frame_times, target)
        if right >= count:
            best = count - 1
        elif right == 0:
            best = 0
        else:
            left = right - 1
            # Equal distances (up to rounding) go to the earlier frame.
            closer_left = target - frame_times[left] <= frame_times[right] - target + 1e-9
            best = left if closer_left else right
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


# --------------------------------------------------------------------------------------------
# Decoding


class _DropSizeNotice(logging.Filter):
    """imageio-ffmpeg warns when the decoded size differs from the stored one, which is what a
    rotated phone video always does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


def _quiet_size_notice() -> None:
    global _log_filter_installed
    if not _log_filter_installed:
        logging.getLogger("imageio_ffmpeg").addFilter(_DropSizeNotice())
        _log_filter_installed = True


def _decode_error(path: Path, exc: BaseException) -> PhotoError:
    text = str(exc)
    log = text.split("=== stderr ===", 1)[1] if "=== stderr ===" in text else text
    return PhotoError(path, f"cannot decode the video ({_ffmpeg_problem(log)})")


def _time_of(info: VideoInfo, index: int) -> float:
    times = info.frame_times
    if index < len(times):
        return times[index]
    # Only when decoding gives more frames than the probe counted: carry on at the average rate.
    return times[-1] + (index - len(times) + 1) / info.fps


def iter_video_frames(
    video: str | os.PathLike[str] | VideoInfo,
    *,
    every: int | None = None,
    sample_fps: float | None = None,
    indices: Sequence[int] | None = None,
) -> Iterator[VideoFrame]:
    """Decode a video's sampled frames one at a time, in order.

    Args:
        video: a path or the `VideoInfo` of an earlier `probe_video`.
        every, sample_fps: which frames, as in `sample_indices`.
        indices: which frames, by index instead (duplicates and ones past the end are ignored).
            None of the three: every frame.

    Memory stays bounded: ffmpeg decodes into a pipe and only the current frame is held; frames
    that are not wanted are read and dropped, and ffmpeg is stopped after the last wanted one (or
    when the caller stops iterating). A damaged file gives the frames that could be decoded, then
    ends. Raises `PhotoError` when ffmpeg cannot decode the video at all, ``ValueError`` for bad
    sampling options.
    """
    import imageio_ffmpeg

    if indices is not None and (every is not None or sample_fps is not None):
        raise ValueError("give indices, or every / sample_fps, not both")
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    if indices is None:
        wanted = sample_indices(info.frame_times, every, sample_fps)
    else:
        wanted = sorted({int(i) for i in indices if int(i) >= 0})
    if not wanted:
        return
    _quiet_size_notice()
    frames = imageio_ffmpeg.read_frames(
        _ffmpeg_url(info.path),
        input_params=list(_INPUT_OPTIONS),
        # passthrough: one output frame per decoded frame, none duplicated or dropped to a fixed rate
        output_params=["-map", "0:v:0", "-fps_mode", "passthrough", "-an", "-sn", "-dn"],
    )
    try:
        try:
            meta = next(frames)
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            raise _decode_error(info.path, exc) from None
        width, height = meta["size"]
        position, next_wanted = 0, 0
        while next_wanted < len(wanted):
            try:
                data = next(frames)
            except StopIteration:
                return
            except (OSError, RuntimeError, ValueError) as exc:
                raise _decode_error(info.path, exc) from None
            if position == wanted[next_wanted]:
                image = np.frombuffer(data, np.uint8).reshape(height, width, 3)
                yield VideoFrame(position, _time_of(info, position), image)
                next_wanted += 1
            position += 1
    finally:
        frames.close()  # stops ffmpeg
