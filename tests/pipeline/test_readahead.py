"""Working copies read ahead while ``register`` starts (issue #17): the reader hands each copy over at
most once, never reads a photo the job already took on itself, passes read errors on, stays within
its memory bound and stops when closed; ``align_folder`` reads every working copy exactly once and
imports torch only after the read-ahead has started."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alignimate.pipeline.register_folder as register_folder
import alignimate.pipeline.register_stages as register_stages
from alignimate.io import PhotoError, read_image, read_image_pixels
from alignimate.pipeline.readahead import READ_AHEAD_BYTES, ReadAhead


def _fake_read(log: list[Path], gate: threading.Event | None = None) -> Callable[[Path], np.ndarray]:
    def read(path: Path) -> np.ndarray:
        if gate is not None:
            gate.wait(5)
        log.append(path)
        if path.name.startswith("bad"):
            raise PhotoError(path, "not a photo")
        return np.full((2, 2, 3), len(path.name), np.uint8)

    return read


def test_copies_are_read_in_order_and_handed_over_once() -> None:
    paths = [Path(f"p{i}.jpg") for i in range(5)]
    log: list[Path] = []
    with ReadAhead(paths, _fake_read(log), max_side=64) as ahead:
        ahead._thread.join(5)  # let it finish (nothing stops it before the last photo)
        assert log == paths
        first = ahead.take(paths[0])
        assert first is not None and first.shape == (2, 2, 3)
        assert ahead.take(paths[0]) is None  # handed over already: the caller reads it itself
        assert all(ahead.take(p) is not None for p in paths[1:])
    assert ahead.take(Path("never-listed.jpg")) is None


def test_a_photo_taken_before_its_turn_is_left_to_the_job() -> None:
    paths = [Path(f"p{i}.jpg") for i in range(4)]
    log: list[Path] = []
    gate = threading.Event()
    with ReadAhead(paths, _fake_read(log, gate), max_side=64) as ahead:
        assert ahead.take(paths[2]) is None  # not started: the job reads it, the thread never will
        gate.set()
        ahead._thread.join(5)
        assert paths[2] not in log and log == [paths[0], paths[1], paths[3]]
        assert ahead.take(paths[1]) is not None  # a read in progress or done is waited for


def test_read_errors_are_raised_to_the_taker() -> None:
    paths = [Path("bad.jpg"), Path("good.jpg")]
    with ReadAhead(paths, _fake_read([]), max_side=64) as ahead:
        with pytest.raises(PhotoError, match="not a photo"):
            ahead.take(paths[0])
        assert ahead.take(paths[1]) is not None


def test_other_failures_leave_the_photo_to_the_job() -> None:
    def broken(path: Path) -> np.ndarray:
        raise RuntimeError("a bug, reported where the job reads the photo again")

    with ReadAhead([Path("p.jpg")], broken, max_side=64) as ahead:
        ahead._thread.join(5)
        assert ahead.take(Path("p.jpg")) is None


@pytest.mark.parametrize("channels", [1, 3])
def test_reading_ahead_is_bounded_by_bytes(channels: int) -> None:
    side = 2048
    count = READ_AHEAD_BYTES // (channels * side * side)
    paths = [Path(f"p{i}.jpg") for i in range(count + 10)]
    log: list[Path] = []
    with ReadAhead(paths, _fake_read(log), max_side=side, channels=channels) as ahead:
        ahead._thread.join(5)
    assert log == paths[:count]


def test_close_stops_reading_and_drops_what_was_not_taken() -> None:
    paths = [Path(f"p{i}.jpg") for i in range(50)]
    log: list[Path] = []
    gate = threading.Event()
    ahead = ReadAhead(paths, _fake_read(log, gate), max_side=64)  # its first read waits at the gate
    closer = threading.Thread(target=ahead.close)
    closer.start()
    while not ahead._closed:
        closer.join(0.01)
    gate.set()  # the read in progress ends; nothing more is read
    closer.join(5)
    assert not ahead._thread.is_alive() and log in ([], paths[:1])
    assert ahead.take(paths[0]) is None
    ahead.close()  # twice is harmless


def test_dropped_photos_are_not_read_or_are_forgotten() -> None:
    paths = [Path(f"p{i}.jpg") for i in range(4)]
    log: list[Path] = []
    gate = threading.Event()
    with ReadAhead(paths, _fake_read(log, gate), max_side=64) as ahead:
        ahead.drop([paths[2]])  # not started yet
        gate.set()
        ahead._thread.join(5)
        ahead.drop([paths[3]])  # read already
        assert paths[2] not in log
        assert ahead.take(paths[2]) is None and ahead.take(paths[3]) is None
        assert ahead.take(paths[1]) is not None


def _photos(folder: Path, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([x * 1.5, y * 2.0, (x + y) * 0.8], axis=2) + rng.normal(0, 30, (120, 160, 3))
    for i in range(count):
        shifted = np.roll(base, (i, 2 * i), axis=(0, 1))
        Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8)).save(folder / f"p{i}.jpg", quality=90)


def test_align_folder_reads_every_working_copy_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By the read-ahead (OpenCV) or by the job itself (Pillow; the same pixels), never by both."""
    _photos(tmp_path / "in", 6)
    calls: list[str] = []
    lock = threading.Lock()

    def counting(read: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def counted(path: Path, **options: int | None) -> np.ndarray:
            if options.get("max_side") == 64:
                with lock:
                    calls.append(Path(path).name)
            return read(path, **options)

        return counted

    monkeypatch.setattr(register_folder, "read_image_pixels", counting(read_image_pixels))
    monkeypatch.setattr(register_folder, "read_image", counting(read_image))
    result = register_folder.align_folder(tmp_path / "in", tmp_path / "out", size=64, crop="none")
    assert result.exit_code == 0
    assert sorted(calls) == [f"p{i}.jpg" for i in range(6)]


def test_working_copies_are_the_photos_luma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine registers grey, so the copies are read as luma: one channel, read ahead or not."""
    _photos(tmp_path / "in", 3)
    channels: list[tuple[int, int]] = []
    real = register_stages.register

    def spy(moving: torch.Tensor, fixed: torch.Tensor, *args: object, **kwargs: object) -> object:
        channels.append((moving.shape[1], fixed.shape[1]))
        return real(moving, fixed, *args, **kwargs)

    monkeypatch.setattr(register_stages, "register", spy)
    result = register_folder.align_folder(tmp_path / "in", tmp_path / "out", size=64, crop="none")
    assert result.exit_code == 0
    assert channels and set(channels) == {(1, 1)}
    assert read_image_pixels(tmp_path / "in" / "p1.jpg", max_side=64, grey=True).shape == (48, 64, 1)


def test_a_resumed_run_drops_what_it_registered_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the photos still to register (and the reference) keep their place in the read-ahead."""
    _photos(tmp_path / "in", 4)
    dropped: list[list[str]] = []

    class Spy(ReadAhead):
        def drop(self, paths: Iterable[Path]) -> None:
            paths = list(paths)
            dropped.append(sorted(p.name for p in paths))
            super().drop(paths)

    monkeypatch.setattr(register_folder, "ReadAhead", Spy)
    options = {"size": 64, "crop": "none", "reference": "first"}
    assert register_folder.align_folder(tmp_path / "in", tmp_path / "out", **options).exit_code == 0
    assert register_folder.align_folder(tmp_path / "in", tmp_path / "out", **options).exit_code == 0
    assert dropped == [[], ["p1.jpg", "p2.jpg", "p3.jpg"]]


# A fresh interpreter: whether torch is imported when the read-ahead starts.
_PROBE = """
import json, sys
import alignimate.pipeline.register_folder as rf
seen = {}
real = rf.ReadAhead.__init__
def spy(self, *args, **kwargs):
    seen["torch"] = "torch" in sys.modules
    real(self, *args, **kwargs)
rf.ReadAhead.__init__ = spy
rf.align_folder(sys.argv[1], sys.argv[2], size=64, crop="none")
print(json.dumps(seen))
"""


def test_torch_is_imported_after_the_read_ahead_starts(tmp_path: Path) -> None:
    _photos(tmp_path / "in", 3)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False}
