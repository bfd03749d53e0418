"""Atomic writes: a file appears complete under its final name or not at all."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.io.writing import atomic_write, save_image, temporary_path_for, write_csv, write_json


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_temporary_name_is_hidden_and_keeps_the_suffix(tmp_path: Path) -> None:
    tmp = temporary_path_for(tmp_path / "frame_001.jpg")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".frame_001.tmp-") and tmp.suffix == ".jpg"
    assert temporary_path_for(tmp_path / "a.jpg") != temporary_path_for(tmp_path / "a.jpg")


def test_success_renames_onto_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert _listing(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_leaves_no_file(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(error), atomic_write(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise error()
    assert _listing(tmp_path) == []


def test_exception_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_write(target) as tmp:
        tmp.write_text("new but broken")
        raise ValueError("boom")
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["report.csv"]


def test_writer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "x.txt"):
        pass
    assert _listing(tmp_path) == []


def test_missing_folder_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"), atomic_write(tmp_path / "no" / "x.txt"):
        pass


def test_save_image_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    for name, array in [("a.png", rgb), ("b.tif", rgb), ("c.png", rgba), ("d.tiff", rgba)]:
        save_image(tmp_path / name, array)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), array)
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 24, axis=0).repeat(3, axis=2)
    for name in ["e.jpg", "f.webp"]:
        save_image(tmp_path / name, smooth, quality=95)
        assert np.abs(np.asarray(Image.open(tmp_path / name)).astype(int) - smooth).max() <= 6
    assert (
        Image.open(tmp_path / "e.jpg").format == "JPEG" and Image.open(tmp_path / "f.webp").format == "WEBP"
    )
    assert not [n for n in _listing(tmp_path) if n.startswith(".")]


def test_save_image_keeps_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2020:01:02 03:04:05"
    save_image(tmp_path / "x.jpg", np.zeros((8, 8, 3), np.uint8), exif=exif.tobytes())
    assert Image.open(tmp_path / "x.jpg").getexif().get_ifd(0x8769)[36867] == "2020:01:02 03:04:05"


def test_save_image_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alpha"):
        save_image(tmp_path / "x.jpg", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="suffix"):
        save_image(tmp_path / "x.bmpx", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="quality"):
        save_image(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint8), quality=0)
    assert _listing(tmp_path) == []


def test_write_json_converts_numpy_and_non_finite_values(tmp_path: Path) -> None:
    obj = {
        "matrix": np.eye(3, dtype=np.float32),
        "loss": np.float64(0.25),
        "diverged": float("nan"),
        "big": math.inf,
        "path": tmp_path / "a.jpg",
        "when": datetime(2020, 1, 2, 3, 4, 5),
        "n": np.int64(7),
    }
    write_json(tmp_path / "t.json", obj)
    back = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert back == {
        "matrix": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "loss": 0.25,
        "diverged": None,
        "big": None,
        "path": str(tmp_path / "a.jpg"),
        "when": "2020-01-02T03:04:05",
        "n": 7,
    }


def test_write_csv_rows_as_sequences_and_mappings(tmp_path: Path) -> None:
    header = ["source", "status", "reason"]
    rows = [("a.jpg", "aligned", None), {"source": "b,c.jpg", "status": "skipped", "reason": 'said "no"'}]
    write_csv(tmp_path / "r.csv", rows, header)
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [header, ["a.jpg", "aligned", ""], ["b,c.jpg", "skipped", 'said "no"']]
    with pytest.raises(ValueError, match="cells"):
        write_csv(tmp_path / "bad.csv", [("only one",)], header)
    assert not (tmp_path / "bad.csv").exists()
    assert not [n for n in _listing(tmp_path) if n.startswith(".")]
