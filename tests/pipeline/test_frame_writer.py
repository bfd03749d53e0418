"""write_frames with injected read/save: order, errors, early stops, the bound on work in flight and
the thread that saves; save_frame and default_workers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alignimate.pipeline.frame_writer as frame_writer
from alignimate.io import PhotoError
from alignimate.pipeline.frame_writer import FrameJob, FrameOutcome, default_workers, save_frame, write_frames

OUT_HW = (4, 6)


def jobs_for(tmp_path: Path, count: int) -> list[FrameJob]:
    """Identity warps of src_i.png to out_i.png (the files need not exist: read and save are fakes)."""
    return [
        FrameJob(tmp_path / f"src_{i}.png", np.eye(3), tmp_path / f"out_{i}.png", key=f"photo {i}")
        for i in range(count)
    ]


def index_of(path: Path) -> int:
    return int(path.stem.split("_")[1])


class Recorder:
    """read/save stand-ins: photo ``i`` is filled with grey level ``i``; reads sleep ``delays[i]``
    seconds; what ran where and how much ran at once is recorded under a lock."""

    def __init__(self, delays: dict[int, float] | None = None, fail: dict[int, BaseException] | None = None):
        self.delays = delays or {}
        self.fail = fail or {}
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.saved: list[int] = []
        self.read_threads: set[int] = set()
        self.save_threads: set[int] = set()
        self.reading = 0
        self.max_reading = 0
        self.max_unsaved = 0  # jobs whose read began and whose frame is not saved yet

    def read(self, path: Path) -> np.ndarray:
        i = index_of(path)
        with self.lock:
            self.started.append(i)
            self.read_threads.add(threading.get_ident())
            self.reading += 1
            self.max_reading = max(self.max_reading, self.reading)
            self.max_unsaved = max(self.max_unsaved, len(self.started) - len(self.saved))
        try:
            time.sleep(self.delays.get(i, 0.0))
            if i in self.fail:
                raise self.fail[i]
            return np.full((OUT_HW[0] + 2, OUT_HW[1] + 2, 3), i, np.uint8)
        finally:
            with self.lock:
                self.reading -= 1
                self.finished.append(i)

    def save(self, path: Path, frame: np.ndarray) -> None:
        with self.lock:
            self.save_threads.add(threading.get_ident())
        # The frame is the warp of the photo: identity, so the photo's top-left corner, same layout.
        assert isinstance(frame, np.ndarray) and frame.shape == (*OUT_HW, 3)
        assert (frame == index_of(path)).all()
        with self.lock:
            self.saved.append(index_of(path))


def test_outcomes_come_in_job_order_when_reads_finish_out_of_order(tmp_path: Path) -> None:
    # Early jobs are the slowest: workers finish them last.
    rec = Recorder(delays={0: 0.15, 1: 0.10, 2: 0.05, 3: 0.0, 4: 0.02, 5: 0.0})
    jobs = jobs_for(tmp_path, 6)
    outcomes = list(write_frames(jobs, OUT_HW, workers=3, read=rec.read, save=rec.save))
    assert rec.finished[:3] != [0, 1, 2]  # the reads really did finish out of order
    assert [o.job for o in outcomes] == jobs
    assert [o.job.key for o in outcomes] == [f"photo {i}" for i in range(6)]
    assert all(isinstance(o, FrameOutcome) and o.written and o.error is None for o in outcomes)
    assert rec.saved == list(range(6))


def test_each_outcome_is_yielded_right_after_its_frame_is_saved(tmp_path: Path) -> None:
    rec = Recorder()
    seen_saved = [
        list(rec.saved)
        for _ in write_frames(jobs_for(tmp_path, 5), OUT_HW, workers=2, read=rec.read, save=rec.save)
    ]
    assert seen_saved == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4]]


def test_an_unreadable_photo_is_reported_and_the_others_written(tmp_path: Path) -> None:
    rec = Recorder(
        fail={1: PhotoError(tmp_path / "src_1.png", "truncated file"), 4: PhotoError("x", "empty")}
    )
    outcomes = list(write_frames(jobs_for(tmp_path, 6), OUT_HW, workers=2, read=rec.read, save=rec.save))
    assert [o.written for o in outcomes] == [True, False, True, True, False, True]
    assert outcomes[1].error is rec.fail[1] and outcomes[4].error is rec.fail[4]
    assert outcomes[1].error.reason == "truncated file"
    assert rec.saved == [0, 2, 3, 5]


@pytest.mark.parametrize("workers", [1, 3])
def test_another_exception_stops_the_run_and_nothing_later_is_saved(tmp_path: Path, workers: int) -> None:
    # Later jobs read quickly, so they are finished (but must not be saved) when job 2 fails.
    rec = Recorder(delays={2: 0.1}, fail={2: RuntimeError("disk on fire")})
    seen = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for outcome in write_frames(
            jobs_for(tmp_path, 12), OUT_HW, workers=workers, read=rec.read, save=rec.save
        ):
            seen.append(index_of(outcome.job.target))
    assert seen == [0, 1] and rec.saved == [0, 1]
    time.sleep(0.05)
    assert len(rec.started) <= 3 + workers + 1  # pending jobs were cancelled, not read
    assert sorted(rec.finished) == sorted(rec.started)  # and no worker is still running


def test_an_exception_from_save_stops_the_run(tmp_path: Path) -> None:
    rec = Recorder()
    saved: list[int] = []

    def save(path: Path, frame: np.ndarray) -> None:
        if index_of(path) == 3:
            raise OSError(28, "No space left on device")
        saved.append(index_of(path))

    seen = []
    with pytest.raises(OSError, match="No space left"):
        for outcome in write_frames(jobs_for(tmp_path, 10), OUT_HW, workers=2, read=rec.read, save=save):
            seen.append(index_of(outcome.job.target))
    assert seen == [0, 1, 2] and saved == [0, 1, 2]
    assert len(rec.started) < 10


def test_closing_the_generator_early_cancels_the_pending_jobs(tmp_path: Path) -> None:
    workers = 2
    rec = Recorder(delays={i: 0.02 for i in range(20)})
    frames = write_frames(jobs_for(tmp_path, 20), OUT_HW, workers=workers, read=rec.read, save=rec.save)
    first = [next(frames), next(frames)]
    assert [index_of(o.job.target) for o in first] == [0, 1]
    frames.close()  # waits for the reads already running; the queued ones never start
    started = len(rec.started)
    assert started <= 2 + workers + 1
    assert sorted(rec.finished) == sorted(rec.started)
    time.sleep(0.1)
    assert len(rec.started) == started and rec.saved == [0, 1]
    with pytest.raises(StopIteration):
        next(frames)


def test_reads_are_bounded_by_the_workers_and_run_in_parallel(tmp_path: Path) -> None:
    workers = 3
    rec = Recorder(delays={i: 0.03 for i in range(15)})
    outcomes = list(
        write_frames(jobs_for(tmp_path, 15), OUT_HW, workers=workers, read=rec.read, save=rec.save)
    )
    assert len(outcomes) == 15 and rec.saved == list(range(15))
    assert rec.max_reading == workers  # never more than the pool, and the pool is used
    assert len(rec.read_threads) == workers


def test_at_most_workers_plus_two_frames_are_held(tmp_path: Path) -> None:
    workers = 2
    rec = Recorder()

    def slow_save(path: Path, frame: np.ndarray) -> None:
        time.sleep(0.05)  # every read finishes while a frame is being saved
        rec.save(path, frame)

    list(write_frames(jobs_for(tmp_path, 10), OUT_HW, workers=workers, read=rec.read, save=slow_save))
    assert rec.saved == list(range(10))
    # workers + 1 submitted jobs (the next one is submitted before the current frame is saved) plus
    # the frame being saved: the bound the module docstring states.
    assert rec.max_unsaved <= workers + 2


def test_save_runs_only_on_the_calling_thread(tmp_path: Path) -> None:
    rec = Recorder(delays={i: 0.005 * (i % 3) for i in range(9)})
    list(write_frames(jobs_for(tmp_path, 9), OUT_HW, workers=3, read=rec.read, save=rec.save))
    assert rec.save_threads == {threading.get_ident()}
    assert threading.get_ident() not in rec.read_threads


def test_an_empty_job_list_yields_nothing(tmp_path: Path) -> None:
    rec = Recorder()
    assert list(write_frames([], OUT_HW, workers=2, read=rec.read, save=rec.save)) == []
    assert list(write_frames(iter([]), OUT_HW, read=rec.read, save=rec.save)) == []
    assert rec.started == [] and rec.saved == []


def test_jobs_may_be_a_lazy_iterator(tmp_path: Path) -> None:
    rec = Recorder()
    made: list[int] = []

    def generate():
        for job in jobs_for(tmp_path, 8):
            made.append(index_of(job.target))
            yield job

    frames = write_frames(generate(), OUT_HW, workers=2, read=rec.read, save=rec.save)
    next(frames)
    assert len(made) <= 2 + 2  # only the window is drawn from the iterator
    rest = list(frames)
    assert len(rest) == 7 and made == list(range(8))


def test_planes_are_warped_and_saved_as_planes(tmp_path: Path) -> None:
    photo = torch.arange(3 * 6 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 6, 8)
    frames: list[torch.Tensor] = []
    shift = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])  # frame = photo[2:, 1:]
    job = FrameJob(tmp_path / "src_0.png", shift, tmp_path / "out_0.png")
    outcomes = list(
        write_frames([job], (4, 6), workers=1, read=lambda _p: photo, save=lambda _p, f: frames.append(f))
    )
    assert outcomes == [FrameOutcome(job)]
    assert isinstance(frames[0], torch.Tensor) and tuple(frames[0].shape) == (3, 4, 6)
    assert torch.equal(frames[0], photo[:, 2:6, 1:7])


def test_background_reaches_the_warp(tmp_path: Path) -> None:
    frames: list[np.ndarray] = []
    photo = np.full((4, 6, 3), 9, np.uint8)
    job = FrameJob(
        tmp_path / "src_0.png", np.array([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]]), tmp_path / "out_0.png"
    )
    list(
        write_frames(
            [job],
            (4, 6),
            background="white",
            workers=1,
            read=lambda _p: photo,
            save=lambda _p, f: frames.append(f),
        )
    )
    assert (frames[0][:, :2] == 255).all() and (frames[0][:, 2:] == 9).all()


def test_bad_arguments_are_refused_before_any_read(tmp_path: Path) -> None:
    rec = Recorder()
    for workers in (0, -1, True, 2.0, "2"):
        with pytest.raises(ValueError, match="workers must be a positive int"):
            list(write_frames(jobs_for(tmp_path, 2), OUT_HW, workers=workers, read=rec.read, save=rec.save))
    with pytest.raises(ValueError, match="background must be one of"):
        list(write_frames(jobs_for(tmp_path, 2), OUT_HW, background="grey", read=rec.read, save=rec.save))
    assert rec.started == []


def test_real_files_by_default(tmp_path: Path) -> None:
    """The default read and save: a PNG in, a PNG and a JPEG frame out, atomically."""
    photo = np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "src_0.png")
    shift = np.array([[1.0, 0.0, -2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    jobs = [
        FrameJob(tmp_path / "src_0.png", shift, tmp_path / "out_0.png"),
        FrameJob(tmp_path / "src_0.png", shift, tmp_path / "out_1.jpg"),
        FrameJob(tmp_path / "missing_2.png", shift, tmp_path / "out_2.png"),
    ]
    outcomes = list(write_frames(jobs, (8, 9), workers=2))
    assert [o.written for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, PhotoError) and not (tmp_path / "out_2.png").exists()
    with Image.open(tmp_path / "out_0.png") as image:
        assert np.array_equal(np.asarray(image), photo[1:9, 2:11])
    with Image.open(tmp_path / "out_1.jpg") as image:
        assert image.format == "JPEG" and image.size == (9, 8)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_save_frame_takes_both_layouts(tmp_path: Path) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_frame(tmp_path / "array.png", pixels)
    save_frame(tmp_path / "planes.png", torch.from_numpy(pixels).permute(2, 0, 1))
    rgba = np.dstack([pixels, np.full((5, 7), 128, np.uint8)])
    save_frame(tmp_path / "alpha.png", torch.from_numpy(rgba).permute(2, 0, 1))
    for name in ("array.png", "planes.png"):
        with Image.open(tmp_path / name) as image:
            assert np.array_equal(np.asarray(image), pixels), name
    with Image.open(tmp_path / "alpha.png") as image:
        assert image.mode == "RGBA" and np.array_equal(np.asarray(image), rgba)


@pytest.mark.parametrize(("cpus", "expected"), [(None, 1), (1, 1), (2, 2), (4, 4), (64, 4)])
def test_default_workers_is_one_per_core_at_most_four(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, expected: int
) -> None:
    monkeypatch.setattr(frame_writer.os, "cpu_count", lambda: cpus)
    assert default_workers() == expected


def test_no_workers_given_means_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_writer.os, "cpu_count", lambda: 2)
    rec = Recorder(delays={i: 0.03 for i in range(8)})
    list(write_frames(jobs_for(tmp_path, 8), OUT_HW, read=rec.read, save=rec.save))
    assert rec.max_reading == 2 and len(rec.read_threads) == 2
