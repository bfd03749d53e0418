"""A video as a job's input: its sampled frames written as photos into the output folder, which the
job then reads as it reads any folder of photos (:func:`open_job_input`, a folder or a video, is the
one call a job makes before discovery).

Where the frames go: a sub-folder of the output folder, ``<video stem>-frames/``. The output
folder's ledger claims the sub-folder's name, and the sub-folder is an output folder of its own
(:class:`~alignimate.pipeline.outputs.OutputFolder`, command ``video-frames``) whose ledger claims
every frame and ``video-frames.json`` before they are written; every file is written atomically.

Frame files: ``frame000123_000004.100s.jpg`` (frame index, then seconds after the first frame), so
name order is time order. JPEG at quality 95 by default: a lossless PNG takes many times longer to
write and several times the space, and registering either gives the same alignment
(docs/benchmarks.md, "Video frames: JPEG or PNG"); ``frame_format="png"`` keeps them lossless.

Frame times, for ordering and captions: when the video records when it was made
(:attr:`~alignimate.io.video.VideoInfo.created`), every frame carries EXIF DateTimeOriginal and
SubSecTimeOriginal = that moment plus its time in the video, so ``sort="date"`` orders the frames
by time and date captions show when each was filmed. Without it the frames have no date and the
name order (the same order) applies. ``video-frames.json`` lists each frame's name, index and time
in seconds, with the video's path, size and modification time.

A rerun with the same video keeps the frames already written (so a job's resume sees unchanged
files), writes only the missing ones and deletes those a new sampling no longer selects; a changed
video (another size or modification time) has all its frames rewritten.
"""

from __future__ import annotations

import json
import os
import stat as stat_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from PIL.ExifTags import IFD, Base

from alignimate.errors import UsageError
from alignimate.io import (
    PhotoError,
    VideoInfo,
    is_video_file,
    iter_video_frames,
    probe_video,
    sample_indices,
    save_image,
    write_json,
)
from alignimate.pipeline.outputs import OutputFolder, check_not_input, failure_from_os_error, frame_stem

__all__ = [
    "FRAMES_COMMAND",
    "FRAMES_RECORD_NAME",
    "JobInput",
    "VideoSampling",
    "frame_name",
    "frames_from_video",
    "is_video_input",
    "open_job_input",
]

FRAMES_COMMAND = "video-frames"
FRAMES_RECORD_NAME = "video-frames.json"
_RECORD_FORMAT = "alignimate-video-frames"
_RECORD_VERSION = 1
_MAX_RECORD_BYTES = 64 << 20
_FRAME_FORMATS = ("jpg", "png")
_JPEG_QUALITY = 95


def frame_name(index: int, time_s: float, frame_format: str = "jpg") -> str:
    """The file name of a video frame: ``frame000123_000004.100s.jpg``.

    Zero-padded, so plain and natural name order are both frame order.

    Args:
        index: the frame's index in the video.
        time_s: seconds after the first frame.
        frame_format: ``"jpg"`` or ``"png"``, the suffix.
    """
    return f"frame{index:06d}_{time_s:010.3f}s.{frame_format}"


def _exif_for(when: datetime) -> bytes:
    exif = Image.Exif()
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = when.strftime("%Y:%m:%d %H:%M:%S")
    sub[Base.SubsecTimeOriginal] = f"{when.microsecond:06d}"
    return exif.tobytes()


def _video_key(video: Path) -> dict[str, Any]:
    st = video.stat()
    return {"video": str(video.resolve()), "video_stat": [st.st_size, st.st_mtime_ns]}


