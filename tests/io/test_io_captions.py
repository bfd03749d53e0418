"""Caption text and drawing."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest

from alignimate.io.captions import CAPTION_POSITIONS, draw_caption, format_age, format_caption

BORN = date(2020, 1, 31)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (date(2020, 1, 31), "0 days"),
        (date(2020, 2, 1), "1 day"),
        (date(2020, 2, 7), "1 week"),
        (date(2020, 2, 21), "3 weeks"),
        (date(2020, 4, 30), "12 weeks"),  # 90 days, and a month completes on the 31st (or later)
        (date(2020, 5, 1), "3 months"),
        (date(2021, 1, 30), "11 months"),
        (date(2021, 1, 31), "12 months"),
        (date(2022, 1, 30), "23 months"),
        (date(2022, 1, 31), "2 years"),
        (date(2022, 3, 1), "2 years 1 month"),
        (date(2025, 7, 31), "5 years 6 months"),
        (date(2019, 12, 31), "-4 weeks"),  # one month before, but under 3 months shows weeks
        (date(2017, 11, 30), "-2 years 2 months"),
        (date(2020, 1, 24), "-1 week"),
    ],
)
def test_format_age_units(when: date, expected: str) -> None:
    assert format_age(BORN, when) == expected


def test_format_caption_kinds() -> None:
    when = datetime(2023, 6, 7, 8, 9, 10)
    path = Path("photos/IMG_0042.JPG")
    assert format_caption("none", path, 3, when) == ""
    assert format_caption("date", path, 3, when) == "2023-06-07"
    assert format_caption("date", path, 3, when, "%d %b %Y, %H:%M") == "07 Jun 2023, 08:09"
    assert format_caption("date", path, 3, None) == ""
    assert format_caption("name", path, 3, when) == "IMG_0042"
    assert format_caption("name", path, 3, when, "[{name}]") == "[IMG_0042]"
    assert format_caption("index", path, 3, when) == "4"
    assert format_caption("index", path, 3, when, "{index}/{total}", total=10) == "4/10"
    assert format_caption("age:2023-05-01", path, 3, when) == "5 weeks"
    assert format_caption("age:2023-05-01", path, 3, when, "{age} old") == "5 weeks old"
    assert format_caption("age:2023-05-01", path, 3, None) == ""


def test_format_caption_bad_kinds() -> None:
    with pytest.raises(ValueError, match="kind"):
        format_caption("colour", Path("a.jpg"), 0, None)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        format_caption("age:last tuesday", Path("a.jpg"), 0, datetime(2020, 1, 1))


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


def test_draw_caption_bottom_left_with_outline() -> None:
    frame = np.full((120, 160, 3), 128, np.uint8)
    out = draw_caption(frame, "2023-06-07", "bottom-left", size_frac=0.1)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (frame == 128).all()  # the input is not modified
    changed = _changed(frame, out)
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    assert rows.min() > 60 and cols.min() < 20 and cols.max() < 120
    assert rows.max() < 120 - 2 and cols.min() >= 2  # a margin to the edge
    text = out[changed]
    assert (text == 255).all(axis=1).any() and (text == 0).all(axis=1).any()  # white text, black outline
    height = rows.max() - rows.min() + 1
    assert 8 <= height <= 20  # about 10% of the shorter side (12 px) plus the outline


@pytest.mark.parametrize("position", CAPTION_POSITIONS)
def test_draw_caption_positions(position: str) -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    changed = _changed(frame, draw_caption(frame, "Hi", position, size_frac=0.15))
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    centre_y, centre_x = rows.mean(), cols.mean()
    assert (centre_y < 50) == position.startswith("top")
    if position.endswith("left"):
        assert centre_x < 50
    elif position.endswith("right"):
        assert centre_x > 150
    else:
        assert abs(centre_x - 100) < 10


def test_draw_caption_empty_text_and_bad_arguments() -> None:
    frame = np.full((20, 20, 3), 7, np.uint8)
    out = draw_caption(frame, "")
    np.testing.assert_array_equal(out, frame)
    assert out is not frame
    with pytest.raises(ValueError, match="position"):
        draw_caption(frame, "x", "middle")
    with pytest.raises(ValueError, match="frame"):
        draw_caption(frame[:, :, 0], "x")
    with pytest.raises(ValueError, match="size_frac"):
        draw_caption(frame, "x", size_frac=0)
