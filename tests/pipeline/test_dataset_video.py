"""``alignimate dataset faces`` with a video file as SRC: the sampled frames are written under DST
(``<video stem>-frames/``) and processed like photos, with ``source`` relative to DST; reruns skip the
frames already in the manifest, another sampling adds the new frames, and bad options are refused
before anything is written. The video is made from a sample photo moved by a known amount per frame,
so where the faces are found in the frames is known."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alignimate import dataset
from alignimate.cli import app
from alignimate.errors import UsageError
from alignimate.pipeline.dataset_faces import SETTINGS_NAME, read_manifest
from alignimate.pipeline.outputs import LEDGER_NAME
from alignimate.pipeline.video_input import FRAMES_RECORD_NAME, frame_name
from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture, used by being imported)
from tests.videos import write_video

PHOTO = Path(__file__).resolve().parents[2] / "sample_data" / "faces" / "face_00.jpg"
FPS = 5.0
FRAMES = 6
STEP = np.array([3.0, 2.0])  # the photo moves this many pixels (x, y) per frame
SIZE = 128



@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clip.mp4``: face_00.jpg (480 x 640, sides multiples of 16) moved by ``k * STEP`` pixels in
    frame ``k``, 6 frames at 5 fps."""
    folder = tmp_path_factory.mktemp("video")
    with Image.open(PHOTO) as image:
        photo = image.convert("RGB")
    frames = []
    for k in range(FRAMES):
        dx, dy = k * STEP
        # Pillow's affine data maps output pixels to input pixels: the content moves by +(dx, dy).
        moved = photo.transform(photo.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), Image.BICUBIC)
        frames.append(np.asarray(moved))
    return write_video(folder / "clip.mp4", frames, fps=FPS)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sources(indices: list[int]) -> list[str]:
    return [f"clip-frames/{frame_name(i, i / FPS)}" for i in indices]


def _eyes(row: dict[str, Any]) -> np.ndarray:
    return np.reshape(row["landmarks"], (5, 2))[:2]


def test_a_videos_frames_become_the_datasets_photos(video: Path, tmp_path: Path) -> None:
    before = _digest(video)
    out = tmp_path / "faces"
    result = dataset.faces(video, out, size=SIZE, video_every=2)
    assert _digest(video) == before and sorted(p.name for p in video.parent.iterdir()) == ["clip.mp4"]

    rows = sorted(read_manifest(out).to_pylist(), key=lambda r: r["source"])
    # Sources are relative to DST: the frames folder, then frame index and time in the video.
    assert [r["source"] for r in rows] == _sources([0, 2, 4])
    assert result.photos == 3 and result.rows == 3 and result.aligned == 3 and result.exit_code == 0
    for r in rows:
        assert (out / r["source"]).is_file() and r["status"] == "aligned"
        assert Image.open(out / r["output"]).size == (SIZE, SIZE)
        assert (r["photo_width"], r["photo_height"]) == (480, 640)
        assert r["sha256"] == _digest(out / r["source"])
    # The faces were found where the video put them: frame k's eyes are frame 0's moved by k * STEP.
    shifts = [_eyes(r) - _eyes(rows[0]) - k * STEP for r, k in zip(rows, (0, 2, 4), strict=True)]
    worst = float(np.abs(np.array(shifts)).max())
    print(f"eye positions against the known motion: worst {worst:.2f} px")
    assert worst < 1.0  # landmark noise after H.264 coding; a one-frame mix-up would be 3 px off

    record = json.loads((out / SETTINGS_NAME).read_text())
    assert record["runs"][-1]["video"] == {
        "path": str(video.resolve()),
        "frames": "clip-frames",
        "video_every": 2,
        "sample_fps": 0.0,
    }
    assert "clip-frames" in json.loads((out / LEDGER_NAME).read_text())["files"]
    frames_record = json.loads((out / "clip-frames" / FRAMES_RECORD_NAME).read_text())
    assert [f["index"] for f in frames_record["frames"]] == [0, 2, 4]


def test_rerun_skips_known_frames_and_another_sampling_adds_the_new_ones(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "faces"
    dataset.faces(video, out, size=SIZE, video_every=2)
    again = dataset.faces(video, out, size=SIZE, video_every=2)
    assert again.rows == 0 and again.known == 3 and again.photos == 3

    # Every frame, through the command line: 5 per second of a 5 fps video.
    runner = CliRunner()
    args = ["dataset", "faces", str(video), "--out", str(out), "--size", str(SIZE), "--sample-fps", "5"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["photos"], summary["known"], summary["rows"], summary["aligned"]) == (6, 3, 3, 3)
    rows = read_manifest(out).to_pylist()
    assert sorted(r["source"] for r in rows) == _sources(list(range(FRAMES)))
    assert sorted({r["run"] for r in rows}) == ["r001", "r003"]
    record = json.loads((out / SETTINGS_NAME).read_text())
    assert [run["video"]["sample_fps"] for run in record["runs"]] == [0.0, 0.0, 5.0]


def test_bad_video_requests_are_refused_before_anything_is_written(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "faces"
    # From Python the message names the argument; on the command line, the flag (below).
    with pytest.raises(UsageError, match=r"video_every must be between 1 and 1e\+06, got 0"):
        dataset.faces(video, out, video_every=0)
    with pytest.raises(UsageError, match="sample_fps must be between 0 and 1000, got -1"):
        dataset.faces(video, out, sample_fps=-1.0)
    with pytest.raises(UsageError, match="is the input folder"):
        dataset.faces(video, video.parent)
    result = CliRunner().invoke(
        app, ["dataset", "faces", str(video), "--out", str(out), "--video-every", "0"]
    )
    assert result.exit_code == 2 and "--video-every must be between" in result.output
    missing = CliRunner().invoke(app, ["dataset", "faces", str(tmp_path / "nothing.mp4"), "--out", str(out)])
    assert missing.exit_code == 2 and "not a folder (nor a video file)" in missing.output
    assert not out.exists()
    assert sorted(p.name for p in video.parent.iterdir()) == ["clip.mp4"]