def _read_record(path: Path) -> dict[str, Any] | None:
    """The earlier ``video-frames.json``, or None when missing or unusable (it is only compared with
    what this run computes, never used to name a file)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _RECORD_FORMAT else None


def _same_video(record: dict[str, Any] | None, key: dict[str, Any], frame_format: str) -> bool:
    if record is None:
        return False
    return (
        record.get("version") == _RECORD_VERSION
        and record.get("video") == key["video"]
        and record.get("video_stat") == key["video_stat"]
        and record.get("frame_format") == frame_format
    )


def _subfolder_name(folder: OutputFolder, video: Path) -> str:
    """``<stem>-frames``, or with ``-1``, ``-2``, ... when that name is taken by something that is not
    a folder of ours (a foreign file, or what an ``--overwrite`` left behind)."""
    stem = frame_stem(video.name)
    name, counter = f"{stem}-frames", 1
    while True:
        path = folder.path / name
        if folder.owns(name) and path.is_dir() and not path.is_symlink():
            return name
        if not os.path.lexists(path):
            return name
        name = f"{stem}-frames-{counter}"
        counter += 1


def _is_regular_file(path: Path) -> bool:
    try:
        return stat_module.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _write_record(
    frames: OutputFolder,
    info: VideoInfo,
    key: dict[str, Any],
    frame_format: str,
    sampling: dict[str, Any],
    listed: list[tuple[str, int, float]],
) -> None:
    write_json(
        frames.path_of(FRAMES_RECORD_NAME),
        {
            "format": _RECORD_FORMAT,
            "version": _RECORD_VERSION,
            **key,
            "frame_format": frame_format,
            "sampling": sampling,
            "size": list(info.size_hw),
            "fps": info.fps,
            "duration": info.duration,
            "frame_count": info.frame_count,
            "rotation": info.rotation,
            "created": info.created.isoformat() if info.created else None,
            "frames": [{"name": n, "index": i, "time": round(t, 6)} for n, i, t in listed],
        },
    )


def frames_from_video(
    video: str | os.PathLike[str],
    folder: OutputFolder,
    every: int | None = None,
    sample_fps: float | None = None,
    *,
    frame_format: str = "jpg",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the sampled frames of a video into a sub-folder of an output folder.

    See the module docstring for names, times and reuse.

    Args:
        video: the video file (only read).
        folder: the job's open output folder.
        every, sample_fps: which frames (:func:`alignimate.io.video.sample_indices`); neither: every
            frame.
        frame_format: ``"jpg"`` (quality 95) or ``"png"``.
        log: told when the video ends before its last sampled frame (a damaged file), with how many
            frames were written.

    Returns:
        the sub-folder, the input folder for the job's discovery.

    Raises :class:`UsageError` for bad options, a video that cannot be read or has no decodable
    frame, and a frames sub-folder in the way; :class:`~alignimate.errors.RunError` when a file
    cannot be written. The video is only read.
    """
    video = Path(video)
    log = log or (lambda _msg: None)
    if frame_format not in _FRAME_FORMATS:
        raise UsageError(f"frame_format must be jpg or png, got {frame_format!r}")
    try:
        sample_indices([], every, sample_fps)  # checks the options before any work
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        info = probe_video(video)
    except PhotoError as err:
        raise UsageError(str(err)) from None
    wanted = sample_indices(info.frame_times, every, sample_fps)
    listed = [(frame_name(i, info.frame_times[i], frame_format), i, info.frame_times[i]) for i in wanted]
    sub = _subfolder_name(folder, video)
    folder.claim([sub])
    path = folder.path / sub
    try:
        path.mkdir(exist_ok=True)
    except OSError as err:
        raise failure_from_os_error(err, "create the video frames folder") from None
    sampling = {"every": every, "sample_fps": sample_fps}
    with OutputFolder.open(
        path, command=FRAMES_COMMAND, inputs=[video.parent], label="video frames folder"
    ) as frames:
        try:
            key = _video_key(video)
            earlier = None
            if frames.owns(FRAMES_RECORD_NAME):
                earlier = _read_record(frames.path / FRAMES_RECORD_NAME)
            names = {n for n, _, _ in listed}
            # Frames of another video (or format) cannot be reused.
            keep = names if _same_video(earlier, key, frame_format) else set()
            # Frames of an earlier sampling that this one does not select would be read as photos.
            frames.remove(sorted(n for n in frames.owned() if n != FRAMES_RECORD_NAME and n not in keep))
            frames.claim([FRAMES_RECORD_NAME, *sorted(names)])
            present = {n for n in keep if _is_regular_file(frames.path / n)}
            # Written before the frames, so an interrupted run's frames are known to be this video's.
            _write_record(frames, info, key, frame_format, sampling, listed)
            missing = [i for n, i, _ in listed if n not in present]
            written = set(present)
            for frame in iter_video_frames(info, indices=missing):
                name = frame_name(frame.index, frame.time, frame_format)
                exif = _exif_for(info.created + timedelta(seconds=frame.time)) if info.created else None
                options = {"quality": _JPEG_QUALITY} if frame_format == "jpg" else {}
                save_image(frames.path_of(name), frame.image, exif=exif, **options)
                written.add(name)
            if not written:
                raise UsageError(f"{video}: no frame of the video could be decoded")
            if len(written) < len(listed):
                log(
                    f"{video}: the video ended early (damaged?); {len(written)} of {len(listed)} "
                    f"sampled frames written"
                )
                _write_record(
                    frames, info, key, frame_format, sampling, [e for e in listed if e[0] in written]
                )
        except PhotoError as err:
            raise UsageError(str(err)) from None
        except OSError as err:
            raise failure_from_os_error(err, "write the video frames") from None
    return path


@dataclass(frozen=True)
class JobInput:
    """Where a job finds its photos (:func:`open_job_input`)."""

    folder: Path  # the photos' folder: the one given, or the frames folder of a video
    inputs: list[Path]  # the folders the output folder must neither be nor contain
    overwrite: bool  # the job's overwrite; False once a video's frames were written (they are input)


class VideoSampling(Protocol):
    """Which frames of a video a job takes (the jobs' settings have these fields)."""

    video_every: int  # every N-th frame ...
    sample_fps: float  # ... or, when above 0, this many frames per second


def open_job_input(
    given: Path,
    out: Path,
    sampling: VideoSampling,
    *,
    command: str,
    overwrite: bool,
    label: str = "output folder",
    log: Callable[[str], None] | None = None,
) -> JobInput:
    """A job's first step: its input is the folder ``given``, or, when ``given`` is a video file, the
    frames that ``sampling`` picks, written into the output folder ``out``.

    For a video, the output folder is opened under its rules and closed again; the job opens it as
    usual (a rerun then resumes: frames already extracted from the same video are kept), and the
    video's folder stands for the input folder in those rules.

    Args:
        given: the folder of photos or the video file.
        out: the job's output folder.
        sampling: which of the video's frames to take.
        command: the job (``register``, ``faces``), for the folder's ledger.
        overwrite: as the job's ``overwrite``.
        label: what messages call the output folder.
        log: as :func:`frames_from_video`.

    Returns:
        a :class:`JobInput`. A UsageError when ``given`` is neither a folder nor a video file.
    """
    if not is_video_input(given):
        if not given.is_dir():
            raise UsageError(f"{given}: not a folder")
        return JobInput(given, [given], overwrite)
    check_not_input(out, [given.parent], what=label)
    with OutputFolder.open(
        out, command=command, overwrite=overwrite, inputs=[given.parent], label=label, resumable=True
    ) as folder:
        fps = sampling.sample_fps
        every = None if fps > 0 else sampling.video_every
        frames = frames_from_video(given, folder, every, fps if fps > 0 else None, log=log)
    return JobInput(frames, [given.parent], False)


def is_video_input(path: Path) -> bool:
    """Whether a job's input ``path`` is a video file (rather than a folder of photos)."""
    return path.is_file() and is_video_file(path)
