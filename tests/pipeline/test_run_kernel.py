"""The run kernel's shared steps on their own: a job's input (folder or video), its photos, and
:class:`~alignimate.pipeline.run.JobRun`'s frame names, skipping and end of run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.errors import UsageError
from alignimate.io.planes import save_image_pixels
from alignimate.pipeline.outputs import OutputFolder
from alignimate.pipeline.photos import Skipped, discover_photos
from alignimate.pipeline.records import PhotoRecord, RunRecord
from alignimate.pipeline.run import RUN_FILES, JobRun, find_photos, open_output
from alignimate.pipeline.video_input import JobInput, open_job_input
from tests.videos import grey_frames, write_video


@dataclass(frozen=True)
class _Sampling:
    video_every: int = 1
    sample_fps: float = 0.0


def _photos(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        save_image_pixels(folder / name, np.full((24, 32, 3), 40 * i, np.uint8))
    return folder


def test_a_folder_is_its_own_input(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "in", ["a.jpg"])
    source = open_job_input(folder, tmp_path / "out", _Sampling(), command="register", overwrite=True)
    assert source == JobInput(folder, [folder], True)
    assert not (tmp_path / "out").exists()  # nothing written for a folder


def test_neither_folder_nor_video_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    for given in (tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(UsageError, match="not a folder"):
            open_job_input(given, tmp_path / "out", _Sampling(), command="register", overwrite=False)
    assert not (tmp_path / "out").exists()


def test_a_video_becomes_its_sampled_frames_in_the_output_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    video = write_video(tmp_path / "in" / "clip.mp4", grey_frames(10, step=8), fps=25)
    out = tmp_path / "out"
    source = open_job_input(video, out, _Sampling(video_every=3), command="register", overwrite=True)
    assert source.inputs == [video.parent] and source.overwrite is False  # the frames are input now
    assert source.folder.parent == out
    assert len(list(source.folder.glob("*.jpg"))) == 4  # frames 0, 3, 6, 9
    photos, skipped = find_photos(source, out)
    assert [p.path.parent for p in photos] == [source.folder] * 4 and skipped == []


def test_find_photos_refuses_an_output_folder_that_is_the_input(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "in", ["a.jpg"])
    source = JobInput(folder, [folder], False)
    with pytest.raises(UsageError, match="frames folder is the input folder"):
        find_photos(source, folder, label="frames folder")
    with pytest.raises(UsageError, match="contains the input folder"):
        find_photos(source, tmp_path)


def test_find_photos_leaves_out_the_output_folder_and_the_jobs_own_file(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "in", ["a.jpg", "b.jpg"])
    Image.new("L", (32, 24)).save(folder / "timeline.gif")  # an animation a run wrote
    _photos(folder / "aligned", ["a.jpg"])
    source = JobInput(folder, [folder], False)
    photos, _ = find_photos(source, folder / "aligned", sort="name")
    assert [p.name for p in photos] == ["a.jpg", "b.jpg", "timeline.gif"]
    photos, _ = find_photos(source, folder / "aligned", sort="name", leave_out=folder / "timeline.gif")
    assert [p.name for p in photos] == ["a.jpg", "b.jpg"]


def test_find_photos_without_photos_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with pytest.raises(UsageError, match=f"{folder}: no photos found"):
        find_photos(JobInput(folder, [folder], False), tmp_path / "out")


def _run(tmp_path: Path, log: list[str], own: tuple[str, ...] = ()) -> tuple[JobRun[None], OutputFolder]:
    """A run with no settings and no device (the shared steps use neither)."""
    outputs, _ = open_output(tmp_path / "out", False, command="register", inputs=[tmp_path / "in"])
    device = None
    return JobRun(tmp_path, outputs, None, device, False, log.append, own_files=own), outputs


def test_frame_names_never_take_the_runs_own_files(tmp_path: Path) -> None:
    run, outputs = _run(tmp_path, [], own=("sheet.jpg",))
    with outputs:
        taken: set[str] = set()
        assert run.frame_name("sheet.jpg", ".jpg", taken) == "sheet-1.jpg"
        assert run.frame_name("report.jpg", ".csv", taken) == "report-1.csv"  # report.csv is the run's
        assert run.frame_name("sub/sheet.jpg", ".jpg", taken) not in {"sheet.jpg", "sheet-1.jpg"}
        assert set(RUN_FILES) | {"sheet.jpg"} <= taken


def test_skipping_and_unusable_photos_are_logged_with_their_reason(tmp_path: Path) -> None:
    log: list[str] = []
    run, outputs = _run(tmp_path, log)
    with outputs:
        photo_folder = _photos(tmp_path / "in", ["a.jpg"])
        (photo,), _ = discover_photos(photo_folder)
        record = run.new_record(photo)
        assert record.status == "pending" and record.extra["stat"][0] == photo.path.stat().st_size
        run.skip_record(record, "too dark")
        assert (record.status, record.reason, record.matrix) == ("skipped", "too dark", None)
        gone = run.unusable(Skipped(tmp_path / "x.jpg", "x.jpg", "cannot be read"), drop="unreadable")
        assert gone.status == "skipped" and gone.extra == {"drop": "unreadable"}
    assert log == ["skipped a.jpg: too dark", "skipped x.jpg: cannot be read"]


def test_close_removes_only_stale_files_it_recorded(tmp_path: Path) -> None:
    run, outputs = _run(tmp_path, [], own=("sheet.jpg",))
    with outputs:
        outputs.claim(["old.jpg", "kept.jpg", "sheet.jpg", "notes.dat"])
        for name in ("old.jpg", "kept.jpg", "sheet.jpg", "notes.dat"):
            (outputs.path / name).write_bytes(b"x")
        (outputs.path / "foreign.jpg").write_bytes(b"x")  # never recorded as alignimate's
        record = RunRecord(command="register", input=str(tmp_path), settings={}, photos=[])
        kept = PhotoRecord(
            name="k.jpg",
            source=str(tmp_path / "k.jpg"),
            status="aligned",
            size=[24, 32],
            matrix=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            output="kept.jpg",
        )
        record.photos.append(kept)
        run.close(record, stale=lambda name: name.endswith(".jpg"))
    left = {p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")}
    assert {"kept.jpg", "sheet.jpg", "notes.dat", "foreign.jpg", "transforms.json", "report.csv"} <= left
    assert "old.jpg" not in left
