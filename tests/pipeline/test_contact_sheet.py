"""``contact_sheet``: layout, kept tiles from the frames, dropped tiles from the originals with a red
border and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.pipeline.contact_sheet import DROPPED_COLOUR, contact_sheet, letterbox
from alignimate.pipeline.records import PhotoRecord

THUMB = 64
STEP = THUMB + 4  # tile plus gap


def _solid(path: Path, size_hw: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    Image.fromarray(np.full((*size_hw, 3), colour, np.uint8)).save(path)
    return path


def _tile(sheet: np.ndarray, index: int, columns: int) -> np.ndarray:
    top, left = 4 + (index // columns) * STEP, 4 + (index % columns) * STEP
    return sheet[top : top + THUMB, left : left + THUMB].astype(int)


@pytest.fixture
def records(tmp_path: Path) -> list[PhotoRecord]:
    frames = tmp_path / "frames"
    frames.mkdir()
    _solid(frames / "a.png", (96, 96), (0, 200, 0))
    _solid(frames / "b.png", (96, 96), (0, 0, 200))
    wide = _solid(tmp_path / "wide.png", (50, 200), (250, 250, 0))  # 4:1, letterboxed
    return [
        PhotoRecord("a.jpg", str(tmp_path / "a.jpg"), "aligned", matrix=np.eye(3).tolist(), output="a.png"),
        PhotoRecord("wide.png", str(wide), "skipped", reason="not frontal: yaw 0.52 > 0.35"),
        PhotoRecord("b.jpg", str(tmp_path / "b.jpg"), "aligned", matrix=np.eye(3).tolist(), output="b.png"),
        PhotoRecord("gone.jpg", str(tmp_path / "gone.jpg"), "skipped", reason="unreadable file"),
        # Usable, but its frame is missing: shown like a dropped photo rather than failing.
        PhotoRecord(
            "lost.jpg", str(tmp_path / "lost.jpg"), "aligned", matrix=np.eye(3).tolist(), output="x.png"
        ),
    ]


def test_layout_and_tiles(records: list[PhotoRecord], tmp_path: Path) -> None:
    out = contact_sheet(records, tmp_path / "frames", tmp_path / "sheet.png", thumb=THUMB)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 5 tiles: ceil(sqrt(5)) = 3 columns, 2 rows.
    assert sheet.shape == (2 * STEP + 4, 3 * STEP + 4, 3)
    kept_a, dropped, kept_b = _tile(sheet, 0, 3), _tile(sheet, 1, 3), _tile(sheet, 2, 3)
    # Kept photos show their aligned frame (below the name caption), without a red border.
    np.testing.assert_allclose(kept_a[THUMB // 2, THUMB // 2], (0, 200, 0), atol=3)
    np.testing.assert_allclose(kept_b[THUMB // 2, THUMB // 2], (0, 0, 200), atol=3)
    assert kept_a[THUMB // 2, 0, 0] < 50
    # The dropped photo: red border all round, the original letterboxed (yellow band, black bars).
    for edge in (dropped[0, :], dropped[-1, :], dropped[:, 0], dropped[:, -1]):
        np.testing.assert_array_equal(np.median(edge, axis=0), DROPPED_COLOUR)
    np.testing.assert_allclose(dropped[THUMB // 2, THUMB // 2], (250, 250, 0), atol=3)
    assert dropped[THUMB // 2 - 12, THUMB // 2].max() < 10  # above the 16 px band: black bar
    # The reason is written at the bottom: the bottom bar is no longer plain black there.
    bottom = dropped[THUMB - 20 : THUMB - 3, 4 : THUMB - 4]
    assert (bottom.min(axis=-1) > 100).sum() >= 10
    # Unreadable original and missing frame: grey tiles with the red border.
    for index in (3, 4):
        tile = _tile(sheet, index, 3)
        np.testing.assert_array_equal(tile[0, THUMB // 2], DROPPED_COLOUR)
        np.testing.assert_allclose(tile[THUMB // 2, THUMB // 2], (90, 90, 90), atol=3)


def test_columns_and_empty(records: list[PhotoRecord], tmp_path: Path) -> None:
    out = contact_sheet(records, tmp_path / "frames", tmp_path / "row.jpg", thumb=THUMB, columns=5)
    assert np.asarray(Image.open(out)).shape == (STEP + 4, 5 * STEP + 4, 3)
    out = contact_sheet(records[:2], tmp_path / "frames", tmp_path / "wide.jpg", thumb=THUMB, columns=9)
    assert np.asarray(Image.open(out)).shape == (STEP + 4, 2 * STEP + 4, 3)  # no empty columns
    out = contact_sheet([], tmp_path / "frames", tmp_path / "none.jpg", thumb=THUMB)
    assert np.asarray(Image.open(out)).shape == (STEP + 4, STEP + 4, 3)
    with pytest.raises(ValueError, match="thumb"):
        contact_sheet(records, tmp_path / "frames", tmp_path / "x.jpg", thumb=8)
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(records, tmp_path / "frames", tmp_path / "x.jpg", columns=0)


def test_letterbox_keeps_the_aspect_ratio() -> None:
    tall = np.full((100, 25, 3), 255, np.uint8)
    boxed = letterbox(tall, 40)
    assert boxed.shape == (40, 40, 3)
    columns = np.flatnonzero(boxed[20, :, 0] > 128)
    assert len(columns) == 10 and columns[0] == 15  # 10 px wide, centred
    assert boxed[:, :15].max() == 0 and boxed[:, 25:].max() == 0
