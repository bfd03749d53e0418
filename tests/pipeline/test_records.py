"""The run checkpoint: written at most every few seconds, always when the run stops, gone when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

import alignimate.pipeline.records as records
from alignimate.pipeline.records import Checkpoint, PhotoRecord, RunRecord, read_transforms


def run_with(done: int) -> RunRecord:
    photos = [PhotoRecord(source=f"/in/{i}.jpg", name=f"{i}.jpg", status="aligned") for i in range(done)]
    return RunRecord(command="register", input="/in", settings={}, photos=photos)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(records.time, "monotonic", fake.monotonic)
    return fake


def written(path: Path) -> int:
    return len(read_transforms(path).photos)


def test_updates_are_written_at_most_every_interval(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / ".checkpoint.json"
    checkpoint = Checkpoint(path, interval_s=2.0)
    calls = []

    def state(done: int):
        def build() -> RunRecord:
            calls.append(done)
            return run_with(done)

        return build

    checkpoint.update(state(1))  # the first update is written at once
    assert written(path) == 1
    for done in (2, 3, 4):
        clock.now += 0.5
        checkpoint.update(state(done))
    assert written(path) == 1 and calls == [1]  # pending; the record is not even built
    clock.now += 0.6  # 2.1 s after the first write
    checkpoint.update(state(5))
    assert written(path) == 5 and calls == [1, 5]


def test_flush_writes_the_newest_pending_state_once(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / ".checkpoint.json"
    checkpoint = Checkpoint(path, interval_s=60.0)
    checkpoint.update(lambda: run_with(1))
    checkpoint.update(lambda: run_with(7))
    assert written(path) == 1
    checkpoint.flush()
    assert written(path) == 7
    path.unlink()
    checkpoint.flush()  # nothing pending: nothing written
    assert not path.exists()


def test_remove_forgets_pending_state_and_deletes_the_file(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / ".checkpoint.json"
    checkpoint = Checkpoint(path, interval_s=60.0)
    checkpoint.update(lambda: run_with(1))
    checkpoint.update(lambda: run_with(2))
    checkpoint.remove()
    checkpoint.flush()  # as align_folder's final flush after a finished run
    assert not path.exists()
    checkpoint.remove()  # twice is fine
