"""EXIF capture dates and photo ordering."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.io.ordering import exif_datetime, natural_key, parse_exif_datetime, sort_photos


def _photo(
    path: Path, original: str | None = None, plain: str | None = None, subsec: str | None = None
) -> Path:
    exif = Image.Exif()
    if plain is not None:
        exif[306] = plain  # DateTime, in IFD0
    if original is not None:
        exif.get_ifd(0x8769)[36867] = original  # DateTimeOriginal, in the Exif IFD
    if subsec is not None:
        exif.get_ifd(0x8769)[37521] = subsec
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, exif=exif)
    return path


def test_date_time_original_wins_over_date_time(tmp_path: Path) -> None:
    path = _photo(tmp_path / "a.jpg", original="2019:05:06 07:08:09", plain="2024:01:01 00:00:00")
    assert exif_datetime(path) == datetime(2019, 5, 6, 7, 8, 9)
    with Image.open(path) as image:
        assert exif_datetime(image) == datetime(2019, 5, 6, 7, 8, 9)


def test_date_time_is_the_fallback(tmp_path: Path) -> None:
    assert exif_datetime(_photo(tmp_path / "b.jpg", plain="2020:02:29 23:59:58")) == datetime(
        2020, 2, 29, 23, 59, 58
    )


def test_subseconds_order_burst_shots(tmp_path: Path) -> None:
    path = _photo(tmp_path / "c.jpg", original="2022:12:31 10:00:00", subsec="25")
    assert exif_datetime(path) == datetime(2022, 12, 31, 10, 0, 0, 250000)


def test_png_exif(tmp_path: Path) -> None:
    path = _photo(tmp_path / "c.png", original="2022:12:31 10:00:00", plain="2023:01:01 00:00:00")
    assert exif_datetime(path) == datetime(2022, 12, 31, 10, 0, 0)


@pytest.mark.parametrize(
    "text", ["0000:00:00 00:00:00", "    :  :     :  :  ", "yesterday", "2021:13:40 10:00:00"]
)
def test_placeholder_or_invalid_dates_are_none(tmp_path: Path, text: str) -> None:
    assert exif_datetime(_photo(tmp_path / "d.jpg", original=text)) is None
    # The same file with a valid date in the other tag falls back to it.
    fallback = _photo(tmp_path / "e.jpg", original=text, plain="2001:02:03 04:05:06")
    assert exif_datetime(fallback) == datetime(2001, 2, 3, 4, 5, 6)


def test_no_exif_or_not_an_image_is_none(tmp_path: Path) -> None:
    assert exif_datetime(_photo(tmp_path / "e.jpg")) is None
    (tmp_path / "f.jpg").write_text("not an image")
    assert exif_datetime(tmp_path / "f.jpg") is None
    assert exif_datetime(tmp_path / "missing.jpg") is None


def test_parse_tolerates_common_variants() -> None:
    assert parse_exif_datetime(b"2021:07:04 15:30:00\x00") == datetime(2021, 7, 4, 15, 30)
    assert parse_exif_datetime("2021-07-04T15:30:00.5") == datetime(2021, 7, 4, 15, 30, 0, 500000)
    assert parse_exif_datetime(None) is None


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["img10.jpg", "img2.jpg", "IMG1.jpg", "img1b.jpg", "img01.jpg", "a.jpg", "img100.jpg"]
    expected = ["a.jpg", "img01.jpg", "IMG1.jpg", "img1b.jpg", "img2.jpg", "img10.jpg", "img100.jpg"]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(shuffled, key=natural_key) == expected
    # Paths: folders compare part by part with numbers by value too.
    assert sorted(["d10/x.jpg", "d9/x.jpg"], key=natural_key) == ["d9/x.jpg", "d10/x.jpg"]


def test_sort_by_date_then_undated_by_name(tmp_path: Path) -> None:
    photos = {
        "p10.jpg": "2020:01:03 00:00:00",
        "p2.jpg": None,
        "p3.jpg": "2020:01:01 00:00:00",
        "p1.jpg": "2020:01:03 00:00:00",  # same date as p10: natural name breaks the tie
        "p20.jpg": None,
        "p4.jpg": "2019:12:31 23:59:59",
    }
    paths = [_photo(tmp_path / name, original=date) for name, date in photos.items()]
    ordered = [p.name for p in sort_photos(paths, by="date")]
    assert ordered == ["p4.jpg", "p3.jpg", "p1.jpg", "p10.jpg", "p2.jpg", "p20.jpg"]
    assert [p.name for p in sort_photos(paths, by="name")] == [
        "p1.jpg",
        "p2.jpg",
        "p3.jpg",
        "p4.jpg",
        "p10.jpg",
        "p20.jpg",
    ]


def test_sort_uses_supplied_dates(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"  # the files need not exist when dates are given
    dates = {a: datetime(2021, 1, 1), b: datetime(2020, 1, 1)}
    assert sort_photos([a, b], dates=dates) == [b, a]


def test_sort_rejects_unknown_order() -> None:
    with pytest.raises(ValueError, match="by"):
        sort_photos([], by="size")
