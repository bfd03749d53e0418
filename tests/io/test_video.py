"""Reading videos: probing (frame count, times, fps, duration, size, rotation, recording time), the
sampling options, streaming decode with each frame's content checked against its index, and the
errors for files that are not usable videos."""

from __future__ import annotations

import math
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from alignimate.io import PhotoError
from alignimate.io.video import (
    VIDEO_SUFFIXES,
    is_video_file,
    iter_video_frames,
    probe_video,
    sample_indices,
)
from tests.helpers import finishes
from tests.videos import SCENE, ffmpeg, grey_frames, write_video

N = 20
STEP = 8


def _level(image: np.ndarray) -> float:
    return float(image.mean())


def _index_of(image: np.ndarray) -> int:
    """The frame index a `grey_frames` frame shows (its grey level, through the codec)."""
    return round((_level(image) - 16) / STEP)


@pytest.fixture(scope="module")
def grey_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "grey.mp4", grey_frames(N, step=STEP), fps=25)


# --------------------------------------------------------------------------------------------
# Probing


def test_probe_counts_times_fps_duration_and_size(grey_mp4: Path) -> None:
    info = probe_video(grey_mp4)
    assert info.frame_count == N
    assert info.size_hw == (64, 96)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(N / 25, abs=0.01)
    assert info.frame_times == pytest.approx([i / 25 for i in range(N)], abs=1e-6)
    assert info.codec == "h264"
    assert info.rotation == 0
    assert info.created is None


@pytest.mark.parametrize("suffix", sorted(VIDEO_SUFFIXES))
def test_every_listed_container_reads_frame_by_frame(tmp_path: Path, grey_mp4: Path, suffix: str) -> None:
    if suffix == ".webm":
        video = write_video(tmp_path / "g.webm", grey_frames(N, step=STEP), fps=25)
    else:  # H.264 in each container, remuxed without re-encoding
        video = tmp_path / f"g{suffix}"
        ffmpeg("-i", str(grey_mp4), "-c", "copy", str(video))
    info = probe_video(video)
    assert info.frame_count == N
    frames = list(iter_video_frames(info))
    assert [f.index for f in frames] == list(range(N))
    assert [_index_of(f.image) for f in frames] == list(range(N))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(N)], abs=1e-3)
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8


def test_variable_frame_rate_gives_real_times_and_no_repeated_frames(tmp_path: Path, grey_mp4: Path) -> None:
    # Frames 0-9 every 0.1 s, then every 0.25 s: a converter to a fixed rate would repeat frames.
    video = tmp_path / "vfr.mp4"
    ffmpeg(
        "-i", str(grey_mp4), "-vf", "settb=1/1000,setpts='if(lt(N,10),N*0.1,1+(N-10)*0.25)/TB'",
        "-fps_mode", "vfr", "-enc_time_base", "1/1000", "-video_track_timescale", "1000",
        "-c:v", "libx264", "-crf", "10", str(video),
    )  # fmt: skip
    expected = [i * 0.1 if i < 10 else 1 + (i - 10) * 0.25 for i in range(N)]
    info = probe_video(video)
    assert info.frame_count == N
    assert info.frame_times == pytest.approx(expected, abs=2e-3)
    frames = list(iter_video_frames(info))
    assert [_index_of(f.image) for f in frames] == list(range(N))
    assert [f.time for f in frames] == pytest.approx(expected, abs=2e-3)
    # Sample times 0, 0.5, 1.0, ... pick the nearest real frames.
    chosen = list(iter_video_frames(info, sample_fps=2))
    assert [f.index for f in chosen] == [0, 5, 10, 12, 14, 16, 18]
    assert [_index_of(f.image) for f in chosen] == [0, 5, 10, 12, 14, 16, 18]


def test_edit_list_start_counts_only_shown_frames(tmp_path: Path) -> None:
    # Cutting at a non-key frame with -c copy keeps earlier packets that the edit list hides.
    long = write_video(tmp_path / "long.mp4", grey_frames(30, step=7), fps=10)
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", "1.25", "-i", str(long), "-c", "copy", str(cut))
    info = probe_video(cut)
    frames = list(iter_video_frames(info))
    assert len(frames) == info.frame_count
    assert info.frame_times[0] == 0.0
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(len(frames))], abs=1e-3)


