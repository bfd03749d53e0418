"""animate and frame_list on small hand-made frame folders: frame order, option checks made before any
work, what an existing output file may be, and the frames actually written (read back from the file)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from alignimate.errors import UsageError
from alignimate.io import count_output_frames
from alignimate.pipeline.frames_to_animation import animate, frame_list
from alignimate.pipeline.outputs import OutputFolder
from alignimate.pipeline.records import PhotoRecord, RunRecord, write_transforms

H, W = 32, 48
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 210),
    "white": (240, 240, 240),
}


def solid(colour: tuple[int, int, int], h: int = H, w: int = W) -> np.ndarray:
    return np.tile(np.array(colour, np.uint8), (h, w, 1))


def frames_folder(folder: Path, frames: dict[str, tuple[int, int, int]]) -> Path:
    """A folder of solid-colour PNG frames, ``{file name: colour}``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in frames.items():
        Image.fromarray(solid(colour)).save(folder / name)
    return folder


def gif_colours(path: Path) -> list[tuple[int, int, int]]:
    """The mean colour of every frame of a GIF, as shown (frames are stored as changes; colours
    outside the palette are dithered, so only the mean is close to them)."""
    colours = []
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            mean = np.asarray(gif.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
            colours.append(tuple(round(v) for v in mean))
    return colours


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 8) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tolerance


def mp4_frame_count(path: Path) -> int:
    return iio.imread(path, plugin="FFMPEG", index=None).shape[0]


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files a writer might have left."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp-" in p.name)


@pytest.fixture
def ordered(tmp_path: Path) -> Path:
    """Frames a, b, c, d.png whose transforms.json orders them c, a, d, b (d's record is skipped, and
    one record's frame is missing on disk)."""
    folder = frames_folder(
        tmp_path / "frames",
        {
            "a.png": COLOURS["red"],
            "b.png": COLOURS["green"],
            "c.png": COLOURS["blue"],
            "d.png": COLOURS["white"],
        },
    )
    fit = {"size": [H, W], "matrix": np.eye(3).tolist()}
    photos = [
        PhotoRecord(
            "IMG_3.jpg", "/in/IMG_3.jpg", "aligned", output="c.png", datetime="2020-03-01T10:00:00", **fit
        ),
        PhotoRecord("IMG_1.jpg", "/in/IMG_1.jpg", "reference", output="a.png", datetime=None, **fit),
        PhotoRecord("IMG_9.jpg", "/in/IMG_9.jpg", "skipped", reason="blurry", output=None),
        PhotoRecord("IMG_7.jpg", "/in/IMG_7.jpg", "aligned", output="gone.png", **fit),
        PhotoRecord(
            "IMG_2.jpg", "/in/IMG_2.jpg", "aligned", output="b.png", datetime="2021-01-02T03:04:05", **fit
        ),
    ]
    run = RunRecord(
        "register", "/in", {}, reference="IMG_1.jpg", canvas=[H, W], output_size=[H, W], photos=photos
    )
    write_transforms(folder / "transforms.json", run)
    return folder


# ------------------------------------------------------------------------------------------------
# frame_list
# ------------------------------------------------------------------------------------------------


def test_frame_list_follows_the_transforms_order(ordered: Path) -> None:
    assert frame_list(ordered) == [
        (ordered / "c.png", "IMG_3.jpg", datetime(2020, 3, 1, 10, 0)),
        (ordered / "a.png", "IMG_1.jpg", None),
        (ordered / "b.png", "IMG_2.jpg", datetime(2021, 1, 2, 3, 4, 5)),
    ]  # d.png is in no record, IMG_9 has no frame, IMG_7's frame is gone


def test_frame_list_without_transforms_is_natural_name_order(tmp_path: Path) -> None:
    folder = frames_folder(
        tmp_path / "frames",
        {
            "f10.png": COLOURS["red"],
            "f2.png": COLOURS["green"],
            "F1.png": COLOURS["blue"],
            ".hidden.png": (0, 0, 0),
        },
    )
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2019:07:08 09:10:11"  # DateTimeOriginal
    Image.fromarray(solid(COLOURS["white"])).save(folder / "f3.jpg", exif=exif)
    (folder / "notes.txt").write_text("not a frame")
    assert frame_list(folder) == [
        (folder / "F1.png", "F1.png", None),
        (folder / "f2.png", "f2.png", None),
        (folder / "f3.jpg", "f3.jpg", datetime(2019, 7, 8, 9, 10, 11)),
        (folder / "f10.png", "f10.png", None),
    ]


