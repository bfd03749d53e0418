"""Animations read back with imageio: frame counts (holds, crossfades, boomerang), sizes, fps,
GIF durations, letterboxing, atomic failure and streaming."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import imageio.v2 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from alignimate.io.animation import AnimationWriter, LazyFrames, count_output_frames, write_animation

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def _flat_frames(h: int, w: int, colours=COLOURS) -> list[np.ndarray]:
    return [np.full((h, w, 3), c, np.uint8) for c in colours]


def _read_video(path: Path) -> tuple[list[np.ndarray], dict]:
    reader = iio.get_reader(path, "ffmpeg")
    try:
        return list(reader.iter_data()), reader.get_meta_data()  # len(reader) is inf
    finally:
        reader.close()


def _gif_durations(path: Path) -> list[int]:
    durations = []
    with Image.open(path) as image:
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info["duration"])
    return durations


def _centre_colours(frames: list[np.ndarray]) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in f[f.shape[0] // 2, f.shape[1] // 2, :3]) for f in frames]


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tol


def _no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_bundled_ffmpeg_works() -> None:
    assert Path(imageio_ffmpeg.get_ffmpeg_exe()).is_file()


def test_mp4_frame_count_fps_size_and_content(tmp_path: Path) -> None:
    out = tmp_path / "a.mp4"
    info = write_animation(_flat_frames(48, 64), out, fps=12, hold_first=0.25, hold_last=0.5, crossfade=2)
    # 5 photos + 2 blends in each of 4 gaps + 3 (0.25 s) and 6 (0.5 s) hold frames at 12 fps.
    expected = 5 + 4 * 2 + 3 + 6
    frames, meta = _read_video(out)
    assert (
        info.n_frames
        == len(frames)
        == expected
        == count_output_frames(5, fps=12, hold_first=0.25, hold_last=0.5, crossfade=2)
    )
    assert meta["fps"] == 12 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (64, 48) and info.size_hw == (48, 64) and frames[0].shape == (48, 64, 3)
    colours = _centre_colours(frames)
    red, green = COLOURS[0], COLOURS[1]
    assert all(_close(c, red, 12) for c in colours[:4])  # the photo + 3 hold frames
    # Two blended frames between red and green, at 1/3 and 2/3.
    assert _close(colours[4], (170, 85, 0), 16) and _close(colours[5], (85, 170, 0), 16)
    assert _close(colours[6], green, 12)
    assert all(_close(c, COLOURS[-1], 12) for c in colours[-7:])
    assert info.duration_s == pytest.approx(expected / 12)
    assert _no_leftovers(tmp_path)


def test_odd_sizes_become_even_by_cropping_for_video(tmp_path: Path) -> None:
    rgb = np.zeros((33, 47, 3), np.uint8)
    rgb[:, :23] = (250, 250, 250)  # left half white; cropping the last column keeps the edge in place
    info = write_animation([rgb, rgb], tmp_path / "odd.mp4", fps=5)
    frames, meta = _read_video(tmp_path / "odd.mp4")
    assert info.size_hw == (32, 46) and frames[0].shape == (32, 46, 3) and meta["size"] == (46, 32)
    row = frames[0][16, :, 0].astype(int)
    assert (row[:21] > 230).all() and (row[25:] < 25).all()


def test_explicit_size_and_scale(tmp_path: Path) -> None:
    info = write_animation(_flat_frames(40, 60), tmp_path / "s.mp4", size=(20, 30))
    assert info.size_hw == (20, 30) and _read_video(tmp_path / "s.mp4")[0][0].shape == (20, 30, 3)
    info = write_animation(_flat_frames(40, 60), tmp_path / "h.gif", scale=0.5)
    assert info.size_hw == (20, 30) and iio.mimread(tmp_path / "h.gif")[0].shape[:2] == (20, 30)
    info = write_animation(_flat_frames(40, 60), tmp_path / "w.gif", max_width=24)
    assert info.size_hw == (16, 24)


def test_webm(tmp_path: Path) -> None:
    info = write_animation(_flat_frames(32, 48, COLOURS[:3]), tmp_path / "a.webm", fps=8)
    frames, meta = _read_video(tmp_path / "a.webm")
    assert len(frames) == info.n_frames == 3 and meta["codec"] == "vp9" and meta["fps"] == 8
    assert frames[0].shape == (32, 48, 3)


def test_gif_count_durations_loop_and_colours(tmp_path: Path) -> None:
    out = tmp_path / "a.gif"
    info = write_animation(_flat_frames(30, 40), out, fps=10, hold_first=0.2, hold_last=0.3)
    expected = 5 + 2 + 3
    assert info.n_frames == expected and info.duration_s == pytest.approx(1.0)
    assert _gif_durations(out) == [100] * expected
    with Image.open(out) as image:
        assert image.info["loop"] == 0
    frames = iio.mimread(out)
    assert len(frames) == expected and frames[0].shape[:2] == (30, 40)
    shown = [COLOURS[0]] * 3 + COLOURS[1:4] + [COLOURS[4]] * 4
    assert all(_close(c[:3], s, 8) for c, s in zip(_centre_colours(frames), shown, strict=True))
    assert _no_leftovers(tmp_path)


def test_gif_delays_add_up_at_awkward_fps(tmp_path: Path) -> None:
    write_animation(_flat_frames(8, 8) * 2, tmp_path / "a.gif", fps=30)
    durations = _gif_durations(tmp_path / "a.gif")
    assert len(durations) == 10 and set(durations) <= {30, 40}
    assert sum(durations) == round(10 * 1000 / 30, -1)
    with pytest.raises(ValueError, match="fps"):
        write_animation(_flat_frames(8, 8), tmp_path / "b.gif", fps=60)


def test_boomerang_order_and_holds(tmp_path: Path) -> None:
    out = tmp_path / "b.gif"
    info = write_animation(
        _flat_frames(16, 16, COLOURS[:4]), out, fps=10, boomerang=True, hold_first=0.1, hold_last=0.2
    )
    # 0 (held 1 extra), 1, 2, 3 (held 2 extra at the turn), 2, 1; the loop then returns to 0.
    order = [0, 0, 1, 2, 3, 3, 3, 2, 1]
    assert (
        info.n_frames
        == len(order)
        == count_output_frames(4, fps=10, boomerang=True, hold_first=0.1, hold_last=0.2)
    )
    colours = _centre_colours(iio.mimread(out))
    assert all(_close(c[:3], COLOURS[i], 8) for c, i in zip(colours, order, strict=True))


def test_boomerang_needs_a_sequence(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="sequence"):
        write_animation(iter(_flat_frames(8, 8)), tmp_path / "b.gif", boomerang=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("boomerang", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("crossfade", [0, 1, 3])
def test_count_output_frames_matches_what_is_written(
    tmp_path: Path, n: int, crossfade: int, boomerang: bool
) -> None:
    options = {
        "fps": 10.0,
        "hold_first": 0.3,
        "hold_last": 0.1,
        "crossfade": crossfade,
        "boomerang": boomerang,
    }
    info = write_animation(_flat_frames(6, 6, COLOURS[:n]), tmp_path / "c.gif", **options)
    with Image.open(tmp_path / "c.gif") as image:
        assert image.n_frames == info.n_frames == count_output_frames(n, **options)


def test_frames_of_another_size_are_letterboxed_not_stretched(tmp_path: Path) -> None:
    wide = np.full((20, 40, 3), 200, np.uint8)
    square = np.full((40, 40, 3), 200, np.uint8)
    tall = np.full((40, 20, 3), 200, np.uint8)
    write_animation([wide, square, tall], tmp_path / "l.gif", fps=5)
    frames = [f[:, :, :3].astype(int) for f in iio.mimread(tmp_path / "l.gif")]
    assert frames[1].shape == (20, 40, 3)
    for frame, content_width in [(frames[1], 20), (frames[2], 10)]:
        bright = np.flatnonzero(frame[10, :, 0] > 100)
        assert bright.size == content_width and bright[0] == (40 - content_width) // 2
        assert (frame[:, : bright[0]] < 30).all() and (frame[:, bright[-1] + 1 :] < 30).all()


def test_grey_and_rgba_frames_are_accepted(tmp_path: Path) -> None:
    grey = np.full((10, 12), 90, np.uint8)
    rgba = np.dstack([np.full((10, 12, 3), 200, np.uint8), np.full((10, 12), 128, np.uint8)])
    with AnimationWriter(tmp_path / "g.gif", fps=5) as writer:
        assert writer.fit(grey)[0, 0].tolist() == [90, 90, 90]
        assert writer.fit(rgba)[0, 0].tolist() == [100, 100, 100]  # composited on black
        writer.append(grey)
        writer.append(rgba)
    assert writer.info.n_frames == 2 and (tmp_path / "g.gif").exists()


def _failing_frames(n_good: int) -> Iterator[np.ndarray]:
    yield from _flat_frames(16, 16)[:n_good]
    raise RuntimeError("decoder exploded")


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_failure_leaves_nothing_at_out_path(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"a{suffix}"
    with pytest.raises(RuntimeError, match="exploded"):
        write_animation(_failing_frames(3), out)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"previous version")
    with pytest.raises(RuntimeError, match="exploded"):
        write_animation(_failing_frames(12), out)
    assert out.read_bytes() == b"previous version" and _no_leftovers(tmp_path)


def test_empty_frames_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        write_animation([], tmp_path / "e.mp4")
    frames = _flat_frames(8, 8)
    for kwargs, match in [
        ({"fps": 0}, "fps"),
        ({"hold_first": -1.0}, "hold_first"),
        ({"crossfade": -1}, "crossfade"),
        ({"size": (10, 10), "scale": 0.5}, "size or scale"),
        ({"quality": 101}, "quality"),
        ({"max_bytes": 1000}, "gif"),
    ]:
        with pytest.raises(ValueError, match=match):
            write_animation(frames, tmp_path / "x.mp4", **kwargs)
    with pytest.raises(ValueError, match="out_path"):
        write_animation(frames, tmp_path / "x.avi")
    with pytest.raises(TypeError, match="uint8"):
        write_animation([np.zeros((8, 8, 3), np.float32)], tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


def test_max_bytes_shrinks_the_gif_until_it_fits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    full = write_animation(frames, tmp_path / "full.gif")
    cap = full.n_bytes // 3
    capped = write_animation(LazyFrames(range(4), frames.__getitem__), tmp_path / "capped.gif", max_bytes=cap)
    assert capped.n_bytes <= cap and (tmp_path / "capped.gif").stat().st_size == capped.n_bytes
    assert capped.size_hw[0] < 64 and capped.size_hw[0] == capped.size_hw[1]
    assert capped.n_frames == 4 and _no_leftovers(tmp_path)
    with pytest.raises(TypeError, match="max_bytes"):
        write_animation(iter(frames), tmp_path / "x.gif", max_bytes=cap)


def test_frames_are_streamed_not_collected(tmp_path: Path) -> None:
    alive = 0
    most_alive = 0

    def released() -> None:
        nonlocal alive
        alive -= 1

    def frames() -> Iterator[np.ndarray]:
        nonlocal alive, most_alive
        for i in range(40):
            frame = np.full((32, 32, 3), i * 6, np.uint8)
            weakref.finalize(frame, released)
            alive += 1
            most_alive = max(most_alive, alive)
            yield frame

    for suffix in (".mp4", ".gif"):
        alive = most_alive = 0
        info = write_animation(frames(), tmp_path / f"s{suffix}", fps=20, crossfade=1)
        assert info.n_frames == 40 + 39
        # Only the lookahead, current and previous input frames are alive, never all 40. (The GIF
        # writer also keeps copies of its first 8 frames until the palette is built.)
        assert most_alive <= 4, (suffix, most_alive)


def test_lazy_frames_load_on_access(tmp_path: Path) -> None:
    loads = []

    def load(i: int) -> np.ndarray:
        loads.append(i)
        return np.full((4, 4, 3), i, np.uint8)

    frames = LazyFrames([10, 20, 30], load)
    assert len(frames) == 3 and loads == []
    assert frames[1][0, 0, 0] == 20 and loads == [20]
    assert len(frames[1:]) == 2
