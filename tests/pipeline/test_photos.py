"""discover_photos: every entry of the input folder is a photo, a Skipped with a reason, or ignored
by a documented rule (hidden, not a photo suffix, excluded); nothing is dropped silently."""

from __future__ import annotations

import errno
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from alignimate.pipeline.photos import Photo, Skipped, discover_photos, relative_name
from tests.helpers import finishes


def _photo(path: Path, taken: str | None = None, size_hw: tuple[int, int] = (8, 8)) -> Path:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[36867] = taken  # DateTimeOriginal
    Image.fromarray(np.full((*size_hw, 3), 128, np.uint8)).save(path, format="JPEG", exif=exif)
    return path


def _odd_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _photo(folder / "good.jpg", "2020:01:02 03:04:05", size_hw=(8, 12))
    _photo(folder / "early.jpg", "2019:01:01 00:00:00")
    (folder / "link.jpg").symlink_to(folder / "good.jpg")  # usable, under its own name
    (folder / "a.jpg").mkdir()
    os.mkfifo(folder / "b.jpg")
    (folder / "c.jpg").symlink_to(folder / "gone.jpg")
    (folder / "d.jpg").symlink_to("d.jpg")
    (folder / "null.jpg").symlink_to(os.devnull)
    (folder / "corrupt.jpg").write_text("not a jpeg at all")  # found, but its header is unreadable
    if hasattr(socket, "AF_UNIX"):
        with monkeypatch.context() as m:
            m.chdir(folder)  # AF_UNIX paths are short: bind by relative name
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.bind("s.jpg")
    _photo(folder / ".e.jpg")
    (folder / "notes.txt").write_text("ignored")
    os.mkfifo(folder / "pipe.txt")
    (folder / "sub").mkdir()
    _photo(folder / "sub" / "deep.jpg")
    (folder / "sub" / "c.png").symlink_to(folder / "sub" / "gone.png")
    (folder / "locked").mkdir()
    _photo(folder / "locked" / "unseen.jpg")


def _fail_listing(monkeypatch: pytest.MonkeyPatch, *unlistable: Path) -> None:
    """Tests run as root, which can list any folder: fail ``os.scandir`` the way the OS would."""
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) in unlistable:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def _skipped(skipped: list[Skipped], folder: Path) -> list[tuple[str, str]]:
    for item in skipped:
        assert relative_name(item.path, folder) == item.name
    return [(item.name, item.reason) for item in skipped]


def _expected_skipped(extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    rows = [
        ("b.jpg", "not a regular file (FIFO)"),
        ("c.jpg", "broken symbolic link"),
        ("corrupt.jpg", "not an image (unrecognised format)"),
        ("d.jpg", "symbolic link loop"),
        ("null.jpg", "not a regular file (device)"),
        *extra,
    ]
    if hasattr(socket, "AF_UNIX"):
        rows.append(("s.jpg", "not a regular file (socket)"))
    return sorted(rows)


def test_discover_photos_lists_every_unusable_entry_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _odd_folder(tmp_path, monkeypatch)
    fifos = [tmp_path / "b.jpg", tmp_path / "pipe.txt"]
    photos, skipped = finishes(lambda: discover_photos(tmp_path, sort="date"), fifos)
    assert photos == [
        Photo(tmp_path / "early.jpg", "early.jpg", (8, 8), datetime(2019, 1, 1)),
        Photo(tmp_path / "good.jpg", "good.jpg", (8, 12), datetime(2020, 1, 2, 3, 4, 5)),
        Photo(tmp_path / "link.jpg", "link.jpg", (8, 12), datetime(2020, 1, 2, 3, 4, 5)),
    ]
    # In folder order, whether the scan or the header check found the problem.
    assert _skipped(skipped, tmp_path) == _expected_skipped([("a.jpg", "is a folder, not a file")])
    assert skipped[0] == Skipped(tmp_path / "a.jpg", "a.jpg", "is a folder, not a file")
    # Ignored by rule: .e.jpg (hidden), notes.txt and pipe.txt (suffix), sub/ and locked/ (flat).
    names = {p.name for p in photos} | {s.name for s in skipped}
    assert not names & {".e.jpg", "notes.txt", "pipe.txt", "sub", "locked", "sub/deep.jpg"}


def test_discover_photos_recursive_reports_folders_it_cannot_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _odd_folder(tmp_path, monkeypatch)
    (tmp_path / "linked").symlink_to(tmp_path / "sub", target_is_directory=True)
    (tmp_path / "out").mkdir()
    _photo(tmp_path / "out" / "aligned.jpg")
    _fail_listing(monkeypatch, tmp_path / "locked")
    fifos = [tmp_path / "b.jpg", tmp_path / "pipe.txt"]
    photos, skipped = finishes(
        lambda: discover_photos(tmp_path, recursive=True, sort="name", exclude=tmp_path / "out"), fifos
    )
    assert [p.name for p in photos] == ["early.jpg", "good.jpg", "link.jpg", "sub/deep.jpg"]
    assert _skipped(skipped, tmp_path) == _expected_skipped(
        [
            ("linked", "symbolic link to a folder (not followed)"),
            ("locked", "cannot list folder (permission denied)"),
            ("sub/c.png", "broken symbolic link"),
        ]
    )
    # a.jpg is a real folder, so in recursive mode it is scanned (it is empty), not reported.
    assert "a.jpg" not in {s.name for s in skipped}


def test_discover_photos_reports_an_input_folder_it_cannot_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _photo(tmp_path / "p.jpg")
    _fail_listing(monkeypatch, tmp_path)
    assert discover_photos(tmp_path) == (
        [],
        [Skipped(tmp_path, ".", "cannot list folder (permission denied)")],
    )


def test_discover_photos_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sort must be 'date' or 'name'"):
        discover_photos(tmp_path, sort="size")
    # The sort is checked before the folder is looked at.
    with pytest.raises(ValueError, match="sort must be"):
        discover_photos(tmp_path / "nope", sort="size")
    with pytest.raises(ValueError, match="not a folder"):
        discover_photos(tmp_path / "nope")
    assert discover_photos(tmp_path) == ([], [])


def test_relative_name_keeps_link_names(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    target = _photo(tmp_path / "sub" / "target.jpg")
    (tmp_path / "alias.jpg").symlink_to(target)
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    assert relative_name(tmp_path / "alias.jpg", tmp_path) == "alias.jpg"
    assert relative_name(tmp_path / "loop.jpg", tmp_path) == "loop.jpg"
    assert relative_name(target, tmp_path) == "sub/target.jpg"
    assert relative_name(tmp_path / "elsewhere" / ".." / "sub" / "target.jpg", tmp_path) == "sub/target.jpg"
    assert relative_name(Path("/somewhere/else.jpg"), tmp_path) == "else.jpg"