def test_rotated_phone_video_is_read_upright(tmp_path: Path) -> None:
    # Left half bright, right half dark; stored with "rotate 90 degrees counter-clockwise to show".
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:, :48] = 230
    stored = write_video(tmp_path / "stored.mp4", [frame] * 3)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(rotated))
    info = probe_video(rotated)
    assert abs(info.rotation) == 90
    assert info.size_hw == (96, 64)
    image = next(iter(iter_video_frames(info))).image
    assert image.shape == (96, 64, 3)
    upright = np.rot90(frame, 1)  # counter-clockwise: the bright left half ends at the bottom
    assert np.abs(image.astype(int) - upright).mean() < 6


def test_recording_time_from_creation_time_and_quicktime_tag(tmp_path: Path, grey_mp4: Path) -> None:
    utc = tmp_path / "utc.mp4"
    ffmpeg("-i", str(grey_mp4), "-c", "copy", "-metadata", "creation_time=2024-05-01T10:00:00Z", str(utc))
    local = datetime(2024, 5, 1, 10, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert probe_video(utc).created == local
    phone = tmp_path / "phone.mov"
    ffmpeg(
        "-i", str(grey_mp4), "-c", "copy", "-movflags", "use_metadata_tags",
        "-metadata", "com.apple.quicktime.creationdate=2023-07-04T18:30:00+0200", str(phone),
    )  # fmt: skip
    assert probe_video(phone).created == datetime(2023, 7, 4, 18, 30)  # the phone's wall clock
    epoch = tmp_path / "epoch.mp4"
    ffmpeg("-i", str(grey_mp4), "-c", "copy", "-metadata", "creation_time=1970-01-01T00:00:00Z", str(epoch))
    assert probe_video(epoch).created is None  # an encoder that did not know the time


# --------------------------------------------------------------------------------------------
# Sampling


def test_sample_indices_every_and_all() -> None:
    times = [i / 30 for i in range(10)]
    assert sample_indices(times) == list(range(10))
    assert sample_indices(times, every=1) == list(range(10))
    assert sample_indices(times, every=3) == [0, 3, 6, 9]
    assert sample_indices(times, every=50) == [0]
    assert sample_indices([], every=2) == []
    assert sample_indices([], sample_fps=2) == []


def test_sample_indices_nearest_frame_to_each_sample_time() -> None:
    times = [i / 30 for i in range(91)]  # 3 s at 30 fps
    assert sample_indices(times, sample_fps=1) == [0, 30, 60, 90]
    assert sample_indices(times, sample_fps=2) == [0, 15, 30, 45, 60, 75, 90]
    # 7 fps: sample k at k/7 s, nearest frame round(30 k / 7).
    assert sample_indices(times, sample_fps=7) == [round(30 * k / 7) for k in range(22)]
    # Faster than the video: every frame, once.
    assert sample_indices(times, sample_fps=100) == list(range(91))
    # A tie goes to the earlier frame.
    assert sample_indices([0.0, 0.4, 0.6], sample_fps=2) == [0, 1]


@pytest.mark.parametrize(
    ("every", "sample_fps", "message"),
    [
        (2, 1.0, "not both"),
        (0, None, "at least 1"),
        (-1, None, "at least 1"),
        (True, None, "whole number"),
        (1.5, None, "whole number"),
        (None, 0.0, "positive"),
        (None, -2.0, "positive"),
        (None, math.nan, "positive"),
        (None, math.inf, "positive"),
        (None, "2", "number"),
    ],
)
def test_sample_indices_rejects_bad_options(every: object, sample_fps: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_indices([0.0, 0.1], every=every, sample_fps=sample_fps)  # type: ignore[arg-type]


def test_iter_every_and_sample_fps_and_indices(grey_mp4: Path) -> None:
    every = list(iter_video_frames(grey_mp4, every=4))
    assert [f.index for f in every] == [0, 4, 8, 12, 16]
    assert [_index_of(f.image) for f in every] == [0, 4, 8, 12, 16]
    assert [f.time for f in every] == pytest.approx([0, 0.16, 0.32, 0.48, 0.64], abs=1e-6)
    # A 25 fps video sampled at k/10 s: 0.1 s lies as near frame 2 (0.08 s) as frame 3 (0.12 s),
    # and a tie goes to the earlier frame.
    sampled = list(iter_video_frames(grey_mp4, sample_fps=10))
    assert [f.index for f in sampled] == [0, 2, 5, 7, 10, 12, 15, 17]
    assert [_index_of(f.image) for f in sampled] == [0, 2, 5, 7, 10, 12, 15, 17]
    assert [f.time for f in sampled] == pytest.approx([0, 0.08, 0.2, 0.28, 0.4, 0.48, 0.6, 0.68], abs=1e-6)
    picked = list(iter_video_frames(grey_mp4, indices=[7, 3, 3, 99]))
    assert [(f.index, _index_of(f.image)) for f in picked] == [(3, 3), (7, 7)]
    with pytest.raises(ValueError, match="not both"):
        list(iter_video_frames(grey_mp4, indices=[1], every=2))


def test_decoding_streams_with_bounded_memory(tmp_path: Path) -> None:
    frames = grey_frames(120, hw=(240, 320), step=2)
    video = write_video(tmp_path / "long.mp4", frames, fps=30)
    frame_bytes = 240 * 320 * 3
    info = probe_video(video)
    tracemalloc.start()
    try:
        count = 0
        for frame in iter_video_frames(info):
            count += 1
            assert frame.image.nbytes == frame_bytes
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 120
    # Holding all frames would take 120 frames' worth; a stream holds a few at most.
    assert peak < 6 * frame_bytes


def test_stopping_early_gives_no_more_frames(grey_mp4: Path) -> None:
    stream = iter_video_frames(grey_mp4)
    first = [next(stream) for _ in range(3)]
    stream.close()  # stops ffmpeg
    assert [f.index for f in first] == [0, 1, 2]
    with pytest.raises(StopIteration):
        next(stream)


def test_a_video_cut_short_gives_the_frames_before_the_damage(tmp_path: Path) -> None:
    whole = write_video(
        tmp_path / "whole.mp4", grey_frames(N, hw=(128, 160), step=STEP, noise=24), quality=10
    )
    indexed = tmp_path / "indexed.mp4"  # the index at the start, so the cut file still opens
    ffmpeg("-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(indexed))
    data = indexed.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    frames = list(iter_video_frames(cut))
    assert 0 < len(frames) < N
    assert [_index_of(f.image) for f in frames] == list(range(len(frames)))


# --------------------------------------------------------------------------------------------
# Files that are not usable videos


def _reason(path: Path) -> str:
    with pytest.raises(PhotoError) as caught:
        probe_video(path)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)
    return caught.value.reason


def test_bad_files_give_one_line_reasons(tmp_path: Path, grey_mp4: Path) -> None:
    assert _reason(tmp_path / "missing.mp4") == "file not found"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") == "empty file (0 bytes)"
    (tmp_path / "folder.mp4").mkdir()
    assert _reason(tmp_path / "folder.mp4") == "is a folder, not a file"
    (tmp_path / "text.mp4").write_text("not a video\n" * 10)
    assert _reason(tmp_path / "text.mp4").startswith("not a readable video")
    data = grey_mp4.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index is at the end: lost
    assert "not a readable video" in _reason(tmp_path / "cut.mp4")
    (tmp_path / "photo.mp4").write_bytes(SCENE.read_bytes())
    assert _reason(tmp_path / "photo.mp4") == "a still image, not a video"
    sound = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", str(sound))
    assert _reason(sound) == "no video stream"


def test_decoding_a_bad_file_raises_photo_error(tmp_path: Path) -> None:
    (tmp_path / "text.mkv").write_text("not a video")
    with pytest.raises(PhotoError, match="not a readable video"):
        list(iter_video_frames(tmp_path / "text.mkv"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(PhotoError, match="not a regular file"):
        finishes(lambda: probe_video(fifo), fifos=[fifo])


def test_a_name_ffmpeg_would_read_as_a_protocol_is_a_plain_file(
    tmp_path: Path, grey_mp4: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipe:0").write_bytes(grey_mp4.read_bytes())
    assert probe_video(Path("pipe:0")).frame_count == N


def test_is_video_file_by_suffix_and_by_probing(tmp_path: Path, grey_mp4: Path) -> None:
    assert is_video_file(tmp_path / "clip.MOV")  # by suffix alone, whatever the file holds
    assert is_video_file(tmp_path / "clip.webm")
    assert not is_video_file(tmp_path / "photo.jpg")
    (tmp_path / "still.gif").write_bytes(SCENE.read_bytes())
    assert not is_video_file(tmp_path / "still.gif")  # a photo suffix is never a video
    for name in ("clip.3gp", "clip"):
        (tmp_path / name).write_bytes(grey_mp4.read_bytes())
        assert is_video_file(tmp_path / name)  # found by probing
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_video_file(tmp_path / "notes.txt")
    (tmp_path / "picture").write_bytes(SCENE.read_bytes())  # a JPEG without suffix: one still frame
    assert not is_video_file(tmp_path / "picture")
