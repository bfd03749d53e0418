"""``frames_from_video``: a video's sampled frames as photos in the output folder (names, ledgers,
capture times, reuse on a rerun, errors), and a hand-held video registered to under a pixel."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from alignimate.errors import UsageError
from alignimate.io import iter_video_frames, probe_image, read_image
from alignimate.pipeline.outputs import LEDGER_NAME, OutputFolder
from alignimate.pipeline.photos import discover_photos
from alignimate.pipeline.register_folder import align_folder
from alignimate.pipeline.video_input import FRAMES_RECORD_NAME, frame_name, frames_from_video
from tests.videos import ffmpeg, grey_frames, jittered_scene, steady_scene, write_video

N = 20
STEP = 8
FPS = 25


def _index_of(path: Path) -> int:
    return round((float(read_image(path).mean()) - 16) / STEP)


def _names(indices: list[int], fmt: str = "jpg") -> list[str]:
    return [frame_name(i, i / FPS, fmt) for i in indices]


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir() if p.suffix == ".jpg"}


@pytest.fixture
def grey_mp4(tmp_path: Path) -> Path:
    return write_video(tmp_path / "grey.mp4", grey_frames(N, step=STEP), fps=FPS)


def _extract(video: Path, out: Path, **options) -> Path:
    with OutputFolder.open(out, command="register", inputs=[video.parent]) as folder:
        frames = frames_from_video(video, folder, **options)
        assert folder.owns(frames.name)
    return frames


def test_frames_are_written_named_by_time_and_claimed(tmp_path: Path, grey_mp4: Path) -> None:
    before = (grey_mp4.read_bytes(), grey_mp4.stat().st_mtime_ns)
    out = tmp_path / "out"
    frames = _extract(grey_mp4, out)
    assert frames == out / "grey-frames"
    names = _names(list(range(N)))
    assert names[3] == "frame000003_000000.120s.jpg"
    visible = sorted(p.name for p in frames.iterdir() if not p.name.startswith("."))
    assert visible == sorted([*names, FRAMES_RECORD_NAME])
    # Only the nested ledger is hidden: no temporary file or lock is left.
    assert [p.name for p in frames.iterdir() if p.name.startswith(".")] == [LEDGER_NAME]
    ledger = json.loads((frames / LEDGER_NAME).read_text())
    assert ledger["command"] == "video-frames"
    assert sorted(ledger["files"]) == sorted([*names, FRAMES_RECORD_NAME])
    assert "grey-frames" in json.loads((out / LEDGER_NAME).read_text())["files"]
    assert [_index_of(frames / n) for n in names] == list(range(N))
    record = json.loads((frames / FRAMES_RECORD_NAME).read_text())
    assert [(f["name"], f["index"]) for f in record["frames"]] == list(zip(names, range(N), strict=True))
    assert [f["time"] for f in record["frames"]] == pytest.approx([i / FPS for i in range(N)])
    assert record["video"] == str(grey_mp4.resolve())
    # Discovery finds them as photos in time order; this video has no recording time.
    photos, skipped = discover_photos(frames, sort="date")
    assert [p.name for p in photos] == names and not skipped
    assert all(p.datetime is None for p in photos)
    assert (grey_mp4.read_bytes(), grey_mp4.stat().st_mtime_ns) == before  # the input is only read


def test_every_and_sample_fps_choose_the_frames(tmp_path: Path, grey_mp4: Path) -> None:
    every = _extract(grey_mp4, tmp_path / "a", every=6)
    assert sorted(p.name for p in every.glob("*.jpg")) == _names([0, 6, 12, 18])
    assert [_index_of(every / n) for n in _names([0, 6, 12, 18])] == [0, 6, 12, 18]
    sampled = _extract(grey_mp4, tmp_path / "b", sample_fps=5)  # every 0.2 s = every 5th frame
    assert sorted(p.name for p in sampled.glob("*.jpg")) == _names([0, 5, 10, 15])


def test_recording_time_becomes_each_frames_capture_time(tmp_path: Path, grey_mp4: Path) -> None:
    dated = tmp_path / "dated.mp4"
    ffmpeg("-i", str(grey_mp4), "-c", "copy", "-metadata", "creation_time=2024-05-01T10:20:30Z", str(dated))
    start = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC).astimezone().replace(tzinfo=None)
    frames = _extract(dated, tmp_path / "out", every=5)
    photos, _ = discover_photos(frames, sort="date")
    assert [p.name for p in photos] == _names([0, 5, 10, 15])
    expected = [start + timedelta(seconds=i / FPS) for i in (0, 5, 10, 15)]
    assert [p.datetime for p in photos] == expected  # to the sub-second
    assert probe_image(frames / _names([5])[0]).datetime == expected[1]


def test_rerun_keeps_written_frames_and_follows_new_sampling(tmp_path: Path, grey_mp4: Path) -> None:
    out = tmp_path / "out"
    frames = _extract(grey_mp4, out, every=2)
    first = _stats(frames)
    assert sorted(first) == _names(list(range(0, N, 2)))
    assert _stats(_extract(grey_mp4, out, every=2)) == first  # nothing rewritten
    # A coarser sampling keeps the frames it shares and deletes the others.
    again = _stats(_extract(grey_mp4, out, every=4))
    assert sorted(again) == _names(list(range(0, N, 4)))
    assert all(again[n] == first[n] for n in again)
    # A frame deleted by hand is written again, alone.
    (frames / _names([8])[0]).unlink()
    after = _stats(_extract(grey_mp4, out, every=4))
    assert sorted(after) == sorted(again)
    assert all(after[n] == again[n] for n in again if n != _names([8])[0])


def test_a_changed_video_has_its_frames_rewritten(tmp_path: Path, grey_mp4: Path) -> None:
    out = tmp_path / "out"
    frames = _extract(grey_mp4, out, every=5)
    assert _index_of(frames / _names([5])[0]) == 5
    write_video(grey_mp4, grey_frames(N, step=STEP)[::-1], fps=FPS)  # same name, reversed content
    _extract(grey_mp4, out, every=5)
    assert [_index_of(frames / n) for n in _names([0, 5, 10, 15])] == [19, 14, 9, 4]


def test_png_frames_are_the_decoded_frames_exactly(tmp_path: Path) -> None:
    video = write_video(tmp_path / "scene.mp4", jittered_scene(4)[0], fps=FPS)
    frames = _extract(video, tmp_path / "out", frame_format="png")
    decoded = list(iter_video_frames(video))
    for frame in decoded:
        assert np.array_equal(read_image(frames / frame_name(frame.index, frame.time, "png")), frame.image)
    jpeg = _extract(video, tmp_path / "out2")
    difference = np.abs(read_image(jpeg / frame_name(1, 1 / FPS)).astype(int) - decoded[1].image)
    assert difference.mean() < 2.0  # quality 95


def test_bad_videos_and_options_are_usage_errors_and_write_nothing(tmp_path: Path, grey_mp4: Path) -> None:
    (tmp_path / "text.mp4").write_text("not a video\n")
    cases = [
        (tmp_path / "text.mp4", {}, "text.mp4: not a readable video"),
        (tmp_path / "missing.mov", {}, "missing.mov: file not found"),
        (grey_mp4, {"every": 0}, "at least 1"),
        (grey_mp4, {"every": 2, "sample_fps": 1.0}, "not both"),
        (grey_mp4, {"sample_fps": -1.0}, "positive"),
        (grey_mp4, {"frame_format": "gif"}, "jpg or png"),
    ]
    for video, options, message in cases:
        out = tmp_path / "out"
        with OutputFolder.open(out, command="register") as folder, pytest.raises(UsageError, match=message):
            frames_from_video(video, folder, **options)
        assert not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_a_foreign_entry_with_the_folders_name_is_left_alone(tmp_path: Path, grey_mp4: Path) -> None:
    out = tmp_path / "out"
    with OutputFolder.open(out, command="register") as folder:
        (out / "grey-frames").mkdir()
        (out / "grey-frames" / "mine.txt").write_text("the user's")
        frames = frames_from_video(grey_mp4, folder, every=10)
    assert frames == out / "grey-frames-1"
    assert sorted(p.name for p in frames.glob("*.jpg")) == _names([0, 10])
    assert [p.name for p in (out / "grey-frames").iterdir()] == ["mine.txt"]


def test_a_damaged_video_gives_the_frames_it_has_and_says_so(tmp_path: Path) -> None:
    whole = write_video(
        tmp_path / "whole.mp4", grey_frames(N, hw=(128, 160), step=STEP, noise=24), quality=10
    )
    indexed = tmp_path / "indexed.mp4"
    ffmpeg("-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(indexed))
    data = indexed.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    messages: list[str] = []
    with OutputFolder.open(tmp_path / "out", command="register") as folder:
        frames = frames_from_video(cut, folder, log=messages.append)
    written = sorted(p.name for p in frames.glob("*.jpg"))
    assert 0 < len(written) < N
    assert len(messages) == 1 and "ended early" in messages[0] and f"{len(written)} of " in messages[0]
    record = json.loads((frames / FRAMES_RECORD_NAME).read_text())
    assert sorted(f["name"] for f in record["frames"]) == written


# --------------------------------------------------------------------------------------------
# End to end: a hand-held video registered onto its first frame


def _displacement(true_H: np.ndarray, found_H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where the content shown at canvas ``points`` (3, n) truly belongs, minus ``points``: (2, n)
    pixels. ``true_H`` and ``found_H`` both map the frame onto the canvas (the reference frame)."""
    mapped = true_H @ np.linalg.inv(found_H) @ points
    return mapped[:2] / mapped[2] - points[:2]


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the translation between two grey images, in pixels (phase correlation)."""
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=20)
    return float(np.hypot(*shift))


def test_hand_held_video_frames_align_to_under_a_pixel(tmp_path: Path) -> None:
    count = 12
    shaky, scene_H_frame = jittered_scene(count, max_shift=4.0, max_angle_deg=0.4, seed=3)
    video = write_video(tmp_path / "hand-held.mp4", shaky, fps=10)
    steady = write_video(tmp_path / "steady.mp4", steady_scene(3), fps=10)
    with OutputFolder.open(tmp_path / "work", command="frames") as folder:
        frames = frames_from_video(video, folder)
    result = align_folder(frames, tmp_path / "aligned", model="similarity", device="cpu", workers=1)
    assert result.exit_code == 0
    run = json.loads((tmp_path / "aligned" / "transforms.json").read_text())
    records = run["photos"]
    assert [r["name"] for r in records] == [frame_name(i, i / 10) for i in range(count)]
    crop = run["crop"]
    top, left, height, width = crop["top"], crop["left"], crop["height"], crop["width"]

    # 1. From the matrices: the true frame-to-reference matrix is known from the synthesis, so each
    # aligned frame's leftover motion is a displacement field over the crop; the jitter between two
    # aligned frames is the mean length of the difference of their fields.
    ys, xs = np.mgrid[top : top + height : 4, left : left + width : 4]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(float)
    reference_H_scene = np.linalg.inv(scene_H_frame[0])
    truth = [reference_H_scene @ m for m in scene_H_frame]

    def jitter(found: list[np.ndarray]) -> list[float]:
        fields = [_displacement(t, f, points) for t, f in zip(truth, found, strict=True)]
        return [float(np.linalg.norm(fields[k + 1] - fields[k], axis=0).mean()) for k in range(count - 1)]

    pairs = jitter([np.asarray(r["matrix"]) for r in records])
    before = jitter([np.eye(3)] * count)  # the frames as filmed
    print(
        f"jitter between consecutive frames, px: filmed median {np.median(before):.2f}; aligned median "
        f"{np.median(pairs):.3f}, worst {max(pairs):.3f}"
    )
    assert np.median(before) > 2.0  # the video does shake
    assert np.median(pairs) < 1.0  # the target: under a pixel, median
    assert max(pairs) < 1.0

    # 2. From the pixels: each written frame against the steady video's frame, cropped alike.
    still = next(iter(iter_video_frames(steady))).image.astype(float).mean(axis=2)
    still_crop = still[top : top + height, left : left + width]
    aligned = [read_image(tmp_path / "aligned" / r["output"]).astype(float).mean(axis=2) for r in records]
    raw = [read_image(frames / r["name"]).astype(float).mean(axis=2) for r in records]
    shaky_shifts = [_shift(still, frame) for frame in raw[1:]]
    aligned_shifts = [_shift(still_crop, frame) for frame in aligned]
    print(
        f"shift against the steady video, px: filmed median {np.median(shaky_shifts):.2f}; aligned "
        f"median {np.median(aligned_shifts):.3f}, worst {max(aligned_shifts):.3f}"
    )
    assert np.median(shaky_shifts) > 2.0
    assert np.median(aligned_shifts) < 1.0