def test_frame_list_refuses_a_file_and_a_broken_transforms(tmp_path: Path) -> None:
    folder = frames_folder(tmp_path / "frames", {"a.png": COLOURS["red"]})
    with pytest.raises(UsageError, match="not a folder"):
        frame_list(folder / "a.png")
    (folder / "transforms.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UsageError, match=r"not an alignimate transforms\.json"):
        frame_list(folder)


# ------------------------------------------------------------------------------------------------
# what is written
# ------------------------------------------------------------------------------------------------


def test_the_animation_shows_the_frames_in_the_transforms_order(ordered: Path, tmp_path: Path) -> None:
    gif = tmp_path / "movie.gif"
    info = animate(ordered, gif, fps=5)
    assert info.n_frames == 3 and info.size_hw == (H, W) and info.fps == 5
    assert info.path == gif and info.n_bytes == gif.stat().st_size
    shown = gif_colours(gif)
    expected = [COLOURS["blue"], COLOURS["red"], COLOURS["green"]]
    assert all(near(a, b) for a, b in zip(shown, expected, strict=True)), shown


def test_holds_and_crossfades_add_the_documented_frames(ordered: Path, tmp_path: Path) -> None:
    gif = tmp_path / "movie.gif"
    timeline = {"fps": 10.0, "hold_first": 0.2, "hold_last": 0.3, "crossfade": 2}
    info = animate(ordered, gif, **timeline)
    expected = 3 + 2 * 2 + 2 + 3
    assert info.n_frames == count_output_frames(3, **timeline) == expected
    assert info.duration_s == pytest.approx(expected / 10)
    shown = gif_colours(gif)
    assert len(shown) == expected
    blue, red, green = COLOURS["blue"], COLOURS["red"], COLOURS["green"]
    # c held 2 extra frames, 2 blends, a, 2 blends, b held 3 extra frames.
    assert all(near(c, blue) for c in shown[:3]) and near(shown[5], red)
    assert all(near(c, green) for c in shown[8:])
    for k, step in ((3, 1), (4, 2)):  # blue -> red at 1/3 and 2/3
        blend = tuple(round(b + (r - b) * step / 3) for b, r in zip(blue, red, strict=True))
        assert near(shown[k], blend, tolerance=6), (k, shown[k], blend)


def test_mp4_frame_counts_with_holds_and_boomerang(ordered: Path, tmp_path: Path) -> None:
    mp4 = tmp_path / "movie.mp4"
    info = animate(ordered, mp4, fps=60, hold_last=0.05, crossfade=1, boomerang=True)  # GIFs stop at 50
    # Boomerang: c a b a (4 shown), 3 blends between them, 3 more of b at the turn.
    expected = count_output_frames(3, fps=60, hold_last=0.05, crossfade=1, boomerang=True)
    assert expected == 4 + 3 + 3 and info.n_frames == expected
    assert mp4_frame_count(mp4) == expected
    assert info.size_hw == (H, W) and info.fps == 60


def test_captions_are_drawn(ordered: Path, tmp_path: Path) -> None:
    plain, captioned = tmp_path / "plain.gif", tmp_path / "captioned.gif"
    animate(ordered, plain)
    animate(ordered, captioned, caption="index", caption_format="{index}/{total}")
    with Image.open(plain) as a, Image.open(captioned) as b:
        first_plain, first_captioned = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert (np.abs(first_plain.astype(int) - first_captioned).max(axis=2) > 60).sum() > 10


@pytest.mark.parametrize(
    ("caption", "caption_format", "fragment"),
    [
        ("bogus", None, "caption must be date, name, index, age:YYYY-MM-DD or none, got 'bogus'"),
        ("name", "{nope}", "--caption-format '{nope}' cannot be used (KeyError"),
        ("index", "{index", "--caption-format '{index' cannot be used (ValueError"),
        ("age:2020-13-45", None, "needs a date as YYYY-MM-DD"),
        ("name", "{name}" * 300, "makes captions over 1000 characters long"),
    ],
)
def test_bad_captions_are_refused_before_any_work(
    ordered: Path, tmp_path: Path, caption: str, caption_format: str | None, fragment: str
) -> None:
    gif = tmp_path / "movie.gif"
    with pytest.raises(UsageError) as refused:
        animate(ordered, gif, caption=caption, caption_format=caption_format)
    assert fragment in str(refused.value)
    assert not gif.exists() and leftovers(tmp_path) == []


def test_a_bad_age_caption_is_blamed_on_the_caption(ordered: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        animate(ordered, tmp_path / "movie.gif", caption="age:2020-13-45")
    assert "2020-13-45" in str(refused.value)
    assert "--caption-format" not in str(refused.value)


def test_a_frame_that_cannot_be_read_leaves_no_file(tmp_path: Path) -> None:
    folder = frames_folder(tmp_path / "frames", {"a.png": COLOURS["red"], "b.png": COLOURS["green"]})
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    gif = tmp_path / "movie.gif"
    with pytest.raises(UsageError, match=r"frame .*b\.png"):
        animate(folder, gif)
    assert not gif.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------


def test_gif_fps_over_50_is_refused_before_the_frames_are_looked_at(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder"
    with pytest.raises(UsageError, match="fps must be at most 50 for GIF"):
        animate(missing, tmp_path / "fast.gif", fps=60)
    with pytest.raises(UsageError, match="not a folder"):  # 50 passes the fps check
        animate(missing, tmp_path / "fast.gif", fps=50)
    with pytest.raises(UsageError, match="not a folder"):  # no such limit for MP4
        animate(missing, tmp_path / "fast.mp4", fps=60)
    with pytest.raises(UsageError, match=r"fps must be between 0\.1 and 120"):
        animate(missing, tmp_path / "fast.mp4", fps=121)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_gif_at_50_fps_is_written(ordered: Path, tmp_path: Path) -> None:
    info = animate(ordered, tmp_path / "fast.gif", fps=50)
    assert info.n_frames == 3 and info.duration_s == pytest.approx(0.06)
    with Image.open(tmp_path / "fast.gif") as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 20


def test_an_existing_file_is_replaced_only_with_overwrite(ordered: Path, tmp_path: Path) -> None:
    gif = tmp_path / "theirs.gif"
    gif.write_bytes(b"GIF89a not ours")
    with pytest.raises(UsageError, match="pass --overwrite"):
        animate(ordered, gif)
    assert gif.read_bytes() == b"GIF89a not ours"
    info = animate(ordered, gif, overwrite=True)
    with Image.open(gif) as image:
        assert image.n_frames == info.n_frames == 3
    folder = tmp_path / "a folder.gif"
    folder.mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        animate(ordered, folder, overwrite=True)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_an_animation_recorded_in_the_frames_ledger_may_be_replaced(tmp_path: Path) -> None:
    movie = tmp_path / "movie.gif"
    movie.write_bytes(b"an older animation of these frames")
    with OutputFolder.open(tmp_path / "frames", command="register") as folder:
        folder.claim(["a.png", "b.png"])
        frames_folder(folder.path, {"a.png": COLOURS["red"], "b.png": COLOURS["blue"]})
        folder.record_animation(movie)
    info = animate(tmp_path / "frames", movie)  # no overwrite needed
    assert info.n_frames == 2 and movie.read_bytes()[:6] == b"GIF89a"
    other = tmp_path / "other.gif"
    other.write_bytes(b"not recorded")
    with pytest.raises(UsageError, match="did not make it from these frames"):
        animate(tmp_path / "frames", other)
    assert other.read_bytes() == b"not recorded"


def test_an_output_named_like_a_frame_is_refused(ordered: Path, tmp_path: Path) -> None:
    before = (ordered / "a.png").read_bytes()
    with pytest.raises(UsageError, match="is one of the frames"):
        animate(ordered, ordered / "a.png", overwrite=True)
    link = tmp_path / "link.gif"
    link.symlink_to(ordered / "a.png")  # the same file under an animation's name
    with pytest.raises(UsageError, match="is one of the frames"):
        animate(ordered, link, overwrite=True)
    assert (ordered / "a.png").read_bytes() == before and link.is_symlink()


def test_a_scale_beyond_8192_pixels_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    Image.fromarray(solid(COLOURS["red"], 8, 2100)).save(folder / "a.png")
    gif = tmp_path / "wide.gif"
    with pytest.raises(UsageError) as refused:
        animate(folder, gif, scale=4)
    assert "--scale 4 makes 2100x8 frames 8400x32, over the 8192-pixel limit" in str(refused.value)
    assert "use --scale 3.90 or less" in str(refused.value)
    with pytest.raises(UsageError, match="--max-width must be between 16 and 8192"):
        animate(folder, gif, max_width=9000)
    assert not gif.exists()
    info = animate(folder, gif, scale=3.9)  # 8190 wide: within the limit
    assert info.size_hw == (31, 8190)


def test_an_empty_folder_has_no_frames_to_animate(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no frames to animate"):
        animate(tmp_path / "empty", tmp_path / "x.mp4")
    assert not os.path.lexists(tmp_path / "x.mp4")
